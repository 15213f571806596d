"""The page end to end in headless Chromium (Debian's /usr/bin/chromium, driven by the
playwright package; no browser download): a real waitress server on loopback, a real
corpus server, typing a question, the streamed answer, citation links, the follow-up
conversation, related questions, a crawled page carrying a script payload, and the page
without JavaScript. Screenshots go to artifacts/.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from search.config import Settings
from tests.conftest import CORPUS_ROOT, REPO
from tests.web_engine import TinyPipeline, TinyRetriever, corpus_passages, xss_passage
from web.app import create_app

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CITED_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "artifacts"
PAGES = [
    "doc/debian/FAQ/pkgtools.en.html",
    "doc/debian/FAQ/pkg-basics.en.html",
    "doc/debian/FAQ/de/pkgtools.de.html",
    "doc/debian/FAQ/ja/pkgtools.ja.html",
]
pytestmark = pytest.mark.slow


def _serve(tmp: Path, corpus_url: str, rate_limit: int):
    """The app on waitress in a thread, over real FAQ sections served by corpus_url."""
    import waitress

    passages = corpus_passages(CORPUS_ROOT, corpus_url, PAGES) + [xss_passage(corpus_url)]
    retriever = TinyRetriever(tmp / "store.sqlite3", passages)
    settings = Settings.load(env={"CITED_DATA_DIR": str(tmp / "data"), "CITED_RATE_LIMIT": str(rate_limit)})
    app = create_app(settings, retriever=retriever, pipeline=TinyPipeline(retriever, token_delay=0.04))
    wsgi = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=wsgi.run, daemon=True).start()
    return wsgi, f"http://127.0.0.1:{wsgi.effective_port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, corpus_url: str) -> Iterator[str]:
    wsgi, url = _serve(tmp_path_factory.mktemp("browser"), corpus_url, rate_limit=0)
    yield url
    wsgi.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-deps.sh")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_question_streams_in_with_citations_and_follow_ups(server, browser, corpus_url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    bodies: list[str] = []
    page.on("request", lambda r: bodies.append(r.post_data or "") if r.url.endswith("/api/answer") else None)

    page.goto(server + "/")
    # Keyboard only: the search box has focus, type and press Enter.
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("What is dpkg?")
    page.keyboard.press("Enter")
    page.wait_for_url("**/search?q=What+is+dpkg%3F")

    # Streaming: part of the answer is visible before the stream is done.
    page.wait_for_function(
        "() => { const t = document.querySelector('#t1 .answer-text');"
        " return t && t.textContent.length > 0 && !document.querySelector('#t1').dataset.done; }",
        timeout=15000,
    )
    page.wait_for_selector("#t1[data-done='true']", timeout=30000)
    answer = page.inner_text("#t1 .answer-text")
    assert len(answer) > 40

    # Each [n] links to its source card here and to the cited passage on the source page.
    card_link = page.locator("#t1 sup.cite a.cite-card").first
    href = card_link.get_attribute("href")
    assert href.startswith("#t1-src-")
    assert page.locator(href).count() == 1
    out = page.locator("#t1 sup.cite a.cite-out").first.get_attribute("href")
    assert out.startswith(corpus_url + "/doc/debian/FAQ/") and "#" in out and ":~:text=" in out
    _shot(page, "web-desktop.png")
    card_link.click()
    assert page.evaluate("location.hash") == href
    title_link = page.locator(href + " h3 a").get_attribute("href")
    assert title_link.startswith(corpus_url) and "#" in title_link
    assert page.locator("#t1 .snippet mark").count() > 0

    # A follow-up keeps the conversation: the request carries the first turn.
    page.fill("#followup-q", "and aptitude?")
    page.press("#followup-q", "Enter")
    page.wait_for_selector("#t2[data-done='true']", timeout=30000)
    sent = json.loads(bodies[-1])
    assert sent["q"] == "and aptitude?" and sent["stream"] is True
    assert [t["q"] for t in sent["history"]] == ["What is dpkg?"] and sent["history"][0]["answer"]
    assert page.inner_text("#t2 .question") == "and aptitude?"

    # Related questions are clickable and ask in the same conversation.
    related = page.locator("#t2 .related a.related-q")
    assert related.count() >= 1
    question = related.first.inner_text()
    related.first.click()
    page.wait_for_selector("#t3[data-done='true']", timeout=30000)
    assert page.inner_text("#t3 .question") == question
    assert not errors, errors
    context.close()


def test_script_in_a_crawled_page_shows_as_text_and_never_runs(server, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server + "/search?q=cited+xss+probe")
    page.wait_for_selector("#t1[data-done='true']", timeout=30000)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.title() != "pwned"
    assert page.evaluate("document.querySelectorAll('#conversation script, #conversation img, #conversation b').length") == 0
    assert "<script>window.__pwned" in page.inner_text("#t1-src-1 .snippet")
    assert "<script>" in page.inner_text("#t1 .answer-text")
    assert "<i>title</i>" in page.inner_text("#t1-src-1 h3")
    context.close()


def test_phone_width_and_dark_mode(server, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(server + "/search?q=How+do+I+install+a+package+with+apt-get%3F")
    page.wait_for_selector("#t1[data-done='true']", timeout=30000)
    # Nothing wider than the screen: no sideways scrolling on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _shot(page, "web-phone.png")
    context.close()

    dark = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    page = dark.new_page()
    page.goto(server + "/search?q=What+is+dpkg%3F")
    page.wait_for_selector("#t1[data-done='true']", timeout=30000)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(20, 22, 26)"
    _shot(page, "web-dark.png")
    dark.close()


def test_sources_show_without_javascript(server, browser):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server + "/search?q=What+is+dpkg%3F")
    assert page.locator("ol.source-list li.source").count() >= 1
    assert "needs JavaScript" in page.inner_text("#t1 .answer")
    page.keyboard.press("Tab")  # keyboard users land on the skip link first
    assert page.evaluate("document.activeElement.className") == "skip"
    context.close()


def test_errors_show_on_the_page(browser, corpus_url, tmp_path):
    """The error state: with a limit of one request a minute, the results page itself is
    the one request, so the answer request is refused (429) and the page says why."""
    wsgi, url = _serve(tmp_path, corpus_url, rate_limit=1)
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/search?q=What+is+dpkg%3F")
        status = page.locator("#t1 .status.error")
        status.wait_for(timeout=15000)
        assert "too many requests" in status.inner_text()
        assert status.get_attribute("role") == "alert"
        assert page.locator("ol.source-list li.source").count() >= 1  # the sources still show
        context.close()
    finally:
        wsgi.close()

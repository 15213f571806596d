"""The JSON API and the server-rendered page through Flask's test client.

The retriever and pipeline are the tiny real ones of tests/web_engine.py (SQLite FTS5 over
real Debian FAQ sections); what is tested here is the web layer: shapes, errors, limits,
headers and escaping.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import lxml.html
import pytest
from flask import Flask

from search.config import Settings
from tests.conftest import CORPUS_ROOT
from tests.web_engine import TinyPipeline, TinyRetriever, corpus_passages, xss_passage
from web.app import create_app
from web.guards import RateLimiter
from web.present import highlight, query_terms, snippet

PAGES = [
    "doc/debian/FAQ/pkgtools.en.html",
    "doc/debian/FAQ/de/pkgtools.de.html",
    "doc/debian/FAQ/ja/pkgtools.ja.html",
    "doc/debian/FAQ/basic-defs.en.html",
]
BASE = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def passages() -> list:
    found = corpus_passages(CORPUS_ROOT, BASE, PAGES)
    assert len(found) > 20, "the FAQ sections were not parsed"
    return found + [xss_passage(BASE)]


@pytest.fixture
def make_app(tmp_path: Path, passages: list) -> Callable[..., Flask]:
    def build(**env: str) -> Flask:
        settings = Settings.load(env={"CITED_DATA_DIR": str(tmp_path / "data"), "CITED_RATE_LIMIT": "0", **env})
        retriever = TinyRetriever(tmp_path / f"store-{len(list(tmp_path.iterdir()))}.sqlite3", passages)
        app = create_app(settings, retriever=retriever, pipeline=TinyPipeline(retriever, token_delay=0))
        app.config["TESTING"] = True
        return app

    return build


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def assert_error(response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body


def parse_sse(data: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# ---------------------------------------------------------------------- /api/search
def test_search_returns_ranked_hits_with_links(client):
    r = client.get("/api/search", query_string={"q": "dpkg package management program", "k": 5})
    assert r.status_code == 200
    body = r.get_json()
    assert 1 <= len(body["hits"]) <= 5
    for hit in body["hits"]:
        assert {"id", "url", "link", "title", "lang", "site", "text", "score", "scores"} <= set(hit)
        assert hit["link"] == f"{hit['url']}#{hit['anchor']}"
        assert hit["site"] == "127.0.0.1"
    assert "dpkg" in {h["anchor"] for h in body["hits"]}
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_filters_by_language_and_site(client):
    de = client.get("/api/search", query_string={"q": "dpkg apt", "lang": "de"}).get_json()["hits"]
    assert de and all(h["lang"] == "de" for h in de)
    none = client.get("/api/search", query_string={"q": "dpkg", "site": "example.org"}).get_json()["hits"]
    assert none == []


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 1001},
        {"q": "dpkg", "k": "0"},
        {"q": "dpkg", "k": "51"},
        {"q": "dpkg", "k": "ten"},
        {"q": "dpkg", "mode": "magic"},
        {"q": "dpkg", "lang": "<script>"},
        {"q": "dpkg", "site": "a b"},
    ],
)
def test_search_bad_parameters_are_400(client, params):
    assert_error(client.get("/api/search", query_string=params), 400)


def test_unusable_query_is_400_with_the_retrievers_message(client):
    body = assert_error(client.get("/api/search", query_string={"q": "?!…"}), 400, "bad_query")
    assert "no words" in body["error"]["message"]


# ---------------------------------------------------------------------- /api/answer
def test_answer_json_has_the_ask_fields(client):
    r = client.post("/api/answer", json={"q": "What is dpkg?", "id": "q1"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["id"] == "q1"
    assert {"answer", "lang", "sources", "citations", "timings"} <= set(body)
    assert body["lang"] == "en"
    numbers = {s["n"] for s in body["sources"]}
    for s in body["sources"]:
        assert {"n", "url", "title"} <= set(s) and "#" in s["url"]
    for c in body["citations"]:
        assert {"n", "sentence", "supported"} <= set(c) and c["n"] in numbers
        assert ":~:text=" in c["fragment_url"]
    assert body["supported_share"] == 1.0 and body["models"]["generator"] == "tiny-extractive"
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", body["answer"])}
    assert cited and cited <= numbers


def test_answer_stream_sends_the_events_in_order(client):
    r = client.post("/api/answer", json={"q": "What is dpkg?", "stream": True})
    assert r.status_code == 200
    assert r.mimetype == "text/event-stream"
    assert r.headers["Cache-Control"] == "no-cache"
    events = parse_sse(r.data)
    names = [name for name, _ in events]
    assert names[0] == "sources" and names[-1] == "done"
    assert names.index("citations") > max(i for i, n in enumerate(names) if n == "token")
    assert names.index("related") > names.index("citations")
    text = "".join(d["text"] for n, d in events if n == "token")
    assert "[1]" in text
    assert events[0][1]["sources"][0]["url"].startswith(BASE)


def test_follow_up_reaches_the_pipeline_as_chat_turns(client):
    history = [{"q": "What is dpkg?", "answer": "A tool [1]."}]
    r = client.post("/api/answer", json={"q": "and aptitude?", "history": history, "stream": True})
    assert r.status_code == 200
    sources = parse_sse(r.data)[0][1]
    assert sources["query"] == "What is dpkg? and aptitude?"  # the tiny pipeline's rewrite
    assert sources["sources"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        "just a string",
        {},
        {"q": 3},
        {"q": "   "},
        {"q": "dpkg", "stream": "yes"},
        {"q": "dpkg", "history": "earlier"},
        {"q": "dpkg", "history": [{"q": "a"}]},
        {"q": "dpkg", "history": [{"q": "a", "answer": "b"}] * 21},
        {"q": "dpkg", "id": 7},
    ],
)
def test_answer_bad_bodies_are_400(client, body):
    assert_error(client.post("/api/answer", json=body), 400)


def test_answer_needs_json(client):
    assert_error(client.post("/api/answer", data="q=dpkg", content_type="application/x-www-form-urlencoded"), 415)
    assert_error(client.post("/api/answer", data="{not json", content_type="application/json"), 400)


def test_body_over_the_limit_is_413(make_app):
    client = make_app(CITED_MAX_REQUEST_BYTES="1024").test_client()
    body = assert_error(client.post("/api/answer", json={"q": "x" * 2000}), 413, "payload_too_large")
    assert "1024" in body["error"]["message"]
    assert client.post("/api/answer", json={"q": "What is dpkg?"}).status_code == 200


# ---------------------------------------------------------------------- limits and failures
def test_rate_limit_per_client(make_app):
    client = make_app(CITED_RATE_LIMIT="3").test_client()
    for _ in range(3):
        assert client.get("/api/search?q=dpkg").status_code == 200
    r = client.get("/api/search?q=dpkg")
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert_error(client.post("/api/answer", json={"q": "dpkg"}), 429)
    assert client.get("/search?q=dpkg").status_code == 429
    # Another client is not affected; health and the API document are never limited.
    other = client.get("/api/search?q=dpkg", environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert other.status_code == 200
    assert client.get("/api/health").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_rate_limiter_window_slides():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.check("a") == 0 and limiter.check("a") == 0
    assert limiter.check("a") == pytest.approx(60.0)
    now[0] = 30.0
    assert limiter.check("a") == pytest.approx(30.0)
    now[0] = 60.0
    assert limiter.check("a") == 0
    assert RateLimiter(0).check("a") == 0


def test_store_down_is_503_everywhere(make_app):
    app = make_app()
    client = app.test_client()
    engine = app.extensions["cited.engine"]
    Path(engine.retriever().store.path).unlink()
    assert_error(client.get("/api/search?q=dpkg"), 503, "store_unavailable")
    assert_error(client.post("/api/answer", json={"q": "dpkg"}), 503, "store_unavailable")
    assert_error(client.post("/api/answer", json={"q": "dpkg", "stream": True}), 503, "store_unavailable")
    health = client.get("/api/health")
    assert health.status_code == 503
    assert health.get_json()["status"] == "unavailable"
    assert health.get_json()["store"]["reachable"] is False
    page = client.get("/search?q=dpkg")
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "unreachable" in page.get_data(as_text=True)


class BrokenPipeline:
    """A pipeline with a bug: the app must answer JSON, never a traceback page."""

    def answer(self, query, history=None):
        raise RuntimeError("secret internal detail")

    def stream(self, query, history=None):
        yield "sources", {"sources": []}
        raise RuntimeError("secret internal detail")


def test_internal_errors_are_json_without_details(make_app, tmp_path, passages):
    settings = Settings.load(env={"CITED_DATA_DIR": str(tmp_path / "d"), "CITED_RATE_LIMIT": "0"})
    app = create_app(settings, retriever=TinyRetriever(tmp_path / "b.sqlite3", passages), pipeline=BrokenPipeline())
    client = app.test_client()
    body = assert_error(client.post("/api/answer", json={"q": "dpkg"}), 500, "internal_error")
    assert "secret" not in json.dumps(body)
    events = parse_sse(client.post("/api/answer", json={"q": "dpkg", "stream": True}).data)
    assert [n for n, _ in events] == ["sources", "error"]
    assert events[-1][1]["code"] == "internal_error" and "secret" not in events[-1][1]["message"]


def test_unknown_routes_and_methods_are_json(client):
    assert_error(client.get("/api/nothing"), 404, "not_found")
    r = client.get("/api/answer")
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]


def test_health_reports_store_models_versions(client):
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "ok"
    assert body["store"]["reachable"] is True and body["store"]["passages"] > 20
    assert body["models"]["generator"]["loaded"] is True
    assert {"cited", "python", "flask"} <= set(body["versions"])


# ---------------------------------------------------------------------- headers
def test_cors_is_off_by_default(client):
    r = client.get("/api/search?q=dpkg", headers={"Origin": "https://elsewhere.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_cors_setting_allows_listed_origins(make_app):
    client = make_app(CITED_CORS_ORIGINS="https://app.example").test_client()
    r = client.get("/api/search?q=dpkg", headers={"Origin": "https://app.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in r.headers["Vary"]
    r = client.get("/api/search?q=dpkg", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    pre = client.options(
        "/api/answer",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
    )
    assert pre.status_code == 200
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert pre.headers["Access-Control-Allow-Headers"] == "Content-Type"


def test_csp_forbids_inline_script_and_pages_have_none(client):
    for path in ("/", "/search?q=dpkg", "/api/health"):
        r = client.get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/", "/search?q=dpkg"):
        doc = lxml.html.fromstring(client.get(path).data)
        scripts = doc.xpath("//script")
        assert scripts and all(s.get("src", "").startswith("/static/") and not (s.text or "").strip() for s in scripts)
        assert not [a for el in doc.iter() if isinstance(el.tag, str) for a in el.attrib if a.startswith("on")]


# ---------------------------------------------------------------------- the page
def test_search_page_renders_sources_without_javascript(client):
    r = client.get("/search?q=dpkg package management")
    assert r.status_code == 200
    doc = lxml.html.fromstring(r.data)
    cards = doc.xpath("//ol[@class='source-list']/li")
    assert cards and cards[0].get("id") == "t1-src-1"
    link = cards[0].xpath(".//h3/a/@href")[0]
    assert link.startswith(BASE) and "#" in link
    marks = [m.text_content().lower() for m in doc.xpath("//p[@class='snippet']/mark")]
    assert "dpkg" in marks
    assert doc.xpath("//main/@data-q") == ["dpkg package management"]
    assert doc.xpath("//label[@for='followup-q']")


def test_search_page_empty_and_home_states(client):
    assert client.get("/search?q=").status_code == 200
    r = client.get("/search?q=zzzqqqxxy")
    assert r.status_code == 200
    assert b"No sources found" in r.data


def test_crawled_markup_is_escaped_on_the_page(client):
    r = client.get("/search", query_string={"q": "cited xss probe"})
    html = r.get_data(as_text=True)
    assert "<script>window" not in html and "<img src=x" not in html and "<i>title</i>" not in html
    assert "&lt;script&gt;" in html and "&lt;i&gt;title&lt;/i&gt;" in html
    doc = lxml.html.fromstring(html)
    assert "<script>window.__pwned" in doc.xpath("string(//li[@id='t1-src-1']//p[@class='snippet'])")


def test_query_is_escaped_on_the_page(client):
    html = client.get("/search", query_string={"q": '"><script>alert(1)</script>'}).get_data(as_text=True)
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)" in html


# ---------------------------------------------------------------------- helpers
def test_highlight_marks_terms_and_keeps_all_text():
    text = "APT is the Advanced Package Tool; apt-get installs packages."
    terms = query_terms("apt packages")
    segments = highlight(text, terms)
    assert "".join(s for s, _ in segments) == text
    assert [s for s, m in segments if m] == ["APT", "apt", "packages"]
    ja = highlight("パッケージ管理ツール", query_terms("パッケージ"))
    assert any(m for _, m in ja) and "".join(s for s, _ in ja) == "パッケージ管理ツール"


def test_snippet_centres_on_the_first_term():
    text = " ".join(["filler"] * 200) + " the dpkg tool " + " ".join(["more"] * 200)
    cut = snippet(text, ["dpkg"], limit=120)
    assert "dpkg" in cut and len(cut) <= 130 and cut.startswith("…") and cut.endswith("…")

"""crawler/crawl.py end to end: real servers on loopback, the real embedder, the local store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crawler.crawl import crawl
from crawler.fetch import FetchLimits
from search.config import Settings
from search.embed import load_embedder
from search.store import connect_store
from search.store.base import StoreError
from tests.conftest import REPO, serve_directory
from tests.faultserver import BAD, GOOD, FaultServer

LIMITS = FetchLimits(connect_timeout=2, read_timeout=1, total_timeout=4, retries=1, backoff=0.1, max_retry_after=3)


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(Settings.load(env={}))


def private_ok(settings: Settings) -> Settings:
    return settings.replace(allow_private=True)


def store_rows(settings: Settings, embedder) -> dict[str, tuple]:
    """passage id -> (url, anchor, lang, text) of everything in the store."""
    store = connect_store(settings)
    store.open(embedder.name, embedder.dim)
    try:
        db = sqlite3.connect(store.path)
        return {r[0]: tuple(r[1:]) for r in db.execute("SELECT id, url, anchor, lang, text FROM passages")}
    finally:
        store.close()


def records(settings: Settings) -> dict[str, str]:
    db = sqlite3.connect(settings.data_dir / "store.sqlite3")
    return dict(db.execute("SELECT url, status FROM crawl"))


# ------------------------------------------------------------------ the fault server
@pytest.mark.slow
def test_fault_crawl_indexes_good_pages_and_skips_bad_ones_with_reasons(settings, embedder):
    # Server A on 127.0.0.2 plays a public site; B on 127.0.0.1 a private one that A redirects to.
    a, b = FaultServer(host="127.0.0.2"), FaultServer(host="127.0.0.1")
    try:
        a.redirect_to = f"{b.url}/good/alpha.html"
        summary = crawl([a.url + "/"], settings, embedder=embedder, rate=0, concurrency=4, max_per_pattern=5,
                        fetch_limits=LIMITS, progress=False, address_allowed=lambda ip: ip == "127.0.0.2")
        assert b.log == []  # the private server was never contacted
        rec = records(settings)
        for path in GOOD:
            assert rec.get(a.url + path) == "indexed" or (path == "/good/redirected.html"
                                                          and rec[a.url + "/redirect-ok"] == "indexed"), path
        for path, reason in BAD.items():
            assert rec[a.url + path].split(":", 1)[1] == reason, (path, rec[a.url + path])
        assert rec[a.url + "/good/alpha-copy.html"] == "skipped:duplicate"
        assert {rec[a.url + "/alias.html"], rec[a.url + "/good/beta.html"]} == {"indexed", "skipped:alias"}
        for reason in ("timeout", "http-500", "http-429", "redirect-loop", "too-many-redirects", "http-404"):
            assert summary.errors[reason] >= 1, reason
        for reason in ("robots", "too-large", "decompressed-too-large", "binary", "not-html", "private-address",
                       "duplicate", "alias", "trap-url-pattern"):
            assert summary.skipped[reason] >= 1, reason
        assert not [r for r in summary.errors if r.startswith("internal")]
        assert a.hits["/robots.txt"] == 1 and a.hits["/sitemap-index.xml"] == 1

        rows = store_rows(settings, embedder)
        urls = {url for url, *_ in rows.values()}
        calendar = {u for u in urls if "/calendar/" in u}
        assert 1 <= len(calendar) <= 5  # the endless calendar was cut off
        assert urls - calendar == {a.url + p for p in GOOD}  # every good page, once
        assert summary.indexed == len(urls) and summary.passages == len(rows)
        by_url: dict[str, list[tuple]] = {}
        for url, anchor, lang, text in rows.values():
            by_url.setdefault(url, []).append((anchor, lang, text))
        assert {lang for _, lang, _ in by_url[a.url + "/euc-kr.html"]} == {"ko"}
        assert any("데비안" in t for _, _, t in by_url[a.url + "/euc-kr-meta.html"])
        assert {lang for _, lang, _ in by_url[a.url + "/iso-2022-jp.html"]} == {"ja"}
        assert any("デビアン" in t for _, _, t in by_url[a.url + "/iso-2022-jp.html"])
        assert any("Grüße" in t for _, _, t in by_url[a.url + "/wrong-charset-header.html"])
        assert any("Köln" in t for _, _, t in by_url[a.url + "/latin1-header-utf8-body.html"])
        assert any("naïve café" in t for _, _, t in by_url[a.url + "/charset-in-body.html"])
        assert {anchor for anchor, _, _ in by_url[a.url + "/good/alpha.html"]} == {"top", "details"}
        assert summary.by_lang["ko"] == 2 and summary.by_lang["ja"] == 1 and summary.by_lang["de"] == 2
    finally:
        a.close()
        b.close()


def test_private_addresses_are_refused_by_default(settings, embedder):
    server = FaultServer()
    try:
        assert not settings.allow_private
        summary = crawl([f"http://localhost:{server.port}/"], settings, embedder=embedder, progress=False)
        assert summary.skipped == {"private-address": 1} and summary.indexed == 0
        assert server.log == []
    finally:
        server.close()


def test_bad_options_are_clear_errors(settings, embedder):
    with pytest.raises(ValueError, match="absolute http"):
        crawl(["not a url"], settings, embedder=embedder)
    with pytest.raises(ValueError, match="unknown crawl option"):
        crawl(["http://127.0.0.1/"], settings, embedder=embedder, max_pagez=3)
    with pytest.raises(ValueError, match="scope"):
        crawl(["http://127.0.0.1/"], settings, embedder=embedder, scope="planet")


# ------------------------------------------------------------------ re-crawls and aliases
def write_site(root: Path, n: int, words: int = 30) -> None:
    root.mkdir(parents=True, exist_ok=True)
    links = "".join(f'<li><a href="p{i}.html">page {i}</a></li>' for i in range(n))
    (root / "index.html").write_text(f"<html><head><title>Site</title></head><body><h1 id='top'>Site index</h1>"
                                     f"<p>This small site lists its pages below for the crawler tests.</p><ul>{links}</ul></body></html>")
    for i in range(n):
        text = " ".join(f"Page {i} sentence {j} talks about topic {i * 7 % 13}." for j in range(words // 6 + 1))
        (root / f"p{i}.html").write_text(f"<html><head><title>Page {i}</title></head><body><h1 id='p{i}'>Page {i}</h1>"
                                         f"<p>{text}</p><a href='index.html'>back</a></body></html>")


@pytest.mark.slow
def test_recrawl_fetches_only_what_changed(tmp_path, settings, embedder):
    site = tmp_path / "site"
    write_site(site, 4)
    (site / "guide.en.html").write_text("<html><head><title>Guide</title></head><body><h1 id='g'>Guide</h1>"
                                        "<p>" + "The guide explains installation in detail. " * 12 + "</p></body></html>")
    (site / "guide.html").symlink_to("guide.en.html")  # like the Debian FAQ: X.html -> X.en.html
    server, url = serve_directory(site)
    try:
        s = private_ok(settings)
        seeds = [url + "/index.html", url + "/guide.en.html", url + "/guide.html"]
        first = crawl(seeds, s, embedder=embedder, rate=0, progress=False)
        assert first.indexed == 6 and first.skipped == {"duplicate": 1}
        before = store_rows(s, embedder)
        assert {u for u, *_ in before.values()} >= {url + "/guide.html"}
        assert url + "/guide.en.html" not in {u for u, *_ in before.values()}  # indexed once, as guide.html

        second = crawl(seeds, s, embedder=embedder, rate=0, progress=False)
        assert second.indexed == 0 and second.unchanged == 6  # 304 Not Modified for every indexed page
        assert second.skipped["duplicate"] == 1
        assert store_rows(s, embedder) == before

        (site / "p1.html").write_text("<html><head><title>Page 1</title></head><body><h1 id='p1'>Page 1</h1>"
                                      "<p>Rewritten: page one now covers security updates only.</p></body></html>")
        later = time.time() + 5
        os.utime(site / "p1.html", (later, later))
        (site / "p2.html").unlink()
        (site / "p3.html").write_text("<html><head><title>Page 3</title><meta name='robots' content='noindex'>"
                                      "</head><body><p>Now private: do not index this page.</p></body></html>")
        os.utime(site / "p3.html", (later, later))
        third = crawl(seeds, s, embedder=embedder, rate=0, progress=False)
        assert third.indexed == 1 and third.errors == {"http-404": 1} and third.skipped["noindex"] == 1
        after = store_rows(s, embedder)
        texts = {u: t for u, _, _, t in after.values()}
        assert "security updates only" in texts[url + "/p1.html"]
        assert url + "/p2.html" not in texts  # a page that is gone loses its passages
        assert url + "/p3.html" not in texts  # and so does one that asks not to be indexed
        unchanged = {k: v for k, v in before.items() if v[0] not in (url + "/p1.html", url + "/p2.html", url + "/p3.html")}
        assert {k: after[k] for k in unchanged} == unchanged
    finally:
        server.shutdown()


# ------------------------------------------------------------------ SIGKILL and resume
class _LoggingSite:
    """serve_directory with a request log (to prove finished pages are not fetched again)."""

    def __init__(self, root: Path) -> None:
        import functools
        import http.server
        import socketserver
        import threading

        self.log: list[str] = []
        log = self.log

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002
                log.append(self.path)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _cli_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITED_")}
    env.update(CITED_DATA_DIR=str(data_dir), CITED_ALLOW_PRIVATE="1", PYTHONPATH=str(REPO))
    return env


@pytest.mark.slow
def test_sigkill_midway_then_resume_equals_uninterrupted(tmp_path, embedder):
    site = tmp_path / "site"
    write_site(site, 70)
    web = _LoggingSite(site)
    seed = web.url + "/index.html"
    killed_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "search.cli", "crawl", seed, "--rate", "5", "--concurrency", "1", "--json"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_cli_env(killed_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db_path = killed_dir / "store.sqlite3"
    done_before: set[str] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the crawl ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        if db_path.exists():
            try:
                done_before = {u for (u,) in sqlite3.connect(db_path).execute(
                    "SELECT url FROM crawl WHERE status = 'indexed'")}
            except sqlite3.Error:
                pass
            if len(done_before) >= 10:
                break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # what was recorded as indexed just before the kill (read again: a flush may have landed)
    done_before = {u for (u,) in sqlite3.connect(db_path).execute("SELECT url FROM crawl WHERE status = 'indexed'")}
    assert 10 <= len(done_before) < 71
    fetched_before = len(web.log)

    resumed = subprocess.run(cmd, cwd=REPO, env=_cli_env(killed_dir), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])  # the last line is the JSON summary
    assert summary["resumed"] is True
    refetched = {web.url + p for p in web.log[fetched_before:]} & done_before
    assert not refetched, f"finished pages fetched again: {sorted(refetched)[:5]}"

    reference = Settings.load(env={"CITED_DATA_DIR": str(tmp_path / "reference"), "CITED_ALLOW_PRIVATE": "1"})
    crawl([seed], reference, embedder=embedder, rate=0, progress=False)
    killed = Settings.load(env={"CITED_DATA_DIR": str(killed_dir)})
    got, want = store_rows(killed, embedder), store_rows(reference, embedder)
    assert len(want) == 71
    assert got == want  # same passage ids, urls, anchors, languages and texts


class _StoreThatFailsOnce:
    """A real local store whose write number ``fail_at`` fails once, the way a cluster
    that restarts or a disk that fills for a moment fails a long crawl."""

    def __init__(self, store, fail_at: int) -> None:
        self._store, self._writes, self._fail_at = store, 0, fail_at

    def replace_page(self, url, passages):
        self._writes += 1
        if self._writes == self._fail_at:
            raise StoreError("disk full (simulated)")
        return self._store.replace_page(url, passages)

    def __getattr__(self, name):
        return getattr(self._store, name)


@pytest.mark.slow
def test_a_store_error_midway_leaves_a_crawl_to_resume(tmp_path, embedder):
    site = tmp_path / "site"
    write_site(site, 30)
    server, url = serve_directory(site)
    seed = url + "/index.html"
    settings = Settings.load(env={"CITED_DATA_DIR": str(tmp_path / "failed"), "CITED_ALLOW_PRIVATE": "1"})
    store = connect_store(settings)
    try:
        with pytest.raises(StoreError, match="disk full"):
            crawl([seed], settings, store=_StoreThatFailsOnce(store, fail_at=9), embedder=embedder, rate=0,
                  progress=False, flush_passages=1, concurrency=1)
        marker = [status for u, status in records(settings).items() if u.startswith("cited-run:")]
        assert marker == ["running"]  # not "done": the next start resumes instead of re-crawling
        again = crawl([seed], settings, store=store, embedder=embedder, rate=0, progress=False)
        assert again.resumed and not again.errors
        reference = Settings.load(env={"CITED_DATA_DIR": str(tmp_path / "reference"), "CITED_ALLOW_PRIVATE": "1"})
        crawl([seed], reference, embedder=embedder, rate=0, progress=False)
        got, want = store_rows(settings, embedder), store_rows(reference, embedder)
        assert len(want) == 31 and got == want
    finally:
        store.close()
        server.shutdown()


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_after_flushing(tmp_path):
    site = tmp_path / "site"
    write_site(site, 40)
    web = _LoggingSite(site)
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "search.cli", "crawl", web.url + "/index.html", "--rate", "4", "--concurrency", "1", "--json"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_cli_env(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(web.log) < 6 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True and summary["indexed"] >= 1
    db = sqlite3.connect(data / "store.sqlite3")
    indexed = {u for (u,) in db.execute("SELECT url FROM crawl WHERE status = 'indexed'")}
    stored = {u for (u,) in db.execute("SELECT DISTINCT url FROM passages")}
    assert len(indexed) == summary["indexed"] and indexed == stored  # flushed: nothing fetched was lost
    queued = {u for (u,) in db.execute("SELECT url FROM crawl WHERE status = 'queued'")}
    assert len(queued) + len(indexed) == 41  # the rest waits for the next run


def test_cli_json_summary_is_the_last_line(tmp_path):
    """`cited crawl --json` on a server that refuses everything: still a clean JSON summary."""
    site = tmp_path / "site"
    write_site(site, 2)
    server, url = serve_directory(site)
    try:
        env = _cli_env(tmp_path / "data")
        env["CITED_ALLOW_PRIVATE"] = "0"
        out = subprocess.run([sys.executable, "-m", "search.cli", "crawl", url + "/index.html", "--json"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        for key in ("fetched", "indexed", "passages", "skipped", "errors", "by_lang"):
            assert key in summary
        assert summary["skipped"] == {"private-address": 1}
        bad = subprocess.run([sys.executable, "-m", "search.cli", "crawl", "ftp://x/", "--json"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and "http" in bad.stderr
    finally:
        server.shutdown()


# ------------------------------------------------------------------ the real corpus
FAQ_LANGS = {"de": "de", "fr": "fr", "it": "it", "ja": "ja", "ko": "ko", "nl": "nl", "pt": "pt", "ru": "ru",
             "zh-cn": "zh"}
FAQ = Path("/usr/share/doc/debian/FAQ")


@pytest.fixture(scope="module")
def faq_crawl(faq_index):
    """The whole Debian FAQ in 10 languages, crawled once per session (tests/conftest.py)."""
    return faq_index


def _faq_pages() -> dict[str, str]:
    """Relative path -> expected language of every FAQ page on disk (English by its .en.html name)."""
    pages = {f"doc/debian/FAQ/{p.name}": "en" for p in FAQ.glob("*.en.html")}
    for d, lang in FAQ_LANGS.items():
        pages.update({f"doc/debian/FAQ/{d}/{p.name}": lang for p in (FAQ / d).glob("*.html")})
    return pages


@pytest.mark.slow
def test_faq_every_page_in_every_language_indexed_once(faq_crawl, embedder):
    base, settings, summary = faq_crawl
    rows = store_rows(settings, embedder)
    urls = {url[len(base) + 1:] for url, *_ in rows.values()}
    expected = _faq_pages()
    # the English pages are reachable as X.en.html and X.html (a symlink): exactly one of each pair
    basic = {"doc/debian/FAQ/basic-defs.html", "doc/debian/FAQ/basic-defs.en.html"}
    assert len(urls & basic) == 1
    urls = {u.replace("basic-defs.html", "basic-defs.en.html") for u in urls}
    assert urls == set(expected), (sorted(set(expected) - urls)[:5], sorted(urls - set(expected))[:5])
    assert summary.indexed == len(expected)
    assert not summary.errors
    assert summary.skipped.get("duplicate") == 1


@pytest.mark.slow
def test_faq_languages_are_detected(faq_crawl, embedder):
    """Most pages carry no lang attribute: the language comes from the text. Translated
    pages keep some sections in English, and those passages must say "en"."""
    import re

    base, settings, summary = faq_crawl
    scripts = {"ja": r"[\u3040-\u30ff]", "ko": r"[\uac00-\ud7af]", "zh": r"[\u4e00-\u9fff]", "ru": r"[\u0400-\u04ff]"}
    expected = _faq_pages()
    per_folder: dict[str, list[str]] = {}
    for url, _, lang, text in store_rows(settings, embedder).values():
        want = expected[url[len(base) + 1:].replace("basic-defs.html", "basic-defs.en.html")]
        per_folder.setdefault(want, []).append(lang)
        if lang in scripts and len("".join(text.split())) >= 200:  # shorter ones take their section's language
            assert re.search(scripts[lang], text), (lang, text[:80])
    assert set(per_folder) == {"en", "de", "fr", "it", "ja", "ko", "nl", "pt", "ru", "zh"}
    for want, langs in per_folder.items():
        share = langs.count(want) / len(langs)
        other = [x for x in langs if x not in (want, "en")]
        assert share >= (0.97 if want == "en" else 0.6), (want, share)
        assert len(other) <= 0.03 * len(langs), (want, other)
    assert set(summary.by_lang) >= {"en", "de", "fr", "it", "ja", "nl", "pt", "zh"}


@pytest.mark.slow
def test_faq_passages_carry_the_heading_ids_of_the_html(faq_crawl, embedder):
    import re

    from tests.conftest import EVAL_DIR

    base, settings, _ = faq_crawl
    anchors: dict[str, set[str]] = {}
    for url, anchor, _, _ in store_rows(settings, embedder).values():
        anchors.setdefault(url[len(base) + 1:], set()).add(anchor)
    for path, found in anchors.items():
        html = (Path("/usr/share") / path).read_text(encoding="utf-8", errors="replace")
        ids = set(re.findall(r'\b(?:id|name)="([^"]+)"', html))
        assert found - {""} <= ids, (path, found - ids)
        assert len(found - {""}) >= 1, path
    # the questions of the development set: their sections are there to be cited
    queries = [json.loads(line) for line in (EVAL_DIR / "debian-faq.jsonl").read_text().splitlines() if line.strip()]
    wanted = {ref for q in queries for ref in q["relevant"]}
    hit = [ref for ref in wanted if ref.split("#")[1] in anchors.get(ref.split("#")[0], set())]
    indexed_refs = [ref for ref in wanted if ref.split("#")[0] in anchors]
    assert len(hit) >= 0.99 * len(indexed_refs), sorted(set(indexed_refs) - set(hit))[:10]


@pytest.mark.elastic
@pytest.mark.slow
def test_crawl_into_elasticsearch_and_recrawl(tmp_path, es_url, embedder, monkeypatch):
    """The same crawl into the Elasticsearch store: passages written, state kept there,
    and the index compacted to one segment when a crawl wrote enough to be worth it."""
    import uuid

    import crawler.crawl

    from search.store.elastic import ElasticStore

    site = tmp_path / "site"
    write_site(site, 5)
    server, url = serve_directory(site)
    settings = Settings.load(env={"CITED_STORE": "elastic", "CITED_ES_URL": es_url, "CITED_ALLOW_PRIVATE": "1",
                                  "CITED_ES_INDEX": f"crawler-test-{uuid.uuid4().hex[:8]}",
                                  "CITED_DATA_DIR": str(tmp_path / "data")})
    store = ElasticStore(settings)
    try:
        monkeypatch.setattr(crawler.crawl, "OPTIMIZE_AFTER_PASSAGES", 1)  # this small site is "enough"
        # one flush (and so one new segment) per page, unless the crawl compacts at the end
        first = crawl([url + "/index.html"], settings, store=store, embedder=embedder, rate=0, progress=False,
                      flush_passages=1)
        assert first.indexed == 6 and not first.errors
        assert store.count() == first.passages
        assert store.segments() == 1
        assert {r.url for r in store.crawl_records() if r.status == "indexed"} == \
            {url + "/index.html"} | {f"{url}/p{i}.html" for i in range(5)}
        again = crawl([url + "/index.html"], settings, store=store, embedder=embedder, rate=0, progress=False)
        assert again.unchanged == 6 and again.indexed == 0 and store.count() == first.passages
    finally:
        store.drop()
        store.close()
        server.shutdown()

"""crawler/frontier.py: normalisation, scope, traps, politeness, robots.txt and sitemaps."""

from __future__ import annotations

import gzip
import threading
import time

import pytest

from crawler.fetch import Fetcher, FetchLimits
from crawler.frontier import (
    Frontier, Limits, RobotsCache, Scope, normalize_url, parse_sitemap, registrable_domain, trap_reason,
)
from tests.faultserver import FaultServer


# ------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("raw, expected", [
    ("HTTP://Example.COM:80/a/./b/../c", "http://example.com/a/c"),
    ("https://example.com:443/", "https://example.com/"),
    ("https://example.com:8443", "https://example.com:8443/"),
    ("http://example.com/x#section", "http://example.com/x"),
    ("http://example.com/x?b=2&a=1&utm_source=n&utm_medium=m&fbclid=z&gclid=q", "http://example.com/x?a=1&b=2"),
    ("http://example.com/x?utm_campaign=only", "http://example.com/x"),
    ("http://user:secret@example.com/p", "http://example.com/p"),
    ("http://example.com/%7euser/a%2fb", "http://example.com/~user/a%2Fb"),
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://bücher.example/", "http://xn--bcher-kva.example/"),
    ("http://Example.com./", "http://example.com/"),
])
def test_normalize(raw, expected):
    assert normalize_url(raw) == expected


def test_normalize_rejects_and_resolves():
    for bad in ("mailto:a@b.c", "javascript:alert(1)", "ftp://example.com/", "", "http://", "http://[::1"):
        assert normalize_url(bad) is None, bad
    assert normalize_url("../b/c.html#x", base="http://h/a/d/e.html") == "http://h/a/b/c.html"
    assert normalize_url("?q=1", base="http://h/a") == "http://h/a?q=1"


# ------------------------------------------------------------------ scope and traps
def test_scopes_and_regexes():
    seeds = ["http://docs.example.com/guide/index.html"]
    host = Scope(seeds, "host")
    assert host.reason("http://docs.example.com/other/page") is None
    assert host.reason("http://www.example.com/") == "out-of-scope"
    prefix = Scope(seeds, "prefix")
    assert prefix.reason("http://docs.example.com/guide/ch1.html") is None
    assert prefix.reason("http://docs.example.com/other/page") == "out-of-scope"
    domain = Scope(seeds, "domain")
    assert domain.reason("http://www.example.com/") is None
    assert domain.reason("http://example.org/") == "out-of-scope"
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"
    rx = Scope(seeds, "host", allow=[r"\.html$"], deny=[r"/private/"])
    assert rx.reason("http://docs.example.com/a.html") is None
    assert rx.reason("http://docs.example.com/a.pdf") == "not-allowed"
    assert rx.reason("http://docs.example.com/private/a.html") == "denied"
    with pytest.raises(ValueError):
        Scope(seeds, "planet")
    with pytest.raises(ValueError, match="regular expression"):
        Scope(seeds, "host", allow=["("])


def test_traps():
    assert trap_reason("http://h/" + "a" * 3000) == "trap-url-too-long"
    assert trap_reason("http://h/x/y/x/y/x/y/page") == "trap-repeating-path"
    assert trap_reason("http://h/2024/01/01/post") is None
    f = Frontier(Scope(["http://h/"]), Limits(max_per_pattern=3), delay=0)
    added = [f.add(f"http://h/calendar/{2000 + i}/01", 1) for i in range(6)]
    assert added == [None, None, None, "trap-url-pattern", "trap-url-pattern", "trap-url-pattern"]
    g = Frontier(Scope(["http://h/"]), Limits(max_depth=2, max_per_host=2), delay=0)
    assert g.add("http://h/deep", 3) == "max-depth"
    assert [g.add("http://h/a", 1), g.add("http://h/b", 1), g.add("http://h/c", 1)] == [None, None, "max-per-host"]
    assert g.add("http://h/a", 1) == "seen"


# ------------------------------------------------------------------ politeness
def _drain(f: Frontier, n: int) -> list[tuple[float, str]]:
    out = []
    for _ in range(n):
        item = f.get(timeout=5)
        assert item is not None
        out.append((time.monotonic(), item.url))
        f.release(item)
        f.finish(item)
    return out


def test_per_host_delay_and_round_robin():
    f = Frontier(Scope(["http://a/", "http://b/"]), delay=0.2)
    for i in range(3):
        f.add(f"http://a/{i}", 0, seed=True)
        f.add(f"http://b/{i}", 0, seed=True)
    got = _drain(f, 6)
    hosts = [u.split("/")[2] for _, u in got]
    assert hosts[:2] in (["a", "b"], ["b", "a"])  # two hosts are served side by side
    for host in ("a", "b"):
        times = [t for t, u in got if u.split("/")[2] == host]
        assert all(t2 - t1 >= 0.19 for t1, t2 in zip(times, times[1:]))
    assert f.get(timeout=1) is None  # empty and nothing in flight: the crawl is over


def test_crawl_delay_retry_after_and_connection_limit():
    f = Frontier(Scope(["http://a/"]), delay=0, per_host=2)
    for i in range(4):
        f.add(f"http://a/{i}", 0, seed=True)
    first, second = f.get(timeout=1), f.get(timeout=1)
    assert first and second
    assert f.get(timeout=0.3) is None or False  # a third connection to the same host must wait
    f.release(first)
    f.finish(first)
    f.release(second)
    f.finish(second)
    f.set_host_delay("a", 0.3)
    f.defer_host("a", 0.5)
    start = time.monotonic()
    got = _drain(f, 2)
    assert got[0][0] - start >= 0.45  # Retry-After
    assert got[1][0] - got[0][0] >= 0.28  # crawl-delay


def test_page_limit_and_stop():
    f = Frontier(Scope(["http://a/"]), Limits(max_pages=2), delay=0)
    for i in range(5):
        f.add(f"http://a/{i}", 0, seed=True)
    _drain(f, 2)
    assert f.get(timeout=1) is None
    g = Frontier(Scope(["http://a/"]), delay=0)
    g.add("http://a/x", 0, seed=True)
    threading.Timer(0.2, g.stop).start()
    item = g.get(timeout=1)
    assert item is not None
    assert g.get(timeout=2) is None  # in flight, but stopped: returns


# ------------------------------------------------------------------ robots.txt and sitemaps
@pytest.fixture(scope="module")
def server():
    s = FaultServer(crawl_delay=1.5)
    yield s
    s.close()


def test_robots_rules_delay_and_sitemaps(server):
    robots = RobotsCache(Fetcher("CitedBot/1.0", allow_private=True), "CitedBot")
    policy = robots.policy(server.url + "/good/alpha.html")
    assert policy.allowed(server.url + "/good/alpha.html")
    assert not policy.allowed(server.url + "/private/secret.html")
    assert policy.crawl_delay == 1.5
    assert policy.sitemaps == [server.url + "/sitemap-index.xml"]
    robots.policy(server.url + "/other")
    assert server.hits["/robots.txt"] == 1  # cached per origin


def test_robots_missing_or_failing(tmp_path):
    from tests.conftest import serve_directory

    srv, url = serve_directory(tmp_path)  # no robots.txt: 404 -> everything allowed
    try:
        assert RobotsCache(Fetcher("x", allow_private=True), "x").policy(url + "/a").allowed(url + "/a")
    finally:
        srv.shutdown()
    bad = FaultServer()
    try:
        # robots.txt answering 500 (a server in trouble): RFC 9309 says stay away
        bad.routes = lambda: {"/robots.txt": lambda h: bad.send(h, 500, "text/plain", b"oops")}  # type: ignore[method-assign]
        limits = FetchLimits(retries=0)
        policy = RobotsCache(Fetcher("x", allow_private=True, limits=limits), "x").policy(bad.url + "/a")
        assert not policy.allowed(bad.url + "/a")
    finally:
        bad.close()


def test_sitemaps_plain_index_gzip_and_text(server):
    urlset = (b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
              b"<url><loc> http://h/a </loc></url><url><loc>http://h/b</loc></url></urlset>")
    assert parse_sitemap(urlset) == (["http://h/a", "http://h/b"], [])
    assert parse_sitemap(gzip.compress(urlset)) == (["http://h/a", "http://h/b"], [])
    index = fetch_body(server.url + "/sitemap-index.xml")
    assert parse_sitemap(index) == ([], [server.url + "/sitemap-pages.xml"])
    assert parse_sitemap(b"http://h/x\nnot a url\nhttps://h/y\n") == (["http://h/x", "https://h/y"], [])
    assert parse_sitemap(b"<urlset><url><loc>http://h/a") == (["http://h/a"], [])  # truncated: recovered
    evil = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><urlset><url><loc>&e;</loc></url></urlset>'
    pages, _ = parse_sitemap(evil)
    assert not any("root:" in p for p in pages)  # external entities are not resolved


def fetch_body(url: str) -> bytes:
    return Fetcher("x", allow_private=True).fetch(url).body

"""crawler/fetch.py against a real misbehaving server on loopback (tests/faultserver.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crawler.fetch import FetchError, Fetcher, FetchLimits, decode_html, is_public_address, looks_binary, meta_charset, resolve
from tests.faultserver import FaultServer

UA = "CitedBot/test (+https://example.org/bot)"
LIMITS = FetchLimits(connect_timeout=2, read_timeout=1, total_timeout=4, retries=1, backoff=0.1, max_retry_after=3)


@pytest.fixture(scope="module")
def server():
    s = FaultServer()
    yield s
    s.close()


@pytest.fixture
def fetcher() -> Fetcher:
    return Fetcher(UA, allow_private=True, limits=LIMITS)


def reason_of(fetcher: Fetcher, url: str) -> str:
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url)
    return info.value.reason


# ------------------------------------------------------------------ encodings
def test_decode_prefers_bom_then_header_then_meta():
    assert decode_html("\ufeffhé".encode("utf-8"), "text/html; charset=iso-8859-1") == ("hé", "utf-8-sig")
    assert decode_html("Grüße".encode("cp1252"), "text/html; charset=windows-1252")[0] == "Grüße"
    body = '<html><head><meta charset="euc-kr"></head><body>데비안</body></html>'.encode("euc-kr")
    assert "데비안" in decode_html(body, "text/html")[0]


def test_wrong_header_charset_is_not_trusted():
    # header says UTF-8, bytes are Latin-1: the declared charset fails, the fallback reads it
    assert decode_html("<p>Grüße</p>".encode("latin-1"), "text/html; charset=utf-8")[0] == "<p>Grüße</p>"
    # header says Latin-1, bytes are valid UTF-8: UTF-8 wins
    assert decode_html("<p>Köln</p>".encode("utf-8"), "text/html; charset=iso-8859-1")[0] == "<p>Köln</p>"
    # unknown label: ignored
    assert decode_html("<p>ok é</p>".encode("utf-8"), "text/html; charset=x-nonsense")[0] == "<p>ok é</p>"


def test_charset_mentioned_in_body_text_is_ignored():
    body = ('<html><head><title>t</title></head><body><p>Use charset=iso-2022-jp for mail; '
            '<code>&lt;meta charset="iso-2022-jp"&gt;</code> Grüße</p></body></html>').encode("utf-8")
    assert meta_charset(body) is None
    assert "Grüße" in decode_html(body, "text/html")[0]


def test_real_page_that_mentions_iso_2022_jp_decodes_as_utf8():
    path = Path("/usr/share/debian-reference/ch11.en.html")
    if not path.exists():
        pytest.skip("debian-reference-en is not installed")
    body = path.read_bytes()
    text, codec = decode_html(body, "text/html")
    assert codec == "utf-8" and "iso-2022-jp" in text.lower()


def test_iso_2022_jp_and_euc_kr_meta():
    jp = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=ISO-2022-JP"></head><body>日本語の文章</body></html>'
    assert "日本語の文章" in decode_html(jp.encode("iso-2022-jp"))[0]


def test_binary_detection():
    assert looks_binary(bytes(range(256)) * 8)
    assert not looks_binary("<html>데비안 日本語 Grüße</html>".encode())


# ------------------------------------------------------------------ addresses
def test_non_public_addresses_are_refused():
    for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.4", "169.254.169.254", "::1", "fe80::1",
               "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1"):
        assert not is_public_address(ip), ip
    assert is_public_address("93.184.216.34") and is_public_address("2606:4700::1111")
    with pytest.raises(FetchError) as info:
        resolve("localhost", 80, allow_private=False)  # a name: checked after resolution
    assert info.value.reason == "private-address"
    assert resolve("localhost", 80, allow_private=True)


def test_private_host_refused_unless_allowed(server):
    strict = Fetcher(UA, allow_private=False, limits=LIMITS)
    before = len(server.log)
    assert reason_of(strict, f"http://localhost:{server.port}/good/alpha.html") == "private-address"
    assert reason_of(strict, f"{server.url}/good/alpha.html") == "private-address"
    assert len(server.log) == before  # refused before connecting


def test_redirect_to_private_address_is_refused_at_the_hop():
    """Server A (127.0.0.2, treated as public here) redirects to server B on 127.0.0.1 (private)."""
    a, b = FaultServer(host="127.0.0.2"), FaultServer(host="127.0.0.1")
    try:
        a.redirect_to = f"{b.url}/good/alpha.html"
        f = Fetcher(UA, allow_private=False, limits=LIMITS, address_allowed=lambda ip: ip == "127.0.0.2")
        assert f.fetch(f"{a.url}/good/alpha.html").status == 200
        assert reason_of(f, f"{a.url}/to-other-host") == "private-address"
        assert b.log == []  # B was never contacted
    finally:
        a.close()
        b.close()


def test_only_http_and_https(fetcher):
    assert reason_of(fetcher, "ftp://127.0.0.1/file") == "bad-scheme"
    assert reason_of(fetcher, "file:///etc/passwd") == "bad-scheme"


# ------------------------------------------------------------------ good responses
def test_user_agent_and_gzip_deflate(server, fetcher):
    for path in ("/gzipped.html", "/deflated.html"):
        res = fetcher.fetch(server.url + path)
        assert res.status == 200 and res.is_html and "<h1 id='top'>" in res.text()
    assert server.headers[-1]["user-agent"] == UA
    assert "gzip" in server.headers[-1]["accept-encoding"]


def test_redirect_is_followed(server, fetcher):
    res = fetcher.fetch(server.url + "/redirect-ok")
    assert res.final_url == server.url + "/good/redirected.html" and res.redirects == [res.final_url]


def test_conditional_get_with_etag(server, fetcher):
    first = fetcher.fetch(server.url + "/etag.html")
    assert first.status == 200 and first.etag == '"v1"'
    again = fetcher.fetch(server.url + "/etag.html", etag=first.etag)
    assert again.not_modified and again.body == b""
    assert server.headers[-1]["if-none-match"] == '"v1"'


def test_conditional_get_with_last_modified(tmp_path):
    from tests.conftest import serve_directory

    (tmp_path / "a.html").write_text("<html><body><p>hello</p></body></html>")
    srv, url = serve_directory(tmp_path)
    try:
        f = Fetcher(UA, allow_private=True, limits=LIMITS)
        first = f.fetch(url + "/a.html")
        assert first.status == 200 and first.last_modified
        assert f.fetch(url + "/a.html", last_modified=first.last_modified).not_modified
    finally:
        srv.shutdown()


def test_503_retry_after_is_honoured(server, fetcher):
    start = time.monotonic()
    res = fetcher.fetch(server.url + "/flaky-503.html")
    assert res.status == 200
    times = [t for t, p in server.log if p == "/flaky-503.html"]
    assert len(times) >= 2 and times[1] - times[0] >= 0.9  # waited the Retry-After second
    assert time.monotonic() - start < 4


# ------------------------------------------------------------------ failures
def test_failures_have_reasons(server, fetcher):
    assert reason_of(fetcher, server.url + "/always-500.html") == "http-500"
    assert reason_of(fetcher, server.url + "/always-429.html") == "http-429"
    assert reason_of(fetcher, server.url + "/redirect-loop-a") == "redirect-loop"
    assert reason_of(fetcher, server.url + "/hop0") == "too-many-redirects"
    assert fetcher.fetch(server.url + "/missing.html").status == 404


def test_timeouts(server, fetcher):
    start = time.monotonic()
    assert reason_of(fetcher, server.url + "/slow.html") == "timeout"
    assert reason_of(fetcher, server.url + "/drip.html") == "timeout"  # bytes keep coming: total timeout
    assert time.monotonic() - start < 2 * LIMITS.total_timeout + 2


def test_size_caps_while_streaming(server, fetcher):
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetcher.fetch(server.url + "/huge.html")
    assert info.value.reason == "too-large" and info.value.skip
    assert reason_of(fetcher, server.url + "/huge-announced.html") == "too-large"
    assert reason_of(fetcher, server.url + "/gzip-bomb.html") == "decompressed-too-large"
    time.sleep(0.2)
    assert server.huge_bytes_sent < 30 * 1024 * 1024  # we hung up long before 50 MB
    assert time.monotonic() - start < 10

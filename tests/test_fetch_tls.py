"""https on loopback: a real TLS server with a certificate made for the test. The crawler
verifies certificates (an unknown issuer is a clear "tls" error, never a silent
downgrade), and trusts what the system trusts (here: SSL_CERT_FILE)."""

from __future__ import annotations

import functools
import http.server
import shutil
import socketserver
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from crawler.crawl import crawl
from crawler.fetch import FetchError, Fetcher, FetchLimits
from search.config import Settings

LIMITS = FetchLimits(connect_timeout=2, read_timeout=2, total_timeout=5, retries=0)
PAGES = {
    "index.html": '<html><head><title>Secure docs</title></head><body><h1 id="top">Secure docs</h1>'
                  '<p>Start here. The guide explains how packages are signed and verified.</p>'
                  '<a href="guide.html">Guide</a></body></html>',
    "guide.html": '<html><head><title>Signing guide</title></head><body><h2 id="keys">Keys</h2>'
                  '<p>Every archive is signed with an OpenPGP key that apt checks before installing.</p>'
                  '</body></html>',
}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, certificate file) of an https server for localhost on loopback."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: scripts/system-deps.sh installs it")
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    site = root / "site"
    site.mkdir()
    for name, html in PAGES.items():
        (site / name).write_text(html, encoding="utf-8")
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}", cert
    server.shutdown()


def test_an_unknown_certificate_is_a_tls_error(tls_site) -> None:
    base, _ = tls_site
    with pytest.raises(FetchError) as caught:
        Fetcher("CitedBot/test", allow_private=True, limits=LIMITS).fetch(base + "/index.html")
    assert caught.value.reason == "tls" and "certificate" in str(caught.value).lower()


def test_a_trusted_certificate_fetches_over_https(tls_site, monkeypatch: pytest.MonkeyPatch) -> None:
    base, cert = tls_site
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    result = Fetcher("CitedBot/test", allow_private=True, limits=LIMITS).fetch(base + "/index.html")
    assert result.status == 200 and b"Secure docs" in result.body and result.final_url.startswith("https://")


def test_a_crawl_over_https_indexes_every_page(tls_site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, cert = tls_site
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    settings = Settings.load(env={"CITED_DATA_DIR": str(tmp_path), "CITED_ALLOW_PRIVATE": "1"})
    summary = crawl([base + "/index.html"], settings, rate=0, progress=False, sitemaps=False)
    assert summary.indexed == 2 and not summary.errors, summary.to_json()

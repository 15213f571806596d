"""Shared fixtures: one Elasticsearch node and one corpus server per test session.

Why session scope: starting Elasticsearch or loading a model costs seconds to minutes;
the suite must stay well inside CI's time, so each is started or loaded once.
"""

from __future__ import annotations

import functools
import http.server
import os
import socketserver
import threading
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from search.config import Settings

REPO = Path(__file__).resolve().parent.parent
CORPUS_ROOT = Path(os.environ.get("CITED_CORPUS_ROOT", "/usr/share"))
EVAL_DIR = Path(os.environ.get("CITED_EVAL_DIR", REPO.parent / "shared" / "eval"))


def _es_reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_cluster/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def es_url() -> str:
    """The Elasticsearch URL (CITED_ES_URL). In CI (CITED_REQUIRE_ES=1) a missing node fails."""
    url = os.environ.get("CITED_ES_URL", "")
    required = os.environ.get("CITED_REQUIRE_ES") == "1"
    if not url or not _es_reachable(url):
        message = f"Elasticsearch not reachable at {url or '(CITED_ES_URL unset)'}; run scripts/elasticsearch.sh start"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a private data directory (nothing read from the user's environment)."""
    return Settings.load(env={"CITED_DATA_DIR": str(tmp_path / "data")})


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_directory(root: Path) -> tuple[_ThreadingServer, str]:
    """A real static HTTP server on a free loopback port (like `python -m http.server`)."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _ThreadingServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def corpus_url() -> Iterator[str]:
    """Base URL of /usr/share served on loopback: the real documentation corpus."""
    if not (CORPUS_ROOT / "doc/debian/FAQ").is_dir():
        pytest.fail(f"the corpus is not installed under {CORPUS_ROOT}: run scripts/system-deps.sh")
    server, url = serve_directory(CORPUS_ROOT)
    yield url
    server.shutdown()


FAQ_DIRS = ("de", "fr", "it", "ja", "ko", "nl", "pt", "ru", "zh-cn")


@pytest.fixture(scope="session")
def faq_index(corpus_url: str, tmp_path_factory: pytest.TempPathFactory):
    """The Debian FAQ in 10 languages, crawled once per test session into a local store.

    Why shared: embedding ~170 pages is the most expensive setup in the suite; the crawler
    tests and the quality gate both read this one index. Returns (corpus_url, settings, summary).
    """
    from crawler.crawl import crawl
    from search.embed import load_embedder

    settings = Settings.load(env={"CITED_DATA_DIR": str(tmp_path_factory.mktemp("faq")), "CITED_ALLOW_PRIVATE": "1"})
    seeds = [f"{corpus_url}/doc/debian/FAQ/index.en.html"] + [
        f"{corpus_url}/doc/debian/FAQ/{d}/index.{d}.html" for d in FAQ_DIRS
    ]
    seeds.append(f"{corpus_url}/doc/debian/FAQ/basic-defs.html")  # the alias of basic-defs.en.html
    summary = crawl(seeds, settings, embedder=load_embedder(settings), scope="prefix", rate=0, concurrency=4,
                    progress=False)
    return corpus_url, settings, summary

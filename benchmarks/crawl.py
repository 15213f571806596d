"""Crawl benchmark: the local documentation corpus served on loopback.

Prints ONE JSON line:
- fetch_extract_pages_per_s: the crawl loop (frontier, robots, fetch, extract, passages)
  with embedding and indexing switched off (a no-op embedder and store);
- end_to_end_pages_per_s: the same crawl with the real embedder (CITED_EMBED_MODEL,
  default use-multilingual) into a fresh local store;
- extract_vs_trafilatura: our extract() CPU time over fetched HTML (--ratio-pages of them,
  spread over the crawl) divided by bare trafilatura.extract() with the same options,
  both single-threaded (target <= 1.5); extract_vs_trafilatura_default: the same against
  trafilatura's default options.

Usage: python benchmarks/crawl.py [--max-pages N] [--e2e-max-pages M] [--concurrency C]
       [--ratio-pages R] [--e2e-only]
(no limits: the whole corpus, ~3,600 pages; the machine's load matters: note it.)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crawler.crawl import crawl  # noqa: E402
from crawler.extract_pool import ExtractPool  # noqa: E402
from search.config import Settings  # noqa: E402
from search.documents import CrawlRecord  # noqa: E402
from search.store.base import WriteReport  # noqa: E402

ROOT = Path(os.environ.get("CITED_CORPUS_ROOT", "/usr/share"))
FAQ_LANGS = ["de", "fr", "it", "ja", "ko", "nl", "pt", "ru", "zh-cn"]
REF_LANGS = ["en", "de", "es", "fr", "id", "it", "ja", "pt", "pt-br", "zh-cn", "zh-tw"]


def seeds(base: str) -> list[str]:
    """The start URLs listed in shared/eval/README.md, where installed."""
    paths = ["doc/debian/FAQ/index.en.html"] + [f"doc/debian/FAQ/{l}/index.{l}.html" for l in FAQ_LANGS]
    paths += [f"debian-reference/index.{l}.html" for l in REF_LANGS]
    guide = ROOT / "doc/installation-guide-amd64"
    paths += [f"doc/installation-guide-amd64/{d.name}/index.html" for d in sorted(guide.glob("*")) if (d / "index.html").exists()]
    paths += ["doc/python3.11/html/index.html", "doc/postgresql-doc-15/html/index.html"]
    return [f"{base}/{p}" for p in paths if (ROOT / p).exists()]


def serve(root: Path) -> tuple[subprocess.Popen, str]:
    """The corpus on loopback, served by ``python -m http.server`` in its own process.

    Why a process: a real site is served by another machine; a server in the crawler's
    own interpreter would compete with the crawl for its GIL (it still shares the cores).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        server.kill()
        raise SystemExit("the corpus server did not start")
    return server, f"http://127.0.0.1:{port}"


class NullEmbedder:
    """Embedding switched off: measures everything else in the crawl loop."""

    name, dim = "null", 1

    def encode_passages(self, texts):
        return np.ones((len(texts), 1), dtype=np.float32)

    encode_queries = encode_passages


class NullStore:
    """Indexing switched off; crawl records are kept in memory (the crawl reads them)."""

    backend = "null"

    def __init__(self) -> None:
        self.records: dict[str, CrawlRecord] = {}

    def open(self, model, dim):
        pass

    def replace_page(self, url, passages):
        return WriteReport(written=len(passages))

    def delete_page(self, url):
        return 0

    def put_crawl_records(self, records):
        self.records.update({r.url: r for r in records})

    def crawl_records(self):
        return iter(list(self.records.values()))

    def optimize(self):
        pass

    def close(self):
        pass


def sample(items: list[str], n: int) -> list[str]:
    """``n`` items spread evenly over ``items`` (all of them when n is 0 or more than there are)."""
    if not n or n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]


def extraction_ratio(urls: list[str], fast: bool) -> dict[str, float]:
    """Our extract() versus bare trafilatura.extract() on the same HTML, one thread each.

    Two baselines: trafilatura with the options the crawl uses (``fast``: the ratio the
    target is about, same work asked of both) and trafilatura's defaults.
    """
    import trafilatura

    from crawler.extract import extract
    from crawler.fetch import decode_html

    docs = []
    for url in urls:
        path = ROOT / urlsplit(url).path.lstrip("/")
        if path.is_file() and path.suffix in (".html", ".htm"):
            docs.append((url, decode_html(path.read_bytes(), "text/html")[0]))
    trafilatura.extract(docs[0][1])  # warm all up (imports, language model)
    extract(docs[0][1], docs[0][0], fast=fast)
    # CPU time of this (single-threaded) loop, the extractors interleaved page by page,
    # so that load from other processes on a shared machine hits them alike
    same = default = ours = 0.0
    for url, html in docs:
        t0 = time.process_time()
        trafilatura.extract(html, fast=fast)
        t1 = time.process_time()
        trafilatura.extract(html)
        t2 = time.process_time()
        extract(html, url, fast=fast)
        same, default, ours = same + t1 - t0, default + t2 - t1, ours + time.process_time() - t2
    return {"extract_pages": len(docs), "extract_fast": fast, "trafilatura_cpu_s": round(same, 2),
            "trafilatura_default_cpu_s": round(default, 2), "extract_cpu_s": round(ours, 2),
            "extract_vs_trafilatura": round(ours / same, 3),
            "extract_vs_trafilatura_default": round(ours / default, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-pages", type=int, default=None, help="page limit for the fetch+extract crawl")
    parser.add_argument("--e2e-max-pages", type=int, default=None, help="page limit for the end-to-end crawl")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--e2e-only", action="store_true", help="only the end-to-end crawl (quicker comparisons)")
    parser.add_argument("--ratio-pages", type=int, default=600,
                        help="pages (spread evenly over the crawl) for the extraction ratio; 0 = all")
    args = parser.parse_args()

    server, base = serve(ROOT)
    start_urls = seeds(base)
    settings = Settings.load(env={**{k: v for k, v in os.environ.items() if k.startswith("CITED_")},
                                  "CITED_ALLOW_PRIVATE": "1", "CITED_STORE": "local"})
    common = dict(scope="prefix", rate=0, concurrency=args.concurrency, progress=False)

    out: dict = {"benchmark": "crawl", "seeds": len(start_urls), "extract_processes": ExtractPool(settings.extract_processes).processes,
                 "extract_fast": settings.extract_fast, "embed_passage_chars": settings.embed_passage_chars}
    if not args.e2e_only:
        null_store = NullStore()
        t = time.perf_counter()
        fx = crawl(start_urls, settings, store=null_store, embedder=NullEmbedder(), max_pages=args.max_pages, **common)
        fx_s = time.perf_counter() - t
        fetched_urls = [u for u, r in null_store.records.items() if r.status in ("indexed", "skipped:duplicate")]
        out.update({
            "fetch_extract_pages": fx.fetched,
            "fetch_extract_indexed": fx.indexed,
            "fetch_extract_passages": fx.passages,
            "fetch_extract_s": round(fx_s, 2),
            "fetch_extract_pages_per_s": round(fx.fetched / fx_s, 2),
            "errors": dict(fx.errors),
            **extraction_ratio(sample(fetched_urls, args.ratio_pages), settings.extract_fast),
        })

    from search.embed import load_embedder

    embedder = load_embedder(settings)
    with tempfile.TemporaryDirectory(prefix="cited-bench-") as tmp:
        e2e_settings = settings.replace(data_dir=Path(tmp))
        t = time.perf_counter()
        e2e = crawl(start_urls, e2e_settings, embedder=embedder, max_pages=args.e2e_max_pages or args.max_pages, **common)
        e2e_s = time.perf_counter() - t
    server.terminate()
    print(json.dumps({
        **out,
        "end_to_end_pages": e2e.fetched,
        "end_to_end_passages": e2e.passages,
        "end_to_end_s": round(e2e_s, 2),
        "end_to_end_pages_per_s": round(e2e.fetched / e2e_s, 2),
        "embedder": embedder.name,
        "by_lang": dict(e2e.by_lang),
        "end_to_end_errors": dict(e2e.errors),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Evaluate the whole development set (debian-faq.jsonl) in both scenarios, every mode.

Why a script: the numbers in docs/evaluation.md must be reproducible with one command.
Steps:
1. serve /usr/share on a fixed loopback port (the URLs in the index include it);
2. crawl the Debian FAQ in its ten languages (the ten index pages) into a local store
   under OUT/index-all (skipped when that store already holds passages);
3. copy that store to OUT/index-en and delete the translated FAQ pages from the copy:
   the cross-lingual scenario's index (non-English FAQ pages left out);
4. `cited eval` over all queries against `relevant` (same-language, index-all) and over
   the non-English queries against `relevant_en` (cross-lingual, index-en).

    scripts/eval-faq.py [--out DIR] [--modes bm25,dense,hybrid,rerank] [--limit N] [--port 18791]

Results: OUT/same-language/ and OUT/cross-lingual/ (metrics.json, results.jsonl,
report.html, plots/). Runs resume: rerunning continues where an interrupted run stopped.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import socketserver
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CORPUS = Path(os.environ.get("CITED_CORPUS_ROOT", "/usr/share"))
DEV_SET = Path(os.environ.get("CITED_EVAL_DIR", REPO.parent / "shared" / "eval")) / "debian-faq.jsonl"
CACHE = Path(os.environ.get("CITED_CACHE", Path.home() / ".cache" / "cited"))
FAQ_LANGS = ("de", "fr", "it", "ja", "ko", "nl", "pt", "ru", "zh-cn")
TRANSLATED = re.compile(r"/doc/debian/FAQ/(?:%s)/" % "|".join(re.escape(x) for x in FAQ_LANGS))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def crawl_faq(data_dir: Path, base: str) -> None:
    from crawler.crawl import crawl
    from search.config import Settings

    settings = Settings.load(env={"CITED_DATA_DIR": str(data_dir), "CITED_ALLOW_PRIVATE": "1", "CITED_STORE": "local"})
    seeds = [f"{base}/doc/debian/FAQ/index.en.html"] + [f"{base}/doc/debian/FAQ/{x}/index.{x}.html" for x in FAQ_LANGS]
    summary = crawl(seeds, settings, allow=[r"/doc/debian/FAQ/"], rate=0)
    print(f"crawled: {summary.to_json()}", file=sys.stderr)


def passage_count(data_dir: Path) -> int:
    path = data_dir / "store.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0]


def english_only_copy(src: Path, dst: Path) -> None:
    """A copy of the store without the translated FAQ pages (LocalStore file layout)."""
    from search.config import Settings
    from search.embed import load_embedder
    from search.store import connect_store

    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    with sqlite3.connect(f"file:{src / 'store.sqlite3'}?mode=ro", uri=True) as conn:
        conn.execute(f"VACUUM INTO '{dst / 'store.sqlite3'}'")
        urls = [u for (u,) in conn.execute("SELECT DISTINCT url FROM passages") if TRANSLATED.search(u)]
    settings = Settings.load(env={"CITED_DATA_DIR": str(dst), "CITED_STORE": "local"})
    embedder = load_embedder(settings)
    store = connect_store(settings)
    store.open(embedder.name, embedder.dim)
    removed = sum(store.delete_page(u) for u in urls)
    store.close()
    print(f"cross-lingual index: removed {len(urls)} translated pages ({removed} passages)", file=sys.stderr)


def run_eval(data_dir: Path, out: Path, base: str, modes: str, extra: list[str]) -> None:
    env = dict(os.environ, CITED_DATA_DIR=str(data_dir), CITED_STORE="local")
    cmd = [sys.executable, "-m", "search.cli", "eval", str(DEV_SET), "--modes", modes, "--base-url", base,
           "--out", str(out), "--resume", *extra]
    print("+ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=REPO, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=CACHE / "eval-faq")
    parser.add_argument("--modes", default="bm25,dense,hybrid,rerank")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--port", type=int, default=18791)
    parser.add_argument("--scenarios", default="same-language,cross-lingual")
    args = parser.parse_args()
    server = _Server(("127.0.0.1", args.port), functools.partial(_Quiet, directory=str(CORPUS)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{args.port}"
    try:
        all_dir, en_dir = args.out / "index-all", args.out / "index-en"
        if passage_count(all_dir) == 0:
            crawl_faq(all_dir, base)
        if passage_count(en_dir) == 0:
            english_only_copy(all_dir, en_dir)
        limit = ["--limit", str(args.limit)] if args.limit else []
        scenarios = args.scenarios.split(",")
        if "same-language" in scenarios:
            run_eval(all_dir, args.out / "same-language", base, args.modes, limit)
        if "cross-lingual" in scenarios:
            run_eval(en_dir, args.out / "cross-lingual", base, args.modes,
                     ["--relevant-field", "relevant_en", "--langs", ",".join(FAQ_LANGS), *limit])
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()

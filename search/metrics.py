"""Retrieval metrics and paired significance tests, as small pure functions.

Why a module of its own: the evaluation command, the CI quality gate, the benchmarks and
anyone comparing two runs must compute exactly the same numbers, and pure functions over
plain lists are easy to check against hand-computed values (tests/data/metric_cases.json).

What counts as relevant. A query's ``relevant`` list names *interchangeable copies of one
answer*: in the development set, the question's section in each of the ten FAQ
translations, plus the English FAQ's alias path (``X.html`` links to ``X.en.html``). Finding
any one copy answers the question, and an index that holds only some copies (the crawler
indexes an alias once; the cross-lingual scenario leaves translations out) must still be
able to score 1. So every metric here depends on the rank of the *first* relevant item:

- Recall@k is answer recall, the "top-k retrieval accuracy" of open-domain QA (DPR,
  Karpukhin et al. 2020): 1 when a relevant item is within the top k, else 0.
- nDCG@10 with binary gains and one ideal relevant item: 1/log2(1 + rank).
- MRR@10: 1/rank, 0 beyond rank 10.

Levels. *Page* level compares URLs without their ``#fragment``; *section* level compares
``url#anchor``. Rankings are de-duplicated per level before scoring (two passages of one
page are one page), so a page's second passage does not push other pages down.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence
from urllib.parse import urljoin, urlsplit, urlunsplit

import numpy as np

LEVELS = ("page", "section")
RECALL_KS = (1, 5, 10, 50)
CUTOFF = 10  # for nDCG@10 and MRR@10


# ------------------------------------------------------------------------ URLs and levels
def normalize_link(link: str) -> str:
    """A link in the form used for matching: scheme and host lower-case, default port dropped.

    >>> normalize_link("HTTP://Example.org:80/a/B.html#Sec")
    'http://example.org/a/B.html#Sec'
    >>> normalize_link("doc/x.html#a")
    'doc/x.html#a'
    """
    link = link.strip()
    parts = urlsplit(link)
    if not parts.scheme:
        return link
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port in (None, default) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, parts.fragment))


def page_of(link: str) -> str:
    """The page a link points into: the link without its ``#fragment``.

    >>> page_of("http://h/doc/faq.html#install")
    'http://h/doc/faq.html'
    """
    return link.split("#", 1)[0]


def at_level(link: str, level: str) -> str:
    """The key a link is compared by at ``level`` ("page" or "section").

    >>> at_level("http://h/p.html#a", "page"), at_level("http://h/p.html#a", "section")
    ('http://h/p.html', 'http://h/p.html#a')
    """
    if level == "page":
        return page_of(link)
    if level == "section":
        return link
    raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")


def resolve_relevant(relevant: Iterable[str], base_url: str | None) -> list[str]:
    """Relevant entries as absolute, normalised links; relative paths are joined to ``base_url``.

    Why: the development set names sections by their path under the served ``/usr/share``
    (``doc/debian/FAQ/x.en.html#a``) while the index holds the URLs the crawler fetched.

    >>> resolve_relevant(["doc/a.html#x", "http://other/b.html"], "http://127.0.0.1:8000")
    ['http://127.0.0.1:8000/doc/a.html#x', 'http://other/b.html']
    """
    out = []
    for item in relevant:
        item = item.strip()
        if base_url and not urlsplit(item).scheme:
            item = urljoin(base_url.rstrip("/") + "/", item.lstrip("/"))
        out.append(normalize_link(item))
    return out


def dedupe(items: Iterable[str]) -> list[str]:
    """Items in order of first appearance, repeats removed.

    >>> dedupe(["a", "b", "a", "c", "b"])
    ['a', 'b', 'c']
    """
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def relevant_ranks(ranked_links: Sequence[str], relevant: Iterable[str], level: str) -> list[int]:
    """1-based ranks, in the level's de-duplicated ranking, of the items that are relevant.

    >>> links = ["http://h/a#1", "http://h/a#2", "http://h/b#1", "http://h/c#9"]
    >>> relevant_ranks(links, ["http://h/c#1", "http://h/a#2"], "page")
    [1, 3]
    >>> relevant_ranks(links, ["http://h/c#1", "http://h/a#2"], "section")
    [2]
    """
    wanted = {at_level(normalize_link(r), level) for r in relevant}
    ranking = dedupe(at_level(normalize_link(link), level) for link in ranked_links)
    return [i for i, key in enumerate(ranking, start=1) if key in wanted]


# ------------------------------------------------------------------------ per-query metrics
def recall_at_k(first_rank: int | None, k: int) -> float:
    """Answer recall: 1.0 when the first relevant item is within the top ``k``.

    >>> recall_at_k(3, 5), recall_at_k(6, 5), recall_at_k(None, 50)
    (1.0, 0.0, 0.0)
    """
    return 1.0 if first_rank is not None and first_rank <= k else 0.0


def ndcg_at_k(first_rank: int | None, k: int = CUTOFF) -> float:
    """Binary nDCG@k with one ideal relevant item: 1/log2(1 + rank) within the top ``k``.

    >>> ndcg_at_k(1), round(ndcg_at_k(3), 4), ndcg_at_k(11)
    (1.0, 0.5, 0.0)
    """
    if first_rank is None or first_rank > k:
        return 0.0
    return 1.0 / math.log2(1 + first_rank)


def mrr_at_k(first_rank: int | None, k: int = CUTOFF) -> float:
    """Reciprocal rank of the first relevant item, 0 beyond rank ``k``.

    >>> mrr_at_k(4), mrr_at_k(None), mrr_at_k(11)
    (0.25, 0.0, 0.0)
    """
    if first_rank is None or first_rank > k:
        return 0.0
    return 1.0 / first_rank


def query_scores(first_rank: int | None) -> dict[str, float]:
    """Every metric of one query at one level, keyed as in the metrics document.

    >>> query_scores(2)["mrr@10"], query_scores(2)["recall@1"], query_scores(2)["recall@5"]
    (0.5, 0.0, 1.0)
    """
    scores = {f"recall@{k}": recall_at_k(first_rank, k) for k in RECALL_KS}
    scores["ndcg@10"] = ndcg_at_k(first_rank, CUTOFF)
    scores["mrr@10"] = mrr_at_k(first_rank, CUTOFF)
    return scores


def score_ranking(ranked_links: Sequence[str], relevant: Iterable[str]) -> dict[str, dict]:
    """Ranks and scores of one ranking at both levels: ``{level: {"first_rank", "scores"}}``.

    >>> out = score_ranking(["http://h/a#1", "http://h/b#2"], ["http://h/b#1"])
    >>> out["page"]["first_rank"], out["section"]["first_rank"], out["page"]["scores"]["mrr@10"]
    (2, None, 0.5)
    """
    relevant = list(relevant)
    out: dict[str, dict] = {}
    for level in LEVELS:
        ranks = relevant_ranks(ranked_links, relevant, level)
        first = ranks[0] if ranks else None
        out[level] = {"first_rank": first, "ranks": ranks, "scores": query_scores(first)}
    return out


def mean_scores(per_query: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over queries (an empty list gives an empty dict).

    >>> mean_scores([{"mrr@10": 1.0}, {"mrr@10": 0.5}])
    {'mrr@10': 0.75}
    """
    if not per_query:
        return {}
    keys = per_query[0].keys()
    return {key: float(np.mean([q[key] for q in per_query])) for key in keys}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (linear interpolation), None for no values.

    >>> percentile([1, 2, 3, 4], 50), percentile([], 95)
    (2.5, None)
    """
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


# ------------------------------------------------------------------------ significance
def _paired_diffs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    return np.asarray(b, dtype=float) - np.asarray(a, dtype=float)


def paired_randomization_test(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000, seed: int = 0
) -> float:
    """Two-sided p-value that systems A and B score the same, by a paired randomisation test.

    Why this test: per-query scores such as MRR are far from normal and often tied; the
    randomisation (sign-flip permutation) test assumes nothing about their distribution and
    is the usual choice in IR (Smucker, Allan & Carterette 2007). Under the null hypothesis
    each query's pair of scores could have come in either order, so the sign of each
    difference is flipped at random and the observed |mean difference| is compared with
    the resulting distribution. The +1 correction keeps p above 0 for a finite sample.
    The seed is fixed so the same inputs always give the same p-value.

    >>> paired_randomization_test([0.5] * 20, [0.5] * 20)
    1.0
    >>> paired_randomization_test([0.0] * 30, [1.0] * 30) < 0.001
    True
    """
    diffs = _paired_diffs(a, b)
    if diffs.size == 0 or not np.any(diffs):
        return 1.0
    observed = abs(diffs.mean())
    rng = np.random.default_rng(seed)
    extreme = 0
    batch = 2_000
    done = 0
    while done < n_resamples:
        n = min(batch, n_resamples - done)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, diffs.size))
        means = np.abs((signs * diffs).mean(axis=1))
        extreme += int(np.count_nonzero(means >= observed - 1e-12))
        done += n
    return (extreme + 1) / (n_resamples + 1)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> dict[str, float]:
    """Mean difference B - A with a percentile bootstrap confidence interval over queries.

    The interval says how large the difference plausibly is; the p-value is the share of
    resampled mean differences on the other side of zero, doubled (two-sided).

    >>> out = paired_bootstrap([0.0, 1.0] * 20, [1.0, 1.0] * 20)
    >>> out["diff"], out["low"] > 0, out["p"] < 0.01
    (0.5, True, True)
    """
    diffs = _paired_diffs(a, b)
    if diffs.size == 0:
        return {"diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diffs.size, size=(n_resamples, diffs.size))
    means = diffs[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    below = np.count_nonzero(means <= 0) / n_resamples
    above = np.count_nonzero(means >= 0) / n_resamples
    return {
        "diff": float(diffs.mean()),
        "low": float(np.quantile(means, alpha)),
        "high": float(np.quantile(means, 1 - alpha)),
        "p": float(min(1.0, 2 * min(below, above))),
    }

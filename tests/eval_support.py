"""A tiny in-memory retriever and answerer for the evaluation tests.

Why here and not in search/: the evaluation code is written against the pinned
``Retriever.search_many`` / ``AnswerPipeline.answer`` interfaces; these stand-ins let its
bookkeeping (ranks, resume, reports, comparisons) be checked on hand-made rankings whose
correct scores are known exactly. The real retriever is evaluated by the quality gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from search.documents import Answer, Citation, Hit, Passage, Source


@dataclass
class FakeResult:
    query: str
    lang: str
    mode: str
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)


def passage(link: str, lang: str = "en", title: str = "") -> Passage:
    url, _, anchor = link.partition("#")
    return Passage(id=link, url=url, text=title or link, anchor=anchor, title=title or link, lang=lang)


class ScriptedRetriever:
    """Returns, for each query text and mode, a ranking given in advance (links in order).

    ``fail_modes`` raise a RuntimeError (a mode that cannot run); a query in
    ``bad_queries`` raises ValueError, like ``QueryError``; ``interrupt_after`` raises
    KeyboardInterrupt on that many-th call of search_many, like Ctrl-C mid-run.
    """

    def __init__(self, rankings: dict[str, dict[str, Sequence[str]]], fail_modes: Sequence[str] = (),
                 bad_queries: Sequence[str] = (), interrupt_after: int | None = None) -> None:
        self.rankings = rankings
        self.fail_modes = set(fail_modes)
        self.bad_queries = set(bad_queries)
        self.interrupt_after = interrupt_after
        self.calls: list[tuple[str, list[str]]] = []
        self.filters_seen: list = []

    def search(self, query: str, k: int = 10, mode: str = "hybrid", filters=None) -> FakeResult:
        if mode in self.fail_modes:
            raise RuntimeError(f"mode {mode} is not configured")
        if query in self.bad_queries or not query.strip():
            raise ValueError(f"unusable query {query!r}")
        links = list(self.rankings.get(mode, {}).get(query, []))[:k]
        hits = [Hit(passage(link), {"fused": 1.0 / (i + 1)}) for i, link in enumerate(links)]
        return FakeResult(query, "en", mode, hits, {"embed": 0.001, "search": 0.002})

    def search_many(self, queries: list[str], k: int, mode: str, filters=None) -> list[FakeResult]:
        self.calls.append((mode, list(queries)))
        self.filters_seen.append(filters)
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        return [self.search(q, k=k, mode=mode, filters=filters) for q in queries]


class ScriptedAnswerer:
    """Returns a prepared Answer per query text (a RuntimeError for ``failing`` queries)."""

    def __init__(self, answers: dict[str, Answer], failing: Sequence[str] = ()) -> None:
        self.answers = answers
        self.failing = set(failing)

    def answer(self, query: str, history=None) -> Answer:
        if query in self.failing:
            raise RuntimeError("generator crashed")
        return self.answers[query]


def make_answer(query: str, text: str, source_links: Sequence[str], supported: Sequence[bool] = (),
                lang: str = "en") -> Answer:
    sources = [Source(n=i + 1, url=link, title=link) for i, link in enumerate(source_links)]
    citations = [Citation(n=1, sentence=text, supported=s) for s in supported]
    return Answer(query=query, lang=lang, text=text, sources=sources, citations=citations,
                  timings={"retrieve": 0.01, "generate": 0.2})

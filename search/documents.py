"""The data model shared by every stage.

Why plain dataclasses: stages are swappable (another store, another model), so what
passes between them must be small, explicit and serialisable to JSON without a framework.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np


def passage_id(canonical_url: str, anchor: str, ordinal: int) -> str:
    """Stable id: the same page, section and position always get the same id.

    >>> passage_id("http://a/x", "intro", 0) == passage_id("http://a/x", "intro", 0)
    True
    """
    key = f"{canonical_url}\x1f{anchor}\x1f{ordinal}".encode()
    return hashlib.sha1(key).hexdigest()[:24]


def site_of(url: str) -> str:
    """The host part of a URL (lower-case, without port), used for the ``site`` filter."""
    return (urlsplit(url).hostname or "").lower()


@dataclass
class Section:
    """One part of a page under a heading; ``anchor`` is the id a link can jump to."""

    anchor: str
    heading: str
    text: str


@dataclass
class Page:
    """A fetched and extracted page, before it is split into passages."""

    url: str
    final_url: str = ""
    canonical_url: str = ""
    title: str = ""
    lang: str = ""
    text: str = ""
    sections: list[Section] = field(default_factory=list)
    published: date | None = None
    fetched_at: datetime | None = None
    etag: str = ""
    last_modified: str = ""
    content_hash: str = ""
    status: int = 0

    @property
    def key_url(self) -> str:
        """The URL the page is known by: canonical, else final, else requested."""
        return self.canonical_url or self.final_url or self.url


@dataclass
class Passage:
    """The unit of retrieval: a piece of one section of one page."""

    id: str
    url: str
    text: str
    anchor: str = ""
    title: str = ""
    heading: str = ""
    lang: str = ""
    position: int = 0
    page_hash: str = ""
    published: date | None = None
    vector: np.ndarray | None = None

    @property
    def site(self) -> str:
        return site_of(self.url)

    @property
    def link(self) -> str:
        """``url#anchor``: where a citation of this passage points."""
        return f"{self.url}#{self.anchor}" if self.anchor else self.url

    def to_json(self, with_vector: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data.pop("vector")
        data["published"] = self.published.isoformat() if self.published else None
        if with_vector and self.vector is not None:
            data["vector"] = [float(x) for x in self.vector]
        return data


@dataclass
class Filters:
    """Restrictions on retrieval. Empty fields restrict nothing.

    ``lang`` and ``site`` accept one value or several; ``url_prefix`` matches the start of
    the URL; ``published_from``/``published_to`` are inclusive dates.
    """

    lang: Sequence[str] | str | None = None
    site: Sequence[str] | str | None = None
    url_prefix: str | None = None
    published_from: date | None = None
    published_to: date | None = None

    @staticmethod
    def _many(value: Sequence[str] | str | None) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value else []
        return [v for v in value if v]

    @property
    def langs(self) -> list[str]:
        return [v.lower() for v in self._many(self.lang)]

    @property
    def sites(self) -> list[str]:
        return [v.lower() for v in self._many(self.site)]

    def is_empty(self) -> bool:
        return not (self.langs or self.sites or self.url_prefix or self.published_from or self.published_to)

    def matches(self, p: Passage) -> bool:
        """Whether a passage passes the filters (the reference semantics for every store)."""
        if self.langs and p.lang.lower() not in self.langs:
            return False
        if self.sites and p.site not in self.sites:
            return False
        if self.url_prefix and not p.url.startswith(self.url_prefix):
            return False
        if self.published_from and (p.published is None or p.published < self.published_from):
            return False
        if self.published_to and (p.published is None or p.published > self.published_to):
            return False
        return True


@dataclass
class Hit:
    """A retrieved passage and the score each stage gave it."""

    passage: Passage
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The latest stage's score (rerank > fused > dense > bm25)."""
        for key in ("rerank", "fused", "dense", "bm25"):
            if key in self.scores:
                return self.scores[key]
        return 0.0


@dataclass
class CrawlRecord:
    """What the crawler remembers of a URL, so crawls resume and re-crawls are incremental."""

    url: str
    status: str = ""  # "indexed", "unchanged", "skipped:<reason>", "error:<reason>", "queued"
    http_status: int = 0
    etag: str = ""
    last_modified: str = ""
    content_hash: str = ""
    fetched_at: datetime | None = None
    depth: int = 0


@dataclass
class Source:
    """A numbered source shown with an answer."""

    n: int
    url: str
    title: str
    passage_id: str = ""
    lang: str = ""
    snippet: str = ""


@dataclass
class Citation:
    """One [n] in an answer sentence, checked against the passage it points to."""

    n: int
    sentence: str
    supported: bool
    url: str = ""
    quote: str = ""
    score: float = 0.0


@dataclass
class Answer:
    query: str
    lang: str
    text: str
    sources: list[Source] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    related: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

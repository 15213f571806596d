"""Rerankers: the protocol, a real CrossEncoder forward pass, and the LLM judge when its model is here."""

from __future__ import annotations

import importlib.util

import pytest

from search.config import Settings
from search.documents import Passage
from search.rerank import CrossEncoderReranker, NoReranker, RerankError, Reranker, find_generator_gguf, load_reranker, passage_text


def test_none_keeps_the_incoming_order():
    r = load_reranker(Settings.load(env={"CITED_RERANK_MODEL": "none"}))
    assert isinstance(r, NoReranker) and isinstance(r, Reranker)
    scores = r.score("q", ["a", "b", "c"])
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    assert r.score("q", []) == []


def test_passage_text_puts_the_heading_first():
    p = Passage("1", "http://h/x", "Use apt.", heading="How do I install?")
    assert passage_text(p) == "How do I install?\nUse apt."
    assert passage_text("plain") == "plain"


def test_missing_cross_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(RerankError, match="CITED_RERANK_MODEL"):
        CrossEncoderReranker(str(tmp_path / "no-such-model"))


def test_missing_gguf_is_a_clear_error(tmp_path):
    settings = Settings.load(env={"CITED_DATA_DIR": str(tmp_path), "CITED_GENERATOR_MODEL": str(tmp_path / "x.gguf")})
    with pytest.raises(RerankError, match="GGUF"):
        find_generator_gguf(settings)


@pytest.fixture(scope="module")
def cross_encoder():
    """A real CrossEncoder forward pass. No trained cross-encoder ships as a pip package, so
    this loads the MiniLM checkpoint as one (its scoring head is untrained): the test checks
    the mechanics (batching, truncation, order, determinism), not relevance quality."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from search.embed import minilm_path

    return CrossEncoderReranker(minilm_path(), batch_size=4, max_length=128)


@pytest.mark.slow
def test_cross_encoder_scores_every_passage_deterministically(cross_encoder):
    passages = [Passage(str(i), "http://h/x", f"passage number {i} about Debian packages") for i in range(9)]
    scores = cross_encoder.score("How do I install a package?", passages)
    assert len(scores) == 9 and all(isinstance(s, float) for s in scores)
    # batching (4 at a time) must not change a passage's score
    one_by_one = [cross_encoder.score("How do I install a package?", [p])[0] for p in passages]
    assert scores == pytest.approx(one_by_one, abs=1e-4)


@pytest.mark.slow
def test_cross_encoder_truncates_very_long_passages(cross_encoder):
    long = "Debian " * 5000
    [score] = cross_encoder.score("What is Debian?", [long])
    [prefix] = cross_encoder.score("What is Debian?", ["Debian " * 400])
    assert score == pytest.approx(prefix, abs=1e-3)  # both cut at max_length tokens


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_llm_judge_prefers_the_answering_passage():
    from tests.answer_support import answer_settings

    judge = load_reranker(answer_settings().replace(rerank_model="llm-judge"))
    question = "How can I keep my Debian system current?"
    scores = judge.score(
        question,
        [
            "The PostgreSQL planner chooses a join order using statistics about each table.",
            "Use apt-get update followed by apt-get upgrade to keep a Debian system current.",
        ],
    )
    assert scores[1] > scores[0]

"""Rerankers: score (query, passage) pairs jointly, after fusion, for the top candidates.

Why a protocol: a cross-encoder is the right tool on a GPU, an LLM judge is what a
machine with only the generator model has, and ``none`` is the honest default where
neither is worth its latency (measured: see the retrieval issue note).

Backends (setting ``rerank_model``):
- ``none``: keeps the fused order (scores are 0, the order of the input).
- ``llm-judge``: asks the generator model (llama-cpp-python + the packaged GGUF, or
  ``generator_model`` as a path to a GGUF) "is this passage relevant: yes/no" and scores
  log P(yes) - log P(no) from the next-token logits.
- anything else: a sentence-transformers CrossEncoder (hub id or local path), batched,
  truncated to its max length, fp16 on CUDA.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from search.config import Settings
from search.documents import Passage
from search.embed import pick_device
from search.generate import close_at_exit


class RerankError(RuntimeError):
    """A reranker cannot be loaded or run; the message says what to install or set."""


@runtime_checkable
class Reranker(Protocol):
    name: str

    def score(self, query: str, passages: Sequence[Passage | str]) -> list[float]:
        """One relevance score per passage, higher is more relevant (same order as given)."""


def passage_text(passage: Passage | str) -> str:
    """What a reranker reads of a passage: its heading and text (the heading names the topic)."""
    if isinstance(passage, str):
        return passage
    return f"{passage.heading}\n{passage.text}" if passage.heading else passage.text


class NoReranker:
    """Keeps the incoming order: scores fall from 0 by position."""

    name = "none"

    def score(self, query: str, passages: Sequence[Passage | str]) -> list[float]:
        return [-float(i) for i in range(len(passages))]


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder; fp16 on CUDA; inputs truncated to its max length."""

    def __init__(self, model: str, batch_size: int = 32, device: str = "auto", max_length: int = 512) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:  # pragma: no cover - sentence-transformers is a dependency
            raise RerankError("the cross-encoder reranker needs sentence-transformers") from exc
        self.device = pick_device(device)
        try:
            self._model = CrossEncoder(model, device=self.device, max_length=max_length)
        except (OSError, ValueError) as exc:
            raise RerankError(
                f"cannot load cross-encoder {model!r}: {exc}. Set CITED_RERANK_MODEL to a local path, or to none"
            ) from exc
        if self.device == "cuda":
            self._model.model.half()
        self.name = model
        self.max_length = max_length
        self._batch_size = batch_size

    def score(self, query: str, passages: Sequence[Passage | str]) -> list[float]:
        if not passages:
            return []
        pairs = [(query, passage_text(p)) for p in passages]
        scores = self._model.predict(pairs, batch_size=self._batch_size, convert_to_numpy=True, show_progress_bar=False)
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim > 1:  # multi-label heads: the last column is "relevant"
            scores = scores[:, -1]
        return [float(s) for s in scores]


JUDGE_PROMPT = (
    "<|im_start|>system\nYou judge search results. Answer with one word: yes or no.<|im_end|>\n"
    "<|im_start|>user\nQuestion: {query}\n\nPassage: {passage}\n\n"
    "Does the passage answer the question? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n"
)


class LlmJudgeReranker:
    """The generator model as a relevance judge: log-odds of "yes" over "no" as the score.

    Why logits and not generated text: one forward pass per passage (no sampling) gives a
    graded score that can order passages, where a generated "yes"/"no" only splits them.
    The prompt uses the Qwen chat template of the packaged model.
    """

    def __init__(self, model_path: str, n_ctx: int = 1024, threads: int = 0, max_passage_chars: int = 1200) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise RerankError("the LLM judge needs llama-cpp-python (pip install llama-cpp-python==0.3.36)") from exc
        if not os.path.exists(model_path):
            raise RerankError(f"the LLM judge's model {model_path} does not exist (cited ask downloads it first)")
        self._llm = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=threads or None, logits_all=False, verbose=False)
        close_at_exit(self._llm)
        self.name = "llm-judge:" + os.path.basename(model_path)
        self._max_chars = max_passage_chars
        self._yes = [self._llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in ("yes", "Yes")]
        self._no = [self._llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in ("no", "No")]
        self._lock = threading.Lock()

    def _log_odds(self, prompt: str) -> float:
        tokens = self._llm.tokenize(prompt.encode(), add_bos=False, special=True)
        tokens = tokens[-(self._llm.n_ctx() - 1) :]
        self._llm.reset()
        self._llm.eval(tokens)
        # With logits_all=False, llama-cpp-python 0.3.x leaves Llama.scores zeroed; the
        # last position's logits are read from the context directly.
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        logp = logits - (top + np.log(np.exp(logits - top).sum()))
        yes = np.logaddexp.reduce(logp[self._yes])
        no = np.logaddexp.reduce(logp[self._no])
        return float(yes - no)

    def score(self, query: str, passages: Sequence[Passage | str]) -> list[float]:
        with self._lock:
            return [
                self._log_odds(JUDGE_PROMPT.format(query=query, passage=passage_text(p)[: self._max_chars]))
                for p in passages
            ]


def find_generator_gguf(settings: Settings) -> str:
    """The GGUF the judge uses: ``generator_model`` if it is a file, else the packaged model
    (assembled once from its pip parts, exactly as the llama-cpp generator does)."""
    if settings.generator_model and os.path.isfile(settings.generator_model):
        return settings.generator_model
    if settings.generator_model.endswith(".gguf"):
        raise RerankError(f"the GGUF file {settings.generator_model} (CITED_GENERATOR_MODEL) does not exist")
    from search.packaged_model import ModelUnavailable, ensure_model

    try:
        return str(ensure_model(settings, progress=False))
    except ModelUnavailable as exc:
        raise RerankError(
            f"no GGUF model for the LLM judge ({exc}); set CITED_GENERATOR_MODEL to a .gguf file, "
            "or use CITED_RERANK_MODEL=none"
        ) from None


def load_reranker(settings: Settings) -> Reranker:
    """The configured reranker, loaded once per process."""
    return _load(settings.rerank_model, settings.device, settings)


@lru_cache(maxsize=4)
def _load(model: str, device: str, settings: Settings) -> Reranker:
    if model in ("", "none"):
        return NoReranker()
    if model == "llm-judge":
        return LlmJudgeReranker(find_generator_gguf(settings))
    return CrossEncoderReranker(model.removeprefix("st:"), device=device)

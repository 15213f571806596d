"""Generators: chat messages -> answer text, streamed as text deltas.

Why a protocol: the answer pipeline must run the same way on a laptop CPU (llama.cpp and
the packaged GGUF), against any OpenAI-compatible server (vLLM, Ollama, llama.cpp's
server), on a GPU (transformers), and with no model at all (extractive). Each backend
offers ``stream`` (an iterator of text deltas that records why it stopped) and
``complete`` (the whole text).

Backends (setting ``generator``):
- ``llama-cpp``: a GGUF through llama-cpp-python; default model: the packaged
  Qwen2.5-Coder-1.5B-Instruct (search/packaged_model.py), or ``generator_model`` as a path.
- ``openai``: ``openai_base_url`` + ``generator_model`` + ``openai_api_key``, SSE streaming.
- ``transformers``: ``generator_model`` (hub id or path), CUDA bf16 when present, else CPU.
- ``extractive``: no model; picks the evidence sentences closest to the question.
- ``auto``: llama-cpp when llama-cpp-python and the model are installed, else extractive.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import socket
import threading
import urllib.error
import urllib.request
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence, runtime_checkable

from search.config import Settings

if TYPE_CHECKING:
    from search.cite import EvidenceItem

Messages = Sequence[dict[str, str]]


class GeneratorError(RuntimeError):
    """A generator cannot produce text (server down, timeout, model missing); says why."""


class TextStream:
    """An iterator of text deltas that records, once exhausted, why generation stopped.

    ``finish_reason`` is "stop" (the model ended), "length" (max_tokens reached) or "".
    """

    def __init__(self, deltas: Iterator[str], finish: Callable[[], str] | None = None) -> None:
        self._deltas = deltas
        self._finish = finish
        self.finish_reason = ""
        self.pieces = 0

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        try:
            delta = next(self._deltas)
        except StopIteration:
            if not self.finish_reason and self._finish is not None:
                self.finish_reason = self._finish() or ""
            raise
        self.pieces += 1
        return delta

    def close(self) -> None:
        close = getattr(self._deltas, "close", None)
        if close:
            close()


@runtime_checkable
class Generator(Protocol):
    name: str  # backend:model, shown in answers
    is_model: bool  # False for extractive: the pipeline then rewrites and suggests by rules

    def stream(
        self,
        messages: Messages,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        evidence: "Sequence[EvidenceItem] | None" = None,
    ) -> TextStream:
        """Text deltas of the reply to ``messages``. ``evidence`` is used by extractive only."""

    def complete(
        self,
        messages: Messages,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: Sequence[str] | None = None,
        evidence: "Sequence[EvidenceItem] | None" = None,
    ) -> str:
        """The whole reply."""


class _CompleteMixin:
    def complete(self, messages, max_tokens=256, temperature=0.0, stop=None, evidence=None) -> str:
        return "".join(self.stream(messages, max_tokens, temperature, stop, evidence))


# ------------------------------------------------------------------ llama.cpp
class LlamaCppGenerator(_CompleteMixin):
    """A GGUF model in-process through llama-cpp-python. One instance per process.

    Why a lock: a llama.cpp context serves one generation at a time; concurrent web
    requests queue rather than corrupt its state.
    """

    is_model = True

    def __init__(self, model_path: str, n_ctx: int = 4096, n_threads: int = 0) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise GeneratorError("llama-cpp-python is not installed: pip install llama-cpp-python==0.3.36") from exc
        threads = n_threads or os.cpu_count() or 1
        self.model_path = model_path
        self.name = "llama-cpp:" + os.path.basename(model_path).removesuffix(".gguf")
        self.llm = Llama(
            model_path=model_path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        close_at_exit(self.llm)
        self.n_ctx = n_ctx
        self.lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream(self, messages, max_tokens=256, temperature=0.0, stop=None, evidence=None) -> TextStream:
        state = {"finish": ""}

        def deltas() -> Iterator[str]:
            with self.lock:
                try:
                    chunks = self.llm.create_chat_completion(
                        messages=list(messages),
                        max_tokens=max_tokens,
                        temperature=temperature,
                        stop=list(stop or []),
                        stream=True,
                    )
                    for chunk in chunks:
                        choice = chunk["choices"][0]
                        text = choice.get("delta", {}).get("content") or ""
                        if choice.get("finish_reason"):
                            state["finish"] = choice["finish_reason"]
                        if text:
                            yield text
                except ValueError as exc:  # llama.cpp: prompt longer than the context window
                    raise GeneratorError(f"llama.cpp refused the prompt: {exc}") from exc

        return TextStream(deltas(), lambda: state["finish"])


def close_at_exit(llm: object) -> None:
    """Free a llama.cpp model at interpreter exit, while its modules are still loaded.

    Why: models live for the process (they are cached), so llama-cpp-python frees them in
    ``Llama.__del__`` during interpreter teardown, when its ctypes bindings are already
    gone: every run ended with "TypeError: 'NoneType' object is not callable". A weak
    reference keeps this from holding a model that is dropped earlier.
    """
    ref = weakref.ref(llm)

    def close() -> None:
        model = ref()
        if model is not None:
            model.close()

    atexit.register(close)


@lru_cache(maxsize=2)
def _llama(model_path: str, n_ctx: int, n_threads: int) -> LlamaCppGenerator:
    return LlamaCppGenerator(model_path, n_ctx=n_ctx, n_threads=n_threads)


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def load_llama_cpp(settings: Settings) -> LlamaCppGenerator:
    """The llama.cpp generator, loaded once per process (the GGUF takes seconds to map)."""
    if settings.generator_model and settings.generator_model.endswith(".gguf"):
        path = settings.generator_model
        if not os.path.isfile(path):
            raise GeneratorError(f"CITED_GENERATOR_MODEL {path} does not exist")
    else:
        from search.packaged_model import ModelUnavailable, ensure_model

        try:
            path = str(ensure_model(settings))
        except ModelUnavailable as exc:
            raise GeneratorError(str(exc)) from exc
    return _llama(path, settings.generator_context, settings.generator_threads)


# ------------------------------------------------------------------ OpenAI-compatible HTTP
class OpenAIGenerator(_CompleteMixin):
    """Any server speaking the OpenAI chat-completions API, streamed with Server-Sent Events.

    Why urllib and not the openai package: one POST and a line reader is all it takes, and
    it keeps timeouts and error messages under our control.
    """

    is_model = True

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 120.0) -> None:
        if not base_url:
            raise GeneratorError("the openai generator needs CITED_OPENAI_BASE_URL (e.g. http://127.0.0.1:8080/v1)")
        base = base_url.rstrip("/")
        self.url = base + "/chat/completions" if base.endswith("/v1") else base + "/v1/chat/completions"
        self.model = model or "default"
        self.api_key = api_key
        self.timeout = timeout
        self.name = f"openai:{self.model}"

    def _request(self, body: dict) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")

    def stream(self, messages, max_tokens=256, temperature=0.0, stop=None, evidence=None) -> TextStream:
        body = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        if stop:
            body["stop"] = list(stop)
        state = {"finish": ""}

        def deltas() -> Iterator[str]:
            try:
                response = urllib.request.urlopen(self._request(body), timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                detail = exc.read(500).decode("utf-8", "replace")
                raise GeneratorError(f"the generator server at {self.url} answered HTTP {exc.code}: {detail}") from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    raise GeneratorError(f"the generator server at {self.url} timed out after {self.timeout:g}s") from exc
                raise GeneratorError(f"cannot reach the generator server at {self.url}: {reason}") from exc
            with response:
                try:
                    for raw in response:
                        line = raw.decode("utf-8", "replace").strip()
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        try:
                            event = json.loads(data)
                        except json.JSONDecodeError:
                            continue
                        if "error" in event:
                            raise GeneratorError(f"the generator server reported: {event['error']}")
                        choices = event.get("choices") or [{}]
                        choice = choices[0]
                        if choice.get("finish_reason"):
                            state["finish"] = choice["finish_reason"]
                        text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            yield text
                except (socket.timeout, TimeoutError) as exc:
                    raise GeneratorError(
                        f"the generator server at {self.url} stopped sending for {self.timeout:g}s"
                    ) from exc
                except OSError as exc:
                    raise GeneratorError(f"the connection to {self.url} broke: {exc}") from exc

        return TextStream(deltas(), lambda: state["finish"])


# ------------------------------------------------------------------ transformers
class TransformersGenerator(_CompleteMixin):
    """A causal LM through transformers: bf16 on CUDA, float32 on CPU; streamed by a thread."""

    is_model = True

    def __init__(self, model: str, device: str = "auto") -> None:
        if not model:
            raise GeneratorError("the transformers generator needs CITED_GENERATOR_MODEL (hub id or path)")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from search.embed import pick_device

        self.device = pick_device(device)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()
        except OSError as exc:
            raise GeneratorError(f"cannot load transformers model {model!r}: {exc}") from exc
        self.name = f"transformers:{model}"
        self.lock = threading.Lock()

    def stream(self, messages, max_tokens=256, temperature=0.0, stop=None, evidence=None) -> TextStream:
        from transformers import TextIteratorStreamer

        inputs = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        state = {"finish": "", "error": None}
        kwargs = dict(**inputs, streamer=streamer, max_new_tokens=max_tokens, do_sample=temperature > 0)
        if temperature > 0:
            kwargs["temperature"] = temperature

        def run() -> None:
            try:
                with self.lock:
                    out = self.model.generate(**kwargs)
                produced = out.shape[-1] - inputs["input_ids"].shape[-1]
                state["finish"] = "length" if produced >= max_tokens else "stop"
            except Exception as exc:  # surfaced in the consuming thread below
                state["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        def deltas() -> Iterator[str]:
            text = ""
            for piece in streamer:
                if piece:
                    text += piece
                    cut = _stop_at(text, stop)
                    if cut is not None:
                        state["finish"] = "stop"
                        yield piece[: max(0, len(piece) - (len(text) - cut))]
                        return
                    yield piece
            thread.join()
            if state["error"] is not None:
                raise GeneratorError(f"transformers generation failed: {state['error']}")

        return TextStream(deltas(), lambda: state["finish"])


def _stop_at(text: str, stop: Sequence[str] | None) -> int | None:
    positions = [text.find(s) for s in stop or [] if s and s in text]
    return min(positions) if positions else None


# ------------------------------------------------------------------ extractive
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")


class ExtractiveGenerator(_CompleteMixin):
    """No model: the evidence sentences most similar to the question, in source order, cited.

    Why it exists: the engine must answer (with citations that are supported by
    construction) on machines where no generator can be installed.
    """

    is_model = False
    name = "extractive"

    def __init__(self, embedder=None, max_sentences: int = 3) -> None:
        self._embedder = embedder
        self.max_sentences = max_sentences

    def stream(self, messages, max_tokens=256, temperature=0.0, stop=None, evidence=None) -> TextStream:
        text = self.answer(_last_user_question(messages), evidence or [], max_chars=max_tokens * 4)
        words = re.findall(r"\S+\s*|\s+", text)
        return TextStream(iter(words), lambda: "stop")

    def answer(self, question: str, evidence: Sequence["EvidenceItem"], max_chars: int = 1000) -> str:
        from search.cite import split_sentences

        candidates: list[tuple[int, int, str]] = []  # (source n, order, sentence)
        for item in evidence:
            for order, sentence in enumerate(split_sentences(item.text)):
                if len(sentence) >= 12 and not sentence.endswith((":", "：")):
                    candidates.append((item.n, order, sentence))
        if not candidates:
            return ""
        scores = self._scores(question, [c[2] for c in candidates])
        ranked = sorted(range(len(candidates)), key=lambda i: -scores[i])
        chosen: list[int] = []
        used = 0
        for i in ranked:
            sentence = candidates[i][2]
            if any(candidates[j][2] == sentence for j in chosen):
                continue
            if used + len(sentence) > max_chars and chosen:
                break
            chosen.append(i)
            used += len(sentence)
            if len(chosen) >= self.max_sentences:
                break
        chosen.sort(key=lambda i: (candidates[i][0], candidates[i][1]))
        parts = []
        for i in chosen:
            n, _, sentence = candidates[i]
            parts.append(_attach_marker(sentence, n))
        return " ".join(parts)

    def _scores(self, question: str, sentences: list[str]) -> list[float]:
        embedder = self._embedder
        if embedder is not None:
            import numpy as np

            q = embedder.encode_queries([question])
            s = embedder.encode_passages(sentences)
            return [float(x) for x in (s @ q[0])]
        from search.text import bm25_terms

        q_terms = set(bm25_terms(question))
        return [len(q_terms & set(bm25_terms(s))) / (1 + len(set(bm25_terms(s))) ** 0.5) for s in sentences]


def _attach_marker(sentence: str, n: int) -> str:
    """Put [n] before the sentence's final punctuation: "Use apt [1]." / "使用 apt[1]。"."""
    m = re.search(r"[.!?。！？]+$", sentence)
    body, end = (sentence[: m.start()], m.group()) if m else (sentence, "")
    separator = "" if _is_cjk_end(body) else " "
    return f"{body}{separator}[{n}]{end}"


def _is_cjk_end(text: str) -> bool:
    from search.text import has_cjk

    return bool(text) and has_cjk(text[-1])


def _last_user_question(messages: Messages) -> str:
    for message in reversed(list(messages)):
        if message.get("role") == "user":
            content = message.get("content", "")
            m = re.search(r"Question:\s*(.+?)\s*$", content, re.S)
            return m.group(1) if m else content
    return ""


# ------------------------------------------------------------------ choosing a backend
def load_generator(settings: Settings, embedder=None) -> Generator:
    """The configured generator. ``auto``: llama.cpp if installed with its model, else extractive."""
    choice = settings.generator
    if choice == "auto":
        from search.packaged_model import parts_installed

        has_gguf = settings.generator_model.endswith(".gguf") and os.path.isfile(settings.generator_model)
        if llama_cpp_available() and (has_gguf or parts_installed()):
            choice = "llama-cpp"
        else:
            choice = "extractive"
    if choice == "llama-cpp":
        return load_llama_cpp(settings)
    if choice == "openai":
        return OpenAIGenerator(
            settings.openai_base_url, settings.generator_model, settings.openai_api_key, settings.generator_timeout
        )
    if choice == "transformers":
        return _transformers(settings.generator_model, settings.device)
    return ExtractiveGenerator(embedder=embedder)


@lru_cache(maxsize=2)
def _transformers(model: str, device: str) -> TransformersGenerator:
    return TransformersGenerator(model, device)

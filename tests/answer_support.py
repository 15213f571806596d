"""Test helpers for the answer tests: a slice of the real Debian FAQ in a real LocalStore,
and a small retriever over it.

Why here and not in search/: the real retriever (search/retrieve.py, hybrid + rerank) is
another helper's module; the answer tests only need *a* retriever with the pinned
interface (``search(query, k, mode, filters) -> SearchResult``) over real passages, so a
minimal BM25 + kNN fusion lives with the tests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import lxml.html

from search.documents import Hit, Passage, passage_id
from search.retrieve import SearchResult
from search.text import detect_language

FAQ = Path("/usr/share/doc/debian/FAQ")
# A few pages of the FAQ in four languages: enough for real cross-language answers.
FAQ_PAGES = {
    "en": ["pkgtools.en.html", "pkg-basics.en.html"],
    "de": ["de/pkgtools.de.html"],
    "ja": ["ja/pkgtools.ja.html"],
    "zh": ["zh-cn/pkgtools.zh-cn.html"],
}


def faq_passages(base_url: str, root: Path = FAQ, pages: dict[str, list[str]] = FAQ_PAGES) -> list[Passage]:
    """Passages of the chosen FAQ pages: one per ``div.section`` (its own text, not its
    subsections'), anchored at the section's id, as the crawler's splitter would."""
    out: list[Passage] = []
    for paths in pages.values():
        for rel in paths:
            url = f"{base_url}/doc/debian/FAQ/{rel}"
            out += html_passages(url, (root / rel).read_bytes())
    return out


def html_passages(url: str, html: bytes | str, max_chars: int = 900) -> list[Passage]:
    tree = lxml.html.fromstring(html)
    title = (tree.findtext(".//title") or "").strip()
    passages: list[Passage] = []
    for section in tree.xpath("//div[contains(concat(' ', @class, ' '), ' section ')]"):
        heads = section.xpath("./div[@class='titlepage']//*[self::h2 or self::h3 or self::h4]")
        if not heads:
            continue
        anchors = heads[0].xpath(".//a/@id")
        anchor = anchors[0] if anchors else ""
        heading = " ".join(heads[0].text_content().split())
        parts = []
        for child in section:
            cls = child.get("class") or ""
            if child.tag == "div" and ("titlepage" in cls or "section" in cls.split()):
                continue
            parts.append(" ".join(child.text_content().split()))
        text = " ".join(p for p in parts if p).strip()
        if not text:
            continue
        lang = detect_language(text)
        for i, chunk in enumerate(_chunks(text, max_chars)):
            passages.append(
                Passage(
                    id=passage_id(url, anchor, i), url=url, text=chunk, anchor=anchor, title=title,
                    heading=heading, lang=lang, position=len(passages),
                )
            )
    return passages


def _chunks(text: str, max_chars: int) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    out, current = [], ""
    for word in text.split(" "):
        if current and len(current) + len(word) + 1 > max_chars:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    if current:
        out.append(current)
    return out


def index_passages(store, embedder, passages: Sequence[Passage]) -> None:
    vectors = embedder.encode_passages([f"{p.heading}\n{p.text}" for p in passages])
    for p, v in zip(passages, vectors):
        p.vector = v
    store.open(embedder.name, embedder.dim)
    report = store.upsert(list(passages))
    assert report.ok, report.failed




class TestRetriever:
    """BM25 + kNN over a store, fused by reciprocal rank (the pinned Retriever interface)."""

    __test__ = False  # not a pytest class

    def __init__(self, store, embedder, rrf_k: int = 60) -> None:
        self.store = store
        self.embedder = embedder
        self.rrf_k = rrf_k

    def search(self, query: str, k: int = 10, mode: str = "hybrid", filters=None) -> SearchResult:
        if not query.strip():
            raise ValueError("the query is empty")
        timings: dict[str, float] = {}
        t = time.perf_counter()
        bm25 = self.store.bm25(query, k=k * 2, filters=filters)
        timings["bm25"] = time.perf_counter() - t
        t = time.perf_counter()
        vector = self.embedder.encode_queries([query])[0]
        dense = self.store.knn(vector, k=k * 2, filters=filters)
        timings["dense"] = time.perf_counter() - t
        fused: dict[str, Hit] = {}
        for ranked, key in ((bm25, "bm25"), (dense, "dense")):
            for rank, hit in enumerate(ranked):
                entry = fused.setdefault(hit.passage.id, Hit(hit.passage, {}))
                entry.scores[key] = hit.scores[key]
                entry.scores["fused"] = entry.scores.get("fused", 0.0) + 1.0 / (self.rrf_k + rank + 1)
        hits = sorted(fused.values(), key=lambda h: -h.scores["fused"])[:k]
        return SearchResult(query, detect_language(query), mode, hits, timings)


# ------------------------------------------------------------------ a misbehaving model server
import http.server
import json
import socketserver
import threading


class _ChatHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_POST(self):  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        server: "ScriptedChatServer" = self.server  # type: ignore[assignment]
        server.requests.append(body)
        script = server.script
        if script.get("status", 200) != 200:
            self.send_response(script["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": {"message": "model overloaded"}}).encode())
            return
        if script.get("delay"):
            threading.Event().wait(script["delay"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunks = script.get("chunks", [])
        limit = body.get("max_tokens") or len(chunks)
        for i, text in enumerate(chunks[:limit]):
            event = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            if script.get("stall_after") == i:
                threading.Event().wait(script.get("stall", 5))
        finish = "length" if len(chunks) > limit else "stop"
        self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': finish}]})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


class ScriptedChatServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A real OpenAI-compatible HTTP server on loopback that replies with a set script.

    Why: malformed model output ([99], unclosed brackets, no citations, endless text,
    nothing at all), HTTP errors and stalls are what a real model does now and then but
    never on cue; this server produces them on cue, over the same SSE wire format.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.script: dict = {}
        self.requests: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply(self, text: str | list[str] = "", **options) -> None:
        chunks = text if isinstance(text, list) else [w for w in _pieces(text)]
        self.script = {"chunks": chunks, **options}


def _pieces(text: str) -> list[str]:
    import re

    return re.findall(r"\S+\s*|\s+", text)


# ------------------------------------------------------------------ once-per-process fixtures
import atexit
import functools
import os
import shutil
import tempfile
import urllib.request

from search.config import Settings

CACHE = Path(os.environ.get("CITED_CACHE", Path.home() / ".cache" / "cited"))
# The assembled GGUF lives in the cache, not in a test's tmp dir: assembling 1.1 GB per
# run would cost ~15 s and the disk space; ensure_model verifies it on reuse.
MODEL_DIR = Path(os.environ.get("CITED_MODEL_DIR") or CACHE / "models")


@functools.cache
def scratch_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="cited-answers-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def answer_settings(**env: str) -> Settings:
    values = {"CITED_DATA_DIR": str(scratch_dir() / "data"), "CITED_MODEL_DIR": str(MODEL_DIR),
              "CITED_RELATED_QUESTIONS": "0"}
    values.update({f"CITED_{k.upper()}": str(v) for k, v in env.items()})
    return Settings.load(env=values)


@functools.cache
def embedder():
    from search.embed import UseMultilingualEmbedder

    return UseMultilingualEmbedder()


@functools.cache
def faq_index(base_url: str):
    """A LocalStore holding the FAQ slice fetched over HTTP from ``base_url`` (built once)."""
    from search.store.local import LocalStore

    pages = {}
    for paths in FAQ_PAGES.values():
        for rel in paths:
            url = f"{base_url}/doc/debian/FAQ/{rel}"
            with urllib.request.urlopen(url, timeout=30) as response:
                pages[url] = response.read()
    passages = [p for url, html in pages.items() for p in html_passages(url, html)]
    store = LocalStore(scratch_dir() / f"faq-{len(passages)}.sqlite3")
    index_passages(store, embedder(), passages)
    return store, passages


@functools.cache
def llama_generator():
    """The packaged GGUF through llama.cpp, loaded once per test process."""
    from search.generate import load_llama_cpp

    return load_llama_cpp(answer_settings())

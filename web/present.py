"""Turning engine objects into what the API returns and the page shows.

Why separate from the routes: the JSON shapes are contracts (the API, `cited ask --json`,
the SSE events), and the highlighting is where untrusted page text meets markup, so both
deserve to be small, testable functions.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date, datetime
from typing import Any, Iterable

from search.documents import Hit
from search.text import bm25_terms, has_cjk

SNIPPET_CHARS = 320


def _plain(value: Any) -> Any:
    """JSON-safe copy of dataclasses, dates and numpy scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def hit_json(hit: Hit) -> dict[str, Any]:
    """One search hit: the passage (without its vector), where it links, and its scores."""
    p = hit.passage
    return {
        "id": p.id,
        "url": p.url,
        "anchor": p.anchor,
        "link": p.link,
        "title": p.title,
        "heading": p.heading,
        "site": p.site,
        "lang": p.lang,
        "text": p.text,
        "position": p.position,
        "published": p.published.isoformat() if p.published else None,
        "score": float(hit.score),
        "scores": {k: float(v) for k, v in hit.scores.items()},
    }


def answer_record(events: Iterable[tuple[str, dict[str, Any]]], query: str) -> dict[str, Any]:
    """The answer as `cited ask --json` prints it, collected from the pipeline's events:
    query, answer, lang, sources [{n, url, title, lang}], citations [{n, sentence,
    supported, url, quote, fragment_url...}], related, timings, models; ``error`` when the
    stream ended with one. The verified text of the ``citations`` event wins over the raw
    tokens (it drops citations to sources that do not exist)."""
    record: dict[str, Any] = {
        "query": query, "answer": "", "lang": "", "sources": [], "citations": [],
        "related": [], "timings": {}, "models": {},
    }
    raw = ""
    for event, data in events:
        if event == "sources":
            record["lang"] = data.get("lang", "") or record["lang"]
            record["sources"] = [
                {"n": s["n"], "url": s["url"], "title": s.get("title", ""), "lang": s.get("lang", "")}
                for s in data.get("sources", [])
            ]
        elif event == "token":
            raw += str(data.get("text", ""))
        elif event == "citations":
            if isinstance(data.get("text"), str):
                record["answer"] = data["text"]
            record["citations"] = [_plain(c) for c in data.get("citations", [])]
            if "supported_share" in data:
                record["supported_share"] = data["supported_share"]
        elif event == "related":
            record["related"] = list(data.get("questions", []))
        elif event == "done":
            record["timings"] = {k: float(v) for k, v in data.get("timings", {}).items()}
            record["models"] = {k: str(v) for k, v in data.get("models", {}).items()}
            record["lang"] = data.get("lang", "") or record["lang"]
        elif event == "error":
            record["error"] = {"code": str(data.get("code", "error")), "message": str(data.get("message", ""))}
            break
    if not record["answer"]:
        record["answer"] = raw
    return record


def sse_event(name: str, data: Any) -> str:
    """One Server-Sent Event; JSON never contains a raw newline, so one data line suffices."""
    return f"event: {name}\ndata: {json.dumps(_plain(data), ensure_ascii=False)}\n\n"


# Question words that would light up every snippet; highlighting is for the topic words.
STOP_WORDS = frozenset(
    "what how which who whom why when where with without the and for does did can could "
    "should would that this these those are was were from into about have has had not "
    "you your there their its any all some use used using".split()
)


def query_terms(query: str) -> list[str]:
    """The terms to highlight: the query's BM25 terms (words, CJK bigrams) without stop
    words and one- or two-letter words, longest first."""
    terms = {t for t in bm25_terms(query) if has_cjk(t) or (len(t) >= 3 and t not in STOP_WORDS)}
    return sorted(terms, key=lambda t: (-len(t), t))


def _term_pattern(term: str) -> str:
    """CJK terms match anywhere; other terms only at the start of a word ("package"
    matches "packages", "apt" does not match "adapt"), short ones only as whole words."""
    escaped = re.escape(term)
    if has_cjk(term):
        return escaped
    return rf"(?<!\w){escaped}" + (r"(?!\w)" if len(term) <= 3 else "")


def snippet(text: str, terms: Iterable[str], limit: int = SNIPPET_CHARS) -> str:
    """A window of ``text`` around the first query term, cut at word boundaries."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    lowered = text.casefold()
    first = min((i for i in (lowered.find(t) for t in terms) if i >= 0), default=0)
    start = max(0, first - limit // 4)
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < first else start
    end = min(len(text), start + limit)
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start + limit // 2 else end
    return ("… " if start else "") + text[start:end] + (" …" if end < len(text) else "")


def highlight(text: str, terms: Iterable[str]) -> list[tuple[str, bool]]:
    """Split ``text`` into (segment, is_match) pairs; the template escapes each segment.

    Why segments and not HTML: the text comes from crawled pages, so it is never turned
    into markup here; the template wraps matches in <mark> and autoescapes everything.
    """
    terms = [t for t in terms if t]
    if not terms or not text:
        return [(text, False)] if text else []
    pattern = re.compile("|".join(_term_pattern(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE)
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((m.group(), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out

"""The answer pipeline: question -> standalone query -> retrieval -> evidence -> streamed,
cited answer -> verified citations -> related questions.

Why events: the web page shows sources as soon as retrieval finishes and the answer as it
is written; the JSON API, the CLI and batch evaluation consume the same event stream
(``answer`` just collects it), so every surface behaves the same way.

Events, in order: ("sources", {"sources": [...]}), ("token", {"text": delta})...,
("citations", {...}), ("related", {"questions": [...]}), ("done", {"timings": {...}}),
or ("error", {"code", "message"}) at any point, after which the stream ends.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict
from typing import Any, Iterator, Sequence

from search.cite import (
    CitationChecker,
    EvidenceItem,
    attach_inferred_markers,
    build_messages,
    no_answer_text,
    parse_citations,
    related_messages,
    rewrite_messages,
    select_evidence,
    split_sentences,
    text_fragment_url,
)
from search.config import Settings
from search.documents import Answer, Citation, Hit, Source
from search.text import bm25_terms, detect_language

Event = tuple[str, dict[str, Any]]
History = Sequence[dict[str, str] | str]


def normalize_history(history: History | None) -> list[dict[str, str]]:
    """History as chat turns. Plain strings are earlier questions of the user."""
    turns: list[dict[str, str]] = []
    for item in history or []:
        if isinstance(item, str):
            turns.append({"role": "user", "content": item})
        elif isinstance(item, dict) and item.get("content"):
            role = item.get("role", "user")
            turns.append({"role": role if role in ("user", "assistant") else "user", "content": str(item["content"])})
    return turns


class RetrievalUnavailable(RuntimeError):
    """No retriever can be built (the retrieval module is missing from this build)."""


class AnswerPipeline:
    """Joins retrieval, generation and citation checks; see the module docstring for events."""

    def __init__(self, settings: Settings, retriever=None, generator=None, embedder=None) -> None:
        self.settings = settings
        self._retriever = retriever
        self._generator = generator
        self._embedder = embedder

    # Heavy parts load on first use, so constructing a pipeline (e.g. in the web app) is cheap.
    @property
    def embedder(self):
        if self._embedder is None:
            retriever_embedder = getattr(self._retriever, "embedder", None)
            if retriever_embedder is not None:
                self._embedder = retriever_embedder
            else:
                from search.embed import load_embedder

                self._embedder = load_embedder(self.settings)
        return self._embedder

    @property
    def retriever(self):
        if self._retriever is None:
            try:
                from search.retrieve import Retriever
            except ModuleNotFoundError as exc:
                if exc.name != "search.retrieve":
                    raise
                raise RetrievalUnavailable("search/retrieve.py is not part of this build") from None
            self._retriever = Retriever(self.settings)
        return self._retriever

    @property
    def generator(self):
        if self._generator is None:
            from search.generate import load_generator

            self._generator = load_generator(self.settings, embedder=self.embedder)
        return self._generator

    # ------------------------------------------------------------------ public API
    def answer(self, query: str, history: History | None = None) -> Answer:
        """The whole answer (collects ``stream``). Errors become an Answer with empty text
        and ``models['error']`` set, so batch callers never crash on one bad query."""
        text = ""
        result = Answer(query=query, lang="", text="")
        for event, data in self.stream(query, history):
            if event == "sources":
                result.sources = [Source(**{k: v for k, v in s.items() if k in Source.__dataclass_fields__}) for s in data["sources"]]
                result.lang = data.get("lang", "")
            elif event == "token":
                text += data["text"]
            elif event == "citations":
                result.text = data["text"]
                result.citations = [
                    Citation(**{k: v for k, v in c.items() if k in Citation.__dataclass_fields__})
                    for c in data["citations"]
                ]
            elif event == "related":
                result.related = list(data["questions"])
            elif event == "done":
                result.timings = data["timings"]
                result.models = data.get("models", {})
                result.lang = data.get("lang", result.lang)
            elif event == "error":
                result.models = {"error": data["code"], "message": data["message"]}
                result.lang = result.lang or detect_language(query)
        if not result.text and text:
            result.text = text
        return result

    def stream(self, query: str, history: History | None = None) -> Iterator[Event]:
        """The events of one answer. Never raises for bad input or failing backends."""
        try:
            yield from self._stream(query, history)
        except Exception as exc:  # the last line of defence: one clear error event
            yield "error", {"code": _error_code(exc), "message": f"{type(exc).__name__}: {exc}"}

    # ------------------------------------------------------------------ stages
    def _stream(self, query: str, history: History | None) -> Iterator[Event]:
        settings = self.settings
        timings: dict[str, float] = {}
        start = time.perf_counter()
        query = " ".join((query or "").split())
        if not query:
            yield "error", {"code": "empty_query", "message": "the question is empty"}
            return
        turns = normalize_history(history)
        lang = settings.answer_lang or detect_language(query)

        t = time.perf_counter()
        standalone = self.rewrite(query, turns) if turns else query
        timings["rewrite"] = time.perf_counter() - t

        t = time.perf_counter()
        try:
            result = self.retriever.search(standalone, k=settings.answer_k, mode=self._mode())
        except ValueError as exc:  # QueryError: an unusable query
            yield "error", {"code": "bad_query", "message": str(exc)}
            return
        except Exception as exc:
            yield "error", {"code": _error_code(exc, "retrieval"), "message": f"retrieval failed: {exc}"}
            return
        timings["retrieve"] = time.perf_counter() - t
        for stage, seconds in (getattr(result, "timings", None) or {}).items():
            timings[f"retrieve.{stage}"] = float(seconds)

        t = time.perf_counter()
        hits = self._relevant_hits(result.hits)
        evidence = select_evidence(hits, settings.evidence_tokens, settings.evidence_per_page)
        timings["evidence"] = time.perf_counter() - t
        sources = [self._source(item) for item in evidence]
        timings["sources"] = time.perf_counter() - start
        yield "sources", {"sources": [asdict(s) for s in sources], "lang": lang, "query": standalone}

        models = {"generator": "", "embedder": getattr(self.embedder, "name", "") if evidence else ""}
        finish = ""
        if not evidence:
            raw = no_answer_text(lang)
            yield "token", {"text": raw}
            timings["first_token"] = time.perf_counter() - start
            finish = "no_sources"
        else:
            generator = self.generator
            models["generator"] = generator.name
            messages = build_messages(query if not turns else standalone, evidence, lang)
            from search.generate import GeneratorError

            t = time.perf_counter()
            pieces: list[str] = []
            stream = None
            try:
                stream = generator.stream(messages, max_tokens=settings.answer_max_tokens, evidence=evidence)
                for delta in stream:
                    if not pieces:
                        timings["first_token"] = time.perf_counter() - start
                    pieces.append(delta)
                    yield "token", {"text": delta}
            except GeneratorError as exc:
                yield "error", {"code": "generator", "message": str(exc)}
                return
            finally:
                # A consumer that stops early (a closed browser tab) must free the model now.
                if stream is not None:
                    stream.close()
            timings["generate"] = time.perf_counter() - t
            timings["tokens"] = float(stream.pieces)
            finish = stream.finish_reason or "stop"
            raw = "".join(pieces)
            if not parse_citations(raw, len(evidence)).sentences:
                # An empty reply (or bare markers, "[1][2]"): the sources' own words, cited.
                from search.generate import ExtractiveGenerator

                raw = ExtractiveGenerator(self.embedder).answer(query, evidence) or no_answer_text(lang)
                finish = "empty_fallback"
                yield "token", {"text": raw}
                timings.setdefault("first_token", time.perf_counter() - start)

        t = time.perf_counter()
        payload = self._verify(raw, evidence, finish)
        timings["verify"] = time.perf_counter() - t
        yield "citations", payload

        t = time.perf_counter()
        related = self.related(query, payload["text"], lang, evidence, hits) if settings.related_questions else []
        timings["related"] = time.perf_counter() - t
        yield "related", {"questions": related}

        timings["total"] = time.perf_counter() - start
        yield "done", {"timings": {k: round(v, 4) for k, v in timings.items()}, "models": models, "lang": lang,
                       "finish_reason": finish, "query": standalone}

    def _mode(self) -> str:
        return "rerank" if self.settings.rerank_model not in ("", "none") else "hybrid"

    def _relevant_hits(self, hits: Sequence[Hit]) -> list[Hit]:
        """The hits worth citing. BM25 matches stop words ("ich", "the"), so dense similarity
        decides: when the best dense score is below ``min_relevance`` nothing is relevant,
        and hits with a dense score below it are dropped. A reranker's verdict is kept."""
        if any("rerank" in h.scores for h in hits):
            return list(hits)
        dense = [h.scores["dense"] for h in hits if "dense" in h.scores]
        if not dense:
            return list(hits)
        floor = self.settings.min_relevance
        if max(dense) < floor:
            return []
        return [h for h in hits if h.scores.get("dense", floor) >= floor]

    @staticmethod
    def _source(item: EvidenceItem) -> Source:
        p = item.passage
        return Source(n=item.n, url=p.link, title=p.title or p.heading or p.url, passage_id=p.id, lang=p.lang,
                      snippet=item.text[:300])

    def _verify(self, raw: str, evidence: list[EvidenceItem], finish: str) -> dict[str, Any]:
        parsed = parse_citations(raw, len(evidence))
        if not evidence:
            return {"text": parsed.text, "citations": [], "supported_share": 0.0, "dropped": parsed.dropped,
                    "inferred": False, "truncated": False}
        judge = self.generator if self.settings.citation_judge == "generator" and self.generator.is_model else None
        checker = CitationChecker(self.embedder, self.settings.support_threshold, judge=judge)
        verification = checker.verify(parsed, evidence)
        text = attach_inferred_markers(parsed) if verification.inferred else parsed.text
        citations = []
        for c in verification.citations:
            data = asdict(c)
            data["fragment_url"] = text_fragment_url(c.url, c.quote)
            citations.append(data)
        return {
            "text": text,
            "citations": citations,
            "supported_share": round(verification.supported_share, 4),
            "dropped": parsed.dropped,
            "inferred": verification.inferred,
            "truncated": finish == "length",
        }

    # ------------------------------------------------------------------ follow-ups
    def rewrite(self, query: str, turns: list[dict[str, str]]) -> str:
        """A follow-up ("and on Ubuntu?") as a standalone query. With a model: asked of it;
        without (or if it fails): the last user question joined with this one."""
        previous = [t["content"] for t in turns if t["role"] == "user"]
        fallback = f"{previous[-1]} {query}" if previous else query
        generator = self._generator
        if generator is None or not getattr(generator, "is_model", False):
            if generator is None and self.settings.generator != "extractive":
                generator = self.generator
            if generator is None or not generator.is_model:
                return fallback
        try:
            text = generator.complete(rewrite_messages(query, turns), max_tokens=48, stop=["\n"])
        except Exception:  # a failed rewrite must not fail the answer
            return fallback
        text = text.strip().strip('"“”「」').strip()
        text = re.sub(r"^(standalone query|query)\s*:\s*", "", text, flags=re.I)
        if not 3 <= len(text) <= 300:
            return fallback
        # A rewrite that dropped every term of the conversation lost its topic: keep ours.
        context_terms = set(bm25_terms(" ".join(previous)))
        if previous and not (set(bm25_terms(text)) & context_terms):
            return fallback
        return text

    def related(self, query: str, answer: str, lang: str, evidence: list[EvidenceItem],
                hits: Sequence[Hit] = ()) -> list[str]:
        """Up to three follow-up questions in the asker's language."""
        # First the headings of retrieved sections that are questions in the asker's language
        # (FAQ-style pages title sections with questions): free, and real questions.
        out: list[str] = []
        cited_headings = {item.passage.heading for item in evidence}
        for passage in [h.passage for h in hits]:
            if passage.heading in cited_headings:
                continue
            heading = re.sub(r"^[\d.]+\s*", "", passage.heading or "").strip()
            if heading and heading.endswith(("?", "？")) and heading.casefold() != query.casefold() and heading not in out:
                if detect_language(heading) == lang.split("-")[0]:
                    out.append(heading)
        if out:
            return out[:3]
        # Else ask the model (a second, short generation).
        generator = self._generator
        if generator is not None and generator.is_model and evidence:
            try:
                text = generator.complete(related_messages(query, answer, lang), max_tokens=80)
            except Exception:
                text = ""
            out = _questions_from(text, query, lang)
        return out[:3]


def _questions_from(text: str, query: str, lang: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip().strip('"')
        line = re.sub(r"^(?:question|frage|質問|问题)\s*\d*\s*[:：]\s*", "", line, flags=re.I).strip()
        if len(line) < 4 or line == query or line in out:
            continue
        if not line.endswith(("?", "？")):
            continue
        if detect_language(line) != lang.split("-")[0]:
            continue
        out.append(line)
    return out


def _error_code(exc: Exception, default: str = "internal") -> str:
    name = type(exc).__name__
    if name in ("StoreUnavailable",):
        return "store_unavailable"
    if name in ("StoreMismatch", "StoreError"):
        return "store"
    if name == "GeneratorError":
        return "generator"
    return default


__all__ = ["AnswerPipeline", "normalize_history", "split_sentences"]

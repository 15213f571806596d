"""The Flask app: the search page, the JSON API, and the answer event stream.

Routes (contracts, see web/openapi.py): `/`, `/search?q=`, `GET /api/search`,
`POST /api/answer` (JSON, or Server-Sent Events with ``stream: true``), `GET /api/health`,
`GET /openapi.json`. Errors are JSON ``{"error": {"code", "message"}}``.

Why the page renders sources on the server: it then works without JavaScript; the script
only adds the streamed answer, citations and the conversation on top.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterator

from flask import Flask, Response, jsonify, render_template, request

from search.config import Settings
from search.documents import Filters
from web.engine import Engine, engine_errors
from web.errors import ApiError, install_error_handlers
from web.guards import (
    RateLimiter,
    add_cors_headers,
    add_security_headers,
    allowed_origin,
    client_key,
    parse_origins,
    retry_after_header,
)
from web.openapi import LANG_PATTERN, MAX_HISTORY_TURNS, MAX_K, MAX_QUERY_CHARS, MODES, SITE_PATTERN, openapi_document
from web.present import answer_record, highlight, hit_json, query_terms, snippet, sse_event

log = logging.getLogger("cited.web")

RATE_LIMITED_ENDPOINTS = frozenset({"api_search", "api_answer", "search_page"})
PAGE_SOURCES = 8
_LANG = re.compile(LANG_PATTERN)
_SITE = re.compile(SITE_PATTERN)
# Pipeline error codes that mean "the client's input", everything else is the service's.
_CLIENT_ERROR_CODES = frozenset({"bad_query", "bad_request", "empty_query", "query_error", "bad_input"})


def create_app(settings: Settings | None = None, retriever: Any = None, pipeline: Any = None) -> Flask:
    """Build the app. Pass a ready retriever/pipeline to share loaded models; else the
    first request that needs them builds them from ``settings``."""
    settings = settings or Settings.load()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    engine = Engine(settings, retriever=retriever, pipeline=pipeline)
    limiter = RateLimiter(settings.rate_limit)
    origins = parse_origins(settings.cors_origins)
    # Like the answer pipeline: rerank when a reranker is configured.
    default_mode = "rerank" if settings.rerank_model not in ("", "none") else "hybrid"
    app.extensions["cited.engine"] = engine
    app.extensions["cited.limiter"] = limiter
    install_error_handlers(app)

    # ------------------------------------------------------------------ guards
    @app.before_request
    def _rate_limit() -> Response | None:
        if request.endpoint not in RATE_LIMITED_ENDPOINTS or request.method == "OPTIONS":
            return None
        wait = limiter.check(client_key(request))
        if not wait:
            return None
        headers = {"Retry-After": retry_after_header(wait)}
        message = f"too many requests: at most {limiter.per_minute} a minute (CITED_RATE_LIMIT); retry in {headers['Retry-After']} s"
        if request.endpoint == "search_page":
            q = request.args.get("q", "")
            return Response(render_template("search.html", q=q, hits=[], error=message), 429, headers)
        raise ApiError(429, message, "rate_limited", headers)

    @app.after_request
    def _headers(response: Response) -> Response:
        add_security_headers(response)
        if request.path.startswith("/api/") or request.path == "/openapi.json":
            allow = allowed_origin(origins, request.headers.get("Origin"))
            if allow:
                preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
                add_cors_headers(response, allow, preflight)
        return response

    # ------------------------------------------------------------------ pages
    @app.get("/")
    def home() -> str:
        return render_template("index.html", q="")

    @app.get("/search")
    def search_page() -> Response | str:
        raw = request.args.get("q", "")
        q = " ".join(raw.split())
        if not q:
            return render_template("index.html", q="")
        if len(raw) > MAX_QUERY_CHARS:
            return Response(render_template("search.html", q=q[:MAX_QUERY_CHARS], hits=[], error=f"The question is longer than {MAX_QUERY_CHARS} characters."), 400)
        terms = query_terms(q)
        try:
            with engine_errors():
                result = engine.retriever().search(q, k=PAGE_SOURCES)
        except ApiError as exc:
            return Response(render_template("search.html", q=q, hits=[], error=exc.message), exc.status)
        cards = [
            {"n": i, "hit": hit_json(hit), "segments": highlight(snippet(hit.passage.text, terms), terms)}
            for i, hit in enumerate(result.hits, start=1)
        ]
        return render_template("search.html", q=q, hits=cards, error=None)

    # ------------------------------------------------------------------ API
    @app.get("/api/search")
    def api_search() -> Response:
        q = _query(request.args.get("q"))
        k = _int_param("k", 10, 1, MAX_K)
        mode = request.args.get("mode", default_mode)
        if mode not in MODES:
            raise ApiError(400, f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        filters = Filters(lang=_list_param("lang", _LANG) or None, site=_list_param("site", _SITE) or None)
        with engine_errors():
            result = engine.retriever().search(q, k=k, mode=mode, filters=None if filters.is_empty() else filters)
        return jsonify(
            {
                "query": result.query,
                "lang": result.lang,
                "mode": result.mode,
                "hits": [hit_json(h) for h in result.hits],
                "timings": {k_: float(v) for k_, v in result.timings.items()},
            }
        )

    @app.post("/api/answer")
    def api_answer() -> Response:
        if not request.is_json:
            raise ApiError(415, "send the question as JSON with Content-Type: application/json")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object like {\"q\": \"your question\"}")
        q = _query(body.get("q"))
        history = _history(body["history"]) if "history" in body else []
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "stream must be true or false")
        request_id = body.get("id")
        if "id" in body and not isinstance(request_id, str):
            raise ApiError(400, "id must be a string")
        pipeline = engine.pipeline()
        first, events = _start_answer(pipeline, q, history)
        if stream:
            return _event_stream(first, events)
        with engine_errors():
            record = answer_record(_chain(first, events), q)
        if "error" in record:
            error = record["error"]
            raise ApiError(_status_for(error["code"]), error["message"] or "the answer failed", error["code"])
        if request_id is not None:
            record = {"id": request_id, **record}
        return jsonify(record)

    @app.get("/api/health")
    def api_health() -> Response:
        ok, data = engine.health()
        response = jsonify(data)
        response.status_code = 200 if ok else 503
        return response

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document())

    return app


# ---------------------------------------------------------------------- helpers
def _query(value: Any) -> str:
    if value is None:
        raise ApiError(400, "q is required: the question or search terms")
    if not isinstance(value, str):
        raise ApiError(400, "q must be a string")
    if len(value) > MAX_QUERY_CHARS:
        raise ApiError(400, f"q is longer than {MAX_QUERY_CHARS} characters")
    q = " ".join(value.split())
    if not q:
        raise ApiError(400, "q is empty: type a question or some search terms")
    return q


def _int_param(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}, not {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {low} to {high}, not {value}")
    return value


def _list_param(name: str, pattern: re.Pattern[str]) -> list[str]:
    """A comma-separated filter value (``lang=de,fr``), checked whole against the pattern
    the OpenAPI document declares."""
    raw = request.args.get(name, "")
    if not pattern.fullmatch(raw):
        raise ApiError(400, f"{name} must be comma-separated values such as {'de,fr' if name == 'lang' else 'www.debian.org'}, not {raw[:40]!r}")
    return [v for v in raw.split(",") if v]


def _history(value: Any) -> list[dict[str, str]]:
    """Earlier turns, oldest first, as [{"q", "answer"}] (validated, never trusted)."""
    if not isinstance(value, list):
        raise ApiError(400, "history must be a list of {\"q\", \"answer\"} objects")
    if len(value) > MAX_HISTORY_TURNS:
        raise ApiError(400, f"history has more than {MAX_HISTORY_TURNS} turns")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or not isinstance(turn.get("q"), str) or not isinstance(turn.get("answer"), str):
            raise ApiError(400, f"history[{i}] must be an object with string fields q and answer")
        turns.append({"q": turn["q"], "answer": turn["answer"]})
    return turns


def _status_for(code: str) -> int:
    """HTTP status for a pipeline error code: the client's input, a bug, or the service."""
    if code in _CLIENT_ERROR_CODES:
        return 400
    if code in ("internal", "internal_error"):
        return 500
    return 503


def _chat_turns(history: list[dict[str, str]]) -> list[dict[str, str]]:
    """API turns ({"q", "answer"}) as the chat turns the pipeline reads."""
    turns = []
    for turn in history:
        turns.append({"role": "user", "content": turn["q"]})
        if turn["answer"]:
            turns.append({"role": "assistant", "content": turn["answer"]})
    return turns


def _start_answer(pipeline: Any, q: str, history: list[dict[str, str]]) -> tuple[tuple[str, dict], Iterator]:
    """Start the pipeline and pull its first event before any response is sent, so a store
    that is down or an unusable query gets a proper status (503/400), not a 200 stream."""
    with engine_errors():
        events = iter(pipeline.stream(q, history=_chat_turns(history)))
        first = next(events, ("error", {"code": "internal", "message": "the pipeline produced no events"}))
    name, data = first
    if name == "error":
        code = str(data.get("code", "error"))
        raise ApiError(_status_for(code), str(data.get("message") or "the answer failed"), code)
    return first, events


def _chain(first: tuple[str, dict], events: Iterator) -> Iterator[tuple[str, dict]]:
    yield first
    yield from events


def _event_stream(first: tuple[str, dict], events: Iterator) -> Response:
    """The answer as Server-Sent Events; failures after the first event are reported
    in-band as an ``error`` event (the status line has already gone out)."""

    def generate() -> Iterator[str]:
        try:
            for event, payload in _chain(first, events):
                yield sse_event(event, payload)
                if event in ("done", "error"):
                    return
        except GeneratorExit:  # the client went away: stop the pipeline too
            close = getattr(events, "close", None)
            if close:
                close()
            raise
        except Exception as exc:
            log.exception("answer stream failed")
            try:
                with engine_errors():
                    raise exc
            except ApiError as api_exc:
                yield sse_event("error", {"code": api_exc.code, "message": api_exc.message})
            except Exception:
                yield sse_event("error", {"code": "internal_error", "message": "the answer failed; the server log has the details"})

    return Response(
        generate(),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

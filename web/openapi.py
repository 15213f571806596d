"""The OpenAPI 3.0 document served at /openapi.json; tests check every response against it.

Why hand-written: the API is small and its shapes are contracts shared with `cited ask
--json` and the SSE protocol; writing them down once here makes drift a test failure.
"""

from __future__ import annotations

from typing import Any

MAX_QUERY_CHARS = 1000
MAX_K = 50
MAX_HISTORY_TURNS = 20
MODES = ["bm25", "dense", "hybrid", "rerank"]
# Filter values, comma-separated; empty means no filter. The app validates with these too.
LANG_PATTERN = r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?(,[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?)*$"
SITE_PATTERN = r"^$|^[A-Za-z0-9.\-]+(,[A-Za-z0-9.\-]+)*$"

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


_SCORES = {"type": "object", "additionalProperties": {"type": "number"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Hit": {
        "type": "object",
        "required": ["id", "url", "link", "title", "lang", "site", "text", "score", "scores"],
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "anchor": {"type": "string"},
            "link": {"type": "string", "description": "url#anchor: where a citation points"},
            "title": {"type": "string"},
            "heading": {"type": "string"},
            "site": {"type": "string"},
            "lang": {"type": "string"},
            "text": {"type": "string"},
            "position": {"type": "integer"},
            "published": {"type": "string", "nullable": True},
            "score": {"type": "number"},
            "scores": _SCORES,
        },
    },
    "SearchResponse": {
        "type": "object",
        "required": ["hits"],
        "properties": {
            "query": {"type": "string"},
            "lang": {"type": "string"},
            "mode": {"type": "string"},
            "hits": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
            "timings": _SCORES,
        },
    },
    "Turn": {
        "type": "object",
        "required": ["q", "answer"],
        "properties": {"q": {"type": "string"}, "answer": {"type": "string"}},
    },
    "AnswerRequest": {
        "type": "object",
        "required": ["q"],
        "properties": {
            "q": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": r"\S"},
            "history": {
                "type": "array",
                "maxItems": MAX_HISTORY_TURNS,
                "items": {"$ref": "#/components/schemas/Turn"},
                "description": "earlier turns of the conversation, oldest first",
            },
            "stream": {"type": "boolean", "default": False},
            "id": {"type": "string", "description": "echoed back in the answer"},
        },
    },
    "Source": {
        "type": "object",
        "required": ["n", "url", "title"],
        "properties": {
            "n": {"type": "integer"},
            "url": {"type": "string", "description": "the cited section: url#anchor"},
            "title": {"type": "string"},
            "lang": {"type": "string"},
            "snippet": {"type": "string"},
            "passage_id": {"type": "string"},
        },
    },
    "Citation": {
        "type": "object",
        "required": ["n", "sentence", "supported"],
        "properties": {
            "n": {"type": "integer"},
            "sentence": {"type": "string"},
            "supported": {"type": "boolean"},
            "url": {"type": "string"},
            "quote": {"type": "string", "description": "the supporting span, for a #:~:text= link"},
            "fragment_url": {"type": "string", "description": "url#anchor:~:text=quote"},
            "score": {"type": "number"},
        },
    },
    "Answer": {
        "type": "object",
        "required": ["answer", "lang", "sources", "citations", "timings"],
        "properties": {
            "id": {"type": "string"},
            "query": {"type": "string"},
            "answer": {"type": "string", "description": "text with [n] citation markers"},
            "lang": {"type": "string"},
            "sources": {"type": "array", "items": {"$ref": "#/components/schemas/Source"}},
            "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}},
            "supported_share": {"type": "number", "description": "share of answer sentences with a supporting citation"},
            "related": {"type": "array", "items": {"type": "string"}},
            "timings": _SCORES,
            "models": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "StreamEvent": {
        "type": "object",
        "description": "one Server-Sent Event; data is one line of JSON (shapes in the operation's description)",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": ["sources", "token", "citations", "related", "done", "error"]},
            "data": {"type": "string"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "store", "models", "versions"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "store": {
                "type": "object",
                "required": ["backend", "reachable"],
                "properties": {
                    "backend": {"type": "string"},
                    "reachable": {"type": "boolean"},
                    "passages": {"type": "integer"},
                    "pages": {"type": "integer"},
                    "model": {"type": "string"},
                    "dim": {"type": "integer"},
                    "error": {"type": "string"},
                },
            },
            "models": {"type": "object"},
            "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}

SSE_DESCRIPTION = """With `stream: true`, Server-Sent Events in this order: `sources`
({"sources": [Source]}), `token` ({"text": delta}, many), `citations` ({"citations":
[Citation], ...}), `related` ({"questions": [string]}), then `done` ({"timings": {...}})
or, at any point, `error` ({"code", "message"})."""


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    limited = _error("rate limited (CITED_RATE_LIMIT per minute per client); see Retry-After")
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Cited",
            "version": "1",
            "description": "Search the index and get answers whose every claim cites its sources.",
        },
        "paths": {
            "/": {"get": {"summary": "The search page", "operationId": "home", "responses": {"200": _html("page")}}},
            "/search": {
                "get": {
                    "summary": "Results page: sources server-rendered, the answer streamed in by script",
                    "operationId": "searchPage",
                    "parameters": [
                        {
                            "name": "q",
                            "in": "query",
                            "required": False,
                            "description": "without q, the empty search page",
                            "schema": {"type": "string", "maxLength": MAX_QUERY_CHARS, "pattern": r"^\s*$|\S"},
                        },
                    ],
                    "responses": {
                        "200": _html("results page (or the empty state without q)"),
                        "400": _html("unusable query"),
                        "429": _html("rate limited"),
                        "503": _html("the store is down"),
                    },
                }
            },
            "/api/search": {
                "get": {
                    "summary": "Ranked passages for a query",
                    "operationId": "apiSearch",
                    "parameters": [
                        {
                            "name": "q",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS, "pattern": r"\S"},
                        },
                        {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10}},
                        {
                            "name": "lang",
                            "in": "query",
                            "description": "language codes, comma-separated (empty: any)",
                            "schema": {"type": "string", "pattern": LANG_PATTERN},
                        },
                        {
                            "name": "site",
                            "in": "query",
                            "description": "host names, comma-separated (empty: any)",
                            "schema": {"type": "string", "pattern": SITE_PATTERN},
                        },
                        {"name": "mode", "in": "query", "schema": {"type": "string", "enum": MODES, "default": "hybrid"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "hits, best first",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResponse"}}},
                        },
                        "400": _error("bad parameters or an unusable query"),
                        "429": limited,
                        "503": _error("the store is down"),
                    },
                }
            },
            "/api/answer": {
                "post": {
                    "summary": "A cited answer, as one JSON object or streamed as Server-Sent Events",
                    "description": SSE_DESCRIPTION,
                    "operationId": "apiAnswer",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AnswerRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "the answer (JSON), or its event stream when stream is true",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Answer"}},
                                "text/event-stream": {"schema": {"$ref": "#/components/schemas/StreamEvent"}},
                            },
                        },
                        "400": _error("bad parameters or an unusable query"),
                        "413": _error("request body too large (CITED_MAX_REQUEST_BYTES)"),
                        "415": _error("the body is not JSON"),
                        "429": limited,
                        "503": _error("the store is down or no answer pipeline is available"),
                    },
                }
            },
            "/api/health": {
                "get": {
                    "summary": "Store reachable, models loaded, versions",
                    "operationId": "apiHealth",
                    "responses": {
                        "200": {"description": "healthy", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                        "503": {"description": "the store is down", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "OpenAPI 3.0", "content": {"application/json": {"schema": {"type": "object"}}}}},
                }
            },
        },
        "components": {"schemas": SCHEMAS},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc

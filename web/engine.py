"""The engine the web app serves: one retriever and one answer pipeline per process.

Why a holder: models are large, so they are loaded once and shared by every request and
thread. `cited serve` loads them before it listens; the app factory (and tests) may pass
ready objects or let the first request load them. Engine failures are translated here
into ApiError with the status a client should see (400 for an unusable query, 503 for a
store that is down), so routes stay about HTTP.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import threading
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Iterator

from search.config import Settings
from search.store.base import StoreError, StoreUnavailable
from web.batching import BatchingEmbedder
from web.errors import ApiError

log = logging.getLogger("cited.web")


@contextmanager
def engine_errors() -> Iterator[None]:
    """Map engine exceptions to API errors (the pinned interfaces raise these kinds)."""
    try:
        yield
    except ApiError:
        raise
    except StoreUnavailable as exc:
        raise ApiError(503, f"the passage store is unreachable: {exc}", "store_unavailable") from exc
    except StoreError as exc:
        raise ApiError(503, f"the passage store cannot serve this: {exc}", "store_error") from exc
    except ValueError as exc:  # retrieve.QueryError is a ValueError with a clear message
        raise ApiError(400, str(exc) or "the query cannot be used", "bad_query") from exc
    except OSError as exc:  # files or sockets under the engine failed: the service, not the client
        log.exception("engine I/O failure")
        raise ApiError(503, f"the engine cannot read its data: {exc}", "unavailable") from exc
    except (ImportError, ModuleNotFoundError) as exc:
        log.exception("engine part missing")
        raise ApiError(503, f"this build cannot answer yet: {exc}", "not_available") from exc


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _loaded(obj: Any, name: str) -> Any:
    """``obj.name`` if it is already loaded, else None, without triggering a lazy property
    (health checks must never load a model)."""
    if obj is None:
        return None
    attrs = getattr(obj, "__dict__", {})
    if ("_" + name) in attrs:
        return attrs["_" + name]
    if name in attrs:
        return attrs[name]
    if isinstance(getattr(type(obj), name, None), property):
        return None
    return getattr(obj, name, None)


class Engine:
    """Lazily built, shared retriever and answer pipeline for one settings object. The
    retriever it builds embeds queries through a BatchingEmbedder, so concurrent requests
    share model calls."""

    def __init__(self, settings: Settings, retriever: Any = None, pipeline: Any = None) -> None:
        self.settings = settings
        self._retriever = retriever
        self._pipeline = pipeline
        self._store: Any = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- parts
    def retriever(self) -> Any:
        if self._retriever is None:
            with self._lock, engine_errors():
                if self._retriever is None:
                    from search.embed import load_embedder
                    from search.retrieve import Retriever

                    embedder = BatchingEmbedder(load_embedder(self.settings))
                    self._retriever = Retriever(self.settings, embedder=embedder)
        return self._retriever

    def pipeline(self) -> Any:
        if self._pipeline is None:
            retriever = self.retriever()
            with self._lock, engine_errors():
                if self._pipeline is None:
                    from search.answer import AnswerPipeline

                    self._pipeline = AnswerPipeline(self.settings, retriever=retriever)
        return self._pipeline

    def load(self) -> None:
        """Load everything now (what `cited serve` does before it listens): the store and
        embedder through the retriever, the reranker when one is configured, the generator.
        The pinned classes load these lazily, on first attribute access."""
        retriever, pipeline = self.retriever(), self.pipeline()
        with engine_errors():
            getattr(retriever, "store", None)
            if self.settings.rerank_model not in ("", "none"):
                getattr(retriever, "reranker", None)
            getattr(pipeline, "generator", None)
            # The first encode of a model is slow (lazy kernels, caches); pay it now.
            embedder = _loaded(retriever, "embedder")
            if embedder is not None and hasattr(embedder, "encode_queries"):
                embedder.encode_queries(["warm-up"])

    # ----------------------------------------------------------------- health
    def _store_for_health(self) -> Any:
        store = _loaded(self._retriever, "store")
        if store is not None:
            return store
        if self._store is None:
            from search.store import connect_store

            self._store = connect_store(self.settings)
        return self._store

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the store answers, which models are loaded, and the versions running."""
        store: dict[str, Any] = {"backend": self.settings.store, "reachable": False}
        try:
            info = self._store_for_health().info()
            store.update(asdict(info) if hasattr(info, "__dataclass_fields__") else dict(info))
            store["reachable"] = True
        except Exception as exc:  # any failure means "not reachable"; say why
            store["error"] = str(exc) or type(exc).__name__
        retriever, pipeline = self._retriever, self._pipeline
        embedder = _loaded(retriever, "embedder")
        reranker = _loaded(retriever, "reranker")
        generator = _loaded(pipeline, "generator")
        models = {
            "embedder": {"name": getattr(embedder, "name", self.settings.embed_model), "loaded": embedder is not None},
            "reranker": {"name": getattr(reranker, "name", self.settings.rerank_model), "loaded": reranker is not None},
            "generator": {"name": getattr(generator, "name", self.settings.generator), "loaded": generator is not None},
            "retriever_loaded": retriever is not None,
            "pipeline_loaded": pipeline is not None,
        }
        versions = {
            "cited": _version("cited"),
            "python": platform.python_version(),
            "flask": _version("flask"),
            "waitress": _version("waitress"),
        }
        ok = bool(store["reachable"])
        return ok, {"status": "ok" if ok else "unavailable", "store": store, "models": models, "versions": versions}

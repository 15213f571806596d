"""The Elasticsearch store: passages in one index behind an alias, crawl state in another.

Why this shape:
- The alias (``settings.es_index``) names what the engine reads and writes; the concrete
  index behind it (``<alias>-v1``) can later be rebuilt under a new name and swapped in
  without the rest of the engine noticing.
- BM25 runs on a field filled client side with ``search.text.bm25_text`` and split by the
  built-in ``whitespace`` analyzer. That analyzer exists on every distribution, including
  the minimal one without analysis-common, and it makes CJK bigrams (and every other
  term) identical to the embedded SQLite store: both backends rank the same terms.
  When the cluster has analysis-common, a stemmed sub-field is added and searched too.
- Vectors are stored unit-normalised with ``dot_product`` similarity (cosine without the
  per-query normalisation), indexed HNSW with int8 quantisation where the server has it.
- The embedding model and dimension live in the index mapping's ``_meta``, created in the
  same request as the index, so a store can never exist without them.
- The minimal distribution has no ``_delete_by_query`` (reindex module), so deleting a
  page looks up its passage ids and deletes them in a bulk request.
- ``_source`` keeps neither the vector nor the BM25 terms: every search hit decompresses
  its whole stored source, and a 512-d vector as JSON is most of it (a BM25 query for 50
  hits on the 42k-passage corpus went from 13 to 9 ms p50). Vectors are read back from
  the index itself (doc values) by ``get``.
- Hybrid search sends BM25 and kNN in one ``_msearch`` request; the node runs both at
  once, and the client pays one round trip. kNN is a ``knn`` *query* (not the top-level
  ``knn`` option): with one shard it needs no separate DFS phase, the same neighbours
  ~0.6 ms sooner. Requests and responses go through orjson (``es_json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from datetime import date, datetime
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from elasticsearch import ApiError, Elasticsearch, TransportError, helpers
from elasticsearch import AuthenticationException, AuthorizationException, NotFoundError

from search.config import Settings
from search.documents import CrawlRecord, Filters, Hit, Passage
from search.store.base import (
    StoreError,
    StoreInfo,
    StoreMismatch,
    StoreUnavailable,
    WriteReport,
    check_vectors,
    mismatch_message,
)
from search.store.es_json import serializers
from search.text import bm25_text

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Fields every search returns; the vector is left out of hits (4 KB each at 512-d).
_HIT_SOURCE = ["url", "anchor", "title", "heading", "lang", "position", "page_hash", "published", "text"]
_PAGE_ID_LIMIT = 10_000  # ids of one page fetched in one search; beyond that, scroll
_BULK_CHUNK = 500
_UNSOURCED = ("vector", "terms")  # indexed, not kept in _source (see the module docstring)
_MAX_K = 10_000  # Elasticsearch's limit on result windows and kNN candidates


def _safe_url(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def _error_reason(exc: ApiError) -> str:
    """The server's own words for an API error (type and reason), not the client's repr."""
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error")
    return _item_reason(err) if isinstance(err, (dict, str)) else str(exc.message)


def passage_mapping(model: str, dim: int, quantized: bool = True, rich: bool = False) -> dict[str, Any]:
    """The passage index's mapping (and its ``_meta`` recording model and dimension).

    ``rich`` adds a stemmed sub-field for clusters that have the analysis-common module.
    """
    terms: dict[str, Any] = {"type": "text", "analyzer": "whitespace"}
    if rich:
        terms["fields"] = {"stemmed": {"type": "text", "analyzer": "cited_stemmed"}}
    return {
        "dynamic": "strict",
        "_meta": {"cited": {"model": model, "dim": dim, "schema": SCHEMA_VERSION}},
        "_source": {"excludes": list(_UNSOURCED)},
        "properties": {
            "terms": terms,
            "vector": {
                "type": "dense_vector",
                "dims": dim,
                "index": True,
                "similarity": "dot_product",
                "index_options": {"type": "int8_hnsw" if quantized else "hnsw"},
            },
            "url": {"type": "keyword"},
            "site": {"type": "keyword"},
            "lang": {"type": "keyword"},  # lower-cased at write time: filters ignore case
            "anchor": {"type": "keyword", "index": False},
            "title": {"type": "text", "index": False},
            "heading": {"type": "text", "index": False},
            "text": {"type": "text", "index": False},
            "page_hash": {"type": "keyword"},
            "position": {"type": "integer"},
            "published": {"type": "date", "format": "strict_date_optional_time"},
        },
    }


def rich_analysis() -> dict[str, Any]:
    """Index analysis settings for the stemmed sub-field (needs analysis-common)."""
    return {
        "analyzer": {
            "cited_stemmed": {
                "type": "custom",
                "tokenizer": "whitespace",
                "filter": ["lowercase", "porter_stem"],
            }
        }
    }


CRAWL_MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "url": {"type": "keyword"},
        "status": {"type": "keyword"},
        "http_status": {"type": "integer"},
        "etag": {"type": "keyword", "index": False},
        "last_modified": {"type": "keyword", "index": False},
        "content_hash": {"type": "keyword"},
        "fetched_at": {"type": "date"},
        "depth": {"type": "integer"},
    },
}


def filter_clauses(filters: Filters | None) -> list[dict[str, Any]]:
    """ES filter clauses with the semantics of ``Filters.matches``."""
    if filters is None or filters.is_empty():
        return []
    clauses: list[dict[str, Any]] = []
    if filters.langs:
        clauses.append({"terms": {"lang": filters.langs}})
    if filters.sites:
        clauses.append({"terms": {"site": filters.sites}})
    if filters.url_prefix:
        clauses.append({"prefix": {"url": filters.url_prefix}})
    if filters.published_from or filters.published_to:
        bounds: dict[str, str] = {}
        if filters.published_from:
            bounds["gte"] = filters.published_from.isoformat()
        if filters.published_to:
            bounds["lte"] = filters.published_to.isoformat()
        clauses.append({"range": {"published": bounds}})
    return clauses


def passage_doc(p: Passage, vector: np.ndarray) -> dict[str, Any]:
    """The document indexed for a passage (``_id`` is the passage id)."""
    return {
        "terms": bm25_text(f"{p.title} {p.heading} {p.text}"),
        # Six decimals keep far more precision than int8 HNSW uses and halve the JSON that
        # both the client writes and the server parses (measured: 1.3 s -> 0.6 s per 1000
        # 512-d vectors in json.dumps).
        "vector": np.round(vector.astype(np.float64), 6).tolist(),
        "url": p.url,
        "site": p.site,
        "lang": p.lang.lower(),
        "anchor": p.anchor,
        "title": p.title,
        "heading": p.heading,
        "text": p.text,
        "page_hash": p.page_hash,
        "position": p.position,
        "published": p.published.isoformat() if p.published else None,
    }


def _cosine(score: float) -> float:
    """dot_product kNN scores are (1 + cos) / 2; report the cosine, like the local store."""
    return 2.0 * score - 1.0


def _search_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """A search body (as ``_msearch`` takes it) as keyword arguments of ``client.search``."""
    return {("source" if key == "_source" else key): value for key, value in body.items()}


def _item_reason(err: Any) -> str:
    """An error object's type and reason (of a response, or of one ``_msearch`` item)."""
    if isinstance(err, dict):
        root = (err.get("root_cause") or [err])[0]
        return f"{root.get('type', 'error')}: {root.get('reason', '')}".strip()
    return str(err)


def passage_from_source(pid: str, src: dict[str, Any]) -> Passage:
    published = src.get("published")
    vector = src.get("vector")
    return Passage(
        id=pid,
        url=src.get("url", ""),
        text=src.get("text", ""),
        anchor=src.get("anchor", ""),
        title=src.get("title", ""),
        heading=src.get("heading", ""),
        lang=src.get("lang", ""),
        position=int(src.get("position") or 0),
        page_hash=src.get("page_hash", ""),
        published=date.fromisoformat(published[:10]) if published else None,
        vector=np.asarray(vector, dtype=np.float32) if vector is not None else None,
    )


def _crawl_id(url: str) -> str:
    # URLs can exceed the 512-byte _id limit; a digest cannot.
    return hashlib.sha1(url.encode()).hexdigest()


def _crawl_doc(r: CrawlRecord) -> dict[str, Any]:
    return {
        "url": r.url,
        "status": r.status,
        "http_status": r.http_status,
        "etag": r.etag,
        "last_modified": r.last_modified,
        "content_hash": r.content_hash,
        "fetched_at": r.fetched_at.isoformat() if r.fetched_at else None,
        "depth": r.depth,
    }


def _crawl_from_source(src: dict[str, Any]) -> CrawlRecord:
    fetched = src.get("fetched_at")
    return CrawlRecord(
        url=src["url"],
        status=src.get("status", ""),
        http_status=int(src.get("http_status") or 0),
        etag=src.get("etag", ""),
        last_modified=src.get("last_modified", ""),
        content_hash=src.get("content_hash", ""),
        fetched_at=datetime.fromisoformat(fetched) if fetched else None,
        depth=int(src.get("depth") or 0),
    )


class ElasticStore:
    """Passages and crawl state in Elasticsearch (see the module docstring for the layout)."""

    backend = "elastic"

    def __init__(self, settings: Settings, client: Elasticsearch | None = None) -> None:
        self.settings = settings
        self.url = _safe_url(settings.es_url)
        self.alias = settings.es_index
        self.index_name = f"{self.alias}-v1"
        self.crawl_index = f"{self.alias}-crawl"
        self.model = ""
        self.dim = 0
        self._rich = False
        self._crawl_ready = False
        # How writes become visible to the next search: "explicit" sends one refresh after
        # a write's bulk requests; "wait_for" makes each bulk request wait for the periodic
        # refresh. benchmarks/store.py measures both; explicit is the default because it is
        # faster for the crawler's batches (see the benchmark's "refresh" numbers).
        self.refresh = "explicit"
        self.client = client or self._connect(settings)

    # ------------------------------------------------------------------ connection
    @staticmethod
    def _connect(settings: Settings) -> Elasticsearch:
        """A client for the configured cluster (connects lazily, on the first request)."""
        kwargs: dict[str, Any] = {
            "request_timeout": settings.es_timeout,
            "retry_on_timeout": True,
            "max_retries": 3,
            "serializers": serializers(),
        }
        if settings.es_api_key:
            kwargs["api_key"] = settings.es_api_key
        elif settings.es_username:
            kwargs["basic_auth"] = (settings.es_username, settings.es_password)
        if settings.es_ca_certs:
            kwargs["ca_certs"] = settings.es_ca_certs
        if settings.es_url.startswith("https"):
            kwargs["verify_certs"] = settings.es_verify_certs
            if not settings.es_verify_certs:
                kwargs["ssl_show_warn"] = False
        try:
            return Elasticsearch(settings.es_url, **kwargs)
        except ValueError as exc:  # a malformed URL or option
            raise StoreError(f"cannot use Elasticsearch URL {_safe_url(settings.es_url)}: {exc}") from None

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Turn client exceptions into StoreErrors that name the URL and what failed."""
        try:
            yield
        except (AuthenticationException, AuthorizationException) as exc:
            raise StoreError(
                f"Elasticsearch at {self.url} refused the request while {doing} ({exc.meta.status}: "
                f"{_error_reason(exc)}); check CITED_ES_API_KEY or CITED_ES_USERNAME/CITED_ES_PASSWORD"
            ) from None
        except ApiError as exc:
            raise StoreError(
                f"Elasticsearch at {self.url} failed while {doing}: {exc.meta.status} {_error_reason(exc)}"
            ) from None
        except TransportError as exc:  # connection refused, timeout, TLS, DNS
            raise StoreUnavailable(
                f"cannot reach Elasticsearch at {self.url} while {doing} ({type(exc).__name__}: "
                f"{exc.message}); is it running? Set CITED_ES_URL to a running cluster"
            ) from None

    # ------------------------------------------------------------------ open / create
    def _read_meta(self) -> tuple[str, dict[str, Any]] | None:
        """(concrete index, cited _meta) behind the alias, or None when there is no store."""
        if not self.client.indices.exists_alias(name=self.alias):
            if self.client.indices.exists(index=self.alias):
                raise StoreError(
                    f"Elasticsearch at {self.url} has an index named {self.alias!r} that is not a Cited "
                    f"store (Cited uses that name as an alias); set CITED_ES_INDEX to another name"
                )
            if not self.client.indices.exists(index=self.index_name):
                return None
            # Created but the alias is missing (an interrupted create): adopt it if it is ours.
            index, meta = self._index_meta(self.index_name)
            self.client.indices.put_alias(index=index, name=self.alias)
            return index, meta
        return self._index_meta(self.alias)

    def _index_meta(self, name: str) -> tuple[str, dict[str, Any]]:
        mapping = self.client.indices.get_mapping(index=name)
        index, body = next(iter(mapping.body.items()))
        meta = (body.get("mappings", {}).get("_meta") or {}).get("cited")
        if not meta:
            raise StoreError(
                f"index {index} ({self.alias!r}) at {self.url} has no Cited metadata, so it is not a "
                f"Cited store and was left alone; set CITED_ES_INDEX to another name"
            )
        return index, meta

    def _has_analysis_common(self) -> bool:
        """Whether every node has the analysis-common module (stemmers, lowercase filter).

        A key without the monitor privilege cannot read node info: then use the minimal
        mapping, which works everywhere, rather than fail.
        """
        try:
            resp = self.client.nodes.info(
                metric="modules,plugins", filter_path="nodes.*.modules.name,nodes.*.plugins.name"
            )
        except (AuthenticationException, AuthorizationException):
            return False
        nodes = resp.body.get("nodes", {})
        if not nodes:
            return False
        for node in nodes.values():
            names = {m["name"] for m in node.get("modules", []) + node.get("plugins", [])}
            if "analysis-common" not in names:
                return False
        return True

    def open(self, model: str, dim: int) -> None:
        if dim < 1:
            raise StoreError(f"cannot open a store for {dim}-d vectors")
        with self._errors(f"opening index {self.alias}"):
            found = self._read_meta()
            if found is None:
                self._create(model, dim)
                found = self._read_meta()
                assert found is not None
            index, meta = found
            built_model, built_dim = str(meta.get("model", "")), int(meta.get("dim", 0))
            if (built_model, built_dim) != (model, dim):
                raise StoreMismatch(mismatch_message(f"{self.url}/{self.alias}", built_model, built_dim, model, dim))
            self.index_name = index
            self._rich = bool(meta.get("rich"))
            self._ensure_crawl_index()
        self.model, self.dim = model, dim

    def _create(self, model: str, dim: int) -> None:
        rich = self._has_analysis_common()
        settings: dict[str, Any] = {
            "number_of_shards": self.settings.es_shards,
            "number_of_replicas": self.settings.es_replicas,
        }
        if rich:
            settings["analysis"] = rich_analysis()
        for quantized in (True, False):
            mappings = passage_mapping(model, dim, quantized=quantized, rich=rich)
            mappings["_meta"]["cited"]["rich"] = rich
            try:
                self.client.indices.create(
                    index=self.index_name,
                    settings=settings,
                    mappings=mappings,
                    aliases={self.alias: {}},
                    wait_for_active_shards="1",
                )
                return
            except ApiError as exc:
                reason = _error_reason(exc)
                if "resource_already_exists" in reason:
                    return  # another process created it first; _read_meta checks it
                if quantized and exc.meta.status == 400 and "int8_hnsw" in reason:
                    log.info("server lacks int8_hnsw; creating %s with hnsw", self.index_name)
                    continue
                raise

    def _ensure_crawl_index(self) -> None:
        if self._crawl_ready:
            return
        if not self.client.indices.exists(index=self.crawl_index):
            try:
                self.client.indices.create(
                    index=self.crawl_index,
                    settings={"number_of_shards": 1, "number_of_replicas": self.settings.es_replicas},
                    mappings=CRAWL_MAPPING,
                )
            except ApiError as exc:
                if "resource_already_exists" not in _error_reason(exc):
                    raise
        self._crawl_ready = True

    def _require_open(self) -> None:
        if not self.dim:
            raise StoreError("the store is not open: call open(model, dim) before writing or searching vectors")

    # ------------------------------------------------------------------ writes
    def _bulk(self, actions: list[dict[str, Any]], doing: str) -> WriteReport:
        """Send actions in chunks, retrying 429s, and report per-document failures."""
        report = WriteReport()
        if not actions:
            return report
        wait = {"refresh": "wait_for"} if self.refresh == "wait_for" else {}
        with self._errors(doing):
            for ok, item in helpers.streaming_bulk(
                self.client,
                actions,
                chunk_size=_BULK_CHUNK,
                max_retries=5,
                initial_backoff=1,
                raise_on_error=False,
                raise_on_exception=True,
                **wait,
            ):
                op, result = next(iter(item.items()))
                if ok:
                    if op != "delete":
                        report.written += 1
                elif op == "delete" and result.get("status") == 404:
                    pass  # already gone: deleting is idempotent
                else:
                    error = result.get("error")
                    if isinstance(error, dict):
                        error = f"{error.get('type')}: {error.get('reason')}"
                    report.failed[str(result.get("_id"))] = str(error or f"status {result.get('status')}")
            if not wait:
                self.client.indices.refresh(index=self.alias)
        return report

    def _index_actions(self, passages: Sequence[Passage]) -> list[dict[str, Any]]:
        vectors = check_vectors(passages, self.dim)
        return [
            {"_op_type": "index", "_index": self.alias, "_id": p.id, "_source": passage_doc(p, v)}
            for p, v in zip(passages, vectors)
        ]

    def upsert(self, passages: Sequence[Passage]) -> WriteReport:
        self._require_open()
        return self._bulk(self._index_actions(passages), f"writing {len(passages)} passages to {self.alias}")

    def _page_ids(self, url: str) -> list[str]:
        query = {"term": {"url": url}}
        resp = self.client.search(
            index=self.alias, query=query, size=_PAGE_ID_LIMIT, source=False, track_total_hits=True
        )
        hits = resp["hits"]
        if hits["total"]["value"] <= len(hits["hits"]):
            return [h["_id"] for h in hits["hits"]]
        return [h["_id"] for h in helpers.scan(self.client, index=self.alias, query={"query": query, "_source": False})]

    def replace_page(self, url: str, passages: Sequence[Passage]) -> WriteReport:
        self._require_open()
        strangers = [p.id for p in passages if p.url != url]
        if strangers:
            raise StoreError(f"replace_page({url!r}) got passages of other pages: {', '.join(strangers[:5])}")
        actions = self._index_actions(passages)  # checks vectors before anything is deleted
        keep = {p.id for p in passages}
        with self._errors(f"reading the passages of {url}"):
            stale = [pid for pid in self._page_ids(url) if pid not in keep]
        actions += [{"_op_type": "delete", "_index": self.alias, "_id": pid} for pid in stale]
        return self._bulk(actions, f"replacing the passages of {url}")

    def delete_page(self, url: str) -> int:
        with self._errors(f"deleting the passages of {url}"):
            if not self.client.indices.exists_alias(name=self.alias):
                return 0
            ids = self._page_ids(url)
        actions = [{"_op_type": "delete", "_index": self.alias, "_id": pid} for pid in ids]
        report = self._bulk(actions, f"deleting the passages of {url}")
        if report.failed:
            raise StoreError(f"could not delete {len(report.failed)} passages of {url}: {next(iter(report.failed.values()))}")
        return len(ids)

    # ------------------------------------------------------------------ reads
    def _hits(self, resp: Any, key: str, transform: Any = None) -> list[Hit]:
        out = []
        for h in resp["hits"]["hits"]:
            score = float(h["_score"] or 0.0)
            out.append(Hit(passage_from_source(h["_id"], h["_source"]), {key: transform(score) if transform else score}))
        return out

    def _bm25_body(self, query: str, k: int, filters: Filters | None) -> dict[str, Any] | None:
        """The search body of a BM25 query, or None when it has no terms."""
        terms = bm25_text(query)
        if not terms or k < 1:
            return None
        match: dict[str, Any] = {"match": {"terms": {"query": terms}}}
        if self._rich:
            match = {"bool": {"should": [match, {"match": {"terms.stemmed": {"query": terms, "boost": 0.5}}}]}}
        query_body = {"bool": {"must": [match], "filter": filter_clauses(filters)}}
        return {"query": query_body, "size": min(k, _MAX_K), "_source": _HIT_SOURCE}

    def _knn_body(self, vector: np.ndarray, k: int, filters: Filters | None) -> dict[str, Any] | None:
        """The search body of a kNN query, or None when the vector has no direction.

        Why ``num_candidates`` = 2k (at least 100): on the 42k-passage corpus, for 100
        development questions, 100 candidates found the same top 10 as 2,000 and 98% of
        the top 50, at about half the latency (benchmarks/RESULTS-retrieval.md).
        """
        self._require_open()
        if k < 1:
            return None
        k = min(k, _MAX_K)
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise StoreMismatch(f"query vector has {v.shape[0]} dimensions; the store holds {self.dim}-d vectors")
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm):
            raise StoreError("query vector has values that are not finite")
        if norm == 0:
            return None  # no direction, no neighbours (as in the local store)
        knn: dict[str, Any] = {
            "field": "vector",
            "query_vector": v / norm,  # float32, written as such (search/store/es_json.py)
            "k": k,
            "num_candidates": min(max(2 * k, 100), _MAX_K),
        }
        clauses = filter_clauses(filters)
        if clauses:
            knn["filter"] = clauses  # inside the kNN search: k neighbours that pass them
        return {"query": {"knn": knn}, "size": k, "_source": _HIT_SOURCE}

    def bm25(self, query: str, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        body = self._bm25_body(query, k, filters)
        if body is None:
            return []
        with self._errors("searching (BM25)"):
            try:
                resp = self.client.search(index=self.alias, **_search_kwargs(body))
            except NotFoundError:
                return []  # nothing indexed yet
        return self._hits(resp, "bm25")

    def knn(self, vector: np.ndarray, k: int = 10, filters: Filters | None = None) -> list[Hit]:
        body = self._knn_body(vector, k, filters)
        if body is None:
            return []
        with self._errors("searching (kNN)"):
            resp = self.client.search(index=self.alias, **_search_kwargs(body))
        return self._hits(resp, "dense", _cosine)

    def hybrid_candidates(
        self, query: str, vector: np.ndarray | None, k: int = 10, filters: Filters | None = None
    ) -> tuple[list[Hit], list[Hit], dict[str, float]]:
        """(BM25 hits, kNN hits, seconds each took on the node) for one query, both from
        one ``_msearch`` round trip.

        Same results as ``bm25`` and ``knn`` called apart; a missing vector (or one with no
        direction) or a query without terms leaves that list empty.
        """
        bodies = [("bm25", self._bm25_body(query, k, filters), None)]
        if vector is not None:
            bodies.append(("dense", self._knn_body(vector, k, filters), _cosine))
        wanted = [(key, body, transform) for key, body, transform in bodies if body is not None]
        out: dict[str, list[Hit]] = {"bm25": [], "dense": []}
        took: dict[str, float] = {}
        if not wanted:
            return out["bm25"], out["dense"], took
        searches: list[dict[str, Any]] = []
        for _, body, _ in wanted:
            searches += [{"index": self.alias}, body]
        with self._errors("searching (BM25 + kNN)"):
            resp = self.client.msearch(searches=searches)
        for (key, _, transform), item in zip(wanted, resp["responses"]):
            if "error" in item:
                if item.get("status") == 404:
                    continue  # nothing indexed yet
                raise StoreError(f"Elasticsearch refused the {key} search: {_item_reason(item['error'])}")
            out[key] = self._hits(item, key, transform)
            took[key] = item.get("took", 0) / 1000.0
        return out["bm25"], out["dense"], took

    def get(self, ids: Sequence[str]) -> list[Passage]:
        """Passages by id, in the order asked, with their vectors (read from the index:
        they are not in ``_source``)."""
        ids = list(dict.fromkeys(i for i in ids if i))
        if not ids:
            return []
        found: dict[str, Passage] = {}
        with self._errors("reading passages by id"):
            for start in range(0, len(ids), _PAGE_ID_LIMIT):
                chunk = ids[start : start + _PAGE_ID_LIMIT]
                try:
                    resp = self.client.search(
                        index=self.alias, query={"ids": {"values": chunk}}, size=len(chunk),
                        source=_HIT_SOURCE, docvalue_fields=["vector"],
                    )
                except NotFoundError:
                    return []
                for h in resp["hits"]["hits"]:
                    p = passage_from_source(h["_id"], h["_source"])
                    vector = (h.get("fields") or {}).get("vector")
                    if vector:
                        p.vector = np.asarray(vector[0], dtype=np.float32)
                    found[p.id] = p
        return [found[i] for i in ids if i in found]

    def count(self, filters: Filters | None = None) -> int:
        with self._errors("counting passages"):
            try:
                resp = self.client.count(index=self.alias, query={"bool": {"filter": filter_clauses(filters)}})
            except NotFoundError:
                return 0
        return int(resp["count"])

    # ------------------------------------------------------------------ crawl state
    def put_crawl_records(self, records: Iterable[CrawlRecord]) -> None:
        with self._errors(f"preparing index {self.crawl_index}"):
            self._ensure_crawl_index()
        actions = [
            {"_op_type": "index", "_index": self.crawl_index, "_id": _crawl_id(r.url), "_source": _crawl_doc(r)}
            for r in records
        ]
        if not actions:
            return
        report = WriteReport()
        with self._errors(f"writing crawl records to {self.crawl_index}"):
            for ok, item in helpers.streaming_bulk(
                self.client, actions, chunk_size=_BULK_CHUNK, max_retries=5, raise_on_error=False
            ):
                result = next(iter(item.values()))
                if not ok:
                    report.failed[str(result.get("_id"))] = str(result.get("error"))
            self.client.indices.refresh(index=self.crawl_index)
        if report.failed:
            raise StoreError(f"{len(report.failed)} crawl records were not written: {next(iter(report.failed.values()))}")

    def get_crawl_record(self, url: str) -> CrawlRecord | None:
        with self._errors("reading a crawl record"):
            try:
                resp = self.client.get(index=self.crawl_index, id=_crawl_id(url))
            except NotFoundError:
                return None
        return _crawl_from_source(resp["_source"])

    def crawl_records(self) -> Iterator[CrawlRecord]:
        with self._errors("reading crawl records"):
            if not self.client.indices.exists(index=self.crawl_index):
                return
            for h in helpers.scan(self.client, index=self.crawl_index, query={"query": {"match_all": {}}}, size=1000):
                yield _crawl_from_source(h["_source"])

    # ------------------------------------------------------------------ info
    def info(self) -> StoreInfo:
        location = f"{self.url}/{self.alias}"
        with self._errors(f"reading index {self.alias}"):
            found = self._read_meta()
            if found is None:
                return StoreInfo(self.backend, location, 0, 0, 0, "")
            _, meta = found
            resp = self.client.search(
                index=self.alias,
                size=0,
                track_total_hits=True,
                aggs={"pages": {"cardinality": {"field": "url", "precision_threshold": 40000}}},
            )
        return StoreInfo(
            backend=self.backend,
            location=location,
            passages=int(resp["hits"]["total"]["value"]),
            pages=int(resp["aggregations"]["pages"]["value"]),
            dim=int(meta.get("dim", 0)),
            model=str(meta.get("model", "")),
        )

    def optimize(self) -> None:
        """Force-merge the passage index into one segment.

        Why: a crawl writes in small batches and leaves a dozen segments, each with its
        own HNSW graph that every kNN query walks; on the 42k-passage corpus merging took
        kNN from ~11 to ~6 ms and BM25 from ~7 to ~4 ms p50 (benchmarks/search.py). It
        waits for the merge (tens of seconds for a whole corpus on 2 cores).
        """
        with self._errors(f"optimizing index {self.alias}"):
            if not self.client.indices.exists_alias(name=self.alias):
                return
            self.client.options(request_timeout=max(self.settings.es_timeout, 600.0)).indices.forcemerge(
                index=self.alias, max_num_segments=1
            )

    def segments(self) -> int:
        """How many Lucene segments the passage index has (benchmarks report it)."""
        with self._errors(f"reading the segments of {self.alias}"):
            resp = self.client.indices.segments(index=self.alias)
        return sum(
            len(shard.get("segments", {}))
            for index in resp["indices"].values()
            for copies in index["shards"].values()
            for shard in copies
        )

    def drop(self) -> None:
        """Delete the store's indices (tests and benchmarks clean up with this)."""
        with self._errors(f"deleting index {self.alias}"):
            names = [self.crawl_index, self.index_name]
            if self.client.indices.exists_alias(name=self.alias):
                names += list(self.client.indices.get_alias(name=self.alias).body)
            for name in set(names):
                self.client.indices.delete(index=name, ignore_unavailable=True)
        self.model, self.dim, self._crawl_ready = "", 0, False

    def close(self) -> None:
        self.client.close()

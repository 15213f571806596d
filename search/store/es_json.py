"""orjson for what the Elasticsearch client sends and reads.

Why: a hybrid search sends a query vector and reads ~40 passages back, and the standard
library writes a 512-d float32 vector as 11 KB of 17-digit decimals that the node must
parse again. orjson writes numpy arrays directly, as the shortest decimals that round-trip
float32 (~6 KB, the same vector on the node), and parses the responses faster. Measured
on the 42k-passage corpus, interleaved over 200 development questions: the ``_msearch``
of a hybrid search went from 5.5 to 5.2 ms p50, and a kNN search for 20 from 5.5 to
4.7 ms (benchmarks/search.py times the whole path).

What orjson refuses (a lone surrogate in a string, an integer over 64 bits; a response
that holds a stored lone surrogate) is written or read by the standard library instead,
exactly as the client's default serializer would, so nothing that worked before fails now.

    >>> import numpy as np
    >>> JSON.dumps({"v": np.array([0.5, 0.25], dtype=np.float32)})
    b'{"v":[0.5,0.25]}'
"""

from __future__ import annotations

from typing import Any

import orjson
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class _Orjson:
    """orjson first; the standard library (the parent serializer) for what orjson refuses."""

    default: Any  # the parent serializer's hook for dates, UUIDs, numpy scalars

    def json_dumps(self, data: Any) -> bytes:
        try:
            return orjson.dumps(data, default=self.default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().json_dumps(data)  # type: ignore[misc]

    def json_loads(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # e.g. a stored lone surrogate, sent back as "\\ud800"
            return super().json_loads(data)  # type: ignore[misc]


class OrjsonJson(_Orjson, JsonSerializer):
    """JSON bodies (searches, documents, responses)."""


class OrjsonNdjson(_Orjson, NdjsonSerializer):
    """Newline-delimited bodies (``_bulk``, ``_msearch``), a line at a time."""


JSON = OrjsonJson()
NDJSON = OrjsonNdjson()


def serializers() -> dict[str, Any]:
    """Serializers by mimetype, for ``Elasticsearch(serializers=...)``.

    The compatibility-mode mimetypes are the ones the 8.x client actually sends and reads
    (``application/vnd.elasticsearch+json; compatible-with=8``), so they are set too.
    """
    return {
        "application/json": JSON,
        "application/x-ndjson": NDJSON,
        "application/vnd.elasticsearch+json": JSON,
        "application/vnd.elasticsearch+x-ndjson": NDJSON,
    }

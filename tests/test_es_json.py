"""The Elasticsearch client's orjson serializers: float32 vectors written exactly and
compactly, and everything orjson refuses handled as the default serializer handles it."""

from __future__ import annotations

import json
from datetime import date, datetime

import numpy as np
import orjson
import pytest
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from search.store.es_json import JSON, NDJSON, serializers


def test_a_float32_vector_is_written_as_float32_and_reads_back_bit_identical() -> None:
    vector = np.random.default_rng(5).normal(size=512).astype(np.float32)
    vector /= np.linalg.norm(vector)
    body = JSON.dumps({"query_vector": vector})
    parsed = np.asarray(json.loads(body)["query_vector"], dtype=np.float32)
    assert np.array_equal(parsed, vector)
    # the standard library writes the float64 expansion of every value: twice the bytes
    assert len(body) * 1.5 < len(JsonSerializer().dumps({"query_vector": vector.tolist()}))


def test_dates_are_written_as_the_default_serializer_writes_them() -> None:
    doc = {"published": date(2024, 2, 29), "seen": datetime(2024, 2, 29, 12, 30, 5), "n": np.int64(3)}
    assert json.loads(JSON.dumps(doc)) == json.loads(JsonSerializer().dumps(doc))


@pytest.mark.parametrize("value", ["bad \ud800 surrogate", 2**70])
def test_what_orjson_refuses_is_written_by_the_standard_library(value) -> None:
    doc = {"text": value}
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(doc)
    assert JSON.dumps(doc) == JsonSerializer().dumps(doc)
    assert NDJSON.dumps([{"index": {}}, doc]) == NdjsonSerializer().dumps([{"index": {}}, doc])


def test_a_response_orjson_cannot_read_is_read_by_the_standard_library() -> None:
    stored = b'{"_source": {"text": "bad \\uD800 surrogate"}}'  # how the node returns a lone surrogate
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(stored)
    assert JSON.loads(stored) == {"_source": {"text": "bad \ud800 surrogate"}}
    assert NDJSON.loads(stored + b"\n" + b'{"ok": 1}\n') == [{"_source": {"text": "bad \ud800 surrogate"}}, {"ok": 1}]


def test_every_mimetype_the_client_uses_gets_orjson() -> None:
    chosen = serializers()
    assert chosen["application/vnd.elasticsearch+json"] is JSON  # what the 8.x client sends
    assert chosen["application/vnd.elasticsearch+x-ndjson"] is NDJSON
    assert {chosen["application/json"], chosen["application/x-ndjson"]} == {JSON, NDJSON}

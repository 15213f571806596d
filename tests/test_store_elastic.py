"""What only the Elasticsearch store must do (the shared behaviour is in the contract tests):
the index layout behind the alias, settings reaching the cluster, per-document failure
reports, and clear errors for names and URLs it cannot use."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from search.config import Settings
from search.documents import Passage
from search.store.base import StoreError, StoreUnavailable
from search.store.elastic import ElasticStore

pytestmark = pytest.mark.elastic
DIM = 8


def passages(n: int) -> list[Passage]:
    rng = np.random.default_rng(3)
    return [Passage(id=f"e{i}", url=f"http://e.example/{i}", text=f"elastic passage {i}", lang="en",
                    vector=rng.normal(size=DIM).astype(np.float32)) for i in range(n)]


@pytest.fixture
def make(es_url: str, tmp_path: Path) -> Iterator:
    made: list[ElasticStore] = []

    def factory(**env: str) -> ElasticStore:
        values = {"CITED_ES_URL": es_url, "CITED_ES_INDEX": f"stores-es-{uuid.uuid4().hex[:10]}",
                  "CITED_DATA_DIR": str(tmp_path), **env}
        made.append(ElasticStore(Settings.load(env=values)))
        return made[-1]

    yield factory
    for store in made:
        if store.alias == store.alias.lower():  # an invalid name created nothing to drop
            store.drop()
        store.close()


def test_index_lives_behind_the_alias_with_the_configured_layout(make) -> None:
    store = make(CITED_ES_SHARDS="2")
    store.open("layout-model", DIM)
    client = store.client
    assert list(client.indices.get_alias(name=store.alias).body) == [f"{store.alias}-v1"]
    settings = client.indices.get_settings(index=store.alias).body[f"{store.alias}-v1"]["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("2", "0")
    mapping = client.indices.get_mapping(index=store.alias).body[f"{store.alias}-v1"]["mappings"]
    assert mapping["_meta"]["cited"]["model"] == "layout-model" and mapping["_meta"]["cited"]["dim"] == DIM
    vector = mapping["properties"]["vector"]
    assert (vector["dims"], vector["similarity"], vector["index_options"]["type"]) == (DIM, "dot_product", "int8_hnsw")
    assert mapping["properties"]["terms"]["analyzer"] == "whitespace"
    # The test node is the minimal distribution: no analysis-common, so no stemmed sub-field.
    assert not store._has_analysis_common()
    assert "fields" not in mapping["properties"]["terms"]
    assert client.indices.exists(index=store.crawl_index)


def test_a_document_the_cluster_rejects_is_reported_and_the_rest_written(make) -> None:
    store = make()
    store.open("m", DIM)
    batch = passages(4)
    batch[2].position = 2**40  # beyond the `integer` field: the server refuses this one document
    report = store.upsert(batch)
    assert report.written == 3
    assert list(report.failed) == ["e2"] and "position" in report.failed["e2"]
    assert not report.ok
    assert store.count() == 3


def test_an_index_that_is_not_a_cited_store_is_left_alone(make) -> None:
    store = make()
    store.client.indices.create(index=store.alias, mappings={"properties": {"x": {"type": "keyword"}}})
    try:
        with pytest.raises(StoreError, match="not a Cited store"):
            store.open("m", DIM)
        assert store.client.indices.get_mapping(index=store.alias).body[store.alias]["mappings"]["properties"] == {
            "x": {"type": "keyword"}}
    finally:
        store.client.indices.delete(index=store.alias)


def test_an_invalid_index_name_is_a_clear_error(make) -> None:
    store = make(CITED_ES_INDEX="Not_Lower_Case")
    with pytest.raises(StoreError, match="(?i)invalid_index_name|must be lowercase"):
        store.open("m", DIM)


def test_unreachable_url_is_named_without_its_password(tmp_path: Path) -> None:
    settings = Settings.load(env={"CITED_ES_URL": "http://cited:hunter22@127.0.0.1:1", "CITED_DATA_DIR": str(tmp_path)})
    store = ElasticStore(settings)
    with pytest.raises(StoreUnavailable) as err:
        store.open("m", DIM)
    assert "http://127.0.0.1:1" in str(err.value) and "hunter22" not in str(err.value)
    with pytest.raises(StoreUnavailable):
        store.count()


def test_an_orphan_index_is_adopted_only_if_it_is_a_cited_store(make) -> None:
    store = make()
    store.open("m", DIM)
    store.upsert(passages(2))
    store.client.indices.delete_alias(index=store.index_name, name=store.alias)  # as if create was cut short
    again = make(CITED_ES_INDEX=store.alias)
    again.open("m", DIM)
    assert again.count() == 2 and store.client.indices.exists_alias(name=store.alias)

    foreign = make()
    foreign.client.indices.create(index=f"{foreign.alias}-v1", mappings={"properties": {"x": {"type": "keyword"}}})
    with pytest.raises(StoreError, match="not a Cited store"):
        foreign.open("m", DIM)
    assert not foreign.client.indices.exists_alias(name=foreign.alias)


def test_stored_source_leaves_out_vectors_and_terms_but_get_returns_vectors(make) -> None:
    store = make()
    store.open("source-model", DIM)
    written = passages(3)
    assert store.upsert(written).ok
    raw = store.client.get(index=store.alias, id="e1")["_source"]
    assert "vector" not in raw and "terms" not in raw and raw["text"] == "elastic passage 1"
    got = store.get(["e2", "e1"])
    assert [p.id for p in got] == ["e2", "e1"]
    unit = written[1].vector / np.linalg.norm(written[1].vector)
    assert np.allclose(got[1].vector, unit, atol=1e-5)
    assert store.bm25("passage 1", k=3)[0].passage.id == "e1"  # the terms are still indexed


def test_hybrid_candidates_equal_the_two_searches_made_apart(make) -> None:
    store = make()
    store.open("hybrid-model", DIM)
    written = passages(12)
    query_vector = written[4].vector
    assert store.hybrid_candidates("elastic passage 7", query_vector, k=5)[:2] == ([], [])  # nothing yet
    assert store.upsert(written).ok
    bm25, dense, took = store.hybrid_candidates("elastic passage 7", query_vector, k=5)
    assert [h.passage.id for h in bm25] == [h.passage.id for h in store.bm25("elastic passage 7", k=5)]
    assert [h.passage.id for h in dense] == [h.passage.id for h in store.knn(query_vector, k=5)]
    assert dense[0].passage.id == "e4" and dense[0].scores["dense"] > 0.9  # int8 HNSW: near, not exactly, 1
    assert bm25[0].passage.id == "e7" and set(took) == {"bm25", "dense"}
    # a query with no BM25 terms, or no vector, leaves that side empty
    assert store.hybrid_candidates("?!", query_vector, k=5)[0] == []
    only_bm25, no_dense, _ = store.hybrid_candidates("elastic passage 7", None, k=5)
    assert only_bm25 and no_dense == []


def test_text_with_a_lone_surrogate_is_written_and_read_back(make) -> None:
    """orjson refuses such text both ways; the store falls back rather than losing the page."""
    store = make()
    store.open("surrogate-model", DIM)
    batch = passages(3)
    batch[1].text = "broken \ud800 surrogate"
    assert store.upsert(batch).ok
    assert [h.passage.text for h in store.bm25("surrogate", k=3)] == ["broken \ud800 surrogate"]
    assert store.get(["e1"])[0].text == "broken \ud800 surrogate"

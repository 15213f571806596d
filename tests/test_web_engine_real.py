"""The web app over the real engine: Retriever (USE embedder, LocalStore, hybrid fusion)
and AnswerPipeline (extractive generator, citation checks), on real Debian FAQ sections.

Why besides test_web_api.py: that file tests the web layer over a tiny engine; this one
checks the contract where the parts meet: the answer JSON equals `cited ask --json` for
the same events, errors of real stores become 503, and the page's inputs are what the
real pipeline emits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.config import Settings
from tests.conftest import CORPUS_ROOT
from tests.test_web_api import assert_error, parse_sse
from tests.web_engine import corpus_passages, xss_passage
from web.app import create_app
from web.present import answer_record

retrieve = pytest.importorskip("search.retrieve", reason="search/retrieve.py is not on this branch yet")
answer = pytest.importorskip("search.answer", reason="search/answer.py is not on this branch yet")
pytestmark = pytest.mark.slow

BASE = "http://127.0.0.1:9"
PAGES = [
    "doc/debian/FAQ/pkgtools.en.html",
    "doc/debian/FAQ/de/pkgtools.de.html",
    "doc/debian/FAQ/ja/pkgtools.ja.html",
    "doc/debian/FAQ/basic-defs.en.html",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from search.embed import load_embedder
    from search.store.local import LocalStore

    tmp: Path = tmp_path_factory.mktemp("real-engine")
    settings = Settings.load(
        env={"CITED_DATA_DIR": str(tmp / "data"), "CITED_RATE_LIMIT": "0", "CITED_GENERATOR": "extractive"}
    )
    embedder = load_embedder(settings)
    passages = corpus_passages(CORPUS_ROOT, BASE, PAGES) + [xss_passage(BASE)]
    vectors = embedder.encode_passages([f"{p.title}\n{p.heading}\n{p.text}" for p in passages])
    for p, v in zip(passages, vectors):
        p.vector = v
    store = LocalStore(settings.data_dir / "store.sqlite3")  # where connect_store(settings) looks
    store.open(embedder.name, embedder.dim)
    assert store.upsert(passages).ok
    retriever = retrieve.Retriever(settings, store=store, embedder=embedder)
    pipeline = answer.AnswerPipeline(settings, retriever=retriever)
    yield settings, retriever, pipeline
    store.close()


@pytest.fixture(scope="module")
def client(engine):
    settings, retriever, pipeline = engine
    return create_app(settings, retriever=retriever, pipeline=pipeline).test_client()


def test_hybrid_search_through_the_api(client):
    r = client.get("/api/search", query_string={"q": "Was ist dpkg?", "k": 5})
    assert r.status_code == 200
    body = r.get_json()
    assert body["lang"] == "de" and body["mode"] in ("hybrid", "rerank")
    assert body["hits"] and all("#" in h["link"] for h in body["hits"])
    assert any({"bm25", "dense"} & set(h["scores"]) for h in body["hits"])
    assert all(h["lang"] == "ja" for h in client.get("/api/search?q=dpkg&lang=ja").get_json()["hits"])


def test_answer_json_is_what_cited_ask_prints(client, engine):
    ask = pytest.importorskip("search.commands.ask")
    _, _, pipeline = engine
    q = "Was ist dpkg?"
    body = client.post("/api/answer", json={"q": q}).get_json()
    assert body["lang"] == "de" and body["answer"]
    numbers = {s["n"] for s in body["sources"]}
    assert numbers and all("#" in s["url"] for s in body["sources"])
    assert body["citations"] and {c["n"] for c in body["citations"]} <= numbers
    # The same events through `cited ask --json`'s collector give the same answer fields.
    events = list(pipeline.stream(q))
    mine, theirs = answer_record(events, q), ask.record_from_events(events, q)
    for key in ("answer", "lang", "sources", "related", "supported_share"):
        assert mine[key] == theirs[key], key
    assert [{k: c[k] for k in theirs["citations"][i]} for i, c in enumerate(mine["citations"])] == theirs["citations"]


def test_answer_stream_from_the_real_pipeline(client):
    r = client.post("/api/answer", json={"q": "How do I install a package with dpkg?", "stream": True})
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    events = parse_sse(r.data)
    names = [n for n, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and "token" in names and "citations" in names
    citations = dict(events)["citations"]
    assert all(c["fragment_url"].startswith(BASE) and ":~:text=" in c["fragment_url"] for c in citations["citations"])


def test_follow_up_history_reaches_the_pipeline(client):
    history = [{"q": "What is dpkg?", "answer": "dpkg is the package manager [1]."}]
    r = client.post("/api/answer", json={"q": "and aptitude?", "history": history, "stream": True})
    assert r.status_code == 200
    sources = parse_sse(r.data)[0][1]
    assert "dpkg" in sources["query"]  # rewritten with the earlier question (no model: joined)


def test_serve_loads_the_engine_once_before_listening(engine):
    """What `cited serve` does: build everything from the settings, load it, share it."""
    settings, _, _ = engine
    app = create_app(settings)
    client = app.test_client()
    before = client.get("/api/health").get_json()
    assert before["store"]["reachable"] and before["store"]["passages"] > 20
    assert before["models"]["retriever_loaded"] is False  # health never loads a model
    app.extensions["cited.engine"].load()
    after = client.get("/api/health").get_json()
    assert after["models"]["embedder"] == {"name": "use-multilingual", "loaded": True}
    assert after["models"]["generator"] == {"name": "extractive", "loaded": True}
    retriever = app.extensions["cited.engine"].retriever()
    assert client.get("/api/search?q=dpkg").status_code == 200
    assert app.extensions["cited.engine"].retriever() is retriever


def test_a_corrupt_store_is_503(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "store.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    settings = Settings.load(env={"CITED_DATA_DIR": str(data), "CITED_RATE_LIMIT": "0", "CITED_GENERATOR": "extractive"})
    client = create_app(settings).test_client()
    assert "not a readable Cited store" in assert_error(client.get("/api/search?q=dpkg"), 503)["error"]["message"]
    assert_error(client.post("/api/answer", json={"q": "dpkg"}), 503)
    assert_error(client.post("/api/answer", json={"q": "dpkg", "stream": True}), 503)
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["store"]["reachable"] is False


def test_elasticsearch_down_is_503(tmp_path):
    pytest.importorskip("search.store.elastic", reason="search/store/elastic.py is not on this branch yet")
    settings = Settings.load(
        env={
            "CITED_DATA_DIR": str(tmp_path / "data"), "CITED_STORE": "elastic", "CITED_ES_URL": "http://127.0.0.1:9",
            "CITED_ES_TIMEOUT": "2", "CITED_RATE_LIMIT": "0", "CITED_GENERATOR": "extractive",
        }
    )
    client = create_app(settings).test_client()
    body = assert_error(client.get("/api/search?q=dpkg"), 503)
    assert "127.0.0.1:9" in json.dumps(body)
    assert_error(client.post("/api/answer", json={"q": "dpkg", "stream": True}), 503)
    assert client.get("/api/health").status_code == 503

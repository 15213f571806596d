"""Hybrid retrieval on a real slice of the corpus, in the local store and in Elasticsearch."""

from __future__ import annotations

from datetime import date

import pytest

from search.config import Settings
from search.documents import Filters, Hit, Passage
from search.fusion import FusionParams, adaptive, cap_per_page, query_coverage, rrf
from search.retrieve import MAX_QUERY_CHARS, QueryError, Retriever, check_filters, clean_query
from tests import retrieval_corpus

# Development-set questions whose answer is a section of the English FAQ in the slice.
CROSS_LINGUAL = [
    ("Wie kann ich mein Debian-System aktuell halten?", "doc/debian/FAQ/uptodate.en.html"),
    ("Debian システムを現行版に維持する方法は?", "doc/debian/FAQ/uptodate.en.html"),
    ("Debian 制御ファイルとは何ですか?", "doc/debian/FAQ/pkg-basics.en.html"),
]


# ---------------------------------------------------------------- input checks (no models)
@pytest.mark.parametrize("bad", ["", "   \n\t", "?!...", "¿¡ -- !!", None, 42])
def test_unusable_queries_raise_a_clear_error(bad):
    with pytest.raises(QueryError, match="query"):
        clean_query(bad)


def test_long_query_is_cut_at_a_word_boundary():
    text, truncated = clean_query("debian package " * 700)
    assert truncated and len(text) <= MAX_QUERY_CHARS and not text.endswith(" ")
    assert text.split()[-1] in ("debian", "package")


def test_emoji_and_symbols_are_searchable():
    assert clean_query("🐧🐧") == ("🐧🐧", False)


@pytest.mark.parametrize(
    "filters, message",
    [
        (Filters(lang="english please"), "language"),
        (Filters(site="http://x/y"), "host"),
        (Filters(published_from=date(2024, 1, 2), published_to=date(2024, 1, 1)), "date range"),
        (Filters(published_from="2024-01-01"), "date"),
    ],
)
def test_malformed_filters_raise(filters, message):
    with pytest.raises(QueryError, match=message):
        check_filters(filters)


# ---------------------------------------------------------------- fusion (pure)
def _hits(ids, name):
    return [Hit(Passage(i, f"http://h/{i[0]}", f"text {i}"), {name: 1.0 / (r + 1)}) for r, i in enumerate(ids)]


def test_rrf_rewards_agreement_and_keeps_every_candidate():
    fused = rrf(_hits(["a1", "b1", "c1"], "bm25"), _hits(["b1", "d1"], "dense"))
    assert [h.passage.id for h in fused][0] == "b1"
    assert {h.passage.id for h in fused} == {"a1", "b1", "c1", "d1"}
    b1 = fused[0]
    assert {"bm25", "dense", "fused"} <= set(b1.scores)


def test_rrf_weights_shift_the_order():
    bm, dn = _hits(["a1", "b1"], "bm25"), _hits(["b1", "a1"], "dense")
    assert rrf(bm, dn, bm25_weight=2.0)[0].passage.id == "a1"
    assert rrf(bm, dn, dense_weight=2.0)[0].passage.id == "b1"


def test_cap_per_page_keeps_order_and_limits_each_page():
    hits = _hits(["a1", "a2", "a3", "b1", "a4"], "bm25")
    assert [h.passage.id for h in cap_per_page(hits, 2)] == ["a1", "a2", "b1"]


def _passage(pid, text):
    return Passage(pid, f"http://h/{pid}", text, heading="")


def test_coverage_is_high_when_a_passage_holds_the_query_words():
    query = "keep debian system current"
    bm = [Hit(_passage("x", "How can I keep my Debian system current?"), {"bm25": 9.0})]
    noise = [Hit(_passage(f"n{i}", f"debian mirror {i}"), {"dense": 0.5}) for i in range(5)]
    assert query_coverage(query, bm, bm + noise) > 0.9
    bm_weak = [Hit(_passage("y", "Debian mirrors"), {"bm25": 1.0})]
    assert query_coverage(query, bm_weak, bm_weak + noise) < 0.3


def test_adaptive_follows_bm25_when_covered_and_dense_when_not():
    full = [Hit(_passage("bm", "How can I keep my Debian system current?"), {"bm25": 9.0})]
    dense = [Hit(_passage("dn", "Upgrading a running system with apt"), {"dense": 0.8}), Hit(full[0].passage, {"dense": 0.7})]
    hits, info = adaptive("keep debian system current", full, dense, FusionParams())
    assert hits[0].passage.id == "bm" and info["coverage"] > 0.9
    weak = [Hit(_passage("w", "Debian"), {"bm25": 0.3})]
    hits, info = adaptive("Debian システムを現行版に維持する方法は?", weak, dense[:1] + weak, FusionParams())
    assert hits[0].passage.id == "dn" and info["bm25_weight"] < 0.1


# ---------------------------------------------------------------- real stores, real model
@pytest.fixture(scope="module", params=["local", "elastic"])
def store(request, tmp_path_factory):
    passages = list(retrieval_corpus.corpus())
    embedder = retrieval_corpus.embedder()
    if request.param == "local":
        from search.store.local import LocalStore

        st = LocalStore(tmp_path_factory.mktemp("retrieve") / "store.sqlite3")
    else:
        pytest.importorskip("search.store.elastic", reason="ElasticStore not merged yet")
        es_url = request.getfixturevalue("es_url")
        from search.store.elastic import ElasticStore

        settings = Settings.load(env={"CITED_STORE": "elastic", "CITED_ES_URL": es_url, "CITED_ES_INDEX": "retrieval-test"})
        st = ElasticStore(settings)
    st.open(embedder.name, embedder.dim)
    report = st.upsert(passages)
    assert report.ok, report.failed
    yield st
    if request.param == "elastic" and hasattr(st, "drop"):
        st.drop()
    st.close()


@pytest.fixture(scope="module")
def retriever(store, tmp_path_factory):
    settings = Settings.load(env={"CITED_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    return Retriever(settings, store=store, embedder=retrieval_corpus.embedder())




def _pages(result):
    return [h.passage.url.split("http://docs.test/")[-1] for h in result.hits]


@pytest.mark.slow
def test_bm25_finds_the_section_whose_heading_is_the_question(retriever):
    result = retriever.search("What is a Debian control file?", k=5, mode="bm25")
    assert result.hits[0].passage.anchor == "controlfile"
    assert result.lang == "en" and result.mode == "bm25"
    assert "bm25" in result.timings and "embed" not in result.timings


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
@pytest.mark.parametrize("question, page", CROSS_LINGUAL)
def test_a_german_or_japanese_question_finds_the_english_answer(retriever, mode, question, page):
    result = retriever.search(question, k=5, mode=mode)
    assert page in _pages(result), [h.passage.link for h in result.hits]
    assert result.lang in ("de", "ja")


@pytest.mark.slow
def test_hybrid_hits_carry_every_stage_and_timings(retriever):
    result = retriever.search("How can I keep my Debian system current?", k=10)
    assert result.hits[0].passage.anchor == "howtocurrent"
    assert {"bm25", "dense", "fused"} <= set(result.hits[0].scores)
    assert {"detect", "embed", "bm25", "dense", "fuse", "total"} <= set(result.timings)
    scores = [h.scores["fused"] for h in result.hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_at_most_per_page_max_passages_per_page(retriever):
    result = retriever.search("Debian packages", k=10, mode="hybrid")
    urls = [h.passage.url for h in result.hits]
    assert max(urls.count(u) for u in urls) <= retriever.settings.per_page_max
    assert len(set(urls)) >= 4


@pytest.mark.slow
def test_filters_restrict_every_mode(retriever):
    for mode in ("bm25", "dense", "hybrid"):
        de = retriever.search("Was ist Debian?", k=5, mode=mode, filters=Filters(lang="de"))
        assert de.hits and all(h.passage.lang == "de" for h in de.hits)
        py = retriever.search("path", k=5, mode=mode, filters=Filters(url_prefix="http://docs.test/doc/python3.11/"))
        assert py.hits and all("python3.11" in h.passage.url for h in py.hits)
        site = retriever.search("Debian", k=5, mode=mode, filters=Filters(site="docs.test"))
        assert site.hits
        assert retriever.search("Debian", k=5, mode=mode, filters=Filters(site="nowhere.example")).hits == []
        assert retriever.search("Debian", k=5, mode=mode, filters=Filters(lang="sw")).hits == []


@pytest.mark.slow
def test_odd_queries_give_results_not_crashes(retriever):
    long = retriever.search("How do I keep Debian current? " * 400, k=5)
    assert long.truncated and long.hits
    assert retriever.search("🐧", k=3).hits  # dense embeds it; BM25 has no terms
    assert retriever.search("Wie kann ich mein Debian-System aktuell halten? 🐧", k=3).hits
    assert retriever.search("Habari gani, nini Debian?", k=3).hits  # Swahili: not a USE language
    with pytest.raises(QueryError):
        retriever.search("   ")
    with pytest.raises(QueryError, match="mode"):
        retriever.search("debian", mode="magic")


@pytest.mark.slow
def test_search_many_matches_single_searches(retriever):
    questions = [q for q, _ in CROSS_LINGUAL]
    many = retriever.search_many(questions, k=5, mode="hybrid")
    for question, result in zip(questions, many):
        single = retriever.search(question, k=5, mode="hybrid")
        assert [h.passage.id for h in result.hits] == [h.passage.id for h in single.hits]

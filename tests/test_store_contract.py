"""The Store contract, run unchanged on every backend: `local` (SQLite) and `elastic`.

Why one module: retrieval, the crawler and the web app only know the Store protocol, so
both backends must behave the same for the same calls. Each test runs once per backend
(test ids end in [local] / [elastic]); the Elasticsearch runs use a fresh index per test
(or per module for the read-only corpus) and delete it afterwards.

The multilingual passages are real: sections 1.3 ("what is Linux") and 1.4 ("does Debian
just do GNU/Linux") of the Debian FAQ (/usr/share/doc/debian/FAQ) in English, German,
Japanese and Chinese. Translations of one section share names (Linux, Unix, Linus
Torvalds) and Chinese and Japanese share Han characters, so ranking its own language
first is a real test of the terms each backend indexes.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from search.config import Settings
from search.documents import CrawlRecord, Filters, Passage
from search.store.base import Store, StoreError, StoreMismatch

BACKENDS = ["local", "elastic"]
MODEL = "contract-model"
DIM = 16

# (id, url, lang, published, heading, text)
FAQ = "https://www.debian.org/doc/manuals/debian-faq"
CORPUS: list[tuple[str, str, str, date | None, str, str]] = [
    ("linux-en", f"{FAQ}/basic-defs.en.html", "en", date(2023, 1, 10),
     "1.3. OK, now I know what Debian is... what is Linux?!",
     "In short, Linux is the kernel of a Unix-like operating system. It was originally designed for 386 "
     "(and better) PCs; today Linux also runs on a dozen of other systems. Linux is written by Linus "
     "Torvalds and many computer scientists around the world."),
    ("nonlinux-en", f"{FAQ}/basic-defs.en.html", "en", date(2023, 1, 10),
     "1.4. Does Debian just do GNU/Linux?",
     "Currently, Debian is only available for Linux, but with Debian GNU/Hurd and Debian on BSD kernels, "
     "we have started to offer non-Linux-based OSes as a development, server and desktop platform, too. "
     "However, these non-linux ports are not officially released yet."),
    ("linux-de", f"{FAQ}/basic-defs.de.html", "de", date(2022, 6, 1),
     "1.3. OK, jetzt weiß ich, was Debian ist ... aber was ist Linux?!",
     "Kurz gesagt stellt Linux den Kernel eines Unix-ähnlichen Betriebssystems dar. Es wurde ursprünglich "
     "für 386er und darauf folgende Prozessoren in Personal Computern entwickelt; heutzutage läuft Linux "
     "auch auf einem Dutzend anderer Systeme. Linux wird von Linus Torvalds und vielen weiteren "
     "Informatikern auf der ganzen Welt geschrieben."),
    ("nonlinux-de", f"{FAQ}/basic-defs.de.html", "de", date(2022, 6, 1),
     "1.4. Befasst sich Debian nur mit GNU/Linux?",
     "Derzeit ist Debian nur für Linux erhältlich, aber mit Debian GNU/Hurd und Debian auf BSD-Kerneln "
     "haben wir begonnen, auch nicht-Linux-basierte Betriebssysteme als Entwicklungs-, Server- und "
     "Desktop-Plattform anzubieten. Allerdings sind diese nicht-Linux-Portierungen derzeit noch nicht "
     "offiziell verfügbar."),
    ("linux-ja", "https://ja.example.org/FAQ/basic-defs.ja.html", "ja", date(2021, 3, 15),
     "1.3. これで Debian が何なのかはわかった。。。では Linux とは何?",
     "一言で言えば Linux は Unix 類似オペレーティングシステムのカーネルです。元々は 386 (以上) の PC 向けに"
     "設計されました。現在では Linux は他の多くのシステムでも動作します。Linux は Linus Torvalds および"
     "世界中の多数のコンピュータ科学者により書かれました。"),
    ("nonlinux-ja", "https://ja.example.org/FAQ/basic-defs.ja.html", "ja", date(2021, 3, 15),
     "1.4. Debian は GNU/Linux だけ?",
     "現在 Debian は Linux のみが利用可能ですが、Debian GNU/Hurd 及び BSD カーネル上の Debian から、開発、"
     "サーバ、デスクトップ基盤用に Linux ベースではない OS の提供も開始しました。"),
    ("linux-zh", "https://zh.example.org/FAQ/basic-defs.zh-cn.html", "zh", None,
     "1.3. 好的，我知道什么是 Debian 了……什么是 Linux？！",
     "简而言之，Linux 是一个类 Unix 操作系统的内核。它最初为 386（或更高的）PC 设计；如今 Linux 也可以在"
     "许多其他系统上运行。Linux 由 Linus Torvalds 以及世界各地的许多计算机科学家写就。"),
    ("nonlinux-zh", "https://zh.example.org/FAQ/basic-defs.zh-cn.html", "zh", None,
     "1.4. Debian 只做 GNU/Linux 吗？",
     "目前，Debian 只有 Linux 版本，但随着 Debian GNU/Hurd 以及使用 BSD 内核的 Debian 的诞生，我们也开始"
     "提供非 Linux 的操作系统，用于开发、服务器和桌面平台。然而，这些非 Linux 的移植尚未作为官方版本发布。"),
    ("apt-en", f"{FAQ}/pkgtools.en.html", "en", date(2024, 5, 20),
     "8.1.2. APT",
     "APT is the Advanced Package Tool, an advanced interface to the Debian packaging system which "
     "provides the apt-get program. It provides commandline tools for searching and managing packages."),
    ("synaptic-en", "http://localhost:8080/doc/debian/FAQ/pkgtools.en.html", "en", date(2024, 5, 20),
     "8.1.4. synaptic",
     "synaptic is a graphical package manager. It enables you to install, upgrade and remove software "
     "packages in a user friendly way."),
]


def vector_for(pid: str, dim: int = DIM) -> np.ndarray:
    """A fixed random unit vector per passage id (the same in every run and backend)."""
    seed = int.from_bytes(hashlib.sha1(pid.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def corpus_passages() -> list[Passage]:
    return [
        Passage(id=pid, url=url, text=text, anchor=pid, title="Debian FAQ", heading=heading, lang=lang,
                position=i, page_hash=f"hash-{url}", published=published, vector=vector_for(pid))
        for i, (pid, url, lang, published, heading, text) in enumerate(CORPUS)
    ]


def page(url: str, n: int, word: str = "mirror") -> list[Passage]:
    return [
        Passage(id=f"{url}#{i}", url=url, text=f"Debian {word} passage {i} of {url}", anchor=f"s{i}",
                lang="en", position=i, vector=vector_for(f"{url}#{i}"))
        for i in range(n)
    ]


# ---------------------------------------------------------------------- fixtures
StoreFactory = Callable[..., Store]


def _factory(backend: str, request: pytest.FixtureRequest, root: Path) -> tuple[StoreFactory, Callable[[], None]]:
    """make(name="main") -> a new handle on the store called ``name`` (not yet opened)."""
    handles: list[Store] = []
    suffix = uuid.uuid4().hex[:10]
    if backend == "elastic":
        es_url = request.getfixturevalue("es_url")
        from search.store.elastic import ElasticStore

        def make(name: str = "main") -> Store:
            settings = Settings.load(env={"CITED_ES_URL": es_url, "CITED_ES_INDEX": f"stores-contract-{name}-{suffix}",
                                          "CITED_DATA_DIR": str(root)})
            handles.append(ElasticStore(settings))
            return handles[-1]
    else:
        from search.store.local import LocalStore

        def make(name: str = "main") -> Store:
            handles.append(LocalStore(root / f"{name}.sqlite3"))
            return handles[-1]

    def cleanup() -> None:
        for h in handles:
            drop = getattr(h, "drop", None)
            if drop is not None:
                drop()
            h.close()

    return make, cleanup


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    make, cleanup = _factory(request.param, request, tmp_path)
    yield make
    cleanup()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    """A new, opened, empty store."""
    s = make_store()
    s.open(MODEL, DIM)
    return s


@pytest.fixture(scope="module", params=BACKENDS)
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store per backend holding CORPUS, shared by the read-only tests."""
    make, cleanup = _factory(request.param, request, tmp_path_factory.mktemp(f"corpus-{request.param}"))
    s = make()
    s.open(MODEL, DIM)
    report = s.upsert(corpus_passages())
    assert report.ok and report.written == len(CORPUS)
    yield s
    cleanup()


def ids(hits) -> list[str]:
    return [h.passage.id for h in hits]


# ---------------------------------------------------------------------- open / create
def test_open_creates_an_empty_store_and_reopens_it(make_store: StoreFactory) -> None:
    first = make_store()
    assert first.info().passages == 0
    first.open(MODEL, DIM)
    assert first.count() == 0
    first.upsert(page("http://a.example/p", 3))
    info = first.info()
    assert (info.backend, info.model, info.dim, info.passages, info.pages) == (first.backend, MODEL, DIM, 3, 1)

    again = make_store()  # a second handle on the same store, as a new process would have
    again.open(MODEL, DIM)
    assert again.count() == 3
    assert again.info().model == MODEL
    first.open(MODEL, DIM)  # opening twice is harmless
    assert first.count() == 3


@pytest.mark.parametrize("model, dim", [("other-model", DIM), (MODEL, DIM * 2)], ids=["model", "dim"])
def test_opening_with_another_model_or_dim_fails_and_keeps_the_data(make_store: StoreFactory, model: str, dim: int) -> None:
    built = make_store()
    built.open(MODEL, DIM)
    built.upsert(page("http://a.example/p", 2))
    other = make_store()
    with pytest.raises(StoreMismatch) as err:
        other.open(model, dim)
    message = str(err.value)
    assert MODEL in message and model in message
    assert f"{DIM}-d" in message and f"{dim}-d" in message
    check = make_store()
    check.open(MODEL, DIM)
    assert check.count() == 2
    assert check.info().dim == DIM and check.info().model == MODEL
    assert [p.id for p in check.get(["http://a.example/p#0"])] == ["http://a.example/p#0"]


# ---------------------------------------------------------------------- writes
def test_upsert_is_idempotent_by_id_and_updates_text(store: Store) -> None:
    passages = page("http://a.example/p", 4)
    assert store.upsert(passages).written == 4
    assert store.upsert(passages).written == 4
    assert store.count() == 4
    changed = Passage(**{**passages[1].__dict__, "text": "Debian keyring quarantine"})
    report = store.upsert([changed])
    assert report.ok
    assert store.count() == 4
    assert store.get([changed.id])[0].text == "Debian keyring quarantine"
    assert ids(store.bm25("quarantine", k=5)) == [changed.id]


def test_replace_page_keeps_only_the_new_passages(store: Store) -> None:
    store.upsert(page("http://a.example/p", 3) + page("http://b.example/q", 2))
    old = page("http://a.example/p", 3)
    new = [Passage(**{**old[0].__dict__, "text": "rewritten first passage about sources.list"}),
           Passage(id="http://a.example/p#new", url="http://a.example/p", text="a brand new section", lang="en",
                   vector=vector_for("new"))]
    assert store.replace_page("http://a.example/p", new).written == 2
    assert store.count(Filters(url_prefix="http://a.example/p")) == 2
    assert store.count() == 4  # the other page is untouched
    assert [p.id for p in store.get([old[1].id, old[2].id])] == []
    assert store.get([old[0].id])[0].text.startswith("rewritten")
    assert store.replace_page("http://a.example/p", new).written == 2  # idempotent
    assert store.count() == 4


def test_delete_page_returns_the_number_deleted(store: Store) -> None:
    store.upsert(page("http://a.example/p", 3) + page("http://b.example/q", 2))
    assert store.delete_page("http://a.example/p") == 3
    assert store.count() == 2
    assert store.delete_page("http://a.example/p") == 0
    assert store.bm25("passage", k=10) and all(h.passage.url == "http://b.example/q" for h in store.bm25("passage", k=10))


def test_optimize_after_many_writes_keeps_every_result(store: Store) -> None:
    for n in range(6):  # one write per page: several segments / FTS b-trees to merge
        store.upsert(page(f"http://a.example/{n}", 3, word=f"mirror{n % 2}"))
    store.delete_page("http://a.example/0")

    def results() -> tuple:
        # sets, and the pages on top: merging drops deleted documents from BM25's
        # statistics, which may reorder ties, never what matches
        lexical = ids(store.bm25("mirror1 passage", k=20))
        top_pages = {pid.split("#")[0] for pid in lexical[:9]}
        return set(lexical), top_pages, set(ids(store.knn(vector_for("probe"), k=20))), store.count()

    before = results()
    store.optimize()
    store.optimize()  # idempotent
    assert results() == before
    assert len(before[0]) == 15 and before[3] == 15
    assert before[1] == {f"http://a.example/{n}" for n in (1, 3, 5)}


def test_optimize_on_an_empty_store_does_nothing(make_store: StoreFactory) -> None:
    fresh = make_store()
    fresh.optimize()  # never opened: nothing to compact, no error
    fresh.open(MODEL, DIM)
    fresh.optimize()
    assert fresh.count() == 0


def test_wrong_vector_dim_is_refused_and_nothing_written(store: Store) -> None:
    bad = page("http://a.example/p", 2)
    bad[1].vector = np.ones(DIM + 3, dtype=np.float32)
    with pytest.raises(StoreError, match=f"{DIM + 3}-d"):
        store.upsert(bad)
    assert store.count() == 0
    with pytest.raises(StoreError, match="dimension"):
        store.knn(np.ones(DIM - 1, dtype=np.float32), k=3)


def test_passage_without_vector_is_refused(store: Store) -> None:
    bad = page("http://a.example/p", 2)
    bad[0].vector = None
    with pytest.raises(StoreError, match="no vector"):
        store.upsert(bad)
    with pytest.raises(StoreError, match="no vector"):
        store.replace_page("http://a.example/p", bad)
    assert store.count() == 0


# ---------------------------------------------------------------------- crawl state
def test_crawl_records_put_get_iterate_replace(store: Store) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    long_url = "http://a.example/" + "x" * 900  # longer than an Elasticsearch _id may be
    records = [
        CrawlRecord(url="http://a.example/p", status="indexed", http_status=200, etag='"abc"',
                    last_modified="Tue, 01 Dec 2026 10:00:00 GMT", content_hash="h1", fetched_at=when, depth=1),
        CrawlRecord(url=long_url, status="error:timeout", http_status=0, depth=2),
    ]
    store.put_crawl_records(records)
    got = store.get_crawl_record("http://a.example/p")
    assert got == records[0]
    assert store.get_crawl_record(long_url) == records[1]
    assert store.get_crawl_record("http://a.example/unknown") is None
    store.put_crawl_records([CrawlRecord(url="http://a.example/p", status="unchanged", http_status=304,
                                         etag='"abc"', content_hash="h1", fetched_at=when, depth=1)])
    assert store.get_crawl_record("http://a.example/p").status == "unchanged"
    assert sorted(r.url for r in store.crawl_records()) == sorted([long_url, "http://a.example/p"])


# ---------------------------------------------------------------------- reads
def test_get_returns_passages_in_the_order_asked(corpus: Store) -> None:
    got = corpus.get(["linux-zh", "no-such-id", "apt-en", "linux-en"])
    assert [p.id for p in got] == ["linux-zh", "apt-en", "linux-en"]
    zh = got[0]
    assert zh.url == "https://zh.example.org/FAQ/basic-defs.zh-cn.html"
    assert zh.lang == "zh" and zh.published is None and zh.anchor == "linux-zh"
    assert zh.heading.startswith("1.3.") and "Linus Torvalds" in zh.text
    assert got[1].published == date(2024, 5, 20) and got[1].position == 8
    assert np.allclose(got[2].vector, vector_for("linux-en"), atol=1e-5)
    assert corpus.get([]) == []


FILTER_CASES = {
    "none": (None, len(CORPUS)),
    "lang": (Filters(lang="de"), 2),
    "lang-many-case": (Filters(lang=["EN", "ja"]), 6),
    "site": (Filters(site="www.debian.org"), 5),
    "site-without-port": (Filters(site="localhost"), 1),
    "url_prefix": (Filters(url_prefix=f"{FAQ}/basic-defs."), 4),
    "published": (Filters(published_from=date(2022, 1, 1), published_to=date(2023, 1, 10)), 4),
    "published-from": (Filters(published_from=date(2024, 5, 20)), 2),
    "combined": (Filters(lang="en", site="www.debian.org", published_to=date(2023, 12, 31)), 2),
    "nothing": (Filters(lang="ko"), 0),
}


@pytest.mark.parametrize("case", FILTER_CASES)
def test_count_bm25_and_knn_apply_each_filter(corpus: Store, case: str) -> None:
    filters, expected = FILTER_CASES[case]
    reference = [p for p in corpus_passages() if filters is None or filters.matches(p)]
    assert len(reference) == expected  # the case means what it says
    assert corpus.count(filters) == expected
    dense = corpus.knn(vector_for("probe"), k=50, filters=filters)
    assert sorted(ids(dense)) == sorted(p.id for p in reference)
    lexical = corpus.bm25("Debian Linux package 操作系统 カーネル", k=50, filters=filters)
    assert bool(lexical) == bool(expected), "the query shares terms with every passage"
    assert {h.passage.id for h in lexical} <= {p.id for p in reference}


def test_k_limits_the_number_of_hits(corpus: Store) -> None:
    assert len(corpus.bm25("Debian", k=3)) == 3
    assert len(corpus.knn(vector_for("probe"), k=3)) == 3
    assert corpus.bm25("Debian", k=0) == [] and corpus.knn(vector_for("probe"), k=0) == []


def test_knn_ranks_the_nearest_vector_first(corpus: Store) -> None:
    rng = np.random.default_rng(7)
    for pid in ("linux-de", "apt-en", "nonlinux-zh"):
        query = vector_for(pid) + 0.05 * rng.normal(size=DIM).astype(np.float32)
        hits = corpus.knn(query, k=4)
        assert ids(hits)[0] == pid
        scores = [h.scores["dense"] for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert 0.9 < scores[0] <= 1.0001  # cosine, not a backend-specific scale
        assert hits[0].passage.text and hits[0].passage.url


def test_bm25_scores_are_positive_and_descending(corpus: Store) -> None:
    hits = corpus.bm25("graphical package manager synaptic", k=5)
    assert ids(hits)[0] == "synaptic-en"
    scores = [h.scores["bm25"] for h in hits]
    assert all(s > 0 for s in scores) and scores == sorted(scores, reverse=True)
    assert corpus.bm25("", k=5) == [] and corpus.bm25("  ...  ", k=5) == []
    assert corpus.bm25("zzzqqqxxy", k=5) == []


MULTILINGUAL = {
    "en": ("the kernel of a Unix-like operating system written by computer scientists", "linux-en"),
    "de": ("Kernel eines Unix-ähnlichen Betriebssystems, geschrieben von Informatikern", "linux-de"),
    "ja": ("Unix類似オペレーティングシステムのカーネル", "linux-ja"),  # no spaces
    "zh": ("类Unix操作系统的内核是什么", "linux-zh"),  # no spaces
    "zh-nonlinux": ("非Linux的操作系统移植", "nonlinux-zh"),
    "ja-nonlinux": ("BSDカーネル上のDebian", "nonlinux-ja"),
}


@pytest.mark.parametrize("case", MULTILINGUAL)
def test_multilingual_bm25_ranks_the_passage_in_the_query_language_first(corpus: Store, case: str) -> None:
    query, expected = MULTILINGUAL[case]
    hits = corpus.bm25(query, k=5)
    assert ids(hits)[:1] == [expected], f"{query!r} -> {ids(hits)}"

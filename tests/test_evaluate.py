"""The evaluation runner: query-file checks, metrics document, resume, answers, compare, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.evaluate import (
    METRICS_FILE,
    RESULTS_FILE,
    EvalError,
    EvalRun,
    answer_checks,
    compare,
    format_comparison,
    load_queries,
    read_results,
)
from tests.eval_support import ScriptedAnswerer, ScriptedRetriever, make_answer

BASE = "http://127.0.0.1:9999"

# Four queries; relevant paths are relative, as in the development set.
QUERIES = [
    {"id": "q1", "query": "install packages", "lang": "en", "relevant": ["doc/faq/pkg.en.html#install"]},
    {"id": "q2", "query": "Pakete installieren", "lang": "de",
     "relevant": ["doc/faq/pkg.en.html#install", "doc/faq/de/pkg.de.html#install"]},
    {"id": "q3", "query": "what is debian", "lang": "en", "relevant": ["doc/faq/basic.en.html#what"]},
    {"id": "q4", "query": "Qu'est-ce que Debian", "lang": "fr", "relevant": ["doc/faq/basic.en.html#what"],
     "answer": "Debian est ..."},
]


def link(path: str) -> str:
    return f"{BASE}/{path}"


# bm25: q1 rank 1, q2 rank 2 (German copy), q3 right page but wrong section, q4 nothing.
# dense: q1 rank 2, q2 rank 1, q3 rank 1, q4 rank 3.
RANKINGS = {
    "bm25": {
        "install packages": [link("doc/faq/pkg.en.html#install"), link("doc/faq/x.html#a")],
        "Pakete installieren": [link("doc/faq/x.html#a"), link("doc/faq/de/pkg.de.html#install")],
        "what is debian": [link("doc/faq/basic.en.html#other"), link("doc/faq/x.html#a")],
        "Qu'est-ce que Debian": [link("doc/faq/x.html#a")],
    },
    "dense": {
        "install packages": [link("doc/faq/x.html#a"), link("doc/faq/pkg.en.html#install")],
        "Pakete installieren": [link("doc/faq/pkg.en.html#install")],
        "what is debian": [link("doc/faq/basic.en.html#what")],
        "Qu'est-ce que Debian": [link("doc/faq/x.html#a"), link("doc/faq/y.html#b"), link("doc/faq/basic.en.html#what")],
    },
}


def write_queries(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


@pytest.fixture
def queries_file(tmp_path: Path) -> Path:
    return write_queries(tmp_path / "q.jsonl", QUERIES)


def run(tmp: Path, queries_file: Path, retriever, modes=("bm25", "dense"), report=False, **kw):
    """One evaluation; the report (slow matplotlib rendering) only where a test checks it."""
    queries, bad = load_queries(queries_file)
    return EvalRun(queries=queries, out_dir=tmp, retriever=retriever, modes=modes, base_url=BASE,
                   bad_rows=bad, progress=False, report=report, **kw).run()


# ------------------------------------------------------------------------- query files
def test_bad_rows_are_reported_with_line_numbers_and_skipped(tmp_path):
    path = write_queries(tmp_path / "bad.jsonl", [
        QUERIES[0],
        '{"id": "x", "query": "unterminated',
        {"id": "nq", "lang": "en"},
        {"id": "uf", "query": "ok", "relevance": ["a"]},
        "",
        {"id": "q1", "query": "again"},
        "[1, 2]",
        {"id": "rl", "query": "ok", "relevant": "doc/a.html"},
        {"query": "no id"},
        {"id": "e", "query": "   "},
        QUERIES[1],
    ])
    queries, bad = load_queries(path)
    assert [q.id for q in queries] == ["q1", "q2"]
    assert [q.line for q in queries] == [1, 11]
    by_line = {b.line: b.reason for b in bad}
    assert sorted(by_line) == [2, 3, 4, 6, 7, 8, 9, 10]
    assert "not valid JSON" in by_line[2]
    assert "no query" in by_line[3] and "no query" in by_line[10]
    assert "unknown field(s) 'relevance'" in by_line[4]
    assert "duplicate id 'q1' (first on line 1)" in by_line[6]
    assert "JSON object" in by_line[7]
    assert "list of strings" in by_line[8]
    assert "no id" in by_line[9]
    assert str(bad[0]).startswith("line 2: ")


def test_dev_set_fields_are_accepted_and_languages_normalised(tmp_path):
    path = write_queries(tmp_path / "q.jsonl", [
        {"id": "a", "query": "问题", "lang": "zh-cn", "relevant": ["r"], "relevant_en": ["e"], "answer": "x",
         "answer_en": "y"},
        {"id": "b", "query": "Wie installiere ich Pakete unter Debian?"},
    ])
    queries, bad = load_queries(path, relevant_field="relevant_en")
    assert bad == []
    assert [(q.lang, q.relevant) for q in queries] == [("zh", ["e"]), ("de", [])]
    assert [q.id for q in load_queries(path, langs=["de"])[0]] == ["b"]
    assert [q.id for q in load_queries(path, limit=1)[0]] == ["a"]


def test_missing_query_file_is_a_clear_error(tmp_path):
    with pytest.raises(EvalError, match="cannot read the query file"):
        load_queries(tmp_path / "nope.jsonl")


# ------------------------------------------------------------------------- metrics document
def test_metrics_document_shape_and_values(tmp_path, queries_file):
    doc = run(tmp_path / "out", queries_file, ScriptedRetriever(RANKINGS))
    assert set(doc) >= {"modes", "answers", "latency", "significance", "queries", "bad_rows", "run"}
    bm25, dense = doc["modes"]["bm25"], doc["modes"]["dense"]
    for mode in (bm25, dense):
        assert set(mode) >= {"page", "section", "by_lang", "queries", "errors"}
        assert set(mode["page"]) == {"recall@1", "recall@5", "recall@10", "recall@50", "ndcg@10", "mrr@10"}
    # bm25 first ranks: page (1, 2, 1, none), section (1, 2, none, none).
    assert bm25["page"]["mrr@10"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert bm25["section"]["mrr@10"] == pytest.approx((1 + 0.5) / 4)
    assert bm25["page"]["recall@1"] == pytest.approx(0.5)
    # dense first ranks: (2, 1, 1, 3) on both levels.
    assert dense["section"]["mrr@10"] == pytest.approx((0.5 + 1 + 1 + 1 / 3) / 4)
    assert dense["page"]["ndcg@10"] == pytest.approx((0.6309298 + 1 + 1 + 0.5) / 4)
    assert set(bm25["by_lang"]) == {"en", "de", "fr"}
    assert bm25["by_lang"]["en"]["queries"] == 2
    assert bm25["by_lang"]["en"]["section"]["recall@1"] == pytest.approx(0.5)
    assert bm25["by_lang"]["fr"]["page"]["recall@50"] == 0.0
    assert doc["latency"]["bm25"]["wall"]["p50_ms"] >= 0
    assert doc["latency"]["dense"]["embed"]["p50_ms"] == pytest.approx(1.0)
    assert "dense vs bm25" in doc["significance"]
    p = doc["significance"]["dense vs bm25"]["section"]["mrr@10"]["p"]
    assert 0 < p <= 1
    # metrics.json holds the same document; results.jsonl one row per query and mode.
    out = tmp_path / "out"
    assert json.loads((out / METRICS_FILE).read_text()) == json.loads(json.dumps(doc))
    rows = list(read_results(out / RESULTS_FILE))
    assert sorted((r["mode"], r["id"]) for r in rows) == sorted(
        (m, q["id"]) for m in ("bm25", "dense") for q in QUERIES)
    q2 = next(r for r in rows if r["id"] == "q2" and r["mode"] == "bm25")
    assert q2["page"]["first_rank"] == 2 and q2["relevant"][1] == link("doc/faq/de/pkg.de.html#install")
    assert q2["hits"][1]["link"] == link("doc/faq/de/pkg.de.html#install")


def test_report_embeds_plots(tmp_path, queries_file):
    answerer = ScriptedAnswerer({q["query"]: make_answer(q["id"], "Debian [1].", [link("doc/a.html")]) for q in QUERIES})
    run(tmp_path / "out", queries_file, ScriptedRetriever(RANKINGS), answerer=answerer, report=True)
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    assert "Retrieval, page level" in html and "<td>bm25</td>" in html and "<h2>Answers</h2>" in html
    plots = sorted(p.name for p in (tmp_path / "out" / "plots").iterdir())
    assert plots == ["by-lang-mrr10.png", "by-lang-recall10.png", "latency.png", "recall-at-k.png"]
    assert all((tmp_path / "out" / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)


def test_a_mode_that_cannot_run_is_reported_and_others_still_run(tmp_path, queries_file):
    retriever = ScriptedRetriever(RANKINGS, fail_modes=["rerank"])
    doc = run(tmp_path / "out", queries_file, retriever, modes=("bm25", "rerank"))
    assert "not configured" in doc["modes"]["rerank"]["error"]
    assert doc["modes"]["bm25"]["queries"] == 4


def test_an_unusable_query_becomes_an_error_row_not_a_failed_batch(tmp_path, queries_file):
    retriever = ScriptedRetriever(RANKINGS, bad_queries=["what is debian"])
    doc = run(tmp_path / "out", queries_file, retriever, modes=("bm25",))
    assert doc["modes"]["bm25"]["errors"] == 1
    rows = {r["id"]: r for r in read_results(tmp_path / "out" / RESULTS_FILE)}
    assert "unusable query" in rows["q3"]["error"]
    assert rows["q1"]["error"] is None
    # The failing query scores zero; the others keep their scores.
    assert doc["modes"]["bm25"]["page"]["mrr@10"] == pytest.approx((1 + 0.5 + 0 + 0) / 4)


# ------------------------------------------------------------------------- resume
def test_interrupted_run_keeps_finished_batches_and_resume_completes_it(tmp_path, queries_file):
    out = tmp_path / "out"
    interrupted = ScriptedRetriever(RANKINGS, interrupt_after=2)  # 2nd search_many call: Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        run(out, queries_file, interrupted, batch_size=3)
    rows = list(read_results(out / RESULTS_FILE))
    assert [(r["mode"], r["id"]) for r in rows] == [("bm25", "q1"), ("bm25", "q2"), ("bm25", "q3")]

    with pytest.raises(EvalError, match="--resume"):
        run(out, queries_file, ScriptedRetriever(RANKINGS))

    finishing = ScriptedRetriever(RANKINGS)
    doc = run(out, queries_file, finishing, batch_size=3, resume=True)
    assert finishing.calls == [("bm25", ["Qu'est-ce que Debian"]),
                               ("dense", ["install packages", "Pakete installieren", "what is debian"]),
                               ("dense", ["Qu'est-ce que Debian"])]
    whole = run(tmp_path / "whole", queries_file, ScriptedRetriever(RANKINGS))
    assert doc["modes"] == whole["modes"]
    assert len(list(read_results(out / RESULTS_FILE))) == 8


def test_resume_repairs_a_half_written_last_line(tmp_path, queries_file):
    out = tmp_path / "out"
    run(out, queries_file, ScriptedRetriever(RANKINGS), modes=("bm25",))
    results = out / RESULTS_FILE
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2])  # killed mid-write
    retriever = ScriptedRetriever(RANKINGS)
    doc = run(out, queries_file, retriever, modes=("bm25",), resume=True)
    assert retriever.calls == [("bm25", ["Qu'est-ce que Debian"])]
    assert doc["modes"]["bm25"]["queries"] == 4
    assert all(json.loads(line) for line in results.read_text().splitlines())


def test_overwrite_starts_again(tmp_path, queries_file):
    out = tmp_path / "out"
    run(out, queries_file, ScriptedRetriever(RANKINGS), modes=("bm25",))
    retriever = ScriptedRetriever(RANKINGS)
    run(out, queries_file, retriever, modes=("bm25",), overwrite=True)
    assert len(retriever.calls) == 1 and len(list(read_results(out / RESULTS_FILE))) == 4


# ------------------------------------------------------------------------- answers
def test_answer_checks_count_citations_languages_and_relevance():
    rel = [link("doc/faq/pkg.en.html#install")]
    answer = make_answer("q", "Use apt to install packages [1][3]. It resolves dependencies [2, 9].",
                         [link("doc/faq/x.html#a"), link("doc/faq/pkg.en.html#other"), link("doc/faq/pkg.en.html#install")],
                         supported=[True, False])
    checks = answer_checks(answer, "en", rel)
    assert checks["citations"] == 4 and checks["valid_citations"] == 3
    assert checks["cites_relevant_page"] and checks["cites_relevant_section"]
    assert checks["supported"] == 1 and checks["verified"] == 2
    assert checks["answer_lang"] == "en" and checks["lang_match"]
    assert not checks["no_answer"]
    german = answer_checks(answer, "de", rel)
    assert not german["lang_match"]
    silent = answer_checks(make_answer("q", "Die Quellen sagen dazu nichts.", [link("doc/a.html")]), "de", rel)
    assert silent["no_answer"] and silent["lang_match"] and not silent["cites_relevant_page"]


def test_an_answer_carrying_the_pipelines_error_counts_as_an_error(tmp_path, queries_file):
    broken = make_answer("q", "", [])
    broken.models = {"error": "generator", "message": "server down"}
    answerer = ScriptedAnswerer({q["query"]: broken for q in QUERIES})
    doc = run(tmp_path / "out", queries_file, ScriptedRetriever(RANKINGS), modes=(), answerer=answerer)
    assert doc["answers"]["errors"] == 4 and doc["answers"]["language_match"] is None
    row = next(read_results(tmp_path / "out" / RESULTS_FILE))
    assert row["error"] == "generator: server down"


def test_answers_are_scored_and_a_failing_answer_is_recorded(tmp_path, queries_file):
    answers = {
        "install packages": make_answer("q1", "Run apt install to install packages [1].",
                                        [link("doc/faq/pkg.en.html#install")], supported=[True]),
        "Pakete installieren": make_answer("q2", "Mit apt installieren Sie Pakete aus dem Archiv [2].",
                                           [link("doc/faq/x.html#a")], supported=[False]),
        "Qu'est-ce que Debian": make_answer("q4", "Les sources ne le disent pas.", [link("doc/faq/x.html#a")]),
    }
    answers["Qu'est-ce que Debian"].timings["tokens"] = 12.0  # a count, not a duration
    answerer = ScriptedAnswerer(answers, failing=["what is debian"])
    doc = run(tmp_path / "out", queries_file, ScriptedRetriever(RANKINGS), modes=(), answerer=answerer)
    a = doc["answers"]
    assert a["queries"] == 4 and a["errors"] == 1
    assert a["cites_relevant_page"] == pytest.approx(1 / 3)
    assert a["citation_validity"] == pytest.approx(1 / 2)  # [1] in range, [2] of one source not
    assert a["support_rate"] == pytest.approx(1 / 2)
    assert a["language_match"] == pytest.approx(1.0)
    assert a["no_answer_share"] == pytest.approx(2 / 3)  # q2 cites nothing valid, q4 nothing at all
    assert set(a["by_lang"]) == {"en", "de", "fr"}
    assert doc["latency"]["answer"]["generate"]["p50_ms"] == pytest.approx(200.0)
    assert "tokens" not in doc["latency"]["answer"]
    rows = {r["id"]: r for r in read_results(tmp_path / "out" / RESULTS_FILE)}
    assert "generator crashed" in rows["q3"]["error"]
    assert rows["q1"]["answer"]["sources"][0]["url"] == link("doc/faq/pkg.en.html#install")


# ------------------------------------------------------------------------- compare
def test_compare_reports_differences_and_paired_p_values(tmp_path, queries_file):
    run(tmp_path / "a", queries_file, ScriptedRetriever(RANKINGS), modes=("bm25", "dense"))
    better = {"bm25": RANKINGS["dense"], "dense": RANKINGS["dense"]}
    run(tmp_path / "b", queries_file, ScriptedRetriever(better), modes=("bm25", "dense"))
    result = compare(tmp_path / "a" / METRICS_FILE, tmp_path / "b" / METRICS_FILE)
    bm25 = result["modes"]["bm25"]["section"]["mrr@10"]
    assert bm25["diff"] == pytest.approx(bm25["b"] - bm25["a"]) and bm25["diff"] > 0
    assert bm25["paired_queries"] == 4 and 0 < bm25["p"] <= 1
    same = result["modes"]["dense"]["page"]["ndcg@10"]
    assert same["diff"] == 0 and same["p"] == 1.0
    text = format_comparison(result)
    assert "bm25" in text and "mrr@10" in text and "B-A" in text

    # Without results.jsonl beside a metrics file the differences remain, without p-values.
    (tmp_path / "b" / RESULTS_FILE).unlink()
    assert compare(tmp_path / "a" / METRICS_FILE, tmp_path / "b" / METRICS_FILE)["modes"]["bm25"]["page"]["mrr@10"]["p"] is None


def test_compare_rejects_files_that_are_not_metrics(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    with pytest.raises(EvalError, match="not a metrics document"):
        compare(bad, bad)


def test_doctests_pass():
    import doctest

    import search.evaluate

    result = doctest.testmod(search.evaluate)
    assert result.attempted > 0 and result.failed == 0


def test_markdown_table_has_a_row_per_mode_and_language(tmp_path, queries_file):
    from search.eval_report import markdown_table

    doc = run(tmp_path / "out", queries_file, ScriptedRetriever(RANKINGS))
    table = markdown_table(doc, "section").splitlines()
    assert table[0].startswith("| mode | lang | n | recall@1")
    assert len(table) == 2 + 2 * 4  # header, rule, (all + 3 languages) x 2 modes
    assert table[2].startswith("| bm25 | **all** | 4 | 0.250 | 0.500 |")  # section first ranks 1, 2, -, -

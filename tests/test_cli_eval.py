"""`cited eval` as people run it: flags, --json's last line, bad rows on stderr, --compare."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from search.commands import evaluate as command
from search.evaluate import METRICS_FILE, EvalRun, load_queries
from tests.eval_support import ScriptedRetriever
from tests.test_evaluate import BASE, QUERIES, RANKINGS, write_queries

REPO = Path(__file__).resolve().parent.parent


def cited(*args: str, cwd: Path = REPO, env_data: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "CITED_DATA_DIR": str(env_data or cwd / "data")}
    return subprocess.run([sys.executable, "-m", "search.cli", "eval", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def queries_file(tmp_path: Path) -> Path:
    return write_queries(tmp_path / "q.jsonl", QUERIES)


def test_help_lists_the_contract_flags(tmp_path):
    out = cited("--help", env_data=tmp_path).stdout
    for flag in ("--modes", "--answers", "--base-url", "--out", "--resume", "--json", "--limit", "--compare"):
        assert flag in out


def test_usage_errors_are_clear(tmp_path, queries_file):
    missing = cited(env_data=tmp_path)
    assert missing.returncode == 2 and "missing QUERIES.jsonl" in missing.stderr
    unknown = cited(str(queries_file), "--modes", "bm25,fuzzy", env_data=tmp_path)
    assert unknown.returncode == 2 and "unknown mode(s) fuzzy" in unknown.stderr
    nothing = cited(str(queries_file), "--modes", "", env_data=tmp_path)
    assert nothing.returncode == 2 and "nothing to evaluate" in nothing.stderr


def test_a_file_of_only_bad_rows_names_each_line_and_fails(tmp_path):
    path = write_queries(tmp_path / "bad.jsonl", ["{oops", {"id": "a"}, {"id": "b", "query": "x", "extra": 1}])
    result = cited(str(path), "--out", str(tmp_path / "out"), env_data=tmp_path)
    assert result.returncode == 1
    assert "line 1: not valid JSON" in result.stderr
    assert "line 2: no query" in result.stderr
    assert "line 3: unknown field(s) 'extra'" in result.stderr
    assert "no usable queries (3 bad row(s))" in result.stderr


def test_compare_prints_differences_and_json(tmp_path, queries_file):
    queries, _ = load_queries(queries_file)
    for name, rankings in (("a", RANKINGS), ("b", {"bm25": RANKINGS["dense"], "dense": RANKINGS["dense"]})):
        EvalRun(queries=queries, out_dir=tmp_path / name, retriever=ScriptedRetriever(rankings),
                base_url=BASE, modes=("bm25", "dense"), progress=False, report=False).run()
    a, b = str(tmp_path / "a" / METRICS_FILE), str(tmp_path / "b" / METRICS_FILE)
    text = cited("--compare", a, b, env_data=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "bm25" in text.stdout and "B-A" in text.stdout and "p < 0.05" in text.stdout
    as_json = cited("--compare", a, b, "--json", env_data=tmp_path)
    doc = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert doc["modes"]["bm25"]["section"]["mrr@10"]["diff"] > 0
    both = cited(str(queries_file), "--compare", a, b, env_data=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    bad = cited("--compare", str(broken), b, env_data=tmp_path)
    assert bad.returncode == 1 and "not a metrics document" in bad.stderr


def test_full_run_json_last_line_limit_and_resume(tmp_path, queries_file, monkeypatch):
    # The retriever is the scripted one (the real one is exercised by the quality gate).
    retriever = ScriptedRetriever(RANKINGS)
    monkeypatch.setattr(command, "build_retriever", lambda settings: retriever)
    path = write_queries(tmp_path / "mixed.jsonl", QUERIES[:2] + ["not json"] + QUERIES[2:])
    out = tmp_path / "out"
    runner = CliRunner()
    env = {"CITED_DATA_DIR": str(tmp_path / "data")}
    args = [str(path), "--modes", "bm25,dense", "--base-url", BASE, "--out", str(out), "--json"]
    first = runner.invoke(command.evaluate, args + ["--limit", "2"], env=env)
    assert first.exit_code == 0, first.output
    assert "line 3: not valid JSON" in first.stderr
    doc = json.loads(first.stdout.strip().splitlines()[-1])
    assert doc["modes"]["bm25"]["queries"] == 2
    assert doc["bad_rows"] == [{"line": 3, "reason": doc["bad_rows"][0]["reason"]}]
    assert set(doc) >= {"modes", "answers", "latency"} and set(doc["modes"]["bm25"]) >= {"page", "section", "by_lang"}

    again = runner.invoke(command.evaluate, args, env=env)
    assert again.exit_code == 1 and "--resume" in again.stderr

    retriever.calls.clear()
    resumed = runner.invoke(command.evaluate, args + ["--resume"], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert retriever.calls == [("bm25", ["what is debian", "Qu'est-ce que Debian"]),
                               ("dense", ["what is debian", "Qu'est-ce que Debian"])]
    doc = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert doc["modes"]["dense"]["queries"] == 4
    assert doc["modes"]["bm25"]["page"]["mrr@10"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert json.loads((out / METRICS_FILE).read_text())["modes"] == doc["modes"]
    assert (out / "report.html").exists()

    retriever.filters_seen.clear()
    filtered = runner.invoke(command.evaluate, args + ["--overwrite", "--filter-lang", "en", "--modes", "bm25",
                                                       "--langs", "de,fr", "--limit", "1"], env=env)
    assert filtered.exit_code == 0, filtered.output
    assert [f.langs for f in retriever.filters_seen] == [["en"]]
    assert retriever.calls[-1] == ("bm25", ["Pakete installieren"])
    assert json.loads(filtered.stdout.strip().splitlines()[-1])["run"]["filter_lang"] == "en"

    table = runner.invoke(command.evaluate, args[:-1] + ["--resume"], env=env)
    assert table.exit_code == 0 and "page level" in table.stdout and "mrr@10" in table.stdout


def test_a_build_without_the_retriever_says_so(tmp_path, queries_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "search.retrieve", None)  # import fails as if the module were absent
    result = CliRunner().invoke(command.evaluate, [str(queries_file), "--out", str(tmp_path / "o")],
                                env={"CITED_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 1
    assert "retrieval (search/retrieve.py) is not part of this build" in result.stderr

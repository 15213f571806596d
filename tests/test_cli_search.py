"""`cited search` as a user runs it: a real process over a real local store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from search.store.local import LocalStore
from tests import retrieval_corpus

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli-data")
    store = LocalStore(data / "store.sqlite3")
    embedder = retrieval_corpus.embedder()
    store.open(embedder.name, embedder.dim)
    assert store.upsert(list(retrieval_corpus.corpus())).ok
    store.close()
    return {**os.environ, "CITED_DATA_DIR": str(data), "CITED_STORE": "local", "CITED_EMBED_MODEL": "use-multilingual"}


def run(env, *args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "search.cli", "search", *args], env=env, capture_output=True, text=True, timeout=300, input=stdin
    )


def test_json_output_has_links_scores_and_timings(env):
    out = run(env, "What is a Debian control file?", "--k", "3", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["mode"] == "hybrid" and len(data["hits"]) == 3
    top = data["hits"][0]
    assert top["url"].endswith("pkg-basics.en.html#controlfile")
    assert {"bm25", "dense", "fused"} <= set(top["scores"])
    assert data["timings"]["total"] > 0


def test_text_output_for_bm25_with_filters(env):
    out = run(env, "Debian", "--mode", "bm25", "--lang", "de", "--k", "2")
    assert out.returncode == 0, out.stderr
    assert "de.html#" in out.stdout and "bm25=" in out.stdout and "timings (ms)" in out.stdout
    assert ".en.html" not in out.stdout


def test_queries_file_prints_one_json_line_per_query_in_order(env, tmp_path):
    lines = [
        {"id": "de", "query": "Wie kann ich mein Debian-System aktuell halten?"},
        {"id": "empty", "query": "  "},
        {"id": "ja", "query": "Debian 制御ファイルとは何ですか?"},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\nnot json\n", encoding="utf-8")
    out = run(env, "--queries", str(path), "--k", "5")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["de", "empty", "ja", "line-4"]
    assert "empty" in rows[1]["error"] and rows[1]["hits"] == []
    assert any(h["url"].split("#")[0].endswith("uptodate.en.html") for h in rows[0]["hits"])
    assert any(h["url"].split("#")[0].endswith("pkg-basics.en.html") for h in rows[2]["hits"])
    assert set(rows[0]["hits"][0]) == {"url", "title", "text", "scores"} and "total" in rows[0]["timings"]


@pytest.mark.parametrize("args, message", [(["   "], "empty"), (["?!"], "punctuation"), (["x", "--lang", "not a lang"], "language")])
def test_bad_input_is_a_clear_error(env, args, message):
    out = run(env, *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_needs_a_query_or_a_file(env):
    out = run(env)
    assert out.returncode == 2 and "QUERY or --queries" in out.stderr

"""`cited status` and `cited config` as a user runs them: a real process, real stores.

Why subprocesses: the promise is about what a person sees (one clear line, an exit code,
no traceback), which only the real entry point shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from search.config import Settings
from search.documents import Passage
from search.store.local import LocalStore

REPO = Path(__file__).resolve().parent.parent


def cited(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m search.cli ARGS` with only the given CITED_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CITED_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120
    )


def passages(n: int, dim: int = 8) -> list[Passage]:
    rng = np.random.default_rng(0)
    return [
        Passage(id=f"p{i}", url=f"http://a.example/{i % 2}", text=f"status passage {i}", lang="en",
                vector=rng.normal(size=dim).astype(np.float32))
        for i in range(n)
    ]


def test_status_json_on_an_empty_then_filled_local_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    empty = cited("status", "--json", CITED_DATA_DIR=str(data))
    assert empty.returncode == 0, empty.stderr
    info = json.loads(empty.stdout)
    assert info == {"backend": "local", "location": str(data / "store.sqlite3"), "passages": 0, "pages": 0,
                    "dim": 0, "model": ""}

    store = LocalStore(data / "store.sqlite3")
    store.open("status-model", 8)
    store.upsert(passages(5))
    store.close()
    filled = cited("status", "--json", CITED_DATA_DIR=str(data))
    assert filled.returncode == 0, filled.stderr
    info = json.loads(filled.stdout)
    assert (info["passages"], info["pages"], info["dim"], info["model"]) == (5, 2, 8, "status-model")
    text = cited("status", CITED_DATA_DIR=str(data))
    assert "status-model" in text.stdout and "local" in text.stdout


@pytest.mark.elastic
def test_status_json_on_elasticsearch(tmp_path: Path, es_url: str) -> None:
    from search.store.elastic import ElasticStore

    index = f"stores-status-{uuid.uuid4().hex[:8]}"
    env = {"CITED_STORE": "elastic", "CITED_ES_URL": es_url, "CITED_ES_INDEX": index, "CITED_DATA_DIR": str(tmp_path)}
    store = ElasticStore(Settings.load(env=env))
    try:
        before = cited("status", "--json", **env)
        assert before.returncode == 0, before.stderr
        assert json.loads(before.stdout)["passages"] == 0
        store.open("status-model", 8)
        store.upsert(passages(3))
        after = cited("status", "--json", **env)
        assert after.returncode == 0, after.stderr
        info = json.loads(after.stdout)
        assert (info["backend"], info["passages"], info["pages"], info["dim"], info["model"]) == (
            "elastic", 3, 2, 8, "status-model")
        assert index in info["location"]
    finally:
        store.drop()
        store.close()


def test_config_masks_the_elasticsearch_api_key(tmp_path: Path) -> None:
    secret = "c2VjcmV0LWtleS1mb3ItdGVzdHM="
    for args in (("config",), ("config", "--json")):
        result = cited(*args, CITED_DATA_DIR=str(tmp_path), CITED_ES_API_KEY=secret)
        assert result.returncode == 0, result.stderr
        assert secret not in result.stdout and secret[:-2] not in result.stdout
        assert "****" in result.stdout
    values = json.loads(cited("config", "--json", CITED_DATA_DIR=str(tmp_path), CITED_ES_API_KEY=secret).stdout)
    assert values["es_api_key"].startswith("****")


def test_unreachable_elasticsearch_is_one_clear_line(tmp_path: Path) -> None:
    result = cited("status", CITED_STORE="elastic", CITED_ES_URL="http://127.0.0.1:1", CITED_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "http://127.0.0.1:1" in lines[0] and "Elasticsearch" in lines[0]


def test_corrupt_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "store.sqlite3").write_bytes(np.random.default_rng(1).bytes(8192))
    result = cited("status", CITED_DATA_DIR=str(data))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(data / "store.sqlite3") in lines[0] and "corrupt" in lines[0]
    assert (data / "store.sqlite3").stat().st_size == 8192  # nothing overwritten

"""scripts/demo.sh (`make demo`) for real, without the setup and the final `cited serve`:
it serves the corpus on loopback, crawls the given URL into the store, and skips the
crawl on the next run because the store already has it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_crawls_once_then_reuses_the_store(tmp_path: Path):
    if not (REPO / "search" / "commands" / "crawl.py").exists():
        pytest.skip("`cited crawl` is not on this branch yet")
    port = _free_port()
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        CITED_DATA_DIR=str(tmp_path / "data"),
        CITED_DEMO_SETUP="0",
        CITED_DEMO_SERVE="0",
        CITED_DEMO_CORPUS_PORT=str(port),
        CITED_DEMO_URLS=f"http://127.0.0.1:{port}/doc/debian/FAQ/pkgtools.en.html",
        CITED_DEMO_MAX_PAGES="1",
    )
    first = subprocess.run(["scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["indexed"] == 1 and summary["passages"] > 5
    status = subprocess.run(
        [sys.executable, "-m", "search.cli", "status", "--json"], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(status.stdout)["passages"] == summary["passages"]
    second = subprocess.run(["scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "skipping the crawl" in second.stderr
    # The corpus server the script started is gone with it.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0

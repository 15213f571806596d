"""`cited serve` as a real process: it listens, serves the page and the API document."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_cited_serve_listens_and_serves(tmp_path: Path):
    port = _free_port()
    env = {"CITED_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--lazy"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, headers, body = _get(base + "/openapi.json")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode() if proc.stdout else "serve did not start")
                time.sleep(0.2)
        assert status == 200 and json.loads(body)["openapi"].startswith("3.")
        assert headers["Server"] == "cited"
        status, headers, body = _get(base + "/")
        assert status == 200 and b'name="q"' in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        status, _, body = _get(base + "/api/search")
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"
        status, _, body = _get(base + "/api/health")
        assert status in (200, 503) and "versions" in json.loads(body)
    finally:
        proc.terminate()
        proc.wait(timeout=20)

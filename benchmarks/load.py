"""Load test of GET /api/search: N concurrent clients for D seconds on loopback.

Prints ONE JSON line: clients, duration, requests, errors, requests/s, latency p50/p90/
p99/max in milliseconds. The target is 0 errors with 50 clients for 60 s.

Without --url it starts `cited serve` in another process with the current settings (the
store in CITED_DATA_DIR, e.g. the one `make demo` built; the rate limit off) and stops it
at the end. Each client holds one keep-alive connection and sends the questions of the
development set (../shared/eval/debian-faq.jsonl) round robin, so the server sees real,
multilingual queries.

    python benchmarks/load.py                          # 50 clients, 60 s
    python benchmarks/load.py --clients 20 --duration 15 --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_QUERIES = Path(os.environ.get("CITED_EVAL_DIR", REPO.parent / "shared" / "eval")) / "debian-faq.jsonl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(threads: int, timeout: float) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = dict(os.environ, CITED_RATE_LIMIT="0", CITED_WEB_THREADS=str(threads))
    proc = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"cited serve exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"cited serve was not healthy within {timeout:.0f} s")


def load_queries(path: Path, limit: int) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        queries = [json.loads(line)["query"] for line in fh if line.strip()]
    return queries[:limit] if limit else queries


def client(url: str, queries: list[str], offset: int, k: int, stop_at: float, timeout: float, out: list, errors: list) -> None:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    i = offset
    while time.monotonic() < stop_at:
        q = queries[i % len(queries)]
        i += 1
        path = "/api/search?" + urllib.parse.urlencode({"q": q, "k": k})
        started = time.perf_counter()
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200 or b'"hits"' not in body:
                errors.append(f"HTTP {response.status}: {body[:200]!r}")
            else:
                out.append(elapsed)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    conn.close()


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running server (default: start `cited serve`)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=16, help="server worker threads when started here")
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    parser.add_argument("--max-queries", type=int, default=0, help="use only the first N queries")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a client waits for one response")
    args = parser.parse_args()

    queries = load_queries(args.queries, args.max_queries)
    proc = None
    url = args.url
    if not url:
        proc, url = start_server(args.threads, args.start_timeout)
    try:
        # One warm-up request so model/index loading is not measured.
        with urllib.request.urlopen(url + "/api/search?" + urllib.parse.urlencode({"q": queries[0]}), timeout=120) as r:
            r.read()
        latencies: list[float] = []
        errors: list[str] = []
        load_before = os.getloadavg()[0]
        stop_at = time.monotonic() + args.duration
        started = time.monotonic()
        # Disjoint starting points: clients do not send the same query at the same time.
        workers = [
            threading.Thread(
                target=client,
                args=(url, queries, i * len(queries) // args.clients, args.k, stop_at, args.timeout, latencies, errors),
                daemon=True,
            )
            for i in range(args.clients)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.monotonic() - started
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    latencies.sort()
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    print(
        json.dumps(
            {
                "benchmark": "load /api/search",
                "clients": args.clients,
                "duration_s": round(wall, 1),
                "requests": len(latencies) + len(errors),
                "errors": len(errors),
                "first_errors": errors[:3],
                "rps": round(len(latencies) / wall, 1),
                "p50_ms": ms(percentile(latencies, 50)),
                "p90_ms": ms(percentile(latencies, 90)),
                "p99_ms": ms(percentile(latencies, 99)),
                "max_ms": ms(latencies[-1]) if latencies else None,
                "server_threads": args.threads if proc is not None else None,
                "cpus": os.cpu_count(),
                "load_avg_1m_before": round(load_before, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

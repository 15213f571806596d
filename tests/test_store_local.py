"""What only the embedded store must do: concurrent readers while another process writes,
and clear errors for corrupt or locked files. The shared behaviour is in the contract tests."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from search.documents import Passage
from search.store.base import StoreError
from search.store.local import LocalStore

DIM = 8

WRITER = """
import sys, numpy as np
from search.documents import Passage
from search.store.local import LocalStore
store = LocalStore(sys.argv[1]); store.open("test-model", 8)
rng = np.random.default_rng(0)
for batch in range(20):
    store.upsert([Passage(id=f"w{batch}-{i}", url=f"http://w/{batch}", text=f"writer batch {batch} item {i} apt",
                          vector=rng.normal(size=8).astype("float32")) for i in range(50)])
"""


def _passage(i: int) -> Passage:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return Passage(id=f"p{i}", url=f"http://r/{i}", text=f"reader seed {i} apt", vector=v)


def test_one_writer_process_and_concurrent_reader_threads(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = LocalStore(path)
    store.open("test-model", DIM)
    store.upsert([_passage(i) for i in range(10)])
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        reader = LocalStore(path)
        try:
            while not stop.is_set():
                assert reader.bm25("apt", k=5)
                assert reader.knn(np.ones(DIM, dtype=np.float32), k=5)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)
        finally:
            reader.close()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    writer = subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True, text=True, timeout=120)
    stop.set()
    for t in readers:
        t.join(timeout=30)
    assert writer.returncode == 0, writer.stderr
    assert not errors, errors
    # A reader opened before the writes sees them (the vector matrix is reloaded).
    assert store.count() == 10 + 20 * 50
    assert len(store.knn(np.ones(DIM, dtype=np.float32), k=2000)) == 1010


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    path.write_bytes(b"this is not a database " * 100)
    with pytest.raises(StoreError, match="not a readable Cited store"):
        LocalStore(path).open("m", DIM)


def test_locked_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = LocalStore(path)
    store.open("m", DIM)
    store.close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        other = LocalStore(path)
        other._conn().execute("PRAGMA busy_timeout = 200")  # do not wait the default 30 s
        start = time.monotonic()
        with pytest.raises(StoreError, match="locked"):
            other.upsert([_passage(1)])
        assert time.monotonic() - start < 30
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_empty_store_reports_nothing_and_search_is_empty(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "none.sqlite3")
    assert store.count() == 0
    assert store.bm25("anything") == []
    info = store.info()
    assert (info.passages, info.dim, info.model) == (0, 0, "")

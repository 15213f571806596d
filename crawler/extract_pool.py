"""Extraction in worker processes, so a crawl uses every core.

Why processes: extraction (lxml + trafilatura, ~60-100 ms of CPU per page) is Python
code that holds the GIL, and trafilatura's module-global lxml parser is not thread-safe
(crawler/extract.py serialises it behind a lock). In threads, extraction therefore runs
on one core at a time while the crawl's other CPU work (embedding, writing) waits for
the same interpreter. Worker processes each have their own interpreter and parser.

Why ``spawn``: the crawl already runs threads when the pool starts, and forking a
process with threads can copy a held lock into the child. Spawned workers import the
extractor once (about a second) and are shared by every crawl in the process.

    pool = ExtractPool(processes=1)
    extracted = pool.extract("<html>...</html>", "http://example.org/")
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from crawler.extract import ExtractError, Extracted, extract

log = logging.getLogger(__name__)

_POOLS: dict[tuple[int, bool], ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _init_worker(fast: bool) -> None:
    """Start a worker: ignore Ctrl-C, then run the extractor once (imports, models).

    Why ignore SIGINT: Ctrl-C in a terminal reaches the whole process group. The crawl's
    main process handles it (flush, then stop); a worker dying of it mid-page would turn
    that page into an "extractor-crashed" skip instead of a page to fetch on resume.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    extract("<html><body><h1 id='a'>Warm</h1><p>up the extractor once.</p></body></html>", "http://warm.up/",
            fast=fast)


def _shared_pool(processes: int, fast: bool) -> ProcessPoolExecutor:
    """One pool per (size, mode) per process, started on first use, stopped at exit."""
    with _POOLS_LOCK:
        pool = _POOLS.get((processes, fast))
        if pool is None:
            pool = ProcessPoolExecutor(
                max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(fast,),
            )
            _POOLS[(processes, fast)] = pool
        return pool


def _drop_pool(processes: int, fast: bool, pool: ProcessPoolExecutor) -> None:
    with _POOLS_LOCK:
        if _POOLS.get((processes, fast)) is pool:
            del _POOLS[(processes, fast)]
    pool.shutdown(wait=False, cancel_futures=True)


@atexit.register
def _shutdown_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def auto_processes() -> int:
    """One extraction process per core but one, which the crawl keeps for embedding and
    writing. On 2 cores one process measured faster end to end than two (11.0 vs 10.4
    pages/s, benchmarks/crawl.py): the embedding needs the other core."""
    return max(1, (os.cpu_count() or 1) - 1)


class ExtractorCrashed(ExtractError):
    """The worker process extracting a page died."""

    reason = "extractor-crashed"


class ExtractPool:
    """``extract`` in ``processes`` worker processes; 0 processes extracts in the caller.

    A worker that dies (a parser crash on hostile HTML, the OOM killer) costs only its
    page, which is skipped as ``extractor-crashed``; the next page starts a new pool.
    In threads the same crash would have taken the whole crawl down.
    """

    def __init__(self, processes: int = -1, fast: bool = True) -> None:
        if processes < -1:
            raise ValueError("extraction processes must be -1 (one per core but one), 0 (in the caller) or more")
        self.processes = auto_processes() if processes == -1 else processes
        self.fast = fast

    def extract(self, html: str, url: str, final_url: str | None = None) -> Extracted:
        if self.processes == 0:
            return extract(html, url, final_url, fast=self.fast)
        pool = _shared_pool(self.processes, self.fast)
        try:
            return pool.submit(extract, html, url, final_url, fast=self.fast).result()
        except BrokenProcessPool:
            log.warning("an extraction worker died on %s; skipping the page", url)
            _drop_pool(self.processes, self.fast, pool)
            raise ExtractorCrashed(f"the extractor crashed on {url}") from None

"""crawler/extract_pool.py: extraction in worker processes gives what extraction in the
crawl's own process gives, and a worker that dies costs one page, not the crawl."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from crawler.extract import ExtractError, extract
from crawler.extract_pool import ExtractorCrashed, ExtractPool, _shared_pool
from crawler.fetch import decode_html

PAGES = ["doc/debian/FAQ/pkgtools.en.html", "doc/debian/FAQ/ja/basic-defs.ja.html"]


def html_of(path: str) -> str:
    f = Path("/usr/share") / path
    if not f.exists():
        pytest.skip(f"{f} is not installed")
    return decode_html(f.read_bytes(), "text/html")[0]


@pytest.mark.parametrize("fast", [True, False])
def test_a_worker_process_extracts_what_the_caller_would(fast: bool) -> None:
    pool = ExtractPool(processes=1, fast=fast)
    for path in PAGES:
        url = "http://127.0.0.1:1/" + path
        here, there = extract(html_of(path), url, fast=fast), pool.extract(html_of(path), url)
        assert there.page == here.page and there.links == here.links
        assert [s.anchor for s in there.page.sections][:3] and there.page.lang == here.page.lang


def test_fast_mode_keeps_the_sections_of_documentation_pages() -> None:
    for path in PAGES:
        html, url = html_of(path), "http://127.0.0.1:1/" + path
        slow, fast = extract(html, url, fast=False).page, extract(html, url, fast=True).page
        assert [s.anchor for s in fast.sections] == [s.anchor for s in slow.sections]
        assert fast.text == slow.text and fast.title == slow.title


def test_bad_html_is_the_same_error_from_a_worker() -> None:
    with pytest.raises(ExtractError) as caught:
        ExtractPool(processes=1).extract("   ", "http://127.0.0.1:1/empty")
    assert caught.value.reason == "bad-html"


def test_a_dead_worker_costs_one_page_and_the_next_page_gets_a_new_pool() -> None:
    pool = ExtractPool(processes=1)
    html, url = html_of(PAGES[0]), "http://127.0.0.1:1/" + PAGES[0]
    assert pool.extract(html, url).page.sections  # the shared pool is up
    executor = _shared_pool(1, True)
    for pid in list(executor._processes):  # what the OOM killer or a libxml2 abort would do
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(ExtractorCrashed) as caught:
        for _ in range(50):  # until the pool notices its worker is gone
            pool.extract(html, url)
    assert caught.value.reason == "extractor-crashed"
    assert _shared_pool(1, True) is not executor
    assert pool.extract(html, url).page.sections


def test_ctrl_c_reaching_the_workers_leaves_them_working() -> None:
    pool = ExtractPool(processes=1)
    html, url = html_of(PAGES[0]), "http://127.0.0.1:1/" + PAGES[0]
    assert pool.extract(html, url).page.sections
    executor = _shared_pool(1, True)
    for pid in list(executor._processes):  # a terminal's Ctrl-C signals the whole process group
        os.kill(pid, signal.SIGINT)
    time.sleep(0.3)
    assert pool.extract(html, url).page.sections
    assert _shared_pool(1, True) is executor  # the same workers, still alive


def test_zero_processes_extracts_in_the_caller_and_auto_leaves_a_core() -> None:
    html, url = html_of(PAGES[0]), "http://127.0.0.1:1/" + PAGES[0]
    assert ExtractPool(processes=0).extract(html, url).page == extract(html, url, fast=True).page
    assert ExtractPool(processes=-1).processes == max(1, (os.cpu_count() or 1) - 1)
    with pytest.raises(ValueError, match="-1"):
        ExtractPool(processes=-2)

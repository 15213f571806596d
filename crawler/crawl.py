"""The crawl loop: frontier -> fetch -> extract -> passages -> embed -> store, resumable.

Why this shape: worker threads do the network (1-2 per host) and hand each page to
extraction in worker processes (crawler/extract_pool.py: extraction is CPU-bound Python),
while one thread owns every decision that touches shared state (de-duplication, the
store, crawl records) and embeds and writes in batches. That keeps the rules simple and
makes the crawl state consistent: a page's "done" record is written only after its
passages are in the store, in the same flush as the "queued" records of the links it led
to. So a crawl killed at any moment (even with SIGKILL) resumes from its records without
refetching finished pages or losing queued ones.

Resume versus re-crawl: a run is identified by its seeds and scope. A run marker record
(``cited-run:<key>``) says "running" until the crawl ends; starting the same crawl while
it says "running" resumes it. Starting it after it finished is a re-crawl: every known
URL is revisited with conditional GET (ETag / Last-Modified), and pages whose content hash
did not change are not re-indexed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from crawler.extract import ExtractError, Extracted
from crawler.extract_pool import ExtractPool
from crawler.fetch import FetchError, Fetcher, FetchLimits, FetchResult, decode_html, looks_binary
from crawler.frontier import (
    Frontier, Item, Limits, RobotsCache, RobotsPolicy, Scope, host_of, normalize_url, origin_of, parse_sitemap,
)
from search.config import Settings
from search.documents import CrawlRecord, Passage
from search.embed import cpu_threads, passage_vectors
from search.passages import split_page

log = logging.getLogger(__name__)
RUN_PREFIX = "cited-run:"
INDEXED = ("indexed", "unchanged")
# A crawl that wrote at least this many passages compacts the store when it ends (Store.optimize):
# worth tens of seconds after a big crawl (ES kNN ~11 -> ~6 ms p50), not after a re-crawl that
# changed a few pages (compaction rewrites the whole index).
OPTIMIZE_AFTER_PASSAGES = 500
# Link rejections worth reporting as skipped pages; the rest (seen, out of scope) are not pages of this crawl.
_REPORTED_LINK_REASONS = ("trap-", "max-per-host")


@dataclass
class CrawlSummary:
    fetched: int = 0  # pages that got an HTTP answer
    indexed: int = 0  # pages whose passages were written
    passages: int = 0
    unchanged: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> pages refused by policy
    errors: Counter = field(default_factory=Counter)  # reason -> pages that failed
    by_lang: Counter = field(default_factory=Counter)  # language -> pages indexed
    queued: int = 0  # left in the queue (page limit, or interrupted)
    resumed: bool = False
    interrupted: bool = False
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "fetched": self.fetched, "indexed": self.indexed, "passages": self.passages,
            "unchanged": self.unchanged, "skipped": dict(self.skipped), "errors": dict(self.errors),
            "by_lang": dict(self.by_lang), "queued": self.queued, "resumed": self.resumed,
            "interrupted": self.interrupted, "elapsed_s": round(self.elapsed_s, 3),
            "pages_per_s": round(self.fetched / self.elapsed_s, 2) if self.elapsed_s else 0.0,
        }


@dataclass
class CrawlOptions:
    max_pages: int | None = None
    max_depth: int = 20
    scope: str = "host"
    allow: Sequence[str] = ()
    deny: Sequence[str] = ()
    rate: float = 2.0  # requests per second per host; 0 = no delay
    concurrency: int = 4  # worker threads (at most 2 per host)
    sitemaps: bool = True
    resume: bool = True
    max_per_host: int = 20000
    max_per_pattern: int = 1000
    flush_passages: int = 256
    flush_seconds: float = 10.0
    progress: bool | None = None  # None: when stderr is a terminal
    fetch_limits: FetchLimits = field(default_factory=FetchLimits)
    address_allowed: Callable[[str], bool] | None = None  # overrides the public-address rule


@dataclass
class _Result:
    item: Item
    kind: str  # "page", "skip", "error", "sitemap", "unchanged"
    reason: str = ""
    fetch: FetchResult | None = None
    extracted: Extracted | None = None
    robots: RobotsPolicy | None = None
    urls: list[str] = field(default_factory=list)  # sitemap entries
    children: list[str] = field(default_factory=list)  # child sitemaps
    http_status: int = 0


def _was_indexed(r: CrawlRecord | None) -> bool:
    """Whether an earlier crawl indexed this URL (queued records carry its validators)."""
    return bool(r and (r.status in INDEXED or (r.status == "queued" and r.content_hash)))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _prefer(a: str, b: str) -> str:
    """Of two URLs with the same content, the one to index (deterministic, so the winner
    does not depend on which was fetched first): fewer query parameters, shorter, smaller."""
    return min(a, b, key=lambda u: (u.count("?") + u.count("&"), len(u), u))


class Crawler:
    def __init__(self, seeds: Sequence[str], settings: Settings, store: Any, embedder: Any,
                 options: CrawlOptions) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.opt = options
        self.seeds = seeds
        self.summary = CrawlSummary()
        self.fetcher = Fetcher(settings.user_agent, allow_private=settings.allow_private, limits=options.fetch_limits,
                               address_allowed=options.address_allowed)
        token = settings.user_agent.split("/", 1)[0].strip() or "*"
        self.robots = RobotsCache(self.fetcher, token)
        self.extractor = ExtractPool(settings.extract_processes, fast=settings.extract_fast)
        self.scope = Scope(seeds, options.scope, options.allow, options.deny)
        delay = 1.0 / options.rate if options.rate and options.rate > 0 else 0.0
        self.frontier = Frontier(
            self.scope,
            Limits(max_pages=options.max_pages, max_depth=options.max_depth, max_per_host=options.max_per_host,
                   max_per_pattern=options.max_per_pattern),
            delay=delay, per_host=min(2, max(1, options.concurrency)),
        )
        # Room for the pages extracted while the writer embeds a batch (a few seconds), so
        # fetching and extraction keep going meanwhile instead of waiting on a full queue.
        self.results: queue.Queue[_Result] = queue.Queue(maxsize=max(64, 4 * options.concurrency))
        self.old: dict[str, CrawlRecord] = {}
        self.hash_owner: dict[str, str] = {}  # content hash -> request URL of the indexed page
        self.key_owner: dict[str, str] = {}  # key (canonical) URL -> request URL that indexed it
        self.url_key: dict[str, str] = {}  # request URL -> key URL its passages are stored under
        self.indexed_now: dict[str, tuple[str, int]] = {}  # indexed by this process: url -> (lang, passages)
        self.origins: set[str] = set()
        # pending writes, flushed together
        self._pages: list[tuple[str, list[Passage]]] = []
        self._deletes: list[str] = []
        self._records: list[CrawlRecord] = []
        self._pending_passages = 0
        self._last_flush = time.monotonic()
        key = json.dumps([sorted(seeds), options.scope, list(options.allow), list(options.deny), options.max_depth])
        self.run_url = RUN_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:16]
        self.run_start = _now()

    # ------------------------------------------------------------------ state
    def _restore(self) -> None:
        self.old = {r.url: r for r in self.store.crawl_records()}
        marker = self.old.get(self.run_url)
        resuming = bool(self.opt.resume and marker and marker.status == "running" and marker.fetched_at)
        for r in self.old.values():
            if _was_indexed(r) and r.content_hash:
                owner = self.hash_owner.get(r.content_hash)
                self.hash_owner[r.content_hash] = _prefer(owner, r.url) if owner else r.url
        if resuming:
            self.summary.resumed = True
            self.run_start = marker.fetched_at
            queued, done = [], 0
            for r in self.old.values():
                if r.url.startswith(RUN_PREFIX) or r.fetched_at is None or r.fetched_at < self.run_start:
                    continue
                if r.status == "queued":
                    queued.append(r)
                else:
                    self.frontier.mark_seen([r.url])
                    done += 1
            self.frontier.count_done(done)
            for r in sorted(queued, key=lambda r: (r.depth, r.fetched_at, r.url)):
                self.frontier.add(r.url, r.depth, seed=True)
        else:
            self.store.put_crawl_records([CrawlRecord(url=self.run_url, status="running", fetched_at=self.run_start)])
        for seed in self.seeds:
            if self.frontier.add(seed, 0, seed=True) is None:
                self._records.append(self._queued_record(seed, 0))
        if not resuming:
            # a re-crawl revisits every page known from earlier crawls of this scope
            known = [r for r in self.old.values() if r.url.startswith(("http://", "https://"))
                     and r.status != "queued" and not r.status.startswith("error:dns")]
            for r in sorted(known, key=lambda r: (r.depth, r.url)):
                if self.scope.reason(r.url) is None and self.frontier.add(r.url, r.depth) is None:
                    self._records.append(self._queued_record(r.url, r.depth))

    def _queued_record(self, url: str, depth: int) -> CrawlRecord:
        old = self.old.get(url)
        old = old if _was_indexed(old) else None
        return CrawlRecord(url=url, status="queued", depth=depth, fetched_at=_now(),
                           etag=old.etag if old else "", last_modified=old.last_modified if old else "",
                           content_hash=old.content_hash if old else "", http_status=old.http_status if old else 0)

    # ------------------------------------------------------------------ workers
    def _worker(self) -> None:
        while True:
            item = self.frontier.get()
            if item is None:
                return
            try:
                result = self._process(item)
            except Exception as exc:  # never let one page kill a worker; report it
                log.exception("crawling %s failed", item.url)
                result = _Result(item, "error", reason=f"internal-{exc.__class__.__name__}")
            finally:
                self.frontier.release(item)
            while True:
                try:
                    self.results.put(result, timeout=0.5)
                    break
                except queue.Full:
                    if self.frontier.stopped and self._abandon:
                        return

    _abandon = False

    def _process(self, item: Item) -> _Result:
        if item.kind == "sitemap":
            try:
                res = self.fetcher.fetch(item.url, accept="application/xml,text/xml,text/plain,*/*;q=0.5")
            except FetchError as exc:
                return _Result(item, "sitemap", reason=exc.reason)
            if res.status != 200:
                return _Result(item, "sitemap", reason=f"http-{res.status}")
            pages, children = parse_sitemap(res.body)
            return _Result(item, "sitemap", urls=pages, children=children)
        policy = self.robots.policy(item.url)
        if not policy.allowed(item.url):
            return _Result(item, "skip", reason="robots", robots=policy)
        old = self.old.get(item.url)
        validators = (old.etag, old.last_modified) if _was_indexed(old) else ("", "")
        try:
            res = self.fetcher.fetch(item.url, etag=validators[0], last_modified=validators[1])
        except FetchError as exc:
            if exc.retry_after:
                self.frontier.defer_host(item.host, exc.retry_after)
            return _Result(item, "skip" if exc.skip else "error", reason=exc.reason, robots=policy,
                           http_status=exc.status)
        if res.retry_after:
            self.frontier.defer_host(item.host, res.retry_after)
        if res.not_modified:
            return _Result(item, "unchanged", fetch=res, robots=policy, http_status=304)
        if res.status >= 400:
            return _Result(item, "error", reason=f"http-{res.status}", fetch=res, robots=policy, http_status=res.status)
        if res.status != 200:
            return _Result(item, "error", reason=f"http-{res.status}", fetch=res, robots=policy, http_status=res.status)
        if not res.is_html:
            return _Result(item, "skip", reason="not-html", fetch=res, robots=policy, http_status=res.status)
        if looks_binary(res.body):
            return _Result(item, "skip", reason="binary", fetch=res, robots=policy, http_status=res.status)
        html, _ = decode_html(res.body, res.headers.get("content-type", ""))
        try:
            extracted = self.extractor.extract(html, item.url, res.final_url)
        except ExtractError as exc:
            return _Result(item, "skip", reason=exc.reason, fetch=res, robots=policy, http_status=res.status)
        page = extracted.page
        page.fetched_at = _now()
        page.etag, page.last_modified, page.status = res.etag, res.last_modified, res.status
        return _Result(item, "page", fetch=res, extracted=extracted, robots=policy, http_status=res.status)

    # ------------------------------------------------------------------ the single writer
    def _handle(self, r: _Result) -> None:
        item = r.item
        if r.robots is not None:
            self._note_origin(item.url, r.robots)
        if item.kind == "sitemap":
            for url in r.children[:1000]:
                norm = normalize_url(url)
                if norm and host_of(norm) == item.host:
                    self.frontier.add(norm, item.depth, kind="sitemap", seed=True)
            for url in r.urls:
                norm = normalize_url(url)
                if norm:
                    self._enqueue(norm, 1)
            return
        if r.fetch is not None or r.kind == "unchanged":
            self.summary.fetched += 1
        record = CrawlRecord(url=item.url, depth=item.depth, fetched_at=_now(), http_status=r.http_status)
        old = self.old.get(item.url)
        if r.kind in ("skip", "error"):
            (self.summary.skipped if r.kind == "skip" else self.summary.errors)[r.reason] += 1
            record.status = f"{'skipped' if r.kind == 'skip' else 'error'}:{r.reason}"
            if r.http_status in (404, 410) and _was_indexed(old):
                self._deletes.append(self._key_of_record(old))  # the page is gone: so are its passages
            self._records.append(record)
            return
        if r.kind == "unchanged":
            self.summary.unchanged += 1
            self.summary.skipped["unchanged"] += 1
            record.status, record.etag = "unchanged", old.etag if old else ""
            record.last_modified, record.content_hash = (old.last_modified, old.content_hash) if old else ("", "")
            self._records.append(record)
            return
        assert r.extracted is not None and r.fetch is not None
        ex, page = r.extracted, r.extracted.page
        final = normalize_url(r.fetch.final_url) or item.url
        if final != item.url:
            self.frontier.mark_seen([final])
        canonical = normalize_url(page.canonical_url) if page.canonical_url else None
        # a canonical link is trusted only on the same host (another host could hijack a page)
        page.canonical_url = canonical if canonical and host_of(canonical) == host_of(final) else ""
        page.final_url = final
        record.etag, record.last_modified, record.content_hash = page.etag, page.last_modified, page.content_hash
        if not ex.nofollow:
            for link in ex.links:
                norm = normalize_url(link)
                if norm:
                    self._enqueue(norm, item.depth + 1)
        if ex.noindex:
            return self._skip(record, "noindex", forget=old)
        if not page.text or not page.sections:
            return self._skip(record, "no-text", forget=old)
        key = page.key_url
        owner = self.hash_owner.get(page.content_hash)
        if owner and owner != item.url:
            if _prefer(owner, item.url) == owner:
                return self._skip(record, "duplicate", forget=old)
            self._demote(owner, page.content_hash)  # this URL is the better name for that content
        elif key in self.key_owner and self.key_owner[key] != item.url:
            return self._skip(record, "alias")
        if _was_indexed(old) and old.content_hash == page.content_hash:
            self.summary.unchanged += 1
            self.summary.skipped["unchanged"] += 1
            record.status = "unchanged"
            self.hash_owner[page.content_hash] = item.url
            self.key_owner[key] = item.url
            self._records.append(record)
            return
        passages = split_page(page)
        if not passages:
            return self._skip(record, "no-text", forget=old)
        self.hash_owner[page.content_hash] = item.url
        self.key_owner[key] = item.url
        self.url_key[item.url] = key
        self.indexed_now[item.url] = (page.lang or "unknown", len(passages))
        record.status = "indexed"
        self._pages.append((key, passages))
        self._pending_passages += len(passages)
        self._records.append(record)
        self.summary.indexed += 1
        self.summary.passages += len(passages)
        self.summary.by_lang[page.lang or "unknown"] += 1

    def _demote(self, owner: str, content_hash: str) -> None:
        """Un-index ``owner`` (a duplicate under a less preferred URL)."""
        key = self.url_key.get(owner, owner)
        before = len(self._pages)
        self._pages = [(k, ps) for k, ps in self._pages if k != key]
        if len(self._pages) == before:
            self._deletes.append(key)
        if self.key_owner.get(key) == owner:
            del self.key_owner[key]
        if owner in self.indexed_now:
            lang, n = self.indexed_now.pop(owner)
            self.summary.indexed -= 1
            self.summary.passages -= n
            self.summary.by_lang[lang] -= 1
            if not self.summary.by_lang[lang]:
                del self.summary.by_lang[lang]
            self.summary.skipped["duplicate"] += 1
        old = self.old.get(owner)
        self._records.append(CrawlRecord(url=owner, status="skipped:duplicate", fetched_at=_now(),
                                         content_hash=content_hash, depth=old.depth if old else 0))

    def _key_of_record(self, r: CrawlRecord) -> str:
        return self.url_key.get(r.url, r.url)

    def _skip(self, record: CrawlRecord, reason: str, forget: CrawlRecord | None = None) -> None:
        """Record a skipped page; if an earlier crawl indexed it (``forget``), its passages
        go, unless another page now owns the URL they are stored under."""
        if _was_indexed(forget):
            key = self._key_of_record(forget)
            if self.key_owner.get(key, record.url) == record.url:
                self._deletes.append(key)
        self.summary.skipped[reason] += 1
        record.status = f"skipped:{reason}"
        self._records.append(record)

    def _enqueue(self, url: str, depth: int) -> None:
        reason = self.frontier.add(url, depth)
        if reason is None:
            self._records.append(self._queued_record(url, depth))
        elif reason.startswith(_REPORTED_LINK_REASONS):
            self.frontier.mark_seen([url])  # report each trap URL once
            self.summary.skipped[reason] += 1

    def _note_origin(self, url: str, policy: RobotsPolicy) -> None:
        origin = origin_of(url)
        if origin in self.origins:
            return
        self.origins.add(origin)
        self.frontier.set_host_delay(host_of(url), policy.crawl_delay)
        if not self.opt.sitemaps:
            return
        sitemaps = [normalize_url(s) for s in policy.sitemaps] or [origin + "/sitemap.xml"]
        for s in sitemaps[:20]:
            if s:
                self.frontier.add(s, 0, kind="sitemap", seed=True)

    def flush(self, force: bool = False) -> None:
        """Embed and write pending pages, then their crawl records (in that order)."""
        due = self._pending_passages >= self.opt.flush_passages or \
            time.monotonic() - self._last_flush >= self.opt.flush_seconds
        if not (force or due) or not (self._pages or self._records or self._deletes):
            return
        if self._pages:
            all_passages = [p for _, ps in self._pages for p in ps]
            # The measured index-time recipe (heading-blended vectors, search/embed.py), the
            # same one the retrieval benchmarks used.
            # with extraction in worker processes the cores are busy: one embedding thread
            # does the same work for less CPU (search.embed.cpu_threads)
            limit = cpu_threads(self.embedder, 1) if self.extractor.processes else contextlib.nullcontext()
            with limit:
                vectors = passage_vectors(self.embedder, all_passages, self.settings.heading_weight,
                                          self.settings.embed_passage_chars)
            for p, v in zip(all_passages, vectors):
                p.vector = v
        written = {k for k, _ in self._pages}
        for url in self._deletes:
            if url not in written:
                self.store.delete_page(url)
        for key, passages in self._pages:
            report = self.store.replace_page(key, passages)
            if report.failed:
                self.summary.errors["store"] += len(report.failed)
        self.store.put_crawl_records(self._records)
        self._pages, self._records, self._deletes = [], [], []
        self._pending_passages = 0
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ run
    _stop_requested = False

    def _stop_on_signals(self):
        """Ctrl-C (SIGINT) and SIGTERM ask the loop to stop; it then flushes what it has.

        Why a flag and not KeyboardInterrupt: an exception raised in the middle of a store
        write could leave a transaction half done. A second Ctrl-C raises as usual.
        Signal handlers can only be set from the main thread; elsewhere this does nothing.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum, frame):  # noqa: ARG001
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(sig, prev) for sig, prev in previous.items()]

    def _finish_run(self, failed: bool, bar: Any) -> None:
        """Flush what is pending; mark the run done (and compact) only if it ran to the end.

        Why the marker stays "running" after an error (the store went away, the disk
        filled): the next start of the same crawl then resumes it, with its queue. Marked
        done, it would be re-crawled instead, and URLs that were only queued (never
        fetched) would be lost when the pages linking to them answer 304 Not Modified.
        """
        if failed:
            try:
                self.flush(force=True)
            except Exception:  # the error already on its way out says what went wrong
                log.exception("could not flush the crawl's pending writes after an error")
            return
        self.flush(force=True)
        if self.summary.interrupted:
            return
        self.store.put_crawl_records([CrawlRecord(url=self.run_url, status="done", fetched_at=self.run_start)])
        if self.summary.passages >= OPTIMIZE_AFTER_PASSAGES:
            if bar is not None:
                bar.set_description("crawl done; compacting the index")
            self.store.optimize()  # searches after a crawl read fewer, larger segments

    def run(self) -> CrawlSummary:
        start = time.monotonic()
        self._restore()
        self.flush(force=True)
        show = self.opt.progress if self.opt.progress is not None else sys.stderr.isatty()
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(unit="page", file=sys.stderr, dynamic_ncols=True, desc="crawl")
        workers = [threading.Thread(target=self._worker, daemon=True, name=f"crawl-{i}")
                   for i in range(max(1, self.opt.concurrency))]
        restore_signals = self._stop_on_signals()
        completed = False  # the loop ran out of work or was stopped, rather than raising
        try:
            for w in workers:
                w.start()
            while not self._stop_requested:
                try:
                    r = self.results.get(timeout=0.2)
                except queue.Empty:
                    if not any(w.is_alive() for w in workers) and self.results.empty():
                        break
                    self.flush()
                    continue
                try:
                    self._handle(r)
                finally:
                    self.frontier.finish(r.item)
                self.flush()
                if bar is not None and r.item.kind == "page":
                    bar.update(1)
                    bar.set_postfix(queue=len(self.frontier), indexed=self.summary.indexed,
                                    errors=sum(self.summary.errors.values()), refresh=False)
            completed = True
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the signal handler's reach
            self._stop_requested = True
        finally:
            failed = not completed and not self._stop_requested  # an error is on its way out
            if self._stop_requested or failed:
                self.summary.interrupted = True
                self.frontier.stop()
                self._abandon = True
            if self._stop_requested:
                # keep what finished workers already produced; in-flight fetches are redone on resume
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    try:
                        self._handle(self.results.get(timeout=0.1))
                    except queue.Empty:
                        if not any(w.is_alive() for w in workers):
                            break
            self._finish_run(failed, bar)
            restore_signals()
            if bar is not None:
                bar.close()
        self.summary.queued = len(self.frontier)
        self.summary.elapsed_s = time.monotonic() - start
        return self.summary


def crawl(urls: Sequence[str], settings: Settings, store: Any = None, embedder: Any = None,
          **options: Any) -> CrawlSummary:
    """Crawl from ``urls`` and index what is found; returns the summary.

    ``options`` are CrawlOptions fields (max_pages, max_depth, scope, allow, deny, rate,
    concurrency, ...). Raises ValueError for unusable seeds or options.
    """
    unknown = set(options) - set(CrawlOptions.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown crawl option(s): {', '.join(sorted(unknown))}")
    opts = CrawlOptions(**{k: v for k, v in options.items() if v is not None})
    seeds = []
    for url in urls:
        norm = normalize_url(url)
        if not norm:
            raise ValueError(f"cannot crawl {url!r}: give an absolute http:// or https:// URL")
        seeds.append(norm)
    if not seeds:
        raise ValueError("give at least one URL to crawl")
    if opts.max_pages is not None and opts.max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    if opts.max_depth < 0:
        raise ValueError("max_depth must not be negative")
    if opts.rate < 0:
        raise ValueError("rate must not be negative (0 means no delay)")
    if opts.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if embedder is None:
        from search.embed import load_embedder

        embedder = load_embedder(settings)
    own_store = store is None
    if own_store:
        from search.store import connect_store

        store = connect_store(settings)
    try:
        store.open(embedder.name, embedder.dim)
        crawler = Crawler(seeds, settings, store, embedder, opts)
        return crawler.run()
    finally:
        if own_store:
            store.close()

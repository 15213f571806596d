"""What to crawl next, and when: URL normalisation, scope, traps, robots.txt, sitemaps,
and a thread-safe queue that keeps per-host politeness.

Why one module: these rules all answer "may this URL be fetched, and when?", and the
crawl loop should ask one object rather than re-derive them.
"""

from __future__ import annotations

import gzip
import io
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from crawler.fetch import FetchError, Fetcher

DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z0-9_]*|fbclid|gclid|gclsrc|dclid|gbraid|wbraid|msclkid|mc_cid|mc_eid|yclid|igshid|"
    r"_ga|_gl|_hsenc|_hsmi|mkt_tok|vero_id|vero_conv|oly_anon_id|oly_enc_id|rb_clickid|s_cid|ref_src|"
    r"spm|scid|twclid|ttclid|li_fat_id)$",
    re.I,
)
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SAFE_PATH = "/%:@!$&'()*+,;="


# ------------------------------------------------------------------ normalisation
def _pct_normalize(text: str, safe: str) -> str:
    """Upper-case percent escapes, decode escaped unreserved characters, escape the unsafe."""
    def fix(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    return quote(_PCT.sub(fix, text), safe=safe)


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if seg == ".":
            if i == len(segments) - 1:
                out.append("")
            continue
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segments) - 1:
                out.append("")
            continue
        out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The one spelling of a URL used for de-duplication, or None if it is not crawlable.

    Lower-case scheme and host, IDNA host, no default port, no credentials, no fragment,
    dot segments resolved, percent escapes normalised, tracking parameters dropped and the
    query sorted.

    >>> normalize_url("HTTP://Example.COM:80/a/./b/../c?utm_source=x&b=2&a=1#top")
    'http://example.com/a/c?a=1&b=2'
    >>> normalize_url("mailto:someone@example.com") is None
    True
    """
    url = (url or "").strip()
    if not url:
        return None
    try:
        if base:
            url = urljoin(base, url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            return None
        host = parts.hostname
        if not host:
            return None
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        port = parts.port
    except (ValueError, UnicodeError):
        return None
    host = host.rstrip(".")
    netloc = f"[{host}]" if ":" in host else host
    if port and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = _pct_normalize(_remove_dot_segments(parts.path or "/"), _SAFE_PATH)
    query = ""
    if parts.query:
        pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING_PARAMS.match(k)]
        query = urlencode(sorted(pairs))
    return urlunsplit((scheme, netloc, path, query, ""))


def host_of(url: str) -> str:
    """``host[:port]`` of a normalised URL: the unit of politeness and robots.txt."""
    return urlsplit(url).netloc


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def registrable_domain(host: str) -> str:
    """An approximation of the registrable domain (no public-suffix list is bundled):
    the last two labels, or three under common second-level suffixes (co.uk, com.au)."""
    host = host.split(":")[0] if not host.startswith("[") else host
    if re.fullmatch(r"[\d.]+", host) or host.startswith("["):
        return host
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in {"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or"}:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


# ------------------------------------------------------------------ scope and traps
SCOPES = ("host", "prefix", "domain")


class Scope:
    """Which discovered links belong to the crawl: same host, under a seed's directory,
    or in a seed's domain; then ``--allow`` (any must match) and ``--deny`` (none may)."""

    def __init__(self, seeds: Sequence[str], mode: str = "host", allow: Sequence[str] = (),
                 deny: Sequence[str] = ()) -> None:
        if mode not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {mode!r}")
        self.mode = mode
        try:
            self.allow = [re.compile(p) for p in allow]
            self.deny = [re.compile(p) for p in deny]
        except re.error as exc:
            raise ValueError(f"bad --allow/--deny regular expression: {exc}") from None
        self.hosts = {host_of(s) for s in seeds}
        self.domains = {registrable_domain(urlsplit(s).hostname or "") for s in seeds}
        self.prefixes = [s[: s.rfind("/") + 1] for s in seeds]

    def reason(self, url: str) -> str | None:
        """None when ``url`` is in scope, else a short reason."""
        if self.mode == "host" and host_of(url) not in self.hosts:
            return "out-of-scope"
        if self.mode == "prefix" and not any(url.startswith(p) for p in self.prefixes):
            return "out-of-scope"
        if self.mode == "domain":
            host = urlsplit(url).hostname or ""
            if not any(host == d or host.endswith("." + d) for d in self.domains):
                return "out-of-scope"
        if self.allow and not any(p.search(url) for p in self.allow):
            return "not-allowed"
        if any(p.search(url) for p in self.deny):
            return "denied"
        return None


def trap_reason(url: str, max_length: int = 2048, max_segment_repeats: int = 2) -> str | None:
    """Cheap checks for crawler traps that generate endless distinct URLs."""
    if len(url) > max_length:
        return "trap-url-too-long"
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments and max(Counter(segments).values()) > max_segment_repeats:
        return "trap-repeating-path"
    return None


def url_pattern(url: str) -> str:
    """The URL with digit runs folded, so /cal/2024/01 and /cal/2031/12 share a pattern."""
    return re.sub(r"\d+", "N", url)


# ------------------------------------------------------------------ robots.txt and sitemaps
@dataclass
class RobotsPolicy:
    parser: object | None = None  # protego.Protego, or None: everything allowed
    disallow_all: bool = False
    token: str = "*"

    def allowed(self, url: str) -> bool:
        if self.disallow_all:
            return False
        return True if self.parser is None else bool(self.parser.can_fetch(url, self.token))

    @property
    def crawl_delay(self) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(self.token)
        return float(delay) if delay is not None else None

    @property
    def sitemaps(self) -> list[str]:
        return list(self.parser.sitemaps) if self.parser is not None else []


class RobotsCache:
    """robots.txt per origin, fetched once (the first thread fetches, the others wait).

    Per RFC 9309: a 4xx means no rules; a 5xx or an unreachable server means "disallow
    all" for this crawl, since the site may be telling us to stay away.
    """

    MAX_BYTES = 512 * 1024

    def __init__(self, fetcher: Fetcher, token: str) -> None:
        self.fetcher = fetcher
        self.token = token
        self._policies: dict[str, RobotsPolicy] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def policy(self, url: str) -> RobotsPolicy:
        origin = origin_of(url)
        with self._guard:
            if origin in self._policies:
                return self._policies[origin]
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self._policies:
                self._policies[origin] = self._load(origin)
            return self._policies[origin]

    def _load(self, origin: str) -> RobotsPolicy:
        from protego import Protego

        try:
            res = self.fetcher.fetch(origin + "/robots.txt", accept="text/plain,*/*;q=0.5")
        except FetchError as exc:
            if exc.reason in ("private-address", "dns", "bad-url", "bad-scheme"):
                return RobotsPolicy(token=self.token)  # the page fetch reports the real reason
            return RobotsPolicy(disallow_all=True, token=self.token)
        if res.status >= 500:
            return RobotsPolicy(disallow_all=True, token=self.token)
        if res.status != 200:
            return RobotsPolicy(token=self.token)
        text = res.body[: self.MAX_BYTES].decode("utf-8", "replace")
        try:
            return RobotsPolicy(parser=Protego.parse(text), token=self.token)
        except Exception:  # a robots file protego cannot parse is treated as no rules
            return RobotsPolicy(token=self.token)


def parse_sitemap(body: bytes, max_decoded: int = 50 * 1024 * 1024) -> tuple[list[str], list[str]]:
    """(page URLs, child sitemap URLs) from a sitemap, a sitemap index, gzipped or not,
    or a plain-text sitemap (one URL a line)."""
    if body[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as fh:
            body = fh.read(max_decoded + 1)
        if len(body) > max_decoded:
            return [], []
    stripped = body.lstrip()
    if not stripped.startswith(b"<"):
        lines = stripped.decode("utf-8", "replace").splitlines()
        return [ln.strip() for ln in lines if ln.strip().startswith(("http://", "https://"))], []
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    try:
        root = etree.fromstring(stripped, parser)
    except etree.XMLSyntaxError:
        return [], []
    if root is None:
        return [], []
    pages: list[str] = []
    children: list[str] = []
    for loc in root.iter("{*}loc"):
        parent = loc.getparent()
        kind = etree.QName(parent).localname if parent is not None else ""
        text = (loc.text or "").strip()
        if not text:
            continue
        (children if kind == "sitemap" else pages).append(text)
    return pages, children


# ------------------------------------------------------------------ the queue
@dataclass
class Item:
    url: str
    depth: int
    kind: str = "page"  # "page" or "sitemap"

    @property
    def host(self) -> str:
        return host_of(self.url)


@dataclass
class Limits:
    max_pages: int | None = None
    max_depth: int = 20
    max_per_host: int = 20000
    max_per_pattern: int = 1000
    max_url_length: int = 2048


class Frontier:
    """A thread-safe crawl queue: breadth-first per host, hosts served round-robin, each host
    at most ``per_host`` connections and one request start per ``delay`` seconds (raised by
    robots.txt crawl-delay and by Retry-After)."""

    def __init__(self, scope: Scope, limits: Limits | None = None, delay: float = 0.5, per_host: int = 1,
                 max_delay: float = 60.0) -> None:
        self.scope = scope
        self.limits = limits or Limits()
        self.delay = delay
        self.per_host = max(1, min(2, per_host))
        self.max_delay = max_delay
        self._queues: dict[str, deque[Item]] = {}
        self._next_at: dict[str, float] = {}
        self._host_delay: dict[str, float] = {}
        self._active: Counter[str] = Counter()
        self._per_host: Counter[str] = Counter()
        self._per_pattern: Counter[str] = Counter()
        self._seen: set[str] = set()
        self._handed_out = 0
        self._in_flight = 0
        self._stopped = False
        self._cond = threading.Condition()

    # -------------------------------------------------------------- adding
    def seen(self, url: str) -> bool:
        with self._cond:
            return url in self._seen

    def mark_seen(self, urls: Iterable[str]) -> None:
        with self._cond:
            self._seen.update(urls)

    def add(self, url: str, depth: int, kind: str = "page", seed: bool = False) -> str | None:
        """Queue a normalised URL. Returns None if queued, else why not (``seen``, a scope
        or trap reason, ``max-depth``)."""
        with self._cond:
            if url in self._seen:
                return "seen"
            if not seed:
                if depth > self.limits.max_depth:
                    return "max-depth"
                reason = self.scope.reason(url)
                if reason:
                    return reason
            reason = trap_reason(url, self.limits.max_url_length)
            if reason:
                return reason
            host = host_of(url)
            if kind == "page":
                pattern = url_pattern(url)
                if self._per_pattern[pattern] >= self.limits.max_per_pattern:
                    return "trap-url-pattern"
                if self._per_host[host] >= self.limits.max_per_host:
                    return "max-per-host"
                self._per_pattern[pattern] += 1
                self._per_host[host] += 1
            self._seen.add(url)
            self._queues.setdefault(host, deque()).append(Item(url, depth, kind))
            self._cond.notify()
            return None

    def count_done(self, n: int) -> None:
        """Count pages fetched in an earlier, interrupted part of this crawl against max_pages."""
        with self._cond:
            self._handed_out += n

    # -------------------------------------------------------------- politeness
    def set_host_delay(self, host: str, delay: float | None) -> None:
        """Raise a host's delay (robots.txt crawl-delay); never below the crawl's own."""
        if delay is None:
            return
        with self._cond:
            self._host_delay[host] = min(self.max_delay, max(self.delay, delay))

    def defer_host(self, host: str, seconds: float) -> None:
        """Retry-After: no new request to this host for ``seconds``."""
        with self._cond:
            self._next_at[host] = max(self._next_at.get(host, 0.0), time.monotonic() + min(seconds, self.max_delay))

    # -------------------------------------------------------------- taking
    def get(self, timeout: float | None = None) -> Item | None:
        """The next item whose host may be contacted now; blocks until one is ready.
        Returns None when the crawl is over (queue empty and nothing in flight, page
        limit reached, or stopped) or after ``timeout``."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now = time.monotonic()
                wait = 0.5
                pending = False
                for host in list(self._queues):
                    queue = self._queues[host]
                    if not queue:
                        del self._queues[host]
                        continue
                    pending = True
                    if self._active[host] >= self.per_host:
                        continue
                    ready_at = self._next_at.get(host, 0.0)
                    if ready_at > now:
                        wait = min(wait, ready_at - now)
                        continue
                    if queue[0].kind == "page" and self.limits.max_pages is not None \
                            and self._handed_out >= self.limits.max_pages:
                        # page budget spent: sitemaps are pointless too
                        queue.clear()
                        continue
                    item = queue.popleft()
                    # rotate hosts so one busy host does not starve the rest
                    self._queues[host] = self._queues.pop(host)
                    if item.kind == "page":
                        self._handed_out += 1
                    self._active[host] += 1
                    self._in_flight += 1
                    self._next_at[host] = now + self._host_delay.get(host, self.delay)
                    return item
                if not pending and self._in_flight == 0:
                    return None
                if end is not None:
                    if now >= end:
                        return None
                    wait = min(wait, end - now)
                self._cond.wait(max(0.001, wait))

    def release(self, item: Item) -> None:
        """The item's request is over: its host may take another connection."""
        with self._cond:
            self._active[item.host] -= 1
            self._cond.notify_all()

    def finish(self, item: Item) -> None:
        """The item's result was handled (its links queued). Until then the crawl is not
        over even with an empty queue, since that result may still add links."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def pending(self) -> list[Item]:
        """Items still queued (for saving crawl state)."""
        with self._cond:
            return [item for q in self._queues.values() for item in q]

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

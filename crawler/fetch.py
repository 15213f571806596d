"""HTTP fetching that a hostile or broken server cannot hang, flood or trick.

Why hand-rolled on http.client: the crawler must (1) connect to the exact address it
checked, so a host name cannot resolve to a public address for the check and a private
one for the connection, (2) check that again on every redirect hop, (3) cap bodies while
streaming, before and after decompression, and (4) keep one deadline across connect,
redirects, slow reads and retries. Those are each a few lines here and awkward to bolt
onto a general client.
"""

from __future__ import annotations

import codecs
import email.utils
import http.client
import ipaddress
import re
import socket
import ssl
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin, urlsplit

HTML_TYPES = ("text/html", "application/xhtml+xml")
REDIRECT_CODES = (301, 302, 303, 307, 308)
RETRY_CODES = (429, 500, 502, 503, 504)


class FetchError(Exception):
    """A URL could not be fetched. ``reason`` is a short stable tag used in crawl summaries
    (``timeout``, ``too-large``, ``private-address``, ``http-404`` ...); ``skip`` marks
    refusals by policy (as opposed to failures of the server or network)."""

    def __init__(self, reason: str, message: str = "", *, skip: bool = False, status: int = 0,
                 retry_after: float | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.skip = skip
        self.status = status
        self.retry_after = retry_after


@dataclass
class FetchResult:
    url: str
    final_url: str
    status: int
    headers: dict[str, str]
    body: bytes
    content_type: str = ""
    redirects: list[str] = field(default_factory=list)
    retry_after: float | None = None  # the server asked us to slow down (seconds)
    elapsed: float = 0.0

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def is_html(self) -> bool:
        return self.content_type in HTML_TYPES

    @property
    def etag(self) -> str:
        return self.headers.get("etag", "")

    @property
    def last_modified(self) -> str:
        return self.headers.get("last-modified", "")

    def text(self) -> str:
        """The body decoded with the encoding from BOM, header or ``<meta charset>``."""
        return decode_html(self.body, self.headers.get("content-type", ""))[0]


# ------------------------------------------------------------------ addresses
def is_public_address(ip: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                or addr.is_reserved or addr.is_unspecified)


def resolve(host: str, port: int, allow_private: bool,
            address_allowed: Callable[[str], bool] | None = None) -> list[tuple[int, str]]:
    """(family, ip) pairs for ``host``; refuses the host if any address is not public
    (``address_allowed`` replaces the public-address rule when given).

    Why refuse when *any* address is private: a name with one public and one private
    address would let the connection pick the private one.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError("dns", f"cannot resolve {host}: {exc}") from None
    addrs = list(dict.fromkeys((family, sockaddr[0]) for family, _, _, _, sockaddr in infos))
    if not addrs:
        raise FetchError("dns", f"{host} has no address")
    if not allow_private:
        allowed = address_allowed or is_public_address
        for _, ip in addrs:
            if not allowed(ip):
                raise FetchError("private-address", f"{host} resolves to non-public address {ip} "
                                 "(set CITED_ALLOW_PRIVATE=1 to crawl it)", skip=True)
    return addrs


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an already-checked IP while sending the real Host header."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


# ------------------------------------------------------------------ encodings
# WHATWG maps these labels to supersets; decoding with the superset never loses text.
_ENCODING_ALIASES = {
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "shift_jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "gb2312": "gb18030", "gbk": "gb18030", "iso-2022-jp": "iso2022_jp_ext", "utf8": "utf-8",
}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_META_TAG = re.compile(rb"<meta\b[^>]*>", re.I)
_META_CHARSET = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_HEAD_END = re.compile(rb"</head\s*>|<body\b", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    label = _ENCODING_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def meta_charset(body: bytes) -> str | None:
    """The charset declared by a ``<meta>`` tag in the document head, if any.

    Only real ``<meta>`` tags before ``</head>``/``<body>`` count, so an article that
    *mentions* "charset=iso-2022-jp" in its text does not change how it is decoded.
    """
    head = body[:65536]
    end = _HEAD_END.search(head)
    if end:
        head = head[: end.start()]
    for tag in _META_TAG.finditer(head):
        m = _META_CHARSET.search(tag.group())
        if m:
            return m.group(1).decode("ascii", "ignore")
    return None


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
        return True
    except (UnicodeDecodeError, LookupError):
        return False


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """(text, encoding used). Order: BOM, HTTP charset, ``<meta>`` charset, UTF-8, cp1252.

    A declared charset that does not decode the bytes is treated as wrong (servers often
    send a default ``charset=utf-8`` or ``iso-8859-1`` for files in another encoding): the
    next candidate is tried. A single-byte label (latin-1) decodes anything, so valid
    non-ASCII UTF-8 wins over it.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body.decode(codec, "replace"), codec
    m = _HEADER_CHARSET.search(content_type or "")
    candidates = [_codec(m.group(1)) if m else None, _codec(meta_charset(body)), "utf-8"]
    single_byte = {"cp1252", "iso8859-1", "ascii"}
    for codec in candidates:
        if not codec:
            continue
        if codec in single_byte and not body.isascii() and _decodes(body, "utf-8"):
            return body.decode("utf-8"), "utf-8"
        if _decodes(body, codec):
            return body.decode(codec), codec
    return body.decode("cp1252", "replace"), "cp1252"


def looks_binary(body: bytes) -> bool:
    """True when the first bytes hold NULs or many control characters (not text)."""
    sample = body[:2048]
    if not sample:
        return False
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 9 or 13 < b < 32)
    return controls > len(sample) * 0.05


# ------------------------------------------------------------------ the fetcher
def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class FetchLimits:
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_bytes: int = 10 * 1024 * 1024          # on the wire
    max_decoded_bytes: int = 20 * 1024 * 1024  # after gzip/deflate
    max_redirects: int = 5
    retries: int = 2
    backoff: float = 0.5
    max_retry_after: float = 30.0  # longer asks are given up on and reported


class Fetcher:
    """Fetches one URL at a time (thread-safe: no shared mutable state besides counters)."""

    def __init__(self, user_agent: str, allow_private: bool = False, limits: FetchLimits | None = None,
                 address_allowed: Callable[[str], bool] | None = None) -> None:
        """``address_allowed(ip)`` overrides which resolved addresses count as public
        (default: not private, loopback, link-local...); ``allow_private`` allows all."""
        self.user_agent = user_agent
        self.allow_private = allow_private
        self.address_allowed = address_allowed
        self.limits = limits or FetchLimits()
        self._ssl = ssl.create_default_context()

    # -------------------------------------------------------------- public
    def fetch(self, url: str, etag: str = "", last_modified: str = "",
              accept: str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5") -> FetchResult:
        """GET ``url`` following redirects, retrying transient failures; raises FetchError."""
        lim = self.limits
        deadline = time.monotonic() + lim.total_timeout
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                result = self._follow(url, etag, last_modified, accept, deadline)
            except FetchError as exc:
                if exc.reason not in ("timeout", "connection") or attempt >= lim.retries:
                    raise
                wait = lim.backoff * (2 ** attempt)
            else:
                if result.status not in RETRY_CODES:
                    result.elapsed = time.monotonic() - start
                    return result
                retry_after = parse_retry_after(result.headers.get("retry-after"))
                if attempt >= lim.retries or (retry_after or 0) > lim.max_retry_after:
                    raise FetchError(f"http-{result.status}", f"{url}: HTTP {result.status}",
                                     status=result.status, retry_after=retry_after)
                wait = retry_after if retry_after is not None else lim.backoff * (2 ** attempt)
            attempt += 1
            if time.monotonic() + wait >= deadline:
                raise FetchError("timeout", f"{url}: no answer within {lim.total_timeout:.0f}s (with retries)")
            time.sleep(wait)

    # -------------------------------------------------------------- internals
    def _follow(self, url: str, etag: str, last_modified: str, accept: str, deadline: float) -> FetchResult:
        chain = [url]
        current = url
        while True:
            status, headers, body = self._request(current, etag, last_modified, accept, deadline)
            if status in REDIRECT_CODES and headers.get("location"):
                target = urljoin(current, headers["location"].strip()).split("#", 1)[0]
                if target in chain:
                    raise FetchError("redirect-loop", f"{url}: redirect loop via {target}")
                if len(chain) > self.limits.max_redirects:
                    raise FetchError("too-many-redirects", f"{url}: more than {self.limits.max_redirects} redirects")
                chain.append(target)
                current = target
                etag = last_modified = ""  # validators belong to the first URL only
                continue
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            return FetchResult(url=url, final_url=current, status=status, headers=headers, body=body,
                               content_type=ctype, redirects=chain[1:],
                               retry_after=parse_retry_after(headers.get("retry-after")))

    def _request(self, url: str, etag: str, last_modified: str, accept: str,
                 deadline: float) -> tuple[int, dict[str, str], bytes]:
        lim = self.limits
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchError("bad-scheme", f"{url}: only http and https are fetched", skip=True)
        host = parts.hostname
        if not host:
            raise FetchError("bad-url", f"{url}: no host", skip=True)
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise FetchError("bad-url", f"{url}: bad port", skip=True) from None
        family, ip = resolve(host, port, self.allow_private, self.address_allowed)[0]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("timeout", f"{url}: total timeout")
        timeout = min(lim.connect_timeout, remaining)
        if scheme == "https":
            conn: http.client.HTTPConnection = _PinnedHTTPSConnection(host, port, ip, timeout, self._ssl)
        else:
            conn = _PinnedHTTPConnection(host, port, ip, timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"User-Agent": self.user_agent, "Accept": accept,
                   "Accept-Encoding": "gzip, deflate", "Connection": "close"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            conn.connect()
            sock = conn.sock  # http.client drops conn.sock once a "close" response starts
            sock.settimeout(min(lim.read_timeout, max(0.01, deadline - time.monotonic())))
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.status in REDIRECT_CODES or resp.status == 304 or resp.status >= 400:
                body = b""  # not needed; do not read what we will not use
            else:
                body = self._read_body(url, resp, resp_headers, sock, deadline)
            return resp.status, resp_headers, body
        except FetchError:
            raise
        except (socket.timeout, TimeoutError):
            raise FetchError("timeout", f"{url}: timed out") from None
        except ssl.SSLError as exc:
            raise FetchError("tls", f"{url}: TLS error: {exc}") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise FetchError("connection", f"{url}: {exc.__class__.__name__}: {exc}") from None
        finally:
            conn.close()

    def _read_body(self, url: str, resp: http.client.HTTPResponse, headers: dict[str, str],
                   sock: socket.socket, deadline: float) -> bytes:
        lim = self.limits
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > lim.max_bytes:
            raise FetchError("too-large", f"{url}: {length} bytes announced (limit {lim.max_bytes})", skip=True)
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decomp = None  # zlib-wrapped or raw: decided on the first bytes
        elif encoding in ("", "identity"):
            decomp = False
        else:
            raise FetchError("bad-encoding", f"{url}: unsupported Content-Encoding {encoding!r}", skip=True)
        raw_total = 0
        out: list[bytes] = []
        out_total = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchError("timeout", f"{url}: body not received within {lim.total_timeout:.0f}s")
            sock.settimeout(min(lim.read_timeout, remaining))
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            raw_total += len(chunk)
            if raw_total > lim.max_bytes:
                raise FetchError("too-large", f"{url}: body over {lim.max_bytes} bytes", skip=True)
            if decomp is False:
                data = chunk
            else:
                if decomp is None:
                    decomp = zlib.decompressobj(zlib.MAX_WBITS if (chunk[0] & 0x0F) == 8 and
                                                int.from_bytes(chunk[:2], "big") % 31 == 0 else -zlib.MAX_WBITS)
                try:
                    data = decomp.decompress(chunk, lim.max_decoded_bytes - out_total + 1)
                except zlib.error as exc:
                    raise FetchError("bad-encoding", f"{url}: corrupt {encoding} body: {exc}", skip=True) from None
                if decomp.unconsumed_tail:
                    raise FetchError("decompressed-too-large",
                                     f"{url}: decompresses to over {lim.max_decoded_bytes} bytes", skip=True)
            out_total += len(data)
            if out_total > lim.max_decoded_bytes:
                raise FetchError("decompressed-too-large",
                                 f"{url}: decompresses to over {lim.max_decoded_bytes} bytes", skip=True)
            out.append(data)
        return b"".join(out)

"""A real HTTP server on loopback that misbehaves in every way a crawler meets on the web.

Why not mocks: timeouts, streaming caps, gzip bombs and redirect loops only show their
teeth on a real socket. Each route below is one fault; GOOD lists the pages a correct
crawler must index and BAD the pages it must skip, with the reason it should give.
"""

from __future__ import annotations

import gzip
import http.server
import socketserver
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

PARAGRAPH = (
    "The crawler reads this paragraph to check that good pages are indexed in full. "
    "It talks about package management, mirrors, security updates and the release cycle "
    "of a distribution, so that the extractor sees real prose with several sentences. "
)


def page(title: str, body: str, head: str = "", charset: str | None = "utf-8") -> str:
    meta = f'<meta charset="{charset}">' if charset else ""
    return (f"<!DOCTYPE html><html><head>{meta}<title>{title}</title>{head}</head><body>"
            f"<nav><a href='/'>Home</a></nav><main>{body}</main><footer>footer text</footer></body></html>")


def article(title: str, topic: str) -> str:
    return page(title, (
        f"<h1 id='top'>{title}</h1><p>{PARAGRAPH}{topic} one.</p>"
        f"<h2 id='details'>Details about {topic}</h2><p>{PARAGRAPH}{topic} two.</p><p>{PARAGRAPH}{topic} three.</p>"
    ))


KOREAN = ("데비안은 자유 소프트웨어로 이루어진 운영 체제입니다. 패키지 관리 도구를 사용하면 소프트웨어를 쉽게 설치하고 "
          "제거할 수 있습니다. 보안 업데이트는 정기적으로 제공되며 안정 배포판은 신중하게 테스트됩니다. ") * 3
JAPANESE = ("デビアンは自由なソフトウェアで構成されたオペレーティングシステムです。パッケージ管理ツールを使うと、"
            "ソフトウェアを簡単にインストールしたり削除したりできます。セキュリティ更新は定期的に提供されます。") * 3
GERMAN = ("Grüße aus Köln. Die Paketverwaltung von Debian ist zuverlässig und übersichtlich. Sicherheitsaktualisierungen "
          "werden regelmäßig veröffentlicht, und die stabile Veröffentlichung wird sorgfältig getestet. ") * 3


@dataclass
class FaultServer:
    """Serves the fault routes on ``host``; ``log`` holds (time, path) of every request."""

    host: str = "127.0.0.1"
    log: list[tuple[float, str]] = field(default_factory=list)
    huge_bytes_sent: int = 0
    redirect_to: str = ""  # where /to-other-host redirects (set by the test)
    crawl_delay: float = 0.1
    hits: dict[str, int] = field(default_factory=dict)
    headers: list[dict[str, str]] = field(default_factory=list)  # request headers, in order

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                with outer._lock:
                    outer.log.append((time.monotonic(), self.path))
                    outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
                route = outer.routes().get(self.path.split("?")[0])
                if route is None and self.path.startswith("/calendar/"):
                    route = outer.calendar
                if route is None:
                    return outer.send(self, 404, "text/html", b"<html><body>not found</body></html>")
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((self.host, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def send(h: http.server.BaseHTTPRequestHandler, status: int, ctype: str, body: bytes,
             headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def html(self, text: str, ctype: str = "text/html; charset=utf-8", encoding: str = "utf-8",
             headers: dict[str, str] | None = None) -> Callable:
        return lambda h: self.send(h, 200, ctype, text.encode(encoding), headers)

    # ------------------------------------------------------------------ routes
    def routes(self) -> dict[str, Callable]:
        links = "".join(f'<li><a href="{p}">{p}</a></li>' for p in LINKED)
        return {
            "/robots.txt": lambda h: self.send(h, 200, "text/plain", (
                f"User-agent: *\nDisallow: /private/\nCrawl-delay: {self.crawl_delay}\n"
                f"Sitemap: {self.url}/sitemap-index.xml\n").encode()),
            "/sitemap-index.xml": lambda h: self.send(h, 200, "application/xml", (
                '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<sitemap><loc>{self.url}/sitemap-pages.xml</loc></sitemap></sitemapindex>").encode()),
            "/sitemap-pages.xml": lambda h: self.send(h, 200, "application/xml", (
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                f"<url><loc>{self.url}/from-sitemap.html</loc></url></urlset>").encode()),
            "/": self.html(page("Fault index", f"<h1>Fault index</h1><p>{PARAGRAPH}</p><ul>{links}</ul>"
                                "<a href='/calendar/2024/01'>calendar</a>")),
            "/good/alpha.html": self.html(article("Alpha", "alpha")),
            "/good/alpha-copy.html": self.html(article("Alpha", "alpha")),  # same bytes: a duplicate
            "/good/beta.html": self.html(article("Beta", "beta")),
            "/alias.html": self.html(page("Beta", f"<h1>Beta</h1><p>{PARAGRAPH} alias of beta, printer view.</p>",
                                          head='<link rel="canonical" href="/good/beta.html">')),
            "/from-sitemap.html": self.html(article("Only in the sitemap", "sitemap")),
            "/gzipped.html": lambda h: self.send(h, 200, "text/html; charset=utf-8",
                                                 gzip.compress(article("Gzipped", "gzip").encode()),
                                                 {"Content-Encoding": "gzip"}),
            "/deflated.html": lambda h: self.send(h, 200, "text/html; charset=utf-8",
                                                  zlib.compress(article("Deflated", "deflate").encode()),
                                                  {"Content-Encoding": "deflate"}),
            "/flaky-503.html": self.flaky,
            "/etag.html": self.etag,
            "/redirect-ok": lambda h: self.send(h, 301, "text/html", b"", {"Location": "/good/redirected.html"}),
            "/good/redirected.html": self.html(article("Redirect target", "redirect")),
            "/wrong-charset-header.html": self.html(page("Grüße", f"<h1>Grüße</h1><p>{GERMAN}</p>", charset=None),
                                                    ctype="text/html; charset=utf-8", encoding="iso-8859-1"),
            "/latin1-header-utf8-body.html": self.html(page("Grüße aus Köln", f"<h1>Köln</h1><p>{GERMAN}</p>", charset=None),
                                                       ctype="text/html; charset=iso-8859-1", encoding="utf-8"),
            "/euc-kr.html": self.html(page("데비안", f"<h1>데비안</h1><p>{KOREAN}</p>", charset=None),
                                      ctype="text/html; charset=EUC-KR", encoding="euc-kr"),
            "/euc-kr-meta.html": self.html(page("데비안 패키지", f"<h1>패키지</h1><p>{KOREAN}</p>", charset="euc-kr"),
                                           ctype="text/html", encoding="euc-kr"),
            "/iso-2022-jp.html": self.html(page("デビアン", f"<h1>デビアン</h1><p>{JAPANESE}</p>", charset="iso-2022-jp"),
                                           ctype="text/html", encoding="iso-2022-jp"),
            "/charset-in-body.html": self.html(page(
                "Encodings", f"<h1>Encodings</h1><p>{PARAGRAPH} Some pages declare charset=iso-2022-jp in a meta tag; "
                f"this one only mentions it. Grüße, naïve café.</p>", charset=None), ctype="text/html"),
            # ---- bad pages
            "/private/secret.html": self.html(article("Secret", "secret")),
            "/slow.html": self.slow,
            "/drip.html": self.drip,
            "/always-500.html": lambda h: self.send(h, 500, "text/html", b"<h1>boom</h1>"),
            "/always-429.html": lambda h: self.send(h, 429, "text/html", b"slow down", {"Retry-After": "1"}),
            "/redirect-loop-a": lambda h: self.send(h, 302, "text/html", b"", {"Location": "/redirect-loop-b"}),
            "/redirect-loop-b": lambda h: self.send(h, 302, "text/html", b"", {"Location": "/redirect-loop-a"}),
            **{f"/hop{i}": (lambda i: lambda h: self.send(h, 302, "text/html", b"", {"Location": f"/hop{i + 1}"}))(i)
               for i in range(10)},
            "/huge.html": self.huge,
            "/huge-announced.html": lambda h: self.send_headers_only(h, 50 * 1024 * 1024),
            "/gzip-bomb.html": lambda h: self.send(h, 200, "text/html", GZIP_BOMB, {"Content-Encoding": "gzip"}),
            "/binary.html": lambda h: self.send(h, 200, "text/html", bytes(range(256)) * 64),
            "/document.pdf": lambda h: self.send(h, 200, "application/pdf", b"%PDF-1.4 not really"),
            "/missing.html": lambda h: self.send(h, 404, "text/html", b"gone"),
            "/to-other-host": lambda h: self.send(h, 302, "text/html", b"", {"Location": self.redirect_to or "/"}),
        }

    def flaky(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """503 with Retry-After: 1 on the first request, then the page."""
        if self.hits.get("/flaky-503.html", 0) <= 1:
            return self.send(h, 503, "text/html", b"busy", {"Retry-After": "1"})
        self.send(h, 200, "text/html; charset=utf-8", article("Flaky", "flaky").encode())

    def etag(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """Conditional GET: 304 when the client sends the current ETag."""
        if h.headers.get("If-None-Match") == '"v1"':
            h.send_response(304)
            h.send_header("ETag", '"v1"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        self.send(h, 200, "text/html; charset=utf-8", article("Etag", "etag").encode(), {"ETag": '"v1"'})

    def slow(self, h: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(3)
        self.send(h, 200, "text/html", article("Slow", "slow").encode())

    def drip(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """Headers at once, then one byte every 0.3 s: no read timeout fires, the total one must."""
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(100000):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.3)

    def huge(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """50 MB of HTML, chunked (no Content-Length), so only a streaming cap stops it."""
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = (b"<p>" + b"big " * 16000 + b"</p>\n")[:65536]
        for _ in range(50 * 1024 * 1024 // len(chunk)):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.huge_bytes_sent += len(chunk)
        h.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def send_headers_only(h: http.server.BaseHTTPRequestHandler, length: int) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(length))
        h.end_headers()
        h.wfile.write(b"<html>" + b" " * 1024)

    def calendar(self, h: http.server.BaseHTTPRequestHandler) -> None:
        """An endless calendar: every month links to the next and the previous one."""
        parts = h.path.strip("/").split("/")
        try:
            year, month = int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            return self.send(h, 404, "text/html", b"no such month")
        nxt = (year + month // 12, month % 12 + 1)
        prv = (year - (month == 1), (month - 2) % 12 + 1)
        body = page(f"Events {year}-{month:02d}", (
            f"<h1>Events in {year}-{month:02d}</h1><p>{PARAGRAPH} Nothing happens in month {month} of {year}.</p>"
            f"<a href='/calendar/{nxt[0]}/{nxt[1]:02d}'>next</a> <a href='/calendar/{prv[0]}/{prv[1]:02d}'>prev</a>"))
        self.send(h, 200, "text/html; charset=utf-8", body.encode())


GZIP_BOMB = gzip.compress(b"<html><body>" + b" " * (64 * 1024 * 1024), compresslevel=9)

# Linked from the index page. GOOD pages must be indexed, BAD ones skipped or failed with the reason.
GOOD = [
    "/", "/good/alpha.html", "/good/beta.html", "/from-sitemap.html", "/gzipped.html", "/deflated.html",
    "/flaky-503.html", "/good/redirected.html", "/wrong-charset-header.html", "/latin1-header-utf8-body.html",
    "/euc-kr.html", "/euc-kr-meta.html", "/iso-2022-jp.html", "/charset-in-body.html",
]
BAD = {
    "/private/secret.html": "robots",
    "/slow.html": "timeout",
    "/drip.html": "timeout",
    "/always-500.html": "http-500",
    "/always-429.html": "http-429",
    "/redirect-loop-a": "redirect-loop",
    "/hop0": "too-many-redirects",
    "/huge.html": "too-large",
    "/huge-announced.html": "too-large",
    "/gzip-bomb.html": "decompressed-too-large",
    "/binary.html": "binary",
    "/document.pdf": "not-html",
    "/missing.html": "http-404",
    "/to-other-host": "private-address",
}
LINKED = [p for p in GOOD if p not in ("/", "/from-sitemap.html", "/good/redirected.html")] + [
    "/good/alpha-copy.html", "/alias.html", "/redirect-ok", *BAD]

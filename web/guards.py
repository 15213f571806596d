"""What protects the service and its users: rate limit, CORS, security headers.

Why in one small module: these are cross-cutting rules applied to every response (or to
every expensive request), and keeping them together makes the policy easy to review.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from flask import Request, Response

# No inline script or style anywhere: every script and stylesheet is a file under /static.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


class RateLimiter:
    """At most ``per_minute`` requests per client key in any sliding 60-second window.

    Why a sliding log instead of a fixed window: a fixed window lets a client send twice
    the limit across a window boundary. The log holds at most ``per_minute`` timestamps
    per client, and idle clients are dropped, so memory stays bounded by active clients.
    """

    window = 60.0

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def check(self, key: str) -> float:
        """Record a request; 0.0 when allowed, else seconds until the client may retry."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            self._sweep(now)
            log = self._hits.setdefault(key, deque())
            while log and now - log[0] >= self.window:
                log.popleft()
            if len(log) >= self.per_minute:
                return max(self.window - (now - log[0]), 0.001)
            log.append(now)
            return 0.0

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self.window:
            return
        self._last_sweep = now
        for key in [k for k, log in self._hits.items() if not log or now - log[-1] >= self.window]:
            del self._hits[key]


def client_key(request: Request) -> str:
    """The client a rate limit applies to: its address as the WSGI server saw it.

    Behind a reverse proxy every client shares the proxy's address; run the proxy's own
    limiter there, or configure the proxy to pass the real address through (ProxyFix).
    """
    return request.remote_addr or "unknown"


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def parse_origins(setting: str) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in setting.split(",") if o.strip())


def allowed_origin(origins: frozenset[str], origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for this request's Origin, or None (no CORS)."""
    if not origins or not origin:
        return None
    if "*" in origins:
        return "*"
    return origin if origin.rstrip("/") in origins else None


def add_cors_headers(response: Response, allow: str, preflight: bool) -> None:
    response.headers["Access-Control-Allow-Origin"] = allow
    if allow != "*":
        response.vary.add("Origin")
    if preflight:
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"


def add_security_headers(response: Response) -> None:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")

"""The HTTP layer of the downloads: ``urllib`` with a connect timeout and a read timeout (a
server that accepts the connection and never answers fails within ``read`` seconds,
tensorflow/hub#932-style stalls included), redirects followed, and every failure classified
(which ones are worth another try).

For tests and the rehearsal only: ``VITWATCH_MIRROR=http://127.0.0.1:PORT`` fetches every URL
``https://host/path?query`` from ``$VITWATCH_MIRROR/host/path?query`` (redirects included).
Real users never set it.
"""

from __future__ import annotations

import http.client
import os
import socket
import urllib.error
import urllib.parse
import urllib.request

CONNECT_TIMEOUT = 15.0  # seconds to open a connection (TCP + TLS)
READ_TIMEOUT = 30.0  # seconds without a byte from the server
USER_AGENT = "vitwatch/0.1 (+urllib)"


def mirror_url(url: str) -> str:
    """``url`` rewritten to ``$VITWATCH_MIRROR/host/path?query`` when that test-only variable
    is set (and ``url`` is not already on the mirror); else ``url`` unchanged."""
    mirror = os.environ.get("VITWATCH_MIRROR", "").rstrip("/")
    if not mirror or url.startswith(mirror + "/"):
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    return f"{mirror}/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


class _ConnectTimeout:
    """Open the connection (TCP, TLS) under ``connect_timeout``; then read under ``timeout``."""

    def __init__(self, *args, connect_timeout: float = CONNECT_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout

    def connect(self):
        read = self.timeout
        self.timeout = self.connect_timeout
        try:
            super().connect()
        finally:
            self.timeout = read
        self.sock.settimeout(read)


class _HTTPConnection(_ConnectTimeout, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ConnectTimeout, http.client.HTTPSConnection):
    pass


class _RedirectToMirror(urllib.request.HTTPRedirectHandler):
    """Follow redirects (at most ``max_redirections``, 10), through the test mirror if set."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # the Range header of a resumed request is carried over (only Content-* are dropped)
        return super().redirect_request(req, fp, code, msg, headers, mirror_url(newurl))


def _opener(connect_timeout: float) -> urllib.request.OpenerDirector:
    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(_HTTPConnection, req, connect_timeout=connect_timeout)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(
                _HTTPSConnection, req, connect_timeout=connect_timeout, context=self._context
            )

    return urllib.request.build_opener(HTTP, HTTPS, _RedirectToMirror)


def open_url(url: str, headers: dict, timeout: tuple[float, float]):
    """The response to a GET of ``url`` (through the test mirror if set) with ``headers``;
    ``timeout``: (connect, read) seconds."""
    req = urllib.request.Request(mirror_url(url), headers={"User-Agent": USER_AGENT, **headers})
    return _opener(timeout[0]).open(req, timeout=timeout[1])


def classify(exc: BaseException) -> tuple[str, str, bool]:
    """(cause, short text, worth retrying) of a failed request."""
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        if code in (401, 403):
            return "refused", f"refused (HTTP {code})", False
        if code in (404, 410):
            return "not found", f"not found (HTTP {code})", False
        return "http error", f"HTTP {code} {exc.reason}", code >= 500 or code in (408, 429)
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason):
        return "timeout", f"timeout ({reason})", True
    if isinstance(reason, socket.gaierror):
        return "offline", f"offline (DNS: {reason})", True
    if isinstance(reason, (ConnectionError, http.client.HTTPException, OSError)):
        return "offline", f"offline (connection: {type(reason).__name__}: {reason})", True
    return "offline", f"{type(exc).__name__}: {exc}", True

"""A loopback HTTP mirror of the hosts vitwatch downloads from, for tests and the rehearsal.

Files are served under ``/<host>/<path>``, the layout that ``VITWATCH_MIRROR`` rewrites real
URLs to (``https://host/path?query`` -> ``$VITWATCH_MIRROR/host/path?query``, see
:mod:`vitwatch.downloads`). Like the real hosts, it honours ``Range: bytes=a-b`` (RFC 9110,
section 14: ``206 Partial Content`` with ``Content-Range``; ``416`` when unsatisfiable) and
answers redirect chains such as tfhub.dev -> Kaggle -> storage.googleapis.com with ``302``.

It listens on 127.0.0.1 only, on a free port, in a daemon thread; every request is logged
(method, path, range) so that tests can check what the client asked for::

    with Mirror({"/host/a/file.tar": Path("file.tar")}) as mirror:
        os.environ["VITWATCH_MIRROR"] = mirror.url
        ...
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 1 << 16


class Mirror:
    """Serve ``files`` ({url path: local file}) and ``redirects`` ({url path: url path}).

    A key may carry its query string (``/tfhub.dev/a/b/1?tf-hub-format=compressed``); a
    request is matched with its query first, then without it.
    """

    def __init__(self, files: dict[str, Path], redirects: dict[str, str] | None = None):
        self.files = {k: Path(v) for k, v in files.items()}
        self.redirects = dict(redirects or {})
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the mirror is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Mirror:
        mirror = self

        class Handler(_Handler):
            owner = mirror

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="vitwatch-mirror",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> Mirror:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def lookup(self, raw_path: str) -> tuple[str, Path | str | None]:
        """("file", path) | ("redirect", url path) | ("missing", None) for a request path."""
        bare = urllib.parse.urlsplit(raw_path).path
        for key in dict.fromkeys(
            (raw_path, urllib.parse.unquote(raw_path), bare, urllib.parse.unquote(bare))
        ):
            if key in self.redirects:
                return "redirect", self.redirects[key]
            if key in self.files:
                return "file", self.files[key]
        return "missing", None


class _Handler(BaseHTTPRequestHandler):
    owner: Mirror
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args) -> None:  # quiet: requests are in owner.requests
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        self.owner.requests.append((self.command, self.path, self.headers.get("Range")))
        kind, target = self.owner.lookup(self.path)
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", self.owner.url + target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "missing" or not Path(target).is_file():
            self._empty(404)
            return
        size = os.path.getsize(target)
        start, end = 0, size - 1
        status = 200
        spec = self.headers.get("Range")
        if spec:
            m = _RANGE.match(spec.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # "bytes=-n": the last n bytes
                start = max(size - int(m.group(2)), 0)
            if start >= size or start > end:
                self._empty(416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with open(target, "rb") as f:
            f.seek(start)
            left = end - start + 1
            try:
                while left > 0:
                    block = f.read(min(CHUNK, left))
                    if not block:
                        break
                    self.wfile.write(block)
                    left -= len(block)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away (a test's abort)

    def _empty(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


def url_path(url: str) -> str:
    """``https://host/a/b?q`` -> ``/host/a/b?q``: where the mirror serves ``url``."""
    parts = urllib.parse.urlsplit(url)
    return f"/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")

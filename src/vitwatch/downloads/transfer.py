"""One download, resumable and verified:

- bounded retries with exponential backoff on timeouts, dropped connections and HTTP 5xx/429;
  none on 403/404 and other 4xx (tfhub.dev -> Kaggle 403s persist, tensorflow/hub#922, #932);
- resume of an interrupted download from ``<file>.part`` with an HTTP ``Range`` request
  (RFC 9110 section 14; a server that ignores it answers 200 and the download restarts);
- the file is renamed from ``.part`` only when complete and verified: its digest
  (:mod:`.checks`), else the announced length, plus a format check;
- a cached file is checked against the digest recorded when it was downloaded
  (``<file>.meta.json``) whenever its size or time stamp changed, and downloaded again if corrupt;
- a ``tqdm`` progress bar (size, rate, time left) on stderr.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.error
import zipfile
from pathlib import Path

from . import web
from .checks import check_format, file_digest
from .errors import DownloadError, alternatives
from .web import CONNECT_TIMEOUT, READ_TIMEOUT

RETRIES = 4  # tries per download (timeouts, dropped connections, 5xx)
BACKOFF = 1.0  # seconds before the 2nd try, doubled each time, at most MAX_BACKOFF
MAX_BACKOFF = 16.0


class _Retry(Exception):
    """A failure worth another try (timeout, dropped connection, 5xx, truncated body)."""

    def __init__(self, cause: str, detail: str):
        super().__init__(detail)
        self.cause = cause


def _announced_total(resp) -> int | None:
    if resp.status == 206:
        crange = resp.headers.get("Content-Range", "")  # bytes 100-199/200
        total = crange.rsplit("/", 1)[-1]
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _attempt(
    url: str, part: Path, timeout: tuple[float, float], progress: bool, label: str
) -> int | None:
    """One request: resume ``part`` if it holds bytes; return the announced total length."""
    have = part.stat().st_size if part.exists() else 0
    validator = part.with_name(part.name + ".etag")  # the part's ETag / Last-Modified
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have and validator.is_file():  # RFC 9110 13.1.5: the rest of the
        headers["If-Range"] = validator.read_text()  # same file, or all of a new one
    try:
        resp = web.open_url(url, headers, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send, or a stale part
            crange = exc.headers.get("Content-Range", "")
            total = crange.rsplit("/", 1)[-1]
            if total.isdigit() and int(total) == have:
                return have
            part.unlink()
            raise _Retry("truncated", f"the server refused to resume at byte {have}") from None
        raise
    with resp:
        if resp.status == 206:
            start = resp.headers.get("Content-Range", "bytes 0-").split()[-1].split("-")[0]
            if not start.isdigit() or int(start) != have:
                part.unlink()
                raise _Retry("truncated", f"resumed at byte {start} instead of {have}")
            mode = "ab"
        else:  # 200: Range ignored or file changed: restart
            have, mode = 0, "wb"
            tag = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            if tag:
                validator.write_text(tag)
            elif validator.exists():
                validator.unlink()
        total = _announced_total(resp)
        bar = _bar(total, have, label, progress)
        try:
            with open(part, mode) as f:
                while True:
                    block = resp.read(1 << 16)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
        except TimeoutError as exc:
            raise _Retry("timeout", f"timeout: no data for {timeout[1]:.0f} s ({exc})") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Retry("truncated", f"connection dropped: {type(exc).__name__}: {exc}") from None
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got < total:
        raise _Retry("truncated", f"truncated: {got:,} of {total:,} bytes received")
    if total is not None and got > total:
        part.unlink()
        raise _Retry("truncated", f"{got:,} bytes received, {total:,} announced")
    return total


def _bar(total, initial, label, progress):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=label,
        file=sys.stderr,
        disable=not progress,
        mininterval=1.0,
        dynamic_ncols=True,
        leave=False,
    )


def _meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".meta.json")


def _cached_ok(dest: Path, digest: tuple[str, str] | None) -> bool:
    """A cached file is trusted when its size and time stamp match what was recorded when it
    was verified; otherwise it is hashed again (against ``digest`` or the recorded SHA-256)."""
    stat = dest.stat()
    try:
        meta = json.loads(_meta_path(dest).read_text())
    except (OSError, ValueError):
        meta = {}
    if meta.get("size") == stat.st_size and meta.get("mtime_ns") == stat.st_mtime_ns:
        return True
    if digest is not None:
        ok = file_digest(dest, digest[0]) == digest[1]
    elif "sha256" in meta:
        ok = meta.get("size") == stat.st_size and file_digest(dest) == meta["sha256"]
    else:  # handed in by hand, no record: format only
        try:
            check_format(dest)
        except (ValueError, OSError, zipfile.BadZipFile):
            return False
        ok = True
    if ok:
        _write_meta(dest, meta.get("url", ""))
    return ok


def _write_meta(dest: Path, url: str) -> None:
    from .. import fileio

    stat = dest.stat()
    fileio.write_json(
        _meta_path(dest),
        {
            "url": url,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": file_digest(dest),
        },
        indent=1,
    )


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    digest: tuple[str, str] | None = None,
    retries: int = RETRIES,
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    progress: bool = True,
    hint: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); return ``dest``.

    ``digest``: ("sha256" | "md5", hex) to verify; without it the announced length is the
    check. Raises :class:`DownloadError` (URL, cause, ``hint``) when every try failed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = hint if hint is not None else alternatives(dest)
    if dest.is_file():
        if _cached_ok(dest, digest):
            return dest
        print(f"vitwatch: {dest} is corrupt (checksum): downloading it again", file=sys.stderr)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    last, fresh_after_mismatch = None, False
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(min(BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF))
        resumed = part.exists() and part.stat().st_size > 0
        try:
            total = _attempt(url, part, timeout, progress, dest.name)
        except urllib.error.HTTPError as exc:
            cause, text, again = web.classify(exc)
            last = (cause, text)
            if not again:
                break
            continue
        except _Retry as exc:
            last = (exc.cause, str(exc))
            continue
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            last = web.classify(exc)[:2]
            continue
        problem = _verify(part, dest.name, digest, total)
        part.with_name(part.name + ".etag").unlink(missing_ok=True)
        if problem is None:
            os.replace(part, dest)
            _write_meta(dest, url)
            return dest
        part.unlink()
        last = problem
        if problem[0] == "checksum mismatch" and resumed and not fresh_after_mismatch:
            fresh_after_mismatch = True  # a stale part: one fresh try
            continue
        break
    cause, text = last
    raise DownloadError(f"could not download {url}: {text}.\n{hint}", url=url, cause=cause)


def _verify(part: Path, name: str, digest, total) -> tuple[str, str] | None:
    if digest is not None:
        got = file_digest(part, digest[0])
        if got != digest[1]:
            return (
                "checksum mismatch",
                f"checksum mismatch ({digest[0]} {got[:12]}... "
                f"instead of the published {digest[1][:12]}...)",
            )
    try:
        check_format(part, name)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        return "bad file", str(exc).replace(str(part), name)
    return None

"""Preflight: before any long work, whether every download a profile needs is cached or
reachable now (a ``Range: bytes=0-0`` request each), with the failures told apart (refused,
not found, offline, timeout)."""

from __future__ import annotations

import http.client
import os
import urllib.error

from . import web
from .cache import is_cached
from .errors import OFFLINE_HINT, DownloadError
from .resources import RESOURCES


def probe(url: str, timeout: float = 10.0) -> str:
    """What downloading ``url`` would meet now, without downloading it (GET, ``Range:
    bytes=0-0``, redirects followed): "reachable", "refused (HTTP 403)", "not found (HTTP 404)",
    "offline (DNS/connection: ...)", "timeout (...)" or "HTTP <code> ..."."""
    try:
        with web.open_url(url, {"Range": "bytes=0-0"}, (timeout, timeout)) as resp:
            resp.read(1)
            return "reachable"
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # an empty file: still reachable
            return "reachable"
        return web.classify(exc)[1]
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return web.classify(exc)[1]


def preflight(
    names: list[str],
    cache_dir: str | os.PathLike,
    local_dir: str | os.PathLike | None = None,
    timeout: float = 10.0,
) -> dict[str, str]:
    """Status of every resource ``names``: "cached", or what :func:`probe` finds at the URL
    that will actually be downloaded. Raises :class:`DownloadError` listing each needed
    resource that is neither cached nor reachable (optional ones, the TF Hub model, are only
    reported: the report goes on without them)."""
    status = {}
    for name in names:
        res = RESOURCES[name]
        status[name] = (
            "cached" if is_cached(name, cache_dir, local_dir) else probe(res.download_url, timeout)
        )
    failed = [
        f"  - {n}: {RESOURCES[n].download_url} ({s})"
        for n, s in status.items()
        if s not in ("cached", "reachable") and not RESOURCES[n].optional
    ]
    optional = [
        f"  - {n}: {RESOURCES[n].download_url} ({s}; optional: Kaggle Models is tried "
        "next, else the report goes on without it)"
        for n, s in status.items()
        if s not in ("cached", "reachable") and RESOURCES[n].optional
    ]
    if failed:
        raise DownloadError(
            "these downloads are needed and could not be reached:\n"
            + "\n".join(failed + optional)
            + "\n"
            + OFFLINE_HINT,
            cause="preflight",
        )
    return status

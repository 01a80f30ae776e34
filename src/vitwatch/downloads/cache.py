"""A named resource, served locally when it can be: from the folder where the user put it by
hand (checked against the published digest), from the cache (``<cache_dir>/downloads``), else
downloaded (:func:`~vitwatch.downloads.transfer.download`) and, for archives, extracted.

One process at a time makes a resource (:func:`vitwatch.fileio.exclusive` on
``<cache_dir>/locks/<file>.lock``): two notebooks running at once that need the same file
do not download or extract it twice, and neither reads it half made."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vitwatch import fileio

from .archives import extract
from .checks import expected_digest, file_digest
from .errors import DownloadError, alternatives
from .resources import RESOURCES, Resource
from .transfer import RETRIES, download
from .web import CONNECT_TIMEOUT, READ_TIMEOUT


def cache_subdir(cache_dir: str | os.PathLike, sub: str = "downloads") -> Path:
    """The folder ``<cache_dir>/<sub>``, created if needed."""
    path = Path(cache_dir).expanduser() / sub
    path.mkdir(parents=True, exist_ok=True)
    return path


def _complete(res: Resource, path: Path) -> bool:
    if res.extract:
        return path.is_dir() and (res.expect is None or (path / res.expect).exists())
    return path.is_file()


def fetch(
    name: str,
    cache_dir: str | os.PathLike,
    retries: int = RETRIES,
    local_dir: str | os.PathLike | None = None,
    verify: bool = True,
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    progress: bool = True,
) -> Path:
    """Local path of resource ``name`` (a file, or for archives the extracted folder).

    Looked for in ``local_dir`` (a folder where the user put the file by hand; checked against
    the published digest unless ``verify=False``, for the generated stand-ins), then in
    ``<cache_dir>/downloads``; downloaded otherwise. Raises :class:`DownloadError`.
    """
    res = RESOURCES[name]
    cache = cache_subdir(cache_dir)
    digest = expected_digest(res) if verify else None
    if local_dir:
        local = Path(local_dir).expanduser()
        if _complete(res, local / res.fname):
            if not res.extract and digest is not None:
                _check_handed_in(local / res.fname, res, digest)
            return local / res.fname
    lock = Path(cache_dir).expanduser() / "locks" / f"{res.file}.lock"  # made by exclusive()
    with fileio.exclusive(lock, log=lambda m: print(m, file=sys.stderr, flush=True)):
        if local_dir and res.extract and (local / res.file).is_file():
            return extract(_checked(local / res.file, res, digest), cache / res.fname, res.expect)
        return _fetch(res, cache, digest, retries, timeout, progress)


def _fetch(res: Resource, cache: Path, digest, retries, timeout, progress) -> Path:
    """:func:`fetch` from the cache or the network, under the resource's lock."""
    target = cache / res.fname
    if res.extract and _complete(res, target):
        return target
    hint = alternatives(cache / res.file)
    path = download(
        res.download_url,
        cache / res.file,
        digest=digest,
        retries=retries,
        timeout=timeout,
        progress=progress,
        hint=hint,
    )
    if not res.extract:
        return path
    try:
        return extract(path, target, res.expect)
    except ValueError as exc:
        path.unlink()
        raise DownloadError(
            f"{res.download_url}: {exc}.\n{hint}", url=res.download_url, cause="bad file"
        ) from None


def _checked(path: Path, res: Resource, digest) -> Path:
    if digest is not None:
        _check_handed_in(path, res, digest)
    return path


def _check_handed_in(path: Path, res: Resource, digest: tuple[str, str]) -> None:
    """A file put in place by hand must be the published one (a digest is known for it)."""
    algo, want = digest
    got = file_digest(path, algo)
    if got != want:
        raise DownloadError(
            f"{path} is not the published {res.file} ({algo} {got[:12]}... "
            f"expected {want[:12]}...): download it again from {res.url}",
            url=res.url,
            cause="checksum mismatch",
        )


def is_cached(
    name: str, cache_dir: str | os.PathLike, local_dir: str | os.PathLike | None = None
) -> bool:
    """True when ``fetch`` will not need the network for ``name``."""
    res = RESOURCES[name]
    dirs = [Path(cache_dir).expanduser() / "downloads"]
    dirs += [Path(local_dir).expanduser()] if local_dir else []
    return any(
        _complete(res, d / res.fname) or (res.extract and (d / res.file).is_file()) for d in dirs
    )

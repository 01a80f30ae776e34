"""Atomic file writes, shared by every cache and store of vitwatch.

A file is written to a temporary name in its own folder, flushed to disk, then renamed over the
target (``os.replace``): a reader sees the old file or the new one, never half of one, so a run
killed at any moment leaves caches that the next run can trust and resume from.

:func:`exclusive` serialises the processes that would make the same file (two notebooks, or a
notebook and JupyterLab, downloading one archive): the second waits, then finds it made.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file, then move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs) -> Path:
    data = json.dumps(obj, **dumps_kwargs).encode()
    return atomic_write(path, lambda f: f.write(data))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    return atomic_write(path, lambda f: np.save(f, array))


def save_npz(path: str | os.PathLike, compressed: bool = False, **arrays) -> Path:
    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda f: save(f, **arrays))


@contextlib.contextmanager
def exclusive(
    path: str | os.PathLike, timeout: float = 6 * 3600.0, poll: float = 0.5, log=None
) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``path`` (``fcntl.flock``: released by the system
    when the holder exits, even killed) for the ``with`` block. Another process waiting for it
    says so once through ``log`` and polls every ``poll`` s; after ``timeout`` s: TimeoutError
    naming the lock file. Without ``fcntl`` (Windows): no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield Path(path)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - start >= timeout:
                    raise TimeoutError(
                        f"{path}: still locked by another process after {timeout:.0f} s "
                        "(another vitwatch run making the same file)"
                    ) from None
                if log is not None:  # once
                    log(f"vitwatch: another process is making {path.stem}: waiting for it")
                    log = None
                time.sleep(poll)
        try:
            yield path
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

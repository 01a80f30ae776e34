"""Atomic file writes, shared by every cache and store of vitwatch.

A file is written to a temporary name in its own folder, flushed to disk, then renamed over the
target (``os.replace``): a reader sees the old file or the new one, never half of one, so a run
killed at any moment leaves caches that the next run can trust and resume from.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
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

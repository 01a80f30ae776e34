"""Decode once: each image of a split decoded a single time per profile, kept on disk as uint8.

Decoding a JPEG costs more than a ViT-S/16 forward pass on a small CPU, and the report reads the
same files again for every backbone, view, epoch, protocol and analysis. So the first time any
image of a registered split is asked for, the whole split is decoded (threads, as
``images.load_image(path, min_side=M)``: EXIF-transposed RGB, large JPEGs reduced by libjpeg's
DCT scaling so that both sides stay >= ``M``) into one flat ``uint8`` array, ``pixels.npy``
(memory-mapped when read), with ``index.npy`` ``int64 (N, 3)`` = (offset, height, width) per
image (height 0: undecodable, the reason in ``bad.json``). Files are written atomically under
``<cache_dir>/decoded/<key>/``, the key hashing the file list, ``M`` and :data:`VERSION`.

Every view is then computed from the cached pixels: the eval views (squash or resize + centre
crop) and the augmented views (random resized crop + flip) resize the cached array exactly as
they resized the freshly decoded one, so their semantics are unchanged; pixel values differ
from a fresh decode only for photos more than twice ``M`` on their shorter side, whose DCT
reduction stops at a larger scale. ``M = 2 * img_size`` (what the augmented view needs).
Size on disk: height x width x 3 bytes per image (Stanford Dogs at 224 px: ~0.5 MB per image).

Typical use (``stanford_dogs.load`` registers its splits; ``images.load_image`` consults)::

    decoded.register(split.paths, min_side=448, cache_dir=cfg.cache_dir)
    img = decoded.lookup(path, img_size=None, min_side=448)   # (found, uint8 (H, W, 3) | None,
                                                              #  reason)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .. import fileio

VERSION = 1  # bump when decoding changes (images.decode)
ENV_DISABLE = "VITWATCH_DECODE_CACHE"  # "0": decode every time, as before
_LOCK = threading.Lock()
_PATHS: dict[str, tuple[DecodedSplit, int]] = {}  # path -> (cache, position)
LAST_BUILD: dict = {}  # statistics of the last build: n_images, seconds, images/s, bytes


def _npy_header(n: int) -> bytes:
    """A 128-byte .npy v1.0 header of a flat uint8 array of ``n`` values (fixed length, so it
    can be written before ``n`` is known and rewritten after)."""
    body = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), }}"
    body = body.ljust(128 - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode()


def cache_key(paths: Sequence[str], min_side: int) -> str:
    h = hashlib.sha1(f"v{VERSION} min_side={int(min_side)}\n".encode())
    for p in paths:
        h.update(f"{p}\n".encode())
    return h.hexdigest()[:16]


class DecodedSplit:
    """The decoded pixels of a list of files (built on first use, then memory-mapped)."""

    def __init__(self, paths: Sequence[str], min_side: int, cache_dir):
        self.paths, self.min_side = list(paths), int(min_side)
        self.folder = (
            Path(cache_dir).expanduser()
            / "decoded"
            / f"{len(self.paths)}img-{self.min_side}px-{cache_key(self.paths, min_side)}"
        )
        self._pixels = self._index = self._bad = None
        self._lock = threading.Lock()

    def _open(self) -> None:
        with self._lock:
            if self._index is not None:
                return
            if not (self.folder / "index.npy").is_file():
                self.build()
            self._bad = json.loads((self.folder / "bad.json").read_text())
            self._pixels = np.load(self.folder / "pixels.npy", mmap_mode="r")  # (total,)
            self._index = np.load(self.folder / "index.npy")  # (N, 3)

    def build(self, workers: int | None = None) -> None:
        """Decode every file once (threads) and write pixels, index and bad list atomically."""
        from . import images

        t0 = time.perf_counter()
        index = np.zeros((len(self.paths), 3), np.int64)
        bad: dict[str, str] = {}

        def one(path):
            try:
                return images.decode(path, min_side=self.min_side), None
            except ValueError as exc:
                return None, str(exc)

        def write(f):
            f.write(_npy_header(0))
            offset = 0
            with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
                for i, (img, reason) in enumerate(pool.map(one, self.paths)):
                    if img is None:
                        bad[str(i)] = reason
                        continue
                    f.write(np.ascontiguousarray(img).tobytes())
                    index[i] = (offset, img.shape[0], img.shape[1])
                    offset += img.size
            f.seek(0)
            f.write(_npy_header(offset))

        fileio.atomic_write(self.folder / "pixels.npy", write)
        fileio.write_json(self.folder / "bad.json", bad)
        fileio.save_npy(self.folder / "index.npy", index)  # written last: complete
        seconds = time.perf_counter() - t0
        LAST_BUILD.clear()
        LAST_BUILD.update(
            n_images=len(self.paths),
            seconds=seconds,
            folder=str(self.folder),
            images_per_second=len(self.paths) / max(seconds, 1e-9),
            bytes=int((self.folder / "pixels.npy").stat().st_size),
        )

    def get(self, i: int) -> tuple[np.ndarray | None, str | None]:
        """Image ``i`` as a fresh uint8 (H, W, 3) array, or (None, reason) if undecodable."""
        self._open()
        offset, h, w = (int(v) for v in self._index[i])
        if h == 0:
            return None, self._bad.get(str(i), "undecodable")
        return np.array(self._pixels[offset : offset + h * w * 3]).reshape(h, w, 3), None


def enabled() -> bool:
    return os.environ.get(ENV_DISABLE, "1").strip() not in ("0", "false", "no", "off")


def register(paths: Sequence[str], min_side: int, cache_dir) -> DecodedSplit | None:
    """Make ``paths`` decode through one shared cache (built lazily, on the first lookup)."""
    if not enabled() or not paths:
        return None
    cache = DecodedSplit(paths, min_side, cache_dir)
    with _LOCK:
        for i, p in enumerate(cache.paths):
            _PATHS[str(p)] = (cache, i)
    return cache


def lookup(
    path, img_size: int | None = None, min_side: int | None = None
) -> tuple[bool, np.ndarray | None, str | None]:
    """``(found, image, reason)`` for ``images.load_image(path, img_size, min_side=...)``:
    ``found`` False when ``path`` is not in a registered cache that decodes at least as large
    as asked (the caller then decodes the file itself)."""
    if not _PATHS:
        return False, None, None
    entry = _PATHS.get(str(path))
    if entry is None:
        return False, None, None
    cache, i = entry
    if (min_side or 0) > cache.min_side or (img_size or 0) > cache.min_side:
        return False, None, None
    img, reason = cache.get(i)
    if img is not None and img_size:
        img = np.asarray(
            Image.fromarray(img).resize(
                (img_size, img_size), Image.Resampling.BILINEAR, reducing_gap=None
            )
        )  # (S, S, 3)
    return True, img, reason


def clear() -> None:
    """Forget every registered cache (the files stay)."""
    with _LOCK:
        _PATHS.clear()

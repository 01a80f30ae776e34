"""Robust image decoding with Pillow: every file either becomes RGB uint8 or is skipped and logged.

Web-scraped datasets such as Stanford Dogs (images from ImageNet) hold the usual surprises:
grayscale and CMYK JPEGs, PNG files named ``.jpg``, palette images with transparency, 16-bit
scans, photos whose orientation lives in an EXIF tag, very large files, and the occasional
empty or truncated download. :func:`load_image` decodes all the decodable ones to
``uint8 (H, W, 3)`` RGB and returns ``None`` for the rest, recording why in a
:class:`BadImageLog`; it never raises for a bad file. Large JPEGs are decoded at reduced scale
through libjpeg's DCT scaling (``Image.draft``), and images larger than :data:`MAX_PIXELS` are
refused before decoding (decompression-bomb guard), following Pillow's own
``DecompressionBombError`` logic (Pillow docs, "Image.open").

EXIF orientation: :func:`load_image` returns the photo upright, transposed as the EXIF
Orientation tag (0x0112, values 1-8; EXIF 2.3 and ``PIL.ImageOps.exif_transpose``) says.
Annotations such as Stanford Dogs' PASCAL VOC boxes are drawn on the *stored* pixels, so
they must be carried into the same frame: :func:`orient_boxes` applies the very transpose
used on the pixels (:data:`EXIF_TRANSPOSE`) to boxes, and :func:`header` reads the
orientation and the stored size from the file's header.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Refuse images with more pixels than this (~ 16k x 11k), before decoding them: a crafted
# 1-kB PNG can claim 100,000 x 100,000 pixels. Legitimate large photos stay well below.
MAX_PIXELS = 180_000_000

# EXIF orientation -> transpose that shows the stored pixels upright (as ImageOps.exif_transpose)
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ORIENTATION_TAG = 0x0112


@dataclass
class BadImageLog:
    """Files skipped because they could not be decoded: ``count``, ``files``, ``reasons``.

    Thread-safe; a file is recorded once however many times it is read.
    """

    entries: dict[str, str] = field(default_factory=dict)  # path -> reason

    def __post_init__(self):
        self._lock = threading.Lock()

    def add(self, path: str | os.PathLike, reason: str) -> None:
        with self._lock:
            self.entries.setdefault(str(path), reason)

    def extend(self, other: BadImageLog) -> None:
        for path, reason in other.entries.items():
            self.add(path, reason)

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def files(self) -> list[str]:
        return list(self.entries)

    @property
    def reasons(self) -> list[str]:
        return list(self.entries.values())

    def __len__(self) -> int:
        return self.count

    def __contains__(self, path) -> bool:
        return str(path) in self.entries

    def to_list(self) -> list[dict[str, str]]:
        """JSON-ready: ``[{"file": ..., "reason": ...}, ...]`` (for the results store)."""
        return [{"file": f, "reason": r} for f, r in self.entries.items()]

    def summary(self, max_files: int = 10) -> str:
        if not self.entries:
            return "no bad images"
        lines = [f"{self.count} image(s) skipped:"]
        for f, r in list(self.entries.items())[:max_files]:
            lines.append(f"  - {Path(f).parent.name}/{Path(f).name}: {r}")
        if self.count > max_files:
            lines.append(f"  ... and {self.count - max_files} more")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"BadImageLog(count={self.count})"


def exif_orientation(img: Image.Image) -> int:
    """EXIF orientation 1-8 of an opened image; 1 when absent, out of range or unreadable."""
    try:
        value = int(img.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - broken EXIF block
        return 1
    return value if value in EXIF_TRANSPOSE else 1


def header(path: str | os.PathLike) -> tuple[int, tuple[int, int]]:
    """(EXIF orientation, stored (width, height)) of an image file, from its header only.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an unreadable one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    try:
        with Image.open(path) as img:
            return exif_orientation(img), img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable image header ({exc})") from None


def oriented_size(orientation: int, stored_wh: tuple[int, int]) -> tuple[int, int]:
    """(width, height) after the EXIF transpose: sides swapped for orientations 5-8."""
    w, h = stored_wh
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def orient_boxes(boxes, orientation: int, stored_wh: tuple[int, int]) -> np.ndarray:
    """Boxes ``(k, 4)`` ``[xmin, ymin, xmax, ymax]`` on the stored pixels -> the same boxes on
    the image :func:`load_image` returns (EXIF-transposed), as float32 ``(k, 4)``.

    Coordinates are PASCAL VOC's 1-based inclusive pixel indices, so a mirror maps x to
    W + 1 - x. Each orientation applies the transpose of :data:`EXIF_TRANSPOSE` to the corners
    (x, y) of a stored image of ``stored_wh`` = (W, H) pixels.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if orientation not in EXIF_TRANSPOSE:
        return b.astype(np.float32)
    W, H = stored_wh
    x, y = b[:, [0, 2]], b[:, [1, 3]]  # (k, 2) corner coordinates
    xs, ys = {
        2: (W + 1 - x, y),
        3: (W + 1 - x, H + 1 - y),
        4: (x, H + 1 - y),
        5: (y, x),
        6: (H + 1 - y, x),
        7: (H + 1 - y, W + 1 - x),
        8: (y, W + 1 - x),
    }[orientation]
    out = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)  # (k, 4)
    return out.astype(np.float32)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency composited on white, 16/32-bit rescaled to 8-bit."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        img = Image.fromarray(a.round().astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    if img.mode == "CMYK":
        # Adobe CMYK JPEGs are stored inverted; Pillow's JPEG plugin already un-inverts them.
        return img.convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def decode(
    path: str | os.PathLike, img_size: int | None = None, min_side: int | None = None
) -> np.ndarray:
    """Decode one file to ``uint8 (H, W, 3)``; raise ``ValueError(reason)`` when impossible.

    ``img_size``: resize to ``(img_size, img_size)`` (bilinear, antialiased).
    ``min_side``: decode JPEGs at the smallest DCT scale keeping both sides >= it (fast for
    large photos; the result is then at least that large, not resized).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError("missing file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ValueError(
                        f"decompression-bomb guard: {w}x{h} pixels > MAX_PIXELS={MAX_PIXELS:,}"
                    )
                target = img_size or min_side
                if target and img.format == "JPEG":
                    # EXIF rotation by 90 degrees swaps the sides; draft keeps both >= target.
                    img.draft("RGB", (target, target))
                orientation = exif_orientation(img)
                img.load()
                if orientation in EXIF_TRANSPOSE:  # upright, as orient_boxes
                    img = img.transpose(EXIF_TRANSPOSE[orientation])
                img = _to_rgb(img)
                if img_size:
                    img = img.resize(
                        (img_size, img_size), Image.Resampling.BILINEAR, reducing_gap=None
                    )
                out = np.asarray(img, dtype=np.uint8)
    except ValueError:
        raise
    except Image.DecompressionBombError as exc:
        raise ValueError(f"decompression-bomb guard: {exc}") from None
    except UnidentifiedImageError:
        raise ValueError(f"not a recognised image format ({size} bytes)") from None
    except (
        OSError,
        SyntaxError,
        EOFError,
        struct.error,
        MemoryError,
        TypeError,
        KeyError,
        IndexError,
        ZeroDivisionError,
    ) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg:
            msg = f"truncated file ({msg})"
        raise ValueError(msg) from None
    if out.ndim != 3 or out.shape[2] != 3 or out.shape[0] == 0 or out.shape[1] == 0:
        raise ValueError(f"unexpected decoded shape {out.shape}")
    return out


def load_image(
    path: str | os.PathLike,
    img_size: int | None = None,
    log: BadImageLog | None = None,
    min_side: int | None = None,
) -> np.ndarray | None:
    """Robustly decode ``path`` to ``uint8 (H, W, 3)`` RGB, or ``None`` if undecodable.

    EXIF orientation is applied (boxes follow with :func:`orient_boxes`); grayscale, CMYK,
    palette, alpha and 16-bit images are converted to RGB; a PNG named ``.jpg`` is decoded as
    the PNG it is (Pillow sniffs the content).
    ``img_size`` resizes to a square ``(img_size, img_size)``. Undecodable files (empty,
    truncated, corrupt, not an image, too large) return ``None`` and are recorded in ``log``
    (default: the process-wide :data:`BAD_IMAGES`). Never raises for a bad file.
    """
    from . import decoded  # decode once: a registered split's shared cache

    found, img, reason = decoded.lookup(path, img_size, min_side)
    if found:
        if img is None:
            (BAD_IMAGES if log is None else log).add(path, reason)
        return img
    try:
        return decode(path, img_size=img_size, min_side=min_side)
    except ValueError as exc:
        (BAD_IMAGES if log is None else log).add(path, str(exc))
        return None


def check_image(path: str | os.PathLike) -> str | None:
    """Fully decode ``path`` at reduced scale; ``None`` if it is fine, else the reason."""
    try:
        decode(path, min_side=32)
        return None
    except ValueError as exc:
        return str(exc)


# Every file skipped by load_image in this process (when no other log is given).
BAD_IMAGES = BadImageLog()

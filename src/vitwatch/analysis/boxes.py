"""Stanford Dogs' bounding boxes in any frame: the photo as loaded, a backbone's square input,
a map's grid.

Boxes are PASCAL VOC ``[x0, y0, x1, y1]`` in the pixels of the photo as
:func:`vitwatch.data.images.load_image` returns it (EXIF orientation applied; its size:
:func:`image_size`). Resizing to the square ``img_size`` input squashes the photo (no crop), so
:func:`scale_boxes` scales each axis; :func:`box_mask` rasterises the union of boxes on a grid,
:func:`box_fraction` is the share of the frame it covers, :func:`box_distance` how far a point
lies from the nearest box. Read by :mod:`~vitwatch.analysis.localisation` (does a map find the
dog), :mod:`~vitwatch.analysis.box_size` (small dogs) and :mod:`~vitwatch.analysis.store`.
"""

from __future__ import annotations

import numpy as np


def image_size(path) -> tuple[int, int]:
    """(width, height) of a photo as :func:`vitwatch.data.images.load_image` returns it (EXIF
    orientation applied: sides swapped for orientations 5-8), read from the header only.

    The boxes of :mod:`vitwatch.data.stanford_dogs` are in that same frame (carried there by
    :func:`vitwatch.data.images.orient_boxes`), so this is the size to scale them from.
    """
    from vitwatch.data import images

    try:
        orientation, stored = images.header(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"boxes: image {path} not found") from None
    return images.oriented_size(orientation, stored)


def scale_boxes(boxes, orig_wh, size: int | tuple[int, int]) -> np.ndarray:
    """Boxes (k, 4) xyxy in the pixels of the loaded photo (``orig_wh`` = :func:`image_size`)
    -> the same boxes on a (H, W) = ``size`` grid."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w0, h0 = orig_wh
    if w0 <= 0 or h0 <= 0:
        raise ValueError(f"boxes: image size must be positive, got {orig_wh}")
    hh, ww = (size, size) if np.isscalar(size) else size
    return boxes * np.array([ww / w0, hh / h0, ww / w0, hh / h0])


def box_mask(boxes, height: int, width: int) -> np.ndarray:
    """(height, width) bool: pixel centres inside the union of boxes given on that grid."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ys = np.arange(height)[:, None] + 0.5  # (H, 1)
    xs = np.arange(width)[None, :] + 0.5  # (1, W)
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return mask


def box_fraction(boxes, orig_wh, grid: int = 224) -> float:
    """Share of the frame covered by the union of boxes (resizing preserves area shares)."""
    return float(box_mask(scale_boxes(boxes, orig_wh, grid), grid, grid).mean())


def box_distance(point, boxes) -> float:
    """Euclidean distance in pixels from ``point`` (x, y) to the nearest box (0 inside one)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return float("inf")
    x, y = point
    dx = np.maximum.reduce([boxes[:, 0] - x, np.zeros(len(boxes)), x - boxes[:, 2]])
    dy = np.maximum.reduce([boxes[:, 1] - y, np.zeros(len(boxes)), y - boxes[:, 3]])
    return float(np.min(np.hypot(dx, dy)))

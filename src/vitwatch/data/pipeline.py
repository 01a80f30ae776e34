"""The batching pipeline: views of the images of a split (eval or augmented), in batches.

Eval view: the image resized to S x S. Augmented view: Inception-style random resized crop and
horizontal flip, seeded per image by ``(seed, position)``, so a view does not depend on the
batching. Decoding runs in threads, one batch ahead of the consumer.

Typical use::

    dogs = stanford_dogs.load(cfg)                  # DogsData: train / val / test splits
    for x, idx in pipeline.batches(dogs.train, 224, 32, augment=True, seed=0):
        ...                                         # x: uint8 (B, 224, 224, 3)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import images

if TYPE_CHECKING:
    from .stanford_dogs import Split


def random_resized_crop(
    img: np.ndarray, size: int, rng: np.random.Generator, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3)
) -> np.ndarray:
    """Inception-style crop (Szegedy et al., 2015; torchvision's RandomResizedCrop): a random
    area share in ``scale`` and aspect ratio in ``ratio``, resized to ``(size, size)``."""
    h, w = img.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            break
    else:  # fall back to the central square
        cw = ch = min(h, w)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = Image.fromarray(img[y0 : y0 + ch, x0 : x0 + cw])
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def _view(
    path: str, i: int, img_size: int, augment: bool, seed: int, log: images.BadImageLog | None
) -> np.ndarray | None:
    if not augment:
        return images.load_image(path, img_size, log=log)  # (S, S, 3)
    img = images.load_image(path, log=log, min_side=2 * img_size)
    if img is None:
        return None
    rng = np.random.default_rng([seed, i])  # per image: independent of batching
    img = random_resized_crop(img, img_size, rng)
    return img[:, ::-1] if rng.random() < 0.5 else img


def batches(
    split: Split,
    img_size: int,
    batch_size: int,
    augment: bool = False,
    seed: int = 0,
    *,
    shuffle: bool = False,
    indices: Sequence[int] | None = None,
    log: images.BadImageLog | None = None,
    workers: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``(uint8 (B, S, S, 3), positions in split)`` with ``S = img_size``.

    Eval view (``augment=False``): the image resized to S x S. Augmented view: random resized
    crop + horizontal flip, seeded per image by ``(seed, position)``, so a view does not depend
    on the batch size. ``indices``: only these positions (default: all); ``shuffle``: seeded
    order. Undecodable images are skipped and recorded in ``log`` (default
    ``images.BAD_IMAGES``). Decoding runs in threads, one batch ahead of the consumer.
    """
    if img_size <= 0 or batch_size <= 0:
        raise ValueError(
            f"batches: img_size and batch_size must be > 0, got {img_size}, {batch_size}"
        )
    order = np.arange(len(split)) if indices is None else np.asarray(indices, dtype=int)
    if shuffle:
        order = np.random.default_rng(seed).permutation(order)
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    workers = workers or min(4, os.cpu_count() or 1)

    def submit(pool, chunk):
        return [
            pool.submit(_view, split.paths[i], int(i), img_size, augment, seed, log) for i in chunk
        ]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = submit(pool, chunks[0]) if chunks else None
        for k, chunk in enumerate(chunks):
            results = [f.result() for f in pending]
            if k + 1 < len(chunks):
                pending = submit(pool, chunks[k + 1])  # prefetch the next batch
            ok = [j for j, img in enumerate(results) if img is not None]
            if ok:
                yield (
                    np.stack([results[j] for j in ok]),  # (B, S, S, 3)
                    chunk[ok].astype(np.int64),
                )

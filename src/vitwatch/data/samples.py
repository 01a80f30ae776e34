"""Real photographs for the figures of notebooks 01-02, available offline.

scikit-image ships a few photographs inside its wheel (``skimage.data``): Chelsea the cat, the
astronaut Eileen Collins, a cup of coffee, a rocket launch. They need no download, so the smoke
profile shows real images too. In the ``quick`` and ``full`` profiles, :func:`dog_photos` adds
Stanford Dogs images through the project's loader (:mod:`vitwatch.data.stanford_dogs`).
"""

from __future__ import annotations

import numpy as np

# name -> (skimage.data function, description)
PHOTOS = {
    "chelsea": ("chelsea", "Chelsea the cat (scikit-image sample)"),
    "astronaut": ("astronaut", "astronaut Eileen Collins (NASA, scikit-image sample)"),
    "coffee": ("coffee", "a cup of coffee (scikit-image sample)"),
    "rocket": ("rocket", "a rocket launch (scikit-image sample)"),
}


def photos(names=None) -> dict[str, np.ndarray]:
    """``{name: uint8 (H, W, 3)}`` for the bundled photographs (default: all of
    :data:`PHOTOS`)."""
    import skimage.data

    names = list(PHOTOS) if names is None else list(names)
    out = {}
    for name in names:
        if name not in PHOTOS:
            raise ValueError(f"unknown sample photo {name!r}; available: {', '.join(PHOTOS)}")
        img = np.asarray(getattr(skimage.data, PHOTOS[name][0])())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        out[name] = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    return out


def square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, then resize to ``(size, size)`` (bicubic): ``uint8 (S, S, 3)``."""
    from PIL import Image

    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = Image.fromarray(np.ascontiguousarray(img[y0 : y0 + s, x0 : x0 + s]).astype(np.uint8))
    return np.asarray(crop.resize((size, size), Image.BICUBIC))


def dog_photos(cfg, n: int = 3, split: str = "test") -> dict[str, np.ndarray]:
    """``{breed: uint8 image}``: the first image of ``n`` different breeds of Stanford Dogs.

    Uses ``stanford_dogs.load(cfg)`` (downloads in ``quick``/``full``; the synthetic stand-in
    when ``cfg.dataset == "synthetic"``). Images that cannot be decoded are skipped.
    """
    from vitwatch.data import images, stanford_dogs

    data = stanford_dogs.load(cfg)
    part = getattr(data, split)
    out: dict[str, np.ndarray] = {}
    seen = set()
    for path, label in zip(part.paths, part.labels):
        if int(label) in seen:
            continue
        img = images.load_image(path)
        if img is None:
            continue
        seen.add(int(label))
        out[data.class_names[int(label)]] = img
        if len(out) == n:
            break
    return out

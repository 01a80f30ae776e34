"""Does a saliency map find the dog? Bounding boxes, map mass inside them, Grad-CAM, centre prior.

Holds the measurements of notebook 04's localisation section:

- :func:`scale_boxes`, :func:`box_mask`, :func:`box_fraction` — Stanford Dogs boxes (PASCAL VOC
  ``[x0, y0, x1, y1]`` pixels of the photo as loaded, EXIF orientation applied: see
  :func:`image_size`) carried onto the square ``img_size`` input that
  :func:`vitwatch.data.images.load_image` makes by resizing (no crop), and onto any map grid.
- :func:`mass_inside` — share of a non-negative saliency map's mass inside the union of boxes
  (the "energy-based pointing game" of Wang et al., 2020, Score-CAM); :func:`pointing_hit` —
  the pointing game of Zhang et al. (2018, "Top-down neural attention by excitation
  backprop", IJCV): a hit when the *centre* of the map's peak cell, in image pixels, lies
  within a tolerance of **15 pixels** of a box (their tolerance).
- :func:`to_grid` — a map resampled (mass-preserving block average) onto another grid, so
  that maps of different resolutions (a 14 x 14 rollout, a 7 x 7 Grad-CAM) are scored on one
  common grid and neither is favoured by its resolution.
- :func:`centre_prior` — an isotropic Gaussian centred on the frame: the baseline any map must
  beat, since photographers centre the dog.
- :class:`GradCAM` — Grad-CAM [Selvaraju et al., 2017] for a Keras CNN (ResNet-50: last stage
  ``conv5_block3_out``, 7 x 7 at 224 px): channel weights = spatial mean of the gradient of the
  target score, map = ReLU(sum_c weight_c A_c).

Maps are ``(h, w)`` arrays on any grid; for measurements each cell is spread uniformly over
the pixels it covers (nearest-neighbour upsampling to the mask resolution).
"""

from __future__ import annotations

import numpy as np

RESNET50_LAST_CONV = "conv5_block3_out"


# --- boxes -----------------------------------------------------------------------------------
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
        raise FileNotFoundError(f"localisation: image {path} not found") from None
    return images.oriented_size(orientation, stored)


def scale_boxes(boxes, orig_wh, size: int | tuple[int, int]) -> np.ndarray:
    """Boxes (k, 4) xyxy in the pixels of the loaded photo (``orig_wh`` = :func:`image_size`)
    -> the same boxes on a (H, W) = ``size`` grid."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w0, h0 = orig_wh
    if w0 <= 0 or h0 <= 0:
        raise ValueError(f"localisation: image size must be positive, got {orig_wh}")
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


# --- maps ------------------------------------------------------------------------------------
def upsample(saliency, shape: tuple[int, int], order: int = 0) -> np.ndarray:
    """Resize a (h, w) map to ``shape``. ``order=0`` (default, used for every measurement):
    each cell's value covers its block of pixels, as a patch token covers its 16 x 16 patch;
    ``order=1``: bilinear, smoother, for display only."""
    from skimage.transform import resize

    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"a saliency map must be (h, w), got shape {s.shape}")
    if s.shape == tuple(shape):
        return s
    return resize(s, shape, order=order, mode="edge", anti_aliasing=False)


def normalise(saliency) -> np.ndarray:
    """Non-negative map summing to 1 (a uniform map if it is all zero)."""
    s = np.clip(np.asarray(saliency, dtype=np.float64), 0, None)
    total = s.sum()
    return s / total if total > 0 else np.full(s.shape, 1.0 / s.size)


def mass_inside(saliency, mask) -> float:
    """Share of the (non-negative part of the) map's mass that lies inside ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    return float(normalise(upsample(saliency, mask.shape))[mask].sum())


POINTING_TOLERANCE = 15.0  # pixels, the tolerance of Zhang et al. (2018)


def peak_centre(saliency, frame_hw) -> tuple[float, float]:
    """(x, y) in pixels of a ``frame_hw`` = (H, W) image: centre of the map's highest cell
    (first in row-major order on ties). A cell of an (h, w) map covers H / h x W / w pixels."""
    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"a saliency map must be (h, w), got shape {s.shape}")
    i, j = np.unravel_index(int(np.argmax(s)), s.shape)
    hh, ww = frame_hw
    return (j + 0.5) * ww / s.shape[1], (i + 0.5) * hh / s.shape[0]


def box_distance(point, boxes) -> float:
    """Euclidean distance in pixels from ``point`` (x, y) to the nearest box (0 inside one)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return float("inf")
    x, y = point
    dx = np.maximum.reduce([boxes[:, 0] - x, np.zeros(len(boxes)), x - boxes[:, 2]])
    dy = np.maximum.reduce([boxes[:, 1] - y, np.zeros(len(boxes)), y - boxes[:, 3]])
    return float(np.min(np.hypot(dx, dy)))


def pointing_hit(saliency, boxes, frame_hw, tolerance: float = POINTING_TOLERANCE) -> bool:
    """Pointing game [Zhang et al., 2018]: the centre of the map's peak cell lies within
    ``tolerance`` pixels of a box. ``boxes`` (k, 4) xyxy and ``frame_hw`` (H, W) are in the
    pixels of the image the map covers (e.g. the original photo, for a squashed input)."""
    if tolerance < 0:
        raise ValueError(f"pointing_hit: tolerance must be >= 0 pixels, got {tolerance}")
    return box_distance(peak_centre(saliency, frame_hw), boxes) <= tolerance


def to_grid(saliency, shape: tuple[int, int]) -> np.ndarray:
    """A (h, w) map on an (H, W) grid by area averaging (coarser) or nearest cells (finer).

    When the grids divide each other, coarsening is an exact block mean, so the share of the
    mass in any union of coarse cells is preserved (a 14 x 14 rollout -> 7 x 7: 2 x 2 blocks).
    """
    from skimage.measure import block_reduce

    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"a saliency map must be (h, w), got shape {s.shape}")
    shape = tuple(int(v) for v in shape)
    if s.shape == shape:
        return s
    if all(a % b == 0 for a, b in zip(s.shape, shape)):
        return block_reduce(s, (s.shape[0] // shape[0], s.shape[1] // shape[1]), np.mean)
    from skimage.transform import resize

    coarser = all(a >= b for a, b in zip(s.shape, shape))
    return resize(s, shape, order=1 if coarser else 0, mode="edge", anti_aliasing=coarser)


def centre_prior(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """Isotropic Gaussian centred on the frame; ``sigma`` as a fraction of each side."""
    if sigma <= 0:
        raise ValueError(f"centre_prior: sigma must be > 0, got {sigma}")
    ys = (np.arange(height) + 0.5) / height - 0.5
    xs = (np.arange(width) + 0.5) / width - 0.5
    g = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def evaluate(
    maps: dict[str, np.ndarray],
    boxes_list,
    sizes,
    grid: int = 112,
    common_grid: tuple[int, int] | None = None,
    tolerance: float = POINTING_TOLERANCE,
):
    """Mass inside the boxes and pointing hits of several families of maps, per image.

    ``maps``: name -> (n, h, w) maps (any grid per family); ``boxes_list``: n arrays of (k, 4)
    boxes in the pixels of the frame each map covers; ``sizes``: n (width, height) of that frame.
    ``common_grid`` (h, w): every family is first resampled onto it (:func:`to_grid`), so that
    all are scored at one resolution. Mass is measured on a ``grid`` x ``grid`` pixel mask; the
    pointing game in frame pixels with ``tolerance``. Adds the ``centre prior`` (peak at the
    frame centre) and ``uniform`` (= box area share) baselines. Returns a long DataFrame with
    columns ``image``, ``map``, ``mass_inside``, ``hit``, ``box_fraction``.
    """
    import pandas as pd

    n = len(boxes_list)
    for name, m in maps.items():
        if len(m) != n:
            raise ValueError(f"localisation.evaluate: {len(m)} {name} maps for {n} images")
    prior = centre_prior(grid, grid)
    rows = []
    for i in range(n):
        w, h = sizes[i]
        mask = box_mask(scale_boxes(boxes_list[i], sizes[i], grid), grid, grid)
        frac = float(mask.mean())
        for name, m in maps.items():
            mi = to_grid(m[i], common_grid) if common_grid is not None else m[i]
            rows.append(
                {
                    "image": i,
                    "map": name,
                    "mass_inside": mass_inside(mi, mask),
                    "hit": pointing_hit(mi, boxes_list[i], (h, w), tolerance),
                    "box_fraction": frac,
                }
            )
        centre_hit = box_distance((w / 2, h / 2), boxes_list[i]) <= tolerance
        rows.append(
            {
                "image": i,
                "map": "centre prior",
                "mass_inside": float(prior[mask].sum()),
                "hit": bool(centre_hit),
                "box_fraction": frac,
            }
        )
        rows.append(
            {"image": i, "map": "uniform", "mass_inside": frac, "hit": np.nan, "box_fraction": frac}
        )
    return pd.DataFrame(rows)


# --- Grad-CAM --------------------------------------------------------------------------------
class GradCAM:
    """Grad-CAM maps of a Keras CNN at ``layer_name`` [Selvaraju et al., 2017].

    ``model`` maps preprocessed images to an output (logits, or pooled features); ``head``
    (optional, differentiable) maps that output to class scores, e.g. an ImageNet-1k
    classifier on pooled ResNet features. ``__call__(x, class_index)`` returns (B, h, w) maps
    for the score of ``class_index`` (B,) (default: the predicted class when the model gives
    ``logits`` or has a ``head``; otherwise the squared norm of the pooled output, a
    class-agnostic map, comparable with the class-agnostic attention rollout).
    """

    def __init__(
        self, model, layer_name: str = RESNET50_LAST_CONV, head=None, logits: bool = False
    ):
        import keras

        from vitwatch.representations import find_layer

        inner = model
        for layer in getattr(model, "layers", []):
            if hasattr(layer, "layers"):
                try:
                    find_layer(layer, layer_name)
                    inner = layer
                    break
                except ValueError:
                    pass
        conv = find_layer(inner, layer_name)
        self._inner = keras.Model(inner.inputs[0], [conv.output, inner.output])
        # A spatial output (include_top=False, no pooling) is average-pooled before the head.
        self.head = head
        self.logits = logits
        self.layer_name = layer_name

    def __call__(self, x, class_index=None) -> np.ndarray:
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        with tf.GradientTape() as tape:
            conv, out = self._inner(x, training=False)  # (B, h, w, C), ...
            tape.watch(conv)
            if len(out.shape) == 4:
                out = tf.reduce_mean(out, axis=(1, 2))  # (B, C) pooled
            scores = self.head(out) if self.head is not None else out
            if len(scores.shape) != 2:
                raise ValueError(f"GradCAM: expected (B, K) scores, got {scores.shape}")
            if class_index is not None:
                idx = tf.convert_to_tensor(np.asarray(class_index, dtype=np.int64))
                target = tf.gather(scores, idx, axis=1, batch_dims=1)  # (B,)
            elif self.head is not None or self.logits:
                target = tf.reduce_max(scores, axis=1)  # predicted class
            else:
                target = tf.reduce_sum(scores**2, axis=1)  # class-agnostic
        grads = tape.gradient(target, conv)  # (B, h, w, C)
        if grads is None:
            raise ValueError(
                f"GradCAM: the target does not depend on {self.layer_name!r} "
                "through differentiable operations (a NumPy head?)"
            )
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # (B, 1, 1, C)
        cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1))  # (B, h, w)
        return cam.numpy()

"""Figures of notebook 02 (patch embedding): the photographs, an image cut into patches
(:func:`patch_grid`) and read as a sequence (:func:`patch_sequence`, :func:`shuffled_patches`),
and what a trained ViT learned: :func:`position_similarity` and :func:`embedding_filters` (the
paper's Fig. 7 centre and left). Every function returns a matplotlib figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def photo_gallery(photos: dict[str, np.ndarray], title: str = "The photographs used below"):
    """The photographs side by side, each named and sized in pixels."""
    n = len(photos)
    width = min(3.0 * n, 7.2)  # the PDF's text width: printed at full size
    fig, axes = plt.subplots(1, n, figsize=(width, width / n + 0.8))
    axes = np.atleast_1d(axes)
    for ax, (name, img) in zip(axes, photos.items()):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"{img.shape[1]} x {img.shape[0]} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def patch_grid(image: np.ndarray, patch_size: int, title: str = "", number: bool = True):
    """The image with its patch grid drawn, patches numbered in raster (sequence) order."""
    h, w = image.shape[:2]
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    ax.imshow(image)
    for x in range(0, w + 1, patch_size):
        ax.axvline(x - 0.5, color="white", lw=0.8)
    for y in range(0, h + 1, patch_size):
        ax.axhline(y - 0.5, color="white", lw=0.8)
    gw = w // patch_size
    if number and (h // patch_size) * gw <= 400:
        for i in range(h // patch_size):
            for j in range(gw):
                ax.text(
                    j * patch_size + patch_size / 2,
                    i * patch_size + patch_size / 2,
                    str(i * gw + j),
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="yellow",
                )
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.set_title(title or f"{h}x{w} image cut into {patch_size}x{patch_size} patches")
    fig.tight_layout()
    return fig


def patch_sequence(
    patches: np.ndarray, patch_size: int, n_show: int = 24, title: str = "", highlight=()
):
    """The first ``n_show`` flattened patches ``(N, P*P*3)`` shown as a sequence of tiles;
    the tiles whose indices are in ``highlight`` get a red frame."""
    n = min(n_show, len(patches))
    fig, axes = plt.subplots(1, n, figsize=(10, 1.45))
    for k, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(patches[k].reshape(patch_size, patch_size, 3))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(str(k), fontsize=10)
        if k in highlight:
            for side in ax.spines.values():
                side.set_visible(True)
                side.set_edgecolor("tab:red")
                side.set_linewidth(2.5)
    fig.suptitle(
        title or f"The image as a sequence: patches 0-{n - 1} of {len(patches)}", fontsize=11
    )
    fig.supxlabel("position in the sequence (token index)", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, wspace=0.15, top=0.78, bottom=0.34)
    return fig


def shuffled_patches(original: np.ndarray, shuffled: np.ndarray, title: str = ""):
    """An image next to the same patches in another order."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    for ax, img, t in [
        (axes[0], original, "original order"),
        (axes[1], shuffled, "patches shuffled"),
    ]:
        ax.imshow(img)
        ax.set_title(t)
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    fig.suptitle(title or "The same bag of patches, in two orders")
    fig.tight_layout()
    return fig


def _mosaic(tiles: np.ndarray, cols: int, pad: int = 1, fill=np.nan) -> np.ndarray:
    """``(n, h, w[, c])`` tiles -> one padded mosaic image."""
    n, h, w = tiles.shape[:3]
    rows = int(np.ceil(n / cols))
    shape = (rows * (h + pad) - pad, cols * (w + pad) - pad) + tiles.shape[3:]
    out = np.full(shape, fill, dtype=float)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tiles[k]
    return out


def position_similarity(sim: np.ndarray, title: str = ""):
    """Paper Fig. 7 centre: for each patch position (row, column of the mosaic), the cosine
    similarity of its position embedding with those of all positions. ``sim (g, g, g, g)``."""
    gh, gw = sim.shape[:2]
    tiles = sim.reshape(gh * gw, gh, gw)
    mosaic = _mosaic(tiles, gw, pad=1)
    fig, ax = plt.subplots(figsize=(6.2, 5.6))
    # The paper's colour scale runs from -1 to 1; when every similarity is positive (an
    # untrained model, or a strong shared component) a scale starting near the minimum keeps
    # the structure visible. The colour bar states the range either way.
    low = float(np.nanmin(sim))
    vmin = -1.0 if low < 0 else min(0.9, np.floor(10 * low) / 10)
    im = ax.imshow(mosaic, cmap="viridis", vmin=vmin, vmax=1)
    step = gh + 1
    ax.set_xticks(np.arange(gw) * step + gw / 2 - 0.5)
    ax.set_xticklabels(range(1, gw + 1), fontsize=7)
    ax.set_yticks(np.arange(gh) * step + gh / 2 - 0.5)
    ax.set_yticklabels(range(1, gh + 1), fontsize=7)
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    ax.set_title(title or "Position embedding similarity")
    fig.colorbar(im, ax=ax, fraction=0.04, label="cosine similarity")
    fig.tight_layout()
    return fig


def embedding_filters(components: np.ndarray, ratios=None, title: str = "", cols: int = 7):
    """Paper Fig. 7 left: principal components of the patch-embedding filters, as RGB tiles
    (each rescaled to [0, 1] independently). ``components (n, P, P, 3)``."""
    c = np.asarray(components, dtype=float)
    lo = c.min(axis=(1, 2, 3), keepdims=True)
    hi = c.max(axis=(1, 2, 3), keepdims=True)
    c = (c - lo) / np.clip(hi - lo, 1e-12, None)
    n = len(c)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.35 * rows + 0.6))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if k < n:
            ax.imshow(c[k], interpolation="nearest")
            lab = f"PC {k + 1}" + (f"\n{100 * ratios[k]:.1f}%" if ratios is not None else "")
            ax.set_xlabel(lab, fontsize=8.5)
        else:
            ax.axis("off")
    fig.suptitle(title or "Principal components of the patch-embedding filters")
    fig.tight_layout()
    return fig

"""From images to tokens: patches, patch embedding, and what a ViT learns about positions.

Follows Dosovitskiy et al. (2021), sec. 3.1, eq. (1): an image ``(H, W, C)`` is cut into
``N = HW / P^2`` patches of ``P x P`` pixels, each flattened to ``P^2 C`` values and projected
by one matrix ``E`` of shape ``(P^2 C, D)``. The flattening order here (row of the patch, then
column, then channel) is the one that makes ``E`` equal to the kernel ``(P, P, C, D)`` of a
stride-``P`` convolution reshaped, which is how the official checkpoints store it
(``embedding/kernel``).

Also here, for notebook 02 (paper Fig. 7 left and centre): :func:`position_similarity` (cosine
similarity between learned position embeddings) and :func:`embedding_filters_pca` (principal
components of the patch-embedding filters); and :func:`token_table` (how many tokens an image
becomes, and what the attention matrix costs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def grid_size(img_size: int, patch_size: int) -> int:
    """Patches per side; ``img_size`` must be a multiple of ``patch_size``."""
    if patch_size <= 0 or img_size <= 0:
        raise ValueError(f"img_size and patch_size must be positive, got {img_size}, {patch_size}")
    if img_size % patch_size:
        raise ValueError(f"img_size={img_size} is not a multiple of patch_size={patch_size}")
    return img_size // patch_size


def patchify(images: np.ndarray, patch_size: int) -> np.ndarray:
    """Cut images into flattened, non-overlapping patches in raster order.

    ``(B, H, W, C) -> (B, N, P*P*C)`` or ``(H, W, C) -> (N, P*P*C)``, with ``N = (H/P)(W/P)``;
    patch ``n`` is the one at row ``n // (W/P)``, column ``n % (W/P)``.
    """
    x = np.asarray(images)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must be (B, H, W, C) or (H, W, C), got shape {np.shape(images)}")
    b, h, w, c = x.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(
            f"image size {h}x{w} is not a multiple of patch_size={p}; crop or resize first"
        )
    gh, gw = h // p, w // p
    x = x.reshape(b, gh, p, gw, p, c)  # (B, gh, P, gw, P, C)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, gh, gw, P, P, C)
    x = x.reshape(b, gh * gw, p * p * c)  # (B, N, P*P*C)
    return x[0] if single else x


def unpatchify(patches: np.ndarray, grid, patch_size: int, channels: int = 3) -> np.ndarray:
    """Inverse of :func:`patchify`: ``(B, N, P*P*C) -> (B, H, W, C)`` (or unbatched).

    ``grid``: patches per side (int) or ``(gh, gw)``.
    """
    x = np.asarray(patches)
    single = x.ndim == 2
    if single:
        x = x[None]
    gh, gw = (grid, grid) if np.isscalar(grid) else grid
    b, n, d = x.shape
    p = patch_size
    if n != gh * gw or d != p * p * channels:
        raise ValueError(
            f"patches of shape {x.shape[1:]} do not fit a {gh}x{gw} grid of "
            f"{p}x{p}x{channels} patches"
        )
    x = x.reshape(b, gh, gw, p, p, channels)  # (B, gh, gw, P, P, C)
    x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, gh, P, gw, P, C)
    x = x.reshape(b, gh * p, gw * p, channels)  # (B, H, W, C)
    return x[0] if single else x


def token_table(
    resolutions: Sequence[int] = (224, 384, 512),
    patch_sizes: Sequence[int] = (8, 14, 16, 32),
    num_heads: int = 6,
    bytes_per_value: int = 4,
):
    """How many tokens an image becomes, and the size of its attention matrices.

    One row per (resolution, patch size) with ``tokens`` N (patches + class token),
    ``attention_entries`` N^2 per head, and ``attention_mib``: the memory of one block's
    attention probabilities for one image, ``num_heads * N^2 * bytes_per_value`` (ViT-S: 6
    heads; fp32: 4 bytes). Resolutions that are not a multiple of a patch size use the largest
    grid that fits (the border is cropped), as a resize-then-crop pipeline would.
    """
    import pandas as pd

    rows = []
    for r in resolutions:
        for p in patch_sizes:
            g = r // p
            n = g * g + 1
            rows.append(
                {
                    "resolution": r,
                    "patch_size": p,
                    "grid": f"{g}x{g}",
                    "tokens": n,
                    "attention_entries": n * n,
                    "attention_mib": num_heads * n * n * bytes_per_value / 2**20,
                }
            )
    return pd.DataFrame(rows)


def position_similarity(pos_embedding: np.ndarray, grid) -> np.ndarray:
    """Cosine similarity of each patch's position embedding with all others (Fig. 7 centre).

    pos_embedding: ``(1, N, D)`` or ``(N, D)``, class token first if ``N = gh*gw + 1``.
    Returns ``(gh, gw, gh, gw)``: ``sim[i, j]`` is the similarity map of the patch at row i,
    column j with every other position.
    """
    e = np.asarray(pos_embedding, dtype=np.float64)
    if e.ndim == 3:
        e = e[0]
    gh, gw = (grid, grid) if np.isscalar(grid) else grid
    extra = e.shape[0] - gh * gw
    if extra not in (0, 1):
        raise ValueError(f"position embedding with {e.shape[0]} rows does not fit a {gh}x{gw} grid")
    e = e[extra:]  # (P, D)
    e = e / np.clip(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12, None)
    sim = e @ e.T  # (P, P)
    return sim.reshape(gh, gw, gh, gw)


def embedding_filters_pca(kernel: np.ndarray, n_components: int = 28):
    """Principal components of the patch-embedding filters (Fig. 7 left).

    kernel: ``(P, P, C, D)``: ``D`` filters of ``P x P x C``. The filters are centred and
    decomposed by SVD; returns ``(components (n, P, P, C), explained_variance_ratio (n,))``.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 4:
        raise ValueError(f"kernel must be (P, P, C, D), got shape {k.shape}")
    p1, p2, c, d = k.shape
    filters = k.reshape(-1, d).T  # (D, P*P*C)
    filters = filters - filters.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(filters, full_matrices=False)
    n = min(n_components, vt.shape[0])
    ratio = (s**2) / np.sum(s**2)
    return vt[:n].reshape(n, p1, p2, c), ratio[:n]

"""Attention in NumPy: the mechanism itself, and the analyses of attention maps.

Mechanism (Vaswani et al., 2017, sec. 3.2):
- :func:`scaled_dot_product_attention` -- ``softmax(Q K^T / sqrt(d_k)) V``;
- :func:`multi_head_attention` -- the same in ``H`` heads of width ``C / H``, with the
  projection weights laid out as in ``keras.layers.MultiHeadAttention`` (and Flax).

Analyses of a ViT's attention (inputs: the ``attention`` list of ``(B, H, N, N)`` arrays that
``vitwatch.models.vit.VisionTransformer.forward`` returns, class token first):
- :func:`rollout` -- attention rollout (Abnar & Zuidema, 2020);
- :func:`cls_attention_maps` -- class-token attention of each head, as images;
- :func:`mean_attention_distance` -- the "attention distance" of Dosovitskiy et al. (2021),
  Fig. 7 right, per layer and head, in pixels;
- :func:`time_attention` -- wall-clock cost of attention against sequence length.

Everything here is plain NumPy so that it can be read next to the formulas; the models use
TensorFlow kernels, and notebook 01 checks that both agree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (the max is subtracted; -inf entries get weight 0)."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def scaled_dot_product_attention(q, k, v, mask=None):
    """``softmax(q k^T / sqrt(d_k)) v``; returns ``(output, weights)``.

    q: ``(..., Nq, d_k)``, k: ``(..., Nk, d_k)``, v: ``(..., Nk, d_v)``; leading axes (batch,
    heads) broadcast. ``mask``: boolean, broadcastable to ``(..., Nq, Nk)``, True where a query
    may attend to a key (False entries get weight exactly 0). Output ``(..., Nq, d_v)``,
    weights ``(..., Nq, Nk)`` with rows summing to 1.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must share their last dimension d_k, got {q.shape} and {k.shape}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must hold the same number of keys, got {k.shape} and {v.shape}")
    d_k = q.shape[-1]
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(d_k)  # (..., Nq, Nk)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any(axis=-1).all():
            raise ValueError("mask: every query must be allowed to attend to at least one key")
        scores = np.where(mask, scores, -np.inf)
    weights = softmax(scores, axis=-1)  # (..., Nq, Nk)
    return weights @ v, weights  # (..., Nq, d_v)


def split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """``(B, N, H * d) -> (B, H, N, d)``."""
    b, n, c = x.shape
    if c % num_heads:
        raise ValueError(f"width {c} is not divisible by num_heads={num_heads}")
    return x.reshape(b, n, num_heads, c // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """``(B, H, N, d) -> (B, N, H * d)``."""
    b, h, n, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, n, h * d)


def _as_matrix(w, name: str) -> np.ndarray:
    """Projection kernels as 2-D matrices: Keras/Flax store ``(C, H, d)`` or ``(H, d, C)``."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 2:
        return w
    if w.ndim == 3:
        if name == "wo":
            return w.reshape(-1, w.shape[-1])  # (H * d, C)
        return w.reshape(w.shape[0], -1)  # (C, H * d)
    raise ValueError(f"{name}: expected a 2-D or 3-D kernel, got shape {w.shape}")


def multi_head_attention(
    x, wq, wk, wv, wo, num_heads, bq=None, bk=None, bv=None, bo=None, context=None, mask=None
):
    """Multi-head attention ``MHA(x) = concat(head_1..head_H) W_o``; returns ``(out, weights)``.

    x: ``(B, N, C)`` queries; ``context``: ``(B, M, C)`` keys/values (default: ``x``, i.e.
    self-attention). Kernels ``wq, wk, wv``: ``(C, H*d)`` or Keras' ``(C, H, d)``; ``wo``:
    ``(H*d, C)`` or ``(H, d, C)``; biases ``(H*d,)``/``(H, d)`` and ``(C,)``, optional.
    Output ``(B, N, C)``; weights ``(B, H, N, M)``.
    """
    x = np.asarray(x, dtype=np.float64)
    ctx = x if context is None else np.asarray(context, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be (B, N, C), got shape {x.shape}")

    def project(inp, w, b, name):
        y = inp @ _as_matrix(w, name)  # (B, N, H*d)
        return y if b is None else y + np.asarray(b).reshape(-1)

    q = split_heads(project(x, wq, bq, "wq"), num_heads)  # (B, H, N, d)
    k = split_heads(project(ctx, wk, bk, "wk"), num_heads)  # (B, H, M, d)
    v = split_heads(project(ctx, wv, bv, "wv"), num_heads)  # (B, H, M, d)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim == 3:  # (B, N, M) -> (B, 1, N, M)
            mask = mask[:, None]
    heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, N, d)
    out = merge_heads(heads) @ _as_matrix(wo, "wo")  # (B, N, C)
    if bo is not None:
        out = out + np.asarray(bo)
    return out, weights


# --------------------------------------------------------------------------------------------
# Analyses of attention maps
# --------------------------------------------------------------------------------------------


def _stack_layers(attentions) -> np.ndarray:
    """A list of ``(B, H, N, N)`` (one per block) -> ``(L, B, H, N, N)`` float64."""
    if isinstance(attentions, np.ndarray) and attentions.ndim == 4:
        attentions = [attentions]
    arrs = [np.asarray(a, dtype=np.float64) for a in attentions]
    if not arrs:
        raise ValueError("attentions: empty list (expected one (B, H, N, N) array per block)")
    for i, a in enumerate(arrs):
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"attentions[{i}]: expected (B, H, N, N), got shape {a.shape}")
        if a.shape != arrs[0].shape:
            raise ValueError(
                f"attentions[{i}]: shape {a.shape} differs from block 0's {arrs[0].shape}"
            )
    return np.stack(arrs)


def rollout(attentions, head_fusion: str = "mean", add_residual: bool = True) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each input.

    attentions: list of ``(B, H, N, N)`` arrays, first block first. Returns ``(B, N, N)``; row
    ``i`` is the share of input token ``j`` in output token ``i`` (rows sum to 1). The class
    token's row ``[:, 0, 1:]`` is the usual saliency map of a ViT.

    head_fusion: "mean" (the paper's), "max" or "min" over the heads of each block.
    """
    att = _stack_layers(attentions)  # (L, B, H, N, N)
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}
    if head_fusion not in fuse:
        raise ValueError(f"head_fusion must be one of {sorted(fuse)}, got {head_fusion!r}")
    a = fuse[head_fusion](att, axis=2)  # (L, B, N, N)
    n = a.shape[-1]
    if add_residual:
        # Each block computes x + Attention(x): the residual connection carries the token's own
        # value through unchanged. Abnar & Zuidema model this as attending to oneself, i.e.
        # adding the identity to the attention matrix, A <- 0.5 * A + 0.5 * I.
        a = 0.5 * a + 0.5 * np.eye(n)
    # Rows renormalised so that each stays a distribution over inputs: after max/min fusion
    # (and after adding I) rows no longer sum to 1, and the product of row-stochastic matrices
    # is row-stochastic only if every factor is.
    a = a / a.sum(axis=-1, keepdims=True)
    joint = a[0]  # (B, N, N)
    for layer in a[1:]:
        # Information flows input -> block 1 -> block 2 ...: compose the later block on the left.
        joint = layer @ joint  # (B, N, N)
    return joint


def _grid_hw(grid) -> tuple[int, int]:
    if isinstance(grid, (int, np.integer)):
        return int(grid), int(grid)
    gh, gw = grid
    return int(gh), int(gw)


def cls_attention_maps(attn, grid) -> np.ndarray:
    """Class-token attention of each head over the patch grid.

    attn: one block's ``(B, H, N, N)`` or ``(H, N, N)`` array, or the list of all blocks (the
    last block is used). ``grid``: patches per side (int) or ``(gh, gw)``. Returns
    ``(B, H, gh, gw)`` for batched input, ``(H, gh, gw)`` otherwise. Extra prefix tokens (the
    class token, and any others) are the first ``N - gh * gw`` tokens.
    """
    if isinstance(attn, (list, tuple)):
        attn = attn[-1]
    a = np.asarray(attn, dtype=np.float64)
    gh, gw = _grid_hw(grid)
    if a.ndim not in (3, 4):
        raise ValueError(f"attn: expected (B, H, N, N) or (H, N, N), got shape {a.shape}")
    n = a.shape[-1]
    prefix = n - gh * gw
    if prefix < 1:
        raise ValueError(
            f"attn has {n} tokens: a {gh}x{gw} grid plus a class token needs {gh * gw + 1}"
        )
    maps = a[..., 0, prefix:]  # (..., H, gh*gw)
    return maps.reshape(*maps.shape[:-1], gh, gw)  # (..., H, gh, gw)


def patch_distances(grid, patch_size: int) -> np.ndarray:
    """Euclidean distance in pixels between patch centres, ``(gh*gw, gh*gw)``."""
    gh, gw = _grid_hw(grid)
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    pos = np.stack([rows.ravel(), cols.ravel()], axis=1) * float(patch_size)  # (P, 2)
    return np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)  # (P, P)


def mean_attention_distance(attn, grid, patch_size: int) -> np.ndarray:
    """Mean attention distance in pixels (Dosovitskiy et al., 2021, Fig. 7 right).

    For each patch query, the distance to every patch key weighted by the attention it gets,
    averaged over queries and images: the analogue of a receptive-field size. The class token
    is left out (as query and as key) and each query's weights over the patches are
    renormalised to sum to 1, so that the measure is the distance *of the attention spent on
    patches*: identity attention gives 0, uniform attention the mean pairwise distance.
    This departs from the paper's Fig. 7, which does not drop the class token: for a head that
    gives much of its attention to the class token, the two values differ, so ours is compared
    with the paper's in shape (local and global heads per depth), not number for number.

    attn: list of ``(B, H, N, N)`` (one per block) -> ``(L, H)``; one ``(B, H, N, N)`` array
    -> ``(H,)``.
    """
    single = not isinstance(attn, (list, tuple))
    att = _stack_layers(attn)  # (L, B, H, N, N)
    gh, gw = _grid_hw(grid)
    n = att.shape[-1]
    prefix = n - gh * gw
    if prefix < 0:
        raise ValueError(f"attention has {n} tokens, fewer than the {gh}x{gw} grid's {gh * gw}")
    a = att[..., prefix:, prefix:]  # (L, B, H, P, P)
    a = a / np.clip(a.sum(axis=-1, keepdims=True), 1e-12, None)
    dist = patch_distances((gh, gw), patch_size)  # (P, P)
    per_query = (a * dist).sum(axis=-1)  # (L, B, H, P)
    out = per_query.mean(axis=(1, 3))  # (L, H)
    return out[0] if single else out


def time_attention(seq_lens: Sequence[int], dim: int = 64, repeats: int = 3, seed: int = 0):
    """Best-of-``repeats`` wall time (s) of one head of attention for each sequence length.

    Times :func:`scaled_dot_product_attention` (NumPy, float64) on random ``(n, dim)`` inputs,
    on one thread (``threadpoolctl``): multi-threaded BLAS switches on at some sizes and, on a
    shared machine, makes the curve jump for reasons unrelated to attention.

    Returns ``(seq_lens, seconds, slope)``, ``slope`` being the least-squares slope of
    log(time) against log(length) over the upper half of the lengths (2 = quadratic).
    """
    rng = np.random.default_rng(seed)
    lens = np.asarray(sorted(int(n) for n in seq_lens))
    if len(lens) < 2:
        raise ValueError("seq_lens: give at least two sequence lengths")
    from threadpoolctl import threadpool_limits

    secs = []
    with threadpool_limits(limits=1):
        for n in lens:
            q, k, v = (rng.standard_normal((n, dim)) for _ in range(3))
            best = np.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                scaled_dot_product_attention(q, k, v)
                best = min(best, time.perf_counter() - t0)
            secs.append(best)
    secs = np.asarray(secs)
    upper = slice(max(0, len(lens) // 2 - 1), None)  # the larger lengths
    slope = float(np.polyfit(np.log(lens[upper]), np.log(secs[upper]), 1)[0])
    return lens, secs, slope

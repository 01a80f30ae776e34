"""Figures of notebook 01 (attention): attention matrices (:func:`attention_heatmap`), where
the toy Transformer's pronoun looks (:func:`pronoun_attention`) and how it trained
(:func:`training_curves`), and the cost of attention: time against sequence length
(:func:`attention_scaling`) and tokens per image (:func:`token_counts`). Every function returns
a matplotlib figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle


def attention_heatmap(
    weights: np.ndarray,
    x_labels,
    y_labels,
    title: str,
    ax=None,
    annotate: bool = True,
    cmap: str = "Blues",
):
    """A ``(Nq, Nk)`` attention matrix: rows are queries, columns the keys they attend to."""
    w = np.asarray(weights)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.55 * w.shape[1] + 2.5, 0.45 * w.shape[0] + 1.8))
    im = ax.imshow(w, cmap=cmap, vmin=0, vmax=max(1e-9, float(w.max())), aspect="auto")
    ax.set_xticks(range(w.shape[1]))
    ax.set_xticklabels(x_labels, rotation=45, ha="right")
    ax.set_yticks(range(w.shape[0]))
    ax.set_yticklabels(y_labels)
    ax.set_xlabel("key (attended word)")
    ax.set_ylabel("query")
    ax.set_title(title)
    if annotate and w.size <= 400:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                if w[i, j] >= 0.05:
                    ax.text(
                        j,
                        i,
                        f"{w[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=10,
                        color="white" if w[i, j] > 0.6 * w.max() else "black",
                    )
    (fig or ax.figure).colorbar(im, ax=ax, fraction=0.03, label="attention weight")
    return fig or ax.figure


def pronoun_attention(
    att: np.ndarray,
    words: list[str],
    block_names: list[str],
    pronoun: str = "il",
    highlight: str | None = None,
    title: str = "",
):
    """Attention of the pronoun to each word, one row per (block, head): ``att (L, H, n)``."""
    a = np.asarray(att)
    L, H, n = a.shape
    rows = a.reshape(L * H, n)
    labels = [f"{block_names[l]}, head {h + 1}" for l in range(L) for h in range(H)]
    fig, ax = plt.subplots(figsize=(0.7 * n + 3.2, 0.5 * L * H + 1.9))
    attention_heatmap(rows, words, labels, title or f"Where '{pronoun}' looks", ax=ax)
    ax.set_ylabel(f"query '{pronoun}': block, head")
    for l in range(1, L):
        ax.axhline(l * H - 0.5, color="black", lw=1)
    if highlight in words:
        j = words.index(highlight)
        ax.add_patch(Rectangle((j - 0.5, -0.5), 1, L * H, fill=False, edgecolor="#d62728", lw=2))
    fig.tight_layout()
    return fig


def training_curves(history: dict, title: str = "Training the toy Transformer"):
    """Loss and accuracy per epoch (Keras ``History.history``), train and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key, label in [
        (axes[0], "loss", "cross-entropy loss"),
        (axes[1], "accuracy", "accuracy of the referent"),
    ]:
        ax.plot(epochs, history[key], marker="o", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="s", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title(title)
    axes[1].set_title("Accuracy at the position of 'il'")
    fig.tight_layout()
    return fig


def attention_scaling(lengths, seconds, slope: float, dim: int = 64):
    """Log-log plot of attention time against sequence length, with the fitted power law."""
    n = np.asarray(lengths, dtype=float)
    t = np.asarray(seconds, dtype=float)
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    ax.loglog(n, t * 1e3, "o-", label="measured (best of repeats)")
    upper = n >= n[max(0, len(n) // 2 - 1)]
    c = np.exp(np.mean(np.log(t[upper]) - slope * np.log(n[upper])))
    ax.loglog(n, c * n**slope * 1e3, "--", color="gray", label=f"fit: time ∝ N^{slope:.2f}")
    ref = t[upper][0] * (n / n[upper][0]) ** 2 * 1e3
    ax.loglog(n, ref, ":", color="#d62728", label="quadratic reference (N²)")
    ax.set_xlabel("sequence length N (tokens)")
    ax.set_ylabel("time of one attention head (ms)")
    ax.set_title(f"The quadratic cost of attention (one head, d_k = {dim}, NumPy)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def token_counts(table):
    """Tokens per image (left) and attention memory (right) by resolution and patch size."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for p, rows in table.groupby("patch_size"):
        axes[0].plot(rows["resolution"], rows["tokens"], marker="o", label=f"patch {p}")
        axes[1].plot(rows["resolution"], rows["attention_mib"], marker="o", label=f"patch {p}")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("image resolution (pixels per side)")
        ax.set_xticks(sorted(table["resolution"].unique()))
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    axes[0].set_ylabel("tokens N (patches + class token)")
    axes[0].set_title("How many tokens an image becomes")
    axes[1].set_ylabel("MiB per image and block")
    axes[1].set_title("Attention probabilities in memory (6 heads, fp32)")
    fig.tight_layout()
    return fig

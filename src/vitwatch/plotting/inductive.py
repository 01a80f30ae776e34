"""Figures of notebook 05 (inductive bias): sample images, accuracy against training-set size.

The learning-curve figure follows the layout of Figures 3 and 4 of [Dosovitskiy et al., 2021]:
data on a logarithmic x axis, accuracy on y, one line per model; here the bands are 95 %
t-intervals over seeds (from ``vitwatch.inductive.aggregate``), and the points are the seeds.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, NullLocator

from vitwatch.models.small import LABELS

# The CNN in the report's ResNet red, the plain ViT in its ViT blue, variants in other hues.
COLORS = {
    "resnet": "#d62728",
    "vit": "#1f77b4",
    "vit_spt_lsa": "#2ca02c",
    "vit_small_patch": "#9467bd",
}
MARKERS = {"resnet": "s", "vit": "o", "vit_spt_lsa": "^", "vit_small_patch": "D"}


def sample_images(
    x: np.ndarray,
    y: np.ndarray,
    class_names,
    per_class: int = 1,
    title: str = "One training image per class",
):
    """A row of images (uint8 (N, H, W, C)), the first ``per_class`` of each class."""
    classes = list(range(len(class_names)))
    fig, axes = plt.subplots(
        per_class, len(classes), squeeze=False, figsize=(1.0 * len(classes), 1.15 * per_class + 0.4)
    )
    for col, c in enumerate(classes):
        idx = np.flatnonzero(y == c)[:per_class]
        for row in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if row < len(idx):
                img = x[idx[row]]
                ax.imshow(
                    img[..., 0] if img.shape[-1] == 1 else img,
                    cmap="gray_r" if img.shape[-1] == 1 else None,
                    interpolation="nearest",
                )
            if row == 0:
                ax.set_title(str(class_names[c]), fontsize=8)
    fig.suptitle(title)
    return fig


def learning_curves(
    summary: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    title: str = "",
    dataset: str = "",
    chance: float | None = None,
):
    """Test accuracy against training-set size: mean (line), 95 % CI (band), seeds (dots)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for arch, g in summary.groupby("arch", sort=False):
        g = g.sort_values("n_train")
        color = COLORS.get(arch, "#7f7f7f")
        ax.plot(
            g["n_train"],
            100 * g["mean"],
            marker=MARKERS.get(arch, "o"),
            color=color,
            label=LABELS.get(arch, arch),
        )
        if g["ci_low"].notna().all():
            ax.fill_between(
                g["n_train"],
                100 * g["ci_low"],
                100 * g["ci_high"],
                color=color,
                alpha=0.15,
                linewidth=0,
            )
        if runs is not None:
            r = runs[runs["arch"] == arch]
            ax.scatter(
                r["n_train"], 100 * r["test_accuracy"], s=9, color=color, alpha=0.5, linewidths=0
            )
    if chance is not None:
        ax.axhline(100 * chance, color="#999999", linestyle=":", linewidth=1)
        ax.annotate(
            "chance",
            (summary["n_train"].min(), 100 * chance),
            fontsize=8,
            color="#777777",
            xytext=(0, 3),
            textcoords="offset points",
        )
    sizes = sorted(summary["n_train"].unique())
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{n:,}" for n in sizes])
    ax.set_xlabel(f"training images{f' ({dataset})' if dataset else ''}, log scale")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "Trained from scratch: accuracy against training-set size")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def gap_to_cnn(summary: pd.DataFrame, cnn: str = "resnet", title: str = ""):
    """Accuracy of each ViT minus the CNN's (points), per training-set size."""
    piv = summary.pivot(index="n_train", columns="arch", values="mean").sort_index()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for arch in [a for a in piv.columns if a != cnn]:
        ax.plot(
            piv.index,
            100 * (piv[arch] - piv[cnn]),
            marker=MARKERS.get(arch, "o"),
            color=COLORS.get(arch, "#7f7f7f"),
            label=LABELS.get(arch, arch),
        )
    ax.axhline(0, color="#d62728", linewidth=1, label=f"{LABELS.get(cnn, cnn)} (reference)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(list(piv.index)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{n:,}" for n in piv.index])
    ax.set_xlabel("training images, log scale")
    ax.set_ylabel("accuracy minus the CNN's (points)")
    ax.set_title(title or "Gap to the CNN as the training set grows")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig

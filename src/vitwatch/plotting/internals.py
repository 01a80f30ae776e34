"""Figures of notebook 04 inside the models: the ViT's attention (per head, rollout, mean
distance), where saliency maps fall relative to the dog's boxes, and CKA between layers.

Each function takes arrays built by :mod:`vitwatch.analysis` and
:mod:`vitwatch.theory.attention` (the CKA figures a
:class:`vitwatch.analysis.representations.CKA` section) and returns a matplotlib figure with a
title and labelled axes. Attention figures follow the layout of keras-io's ``probing_vits``
and of Dosovitskiy et al. (2021), Fig. 7.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from vitwatch import catalogue

LABELS = catalogue.LABELS
MAP_COLORS = {
    "ViT rollout": "#1f77b4",
    "ResNet-50 Grad-CAM": "#d62728",
    "ResNet-50 Grad-CAM, true class": "#f4a3a3",
    "BiT-M R50x1 Grad-CAM": "#ff7f0e",
    "BiT-M R50x1 Grad-CAM, true class": "#ffc78a",
    "centre prior": "#7f7f7f",
    "uniform": "#bbbbbb",
}


def _label(name: str) -> str:
    return LABELS.get(name, name)


# --- inside the ViT --------------------------------------------------------------------------
def _overlay(ax, image, saliency, alpha=0.55):
    from skimage.transform import resize

    s = np.asarray(saliency, dtype=float)
    s = (s - s.min()) / (np.ptp(s) + 1e-12)
    ax.imshow(image)
    ax.imshow(resize(s, image.shape[:2], order=1), cmap="inferno", alpha=alpha)
    ax.axis("off")


def head_attention(image, maps, title: str | None = None):
    """The image, then the class token's attention of each head as an image (H, g, g)."""
    h = len(maps)
    title = title or f"Class-token attention per head, last block ({h} heads)"
    cols = min(h + 1, 4)  # <= 7.2 in wide: printed at full size
    rows = int(np.ceil((h + 1) / cols))
    fig, grid = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.0 * rows + 0.3), squeeze=False)
    for ax in grid.flat[h + 1 :]:
        ax.axis("off")
    axes = grid.flat
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=8)
    axes[0].axis("off")
    for i, (ax, m) in enumerate(zip(axes[1:], maps)):
        ax.imshow(m, cmap="inferno")
        ax.set_title(f"head {i + 1}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].set_ylabel("patch row")
    axes[1].set_xlabel("patch column")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def rollout_gallery(images, maps, titles, run: str, ncols: int = 2):
    """Pairs (image, rollout overlay) of ``run``'s right, then wrong, predictions, captioned
    with true / predicted breeds."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, 2 * ncols, figsize=(1.6 * 2 * ncols, 1.9 * nrows + 0.5), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, ncols)
        axes[r, 2 * c].imshow(images[i])
        axes[r, 2 * c].set_title(titles[i], fontsize=7.5)
        _overlay(axes[r, 2 * c + 1], images[i], maps[i])
        axes[r, 2 * c + 1].set_title("rollout", fontsize=7.5)
    fig.suptitle(f"Attention rollout, right then wrong predictions of {run}")
    fig.tight_layout()
    return fig


def attention_distance(dist, n_images: int):
    """Dosovitskiy et al. (2021), Fig. 7 right: one dot per head, layers on the x axis; the
    distances (L, H) averaged over ``n_images`` test images."""
    title = f"Mean attention distance, {n_images} test images"
    dist = np.asarray(dist)  # (L, H)
    layers, heads = dist.shape
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for h in range(heads):
        ax.scatter(np.arange(1, layers + 1), dist[:, h], s=14, alpha=0.8, label=f"head {h + 1}")
    ax.plot(np.arange(1, layers + 1), dist.mean(1), "k-", lw=1, label="mean over heads")
    ax.set(xlabel="network depth (block)", ylabel="mean attention distance (pixels)", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


# --- localisation ---------------------------------------------------------------------------
def localisation(df, title: str = "Share of the map's mass inside the dog's boxes"):
    """Distribution of mass-inside per map family (box plot + points); pointing-game hits."""
    names = [m for m in MAP_COLORS if m in set(df["map"])] + sorted(
        set(df["map"]) - set(MAP_COLORS)
    )
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    data = [df.loc[df["map"] == m, "mass_inside"].to_numpy() for m in names]
    bp = ax.boxplot(data, vert=True, patch_artist=True, widths=0.55, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=15, ha="right")
    for patch, m in zip(bp["boxes"], names):
        patch.set(facecolor=MAP_COLORS.get(m, "#cccccc"), alpha=0.5)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, 1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, d.size), d, s=5, color="k", alpha=0.4)
    ax.set(ylabel="share of map mass inside the boxes", xlabel="map", title="Mass inside")
    hits = df.dropna(subset=["hit"]).groupby("map")["hit"].mean()
    hn = [m for m in names if m in hits.index]
    ax2.bar(hn, 100 * hits[hn].to_numpy(), color=[MAP_COLORS.get(m, "#ccc") for m in hn])
    ax2.set(
        ylabel="peak within 15 px of a box (%)", xlabel="map", title="Pointing game", ylim=(0, 100)
    )
    ax2.set_xticks(range(len(hn)), hn, rotation=25, ha="right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def localisation_examples(
    images, boxes, maps: Mapping[str, Sequence[np.ndarray]], title: str = "Where the models look"
):
    """Rows of images: the photo with its boxes, then one overlay per map family."""
    import textwrap

    n = len(images)
    cols = 1 + len(maps)
    size = min(1.9, 7.2 / cols)  # the PDF's text width: titles print at >= 7 pt
    fig, axes = plt.subplots(n, cols, figsize=(size * cols, size * n + 0.6), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        for x0, y0, x1, y1 in np.asarray(boxes[i]).reshape(-1, 4):
            axes[i, 0].add_patch(
                plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1.2)
            )
        axes[i, 0].axis("off")
        for j, (name, m) in enumerate(maps.items(), 1):
            _overlay(axes[i, j], images[i], m[i])
            for x0, y0, x1, y1 in np.asarray(boxes[i]).reshape(-1, 4):
                axes[i, j].add_patch(
                    plt.Rectangle(
                        (x0, y0), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=0.8, ls="--"
                    )
                )
            if i == 0:
                axes[i, j].set_title(textwrap.fill(name, max(9, int(12 * size))), fontsize=8)
    axes[0, 0].set_title(textwrap.fill("image and box", max(9, int(12 * size))), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- representations ------------------------------------------------------------------------
def cka(
    matrix,
    row_labels,
    col_labels,
    title: str = "Linear CKA, ViT blocks vs ResNet stages",
    xlabel: str = "ResNet-50 stage",
    ylabel: str = "ViT block",
):
    """Heatmap of a CKA matrix (rows: first network's layers, bottom = first layer)."""
    m = np.asarray(matrix)
    cell = min(0.55, 4.5 / m.shape[1])  # <= ~7 in wide in all: printed near full size
    fig, ax = plt.subplots(figsize=(1.0 + cell * m.shape[1] + 1.5, 0.3 * m.shape[0] + 1.8))
    im = ax.imshow(m, origin="lower", vmin=0, vmax=1, cmap="magma", aspect="auto")
    ax.set_xticks(range(m.shape[1]), col_labels, rotation=30, fontsize=8)
    ax.set_yticks(range(m.shape[0]), row_labels, fontsize=8)
    for (i, j), v in np.ndenumerate(m):
        if m.size <= 80:
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7.5,
                color="w" if v < 0.6 else "k",
            )
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.colorbar(im, ax=ax, label="linear CKA")
    fig.tight_layout()
    return fig


def cka_cross(section, cnn: str):
    """The ViT's blocks (rows) against the stages of ``cnn`` (columns) of a
    :class:`vitwatch.analysis.representations.CKA` section [Raghu et al., 2021, Fig. 2]."""
    depth, stages = section.depth, section.layers[cnn]
    unit = stages[0].split()[0]  # "stage" (ResNet-50) or "block" (BiT)
    return cka(
        section.matrices[cnn][:depth, depth:],
        section.vit_layers,
        stages,
        title=f"Linear CKA, ViT blocks vs {_label(cnn)} {unit}s ({section.n_images} images)",
        xlabel=f"{_label(cnn)} {unit}",
    )


def cka_vit(section):
    """CKA between the ViT's blocks [Raghu et al., 2021, Fig. 1] (from the ResNet-50 run)."""
    names = section.vit_layers
    sim = section.matrices[section.cnn][: section.depth, : section.depth]
    return cka(sim, names, names, xlabel="ViT block", title="Linear CKA between ViT blocks")

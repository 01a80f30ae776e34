"""Figures of notebook 00 (the introduction): the Vision Transformer in one diagram
(:func:`vit_architecture`, after Dosovitskiy et al., 2021, Fig. 1), and the paper's published
results (:func:`published_compute`, :func:`published_data_scaling`, from the tables of
:mod:`vitwatch.theory.published`). Every function returns a matplotlib figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from vitwatch.plotting import color_for

FAMILY_COLORS = {"vit": color_for("vit"), "cnn": color_for("resnet"), "hybrid": "#9467bd"}


def _box(ax, x, y, w, h, text, color, fontsize=9, text_color="black"):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=color,
            edgecolor="#333333",
            linewidth=1,
        )
    )
    ax.text(
        x + w / 2,
        y + h / 2,
        text,
        ha="center",
        va="center",
        fontsize=fontsize,
        color=text_color,
        wrap=True,
    )


def _arrow(ax, x0, y0, x1, y1):
    ax.add_patch(
        FancyArrowPatch(
            (x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=12, color="#333333", linewidth=1.2
        )
    )


def vit_architecture(image: np.ndarray | None = None, grid: int = 3):
    """The Vision Transformer in one diagram (after Dosovitskiy et al., 2021, Fig. 1).

    ``image``: an optional photo (uint8, square) drawn cut into ``grid x grid`` patches.
    """
    fig, ax = plt.subplots(figsize=(10, 4.8))
    ax.set_xlim(0, 20)
    ax.set_ylim(1.0, 10.4)
    ax.axis("off")
    # image cut into patches (left)
    if image is not None:
        ax.imshow(image, extent=(0.3, 3.3, 6.2, 9.2), zorder=1)
    else:
        ax.add_patch(Rectangle((0.3, 6.2), 3, 3, facecolor="#dddddd"))
    for i in range(1, grid):
        ax.plot([0.3 + 3 * i / grid] * 2, [6.2, 9.2], color="white", lw=2, zorder=2)
        ax.plot([0.3, 3.3], [6.2 + 3 * i / grid] * 2, color="white", lw=2, zorder=2)
    ax.text(1.8, 9.55, "image cut into P x P patches", ha="center", fontsize=10.5)
    # flattened patches -> linear projection
    n = grid * grid
    xs = np.linspace(4.6, 12.6, n + 1)
    _box(
        ax, 4.4, 4.3, 9.0, 0.9, "linear projection of flattened patches  (E: P²·C -> D)", "#fde7c8"
    )
    _arrow(ax, 3.3, 7.7, 4.4, 5.2)
    # tokens with position embeddings
    for k, x in enumerate(xs):
        label = "*" if k == 0 else str(k)
        color = "#f4b6c2" if k == 0 else "#c9e3f5"
        _box(ax, x - 0.28, 2.7, 0.56, 0.7, label, color, fontsize=9.5)
        ax.add_patch(
            Rectangle(
                (x - 0.28, 2.25),
                0.56,
                0.35,
                facecolor="#b9e4b9",
                edgecolor="#333333",
                linewidth=0.8,
            )
        )
        ax.text(x, 2.42, str(k), ha="center", va="center", fontsize=8.5)
        if k > 0:
            _arrow(ax, x, 4.3, x, 3.45)
    ax.text(xs[0], 1.95, "class\ntoken", ha="center", va="top", fontsize=9.5)
    ax.text(
        xs[1] - 0.3,
        1.95,
        "patch tokens + position embeddings (green)",
        ha="left",
        va="top",
        fontsize=9.5,
    )
    # encoder
    _box(ax, 14.3, 1.9, 3.0, 6.6, "", "#eeeeee")
    ax.text(15.8, 8.15, "Transformer encoder", ha="center", fontsize=10.5, weight="bold")
    ax.text(15.8, 7.75, "x L blocks", ha="center", fontsize=9.5)
    for y, t, c in [
        (6.6, "LayerNorm", "#fff7cc"),
        (5.6, "multi-head\nself-attention", "#c9e3f5"),
        (4.4, "LayerNorm", "#fff7cc"),
        (3.4, "MLP (GELU)", "#d9f0d3"),
    ]:
        _box(ax, 14.6, y, 2.4, 0.8 if "\n" not in t else 0.95, t, c, fontsize=9.5)
    ax.text(17.45, 5.1, "+", fontsize=13.5, ha="center")
    ax.text(17.45, 2.9, "+", fontsize=13.5, ha="center")
    ax.text(17.8, 4.0, "residual\nconnections", fontsize=8.5, ha="left", va="center")
    _arrow(ax, 13.3, 3.05, 14.3, 3.05)
    # head
    _box(ax, 14.3, 9.0, 3.0, 0.9, "MLP head -> class", "#f4b6c2")
    _arrow(ax, 15.8, 8.5, 15.8, 9.0)
    ax.text(13.9, 9.45, "class token\noutput", ha="right", va="center", fontsize=9.5)
    ax.set_title(
        "The Vision Transformer (ViT): an image as a sequence of 16x16 'words' "
        "(after Dosovitskiy et al., 2021, Fig. 1)"
    )
    return fig


def published_compute(state_of_the_art: list[dict], compute_scaling: list[dict]):
    """ImageNet top-1 against pre-training compute: paper Table 2 (left), Table 6 (right)."""
    # one panel above the other: at the PDF's text width, printed at full size
    fig, axes = plt.subplots(2, 1, figsize=(7.2, 7.8))
    ax = axes[0]
    for r in state_of_the_art:
        c = FAMILY_COLORS[r["family"]]
        ax.scatter(r["tpu_core_days"], r["imagenet"], color=c, s=50, zorder=3)
        ax.annotate(
            f"{r['model']}\n({r['pretraining']})",
            (r["tpu_core_days"], r["imagenet"]),
            textcoords="offset points",
            xytext=(6, -10 if "21k" in r["pretraining"] else 4),
            fontsize=7.5,
        )
    ax.set_xscale("log")
    ax.set_xlim(150, 40000)
    accs = [r["imagenet"] for r in state_of_the_art]
    ax.set_ylim(min(accs) - 0.5, max(accs) + 0.6)
    ax.set_xlabel("pre-training cost (TPUv3-core-days, log scale)")
    ax.set_ylabel("ImageNet top-1 accuracy (%)")
    ax.set_title("State of the art vs compute (paper Table 2)")
    ax.grid(alpha=0.3)
    ax = axes[1]
    for r in compute_scaling:
        c = FAMILY_COLORS[r["family"]]
        ax.scatter(r["exaflops"], r["imagenet"], color=c, s=50, zorder=3)
        ax.annotate(
            r["model"],
            (r["exaflops"], r["imagenet"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlim(100, 20000)
    accs = [r["imagenet"] for r in compute_scaling]
    ax.set_ylim(min(accs) - 0.6, max(accs) + 0.8)
    ax.set_xlabel("pre-training compute on JFT-300M (exaFLOPs, log scale)")
    ax.set_ylabel("ImageNet top-1 accuracy (%)")
    ax.set_title("Controlled scaling study (paper Table 6, rows checked)")
    ax.grid(alpha=0.3)
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=c, label=k)
        for k, c in [
            ("Vision Transformer", FAMILY_COLORS["vit"]),
            ("ResNet (BiT) / EfficientNet", FAMILY_COLORS["cnn"]),
            ("hybrid", FAMILY_COLORS["hybrid"]),
        ]
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.04))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def published_data_scaling(
    data_scaling: list[dict], images: dict[str, float], reference: dict | None = None
):
    """ImageNet top-1 of ViTs against the size of their pre-training set (paper Table 5).

    ``reference``: an optional horizontal line (e.g. BiT-L from Table 2) with ``label``/``value``.
    """
    fig, ax = plt.subplots(figsize=(6.8, 4.3))
    models = sorted({r["model"] for r in data_scaling})
    markers = dict(zip(models, "osD^v"))
    shades = dict(zip(models, plt.cm.Blues(np.linspace(0.45, 0.95, len(models)))))
    for m in models:
        rows = [r for r in data_scaling if r["model"] == m]
        xs = [images[r["pretraining"]] for r in rows]
        ys = [r["imagenet"] for r in rows]
        gap = (
            len(rows) < len(images)
            and len(rows) > 1
            and [r["pretraining"] for r in rows] != list(images)[: len(rows)]
        )
        ax.plot(
            xs,
            ys,
            marker=markers[m],
            color=shades[m],
            label=m,
            lw=1.8,
            ms=7,
            ls=":" if gap else "-",
        )
        for x, y in zip(xs, ys):
            ax.annotate(
                f"{y:.1f}", (x, y), textcoords="offset points", xytext=(6, -3), fontsize=7.5
            )
    if reference:
        ax.axhline(reference["value"], color=FAMILY_COLORS["cnn"], ls="--", lw=1.2)
        ax.text(
            images["ImageNet"],
            reference["value"] + 0.3,
            reference["label"],
            color=FAMILY_COLORS["cnn"],
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xticks(list(images.values()))
    ax.set_xticklabels([f"{k}\n({v / 1e6:.1f}M images)" for k, v in images.items()], fontsize=8)
    ax.set_xlim(min(images.values()) / 2, max(images.values()) * 3)
    ax.set_xlabel("pre-training dataset (log scale of its size)")
    ax.set_ylabel("ImageNet top-1 after fine-tuning (%)")
    ax.set_title("ViT needs data: ImageNet accuracy vs pre-training set (paper Table 5)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig

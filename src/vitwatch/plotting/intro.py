"""Figures of the theory chapters (notebooks 00-02). Every function returns a matplotlib figure.

00: :func:`vit_architecture` (the model of Dosovitskiy et al., 2021, Fig. 1, redrawn),
:func:`published_compute`, :func:`published_data_scaling` (the paper's published numbers, from
:mod:`vitwatch.published`). 01: :func:`attention_heatmap`, :func:`pronoun_attention`,
:func:`training_curves`, :func:`attention_scaling`, :func:`token_counts`. 02:
:func:`photo_gallery`, :func:`patch_grid`, :func:`patch_sequence`, :func:`shuffled_patches`,
:func:`position_similarity` and :func:`embedding_filters` (the paper's Fig. 7 left and centre).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from vitwatch.plotting import color_for

FAMILY_COLORS = {"vit": color_for("vit"), "cnn": color_for("resnet"), "hybrid": "#9467bd"}


# --------------------------------------------------------------------------------------------
# 00: the architecture and the published results
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# 01: attention
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# 02: patches and position embeddings
# --------------------------------------------------------------------------------------------


def photo_gallery(photos: dict[str, np.ndarray], title: str = "The photographs used below"):
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

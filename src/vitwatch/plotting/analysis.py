"""Figures of notebook 04 (the analysis) on its numbers: results with CIs, paired differences,
calibration, errors, accuracy by box size, cost, leakage. The figures of what happens inside the
models (attention, saliency maps, CKA) are :mod:`vitwatch.plotting.internals`'s.

Each function takes plain arrays / DataFrames built by :mod:`vitwatch.analysis` and
:mod:`vitwatch.stats`, and returns a matplotlib figure with a title and labelled axes; the
notebook shows it and saves it with :meth:`vitwatch.plotting.Figures.save`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from vitwatch import catalogue

from . import color_for

LABELS = catalogue.LABELS


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _short(name: str, n: int = 22) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


# --- results ---------------------------------------------------------------------------------
def results_forest(df, metric: str = "top1", title: str = "Test accuracy with 95 % CIs"):
    """One row per run: the metric with its bootstrap CI; seed's numbers as open diamonds."""
    n = len(df)
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * n + 1.3))
    y = np.arange(n)[::-1]
    for yi, (_, r) in zip(y, df.iterrows()):
        c = color_for(r["backbone"])
        ax.errorbar(
            100 * r[metric],
            yi,
            xerr=[[100 * (r[metric] - r[f"{metric}_lo"])], [100 * (r[f"{metric}_hi"] - r[metric])]],
            fmt="o",
            color=c,
            capsize=3,
        )
        ref = r.get("seed_reference")
        if ref is not None and not (isinstance(ref, float) and np.isnan(ref)):
            ax.plot(100 * ref, yi, "D", mfc="none", mec="k", ms=6)
    ax.set_yticks(y, [f"{r['protocol']} · {_label(r['backbone'])}" for _, r in df.iterrows()])
    ax.plot([], [], "D", mfc="none", mec="k", label="seed report (validation, protocol A)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16 - 0.6 / max(n, 1)))
    ax.set(
        xlabel=f"{metric.replace('top', 'top-')} accuracy on the test set (%)",
        ylabel="protocol · backbone",
        title=title,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def paired_differences(pc, title: str = "ViT-S/16 minus ResNet-50, paired on test images"):
    """Accuracy difference per protocol with its paired bootstrap CI and McNemar p-value."""
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(pc) + 1.5))
    y = np.arange(len(pc))[::-1]
    for yi, (_, r) in zip(y, pc.iterrows()):
        d = 100 * r["diff"]
        ax.errorbar(
            d,
            yi,
            xerr=[[d - 100 * r["diff_lo"]], [100 * r["diff_hi"] - d]],
            fmt="s",
            color=color_for("vit") if d >= 0 else color_for("resnet"),
            capsize=4,
        )
        ax.annotate(
            f"p = {r['p_value']:.2g}",
            (100 * r["diff_hi"], yi),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"protocol {p}" for p in pc["protocol"]])
    ax.set(
        xlabel="accuracy difference, ViT − ResNet (points, 95 % CI)", ylabel="protocol", title=title
    )
    ax.margins(x=0.25)
    fig.tight_layout()
    return fig


def reliability(diagrams: Mapping[str, tuple], title: str = "Reliability diagrams, test set"):
    """One panel per run: accuracy against confidence per bin, before (bars) and after
    temperature scaling (line); ``diagrams``: run -> (before, after, T) with ``before`` and
    ``after`` the dicts of :func:`vitwatch.analysis.calibration.reliability`."""
    n = max(len(diagrams), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, (before, after, t)) in zip(axes.flat, diagrams.items()):
        edges = before["edges"]
        centres = (edges[:-1] + edges[1:]) / 2
        width = edges[1] - edges[0]
        ax.bar(
            centres,
            np.nan_to_num(before["accuracy"]),
            width * 0.9,
            color="#1f77b4",
            alpha=0.55,
            label="before",
        )
        ok = after["count"] > 0
        ax.plot(
            after["confidence"][ok],
            after["accuracy"][ok],
            "o-",
            color="#d62728",
            ms=3,
            lw=1,
            label=f"after (T = {t:.2f})",
        )
        ax.plot([0, 1], [0, 1], ls="--", color="k", lw=0.8)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence (top probability)",
            ylabel="accuracy",
            title=_short(name, 28),
        )
        ax.legend(fontsize=10, loc="upper left")  # 3 panels of 3.3 in print at ~0.73
    for ax in list(axes.flat)[len(diagrams) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- errors ----------------------------------------------------------------------------------
def per_class_extremes(per_class, run: str, n: int = 10):
    """Per-class accuracy (recall) of the ``n`` best and ``n`` worst classes of ``run``."""
    d = per_class.sort_values("recall")
    n = min(n, max(1, len(d) // 2))
    worst, best = d.head(n), d.tail(n)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.28 * n + 1.6), sharex=True)
    for ax, part, name, c in (
        (axes[0], worst, "worst", "#d62728"),
        (axes[1], best, "best", "#2ca02c"),
    ):
        ax.barh([_short(s) for s in part["class"]], 100 * part["recall"], color=c)
        ax.set(title=f"{n} {name}", xlabel="per-class accuracy (%)")
    axes[0].set_ylabel("breed")
    fig.suptitle(f"Best and worst breeds, {run}")
    fig.tight_layout()
    return fig


def confusion(cm, order, class_names, run: str):
    """Row-normalised confusion matrix of ``run`` (log colour scale), rows/columns in ``order``."""
    from matplotlib.colors import LogNorm

    cm = np.asarray(cm, dtype=float)[np.ix_(order, order)]
    rows = cm.sum(1, keepdims=True)
    p = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(order)
    size = 5.5  # + labels and colour bar: ~7 in, printed full size
    fig, ax = plt.subplots(figsize=(size, size))
    floor = max(1e-3, 0.5 / max(rows.max(), 1))
    im = ax.imshow(
        np.clip(p, floor, 1), norm=LogNorm(floor, 1), cmap="magma_r", interpolation="nearest"
    )
    names = [_short(class_names[i], 18) for i in order]
    if k <= 30:
        ax.set_xticks(range(k), names, rotation=90, fontsize=7.5)
        ax.set_yticks(range(k), names, fontsize=7.5)
    else:
        step = int(np.ceil(k / 30))
        ax.set_yticks(range(0, k, step), names[::step], fontsize=7.5)
        ax.set_xticks([])
    ax.set(
        xlabel="predicted breed (same order)",
        ylabel="true breed",
        title=f"Confusion matrix of {run}, breeds clustered",
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="share of the true breed's images")
    fig.tight_layout()
    return fig


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    title: str,
    ncols: int = 4,
    boxes: Sequence[np.ndarray] | None = None,
):
    """A gallery of images with a caption each (optionally a box drawn on each)."""
    n = len(images)
    if n == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.set_title(title)
        ax.text(0.5, 0.5, "no image to show", ha="center", va="center")
        ax.axis("off")
        return fig
    ncols = min(ncols, n, 4)  # <= 7 in wide: printed at full size (>= 7 pt titles)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.75 * ncols, 1.95 * nrows + 0.4), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i])
        ax.set_title(titles[i], fontsize=7)
        if boxes is not None:
            for x0, y0, x1, y1 in np.asarray(boxes[i]).reshape(-1, 4):
                ax.add_patch(
                    plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1.2)
                )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confused_pairs(gallery):
    """:func:`image_grid` of :func:`vitwatch.analysis.errors.confused_gallery`'s (images,
    titles): each error beside a real example of the breed it was taken for."""
    return image_grid(*gallery, "Confused pairs: the error and the breed it was taken for", ncols=4)


def confident_errors(gallery, run: str):
    """:func:`image_grid` of :func:`vitwatch.analysis.errors.confident_errors`'s (images,
    titles) of ``run``."""
    return image_grid(*gallery, f"The most confident errors of {run}")


def accuracy_by_box_size(df, title: str = "Accuracy against the share of the frame the dog covers"):
    """df: backbone, bin (label), acc, lo, hi, n — one group of bars per bin."""
    bins = list(dict.fromkeys(df["bin"]))
    bbs = list(dict.fromkeys(df["backbone"]))
    w = 0.8 / max(len(bbs), 1)
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    for j, b in enumerate(bbs):
        d = df[df["backbone"] == b].set_index("bin").reindex(bins)
        x = np.arange(len(bins)) + (j - (len(bbs) - 1) / 2) * w
        ax.bar(x, 100 * d["acc"], w, color=color_for(b), alpha=0.8, label=_label(b))
        ax.errorbar(
            x,
            100 * d["acc"],
            yerr=[100 * (d["acc"] - d["lo"]), 100 * (d["hi"] - d["acc"])],
            fmt="none",
            ecolor="k",
            capsize=2,
            lw=0.8,
        )
    counts = df.groupby("bin", sort=False)["n"].first().reindex(bins)
    ax.set_xticks(range(len(bins)), [f"{b}\n(n = {c})" for b, c in zip(bins, counts)])
    ax.set(xlabel="box area / image area", ylabel="test accuracy (%)", title=title, ylim=(0, 105))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


# --- cost and leakage -----------------------------------------------------------------------
def cost(df, title: str = "Accuracy against compute"):
    """df: backbone, gmacs, images_per_second, top1, protocol (best run per backbone)."""
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.5), sharey=True)
    for _, r in df.iterrows():
        c = color_for(r["backbone"])
        for ax, key in zip(axes, ("gmacs", "images_per_second")):
            if r.get(key) is None or (isinstance(r[key], float) and np.isnan(r[key])):
                continue
            ax.scatter(r[key], 100 * r["top1"], s=60, color=c)
            ax.annotate(
                f"{_label(r['backbone'])} ({r['protocol']})",
                (r[key], 100 * r["top1"]),
                xytext=(5, 4),
                textcoords="offset points",
                fontsize=9,
            )
    axes[0].set(xlabel="GMACs per image", ylabel="test top-1 (%)", title="Against MACs")
    axes[1].set(xlabel="measured throughput (images / s)", title="Against throughput")
    for ax in axes:
        ax.margins(0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def leakage(df, title: str = "Zero-training baseline vs trained heads"):
    """df: backbone, protocol, top1, top1_lo, top1_hi — grouped bars per backbone (a run
    listed twice is drawn once)."""
    df = df.drop_duplicates("run")
    bbs = list(dict.fromkeys(df["backbone"]))
    prots = sorted(set(df["protocol"]))
    w = 0.8 / len(prots)
    fig, ax = plt.subplots(figsize=(7.0, 3.4))
    hatches = {"Z": "//", "A": "", "B": "..", "C": "xx"}
    for j, p in enumerate(prots):
        d = df[df["protocol"] == p].set_index("backbone").reindex(bbs)
        x = np.arange(len(bbs)) + (j - (len(prots) - 1) / 2) * w
        ax.bar(
            x,
            100 * d["top1"],
            w,
            color=[color_for(b) for b in bbs],
            alpha=0.75,
            hatch=hatches.get(p, ""),
            edgecolor="k",
        )
        ax.errorbar(
            x,
            100 * d["top1"],
            yerr=[100 * (d["top1"] - d["top1_lo"]), 100 * (d["top1_hi"] - d["top1"])],
            fmt="none",
            ecolor="k",
            capsize=2,
            lw=0.8,
        )
    ax.set_xticks(range(len(bbs)), [_label(b) for b in bbs])
    ax.set(xlabel="backbone", ylabel="test top-1 (%)", title=title, ylim=(0, 105))
    # the bars take the backbone's colour; the legend explains the hatching only
    names = {
        "Z": "Z: no training",
        "A": "A: seed's head",
        "B": "B: linear probe",
        "C": "C: fine-tuning",
    }
    handles = [
        Patch(
            facecolor="white",
            edgecolor="k",
            hatch=hatches.get(p, ""),
            label=names.get(p, f"protocol {p}"),
        )
        for p in prots
    ]
    ax.legend(handles=handles, title="protocol", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def seen_unseen(df, title: str = "Test accuracy on images ImageNet-1k trained on, and on the rest"):
    """df from :func:`vitwatch.analysis.leakage.split_accuracy`: one row per run, seen (filled) and
    unseen (open) top-1 with their 95 % CIs."""
    n = len(df)
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * n + 1.4))
    y = np.arange(n)[::-1]
    for yi, (_, r) in zip(y, df.iterrows()):
        c = color_for(r["backbone"])
        for part, dy, face in (("seen", 0.12, c), ("unseen", -0.12, "white")):
            v = r[part]
            if np.isnan(v):
                continue
            ax.errorbar(
                100 * v,
                yi + dy,
                xerr=[[100 * (v - r[f"{part}_lo"])], [100 * (r[f"{part}_hi"] - v)]],
                fmt="o",
                color=c,
                mfc=face,
                ms=5,
                capsize=2,
                lw=0.9,
            )
    ax.set_yticks(y, [f"{_label(r['backbone'])}, {r['protocol']}" for _, r in df.iterrows()])
    ax.set(xlabel="test top-1 (%)", ylabel="backbone, protocol", title=title)
    ax.legend(
        handles=[
            plt.Line2D([], [], marker="o", color="k", ls="", label="seen in ImageNet-1k train"),
            plt.Line2D([], [], marker="o", color="k", mfc="white", ls="", label="unseen"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig

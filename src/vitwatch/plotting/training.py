"""Figures of notebook 03 (the Stanford Dogs experiment): learning curves, the linear probe's
regularisation scan, accuracy against compute.

Each function takes plain data (histories, dicts of numbers, as stored by
:mod:`vitwatch.results`) and returns a matplotlib figure; the notebook shows it and saves it
with :meth:`vitwatch.plotting.Figures.save`. Colours come from
:func:`vitwatch.plotting.color_for`, so a backbone has one colour in every figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator

from vitwatch import catalogue

from . import color_for

LABELS = catalogue.LONG_LABELS


def label(backbone: str) -> str:
    return LABELS.get(backbone, backbone)


def learning_curves(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    best_epochs: Mapping[str, int] | None = None,
    title: str = "Learning curves",
    reference: Mapping[str, float] | None = None,
):
    """Accuracy (left) and loss (right) per epoch, train dashed and validation solid, one
    colour per backbone; a dot marks the epoch kept (best validation accuracy).

    ``histories``: backbone -> ``{"loss", "accuracy", "val_loss", "val_accuracy"}``;
    ``reference``: backbone -> an accuracy drawn as a dotted horizontal line (the seed's).
    """
    if not histories:
        raise ValueError("learning_curves: no history to plot")
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for name, h in histories.items():
        c = color_for(name)
        epochs = np.arange(1, len(h["loss"]) + 1)
        for ax, key in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            ax.plot(
                epochs,
                100 * np.asarray(h[key]) if key == "accuracy" else h[key],
                "--",
                color=c,
                alpha=0.7,
                marker="x",
                ms=4,
                label=f"{label(name)}, train",
            )
            val = np.asarray(h[f"val_{key}"]) * (100 if key == "accuracy" else 1)
            ax.plot(epochs, val, "-", color=c, marker="o", ms=3, label=f"{label(name)}, validation")
            if best_epochs and name in best_epochs:
                e = best_epochs[name]
                ax.plot(e + 1, val[e], "o", ms=8, mfc="none", mec=c, mew=1.5)
        if reference and name in reference:
            ax_acc.axhline(100 * reference[name], ls=":", color=c, lw=1)
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    ax_loss.set_yscale("log")
    ax_loss.set(title="Loss (cross-entropy)", xlabel="epoch", ylabel="loss (log scale)")
    n_epochs = max(len(h["loss"]) for h in histories.values())
    for ax in (ax_acc, ax_loss):
        # whole epochs only, even for a one-epoch run (no 0.96, 0.98, ... ticks)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, n_epochs + 0.5)
    ax_loss.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _scan_by_l2(scan: Mapping[str, Mapping[str, float]]) -> dict[float, float]:
    """L2 -> best validation accuracy over the other settings of the probe grid. Keys are
    ``"lr=... l2=... std=..."`` (or a bare L2, as older runs stored them)."""
    out: dict[float, float] = {}
    for key, v in scan.items():
        fields = dict(f.split("=") for f in key.split()) if "=" in key else {"l2": key}
        l2 = float(fields["l2"])
        out[l2] = max(out.get(l2, -1.0), v["val_accuracy"])
    return out


def l2_scan(
    scans: Mapping[str, Mapping[str, Mapping[str, float]]],
    chosen: Mapping[str, float] | None = None,
    title: str = "Linear probe: choosing the L2 strength on validation",
):
    """Validation accuracy against L2 strength (log scale), one line per backbone, each point
    the best over the grid's learning rates and feature standardisation; the chosen value
    circled. ``scans``: backbone -> the run's ``l2_scan``."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, scan in scans.items():
        by_l2 = _scan_by_l2(scan)
        l2 = np.array(sorted(by_l2))
        acc = 100 * np.array([by_l2[v] for v in l2])
        hub = "hub" in name  # same checkpoint as ours: keep both visible
        ax.plot(
            l2,
            acc,
            "--" if hub else "-",
            marker="s" if hub else "o",
            ms=6 if hub else 4,
            mfc="none" if hub else color_for(name),
            color=color_for(name),
            label=label(name),
        )
        if chosen and name in chosen:
            i = int(np.argmin(np.abs(l2 - chosen[name])))
            ax.plot(l2[i], acc[i], "o", ms=10, mfc="none", mec=color_for(name), mew=1.5)
    ax.set_xscale("log")
    ax.set(title=title, xlabel="L2 strength (log scale)", ylabel="validation accuracy (%)")
    ax.legend()
    fig.tight_layout()
    return fig


def accuracy_vs_compute(rows: Sequence[Mapping], title: str = "Accuracy against compute"):
    """Test top-1 against backbone forward passes (log scale), one marker per protocol and one
    colour per backbone. ``rows``: dicts with ``backbone``, ``protocol``, ``top1``,
    ``forward_images``."""
    markers = {"A": "o", "B": "s", "C": "^", "Z": "D"}
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in rows:
        if not r.get("forward_images"):
            continue
        ax.scatter(
            r["forward_images"],
            100 * r["top1"],
            s=45,
            color=color_for(r["backbone"]),
            marker=markers.get(r["protocol"], "o"),
            zorder=3,
        )
        ax.annotate(
            f"{r['protocol']}",
            (r["forward_images"], 100 * r["top1"]),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    for name in dict.fromkeys(r["backbone"] for r in rows):
        ax.scatter([], [], color=color_for(name), label=label(name))
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set(
        title=title,
        xlabel="backbone forward passes (images, log scale)",
        ylabel="test top-1 accuracy (%)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

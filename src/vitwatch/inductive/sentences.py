"""The sentences of notebook 05, generated from the numbers, whatever a rerun produces.

Whether one model is ahead is decided by the paired difference (CNN minus ViT, seed by seed)
and its Student-t interval (:func:`vitwatch.stats.paired_gaps`), per size and pooled over all
seeds and sizes; two overlapping separate intervals are never read as a verdict.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vitwatch import stats
from vitwatch.inductive.recipe import Recipe
from vitwatch.models import small as small_models


def _signed(lo: float, hi: float) -> int:
    """+1 / -1 when a paired interval excludes zero above / below, else 0 (NaN: 0)."""
    return 1 if lo > 0 else -1 if hi < 0 else 0


def describe_paired(
    runs: pd.DataFrame, cnn: str = "resnet", vit: str = "vit", confidence: float = 0.95
) -> str:
    """The CNN-vs-ViT verdict from paired differences (never from overlapping intervals)."""
    g = stats.paired_gaps(runs, cnn, vit, confidence)
    per, pooled = g[g["n_train"] > 0], g.iloc[-1]
    if per["ci_low"].isna().all():
        return (
            "With a single seed per size there is no interval of the paired difference, "
            "so no size separates the two models."
        )
    signs = [_signed(lo, hi) for lo, hi in zip(per["ci_low"], per["ci_high"])]
    sizes = per["n_train"].tolist()
    ahead = [f"{n:,}" for n, s in zip(sizes, signs) if s > 0]
    behind = [f"{n:,}" for n, s in zip(sizes, signs) if s < 0]
    k = int(per["pairs"].max())
    t = (
        f"Paired by seed (same subset, order and augmentation; {k} seed"
        f"{'s' if k > 1 else ''}, Student-t intervals), the CNN minus the plain ViT is "
    )
    t += "; ".join(
        f"{100 * m:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] at {n:,}"
        for n, m, lo, hi in zip(sizes, per["mean"], per["ci_low"], per["ci_high"])
    )
    t += ". The interval excludes zero at " + (
        f"{len(ahead) + len(behind)} of {len(sizes)} sizes"
        if ahead or behind
        else "none of the sizes"
    )
    t += (f" (CNN ahead at {', '.join(ahead)}" if ahead else "") + (
        f"{'; ' if ahead else ' ('}ViT ahead at {', '.join(behind)}" if behind else ""
    )
    t += ")" if ahead or behind else ""
    t += (
        f". Pooled over all {int(pooled['pairs'])} seed x size pairs: "
        f"{100 * pooled['mean']:+.1f} points [{100 * pooled['ci_low']:+.1f}, "
        f"{100 * pooled['ci_high']:+.1f}]"
    )
    pooled_sign = _signed(pooled["ci_low"], pooled["ci_high"])
    t += (
        ", so the CNN is ahead on average over this range."
        if pooled_sign > 0
        else ", so the plain ViT is ahead on average over this range."
        if pooled_sign < 0
        else ", an interval that includes zero: over this range the ranking is not established."
    )
    return t


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def describe(
    summary: pd.DataFrame, runs: pd.DataFrame | None = None, cnn: str = "resnet", vit: str = "vit"
) -> list[str]:
    """Sentences stating what the curves show, generated from the numbers (whatever they are).

    ``runs`` (one row per arch x size x seed) gives the paired comparison; without it, no
    sentence claims a difference."""

    def label(a):
        return small_models.LABELS.get(a, a)

    mean = summary.pivot(index="n_train", columns="arch", values="mean").sort_index()
    sizes = [int(n) for n in mean.index]
    out = []
    for n in (sizes[0], sizes[-1]):
        row = mean.loc[n].sort_values(ascending=False)
        out.append(
            f"With {n:,} training images, mean test accuracy is "
            + ", ".join(f"{label(a)} {_pct(v)}" for a, v in row.items())
            + "."
        )
    if cnn in mean and vit in mean:
        gap = mean[cnn] - mean[vit]  # > 0: the CNN is ahead

        def rel(g):
            return f"{'ahead of' if g > 0 else 'behind'} the plain ViT by {100 * abs(g):.1f} points"

        trend = "narrows" if abs(gap.iloc[-1]) < abs(gap.iloc[0]) else "does not narrow"
        same = (gap.iloc[0] > 0) == (gap.iloc[-1] > 0)
        last = f"by {100 * abs(gap.iloc[-1]):.1f} points" if same else rel(gap.iloc[-1])
        out.append(
            f"The {label(cnn)} is {rel(gap.iloc[0])} at {sizes[0]:,} images and "
            f"{last} at {sizes[-1]:,}: the gap {trend} as data grows."
        )
        sign = np.sign(gap.to_numpy())
        cross = [i for i in range(len(sizes) - 1) if sign[i] > 0 >= sign[i + 1]]
        if cross:
            i = cross[0]
            out.append(
                f"The plain ViT's mean overtakes the CNN's between {sizes[i]:,} and "
                f"{sizes[i + 1]:,} images."
            )
        elif (gap > 0).all():
            out.append("The plain ViT's mean stays below the CNN's at every size tried.")
        else:
            out.append("The plain ViT's mean is not below the CNN's at every size tried.")
        if runs is not None:
            out.append(describe_paired(runs, cnn, vit))
        else:
            out.append(
                "Without the per-seed runs no paired comparison is made; separate "
                "intervals of paired runs are not compared."
            )
    if "train_mean" in summary:
        fit = summary[summary["n_train"] == sizes[-1]].set_index("arch")["train_mean"]
        under = fit[fit < 0.9]
        if len(under):
            out.append(
                f"At {sizes[-1]:,} images, "
                + ", ".join(
                    f"{label(a)} reaches only {_pct(v)} training accuracy" for a, v in under.items()
                )
                + ": within this step budget it under-fits, so its test accuracy is limited "
                "by optimisation rather than by over-fitting."
            )
        else:
            out.append(
                f"At {sizes[-1]:,} images every model fits its training subset (at least "
                f"{_pct(fit.min())} training accuracy): the differences in test accuracy "
                "are differences in generalisation."
            )
    for variant in [a for a in mean.columns if a not in (cnn, vit)]:
        parts = []
        for ref in (vit, cnn):
            if ref in mean:
                d = mean[variant] - mean[ref]
                parts.append(
                    f"above the {'plain ViT' if ref == vit else label(ref)} at "
                    f"{int((d > 0).sum())} of {len(sizes)} sizes (mean difference "
                    f"{100 * d.mean():+.1f} points)"
                )
        if parts:
            out.append(f"{label(variant)} is " + ", and ".join(parts) + ".")
    return out


def verdict(
    summary: pd.DataFrame, runs: pd.DataFrame | None = None, cnn: str = "resnet", vit: str = "vit"
) -> str:
    """One sentence placing the measured curves against Figures 3 and 4 of the paper.

    Figure 3: ViTs and BiT ResNets pre-trained on ImageNet-1k, ImageNet-21k or JFT-300M, then
    fine-tuned on ImageNet. Figure 4: *linear 5-shot* ImageNet accuracy of models pre-trained
    on random JFT subsets of 9, 30, 90 and 300 million images; the crossover is *observed*
    there (ResNets ahead on the small subsets, ViTs on the large ones), not extrapolated.
    The certainty comes from the paired differences over seeds (:func:`vitwatch.stats.paired_gaps`).
    """
    mean = summary.pivot(index="n_train", columns="arch", values="mean").sort_index()
    if cnn not in mean or vit not in mean:
        return "Without both the CNN and the plain ViT, the comparison with the paper is moot."
    gap = (mean[cnn] - mean[vit]).to_numpy()  # > 0: the CNN is ahead
    narrows = abs(gap[-1]) < abs(gap[0])
    if runs is not None:
        g = stats.paired_gaps(runs, cnn, vit)
        per = g[g["n_train"] > 0]
        separated = sum(_signed(lo, hi) != 0 for lo, hi in zip(per["ci_low"], per["ci_high"]))
        pooled = g.iloc[-1]
        pooled_text = (
            ""
            if math.isnan(pooled["ci_low"])
            else f"; pooled over {int(pooled['pairs'])} seed x size pairs, "
            f"{100 * pooled['mean']:+.1f} points [{100 * pooled['ci_low']:+.1f}, "
            f"{100 * pooled['ci_high']:+.1f}]"
        )
        certainty = (
            f" (the paired 95 % interval of the CNN's lead excludes zero at "
            f"{separated} of {len(per)} sizes; where it does not, the ranking is not "
            f"established{pooled_text})"
            if separated < len(per)
            else f" (the paired 95 % interval of the CNN's lead excludes zero at every "
            f"size{pooled_text})"
        )
    else:
        certainty = " (no paired interval without the per-seed runs: means only)"
    if (gap > 0).all():
        return (
            "As at the low-data end of the paper's curves (ImageNet-1k pre-training in "
            "Figure 3, the 9M-image JFT subset in Figure 4), the CNN is ahead of the ViT on "
            "average at every size tried here"
            + certainty
            + (
                ", and its mean lead narrows as data grows, the direction in which the "
                "paper observes the crossover (between its JFT subsets in Figure 4)"
                if narrows
                else "; its mean lead does not narrow within this range, so "
                "these runs show no sign of the crossover the paper observes with far "
                "more data"
            )
            + "."
        )
    if (gap <= 0).all():
        return (
            "Unlike the low-data end of the paper's curves, the plain ViT is not behind the "
            "CNN on average at any size" + certainty + ": with this recipe and these small "
            "models the paper's small-data disadvantage does not appear."
        )
    if gap[0] > 0 >= gap[-1]:
        return (
            "The CNN leads on average with little data and the ViT catches up as data "
            "grows" + certainty + ", the shape of the paper's Figures 3 and 4 at sizes "
            "far smaller than its millions of images."
        )
    return (
        "The ranking of the CNN and the plain ViT changes with size without a clear trend"
        + certainty
        + "; the curves neither confirm nor contradict the paper's Figures 3 "
        "and 4."
    )


def protocol_sentence(rec: Recipe, n_models: int, n_sizes: int, seeds: int) -> str:
    """The recipe of this run and the size of its grid, in one sentence."""
    return (
        f"This run: batch {rec.batch_size}, {rec.steps} steps per run, peak learning rate "
        f"{rec.learning_rate:g}, weight decay {rec.weight_decay:g}, shifts of up to "
        f"{rec.shift} pixel(s){', horizontal flips' if rec.flip else ''}; "
        f"{n_models} models x {n_sizes} sizes x {seeds} seeds = "
        f"{n_models * n_sizes * seeds} runs."
    )


def runtime_sentences(estimates: pd.DataFrame, runs: pd.DataFrame) -> str:
    """The expected training time of the ``full`` profile (rows of
    :func:`.estimates.profile_estimates` indexed by profile), and how many runs were read back."""
    from vitwatch.inductive.estimates import format_hours

    full = estimates.loc["full"]
    text = (
        f"Expected training time of the `full` profile ({full['runs']} runs of "
        f"{full['steps per run']:,} steps on {full['dataset']}): "
        f"{format_hours(full['CPU hours (this machine)'])} on this machine's CPU "
        f"({full['CPU source']}), "
        f"{format_hours(full['GPU hours (estimate)'])} on one GPU (estimate), "
        "plus evaluation."
    )
    if runs["cached"].any():
        text += (
            f" {int(runs['cached'].sum())} of {len(runs)} runs were read back from the results "
            "store, with the times measured when they first ran."
        )
    return text

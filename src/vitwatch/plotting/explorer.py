"""The explorer's figure (notebook 06): per image, each backbone's map and top-5 breeds.

One function, :func:`panel`, used both by the interactive explorer (one image, redrawn on every
change) and for the report's static panel (a few test images). Its width is the PDF's text
width (:data:`vitwatch.plotting.legibility.TEXT_WIDTH_IN`), so that every label prints at its
nominal size, never below 7 pt.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from . import color_for
from .internals import _overlay
from .legibility import TEXT_WIDTH_IN

FONT = 7.5  # pt: tick labels, breed names, panel titles (printed at this size)


def _short(name: str, n: int = 24) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


SLOTS = 3  # cards per row: (map, top-5 bars) pairs; the input image takes the first slot


def _bars(ax, ex: dict) -> None:
    """Top-5 breeds of one backbone as horizontal bars, names written inside."""
    names = [b for b, _ in ex["top"]][::-1]
    probs = [p for _, p in ex["top"]][::-1]
    y = np.arange(len(names))
    ax.barh(y, probs, color=color_for(ex["name"]), alpha=0.35, height=0.8)
    for yi, (name, p) in enumerate(zip(names, probs)):
        ax.text(0.02, yi, f"{_short(name, 16)} {100 * p:.0f}%", va="center", fontsize=FONT)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)  # the card's title runs above the bars
    ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"], fontsize=FONT)
    ax.set_xlabel("probability (top-5)", fontsize=FONT)


def panel(
    images: Sequence[np.ndarray],
    explanations: Sequence[Sequence[dict]],
    image_titles: Sequence[str],
    title: str = "What each backbone sees",
):
    """For each image, cards of three per row: first the input image, then one card per
    backbone with its map over the image (attention or Grad-CAM; the plain image when it has
    none) beside a bar chart of its top-5 breeds. ``explanations[i]``:
    :func:`vitwatch.explorer.explain_all` of ``images[i]``."""
    n = len(images)
    if n == 0 or not explanations or not explanations[0]:
        raise ValueError("panel: give at least one image and one explained backbone")
    m = len(explanations[0])
    rows = -(-(m + 1) // SLOTS)  # card rows per image
    fig = plt.figure(figsize=(TEXT_WIDTH_IN, 1.55 * rows * n + 0.5), layout="constrained")
    outer = fig.add_gridspec(n, 1)
    for i, (image, cards) in enumerate(zip(images, explanations)):
        grid = outer[i].subgridspec(rows, 2 * SLOTS, width_ratios=[1.0, 1.3] * SLOTS)
        slots = [(r, c) for r in range(rows) for c in range(SLOTS)]
        r, c = slots[0]
        ax = fig.add_subplot(grid[r, 2 * c])
        ax.imshow(image)
        ax.axis("off")
        ax.set_title(_short(image_titles[i], 36), fontsize=FONT, loc="left")
        for (r, c), ex in zip(slots[1:], cards):
            top = fig.add_subplot(grid[r, 2 * c])
            if ex["map"] is not None:
                _overlay(top, image, ex["map"])
            else:
                top.imshow(image)
                top.axis("off")
            top.set_title(f"{ex['label']}\n{ex['map_title']}", fontsize=FONT, loc="left")
            _bars(fig.add_subplot(grid[r, 2 * c + 1]), ex)
        for r, c in slots[1 + len(cards) :]:
            for k in (0, 1):
                fig.add_subplot(grid[r, 2 * c + k]).axis("off")
    fig.suptitle(title)
    return fig

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
from .analysis import _overlay
from .legibility import TEXT_WIDTH_IN

FONT = 7.5  # pt: tick labels, breed names, panel titles (printed at this size)


def _short(name: str, n: int = 24) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def panel(
    images: Sequence[np.ndarray],
    explanations: Sequence[Sequence[dict]],
    image_titles: Sequence[str],
    title: str = "What each backbone sees",
):
    """Rows of images; for each, the input, then per backbone its map overlaid on the image
    (attention or Grad-CAM; the plain image when it has none) above a bar chart of its top-5
    breeds. ``explanations[i]``: :func:`vitwatch.explorer.explain_all` of ``images[i]``."""
    n = len(images)
    if n == 0 or not explanations or not explanations[0]:
        raise ValueError("panel: give at least one image and one explained backbone")
    m = len(explanations[0])
    cols = 1 + m
    fig = plt.figure(figsize=(TEXT_WIDTH_IN, 3.1 * n + 0.5), layout="constrained")
    outer = fig.add_gridspec(n, 1)
    for i, (image, rows) in enumerate(zip(images, explanations)):
        grid = outer[i].subgridspec(2, cols, height_ratios=[1.5, 1.0])
        ax = fig.add_subplot(grid[0, 0])
        ax.imshow(image)
        ax.set_title(_short(image_titles[i], 40), fontsize=FONT, wrap=True)
        ax.axis("off")
        note = fig.add_subplot(grid[1, 0])
        note.axis("off")
        note.text(
            0,
            0.5,
            "bars: the stored\nhead's top-5 breeds\n(probability)",
            fontsize=FONT,
            va="center",
            transform=note.transAxes,
        )
        for j, ex in enumerate(rows, 1):
            top = fig.add_subplot(grid[0, j])
            if ex["map"] is not None:
                _overlay(top, image, ex["map"])
            else:
                top.imshow(image)
                top.axis("off")
            top.set_title(f"{ex['label']}\n{ex['map_title']}", fontsize=FONT)
            bars = fig.add_subplot(grid[1, j])
            names = [b for b, _ in ex["top"]][::-1]
            probs = [p for _, p in ex["top"]][::-1]
            y = np.arange(len(names))
            bars.barh(y, probs, color=color_for(ex["name"]), alpha=0.35, height=0.8)
            for yi, (name, p) in enumerate(zip(names, probs)):
                bars.text(
                    0.02, yi, f"{_short(name, 18)} {100 * p:.0f}%", va="center", fontsize=FONT
                )
            bars.set_xlim(0, 1)
            bars.set_yticks([])
            bars.set_xticks([0, 0.5, 1], ["0", "0.5", "1"], fontsize=FONT)
            bars.set_xlabel("probability", fontsize=FONT)
            if j == 1:
                bars.set_ylabel("top-5", fontsize=FONT)
    fig.suptitle(title)
    return fig

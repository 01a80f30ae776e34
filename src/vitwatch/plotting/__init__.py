"""Every figure of the report. One submodule per part of the report, each function returns a figure.

``save_figure(fig, "04_attention_rollout")`` writes ``<figures_dir>/04_attention_rollout.png`` and
``.svg`` (figures_dir comes from the validated config, default ``figures/<profile>``). Notebooks
call ``plotting.attention.attention_heatmap(...)``, ``plotting.analysis.confusion(...)``, ...
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt  # noqa: F401  (pyplot loaded with the house style)

from vitwatch import catalogue

_NAME = re.compile(r"^0[0-9]_[a-z0-9_]+$")

# A sober house style, legible when printed on A4.
STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 10,  # legends of figures up to 10 in wide print at >= 7 pt
    "legend.frameon": False,
    "font.size": 10,
    "image.cmap": "viridis",
}
matplotlib.rcParams.update(STYLE)

# A backbone's colour is its catalogue row's (vitwatch.catalogue.BACKBONES), the same in every
# figure; a family name ("vit", "resnet", "cnn") takes the colour of the seed's backbone of it.
COLORS = {"vit": "#1f77b4", "resnet": "#d62728", "cnn": "#d62728", "other": "#7f7f7f"}


def color_for(name: str) -> str:
    row = catalogue.BACKBONES.get(name)
    if row is not None:
        return row.colour
    n = name.lower()
    return next((c for family, c in COLORS.items() if family in n), COLORS["other"])


class Figures:
    """Where a notebook's figures go: ``Figures(cfg.figures_dir).save(fig, "04_name")`` writes
    ``<folder>/04_name.png`` and ``.svg`` (the report embeds them). The folder is passed, not
    read from the environment or a module global."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def save(self, fig, name: str, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
        return save_figure(fig, name, self.folder, formats)


def save_figure(
    fig, name: str, folder: str | os.PathLike, formats: tuple[str, ...] = ("png", "svg")
) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.<fmt>``; ``name`` starts with the notebook number."""
    if not _NAME.match(name):
        raise ValueError(
            f"figure name {name!r} must look like '04_attention_rollout' "
            "(notebook number, then snake_case)"
        )
    if not fig.axes or not any(ax.get_title() or fig._suptitle for ax in fig.axes):
        raise ValueError(f"figure {name!r} has no title: every figure of the report needs one")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        fig.savefig(path)
        paths.append(path)
    return paths

"""How large a figure's text prints in the PDF report.

The report embeds each figure as a PNG at the inline backend's resolution
(``figure.dpi``, 110) and the browser shows it at 96 pixels per inch, shrunk to the text width
when wider (``max-width: 100%`` in ``report.css``). The text width is A4 (210 mm) less the page
margins (14 mm each side, ``@page`` in ``report.css``): 182 mm, 7.17 in. A figure ``W`` inches
wide (after ``bbox_inches="tight"``) therefore prints at a scale of
``min(figure.dpi / 96, TEXT_WIDTH_IN / (W * figure.dpi / 96) * figure.dpi / 96)``, i.e.
``min(dpi / 96, TEXT_WIDTH_IN / W)``, and a label of ``s`` points prints at ``s`` times that.
"""

from __future__ import annotations

import matplotlib
from matplotlib.text import Text

TEXT_WIDTH_IN = 7.0  # 182 mm of text width, less a small safety margin
CSS_DPI = 96.0
MIN_PRINTED_PT = 7.0


def print_scale(fig) -> float:
    """Printed size / nominal size of ``fig``'s text in the PDF report."""
    fig.canvas.draw()
    bbox = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
    dpi = float(matplotlib.rcParams["figure.dpi"])
    return min(dpi / CSS_DPI, TEXT_WIDTH_IN / max(bbox.width, 1e-6))


def printed_sizes(fig) -> list[tuple[float, str]]:
    """(printed size in pt, text) of every visible, non-empty text of ``fig``, smallest
    first."""
    scale = print_scale(fig)
    out = []
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip() and t.get_figure() is not None:
            out.append((t.get_fontsize() * scale, t.get_text()))
    return sorted(out)


def check(fig, name: str = "figure", minimum: float = MIN_PRINTED_PT) -> None:
    """Raise ValueError naming the smallest text of ``fig`` when it prints below ``minimum``."""
    sizes = printed_sizes(fig)
    if sizes and sizes[0][0] < minimum - 1e-6:
        small = ", ".join(f"{t[:30]!r} {s:.1f} pt" for s, t in sizes[:3])
        raise ValueError(f"{name}: text prints below {minimum} pt in the PDF ({small})")

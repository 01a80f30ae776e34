"""The wording every analysis of chapter 4 shares: backbone labels, percentages with their
intervals, the smoke warning, bullet lists and the verdict of a paired interval.

A sentence builder of :mod:`vitwatch.analysis` states what the numbers say, whatever they are,
so that the report's conclusions stay true when the experiment is rerun; these are its parts.
"""

from __future__ import annotations

import numpy as np

from vitwatch import catalogue


def label(name: str) -> str:
    """The backbone's label in tables, sentences and legends (:data:`catalogue.LABELS`)."""
    return catalogue.LABELS.get(name, name)


def protocol(p: str) -> str:
    """``"A: <what protocol A is>"``, as tables name a protocol."""
    return f"{p}: {catalogue.PROTOCOLS.get(p, p)}"


def pct(v, lo=None, hi=None) -> str:
    """A share in percent with one decimal, and its interval when given; "–" for no value."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if lo is None:
        return f"{100 * v:.1f}"
    return f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def points(d, lo, hi) -> str:
    """A difference in percentage points with its interval, signs shown: ``+1.0 [-0.5, +2.5]``."""
    return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def images(n: int) -> str:
    return f"{n} image" + ("" if n == 1 else "s")


def smoke_warning(stand_in: bool) -> str:
    """The sentence that opens every result of a stand-in run (``cfg.stand_in``: the smoke
    profile), empty otherwise."""
    if stand_in:
        return (
            "*Smoke profile: synthetic images and tiny random-weight models; every number "
            "below is meaningless and only shows that the analysis runs.* "
        )
    return ""


def bullets(lines) -> str:
    """Markdown bullet list, one line each (after a blank line, so that it renders); empty
    lines and None (a sentence with nothing to say) are left out."""
    return "\n\n" + "\n".join(f"- {line}" for line in lines if line)


def paired_verdict(lo: float, hi: float, more: str, less: str, same: str) -> str:
    """``more`` when a paired interval lies above zero, ``less`` below, ``same`` otherwise."""
    return more if lo > 0 else less if hi < 0 else same

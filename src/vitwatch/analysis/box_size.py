"""Small dogs in large frames: accuracy against the share of the frame the dog covers.

If attention helps with clutter, the ViT's lead should grow when the dog is small. Every test
image is binned by the area share of the union of its boxes
(:func:`vitwatch.analysis.boxes.box_fraction`); :func:`accuracy` gives each run's
accuracy per bin, :func:`gaps` the ViT-minus-CNN difference per bin, paired over the bin's
images, and the change of that gap from the smallest-box bin to the largest, with a bootstrap
interval; :func:`describe` states the verdict from that interval; :func:`section` does it all
(:class:`BoxSize`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from vitwatch import stats
from vitwatch.analysis import text

EDGES = (0.0, 0.25, 0.5, 0.75, 1.0001)


def fractions(store) -> np.ndarray:
    """(N,) share of each test image covered by its boxes."""
    from vitwatch.analysis import boxes

    positions = range(store.labels.size)
    return np.array(
        [
            boxes.box_fraction(b, wh)
            for b, wh in zip(store.boxes(positions), store.image_sizes(positions))
        ]
    )


def _bin(lo_e: float, hi_e: float) -> str:
    return f"{100 * lo_e:.0f}–{min(100, 100 * hi_e):.0f} %"


def accuracy(
    store, runs: Mapping[str, str], fractions, edges=EDGES, n_boot: int = 1000, seed: int = 0
):
    """Accuracy of each run (backbone -> run name) per bin of box area share, with CIs."""
    import pandas as pd

    fractions = np.asarray(fractions)
    rows = []
    for lo_e, hi_e in zip(edges[:-1], edges[1:]):
        sel = (fractions >= lo_e) & (fractions < hi_e)
        if not sel.any():
            continue
        for backbone, run in runs.items():
            acc, lo, hi = stats.bootstrap_mean(store.correct(run)[sel], n_boot, seed)
            rows.append(
                {
                    "backbone": backbone,
                    "run": run,
                    "bin": _bin(lo_e, hi_e),
                    "acc": acc,
                    "lo": lo,
                    "hi": hi,
                    "n": int(sel.sum()),
                }
            )
    return pd.DataFrame(rows)


def gaps(
    store, vit_run: str, cnn_run: str, fractions, edges=EDGES, n_boot: int = 1000, seed: int = 0
):
    """ViT minus CNN accuracy per bin of box area share, paired over the bin's images, and
    the change of that gap from the smallest-box bin to the largest (bins resampled
    independently). Returns ``(per_bin DataFrame, (change, lo, hi) or None)``."""
    import pandas as pd

    fractions = np.asarray(fractions)
    d = store.correct(vit_run).astype(float) - store.correct(cnn_run)  # (N,) paired
    rows, per_bin = [], []
    for lo_e, hi_e in zip(edges[:-1], edges[1:]):
        sel = (fractions >= lo_e) & (fractions < hi_e)
        if not sel.any():
            continue
        v, lo, hi = stats.bootstrap_mean(d[sel], n_boot, seed)
        rows.append({"bin": _bin(lo_e, hi_e), "gap": v, "lo": lo, "hi": hi, "n": int(sel.sum())})
        per_bin.append(d[sel])
    change = None
    if len(per_bin) > 1:
        first, last = per_bin[0], per_bin[-1]
        rng = np.random.default_rng(seed)
        reps = np.array(
            [
                first[rng.integers(0, first.size, first.size)].mean()
                - last[rng.integers(0, last.size, last.size)].mean()
                for _ in range(n_boot)
            ]
        )
        change = (float(first.mean() - last.mean()), *stats.percentile_ci(reps))
    return pd.DataFrame(rows), change


def describe(per_bin, change, vit: str = "ViT", cnn: str = "ResNet") -> str:
    """A sentence on whether the ViT's lead grows for small dogs, from paired intervals
    (``per_bin`` None: the two backbones did not both run)."""
    if per_bin is None:
        return "Too few backbones to compare accuracy across box sizes."
    if change is None or len(per_bin) < 2:
        return "Too few bins or backbones to compare accuracy across box sizes."
    f, l = per_bin.iloc[0], per_bin.iloc[-1]
    verdict = text.paired_verdict(
        change[1],
        change[2],
        "larger for small dogs",
        "smaller for small dogs",
        "not shown to depend on the dog's size (the interval of the change includes zero)",
    )
    return (
        f"{vit} minus {cnn}, paired on the same images: {100 * f['gap']:+.1f} points "
        f"[{100 * f['lo']:+.1f}, {100 * f['hi']:+.1f}] in the smallest-box bin "
        f"({int(f['n'])} images) and {100 * l['gap']:+.1f} [{100 * l['lo']:+.1f}, "
        f"{100 * l['hi']:+.1f}] in the largest ({int(l['n'])}); the change between them, "
        f"{100 * change[0]:+.1f} points [{100 * change[1]:+.1f}, {100 * change[2]:+.1f}], "
        f"says the lead is {verdict}."
    )


@dataclass
class BoxSize:
    """The section "Small dogs in large frames": ``table`` of each chosen run's accuracy per
    bin (:func:`accuracy`), the per-bin ``gaps`` of the ViT against the CNN and the ``change``
    of the gap from the smallest-box bin to the largest (:func:`gaps`; both None when the two
    backbones did not both run)."""

    table: object
    gaps: object
    change: tuple[float, float, float] | None

    @property
    def sentence(self) -> str:
        return describe(self.gaps, self.change)

    @property
    def conclusion(self) -> list[str]:
        """The conclusion's line on box sizes (none when the comparison was not possible)."""
        return [] if self.gaps is None else ["Bounding boxes: " + self.sentence]

    @property
    def record(self) -> dict:
        return {
            "box_size": {
                "accuracy": self.table.to_dict(orient="records"),
                "paired_gaps": [] if self.gaps is None else self.gaps.to_dict(orient="records"),
                "change_small_minus_large": self.change,
            }
        }


def section(store, vit: str, cnn: str, n_boot: int, seed: int) -> BoxSize:
    """:class:`BoxSize` of the runs of ``vit`` and ``cnn`` chosen on validation accuracy."""
    from vitwatch.analysis.store import select_runs

    runs = select_runs(store, (vit, cnn))
    fr = fractions(store)
    by_size = accuracy(store, runs, fr, n_boot=n_boot, seed=seed)
    if not {vit, cnn} <= set(runs):
        return BoxSize(by_size, None, None)
    return BoxSize(by_size, *gaps(store, runs[vit], runs[cnn], fr, n_boot=n_boot, seed=seed))

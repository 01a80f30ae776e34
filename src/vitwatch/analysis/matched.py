"""Matched pairs: how much of the ViT's lead is architecture, and how much is pre-training.

The seed compared a ViT-S/16 pre-trained on ImageNet-21k and ImageNet-1k with a ResNet-50 that
saw ImageNet-1k only (:mod:`vitwatch.catalogue`). BiT-M R50x1 is a CNN with the ViT's
pre-training data, so ViT-S/16 vs BiT-M R50x1 holds the data equal (but not the recipe, the
number of epochs or the resolution). This module builds the backbone table of the report
(pre-training, published ImageNet-1k top-1, parameters, GMACs, Stanford Dogs top-1 per protocol)
and the paired differences of every pair of :data:`vitwatch.catalogue.PAIRS`, on all test
images and on those ImageNet-1k never trained on, and turns them into the report's conclusion;
the section in one call: :func:`section` (:class:`Matched`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitwatch import catalogue, stats


def backbone_table(store, table, label=str):
    """One row per backbone of the store: the catalogue's facts, the measured parameters and
    GMACs of 03's cost table, and the test top-1 (%) of each protocol (``table``:
    :func:`vitwatch.analysis.results_table`)."""
    import pandas as pd

    rows = []
    for b in dict.fromkeys(m["backbone"] for m, _ in store.runs.values()):
        f = catalogue.facts(b)
        cost = store.cost.get(b, {}) if store.cost else {}
        row = {
            "backbone": label(b),
            "pre-training": f.pretraining if f else "?",
            "pre-training length": f.epochs if f else "?",
            "ImageNet-1k top-1 % (published)": (
                f"{f.in1k_top1:.2f} ({f.in1k_source})"
                if f and f.in1k_top1
                else (f.in1k_source if f else "?")
            ),
            "params (M)": (cost.get("params") or np.nan) / 1e6,
            "GMACs": cost.get("gmacs", np.nan),
        }
        for p in ("A", "B", "C", "Z"):
            r = table[(table["backbone"] == b) & (table["protocol"] == p)]
            row[f"Dogs top-1 % ({p})"] = 100 * r["top1"].iloc[0] if len(r) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def pair_differences(store, seen=None, n_boot: int = 1000, seed: int = 0):
    """For every pair of :data:`catalogue.PAIRS` and protocol where both ran: ViT minus CNN
    top-1 on the same images (paired bootstrap 95 % CI), on all test images and, with
    ``seen``, on the unseen ones."""
    import pandas as pd

    rows = []
    for vit, cnn, what in catalogue.PAIRS:
        for p in sorted({m["protocol"] for m, _ in store.runs.values()}):
            a, b = store.names(vit, p), store.names(cnn, p)
            if not (a and b):
                continue
            ca, cb = store.correct(a[0]), store.correct(b[0])
            parts = [("all", np.ones(ca.size, bool))]
            if seen is not None and (~np.asarray(seen)).any():
                parts.append(("unseen", ~np.asarray(seen, bool)))
            for part, mask in parts:
                d, lo, hi = stats.paired_bootstrap_diff(ca[mask], cb[mask], n_boot, seed)
                rows.append(
                    {
                        "vit": vit,
                        "cnn": cnn,
                        "holds equal": what,
                        "protocol": p,
                        "part": part,
                        "n": int(mask.sum()),
                        "diff": d,
                        "lo": lo,
                        "hi": hi,
                    }
                )
    return pd.DataFrame(rows)


def _ci(r) -> str:
    return f"{100 * r['diff']:+.1f} points [{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]"


def _excludes_zero(r) -> bool:
    return r["lo"] > 0 or r["hi"] < 0


def conclusion(diffs, protocol: str, label=str, box_sentence: str = "") -> str:
    """The report's answer to the seed's attribution, for one protocol: the seed's lead, the
    lead with matched pre-training, each on all and on unseen images, with their CIs."""
    if diffs is None or len(diffs) == 0:
        return (
            "No protocol ran a ViT and a CNN side by side: the attribution cannot be "
            "tested in this run."
        )
    d = diffs[diffs["protocol"] == protocol]
    get = {(r["vit"], r["cnn"], r["part"]): r for _, r in d.iterrows()}
    seed_pair, matched = catalogue.PAIRS[0], catalogue.PAIRS[1]
    out = []
    s = get.get((seed_pair[0], seed_pair[1], "all"))
    m = get.get((matched[0], matched[1], "all"))
    if s is not None:
        out.append(
            f"Under protocol {protocol}, {label(seed_pair[0])} leads "
            f"{label(seed_pair[1])} by {_ci(s)}, the seed's comparison."
        )
    if m is not None:
        out.append(
            f"Against {label(matched[1])}, a CNN pre-trained on the same data, the "
            f"difference is {_ci(m)}"
        )
        if s is not None and abs(s["diff"]) > 1e-9:
            share = m["diff"] / s["diff"]
            out[-1] += (
                f": {100 * share:.0f} % of the seed's lead remains once the "
                "pre-training data are matched"
            )
        out[-1] += ("" if _excludes_zero(m) else ", an interval that includes zero") + "."
    else:
        out.append(
            f"{label(matched[1])} did not run under protocol {protocol}: the lead "
            "cannot be separated from the difference in pre-training data here."
        )
    for pair in (seed_pair, matched):
        u = get.get((pair[0], pair[1], "unseen"))
        if u is not None:
            out.append(
                f"On the test images that ImageNet-1k never trained on, "
                f"{label(pair[0])} minus {label(pair[1])} is {_ci(u)}."
            )
    out.append(
        "Matched data is not a matched recipe: the two pre-trainings differ in length "
        "(300 vs 90 ImageNet-21k epochs), augmentation and resolution, so what remains "
        "is an upper bound on what architecture alone explains."
    )
    if box_sentence:
        out.append(box_sentence)
    return " ".join(out)


def format_pairs(diffs):
    """:func:`pair_differences` as a reader sees it: labels and points with their CIs."""
    from vitwatch.analysis import text

    shown = diffs.assign(
        ViT=diffs["vit"].map(text.label),
        CNN=diffs["cnn"].map(text.label),
        **{
            "ViT - CNN [95 % CI]": [
                f"{100 * r.diff:+.1f} [{100 * r.lo:+.1f}, {100 * r.hi:+.1f}]"
                for r in diffs.itertuples()
            ]
        },
    )
    return shown[["ViT", "CNN", "holds equal", "protocol", "part", "n", "ViT - CNN [95 % CI]"]]


def conclusions(diffs) -> list[str]:
    """:func:`conclusion` for every trained protocol (A, B, C) with a pair, or the one sentence
    saying that none ran."""
    from vitwatch.analysis import text

    ran = set(diffs["protocol"]) if len(diffs) else set()
    out = [conclusion(diffs, p, text.label) for p in ("A", "B", "C") if p in ran]
    return out or [conclusion(diffs, "A", text.label)]


@dataclass
class Matched:
    """The section "Matched pre-training": the ``backbones`` table (:func:`backbone_table`),
    the paired differences of every pair (``pairs``, :func:`pair_differences`) and the
    conclusion per protocol (``verdicts``, :func:`conclusions`)."""

    backbones: object
    pairs: object
    verdicts: list[str]

    @property
    def facts(self):
        """The backbone table as shown."""
        return self.backbones.style.hide(axis="index").format(precision=1, na_rep="–")

    @property
    def tables(self) -> list:
        if not len(self.pairs):
            return []
        return [format_pairs(self.pairs).style.hide(axis="index")]

    @property
    def record(self) -> dict:
        return {"matched_pairs": self.pairs.to_dict(orient="records")}


def section(store, table, seen, n_boot: int, seed: int) -> Matched:
    """:class:`Matched` of ``store``'s backbones (``table``: the chapter's results table;
    ``seen``: the test images ImageNet-1k trained on)."""
    from vitwatch.analysis import text

    pairs = pair_differences(store, seen, n_boot, seed)
    return Matched(backbone_table(store, table, text.label), pairs, conclusions(pairs))

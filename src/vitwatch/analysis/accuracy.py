"""Accuracy with confidence intervals, and the paired ViT-CNN comparison, as the reader sees
them: the tables of chapter 4's first two sections and the sentences that state their verdict.

The numbers come from :mod:`vitwatch.seeds` (means over head seeds with two-level bootstrap
intervals; paired comparisons with the exact McNemar test [McNemar, 1947]). A difference is
called significant when the McNemar p-value is below the level *and* the paired interval
excludes zero (:func:`significant`): one rule for every sentence that judges it.

The two sections in one call each: :func:`results` (:class:`Results`) and :func:`paired`
(:class:`Paired`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitwatch import catalogue, seeds
from vitwatch.analysis import text


def format_results(df):
    """The results table as a reader sees it: percentages with their CIs."""
    import pandas as pd

    return pd.DataFrame(
        {
            "backbone": df["backbone"].map(text.label),
            "protocol": df["protocol"].map(text.protocol),
            **{
                name: [text.pct(r[k], r[f"{k}_lo"], r[f"{k}_hi"]) for _, r in df.iterrows()]
                for k, name in (
                    ("top1", "top-1 % [95 % CI]"),
                    ("top5", "top-5 %"),
                    ("macro_f1", "macro-F1 %"),
                )
            },
            "val. top-1 %": df["val_top1"].map(text.pct),
            "seed (val.) %": df["seed_reference"].map(text.pct),
        }
    )


def format_pairs(pc):
    """The paired comparisons as a reader sees them: percentages, points, readable p-values."""
    import pandas as pd

    return pd.DataFrame(
        {
            "protocol": pc["protocol"].map(text.protocol),
            "ViT-S/16 top-1 %": pc["vit_top1"].map(text.pct),
            "ResNet-50 top-1 %": pc["cnn_top1"].map(text.pct),
            "ViT minus ResNet, points [95 % CI]": [
                text.points(r["diff"], r["diff_lo"], r["diff_hi"]) for _, r in pc.iterrows()
            ],
            "b: ViT only": pc["vit_only"].astype(int),
            "c: ResNet only": pc["cnn_only"].astype(int),
            "McNemar p": pc["p_value"].map(lambda v: f"{v:.2g}"),
        }
    )


def describe_seed(df) -> str:
    """How protocol A compares with the seed's 83.4 / 76.3 (validation accuracy)."""
    parts = []
    for _, r in df[df["protocol"] == "A"].iterrows():
        ref = r["seed_reference"]
        if ref is None or (isinstance(ref, float) and np.isnan(ref)):
            continue
        inside = r["top1_lo"] <= ref <= r["top1_hi"]
        parts.append(
            f"{text.label(r['backbone'])}: {100 * r['top1']:.1f} % on test vs "
            f"the seed's {100 * ref:.1f} % on validation ("
            + ("within" if inside else "outside")
            + " our 95 % CI)"
        )
    if not parts:
        return "Protocol A did not run, so the seed's numbers cannot be checked here."
    return "Against the seed report (protocol A): " + "; ".join(parts) + "."


def describe_split(dataset) -> str:
    """Where our numbers come from, for the comparison with the seed's validation accuracies."""
    n_tr, n_val, n_te = (int(dataset.get(k, 0)) for k in ("n_train", "n_val", "n_test"))
    share = 100 * n_val / max(n_tr + n_val, 1)
    return (
        f"Our heads are trained on {n_tr:,} images; {n_val:,} more ({share:.0f} % of the "
        f"training split used) are held out as the validation set on which every choice is "
        f"made, and the accuracies above are measured on {n_te:,} test images that no "
        "choice has seen. The seed's figures are validation accuracies of its own split."
    )


def significant(row, alpha: float = 0.05) -> bool:
    """The paired tests agree on a difference: McNemar p < ``alpha`` and the interval of the
    difference excludes zero."""
    return bool(row["p_value"] < alpha and (row["diff_lo"] > 0 or row["diff_hi"] < 0))


def describe_comparison(row, alpha: float = 0.05) -> str:
    """One sentence on ViT vs ResNet under one protocol, true whatever the numbers."""
    p = row["protocol"]
    d = 100 * row["diff"]
    lo, hi = 100 * row["diff_lo"], 100 * row["diff_hi"]
    lead = (
        f"ViT-S/16 ahead by {abs(d):.1f} points"
        if d > 0
        else f"ResNet-50 ahead by {abs(d):.1f} points"
        if d < 0
        else "level"
    )
    verdict = (
        "a difference the paired tests call significant"
        if significant(row, alpha)
        else "a difference the paired tests cannot tell from chance"
    )
    return (
        f"Protocol {p}, {catalogue.PROTOCOLS.get(p, p)}: ViT-S/16 {100 * row['vit_top1']:.1f} % "
        f"vs ResNet-50 {100 * row['cnn_top1']:.1f} %; {lead} "
        f"(95 % CI of ViT minus ResNet [{lo:+.1f}, {hi:+.1f}]), "
        f"{text.images(row['vit_only'])} right for ViT only and {row['cnn_only']} for ResNet "
        f"only, McNemar p = {row['p_value']:.2g}: {verdict} at the 5 % level."
    )


def describe_comparisons(pairs) -> str:
    """A bullet per protocol (:func:`describe_comparison`)."""
    if not len(pairs):
        return "No protocol ran for both backbones."
    return text.bullets(describe_comparison(r) for _, r in pairs.iterrows())


def verdicts(pairs) -> list[str]:
    """The conclusion's line per protocol: the difference and whether it is real."""
    return [
        f"Protocol {r['protocol']}: ViT-S/16 minus ResNet-50 = {100 * r['diff']:+.1f} points "
        f"[{100 * r['diff_lo']:+.1f}, {100 * r['diff_hi']:+.1f}], "
        + ("a real difference" if significant(r) else "not distinguishable from noise")
        + " on this test set."
        for _, r in pairs.iterrows()
    ]


def describe_best(store, table) -> str | None:
    """The run with the best *validation* accuracy, and its test top-1 with its interval
    (None when no trained run exists)."""
    from vitwatch.analysis.store import select_runs

    chosen = select_runs(store, table["backbone"].unique())
    if not chosen:
        return None
    top_run = max(chosen.values(), key=lambda r: (store.runs[r][0].get("val_top1") or 0.0, r))
    top = table.set_index("run").loc[top_run]
    return (
        f"The run with the best validation accuracy is {text.label(top['backbone'])} with "
        f"protocol {top['protocol']} ({catalogue.PROTOCOLS.get(top['protocol'])}); on the test "
        f"set it reaches {100 * top['top1']:.1f} % top-1 [{100 * top['top1_lo']:.1f}, "
        f"{100 * top['top1_hi']:.1f}]."
    )


# --- the two sections, each in one call -----------------------------------------------------
@dataclass
class Results:
    """Every stored run's test metrics: ``table`` (:func:`vitwatch.seeds.results_table`, means
    over head seeds with two-level intervals), ``note`` (how the intervals were made),
    ``sentence`` (against the seed report, and where the numbers come from) and ``best`` (the
    conclusion's line on the run chosen on validation, or None)."""

    table: object
    note: str
    sentence: str
    best: str | None

    @property
    def tables(self) -> list:
        return [format_results(self.table).style.hide(axis="index")]

    @property
    def record(self) -> dict:
        return {"results": self.table.to_dict(orient="records")}


def results(store, n_boot: int, seed: int) -> Results:
    """The section "Results with confidence intervals" of ``store``'s runs."""
    table = seeds.results_table(store, n_boot, seed)
    return Results(
        table,
        seeds.interval_note(int(table["n_seeds"].max())),
        describe_seed(table) + " " + describe_split(store.dataset),
        describe_best(store, table),
    )


@dataclass
class Paired:
    """``vit`` against ``cnn`` per protocol, paired on test images and on head seeds (McNemar
    per seed pair, the largest p-value reported): ``table`` of
    :func:`vitwatch.seeds.paired_comparisons` (empty when no protocol ran both)."""

    table: object

    @property
    def tables(self) -> list:
        return [format_pairs(self.table).style.hide(axis="index")] if len(self.table) else []

    @property
    def sentence(self) -> str:
        return describe_comparisons(self.table)

    @property
    def verdicts(self) -> list[str]:
        return verdicts(self.table)

    @property
    def record(self) -> dict:
        return {"paired": self.table.to_dict(orient="records")}


def paired(store, vit: str, cnn: str, n_boot: int, seed: int) -> Paired:
    """The section "Is ViT really better?"."""
    return Paired(seeds.paired_comparisons(store, vit, cnn, n_boot, seed))

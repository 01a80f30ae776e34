"""What each backbone costs: parameters, multiply-accumulates and measured throughput (03's
``cost.json``) beside the test top-1 of its run chosen on validation accuracy."""

from __future__ import annotations

import pandas as pd

from vitwatch.analysis import text
from vitwatch.analysis.store import select_runs


def table(store, results) -> pd.DataFrame:
    """One row per backbone of ``cost.json``: ``params``, ``gmacs``, ``images_per_second``, and
    ``top1`` / ``protocol`` of its run with the best validation accuracy (``results``: the
    chapter's results table); empty when 03 stored no cost."""
    cost = pd.DataFrame(store.cost).T if store.cost else pd.DataFrame()
    if not len(cost):
        return cost
    chosen = select_runs(store, list(cost.index))  # on validation top-1
    best = results.loc[results["run"].isin(list(chosen.values()))].set_index("backbone")
    return cost.join(best[["top1", "protocol"]], how="left").reset_index(names="backbone")


def styled(cost: pd.DataFrame):
    """The cost table as displayed: labels, millions of parameters, percentages."""
    num = lambda k: pd.to_numeric(cost.get(k), errors="coerce")  # noqa: E731
    shown = pd.DataFrame(
        {
            "backbone": cost["backbone"].map(text.label),
            "params (M)": num("params") / 1e6,
            "GMACs / image": num("gmacs"),
            "images/s": num("images_per_second"),
            "best top-1 %": 100 * pd.to_numeric(cost["top1"], errors="coerce"),
            "protocol": cost["protocol"],
        }
    ).set_index("backbone")
    return shown.style.format(
        {
            "params (M)": "{:.2f}",
            "GMACs / image": "{:.3f}",
            "images/s": "{:.1f}",
            "best top-1 %": "{:.1f}",
        },
        na_rep="–",
    )


def machine(store) -> str:
    """The machine the throughput was measured on (that of the first stored run)."""
    m = next(iter(store.runs.values()))[0].get("machine", {})
    return (
        f"Measured on: {m.get('machine', '?')}, accelerator {m.get('accelerator', '?')}, "
        f"TensorFlow {m.get('tensorflow', '?')}."
    )


def describe(cost: pd.DataFrame, vit: str, cnn: str) -> str:
    """The ViT's MACs and throughput as multiples of the CNN's."""
    if not len(cost) or not {vit, cnn} <= set(cost["backbone"]):
        return "No cost figures to compare."
    v, c = (cost.set_index("backbone").loc[b] for b in (vit, cnn))
    ips_v, ips_c = v.get("images_per_second"), c.get("images_per_second")
    macs = (
        f"ViT-S/16 needs {v.gmacs / c.gmacs:.2f}x the MACs of ResNet-50"
        if pd.notna(v.get("gmacs")) and pd.notna(c.get("gmacs"))
        else "MACs were not counted for this profile's models"
    )
    speed = (
        f"runs at {ips_v / ips_c:.2f}x its throughput on this machine "
        f"({ips_v:.1f} vs {ips_c:.1f} images/s); the ratio of throughputs is the "
        "portable number, not the absolute speeds"
        if pd.notna(ips_v) and pd.notna(ips_c)
        else "throughput was not measured"
    )
    return f"{macs}; the ViT {speed}."

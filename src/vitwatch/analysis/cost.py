"""What each backbone costs: parameters, multiply-accumulates and measured throughput (03's
``cost.json``) beside the test top-1 of its run chosen on validation accuracy; the section in
one call: :func:`section` (:class:`Cost`)."""

from __future__ import annotations

from dataclasses import dataclass

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


NO_COST = "The training chapter stored no cost measurements (cost.json)."


@dataclass
class Cost:
    """The section "Cost": ``table`` (:func:`table`, empty when 03 stored no cost), the
    ``note`` under it (the machine measured on) and the ``vit`` / ``cnn`` compared."""

    table: pd.DataFrame
    note: str
    vit: str
    cnn: str

    @property
    def tables(self) -> list:
        return [styled(self.table)] if len(self.table) else []

    @property
    def plotted(self) -> pd.DataFrame:
        """The backbones of the figure: those with a trained run (may be empty)."""
        if "top1" not in self.table:
            return self.table
        return self.table.dropna(subset=["top1"])

    @property
    def sentence(self) -> str:
        return describe(self.table, self.vit, self.cnn)

    @property
    def record(self) -> dict:
        return {"cost": self.table.to_dict(orient="records") if len(self.table) else {}}


def section(store, results, vit: str, cnn: str) -> Cost:
    """:class:`Cost` of ``store``'s backbones (``results``: the chapter's results table)."""
    costs = table(store, results)
    return Cost(costs, machine(store) if len(costs) else NO_COST, vit, cnn)

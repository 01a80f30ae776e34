"""What a test set can resolve: the smallest paired accuracy difference it detects.

For two classifiers compared on the same ``n`` images, only the share ``psi`` of discordant
images carries information; :func:`vitwatch.stats.min_detectable_difference` solves Connor's
(1987) power equation for the difference. :func:`table` applies it to the test set of every
profile (:func:`profile_test_sizes`) for a few shares of discordant images; :func:`observed`
and :func:`describe` do it for the shares this run's two backbones actually show;
:func:`section` does all of it (:class:`Power`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from vitwatch import catalogue, stats

STANFORD_DOGS_TEST = 8580  # images in the official test split
STANFORD_DOGS_CLASSES = 120


def table(
    test_sizes: Mapping[str, int],
    discordance=(0.05, 0.1, 0.2),
    alpha: float = 0.05,
    power: float = 0.8,
):
    """Smallest detectable paired accuracy difference (points) per test set and discordance
    (:func:`vitwatch.stats.min_detectable_difference`)."""
    import pandas as pd

    rows = []
    for name, n in test_sizes.items():
        row = {"test set": name, "images": int(n)}
        for psi in discordance:
            d = stats.min_detectable_difference(int(n), psi, alpha, power)
            row[f"{100 * psi:.0f} % discordant"] = 100 * d
        rows.append(row)
    return pd.DataFrame(rows).set_index("test set")


def profile_test_sizes() -> dict[str, int]:
    """Test images of each profile, from its YAML: the synthetic stand-in's
    ``synthetic_classes x synthetic_test_per_class``, Stanford Dogs' ``120 x test_per_class``,
    or the whole official test split (8,580) when ``test_per_class`` is 0."""
    import types

    from vitwatch import config

    out = {}
    for name in config.PROFILES:
        # the YAML values over the defaults (no paths resolved)
        p = types.SimpleNamespace(
            **{**{k: v.default for k, v in config.PARAMS.items()}, **config.load_profile(name)}
        )
        if p.dataset == "synthetic":
            out[name] = int(p.synthetic_classes * p.synthetic_test_per_class)
        elif p.test_per_class > 0:
            out[name] = int(STANFORD_DOGS_CLASSES * p.test_per_class)
        else:
            out[name] = STANFORD_DOGS_TEST
    return out


def profiles_table():
    """:func:`table` for the test set of every profile, rows named ``"<profile> profile"``."""
    return table({f"{p} profile": n for p, n in profile_test_sizes().items()})


def styled(power_table):
    """The table as displayed: one decimal for the differences, image counts as they are."""
    return power_table.style.format(
        "{:.1f}", subset=[c for c in power_table.columns if c != "images"]
    )


def observed(store, vit: str, cnn: str) -> tuple[dict[str, float], dict[str, float]]:
    """Per protocol where both backbones ran (first run of each): the share of discordant test
    images, and the smallest difference detectable at that share (where it is not 0)."""
    disc = {
        p: float(
            np.mean(store.correct(store.names(vit, p)[0]) != store.correct(store.names(cnn, p)[0]))
        )
        for p in catalogue.PROTOCOLS
        if store.names(vit, p) and store.names(cnn, p)
    }
    n = store.labels.size
    mdd = {p: stats.min_detectable_difference(n, psi) for p, psi in disc.items() if psi > 0}
    return disc, mdd


def describe(n: int, disc: Mapping[str, float], mdd: Mapping[str, float]) -> str:
    """This run's test-set size, discordant shares and detectable differences."""
    if not mdd:
        return (
            f"This run has {n} test images. No protocol has discordant images between the "
            "two backbones."
        )
    return (
        f"This run has {n} test images. Observed shares of discordant images and the smallest "
        "detectable difference: "
        + "; ".join(
            f"protocol {p}: {100 * disc[p]:.0f} % discordant, {100 * mdd[p]:.1f} points"
            for p in mdd
        )
        + "."
    )


@dataclass
class Power:
    """The section "What each profile's test set can resolve": ``table`` of every profile
    (:func:`profiles_table`), this run's ``n`` test images, the ``discordance`` observed per
    protocol and the ``min_detectable`` difference at that share (:func:`observed`)."""

    table: object
    n: int
    discordance: dict[str, float]
    min_detectable: dict[str, float]

    @property
    def tables(self) -> list:
        return [styled(self.table)]

    @property
    def sentence(self) -> str:
        return describe(self.n, self.discordance, self.min_detectable)

    @property
    def record(self) -> dict:
        return {
            "power": {
                "table": self.table.reset_index().to_dict(orient="records"),
                "discordance": self.discordance,
                "min_detectable": self.min_detectable,
            }
        }


def section(store, vit: str, cnn: str) -> Power:
    """:class:`Power` of ``vit`` against ``cnn`` on ``store``'s test set."""
    disc, mdd = observed(store, vit, cnn)
    return Power(profiles_table(), int(store.labels.size), disc, mdd)

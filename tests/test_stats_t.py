"""Student-t summaries over seeds and paired differences (stats, used by notebook 05)."""

import math

import numpy as np
import pandas as pd
import pytest

from vitwatch import stats


def _runs(table):
    return pd.DataFrame(
        [
            {"arch": a, "n_train": n, "seed": s, "test_accuracy": v}
            for a, n, values in table
            for s, v in enumerate(values)
        ]
    )


def test_t_interval_hand_values():
    # mean 0.6, s = 0.1, t(0.975, df=2) = 4.302653 -> half width 0.1 * 4.302653 / sqrt(3)
    mean, low, high = stats.t_interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6)
    assert (high - mean) == pytest.approx(0.248414, abs=1e-6)
    assert (mean - low) == pytest.approx(0.248414, abs=1e-6)
    # two seeds: t(0.975, 1) = 12.706205, s = 0.05 * sqrt(2)
    mean, low, high = stats.t_interval([0.8, 0.9])
    assert high - mean == pytest.approx(12.706205 * 0.0707107 / math.sqrt(2), abs=1e-5)
    mean, low, high = stats.t_interval([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="no values"):
        stats.t_interval([])


def test_seed_summary_clips_to_bounds():
    s = stats.seed_summary([0.5, 0.6, 0.7])
    assert s["seeds"] == 3 and s["std"] == pytest.approx(0.1)
    assert s["ci_high"] == pytest.approx(0.6 + 0.248414, abs=1e-6)
    wide = stats.seed_summary([0.9, 1.0])  # the interval of an accuracy is clipped to [0, 1]
    assert wide["ci_high"] == 1.0 and wide["ci_low"] == pytest.approx(0.95 - 0.635310, abs=1e-5)
    one = stats.seed_summary([0.7])
    assert one["seeds"] == 1 and all(math.isnan(one[k]) for k in ("std", "ci_low", "ci_high"))


def test_paired_gaps_see_what_separate_intervals_miss():
    runs = _runs(
        [
            ("resnet", 100, [0.80, 0.70, 0.75]),
            ("resnet", 800, [0.90, 0.80, 0.85]),
            ("vit", 100, [0.78, 0.68, 0.73]),
            ("vit", 800, [0.91, 0.79, 0.86]),
        ]
    )
    g = stats.paired_gaps(runs, "resnet", "vit").set_index("n_train")
    assert g.loc[100, "mean"] == pytest.approx(0.02)
    assert g.loc[100, "ci_low"] == pytest.approx(0.02)  # identical differences
    # 800: differences -0.01, +0.01, -0.01 -> mean -1/300, t(0.975, 2) s / sqrt(3)
    half = 4.302653 * np.std([-0.01, 0.01, -0.01], ddof=1) / math.sqrt(3)
    assert g.loc[800, "ci_high"] - g.loc[800, "mean"] == pytest.approx(half, rel=1e-5)
    assert g.loc[0, "pairs"] == 6  # pooled seeds x sizes
    # the separate t-intervals at 100 overlap, the paired one excludes zero
    a = stats.seed_summary([0.80, 0.70, 0.75])
    b = stats.seed_summary([0.78, 0.68, 0.73])
    assert a["ci_low"] < b["ci_high"] and g.loc[100, "ci_low"] > 0
    with pytest.raises(ValueError, match="'cnn'"):
        stats.paired_differences(runs, "cnn", "vit")


def test_paired_differences_drop_unpaired_rows():
    runs = _runs([("a", 10, [0.5, 0.6]), ("b", 10, [0.4])])
    d = stats.paired_differences(runs, "a", "b")
    assert list(d["seed"]) == [0] and d["diff"].iloc[0] == pytest.approx(0.1)

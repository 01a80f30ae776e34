"""Notebook 05's summary over seeds, its sentences (generated from the numbers, paired
verdicts) and its tables."""

import pandas as pd
import pytest
from test_stats_t import _runs  # the runs table of 05 (arch, n_train, seed, accuracy)

from vitwatch.data import small as small_data
from vitwatch.inductive import sentences, tables
from vitwatch.inductive.grid import aggregate
from vitwatch.inductive.recipe import Recipe

# --- aggregation and sentences ---------------------------------------------------------------


def test_aggregate_hand_values():
    runs = _runs(
        [
            ("resnet", 100, [0.5, 0.6, 0.7]),
            ("resnet", 1000, [0.9, 0.9, 0.9]),
            ("vit", 100, [0.2, 0.4, 0.6]),
            ("vit", 1000, [0.8, 0.85, 0.9]),
        ]
    )
    s = aggregate(runs).set_index(["arch", "n_train"])
    assert list(s["seeds"]) == [3, 3, 3, 3]
    assert s.loc[("resnet", 100), "mean"] == pytest.approx(0.6)
    assert s.loc[("resnet", 100), "std"] == pytest.approx(0.1)
    assert s.loc[("resnet", 1000), "ci_low"] == pytest.approx(0.9)  # zero spread
    assert s.loc[("vit", 100), "ci_high"] == pytest.approx(0.4 + 2 * 0.248414, abs=1e-5)
    assert s.loc[("vit", 1000), "mean"] == pytest.approx(0.85)
    assert "train_mean" not in s
    # the interval of an accuracy is clipped to [0, 1]
    wide = aggregate(_runs([("vit", 10, [0.9, 1.0])])).iloc[0]
    assert wide["ci_high"] == 1.0 and wide["ci_low"] == pytest.approx(0.95 - 0.635310, abs=1e-5)


def test_describe_follows_the_numbers():
    cnn_runs = _runs(
        [
            ("resnet", 100, [0.80, 0.82, 0.81]),
            ("resnet", 800, [0.95, 0.96, 0.955]),
            ("vit", 100, [0.50, 0.52, 0.51]),
            ("vit", 800, [0.90, 0.91, 0.905]),
            ("vit_spt_lsa", 100, [0.70, 0.71, 0.705]),
            ("vit_spt_lsa", 800, [0.93, 0.94, 0.935]),
        ]
    )
    cnn_wins = aggregate(cnn_runs)
    text = " ".join(sentences.describe(cnn_wins, cnn_runs))
    assert "ahead of the plain ViT by 30.0 points at 100 images and by 5.0 points at 800" in text
    assert "the gap narrows" in text
    assert "stays below the CNN's at every size" in text
    assert "The interval excludes zero at 2 of 2 sizes (CNN ahead at 100, 800)" in text
    assert "no paired comparison" in " ".join(sentences.describe(cnn_wins))
    assert "ViT + SPT + LSA is above the plain ViT at 2 of 2 sizes" in text
    assert "above the ResNet (CNN) at 0 of 2 sizes" in text

    fits = cnn_wins.assign(train_mean=[0.99, 0.99, 0.95, 0.6, 0.97, 0.95])
    text = " ".join(sentences.describe(fits))
    assert "ViT reaches only 60.0 % training accuracy" in text
    assert "ResNet (CNN) reaches only" not in text
    text = " ".join(sentences.describe(cnn_wins.assign(train_mean=0.95)))
    assert "every model fits its training subset" in text

    vit_runs = _runs(
        [
            ("resnet", 100, [0.80, 0.70]),
            ("resnet", 800, [0.85, 0.84]),
            ("vit", 100, [0.50, 0.60]),
            ("vit", 800, [0.90, 0.80]),
        ]
    )
    vit_wins = aggregate(vit_runs)
    text = " ".join(sentences.describe(vit_wins, vit_runs))
    assert "overtakes the CNN's between 100 and 800 images" in text
    assert "behind the plain ViT by 0.5 points at 800" in text
    assert "The interval excludes zero at none of the sizes" in text
    assert "the ranking is not established" in text


# --- paired verdicts and seeds ---------------------------------------------------------------


def test_paired_verdict_sees_what_separate_intervals_miss():
    runs = _runs(
        [
            ("resnet", 100, [0.80, 0.70, 0.75]),
            ("resnet", 800, [0.90, 0.80, 0.85]),
            ("vit", 100, [0.78, 0.68, 0.73]),
            ("vit", 800, [0.91, 0.79, 0.86]),
        ]
    )
    summary = aggregate(runs).set_index(["arch", "n_train"])
    # the separate t-intervals at 100 overlap, the paired one excludes zero
    assert summary.loc[("resnet", 100), "ci_low"] < summary.loc[("vit", 100), "ci_high"]
    text = sentences.describe_paired(runs)
    assert "excludes zero at 1 of 2 sizes (CNN ahead at 100)" in text
    assert "+2.0 points [+2.0, +2.0] at 100" in text
    v = sentences.verdict(aggregate(runs), runs)
    assert "excludes zero at 1 of 2 sizes" in v and "extrapolat" not in v


def test_verdict_cites_figure_4_as_observed():
    runs = _runs(
        [
            ("resnet", 100, [0.8, 0.82]),
            ("resnet", 800, [0.9, 0.91]),
            ("vit", 100, [0.5, 0.52]),
            ("vit", 800, [0.85, 0.86]),
        ]
    )
    v = sentences.verdict(aggregate(runs), runs)
    assert "9M-image JFT subset in Figure 4" in v and "observes the crossover" in v
    assert "paired 95 % interval of the CNN's lead excludes zero at every size" in v
    assert "pooled over 4 seed x size pairs" in v
    assert "means only" in sentences.verdict(aggregate(runs))


# --- tables and the notebook's other sentences -----------------------------------------------


def test_accuracy_table_and_timing():
    runs = _runs([("resnet", 100, [0.5, 0.7]), ("vit", 100, [0.4])]).assign(
        seconds_per_step=[0.01, 0.03, 0.02], train_seconds=[1.0, 3.0, 2.0]
    )
    t = tables.accuracy_table(aggregate(runs), ["vit", "resnet"])
    assert list(t.columns) == ["ViT", "ResNet (CNN)"] and t.index.name == "training images"
    assert t.loc[100, "ViT"] == "40.0"  # one seed: no interval
    assert t.loc[100, "ResNet (CNN)"].startswith("60.0 [0.0, 100.0]")  # clipped to [0, 1]
    timing = tables.timing_table(runs, ["resnet", "vit"])
    assert timing.loc["ResNet (CNN)", "ms per step (median)"] == pytest.approx(20.0)
    assert timing.loc["ResNet (CNN)", "training seconds, all runs"] == pytest.approx(4.0)


def test_data_and_models_tables():
    digits = small_data.load_digits()
    d = tables.data_table(digits, [100, 1000], 2).iloc[0]
    assert d["image"] == "8x8x1" and d["training sizes"] == "100, 1,000" and d["seeds"] == 2
    m = tables.models_table(digits, ["resnet", "vit"])
    assert m.loc["ViT", "tokens"] == 17 and pd.isna(m.loc["ResNet (CNN)", "tokens"])
    assert m.loc["ResNet (CNN)", "parameters"] == 59_692
    assert "patch_size=2" in m.loc["ViT", "hyperparameters"]


def test_protocol_and_runtime_sentences():
    rec = Recipe(batch_size=32, steps=300, learning_rate=2e-3, shift=1)
    text = sentences.protocol_sentence(rec, 3, 3, 2)
    assert "batch 32, 300 steps per run, peak learning rate 0.002" in text
    assert "horizontal flips" not in text and text.endswith(
        "3 models x 3 sizes x 2 seeds = 18 runs."
    )
    assert "horizontal flips" in sentences.protocol_sentence(Recipe(128, 10, flip=True), 1, 2, 1)
    est = pd.DataFrame(
        [
            {
                "profile": "full",
                "dataset": "cifar10",
                "runs": 60,
                "steps per run": 4000,
                "CPU hours (this machine)": 30.0,
                "CPU source": "reference measurement",
                "GPU hours (estimate)": 0.5,
            }
        ]
    ).set_index("profile")
    runs = pd.DataFrame({"cached": [True, False]})
    text = sentences.runtime_sentences(est, runs)
    assert "(60 runs of 4,000 steps on cifar10): about 30.0 hours" in text
    assert "about 30 minutes on one GPU (estimate)" in text
    assert "1 of 2 runs were read back" in text
    assert "read back" not in sentences.runtime_sentences(est, runs.assign(cached=False))

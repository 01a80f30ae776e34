"""From-scratch training: aggregation against hand values, augmentation, resumable grid,
short trainings that beat chance on the real digits data."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from vitwatch import config, scratch
from vitwatch.data import small as small_data

# --- aggregation ---------------------------------------------------------------------------


def test_t_interval_hand_values():
    # mean 0.6, s = 0.1, t(0.975, df=2) = 4.302653 -> half width 0.1 * 4.302653 / sqrt(3)
    mean, low, high = scratch.t_interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6)
    assert (high - mean) == pytest.approx(0.248414, abs=1e-6)
    assert (mean - low) == pytest.approx(0.248414, abs=1e-6)
    # two seeds: t(0.975, 1) = 12.706205, s = 0.05 * sqrt(2)
    mean, low, high = scratch.t_interval([0.8, 0.9])
    assert high - mean == pytest.approx(12.706205 * 0.0707107 / math.sqrt(2), abs=1e-5)
    mean, low, high = scratch.t_interval([0.7])
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)


def _runs(table):
    return pd.DataFrame(
        [
            {"arch": a, "n_train": n, "seed": s, "test_accuracy": v}
            for a, n, values in table
            for s, v in enumerate(values)
        ]
    )


def test_aggregate_hand_values():
    runs = _runs(
        [
            ("resnet", 100, [0.5, 0.6, 0.7]),
            ("resnet", 1000, [0.9, 0.9, 0.9]),
            ("vit", 100, [0.2, 0.4, 0.6]),
            ("vit", 1000, [0.8, 0.85, 0.9]),
        ]
    )
    s = scratch.aggregate(runs).set_index(["arch", "n_train"])
    assert list(s["seeds"]) == [3, 3, 3, 3]
    assert s.loc[("resnet", 100), "mean"] == pytest.approx(0.6)
    assert s.loc[("resnet", 100), "std"] == pytest.approx(0.1)
    assert s.loc[("resnet", 1000), "ci_low"] == pytest.approx(0.9)  # zero spread
    assert s.loc[("vit", 100), "ci_high"] == pytest.approx(0.4 + 2 * 0.248414, abs=1e-5)
    assert s.loc[("vit", 1000), "mean"] == pytest.approx(0.85)
    assert "train_mean" not in s
    # the interval of an accuracy is clipped to [0, 1]
    wide = scratch.aggregate(_runs([("vit", 10, [0.9, 1.0])])).iloc[0]
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
    cnn_wins = scratch.aggregate(cnn_runs)
    text = " ".join(scratch.describe(cnn_wins, cnn_runs))
    assert "ahead of the plain ViT by 30.0 points at 100 images and by 5.0 points at 800" in text
    assert "the gap narrows" in text
    assert "stays below the CNN's at every size" in text
    assert "The interval excludes zero at 2 of 2 sizes (CNN ahead at 100, 800)" in text
    assert "no paired comparison" in " ".join(scratch.describe(cnn_wins))
    assert "ViT + SPT + LSA is above the plain ViT at 2 of 2 sizes" in text
    assert "above the ResNet (CNN) at 0 of 2 sizes" in text

    fits = cnn_wins.assign(train_mean=[0.99, 0.99, 0.95, 0.6, 0.97, 0.95])
    text = " ".join(scratch.describe(fits))
    assert "ViT reaches only 60.0 % training accuracy" in text
    assert "ResNet (CNN) reaches only" not in text
    text = " ".join(scratch.describe(cnn_wins.assign(train_mean=0.95)))
    assert "every model fits its training subset" in text

    vit_runs = _runs(
        [
            ("resnet", 100, [0.80, 0.70]),
            ("resnet", 800, [0.85, 0.84]),
            ("vit", 100, [0.50, 0.60]),
            ("vit", 800, [0.90, 0.80]),
        ]
    )
    vit_wins = scratch.aggregate(vit_runs)
    text = " ".join(scratch.describe(vit_wins, vit_runs))
    assert "overtakes the CNN's between 100 and 800 images" in text
    assert "behind the plain ViT by 0.5 points at 800" in text
    assert "The interval excludes zero at none of the sizes" in text
    assert "the ranking is not established" in text


# --- data pipeline -------------------------------------------------------------------------


def test_batch_order_is_epochs_of_permutations():
    rec = scratch.Recipe(batch_size=8, steps=10)
    order = scratch.batch_order(20, rec, seed=1)
    assert order.shape == (10, 8)
    flat = order.reshape(-1)
    assert sorted(flat[:20]) == list(range(20)) and sorted(flat[20:40]) == list(range(20))
    np.testing.assert_array_equal(order, scratch.batch_order(20, rec, seed=1))


def test_augment_translates_with_zero_fill():
    import tensorflow as tf

    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6, 1) + 1
    np.testing.assert_array_equal(
        scratch.augment(tf.constant(x), tf.constant([0, 0]), 0, False).numpy(), x
    )
    y = scratch.augment(tf.constant(x), tf.constant([3, 7]), 2, True).numpy()
    for i in range(2):
        ok = False
        for img in (x[i], x[i, :, ::-1]):
            pad = np.pad(img, ((2, 2), (2, 2), (0, 0)))
            ok |= any(
                np.array_equal(y[i], pad[r : r + 6, c : c + 6]) for r in range(5) for c in range(5)
            )
        assert ok, f"image {i} is not a shifted (or flipped) copy"


def test_sizes_are_validated():
    with pytest.raises(ValueError, match="small_train_sizes"):
        scratch.check_sizes([400, 100], 1000)
    with pytest.raises(ValueError, match="small_train_sizes"):
        scratch.check_sizes([100, 5000], 1000)


# --- training ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return small_data.load_digits()


def test_grid_beats_chance_and_resumes(digits, tmp_path):
    """ResNet, 2 sizes x 2 seeds, 20 x ceil(120 / 32) = 80 steps each: far above chance
    (10 %), then fully cached."""
    cfg = config.from_profile(
        "smoke",
        results_dir=str(tmp_path),
        small_train_sizes=[50, 120],
        small_seeds=2,
        small_epochs=20,
    )
    runs = scratch.run_grid(cfg, digits, ["resnet"], progress=False)
    assert len(runs) == 4 and not runs["cached"].any()
    assert runs["steps"].eq(80).all()
    assert runs["test_accuracy"].min() > 0.4, runs
    big = runs[runs["n_train"] == 120]["test_accuracy"].mean()
    assert big > 0.6, runs
    again = scratch.run_grid(cfg, digits, ["resnet"], progress=False)
    assert again["cached"].all()
    np.testing.assert_array_equal(again["test_accuracy"], runs["test_accuracy"])
    # a changed recipe does not reuse the stored run
    path = scratch.run_path(cfg, digits, "resnet", 50, 0)
    stored = json.loads(path.read_text())
    rec = dataclasses.replace(scratch.recipe(cfg, digits), steps=41)
    assert scratch.load_run(path, scratch.spec(digits, "resnet", 50, 0, rec)) is None
    assert scratch.load_run(path, stored["spec"]) is not None
    path.write_text("{truncated")  # a killed write is rerun, not fatal
    assert scratch.load_run(path, stored["spec"]) is None


def test_vit_with_spt_lsa_beats_chance(digits):
    rec = scratch.Recipe(batch_size=64, steps=80, learning_rate=3e-3)
    trainer = scratch.make_trainer("vit_spt_lsa", digits, rec)
    out = scratch.train_one(digits, trainer, 400, seed=0)
    assert out["test_accuracy"] > 0.35, out
    assert out["loss_curve"][-1] < out["loss_curve"][0]
    assert out["steps"] == 80 and out["epochs_of_subset"] == pytest.approx(12.8)


def test_fewer_than_ten_steps(digits):
    """A tiny budget (small_epochs=1, sizes <= batch) gives a shorter loss curve, no crash."""
    trainer = scratch.make_trainer("resnet", digits, scratch.Recipe(batch_size=64, steps=3))
    out = scratch.train_one(digits, trainer, 50, seed=0)
    assert out["steps"] == 3 and len(out["loss_curve"]) == 3


def test_cifar_scale_trainer_with_flips_runs():
    """The CIFAR-10 path (32x32x3, shifts of 4, flips) on random images: finite losses."""
    rec = scratch.Recipe(batch_size=8, steps=3, shift=4, flip=True)
    trainer = scratch.Trainer("resnet", "cifar10", 32, 3, 10, rec)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 32, 32, 3)).astype(np.float32)
    losses = trainer.fit(x, rng.integers(0, 10, 20), seed=0)
    assert losses.shape == (3,) and np.all(np.isfinite(losses))
    assert trainer.predict(x[:5]).shape == (5, 10)


def test_runtime_estimates(monkeypatch):
    # 3 sizes up to 64 images, batch 32 -> 2 epochs x 2 steps = 4 steps per run, 2 seeds
    assert scratch.estimate_seconds({"a": 0.5, "b": 1.0}, [16, 32, 64], 2, 2, 32) == pytest.approx(
        3 * 2 * 4 * 1.5
    )
    assert scratch.format_hours(0.25) == "about 15 minutes"
    assert scratch.format_hours(3.21) == "about 3.2 hours"
    assert scratch.format_hours(150) == "about 6 days"
    monkeypatch.setenv("VITWATCH_FIGURES_DIR", "/tmp/figures-of-this-run")
    est = scratch.profile_estimates(
        {"resnet": 0.01, "vit": 0.02, "vit_spt_lsa": 0.02}, "digits"
    ).set_index("profile")
    import os

    assert os.environ["VITWATCH_FIGURES_DIR"] == "/tmp/figures-of-this-run"  # left alone
    smoke = config.from_profile("smoke")
    steps = smoke.small_epochs * math.ceil(max(smoke.small_train_sizes) / 32)
    runs = len(smoke.small_train_sizes) * smoke.small_seeds
    assert est.loc["smoke", "CPU hours (this machine)"] == pytest.approx(runs * steps * 0.05 / 3600)
    assert est.loc["full", "CPU source"] == "reference measurement"
    assert est.loc["full", "GPU hours (estimate)"] > est.loc["quick", "GPU hours (estimate)"]


# --- paired verdicts and seeds ---------------------------------------------------------------


def test_paired_gaps_see_what_separate_intervals_miss():
    runs = _runs(
        [
            ("resnet", 100, [0.80, 0.70, 0.75]),
            ("resnet", 800, [0.90, 0.80, 0.85]),
            ("vit", 100, [0.78, 0.68, 0.73]),
            ("vit", 800, [0.91, 0.79, 0.86]),
        ]
    )
    g = scratch.paired_gaps(runs, "resnet", "vit").set_index("n_train")
    assert g.loc[100, "mean"] == pytest.approx(0.02)
    assert g.loc[100, "ci_low"] == pytest.approx(0.02)  # identical differences
    # 800: differences -0.01, +0.01, -0.01 -> mean -1/300, t(0.975, 2) s / sqrt(3)
    half = 4.302653 * np.std([-0.01, 0.01, -0.01], ddof=1) / math.sqrt(3)
    assert g.loc[800, "ci_high"] - g.loc[800, "mean"] == pytest.approx(half, rel=1e-5)
    assert g.loc[0, "pairs"] == 6  # pooled seeds x sizes
    summary = scratch.aggregate(runs).set_index(["arch", "n_train"])
    # the separate t-intervals at 100 overlap, the paired one excludes zero
    assert summary.loc[("resnet", 100), "ci_low"] < summary.loc[("vit", 100), "ci_high"]
    text = scratch.describe_paired(runs)
    assert "excludes zero at 1 of 2 sizes (CNN ahead at 100)" in text
    assert "+2.0 points [+2.0, +2.0] at 100" in text
    v = scratch.verdict(scratch.aggregate(runs), runs)
    assert "excludes zero at 1 of 2 sizes" in v and "extrapolat" not in v
    with pytest.raises(ValueError, match="'cnn'"):
        scratch.paired_differences(runs, "cnn", "vit")


def test_verdict_cites_figure_4_as_observed():
    runs = _runs(
        [
            ("resnet", 100, [0.8, 0.82]),
            ("resnet", 800, [0.9, 0.91]),
            ("vit", 100, [0.5, 0.52]),
            ("vit", 800, [0.85, 0.86]),
        ]
    )
    v = scratch.verdict(scratch.aggregate(runs), runs)
    assert "9M-image JFT subset in Figure 4" in v and "observes the crossover" in v
    assert "paired 95 % interval of the CNN's lead excludes zero at every size" in v
    assert "pooled over 4 seed x size pairs" in v
    assert "means only" in scratch.verdict(scratch.aggregate(runs))


@pytest.mark.parametrize("arch", ["resnet", "vit", "vit_spt_lsa", "vit_small_patch"])
def test_two_seeds_give_different_models(arch):
    """The seed reaches every source of randomness: initial weights, subset, batch order,
    augmentation, hence the trained model (notebook 05's smoke run once showed equal
    accuracies for two seeds of ViT + SPT + LSA: a tie of counts, 359 of 450 test images,
    between models that disagree on 118 of them)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 8, 8, 1)).astype(np.float32)
    y = np.arange(24) % 10
    rec = scratch.Recipe(batch_size=8, steps=3, shift=1)
    trainer = scratch.Trainer(arch, "digits", 8, 1, 10, rec)
    models = {}
    for seed in (0, 1):
        trainer.fit(x, y, seed)
        models[seed] = (
            [w.copy() for w in trainer._inits[seed]],
            [w.copy() for w in trainer.model.get_weights()],
            trainer.predict(x),
        )
    # every randomly initialised weight (not the constant ones: biases, norms, class token)
    random = [(a, b) for a, b in zip(models[0][0], models[1][0]) if a.size > 1 and a.std() > 0]
    assert random and all(not np.allclose(a, b) for a, b in random)  # initialisation
    assert any(not np.allclose(a, b) for a, b in zip(models[0][1], models[1][1]))
    assert not np.allclose(models[0][2], models[1][2])  # the trained model
    # same seed, same model: the difference comes from the seed alone
    trainer.fit(x, y, 0)
    np.testing.assert_allclose(trainer.predict(x), models[0][2], rtol=1e-4, atol=1e-4)


def test_seed_drives_subset_order_and_augmentation():
    import tensorflow as tf

    labels = np.arange(200) % 10
    assert set(small_data.subset(labels, 50, 0)) != set(small_data.subset(labels, 50, 1))
    rec = scratch.Recipe(batch_size=8, steps=5)
    assert not np.array_equal(scratch.batch_order(40, rec, 0), scratch.batch_order(40, rec, 1))
    x = tf.constant(np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype(np.float32))
    a0 = scratch.augment(x, tf.constant([0, 3]), 2, True).numpy()
    a1 = scratch.augment(x, tf.constant([1, 3]), 2, True).numpy()
    assert not np.allclose(a0, a1)
    np.testing.assert_array_equal(a0, scratch.augment(x, tf.constant([0, 3]), 2, True).numpy())

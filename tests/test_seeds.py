"""Seed-aware intervals: the two-level bootstrap against its closed-form variance, pairing,
macro-F1 against scikit-learn, and the analysis tables built from a store with seeds."""

import numpy as np
import pytest
from fake_results import make_store
from sklearn.metrics import f1_score

from vitwatch import analysis, seeds, stats


def _correct(s=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    p_image = rng.uniform(0.3, 0.95, n)  # image difficulty
    shift = rng.normal(0, 0.08, (s, 1))  # seed effect
    return (rng.random((s, n)) < np.clip(p_image + shift, 0, 1)).astype(float)


def test_bootstrap_variance_matches_closed_form():
    c = _correct()
    reps = seeds._replicates(c, 6000, seed=1)
    assert reps.mean() == pytest.approx(c.mean(), abs=0.003)
    assert reps.var() == pytest.approx(seeds.bootstrap_variance(c), rel=0.1)


def test_closed_form_by_brute_force_on_a_tiny_case():
    """Enumerate every (seed draw, image draw) of a 2 x 3 case: the exact bootstrap variance."""
    import itertools

    c = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    means = [
        c[np.ix_(s, i)].mean()
        for s in itertools.product(range(2), repeat=2)
        for i in itertools.product(range(3), repeat=3)
    ]
    assert np.var(means) == pytest.approx(seeds.bootstrap_variance(c), rel=1e-12)


def test_one_seed_reduces_to_the_image_bootstrap():
    c = _correct(s=1, n=300)
    b = seeds.seed_bootstrap(c, 4000, seed=2)
    ref = stats.bootstrap_mean(c[0], 4000, seed=3)
    assert b["mean"] == ref[0] and np.isnan(b["seed_sd"]) and b["n_seeds"] == 1
    assert b["lo"] == pytest.approx(ref[1], abs=0.01) and b["hi"] == pytest.approx(ref[2], abs=0.01)


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(4)
    same = np.repeat((rng.random((1, 500)) < 0.7).astype(float), 3, axis=0)
    spread = same.copy()
    spread[0, :60] = 1.0  # seeds now disagree
    spread[2, 100:200] = 0.0
    w = lambda d: d["hi"] - d["lo"]  # noqa: E731
    assert seeds.seed_bootstrap(same, 2000)["seed_sd"] == 0.0
    assert w(seeds.seed_bootstrap(spread, 2000)) > 1.3 * w(seeds.seed_bootstrap(same, 2000))


def test_pairing_on_images_and_seeds_narrows_the_difference():
    a = _correct(seed=5)
    b = a.copy()
    b[:, :20] = 1 - b[:, :20]  # b differs from a on 20 images only
    d = seeds.paired_seed_diff(a, b, 2000)
    assert d["mean"] == pytest.approx((a - b).mean())
    unpaired = np.sqrt(seeds.bootstrap_variance(a) + seeds.bootstrap_variance(b))
    assert (d["hi"] - d["lo"]) < 0.5 * 3.92 * unpaired
    with pytest.raises(ValueError, match="same"):
        seeds.paired_seed_diff(a, b[:2], 10)


def test_macro_f1_point_and_replicates_match_sklearn():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 5, 60)
    probs = rng.random((2, 60, 5))
    m = seeds.seed_metrics(probs, labels, 50, seed=0)
    ref = np.mean([f1_score(labels, p.argmax(1), average="macro") for p in probs])
    assert m["macro_f1"][0] == pytest.approx(ref)
    # one replicate by hand: the draws of hierarchical_indices, sklearn on each drawn seed
    preds = probs.argmax(2)
    reps = seeds._macro_f1_reps(preds, labels, 5, 3, seed=9)
    ((s_idx, i_idx),) = list(seeds.hierarchical_indices(2, 60, 3, seed=9))
    for r in range(3):
        hand = np.mean(
            [f1_score(labels[i_idx[r]], preds[s][i_idx[r]], average="macro") for s in s_idx[r]]
        )
        assert reps[r] == pytest.approx(hand)
    top1 = np.mean([(p.argmax(1) == labels).mean() for p in probs])
    assert m["top1"][0] == pytest.approx(top1) and m["top1"][1] <= top1 <= m["top1"][2]


def test_tables_have_the_analysis_columns_and_use_every_seed(tmp_path):
    store = analysis.store.load(make_store(tmp_path / "results", tmp_path / "img", n_seeds=2))
    t = seeds.results_table(store, 200, 0)
    assert {"top1_lo", "top5_hi", "macro_f1", "val_top1", "seed_reference"} <= set(t.columns)
    assert list(t["protocol"]) == sorted(t["protocol"])  # A, B, C, Z
    row = t.set_index("run").loc["A_vit_s16"]
    arrays = store.runs["A_vit_s16"][1]
    expect = np.mean([(p.argmax(1) == store.labels).mean() for p in arrays["seed_test_probs"]])
    assert row["top1"] == pytest.approx(expect) and row["n_seeds"] == 2
    assert t.set_index("run").loc["Z_vit_s16", "n_seeds"] == 1
    pairs = seeds.paired_comparisons(store, "vit_s16", "resnet50", 200, 0)
    assert {"vit_top1", "cnn_top1", "vit_only", "cnn_only", "p_value"} <= set(pairs.columns)
    a = pairs.set_index("protocol").loc["A"]
    assert a["n_seeds"] == 2 and a["diff_lo"] <= a["diff"] <= a["diff_hi"]
    ca = seeds.correct(arrays["seed_test_probs"], store.labels)
    cb = seeds.correct(store.runs["A_resnet50"][1]["seed_test_probs"], store.labels)
    p = [stats.mcnemar_exact(x, y)["p_value"] for x, y in zip(ca, cb)]
    assert a["p_value"] == max(p)
    analysis.accuracy.format_results(t), analysis.accuracy.format_pairs(pairs)  # as displayed

"""vitwatch.stats against known values: scipy.stats.binomtest, sklearn.metrics, simulations."""

import numpy as np
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from vitwatch import stats


def _fake_predictions(n=600, k=12, acc=0.7, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    right = rng.random(n) < acc
    logits[np.arange(n), labels] += np.where(right, 4.0, -4.0)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs.astype(np.float32), labels


def test_topk_matches_sklearn():
    probs, labels = _fake_predictions()
    for k in (1, 3, 5):
        ours = stats.topk_correct(probs, labels, k).mean()
        ref = skm.top_k_accuracy_score(labels, probs, k=k, labels=np.arange(probs.shape[1]))
        assert ours == pytest.approx(ref)


def test_macro_f1_matches_sklearn_with_missing_classes():
    probs, labels = _fake_predictions(n=200, k=15, acc=0.5, seed=1)
    preds = probs.argmax(1)
    labels[labels == 3] = 4  # class 3 never true
    preds[preds == 7] = 8  # class 7 never predicted
    ref = skm.f1_score(labels, preds, average="macro", zero_division=0)
    assert stats.macro_f1(labels, preds, 15) == pytest.approx(ref)


def test_per_class_metrics_match_sklearn():
    probs, labels = _fake_predictions(n=300, k=8, acc=0.6, seed=2)
    preds = probs.argmax(1)
    df = stats.per_class_metrics(labels, preds, [f"c{i}" for i in range(8)])
    p, r, f, s = skm.precision_recall_fscore_support(
        labels, preds, labels=np.arange(8), zero_division=0
    )
    np.testing.assert_allclose(df["precision"], p)
    np.testing.assert_allclose(df["recall"], r)
    np.testing.assert_allclose(df["f1"], f)
    np.testing.assert_array_equal(df["support"], s)


def test_confusion_matrix_matches_sklearn():
    probs, labels = _fake_predictions(n=300, k=8, seed=3)
    preds = probs.argmax(1)
    np.testing.assert_array_equal(
        stats.confusion_matrix(labels, preds, 8),
        skm.confusion_matrix(labels, preds, labels=np.arange(8)),
    )


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (5, 12), (30, 31), (40, 10), (0, 9)])
def test_mcnemar_exact_matches_binomtest(b, c):
    rest = 50
    a = np.r_[np.ones(b, bool), np.zeros(c, bool), np.ones(rest, bool), np.zeros(rest, bool)]
    o = np.r_[np.zeros(b, bool), np.ones(c, bool), np.ones(rest, bool), np.zeros(rest, bool)]
    res = stats.mcnemar_exact(a, o)
    assert (res["a_only"], res["b_only"]) == (b, c)
    ref = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert res["p_value"] == pytest.approx(ref, rel=1e-10)


def test_mcnemar_known_value():
    # b = 10, c = 0: p = 2 * 0.5**10
    a = np.r_[np.ones(10, bool), np.ones(5, bool)]
    b = np.r_[np.zeros(10, bool), np.ones(5, bool)]
    assert stats.mcnemar_exact(a, b)["p_value"] == pytest.approx(2 * 0.5**10)


def test_bootstrap_ci_covers_and_matches_binomial_width():
    probs, labels = _fake_predictions(n=2000, k=10, acc=0.7, seed=4)
    out = stats.bootstrap_metrics(probs, labels, n_boot=2000, seed=0)
    acc, lo, hi = out["top1"]
    assert lo < acc < hi
    # Normal approximation of a proportion: half-width ~ 1.96 sqrt(p (1 - p) / n).
    expected = 1.96 * np.sqrt(acc * (1 - acc) / 2000)
    assert (hi - lo) / 2 == pytest.approx(expected, rel=0.15)
    for name in ("top5", "macro_f1"):
        v, l, h = out[name]
        assert l <= v <= h and h - l > 0
    assert out["top5"][0] >= acc


def test_bootstrap_is_seeded_and_chunking_invariant(monkeypatch):
    probs, labels = _fake_predictions(n=300, seed=5)
    a = stats.bootstrap_metrics(probs, labels, n_boot=300, seed=7)
    b = stats.bootstrap_metrics(probs, labels, n_boot=300, seed=7)
    c = stats.bootstrap_metrics(probs, labels, n_boot=300, seed=8)
    assert a == b and a != c


def test_bootstrap_macro_f1_vectorised_equals_loop():
    probs, labels = _fake_predictions(n=150, k=9, acc=0.5, seed=6)
    preds = probs.argmax(1)
    idx = next(stats.bootstrap_indices(150, 20, seed=3))
    offsets = (np.arange(20, dtype=np.int64) * 9)[:, None]
    tp, denom = stats._f1_counts(labels[idx], preds[idx], 9, offsets)
    vec = stats._macro_f1_from_counts(tp, denom)
    loop = [skm.f1_score(labels[i], preds[i], average="macro", zero_division=0) for i in idx]
    np.testing.assert_allclose(vec, loop)


def test_paired_diff_ci():
    rng = np.random.default_rng(0)
    a = rng.random(3000) < 0.80
    b = a.copy()
    flip = rng.random(3000) < 0.10
    b[flip] = ~b[flip]  # b is a with 10 % of answers flipped
    d, lo, hi = stats.paired_bootstrap_diff(a, b, n_boot=1000, seed=0)
    assert d == pytest.approx(a.mean() - b.mean())
    assert lo < d < hi
    # paired: width driven by the discordant pairs only, much narrower than unpaired
    unpaired = 2 * 1.96 * np.sqrt(2 * 0.8 * 0.2 / 3000)
    assert hi - lo < 0.8 * unpaired
    with pytest.raises(ValueError, match="same test images"):
        stats.paired_bootstrap_diff(a, b[:-1])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        stats.bootstrap_metrics(np.zeros(5), np.zeros(5, int))
    with pytest.raises(ValueError, match="labels must lie"):
        stats.topk_correct(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        stats.topk_correct(np.full((2, 2), np.nan), np.array([0, 1]))


def test_cluster_order_groups_confused_classes():
    # 12 classes in 4 hidden groups of 3, confused within a group only; shuffled labels.
    rng = np.random.default_rng(0)
    k = 12
    cm = np.diag(np.full(k, 50))
    for g in range(4):
        for i in range(3 * g, 3 * g + 3):
            for j in range(3 * g, 3 * g + 3):
                if i != j:
                    cm[i, j] = rng.integers(3, 10)
    perm = rng.permutation(k)
    shuffled = cm[np.ix_(perm, perm)]
    order = stats.cluster_order(shuffled)
    assert sorted(order) == list(range(k))
    assert stats.block_score(shuffled, order) == pytest.approx(1.0)
    assert stats.block_score(shuffled, np.arange(k)) < 0.7


def test_most_confused_pairs():
    cm = np.array([[5, 0, 3], [1, 4, 0], [0, 7, 2]])
    assert stats.most_confused_pairs(cm, 2) == [(2, 1, 7), (0, 2, 3)]
    assert stats.most_confused_pairs(np.eye(3, dtype=int), 5) == []


def test_bootstrap_mean_matches_t_interval():
    rng = np.random.default_rng(1)
    v = rng.normal(0.3, 1.0, 4000)
    m, lo, hi = stats.bootstrap_mean(v, n_boot=2000, seed=0)
    ref = sps.t.interval(0.95, v.size - 1, loc=v.mean(), scale=sps.sem(v))
    assert m == pytest.approx(v.mean())
    assert lo == pytest.approx(ref[0], abs=0.01) and hi == pytest.approx(ref[1], abs=0.01)
    with pytest.raises(ValueError, match="non-empty"):
        stats.bootstrap_mean([])


def test_min_detectable_difference_matches_hand_formula_and_simulated_power():
    from scipy import stats as sps

    # large n: delta^2 << psi, so delta ~ (z_0.975 + z_0.8) sqrt(psi / n) = 2.8016 sqrt(psi / n)
    d = stats.min_detectable_difference(8580, 0.15)
    assert d == pytest.approx(
        (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * np.sqrt(0.15 / 8580), rel=0.01
    )
    # solves Connor's (1987) sample-size equation exactly
    n, psi = 600, 0.2
    d = stats.min_detectable_difference(n, psi)
    n_back = (1.959964 * np.sqrt(psi) + 0.841621 * np.sqrt(psi - d**2)) ** 2 / d**2
    assert n_back == pytest.approx(n, rel=1e-4)
    # at that difference the exact McNemar test has about 80 % power (it is slightly
    # conservative), at half of it far less
    assert stats.mcnemar_power(n, psi, d, n_sim=4000) == pytest.approx(0.8, abs=0.05)
    assert stats.mcnemar_power(n, psi, d / 2, n_sim=4000) < 0.4
    # fewer images or more disagreement: a larger detectable difference
    assert (
        stats.min_detectable_difference(100, psi) > d > stats.min_detectable_difference(8580, psi)
    )
    assert stats.min_detectable_difference(n, 0.4) > d
    assert np.isnan(stats.min_detectable_difference(3, 0.05))
    with pytest.raises(ValueError, match="discordance"):
        stats.min_detectable_difference(100, 0.0)


def test_mcnemar_power_has_its_size_under_the_null():
    # the exact test never exceeds its level (up to simulation noise) when diff = 0
    assert stats.mcnemar_power(300, 0.2, 0.0, n_sim=4000) <= 0.06
    assert stats.mcnemar_power(300, 0.2, 0.2, n_sim=500) == 1.0  # all one way

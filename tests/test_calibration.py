"""Calibration metrics against independent implementations (scikit-learn, scipy, a hand case)."""

import numpy as np
import pytest
from scipy import optimize
from scipy.special import log_softmax, softmax
from sklearn.metrics import brier_score_loss, log_loss

from vitwatch.analysis import calibration


def _overconfident(n=2000, k=5, temp=3.0, seed=0):
    """Labels drawn from softmax(z); the model reports softmax(temp * z): over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, k))
    true_p = softmax(z, axis=1)
    labels = np.array([rng.choice(k, p=p) for p in true_p])
    return softmax(temp * z, axis=1), labels


def test_ece_hand_checked_case():
    # 4 images, 2 classes. Confidences 0.9, 0.9 (one right, one wrong) -> bin (13/15, 14/15]:
    # acc 0.5, conf 0.9, weight 1/2; confidences 0.6 (right), 0.55 (right) -> bin (8/15, 9/15]
    # holds 0.6 (= 9/15, right-closed) and 0.55: acc 1, conf 0.575, weight 1/2.
    # ECE = 0.5 * 0.4 + 0.5 * 0.425 = 0.4125.
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.45, 0.55]])
    labels = np.array([0, 0, 0, 1])
    assert calibration.ece(probs, labels) == pytest.approx(0.4125)
    r = calibration.reliability(probs, labels)
    assert r["count"].sum() == 4 and r["count"][13] == 2 and r["count"][8] == 2
    assert np.isnan(r["accuracy"][0])  # empty bins are NaN, not 0


def test_ece_zero_for_a_perfectly_calibrated_bin_and_one_bin_case():
    # one bin: ECE = |accuracy - mean confidence|
    probs = np.array([[0.7, 0.3]] * 10)
    labels = np.array([0] * 7 + [1] * 3)
    assert calibration.ece(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert calibration.ece(probs, labels, n_bins=1) == pytest.approx(0.0, abs=1e-12)
    labels = np.array([0] * 5 + [1] * 5)
    assert calibration.ece(probs, labels, n_bins=1) == pytest.approx(0.2)


def test_nll_and_brier_match_sklearn():
    probs, labels = _overconfident(500, 4)
    assert calibration.nll(probs, labels) == pytest.approx(
        log_loss(labels, probs, labels=range(4)), rel=1e-9
    )
    # multi-class Brier = sum over classes of the one-vs-rest binary Brier scores
    ovr = sum(brier_score_loss(labels == k, probs[:, k]) for k in range(4))
    assert calibration.brier(probs, labels) == pytest.approx(ovr, rel=1e-9)


def test_temperature_matches_scipy_and_lowers_nll():
    probs, labels = _overconfident(3000, 5, temp=3.0)
    t = calibration.fit_temperature(probs, labels)
    logz = np.log(probs)

    def nll(temp):
        return -np.mean(log_softmax(logz / temp, axis=1)[np.arange(labels.size), labels])

    ref = optimize.minimize_scalar(
        nll, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-8}
    ).x
    assert t == pytest.approx(ref, rel=1e-4)
    assert t == pytest.approx(3.0, rel=0.15)  # recovers the over-confidence
    after = calibration.apply_temperature(probs, t)
    assert calibration.nll(after, labels) < calibration.nll(probs, labels)
    assert calibration.ece(after, labels) < calibration.ece(probs, labels)
    np.testing.assert_array_equal(after.argmax(1), probs.argmax(1))  # accuracy unchanged
    np.testing.assert_allclose(after.sum(1), 1.0)


def test_temperature_one_for_calibrated_probabilities():
    probs, labels = _overconfident(4000, 5, temp=1.0, seed=1)
    assert calibration.fit_temperature(probs, labels) == pytest.approx(1.0, abs=0.12)


def test_bootstrap_intervals_contain_the_point_and_match_metrics():
    probs, labels = _overconfident(400, 4)
    m = calibration.bootstrap(probs, labels, n_boot=200, seed=0)
    assert m["ece"][0] == pytest.approx(calibration.ece(probs, labels))
    assert m["nll"][0] == pytest.approx(calibration.nll(probs, labels))
    for v, lo, hi in m.values():
        assert lo <= v <= hi and hi > lo
    # a resample ECE equals ece() recomputed on the resampled images
    rng_idx = next(calibration.stats.bootstrap_indices(400, 1, seed=3))[0]
    direct = calibration.ece(probs[rng_idx], labels[rng_idx])
    m1 = calibration.bootstrap(probs[rng_idx], labels[rng_idx], n_boot=1)
    assert m1["ece"][0] == pytest.approx(direct)


def test_table_fits_on_validation_only():
    tp, tl = _overconfident(300, 4, seed=2)
    vp, vl = _overconfident(300, 4, seed=3)
    df = calibration.table({"r": (tp, tl, vp, vl)}, n_boot=50)
    assert list(df["state"]) == ["before", "after"]
    assert df["T"].iloc[1] == pytest.approx(calibration.fit_temperature(vp, vl))
    assert df["top1"].iloc[0] == df["top1"].iloc[1]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="labels"):
        calibration.ece(np.full((3, 2), 0.5), np.array([0, 1]))
    with pytest.raises(ValueError, match="temperature"):
        calibration.apply_temperature(np.full((3, 2), 0.5), 0.0)
    with pytest.raises(ValueError, match="probabilities"):
        calibration.ece(np.full((2, 2), 2.0), np.array([0, 1]))

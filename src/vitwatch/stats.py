"""Statistics for comparing classifiers on one test set.

Holds: percentile bootstrap confidence intervals (seeded, vectorised over resamples) for top-1,
top-5 and macro-F1 [Efron & Tibshirani, 1993]; the exact McNemar test, a two-sided binomial test
on the discordant pairs [McNemar, 1947]; a paired bootstrap CI of an accuracy difference;
per-class precision / recall / F1 (as ``sklearn.metrics.precision_recall_fscore_support``);
a confusion matrix and an ordering of its classes by hierarchical clustering so that confusions
sit next to each other on the diagonal; the smallest accuracy difference a paired test set can
detect (:func:`min_detectable_difference`, Connor, 1987) and the simulated power of the exact
McNemar test; Student-t intervals of a mean over seeds and of paired differences
(notebook 05: :func:`seed_summary`, :func:`paired_gaps`).

Conventions: ``probs`` is ``(N, K)`` (scores or probabilities), ``labels`` and ``preds`` are
``(N,)`` ints in ``[0, K)``; a "correct" vector is ``(N,)`` bool. Every random function takes a
``seed`` and returns the same numbers for the same seed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats as _sps
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

if TYPE_CHECKING:
    import pandas as pd

# Resamples drawn at once: bounds memory at chunk * N int32 indices (~70 MB for N = 8,580).
_CHUNK = 1000


# --- inputs ----------------------------------------------------------------------------------
def _check_probs(probs, labels, name: str = "probs") -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"{name} must be (N, K), got shape {probs.shape}")
    if labels.shape != (probs.shape[0],):
        raise ValueError(
            f"labels must be (N,) with N = {probs.shape[0]} rows of {name}, "
            f"got shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {probs.shape[1]}), got range [{labels.min()}, {labels.max()}]"
        )
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return probs, labels.astype(np.int64)


def _check_pair(a, b, names=("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a).astype(bool)
    b = np.asarray(b).astype(bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must be (N,) vectors of the same test "
            f"images, got shapes {a.shape} and {b.shape}"
        )
    return a, b


# --- point metrics ---------------------------------------------------------------------------
def topk_correct(probs, labels, k: int = 1) -> np.ndarray:
    """(N,) bool: the true class is among the ``k`` highest scores (ties: first index wins)."""
    probs, labels = _check_probs(probs, labels)
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # (N, k)
    return (top == labels[:, None]).any(axis=1)


def _f1_counts(labels, preds, n_classes: int, offsets=None):
    """Per-class TP and (TP + FN) + (TP + FP) counts, optionally for many resamples at once.

    With ``offsets`` (R, 1) = r * K, labels / preds are (R, N) and counts come back (R, K).
    """
    hit = labels == preds
    if offsets is None:
        tp = np.bincount(labels[hit], minlength=n_classes)
        denom = np.bincount(labels, minlength=n_classes) + np.bincount(preds, minlength=n_classes)
        return tp, denom
    r = labels.shape[0]
    size = r * n_classes
    tp = np.bincount((labels + offsets)[hit], minlength=size).reshape(r, n_classes)
    denom = (
        np.bincount((labels + offsets).ravel(), minlength=size)
        + np.bincount((preds + offsets).ravel(), minlength=size)
    ).reshape(r, n_classes)
    return tp, denom


def _macro_f1_from_counts(tp, denom) -> np.ndarray:
    # F1_k = 2 TP / (2 TP + FP + FN); classes absent from both labels and predictions
    # (denominator 0) are left out of the mean, as sklearn's f1_score(average="macro") does.
    present = denom > 0
    f1 = np.where(present, 2.0 * tp / np.maximum(denom, 1), 0.0)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def macro_f1(labels, preds, n_classes: int | None = None) -> float:
    """Macro-averaged F1 over the classes present in labels or predictions."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    k = int(n_classes or max(labels.max(), preds.max()) + 1)
    return float(_macro_f1_from_counts(*_f1_counts(labels, preds, k)))


# --- bootstrap -------------------------------------------------------------------------------
def bootstrap_indices(n: int, n_boot: int, seed: int = 0):
    """Yield (r, n) int32 index blocks, ``n_boot`` resamples with replacement in all."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        r = min(_CHUNK, n_boot - done)
        yield rng.integers(0, n, size=(r, n), dtype=np.int32)
        done += r


def percentile_ci(samples, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates."""
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(np.asarray(samples), [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def bootstrap_metrics(
    probs, labels, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float, float]]:
    """Top-1, top-5 and macro-F1 with percentile bootstrap CIs: ``{metric: (value, lo, hi)}``.

    All three metrics are computed on the same resamples of test images (one set of indices).
    """
    probs, labels = _check_probs(probs, labels)
    if n_boot < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_boot}")
    n, k = probs.shape
    preds = probs.argmax(axis=1)
    c1 = topk_correct(probs, labels, 1)
    c5 = topk_correct(probs, labels, 5)
    reps = {"top1": [], "top5": [], "macro_f1": []}
    for idx in bootstrap_indices(n, n_boot, seed):  # (r, N)
        reps["top1"].append(c1[idx].mean(axis=1))
        reps["top5"].append(c5[idx].mean(axis=1))
        offsets = (np.arange(idx.shape[0], dtype=np.int64) * k)[:, None]  # (r, 1)
        tp, denom = _f1_counts(labels[idx], preds[idx], k, offsets)
        reps["macro_f1"].append(_macro_f1_from_counts(tp, denom))
    point = {"top1": c1.mean(), "top5": c5.mean(), "macro_f1": macro_f1(labels, preds, k)}
    return {m: (float(point[m]), *percentile_ci(np.concatenate(reps[m]), level)) for m in reps}


def bootstrap_mean(
    values, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of per-image values (e.g. a paired difference) and its percentile CI."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"bootstrap_mean: values must be a non-empty (N,) vector, got {v.shape}")
    reps = [v[idx].mean(axis=1) for idx in bootstrap_indices(v.size, n_boot, seed)]
    return (float(v.mean()), *percentile_ci(np.concatenate(reps), level))


def paired_bootstrap_diff(
    correct_a, correct_b, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Accuracy(a) - accuracy(b) and its percentile CI, resampling test images jointly."""
    a, b = _check_pair(correct_a, correct_b)
    d = a.astype(np.float64) - b  # (N,) in {-1, 0, 1}
    reps = [d[idx].mean(axis=1) for idx in bootstrap_indices(d.size, n_boot, seed)]
    return (float(d.mean()), *percentile_ci(np.concatenate(reps), level))


# --- paired test -----------------------------------------------------------------------------
def mcnemar_exact(correct_a, correct_b) -> dict[str, float]:
    """Exact McNemar test of equal accuracy for two classifiers on the same images.

    Only discordant images carry information: ``b`` = a right and b wrong, ``c`` = a wrong and
    b right. Under H0 each discordant image goes either way with probability 1/2, so
    ``b ~ Binomial(b + c, 1/2)``; the two-sided p-value is ``min(1, 2 P(X <= min(b, c)))``,
    equal to ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``.
    """
    a, b_ = _check_pair(correct_a, correct_b)
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    n = b + c
    p = 1.0 if n == 0 else float(min(1.0, 2.0 * _sps.binom.cdf(min(b, c), n, 0.5)))
    return {"a_only": b, "b_only": c, "discordant": n, "p_value": p}


# --- per-class metrics and confusions --------------------------------------------------------
def confusion_matrix(labels, preds, n_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    return np.bincount(labels * n_classes + preds, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def per_class_metrics(labels, preds, class_names) -> pd.DataFrame:
    """One row per class: precision, recall (= per-class accuracy), F1, support.

    Undefined ratios (no prediction of a class, no image of a class) are 0, as sklearn's
    ``zero_division=0``.
    """
    import pandas as pd

    k = len(class_names)
    cm = confusion_matrix(labels, preds, k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    s = precision + recall
    f1 = np.divide(2 * precision * recall, s, out=np.zeros(k), where=s > 0)
    return pd.DataFrame(
        {
            "class": list(class_names),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }
    )


def most_confused_pairs(cm, top: int = 10) -> list[tuple[int, int, int]]:
    """The ``top`` largest off-diagonal cells as ``(true, predicted, count)``, count > 0."""
    cm = np.asarray(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = [(int(i), int(j), int(off[i, j])) for i, j in zip(*np.unravel_index(flat, off.shape))]
    return [p for p in pairs if p[2] > 0]


def cluster_order(cm) -> np.ndarray:
    """A permutation of the classes that puts mutually confused classes next to each other.

    Similarity of two classes = symmetrised row-normalised confusion ``(P + P.T) / 2`` off the
    diagonal; average-linkage clustering on ``1 - similarity / max`` with optimal leaf ordering
    (so that neighbouring leaves are as similar as possible). ``cm[order][:, order]`` is the
    reordered matrix.
    """
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix must be square, got {cm.shape}")
    if k < 3:
        return np.arange(k)
    rows = cm.sum(axis=1, keepdims=True)
    p = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    sim = (p + p.T) / 2.0
    np.fill_diagonal(sim, 0.0)
    top = sim.max()
    dist = 1.0 - (sim / top if top > 0 else sim)
    np.fill_diagonal(dist, 0.0)
    z = hierarchy.linkage(squareform(dist, checks=False), method="average")
    z = hierarchy.optimal_leaf_ordering(z, squareform(dist, checks=False))
    return hierarchy.leaves_list(z)


def block_score(cm, order) -> float:
    """Share of off-diagonal confusions within 2 positions of the diagonal after ``order``.

    A check that reordering helps: higher is more clustered.
    """
    cm = np.asarray(cm, dtype=np.float64)[np.ix_(order, order)]
    off = cm.copy()
    np.fill_diagonal(off, 0)
    total = off.sum()
    if total == 0:
        return 0.0
    i, j = np.indices(off.shape)
    return float(off[np.abs(i - j) <= 2].sum() / total)


# --- power -----------------------------------------------------------------------------------
def min_detectable_difference(
    n: int, discordance: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest accuracy difference a paired comparison on ``n`` test images detects.

    Two classifiers on the same images; ``discordance`` = share of images on which exactly one
    of them is right (psi). The per-image difference of correctness has mean delta and variance
    psi - delta^2; a two-sided level-``alpha`` test of delta = 0 (McNemar, normal approximation)
    reaches ``power`` when [Connor, 1987]

        sqrt(n) delta = z_{1 - alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2).

    Solved for delta in (0, psi]; NaN when even delta = psi (all discordant images going one
    way) is not detectable. Assumes independent test images and a fixed pair of models.
    """
    from scipy.optimize import brentq

    if n < 1:
        raise ValueError(f"min_detectable_difference: n must be >= 1 test image, got {n}")
    if not 0 < discordance <= 1:
        raise ValueError(
            f"min_detectable_difference: discordance must lie in (0, 1], got {discordance}"
        )
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    za, zb = _sps.norm.ppf(1 - alpha / 2), _sps.norm.ppf(power)
    psi = float(discordance)

    def f(d):
        return za * np.sqrt(psi) + zb * np.sqrt(max(psi - d * d, 0.0)) - d * np.sqrt(n)

    if f(psi) > 0:
        return float("nan")
    return float(brentq(f, 0.0, psi, xtol=1e-12))


def mcnemar_power(
    n: int, discordance: float, diff: float, alpha: float = 0.05, n_sim: int = 4000, seed: int = 0
) -> float:
    """Power of the exact McNemar test (:func:`mcnemar_exact`) by simulation: ``n`` images,
    a share ``discordance`` of discordant ones, accuracy difference ``diff``."""
    if not 0 <= abs(diff) <= discordance <= 1:
        raise ValueError(f"need |diff| <= discordance <= 1, got {diff}, {discordance}")
    rng = np.random.default_rng(seed)
    p = [(discordance + diff) / 2, (discordance - diff) / 2, 1 - discordance]
    counts = rng.multinomial(n, p, size=n_sim)  # (n_sim, 3)
    b, c = counts[:, 0], counts[:, 1]
    m = b + c
    pv = np.where(m > 0, np.minimum(1.0, 2 * _sps.binom.cdf(np.minimum(b, c), m, 0.5)), 1.0)
    return float(np.mean(pv < alpha))


# --- means over seeds and paired differences (notebook 05) ----------------------------------
def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean over seeds; NaN bounds for one seed."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("t_interval: no values")
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    t = _sps.t.ppf(0.5 + confidence / 2, v.size - 1)
    half = float(t * v.std(ddof=1) / math.sqrt(v.size))
    return mean, mean - half, mean + half


def seed_summary(values, confidence: float = 0.95, bounds=(0.0, 1.0)) -> dict[str, float]:
    """``seeds``, ``mean``, ``std`` (NaN for one seed) and the Student-t interval
    ``ci_low``/``ci_high`` of the mean, clipped to ``bounds`` (an accuracy lies in [0, 1])."""
    v = np.asarray(values, dtype=float)
    mean, low, high = t_interval(v, confidence)
    return {
        "seeds": int(v.size),
        "mean": mean,
        "std": float(np.std(v, ddof=1)) if v.size > 1 else math.nan,
        "ci_low": max(low, bounds[0]) if not math.isnan(low) else low,
        "ci_high": min(high, bounds[1]) if not math.isnan(high) else high,
    }


def paired_differences(
    table: pd.DataFrame,
    a: str,
    b: str,
    value: str = "test_accuracy",
    between: str = "arch",
    pair_on=("n_train", "seed"),
) -> pd.DataFrame:
    """``a`` minus ``b`` (values of column ``between``) per pair (``pair_on``): column ``diff``.

    One row of ``table`` per (``between``, *pair_on*); pairs missing either side are dropped."""
    wide = table.pivot_table(index=list(pair_on), columns=between, values=value)
    if a not in wide or b not in wide:
        raise ValueError(
            f"paired_differences: need rows of both {a!r} and {b!r}, got {list(wide.columns)}"
        )
    return (wide[a] - wide[b]).dropna().rename("diff").reset_index()


def paired_gaps(
    table: pd.DataFrame,
    a: str,
    b: str,
    confidence: float = 0.95,
    group: str = "n_train",
    **pairing,
) -> pd.DataFrame:
    """Mean paired difference ``a - b`` (:func:`paired_differences`) with its Student-t
    interval, per value of ``group`` and pooled over all pairs (last row, ``group`` = 0).

    The pooled interval treats every difference as one sample: it ignores that the gap may
    change with ``group`` and that pairs sharing a seed may be correlated. NaN bounds with a
    single pair."""
    import pandas as pd

    d = paired_differences(table, a, b, **pairing)
    rows = []
    for n, g in d.groupby(group, sort=True):
        mean, lo, hi = t_interval(g["diff"], confidence)
        rows.append({group: int(n), "pairs": len(g), "mean": mean, "ci_low": lo, "ci_high": hi})
    mean, lo, hi = t_interval(d["diff"], confidence)
    rows.append({group: 0, "pairs": len(d), "mean": mean, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)

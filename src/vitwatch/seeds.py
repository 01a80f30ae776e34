"""Accuracies over several training seeds and a finite test set: one interval for both.

Notebook 03 trains every head (protocols A, B, C) with several seeds (``head_seeds``) and the
results store keeps every seed's test probabilities (``seed_test_probs``, ``(S, N, K)``). An
accuracy is then a mean over seeds and test images, and its uncertainty has two sources: which
test images were drawn, and which training seeds. This module attaches to it a **two-level
(hierarchical) percentile bootstrap**: each replicate draws S seeds with replacement, then N
test images with replacement (the same images for every seed drawn), and averages over both
[Davison & Hinkley, 1997, sec. 3.8, hierarchical data; Saravanan et al., 2020,
"Application of the hierarchical bootstrap to multi-level data in neuroscience"]. Comparisons
of two models are **paired on images and on seeds**: head seed j of the ViT and of the ResNet
share the seed value (the same mini-batch orders and views), so a replicate draws seed
indices and images once and applies them to both.

Its variance has a closed form, checked in the tests: for values ``c[s, i]`` (S seeds, N
images), with population variances ``v_seeds`` of the seed means, ``v_images`` of the image
means, and ``v_within`` the mean over images of the variance across seeds,
``Var = v_seeds / S + (v_images + (v_within - v_seeds) / S) / N``. With 2 seeds the seed part
is estimated from 2 values and underestimated by the factor (S - 1) / S of any bootstrap;
the between-seed standard deviation is reported next to every interval for that reason.

``results_table`` and ``paired_comparisons`` give the analysis chapter its tables
(:mod:`vitwatch.analysis.accuracy` formats them and states their verdicts).
"""

from __future__ import annotations

import numpy as np

from vitwatch import stats

_CHUNK = 200  # replicates drawn at once: bounds memory at CHUNK * S * N values
PROTOCOLS = ("A", "B", "C", "Z")  # the order of catalogue.PROTOCOLS


# --- the store's arrays -----------------------------------------------------------------------
def seed_probs(arrays: dict) -> np.ndarray:
    """(S, N, K) test probabilities of every head seed of a stored run (S = 1 for a run
    stored with one seed only, e.g. protocol Z)."""
    p = arrays.get("seed_test_probs")
    return np.asarray(p if p is not None else np.asarray(arrays["test_probs"])[None])


def run_seeds(arrays: dict) -> list[int]:
    s = arrays.get("seeds")
    return [int(v) for v in s] if s is not None else [0]


def correct(probs: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """(S, N) bool: the true class among the ``k`` highest scores, per seed and image."""
    probs = np.asarray(probs)
    if probs.ndim == 2:
        probs = probs[None]
    if probs.ndim != 3 or probs.shape[1] != len(labels):
        raise ValueError(
            f"seed probabilities must be (S, N, K) with N = {len(labels)}, got shape {probs.shape}"
        )
    return np.stack([stats.topk_correct(p, labels, k) for p in probs])


# --- the bootstrap ----------------------------------------------------------------------------
def _check(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.size == 0:
        raise ValueError(f"values must be (S seeds, N images), got shape {v.shape}")
    return v


def hierarchical_indices(n_seeds: int, n: int, n_boot: int, seed: int = 0):
    """Yield ``(seed_idx (r, S), image_idx (r, N))`` blocks, ``n_boot`` replicates in all."""
    if n_boot < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        r = min(_CHUNK, n_boot - done)
        yield (
            rng.integers(0, n_seeds, size=(r, n_seeds)),
            rng.integers(0, n, size=(r, n), dtype=np.int32),
        )
        done += r


def _replicates(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    reps = []
    for s_idx, i_idx in hierarchical_indices(*values.shape, n_boot, seed):
        # mean over drawn seeds of the mean over drawn images: (r, S, N) -> (r,)
        reps.append(values[s_idx[:, :, None], i_idx[:, None, :]].mean(axis=(1, 2)))
    return np.concatenate(reps)


def seed_bootstrap(
    values, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Mean of ``values`` (S seeds, N images), e.g. correctness or a paired difference, with
    its two-level percentile interval: ``{mean, lo, hi, seed_sd, n_seeds}`` (``seed_sd``: the
    sample standard deviation of the per-seed means, NaN for one seed)."""
    v = _check(values)
    lo, hi = stats.percentile_ci(_replicates(v, n_boot, seed), level)
    per_seed = v.mean(axis=1)
    sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
    return {"mean": float(v.mean()), "lo": lo, "hi": hi, "seed_sd": sd, "n_seeds": int(v.shape[0])}


def bootstrap_variance(values) -> float:
    """The exact variance of the two-level bootstrap mean (module docstring), for checks."""
    v = _check(values)
    s, n = v.shape
    v_seeds = v.mean(axis=1).var()
    v_images = v.mean(axis=0).var()
    v_within = v.var(axis=0).mean()
    return float(v_seeds / s + (v_images + (v_within - v_seeds) / s) / n)


def _macro_f1_reps(
    preds: np.ndarray, labels: np.ndarray, k: int, n_boot: int, seed: int
) -> np.ndarray:
    """Two-level replicates of the seed-averaged macro-F1 (same draws as the accuracies)."""
    reps = []
    for s_idx, i_idx in hierarchical_indices(preds.shape[0], preds.shape[1], n_boot, seed):
        r, s = s_idx.shape
        lab = np.broadcast_to(labels[i_idx][:, None, :], (r, s, i_idx.shape[1]))
        pre = preds[s_idx[:, :, None], i_idx[:, None, :]]  # (r, S, N)
        off = (np.arange(r * s, dtype=np.int64) * k).reshape(r, s, 1)
        hit = lab == pre
        size = r * s * k
        tp = np.bincount((lab + off)[hit], minlength=size).reshape(r, s, k)
        denom = (
            np.bincount((lab + off).ravel(), minlength=size)
            + np.bincount((pre + off).ravel(), minlength=size)
        ).reshape(r, s, k)
        present = denom > 0  # as sklearn: absent classes left out
        f1 = np.where(present, 2.0 * tp / np.maximum(denom, 1), 0.0)
        reps.append((f1.sum(-1) / np.maximum(present.sum(-1), 1)).mean(axis=1))
    return np.concatenate(reps)


def seed_metrics(
    probs, labels, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float, float]]:
    """Top-1, top-5 and macro-F1 of (S, N, K) seed probabilities, each the mean over seeds
    with its two-level interval: ``{metric: (value, lo, hi)}``, plus ``top1_seed_sd``."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs)
    probs = probs[None] if probs.ndim == 2 else probs
    k = probs.shape[2]
    out = {}
    for name, kk in (("top1", 1), ("top5", 5)):
        b = seed_bootstrap(correct(probs, labels, kk), n_boot, seed, level)
        out[name] = (b["mean"], b["lo"], b["hi"])
        if name == "top1":
            sd = b["seed_sd"]
    preds = probs.argmax(axis=2)  # (S, N)
    point = float(np.mean([stats.macro_f1(labels, p, k) for p in preds]))
    lo, hi = stats.percentile_ci(_macro_f1_reps(preds, labels, k, n_boot, seed), level)
    out["macro_f1"] = (point, lo, hi)
    out["top1_seed_sd"] = sd
    return out


def paired_seed_diff(
    correct_a, correct_b, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Accuracy(a) - accuracy(b), paired on images and on seeds: ``correct_a``/``correct_b``
    are (S, N) with row j of both trained with the same seed. Returns
    :func:`seed_bootstrap`'s dict for the (S, N) differences."""
    a, b = _check(correct_a), _check(correct_b)
    if a.shape != b.shape:
        raise ValueError(
            f"paired seeds: both models need the same (S seeds, N images), got "
            f"{a.shape} and {b.shape}"
        )
    return seed_bootstrap(a - b, n_boot, seed, level)


def common_seeds(arrays_a: dict, arrays_b: dict) -> tuple[list[int], list[int]]:
    """Row indices of the seeds both runs trained (paired by seed value, in order)."""
    sa, sb = run_seeds(arrays_a), run_seeds(arrays_b)
    both = [s for s in sa if s in sb]
    if not both:  # e.g. Z (one "seed") against a trained protocol: unpaired
        n = min(len(sa), len(sb))
        return list(range(n)), list(range(n))
    return [sa.index(s) for s in both], [sb.index(s) for s in both]


# --- the analysis chapter's tables ------------------------------------------------------------
def results_table(store, n_boot: int, seed: int = 0, protocols=PROTOCOLS):
    """One row per stored run of ``protocols``: top-1, top-5, macro-F1 as means over the head
    seeds with two-level 95 % intervals, ``n_seeds``, ``top1_seed_sd``, the validation
    accuracy (mean over seeds) and the seed report's number."""
    import pandas as pd

    from vitwatch import catalogue

    rows = []
    for run, (meta, arrays) in store.runs.items():
        if meta["protocol"] not in protocols:
            continue
        m = seed_metrics(seed_probs(arrays), store.labels, n_boot, seed)
        row = {"run": run, "backbone": meta["backbone"], "protocol": meta["protocol"]}
        for k in ("top1", "top5", "macro_f1"):
            v, lo, hi = m[k]
            row.update({k: v, f"{k}_lo": lo, f"{k}_hi": hi})
        row["n_seeds"] = len(run_seeds(arrays)) if "seeds" in arrays else 1
        row["top1_seed_sd"] = m["top1_seed_sd"]
        row["val_top1"] = meta.get("val_top1")
        row["seed_reference"] = (
            catalogue.SEED_REFERENCE.get(meta["backbone"]) if meta["protocol"] == "A" else None
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    if not len(df):
        return df
    order = {p: i for i, p in enumerate(protocols)}
    df["_o"] = df["protocol"].map(lambda p: order.get(p, 9))
    return df.sort_values(["_o", "backbone"]).drop(columns="_o").reset_index(drop=True)


def paired_comparisons(
    store,
    vit: str,
    cnn: str,
    n_boot: int = 1000,
    seed: int = 0,
    protocols=PROTOCOLS,
):
    """Per protocol where both backbones ran: seed-mean accuracies, their difference with a
    two-level interval paired on images and seeds, and the exact McNemar test per seed pair
    (``p_value``: the largest of them, so "significant" means every seed pair rejects;
    ``vit_only``/``cnn_only``: discordant counts averaged over seed pairs), ``n_seeds`` and
    ``diff_seed_sd``."""
    import pandas as pd

    rows = []
    labels = store.labels
    for p in protocols:
        a, b = store.names(vit, p), store.names(cnn, p)
        if not (a and b):
            continue
        arr_a, arr_b = store.runs[a[0]][1], store.runs[b[0]][1]
        ia, ib = common_seeds(arr_a, arr_b)
        ca = correct(seed_probs(arr_a)[ia], labels)  # (S, N)
        cb = correct(seed_probs(arr_b)[ib], labels)
        d = paired_seed_diff(ca, cb, n_boot, seed)
        tests = [stats.mcnemar_exact(x, y) for x, y in zip(ca, cb)]
        rows.append(
            {
                "protocol": p,
                "vit": a[0],
                "cnn": b[0],
                "vit_top1": ca.mean(),
                "cnn_top1": cb.mean(),
                "diff": d["mean"],
                "diff_lo": d["lo"],
                "diff_hi": d["hi"],
                "diff_seed_sd": d["seed_sd"],
                "n_seeds": len(ia),
                "vit_only": int(round(np.mean([t["a_only"] for t in tests]))),
                "cnn_only": int(round(np.mean([t["b_only"] for t in tests]))),
                "p_value": max(t["p_value"] for t in tests),
            }
        )
    return pd.DataFrame(rows)


def interval_note(n_seeds: int) -> str:
    """The sentence that says how the intervals were made."""
    return (
        f"Every accuracy is a mean over {n_seeds} head seed{'s' if n_seeds != 1 else ''} "
        "and the test images; its 95 % interval is a two-level percentile bootstrap "
        "(seeds drawn with replacement, then test images, the same images for every "
        "seed), so it covers both the finite test set and the training seed; differences "
        "are paired on images and seeds. Protocol Z has no training seed."
    )

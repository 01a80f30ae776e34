"""Are the predicted probabilities honest? Calibration of a classifier from stored probabilities.

Holds, for ``probs`` (N, K) and ``labels`` (N,) as in :mod:`vitwatch.stats`:

- :func:`ece` — expected calibration error, **top-label, 15 equal-width bins** of confidence
  on [0, 1] (bin b holds the images whose top probability lies in ((b - 1) / 15, b / 15],
  the first bin also holding 0): ``sum_b |B_b| / N * |acc(B_b) - conf(B_b)|``
  [Naeini et al., 2015; Guo et al., 2017, eq. 3]; :func:`reliability` gives the per-bin
  accuracy and confidence behind it (the reliability diagram).
- :func:`nll` — mean negative log-likelihood of the true class; :func:`brier` — multi-class
  Brier score ``mean_i sum_k (p_ik - 1[y_i = k])^2`` [Brier, 1950] (0 is perfect, 2 the worst).
- :func:`fit_temperature` — temperature scaling [Guo et al., 2017]: one scalar ``T`` that
  divides the logits, fitted by minimising the NLL on the **validation** set, never on test.
  Stored probabilities are enough: ``log p`` differs from the logits by a per-row constant, which
  the softmax ignores, so ``softmax(log p / T)`` is exactly ``softmax(z / T)``.
- :func:`bootstrap` — the three metrics with percentile bootstrap CIs over test images.
- Chapter 4's use of them: :func:`inputs` (the store's runs), :func:`table` (before and after
  the temperature), :func:`format_table`, :func:`diagrams` and :func:`describe`; the section
  in one call, :func:`section` (:class:`Calibration`).

The NLL is convex in ``beta = 1 / T`` (a log-sum-exp minus a linear term), so its derivative is
increasing and the minimiser is found by bisection on the derivative: no optimiser tolerance to
tune, and ``tests/test_calibration.py`` checks it against ``scipy.optimize``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitwatch import stats

N_BINS = 15  # Guo et al. (2017) use M = 15 bins
_EPS = 1e-12  # probabilities are clipped here before taking logs


def _check(probs, labels):
    probs, labels = stats._check_probs(probs, labels)
    if probs.size and (probs.min() < 0 or probs.max() > 1 + 1e-6):
        raise ValueError(
            "calibration: probs must be probabilities in [0, 1], got range "
            f"[{probs.min():.3g}, {probs.max():.3g}]"
        )
    return probs.astype(np.float64), labels


def _bins(conf, n_bins: int) -> np.ndarray:
    """(N,) bin index in [0, n_bins): right-closed bins ((b-1)/M, b/M], 0 in the first."""
    if n_bins < 1:
        raise ValueError(f"calibration: n_bins must be >= 1, got {n_bins}")
    return np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability(probs, labels, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Per bin: ``count``, mean ``confidence``, ``accuracy`` (NaN for empty bins), ``edges``."""
    probs, labels = _check(probs, labels)
    conf = probs.max(axis=1)  # (N,)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)  # (N,)
    b = _bins(conf, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, conf, n_bins) / count
        acc = np.bincount(b, correct, n_bins) / count
    return {
        "count": count,
        "confidence": mean_conf,
        "accuracy": acc,
        "edges": np.linspace(0.0, 1.0, n_bins + 1),
    }


def ece(probs, labels, n_bins: int = N_BINS) -> float:
    """Top-label expected calibration error with ``n_bins`` equal-width bins."""
    r = reliability(probs, labels, n_bins)
    n = r["count"].sum()
    if n == 0:
        raise ValueError("calibration.ece: no images")
    gap = np.abs(np.nan_to_num(r["accuracy"]) - np.nan_to_num(r["confidence"]))
    return float(np.sum(r["count"] / n * gap))


def nll_per_image(probs, labels) -> np.ndarray:
    probs, labels = _check(probs, labels)
    return -np.log(np.clip(probs[np.arange(labels.size), labels], _EPS, None))  # (N,)


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the true class (natural log; probs clipped at 1e-12)."""
    return float(nll_per_image(probs, labels).mean())


def brier_per_image(probs, labels) -> np.ndarray:
    probs, labels = _check(probs, labels)
    onehot = np.zeros_like(probs)
    onehot[np.arange(labels.size), labels] = 1.0
    return np.sum((probs - onehot) ** 2, axis=1)  # (N,)


def brier(probs, labels) -> float:
    """Multi-class Brier score, summed over classes and averaged over images."""
    return float(brier_per_image(probs, labels).mean())


# --- temperature scaling ---------------------------------------------------------------------
def _log_probs(probs) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, None))


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)``: the probabilities of logits divided by ``T``."""
    if not temperature > 0:
        raise ValueError(f"calibration: temperature must be > 0, got {temperature}")
    z = _log_probs(probs) / temperature  # (N, K)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll_grad(z, labels, beta: float) -> float:
    """d/d beta of mean NLL(softmax(beta z)) = mean(E_p[z] - z_y), increasing in beta."""
    s = beta * z
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return float(np.mean(np.sum(p * z, axis=1) - z[np.arange(labels.size), labels]))


def fit_temperature(val_probs, val_labels, bounds=(0.05, 20.0), iters: int = 60) -> float:
    """The temperature minimising the validation NLL, by bisection on ``beta = 1 / T`` in
    ``[1 / bounds[1], 1 / bounds[0]]`` (a result on a bound means the optimum lies beyond)."""
    probs, labels = _check(val_probs, val_labels)
    if labels.size == 0:
        raise ValueError("calibration.fit_temperature: no validation images")
    z = _log_probs(probs)
    lo, hi = np.log(1.0 / bounds[1]), np.log(1.0 / bounds[0])  # log beta
    if _nll_grad(z, labels, np.exp(lo)) >= 0:
        return float(bounds[1])
    if _nll_grad(z, labels, np.exp(hi)) <= 0:
        return float(bounds[0])
    for _ in range(iters):  # width / 2^60
        mid = 0.5 * (lo + hi)
        if _nll_grad(z, labels, np.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
    return float(1.0 / np.exp(0.5 * (lo + hi)))


# --- with uncertainty ------------------------------------------------------------------------
def bootstrap(
    probs, labels, n_boot: int = 1000, seed: int = 0, level: float = 0.95, n_bins: int = N_BINS
) -> dict[str, tuple[float, float, float]]:
    """``{"ece" | "nll" | "brier": (value, lo, hi)}``, percentile CIs on shared resamples."""
    probs, labels = _check(probs, labels)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    b = _bins(conf, n_bins)
    per = {"nll": nll_per_image(probs, labels), "brier": brier_per_image(probs, labels)}
    reps = {"ece": [], "nll": [], "brier": []}
    for idx in stats.bootstrap_indices(labels.size, n_boot, seed):  # (r, N)
        r, n = idx.shape
        flat = (b[idx] + n_bins * np.arange(r)[:, None]).ravel()  # (r * N,)
        size = r * n_bins
        s_conf = np.bincount(flat, conf[idx].ravel(), size).reshape(r, n_bins)
        s_acc = np.bincount(flat, correct[idx].ravel(), size).reshape(r, n_bins)
        reps["ece"].append(np.abs(s_acc - s_conf).sum(axis=1) / n)  # sum_b |S_acc - S_conf| / N
        for k, v in per.items():
            reps[k].append(v[idx].mean(axis=1))
    point = {
        "ece": ece(probs, labels, n_bins),
        "nll": float(per["nll"].mean()),
        "brier": float(per["brier"].mean()),
    }
    return {k: (point[k], *stats.percentile_ci(np.concatenate(reps[k]), level)) for k in reps}


def table(runs: dict, n_boot: int = 1000, seed: int = 0, n_bins: int = N_BINS):
    """One row per run and state (``before`` / ``after`` temperature scaling).

    ``runs``: name -> ``(test_probs, test_labels, val_probs, val_labels)``. ``T`` is fitted on
    the validation arrays only. Columns: run, state, T, ece, nll, brier, each metric with
    ``_lo`` / ``_hi``, and top1 (unchanged by a temperature, a check).
    """
    import pandas as pd

    rows = []
    for name, (tp, tl, vp, vl) in runs.items():
        t = fit_temperature(vp, vl)
        for state, p, temp in (("before", tp, 1.0), ("after", apply_temperature(tp, t), t)):
            m = bootstrap(p, tl, n_boot, seed, n_bins=n_bins)
            row = {
                "run": name,
                "state": state,
                "T": temp,
                "top1": float(np.mean(np.asarray(p).argmax(axis=1) == np.asarray(tl))),
            }
            for k, (v, lo, hi) in m.items():
                row.update({k: v, f"{k}_lo": lo, f"{k}_hi": hi})
            rows.append(row)
    return pd.DataFrame(rows)


# --- chapter 4: the store's runs -------------------------------------------------------------
def inputs(store, runs=None) -> dict:
    """run -> (test_probs, test_labels, val_probs, val_labels) for :func:`table`, for ``runs``
    (default: every run of a protocol of :data:`vitwatch.catalogue.PROTOCOLS`); runs without
    stored validation probabilities are skipped."""
    from vitwatch import catalogue

    if runs is None:
        runs = [r for r in store.runs if store.runs[r][0]["protocol"] in catalogue.PROTOCOLS]
    out = {}
    for r in runs:
        arrays = store.runs[r][1]
        if "val_probs" in arrays and "val_labels" in arrays and len(arrays["val_labels"]):
            out[r] = (arrays["test_probs"], store.labels, arrays["val_probs"], arrays["val_labels"])
    return out


def _ci(r, k, scale=1.0, fmt="{:.2f}") -> str:
    return (
        fmt.format(scale * r[k])
        + " ["
        + fmt.format(scale * r[k + "_lo"])
        + ", "
        + fmt.format(scale * r[k + "_hi"])
        + "]"
    )


def format_table(cal):
    """:func:`table` as a reader sees it: the temperature, and each metric with its CI."""
    import pandas as pd

    return pd.DataFrame(
        {
            "run": cal["run"],
            "temperature": cal["state"].map({"before": "none", "after": "fitted"})
            + cal["T"].map(lambda t: f" (T = {t:.2f})"),
            "ECE % [95 % CI]": [_ci(r, "ece", 100, "{:.1f}") for _, r in cal.iterrows()],
            "NLL": [_ci(r, "nll") for _, r in cal.iterrows()],
            "Brier": [_ci(r, "brier", 1, "{:.3f}") for _, r in cal.iterrows()],
        }
    )


def diagrams(store, cal, chosen) -> dict[str, tuple]:
    """``"<label> (<run>)"`` -> (reliability before, reliability after, T) for each chosen run
    (backbone -> run) with a fitted temperature in ``cal``."""
    from vitwatch.analysis import text

    out = {}
    for bb, run in chosen.items():
        row = cal[(cal["run"] == run) & (cal["state"] == "after")]
        if len(row):
            t = float(row["T"].iloc[0])
            p = store.probs(run)
            out[f"{text.label(bb)} ({run})"] = (
                reliability(p, store.labels),
                reliability(apply_temperature(p, t), store.labels),
                t,
            )
    return out


def describe(cal, runs) -> str:
    """One sentence per run of ``runs``: ECE and NLL before and after temperature scaling
    (``cal`` from :func:`table`), the verdict from the ECE intervals of the same test images."""
    parts = []
    for run in runs:
        rows = cal[cal["run"] == run].set_index("state")
        if len(rows) < 2:
            continue
        b, a = rows.loc["before"], rows.loc["after"]
        tone = (
            "over-confident"
            if a["T"] > 1.05
            else "under-confident"
            if a["T"] < 0.95
            else "about right in its confidence"
        )
        parts.append(
            f"{run}: ECE {100 * b['ece']:.1f} % [{100 * b['ece_lo']:.1f}, "
            f"{100 * b['ece_hi']:.1f}] and NLL {b['nll']:.2f} before; the temperature fitted on "
            f"validation, T = {a['T']:.2f}, says the head is {tone}, and brings them to "
            f"{100 * a['ece']:.1f} % [{100 * a['ece_lo']:.1f}, {100 * a['ece_hi']:.1f}] and "
            f"{a['nll']:.2f} on test"
        )
    if not parts:
        return "No run stored validation probabilities, so no temperature could be fitted."
    return "; ".join(parts) + "."


@dataclass
class Calibration:
    """The section "Are the probabilities honest?": ``table`` of every run (:func:`table`),
    the run of each compared backbone chosen on validation (``chosen``: backbone -> run) and
    their reliability ``diagrams`` (:func:`diagrams`)."""

    table: object
    chosen: dict[str, str]
    diagrams: dict[str, tuple]

    @property
    def tables(self) -> list:
        return [format_table(self.table).style.hide(axis="index")]

    @property
    def sentence(self) -> str:
        return describe(self.table, list(self.chosen.values()))

    @property
    def record(self) -> dict:
        return {"calibration": self.table.to_dict(orient="records")}


def section(store, backbones, n_boot: int, seed: int) -> Calibration:
    """:class:`Calibration` of every run of ``store``; diagrams and sentences for the runs of
    ``backbones`` (None entries, backbones that did not run, skipped) chosen on validation."""
    from vitwatch.analysis.store import select_runs

    cal = table(inputs(store), n_boot, seed)
    chosen = select_runs(store, [b for b in backbones if b])
    return Calibration(cal, chosen, diagrams(store, cal, chosen))

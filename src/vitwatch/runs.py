"""One run of a training protocol: its result (:class:`RunResult`), the key it is stored under,
and resumption (:func:`run_or_load`).

A run is one protocol (Z, A, B, C; :mod:`vitwatch.protocols`) on one backbone. Protocols A, B
and C train one head per seed of :func:`head_seeds`; :func:`combine` stacks them into one
:class:`RunResult`, whose accuracies are means over the seeds. A run is stored in the results
store (:class:`vitwatch.results.ResultsStore`) with its key, :func:`hyperparameters`: every
setting that changes its result, the version of the code that computes it included
(:func:`code_version`). :func:`run_or_load` reuses a stored run only when that key is the same,
which is what makes an interrupted ``make report`` resume where it stopped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vitwatch import catalogue

# The source that produces a run: a stored run is reused only when none of it changed.
CODE_PARTS = ("runs.py", "protocols", "features.py", "fastpath.py", "seeds.py", "data", "models")


# --- metrics ---------------------------------------------------------------------------------


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of rows whose true label is among the ``k`` largest scores (ties: in
    ``np.argpartition``'s order, as every stored accuracy was computed)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    topk = np.argpartition(-probs, k - 1, axis=1)[:, :k]  # (N, k)
    return float(np.mean(np.any(topk == labels[:, None], axis=1)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits, float32."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


# --- the result of a run ---------------------------------------------------------------------


@dataclass
class RunResult:
    """What a protocol produces; ``save``/``load`` map it onto the results store."""

    protocol: str
    backbone: str
    val_probs: np.ndarray  # (N_val, K) float32
    val_labels: np.ndarray  # (N_val,) int
    test_probs: np.ndarray  # (N_test, K) float32
    test_labels: np.ndarray  # (N_test,) int
    history: dict[str, list[float]] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    trainable_params: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # best_epoch, l2 scan, ...
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # head weights, ...

    @property
    def run_name(self) -> str:
        return f"{self.protocol}_{self.backbone}"

    @property
    def seeds(self) -> list[int]:
        """The head seeds (one, ``cfg.seed``, for a run without seed arrays)."""
        s = self.arrays.get("seeds")
        return [int(v) for v in s] if s is not None else [int(self.extra.get("seed", 0))]

    @property
    def seed_test_probs(self) -> np.ndarray:
        """(S, N_test, K): every head seed's test probabilities; row 0 = ``test_probs``."""
        return self.arrays.get("seed_test_probs", self.test_probs[None])

    @property
    def seed_val_probs(self) -> np.ndarray:
        """(S, N_val, K): every head seed's validation probabilities."""
        return self.arrays.get("seed_val_probs", self.val_probs[None])

    def _mean(self, probs: np.ndarray, labels: np.ndarray, k: int) -> float:
        return float(np.mean([topk_accuracy(p, labels, k) for p in probs]))

    @property
    def top1(self) -> float:
        """Test top-1, mean over the head seeds."""
        return self._mean(self.seed_test_probs, self.test_labels, 1)

    @property
    def top5(self) -> float:
        return self._mean(self.seed_test_probs, self.test_labels, 5)

    @property
    def val_top1(self) -> float:
        """Validation top-1, mean over the head seeds (what selection reads)."""
        return self._mean(self.seed_val_probs, self.val_labels, 1)

    @property
    def top1_seeds(self) -> list[float]:
        return [topk_accuracy(p, self.test_labels, 1) for p in self.seed_test_probs]

    def save(self, store) -> None:
        """Into the results store ``store`` (a :class:`~vitwatch.results.ResultsStore`)."""
        arrays = {
            "test_probs": self.test_probs.astype(np.float32),
            "test_labels": self.test_labels.astype(np.int64),
            "val_probs": self.val_probs.astype(np.float32),
            "val_labels": self.val_labels.astype(np.int64),
            "test_preds": self.test_probs.argmax(1).astype(np.int64),
            **self.arrays,
        }
        meta = {
            "backbone": self.backbone,
            "protocol": self.protocol,
            "protocol_description": catalogue.PROTOCOLS[self.protocol],
            "top1": self.top1,
            "top5": self.top5,
            "val_top1": self.val_top1,
            "top1_seeds": self.top1_seeds,
            "head_seeds": self.seeds,
            "history": self.history,
            "hyperparameters": self.hyperparameters,
            "timings": self.timings,
            "trainable_params": int(self.trainable_params),
            "extra": self.extra,
        }
        store.save(self.run_name, arrays, meta)

    @classmethod
    def load(cls, store, run_name: str) -> RunResult:
        meta, arrays = store.load(run_name)
        main = ("test_probs", "test_labels", "val_probs", "val_labels", "test_preds")
        return cls(
            meta["protocol"],
            meta["backbone"],
            arrays["val_probs"],
            arrays["val_labels"],
            arrays["test_probs"],
            arrays["test_labels"],
            meta["history"],
            meta["hyperparameters"],
            meta["timings"],
            meta["trainable_params"],
            meta.get("extra", {}),
            {k: v for k, v in arrays.items() if k not in main},
        )


def head_seeds(cfg) -> list[int]:
    """The seeds of a run's heads: ``cfg.seed, cfg.seed + 1, ...`` (``cfg.head_seeds`` of them)."""
    n = int(getattr(cfg, "head_seeds", 1))
    if n < 1:
        raise ValueError(f"parameter 'head_seeds' must be >= 1, got {n}")
    return [int(cfg.seed) + j for j in range(n)]


def combine(runs: list[RunResult], seeds: list[int]) -> RunResult:
    """One :class:`RunResult` from one run per head seed: the first seed's probabilities,
    history and weights as the main ones (``test_probs``, ...), every seed's probabilities and
    head weights stacked in ``arrays`` (``seed_test_probs`` (S, N, K), ``seed_val_probs``,
    ``seeds``, ``seed_head_kernel``), per-seed histories and choices in ``extra["per_seed"]``;
    training seconds summed, the other timings those of the whole protocol."""
    if len(runs) != len(seeds) or not runs:
        raise ValueError(f"combine: {len(runs)} runs for {len(seeds)} seeds")
    main = runs[0]
    arrays = dict(main.arrays)
    arrays.update(
        seeds=np.asarray(seeds, np.int64),
        seed_test_probs=np.stack([r.test_probs for r in runs]).astype(np.float32),
        seed_val_probs=np.stack([r.val_probs for r in runs]).astype(np.float32),
    )
    for key in ("head_kernel", "head_bias"):
        if all(key in r.arrays for r in runs):
            arrays[f"seed_{key}"] = np.stack([r.arrays[key] for r in runs])
    per_seed = [
        {
            "seed": s,
            "val_top1": topk_accuracy(r.val_probs, r.val_labels),
            "top1": topk_accuracy(r.test_probs, r.test_labels),
            "history": r.history,
            **{k: v for k, v in r.extra.items() if k != "per_seed"},
        }
        for s, r in zip(seeds, runs)
    ]
    timings = dict(main.timings)
    timings["train_seconds"] = float(sum(r.timings.get("train_seconds", 0.0) for r in runs))
    return RunResult(
        main.protocol,
        main.backbone,
        main.val_probs,
        main.val_labels,
        main.test_probs,
        main.test_labels,
        main.history,
        main.hyperparameters,
        timings,
        main.trainable_params,
        {**main.extra, "seed": seeds[0], "per_seed": per_seed},
        arrays,
    )


# --- the key of a run, and resumption ---------------------------------------------------------


def data_fingerprint(data) -> str:
    """A short hash of the split files and labels: changes when the data changes."""
    h = hashlib.sha1()
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        h.update(name.encode())
        h.update("\n".join(str(p) for p in split.paths).encode())
        h.update(np.asarray(split.labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def code_version(root=None, parts=CODE_PARTS) -> str:
    """SHA-256 (12 hex digits) of the Python source of ``parts`` of the package (files or
    folders under ``root``, the package folder by default), in a stable order."""
    root = Path(root) if root is not None else Path(__file__).parent
    h = hashlib.sha256()
    for part in parts:
        path = root / part
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def hyperparameters(
    protocol: str, backbone, data, cfg, specific: Mapping[str, Any]
) -> dict[str, Any]:
    """The key of a run: what every run depends on (backbone and its weights, code, data, image
    size, seed, evaluation view) plus the protocol's ``specific`` settings
    (:func:`vitwatch.protocols.hyperparameters` gives them)."""
    from vitwatch import features

    return {
        "protocol": protocol,
        "backbone": backbone.name,
        "weights": backbone.cache_key,
        "code": code_version(),
        "data": data_fingerprint(data),
        "img_size": backbone.img_size,
        "seed": cfg.seed,
        "eval_view": features.eval_view_spec(backbone, cfg.eval_view),
        **specific,
    }


def run_or_load(
    store,
    run_name: str,
    hp: Mapping[str, Any],
    fn: Callable[[], RunResult],
    log: Callable[[str], None] = print,
) -> RunResult:
    """The run stored in ``store`` under ``run_name`` if it finished with the same key ``hp``;
    else ``fn()``, stored with that key."""
    from vitwatch import results

    if store.has(run_name, hp):
        log(f"{run_name}: found in the results store with the same hyperparameters; not rerun")
        return RunResult.load(store, run_name)
    run = fn()
    run.hyperparameters = results.normalize(hp)
    run.save(store)
    return run


# --- a table of runs ---------------------------------------------------------------------------


def summary(runs: Mapping[str, RunResult]) -> list[dict[str, Any]]:
    """One row per run: accuracies (val, test top-1/top-5: means over the head seeds, and the
    seeds' standard deviation of test top-1) and compute, for a DataFrame. Compute: the
    distinct images the protocol needs through the backbone (``forward_images``), how many
    of them this run computed and how many it read from the feature cache, and (A) what
    streaming every epoch of every head would have cost."""
    rows = []
    for name, r in runs.items():
        t = r.timings
        per_seed = r.top1_seeds
        rows.append(
            {
                "run": name,
                "protocol": r.protocol,
                "backbone": r.backbone,
                "val_top1": r.val_top1,
                "top1": r.top1,
                "top5": r.top5,
                "head_seeds": len(per_seed),
                "top1_seed_sd": float(np.std(per_seed, ddof=1))
                if len(per_seed) > 1
                else float("nan"),
                "trainable_params": int(r.trainable_params),
                "forward_images": int(t.get("backbone_forward_images", 0)),
                "computed_images": int(
                    t.get("computed_images", t.get("backbone_forward_images", 0))
                ),
                "cache_hit_images": int(t.get("cache_hit_images", 0)),
                "streamed_forward_images": int(
                    t.get("streamed_forward_images", t.get("backbone_forward_images", 0))
                ),
                "backward_images": int(t.get("backbone_backward_images", 0)),
                "train_seconds": float(t.get("train_seconds", 0.0)),
                "extract_seconds": float(t.get("extract_seconds", 0.0)),
            }
        )
    return rows

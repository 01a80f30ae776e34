"""The training protocols of notebook 03: one small function per protocol, one result type.

- **A**, the seed's protocol: frozen backbone + one softmax ``Dense`` layer (the "head"),
  a freshly augmented view of the training images every epoch, Adam, best epoch on
  validation. The same recipe as the Keras transfer-learning guide (``base_model.trainable =
  False``, ``base_model(x, training=False)``): "fixed feature" transfer. A frozen backbone in
  inference mode is deterministic, so the features of epoch e's view are computed once and
  cached (:mod:`vitwatch.features`, view e + 1): the head sees exactly what streaming the
  images would give it (``stream=True`` does that, for the test that checks it).
- **B**, a linear probe on cached features: the backbone runs once per image (plus a few
  augmented views of train, the first views of protocol A), then the same head trains in
  seconds; its L2 strength is chosen on validation (a linear probe by gradient descent, not
  the closed-form few-shot regression of [Kolesnikov et al., 2020; Dosovitskiy et al., 2021]).
- **C**, fine-tuning: the last ``cfg.finetune_blocks`` blocks unfrozen, AdamW, linear warm-up
  then cosine decay, gradient clipping, early stopping on validation with the best weights
  restored. Not AugReg's recipe: [Steiner et al., 2022] fine-tune with SGD, momentum 0.9,
  batch 512, clipping at 1, cosine schedule. The head starts from protocol B's probe when available
  (LP-FT, [Kumar et al., 2022]). ``tf.distribute.MirroredStrategy`` when several GPUs are seen.
- **Z**, no training: the backbone's own ImageNet-1k classifier restricted to the dog classes.

Seeds: A, B and C train ``cfg.head_seeds`` heads, with seeds ``cfg.seed + j``; a head's seed
drives its initialisation, the order of its mini-batches and (A) the order in which it sees the
cached augmented views; C's seed also drives its augmentation. The data subset and split, and
the augmented views of A and B, are drawn once by ``cfg.seed`` (the run's seed), so that the
head seeds multiply head training, not backbone passes. A :class:`RunResult` holds every
seed's probabilities (``seed_val_probs``, ``seed_test_probs``); its accuracies are means over
the seeds.

Honest evaluation everywhere: every choice (epoch, L2, early stop) is made on validation; the
test split is predicted once, by the final model. Every protocol returns a :class:`RunResult`
that :mod:`vitwatch.results` stores for notebook 04.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitwatch import catalogue

PROTOCOLS = catalogue.PROTOCOLS
HEAD_BATCH = 128  # protocol B: batch size of the head on cached features
FINETUNE_WEIGHT_DECAY = 0.05  # protocol C: AdamW decoupled weight decay
FINETUNE_CLIPNORM = 1.0  # protocol C: global gradient-norm clipping


# --- results and metrics ------------------------------------------------------------------


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of rows whose true label is among the ``k`` largest scores."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    topk = np.argpartition(-probs, k - 1, axis=1)[:, :k]  # (N, k)
    return float(np.mean(np.any(topk == labels[:, None], axis=1)))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


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
            "protocol_description": PROTOCOLS[self.protocol],
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


# --- resumption -----------------------------------------------------------------------------


def data_fingerprint(data) -> str:
    """A short hash of the split files and labels: changes when the data changes."""
    h = hashlib.sha1()
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        h.update(name.encode())
        h.update("\n".join(str(p) for p in split.paths).encode())
        h.update(np.asarray(split.labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


# The source that produces a run: a stored run is reused only when none of it changed.
CODE_PARTS = ("train.py", "features.py", "fastpath.py", "seeds.py", "data", "models")


def code_version(root=None, parts=CODE_PARTS) -> str:
    """SHA-256 (12 hex digits) of the Python source of ``parts`` of the package (files or
    folders under ``root``, the package folder by default), in a stable order."""
    from pathlib import Path

    root = Path(root) if root is not None else Path(__file__).parent
    h = hashlib.sha256()
    for part in parts:
        path = root / part
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def hyperparameters(protocol: str, backbone, data, cfg) -> dict[str, Any]:
    """Everything that changes a run's result: the key :func:`run_or_load` compares, the
    version of the code that computes it included (:func:`code_version`)."""
    from vitwatch import features

    hp = {
        "protocol": protocol,
        "backbone": backbone.name,
        "weights": backbone.cache_key,
        "code": code_version(),
        "data": data_fingerprint(data),
        "img_size": backbone.img_size,
        "seed": cfg.seed,
        "eval_view": features.eval_view_spec(backbone, _view_name(cfg)),
    }
    if protocol in ("A", "B", "C"):
        hp.update(head_seeds=head_seeds(cfg))
    if protocol == "A":
        hp.update(
            head_epochs=cfg.head_epochs,
            head_lr=cfg.head_lr,
            augment=cfg.augment,
            batch_size=cfg.batch_size,
            augmentation=features.AUGMENTATION,
        )
    elif protocol == "B":
        hp.update(
            probe_views=cfg.probe_views,
            probe_grid=probe_grid(cfg),
            probe_epochs=cfg.probe_epochs,
            head_batch=HEAD_BATCH,
        )
    elif protocol == "C":
        hp.update(
            finetune_epochs=cfg.finetune_epochs,
            finetune_lr=cfg.finetune_lr,
            finetune_blocks=cfg.finetune_blocks,
            batch_size=cfg.batch_size,
            finetune_warmup_epochs=cfg.finetune_warmup_epochs,
            finetune_patience=cfg.finetune_patience,
            augment=cfg.augment,
            weight_decay=FINETUNE_WEIGHT_DECAY,
            clipnorm=FINETUNE_CLIPNORM,
        )
    elif protocol != "Z":
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return hp


def _view_name(cfg) -> str:
    return getattr(cfg, "eval_view", "native")


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


def run_or_load(
    cfg,
    protocol: str,
    backbone,
    data,
    fn: Callable[[], RunResult],
    extra_key: dict | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Load the stored run if it finished with the same hyperparameters, else run and save it.

    The key is :func:`hyperparameters` plus ``extra_key`` (e.g. the probe a fine-tuning run
    starts from). This is what makes an interrupted ``make report`` resume where it stopped.
    """
    from vitwatch import results

    store = results.ResultsStore(cfg.results_dir, cfg.profile, cfg.seed)
    hp = {**hyperparameters(protocol, backbone, data, cfg), **(extra_key or {})}
    name = f"{protocol}_{backbone.name}"
    if store.has(name, hp):
        log(f"{name}: found in the results store with the same hyperparameters; not rerun")
        return RunResult.load(store, name)
    run = fn()
    run.hyperparameters = results.normalize(hp)
    run.save(store)
    return run


# --- the head -------------------------------------------------------------------------------


def softmax_head(feature_dim: int, num_classes: int, l2: float = 0.0, name: str = "head"):
    """One softmax ``Dense`` layer: ``feature_dim * num_classes + num_classes`` parameters
    (384 x 120 + 120 = 46,200 on ViT-S/16)."""
    import keras

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    return keras.Sequential(
        [
            keras.Input((feature_dim,)),
            keras.layers.Dense(
                num_classes, activation="softmax", kernel_regularizer=reg, name=f"{name}_dense"
            ),
        ],
        name=name,
    )


def count_params(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _evaluate(head, x, y) -> tuple[float, float, np.ndarray]:
    """(loss, accuracy, probs) of the head on feature arrays (cross-entropy, no L2 term)."""
    probs = np.asarray(head(np.asarray(x, np.float32), training=False), np.float32)  # (N, K)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.log(p_true).mean()), float((probs.argmax(1) == y).mean()), probs


def _head_result(
    protocol, backbone_name, head, val_probs, val_y, test_x, test_y, history, train_seconds, extra
) -> RunResult:
    """The run of a head chosen on validation: the test set scored once, the head's weights
    stored (the explorer reuses them)."""
    _, _, test_probs = _evaluate(head, test_x, test_y)  # test: once
    kernel, bias = head.get_weights()
    return RunResult(
        protocol,
        backbone_name,
        val_probs,
        val_y,
        test_probs,
        test_y,
        history,
        timings={"train_seconds": train_seconds},
        trainable_params=count_params(head.trainable_weights),
        extra=extra,
        arrays={"head_kernel": kernel, "head_bias": bias},
    )


class _Best:
    """Keeps the weights of the best epoch on validation (accuracy, then loss)."""

    def __init__(self):
        self.key, self.epoch, self.weights = None, -1, None

    def update(self, epoch: int, val_acc: float, val_loss: float, model) -> None:
        key = (val_acc, -val_loss)
        if self.key is None or key > self.key:
            self.key, self.epoch, self.weights = key, epoch, model.get_weights()


class HeadTrainer:
    """The softmax head with Adam and one compiled training step on feature batches.

    A plain ``tf.function`` step rather than ``Model.fit``: the head is so small that Keras'
    per-epoch machinery would cost more than the training itself. The loss minimised is the
    cross-entropy plus the head's L2 penalty; the loss reported is the cross-entropy alone, as
    on validation.
    """

    def __init__(self, feature_dim: int, num_classes: int, lr: float, l2: float = 0.0):
        import keras
        import tensorflow as tf

        self.head = softmax_head(feature_dim, num_classes, l2)
        self.optimizer = keras.optimizers.Adam(lr)
        self.optimizer.build(self.head.trainable_variables)
        head, opt = self.head, self.optimizer

        @tf.function(reduce_retracing=True)
        def step(x, y):
            with tf.GradientTape() as tape:
                probs = head(x, training=True)  # (B, K)
                ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
                loss = ce + tf.add_n(head.losses) if head.losses else ce
            grads = tape.gradient(loss, head.trainable_variables)
            opt.apply_gradients(zip(grads, head.trainable_variables))
            hit = tf.cast(tf.equal(tf.argmax(probs, 1, output_type=y.dtype), y), tf.float32)
            return ce, tf.reduce_mean(hit)

        self._step = step

    def train_batch(self, x, y) -> tuple[float, float]:
        """One Adam step on a batch; returns (cross-entropy, accuracy) of the batch."""
        ce, acc = self._step(np.asarray(x, np.float32), np.asarray(y, np.int64))
        return float(ce), float(acc)

    def evaluate(self, x, y) -> tuple[float, float, np.ndarray]:
        return _evaluate(self.head, x, y)


def fit_head(
    train_x,
    train_y,
    val_x,
    val_y,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    l2: float = 0.0,
    batch_size: int = HEAD_BATCH,
    seed: int = 0,
):
    """Train a softmax head on feature arrays (Adam, shuffled mini-batches); return
    ``(head, history, best_epoch)``, the head holding the weights of its best epoch on
    validation."""
    import keras

    keras.utils.set_random_seed(seed)
    train_x, val_x = np.asarray(train_x, np.float32), np.asarray(val_x, np.float32)
    train_y, val_y = np.asarray(train_y, np.int64), np.asarray(val_y, np.int64)
    trainer = HeadTrainer(train_x.shape[1], num_classes, lr, l2)
    rng = np.random.default_rng(seed)
    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    best = _Best()
    for epoch in range(epochs):
        order = rng.permutation(len(train_y))
        logs = [
            (len(idx), trainer.train_batch(train_x[idx], train_y[idx]))
            for idx in np.array_split(order, max(1, math.ceil(len(order) / batch_size)))
        ]
        _record(history, logs, trainer.evaluate(val_x, val_y)[:2])
        best.update(epoch, history["val_accuracy"][-1], history["val_loss"][-1], trainer.head)
    trainer.head.set_weights(best.weights)
    return trainer.head, history, best.epoch


def _record(history: dict, logs: list[tuple[int, tuple[float, float]]], val) -> None:
    """Append one epoch: train loss/accuracy averaged over batches (weighted by size), val."""
    n = sum(b for b, _ in logs)
    history["loss"].append(sum(b * l for b, (l, _) in logs) / n)
    history["accuracy"].append(sum(b * a for b, (_, a) in logs) / n)
    history["val_loss"].append(val[0])
    history["val_accuracy"].append(val[1])


# --- backbone forward passes ----------------------------------------------------------------


def make_forward(backbone):
    """A compiled ``uint8 images (B, S, S, 3) -> features (B, D)`` of the frozen backbone."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(images):
        x = backbone.preprocess(tf.cast(images, tf.float32))
        out = backbone.model(x, training=False)  # (B, D)
        return next(iter(out.values())) if isinstance(out, dict) else out  # TFSMLayer: dict

    return lambda images: forward(tf.convert_to_tensor(images)).numpy()


def _batches(split, img_size, batch_size, augment, seed, shuffle=False, indices=None):
    from vitwatch.data import pipeline

    return pipeline.batches(
        split, img_size, batch_size, augment=augment, seed=seed, shuffle=shuffle, indices=indices
    )


def _progress(
    iterable: Iterable, total: int | None, desc: str, enabled: bool = True, unit: str = "batch"
):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, mininterval=2.0)


class _Extractor:
    """Cached features of one backbone, and the seconds computing them took, counted even
    when they come from the cache (``features.LAST_STATS["compute_seconds"]``), so that a
    protocol's cost does not depend on which protocol happened to run first."""

    def __init__(self, backbone, data, cfg, progress: bool = True):
        self.backbone, self.data, self.cfg, self.progress = backbone, data, cfg, progress
        self.compute_seconds = 0.0
        self.computed_images = 0  # backbone passes this protocol really made
        self.cached_images = 0  # rows read from the feature cache instead
        self.views: set[tuple[str, int]] = set()

    def __call__(self, split_name: str, view: int = 0) -> np.ndarray:
        from vitwatch import features

        x = features.extract(
            self.backbone,
            getattr(self.data, split_name),
            split_name,
            self.cfg,
            view=view,
            progress=self.progress,
        )
        if (split_name, view) not in self.views:  # count each cached view once
            self.views.add((split_name, view))
            stats = features.LAST_STATS
            self.compute_seconds += float(stats.get("compute_seconds") or 0.0)
            self.computed_images += int(stats.get("computed_images", 0))
            self.cached_images += int(stats.get("cached_images", 0))
        return np.asarray(x, np.float32)

    def counts(self) -> dict[str, float]:
        """Distinct images the protocol needs through the backbone, and how they were got."""
        return {
            "backbone_forward_images": self.computed_images + self.cached_images,
            "computed_images": self.computed_images,
            "cache_hit_images": self.cached_images,
            "extract_seconds": self.compute_seconds,
        }

    def eval_splits(self) -> tuple[np.ndarray, np.ndarray]:
        """Plain-view validation and test features."""
        return self("val"), self("test")


def _check_rows(x: np.ndarray, split, name: str) -> None:
    if len(x) != len(split.labels):
        raise ValueError(
            f"features of split {name!r}: {len(x)} rows for {len(split.labels)} "
            "labels (bad images must be dropped from the split when it is loaded)"
        )


# --- protocol Z -------------------------------------------------------------------------------


def protocol_z(backbone, data, cfg) -> RunResult:
    """No training: ImageNet-1k logits restricted to the dog classes, then a softmax."""
    if backbone.imagenet_logits is None:
        raise ValueError(f"backbone {backbone.name!r} has no ImageNet-1k head: no protocol Z")
    idx = np.asarray(data.imagenet_indices)
    extractor = _Extractor(backbone, data, cfg)
    val_x, test_x = extractor.eval_splits()
    _check_rows(val_x, data.val, "val"), _check_rows(test_x, data.test, "test")
    val_probs = softmax(np.asarray(backbone.imagenet_logits(val_x))[:, idx])  # (N, K)
    test_probs = softmax(np.asarray(backbone.imagenet_logits(test_x))[:, idx])
    return RunResult(
        "Z",
        backbone.name,
        val_probs,
        np.asarray(data.val.labels),
        test_probs,
        np.asarray(data.test.labels),
        timings={**extractor.counts(), "train_seconds": 0.0},
        extra={"imagenet_indices": idx.tolist()},
    )


# --- protocol A -------------------------------------------------------------------------------


def epoch_views(cfg, seed: int) -> list[int]:
    """The cached view each epoch of protocol A shows the head of seed ``seed``: views 1..E
    (drawn once by ``cfg.seed``) in an order drawn by ``seed``; view 0 (the eval view) every
    epoch when ``cfg.augment`` is off."""
    if not cfg.augment:
        return [0] * cfg.head_epochs
    return [int(v) + 1 for v in np.random.default_rng([seed, 1]).permutation(cfg.head_epochs)]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of the training images in ``epoch`` for the head of ``seed``."""
    return np.random.default_rng([seed, 2, epoch]).permutation(n)


def _protocol_a_seed(
    backbone, data, cfg, seed: int, extractor: _Extractor, stream: bool, progress: bool
) -> tuple[RunResult, int]:
    """One head of protocol A; returns it and the images streamed through the backbone."""
    import keras

    from vitwatch import features

    keras.utils.set_random_seed(seed)
    k = len(data.class_names)
    val_x, test_x = extractor.eval_splits()  # frozen backbone: computed once, cached
    val_y, test_y = np.asarray(data.val.labels), np.asarray(data.test.labels)
    train_y = np.asarray(data.train.labels)
    trainer = HeadTrainer(backbone.feature_dim, k, cfg.head_lr)
    forward = make_forward(backbone) if stream else None
    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    best, streamed, t0 = _Best(), 0, time.perf_counter()
    n, bs = len(train_y), cfg.batch_size
    for epoch, view in enumerate(epoch_views(cfg, seed)):
        order = epoch_order(n, seed, epoch)
        logs = []
        if stream:  # the seed's way: the epoch's view pushed through the backbone
            batches = (
                _batches(
                    data.train,
                    backbone.img_size,
                    bs,
                    True,
                    features.view_seed(cfg.seed, view),
                    indices=order,
                )
                if view
                else features.eval_batches(data.train, backbone, bs, _view_name(cfg), indices=order)
            )
            for images, idx in _progress(
                batches, math.ceil(n / bs), f"A {backbone.name} epoch {epoch + 1}", progress
            ):
                logs.append((len(idx), trainer.train_batch(forward(images), train_y[idx])))
                streamed += len(idx)
        else:  # the same view's features, from the cache, in the same batches
            feats = extractor("train", view=view)  # (N, D)
            for idx in (order[i : i + bs] for i in range(0, n, bs)):
                logs.append((len(idx), trainer.train_batch(feats[idx], train_y[idx])))
        _record(history, logs, trainer.evaluate(val_x, val_y)[:2])
        best.update(epoch, history["val_accuracy"][-1], history["val_loss"][-1], trainer.head)
    train_seconds = time.perf_counter() - t0
    head = trainer.head
    head.set_weights(best.weights)
    _, _, val_probs = _evaluate(head, val_x, val_y)
    extra = {"best_epoch": best.epoch, "epoch_views": epoch_views(cfg, seed)}
    return _head_result(
        "A", backbone.name, head, val_probs, val_y, test_x, test_y, history, train_seconds, extra
    ), streamed


def protocol_a(backbone, data, cfg, progress: bool = True, stream: bool = False) -> RunResult:
    """The seed's protocol: each epoch shows the head a freshly augmented view of the training
    images through the frozen backbone (Adam); the epoch with the best validation accuracy is
    kept. One head per seed of :func:`head_seeds`, all on the same cached views.

    ``stream=False`` (default) computes each epoch's view once into the feature cache and
    trains on it; ``stream=True`` pushes the same images through the backbone batch by batch,
    as the seed did (identical batches, same history up to float rounding; for tests)."""
    seeds = head_seeds(cfg)
    extractor = _Extractor(backbone, data, cfg, progress)
    runs, streamed = [], 0
    for s in seeds:
        run, n = _protocol_a_seed(backbone, data, cfg, s, extractor, stream, progress)
        runs.append(run)
        streamed += n
    out = combine(runs, seeds)
    n_train = len(data.train.labels)
    counts = extractor.counts()
    counts["backbone_forward_images"] += streamed
    counts["computed_images"] += streamed
    out.timings.update(counts)
    # what streaming every epoch of every head (the seed's way) would have cost
    out.timings["streamed_forward_images"] = (
        len(seeds) * cfg.head_epochs * n_train + len(data.val.labels) + len(data.test.labels)
    )
    out.timings["images_per_second"] = (
        len(seeds) * cfg.head_epochs * n_train / max(out.timings["train_seconds"], 1e-9)
    )
    return out


# --- protocol B -------------------------------------------------------------------------------


def probe_grid(cfg) -> list[tuple[float, float, bool]]:
    """Every (learning rate, L2, standardise) protocol B tries, the same for every backbone:
    ``probe_lr_grid`` (``[head_lr]`` when empty) x ``probe_l2_grid`` x standardisation
    (``probe_standardize``: "auto" tries raw and standardised features, so that a CNN's
    unnormalised features are not handicapped by one learning rate tuned for another scale)."""
    lrs = list(getattr(cfg, "probe_lr_grid", None) or [cfg.head_lr])
    std = {"auto": (False, True), "never": (False,), "always": (True,)}[
        getattr(cfg, "probe_standardize", "never")
    ]
    return [(float(lr), float(l2), s) for s in std for lr in lrs for l2 in cfg.probe_l2_grid]


def fold_standardisation(head, mean: np.ndarray, scale: np.ndarray) -> None:
    """Rewrite a head trained on ``(x - mean) / scale`` as the same function of raw ``x``:
    W' = W / scale, b' = b - (mean / scale) W."""
    kernel, bias = head.get_weights()  # (D, K), (K,)
    head.set_weights([kernel / scale[:, None], bias - (mean / scale) @ kernel])


def _probe(
    train_x,
    train_y,
    val_x,
    val_y,
    test_x,
    test_y,
    k: int,
    cfg,
    seed: int,
    backbone_name: str,
    progress: bool,
) -> RunResult:
    """One probe: a head per point of :func:`probe_grid` (seed ``seed``, same epochs for every
    backbone), the best on validation kept; the test set is scored once, with that head."""
    t0 = time.perf_counter()
    mean = train_x.mean(axis=0)
    scale = train_x.std(axis=0) + 1e-6  # (D,)
    scan, best = {}, None
    grid = probe_grid(cfg)
    for lr, l2, standardise in _progress(
        grid, len(grid), f"B {backbone_name} seed {seed}", progress, unit="setting"
    ):
        tx, vx = (
            ((train_x - mean) / scale, (val_x - mean) / scale) if standardise else (train_x, val_x)
        )
        head, history, epoch = fit_head(
            tx, train_y, vx, val_y, k, epochs=cfg.probe_epochs, lr=lr, l2=l2, seed=seed
        )
        if standardise:
            fold_standardisation(head, mean, scale)
        val_loss, val_acc, val_probs = _evaluate(head, val_x, val_y)
        scan[f"lr={lr:g} l2={l2:g} std={int(standardise)}"] = {
            "val_accuracy": val_acc,
            "val_loss": val_loss,
            "best_epoch": epoch,
        }
        if best is None or (val_acc, -val_loss) > best[0]:
            best = ((val_acc, -val_loss), (lr, l2, standardise), head, history, epoch, val_probs)
    train_seconds = time.perf_counter() - t0
    _, (lr, l2, standardise), head, history, epoch, val_probs = best
    extra = {"l2": l2, "lr": lr, "standardize": standardise, "l2_scan": scan, "best_epoch": epoch}
    return _head_result(
        "B", backbone_name, head, val_probs, val_y, test_x, test_y, history, train_seconds, extra
    )


def protocol_b(backbone, data, cfg, progress: bool = True) -> RunResult:
    """Linear probe: features cached once (``cfg.probe_views`` views of train: the eval view,
    then augmented views 1, 2, ..., the same as protocol A's), the softmax head trained for
    each setting of :func:`probe_grid`; the one with the best validation accuracy wins. One probe
    per seed of :func:`head_seeds`, on the same features."""
    if not cfg.probe_l2_grid:
        raise ValueError("parameter 'probe_l2_grid' is empty: give at least one L2 strength")
    if cfg.probe_views < 1:
        raise ValueError(f"parameter 'probe_views' must be >= 1, got {cfg.probe_views}")
    seeds = head_seeds(cfg)
    k = len(data.class_names)
    extractor = _Extractor(backbone, data, cfg, progress)
    views = [extractor("train", view=v) for v in range(cfg.probe_views)]
    train_x = np.concatenate(views)  # (V * N, D)
    train_y = np.tile(np.asarray(data.train.labels), cfg.probe_views)
    val_x, test_x = extractor.eval_splits()
    val_y, test_y = np.asarray(data.val.labels), np.asarray(data.test.labels)
    _check_rows(views[0], data.train, "train"), _check_rows(val_x, data.val, "val")
    runs = [
        _probe(train_x, train_y, val_x, val_y, test_x, test_y, k, cfg, s, backbone.name, progress)
        for s in seeds
    ]
    out = combine(runs, seeds)
    out.timings.update(extractor.counts())
    return out


# --- protocol C -------------------------------------------------------------------------------


def strategy():
    """``MirroredStrategy`` over every visible GPU when there are several, else the default."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def _blocks(model) -> tuple[list, list]:
    """``(blocks, after)``: the backbone's blocks in order (each a list of layers), and the
    layers after the last one (final norm). Knows our ViT (``model.blocks``, ``model.norm``),
    Keras functional models whose layers are named ``convN_blockM_*`` (ResNet-50: 16 residual
    blocks) or ``blockN_unitMM_*`` (BiT's ResNetV2: 16 units in R50x1), and models wrapping
    one of those."""
    import re

    if getattr(model, "blocks", None):
        after = [getattr(model, n) for n in ("norm",) if getattr(model, n, None) is not None]
        return [[b] for b in model.blocks], after
    layers = list(getattr(model, "layers", []))
    groups: dict[str, list] = {}
    last = -1
    for i, layer in enumerate(layers):
        m = re.match(r"^(conv\d+_block\d+|block\d+_unit\d+)_", layer.name)
        if m:
            groups.setdefault(m.group(1), []).append(layer)
            last = i
    if groups:
        return list(groups.values()), layers[last + 1 :]
    for layer in layers:  # a wrapper: look one level down
        if getattr(layer, "layers", None) or getattr(layer, "blocks", None):
            found = _blocks(layer)
            if found[0]:
                return found
    return [], []


def unfreeze(model, n_blocks: int) -> int:
    """Make the last ``n_blocks`` blocks (and the layers after them) trainable, freeze the
    rest; -1 = everything. Works on variables, so that weights owned by the model itself
    (class token, position embeddings) are frozen too. Returns the trainable parameter count.
    Non-trainable state (BatchNorm statistics) is never made trainable."""
    import keras

    model.trainable = True
    if not hasattr(model, "_vitwatch_trainable"):  # remember what was trainable at first
        model._vitwatch_trainable = {id(v) for v in model.weights if v.trainable}
    keep = model._vitwatch_trainable
    if n_blocks != -1:
        blocks, after = _blocks(model)
        if not blocks:
            raise ValueError(
                f"parameter 'finetune_blocks'={n_blocks}: cannot find the blocks "
                f"of backbone model {model.name!r}; use -1 to fine-tune all of it"
            )
        if not 0 <= n_blocks <= len(blocks):
            raise ValueError(
                f"parameter 'finetune_blocks' must be -1 or 0..{len(blocks)} for "
                f"{model.name!r}, got {n_blocks}"
            )
        kept = [l for group in blocks[len(blocks) - n_blocks :] for l in group]
        kept += after if n_blocks > 0 else []
        keep = keep & {id(v) for layer in kept for v in layer.weights}
    for v in model.weights:
        v.trainable = id(v) in keep
    # BatchNorm stays frozen and in inference mode: Keras 3 runs a BatchNormalization layer
    # with batch statistics whenever it is trainable and training=True, whatever training=False
    # was given when the functional model was built (the Keras transfer-learning guide's advice).
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return count_params(model.trainable_weights)


def _image_dataset(
    split,
    backbone,
    batch_size: int,
    augment: bool,
    seed: int,
    repeat: bool = False,
    shuffle: bool = False,
):
    """A ``tf.data`` pipeline of ``(preprocessed images, labels)``; a new augmentation draw and
    order at each pass over the split (each epoch); endless when ``repeat``."""
    import tensorflow as tf

    labels = np.asarray(split.labels)
    s = backbone.img_size
    calls = {"n": 0}

    def gen():
        calls["n"] += 1
        for images, idx in _batches(
            split, s, batch_size, augment, seed * 1000 + calls["n"], shuffle
        ):
            yield images, labels[idx]

    sig = (tf.TensorSpec((None, s, s, 3), tf.uint8), tf.TensorSpec((None,), tf.int64))
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    ds = ds.map(lambda x, y: (backbone.preprocess(tf.cast(x, tf.float32)), y))
    return (ds.repeat() if repeat else ds).prefetch(2)


def predict(model, split, backbone, batch_size: int, eval_view: str = "native") -> np.ndarray:
    """Probabilities ``(N, K)`` of a whole-image model on a split (evaluation view
    ``eval_view``, as :func:`features.eval_batches`), through one compiled function shared by
    every split."""
    import tensorflow as tf

    from vitwatch import features

    fn = getattr(model, "_vitwatch_predict", None)
    if fn is None:
        fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        model._vitwatch_predict = fn
    out = np.zeros((len(split.labels), model.output_shape[-1]), np.float32)
    for images, idx in features.eval_batches(split, backbone, batch_size, eval_view):
        x = backbone.preprocess(tf.cast(images, tf.float32))
        out[idx] = np.asarray(fn(x))  # (B, K)
    return out


def _validation_pass(
    model, split, backbone, batch_size: int, verbose: bool, eval_view: str = "native"
):
    """A callback adding ``val_loss`` / ``val_accuracy`` to each epoch's logs (read by
    EarlyStopping and the history), computed by :func:`predict`, the very function that
    evaluates the final model: one compiled graph instead of Keras' separate test step."""
    import keras

    labels = np.asarray(split.labels)

    class ValidationPass(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            probs = predict(model, split, backbone, batch_size, eval_view)  # (N, K)
            p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
            logs["val_loss"] = float(-np.log(p_true).mean())
            logs["val_accuracy"] = float((probs.argmax(1) == labels).mean())
            if verbose:
                per_epoch = (time.perf_counter() - self.t0) / (epoch + 1)
                left = per_epoch * (self.params.get("epochs", epoch + 1) - epoch - 1)
                print(
                    f"epoch {epoch + 1}: "
                    + ", ".join(
                        f"{k} {v:.4f}" for k, v in sorted(logs.items()) if k != "learning_rate"
                    )
                    + f" ({per_epoch:.0f} s/epoch"
                    + (f", at most {left / 60:.1f} min left)" if left > 0 else ")"),
                    flush=True,
                )

    return ValidationPass()


def protocol_c(
    build_backbone: Callable[[], Any], data, cfg, head_weights=None, verbose: bool = True
) -> RunResult:
    """Fine-tuning, once per seed of :func:`head_seeds`. ``build_backbone()`` makes the
    backbone (inside the distribution strategy's scope, so that its variables can be
    mirrored; called once per seed: every seed starts from the pretrained weights);
    ``head_weights`` = ``(kernel, bias)`` of a trained probe (LP-FT), a list of them (one per
    seed: seed j starts from probe seed j), or None for a fresh head."""
    seeds = head_seeds(cfg)
    if head_weights is None or isinstance(head_weights, tuple):
        head_weights = [head_weights] * len(seeds)
    if len(head_weights) < len(seeds):
        raise ValueError(f"protocol C: {len(head_weights)} probe heads for {len(seeds)} seeds")
    runs = [
        _protocol_c_seed(build_backbone, data, cfg, s, hw, verbose)
        for s, hw in zip(seeds, head_weights)
    ]
    out = combine(runs, seeds)
    for key in ("backbone_forward_images", "backbone_backward_images", "extract_seconds"):
        out.timings[key] = sum(r.timings[key] for r in runs)
    out.timings["computed_images"] = out.timings["backbone_forward_images"]
    out.timings["cache_hit_images"] = 0
    return out


def _protocol_c_seed(
    build_backbone, data, cfg, seed: int, head_weights, verbose: bool
) -> RunResult:
    """One fine-tuning run, every source of randomness drawn from ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    view = _view_name(cfg)
    k = len(data.class_names)
    strat = strategy()
    replicas = strat.num_replicas_in_sync
    batch = cfg.batch_size * replicas
    steps = math.ceil(len(data.train.labels) / batch)
    total = max(1, cfg.finetune_epochs * steps)
    warmup = min(total - 1, int(round(cfg.finetune_warmup_epochs * steps)))
    with strat.scope():
        backbone = build_backbone()
        unfreeze(backbone.model, cfg.finetune_blocks)
        head = softmax_head(backbone.feature_dim, k)
        if head_weights is not None:
            head.set_weights([np.asarray(w) for w in head_weights])
        inputs = keras.Input((backbone.img_size, backbone.img_size, 3))
        feats = backbone.model(inputs, training=False)  # BatchNorm stays in inference mode
        model = keras.Model(inputs, head(feats), name=f"finetune_{backbone.name}")
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(1, total - warmup),
            warmup_target=cfg.finetune_lr,
            warmup_steps=warmup,
        )
        model.compile(
            keras.optimizers.AdamW(
                schedule, weight_decay=FINETUNE_WEIGHT_DECAY, global_clipnorm=FINETUNE_CLIPNORM
            ),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    train_ds = _image_dataset(
        data.train, backbone, batch, cfg.augment, seed, repeat=True, shuffle=True
    )
    stop = keras.callbacks.EarlyStopping(
        "val_accuracy", patience=cfg.finetune_patience, restore_best_weights=True
    )
    t0 = time.perf_counter()
    fit = model.fit(
        train_ds,
        epochs=cfg.finetune_epochs,
        steps_per_epoch=steps,
        callbacks=[_validation_pass(model, data.val, backbone, batch, verbose, view), stop],
        shuffle=False,
        verbose=0,
    )  # the pipeline shuffles
    train_seconds = time.perf_counter() - t0
    epochs_run = len(fit.history["loss"])
    history = {
        key: [float(v) for v in fit.history[key]]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy")
    }
    t0 = time.perf_counter()
    val_probs = predict(model, data.val, backbone, batch, view)
    test_probs = predict(model, data.test, backbone, batch, view)  # test: once
    eval_seconds = time.perf_counter() - t0
    val_y, test_y = np.asarray(data.val.labels), np.asarray(data.test.labels)
    n_train, n_val = len(data.train.labels), len(val_y)
    return RunResult(
        "C",
        backbone.name,
        val_probs,
        val_y,
        test_probs,
        test_y,
        history,
        timings={
            "backbone_forward_images": epochs_run * (n_train + n_val) + n_val + len(test_y),
            "backbone_backward_images": epochs_run * n_train,
            "train_seconds": train_seconds,
            "extract_seconds": eval_seconds,
            "images_per_second": epochs_run * (n_train + n_val) / max(train_seconds, 1e-9),
        },
        trainable_params=count_params(model.trainable_weights),
        extra={
            "best_epoch": int(stop.best_epoch) if stop.best_epoch is not None else epochs_run - 1,
            "epochs_run": epochs_run,
            "stopped_early": epochs_run < cfg.finetune_epochs,
            "use_probe_head": head_weights is not None,
            "replicas": replicas,
            "global_batch_size": batch,
            "warmup_steps": warmup,
            "total_steps": total,
        },
    )


# --- evaluation views -------------------------------------------------------------------------

STUDY_VIEWS = ("squash", "native")


def hires_size(cfg) -> int:
    """The ViT's higher resolution: 384 px at 224 (``img_size * 384 / 224`` rounded to the
    patch size otherwise, e.g. 112 for the smoke profile's 64 px and 8 px patches)."""
    from vitwatch.models import vit

    patch = vit.VARIANTS[cfg.vit_variant]["patch_size"]
    return patch * max(1, round(cfg.img_size * 384 / 224 / patch))


def vit_at(cfg, img_size: int, name: str = "vit_s16"):
    """The profile's ViT checkpoint in a model built for ``img_size``: ``vit.load_npz``
    resamples the position embeddings (bilinear on the patch grid), with no fine-tuning at
    that resolution."""
    from vitwatch.models import registry, vit

    path = registry.vit_checkpoint_path(cfg.vit_checkpoint, cfg)
    model = vit.build(cfg.vit_variant, num_classes=0, img_size=img_size, name=name)
    vit.load_npz(model, path)
    model.trainable = False
    key = registry._key(
        name, cfg.vit_variant, img_size, "pm1", "gelu_tanh", registry.file_digest(path)
    )
    return registry.Backbone(
        name,
        model,
        vit.preprocess,
        img_size,
        model.embed_dim,
        key,
        description=f"ViT-{cfg.vit_variant} at {img_size} px",
        params=int(model.count_params()),
        source=str(path),
    )


def view_config(cfg, view: str, img_size: int):
    """The config of one cell of the evaluation-view study: protocol B with the eval view only
    (``probe_views`` 1), in view ``view``, stored under ``<results_dir>/eval_views/``."""
    from pathlib import Path

    out = copy.copy(cfg)
    out.eval_view, out.probe_views = view, 1
    out.results_dir = str(Path(cfg.results_dir) / "eval_views" / f"{view}_{img_size}")
    return out


def eval_view_study(
    backbones: dict,
    data,
    cfg,
    names=("vit_s16", "resnet50"),
    hires: bool = True,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[tuple[str, str, int], RunResult]:
    """Protocol B (eval view only, every head seed) of each backbone of ``names`` evaluated
    in each view of :data:`STUDY_VIEWS`, and the ViT at :func:`hires_size` in its native view:
    ``{(backbone, view, img_size): RunResult}``. Training, validation and test images are all
    shown in the view studied. Resumable (:func:`run_or_load` per cell)."""
    cells = [(backbones[n], v) for n in names if n in backbones for v in STUDY_VIEWS]
    if hires and "vit_s16" in names and "vit_s16" in backbones:
        cells.append((vit_at(cfg, hires_size(cfg)), "native"))
    out = {}
    for b, view in cells:
        c = view_config(cfg, view, b.img_size)
        out[(b.name, view, b.img_size)] = run_or_load(
            c, "B", b, data, lambda b=b, c=c: protocol_b(b, data, c, progress), log=log
        )
    return out


def seed_accuracy() -> dict[str, float]:
    """The seed report's validation accuracies (fractions), by backbone name."""
    from vitwatch import published

    vit, resnet = published.REFERENCE_EXPERIMENT
    return {
        "vit_s16": vit["stanford_dogs_val"] / 100,
        "resnet50": resnet["stanford_dogs_val"] / 100,
    }


def summary(runs: dict[str, RunResult]) -> list[dict[str, Any]]:
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

"""Protocol A, the seed's protocol: frozen backbone + one softmax ``Dense`` layer (the head).

A freshly augmented view of the training images every epoch, Adam, the best epoch on
validation kept. The same recipe as the Keras transfer-learning guide (``base_model.trainable
= False``, ``base_model(x, training=False)``): "fixed feature" transfer. A frozen backbone in
inference mode is deterministic, so the features of epoch e's view are computed once and
cached (:mod:`vitwatch.features`, view e + 1): the head sees exactly what streaming the images
would give it (``stream=True`` does that, for the test that checks it).

Seeds: one head per seed of :func:`vitwatch.runs.head_seeds`; a head's seed drives its
initialisation, the order of its mini-batches and the order in which it sees the cached views.
The views themselves are drawn once by ``cfg.seed``, so the head seeds multiply head training,
not backbone passes.
"""

from __future__ import annotations

import math
import time

import numpy as np

from vitwatch import runs
from vitwatch.protocols import head as heads
from vitwatch.protocols.extract import Extractor, progress


def key(cfg) -> dict:
    """Protocol A's settings in the key of a run."""
    from vitwatch import features

    return {
        "head_seeds": runs.head_seeds(cfg),
        "head_epochs": cfg.head_epochs,
        "head_lr": cfg.head_lr,
        "augment": cfg.augment,
        "batch_size": cfg.batch_size,
        "augmentation": features.AUGMENTATION,
    }


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


def _streamed_batches(backbone, data, cfg, view: int, order: np.ndarray):
    """The images of one epoch's view, in the epoch's order (what the cache holds)."""
    from vitwatch import features
    from vitwatch.data import pipeline

    bs = cfg.batch_size
    if view:
        seed = features.view_seed(cfg.seed, view)
        return pipeline.batches(data.train, backbone.img_size, bs, True, seed, indices=order)
    return features.eval_batches(data.train, backbone, bs, cfg.eval_view, indices=order)


def _run_seed(
    backbone,
    data,
    cfg,
    seed: int,
    extractor: Extractor,
    trainer: heads.HeadTrainer,
    stream: bool,
    show: bool,
) -> tuple[runs.RunResult, int]:
    """One head of protocol A, trained by ``trainer``; returns it and the images streamed
    through the backbone."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    val_x, test_x = extractor.eval_splits()  # frozen backbone: computed once, cached
    val_y, test_y = np.asarray(data.val.labels), np.asarray(data.test.labels)
    train_y = np.asarray(data.train.labels)
    trainer.reset(cfg.head_lr)
    history = heads.new_history()
    best, streamed, t0 = heads.Best(), 0, time.perf_counter()
    n, bs = len(train_y), cfg.batch_size
    for epoch, view in enumerate(epoch_views(cfg, seed)):
        order = epoch_order(n, seed, epoch)
        logs = []
        if stream:  # the seed's way: the epoch's view pushed through the backbone
            batches = _streamed_batches(backbone, data, cfg, view, order)
            desc = f"A {backbone.name} epoch {epoch + 1}"
            for images, idx in progress(batches, math.ceil(n / bs), desc, show):
                feats = backbone.forward(images)  # (B, D)
                logs.append((len(idx), trainer.train_batch(feats, train_y[idx])))
                streamed += len(idx)
        else:  # the same view's features, from the cache, in the same batches
            feats = tf.constant(extractor("train", view=view))  # (N, D)
            batches = [order[i : i + bs] for i in range(0, n, bs)]
            logs = trainer.train_epoch(feats, tf.constant(train_y, tf.int64), batches)
        heads.record(history, logs, trainer.evaluate(val_x, val_y)[:2])
        best.update(
            epoch, history["val_accuracy"][-1], history["val_loss"][-1], trainer.head.get_weights
        )
    train_seconds = time.perf_counter() - t0
    head = trainer.head
    head.set_weights(best.weights)
    _, _, val_probs = heads.evaluate(head, val_x, val_y)
    extra = {"best_epoch": best.epoch, "epoch_views": epoch_views(cfg, seed)}
    result = heads.head_result(
        "A", backbone.name, head, val_probs, val_y, test_x, test_y, history, train_seconds, extra
    )
    return result, streamed


def run(
    backbone, data, cfg, progress: bool = True, stream: bool = False, policy=None
) -> runs.RunResult:
    """The seed's protocol: each epoch shows the head a freshly augmented view of the training
    images through the frozen backbone (Adam); the epoch with the best validation accuracy is
    kept. One head per seed of :func:`vitwatch.runs.head_seeds`, all on the same cached views.

    ``stream=False`` (default) computes each epoch's view once into the feature cache and
    trains on it; ``stream=True`` pushes the same images through the backbone batch by batch,
    as the seed did (identical batches, same history up to float rounding; for tests)."""
    seeds = runs.head_seeds(cfg)
    extractor = Extractor(backbone, data, cfg, progress, policy)
    trainer = heads.HeadTrainer(backbone.feature_dim, len(data.class_names))  # one trace
    results, streamed = [], 0
    for s in seeds:
        result, n = _run_seed(backbone, data, cfg, s, extractor, trainer, stream, progress)
        results.append(result)
        streamed += n
    out = runs.combine(results, seeds)
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

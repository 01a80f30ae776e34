"""The softmax head that protocols A, B and C train on a backbone's features, and its training.

One softmax ``Dense`` layer, the seed's classifier: ``feature_dim * K + K`` parameters (46,200
on ViT-S/16's 384-d features and 120 breeds). :class:`HeadTrainer` is Adam with one compiled
training step; :func:`fit_head` trains on feature arrays and keeps the epoch best on
validation (:class:`Best`); :func:`head_result` scores the chosen head once on the test set.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from vitwatch import runs

HEAD_BATCH = 128  # protocol B: batch size of the head on cached features


def softmax_head(
    feature_dim: int, num_classes: int, l2: float = 0.0, name: str = "head", dtype=None
):
    """One softmax ``Dense`` layer: ``feature_dim * num_classes + num_classes`` parameters
    (384 x 120 + 120 = 46,200 on ViT-S/16). ``dtype``: its dtype policy (None: Keras' global
    one; "float32" keeps it in full precision under mixed precision)."""
    import keras

    reg = keras.regularizers.L2(l2) if l2 > 0 else None
    return keras.Sequential(
        [
            keras.Input((feature_dim,)),
            keras.layers.Dense(
                num_classes,
                activation="softmax",
                kernel_regularizer=reg,
                name=f"{name}_dense",
                dtype=dtype,
            ),
        ],
        name=name,
    )


def count_params(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def evaluate(head, x, y) -> tuple[float, float, np.ndarray]:
    """(loss, accuracy, probs) of the head on feature arrays (cross-entropy, no L2 term)."""
    probs = np.asarray(head(np.asarray(x, np.float32), training=False), np.float32)  # (N, K)
    return (*_scores(probs, y), probs)


def _scores(probs: np.ndarray, y) -> tuple[float, float]:
    """(cross-entropy, accuracy) of probabilities (N, K) against labels (N,)."""
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.log(p_true).mean()), float((probs.argmax(1) == y).mean())


def head_result(
    protocol, backbone_name, head, val_probs, val_y, test_x, test_y, history, train_seconds, extra
) -> runs.RunResult:
    """The run of a head chosen on validation: the test set scored once, the head's weights
    stored (the explorer reuses them)."""
    _, _, test_probs = evaluate(head, test_x, test_y)  # test: once
    kernel, bias = head.get_weights()
    return runs.RunResult(
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


class Best:
    """Keeps the weights of the best epoch on validation (accuracy, then loss)."""

    def __init__(self):
        self.key, self.epoch, self.weights = None, -1, None

    def update(self, epoch: int, val_acc: float, val_loss: float, weights: Callable) -> None:
        """``weights()``: the epoch's weights, read only when the epoch is the best so far."""
        key = (val_acc, -val_loss)
        if self.key is None or key > self.key:
            self.key, self.epoch, self.weights = key, epoch, weights()


def new_history() -> dict[str, list[float]]:
    return {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}


def record(history: dict, logs: list[tuple[int, tuple[float, float]]], val) -> None:
    """Append one epoch: train loss/accuracy averaged over batches (weighted by size), val."""
    n = sum(b for b, _ in logs)
    history["loss"].append(sum(b * l for b, (l, _) in logs) / n)
    history["accuracy"].append(sum(b * a for b, (_, a) in logs) / n)
    history["val_loss"].append(val[0])
    history["val_accuracy"].append(val[1])


class HeadTrainer:
    """The softmax head with Adam and one compiled training step on feature batches, reused
    for every head of a run (seeds, grid points): :meth:`reset` gives it a head's initial
    weights, learning rate and L2 strength and a fresh optimizer state, so the step is traced
    once per feature size, not once per head.

    A plain ``tf.function`` step rather than ``Model.fit``: the head is so small that Keras'
    per-epoch machinery would cost more than the training itself. The loss minimised is the
    cross-entropy plus ``l2 * sum(kernel ** 2)`` (Keras' L2 penalty; a variable, so that a new
    strength needs no new trace); the loss reported is the cross-entropy alone, as on
    validation.
    """

    def __init__(self, feature_dim: int, num_classes: int):
        import keras
        import tensorflow as tf

        self.feature_dim, self.num_classes = feature_dim, num_classes
        self.head = softmax_head(feature_dim, num_classes)
        self.optimizer = keras.optimizers.Adam(0.0)
        self.optimizer.build(self.head.trainable_variables)
        self.l2 = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="head_l2")
        head, opt, l2 = self.head, self.optimizer, self.l2
        kernel = head.layers[-1].kernel

        def step(x, y):
            with tf.GradientTape() as tape:
                probs = head(x, training=True)  # (B, K)
                ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, probs))
                loss = ce + l2 * tf.reduce_sum(tf.square(kernel))
            grads = tape.gradient(loss, head.trainable_variables)
            opt.apply_gradients(zip(grads, head.trainable_variables))
            hit = tf.cast(tf.equal(tf.argmax(probs, 1, output_type=y.dtype), y), tf.float32)
            return ce, tf.reduce_mean(hit)

        def epoch(x, y, order, bounds):
            """Steps on x[order[bounds[i]:bounds[i + 1]]] for each i: (ce, accuracy) each."""
            n = tf.shape(bounds)[0] - 1
            ces = tf.TensorArray(tf.float32, size=n)
            accs = tf.TensorArray(tf.float32, size=n)
            for i in tf.range(n):
                idx = order[bounds[i] : bounds[i + 1]]
                ce, acc = step(tf.gather(x, idx), tf.gather(y, idx))
                ces, accs = ces.write(i, ce), accs.write(i, acc)
            return ces.stack(), accs.stack()

        def fit(x, y, val_x, orders, bounds):
            """Every epoch (row of ``orders``) of :func:`epoch`, each followed by the head's
            validation probabilities and weights: the whole training in one call."""
            n = tf.shape(orders)[0]
            logs = [tf.TensorArray(tf.float32, size=n) for _ in range(2)]
            probs = tf.TensorArray(tf.float32, size=n)
            kernels = tf.TensorArray(tf.float32, size=n)
            biases = tf.TensorArray(tf.float32, size=n)
            for e in tf.range(n):
                ces, accs = epoch(x, y, orders[e], bounds)
                logs = [logs[0].write(e, ces), logs[1].write(e, accs)]
                probs = probs.write(e, head(val_x, training=False))  # (N_val, K)
                kernels = kernels.write(e, tf.identity(kernel))
                biases = biases.write(e, tf.identity(head.layers[-1].bias))
            return logs[0].stack(), logs[1].stack(), probs.stack(), kernels.stack(), biases.stack()

        self._step = tf.function(step, reduce_retracing=True)
        self._epoch = tf.function(epoch, reduce_retracing=True)
        self._fit = tf.function(fit, reduce_retracing=True)

    def reset(self, lr: float, l2: float = 0.0) -> None:
        """A new head: initial weights drawn as a fresh :func:`softmax_head` draws them (from
        the global seed: call ``keras.utils.set_random_seed`` first), learning rate ``lr``, L2
        strength ``l2``, Adam's moments and step counter at zero."""
        self.head.set_weights(softmax_head(self.feature_dim, self.num_classes).get_weights())
        for v in self.optimizer.variables:
            v.assign(np.zeros(v.shape, v.dtype))
        self.optimizer.learning_rate = lr
        self.l2.assign(l2)

    def train_batch(self, x, y) -> tuple[float, float]:
        """One Adam step on a batch; returns (cross-entropy, accuracy) of the batch."""
        ce, acc = self._step(np.asarray(x, np.float32), np.asarray(y, np.int64))
        return float(ce), float(acc)

    def train_epoch(self, x, y, batches: list[np.ndarray]) -> list[tuple[int, tuple]]:
        """One Adam step per batch of ``batches`` (consecutive slices of one permutation of
        the rows of ``x``), all in one call: ``[(batch size, (cross-entropy, accuracy))]``, the
        logs of :func:`record`. ``x``, ``y``: float32 / int64 tensors, converted once."""
        import tensorflow as tf

        order = np.concatenate(batches).astype(np.int64)
        bounds = np.cumsum([0] + [len(b) for b in batches], dtype=np.int64)
        ces, accs = self._epoch(x, y, tf.constant(order), tf.constant(bounds))
        sizes = [len(b) for b in batches]
        return [(n, (float(c), float(a))) for n, c, a in zip(sizes, ces.numpy(), accs.numpy())]

    def evaluate(self, x, y) -> tuple[float, float, np.ndarray]:
        return evaluate(self.head, x, y)


def fit_head(
    trainer: HeadTrainer,
    train_x,
    train_y,
    val_x,
    val_y,
    *,
    epochs: int,
    lr: float,
    l2: float = 0.0,
    batch_size: int = HEAD_BATCH,
    seed: int = 0,
):
    """Train a new softmax head on feature arrays with ``trainer`` (reset by ``seed``; Adam,
    shuffled mini-batches); return ``(history, best_epoch)``, ``trainer.head`` holding the
    weights of its best epoch on validation."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    train_x, val_x = np.asarray(train_x, np.float32), np.asarray(val_x, np.float32)
    train_y, val_y = np.asarray(train_y, np.int64), np.asarray(val_y, np.int64)
    trainer.reset(lr, l2)
    rng = np.random.default_rng(seed)
    history = new_history()
    best = Best()
    orders = np.stack([rng.permutation(len(train_y)) for _ in range(epochs)])  # (E, N)
    sizes = [
        len(b) for b in np.array_split(orders[0], max(1, math.ceil(len(train_y) / batch_size)))
    ]
    bounds = np.cumsum([0] + sizes, dtype=np.int64)
    ces, accs, probs, kernels, biases = (
        t.numpy()
        for t in trainer._fit(
            tf.constant(train_x), tf.constant(train_y), tf.constant(val_x), orders, bounds
        )
    )
    for epoch in range(epochs):
        record(
            history,
            list(zip(sizes, zip(map(float, ces[epoch]), map(float, accs[epoch])))),
            _scores(probs[epoch], val_y),
        )
        weights = lambda e=epoch: [kernels[e], biases[e]]  # noqa: E731
        best.update(epoch, history["val_accuracy"][-1], history["val_loss"][-1], weights)
    trainer.head.set_weights(best.weights)
    return history, best.epoch


def fold_standardisation(head, mean: np.ndarray, scale: np.ndarray) -> None:
    """Rewrite a head trained on ``(x - mean) / scale`` as the same function of raw ``x``:
    W' = W / scale, b' = b - (mean / scale) W."""
    kernel, bias = head.get_weights()  # (D, K), (K,)
    head.set_weights([kernel / scale[:, None], bias - (mean / scale) @ kernel])

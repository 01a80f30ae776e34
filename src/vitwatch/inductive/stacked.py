"""Several runs of one model trained as one program: the runs' weights stacked, one step each.

A run of notebook 05 is a small model taking thousands of small steps; on a GPU such a step is
expected to cost more in kernel launches than in arithmetic (not measured: no GPU was at hand).
:class:`StackedTrainer` trains ``runs`` runs of one
architecture at once: every weight gets a leading axis of ``runs``, and ``tf.vectorized_map``
turns the model's step into one over all of them (a batch of ``runs x batch_size`` images
through batched matmuls), so a GPU launches each kernel once per step for all the runs. Nothing
is shared between runs but the program: each keeps its seed's initial weights, subset, batch
order and augmentation stream, and since the loss summed over runs has, for each run's
weights, that run's gradient, and AdamW updates each number on its own, every run follows the
trajectory it follows alone (``tests/test_stacked.py`` compares them). Convolutions are traced
as matmuls (:func:`vitwatch.models.small.convs_as_matmuls`): ``vectorized_map`` cannot batch a
convolution's filter.
"""

from __future__ import annotations

import time

import numpy as np

from vitwatch.data import small as small_data
from vitwatch.inductive.recipe import Recipe, batch_order, scale_for
from vitwatch.inductive.trainer import (
    Trainer,
    augment,
    decays,
    make_trainer,
    normalise,
    record,
)
from vitwatch.models import small as small_models

# One program of notebook 05 may take this share of a GPU's memory: 03's backbones run beside
# it, on the same device. Unknown memory (0) is taken as 16 GiB, a small training GPU.
MEMORY_SHARE = 0.25
ASSUMED_MEMORY_BYTES = 16 << 30


def training_bytes(model, batch_size: int) -> int:
    """A rough upper estimate of one run's activation memory in a training step: every layer's
    output kept for the backward pass, and as much again for its gradient, in float32, with
    the attention maps of a ViT (logits, softmax, gradient) and the shifted copies a
    convolution computed as a matmul reads (:func:`.models.small.convs_as_matmuls`)."""
    floats = 0
    if isinstance(model, small_models.SmallViT):
        c = model.config
        t, d, m = model.num_patches + 1, c["embed_dim"], c["mlp_dim"]
        block = 3 * c["num_heads"] * t * t + t * (12 * d + 3 * m)
        patch_in = c["img_size"] ** 2 * c["channels"] * (5 if c["spt"] else 1)
        floats = c["depth"] * block + 4 * t * d + 2 * patch_in
    else:
        for layer in model.layers:
            out = int(np.prod(layer.output.shape[1:]))
            floats += out
            if isinstance(layer, small_models.layers.Conv2D):
                kh, kw = layer.kernel_size
                floats += kh * kw * layer.input.shape[-1] * out // layer.filters
    return int(2 * 4 * batch_size * floats)


def runs_that_fit(model, batch_size: int, memory_bytes: int) -> int:
    """How many runs of ``model`` one program may train at once on a GPU of ``memory_bytes``
    (0: unknown): :data:`MEMORY_SHARE` of it over :func:`training_bytes`, at least 1."""
    budget = MEMORY_SHARE * (memory_bytes or ASSUMED_MEMORY_BYTES)
    return max(1, int(budget // training_bytes(model, batch_size)))


class StackedTrainer(Trainer):
    """``runs`` runs of one architecture per call of :meth:`fit_many`; the model of
    :class:`.Trainer` holds one run's weights at a time, for prediction (:meth:`load`)."""

    def __init__(
        self,
        arch: str,
        scale: str,
        img_size: int,
        channels: int,
        num_classes: int,
        rec: Recipe,
        runs: int,
        precision: str = "float32",
        jit: bool = False,
    ):
        if runs < 1:
            raise ValueError(f"runs must be >= 1, got {runs}")
        self.runs = runs
        super().__init__(arch, scale, img_size, channels, num_classes, rec, precision, jit)

    def _trained_variables(self) -> tuple[list, list]:
        import keras

        def stacked(variables, trainable):
            return [
                keras.Variable(
                    np.zeros((self.runs, *v.shape), dtype=v.dtype),
                    trainable=trainable,
                    name=f"stacked_{i}",
                )
                for i, v in enumerate(variables)
            ]

        self.trainable = stacked(self.model.trainable_variables, True)
        self.non_trainable = stacked(self.model.non_trainable_variables, False)
        pairs = zip(self.trainable, self.model.trainable_variables)
        return self.trainable, [s for s, v in pairs if not decays(v)]

    def _loop_signature(self, img) -> list:
        import tensorflow as tf

        steps, batch = self.rec.steps, self.rec.batch_size
        return [
            img,  # the pool every run draws from
            tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((self.runs, steps, batch), tf.int32),  # indices into the pool
            tf.TensorSpec((self.runs,), tf.int32),
        ]

    def _train_loop(self, x, y, order, seeds):
        import tensorflow as tf

        rec, model = self.rec, self.model

        def loss_of_one(args):  # one run's weights and batch -> its loss, its new statistics
            trainable, non_trainable, xb, yb = args
            logits, non_trainable = model.stateless_call(
                trainable, non_trainable, xb, training=True
            )
            logits = tf.cast(logits, tf.float32)  # (B, K)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
            return loss, non_trainable

        def step(i, losses):
            idx = order[:, i]  # (R, B)
            xb = tf.stack(  # each run's augmentation stream, as alone
                [
                    augment(tf.gather(x, idx[r]), tf.stack([seeds[r], i]), rec.shift, rec.flip)
                    for r in range(self.runs)
                ]
            )  # (R, B, H, W, C)
            with tf.GradientTape() as tape:
                with small_models.convs_as_matmuls():
                    loss, statistics = tf.vectorized_map(
                        loss_of_one,
                        (
                            [v.value for v in self.trainable],
                            [v.value for v in self.non_trainable],
                            xb,
                            tf.gather(y, idx),
                        ),
                        fallback_to_while_loop=False,
                    )  # (R,)
                total = tf.reduce_sum(loss)  # d total / d run r's weights = run r's gradient
            self.optimizer.apply(tape.gradient(total, self.trainable), self.trainable)
            for v, value in zip(self.non_trainable, statistics):
                v.assign(value)
            return i + 1, losses.write(i, loss)

        losses = tf.TensorArray(tf.float32, size=rec.steps)
        _, losses = tf.while_loop(lambda i, _: i < rec.steps, step, (tf.constant(0), losses))
        return tf.transpose(losses.stack())  # (R, steps)

    def reset_many(self, seeds) -> None:
        """Each run's weights to its seed's initialisation, the optimizer to zero."""
        trainable = [[] for _ in self.trainable]
        non_trainable = [[] for _ in self.non_trainable]
        for seed in seeds:
            self.model.set_weights(self.initial_weights(seed))
            for values, v in zip(trainable, self.model.trainable_variables):
                values.append(v.numpy())
            for values, v in zip(non_trainable, self.model.non_trainable_variables):
                values.append(v.numpy())
        for v, values in zip(self.trainable + self.non_trainable, trainable + non_trainable):
            v.assign(np.stack(values))
        for v in self.optimizer.variables:
            v.assign(np.zeros(v.shape, dtype=v.dtype))

    def fit_many(self, x: np.ndarray, y: np.ndarray, subsets, seeds) -> np.ndarray:
        """Train run r on ``x[subsets[r]]`` from ``seeds[r]``'s initialisation, with that
        seed's batch order and augmentation; the loss of every step, (runs, steps)."""
        if len(subsets) != self.runs or len(seeds) != self.runs:
            raise ValueError(f"{self.runs} runs expected, got {len(subsets)} subsets")
        self.reset_many(seeds)
        order = np.stack(
            [np.asarray(sub)[batch_order(len(sub), self.rec, s)] for sub, s in zip(subsets, seeds)]
        ).astype(np.int32)
        seeds = np.asarray(seeds, dtype=np.int32)
        return self._loop(x, y.astype(np.int64), order, seeds).numpy()

    def load(self, r: int) -> None:
        """Put run ``r``'s weights into the model (for :meth:`predict`, :meth:`accuracy`)."""
        for v, s in zip(self.model.trainable_variables, self.trainable):
            v.assign(s.value[r])
        for v, s in zip(self.model.non_trainable_variables, self.non_trainable):
            v.assign(s.value[r])


def make_stacked(
    arch: str, data: small_data.SmallData, rec: Recipe, runs: int, precision="float32", jit=False
) -> StackedTrainer:
    return StackedTrainer(
        arch,
        scale_for(data),
        data.img_size,
        data.channels,
        data.num_classes,
        rec,
        runs,
        precision,
        jit,
    )


PROBE_STEPS = 5  # steps of the measurement that decides whether stacking pays on a device


def measure(
    arch: str, data: small_data.SmallData, rec: Recipe, runs: int, precision: str, jit: bool
) -> dict:
    """Seconds of one run's step, alone and ``runs`` stacked, on this device: each program
    compiled and run once, then timed over :data:`PROBE_STEPS` steps of ``rec``'s batch on
    the first images of the pool. ``{"stack": stacked is faster, "alone_s", "stacked_s" (None:
    out of memory), "runs"}``."""
    import dataclasses

    probe = dataclasses.replace(rec, steps=PROBE_STEPS)
    n = min(len(data.y_train), 2 * rec.batch_size)
    mean, std = data.mean_std()
    x, y = normalise(data.x_train[:n], mean, std), data.y_train[:n]

    def per_step(fit) -> float:
        fit()  # compile (XLA) and warm up
        start = time.perf_counter()
        fit()
        return (time.perf_counter() - start) / PROBE_STEPS

    alone = make_trainer(arch, data, probe, precision, jit)
    alone_s = per_step(lambda: alone.fit(x, y, 0))
    import tensorflow as tf

    subsets, seeds = [np.arange(n)] * runs, list(range(runs))
    try:
        many = make_stacked(arch, data, probe, runs, precision, jit)
        stacked_s = per_step(lambda: many.fit_many(x, y, subsets, seeds)) / runs
    except tf.errors.ResourceExhaustedError:
        return {"stack": False, "alone_s": alone_s, "stacked_s": None, "runs": runs}
    return {"stack": stacked_s < alone_s, "alone_s": alone_s, "stacked_s": stacked_s, "runs": runs}


def train_many(data: small_data.SmallData, trainer: StackedTrainer, runs) -> list[dict]:
    """Train ``trainer.runs`` runs, ``runs``: (n_train, seed) pairs, at once; each run's
    numbers as :func:`.trainer.train_one` gives them, its ``train_seconds`` an equal share."""
    subsets = [small_data.subset(data.y_train, n, s) for n, s in runs]
    pool = np.unique(np.concatenate(subsets))  # only the images some run trains on
    mean, std = data.mean_std()
    x = normalise(data.x_train[pool], mean, std)
    where = [np.searchsorted(pool, sub) for sub in subsets]
    start = time.perf_counter()
    losses = trainer.fit_many(x, data.y_train[pool], where, [s for _, s in runs])
    share = (time.perf_counter() - start) / len(runs)
    out = []
    for r, ((n, s), sub) in enumerate(zip(runs, subsets)):
        trainer.load(r)
        out.append(
            record(
                data, trainer, x[where[r]], data.y_train[sub], losses[r], share, f"n={n} seed={s}"
            )
        )
    return out

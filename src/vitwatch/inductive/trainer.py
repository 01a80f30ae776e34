"""One model trained from scratch: augmentation, the compiled training loop, one run.

A seed reaches every source of randomness of a run: the model's initial weights (the same at
every size), the training subset (``data.small.subset``), the batch order
(:func:`.recipe.batch_order`) and the augmentation stream (stateless, keyed by seed and step).
"""

from __future__ import annotations

import os
import time

import numpy as np

from vitwatch.data import small as small_data
from vitwatch.inductive.recipe import Recipe, batch_order, scale_for
from vitwatch.models import small as small_models

# Runs of one model trained in one program on a GPU (:mod:`.stacked`): notebook 05's
# grids have 15 runs per model in full (5 sizes x 3 seeds), 3 in quick.
MAX_RUNS_AT_ONCE = 16
RUNS_AT_ONCE_ENV = "VITWATCH_RUNS_AT_ONCE"


def device_settings(devices: list[dict] | None = None) -> dict:
    """How the trainer computes on ``devices`` (``fastpath.gpus()`` when None).

    No GPU: float32 on the plain TensorFlow graph, one run per program (nothing changes on
    CPU, where runs trained at once measured slower: ``benchmarks/bench_small.py``). A GPU: the
    loop compiled with XLA, bfloat16 compute from compute capability 8.0 (A100, H100: the
    exponent range of float32, no loss scaling) with float32 weights, softmax and loss,
    float32 below (float16 would need loss scaling); and up to :data:`MAX_RUNS_AT_ONCE` runs
    of a model in one program, each step's kernels launched once for all of them, as many as
    ``memory_bytes`` (the smallest GPU's, 0 when unknown) allows (:mod:`.stacked`). The
    environment variable ``VITWATCH_RUNS_AT_ONCE`` overrides that number (1: one at a time).
    """

    if devices is None:
        from vitwatch import fastpath

        devices = fastpath.gpus()
    if not devices:
        settings = {"precision": "float32", "jit": False, "runs_at_once": 1, "memory_bytes": 0}
    else:
        cc = min(tuple(d["compute_capability"]) for d in devices)
        settings = {
            "precision": "mixed_bfloat16" if cc >= (8, 0) else "float32",
            "jit": True,
            "runs_at_once": MAX_RUNS_AT_ONCE,
            "memory_bytes": min(int(d.get("memory_bytes", 0)) for d in devices),
        }
    forced = os.environ.get(RUNS_AT_ONCE_ENV, "").strip()
    if forced:
        if not forced.isdigit() or int(forced) < 1:
            raise ValueError(f"{RUNS_AT_ONCE_ENV} must be a whole number >= 1, got {forced!r}")
        settings["runs_at_once"] = int(forced)
    return settings


def normalise(x: np.ndarray, mean, std) -> np.ndarray:
    """uint8 images -> float32, standardised per channel with the pool's ``mean``/``std``."""
    return ((x.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def augment(x, seed, shift: int, flip: bool):
    """Random translation by up to ``shift`` pixels (zero padding) and optional horizontal flip,
    batch-wise and stateless (``seed``: int32 (2,))."""
    import tensorflow as tf

    b, size = tf.shape(x)[0], x.shape[1]
    if shift:
        xp = tf.pad(x, [[0, 0], [shift, shift], [shift, shift], [0, 0]])  # (B, S+2s, S+2s, C)
        off = tf.random.stateless_uniform((b, 2), seed, 0, 2 * shift + 1, dtype=tf.int32)
        rows = off[:, :1] + tf.range(size)[None]  # (B, S)
        cols = off[:, 1:] + tf.range(size)[None]  # (B, S)
        x = tf.gather(xp, rows, axis=1, batch_dims=1)  # (B, S, S+2s, C)
        x = tf.gather(x, cols, axis=2, batch_dims=1)  # (B, S, S, C)
    if flip:
        mask = tf.random.stateless_uniform((b, 1, 1, 1), seed + 1) < 0.5
        x = tf.where(mask, tf.reverse(x, axis=[2]), x)
    return x


def decays(variable) -> bool:
    """Whether AdamW's weight decay applies to ``variable`` (not to biases, normalisation,
    position embeddings, the class token or temperatures)."""
    path = variable.path
    return len(variable.shape) > 1 and "pos_embedding" not in path and not path.endswith("cls")


class Trainer:
    """One model, optimizer and compiled training loop per architecture, reused by every run.

    Tracing a Keras model into a graph costs seconds on a small CPU, far more than training
    these models for a few hundred steps: the loop (all ``rec.steps`` steps in one
    ``tf.while_loop``) and the prediction are traced once, when the trainer is made, and each
    run only resets the weights (to the seed's initialisation) and the optimizer state.
    ``precision`` and ``jit``: see :func:`device_settings`.
    """

    def __init__(
        self,
        arch: str,
        scale: str,
        img_size: int,
        channels: int,
        num_classes: int,
        rec: Recipe,
        precision: str = "float32",
        jit: bool = False,
    ):
        import keras
        import tensorflow as tf

        self.arch, self.scale, self.rec, self.precision = arch, scale, rec, precision
        self.shape = (img_size, img_size, channels, num_classes)
        self.model = small_models.build(arch, scale, img_size, channels, num_classes, precision)
        warmup = max(1, int(rec.warmup_fraction * rec.steps))
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(1, rec.steps - warmup),
            warmup_target=rec.learning_rate,
            warmup_steps=warmup,
        )
        self.optimizer = keras.optimizers.AdamW(schedule, weight_decay=rec.weight_decay)
        trained, no_decay = self._trained_variables()
        self.optimizer.exclude_from_weight_decay(var_list=no_decay)
        self.optimizer.build(trained)
        self._inits: dict[int, list[np.ndarray]] = {}
        img = tf.TensorSpec((None, img_size, img_size, channels), tf.float32)
        xla = True if jit else None  # None: TensorFlow's default (no XLA on CPU)
        self._loop = tf.function(
            self._train_loop, input_signature=self._loop_signature(img), jit_compile=xla
        )
        self._predict = tf.function(
            lambda x: tf.cast(self.model(x, training=False), tf.float32),
            input_signature=[img],
            jit_compile=xla,
        )
        # traced here, in the thread that makes the trainer: runs may then go on in others
        self._loop.get_concrete_function()
        self._predict.get_concrete_function()

    def _trained_variables(self) -> tuple[list, list]:
        """The variables the optimizer trains, and those of them it does not decay: biases,
        normalisation, position embeddings, class token, temperatures."""
        variables = self.model.trainable_variables
        return variables, [v for v in variables if not decays(v)]

    def _loop_signature(self, img) -> list:
        import tensorflow as tf

        return [
            img,
            tf.TensorSpec((None,), tf.int64),
            tf.TensorSpec((self.rec.steps, self.rec.batch_size), tf.int32),
            tf.TensorSpec((), tf.int32),
        ]

    def _train_loop(self, x, y, order, seed):
        import tensorflow as tf

        variables = self.model.trainable_variables

        def step(i, losses):
            idx = order[i]
            xb = augment(tf.gather(x, idx), tf.stack([seed, i]), self.rec.shift, self.rec.flip)
            yb = tf.gather(y, idx)
            with tf.GradientTape() as tape:
                logits = tf.cast(self.model(xb, training=True), tf.float32)  # (B, K)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            return i + 1, losses.write(i, loss)

        losses = tf.TensorArray(tf.float32, size=self.rec.steps)
        _, losses = tf.while_loop(lambda i, _: i < self.rec.steps, step, (tf.constant(0), losses))
        return losses.stack()  # (steps,)

    def initial_weights(self, seed: int) -> list[np.ndarray]:
        """The seed's initialisation (the same for every size). It seeds Keras' global random
        state, so runs on several threads draw theirs on the main one beforehand."""
        import keras

        if seed not in self._inits:
            keras.utils.set_random_seed(seed)
            h, _, c, k = self.shape
            fresh = small_models.build(self.arch, self.scale, h, c, k, self.precision)
            self._inits[seed] = fresh.get_weights()
        return self._inits[seed]

    def reset(self, seed: int) -> None:
        """Weights to the seed's initialisation, optimizer to zero."""
        self.model.set_weights(self.initial_weights(seed))
        for v in self.optimizer.variables:
            v.assign(np.zeros(v.shape, dtype=v.dtype))

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
        """Train from the seed's initialisation; the loss of every step."""
        self.reset(seed)
        order = batch_order(len(x), self.rec, seed)
        return self._loop(x, y.astype(np.int64), order, np.int32(seed)).numpy()

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Logits (N, K), float32."""
        return np.concatenate(
            [self._predict(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
        )

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(x).argmax(axis=1) == y))


def make_trainer(
    arch: str, data: small_data.SmallData, rec: Recipe, precision="float32", jit=False
) -> Trainer:
    return Trainer(
        arch, scale_for(data), data.img_size, data.channels, data.num_classes, rec, precision, jit
    )


def train_one(data: small_data.SmallData, trainer: Trainer, n_train: int, seed: int) -> dict:
    """Train ``trainer``'s model from scratch on ``n_train`` images drawn by ``seed``."""
    idx = small_data.subset(data.y_train, n_train, seed)
    mean, std = data.mean_std()
    x, y = normalise(data.x_train[idx], mean, std), data.y_train[idx]
    start = time.perf_counter()
    losses = trainer.fit(x, y, seed)
    return record(
        data, trainer, x, y, losses, time.perf_counter() - start, f"n={n_train} seed={seed}"
    )


def record(
    data: small_data.SmallData,
    trainer: Trainer,
    x: np.ndarray,
    y: np.ndarray,
    losses: np.ndarray,
    train_seconds: float,
    name: str,
) -> dict:
    """A trained run's numbers: ``trainer``'s model as trained on (``x``, ``y``) normalised,
    with the loss of every step; ``train_seconds``: the run's share of the training time."""
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"{trainer.arch} {name}: the loss diverged")
    mean, std = data.mean_std()
    rec = trainer.rec
    tenth = max(1, rec.steps // 10)
    points = min(10, rec.steps)  # loss curve: 10 means of a tenth (fewer steps: each)
    return {
        "test_accuracy": trainer.accuracy(normalise(data.x_test, mean, std), data.y_test),
        "train_accuracy": trainer.accuracy(x, y),
        "final_loss": float(losses[-tenth:].mean()),
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / rec.steps,
        "steps": rec.steps,
        "epochs_of_subset": rec.steps * rec.batch_size / len(y),
        "loss_curve": [
            float(v) for v in losses.reshape(-1)[: tenth * points].reshape(points, -1).mean(axis=1)
        ],
        "params": small_models.count_params(trainer.model),
        "macs": small_models.count_macs(trainer.model),
    }

"""Protocol C, fine-tuning: the last ``cfg.finetune_blocks`` blocks of the backbone unfrozen.

AdamW, linear warm-up then cosine decay, gradient clipping, early stopping on validation with
the best weights restored. Not AugReg's recipe: [Steiner et al., 2022] fine-tune with SGD,
momentum 0.9, batch 512, clipping at 1, cosine schedule. The head starts from protocol B's
probe when available (LP-FT, [Kumar et al., 2022]). BatchNorm stays frozen, in inference mode.
``tf.distribute.MirroredStrategy`` when several GPUs are seen. One fine-tuning per head seed,
each from the pretrained weights (one model built and compiled per backbone, restored per
seed); the seed drives the head, the order and the augmentation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from vitwatch import runs
from vitwatch.protocols import device
from vitwatch.protocols import head as heads

FINETUNE_WEIGHT_DECAY = 0.05  # AdamW decoupled weight decay
FINETUNE_CLIPNORM = 1.0  # global gradient-norm clipping


def key(cfg) -> dict:
    """Protocol C's settings in the key of a run."""
    return {
        "head_seeds": runs.head_seeds(cfg),
        "finetune_epochs": cfg.finetune_epochs,
        "finetune_lr": cfg.finetune_lr,
        "finetune_blocks": cfg.finetune_blocks,
        "batch_size": cfg.batch_size,
        "finetune_warmup_epochs": cfg.finetune_warmup_epochs,
        "finetune_patience": cfg.finetune_patience,
        "augment": cfg.augment,
        "weight_decay": FINETUNE_WEIGHT_DECAY,
        "clipnorm": FINETUNE_CLIPNORM,
    }


def strategy():
    """``MirroredStrategy`` over every visible GPU when there are several, else the default."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def unfreeze(backbone, n_blocks: int) -> int:
    """Make the last ``n_blocks`` blocks of a frozen backbone (:meth:`Backbone.blocks`) and the
    layers after them trainable, freeze the rest; -1 = everything. Works on variables, so that
    weights owned by the model itself (class token, position embeddings) are frozen too.
    Non-trainable state (BatchNorm statistics) is never made trainable. Returns the trainable
    parameter count. Once per backbone, built frozen (``registry.backbone``'s default)."""
    import keras

    model = backbone.model
    if model.trainable:
        raise ValueError(
            f"unfreeze: backbone {backbone.name!r} is not frozen; build a fresh one "
            "(registry.backbone(name, cfg)) for each fine-tuning"
        )
    model.trainable = True
    keep = {id(v) for v in model.weights if v.trainable}  # all but non-trainable state
    if n_blocks != -1:
        blocks, after = backbone.blocks()
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
    return heads.count_params(model.trainable_weights)


def _image_dataset(split, backbone, batch_size: int, augment: bool, seed: int):
    """An endless, shuffled ``tf.data`` pipeline of ``(preprocessed images, labels)``; a new
    augmentation draw and order at each pass over the split (each epoch)."""
    import tensorflow as tf

    from vitwatch.data import pipeline

    labels = np.asarray(split.labels)
    s = backbone.img_size
    calls = {"n": 0}

    def gen():
        calls["n"] += 1
        for images, idx in pipeline.batches(
            split, s, batch_size, augment=augment, seed=seed * 1000 + calls["n"], shuffle=True
        ):
            yield images, labels[idx]

    sig = (tf.TensorSpec((None, s, s, 3), tf.uint8), tf.TensorSpec((None,), tf.int64))
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    ds = ds.map(lambda x, y: (backbone.preprocess(tf.cast(x, tf.float32)), y))
    return ds.repeat().prefetch(2)


def make_predict(model, backbone, batch_size: int, eval_view: str) -> Callable:
    """``predict(split) -> probabilities (N, K)`` of a whole-image model in evaluation view
    ``eval_view`` (as :func:`vitwatch.features.eval_batches`), through one compiled function
    shared by every split: validation after each epoch and the final predictions alike, traced
    once (any batch size)."""
    import tensorflow as tf

    from vitwatch import features

    s = backbone.img_size
    fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec((None, s, s, 3), tf.float32)],
    )

    def predict(split) -> np.ndarray:
        out = np.zeros((len(split.labels), model.output_shape[-1]), np.float32)
        for images, idx in features.eval_batches(split, backbone, batch_size, eval_view):
            x = backbone.preprocess(tf.cast(images, tf.float32))
            out[idx] = np.asarray(fn(x))  # (B, K)
        return out

    return predict


def _validation_pass(predict: Callable, split, verbose: bool):
    """A callback adding ``val_loss`` / ``val_accuracy`` to each epoch's logs (read by
    EarlyStopping and the history), computed by ``predict``, the very function that
    evaluates the final model: one compiled graph instead of Keras' separate test step. Its
    ``probs[epoch]`` keeps each epoch's predictions: those of the epoch whose weights early
    stopping restores are the final model's, not computed twice."""
    import keras

    labels = np.asarray(split.labels)

    class ValidationPass(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0, self.probs = time.perf_counter(), {}

        def on_epoch_end(self, epoch, logs=None):
            probs = self.probs[epoch] = predict(split)  # (N, K)
            p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
            logs["val_loss"] = float(-np.log(p_true).mean())
            logs["val_accuracy"] = float((probs.argmax(1) == labels).mean())
            if verbose:
                per_epoch = (time.perf_counter() - self.t0) / (epoch + 1)
                left = per_epoch * (self.params.get("epochs", epoch + 1) - epoch - 1)
                shown = [f"{k} {v:.4f}" for k, v in sorted(logs.items()) if k != "learning_rate"]
                print(
                    f"epoch {epoch + 1}: {', '.join(shown)} ({per_epoch:.0f} s/epoch"
                    + (f", at most {left / 60:.1f} min left)" if left > 0 else ")"),
                    flush=True,
                )

    return ValidationPass()


def probe_heads(probe: runs.RunResult | None) -> list | None:
    """LP-FT: the ``(kernel, bias)`` of each seed of a protocol B run (fine-tuning seed j
    starts from probe seed j), or None for fresh heads."""
    if probe is None:
        return None
    return list(zip(probe.arrays["seed_head_kernel"], probe.arrays["seed_head_bias"]))


def run(
    build_backbone: Callable[[], Any],
    data,
    cfg,
    head_weights=None,
    verbose: bool = True,
    policy: Mapping | None = None,
) -> runs.RunResult:
    """Fine-tuning, once per seed of :func:`vitwatch.runs.head_seeds`. ``build_backbone()``
    makes the backbone, once (inside the distribution strategy's scope, so that its variables
    can be mirrored): one model is built and compiled for every seed, and each seed starts from
    the weights it was built with (:class:`Tuner`); ``head_weights`` = ``(kernel, bias)`` of a
    trained probe (LP-FT), a list of them (one per seed: seed j starts from probe seed j,
    :func:`probe_heads`), or None for a fresh head drawn by the seed. ``policy``: the device
    policy (:mod:`vitwatch.protocols.device`; None: the CPU default)."""
    seeds = runs.head_seeds(cfg)
    if head_weights is None or isinstance(head_weights, tuple):
        head_weights = [head_weights] * len(seeds)
    if len(head_weights) < len(seeds):
        raise ValueError(f"protocol C: {len(head_weights)} probe heads for {len(seeds)} seeds")
    tuner = Tuner(build_backbone, len(data.class_names), len(data.train.labels), cfg, policy)
    results = [tuner.run_seed(data, cfg, s, hw, verbose) for s, hw in zip(seeds, head_weights)]
    out = runs.combine(results, seeds)
    for key in ("backbone_forward_images", "backbone_backward_images", "extract_seconds"):
        out.timings[key] = sum(r.timings[key] for r in results)
    out.timings["computed_images"] = out.timings["backbone_forward_images"]
    out.timings["cache_hit_images"] = 0
    return out


class Tuner:
    """One backbone's fine-tuning model (backbone, head, AdamW), built and compiled once for
    every head seed. :meth:`run_seed` restores what a fresh build would hold (the built
    weights, the seed's head, a zero optimizer state and iteration counter) before training:
    the same numbers as one build per seed, without rebuilding the backbone and retracing the
    training step and the prediction function at each seed.

    Under a GPU ``policy`` (:mod:`vitwatch.protocols.device`): the backbone computes in its
    precision while the head, softmax and loss stay float32; float16 scales the loss; the
    step is XLA-compiled; the batch is the policy's. None or the CPU policy: as profiled."""

    def __init__(
        self,
        build_backbone: Callable[[], Any],
        num_classes: int,
        n_train: int,
        cfg,
        policy: Mapping | None = None,
    ):
        import keras

        gpu = not device.is_default(policy)
        self.strategy = strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.batch = (policy["batch_size"] if gpu else cfg.batch_size) * self.replicas
        self.steps = math.ceil(n_train / self.batch)
        self.total = max(1, cfg.finetune_epochs * self.steps)
        self.warmup = min(self.total - 1, int(round(cfg.finetune_warmup_epochs * self.steps)))
        with self.strategy.scope():
            with device.precision(policy):
                backbone = build_backbone()
            unfreeze(backbone, cfg.finetune_blocks)
            # float32 head: softmax and loss in full precision whatever the backbone's
            self.head = heads.softmax_head(backbone.feature_dim, num_classes, dtype="float32")
            inputs = keras.Input((backbone.img_size, backbone.img_size, 3))
            feats = backbone.model(inputs, training=False)  # BatchNorm stays in inference mode
            model = keras.Model(inputs, self.head(feats), name=f"finetune_{backbone.name}")
            schedule = keras.optimizers.schedules.CosineDecay(
                0.0,
                decay_steps=max(1, self.total - self.warmup),
                warmup_target=cfg.finetune_lr,
                warmup_steps=self.warmup,
            )
            optimizer = keras.optimizers.AdamW(
                schedule, weight_decay=FINETUNE_WEIGHT_DECAY, global_clipnorm=FINETUNE_CLIPNORM
            )
            if gpu and policy["precision"] == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # fp16 gradients
            xla = {"jit_compile": True} if gpu and policy["jit"] else {}
            model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"], **xla)
            optimizer.build(model.trainable_variables)
        self.backbone, self.model, self.optimizer = backbone, model, optimizer
        self.built_weights = model.get_weights()
        self.predict = make_predict(model, backbone, self.batch, cfg.eval_view)

    def reset(self, seed: int, head_weights) -> None:
        """The state of a fresh build for ``seed``: the built weights, the head (the probe's,
        or a fresh one drawn by ``seed``), the optimizer's moments and step counter at 0."""
        import keras

        keras.utils.set_random_seed(seed)
        if head_weights is None:  # a fresh head, drawn by the seed
            fresh = heads.softmax_head(self.backbone.feature_dim, self.head.output_shape[-1])
            head_weights = fresh.get_weights()
        self.model.set_weights(self.built_weights)
        self.head.set_weights([np.asarray(w) for w in head_weights])
        for v in self.optimizer.variables:
            v.assign(np.zeros(v.shape, v.dtype))

    def run_seed(self, data, cfg, seed: int, head_weights, verbose: bool) -> runs.RunResult:
        """One fine-tuning run, every source of randomness drawn from ``seed``."""
        import keras

        self.reset(seed, head_weights)
        backbone, model, predict = self.backbone, self.model, self.predict
        train_ds = _image_dataset(data.train, backbone, self.batch, cfg.augment, seed)
        stop = keras.callbacks.EarlyStopping(
            "val_accuracy", patience=cfg.finetune_patience, restore_best_weights=True
        )
        validation = _validation_pass(predict, data.val, verbose)
        t0 = time.perf_counter()
        fit = model.fit(
            train_ds,
            epochs=cfg.finetune_epochs,
            steps_per_epoch=self.steps,
            callbacks=[validation, stop],
            shuffle=False,  # the pipeline shuffles
            verbose=0,
        )
        train_seconds = time.perf_counter() - t0
        epochs_run = len(fit.history["loss"])
        history = {
            key: [float(v) for v in fit.history[key]]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy")
        }
        t0 = time.perf_counter()
        restored = validation.probs.get(stop.best_epoch)  # the restored weights' predictions
        val_probs = restored if restored is not None else predict(data.val)
        test_probs = predict(data.test)  # test: once
        eval_seconds = time.perf_counter() - t0
        val_y, test_y = np.asarray(data.val.labels), np.asarray(data.test.labels)
        n_train, n_val = len(data.train.labels), len(val_y)
        n_final = len(test_y) + (n_val if restored is None else 0)
        return runs.RunResult(
            "C",
            backbone.name,
            val_probs,
            val_y,
            test_probs,
            test_y,
            history,
            timings={
                "backbone_forward_images": epochs_run * (n_train + n_val) + n_final,
                "backbone_backward_images": epochs_run * n_train,
                "train_seconds": train_seconds,
                "extract_seconds": eval_seconds,
                "images_per_second": epochs_run * (n_train + n_val) / max(train_seconds, 1e-9),
            },
            trainable_params=heads.count_params(model.trainable_weights),
            extra={
                "best_epoch": int(stop.best_epoch)
                if stop.best_epoch is not None
                else epochs_run - 1,
                "epochs_run": epochs_run,
                "stopped_early": epochs_run < cfg.finetune_epochs,
                "use_probe_head": head_weights is not None,
                "replicas": self.replicas,
                "global_batch_size": self.batch,
                "warmup_steps": self.warmup,
                "total_steps": self.total,
            },
        )

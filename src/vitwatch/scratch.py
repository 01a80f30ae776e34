"""Training small models from scratch over training-set sizes and seeds (notebook 05).

The question behind Figures 3 and 4 of [Dosovitskiy et al., 2021], in miniature: the same
models trained on nested, stratified subsets of growing size; test accuracy against the number
of training images, mean and 95 % t-interval over seeds, one curve per model. Comparisons
between models are paired by seed (:func:`paired_gaps`): one seed draws the subset, the batch
order and the augmentation stream for every model, and each model's initialisation.

The recipe is shared by every model and every size, so the curves differ only by the model and
the data: AdamW with linear warm-up and cosine decay, the same augmentation (random shifts, plus
horizontal flips on natural images), and the same **number of optimizer steps** for every run
(``small_epochs`` passes over the *largest* subset): a point with 100 images sees them many
times, a point with 800 sees each fewer times, and compute is constant along the x axis.

Each finished run is written atomically to ``<results_dir>/05_scratch/<dataset>/`` as one JSON
holding its specification; :func:`run_grid` skips runs whose stored specification matches, so a
killed run resumes where it stopped and a changed setting reruns only what it changes.
"""

from __future__ import annotations

import json
import math
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as _sps

from vitwatch import results
from vitwatch.data import small as small_data
from vitwatch.models import small as small_models

VERSION = 1  # bump when the training code changes what a run produces


@dataclass(frozen=True)
class Recipe:
    """Optimisation settings shared by all models (not tuned per model: see the notebook)."""

    batch_size: int
    steps: int
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    shift: int = 1  # random translation, pixels
    flip: bool = False  # random horizontal flip (natural images only)


def recipe(cfg, data: small_data.SmallData) -> Recipe:
    """The recipe of a profile: the step budget is ``small_epochs`` passes over the largest size."""
    sizes = check_sizes(cfg.small_train_sizes, len(data.y_train))
    if cfg.small_epochs < 1:
        raise ValueError(f"parameter 'small_epochs' must be >= 1, got {cfg.small_epochs}")
    natural = data.name == "cifar10"
    batch = 128 if natural else 32
    return Recipe(
        batch_size=batch,
        steps=cfg.small_epochs * math.ceil(max(sizes) / batch),
        learning_rate=1e-3 if natural else 2e-3,
        shift=4 if natural else 1,
        flip=natural,
    )


def check_sizes(sizes, pool: int) -> list[int]:
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(n, int) or isinstance(n, bool) for n in sizes):
        raise ValueError(f"parameter 'small_train_sizes' must be a list of >= 2 ints, got {sizes}")
    if sorted(set(sizes)) != sizes:
        raise ValueError(f"parameter 'small_train_sizes' must be strictly increasing, got {sizes}")
    if sizes[0] < 10 or sizes[-1] > pool:
        raise ValueError(
            f"parameter 'small_train_sizes': sizes must lie in 10..{pool} "
            f"(the training pool), got {sizes}"
        )
    return sizes


def scale_for(data: small_data.SmallData) -> str:
    return "cifar10" if data.name == "cifar10" else "digits"


# --- one run ---------------------------------------------------------------------------------


def _normalise(x: np.ndarray, mean, std) -> np.ndarray:
    return ((x.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


def batch_order(n: int, rec: Recipe, seed: int) -> np.ndarray:
    """(steps, batch_size) indices into the subset: concatenated random permutations (epochs)."""
    rng = np.random.default_rng(seed)
    need = rec.steps * rec.batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(need / n))])
    return order[:need].reshape(rec.steps, rec.batch_size).astype(np.int32)


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


class Trainer:
    """One model, optimizer and compiled training loop per architecture, reused by every run.

    Tracing a Keras model into a graph costs seconds on a small CPU, far more than training
    these models for a few hundred steps: the loop (all ``rec.steps`` steps in one
    ``tf.while_loop``) is traced once, and each run only resets the weights (to the seed's
    initialisation) and the optimizer state.
    """

    def __init__(
        self, arch: str, scale: str, img_size: int, channels: int, num_classes: int, rec: Recipe
    ):
        import keras
        import tensorflow as tf

        self.arch, self.scale, self.rec = arch, scale, rec
        self.shape = (img_size, img_size, channels, num_classes)
        self.model = small_models.build(arch, scale, img_size, channels, num_classes)
        warmup = max(1, int(rec.warmup_fraction * rec.steps))
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=max(1, rec.steps - warmup),
            warmup_target=rec.learning_rate,
            warmup_steps=warmup,
        )
        self.optimizer = keras.optimizers.AdamW(schedule, weight_decay=rec.weight_decay)
        # no decay on biases, normalisation, position embeddings, class token, temperatures
        self.optimizer.exclude_from_weight_decay(
            var_list=[
                v
                for v in self.model.trainable_variables
                if len(v.shape) <= 1 or "pos_embedding" in v.path or v.path.endswith("cls")
            ]
        )
        self.optimizer.build(self.model.trainable_variables)
        self._inits: dict[int, list[np.ndarray]] = {}
        img = tf.TensorSpec((None, img_size, img_size, channels), tf.float32)
        self._loop = tf.function(
            self._train_loop,
            input_signature=[
                img,
                tf.TensorSpec((None,), tf.int64),
                tf.TensorSpec((rec.steps, rec.batch_size), tf.int32),
                tf.TensorSpec((), tf.int32),
            ],
        )
        self._predict = tf.function(lambda x: self.model(x, training=False), input_signature=[img])

    def _train_loop(self, x, y, order, seed):
        import tensorflow as tf

        variables = self.model.trainable_variables

        def step(i, losses):
            idx = order[i]
            xb = augment(tf.gather(x, idx), tf.stack([seed, i]), self.rec.shift, self.rec.flip)
            yb = tf.gather(y, idx)
            with tf.GradientTape() as tape:
                logits = self.model(xb, training=True)  # (B, K)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            return i + 1, losses.write(i, loss)

        losses = tf.TensorArray(tf.float32, size=self.rec.steps)
        _, losses = tf.while_loop(lambda i, _: i < self.rec.steps, step, (tf.constant(0), losses))
        return losses.stack()  # (steps,)

    def reset(self, seed: int) -> None:
        """Weights to the seed's initialisation (the same for every size), optimizer to zero."""
        import keras

        if seed not in self._inits:
            keras.utils.set_random_seed(seed)
            h, w, c, k = self.shape
            fresh = small_models.build(self.arch, self.scale, h, c, k)
            self._inits[seed] = fresh.get_weights()
        self.model.set_weights(self._inits[seed])
        for v in self.optimizer.variables:
            v.assign(np.zeros(v.shape, dtype=v.dtype))

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
        """Train from the seed's initialisation; the loss of every step."""
        self.reset(seed)
        order = batch_order(len(x), self.rec, seed)
        return self._loop(x, y.astype(np.int64), order, np.int32(seed)).numpy()

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Logits (N, K)."""
        return np.concatenate(
            [self._predict(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
        )

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(x).argmax(axis=1) == y))


def make_trainer(arch: str, data: small_data.SmallData, rec: Recipe) -> Trainer:
    return Trainer(arch, scale_for(data), data.img_size, data.channels, data.num_classes, rec)


def train_one(data: small_data.SmallData, trainer: Trainer, n_train: int, seed: int) -> dict:
    """Train ``trainer``'s model from scratch on ``n_train`` images drawn by ``seed``."""
    idx = small_data.subset(data.y_train, n_train, seed)
    mean, std = data.mean_std()
    x, y = _normalise(data.x_train[idx], mean, std), data.y_train[idx]
    start = time.perf_counter()
    losses = trainer.fit(x, y, seed)
    train_seconds = time.perf_counter() - start
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"{trainer.arch} n={n_train} seed={seed}: the loss diverged")
    rec = trainer.rec
    tenth = max(1, rec.steps // 10)
    points = min(10, rec.steps)  # loss curve: 10 means of a tenth (fewer steps: each)
    return {
        "test_accuracy": trainer.accuracy(_normalise(data.x_test, mean, std), data.y_test),
        "train_accuracy": trainer.accuracy(x, y),
        "final_loss": float(losses[-tenth:].mean()),
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / rec.steps,
        "steps": rec.steps,
        "epochs_of_subset": rec.steps * rec.batch_size / n_train,
        "loss_curve": [
            float(v) for v in losses.reshape(-1)[: tenth * points].reshape(points, -1).mean(axis=1)
        ],
        "params": small_models.count_params(trainer.model),
        "macs": small_models.count_macs(trainer.model),
    }


# --- the grid, with its resumable cache -----------------------------------------------------


def spec(data: small_data.SmallData, arch: str, n_train: int, seed: int, rec: Recipe) -> dict:
    """Everything that determines a run's result (compared on resume)."""
    return {
        "version": VERSION,
        "dataset": data.name,
        "n_pool": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
        "arch": arch,
        "n_train": int(n_train),
        "seed": int(seed),
        "recipe": asdict(rec),
        "hyperparameters": small_models.hyperparameters(arch, scale_for(data)),
    }


def run_path(cfg, data, arch: str, n_train: int, seed: int) -> Path:
    return Path(cfg.results_dir) / "05_scratch" / data.name / f"{arch}_n{n_train}_s{seed}.json"


def load_run(path: Path, expected: dict) -> dict | None:
    """The stored run at ``path`` if it exists and was made with ``expected`` settings."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None  # a corrupt file is simply rerun
    return stored if results.normalize(stored.get("spec")) == results.normalize(expected) else None


def run_grid(cfg, data: small_data.SmallData, archs, progress: bool = True) -> pd.DataFrame:
    """Train every (arch, size, seed) not yet cached; one row per run."""
    from tqdm import tqdm

    archs = list(archs)
    for a in archs:
        small_models.hyperparameters(a, scale_for(data))  # validates the name
    rec = recipe(cfg, data)
    sizes = check_sizes(cfg.small_train_sizes, len(data.y_train))
    grid = [(n, s, a) for s in range(cfg.small_seeds) for n in sizes for a in archs]
    rows, trainers = [], {}
    bar = tqdm(grid, desc="from-scratch runs", disable=not progress)
    for n, seed, arch in bar:
        expected = spec(data, arch, n, seed, rec)
        path = run_path(cfg, data, arch, n, seed)
        stored = load_run(path, expected)
        cached = stored is not None
        if not cached:
            if arch not in trainers:
                trainers[arch] = make_trainer(arch, data, rec)
            stored = {"spec": expected, **train_one(data, trainers[arch], n, seed)}
            results.write_json(path, stored)
        bar.set_postfix_str(f"{arch} n={n} seed={seed}: {stored['test_accuracy']:.3f}")
        rows.append(
            {
                "arch": arch,
                "n_train": n,
                "seed": seed,
                "cached": cached,
                **{k: v for k, v in stored.items() if k not in ("spec", "loss_curve")},
            }
        )
    return pd.DataFrame(rows)


# --- cost and runtime estimates -------------------------------------------------------------


def measure_step_seconds(
    arch: str, scale: str, img_size: int, channels: int, batch_size: int, steps: int = 10
) -> float:
    """Seconds per optimizer step of ``arch`` on random data (the loop traced beforehand)."""
    rec = Recipe(batch_size=batch_size, steps=steps)
    trainer = Trainer(arch, scale, img_size, channels, 10, rec)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4 * batch_size, img_size, img_size, channels)).astype(np.float32)
    y = rng.integers(0, 10, size=len(x))
    trainer.fit(x, y, seed=0)  # traces the loop
    start = time.perf_counter()
    trainer.fit(x, y, seed=0)
    return (time.perf_counter() - start) / steps


def estimate_seconds(step_seconds: dict, sizes, seeds: int, epochs: int, batch_size: int) -> float:
    """Training time of a grid: runs x step budget x seconds per step (evaluation excluded)."""
    steps = epochs * math.ceil(max(sizes) / batch_size)
    return float(sum(len(sizes) * seeds * steps * s for s in step_seconds.values()))


# --- aggregation and the sentences of the report --------------------------------------------


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


def aggregate(
    runs: pd.DataFrame, confidence: float = 0.95, value: str = "test_accuracy"
) -> pd.DataFrame:
    """One row per (arch, n_train): seeds, mean, std, t-interval bounds."""
    rows = []
    for (arch, n), g in runs.groupby(["arch", "n_train"], sort=False):
        mean, low, high = t_interval(g[value], confidence)
        rows.append(
            {
                "arch": arch,
                "n_train": int(n),
                "seeds": len(g),
                "mean": mean,
                "std": float(g[value].std(ddof=1)) if len(g) > 1 else math.nan,
                # an accuracy lies in [0, 1]: the symmetric t-interval is clipped to it
                "ci_low": max(low, 0.0) if not math.isnan(low) else low,
                "ci_high": min(high, 1.0) if not math.isnan(high) else high,
            }
        )
        if "train_accuracy" in g:
            rows[-1]["train_mean"] = float(g["train_accuracy"].mean())
    return pd.DataFrame(rows).sort_values(["arch", "n_train"], kind="stable").reset_index(drop=True)


def paired_differences(
    runs: pd.DataFrame, a: str, b: str, value: str = "test_accuracy"
) -> pd.DataFrame:
    """``a`` minus ``b`` per (n_train, seed). Runs with one seed share the training subset, the
    batch order and the augmentation stream (all drawn from the seed), so the difference is
    paired: what the two models learn from the same images."""
    wide = runs.pivot_table(index=["n_train", "seed"], columns="arch", values=value)
    if a not in wide or b not in wide:
        raise ValueError(
            f"paired_differences: need runs of both {a!r} and {b!r}, got {list(wide.columns)}"
        )
    return (wide[a] - wide[b]).dropna().rename("diff").reset_index()


def paired_gaps(runs: pd.DataFrame, a: str, b: str, confidence: float = 0.95) -> pd.DataFrame:
    """Mean paired difference ``a - b`` with its Student-t interval, per size (over seeds) and
    pooled over all seeds x sizes (last row, ``n_train`` = 0): the pooled interval treats the
    seeds x sizes differences as one sample, which ignores that the gap may change with size
    and that nested subsets of one seed are correlated. NaN bounds with a single pair."""
    d = paired_differences(runs, a, b)
    rows = []
    for n, g in d.groupby("n_train", sort=True):
        mean, lo, hi = t_interval(g["diff"], confidence)
        rows.append({"n_train": int(n), "pairs": len(g), "mean": mean, "ci_low": lo, "ci_high": hi})
    mean, lo, hi = t_interval(d["diff"], confidence)
    rows.append({"n_train": 0, "pairs": len(d), "mean": mean, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def _signed(lo: float, hi: float) -> int:
    """+1 / -1 when a paired interval excludes zero above / below, else 0 (NaN: 0)."""
    return 1 if lo > 0 else -1 if hi < 0 else 0


def describe_paired(
    runs: pd.DataFrame, cnn: str = "resnet", vit: str = "vit", confidence: float = 0.95
) -> str:
    """The CNN-vs-ViT verdict from paired differences (never from overlapping intervals)."""
    g = paired_gaps(runs, cnn, vit, confidence)
    per, pooled = g[g["n_train"] > 0], g.iloc[-1]
    if per["ci_low"].isna().all():
        return (
            "With a single seed per size there is no interval of the paired difference, "
            "so no size separates the two models."
        )
    signs = [_signed(lo, hi) for lo, hi in zip(per["ci_low"], per["ci_high"])]
    sizes = per["n_train"].tolist()
    ahead = [f"{n:,}" for n, s in zip(sizes, signs) if s > 0]
    behind = [f"{n:,}" for n, s in zip(sizes, signs) if s < 0]
    k = int(per["pairs"].max())
    t = (
        f"Paired by seed (same subset, order and augmentation; {k} seed"
        f"{'s' if k > 1 else ''}, Student-t intervals), the CNN minus the plain ViT is "
    )
    t += "; ".join(
        f"{100 * m:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] at {n:,}"
        for n, m, lo, hi in zip(sizes, per["mean"], per["ci_low"], per["ci_high"])
    )
    t += ". The interval excludes zero at " + (
        f"{len(ahead) + len(behind)} of {len(sizes)} sizes"
        if ahead or behind
        else "none of the sizes"
    )
    t += (f" (CNN ahead at {', '.join(ahead)}" if ahead else "") + (
        f"{'; ' if ahead else ' ('}ViT ahead at {', '.join(behind)}" if behind else ""
    )
    t += ")" if ahead or behind else ""
    t += (
        f". Pooled over all {int(pooled['pairs'])} seed x size pairs: "
        f"{100 * pooled['mean']:+.1f} points [{100 * pooled['ci_low']:+.1f}, "
        f"{100 * pooled['ci_high']:+.1f}]"
    )
    pooled_sign = _signed(pooled["ci_low"], pooled["ci_high"])
    t += (
        ", so the CNN is ahead on average over this range."
        if pooled_sign > 0
        else ", so the plain ViT is ahead on average over this range."
        if pooled_sign < 0
        else ", an interval that includes zero: over this range the ranking is not established."
    )
    return t


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def describe(
    summary: pd.DataFrame, runs: pd.DataFrame | None = None, cnn: str = "resnet", vit: str = "vit"
) -> list[str]:
    """Sentences stating what the curves show, generated from the numbers (whatever they are).

    ``runs`` (one row per arch x size x seed) gives the paired comparison; without it, no
    sentence claims a difference."""

    def label(a):
        return small_models.LABELS.get(a, a)

    mean = summary.pivot(index="n_train", columns="arch", values="mean").sort_index()
    sizes = [int(n) for n in mean.index]
    out = []
    for n in (sizes[0], sizes[-1]):
        row = mean.loc[n].sort_values(ascending=False)
        out.append(
            f"With {n:,} training images, mean test accuracy is "
            + ", ".join(f"{label(a)} {_pct(v)}" for a, v in row.items())
            + "."
        )
    if cnn in mean and vit in mean:
        gap = mean[cnn] - mean[vit]  # > 0: the CNN is ahead

        def rel(g):
            return f"{'ahead of' if g > 0 else 'behind'} the plain ViT by {100 * abs(g):.1f} points"

        trend = "narrows" if abs(gap.iloc[-1]) < abs(gap.iloc[0]) else "does not narrow"
        same = (gap.iloc[0] > 0) == (gap.iloc[-1] > 0)
        last = f"by {100 * abs(gap.iloc[-1]):.1f} points" if same else rel(gap.iloc[-1])
        out.append(
            f"The {label(cnn)} is {rel(gap.iloc[0])} at {sizes[0]:,} images and "
            f"{last} at {sizes[-1]:,}: the gap {trend} as data grows."
        )
        sign = np.sign(gap.to_numpy())
        cross = [i for i in range(len(sizes) - 1) if sign[i] > 0 >= sign[i + 1]]
        if cross:
            i = cross[0]
            out.append(
                f"The plain ViT's mean overtakes the CNN's between {sizes[i]:,} and "
                f"{sizes[i + 1]:,} images."
            )
        elif (gap > 0).all():
            out.append("The plain ViT's mean stays below the CNN's at every size tried.")
        else:
            out.append("The plain ViT's mean is not below the CNN's at every size tried.")
        if runs is not None:
            out.append(describe_paired(runs, cnn, vit))
        else:
            out.append(
                "Without the per-seed runs no paired comparison is made; separate "
                "intervals of paired runs are not compared."
            )
    if "train_mean" in summary:
        fit = summary[summary["n_train"] == sizes[-1]].set_index("arch")["train_mean"]
        under = fit[fit < 0.9]
        if len(under):
            out.append(
                f"At {sizes[-1]:,} images, "
                + ", ".join(
                    f"{label(a)} reaches only {_pct(v)} training accuracy" for a, v in under.items()
                )
                + ": within this step budget it under-fits, so its test accuracy is limited "
                "by optimisation rather than by over-fitting."
            )
        else:
            out.append(
                f"At {sizes[-1]:,} images every model fits its training subset (at least "
                f"{_pct(fit.min())} training accuracy): the differences in test accuracy "
                "are differences in generalisation."
            )
    for variant in [a for a in mean.columns if a not in (cnn, vit)]:
        parts = []
        for ref in (vit, cnn):
            if ref in mean:
                d = mean[variant] - mean[ref]
                parts.append(
                    f"above the {'plain ViT' if ref == vit else label(ref)} at "
                    f"{int((d > 0).sum())} of {len(sizes)} sizes (mean difference "
                    f"{100 * d.mean():+.1f} points)"
                )
        if parts:
            out.append(f"{label(variant)} is " + ", and ".join(parts) + ".")
    return out


def verdict(
    summary: pd.DataFrame, runs: pd.DataFrame | None = None, cnn: str = "resnet", vit: str = "vit"
) -> str:
    """One sentence placing the measured curves against Figures 3 and 4 of the paper.

    Figure 3: ViTs and BiT ResNets pre-trained on ImageNet-1k, ImageNet-21k or JFT-300M, then
    fine-tuned on ImageNet. Figure 4: *linear 5-shot* ImageNet accuracy of models pre-trained
    on random JFT subsets of 9, 30, 90 and 300 million images; the crossover is *observed*
    there (ResNets ahead on the small subsets, ViTs on the large ones), not extrapolated.
    The certainty comes from the paired differences over seeds (:func:`paired_gaps`).
    """
    mean = summary.pivot(index="n_train", columns="arch", values="mean").sort_index()
    if cnn not in mean or vit not in mean:
        return "Without both the CNN and the plain ViT, the comparison with the paper is moot."
    gap = (mean[cnn] - mean[vit]).to_numpy()  # > 0: the CNN is ahead
    narrows = abs(gap[-1]) < abs(gap[0])
    if runs is not None:
        g = paired_gaps(runs, cnn, vit)
        per = g[g["n_train"] > 0]
        separated = sum(_signed(lo, hi) != 0 for lo, hi in zip(per["ci_low"], per["ci_high"]))
        pooled = g.iloc[-1]
        pooled_text = (
            ""
            if math.isnan(pooled["ci_low"])
            else f"; pooled over {int(pooled['pairs'])} seed x size pairs, "
            f"{100 * pooled['mean']:+.1f} points [{100 * pooled['ci_low']:+.1f}, "
            f"{100 * pooled['ci_high']:+.1f}]"
        )
        certainty = (
            f" (the paired 95 % interval of the CNN's lead excludes zero at "
            f"{separated} of {len(per)} sizes; where it does not, the ranking is not "
            f"established{pooled_text})"
            if separated < len(per)
            else f" (the paired 95 % interval of the CNN's lead excludes zero at every "
            f"size{pooled_text})"
        )
    else:
        certainty = " (no paired interval without the per-seed runs: means only)"
    if (gap > 0).all():
        return (
            "As at the low-data end of the paper's curves (ImageNet-1k pre-training in "
            "Figure 3, the 9M-image JFT subset in Figure 4), the CNN is ahead of the ViT on "
            "average at every size tried here"
            + certainty
            + (
                ", and its mean lead narrows as data grows, the direction in which the "
                "paper observes the crossover (between its JFT subsets in Figure 4)"
                if narrows
                else "; its mean lead does not narrow within this range, so "
                "these runs show no sign of the crossover the paper observes with far "
                "more data"
            )
            + "."
        )
    if (gap <= 0).all():
        return (
            "Unlike the low-data end of the paper's curves, the plain ViT is not behind the "
            "CNN on average at any size" + certainty + ": with this recipe and these small "
            "models the paper's small-data disadvantage does not appear."
        )
    if gap[0] > 0 >= gap[-1]:
        return (
            "The CNN leads on average with little data and the ViT catches up as data "
            "grows" + certainty + ", the shape of the paper's Figures 3 and 4 at sizes "
            "far smaller than its millions of images."
        )
    return (
        "The ranking of the CNN and the plain ViT changes with size without a clear trend"
        + certainty
        + "; the curves neither confirm nor contradict the paper's Figures 3 "
        "and 4."
    )


def save_summary(
    cfg, data: small_data.SmallData, runs: pd.DataFrame, summary: pd.DataFrame
) -> Path:
    """``<results_dir>/05_inductive_bias.json``: every run and the aggregated curves."""
    from vitwatch import config

    return results.write_json(
        Path(cfg.results_dir) / "05_inductive_bias.json",
        {
            "dataset": data.name,
            "source": data.source,
            "profile": cfg.profile,
            "recipe": asdict(recipe(cfg, data)),
            "models": list(cfg.small_models),
            "runs": runs.to_dict(orient="records"),
            "summary": summary.to_dict(orient="records"),
            "sentences": describe(summary, runs),
            "machine": config.machine_summary(),
        },
    )


# --- runtime of the profiles ----------------------------------------------------------------

# Seconds per optimizer step (batch 128, CIFAR-10 scale) measured with measure_step_seconds on
# the project's 2-core CI-class machine (fp32, TF 2.21, load average ~2 from other jobs: a
# slight over-estimate). Used to estimate a profile's runtime on another dataset's run.
CPU_STEP_SECONDS = {
    "cifar10": {"resnet": 0.49, "vit": 0.66, "vit_spt_lsa": 0.55, "vit_small_patch": 2.88}
}
# No GPU was available to measure: a GPU step is *assumed* to cost a fixed 4 ms (kernel
# launches of a small model) plus 3 x MACs x batch at a sustained 10 TMAC/s (fp32/TF32 on an
# A100/H100-class card). An estimate, stated as such in the report.
GPU_OVERHEAD_S, GPU_MACS_PER_S = 4e-3, 10e12


def gpu_step_seconds(macs: int, batch_size: int) -> float:
    return GPU_OVERHEAD_S + 3 * macs * batch_size / GPU_MACS_PER_S


def format_hours(hours: float) -> str:
    """3.2 -> 'about 3.2 hours'; 150 -> 'about 6 days'; minutes below an hour."""
    if math.isnan(hours):
        return "unknown"
    if hours < 1:
        return f"about {max(1, round(60 * hours))} minutes"
    return f"about {hours:.1f} hours" if hours < 48 else f"about {hours / 24:.0f} days"


def profile_estimates(measured: dict, dataset: str) -> pd.DataFrame:
    """Training time of each profile's grid, in hours, on this CPU and on a GPU.

    ``measured``: seconds per step per model measured in this run on ``dataset``; profiles on
    another dataset use :data:`CPU_STEP_SECONDS`.
    """
    from vitwatch import config

    rows = []
    for name in config.PROFILES:
        # YAML over defaults (from_profile would also redirect save_figure's folder)
        p = types.SimpleNamespace(
            **{**{k: v.default for k, v in config.PARAMS.items()}, **config.load_profile(name)}
        )
        batch = 128 if p.small_dataset == "cifar10" else 32
        img, ch = (32, 3) if p.small_dataset == "cifar10" else (8, 1)
        same = p.small_dataset == dataset
        cpu = measured if same else CPU_STEP_SECONDS.get(p.small_dataset, {})
        gpu = {
            a: gpu_step_seconds(
                small_models.count_macs(small_models.build(a, p.small_dataset, img, ch, 10)), batch
            )
            for a in p.small_models
        }
        runs = len(p.small_train_sizes) * p.small_seeds * len(p.small_models)
        steps = p.small_epochs * math.ceil(max(p.small_train_sizes) / batch)
        cpu_h = (
            estimate_seconds(
                {a: cpu[a] for a in p.small_models},
                p.small_train_sizes,
                p.small_seeds,
                p.small_epochs,
                batch,
            )
            / 3600
            if all(a in cpu for a in p.small_models)
            else math.nan
        )
        rows.append(
            {
                "profile": name,
                "dataset": p.small_dataset,
                "runs": runs,
                "steps per run": steps,
                "CPU hours (this machine)": cpu_h,
                "CPU source": "measured in this run" if same else "reference measurement",
                "GPU hours (estimate)": estimate_seconds(
                    gpu, p.small_train_sizes, p.small_seeds, p.small_epochs, batch
                )
                / 3600,
            }
        )
    return pd.DataFrame(rows)

"""The cost of a backbone on the machine that runs the report: parameters, GMACs (registry or
TF profiler) and measured forward throughput, kept in the results store's ``cost.json``.

Also :class:`full_precision`, which turns TF32 off for comparisons at float32 tolerance.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .protocols.head import count_params


def count_gmacs(model, img_size: int) -> float | None:
    """Multiply-accumulates of one forward pass at ``img_size`` (TF profiler FLOPs / 2), in
    billions; None when the profiler cannot count this model."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    try:
        fn = tf.function(lambda x: model(x, training=False))
        graph = fn.get_concrete_function(
            tf.TensorSpec((1, img_size, img_size, 3), tf.float32)
        ).graph
        opts = option_builder.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        flops = model_analyzer.profile(graph, options=opts).total_float_ops
    except Exception:  # noqa: BLE001
        return None
    return flops / 2e9 if flops else None


def measure_cost(backbone, batch_size: int = 16, n_batches: int = 3) -> dict[str, Any]:
    """Parameters, GMACs and measured forward throughput (images/s, after one warm-up batch)
    of a backbone on this machine, on the path feature extraction takes (``Backbone.forward``).
    When that first batch is where the fast path measured its choice (it times each path on
    two batches after a warm-up one), its time on the chosen path is the measurement: the same
    quantity, not paid for twice; otherwise ``n_batches`` are timed."""
    forward = backbone.forward
    s = backbone.img_size
    images = np.random.default_rng(0).integers(0, 256, (batch_size, s, s, 3), dtype=np.uint8)
    forward(images)  # trace + warm up (and, on first use, the fast path's choice)
    timing = getattr(backbone, "path_timing", lambda _: None)(images.shape) or {}
    chosen = timing.get("xla_s" if timing.get("jit") else "graph_s")
    if chosen:
        seconds, n_batches = chosen, 1
    else:
        t0 = time.perf_counter()
        for _ in range(n_batches):
            forward(images)
        seconds = time.perf_counter() - t0
    published = getattr(backbone, "gmacs", None)
    return {
        "params": count_params(backbone.model.weights),
        "gmacs": published if published is not None else count_gmacs(backbone.model, s),
        "gmacs_source": "registry" if published is not None else "TF profiler",
        "images_per_second": batch_size * n_batches / seconds,
        "img_size": s,
        "batch_size": batch_size,
    }


def backbone_costs(
    store, backbones: dict, batch_size: int, log: Callable[[str], None] = print
) -> dict:
    """``cost.json`` of the results store ``store``, measured (batches of ``batch_size``) for
    backbones not yet in it (or whose weights changed), then returned: backbone -> params,
    gmacs, images_per_second, ..."""
    stored = store.load_cost()
    todo = {n: b for n, b in backbones.items() if stored.get(n, {}).get("cache_key") != b.cache_key}
    for name, b in todo.items():
        log(f"measuring the cost of {name} ...")
        stored[name] = {**measure_cost(b, batch_size), "cache_key": b.cache_key}
    if todo:
        store.save_cost({n: stored[n] for n in todo})
    return {n: stored[n] for n in backbones}


class full_precision:
    """Context manager: no TF32 matrix products inside (GPUs round float32 matmul inputs to
    10-bit mantissas by default), for comparisons at float32 tolerance."""

    def __enter__(self):
        import tensorflow as tf

        self._was = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        return self

    def __exit__(self, *exc):
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(self._was)
        return False


# --- runtime plan: expected time per notebook on this machine, before a long run -------------

# The reference machine (the 2-core CI machine, idle): its fp32 matmul peak, ~200 GFLOP/s
# (README: ViT-S/16 there at ~170 GFLOP/s, 0.78 of its peak). The reference seconds below
# (and inductive.estimates.CPU_STEP_SECONDS) were measured there; the plan scales them by
# this machine's :func:`probe`, so a busy machine (other jobs on its cores) reads slower, as it
# will run.
REF_GFLOPS = 200.0
# Measured on the reference machine: fixed costs per notebook (kernel start, imports, model
# building and tracing, figures), seconds; 03 per backbone and protocol.
FIXED_S = {"00": 15, "01": 35, "02": 25, "03": 30, "04": 50, "05": 20, "06": 20}
PER_BACKBONE_S = 25  # 03: loading, tracing and compiling one backbone, 3 protocols
# Achieved GFLOP/s of the backbones / matmul peak in the notebooks, end to end: 0.56 brings the
# plan's 03 for quick (8 training photos per breed) to the 20.4 min it took at size on the AMD
# EPYC (Dec. 3, two batches in flight, 05 niced beside it); `make bench` measures 0.65-0.71 for
# a backbone alone on a steady stream of batches.
MODEL_EFFICIENCY = 0.56
# 04's analyses as forward passes of a mean backbone per image: the ViT's attention maps (1),
# Grad-CAM through both CNNs (2 x 3: a forward and a backward pass), CKA through 3 backbones
# (3 per CKA image); with one build per backbone (3), quick's 04 comes to ~4 min against the
# 5.2 min measured at size there.
ATTENTION_PASSES, CKA_PASSES, BACKBONES_04 = 7, 3, 3
GMACS_224 = 4.3  # mean of ViT-S/16 (4.61), ResNet-50 (3.86), BiT-R50x1 (4.1)


def probe(seconds: float = 3.0) -> dict:
    """A few-second measurement: best fp32 matmul GFLOP/s (TensorFlow) and images/s per core
    of JPEG decode + view (a generated 500 x 375 photo), and whether a GPU is visible."""
    import io

    import tensorflow as tf
    from PIL import Image

    from vitwatch.data import images

    f = tf.function(lambda a, b: tf.matmul(a, b))
    gflops, t_end = 0.0, time.perf_counter() + seconds / 2
    for n in (512, 1024, 1536) * 4:
        a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
        f(a, b).numpy()
        t0 = time.perf_counter()
        f(a, b).numpy()
        gflops = max(gflops, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
        if time.perf_counter() > t_end:
            break
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
        (500, 375), Image.Resampling.BICUBIC
    )
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jpg") as tmp:
        tmp.write(buf.getvalue())
        tmp.flush()
        n, c0, t_end = 0, time.process_time(), time.perf_counter() + seconds / 2
        while time.perf_counter() < t_end or n < 3:
            images.decode(tmp.name, img_size=224)
            n += 1
        decode = n / max(time.process_time() - c0, 1e-6)
    return {
        "gflops": gflops,
        "decode_per_core": decode,
        "cores": os.cpu_count() or 1,
        "gpu": bool(tf.config.list_physical_devices("GPU")),
    }


def _counts(cfg) -> dict:
    """Images of notebook 03 under ``cfg``: training (validation included) and test."""
    if cfg.stand_in:
        classes, tr, te = (
            cfg.synthetic_classes,
            cfg.synthetic_train_per_class,
            cfg.synthetic_test_per_class,
        )
        return {"n_train": classes * tr, "n_test": classes * te}
    return {
        "n_train": 120 * cfg.train_per_class if cfg.train_per_class else 12000,
        "n_test": 120 * cfg.test_per_class if cfg.test_per_class else 8580,
    }


FINETUNE_COST = {"all": 3.0, "some": 1.5}  # a training image / a forward pass (C's blocks)
HIRES_ATTENTION = 1.15  # ViT at 384 px: the N^2 attention grows faster than the MACs count


def forward_gmacs03(cfg) -> dict[str, float]:
    """{backbone: GMACs of the forward passes notebook 03 computes for it} under ``cfg``
    (each image view computed once, :mod:`vitwatch.features`): the evaluation view of every
    image; protocol A's augmented views (one per head epoch, shared by its seeds) where the
    backbone runs A, and B's where it runs B alone with ``probe_views`` > 1; fine-tuning
    (C, once per head seed: training passes at :data:`FINETUNE_COST` of a forward pass, then
    the validation and test images again); the evaluation-view study (the squashed view of the
    ViT and the CNN, the ViT at 384 px)."""
    from vitwatch import catalogue, runs
    from vitwatch.protocols import views

    c = _counts(cfg)
    n_all, n_fit = c["n_train"] + c["n_test"], c["n_train"] * (1 - cfg.val_fraction)
    n_val = c["n_train"] * cfg.val_fraction
    names, _ = catalogue.for_profile(cfg)
    scale = (cfg.img_size / 224) ** 2
    seeds = len(runs.head_seeds(cfg))
    out = {}
    for name in names:
        row = catalogue.BACKBONES[name]
        g = _gmacs(row, scale)
        views_ = n_all
        if "A" in row.protocols:
            views_ += cfg.head_epochs * n_fit
        elif "B" in row.protocols:
            views_ += max(0, cfg.probe_views - 1) * n_fit
        if "C" in row.protocols and cfg.finetune:
            ft = FINETUNE_COST["all" if cfg.finetune_blocks < 0 else "some"]
            views_ += seeds * (ft * cfg.finetune_epochs * n_fit + n_val + c["n_test"])
        out[name] = g * views_
    for part in ("vit", "cnn"):  # the evaluation-view study: the squashed view
        name = catalogue.role(part, names)
        if name:
            out[name] += _gmacs(catalogue.BACKBONES[name], scale) * n_all
    if "vit_s16" in names and cfg.view_study_hires:  # and the ViT at 384 px
        hires = (views.hires_size(cfg) / cfg.img_size) ** 2 * HIRES_ATTENTION
        out["vit_s16"] += _gmacs(catalogue.BACKBONES["vit_s16"], scale) * hires * n_all
    return out


def _gmacs(row, scale: float) -> float:
    """A catalogue row's published GMACs, at 224 px times ``scale`` (the pixel ratio)."""
    return row.gmacs * (224 / row.input_size) ** 2 * scale


def runtime_plan(cfg, measured: dict) -> list[dict]:
    """Expected seconds per notebook on the machine ``measured`` by :func:`probe`, with what
    dominates each: fixed costs, backbone arithmetic, JPEG decoding or training from scratch.
    Each row's ``compute`` is its share that uses every core (the rest, one core's: imports,
    tracing, figures), for :func:`elapsed`.

    A model, not a measurement: notebook 03 = the forward passes of :func:`forward_gmacs03` at
    :data:`MODEL_EFFICIENCY` of the measured matmul peak, plus each image decoded once;
    notebook 05 = ``inductive.estimates.estimate_seconds`` with the reference step times scaled
    by speed, or on a GPU the step times that notebook 05's own GPU estimate assumes
    (:func:`.inductive.estimates.gpu_steps`).
    """
    from vitwatch.inductive import estimates

    speed = measured["gflops"] / REF_GFLOPS  # > 1: faster than reference
    c = _counts(cfg)
    macs_per_s = measured["gflops"] * 1e9 * MODEL_EFFICIENCY / 2
    backbones = forward_gmacs03(cfg)
    compute03 = 1e9 * sum(backbones.values()) / macs_per_s
    decode03 = (c["n_train"] + c["n_test"]) / (measured["decode_per_core"] * measured["cores"])
    fixed = {k: v / min(speed, 1.0) for k, v in FIXED_S.items()}  # not sped up by BLAS
    steps = {
        a: s / speed
        for a, s in estimates.CPU_STEP_SECONDS.get(
            cfg.small_dataset, estimates.CPU_STEP_SECONDS["cifar10"]
        ).items()
    }
    models = [a for a in cfg.small_models if a in steps]
    batch = 128 if cfg.small_dataset == "cifar10" else 32
    scale = 1.0 if cfg.small_dataset == "cifar10" else 0.05  # digits: 8x8 px, tiny models
    if measured.get("gpu"):  # the report's GPU estimate: runs stacked, assumed throughput
        steps, scale = estimates.gpu_steps(cfg), 1.0
        models = list(steps)
    train05 = scale * estimates.estimate_seconds(
        {a: steps[a] for a in models},
        cfg.small_train_sizes,
        cfg.small_seeds,
        cfg.small_epochs,
        batch,
    )
    macs_img = 1e9 * GMACS_224 * (cfg.img_size / 224) ** 2  # a mean backbone's image
    passes04 = ATTENTION_PASSES * cfg.n_attention_images + CKA_PASSES * cfg.n_cka_images
    analysis04 = passes04 * macs_img / macs_per_s
    per_backbone = PER_BACKBONE_S * len(backbones)
    rows = [
        ("00", fixed["00"], 0.0, "fixed"),
        ("01", fixed["01"], 0.0, "fixed (a tiny Transformer)"),
        ("02", fixed["02"], 0.0, "fixed"),
        (
            "03",
            fixed["03"] + per_backbone + compute03 + decode03,
            compute03 + decode03,
            "backbones" if compute03 > decode03 else "JPEG decoding",
        ),
        (
            "04",
            fixed["04"] + PER_BACKBONE_S * BACKBONES_04 + analysis04,
            analysis04,
            "attention, Grad-CAM and CKA passes",
        ),
        ("05", fixed["05"] + train05, train05, "training from scratch"),
        ("06", fixed["06"], 0.0, "fixed"),
    ]
    return [
        {"notebook": k, "seconds": s, "compute": comp, "dominated_by": why}
        for k, s, comp, why in rows
    ]


def elapsed(plan: list[dict], cores: int, jobs: int) -> float:
    """Seconds the notebooks of ``plan`` take when ``jobs`` of them run at once
    (:mod:`vitwatch.report.builder`): at least the longest chain of notebooks that wait for one
    another, and at least the work itself on ``cores`` cores (what uses one core in one
    notebook overlaps with the other notebook; what uses every core does not)."""
    from vitwatch.report import builder

    seconds = {r["notebook"]: r["seconds"] for r in plan}
    if jobs <= 1:
        return sum(seconds.values())
    chain: dict[str, float] = {}
    for k, before in builder.waits_for(sorted(seconds)).items():  # prerequisites come first
        chain[k] = seconds[k] + max((chain[p] for p in before), default=0.0)
    compute = sum(r["compute"] for r in plan)
    single = sum(r["seconds"] - r["compute"] for r in plan)
    work = compute + single / max(1, min(cores, jobs))
    return max(max(chain.values(), default=0.0), work)


def print_runtime_plan(
    cfg, notebook_names=None, previous: dict | None = None, out=print, jobs: int = 1
) -> list[dict]:
    """Probe this machine for a few seconds, then print the expected time of each notebook
    (and the last run's, when known) before a long report starts."""
    measured = probe()
    plan = runtime_plan(cfg, measured)
    names = {n[:2]: n for n in (notebook_names or [])}
    previous = previous or {}
    gpu = (
        "; a GPU is visible: 05 from its own GPU estimate, the rest from this matmul"
        if measured["gpu"]
        else ""
    )
    out(
        f"runtime plan ({cfg.profile}; this machine: {measured['cores']} CPU cores, fp32 "
        f"matmul {measured['gflops']:.0f} GFLOP/s, JPEG decode "
        f"{measured['decode_per_core']:.0f} images/s per core{gpu}):"
    )
    total = 0.0
    for row in plan:
        name = names.get(row["notebook"])
        if names and name is None:
            continue
        total += row["seconds"]
        last = f"; last run {_fmt(previous[name])}" if name in previous else ""
        out(
            f"  {name or row['notebook']:36s} ~{_fmt(row['seconds']):>8s}  "
            f"({row['dominated_by']}{last})"
        )
    out(f"  {'total, one at a time':36s} ~{_fmt(total):>8s}")
    if jobs > 1:
        rows = [r for r in plan if not names or r["notebook"] in names]
        both = elapsed(rows, measured["cores"], jobs)
        out(f"  {f'total, {jobs} at once (this run)':36s} ~{_fmt(both):>8s}")
    return plan


def _fmt(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 90
        else (f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h")
    )

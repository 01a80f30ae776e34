"""The cost of a backbone on the machine that runs the report: parameters, GMACs (registry or
TF profiler) and measured forward throughput, kept in the results store's ``cost.json``.

Also :class:`full_precision`, which turns TF32 off for comparisons at float32 tolerance.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .train import count_params, make_forward


def count_gmacs(model, img_size: int) -> float | None:
    """Multiply-accumulates of one forward pass at ``img_size`` (TF profiler FLOPs / 2), in
    billions; None when the profiler cannot count this model."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder
    try:
        fn = tf.function(lambda x: model(x, training=False))
        graph = fn.get_concrete_function(
            tf.TensorSpec((1, img_size, img_size, 3), tf.float32)).graph
        opts = option_builder.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        flops = model_analyzer.profile(graph, options=opts).total_float_ops
    except Exception:                                                 # noqa: BLE001
        return None
    return flops / 2e9 if flops else None


def measure_cost(backbone, batch_size: int = 16, n_batches: int = 3) -> dict[str, Any]:
    """Parameters, GMACs and measured forward throughput (images/s, after one warm-up batch)
    of a backbone on this machine."""
    forward = make_forward(backbone)
    s = backbone.img_size
    images = np.random.default_rng(0).integers(0, 256, (batch_size, s, s, 3), dtype=np.uint8)
    forward(images)                                                    # trace + warm up
    t0 = time.perf_counter()
    for _ in range(n_batches):
        forward(images)
    seconds = time.perf_counter() - t0
    published = getattr(backbone, "gmacs", None)
    return {"params": count_params(backbone.model.weights),
            "gmacs": published if published is not None else count_gmacs(backbone.model, s),
            "gmacs_source": "registry" if published is not None else "TF profiler",
            "images_per_second": batch_size * n_batches / seconds,
            "img_size": s, "batch_size": batch_size}


def backbone_costs(cfg, backbones: dict, log: Callable[[str], None] = print) -> dict:
    """``cost.json`` of the results store, measured for backbones not yet in it (or whose
    weights changed), then returned: backbone -> params, gmacs, images_per_second, ..."""
    from vitwatch import results
    path = results.results_dir(cfg) / "cost.json"
    stored = results.load_cost(cfg) if path.is_file() else {}
    todo = {n: b for n, b in backbones.items()
            if stored.get(n, {}).get("cache_key") != b.cache_key}
    for name, b in todo.items():
        log(f"measuring the cost of {name} ...")
        stored[name] = {**measure_cost(b, cfg.batch_size), "cache_key": b.cache_key}
    if todo:
        results.save_cost(cfg, {n: stored[n] for n in todo})
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

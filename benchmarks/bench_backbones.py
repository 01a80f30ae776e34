"""Throughput of the report's backbones on this machine: images/s, GFLOP/s, share of peak.

Run: ``.venv/bin/python benchmarks/bench_backbones.py`` (``make bench``; about 3 minutes on
2 CPU cores) or ``--quick`` (fewer batches, about 2 minutes). The PyTorch reference, from an
environment with torch and timm: ``python benchmarks/bench_backbones.py --timm-only``.
Random weights, fp32, 224 px, batch 32, inference. Rows:
- our Keras ViT-S/16 (``vitwatch.models.vit``): the fast path ``model(x)`` as a plain TF graph
  (the default on CPU) and under XLA (the default on GPU), and ``forward()``, which also
  returns every block's attention;
- ViT-S/16 from TF Hub through ``keras.layers.TFSMLayer`` (only when the handle is reachable or
  a local SavedModel is given with ``--hub-handle``; otherwise "skipped");
- Keras ResNet-50 (``keras.applications``);
- timm's PyTorch ViT-S/16 and ResNet-50 when torch and timm happen to be importable (they are
  not dependencies of vitwatch).
GFLOP/s uses the published GMACs at 224 px (REFERENCE.md; 1 MAC = 2 FLOP). The peak is a
4096 x 4096 fp32 matmul measured in the same run (best of before and after the models), so
"of peak" reads "fraction of what this machine's BLAS reaches on a large matmul". On a shared
machine wall times are noisy: the best of several timed batches is reported, and images per
CPU-second (process time, all threads) as a steadier measure of the work done.

Measured on the 2-core CI machine (busy with other jobs): ViT-S/16 ours 9.2 img/s (9.5 per
CPU-second), timm 7.0 (7.1); Keras ResNet-50 6.3-11.4 (12.6), timm ResNet-50 3.2 (5.2).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

GMACS = {"vit_s16": 4.61, "resnet50_keras": 3.86, "resnet50_timm": 4.11}
HUB_HANDLE = "https://tfhub.dev/sayakpaul/vit_s16_fe/1"


def best_time(fn, iters: int, warmup: int = 1) -> tuple[float, float]:
    """Best wall time and best process CPU time of ``iters`` calls after ``warmup`` calls.

    CPU time (all threads of this process) is what the computation costs; on a machine shared
    with other jobs it is much steadier than wall time, which also counts waiting for a core.
    """
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def matmul_peak(iters: int, n: int = 4096) -> float:
    """GFLOP/s of an n x n fp32 matmul in TensorFlow."""
    import tensorflow as tf

    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    f = tf.function(lambda a, b: tf.matmul(a, b))
    return 2 * n ** 3 / best_time(lambda: f(a, b).numpy(), iters)[0] / 1e9


def tf_rows(batch: int, iters: int, hub_handle: str):
    import tensorflow as tf

    from vitwatch.models import hub, resnet, vit

    x = tf.random.uniform((batch, 224, 224, 3), -1.0, 1.0)
    rows = []
    model = vit.build("S/16", num_classes=1000)
    for label, fn in [("ViT-S/16 ours, fast path, TF graph", vit.compiled_forward(model, False)),
                      ("ViT-S/16 ours, fast path, XLA", vit.compiled_forward(model, True))]:
        rows.append((label, "vit_s16", best_time(lambda: fn(x).numpy(), iters)))
    fwd = vit.compiled_forward(model, False, attention=True)
    rows.append(("ViT-S/16 ours, forward() + attention, graph", "vit_s16",
                 best_time(lambda: [a.numpy() for a in fwd(x)["attention"]], iters)))
    del model

    try:
        layer_model = hub.load_hub_backbone(hub_handle, retries=1)
    except Exception as exc:
        print(f"TF Hub ViT-S/16 skipped: {str(exc).splitlines()[0]}")
    else:
        f = tf.function(lambda x: layer_model(x, training=False))
        rows.append(("ViT-S/16 TF Hub (TFSMLayer)", "vit_s16",
                     best_time(lambda: f(x).numpy(), iters)))
        del layer_model

    net = resnet.build("random", img_size=224, include_top=True)
    xr = tf.random.uniform((batch, 224, 224, 3), -120.0, 130.0)
    for label, jit in [("ResNet-50 Keras, TF graph", False), ("ResNet-50 Keras, XLA", True)]:
        f = tf.function(lambda x: net(x, training=False), jit_compile=jit)
        rows.append((label, "resnet50_keras", best_time(lambda: f(xr).numpy(), iters)))
    return rows


def timm_rows(batch: int, iters: int):
    try:
        import timm
        import torch
    except ImportError:
        print("timm rows skipped: torch/timm not installed (optional, not a vitwatch dependency)")
        return [], None
    torch.set_grad_enabled(False)
    rows = []
    x = torch.rand(batch, 3, 224, 224)
    for label, arch, key in [("ViT-S/16 timm (PyTorch)", "vit_small_patch16_224", "vit_s16"),
                             ("ResNet-50 timm (PyTorch)", "resnet50", "resnet50_timm")]:
        m = timm.create_model(arch, pretrained=False).eval()
        rows.append((label, key, best_time(lambda: m(x), iters)))
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    peak = 2 * 4096 ** 3 / best_time(lambda: a @ b, iters)[0] / 1e9
    return rows, peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed batches")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--timm-only", action="store_true",
                    help="only the timm rows (run with a Python that has torch and timm)")
    ap.add_argument("--hub-handle", default=HUB_HANDLE,
                    help="TF Hub handle, URL or local SavedModel of ViT-S/16 ('' = skip)")
    args = ap.parse_args(argv)
    iters = 2 if args.quick else 3
    t_start = time.perf_counter()

    rows, peak = [], None
    if not args.timm_only:
        peak = matmul_peak(iters + 1)
        measured = tf_rows(args.batch, iters, args.hub_handle or "")
        peak = max(peak, matmul_peak(iters + 1))   # before and after: steadier on a busy machine
        rows = [(label, key, sec, peak) for label, key, sec in measured]
    t_rows, t_peak = timm_rows(args.batch, iters)
    rows += [(label, key, sec, t_peak) for label, key, sec in t_rows]

    peaks = ([f"TensorFlow {peak:.0f} GFLOP/s"] if peak else []) + (
        [f"PyTorch {t_peak:.0f} GFLOP/s"] if t_peak else [])
    print(f"\nbatch {args.batch}, 224 px, fp32, {os.cpu_count()} CPU cores; matmul peak "
          + ", ".join(peaks))
    header = (f"{'backbone':44s} {'img/s':>7s} {'GFLOP/s':>8s} {'of peak':>8s} "
              f"{'img/CPU-s':>10s}")
    print(header + "\n" + "-" * len(header))
    for label, key, (wall, cpu), pk in rows:
        ips = args.batch / wall
        gflops = ips * GMACS[key] * 2
        print(f"{label:44s} {ips:7.2f} {gflops:8.1f} {gflops / pk:8.2f} {args.batch / cpu:10.2f}")
    print(f"(total {time.perf_counter() - t_start:.0f} s; best of {iters} batches after a warm-up; "
          "img/CPU-s: images per second of process CPU time, steadier on a busy machine)")
    return rows


if __name__ == "__main__":
    main()

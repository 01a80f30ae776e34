"""Throughput of the report's backbones and input pipeline on this machine, against timm.

Run: ``make bench`` (``.venv/bin/python benchmarks/bench_backbones.py``; ~4 minutes on 2 CPU
cores) or ``--quick`` (fewer rounds, ~2 minutes). torch and timm are not vitwatch dependencies:
``--timm-python /path/to/python`` (``make bench TIMM_PYTHON=...``) runs the timm rows in that
Python, between two rounds of ours, and prints the ratio; in a Python that has them, they run
in-process. Random weights, fp32, 224 px, batch 32, inference. Rows:
- our Keras ViT-S/16 (``vitwatch.models.vit``) on its **default path**
  (``vitwatch.fastpath``: TF graph or XLA, whichever measured faster on this machine, the
  choice remembered in the cache), and on both paths explicitly; ``forward()``, which also
  returns every block's attention;
- ViT-S/16 from TF Hub through ``keras.layers.TFSMLayer`` (only with ``--hub-handle`` pointing
  at a local SavedModel or a reachable handle);
- Keras ResNet-50 (``keras.applications``), graph and XLA;
- timm's PyTorch ViT-S/16 and ResNet-50;
- the input pipeline (``vitwatch.data``): JPEG decode + view per image on one core, from the
  files and from the decode-once cache (:mod:`vitwatch.data.decoded`), on Stanford-Dogs-sized
  photos (500 x 375) generated here.
GFLOP/s uses the published GMACs at 224 px (REFERENCE.md; 1 MAC = 2 FLOP). The fp32 peak is the
best of several matmul sizes (square ones, and the ViT's own MLP shape) and repeats, measured
before and after the models, so "of peak" is the share of what this machine's BLAS reaches.
Wall times on a shared machine are noisy: rows are the best of several batches and of the
rounds; images per CPU-second (process time, all threads) is steadier.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

GMACS = {"vit_s16": 4.61, "resnet50_keras": 3.86, "resnet50_timm": 4.11}
PEAK_SIZES = (
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (4096, 4096, 4096),
    (32 * 197, 384, 1536),
)  # the last: ViT-S/16's MLP at batch 32


def best_time(fn, iters: int, warmup: int = 1) -> tuple[float, float]:
    """Best wall time and best process CPU time of ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def tf_peak(iters: int) -> float:
    """Best GFLOP/s of fp32 matmuls of :data:`PEAK_SIZES` in TensorFlow."""
    import tensorflow as tf

    best = 0.0
    f = tf.function(lambda a, b: tf.matmul(a, b))
    for m, k, n in PEAK_SIZES:
        a, b = tf.random.normal((m, k)), tf.random.normal((k, n))
        best = max(
            best, 2 * m * k * n / best_time(lambda a=a, b=b: f(a, b).numpy(), iters)[0] / 1e9
        )
    return best


def tf_models(batch: int, hub_handle: str):
    """(label, GMACs key, callable) of our rows; the default path chosen by measurement."""
    import tensorflow as tf

    from vitwatch import fastpath
    from vitwatch.models import hub, resnet, vit

    x = tf.random.uniform((batch, 224, 224, 3), -1.0, 1.0)
    xr = tf.random.uniform((batch, 224, 224, 3), -120.0, 130.0)
    model = vit.build("S/16", num_classes=1000)
    default = vit.compiled_forward(model)  # fastpath: measures at first call
    default(x)
    choice = fastpath.remembered(f"VisionTransformer:{model.name}", x.shape)  # its name there
    jit = None if os.environ.get("VITWATCH_JIT") or choice is None else choice["jit"]
    path = {True: "XLA", False: "TF graph", None: "forced"}[jit]
    rows = [(f"ViT-S/16 ours, default path ({path})", "vit_s16", lambda: default(x).numpy())]
    for label, jit in [("TF graph", False), ("XLA", True)]:
        fn = vit.compiled_forward(model, jit)
        rows.append((f"ViT-S/16 ours, {label}", "vit_s16", lambda fn=fn: fn(x).numpy()))
    fwd = vit.compiled_forward(model, False, attention=True)
    rows.append(
        (
            "ViT-S/16 ours, forward() + attention",
            "vit_s16",
            lambda: [a.numpy() for a in fwd(x)["attention"]],
        )
    )
    if hub_handle:
        try:
            layer = hub.load_hub_backbone(hub_handle, retries=1)
        except Exception as exc:  # noqa: BLE001
            print(f"TF Hub ViT-S/16 skipped: {str(exc).splitlines()[0]}")
        else:
            f = tf.function(lambda x: layer(x, training=False))
            rows.append(
                (
                    "ViT-S/16 TF Hub (TFSMLayer)",
                    "vit_s16",
                    lambda: [v.numpy() for v in f(x).values()],
                )
            )
    net = resnet.build("random", img_size=224, include_top=True)
    for label, jit in [("TF graph", False), ("XLA", True)]:
        f = tf.function(lambda x: net(x, training=False), jit_compile=jit)
        rows.append((f"ResNet-50 Keras, {label}", "resnet50_keras", lambda f=f: f(xr).numpy()))
    return rows


def timm_rows(batch: int, iters: int) -> dict:
    """{"rows": [(label, key, wall, cpu)], "peak": GFLOP/s} of timm, in this Python."""
    import timm
    import torch

    torch.set_grad_enabled(False)
    rows = []
    x = torch.rand(batch, 3, 224, 224)
    for label, arch, key in [
        ("ViT-S/16 timm (PyTorch)", "vit_small_patch16_224", "vit_s16"),
        ("ResNet-50 timm (PyTorch)", "resnet50", "resnet50_timm"),
    ]:
        m = timm.create_model(arch, pretrained=False).eval()
        rows.append((label, key, *best_time(lambda m=m: m(x), iters)))
    peak = 0.0
    for m_, k, n in PEAK_SIZES:
        a, b = torch.randn(m_, k), torch.randn(k, n)
        peak = max(peak, 2 * m_ * k * n / best_time(lambda a=a, b=b: a @ b, iters)[0] / 1e9)
    return {"rows": rows, "peak": peak, "torch": torch.__version__}


def timm_elsewhere(python: str, batch: int, iters: int) -> dict | None:
    """:func:`timm_rows` run by another Python (one that has torch and timm)."""
    cmd = [
        python,
        os.path.abspath(__file__),
        "--timm-json",
        "--batch",
        str(batch),
        "--iters",
        str(iters),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode:
        print(f"timm rows skipped: {python} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def pipeline_rows(n: int = 24, img_size: int = 224) -> list[tuple[str, float]]:
    """Images/s on one core of the input pipeline, from files and from the decode cache."""
    from PIL import Image

    from vitwatch.data import decoded, pipeline
    from vitwatch.data import stanford_dogs as sd

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n):  # photo-like: smooth shapes + sensor-like grain, q 90
            base = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            img = np.asarray(Image.fromarray(base).resize((500, 375), Image.Resampling.BICUBIC))
            grain = rng.normal(0, 12, img.shape)
            img = Image.fromarray(np.clip(img + grain, 0, 255).astype(np.uint8))
            paths.append(os.path.join(tmp, f"{i}.jpg"))
            img.save(paths[-1], quality=90)
        split = sd.Split(paths, np.zeros(n, np.int64), [np.zeros((0, 4))] * n)

        def run(augment):
            t0 = time.process_time()
            for _ in pipeline.batches(split, img_size, 8, augment=augment, seed=1, workers=1):
                pass
            return n / (time.process_time() - t0)

        decoded.clear()
        os.environ[decoded.ENV_DISABLE] = "0"
        rows += [
            ("decode + resize (eval view), from files", run(False)),
            ("decode + crop/flip (augmented), from files", run(True)),
        ]
        os.environ[decoded.ENV_DISABLE] = "1"
        cache = decoded.register(paths, 2 * img_size, tmp)
        t0 = time.process_time()
        cache.build(workers=1)
        rows.append(("decode-once cache build (per image, once)", n / (time.process_time() - t0)))
        rows += [
            ("eval view from the decode-once cache", run(False)),
            ("augmented view from the decode-once cache", run(True)),
        ]
        decoded.clear()
        os.environ.pop(decoded.ENV_DISABLE, None)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timed batches and rounds")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=0, help="timed batches per row (0: auto)")
    ap.add_argument(
        "--timm-python",
        default=os.environ.get("TIMM_PYTHON", ""),
        help="a Python with torch and timm, for the timm rows ('' = this one, if it has them)",
    )
    ap.add_argument("--timm-json", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--hub-handle",
        default="",
        help="TF Hub handle, URL or local SavedModel of ViT-S/16 ('' = skip)",
    )
    args = ap.parse_args(argv)
    iters = args.iters or (2 if args.quick else 3)
    if args.timm_json:
        print(json.dumps(timm_rows(args.batch, iters)))
        return None
    t_start = time.perf_counter()
    cores = os.cpu_count() or 1

    def timm_now():
        if args.timm_python:
            return timm_elsewhere(args.timm_python, args.batch, iters)
        try:
            return timm_rows(args.batch, iters)
        except ImportError:
            return None

    peak = tf_peak(iters)
    models = tf_models(args.batch, args.hub_handle)
    best: dict[str, list] = {}
    t_out = None
    for r in range(1 if args.quick else 2):  # ours, timm, ours: alternated rounds
        for label, key, fn in models:
            wall, cpu = best_time(fn, iters)
            old = best.get(label, [key, wall, cpu])
            best[label] = [key, min(wall, old[1]), min(cpu, old[2])]
        if r == 0:
            t_out = timm_now()
    peak = max(peak, tf_peak(iters))
    if t_out is None:
        print("timm rows skipped: torch/timm not importable (give --timm-python)")
    pipe = pipeline_rows()

    print(
        f"\nbatch {args.batch}, 224 px, fp32, {cores} CPU cores; fp32 matmul peak (best of "
        f"{len(PEAK_SIZES)} sizes x {iters}, before and after): TensorFlow {peak:.0f} GFLOP/s"
        + (f", PyTorch {t_out['peak']:.0f} GFLOP/s" if t_out else "")
    )
    header = f"{'backbone':44s} {'img/s':>7s} {'GFLOP/s':>8s} {'of peak':>8s} {'img/CPU-s':>10s}"
    print(header + "\n" + "-" * len(header))
    rows = [(label, key, wall, cpu, peak) for label, (key, wall, cpu) in best.items()]
    if t_out:
        rows += [(label, key, wall, cpu, t_out["peak"]) for label, key, wall, cpu in t_out["rows"]]
    for label, key, wall, cpu, pk in rows:
        ips = args.batch / wall
        gflops = ips * GMACS[key] * 2
        print(f"{label:44s} {ips:7.2f} {gflops:8.1f} {gflops / pk:8.2f} {args.batch / cpu:10.2f}")
    ours = next((r for r in rows if "default path" in r[0]), None)
    ref = next((r for r in rows if r[0].startswith("ViT-S/16 timm")), None)
    if ours and ref:
        print(
            f"\nViT-S/16, ours (default path) / timm: {ref[2] / ours[2]:.2f}x images/s, "
            f"{ref[3] / ours[3]:.2f}x images per CPU-second"
        )
    vit_core = args.batch / ours[2] / cores if ours else float("nan")
    print(
        f"\ninput pipeline, images/s on one core (backbone ViT-S/16: {vit_core:.1f} "
        f"images/s per core)"
    )
    for label, ips in pipe:
        print(f"  {label:50s} {ips:8.1f}")
    print(
        f"(total {time.perf_counter() - t_start:.0f} s; best of {iters} batches after a "
        "warm-up and of the rounds; img/CPU-s: images per second of process CPU time)"
    )
    return rows


if __name__ == "__main__":
    main()

"""The fastest compiled forward pass on the machine that runs it: TF graph or XLA, measured.

Which of a plain ``tf.function`` graph (oneDNN kernels on CPU) and an XLA-compiled one
(``jit_compile=True``) is faster depends on the machine, the TensorFlow build, the model and the
batch shape: on one 2-core CPU the graph won for ViT-S/16, on another XLA did, on a GPU XLA
wins. So nothing is assumed: :func:`auto_function` times both on the first batch it sees (after
a warm-up call each, best of two alternated calls) and remembers the choice in
``<cache>/fastpath.json``, keyed by machine, TensorFlow version, model and batch shape; later
runs reuse it without measuring. ``VITWATCH_JIT=graph`` or ``=xla`` forces a path.

XLA compiles for each batch shape (tens of seconds for ViT-S/16 on a CPU), so:
- a model whose graph batch takes under :data:`MIN_BATCH_SECONDS` keeps the graph without
  trying XLA (the compile cannot pay back at that size: the smoke profile's tiny models);
- :func:`backbone_forward` pads a short last batch to the measured batch size, so a split is
  compiled once, not twice.

Typical use::

    forward = fastpath.backbone_forward(backbone)      # uint8 (B, S, S, 3) -> float32 (B, D)
    feats = forward(images)
    fastpath.remembered(name, shape)                   # the choice made for a model and shape
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import fileio

CHOICES_FILE = "fastpath.json"
MIN_BATCH_SECONDS = 0.5  # graph batch faster than this: XLA's compile cannot pay back


def _machine_id() -> str:
    """CPU model and core count, plus the GPUs TensorFlow sees (keys the remembered choice)."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return f"{cpu} x{os.cpu_count()}" + (f" + {', '.join(gpus)}" if gpus else "")


def _choice_key(name: str, shape) -> str:
    import tensorflow as tf

    return json.dumps(
        {
            "machine": _machine_id(),
            "tensorflow": tf.__version__,
            "model": name,
            "shape": [int(s) for s in shape],
        },
        sort_keys=True,
    )


def _store(cache_dir=None) -> Path:
    root = cache_dir or os.environ.get("VITWATCH_CACHE") or Path.home() / ".cache" / "vitwatch"
    return Path(root).expanduser() / CHOICES_FILE


def _read(path: Path) -> dict:
    """The stored choices; a missing or damaged file reads as none (measured again)."""
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def remembered(name: str, shape, cache_dir=None) -> dict | None:
    """The choice stored for model ``name`` on inputs of ``shape`` on this machine
    (``{"jit", "graph_s", "xla_s", "reason", ...}``), or None (not measured; or forced)."""
    return _read(_store(cache_dir)).get(_choice_key(name, shape))


def _timed(fn, x) -> float:
    t0 = time.perf_counter()
    out = fn(x)
    (out[0] if isinstance(out, (list, tuple)) else out).numpy()  # wait for the result
    return time.perf_counter() - t0


def measure(
    fn: Callable, x, log: Callable[[str], None] | None = None, keep: dict | None = None
) -> dict:
    """Time ``fn`` as a TF graph and under XLA on ``x``: ``{"jit": bool, "graph_s", "xla_s",
    "reason"}``. The first call of each is a warm-up (tracing, XLA compilation). ``keep``, when
    given, receives the traced functions (``"graph"``, ``"xla"``), for the caller to run the
    chosen one without tracing or compiling it again."""
    import tensorflow as tf

    keep = {} if keep is None else keep
    graph = keep["graph"] = tf.function(fn)
    _timed(graph, x)
    graph_s = _timed(graph, x)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if graph_s < MIN_BATCH_SECONDS and not gpu:
        return {
            "jit": False,
            "graph_s": graph_s,
            "xla_s": None,
            "reason": f"graph batch {graph_s:.2f} s < {MIN_BATCH_SECONDS} s: "
            "XLA's compile cannot pay back",
        }
    xla = tf.function(fn, jit_compile=True)
    try:
        t0 = time.perf_counter()
        _timed(xla, x)
        compile_s = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001
        return {
            "jit": False,
            "graph_s": graph_s,
            "xla_s": None,
            "reason": f"XLA failed: {str(exc).splitlines()[0][:200]}",
        }
    keep["xla"] = xla
    xla_s = _timed(xla, x)
    graph_s = min(graph_s, _timed(graph, x))  # alternated: fairer on a busy machine
    xla_s = min(xla_s, _timed(xla, x))
    jit = xla_s < graph_s
    if log:
        log(
            f"fast path: TF graph {x.shape[0] / graph_s:.1f} img/s, XLA "
            f"{x.shape[0] / xla_s:.1f} img/s (compile {compile_s:.0f} s) -> "
            f"{'XLA' if jit else 'TF graph'}"
        )
    return {
        "jit": jit,
        "graph_s": graph_s,
        "xla_s": xla_s,
        "compile_s": compile_s,
        "reason": "measured",
    }


def choose(
    fn: Callable,
    x,
    name: str,
    cache_dir=None,
    log: Callable[[str], None] | None = print,
    keep: dict | None = None,
) -> bool:
    """Whether to XLA-compile ``fn`` for inputs shaped like ``x``: forced by ``VITWATCH_JIT``,
    else remembered in the cache, else measured now (and remembered; ``keep`` then receives
    the measurement as ``"choice"`` and the traced functions, see :func:`measure`)."""
    forced = os.environ.get("VITWATCH_JIT", "").strip().lower()
    if forced:
        if forced not in ("graph", "xla"):
            raise ValueError(f"VITWATCH_JIT={forced!r}: expected 'graph' or 'xla'")
        return forced == "xla"
    measured = {}

    def fresh() -> dict:
        measured["choice"] = measure(fn, x, log, keep)
        return measured["choice"]

    choice = remembered_or_measured(name, x.shape, fresh, cache_dir)
    if keep is not None and "choice" in measured:
        keep["choice"] = choice
    return bool(choice["jit"])


def remembered_or_measured(name: str, shape, measure_now: Callable[[], dict], cache_dir=None):
    """The choice remembered for ``name`` on inputs of ``shape`` on this machine, else
    ``measure_now()`` (a dict), stamped and remembered in ``$VITWATCH_CACHE/fastpath.json``."""
    key = _choice_key(name, shape)
    path = _store(cache_dir)
    choice = _read(path).get(key)
    if choice is None:
        choice = {**measure_now(), "measured_at": time.strftime("%Y-%m-%d %H:%M")}
        fileio.write_json(path, {**_read(path), key: choice}, indent=1)  # others' meanwhile
    return choice


def auto_function(
    fn: Callable,
    name: str,
    cache_dir=None,
    log: Callable[[str], None] | None = print,
    jit: bool | None = None,
) -> Callable:
    """``fn`` compiled on the path that :func:`choose` picks for the first input it gets
    (one choice per input shape; when measured now, the function it timed, already traced),
    or on the one ``jit`` forces (a device policy's). ``call.measured``: {shape: the
    measurement made by this process}, for a cost table that need not time it again."""
    import tensorflow as tf

    compiled: dict[tuple, Callable] = {}
    measured: dict[tuple, dict] = {}

    def call(x):
        shape = tuple(x.shape)
        if shape not in compiled:
            keep: dict = {}
            xla = choose(fn, x, name, cache_dir, log, keep) if jit is None else jit
            if "choice" in keep:
                measured[shape] = keep["choice"]
            timed = keep.get("xla" if xla else "graph")
            compiled[shape] = timed or tf.function(fn, jit_compile=xla)
        return compiled[shape](x)

    call.measured = measured
    return call


def backbone_forward(
    backbone, cache_dir=None, log: Callable[[str], None] | None = print, jit: bool | None = None
) -> Callable:
    """uint8 images (B, S, S, 3) -> float32 features (B, D) of a frozen registry backbone,
    preprocessing included, on the measured fastest path (XLA or not as ``jit`` says, when
    given). Batches shorter than the first one are zero-padded to its size (one compilation
    per split, not two)."""
    import tensorflow as tf

    def features(images):
        x = backbone.preprocess(tf.cast(images, tf.float32))
        out = backbone.model(x, training=False)  # (B, D)
        if isinstance(out, dict):  # TFSMLayer: {name: t}
            if len(out) != 1:
                raise ValueError(
                    f"backbone {getattr(backbone, 'name', '?')}: model returned "
                    f"several outputs {sorted(out)}; expected one feature tensor"
                )
            out = next(iter(out.values()))
        return out

    name = f"{getattr(backbone, 'name', '?')}:{type(backbone.model).__name__}"
    fn = auto_function(features, name, cache_dir, log, jit)
    full: list[int] = []

    def forward(images: np.ndarray) -> np.ndarray:
        n = len(images)
        if not full:
            full.append(n)
        if n < full[0]:  # pad the last batch
            pad = np.zeros((full[0] - n, *images.shape[1:]), images.dtype)
            images = np.concatenate([images, pad])  # (B_full, S, S, 3)
        out = np.asarray(fn(tf.convert_to_tensor(images)), dtype=np.float32)
        return out[:n].reshape(n, -1)  # (B, D)

    forward.measured = fn.measured
    return forward


# --- on a GPU: precision, XLA and batch size (a no-op on CPU) -------------------------------


def gpus() -> list[dict]:
    """The GPUs TensorFlow sees: name, compute capability (major, minor), memory in bytes."""
    import tensorflow as tf

    out = []
    for i, d in enumerate(tf.config.list_physical_devices("GPU")):
        details = tf.config.experimental.get_device_details(d)
        try:
            memory = tf.config.experimental.get_memory_info(f"GPU:{i}").get("peak", 0)
        except (ValueError, RuntimeError):
            memory = 0
        out.append(
            {
                "name": details.get("device_name", d.name),
                "compute_capability": tuple(details.get("compute_capability", (0, 0))),
                "memory_bytes": int(details.get("memory_limit", 0) or memory),
            }
        )
    return out


def device_policy(
    devices: list[dict], batch_size: int, bytes_per_image: float, max_batch: int = 1024
) -> dict:
    """How to run extraction and fine-tuning on ``devices`` (:func:`gpus`).

    No GPU: nothing changes (fp32, the measured graph/XLA choice, the profile's batch size).
    A GPU: XLA; bfloat16 compute from compute capability 8.0 (A100, H100: same exponent range
    as fp32, no loss scaling), float16 on 7.x (V100, T4: tensor cores, needs loss scaling for
    training), fp32 below; and the largest power-of-two batch (>= ``batch_size``, <=
    ``max_batch``) whose activations, ``bytes_per_image`` at fp32, fill at most half the
    memory (the rest: weights, optimiser state, XLA's workspace). Whether the low precision is
    numerically safe is checked against fp32 with :func:`agrees_with_fp32` before use.
    """
    if not devices:
        return {"device": "cpu", "precision": "float32", "jit": None, "batch_size": batch_size}
    gpu = min(devices, key=lambda d: d["memory_bytes"])  # the smallest one bounds
    cc = tuple(gpu["compute_capability"])
    precision = "mixed_bfloat16" if cc >= (8, 0) else "mixed_float16" if cc >= (7, 0) else "float32"
    per_image = bytes_per_image / (2 if precision != "float32" else 1)
    batch = batch_size
    while batch * 2 <= max_batch and batch * 2 * per_image <= gpu["memory_bytes"] / 2:
        batch *= 2
    return {"device": gpu["name"], "precision": precision, "jit": True, "batch_size": batch}


def agrees_with_fp32(
    logits32, logits_low, min_agreement: float = 0.99, max_rel_error: float = 0.05
) -> dict:
    """Is a low-precision forward safe? Top-1 agreement with fp32 on the same images (the
    route-agreement images of notebook 03) and the largest error relative to the logits' scale."""
    a, b = np.asarray(logits32, np.float64), np.asarray(logits_low, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"agrees_with_fp32: shapes differ, {a.shape} vs {b.shape}")
    agreement = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
    return {
        "top1_agreement": agreement,
        "max_rel_error": rel,
        "safe": agreement >= min_agreement and rel <= max_rel_error,
    }

"""The measured fast path: forced, measured once and remembered, padded last batch."""

import json
import types

import numpy as np
import pytest
import tensorflow as tf

from vitwatch import fastpath


def _double(x):
    return tf.reduce_sum(x, axis=-1) * 2.0  # (B, ...) -> (B, ...)


@pytest.fixture(autouse=True)
def no_force(monkeypatch):
    monkeypatch.delenv("VITWATCH_JIT", raising=False)


def test_forced_path_and_bad_value(tmp_path, monkeypatch):
    x = tf.zeros((2, 3))
    monkeypatch.setenv("VITWATCH_JIT", "xla")
    assert fastpath.choose(_double, x, "m", tmp_path) is True
    monkeypatch.setenv("VITWATCH_JIT", "fast")
    with pytest.raises(ValueError, match="VITWATCH_JIT"):
        fastpath.choose(_double, x, "m", tmp_path)
    assert not (tmp_path / fastpath.CHOICES_FILE).exists()


def test_measured_once_then_remembered_per_shape(tmp_path, monkeypatch):
    monkeypatch.setattr(fastpath, "MIN_BATCH_SECONDS", 0.0)  # always try XLA
    calls = []
    real = fastpath.measure
    monkeypatch.setattr(fastpath, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = tf.ones((4, 3))
    jit = fastpath.choose(_double, x, "m", tmp_path, log=None)
    assert fastpath.choose(_double, x, "m", tmp_path, log=None) is jit
    assert len(calls) == 1
    stored = json.loads((tmp_path / fastpath.CHOICES_FILE).read_text())
    (entry,) = stored.values()
    assert fastpath.remembered("m", x.shape, tmp_path) == entry
    assert fastpath.remembered("m", (9, 3), tmp_path) is None
    assert entry["reason"] == "measured" and entry["graph_s"] > 0 and entry["xla_s"] > 0
    assert entry["jit"] == (entry["xla_s"] < entry["graph_s"])
    fastpath.choose(_double, tf.ones((5, 3)), "m", tmp_path, log=None)  # another shape
    assert len(calls) == 2 and len(json.loads((tmp_path / "fastpath.json").read_text())) == 2


def test_small_batches_keep_the_graph_and_damaged_store_is_remeasured(tmp_path, monkeypatch):
    monkeypatch.setattr(fastpath, "MIN_BATCH_SECONDS", 1e9)
    (tmp_path / fastpath.CHOICES_FILE).write_text("{not json")
    assert fastpath.choose(_double, tf.ones((2, 3)), "m", tmp_path, log=None) is False
    (entry,) = json.loads((tmp_path / fastpath.CHOICES_FILE).read_text()).values()
    assert entry["xla_s"] is None and "cannot pay back" in entry["reason"]


def test_backbone_forward_pads_the_last_batch(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("VITWATCH_JIT", "graph")
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, keras.layers.Dense(5)(keras.layers.Flatten()(inp)))
    backbone = types.SimpleNamespace(name="tiny", model=model, preprocess=lambda x: x / 255.0)
    forward = fastpath.backbone_forward(backbone, tmp_path, log=None)
    images = np.random.default_rng(0).integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    full, short = forward(images[:4]), forward(images[4:])  # (4, 5), (3, 5) padded to 4
    assert full.shape == (4, 5) and short.shape == (3, 5) and short.dtype == np.float32
    expect = np.asarray(model(images.astype("float32") / 255.0))  # (7, 5)
    np.testing.assert_allclose(np.concatenate([full, short]), expect, atol=1e-5)


def test_device_policy_is_a_no_op_on_cpu_and_sized_on_gpus():
    cpu = fastpath.device_policy([], 32, 50e6)
    assert cpu == {"device": "cpu", "precision": "float32", "jit": None, "batch_size": 32}
    h100 = {"name": "H100", "compute_capability": (9, 0), "memory_bytes": 80 * 2**30}
    t4 = {"name": "T4", "compute_capability": (7, 5), "memory_bytes": 16 * 2**30}
    old = {"name": "K80", "compute_capability": (3, 7), "memory_bytes": 12 * 2**30}
    p = fastpath.device_policy([h100], 32, 50e6)
    assert p["precision"] == "mixed_bfloat16" and p["jit"] is True
    assert p["batch_size"] == 1024  # capped: 1024 x 25 MB << 40 GiB
    p = fastpath.device_policy([t4], 32, 50e6)  # 16 GiB / 2 / 25 MB -> 256 (343)
    assert p["precision"] == "mixed_float16" and p["batch_size"] == 256
    assert fastpath.device_policy([old], 32, 50e6)["precision"] == "float32"
    assert fastpath.device_policy([h100, t4], 32, 50e6)["batch_size"] == 256  # smallest bounds


def test_low_precision_check_against_fp32():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 10)) * 5
    ok = fastpath.agrees_with_fp32(logits, logits.astype(np.float16))
    assert ok["safe"] and ok["top1_agreement"] == 1.0 and ok["max_rel_error"] < 1e-3
    bad = fastpath.agrees_with_fp32(logits, rng.permutation(logits))
    assert not bad["safe"] and bad["top1_agreement"] < 0.5
    with pytest.raises(ValueError, match="shapes differ"):
        fastpath.agrees_with_fp32(logits, logits[:3])


def test_the_measured_function_runs_without_tracing_again(tmp_path, monkeypatch):
    """The path chosen by measurement is the function that was timed: not traced (or
    XLA-compiled) a second time; a choice read back from the cache carries no timing."""
    monkeypatch.setattr(fastpath, "MIN_BATCH_SECONDS", 0.0)  # graph and XLA both tried
    traces = []

    def fn(x):
        traces.append(1)  # runs once per tracing
        return x * 2.0

    call = fastpath.auto_function(fn, "m", tmp_path, log=None)
    x = tf.ones((4, 3))
    for _ in range(3):
        np.testing.assert_allclose(call(x).numpy(), 2.0)
    assert len(traces) == 2, "graph and XLA traced once each, the winner not again"
    assert call.measured[(4, 3)]["reason"] == "measured"
    again = fastpath.auto_function(fn, "m", tmp_path, log=None)
    again(x)
    assert again.measured == {} and len(traces) == 3


def test_cost_table_takes_the_fast_paths_timing_when_just_measured():
    from vitwatch import costs

    calls = []
    bb = types.SimpleNamespace(
        img_size=8,
        model=types.SimpleNamespace(weights=[np.zeros((3, 4), np.float32)]),
        gmacs=1.0,
        forward=lambda images: calls.append(len(images)),
        path_timing=lambda shape: {"jit": False, "graph_s": 0.5, "xla_s": None},
    )
    assert costs.measure_cost(bb, batch_size=4)["images_per_second"] == 8.0
    assert calls == [4], "one warm-up batch, nothing timed again"
    bb.path_timing = lambda shape: None  # a remembered choice: timed here
    assert costs.measure_cost(bb, batch_size=4, n_batches=3)["images_per_second"] > 0
    assert calls == [4] * 5

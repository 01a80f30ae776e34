"""The measured fast path: forced, measured once and remembered, padded last batch."""
import json
import types

import numpy as np
import pytest
import tensorflow as tf

from vitwatch import fastpath


def _double(x):
    return tf.reduce_sum(x, axis=-1) * 2.0                      # (B, ...) -> (B, ...)


@pytest.fixture(autouse=True)
def no_force(monkeypatch):
    monkeypatch.delenv("VITWATCH_JIT", raising=False)
    fastpath.CHOICES.clear()


def test_forced_path_and_bad_value(tmp_path, monkeypatch):
    x = tf.zeros((2, 3))
    monkeypatch.setenv("VITWATCH_JIT", "xla")
    assert fastpath.choose(_double, x, "m", tmp_path) is True
    monkeypatch.setenv("VITWATCH_JIT", "fast")
    with pytest.raises(ValueError, match="VITWATCH_JIT"):
        fastpath.choose(_double, x, "m", tmp_path)
    assert not (tmp_path / fastpath.CHOICES_FILE).exists()


def test_measured_once_then_remembered_per_shape(tmp_path, monkeypatch):
    monkeypatch.setattr(fastpath, "MIN_BATCH_SECONDS", 0.0)     # always try XLA
    calls = []
    real = fastpath.measure
    monkeypatch.setattr(fastpath, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = tf.ones((4, 3))
    jit = fastpath.choose(_double, x, "m", tmp_path, log=None)
    assert fastpath.choose(_double, x, "m", tmp_path, log=None) is jit
    assert len(calls) == 1
    stored = json.loads((tmp_path / fastpath.CHOICES_FILE).read_text())
    (entry,) = stored.values()
    assert entry["reason"] == "measured" and entry["graph_s"] > 0 and entry["xla_s"] > 0
    assert entry["jit"] == (entry["xla_s"] < entry["graph_s"])
    fastpath.choose(_double, tf.ones((5, 3)), "m", tmp_path, log=None)   # another shape
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
    backbone = types.SimpleNamespace(name="tiny", model=model,
                                     preprocess=lambda x: x / 255.0)
    forward = fastpath.backbone_forward(backbone, tmp_path, log=None)
    images = np.random.default_rng(0).integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    full, short = forward(images[:4]), forward(images[4:])      # (4, 5), (3, 5) padded to 4
    assert full.shape == (4, 5) and short.shape == (3, 5) and short.dtype == np.float32
    expect = np.asarray(model(images.astype("float32") / 255.0))   # (7, 5)
    np.testing.assert_allclose(np.concatenate([full, short]), expect, atol=1e-5)

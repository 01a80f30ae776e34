"""A run's result: metrics, seeds combined, the store round trip, the key and its code version."""

import types

import numpy as np
import pytest

from vitwatch import results, runs


def _result(seed=0, n=12, k=4, protocol="B"):
    rng = np.random.default_rng(seed)
    p = rng.random((n, k)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    y = np.random.default_rng(99).integers(0, k, n)  # the same images for every seed
    return runs.RunResult(
        protocol,
        "vit_s16",
        p[: n // 2],
        y[: n // 2],
        p,
        y,
        history={"loss": [1.0], "accuracy": [0.5], "val_loss": [1.1], "val_accuracy": [0.4]},
        timings={"train_seconds": 1.5, "backbone_forward_images": 30},
        trainable_params=20,
        extra={"best_epoch": 0},
        arrays={"head_kernel": rng.random((5, k)), "head_bias": rng.random(k)},
    )


def test_topk_accuracy():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    labels = np.array([1, 2, 0])
    assert runs.topk_accuracy(probs, labels, 1) == pytest.approx(1 / 3)
    assert runs.topk_accuracy(probs, labels, 2) == pytest.approx(2 / 3)
    assert runs.topk_accuracy(probs, labels, 5) == 1.0  # k larger than K: all


def test_softmax_rows_sum_to_one_in_float32():
    p = runs.softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]))
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, atol=1e-6)


def test_combine_stacks_the_seeds_and_means_their_accuracy():
    parts = [_result(0), _result(1)]
    out = runs.combine(parts, [5, 6])
    assert out.seeds == [5, 6] and out.seed_test_probs.shape == (2, 12, 4)
    np.testing.assert_array_equal(out.test_probs, parts[0].test_probs)
    assert out.arrays["seed_head_kernel"].shape == (2, 5, 4)
    assert out.top1 == pytest.approx(
        np.mean([runs.topk_accuracy(p.test_probs, p.test_labels) for p in parts])
    )
    assert out.timings["train_seconds"] == 3.0  # summed over the seeds
    assert [s["seed"] for s in out.extra["per_seed"]] == [5, 6]
    with pytest.raises(ValueError, match="2 runs for 1 seeds"):
        runs.combine(parts, [5])


def test_store_round_trip(tmp_path):
    store = results.ResultsStore(tmp_path, "smoke", 0)
    run = runs.combine([_result(0), _result(1)], [0, 1])
    run.save(store)
    back = runs.RunResult.load(store, "B_vit_s16")
    np.testing.assert_array_equal(back.seed_test_probs, run.seed_test_probs)
    assert back.top1 == run.top1 and back.extra["best_epoch"] == 0
    meta, arrays = store.load("B_vit_s16")
    assert meta["top1_seeds"] == run.top1_seeds and "test_preds" in arrays
    assert meta["protocol_description"].startswith("linear probe")


def test_run_or_load_compares_the_key(tmp_path):
    store = results.ResultsStore(tmp_path, "smoke", 0)
    calls = []

    def compute():
        calls.append(1)
        return _result(len(calls))

    first = runs.run_or_load(store, "B_vit_s16", {"lr": (0.1,)}, compute, log=lambda m: None)
    again = runs.run_or_load(store, "B_vit_s16", {"lr": [0.1]}, compute, log=lambda m: None)
    assert calls == [1] and again.hyperparameters == {"lr": [0.1]} == first.hyperparameters
    runs.run_or_load(store, "B_vit_s16", {"lr": [0.2]}, compute, log=lambda m: None)
    assert calls == [1, 1]


def test_summary_rows():
    rows = runs.summary({"B_vit_s16": runs.combine([_result(0), _result(1)], [0, 1])})
    (row,) = rows
    assert row["head_seeds"] == 2 and row["forward_images"] == 30
    assert row["streamed_forward_images"] == 30  # not A: what it computed
    assert np.isnan(runs.summary({"B_vit_s16": _result(0)})[0]["top1_seed_sd"])


def test_key_holds_the_common_settings():
    split = types.SimpleNamespace(paths=["a.jpg"], labels=[0])
    data = types.SimpleNamespace(train=split, val=split, test=split)
    backbone = types.SimpleNamespace(name="resnet50", cache_key="w", img_size=64)
    cfg = types.SimpleNamespace(seed=3, eval_view="squash")
    hp = runs.hyperparameters("B", backbone, data, cfg, {"probe_epochs": 2})
    assert hp["eval_view"] == {"kind": "squash"} and hp["probe_epochs"] == 2
    assert hp["code"] == runs.code_version() and len(hp["data"]) == 16


def test_code_version_changes_with_the_source(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "runs.py").write_text("x = 1\n")
    (tmp_path / "models" / "vit.py").write_text("y = 2\n")
    v1 = runs.code_version(tmp_path)
    assert v1 == runs.code_version(tmp_path)
    (tmp_path / "models" / "vit.py").write_text("y = 3\n")
    assert runs.code_version(tmp_path) != v1
    # the package's own version is part of every run's key; every part exists
    assert len(runs.code_version()) == 12
    from pathlib import Path

    root = Path(runs.__file__).parent
    assert all((root / part).exists() for part in runs.CODE_PARTS)

"""The results store: round trip, atomic writes, resumption key, clear errors."""

import json
import types

import numpy as np
import pytest

from vitwatch import results


@pytest.fixture
def cfg(tmp_path):
    return types.SimpleNamespace(results_dir=str(tmp_path / "results"), profile="smoke", seed=3)


def _run(k=5, n=7, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((n, k)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    arrays = {
        "test_probs": p,
        "test_labels": rng.integers(0, k, n),
        "val_probs": p[:3],
        "val_labels": rng.integers(0, k, 3),
        "head_kernel": rng.random((4, k)),
    }
    meta = {
        "backbone": "vit_s16",
        "protocol": "B",
        "top1": 0.5,
        "top5": 1.0,
        "val_top1": 0.3,
        "history": {
            "loss": [1.0, np.float32(0.5)],
            "accuracy": [0.1, 0.2],
            "val_loss": [1.1, 0.9],
            "val_accuracy": [0.0, 0.3],
        },
        "hyperparameters": {"l2_grid": (1e-4, 1e-3), "epochs": np.int64(3)},
        "timings": {"train_seconds": 0.1},
        "trainable_params": 25,
        "machine": {"python": "3.11"},
    }
    return arrays, meta


def test_round_trip(cfg):
    arrays, meta = _run()
    results.save(cfg, "B_vit_s16", arrays, meta)
    got_meta, got = results.load(cfg, "B_vit_s16")
    assert set(got) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k])
    assert got_meta["history"]["loss"] == [1.0, 0.5]
    assert got_meta["profile"] == "smoke" and got_meta["seed"] == 3
    assert results.list_runs(cfg) == ["B_vit_s16"]
    assert results.table(cfg)[0]["top1"] == 0.5


def test_has_compares_hyperparameters(cfg):
    arrays, meta = _run()
    assert not results.has(cfg, "B_vit_s16")
    results.save(cfg, "B_vit_s16", arrays, meta)
    assert results.has(cfg, "B_vit_s16")
    # tuples and numpy scalars compare equal to what JSON gives back
    assert results.has(cfg, "B_vit_s16", {"l2_grid": [1e-4, 1e-3], "epochs": 3})
    assert not results.has(cfg, "B_vit_s16", {"l2_grid": [1e-4], "epochs": 3})
    assert not results.has(cfg, "A_vit_s16", {"l2_grid": [1e-4, 1e-3], "epochs": 3})


def test_unfinished_run_is_not_listed(cfg, tmp_path):
    arrays, meta = _run()
    results.save(cfg, "B_vit_s16", arrays, meta)
    (tmp_path / "results" / "B_vit_s16.npz").unlink()  # killed between the two files
    assert results.list_runs(cfg) == []
    assert not results.has(cfg, "B_vit_s16")
    with pytest.raises(FileNotFoundError, match="B_vit_s16.npz"):
        results.load(cfg, "B_vit_s16")


def test_atomic_write_leaves_old_file_on_failure(cfg, tmp_path):
    path = tmp_path / "results" / "cost.json"
    results.save_cost(cfg, {"vit_s16": {"params": 1}})

    class Boom:
        pass

    with pytest.raises(TypeError):
        results.save_cost(cfg, {"resnet50": {"params": Boom()}})  # not JSON-serialisable
    assert json.loads(path.read_text()) == {"vit_s16": {"params": 1}}
    assert [p.name for p in path.parent.iterdir()] == ["cost.json"]  # no temp file left
    results.save_cost(cfg, {"resnet50": {"params": 2}})  # merges
    assert set(results.load_cost(cfg)) == {"vit_s16", "resnet50"}


def test_clear_errors(cfg):
    arrays, meta = _run()
    with pytest.raises(ValueError, match="run name"):
        results.save(cfg, "vit", arrays, meta)
    del arrays["val_probs"]
    with pytest.raises(ValueError, match="val_probs"):
        results.save(cfg, "B_vit_s16", arrays, meta)
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        results.load(cfg, "A_resnet50")
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        results.load_dataset(cfg)


def test_dataset_json(cfg):
    split = types.SimpleNamespace(
        paths=["a.jpg", "b.jpg"],
        labels=np.array([0, 1]),
        boxes=[np.array([[1, 2, 3, 4]], np.float32), np.zeros((0, 4), np.float32)],
    )
    data = types.SimpleNamespace(
        test=split,
        dataset_record=lambda: {
            "class_names": ["A", "B"],
            "test_paths": split.paths,
            "test_labels": [0, 1],
            "n_test": 2,
        },
    )
    results.save_dataset(cfg, data)
    info = results.load_dataset(cfg)
    assert info["test_boxes"] == [[[1.0, 2.0, 3.0, 4.0]], []]
    assert info["class_names"] == ["A", "B"] and info["profile"] == "smoke"

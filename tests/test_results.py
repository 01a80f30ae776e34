"""The results store: round trip, atomic writes, resumption key, clear errors."""

import json
import types

import numpy as np
import pytest

from vitwatch import results


@pytest.fixture
def store(tmp_path):
    return results.ResultsStore(tmp_path / "results", profile="smoke", seed=3)


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


def test_round_trip(store):
    arrays, meta = _run()
    store.save("B_vit_s16", arrays, meta)
    got_meta, got = store.load("B_vit_s16")
    assert set(got) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k])
    assert got_meta["history"]["loss"] == [1.0, 0.5]
    assert got_meta["profile"] == "smoke" and got_meta["seed"] == 3
    assert store.list_runs() == ["B_vit_s16"]


def test_has_compares_hyperparameters(store):
    arrays, meta = _run()
    assert not store.has("B_vit_s16")
    store.save("B_vit_s16", arrays, meta)
    assert store.has("B_vit_s16")
    # tuples and numpy scalars compare equal to what JSON gives back
    assert store.has("B_vit_s16", {"l2_grid": [1e-4, 1e-3], "epochs": 3})
    assert not store.has("B_vit_s16", {"l2_grid": [1e-4], "epochs": 3})
    assert not store.has("A_vit_s16", {"l2_grid": [1e-4, 1e-3], "epochs": 3})


def test_unfinished_run_is_not_listed(store, tmp_path):
    arrays, meta = _run()
    store.save("B_vit_s16", arrays, meta)
    (tmp_path / "results" / "B_vit_s16.npz").unlink()  # killed between the two files
    assert store.list_runs() == []
    assert not store.has("B_vit_s16")
    with pytest.raises(FileNotFoundError, match="B_vit_s16.npz"):
        store.load("B_vit_s16")


def test_atomic_write_leaves_old_file_on_failure(store, tmp_path):
    path = tmp_path / "results" / "cost.json"
    store.save_cost({"vit_s16": {"params": 1}})

    class Boom:
        pass

    with pytest.raises(TypeError):
        store.save_cost({"resnet50": {"params": Boom()}})  # not JSON-serialisable
    assert json.loads(path.read_text()) == {"vit_s16": {"params": 1}}
    assert [p.name for p in path.parent.iterdir()] == ["cost.json"]  # no temp file left
    store.save_cost({"resnet50": {"params": 2}})  # merges
    assert set(store.load_cost()) == {"vit_s16", "resnet50"}


def test_clear_errors(store):
    arrays, meta = _run()
    with pytest.raises(ValueError, match="run name"):
        store.save("vit", arrays, meta)
    del arrays["val_probs"]
    with pytest.raises(ValueError, match="val_probs"):
        store.save("B_vit_s16", arrays, meta)
    with pytest.raises(FileNotFoundError, match="notebook 03"):
        store.load("A_resnet50")
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        store.load_dataset()


def test_dataset_json(store):
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
    store.save_dataset(data)
    info = store.load_dataset()
    assert info["test_boxes"] == [[[1.0, 2.0, 3.0, 4.0]], []]
    assert info["class_names"] == ["A", "B"] and info["profile"] == "smoke"


def test_sub_store_keeps_provenance_and_cost_starts_empty(store):
    arrays, meta = _run()
    assert store.load_cost() == {}
    view = store.sub("eval_views", "native_64")
    view.save("B_vit_s16", arrays, meta)
    assert view.list_runs() == ["B_vit_s16"] and store.list_runs() == []
    got, _ = view.load("B_vit_s16")
    assert got["profile"] == "smoke" and got["seed"] == 3
    store.write_json("eval_views.json", {"main_view": "native", "x": np.float32(0.5)})
    assert store.read_json("eval_views.json") == {"main_view": "native", "x": 0.5}

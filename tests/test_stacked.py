"""Runs trained at once (:mod:`vitwatch.inductive.stacked`) follow the trajectory each follows
alone: the same loss at every step, the same trained model, for every small architecture."""

import numpy as np
import pytest

from vitwatch import results
from vitwatch.data import small as small_data
from vitwatch.inductive import grid, stacked
from vitwatch.inductive import trainer as trainer_mod
from vitwatch.inductive.recipe import Recipe
from vitwatch.models import small


@pytest.fixture(scope="module")
def digits():
    return small_data.load_digits()


@pytest.mark.parametrize("arch", ["resnet", "vit", "vit_spt_lsa", "vit_small_patch"])
def test_stacked_runs_match_runs_alone(digits, arch):
    rec = Recipe(batch_size=16, steps=8, learning_rate=3e-3, shift=1, flip=True)
    runs = [(40, 0), (80, 1), (40, 1)]  # two sizes, two seeds, one seed at two sizes
    together = stacked.train_many(digits, stacked.make_stacked(arch, digits, rec, 3), runs)
    alone_trainer = trainer_mod.make_trainer(arch, digits, rec)
    for (n, s), mine in zip(runs, together):
        alone = trainer_mod.train_one(digits, alone_trainer, n, s)
        np.testing.assert_allclose(mine["loss_curve"], alone["loss_curve"], rtol=2e-4, atol=2e-5)
        assert mine["final_loss"] == pytest.approx(alone["final_loss"], rel=2e-4, abs=2e-5)
        # accuracies: equal, or off by an image whose two top logits tie within float noise
        for key, size in (("test_accuracy", len(digits.y_test)), ("train_accuracy", n)):
            assert abs(mine[key] - alone[key]) <= 1 / size + 1e-9, (key, mine[key], alone[key])
        assert mine["steps"] == rec.steps and mine["params"] == alone["params"]
    # the runs differ from one another: nothing leaked between them
    assert not np.allclose(together[0]["loss_curve"], together[2]["loss_curve"])


def test_convolutions_as_matmuls_are_convolutions():
    """The im2col form of Conv2D ("same" at strides 1 and 2, "valid" at the patch stride)
    gives Keras' convolution."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 10, 3)).astype(np.float32)
    for kernel, stride, padding, bias in (
        (3, 1, "same", False),
        (3, 2, "same", True),
        (1, 2, "same", False),
        (2, 2, "valid", True),
    ):
        conv = small.Conv2D(4, kernel, strides=stride, padding=padding, use_bias=bias)
        conv.build(x.shape)
        if bias:
            conv.bias.assign(rng.normal(size=4).astype(np.float32))
        plain = keras.ops.convert_to_numpy(conv(x))
        with small.convs_as_matmuls():
            matmul = keras.ops.convert_to_numpy(conv(x))
        np.testing.assert_allclose(matmul, plain, rtol=1e-5, atol=1e-5)
    assert not small._CONVS_AS_MATMULS.get()  # the switch is off outside the block


def test_wrong_number_of_runs_is_refused(digits):
    trainer = stacked.make_stacked("vit", digits, Recipe(batch_size=8, steps=2), 2)
    with pytest.raises(ValueError, match="2 runs expected"):
        trainer.fit_many(digits.x_train[:8].astype(np.float32), digits.y_train[:8], [[0]], [0])


def test_stacked_loop_compiles_with_xla_in_bfloat16(digits):
    """The GPU's settings (XLA, mixed bfloat16), compiled and run here on CPU: finite float32
    losses for every run, float32 weights."""
    rec = Recipe(batch_size=8, steps=3)
    trainer = stacked.make_stacked("vit_spt_lsa", digits, rec, 2, "mixed_bfloat16", jit=True)
    assert all(v.dtype == "float32" for v in trainer.trainable)
    x = digits.x_train[:32].astype(np.float32) / 16.0
    losses = trainer.fit_many(x, digits.y_train[:32], [np.arange(16), np.arange(32)], [0, 1])
    assert losses.shape == (2, 3) and losses.dtype == np.float32
    assert np.all(np.isfinite(losses))


def test_chunks_are_balanced_and_ordered():
    assert grid.chunks(list(range(15)), 16) == [list(range(15))]
    parts = grid.chunks(list(range(15)), 4)
    assert [len(p) for p in parts] == [4, 4, 4, 3] and sum(parts, []) == list(range(15))
    assert [len(p) for p in grid.chunks(list(range(9)), 8)] == [5, 4]
    assert grid.chunks([], 3) == []


def test_grid_stacked_matches_grid_one_at_a_time(digits, tmp_path, monkeypatch):
    """run_grid with runs stacked gives the numbers of runs made one at a time; a program that
    does not fit in memory is split, down to single runs, and the grid still completes."""
    import tensorflow as tf

    monkeypatch.setenv(trainer_mod.RUNS_AT_ONCE_ENV, "3")  # forced: no measurement
    rec = Recipe(batch_size=16, steps=6)
    cpu = {"precision": "float32", "jit": False, "runs_at_once": 1, "memory_bytes": 0}
    args = (digits, ["vit"], rec, [20, 40], 2)
    alone = grid.run_grid(results.ResultsStore(tmp_path / "a"), *args, False, cpu)
    together = grid.run_grid(
        results.ResultsStore(tmp_path / "b"), *args, False, {**cpu, "runs_at_once": 3}
    )
    assert together["runs_at_once"].tolist() == [2, 2, 2, 2]  # 4 runs: two programs of two
    np.testing.assert_allclose(together["final_loss"], alone["final_loss"], rtol=2e-4)
    assert np.abs(together["test_accuracy"] - alone["test_accuracy"]).max() <= 1 / len(
        digits.y_test
    )

    real = stacked.train_many
    sizes = []

    def no_room(data, trainer, runs):
        sizes.append(len(runs))
        if len(runs) > 1:
            raise tf.errors.ResourceExhaustedError(None, None, "out of memory (test)")
        return real(data, trainer, runs)

    monkeypatch.setattr(stacked, "train_many", no_room)
    split = grid.run_grid(
        results.ResultsStore(tmp_path / "c"), *args, False, {**cpu, "runs_at_once": 4}
    )
    assert sizes == [4, 2] and split["runs_at_once"].eq(1).all() and len(split) == 4
    np.testing.assert_allclose(split["final_loss"], alone["final_loss"], rtol=2e-4)


def test_runs_at_once_follow_the_memory():
    """The ViT with four times the tokens needs more memory per run than the plain one, so
    fewer of its runs share a program; a small GPU still trains one; more memory, more runs."""
    vit = small.build("vit", "cifar10", 32, 3, 10)
    fine = small.build("vit_small_patch", "cifar10", 32, 3, 10)
    resnet = small.build("resnet", "cifar10", 32, 3, 10)
    assert stacked.training_bytes(fine, 128) > 4 * stacked.training_bytes(vit, 128)
    assert stacked.training_bytes(vit, 256) == 2 * stacked.training_bytes(vit, 128)
    assert stacked.training_bytes(resnet, 128) > 0
    big, small_gpu = 141 << 30, 1 << 30
    assert stacked.runs_that_fit(fine, 128, big) < stacked.runs_that_fit(vit, 128, big)
    assert stacked.runs_that_fit(vit, 128, 2 * big) >= 2 * stacked.runs_that_fit(vit, 128, big)
    assert stacked.runs_that_fit(fine, 128, small_gpu) == 1
    unknown = stacked.runs_that_fit(vit, 128, 0)  # taken as 16 GiB
    assert unknown == stacked.runs_that_fit(vit, 128, 16 << 30)


def test_stacking_is_chosen_by_measurement_and_remembered(digits, tmp_path, monkeypatch):
    """Without VITWATCH_RUNS_AT_ONCE, a device that may stack first measures one run's step
    alone and stacked (once: remembered in the cache) and stacks only if that is faster."""
    monkeypatch.delenv(trainer_mod.RUNS_AT_ONCE_ENV, raising=False)
    monkeypatch.setenv("VITWATCH_CACHE", str(tmp_path / "cache"))
    rec = Recipe(batch_size=16, steps=4)
    gpu_like = {"precision": "float32", "jit": False, "runs_at_once": 4, "memory_bytes": 0}
    real = stacked.measure("vit", digits, rec, 2, "float32", False)
    assert real["runs"] == 2 and real["alone_s"] > 0 and real["stacked_s"] > 0
    assert real["stack"] == (real["stacked_s"] < real["alone_s"])

    for faster, runs_at_once in ((False, 1), (True, 4)):
        calls = []

        def measured(arch, data, rec_, runs, precision, jit, faster=faster, calls=calls):
            calls.append(runs)
            return {"stack": faster, "alone_s": 0.02, "stacked_s": 0.01, "runs": runs}

        monkeypatch.setattr(stacked, "measure", measured)
        monkeypatch.setenv("VITWATCH_CACHE", str(tmp_path / f"cache-{faster}"))
        for again in (False, True):
            store = results.ResultsStore(tmp_path / f"{faster}-{again}")
            runs = grid.run_grid(store, digits, ["vit"], rec, [20, 40], 2, False, gpu_like)
            assert runs["runs_at_once"].eq(runs_at_once).all(), runs
        assert calls == [4]  # measured once, with every run of the model; then remembered

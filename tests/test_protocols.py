"""The training protocols learn on the synthetic Stanford Dogs, evaluate honestly, and resume.

Small and fast: the smoke profile's synthetic data (10 breeds, chance = 10 %) through the real
loader and feature cache, with a tiny random convolutional backbone standing in for the
registry's backbones (the notebook's smoke run exercises those).
"""

import keras
import numpy as np
import pytest

from vitwatch import config, features, protocols, results, runs
from vitwatch.data import stanford_dogs
from vitwatch.models import registry
from vitwatch.protocols import finetune, head, linear, probe, views, zero_shot

CHANCE = 0.1


def _preprocess(x):
    return x / 127.5 - 1.0


def tiny_backbone(img_size=64, seed=0, name="resnet50"):
    """Random conv features: colour and shape survive pooling, so a linear head can learn."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((img_size, img_size, 3)),
            keras.layers.Conv2D(32, 5, strides=2, activation="relu", name="conv1"),
            keras.layers.Conv2D(48, 3, strides=2, activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="tiny",
    )
    model.trainable = False
    return registry.Backbone(name, model, _preprocess, img_size, 48, f"tiny-{seed}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    cfg = config.from_profile(
        "smoke",
        cache_dir=str(root / "cache"),
        results_dir=str(root / "results"),
        figures_dir=str(root / "fig"),
        head_epochs=5,
        head_lr=0.01,
        probe_epochs=30,
    )
    return cfg, stanford_dogs.load(cfg)


def _like(cfg, **overrides):
    """The smoke config sharing ``cfg``'s caches, with ``overrides``."""
    return config.from_profile(
        "smoke", cache_dir=cfg.cache_dir, results_dir=cfg.results_dir, **overrides
    )


def _check_probs(run, data):
    assert run.test_probs.shape == (len(data.test), data.num_classes)
    assert run.val_probs.shape == (len(data.val), data.num_classes)
    np.testing.assert_allclose(run.test_probs.sum(1), 1.0, atol=1e-4)
    assert np.all(np.isfinite(run.test_probs))
    np.testing.assert_array_equal(run.test_labels, data.test.labels)


def test_softmax_head_parameter_count():
    assert head.softmax_head(384, 120).count_params() == 46_200  # the seed's head
    assert head.softmax_head(2048, 120).count_params() == 245_880


def test_protocol_a_learns(setup):
    cfg, data = setup
    run = linear.run(tiny_backbone(), data, cfg, progress=False)
    _check_probs(run, data)
    assert set(run.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == cfg.head_epochs for v in run.history.values())
    best = run.extra["best_epoch"]
    assert run.history["val_accuracy"][best] == max(run.history["val_accuracy"])
    first_seed_val = runs.topk_accuracy(run.val_probs, run.val_labels)
    assert first_seed_val == pytest.approx(run.history["val_accuracy"][best])  # best restored
    assert run.trainable_params == 48 * 10 + 10
    # one cached view per epoch, shared by the head seeds; val and test once
    t = run.timings
    assert t["backbone_forward_images"] == cfg.head_epochs * len(data.train) + len(data.val) + len(
        data.test
    )
    assert t["computed_images"] + t["cache_hit_images"] == t["backbone_forward_images"]
    assert t["streamed_forward_images"] == cfg.head_seeds * cfg.head_epochs * len(data.train) + len(
        data.val
    ) + len(data.test)
    assert run.seed_test_probs.shape == (cfg.head_seeds, len(data.test), data.num_classes)
    assert run.seeds == [cfg.seed + j for j in range(cfg.head_seeds)]
    assert run.top1 == pytest.approx(np.mean(run.top1_seeds))
    assert run.top1 > 3 * CHANCE, run.top1


def test_protocol_b_learns_and_picks_l2_on_validation(setup):
    cfg, data = setup
    run = probe.run(tiny_backbone(), data, cfg, progress=False)
    _check_probs(run, data)
    scan = run.extra["l2_scan"]
    grid = probe.probe_grid(cfg)  # lr x L2 x standardisation, every backbone
    assert len(scan) == len(grid) == len(cfg.probe_l2_grid) * 2  # "auto": raw and standardised
    best_val = max(s["val_accuracy"] for s in scan.values())
    chosen = f"lr={run.extra['lr']:g} l2={run.extra['l2']:g} std={int(run.extra['standardize'])}"
    assert scan[chosen]["val_accuracy"] == best_val
    assert run.timings["backbone_forward_images"] == cfg.probe_views * len(data.train) + len(
        data.val
    ) + len(data.test)
    assert run.top1 > 4 * CHANCE, run.top1


def test_protocol_c_learns(setup):
    cfg, data = setup
    c = dict(finetune_epochs=3, finetune_lr=3e-3, finetune_blocks=-1, finetune_patience=3)
    cfg_c = _like(cfg, **c)
    built = []

    def build():
        built.append(tiny_backbone(seed=1))
        return built[-1]

    run = finetune.run(build, data, cfg_c, verbose=0)
    _check_probs(run, data)
    assert len(built) == 1 and cfg_c.head_seeds == 2  # one model, restored for each seed
    p = run.seed_test_probs
    assert p.shape[0] == 2 and not np.allclose(p[0], p[1])  # two seeds, two models
    # seed 1 restored after seed 0 is seed 1 built fresh: the same numbers
    alone = finetune.run(build, data, _like(cfg, **c, seed=cfg.seed + 1, head_seeds=1), verbose=0)
    np.testing.assert_array_equal(alone.test_probs, p[1])
    assert alone.history == run.extra["per_seed"][1]["history"]
    assert run.trainable_params == built[0].model.count_params() + 48 * 10 + 10
    assert len(run.history["loss"]) == run.extra["epochs_run"] <= 3
    assert run.extra["warmup_steps"] > 0
    assert run.top1 > 3 * CHANCE, run.top1


def test_cached_protocol_a_matches_streamed(setup):
    """The head trained on cached per-epoch views has the streamed head's history."""
    cfg, data = setup
    one = _like(cfg, head_epochs=3, head_lr=0.01, head_seeds=1, seed=3)
    b = tiny_backbone()
    cached = linear.run(b, data, one, progress=False)
    streamed = linear.run(b, data, one, progress=False, stream=True)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(
            cached.history[key], streamed.history[key], rtol=1e-4, atol=1e-5, err_msg=key
        )
    np.testing.assert_allclose(cached.test_probs, streamed.test_probs, atol=1e-4)
    assert cached.extra["epoch_views"] == streamed.extra["epoch_views"]
    assert sorted(cached.extra["epoch_views"]) == [1, 2, 3]  # one fresh view per epoch
    assert streamed.timings["computed_images"] >= 3 * len(data.train)


def test_protocol_b_reuses_protocol_a_views(setup):
    cfg, data = setup
    c = _like(cfg, head_epochs=2, probe_views=3, probe_epochs=2, seed=11)
    b = tiny_backbone()
    a = linear.run(b, data, c, progress=False)
    n_eval = len(data.val) + len(data.test)  # eval view: seed-free, maybe cached before
    assert a.timings["computed_images"] in (2 * len(data.train), 2 * len(data.train) + n_eval)
    b_run = probe.run(b, data, c, progress=False)
    # views 1, 2 are A's epochs; only view 0 of train (the seed-free eval view) may be new
    t = b_run.timings
    assert t["computed_images"] in (0, len(data.train))
    assert t["computed_images"] + t["cache_hit_images"] == 3 * len(data.train) + n_eval


def test_two_seeds_give_different_models_and_one_seed_the_same(setup):
    cfg, data = setup
    c = _like(cfg, head_epochs=2, probe_epochs=3, head_seeds=2)
    b = tiny_backbone()
    for fn in (linear.run, probe.run):
        run = fn(b, data, c, progress=False)
        k = run.arrays["seed_head_kernel"]  # (2, D, K)
        assert k.shape == (2, 48, data.num_classes) and not np.allclose(k[0], k[1])
        assert not np.allclose(run.seed_test_probs[0], run.seed_test_probs[1])
        again = fn(b, data, c, progress=False)  # same seeds: same heads
        np.testing.assert_allclose(again.arrays["seed_head_kernel"], k, atol=1e-6)
        assert [s["seed"] for s in run.extra["per_seed"]] == [c.seed, c.seed + 1]
    # every source of randomness moves with the seed: init, order, views
    ten = config.from_profile("smoke", head_epochs=10)
    assert linear.epoch_views(ten, 0) != linear.epoch_views(ten, 1)
    assert sorted(linear.epoch_views(ten, 1)) == list(range(1, 11))
    assert not np.array_equal(linear.epoch_order(50, 0, 0), linear.epoch_order(50, 1, 0))
    assert not np.array_equal(linear.epoch_order(50, 0, 0), linear.epoch_order(50, 0, 1))


def test_eval_view_study_covers_both_views(setup):
    cfg, data = setup
    c = _like(cfg, probe_epochs=2, head_seeds=2)
    store = results.ResultsStore(c.results_dir, c.profile, c.seed)
    study = views.eval_view_study(
        {"resnet50": tiny_backbone()},
        data,
        c,
        store,
        names=("resnet50",),
        hires=False,
        log=lambda m: None,
    )
    assert set(study) == {("resnet50", "squash", 64), ("resnet50", "native", 64)}
    sq, nat = study[("resnet50", "squash", 64)], study[("resnet50", "native", 64)]
    assert sq.hyperparameters["eval_view"] == {"kind": "squash"}
    assert nat.hyperparameters["eval_view"]["crop_pct"] == 0.875
    assert sq.hyperparameters["probe_views"] == 1
    assert not np.allclose(sq.test_probs, nat.test_probs)
    assert store.sub("eval_views", "squash_64").list_runs() == ["B_resnet50"]
    assert views.hires_size(config.from_profile("full")) == 384
    assert views.hires_size(c) == 112


def _frozen(model, name="tiny"):
    model.trainable = False
    return registry.Backbone(name, model, _preprocess, 32, 0, name)


def test_unfreeze_last_blocks():
    from vitwatch.models import vit

    def fresh():
        return _frozen(vit.build("testing", num_classes=0, img_size=32))

    b = fresh()
    n = finetune.unfreeze(b, 1)
    expected = b.model.blocks[-1].count_params() + b.model.norm.count_params()
    assert n == expected == head.count_params(b.model.trainable_weights)
    assert finetune.unfreeze(fresh(), -1) == b.model.count_params()  # all, cls/pos included
    assert finetune.unfreeze(fresh(), 0) == 0
    with pytest.raises(ValueError, match="finetune_blocks"):
        finetune.unfreeze(fresh(), 5)
    with pytest.raises(ValueError, match="not frozen"):  # once per freshly built backbone
        finetune.unfreeze(b, 1)


def test_unfreeze_resnet_keeps_batchnorm_frozen():
    b = _frozen(
        keras.applications.ResNet50(
            weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3)
        )
    )
    blocks, _ = b.blocks()
    assert len(blocks) == 16  # residual blocks
    n = finetune.unfreeze(b, 1)
    convs = [l for l in blocks[-1] if isinstance(l, keras.layers.Conv2D)]
    assert n == sum(l.count_params() for l in convs)  # BN gamma/beta frozen
    bns = [l for l in b.model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and not any(l.trainable for l in bns)


def test_protocol_z_uses_only_the_dog_logits(setup):
    cfg, data = setup
    b = tiny_backbone()
    k = data.num_classes
    # An "ImageNet head": a trained probe on the dog columns, and larger random logits on
    # the 990 other columns, which must be ignored.
    tr = features.extract(b, data.train, "train", cfg)
    va = features.extract(b, data.val, "val", cfg)
    trainer = head.HeadTrainer(tr.shape[1], k)
    head.fit_head(trainer, tr, data.train.labels, va, data.val.labels, epochs=30, lr=0.01)
    probe_head = trainer.head
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(48, 1000)).astype(np.float32) * 10
    idx = np.asarray(data.imagenet_indices)

    def imagenet_logits(feats):
        logits = feats @ noise + 100.0  # (N, 1000)
        logits[:, idx] = np.log(np.asarray(probe_head(feats))) + 0.0  # (N, K) dog columns
        return logits

    b.imagenet_logits = imagenet_logits
    run = zero_shot.run(b, data, cfg, progress=False)
    _check_probs(run, data)
    te = features.extract(b, data.test, "test", cfg)
    np.testing.assert_allclose(run.test_probs, np.asarray(probe_head(te)), atol=1e-5)
    assert run.history == {} and run.trainable_params == 0
    assert run.top1 > 3 * CHANCE


def test_second_run_recomputes_nothing(setup, monkeypatch):
    cfg, data = setup
    store = results.ResultsStore(cfg.results_dir, cfg.profile, cfg.seed)
    b = tiny_backbone()
    calls = []
    real_run = probe.run

    def run_b(*args, **kwargs):
        calls.append(1)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(probe, "run", run_b)
    first = protocols.run("B", b, data, cfg, store, progress=False)
    assert calls == [1] and store.has("B_resnet50")
    assert first.hyperparameters["probe_epochs"] == cfg.probe_epochs

    def boom(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(features, "extract_with_stats", boom)  # no backbone pass either
    monkeypatch.setattr(probe, "run", boom)
    again = protocols.run("B", b, data, cfg, store, progress=False)
    np.testing.assert_array_equal(again.test_probs, first.test_probs)
    assert again.top1 == first.top1 and again.extra["l2"] == first.extra["l2"]
    assert again.history == first.history
    np.testing.assert_array_equal(again.arrays["head_kernel"], first.arrays["head_kernel"])

    # a changed hyperparameter or other weights: the run is redone
    monkeypatch.undo()
    monkeypatch.setattr(probe, "run", run_b)
    cfg2 = _like(cfg, probe_epochs=2)
    protocols.run("B", b, data, cfg2, store, progress=False)
    assert calls == [1, 1]
    meta, _ = store.load("B_resnet50")
    assert meta["hyperparameters"]["probe_epochs"] == 2 and meta["protocol"] == "B"


def test_fine_tuning_key_holds_the_probe_it_starts_from(setup, monkeypatch):
    cfg, data = setup
    store = results.ResultsStore(cfg.results_dir, cfg.profile, cfg.seed)
    b = tiny_backbone()
    probs, labels = np.full((2, 3), 1 / 3), np.zeros(2, int)
    fake = runs.RunResult("B", b.name, probs, labels, probs, labels)
    fake.hyperparameters = {"probe": "key"}
    fake.arrays = {"seed_head_kernel": np.ones((2, 48, 3)), "seed_head_bias": np.zeros((2, 3))}
    seen = {}

    def run_c(build, data, cfg, head_weights=None, verbose=True, policy=None):
        seen["heads"] = head_weights
        raise RuntimeError("stop here")

    monkeypatch.setattr(finetune, "run", run_c)
    with pytest.raises(RuntimeError, match="stop here"):
        protocols.run("C", b, data, cfg, store, probe=fake)
    assert len(seen["heads"]) == 2 and seen["heads"][0][0].shape == (48, 3)  # LP-FT per seed
    hp = protocols.hyperparameters("C", b, data, cfg)
    assert hp["finetune_blocks"] == cfg.finetune_blocks and "head_init" not in hp


def test_which_backbones_run_which_protocol(setup):
    cfg, _ = setup
    bbs = {n: tiny_backbone(name=n) for n in ("vit_s16", "resnet50", "vit_s16_hub", "bit_r50x1")}
    bbs["vit_s16"].imagenet_logits = bbs["vit_s16_hub"].imagenet_logits = lambda f: f
    assert protocols.backbones_for("Z", bbs, cfg) == ["vit_s16"]  # one ViT route
    assert protocols.backbones_for("A", bbs, cfg) == ["vit_s16", "resnet50", "bit_r50x1"]
    assert protocols.backbones_for("B", bbs, cfg) == list(bbs)
    off = config.from_profile("smoke", finetune=False)
    assert protocols.backbones_for("C", bbs, off) == []
    assert protocols.backbones_for("C", bbs, cfg) == ["vit_s16", "resnet50", "bit_r50x1"]


def test_bad_parameters_are_named(setup):
    cfg, data = setup
    bad = _like(cfg, probe_l2_grid=[])
    with pytest.raises(ValueError, match="probe_l2_grid"):
        probe.run(tiny_backbone(), data, bad)
    with pytest.raises(ValueError, match="ImageNet-1k head"):
        zero_shot.run(tiny_backbone(), data, cfg)
    with pytest.raises(ValueError, match="protocol"):
        protocols.hyperparameters("D", tiny_backbone(), data, cfg)


def test_standardisation_folds_into_the_stored_head():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 5.0, size=(40, 6)).astype(np.float32)
    dense = keras.layers.Dense(4, activation="softmax")
    dense.build((None, 6))
    dense.set_weights([rng.normal(size=(6, 4)).astype(np.float32), np.zeros(4, np.float32)])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    expected = np.asarray(dense((x - mean) / scale))
    head.fold_standardisation(dense, mean, scale)
    np.testing.assert_allclose(np.asarray(dense(x)), expected, rtol=1e-4, atol=1e-5)

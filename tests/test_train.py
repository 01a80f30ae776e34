"""The training protocols learn on the synthetic Stanford Dogs, evaluate honestly, and resume.

Small and fast: the smoke profile's synthetic data (10 breeds, chance = 10 %) through the real
loader and feature cache, with a tiny random convolutional backbone standing in for the
registry's backbones (the notebook's smoke run exercises those).
"""

import keras
import numpy as np
import pytest

from vitwatch import config, features, results, train
from vitwatch.data import stanford_dogs
from vitwatch.models import registry

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


def _check_probs(run, data):
    assert run.test_probs.shape == (len(data.test), data.num_classes)
    assert run.val_probs.shape == (len(data.val), data.num_classes)
    np.testing.assert_allclose(run.test_probs.sum(1), 1.0, atol=1e-4)
    assert np.all(np.isfinite(run.test_probs))
    np.testing.assert_array_equal(run.test_labels, data.test.labels)


def test_topk_accuracy():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    labels = np.array([1, 2, 0])
    assert train.topk_accuracy(probs, labels, 1) == pytest.approx(1 / 3)
    assert train.topk_accuracy(probs, labels, 2) == pytest.approx(2 / 3)
    assert train.topk_accuracy(probs, labels, 5) == 1.0  # k larger than K: all


def test_softmax_head_parameter_count():
    assert train.softmax_head(384, 120).count_params() == 46_200  # the seed's head
    assert train.softmax_head(2048, 120).count_params() == 245_880


def test_protocol_a_learns(setup):
    cfg, data = setup
    run = train.protocol_a(tiny_backbone(), data, cfg, progress=False)
    _check_probs(run, data)
    assert set(run.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == cfg.head_epochs for v in run.history.values())
    best = run.extra["best_epoch"]
    assert run.history["val_accuracy"][best] == max(run.history["val_accuracy"])
    first_seed_val = train.topk_accuracy(run.val_probs, run.val_labels)
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
    run = train.protocol_b(tiny_backbone(), data, cfg, progress=False)
    _check_probs(run, data)
    scan = run.extra["l2_scan"]
    grid = train.probe_grid(cfg)  # lr x L2 x standardisation, every backbone
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
    cfg_c = config.from_profile(
        "smoke",
        cache_dir=cfg.cache_dir,
        results_dir=cfg.results_dir,
        finetune_epochs=3,
        finetune_lr=3e-3,
        finetune_blocks=-1,
        finetune_patience=3,
    )
    built = []

    def build():
        built.append(tiny_backbone(seed=1))
        return built[-1]

    run = train.protocol_c(build, data, cfg_c, verbose=0)
    _check_probs(run, data)
    assert len(built) == cfg_c.head_seeds == 2  # a fresh backbone per seed
    p = run.seed_test_probs
    assert p.shape[0] == 2 and not np.allclose(p[0], p[1])  # two seeds, two models
    assert run.trainable_params == built[0].model.count_params() + 48 * 10 + 10
    assert len(run.history["loss"]) == run.extra["epochs_run"] <= 3
    assert run.extra["warmup_steps"] > 0
    assert run.top1 > 3 * CHANCE, run.top1


def test_cached_protocol_a_matches_streamed(setup):
    """The head trained on cached per-epoch views has the streamed head's history."""
    cfg, data = setup
    one = config.from_profile(
        "smoke",
        cache_dir=cfg.cache_dir,
        results_dir=cfg.results_dir,
        head_epochs=3,
        head_lr=0.01,
        head_seeds=1,
        seed=3,
    )
    b = tiny_backbone()
    cached = train.protocol_a(b, data, one, progress=False)
    streamed = train.protocol_a(b, data, one, progress=False, stream=True)
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
    c = config.from_profile(
        "smoke",
        cache_dir=cfg.cache_dir,
        results_dir=cfg.results_dir,
        head_epochs=2,
        probe_views=3,
        probe_epochs=2,
        seed=11,
    )
    b = tiny_backbone()
    a = train.protocol_a(b, data, c, progress=False)
    n_eval = len(data.val) + len(data.test)  # eval view: seed-free, maybe cached before
    assert a.timings["computed_images"] in (2 * len(data.train), 2 * len(data.train) + n_eval)
    probe = train.protocol_b(b, data, c, progress=False)
    # views 1, 2 are A's epochs; only view 0 of train (the seed-free eval view) may be new
    t = probe.timings
    assert t["computed_images"] in (0, len(data.train))
    assert t["computed_images"] + t["cache_hit_images"] == 3 * len(data.train) + n_eval


def test_two_seeds_give_different_models_and_one_seed_the_same(setup):
    cfg, data = setup
    c = config.from_profile(
        "smoke",
        cache_dir=cfg.cache_dir,
        results_dir=cfg.results_dir,
        head_epochs=2,
        probe_epochs=3,
        head_seeds=2,
    )
    b = tiny_backbone()
    for fn in (train.protocol_a, train.protocol_b):
        run = fn(b, data, c, progress=False)
        k = run.arrays["seed_head_kernel"]  # (2, D, K)
        assert k.shape == (2, 48, data.num_classes) and not np.allclose(k[0], k[1])
        assert not np.allclose(run.seed_test_probs[0], run.seed_test_probs[1])
        again = fn(b, data, c, progress=False)  # same seeds: same heads
        np.testing.assert_allclose(again.arrays["seed_head_kernel"], k, atol=1e-6)
        assert [s["seed"] for s in run.extra["per_seed"]] == [c.seed, c.seed + 1]
    # every source of randomness moves with the seed: init, order, views
    ten = config.from_profile("smoke", head_epochs=10)
    assert train.epoch_views(ten, 0) != train.epoch_views(ten, 1)
    assert sorted(train.epoch_views(ten, 1)) == list(range(1, 11))
    assert not np.array_equal(train.epoch_order(50, 0, 0), train.epoch_order(50, 1, 0))
    assert not np.array_equal(train.epoch_order(50, 0, 0), train.epoch_order(50, 0, 1))


def test_eval_view_study_covers_both_views(setup):
    cfg, data = setup
    c = config.from_profile(
        "smoke", cache_dir=cfg.cache_dir, results_dir=cfg.results_dir, probe_epochs=2, head_seeds=2
    )
    study = train.eval_view_study(
        {"resnet50": tiny_backbone()}, data, c, names=("resnet50",), hires=False, log=lambda m: None
    )
    assert set(study) == {("resnet50", "squash", 64), ("resnet50", "native", 64)}
    sq, nat = study[("resnet50", "squash", 64)], study[("resnet50", "native", 64)]
    assert sq.hyperparameters["eval_view"] == {"kind": "squash"}
    assert nat.hyperparameters["eval_view"]["crop_pct"] == 0.875
    assert sq.hyperparameters["probe_views"] == 1
    assert not np.allclose(sq.test_probs, nat.test_probs)
    assert train.hires_size(config.from_profile("full")) == 384
    assert train.hires_size(c) == 112


def test_unfreeze_last_blocks():
    from vitwatch.models import vit

    model = vit.build("testing", num_classes=0, img_size=32)
    model.trainable = False
    n = train.unfreeze(model, 1)
    expected = model.blocks[-1].count_params() + model.norm.count_params()
    assert n == expected == train.count_params(model.trainable_weights)
    assert train.unfreeze(model, -1) == model.count_params()  # all, cls/pos included
    assert train.unfreeze(model, 0) == 0
    with pytest.raises(ValueError, match="finetune_blocks"):
        train.unfreeze(model, 5)


def test_unfreeze_resnet_keeps_batchnorm_frozen():
    model = keras.applications.ResNet50(
        weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3)
    )
    blocks, _ = train._blocks(model)
    assert len(blocks) == 16  # residual blocks
    n = train.unfreeze(model, 1)
    convs = [l for l in blocks[-1] if isinstance(l, keras.layers.Conv2D)]
    assert n == sum(l.count_params() for l in convs)  # BN gamma/beta frozen
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and not any(l.trainable for l in bns)


def test_protocol_z_uses_only_the_dog_logits(setup):
    cfg, data = setup
    b = tiny_backbone()
    k = data.num_classes
    # An "ImageNet head": a trained probe on the dog columns, and larger random logits on
    # the 990 other columns, which must be ignored.
    tr = features.extract(b, data.train, "train", cfg)
    va = features.extract(b, data.val, "val", cfg)
    head, _, _ = train.fit_head(tr, data.train.labels, va, data.val.labels, k, epochs=30, lr=0.01)
    kernel, bias = head.get_weights()
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(48, 1000)).astype(np.float32) * 10
    idx = np.asarray(data.imagenet_indices)

    def imagenet_logits(feats):
        logits = feats @ noise + 100.0  # (N, 1000)
        logits[:, idx] = np.log(np.asarray(head(feats))) + 0.0  # (N, K) dog columns
        return logits

    b.imagenet_logits = imagenet_logits
    run = train.protocol_z(b, data, cfg)
    _check_probs(run, data)
    te = features.extract(b, data.test, "test", cfg)
    np.testing.assert_allclose(run.test_probs, np.asarray(head(te)), atol=1e-5)
    assert run.history == {} and run.trainable_params == 0
    assert run.top1 > 3 * CHANCE


def test_second_run_recomputes_nothing(setup, monkeypatch):
    cfg, data = setup
    b = tiny_backbone()
    calls = []

    def run_b():
        calls.append(1)
        return train.protocol_b(b, data, cfg, progress=False)

    first = train.run_or_load(cfg, "B", b, data, run_b)
    assert calls == [1] and results.ResultsStore(cfg.results_dir).has("B_resnet50")

    def boom(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(features, "extract", boom)  # no backbone pass either
    again = train.run_or_load(cfg, "B", b, data, boom)
    np.testing.assert_array_equal(again.test_probs, first.test_probs)
    assert again.top1 == first.top1 and again.extra["l2"] == first.extra["l2"]
    assert again.history == first.history
    np.testing.assert_array_equal(again.arrays["head_kernel"], first.arrays["head_kernel"])

    # a changed hyperparameter or other weights: the run is redone
    monkeypatch.undo()
    cfg2 = config.from_profile(
        "smoke", cache_dir=cfg.cache_dir, results_dir=cfg.results_dir, probe_epochs=2
    )
    train.run_or_load(
        cfg2, "B", b, data, lambda: calls.append(2) or train.protocol_b(b, data, cfg2, progress=0)
    )
    assert calls == [1, 2]
    meta, _ = results.ResultsStore(cfg.results_dir).load("B_resnet50")
    assert meta["hyperparameters"]["probe_epochs"] == 2 and meta["protocol"] == "B"


def test_bad_parameters_are_named(setup):
    cfg, data = setup
    bad = config.from_profile(
        "smoke", cache_dir=cfg.cache_dir, results_dir=cfg.results_dir, probe_l2_grid=[]
    )
    with pytest.raises(ValueError, match="probe_l2_grid"):
        train.protocol_b(tiny_backbone(), data, bad)
    with pytest.raises(ValueError, match="ImageNet-1k head"):
        train.protocol_z(tiny_backbone(), data, cfg)
    with pytest.raises(ValueError, match="protocol"):
        train.hyperparameters("D", tiny_backbone(), data, cfg)


def test_every_backbone_has_its_own_colour():
    """03's comparison figures plot the four backbones together (full: with vit_s16_i21k)."""
    from vitwatch import plotting
    from vitwatch.models import registry

    colours = [plotting.color_for(n) for n in registry.NAMES]
    assert len(set(colours)) == len(colours)


def test_standardisation_folds_into_the_stored_head():
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 5.0, size=(40, 6)).astype(np.float32)
    head = keras.layers.Dense(4, activation="softmax")
    head.build((None, 6))
    head.set_weights([rng.normal(size=(6, 4)).astype(np.float32), np.zeros(4, np.float32)])
    mean, scale = x.mean(0), x.std(0) + 1e-6
    expected = np.asarray(head((x - mean) / scale))
    train.fold_standardisation(head, mean, scale)
    np.testing.assert_allclose(np.asarray(head(x)), expected, rtol=1e-4, atol=1e-5)


def test_code_version_changes_with_the_source(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "train.py").write_text("x = 1\n")
    (tmp_path / "models" / "vit.py").write_text("y = 2\n")
    v1 = train.code_version(tmp_path)
    assert v1 == train.code_version(tmp_path)
    (tmp_path / "models" / "vit.py").write_text("y = 3\n")
    assert train.code_version(tmp_path) != v1
    # the package's own version is part of every run's key
    assert len(train.code_version()) == 12

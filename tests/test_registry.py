"""Backbones by name, on the artifacts the smoke profile generates (no network)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from vitwatch import config, downloads
from vitwatch.models import offline, registry, vit


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return config.from_profile(
        "smoke", cache_dir=str(tmp_path_factory.mktemp("cache")), img_size=32
    )


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")


def test_three_backbones_of_smoke(cfg, images):
    keys = set()
    for name, dim in [("vit_s16", 64), ("vit_s16_hub", 64), ("resnet50", 256)]:
        b = registry.backbone(name, cfg)
        assert (b.name, b.img_size, b.feature_dim) == (name, 32, dim)
        f = b.forward(images.astype(np.uint8))
        assert f.shape == (3, dim) and f.dtype == np.float32 and np.isfinite(f).all()
        assert b.model.trainable_weights == []  # frozen by default
        assert b.params == b.model.count_params() > 0 and b.gmacs > 0
        assert b.cache_dir == cfg.cache_dir
        keys.add(b.cache_key)
        if name != "vit_s16_hub":
            assert b.imagenet_logits(f).shape == (3, 1000)
        else:
            assert b.imagenet_logits is None  # feature-extractor SavedModel
            assert b.vit is None  # a SavedModel: no attention to read
    assert len(keys) == 3


def test_hub_and_npz_routes_agree_on_the_generated_weights(cfg, images):
    """The same generated weights read by two independent loaders give the same features."""
    ours = registry.backbone("vit_s16", cfg).features(images)
    hub = registry.backbone("vit_s16_hub", cfg).features(images)
    np.testing.assert_allclose(ours, hub, atol=1e-5)


def test_generated_artifacts_are_cached_and_atomic(cfg):
    ckpt = offline.vit_checkpoint(cfg.cache_dir, "testing", 32, 0)
    saved = offline.hub_savedmodel(cfg.cache_dir, "testing", 32, 0)
    stamp = (ckpt.stat().st_mtime_ns, (saved / "saved_model.pb").stat().st_mtime_ns)
    registry.backbone("vit_s16_hub", cfg)
    assert stamp == (ckpt.stat().st_mtime_ns, (saved / "saved_model.pb").stat().st_mtime_ns)
    assert not [p for p in ckpt.parent.iterdir() if ".tmp" in p.name]
    keys = set(np.load(ckpt).files)
    assert "Transformer/encoderblock_3/MultiHeadDotProductAttention_1/query/kernel" in keys


def test_cache_key_changes_with_what_changes_the_features(cfg):
    base = registry.backbone("vit_s16", cfg).cache_key
    other_seed = config.from_profile("smoke", cache_dir=cfg.cache_dir, img_size=32, seed=1)
    other_size = config.from_profile("smoke", cache_dir=cfg.cache_dir, img_size=48)
    assert registry.backbone("vit_s16", other_seed).cache_key != base  # other weights
    assert registry.backbone("vit_s16", other_size).cache_key != base  # other resolution
    assert registry.backbone("vit_s16", cfg).cache_key == base  # stable
    i21k = config.from_profile(
        "smoke", cache_dir=cfg.cache_dir, img_size=32, vit_i21k_checkpoint="generated"
    )
    b = registry.backbone("vit_s16_i21k", i21k)
    assert b.cache_key != base and b.imagenet_logits is None


def test_named_checkpoint_goes_through_downloads(cfg, monkeypatch, images):
    path = offline.vit_checkpoint(cfg.cache_dir, "testing", 32, 5)
    asked = []
    monkeypatch.setattr(
        downloads, "fetch", lambda name, cache_dir, **kw: asked.append(name) or path
    )
    named = config.from_profile(
        "smoke", cache_dir=cfg.cache_dir, img_size=32, vit_checkpoint="vit_s16_i21k_ft_i1k"
    )
    b = registry.backbone("vit_s16", named)
    assert asked == ["vit_s16_i21k_ft_i1k"]
    local = config.from_profile(
        "smoke", cache_dir=cfg.cache_dir, img_size=32, vit_checkpoint=str(path)
    )
    np.testing.assert_allclose(
        registry.backbone("vit_s16", local).features(images), b.features(images), atol=1e-6
    )


def test_bad_parameters_are_named(cfg, tmp_path):
    def with_(**kw):
        return config.from_profile("smoke", cache_dir=cfg.cache_dir, img_size=32, **kw)

    with pytest.raises(FileNotFoundError, match="vit_checkpoint"):
        registry.backbone("vit_s16", with_(vit_checkpoint=str(tmp_path / "none.npz")))
    with pytest.raises(ValueError, match="vit_checkpoint.*unknown URL"):
        registry.backbone("vit_s16", with_(vit_checkpoint="https://example.org/x.npz"))
    path = offline.vit_checkpoint(cfg.cache_dir, "testing", 32, 0)
    with pytest.raises(ValueError, match="ViT variant 'S/16'"):  # not testing: the row's
        registry.backbone("vit_s16", with_(vit_checkpoint=str(path), vit_variant="S/16"))
    with pytest.raises(ValueError, match="vit_i21k_checkpoint"):
        registry.backbone("vit_s16_i21k", with_())
    with pytest.raises(ValueError, match="hub_handle"):
        registry.backbone("vit_s16_hub", with_(hub_handle=""))
    with pytest.raises(ValueError, match="unknown backbone"):
        registry.backbone("vit_l16", cfg)


def test_required_resources_per_profile():
    smoke, quick, full = (config.from_profile(p) for p in ("smoke", "quick", "full"))
    assert registry.required_resources(smoke) == []
    assert registry.required_resources(quick) == [
        "vit_s16_i21k_ft_i1k",
        "resnet50_imagenet",
        "hub_vit_s16_fe",
        "bit_m_r50x1_ilsvrc2012",
    ]
    assert registry.required_resources(full) == [
        "vit_s16_i21k_ft_i1k",
        "resnet50_imagenet",
        "hub_vit_s16_fe",
        "vit_s16_i21k",
        "bit_m_r50x1_ilsvrc2012",
        "bit_m_r50x1",
        "vit_b16_i21k_ft_i1k",
    ]
    assert all(n in downloads.RESOURCES for n in registry.required_resources(full))


def test_bit_backbones_on_generated_checkpoints(cfg, images, monkeypatch):
    """BiT-M R50x1 (21k -> 1k, with an ImageNet-1k head) and its 21k-only twin (no 1k head):
    features, analysis layers, cache keys, the download route and parameter errors."""
    from vitwatch.analysis import gradcam, representations
    from vitwatch.models import resnetv2

    one_k, i21k = (registry.backbone(n, cfg) for n in ("bit_r50x1", "bit_r50x1_i21k"))
    assert one_k.cache_key != i21k.cache_key
    for b in (one_k, i21k):
        assert b.feature_dim == 512 and b.model.trainable_weights == []
        f = b.forward(images)
        assert f.shape == (3, 512) and np.isfinite(f).all() and f.std() > 1e-3
        assert b.vit is None
        x = np.asarray(b.preprocess(images))
        maps, _ = gradcam.maps(b, x, np.array([151, 152, 153]))
        assert maps.shape == (3, 1, 1) and np.isfinite(maps).all()  # 32 px: 1 x 1
        stages = representations.stage_model(b.model, b.extra["cka_layers"])
        assert [a.shape[-1] for a in stages.predict_on_batch(x)] == [64, 128, 256, 512]
        blocks, after = b.blocks()
        assert len(blocks) == 4  # 4 units, then the stage output, final norm, pooling
        assert [layer.name for layer in after] == [
            "block4_out",
            "post_gn",
            "post_relu",
            "pre_logits",
        ]
    logits = one_k.imagenet_logits(one_k.forward(images))
    assert logits.shape == (3, 1000) and i21k.imagenet_logits is None
    assert one_k.gmacs == pytest.approx(resnetv2.gmacs(**resnetv2.VARIANTS["testing"], img_size=32))
    # a named checkpoint goes through the downloader
    path = offline.bit_checkpoint(cfg.cache_dir, "testing", seed=9)
    asked = []
    monkeypatch.setattr(
        downloads, "fetch", lambda name, cache_dir, **kw: asked.append(name) or path
    )
    named = config.from_profile(
        "smoke", cache_dir=cfg.cache_dir, img_size=32, bit_checkpoint="bit_m_r50x1_ilsvrc2012"
    )
    assert registry.backbone("bit_r50x1", named).imagenet_logits is not None
    assert asked == ["bit_m_r50x1_ilsvrc2012"]
    with pytest.raises(ValueError, match="BiT variant 'R50x1'"):
        registry.backbone(
            "bit_r50x1",
            config.from_profile(
                "smoke",
                cache_dir=cfg.cache_dir,
                img_size=32,
                bit_checkpoint=str(path),
                bit_variant="R50x1",
            ),
        )
    with pytest.raises(ValueError, match="bit_i21k_checkpoint"):
        registry.backbone(
            "bit_r50x1_i21k",
            config.from_profile(
                "smoke", cache_dir=cfg.cache_dir, img_size=32, bit_i21k_checkpoint=""
            ),
        )


def test_trainable_backbone_fine_tunes_inside_a_keras_model(cfg, images):
    b = registry.backbone("vit_s16", cfg, trainable=True)
    assert isinstance(b.model, vit.VisionTransformer)
    inputs = keras.Input((32, 32, 3))
    clf = keras.Model(inputs, keras.layers.Dense(3)(b.model(inputs)))
    clf.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = np.asarray(b.preprocess(images))
    before = b.model.blocks[0].fc1.get_weights()[0].copy()
    clf.train_on_batch(x, np.arange(3))
    assert np.abs(b.model.blocks[0].fc1.get_weights()[0] - before).max() > 0


def test_forward_is_the_fast_path_and_agrees_with_keras(cfg, images, tmp_path):
    """forward: one compiled function per backbone, kept; same features as predict_on_batch;
    the graph/XLA choice is remembered under the backbone's cache_dir."""
    import dataclasses

    b = dataclasses.replace(registry.backbone("vit_s16", cfg), cache_dir=str(tmp_path))
    assert b._forward is None
    f = b.forward(images)  # (3, D)
    fn = b._forward
    assert b.forward(images[:2]).shape == (2, b.feature_dim) and b._forward is fn  # padded
    np.testing.assert_allclose(f, b.features(images), atol=1e-5)
    assert (tmp_path / "fastpath.json").is_file()


def test_forward_of_a_plain_callable_runs_eagerly(images):
    b = registry.Backbone(
        "toy", lambda x: {"out": x.mean(axis=(1, 2))}, lambda x: x / 255, 32, 3, "k"
    )
    np.testing.assert_allclose(b.forward(images), images.mean(axis=(1, 2)) / 255, rtol=1e-6)


def test_imagenet_logits_are_differentiable(cfg, images):
    """f @ W + b in TensorFlow: a tape sees the features, so Grad-CAM needs no copy of W."""
    import tensorflow as tf

    for name in ("vit_s16", "resnet50", "bit_r50x1"):
        b = registry.backbone(name, cfg)
        f = tf.constant(b.forward(images))
        with tf.GradientTape() as tape:
            tape.watch(f)
            logits = b.imagenet_logits(f)
            target = tf.reduce_sum(logits[:, 151])
        grad = tape.gradient(target, f)
        assert isinstance(logits, tf.Tensor) and logits.shape == (3, 1000)
        assert grad is not None and grad.shape == f.shape
        # the gradient of one logit is its column of W, the same for every image
        np.testing.assert_allclose(grad.numpy()[0], grad.numpy()[2])
        np.testing.assert_allclose(  # same as NumPy's f @ W + b up to float rounding
            np.asarray(logits), b.imagenet_logits(np.asarray(f, np.float64)), rtol=1e-5
        )


def test_vit_and_blocks_of_the_smoke_backbones(cfg):
    """The ViT inside is named by the registry, not guessed; blocks() groups what protocol C
    unfreezes, the last last, and the layers after the last group."""
    ours = registry.backbone("vit_s16", cfg)
    assert ours.vit is ours.model and isinstance(ours.vit, vit.VisionTransformer)
    blocks, after = ours.blocks()
    assert [g[0] for g in blocks] == list(ours.vit.blocks) and after == [ours.vit.norm]
    cnn = registry.backbone("resnet50", cfg)
    assert cnn.vit is None and cnn.extra["gradcam_layer"] == "conv5_block1_out"  # tiny: 1/stage
    assert cnn.extra["cka_layers"] == [f"conv{s}_block1_out" for s in (2, 3, 4, 5)]
    blocks, after = cnn.blocks()
    assert len(blocks) == 4 and blocks[-1][0].name.startswith("conv5_block1_")
    assert [layer.name for layer in after] == ["avg_pool"]
    assert registry.backbone("vit_s16_hub", cfg).blocks() == ([], [])  # a SavedModel


def test_vit_b16_row_builds_on_a_generated_checkpoint(cfg, images):
    """ViT-B/16 is one catalogue row: under smoke ("testing" variant) it builds like vit_s16,
    on its own stand-in weights; in a real profile its variant is the row's B/16."""
    from vitwatch import catalogue

    b16, s16 = registry.backbone("vit_b16", cfg), registry.backbone("vit_s16", cfg)
    assert (b16.img_size, b16.feature_dim) == (32, s16.feature_dim) and b16.vit is b16.model
    assert b16.cache_key != s16.cache_key and b16.imagenet_logits is not None
    assert not np.allclose(b16.forward(images), s16.forward(images))  # other stand-in seed
    row = catalogue.BACKBONES["vit_b16"]
    assert (row.variant, row.builder, row.resource) == ("B/16", "vit", "vit_b16_i21k_ft_i1k")
    assert "vit_b16" in catalogue.for_profile(config.from_profile("full"))[0]
    assert "vit_b16" not in catalogue.for_profile(config.from_profile("smoke"))[0]

"""Our Keras ResNetV2 (BiT): pinned sizes, parity with timm's reader of Google's BiT checkpoints,
checkpoint validation, the layers the analyses use."""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from vitwatch import costs
from vitwatch.models import resnetv2

FIXTURE = Path(__file__).parent / "fixtures" / "bit_parity.npz"

# Parameter counts, (variant, num_classes) -> count; testing at img_size 64. R50x1 with the
# ImageNet-1k head equals timm's resnetv2_50x1_bit (25,549,352); with the 21,843-class head of
# BiT-M it is the 68.3 M of timm's resnetv2_50x1_bit.goog_in21k model card.
PARAM_COUNTS = {
    ("testing", 0): 504_464,
    ("testing", 1000): 1_017_464,
    ("R50x1", 0): 23_500_352,
    ("R50x1", 1000): 25_549_352,
    ("R50x1", 21843): 68_256_659,
}
TOLERANCE = 3e-5  # float32, two frameworks (seen: 4e-6); logits are O(1) (asserted below).
# Tight enough to catch a group-norm eps of 1e-3 instead of 1e-5 (a 1e-4 error).


@pytest.fixture(autouse=True)
def _float32_everywhere():
    """No TF32 on GPUs: these comparisons are at float32 tolerance."""
    with costs.full_precision():
        yield


@pytest.mark.parametrize("variant", sorted(resnetv2.VARIANTS))
def test_param_counts_pinned(variant):
    classes = [k for (v, k) in PARAM_COUNTS if v == variant]
    assert 1000 in classes, f"pin the parameter counts of new variant {variant}"
    img_size = 64 if variant == "testing" else 224
    for k in classes:
        model = resnetv2.build(variant, num_classes=k, img_size=img_size)
        assert model.count_params() == PARAM_COUNTS[(variant, k)], (variant, k)


def test_gmacs_close_to_published():
    """R50x1 at 224 px: 4.09 GMACs of convolutions (timm's 4.3 also counts norms)."""
    g = resnetv2.gmacs(**resnetv2.VARIANTS["R50x1"], img_size=224)
    assert 4.0 < g < 4.3


def _fixture_model(tmp_path, num_classes=None):
    f = np.load(FIXTURE)
    cfg = json.loads(str(f["config"]))
    if num_classes is not None:
        cfg["num_classes"] = num_classes
    ckpt = tmp_path / "ckpt.npz"
    np.savez(ckpt, **{k[5:]: f[k] for k in f.files if k.startswith("ckpt/")})
    model = resnetv2.create(**cfg)
    return resnetv2.load_npz(model, ckpt), f, ckpt


def test_parity_with_timm(tmp_path):
    """Same random checkpoint, timm's _load_weights + timm's ResNetV2 vs ours."""
    model, f, _ = _fixture_model(tmp_path)
    logits = np.asarray(model.predict_on_batch(f["images"]))
    assert np.abs(logits).max() > 0.1 and logits.std(axis=0).mean() > 0.05  # discriminative
    np.testing.assert_allclose(logits, f["logits"], atol=TOLERANCE, rtol=0)
    import keras

    inner = keras.Model(
        model.input,
        [model.get_layer(resnetv2.GRADCAM_LAYER).output, model.get_layer("pre_logits").output],
    )
    maps, features = (np.asarray(a) for a in inner.predict_on_batch(f["images"]))
    assert maps.shape == f["post_relu"].shape == (4, 2, 2, 256)
    np.testing.assert_allclose(maps, f["post_relu"], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(features, f["features"], atol=TOLERANCE, rtol=0)


def test_headless_model_gives_the_pooled_features(tmp_path):
    model, f, _ = _fixture_model(tmp_path, num_classes=0)
    np.testing.assert_allclose(
        np.asarray(model.predict_on_batch(f["images"])), f["features"], atol=TOLERANCE
    )


def test_weight_standardisation_ignores_kernel_scale_and_offset(tmp_path):
    model, f, ckpt = _fixture_model(tmp_path)
    w = dict(np.load(ckpt))
    key = "resnet/block2/unit01/b/standardized_conv2d/kernel"
    w[key] = 5.0 * w[key] + 3.0  # per-output affine: same standardised
    np.savez(tmp_path / "scaled.npz", **w)
    other = resnetv2.load_npz(
        resnetv2.create(**json.loads(str(f["config"]))), tmp_path / "scaled.npz"
    )
    np.testing.assert_allclose(
        np.asarray(other.predict_on_batch(f["images"])), f["logits"], atol=TOLERANCE
    )


def test_save_npz_round_trip(tmp_path):
    model, f, ckpt = _fixture_model(tmp_path)
    path = resnetv2.save_npz(model, tmp_path / "out" / "saved.npz")
    original, saved = np.load(ckpt), np.load(path)
    assert sorted(saved.files) == sorted(original.files)
    for k in original.files:
        np.testing.assert_array_equal(saved[k], original[k])


def test_load_npz_names_missing_and_misshaped_keys(tmp_path):
    _, f, ckpt = _fixture_model(tmp_path)
    w = dict(np.load(ckpt))
    cfg = json.loads(str(f["config"]))
    model = resnetv2.create(**cfg)
    key = "resnet/block3/unit01/c/group_norm/gamma"
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in w.items() if k != key})
    with pytest.raises(ValueError, match="missing.npz: missing key.*block3/unit01/c/group_norm"):
        resnetv2.load_npz(model, tmp_path / "missing.npz")
    conv = "resnet/block1/unit02/b/standardized_conv2d/kernel"
    np.savez(tmp_path / "bad.npz", **{**w, conv: w[conv][..., :3]})
    with pytest.raises(
        ValueError,
        match=r"bad.npz: key .*unit02/b/standardized_conv2d/kernel"
        r".*shape \(3, 3, 8, 3\)",
    ):
        resnetv2.load_npz(model, tmp_path / "bad.npz")
    np.savez(
        tmp_path / "extra.npz",
        **w,
        **{"resnet/block5/unit01/a/group_norm/gamma": np.ones(4, "float32")},
    )
    with pytest.raises(ValueError, match="block5/unit01"):
        resnetv2.load_npz(model, tmp_path / "extra.npz")
    # a checkpoint of the real variant does not fit the tiny one: the first key says so
    with pytest.raises(ValueError, match="root_block/standardized_conv2d/kernel"):
        resnetv2.load_npz(resnetv2.build("testing", img_size=64), ckpt)
    # a headless model ignores the head (the 21k checkpoint's 21,843 classes)
    resnetv2.load_npz(resnetv2.create(**{**cfg, "num_classes": 0}), ckpt)
    head = resnetv2.read_head(ckpt, num_classes=cfg["num_classes"])
    assert head[0].shape == (256, cfg["num_classes"]) and resnetv2.read_head(ckpt) is None
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        resnetv2.load_npz(model, tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz: not a readable"):
        resnetv2.load_npz(model, tmp_path / "junk.npz")


def test_analysis_layers_and_shapes():
    model = resnetv2.build("testing", num_classes=0, img_size=64)
    assert resnetv2.stage_names(model) == [f"block{b}_out" for b in range(1, 5)]
    shapes = [tuple(model.get_layer(n).output.shape[1:]) for n in resnetv2.stage_names(model)]
    assert shapes == [(16, 16, 64), (8, 8, 128), (4, 4, 256), (2, 2, 512)]
    assert tuple(model.get_layer(resnetv2.GRADCAM_LAYER).output.shape[1:]) == (2, 2, 512)
    with pytest.raises(ValueError, match="unknown ResNetV2 variant"):
        resnetv2.build("R101x3")


def test_preprocess_range():
    x = np.array([0, 127.5, 255], "float32").reshape(1, 1, 3, 1)
    np.testing.assert_allclose(np.asarray(resnetv2.preprocess(x)).ravel(), [-1, 0, 1])

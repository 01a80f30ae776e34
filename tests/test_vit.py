"""Our Keras ViT: pinned sizes, parity with timm's reader of Google's checkpoints, the attention
API, checkpoint validation and position-embedding resampling."""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from vitwatch.models import vit

FIXTURE = Path(__file__).parent / "fixtures" / "vit_parity.npz"
TOL = 1e-4  # parity tolerance with timm (float32, two frameworks)

# Parameter counts with a 1000-class head (testing at img_size 64). S/16 and B/16 match the
# published 22.05 M / 86.57 M (timm's vit_small/base_patch16_224).
PARAM_COUNTS = {"testing": 215_592, "S/16": 22_050_664, "B/16": 86_567_656}


@pytest.mark.parametrize("variant", sorted(vit.VARIANTS))
def test_param_counts_pinned(variant):
    assert variant in PARAM_COUNTS, f"pin the parameter count of new variant {variant}"
    img_size = 64 if variant == "testing" else 224
    assert vit.build(variant, img_size=img_size).count_params() == PARAM_COUNTS[variant]


def test_gmacs_match_published_counts():
    """Published at 224 px (fvcore/timm): ViT-S/16 4.61 GMACs, ViT-B/16 17.58."""
    assert vit.gmacs(**vit.VARIANTS["S/16"], img_size=224) == pytest.approx(4.61, rel=0.01)
    assert vit.gmacs(**vit.VARIANTS["B/16"], img_size=224) == pytest.approx(17.58, rel=0.01)


def _fixture_model(tmp_path, num_classes=None, **kwargs):
    f = np.load(FIXTURE)
    cfg = json.loads(str(f["config"]))
    if num_classes is not None:
        cfg["num_classes"] = num_classes
    ckpt = tmp_path / "ckpt.npz"
    np.savez(ckpt, **{k[5:]: f[k] for k in f.files if k.startswith("ckpt/")})
    model = vit.VisionTransformer(**cfg, **kwargs)
    return vit.load_npz(model, ckpt), f, ckpt


def test_parity_with_timm(tmp_path):
    """Same random checkpoint, timm's _load_weights + timm's ViT with act_layer="gelu_tanh"
    (the function Google's checkpoints were trained with) vs our default ViT: within 1e-4."""
    model, f, _ = _fixture_model(tmp_path)
    assert json.loads(str(f["versions"]))["act_layer"] == "gelu_tanh"
    logits = np.asarray(model(f["images"]))
    assert np.abs(logits).max() > 0.1  # a non-degenerate comparison
    np.testing.assert_allclose(logits, f["logits"], atol=TOL, rtol=0)
    out = model.forward(f["images"])
    np.testing.assert_allclose(np.asarray(out["features"]), f["features"], atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(out["logits"]), f["logits"], atol=TOL, rtol=0)


def test_default_activation_is_googles_tanh_gelu_not_exact(tmp_path):
    """The fixture's weights make the two GELUs differ by > 100x the parity tolerance, so an
    exact-GELU ViT cannot pass test_parity_with_timm; it does match timm's exact-GELU run."""
    assert vit.build("testing", img_size=64).approximate_gelu is True
    exact, f, _ = _fixture_model(tmp_path, approximate_gelu=False)
    features = np.asarray(exact.forward(f["images"])["features"])
    np.testing.assert_allclose(features, f["features_exact"], atol=TOL, rtol=0)
    assert np.abs(features - f["features"]).max() > 100 * TOL
    assert np.abs(np.asarray(exact(f["images"])) - f["logits"]).max() > 100 * TOL
    x = np.linspace(-4, 4, 81, dtype="float32")
    gap = np.abs(np.asarray(vit.gelu(x)) - np.asarray(vit.gelu(x, approximate=False))).max()
    assert 1e-4 < gap < 1e-3  # tanh form: at most 4.7e-4 from erf


def test_activation_is_part_of_the_config(tmp_path):
    model, _, _ = _fixture_model(tmp_path, approximate_gelu=False)
    cfg = model.get_config()
    assert cfg["approximate_gelu"] is False
    again = vit.VisionTransformer.from_config(cfg)
    assert again.approximate_gelu is False
    assert all(block.approximate_gelu is False for block in again.blocks)
    assert model.blocks[0].get_config()["approximate_gelu"] is False
    twin = vit.with_gelu(model, approximate=True)  # same weights, tanh GELU
    f = np.load(FIXTURE)
    np.testing.assert_allclose(np.asarray(twin(f["images"])), f["logits"], atol=TOL, rtol=0)


def test_forward_api_and_fast_path_agree(tmp_path):
    model, f, _ = _fixture_model(tmp_path)
    x = f["images"]
    out = model.forward(x)
    B, N, C = 4, model.num_tokens, model.embed_dim
    assert out["features"].shape == (B, C) and out["tokens"].shape == (B, N, C)
    assert len(out["attention"]) == model.depth
    for attn in out["attention"]:
        a = np.asarray(attn)
        assert a.shape == (B, model.num_heads, N, N)
        assert np.all(a >= 0) and np.allclose(a.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["tokens"][:, 0]), np.asarray(out["features"]))
    fast = np.asarray(vit.compiled_forward(model)(x))
    np.testing.assert_allclose(fast, np.asarray(out["logits"]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), fast, atol=1e-5)


def test_headless_model_gives_the_class_token_features(tmp_path):
    model, f, ckpt = _fixture_model(tmp_path, num_classes=0)
    assert model.head is None
    np.testing.assert_allclose(np.asarray(model(f["images"])), f["features"], atol=1e-4)


def test_save_npz_round_trip(tmp_path):
    model, f, _ = _fixture_model(tmp_path)
    path = vit.save_npz(model, tmp_path / "out" / "saved.npz")
    again = vit.load_npz(vit.VisionTransformer(**model.get_config()), path)
    np.testing.assert_array_equal(np.asarray(again(f["images"])), np.asarray(model(f["images"])))
    original = np.load(tmp_path / "ckpt.npz")
    saved = np.load(path)
    assert sorted(saved.files) == sorted(original.files)
    for k in original.files:
        np.testing.assert_array_equal(saved[k], original[k])


def test_load_npz_names_missing_and_misshaped_keys(tmp_path):
    _, f, ckpt = _fixture_model(tmp_path)
    w = dict(np.load(ckpt))
    key = "Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel"
    model = vit.VisionTransformer(**json.loads(str(f["config"])))
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in w.items() if k != key})
    with pytest.raises(ValueError, match="missing key.*encoderblock_1/MlpBlock_3/Dense_0"):
        vit.load_npz(model, tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", **{**w, key: w[key][:, :5]})
    with pytest.raises(ValueError, match=r"Dense_0/kernel.*shape \(64, 5\)"):
        vit.load_npz(model, tmp_path / "bad.npz")
    np.savez(tmp_path / "extra.npz", **w, **{"pre_logits/kernel": np.zeros((64, 64))})
    with pytest.raises(ValueError, match="pre_logits"):
        vit.load_npz(model, tmp_path / "extra.npz")
    # ... but a headless model (features only) stops before pre_logits and the head
    headless = vit.VisionTransformer(**{**json.loads(str(f["config"])), "num_classes": 0})
    vit.load_npz(headless, tmp_path / "extra.npz")
    np.savez(tmp_path / "extra2.npz", **w, **{"Transformer/unknown/kernel": np.zeros((2,))})
    with pytest.raises(ValueError, match="Transformer/unknown"):
        vit.load_npz(headless, tmp_path / "extra2.npz")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        vit.load_npz(model, tmp_path / "nope.npz")


def test_position_embeddings_resampled_for_another_resolution(tmp_path):
    """A 4x4 grid loaded at 48 px (6x6 grid): class token kept, a linear ramp stays linear."""
    _, f, ckpt = _fixture_model(tmp_path)
    w = dict(np.load(ckpt))
    C = w["cls"].shape[-1]
    rows, cols = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    ramp = (rows[..., None] * np.linspace(0, 1, C) + cols[..., None]).reshape(16, C)
    cls_pos = np.full((1, C), 7.0)
    w["Transformer/posembed_input/pos_embedding"] = np.concatenate([cls_pos, ramp])[None]
    np.savez(tmp_path / "ramp.npz", **w)
    cfg = {**json.loads(str(f["config"])), "img_size": 48}
    model = vit.load_npz(vit.VisionTransformer(**cfg), tmp_path / "ramp.npz")
    pos = np.asarray(model.pos_embed)
    assert pos.shape == (1, 37, C)
    np.testing.assert_allclose(pos[0, 0], 7.0)
    r, c = np.meshgrid(np.linspace(0, 3, 6), np.linspace(0, 3, 6), indexing="ij")
    expected = (r[..., None] * np.linspace(0, 1, C) + c[..., None]).reshape(36, C)
    np.testing.assert_allclose(pos[0, 1:], expected, atol=1e-5)
    out = model.forward(np.zeros((1, 48, 48, 3), "float32"))
    assert out["attention"][0].shape == (1, 4, 37, 37)


def test_wrong_input_size_is_a_clear_error():
    model = vit.build("testing", num_classes=0, img_size=64)
    with pytest.raises(ValueError, match="expects 64x64"):
        model(np.zeros((1, 32, 32, 3), "float32"))
    with pytest.raises(ValueError, match="unknown ViT variant"):
        vit.build("L/16")


def test_preprocess_range():
    x = np.array([0, 127.5, 255], "float32").reshape(1, 1, 3, 1)
    np.testing.assert_allclose(np.asarray(vit.preprocess(x)).ravel(), [-1, 0, 1])

"""Notebook 05's models and data: shapes, pinned sizes, SPT/LSA behaviour, offline loaders."""

import types

import numpy as np
import pytest

from vitwatch import downloads
from vitwatch.data import small as small_data
from vitwatch.downloads import transfer
from vitwatch.models import small

# Trainable parameters and MACs (one image) of every model at every scale. A change of
# architecture must show up here (as vit_jax's models_test pins its configs).
PINNED = {
    ("digits", "resnet"): (59_692, 585_648),
    ("digits", "vit"): (58_570, 1_026_816),
    ("digits", "vit_spt_lsa"): (59_381, 1_039_104),
    ("digits", "vit_small_patch"): (60_730, 4_814_592),
    ("cifar10", "resnet"): (611_074, 91_497_408),
    ("cifar10", "vit"): (811_146, 58_002_176),
    ("cifar10", "vit_spt_lsa"): (836_208, 59_575_040),
    ("cifar10", "vit_small_patch"): (831_114, 303_958_784),
}
INPUT = {"digits": (8, 1), "cifar10": (32, 3)}


def test_every_config_is_pinned():
    assert set(PINNED) == {(s, a) for s in small.SCALES for a in small.ARCHS}


@pytest.mark.parametrize("scale,arch", sorted(PINNED))
def test_models_shapes_params_macs(scale, arch):
    img, ch = INPUT[scale]
    model = small.build(arch, scale, img, ch, 10)
    logits = np.asarray(
        model(np.random.default_rng(0).normal(size=(3, img, img, ch)).astype("float32"))
    )
    assert logits.shape == (3, 10) and np.all(np.isfinite(logits))
    assert (small.count_params(model), small.count_macs(model)) == PINNED[(scale, arch)]


def test_vit_params_and_macs_by_hand():
    """Digits ViT: 16 patches of 2x2x1, D=48, 3 blocks, MLP 96, 10 classes."""
    d, m, t, n = 48, 96, 17, 16
    block_params = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d)
    params = (4 * d + d) + d + t * d + 3 * block_params + 2 * d + (d * 10 + 10)
    block_macs = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * m
    macs = n * 4 * d + 3 * block_macs + d * 10
    model = small.build("vit", "digits", 8, 1, 10)
    assert (small.count_params(model), small.count_macs(model)) == (params, macs)


def test_resnet_macs_by_hand():
    """Digits ResNet, width w=14: stem, 3 stages of one basic block, strides 1, 2, 2."""
    w = 14
    stem = 64 * 9 * 1 * w
    s1 = 2 * 64 * 9 * w * w
    s2 = 16 * 9 * w * 2 * w + 16 * 9 * 4 * w * w + 16 * w * 2 * w  # + 1x1 projection
    s3 = 4 * 9 * 2 * w * 4 * w + 4 * 9 * 16 * w * w + 4 * 2 * w * 4 * w
    model = small.build("resnet", "digits", 8, 1, 10)
    assert small.count_macs(model) == stem + s1 + s2 + s3 + 4 * w * 10


def test_forward_returns_tokens_and_attention():
    model = small.build("vit_spt_lsa", "cifar10", 32, 3, 10)
    out = model.forward(np.zeros((2, 32, 32, 3), "float32"))
    assert tuple(out["tokens"].shape) == (2, 65, 128)  # (B, N+1, C)
    assert tuple(out["features"].shape) == (2, 128)
    assert len(out["attention"]) == 6
    attn = np.asarray(out["attention"][0])
    assert attn.shape == (2, 4, 65, 65)  # (B, H, N, N)
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)


def test_lsa_masks_the_diagonal_and_learns_temperature():
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 1)).astype("float32")
    lsa = small.build("vit_spt_lsa", "digits", 8, 1, 10)
    plain = small.build("vit", "digits", 8, 1, 10)
    diag = np.diagonal(np.asarray(lsa.forward(x)["attention"][0]), axis1=-2, axis2=-1)
    assert np.all(diag < 1e-6)  # no self-attention
    plain_diag = np.diagonal(np.asarray(plain.forward(x)["attention"][0]), axis1=-2, axis2=-1)
    assert np.all(plain_diag > 1e-4)
    trainable = {v.path for v in lsa.trainable_variables}
    assert any(p.endswith("attn/scale") for p in trainable)
    assert not any(p.endswith("attn/scale") for p in {v.path for v in plain.trainable_variables})


def test_spt_sees_shifted_neighbours():
    """SPT's token 0 depends on pixels of the next patch (through the shifted copies); a plain
    patch embedding's token 0 does not."""
    spt = small.ShiftedPatchTokenization(patch_size=2, embed_dim=8)
    plain = small.PatchEmbedding(patch_size=2, embed_dim=8)
    x = np.zeros((1, 8, 8, 1), "float32")
    y = x.copy()
    y[0, 2, 2, 0] = 5.0  # a pixel of patch (1, 1), diagonal neighbour
    for layer, depends in ((spt, True), (plain, False)):
        a, b = np.asarray(layer(x)), np.asarray(layer(y))
        assert a.shape == (1, 16, 8)  # (B, N, D)
        assert (not np.allclose(a[0, 0], b[0, 0])) == depends


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="unknown small model"):
        small.hyperparameters("vit_huge", "digits")
    with pytest.raises(ValueError, match="patch_size"):
        small.SmallViT(10, 1, 10, patch_size=4, embed_dim=8, depth=1, num_heads=2, mlp_dim=8)


# --- data ----------------------------------------------------------------------------------


def test_digits_split_is_real_fixed_and_stratified():
    d = small_data.load_digits()
    assert d.x_train.dtype == np.uint8 and d.x_train.shape[1:] == (8, 8, 1)
    assert len(d.y_train) + len(d.y_test) == 1797
    assert d.x_train.max() == 255 and d.num_classes == 10
    again = small_data.load_digits()
    np.testing.assert_array_equal(d.y_test, again.y_test)
    share = np.bincount(d.y_test, minlength=10) / len(d.y_test)
    assert np.all(np.abs(share - 0.1) < 0.015)


def test_subset_is_stratified_and_nested():
    y = small_data.load_digits().y_train
    small_idx, big_idx = small_data.subset(y, 100, seed=3), small_data.subset(y, 400, seed=3)
    assert len(set(small_idx)) == 100 and set(small_idx) <= set(big_idx)
    assert np.bincount(y[small_idx], minlength=10).min() >= 9
    assert not np.array_equal(np.sort(small_idx), np.sort(small_data.subset(y, 100, seed=4)))
    with pytest.raises(ValueError, match="small_train_sizes"):
        small_data.subset(y, len(y) + 1, seed=0)


def test_required_resources():
    assert small_data.required_resources(types.SimpleNamespace(small_dataset="digits")) == []
    assert small_data.required_resources(types.SimpleNamespace(small_dataset="cifar10")) == [
        "cifar10"
    ]
    assert set(
        small_data.required_resources(types.SimpleNamespace(small_dataset="cifar10"))
    ) <= set(downloads.RESOURCES)


def test_cifar10_offline_fails_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(transfer.time, "sleep", lambda s: None)
    monkeypatch.setenv("VITWATCH_MIRROR", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(downloads.DownloadError, match="small_dataset='digits'") as err:
        small_data.load(types.SimpleNamespace(small_dataset="cifar10", cache_dir=str(tmp_path)))
    msg = str(err.value)
    assert downloads.RESOURCES["cifar10"].url in msg and "offline" in msg
    assert str(tmp_path / "downloads") in msg and err.value.cause == "offline"
    assert not (tmp_path / "keras").exists()


def _write_cifar(folder, x, y, n_batches=5):
    """The python version's layout: pickled dicts of (N, 3072) R, G, B planes and labels."""
    import pickle

    folder.mkdir(parents=True)
    xs, ys = np.array_split(x, n_batches), np.array_split(y, n_batches)

    def rows(a):
        return a.transpose(0, 3, 1, 2).reshape(len(a), -1)  # (N, 3072)

    for i, (xb, yb) in enumerate(zip(xs, ys), 1):
        batch = {b"data": rows(xb), b"labels": yb.tolist()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    return rows


def test_cifar10_is_read_from_the_cache_folder(tmp_path, monkeypatch):
    """CIFAR-10 handed in (or extracted) under <cache>/downloads: read without the network."""
    import pickle

    monkeypatch.setenv("VITWATCH_MIRROR", "http://127.0.0.1:9")  # any download would fail
    rng = np.random.default_rng(0)
    fake = (
        (
            rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, (50,), dtype=np.int64),
        ),
        (
            rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, (20,), dtype=np.int64),
        ),
    )
    folder = tmp_path / "downloads" / "cifar-10-batches-py"
    rows = _write_cifar(folder, *fake[0])
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": rows(fake[1][0]), b"labels": fake[1][1].tolist()}, protocol=2)
    )
    cfg = types.SimpleNamespace(small_dataset="cifar10", cache_dir=str(tmp_path))
    d = small_data.load(cfg)
    assert d.x_train.shape == (50, 32, 32, 3) and d.y_train.shape == (50,)
    assert d.y_test.dtype == np.int64 and d.class_names[3] == "cat"
    np.testing.assert_array_equal(d.y_test, fake[1][1])
    np.testing.assert_array_equal(d.x_train, fake[0][0])
    cut = small_data.load(types.SimpleNamespace(**vars(cfg), small_test_size=10))
    assert len(cut.y_test) == 10 and "10 images" in cut.source
    kept = {tuple(r.reshape(-1)[:8]) for r in fake[1][0]}
    assert all(tuple(r.reshape(-1)[:8]) in kept for r in cut.x_test)

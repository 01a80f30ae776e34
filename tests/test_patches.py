"""vitwatch.theory.patches: patchify is the layout of a stride-P convolution; position similarity,
PCA."""

import numpy as np
import pytest

from vitwatch.theory import patches


def test_patchify_roundtrip_and_order():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(2, 32, 48, 3), dtype=np.uint8)
    p = patches.patchify(x, 16)
    assert p.shape == (2, 6, 16 * 16 * 3)
    # patch 4 = row 1, column 1 (3 patches per row), pixels in (row, column, channel) order
    np.testing.assert_array_equal(p[0, 4], x[0, 16:32, 16:32].reshape(-1))
    np.testing.assert_array_equal(patches.unpatchify(p, (2, 3), 16), x)
    np.testing.assert_array_equal(patches.patchify(x[1], 16), p[1])
    with pytest.raises(ValueError, match="multiple of patch_size"):
        patches.patchify(x[:, :30], 16)


def test_linear_embedding_equals_strided_convolution():
    import keras

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    conv = keras.layers.Conv2D(8, 16, strides=16, padding="valid")
    y = np.asarray(conv(x)).reshape(2, -1, 8)  # (B, N, D)
    kernel = conv.kernel.numpy().reshape(-1, 8)  # (P, P, C, D) -> (P*P*C, D), as in 02
    np.testing.assert_allclose(patches.patchify(x, 16) @ kernel + conv.bias.numpy(), y, atol=1e-4)


def test_token_counts():
    t = patches.token_table((224, 384), (16, 32), num_heads=6)
    row = t[(t.resolution == 224) & (t.patch_size == 16)].iloc[0]
    assert row.tokens == 197 and row.attention_entries == 197**2
    assert row.attention_mib == pytest.approx(6 * 197**2 * 4 / 2**20)
    with pytest.raises(ValueError, match="multiple"):
        patches.grid_size(225, 16)


def test_position_similarity():
    g, d = 3, 5
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(1, g * g + 1, d))
    sim = patches.position_similarity(pos, g)
    assert sim.shape == (g, g, g, g)
    for i in range(g):
        for j in range(g):
            assert sim[i, j, i, j] == pytest.approx(1.0)
    e = pos[0, 1:]
    expected = e[0] @ e[4] / np.linalg.norm(e[0]) / np.linalg.norm(e[4])
    assert sim[0, 0, 1, 1] == pytest.approx(expected)
    with pytest.raises(ValueError, match="grid"):
        patches.position_similarity(pos, 4)


def test_filter_pca_recovers_structure():
    rng = np.random.default_rng(0)
    P, D = 4, 50
    # filters = random multiples of two fixed patterns: two components explain everything
    base = rng.normal(size=(2, P, P, 3))
    coef = rng.normal(size=(D, 2)) * [3.0, 1.0]
    kernel = np.einsum("dk,kabc->abcd", coef, base)
    comps, ratio = patches.embedding_filters_pca(kernel, n_components=4)
    assert comps.shape == (2, P, P, 3) or comps.shape == (4, P, P, 3)
    assert ratio[:2].sum() == pytest.approx(1.0, abs=1e-8)
    assert ratio[0] > ratio[1]


# --- the other inputs of notebooks 00 and 02: bundled photographs, published numbers ----------


def test_sample_photos_offline():
    from vitwatch.data import samples

    photos = samples.photos(["chelsea", "coffee"])
    assert set(photos) == {"chelsea", "coffee"}
    for img in photos.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3
    sq = samples.square(photos["coffee"], 224)
    assert sq.shape == (224, 224, 3) and sq.dtype == np.uint8
    assert patches.patchify(sq, 16).shape == (196, 768)
    with pytest.raises(ValueError, match="unknown sample photo"):
        samples.photos(["lena"])


def test_published_numbers_carry_their_source():
    from vitwatch.theory import published

    for name, rows in published.TABLES.items():
        assert rows and all(r["source"] for r in rows), name
    t2 = published.frame("state_of_the_art").set_index("model")
    assert t2.loc["ViT-H/14", "imagenet"] == 88.55 and t2.loc["ViT-H/14", "tpu_core_days"] == 2500
    assert {r["pretraining"] for r in published.DATA_SCALING} <= set(published.PRETRAINING_IMAGES)
    with pytest.raises(ValueError, match="unknown published table"):
        published.frame("table_99")

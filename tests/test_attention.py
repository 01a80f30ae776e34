"""vitwatch.theory.attention against hand-computed cases and against Keras' MultiHeadAttention."""

import numpy as np
import pytest

from vitwatch.theory import attention


def test_softmax_rows_and_stability():
    x = np.array([[1000.0, 1000.0], [0.0, -np.inf]])
    s = attention.softmax(x)
    np.testing.assert_allclose(s, [[0.5, 0.5], [1.0, 0.0]])


def test_scaled_dot_product_hand_computed():
    # two keys; the query aligns with key 0: scores [2, 0] / sqrt(2)
    q = np.array([[np.sqrt(2.0), 0.0]])
    k = np.array([[np.sqrt(2.0), 0.0], [0.0, 1.0]])
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    out, w = attention.scaled_dot_product_attention(q, k, v)
    p = np.exp(np.sqrt(2.0)) / (np.exp(np.sqrt(2.0)) + 1.0)
    np.testing.assert_allclose(w, [[p, 1 - p]])
    np.testing.assert_allclose(out, [[p, 1 - p]])


def test_attention_rows_sum_to_one_and_mask():
    rng = np.random.default_rng(0)
    q, k, v = (
        rng.normal(size=(2, 3, 5, 8)),
        rng.normal(size=(2, 3, 7, 8)),
        rng.normal(size=(2, 3, 7, 4)),
    )
    mask = np.ones((5, 7), bool)
    mask[:, -2:] = False
    out, w = attention.scaled_dot_product_attention(q, k, v, mask)
    assert out.shape == (2, 3, 5, 4) and w.shape == (2, 3, 5, 7)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    assert np.all(w[..., -2:] == 0)
    with pytest.raises(ValueError, match="d_k"):
        attention.scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="at least one key"):
        attention.scaled_dot_product_attention(q, k, v, np.zeros((5, 7), bool))


def test_multi_head_matches_keras():
    import keras

    rng = np.random.default_rng(1)
    B, N, C, H = 2, 6, 16, 4
    x = rng.normal(size=(B, N, C)).astype("float32")
    layer = keras.layers.MultiHeadAttention(num_heads=H, key_dim=C // H)
    layer(x, x)  # builds the weights
    dense = [layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense]
    for d in dense:  # non-zero biases, exercised too
        d.bias.assign(rng.normal(size=d.bias.shape).astype("float32"))
    ref, ref_w = layer(x, x, return_attention_scores=True)
    qk, kk, vk, ok = (d.kernel.numpy() for d in dense)  # (C, H, d) ... (H, d, C)
    qb, kb, vb, ob = (d.bias.numpy() for d in dense)
    out, w = attention.multi_head_attention(x, qk, kk, vk, ok, H, qb, kb, vb, ob)
    np.testing.assert_allclose(w, np.asarray(ref_w), atol=1e-5)
    np.testing.assert_allclose(out, np.asarray(ref), atol=1e-4)


def _uniform(L, B, H, N):
    return [np.full((B, H, N, N), 1.0 / N) for _ in range(L)]


def test_rollout_identity_and_rows():
    n = 5
    eye = [np.broadcast_to(np.eye(n), (2, 3, n, n)) for _ in range(4)]
    np.testing.assert_allclose(attention.rollout(eye), np.broadcast_to(np.eye(n), (2, n, n)))
    # uniform attention without residual: the product is uniform
    u = attention.rollout(_uniform(3, 1, 2, n), add_residual=False)
    np.testing.assert_allclose(u, np.full((1, n, n), 1 / n))
    rng = np.random.default_rng(0)
    rand = [attention.softmax(rng.normal(size=(2, 3, n, n))) for _ in range(3)]
    for fusion in ("mean", "max", "min"):
        r = attention.rollout(rand, head_fusion=fusion)
        np.testing.assert_allclose(r.sum(-1), 1.0)
    # one block with residual: 0.5 * A + 0.5 * I exactly
    r1 = attention.rollout(rand[:1])
    np.testing.assert_allclose(r1, 0.5 * rand[0].mean(1) + 0.5 * np.eye(n))
    # two blocks compose as A2 @ A1
    a1, a2 = (0.5 * a.mean(1) + 0.5 * np.eye(n) for a in rand[:2])
    np.testing.assert_allclose(attention.rollout(rand[:2]), a2 @ a1)
    with pytest.raises(ValueError, match="head_fusion"):
        attention.rollout(rand, head_fusion="median")


def test_cls_attention_maps():
    g, H = 3, 2
    n = g * g + 1
    a = np.zeros((4, H, n, n))
    a[:, :, 0, 1:] = np.arange(g * g)
    maps = attention.cls_attention_maps([np.zeros_like(a), a], g)
    assert maps.shape == (4, H, g, g)
    np.testing.assert_array_equal(maps[0, 0], np.arange(9).reshape(3, 3))
    assert attention.cls_attention_maps(a[0], (g, g)).shape == (H, g, g)
    with pytest.raises(ValueError, match="grid"):
        attention.cls_attention_maps(a, 4)


def test_mean_attention_distance_known_cases():
    g, p = 2, 16
    n = g * g + 1
    eye = np.broadcast_to(np.eye(n), (1, 3, n, n))
    np.testing.assert_allclose(attention.mean_attention_distance([eye, eye], g, p), 0.0)
    # uniform over a 2x2 grid: from each patch, distances 0, 16, 16, 16*sqrt(2)
    uni = np.full((2, 3, n, n), 1.0 / n)
    expected = (0 + 16 + 16 + 16 * np.sqrt(2)) / 4
    d = attention.mean_attention_distance(uni, g, p)
    assert d.shape == (3,)
    np.testing.assert_allclose(d, expected)
    # attention to the horizontal neighbour only: exactly one patch away
    nb = np.zeros((1, 1, n, n))
    for i, j in [(1, 2), (2, 1), (3, 4), (4, 3)]:
        nb[0, 0, i, j] = 1.0
    nb[0, 0, 0, 0] = 1.0
    np.testing.assert_allclose(attention.mean_attention_distance([nb], g, p), [[16.0]])


def test_time_attention_is_superlinear():
    lens, secs, slope = attention.time_attention([128, 256, 512, 1024], dim=32, repeats=2)
    assert list(lens) == [128, 256, 512, 1024] and np.all(secs > 0)
    assert 1.3 < slope < 3.5  # superlinear; cache effects can push it above 2

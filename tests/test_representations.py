"""Linear CKA (Kornblith et al., 2019) and minibatch CKA (Nguyen et al., 2021)."""

import numpy as np
import pytest

from vitwatch.analysis import representations as rep


def _feature_form(x, y):
    # Kornblith eq. (4), written in feature space as an independent reference.
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_linear_cka_reference_and_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 20))
    y = x @ rng.normal(size=(20, 30)) + 0.5 * rng.normal(size=(50, 30))
    assert rep.linear_cka(x, y) == pytest.approx(_feature_form(x, y), rel=1e-10)
    assert rep.linear_cka(x, x) == pytest.approx(1.0)
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert rep.linear_cka(x @ q * 3.0 + 7.0, y) == pytest.approx(rep.linear_cka(x, y))
    z = rng.normal(size=(50, 20))
    assert rep.linear_cka(x, z) < 0.5 < rep.linear_cka(x, y)
    # spatial activations are flattened per image
    assert rep.linear_cka(x.reshape(50, 4, 5), y) == pytest.approx(rep.linear_cka(x, y))
    with pytest.raises(ValueError, match="same images"):
        rep.linear_cka(x, y[:10])


def test_hsic_unbiased_matches_definition():
    rng = np.random.default_rng(1)
    n = 9
    k = rep.gram_linear(rng.normal(size=(n, 4)))
    l = rep.gram_linear(rng.normal(size=(n, 6)))
    # Song et al. (2012) eq. (5) written with explicit sums
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    ref = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ kt @ lt @ one
    ) / (n * (n - 3))
    assert rep.hsic_unbiased(k, l) == pytest.approx(ref)
    with pytest.raises(ValueError, match="at least 4"):
        rep.hsic_unbiased(k[:3, :3], l[:3, :3])


def test_minibatch_cka_matrix():
    rng = np.random.default_rng(2)
    acc = rep.MinibatchCKA(2, 3)
    for _ in range(6):
        base = rng.normal(size=(32, 10))
        a = [base, rng.normal(size=(32, 4, 4))]  # related, unrelated
        b = [base @ rng.normal(size=(10, 10)), base * 2.0, rng.normal(size=(32, 7))]
        acc.update(a, b)
    m = acc.result()
    assert m.shape == (2, 3)
    assert m[0, 1] == pytest.approx(1.0, abs=1e-9)  # scaled copy
    assert m[0, 0] > 0.5
    assert np.all(np.abs(m[1]) < 0.2) and abs(m[0, 2]) < 0.2
    with pytest.raises(ValueError, match="expected 2 and 3 layers"):
        acc.update(a[:1], b)


def test_activations_of_vit_blocks_and_resnet_stages():
    import keras

    from vitwatch.models import vit

    model = vit.build("testing", num_classes=0, img_size=32)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    outs = rep.vit_block_outputs(model, x)
    assert len(outs) == model.depth and outs[0].shape == (2, model.num_tokens, model.embed_dim)
    np.testing.assert_allclose(
        np.asarray(model.norm(outs[-1])), np.asarray(model.forward(x)["tokens"]), atol=1e-5
    )
    with pytest.raises(ValueError, match="embed"):
        rep.vit_block_outputs(object(), x)
    net = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    names = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    stages = rep.stage_model(net, names)(np.zeros((1, 64, 64, 3), "float32"))
    assert [tuple(s.shape[1:]) for s in stages] == [
        (16, 16, 256),
        (8, 8, 512),
        (4, 4, 1024),
        (2, 2, 2048),
    ]

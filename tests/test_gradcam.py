"""Grad-CAM: CAM on a linear head, Keras ResNet-50's layer names, and the chapter's two targets
(the true breed's ImageNet-1k logit through a differentiable head, or class-agnostic)."""

import os
import types

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vitwatch.analysis import gradcam  # noqa: E402


def _tiny_cnn(img=32):
    import keras

    inp = keras.Input((img, img, 3))
    x = inp
    for name, width in (("conv2_block3_out", 8), ("conv3_block4_out", 8), ("conv4_block6_out", 8)):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu", name=name)(
            x
        )
    x = keras.layers.Conv2D(
        16, 3, strides=2, padding="same", activation="relu", name="conv5_block3_out"
    )(x)
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))


def test_maps_target_the_true_class_through_a_tf_head_or_are_class_agnostic():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(16, 10)).astype("float32"), rng.normal(size=10).astype("float32")
    head = gradcam.linear(w, b)
    f = rng.normal(size=(3, 16)).astype("float32")
    np.testing.assert_allclose(np.asarray(head(f)), f @ w + b, rtol=1e-4, atol=1e-4)
    bb = types.SimpleNamespace(
        name="resnet50",
        model=_tiny_cnn(),
        imagenet_logits=head,
        extra={"gradcam_layer": "conv5_block3_out"},
        preprocess=lambda z: z / 127.5 - 1,
    )
    x = rng.uniform(-1, 1, (5, 32, 32, 3)).astype("float32")
    maps, kind = gradcam.maps(bb, x, np.array([0, 1, 2, 3, 4]), batch_size=2)
    assert maps.shape == (5, 2, 2) and "ImageNet-1k logit" in kind
    agnostic, kind = gradcam.maps(bb, x, np.array([0, -1, 2, 3, 4]))  # one class unknown
    assert agnostic.shape == (5, 2, 2) and "class-agnostic" in kind
    assert not np.allclose(maps, agnostic)
    images = rng.integers(0, 255, (5, 32, 32, 3)).astype(np.uint8)
    named = gradcam.saliency(bb, images, np.arange(5))
    assert list(named) == ["ResNet-50 Grad-CAM", "ResNet-50 Grad-CAM, true class"]
    bb.imagenet_logits = None  # no ImageNet head: the class-agnostic map only
    assert list(gradcam.saliency(bb, images, np.arange(5))) == ["ResNet-50 Grad-CAM"]


def test_gradcam_equals_cam_for_linear_head():
    # conv -> global average pool -> dense: Grad-CAM reduces to CAM (Zhou et al., 2016),
    # map_k = ReLU(sum_c w_ck A_c) / (h w).
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="last_conv")(
        inp
    )
    pooled = keras.layers.GlobalAveragePooling2D()(a)
    logits = keras.layers.Dense(4, name="head")(pooled)
    model = keras.Model(inp, logits)
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype("float32")
    cam = gradcam.GradCAM(model, "last_conv", logits=True)
    maps = cam(x, class_index=[0, 1, 3])
    assert maps.shape == (3, 8, 8)
    acts = keras.Model(inp, a)(x).numpy()  # (3, 8, 8, 6)
    w = model.get_layer("head").get_weights()[0]  # (6, 4)
    for b, k in enumerate([0, 1, 3]):
        ref = np.maximum(acts[b] @ w[:, k], 0) / 64
        np.testing.assert_allclose(maps[b], ref, rtol=1e-4, atol=1e-6)
    # default target = predicted class
    pred = model(x).numpy().argmax(1)
    np.testing.assert_allclose(cam(x), cam(x, class_index=pred), rtol=1e-5)
    with pytest.raises(ValueError, match="not found"):
        gradcam.GradCAM(model, "conv5_block3_out")


def test_gradcam_on_keras_resnet50_layer_names():
    import keras

    net = keras.applications.ResNet50(
        weights=None, include_top=False, pooling="avg", input_shape=(64, 64, 3)
    )
    maps = gradcam.GradCAM(net, "conv5_block3_out")(
        np.random.default_rng(0).uniform(-100, 100, (2, 64, 64, 3))
    )
    assert maps.shape == (2, 2, 2) and np.all(np.isfinite(maps)) and np.all(maps >= 0)

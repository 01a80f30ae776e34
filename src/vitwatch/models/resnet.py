"""ResNet-50 (v1, [He et al., 2016]) from ``keras.applications``: the seed's CNN baseline.

Features are the 2048-d global average pool; the ImageNet-1k head (``predictions``) stays
available for the zero-training baseline. Preprocessing is Keras' "caffe" mode (RGB -> BGR,
minus the ImageNet channel means, inputs in 0..255), written here as a pure function because
``keras.applications.resnet50.preprocess_input`` modifies NumPy float arrays in place.
ImageNet weights are fetched through :mod:`vitwatch.downloads` (timeouts, retries, resume,
Keras' published MD5, clear error, offline alternatives) and handed to Keras as a file;
``weights="random"`` gives a deterministic random initialisation from a seed (He-normal
convolutions, identity batch-norm statistics) for the smoke profile, independent of
TensorFlow's global random state.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

MEAN_BGR = (103.939, 116.779, 123.68)


def preprocess(x):
    """Float/uint8 RGB images in 0..255 (B, S, S, 3) -> caffe-mode BGR minus channel means."""
    x = ops.cast(x, "float32")
    return ops.flip(x, axis=-1) - ops.convert_to_tensor(MEAN_BGR, "float32")


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Deterministic random weights: He-normal kernels, zero biases, identity batch norms.

    The last batch norm of each residual branch gets a scale of 0.25 (in the spirit of the
    zero-init residual trick of Goyal et al., 2017), so that activations stay O(input) through
    the 16 blocks instead of doubling their variance at each one.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            scale = 0.25 if layer.name.endswith("_3_bn") else 1.0  # conv{s}_block{b}_3_bn
            layer.set_weights(
                [
                    np.full_like(gamma, scale),
                    np.zeros_like(beta),
                    np.zeros_like(mean),
                    np.ones_like(var),
                ]
            )
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel, bias = layer.get_weights()
            fan_in = int(np.prod(kernel.shape[:-1]))
            kernel = rng.standard_normal(kernel.shape, dtype=np.float32) * np.sqrt(2.0 / fan_in)
            layer.set_weights([kernel.astype("float32"), np.zeros_like(bias)])
    return model


def build(
    weights: str = "imagenet",
    img_size: int = 224,
    include_top: bool = True,
    cache_dir=None,
    seed: int = 0,
) -> keras.Model:
    """Keras ResNet-50 on caffe-preprocessed (B, S, S, 3) input.

    ``include_top=True``: the ImageNet-1k classifier (softmax probabilities, layer
    ``predictions``); ``False``: the 2048-d average-pooled features. ``weights``: "imagenet"
    (downloaded once into ``cache_dir``) or "random".
    """
    if weights not in ("imagenet", "random"):
        raise ValueError(f"resnet_weights must be 'imagenet' or 'random', got {weights!r}")
    if img_size < 32:
        raise ValueError(f"img_size={img_size} is too small for ResNet-50 (minimum 32)")
    source = None
    if weights == "imagenet":
        import os
        from pathlib import Path

        from vitwatch import downloads

        cache_dir = cache_dir or os.environ.get("VITWATCH_CACHE") or Path.home() / ".cache/vitwatch"
        source = str(downloads.fetch("resnet50_imagenet", cache_dir))
    # Built with its top at any size: the head sits on a global average pool, so the same
    # ImageNet weights file fits every input resolution.
    full = keras.applications.ResNet50(
        include_top=True, weights=source, input_shape=(img_size, img_size, 3)
    )
    if weights == "random":
        randomize(full, seed)
    if include_top:
        return full
    return keras.Model(full.input, full.get_layer("avg_pool").output, name="resnet50_features")


def imagenet_head(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (2048, 1000), bias (1000,)) of the ImageNet-1k classifier of a full ResNet-50."""
    kernel, bias = model.get_layer("predictions").get_weights()
    return kernel, bias

"""ResNet-50 (v1, [He et al., 2016]) from ``keras.applications``: the seed's CNN baseline.

Features are the 2048-d global average pool; the ImageNet-1k head (``predictions``) stays
available for the zero-training baseline. Preprocessing is Keras' "caffe" mode (RGB -> BGR,
minus the ImageNet channel means, inputs in 0..255), written here as a pure function because
``keras.applications.resnet50.preprocess_input`` modifies NumPy float arrays in place.
ImageNet weights are fetched through :mod:`vitwatch.downloads` (timeouts, retries, resume,
Keras' published MD5, clear error, offline alternatives) and handed to Keras as a file;
``weights="random"`` gives a deterministic random initialisation from a seed (He-normal
convolutions, identity batch-norm statistics), independent of TensorFlow's global random
state. ``variant="testing"`` (the smoke profile, :data:`VARIANTS`) is a tiny ResNet v1 of the
same design and layer names (one bottleneck block per stage, 8 base channels instead of 64),
random weights only: tracing and running it costs a fraction of ResNet-50's, and the code
that reads ResNet-50's layers by name (stage outputs, Grad-CAM's layer, fine-tuning's blocks)
reads it the same way (:func:`stage_outputs`).
"""

from __future__ import annotations

import re

import keras
import numpy as np
from keras import ops

MEAN_BGR = (103.939, 116.779, 123.68)

# Bottleneck blocks per stage (conv2..conv5) and the first stage's width; ResNet-50 itself is
# keras.applications.ResNet50, "testing" our tiny copy of its design (:func:`_tiny`).
VARIANTS = {
    "50": dict(blocks=(3, 4, 6, 3), width=64),
    "testing": dict(blocks=(1, 1, 1, 1), width=8),
}


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
    variant: str = "50",
) -> keras.Model:
    """Keras ResNet-50 on caffe-preprocessed (B, S, S, 3) input.

    ``include_top=True``: the ImageNet-1k classifier (softmax probabilities, layer
    ``predictions``); ``False``: the 2048-d average-pooled features. ``weights``: "imagenet"
    (downloaded once into ``cache_dir``) or "random". ``variant``: a key of :data:`VARIANTS`
    ("testing": the tiny copy, random weights only).
    """
    if weights not in ("imagenet", "random"):
        raise ValueError(f"resnet_weights must be 'imagenet' or 'random', got {weights!r}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown ResNet variant {variant!r}; known: {', '.join(VARIANTS)}")
    if img_size < 32:
        raise ValueError(f"img_size={img_size} is too small for ResNet-50 (minimum 32)")
    if variant != "50":
        if weights != "random":
            raise ValueError(
                f"resnet_weights={weights!r}: the tiny '{variant}' ResNet of the smoke profile "
                "has random weights only (bit_variant='testing' builds every CNN tiny; use "
                "resnet_weights='random', or a full bit_variant with the ImageNet weights)"
            )
        full = randomize(_tiny(img_size, **VARIANTS[variant]), seed)
    else:
        source = None
        if weights == "imagenet":
            import os
            from pathlib import Path

            from vitwatch import downloads

            cache_dir = (
                cache_dir or os.environ.get("VITWATCH_CACHE") or Path.home() / ".cache/vitwatch"
            )
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


def _tiny(img_size: int, blocks, width: int, classes: int = 1000) -> keras.Model:
    """ResNet v1 with ``blocks`` bottleneck blocks per stage and base width ``width``, laid out
    and named as ``keras.applications.ResNet50`` (``conv1_conv``, ``conv{s}_block{b}_out``,
    ``avg_pool``, ``predictions``)."""
    from keras import layers

    def bn(name):
        return layers.BatchNormalization(epsilon=1.001e-5, name=name)

    inputs = keras.Input((img_size, img_size, 3))
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(width, 7, strides=2, name="conv1_conv")(x)
    x = layers.Activation("relu", name="conv1_relu")(bn("conv1_bn")(x))
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, n in enumerate(blocks):
        filters = width * 2**stage
        for b in range(n):
            name, stride = f"conv{stage + 2}_block{b + 1}", 2 if stage and not b else 1
            shortcut = x
            if b == 0:  # projection shortcut
                shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=name + "_0_conv")(x)
                shortcut = bn(name + "_0_bn")(shortcut)
            y = layers.Conv2D(filters, 1, strides=stride, name=name + "_1_conv")(x)
            y = layers.Activation("relu", name=name + "_1_relu")(bn(name + "_1_bn")(y))
            y = layers.Conv2D(filters, 3, padding="same", name=name + "_2_conv")(y)
            y = layers.Activation("relu", name=name + "_2_relu")(bn(name + "_2_bn")(y))
            y = bn(name + "_3_bn")(layers.Conv2D(4 * filters, 1, name=name + "_3_conv")(y))
            x = layers.Add(name=name + "_add")([shortcut, y])
            x = layers.Activation("relu", name=name + "_out")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet_testing")


def stage_outputs(model: keras.Model) -> list[str]:
    """The last block output of each stage (``conv{s}_block{b}_out``), in order: ResNet-50's
    ``conv2_block3_out`` .. ``conv5_block3_out``; the last is Grad-CAM's layer."""
    last: dict[int, tuple[int, str]] = {}
    for layer in model.layers:
        m = re.fullmatch(r"conv(\d+)_block(\d+)_out", layer.name)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            last[stage] = max(last.get(stage, (0, "")), (block, layer.name))
    return [last[s][1] for s in sorted(last)]


def imagenet_head(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (2048, 1000), bias (1000,)) of the ImageNet-1k classifier of a full ResNet-50."""
    kernel, bias = model.get_layer("predictions").get_weights()
    return kernel, bias

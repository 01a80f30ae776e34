"""ResNetV2 as in BiT, in Keras 3, reading Google's official .npz checkpoints.

Big Transfer [Kolesnikov et al., 2020] uses a pre-activation ResNet [He et al., 2016b,
"Identity Mappings in Deep Residual Networks"] in which batch norm is replaced by group norm
[Wu & He, 2018] (32 groups, eps 1e-5) and every convolution is weight-standardised
[Qiao et al., 2019]: its HWI-kernel is centred and scaled to unit variance before use
(``(w - mean) / sqrt(var + 1e-10)``, google-research/big_transfer ``bit_tf2/models.py``).
The layout follows that file and timm's ``resnetv2.py`` (``stem_type="fixed"``):

- root: zero-pad 3, 7x7 conv stride 2 (no bias), zero-pad 1, 3x3 max-pool stride 2 (valid);
  no norm, no ReLU (the first unit's pre-activation comes next);
- four blocks of bottleneck units: pre-activation ``GN -> ReLU`` shared by the residual branch
  and, in the first unit of a block, a 1x1 projection shortcut; branch 1x1 conv ->
  ``GN -> ReLU -> pad 1 -> 3x3 conv (stride here)`` -> ``GN -> ReLU -> 1x1 conv (x4 width)``;
  residual add without activation;
- final ``GN -> ReLU`` (layer ``post_relu``: the Grad-CAM layer), global average pool
  (``pre_logits``: the features), head (a 1x1 conv in the checkpoint, a Dense here).

Preprocessing is [-1, 1], as BiT's own fine-tuning code and timm's pretrained config
(``mean = std = 0.5``) use: ``Normalize((0.5,) * 3, (0.5,) * 3)`` in big_transfer
``bit_pytorch/train.py``. :func:`load_npz` reads Google's keys (``resnet/root_block/
standardized_conv2d/kernel``, ``resnet/block1/unit01/a/group_norm/gamma``, ...,
``resnet/head/conv2d/kernel``), validating every key and shape; :func:`to_npz_dict` writes
them back (the generated smoke stand-in, round-trip tests).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from .. import fileio

# Variants (BiT paper Sect. 3.1; bit_tf2 NUM_UNITS, filters_factor = 4 x width): R50x1 is a
# ResNet-50v2. ``testing`` is a tiny config for tests and the smoke profile, as in
# vit_jax/configs/models.py; it uses 8 groups because its narrowest layers have 16 channels.
VARIANTS: dict[str, dict] = {
    "testing": dict(num_units=(1, 1, 1, 1), width=16, num_groups=8),
    "R50x1": dict(num_units=(3, 4, 6, 3), width=64, num_groups=32),
}

GN_EPS = 1e-5  # group norm (bit_tf2 normalization.py, timm GroupNormAct)
WS_EPS = 1e-10  # weight standardisation (bit_tf2 StandardizedConv2D)
PREFIX = "resnet/"  # every key of Google's BiT checkpoints starts with it
GRADCAM_LAYER = "post_relu"


def preprocess(x):
    """uint8/float images in 0..255 -> the [-1, 1] range BiT checkpoints were trained on."""
    return ops.cast(x, "float32") / 127.5 - 1.0


@keras.saving.register_keras_serializable(package="vitwatch")
class StdConv2D(layers.Conv2D):
    """Conv2D whose kernel (kh, kw, C_in, C_out) is standardised over (kh, kw, C_in) first."""

    def __init__(self, *args, eps=WS_EPS, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}

    def convolution_op(self, inputs, kernel):
        mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)  # (1, 1, 1, O)
        var = ops.mean(ops.square(kernel - mean), axis=(0, 1, 2), keepdims=True)
        return super().convolution_op(inputs, (kernel - mean) / ops.sqrt(var + self.eps))


def _gn(name, groups):
    return layers.GroupNormalization(groups=groups, epsilon=GN_EPS, name=name)


def _conv(filters, size, name, stride=1):
    return StdConv2D(filters, size, strides=stride, padding="valid", use_bias=False, name=name)


def _unit(x, filters, stride, groups, name):
    """Pre-activation bottleneck unit: (B, h, w, C) -> (B, h/stride, w/stride, 4 * filters)."""
    preact = layers.ReLU(name=name + "_a_relu")(_gn(name + "_a_gn", groups)(x))
    shortcut = x
    if stride > 1 or x.shape[-1] != 4 * filters:  # projection on the pre-activation
        shortcut = _conv(4 * filters, 1, name + "_proj", stride)(preact)
    y = _conv(filters, 1, name + "_a_conv")(preact)  # (B, h, w, f)
    y = layers.ReLU(name=name + "_b_relu")(_gn(name + "_b_gn", groups)(y))
    y = layers.ZeroPadding2D(1, name=name + "_b_pad")(y)
    y = _conv(filters, 3, name + "_b_conv", stride)(y)  # (B, h/s, w/s, f)
    y = layers.ReLU(name=name + "_c_relu")(_gn(name + "_c_gn", groups)(y))
    y = _conv(4 * filters, 1, name + "_c_conv")(y)  # (B, h/s, w/s, 4f)
    return layers.Add(name=name + "_out")([y, shortcut])


def build(variant="R50x1", num_classes=1000, img_size=224, name=None) -> keras.Model:
    """A ResNetV2 of :data:`VARIANTS` (random weights; see :func:`load_npz`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ResNetV2 variant {variant!r}; known: {', '.join(VARIANTS)}")
    model = create(
        **VARIANTS[variant],
        num_classes=num_classes,
        img_size=img_size,
        name=name or "bit_" + variant.lower(),
    )
    model.bit_config["variant"] = variant
    return model


def create(
    num_units, width, num_groups, num_classes=1000, img_size=224, name="resnetv2"
) -> keras.Model:
    """A functional Keras ResNetV2: (B, S, S, 3) in [-1, 1] -> logits (B, K) or features.

    ``num_units``: units per block; ``width``: bottleneck width of block 1 (root width too;
    block b has ``width * 2**(b-1)`` and outputs 4x that); ``num_classes=0``: the pooled
    features (layer ``pre_logits``). Layers ``block{b}_out`` are the outputs of the blocks
    (CKA), ``post_relu`` the last activation map (Grad-CAM). The settings are kept as
    ``model.bit_config``.
    """
    if img_size < 32:
        raise ValueError(f"img_size={img_size} is too small for ResNetV2 (minimum 32)")
    groups = num_groups
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = layers.ZeroPadding2D(3, name="root_pad")(inputs)
    x = _conv(width, 7, "root_conv", stride=2)(x)  # (B, S/2, S/2, w)
    x = layers.ZeroPadding2D(1, name="root_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="root_pool")(x)  # (B, S/4, ..)
    for b, units in enumerate(num_units, start=1):
        filters = width * 2 ** (b - 1)
        for u in range(1, units + 1):
            stride = 2 if (b > 1 and u == 1) else 1
            x = _unit(x, filters, stride, groups, f"block{b}_unit{u:02d}")
        x = layers.Identity(name=f"block{b}_out")(x)  # (B, h, w, 4f)
    x = layers.ReLU(name=GRADCAM_LAYER)(_gn("post_gn", groups)(x))  # (B, h, w, C)
    x = layers.GlobalAveragePooling2D(name="pre_logits")(x)  # (B, C)
    if num_classes:
        x = layers.Dense(num_classes, kernel_initializer="zeros", name="head")(x)  # (B, K)
    model = keras.Model(inputs, x, name=name)
    model.bit_config = dict(
        num_units=tuple(num_units),
        width=width,
        num_groups=num_groups,
        num_classes=num_classes,
        img_size=img_size,
    )
    return model


def stage_names(model) -> list[str]:
    """Names of the four block outputs (B, h, w, C) compared by CKA."""
    return [
        layer.name
        for layer in model.layers
        if layer.name.endswith("_out")
        and layer.name.startswith("block")
        and "_unit" not in layer.name
    ]


def gmacs(num_units, width, img_size=224, num_classes=0, **_) -> float:
    """Multiply-accumulates of one forward pass in billions (convolutions and head).

    R50x1 at 224 px gives 4.09 (timm lists 4.3 for resnetv2_50x1_bit, which also counts
    norms and activations; ResNet-50 v1 is 3.86 in the same convention as this count).
    """
    s = (img_size + 6 - 7) // 2 + 1  # root conv, pad 3
    macs = s * s * 7 * 7 * 3 * width
    s = (s + 2 - 3) // 2 + 1  # max-pool, pad 1
    c = width
    for b, units in enumerate(num_units, start=1):
        f = width * 2 ** (b - 1)
        for u in range(1, units + 1):
            stride = 2 if (b > 1 and u == 1) else 1
            out = (s + 2 - 3) // stride + 1
            macs += s * s * c * f  # a: 1x1
            macs += out * out * 9 * f * f  # b: 3x3, stride
            macs += out * out * f * 4 * f  # c: 1x1
            if stride > 1 or c != 4 * f:
                macs += out * out * c * 4 * f  # projection
            s, c = out, 4 * f
    return (macs + c * num_classes) / 1e9


# --- Google's .npz checkpoint layout --------------------------------------------------------


def _google_key(layer_name: str) -> str:
    """Our layer name -> Google's key prefix (without ``resnet/``).

    root_conv -> root_block/standardized_conv2d; block1_unit01_a_gn -> block1/unit01/a/
    group_norm; block1_unit01_proj -> block1/unit01/a/proj/standardized_conv2d; post_gn ->
    group_norm; head -> head/conv2d.
    """
    if layer_name == "root_conv":
        return "root_block/standardized_conv2d"
    if layer_name == "post_gn":
        return "group_norm"
    if layer_name == "head":
        return "head/conv2d"
    block, unit, part = layer_name.split("_")[:3]
    if part == "proj":
        return f"{block}/{unit}/a/proj/standardized_conv2d"
    kind = layer_name.split("_")[3]
    return f"{block}/{unit}/{part}/" + ("group_norm" if kind == "gn" else "standardized_conv2d")


def _weighted_layers(model):
    return [
        layer
        for layer in model.layers
        if isinstance(layer, (StdConv2D, layers.GroupNormalization, layers.Dense))
    ]


def expected_shapes(model) -> dict[str, tuple]:
    """Every key (with ``resnet/``) the model needs from a checkpoint, and its shape."""
    shapes = {}
    for layer in _weighted_layers(model):
        key = PREFIX + _google_key(layer.name)
        if isinstance(layer, StdConv2D):
            shapes[key + "/kernel"] = tuple(layer.kernel.shape)  # (kh, kw, I, O)
        elif isinstance(layer, layers.GroupNormalization):
            shapes[key + "/gamma"] = tuple(layer.gamma.shape)  # (C,)
            shapes[key + "/beta"] = tuple(layer.beta.shape)
        else:
            C, K = layer.kernel.shape
            shapes[key + "/kernel"] = (1, 1, C, K)  # 1x1 conv head
            shapes[key + "/bias"] = (K,)
    return shapes


def load_npz(model: keras.Model, path) -> keras.Model:
    """Load a Google-layout BiT .npz into ``model``; validate keys and shapes; return it.

    A headless model (``num_classes=0``) ignores the checkpoint's head; any other key the
    model has no layer for is an error, as is a missing key or a shape that does not fit
    (the message names the file and the first offending key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BiT checkpoint not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            w = {k: f[k] for k in f.files}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .npz checkpoint ({exc})") from None
    expected = expected_shapes(model)
    for key, shape in expected.items():
        if key not in w:
            raise ValueError(
                f"{path}: missing key {key!r} (expected shape {shape}) for "
                f"{model.name}; is it a checkpoint of another variant?"
            )
        if tuple(w[key].shape) != tuple(shape):
            raise ValueError(
                f"{path}: key {key!r} has shape {tuple(w[key].shape)}, "
                f"{model.name} expects {tuple(shape)}"
            )
    extra = sorted(k for k in w if k not in expected and not k.startswith(PREFIX + "head/"))
    if extra:
        raise ValueError(f"{path}: keys this ResNetV2 has no layer for: {', '.join(extra[:5])}")

    def get(key):
        return np.asarray(w[key], dtype="float32")

    for layer in _weighted_layers(model):
        key = PREFIX + _google_key(layer.name)
        if isinstance(layer, StdConv2D):
            layer.set_weights([get(key + "/kernel")])
        elif isinstance(layer, layers.GroupNormalization):
            layer.set_weights([get(key + "/gamma"), get(key + "/beta")])
        else:
            kernel = get(key + "/kernel")
            layer.set_weights([kernel.reshape(kernel.shape[2:]), get(key + "/bias")])
    return model


def read_head(path, num_classes: int = 1000) -> tuple[np.ndarray, np.ndarray] | None:
    """(kernel (C, K), bias (K,)) of a checkpoint's head if it has ``num_classes`` outputs."""
    with np.load(path) as f:
        key = PREFIX + "head/conv2d/"
        if key + "kernel" not in f.files:
            return None
        kernel, bias = f[key + "kernel"], f[key + "bias"]
    if kernel.shape[-1] != num_classes:
        return None
    return kernel.reshape(kernel.shape[2:]).astype("float32"), bias.astype("float32")


def to_npz_dict(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's weights in Google's key layout (inverse of :func:`load_npz`)."""
    w = {}
    for layer in _weighted_layers(model):
        key = PREFIX + _google_key(layer.name)
        values = [np.asarray(v, dtype="float32") for v in layer.get_weights()]
        if isinstance(layer, StdConv2D):
            w[key + "/kernel"] = values[0]
        elif isinstance(layer, layers.GroupNormalization):
            w[key + "/gamma"], w[key + "/beta"] = values
        else:
            w[key + "/kernel"] = values[0][None, None]  # (1, 1, C, K)
            w[key + "/bias"] = values[1]
    return w


def save_npz(model: keras.Model, path) -> Path:
    """Write the model in Google's .npz layout (atomically: a temp file, then a rename)."""
    return fileio.save_npz(path, **to_npz_dict(model))

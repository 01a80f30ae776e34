"""Small models trained from scratch in notebook 05: a ViT, data-efficient ViTs, a ResNet.

- ``vit``: the Vision Transformer of [Dosovitskiy et al., 2021] in miniature: non-overlapping
  patch embedding, a class token, learned 1-D position embeddings, pre-norm Transformer blocks
  (LayerNorm -> multi-head self-attention -> residual, LayerNorm -> GELU MLP -> residual), a
  final LayerNorm and a linear head on the class token.
- ``vit_spt_lsa``: the same ViT with the two changes of [Lee et al., 2021] ("Vision Transformer
  for Small-Size Datasets"): *shifted patch tokenization* (the image and four copies shifted by
  half a patch along the diagonals are concatenated on channels before patching, so each token
  sees a wider, overlapping neighbourhood) and *locality self-attention* (a learnable softmax
  temperature, and the diagonal of the attention logits masked so a token cannot attend to
  itself, which sharpens attention on the other tokens).
- ``vit_small_patch``: the plain ViT with patches half as wide (four times more tokens).
- ``resnet``: the CIFAR ResNet of [He et al., 2016] (section 4.2): a 3x3 stem, three stages of
  basic residual blocks (widths w, 2w, 4w; strides 1, 2, 2), global average pooling, a linear
  head. It carries the CNN's inductive biases: locality and translation equivariance.

Sizes live in :data:`SCALES`, one entry per dataset, chosen so that the ViT and the ResNet have
comparable parameters and multiply-accumulates (``tests/test_small.py`` pins them).
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import keras
from keras import layers, ops

ARCHS = ("resnet", "vit", "vit_spt_lsa", "vit_small_patch")
LABELS = {
    "resnet": "ResNet (CNN)",
    "vit": "ViT",
    "vit_spt_lsa": "ViT + SPT + LSA",
    "vit_small_patch": "ViT, half-size patches",
}

# One hyperparameter vocabulary (img_size, patch_size, embed_dim, depth, num_heads, mlp_dim);
# the ResNet has `width` (channels of the first stage) and `blocks` (basic blocks per stage).
SCALES = {
    # 8x8 grey digits: 16 patches of 2x2 (ViT) vs a 3-stage ResNet at widths 14/28/56.
    "digits": {
        "vit": dict(patch_size=2, embed_dim=48, depth=3, num_heads=3, mlp_dim=96),
        "resnet": dict(width=14, blocks=1),
    },
    # 32x32 colour CIFAR-10: 64 patches of 4x4 vs ResNet-20-like at widths 24/48/96.
    "cifar10": {
        "vit": dict(patch_size=4, embed_dim=128, depth=6, num_heads=4, mlp_dim=256),
        "resnet": dict(width=24, blocks=3),
    },
}


def hyperparameters(arch: str, scale: str) -> dict:
    """The hyperparameters of ``arch`` at ``scale`` (a key of :data:`SCALES`)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown small model {arch!r}; choose among {ARCHS}")
    if scale not in SCALES:
        raise ValueError(f"unknown model scale {scale!r}; choose among {tuple(SCALES)}")
    if arch == "resnet":
        return dict(SCALES[scale]["resnet"])
    hp = dict(SCALES[scale]["vit"])
    hp["spt"] = hp["lsa"] = arch == "vit_spt_lsa"
    if arch == "vit_small_patch":
        hp["patch_size"] = max(1, hp["patch_size"] // 2)
    return hp


# --- ViT ------------------------------------------------------------------------------------


# Inside ``convs_as_matmuls()`` every convolution of these models is computed as one matmul
# of its input's shifted copies (im2col), the same numbers: ``tf.vectorized_map`` can then train
# several runs' stacked weights at once (it cannot batch a convolution's filter).
_CONVS_AS_MATMULS = contextvars.ContextVar("convs_as_matmuls", default=False)


@contextlib.contextmanager
def convs_as_matmuls():
    """While tracing inside this block, :class:`Conv2D` layers compute as matmuls."""
    token = _CONVS_AS_MATMULS.set(True)
    try:
        yield
    finally:
        _CONVS_AS_MATMULS.reset(token)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2D(layers.Conv2D):
    """Keras' Conv2D, computed as a matmul of shifted copies inside :func:`convs_as_matmuls`
    (no dilation or groups; "same" or "valid" padding)."""

    def call(self, x):  # (B, H, W, C)
        if not _CONVS_AS_MATMULS.get():
            return super().call(x)
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        _, h, w, c = x.shape
        if self.padding == "same":
            pads = (_same_padding(h, kh, sh), _same_padding(w, kw, sw))
            x = ops.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
            h, w = h + sum(pads[0]), w + sum(pads[1])
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        taps = [
            x[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :]
            for i in range(kh)
            for j in range(kw)
        ]  # kh * kw of (B, oh, ow, C), in the kernel's (row, column) order
        x = taps[0] if len(taps) == 1 else ops.concatenate(taps, axis=-1)  # (B, oh, ow, kh*kw*C)
        y = ops.matmul(x, ops.reshape(self.kernel, (kh * kw * c, self.filters)))
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)


class PatchEmbedding(layers.Layer):
    """Image -> tokens: a p x p convolution of stride p is a linear map of each patch."""

    def __init__(self, patch_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.proj = Conv2D(embed_dim, patch_size, strides=patch_size, name="proj")

    def call(self, x):  # (B, H, W, C)
        x = self.proj(x)  # (B, H/p, W/p, D)
        return ops.reshape(x, (-1, x.shape[1] * x.shape[2], x.shape[3]))  # (B, N, D)


class ShiftedPatchTokenization(layers.Layer):
    """SPT [Lee et al., 2021]: concat the image and 4 diagonal half-patch shifts, then patch,
    flatten, LayerNorm and project. Shifted-in pixels are zeros."""

    def __init__(self, patch_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.shift = max(1, patch_size // 2)
        self.norm = layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.proj = layers.Dense(embed_dim, name="proj")

    def _shifted(self, x, dy, dx):
        s = self.shift
        h, w = x.shape[1], x.shape[2]
        x = ops.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))  # (B, H+2s, W+2s, C)
        return x[:, s + dy : s + dy + h, s + dx : s + dx + w, :]  # (B, H, W, C)

    def call(self, x):  # (B, H, W, C)
        s = self.shift
        views = [x] + [self._shifted(x, dy, dx) for dy, dx in ((-s, -s), (-s, s), (s, -s), (s, s))]
        x = ops.concatenate(views, axis=-1)  # (B, H, W, 5C)
        p = self.patch_size
        _, h, w, c = x.shape
        x = ops.reshape(x, (-1, h // p, p, w // p, p, c))  # (B, H/p, p, W/p, p, 5C)
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        x = ops.reshape(x, (-1, (h // p) * (w // p), p * p * c))  # (B, N, p*p*5C)
        return self.proj(self.norm(x))  # (B, N, D)


class Attention(layers.Layer):
    """Multi-head self-attention; ``locality=True`` gives LSA [Lee et al., 2021]."""

    def __init__(self, embed_dim, num_heads, locality=False, **kwargs):
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.locality = locality
        self.qkv = layers.Dense(3 * embed_dim, name="qkv")
        self.out = layers.Dense(embed_dim, name="out")

    def build(self, input_shape):
        # LSA learns the softmax temperature; plain attention keeps 1/sqrt(head_dim).
        init = keras.initializers.Constant(self.head_dim**-0.5)
        self.scale = self.add_weight(
            shape=(), initializer=init, name="scale", trainable=self.locality
        )

    def call(self, x):  # (B, N, C)
        n, c = x.shape[1], x.shape[2]
        qkv = ops.reshape(self.qkv(x), (-1, n, 3, self.num_heads, self.head_dim))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, H, N, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * self.scale  # (B, H, N, N)
        logits = ops.cast(logits, "float32")  # softmax in float32 (no-op in float32)
        if self.locality:  # a token may not attend to itself
            logits = logits - 1e9 * ops.eye(n, dtype=logits.dtype)
        attn = ops.cast(ops.softmax(logits, axis=-1), v.dtype)  # (B, H, N, N)
        y = ops.matmul(attn, v)  # (B, H, N, hd)
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (-1, n, c))  # (B, N, C)
        return self.out(y), attn


class Block(layers.Layer):
    """Pre-norm Transformer encoder block; returns the tokens and the attention."""

    def __init__(self, embed_dim, num_heads, mlp_dim, locality=False, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.norm1 = layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attn = Attention(embed_dim, num_heads, locality, name="attn")
        self.norm2 = layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.fc1 = layers.Dense(mlp_dim, name="fc1")
        self.fc2 = layers.Dense(embed_dim, name="fc2")
        self.drop = layers.Dropout(dropout)

    def call(self, x, training=False):  # (B, N, C)
        y, attn = self.attn(self.norm1(x))
        x = x + self.drop(y, training=training)
        y = self.fc2(keras.activations.gelu(self.fc1(self.norm2(x)), approximate=False))
        return x + self.drop(y, training=training), attn


class SmallViT(keras.Model):
    """A small ViT; ``model(x)`` -> logits, ``model.forward(x)`` -> dict with attention."""

    def __init__(
        self,
        img_size,
        channels,
        num_classes,
        patch_size,
        embed_dim,
        depth,
        num_heads,
        mlp_dim,
        spt=False,
        lsa=False,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} must be a multiple of patch_size={patch_size}")
        self.config = dict(
            img_size=img_size,
            channels=channels,
            num_classes=num_classes,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_dim=mlp_dim,
            spt=spt,
            lsa=lsa,
            dropout=dropout,
        )
        self.num_patches = (img_size // patch_size) ** 2
        embed = ShiftedPatchTokenization if spt else PatchEmbedding
        self.embed = embed(patch_size, embed_dim, name="embedding")
        self.blocks = [
            Block(embed_dim, num_heads, mlp_dim, lsa, dropout, name=f"block_{i}")
            for i in range(depth)
        ]
        self.norm = layers.LayerNormalization(epsilon=1e-6, name="encoder_norm")
        self.head = layers.Dense(num_classes, name="head")

    def build(self, input_shape):
        d = self.config["embed_dim"]
        self.cls = self.add_weight(shape=(1, 1, d), initializer="zeros", name="cls")
        self.pos = self.add_weight(
            shape=(1, self.num_patches + 1, d),
            name="pos_embedding",
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        super().build(input_shape)

    def forward(self, x, training=False) -> dict:
        tokens = self.embed(x)  # (B, N, C)
        cls = ops.broadcast_to(self.cls, (ops.shape(tokens)[0], 1, tokens.shape[-1]))
        tokens = ops.concatenate([cls, tokens], axis=1) + self.pos  # (B, N+1, C)
        attention = []
        for block in self.blocks:
            tokens, attn = block(tokens, training=training)  # attn (B, H, N+1, N+1)
            attention.append(attn)
        tokens = self.norm(tokens)
        features = tokens[:, 0]  # (B, C)
        return {
            "features": features,
            "logits": self.head(features),
            "attention": attention,
            "tokens": tokens,
        }

    def call(self, x, training=False):
        return self.forward(x, training=training)["logits"]  # (B, K)


# --- ResNet ---------------------------------------------------------------------------------


def _conv_bn(x, filters, kernel, stride, name, relu=True):
    x = Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    # momentum 0.9 (not Keras' 0.99): runs of a few hundred steps must end with settled
    # moving statistics, or inference-mode accuracy lags the training-mode one
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, stride, name):
    shortcut = x
    y = _conv_bn(x, filters, 3, stride, f"{name}_1")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    if stride != 1 or x.shape[-1] != filters:  # projection shortcut (option B)
        shortcut = _conv_bn(x, filters, 1, stride, f"{name}_proj", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def SmallResNet(img_size, channels, num_classes, width, blocks, name="resnet") -> keras.Model:
    """CIFAR ResNet [He et al., 2016]: 3 stages x ``blocks`` basic blocks, widths w, 2w, 4w."""
    inputs = keras.Input((img_size, img_size, channels))  # (B, H, W, C)
    x = _conv_bn(inputs, width, 3, 1, "stem")
    for stage, mult in enumerate((1, 2, 4)):
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            x = _basic_block(x, width * mult, stride, f"stage{stage + 1}_block{b + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)  # (B, 4w)
    return keras.Model(inputs, layers.Dense(num_classes, name="head")(x), name=name)


# --- building and counting ------------------------------------------------------------------


def build(
    arch: str, scale: str, img_size: int, channels: int, num_classes: int, dtype: str = "float32"
) -> keras.Model:
    """A built model of ``arch`` (see :data:`ARCHS`) at ``scale`` for the given input.

    ``dtype``: the Keras dtype policy of every layer, e.g. ``"mixed_bfloat16"`` (bfloat16
    compute, float32 weights; the attention softmax stays in float32). It is Keras' global
    policy only while the layers are made, then the previous one again."""
    hp = hyperparameters(arch, scale)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        if arch == "resnet":
            return SmallResNet(img_size, channels, num_classes, **hp)
        model = SmallViT(img_size, channels, num_classes, name=arch, **hp)
        model.build((None, img_size, img_size, channels))
        model(ops.zeros((1, img_size, img_size, channels)))  # create every sub-layer's weights
        return model
    finally:
        keras.config.set_dtype_policy(previous)


def count_params(model: keras.Model) -> int:
    return int(sum(math.prod(w.shape) for w in model.weights if w.trainable))


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass on one image.

    Counted: convolutions, dense layers and the two attention matmuls (QK^T and AV).
    Not counted: normalisation, activations, softmax, additions (a few percent at most).
    """
    if isinstance(model, SmallViT):
        c = model.config
        n = model.num_patches
        t, d, m, p = n + 1, c["embed_dim"], c["mlp_dim"], c["patch_size"]
        patch_in = p * p * c["channels"] * (5 if c["spt"] else 1)
        block = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * m
        return n * patch_in * d + c["depth"] * block + d * c["num_classes"]
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):  # ours included
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            macs += h * w * kh * kw * layer.input.shape[-1] * cout
        elif isinstance(layer, layers.Dense):
            macs += layer.input.shape[-1] * layer.units
    return int(macs)

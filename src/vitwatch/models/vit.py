"""A readable Vision Transformer in Keras 3 that returns its attention and reads Google's .npz.

Follows google-research/vision_transformer (`vit_jax/models_vit.py`) and the paper
[Dosovitskiy et al., 2021]: an image is cut into patch_size x patch_size patches by a strided
convolution, a learned class token is prepended, learned 1-D position embeddings are added, and
`depth` pre-norm encoder blocks (LayerNorm eps 1e-6 -> multi-head self-attention -> residual,
LayerNorm -> MLP with GELU -> residual) are followed by a final LayerNorm and a linear head on
the class token. ViT-S comes from [Steiner et al., 2022] (AugReg).

The GELU is the tanh approximation, the function Google's checkpoints were trained with and
that the TF Hub SavedModels (jax2tf exports) compute: `MlpBlock` in `vit_jax/models_vit.py`
calls ``flax.linen.gelu``, which `flax/linen/activation.py` re-exports from ``jax.nn``, whose
``gelu(x, approximate=True)`` defaults to tanh (`jax/_src/nn/functions.py`). timm's port uses
the exact erf GELU instead; on random weights scaled up the two differ by ~1e-2 in the
features (tests/test_vit.py). ``approximate_gelu=False`` gives the exact erf form.

Two ways to run the same weights:
- ``model(x)`` is the fast path (one fused query/key/value matmul, no attention kept; run it
  compiled with ``predict_on_batch`` or :func:`compiled_forward`); it returns logits, or the
  class-token features when ``num_classes=0``.
- ``model.forward(x)`` also returns every block's attention probabilities ``(B, H, N, N)``
  and the final tokens, for the analyses of notebook 04.

Checkpoints: :func:`load_npz` reads Google's key layout (REFERENCE.md), validating every key
and shape and resampling position embeddings to another resolution the way
`vit_jax/checkpoint.py` does (bilinear on the patch grid, class token kept);
:func:`save_npz` writes the same layout.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from .. import fileio

# Variants: ViT paper Table 1 (B) and AugReg (S); `testing` is a tiny config for tests and the
# smoke profile (fast at img_size 64, 8x8 = 64 patches), as in vit_jax/configs/models.py.
VARIANTS: dict[str, dict[str, int]] = {
    "testing": dict(patch_size=8, embed_dim=64, depth=4, num_heads=4, mlp_dim=128),
    "S/16": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_dim=1536),
    "B/16": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_dim=3072),
}

LN_EPS = 1e-6


def preprocess(x):
    """uint8/float images in 0..255 -> the [-1, 1] range ViT checkpoints were trained on."""
    return ops.cast(x, "float32") / 127.5 - 1.0


def gelu(x, approximate=True):
    """GELU. ``approximate=True`` (default, as ``flax.linen.gelu`` in Google's checkpoints):
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); ``False``: the exact x * Phi(x)."""
    return ops.gelu(x, approximate=approximate)


@keras.saving.register_keras_serializable(package="vitwatch")
class MultiHeadSelfAttention(layers.Layer):
    """Self-attention with one fused (C -> 3C) query/key/value projection.

    The probabilities softmax(q k^T / sqrt(D)) are computed explicitly, so they can be returned;
    when they are not asked for, XLA fuses them away with the rest of the block.
    """

    def __init__(self, embed_dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.qkv = layers.Dense(3 * embed_dim, name="qkv")
        self.out = layers.Dense(embed_dim, name="out")

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "num_heads": self.num_heads}

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.out.build(input_shape[:-1] + (self.embed_dim,))

    def call(self, x, return_attention=False):
        B, N = ops.shape(x)[0], ops.shape(x)[1]
        H, D = self.num_heads, self.head_dim
        qkv = ops.reshape(self.qkv(x), (B, N, 3, H, D))  # (B, N, 3, H, D)
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, H, N, D)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, N, D) each
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (B, H, N, N)
        attn = ops.softmax(scores / math.sqrt(D), axis=-1)  # (B, H, N, N), rows sum to 1
        y = ops.matmul(attn, v)  # (B, H, N, D)
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (B, N, H * D))  # (B, N, C)
        y = self.out(y)
        return (y, attn) if return_attention else y


@keras.saving.register_keras_serializable(package="vitwatch")
class EncoderBlock(layers.Layer):
    """Pre-norm Transformer block: x + MSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, embed_dim, num_heads, mlp_dim, approximate_gelu=True, **kwargs):
        super().__init__(**kwargs)
        self.approximate_gelu = bool(approximate_gelu)
        self.norm1 = layers.LayerNormalization(epsilon=LN_EPS, name="norm1")
        self.attn = MultiHeadSelfAttention(embed_dim, num_heads, name="attn")
        self.norm2 = layers.LayerNormalization(epsilon=LN_EPS, name="norm2")
        self.fc1 = layers.Dense(mlp_dim, name="fc1")
        self.fc2 = layers.Dense(embed_dim, name="fc2")
        self.embed_dim, self.num_heads, self.mlp_dim = embed_dim, num_heads, mlp_dim

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "approximate_gelu": self.approximate_gelu,
        }

    def build(self, input_shape):
        for layer in (self.norm1, self.attn, self.norm2, self.fc1):
            layer.build(input_shape)
        self.fc2.build(input_shape[:-1] + (self.mlp_dim,))

    def call(self, x, return_attention=False):
        y = self.attn(self.norm1(x), return_attention=return_attention)
        y, attn = y if return_attention else (y, None)
        x = x + y  # (B, N, C)
        h = gelu(self.fc1(self.norm2(x)), self.approximate_gelu)  # (B, N, M)
        x = x + self.fc2(h)  # (B, N, C)
        return (x, attn) if return_attention else x


@keras.saving.register_keras_serializable(package="vitwatch")
class VisionTransformer(keras.Model):
    """ViT classifier (``num_classes > 0``) or feature extractor (``num_classes = 0``).

    ``approximate_gelu=True`` (the default) is the tanh GELU of Google's checkpoints; set it to
    False only for weights trained with the exact erf GELU (timm's ports, for instance).
    """

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        embed_dim=384,
        depth=12,
        num_heads=6,
        mlp_dim=1536,
        num_classes=1000,
        approximate_gelu=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.approximate_gelu = bool(approximate_gelu)
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} is not a multiple of patch_size={patch_size}")
        self.img_size, self.patch_size, self.embed_dim = img_size, patch_size, embed_dim
        self.depth, self.num_heads, self.mlp_dim = depth, num_heads, mlp_dim
        self.num_classes = num_classes
        self.grid_size = img_size // patch_size
        self.num_tokens = self.grid_size**2 + 1  # patches + class token
        self.patch_embed = layers.Conv2D(
            embed_dim, patch_size, strides=patch_size, padding="valid", name="embedding"
        )
        self.blocks = [
            EncoderBlock(embed_dim, num_heads, mlp_dim, self.approximate_gelu, name=f"block_{i}")
            for i in range(depth)
        ]
        self.norm = layers.LayerNormalization(epsilon=LN_EPS, name="encoder_norm")
        self.head = (
            layers.Dense(num_classes, kernel_initializer="zeros", name="head")
            if num_classes
            else None
        )
        self.build((None, img_size, img_size, 3))

    def build(self, input_shape):
        C = self.embed_dim
        self.cls_token = self.add_weight(shape=(1, 1, C), initializer="zeros", name="cls")
        self.pos_embed = self.add_weight(
            shape=(1, self.num_tokens, C),
            name="pos_embedding",
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )
        self.patch_embed.build(input_shape)
        for block in self.blocks:
            block.build((None, self.num_tokens, C))
        self.norm.build((None, C))
        if self.head is not None:
            self.head.build((None, C))
        self.built = True

    def get_config(self):
        return dict(
            img_size=self.img_size,
            patch_size=self.patch_size,
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            num_classes=self.num_classes,
            approximate_gelu=self.approximate_gelu,
            name=self.name,
        )

    def embed(self, x):
        """Images (B, S, S, 3) in [-1, 1] -> tokens (B, N, C) with class token and positions."""
        if x.shape[1] is not None and (x.shape[1], x.shape[2]) != (self.img_size,) * 2:
            raise ValueError(
                f"{self.name} expects {self.img_size}x{self.img_size} images, got "
                f"{x.shape[1]}x{x.shape[2]} (build it with img_size={x.shape[1]})"
            )
        B = ops.shape(x)[0]
        x = self.patch_embed(x)  # (B, S/P, S/P, C)
        x = ops.reshape(x, (B, -1, self.embed_dim))  # (B, N-1, C), row-major patches
        cls = ops.broadcast_to(self.cls_token, (B, 1, self.embed_dim))  # (B, 1, C)
        x = ops.concatenate([ops.cast(cls, x.dtype), x], axis=1)  # (B, N, C)
        return x + self.pos_embed

    def call(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)  # (B, N, C)
        features = self.norm(x[:, 0])  # (B, C) class token
        return self.head(features) if self.head is not None else features

    def forward(self, x):
        """Everything the analyses need: dict of features (B, C), logits (B, K) or None,
        attention (list of (B, H, N, N), one per block) and tokens (B, N, C, after the norm)."""
        x = self.embed(ops.convert_to_tensor(x, "float32"))
        attention = []
        for block in self.blocks:
            x, attn = block(x, return_attention=True)  # (B, N, C), (B, H, N, N)
            attention.append(attn)
        tokens = self.norm(x)  # (B, N, C)
        features = tokens[:, 0]  # (B, C)
        logits = self.head(features) if self.head is not None else None
        return dict(features=features, logits=logits, attention=attention, tokens=tokens)


def build(variant="S/16", num_classes=1000, img_size=224, name=None, approximate_gelu=True):
    """A ViT of one of :data:`VARIANTS` (random weights; see :func:`load_npz`), with the tanh
    GELU of Google's checkpoints unless ``approximate_gelu=False``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ViT variant {variant!r}; known: {', '.join(VARIANTS)}")
    name = name or "vit_" + variant.replace("/", "").lower()
    return VisionTransformer(
        img_size=img_size,
        num_classes=num_classes,
        name=name,
        approximate_gelu=approximate_gelu,
        **VARIANTS[variant],
    )


def with_gelu(model: VisionTransformer, approximate: bool) -> VisionTransformer:
    """A copy of ``model``, same weights, computing the given GELU form (tanh if
    ``approximate``, else exact erf). Notebook 03 uses it to tell whether a disagreement with
    another route to the same checkpoint is the activation or something else."""
    twin = VisionTransformer.from_config({**model.get_config(), "approximate_gelu": approximate})
    twin.set_weights(model.get_weights())
    return twin


def gmacs(patch_size, embed_dim, depth, mlp_dim, img_size=224, num_classes=0, **_) -> float:
    """Multiply-accumulates of one image's forward pass, in billions (1 MAC = 2 FLOPs).

    Counts the matmuls (patch embedding, q/k/v, q k^T, attention x v, output projection, MLP,
    head), which is what published figures count: S/16 at 224 px gives 4.60 (published 4.61).
    Usage: ``gmacs(**VARIANTS["S/16"], img_size=224)``.
    """
    N, C, M = (img_size // patch_size) ** 2 + 1, embed_dim, mlp_dim
    patches = (N - 1) * patch_size**2 * 3 * C
    block = N * C * 3 * C + 2 * N * N * C + N * C * C + 2 * N * C * M
    return (patches + depth * block + C * num_classes) / 1e9


def compiled_forward(model, jit_compile=None, attention=False):
    """``model(x)`` (or ``model.forward(x)`` with ``attention=True``) as a tf.function.

    ``jit_compile=None`` picks what measures fastest on this machine for the first batch shape
    it gets (TF graph or XLA, :func:`vitwatch.fastpath.auto_function`; the choice is
    remembered in the cache, so it is measured once per machine, TF version and shape).
    """
    import tensorflow as tf

    def logits_or_features(x):
        return model(x, training=False)

    def everything(x):
        return model.forward(x)

    fn = everything if attention else logits_or_features
    if jit_compile is None:
        from vitwatch import fastpath

        return fastpath.auto_function(
            fn, f"{type(model).__name__}:{model.name}" + (":attention" if attention else "")
        )
    return tf.function(fn, jit_compile=jit_compile)


# --- Google's .npz checkpoint layout ------------------------------------------------------

_B = "Transformer/encoderblock_{i}/"
_ATT = _B + "MultiHeadDotProductAttention_1/"
_MLP = _B + "MlpBlock_3/"


def _expected_shapes(model) -> dict[str, tuple]:
    C, H, D, M = model.embed_dim, model.num_heads, model.embed_dim // model.num_heads, model.mlp_dim
    P = model.patch_size
    shapes = {
        "embedding/kernel": (P, P, 3, C),
        "embedding/bias": (C,),
        "cls": (1, 1, C),
        "Transformer/posembed_input/pos_embedding": (1, model.num_tokens, C),
        "Transformer/encoder_norm/scale": (C,),
        "Transformer/encoder_norm/bias": (C,),
    }
    for i in range(model.depth):
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            shapes[_B.format(i=i) + ln + "/scale"] = (C,)
            shapes[_B.format(i=i) + ln + "/bias"] = (C,)
        for part in ("query", "key", "value"):
            shapes[_ATT.format(i=i) + part + "/kernel"] = (C, H, D)
            shapes[_ATT.format(i=i) + part + "/bias"] = (H, D)
        shapes[_ATT.format(i=i) + "out/kernel"] = (H, D, C)
        shapes[_ATT.format(i=i) + "out/bias"] = (C,)
        shapes[_MLP.format(i=i) + "Dense_0/kernel"] = (C, M)
        shapes[_MLP.format(i=i) + "Dense_0/bias"] = (M,)
        shapes[_MLP.format(i=i) + "Dense_1/kernel"] = (M, C)
        shapes[_MLP.format(i=i) + "Dense_1/bias"] = (C,)
    if model.head is not None:
        shapes["head/kernel"] = (C, model.num_classes)
        shapes["head/bias"] = (model.num_classes,)
    return shapes


def resample_pos_embed(posemb: np.ndarray, num_tokens: int) -> np.ndarray:
    """(1, 1 + g*g, C) -> (1, num_tokens, C): bilinear zoom of the grid, class token kept.

    As `vit_jax/checkpoint.py` (scipy.ndimage.zoom, order=1), used to fine-tune or evaluate a
    checkpoint at another resolution than it was trained at.
    """
    import scipy.ndimage

    tok, grid = posemb[:, :1], posemb[0, 1:]  # (1, 1, C), (g*g, C)
    gs_old, gs_new = math.isqrt(len(grid)), math.isqrt(num_tokens - 1)
    if gs_old**2 != len(grid) or gs_new**2 != num_tokens - 1:
        raise ValueError(
            f"position embeddings of {posemb.shape[1]} tokens cannot be resampled "
            f"to {num_tokens}: both grids must be square"
        )
    grid = grid.reshape(gs_old, gs_old, -1)  # (g, g, C)
    zoom = (gs_new / gs_old, gs_new / gs_old, 1)
    grid = scipy.ndimage.zoom(grid, zoom, order=1)  # (g', g', C)
    return np.concatenate([tok, grid.reshape(1, gs_new * gs_new, -1)], axis=1)


def load_npz(model: VisionTransformer, path) -> VisionTransformer:
    """Load a Google-layout .npz into ``model``; validate keys and shapes; return the model.

    The position embeddings are resampled when the checkpoint was trained at another
    resolution. ``num_classes=0`` models ignore the checkpoint's head; a head of another size
    is an error naming the key. Unused extra keys are an error too, because silently ignoring
    a layer would change the outputs (a headless model ignores ``pre_logits``, which only feeds
    the head).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ViT checkpoint not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files}
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .npz checkpoint ({exc})") from None
    prefix = "opt/target/" if "opt/target/embedding/kernel" in raw else ""
    w = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}

    expected = _expected_shapes(model)
    pos_key = "Transformer/posembed_input/pos_embedding"
    for key, shape in expected.items():
        if key not in w:
            raise ValueError(
                f"{path}: missing key {key!r} (expected shape {shape}) for "
                f"{model.name}; is it a checkpoint of another variant?"
            )
        if key == pos_key and w[key].shape != shape and w[key].shape[-1] == shape[-1]:
            w[key] = resample_pos_embed(w[key], shape[1])
        if tuple(w[key].shape) != tuple(shape):
            raise ValueError(
                f"{path}: key {key!r} has shape {tuple(w[key].shape)}, "
                f"{model.name} expects {tuple(shape)}"
            )
    # A headless model stops at the class-token features: the head and any pre-logits layer
    # (ImageNet-21k checkpoints of the original paper have one) come after them.
    after_features = ("head/",) if model.head is not None else ("head/", "pre_logits/")
    extra = sorted(k for k in w if k not in expected and not k.startswith(after_features))
    if extra:
        raise ValueError(f"{path}: keys this ViT has no layer for: {', '.join(extra[:5])}")

    def get(key):
        return np.asarray(w[key], dtype="float32")

    C = model.embed_dim
    model.patch_embed.set_weights([get("embedding/kernel"), get("embedding/bias")])
    model.cls_token.assign(get("cls"))
    model.pos_embed.assign(get(pos_key))
    for i, block in enumerate(model.blocks):
        b, a, m = _B.format(i=i), _ATT.format(i=i), _MLP.format(i=i)
        block.norm1.set_weights([get(b + "LayerNorm_0/scale"), get(b + "LayerNorm_0/bias")])
        block.norm2.set_weights([get(b + "LayerNorm_2/scale"), get(b + "LayerNorm_2/bias")])
        kernel = np.concatenate(
            [
                get(a + p + "/kernel").reshape(C, C)  # (C, H*D) each
                for p in ("query", "key", "value")
            ],
            axis=1,
        )  # (C, 3C)
        bias = np.concatenate([get(a + p + "/bias").reshape(C) for p in ("query", "key", "value")])
        block.attn.qkv.set_weights([kernel, bias])
        block.attn.out.set_weights([get(a + "out/kernel").reshape(C, C), get(a + "out/bias")])
        block.fc1.set_weights([get(m + "Dense_0/kernel"), get(m + "Dense_0/bias")])
        block.fc2.set_weights([get(m + "Dense_1/kernel"), get(m + "Dense_1/bias")])
    model.norm.set_weights(
        [get("Transformer/encoder_norm/scale"), get("Transformer/encoder_norm/bias")]
    )
    if model.head is not None:
        model.head.set_weights([get("head/kernel"), get("head/bias")])
    return model


def to_npz_dict(model: VisionTransformer) -> dict[str, np.ndarray]:
    """The model's weights as a dict in Google's key layout (inverse of :func:`load_npz`)."""
    C, H = model.embed_dim, model.num_heads
    D = C // H
    w = {
        "embedding/kernel": model.patch_embed.kernel,
        "embedding/bias": model.patch_embed.bias,
        "cls": model.cls_token,
        "Transformer/posembed_input/pos_embedding": model.pos_embed,
        "Transformer/encoder_norm/scale": model.norm.gamma,
        "Transformer/encoder_norm/bias": model.norm.beta,
    }
    w = {k: v.value.numpy() for k, v in w.items()}
    for i, block in enumerate(model.blocks):
        b, a, m = _B.format(i=i), _ATT.format(i=i), _MLP.format(i=i)
        w[b + "LayerNorm_0/scale"], w[b + "LayerNorm_0/bias"] = block.norm1.get_weights()
        w[b + "LayerNorm_2/scale"], w[b + "LayerNorm_2/bias"] = block.norm2.get_weights()
        kernel, bias = block.attn.qkv.get_weights()  # (C, 3C), (3C,)
        for j, part in enumerate(("query", "key", "value")):
            w[a + part + "/kernel"] = kernel[:, j * C : (j + 1) * C].reshape(C, H, D)
            w[a + part + "/bias"] = bias[j * C : (j + 1) * C].reshape(H, D)
        kernel, bias = block.attn.out.get_weights()
        w[a + "out/kernel"], w[a + "out/bias"] = kernel.reshape(H, D, C), bias
        w[m + "Dense_0/kernel"], w[m + "Dense_0/bias"] = block.fc1.get_weights()
        w[m + "Dense_1/kernel"], w[m + "Dense_1/bias"] = block.fc2.get_weights()
    if model.head is not None:
        w["head/kernel"], w["head/bias"] = model.head.get_weights()
    return {k: np.asarray(v, dtype="float32") for k, v in w.items()}


def save_npz(model: VisionTransformer, path) -> Path:
    """Write the model in Google's .npz layout (atomically: a temp file, then a rename)."""
    return fileio.save_npz(path, **to_npz_dict(model))

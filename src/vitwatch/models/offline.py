"""Generated stand-ins for the pretrained ViT artifacts, so that tests and `smoke` run offline.

The real code paths stay the ones users take: :func:`vit_checkpoint` writes a random checkpoint
in Google's .npz key layout (read back by ``vit.load_npz``), and :func:`hub_savedmodel` exports
the same weights as a TF Hub-style SavedModel (read back by ``hub.load_hub_backbone`` through
``TFSMLayer``). Both are generated once per (variant, img_size, seed), cached under
``<cache_dir>/generated/`` and written atomically (temporary name, then rename), so concurrent
or interrupted runs never see half a file.

The weights are drawn with NumPy from the seed, independently of TensorFlow's global random
state: 1/sqrt(fan_in)-scaled kernels, LayerNorm scales near 1, and position embeddings that
are a 2-D sine-cosine code of the patch position plus noise (as in MAE, "Masked
Autoencoders Are Scalable Vision Learners", CVPR 2022),
so that the smoke profile's position-similarity figure has a grid structure to show. They are
not trained: every number computed from them is meaningless, and the report says so.

:func:`bit_checkpoint` does the same for BiT-M R50x1 (:mod:`vitwatch.models.resnetv2`): a
random checkpoint of a variant (the tiny ``testing`` one in ``smoke``) in Google's BiT layout,
read back by ``resnetv2.load_npz``, cached per (variant, seed, head size).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vitwatch import fileio
from vitwatch.models import vit

FORMAT = "v2"  # bump when the generator changes, so caches are regenerated
# (v2: the SavedModel computes the tanh GELU, as the real one)


def generated_dir(cache_dir) -> Path:
    path = Path(cache_dir).expanduser() / "generated"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sincos_2d(grid_size: int, dim: int) -> np.ndarray:
    """(grid_size**2, dim) 2-D sine-cosine position code: half the channels for rows, half
    for columns, geometric frequencies as in Vaswani et al. (2017)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / max(quarter, 1))  # (dim/4,)
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    parts = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        angle = pos[:, None] * omega[None, :]  # (g*g, dim/4)
        parts += [np.sin(angle), np.cos(angle)]
    code = np.concatenate(parts, axis=1)  # (g*g, 4*(dim/4))
    return np.pad(code, ((0, 0), (0, dim - code.shape[1])))


def random_weights(model: vit.VisionTransformer, seed: int) -> dict[str, np.ndarray]:
    """Random weights for ``model`` in Google's .npz layout (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for key, shape in vit._expected_shapes(model).items():
        if key.endswith("/scale"):
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif key.endswith("/bias"):
            w = 0.02 * rng.standard_normal(shape)
        elif key == "cls":
            w = 0.02 * rng.standard_normal(shape)
        elif key.endswith("pos_embedding"):
            code = sincos_2d(model.grid_size, model.embed_dim)  # (N-1, C)
            code = np.concatenate([np.zeros((1, model.embed_dim)), code])[None]  # (1, N, C)
            w = 0.5 * code + 0.02 * rng.standard_normal(shape)
        else:  # kernels: fan-in = all axes but the last
            fan_in = int(np.prod(shape[:-1]))
            if key.endswith("out/kernel"):  # (H, D, C): fan-in is H*D
                fan_in = shape[0] * shape[1]
            elif key.split("/")[-2] in ("query", "key", "value"):  # (C, H, D)
                fan_in = shape[0]
            w = rng.standard_normal(shape) / np.sqrt(fan_in)
        weights[key] = np.asarray(w, dtype="float32")
    return weights


def _name(variant, img_size, seed, num_classes):
    slug = variant.replace("/", "").lower()
    return f"vit_{slug}_{img_size}px_seed{seed}_k{num_classes}_{FORMAT}"


def vit_checkpoint(
    cache_dir, variant: str = "testing", img_size: int = 64, seed: int = 0, num_classes: int = 1000
) -> Path:
    """Path of a generated random ViT checkpoint in Google's layout (made once, cached)."""
    path = generated_dir(cache_dir) / (_name(variant, img_size, seed, num_classes) + ".npz")
    if path.is_file():
        return path
    model = vit.build(variant, num_classes=num_classes, img_size=img_size)
    weights = random_weights(model, seed)
    return fileio.save_npz(path, **weights)


def hub_savedmodel(cache_dir, variant: str = "testing", img_size: int = 64, seed: int = 0) -> Path:
    """Folder of a TF Hub-style SavedModel holding the weights of :func:`vit_checkpoint`.

    Exported from our ViT with its default tanh GELU: the same function as the real TF Hub
    model, a jax2tf export of Google's Flax ViT (``flax.linen.gelu``, tanh by default).
    """
    from vitwatch.models import hub

    path = generated_dir(cache_dir) / ("hub_" + _name(variant, img_size, seed, 0))
    if (path / "saved_model.pb").is_file():
        return path
    if path.exists():  # a broken leftover: start again
        shutil.rmtree(path)
    model = vit.build(variant, num_classes=0, img_size=img_size)
    vit.load_npz(model, vit_checkpoint(cache_dir, variant, img_size, seed))
    return hub.export_savedmodel(model, path)


# --- BiT (ResNetV2) stand-in ------------------------------------------------------------------

BIT_FORMAT = "v1"  # bump when the BiT generator changes


def bit_random_weights(variant: str, seed: int, num_classes: int = 1000) -> dict[str, np.ndarray]:
    """Random weights of a :mod:`~vitwatch.models.resnetv2` variant in Google's BiT layout.

    Standard-normal kernels (weight standardisation rescales them anyway), group-norm scales
    near 1 and offsets near 0, a 1/sqrt(C)-scaled 1x1-conv head; deterministic in ``seed``.
    """
    from vitwatch.models import resnetv2

    model = resnetv2.build(variant, num_classes=num_classes, img_size=32)
    rng = np.random.default_rng(seed)
    weights = {}
    for key, shape in resnetv2.expected_shapes(model).items():
        if key.endswith("/gamma"):
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif key.endswith(("/beta", "/bias")):
            w = 0.02 * rng.standard_normal(shape)
        elif key.startswith(resnetv2.PREFIX + "head/"):
            w = rng.standard_normal(shape) / np.sqrt(shape[2])  # (1, 1, C, K)
        else:
            w = rng.standard_normal(shape)
        weights[key] = np.asarray(w, dtype="float32")
    return weights


def bit_checkpoint(
    cache_dir, variant: str = "testing", seed: int = 0, num_classes: int = 1000
) -> Path:
    """Path of a generated random BiT checkpoint in Google's layout (made once, cached;
    written atomically). ``num_classes=0``: no head (as the features need none)."""
    slug = variant.lower()
    path = generated_dir(cache_dir) / f"bit_{slug}_seed{seed}_k{num_classes}_{BIT_FORMAT}.npz"
    if path.is_file():
        return path
    return fileio.save_npz(path, **bit_random_weights(variant, seed, num_classes))

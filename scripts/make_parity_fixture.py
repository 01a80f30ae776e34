"""Make the golden fixture of the ViT parity test (tests/test_vit.py::test_parity_with_timm).

An independent reader of Google's checkpoint layout, timm's ``_load_weights`` with timm's
PyTorch ``VisionTransformer`` [Wightman, 2019], computes the logits of a small random-weight
checkpoint; our Keras ViT must reproduce them within 1e-4. Torch and timm are too heavy for
vitwatch's dependencies, so this script runs once, in a separate virtualenv, and commits its
result (about 0.35 MB) to ``tests/fixtures/vit_parity.npz``:

- the checkpoint, drawn with NumPy in Google's .npz key layout (``embedding/kernel``,
  ``Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel``, ...);
- an input batch in [-1, 1], NHWC;
- timm's logits and class-token features for that batch with ``act_layer="gelu_tanh"``, the
  tanh-approximate GELU that Google's checkpoints were trained with (``flax.linen.gelu``
  defaults to ``approximate=True``; vit_jax/models_vit.py, MlpBlock), and the config used;
- the same with timm's default exact erf GELU (``*_exact``), so that the test can tell the two.

The two GELUs differ by at most 4.7e-4 (at |x| ~ 2.7): with the usual 1/sqrt(fan_in) weights
the features differ by ~5e-4, too little to tell them apart reliably. So the MLP's first biases
are drawn around ``MLP_BIAS`` = -2.5, which puts the hidden units in GELU's left tail, where
the two forms differ by a few per cent of the value, and its second kernels ``MLP_OUT_GAIN``
times larger than 1/sqrt(fan_in), which carries that into the residual stream: the features
then differ by ~2e-2. The script refuses to write a fixture whose tanh and exact features
differ by less than ``MIN_GELU_GAP``, which keeps the parity test (1e-4) able to see the
activation.

The weights are written here with NumPy only (not with vitwatch), so that neither side of the
comparison shares code with the other. To regenerate::

    python3 -m venv /tmp/timmvenv                                    # not the project's .venv
    /tmp/timmvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy timm==1.0.31
    /tmp/timmvenv/bin/python scripts/make_parity_fixture.py          # from the repository root

timm imports torchvision, which does not import beside the CPU-only torch 2.13.0 build, hence
the torch 2.14.1 / torchvision 0.29.1 pair (run on the CPU). Generated with torch 2.14.1 and
timm 1.0.31 (the fixture's ``versions`` key).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

CONFIG = dict(
    img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_dim=128, num_classes=10
)
MLP_BIAS = -2.5  # mean of the MLP's first biases (GELU's left tail)
MLP_OUT_GAIN = 30.0  # the MLP's second kernels, in units of 1/sqrt(fan_in)
MIN_GELU_GAP = 1e-2  # max |features(tanh) - features(exact)| the fixture must show
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vit_parity.npz"


def google_layout_checkpoint(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with the keys and shapes of a Google ViT .npz checkpoint."""
    rng = np.random.default_rng(seed)
    P, C, M, H = cfg["patch_size"], cfg["embed_dim"], cfg["mlp_dim"], cfg["num_heads"]
    D, N, K = C // H, (cfg["img_size"] // P) ** 2 + 1, cfg["num_classes"]

    def normal(*shape, scale=None):
        scale = scale if scale is not None else 1 / np.sqrt(np.prod(shape[:-1]))
        return (scale * rng.standard_normal(shape)).astype("float32")

    w = {
        "embedding/kernel": normal(P, P, 3, C),
        "embedding/bias": normal(C, scale=0.1),
        "cls": normal(1, 1, C, scale=0.5),
        "Transformer/posembed_input/pos_embedding": normal(1, N, C, scale=0.5),
        "Transformer/encoder_norm/scale": 1 + normal(C, scale=0.2),
        "Transformer/encoder_norm/bias": normal(C, scale=0.1),
        "head/kernel": normal(C, K),
        "head/bias": normal(K, scale=0.1),
    }
    for i in range(cfg["depth"]):
        b = f"Transformer/encoderblock_{i}/"
        a = b + "MultiHeadDotProductAttention_1/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            w[b + ln + "/scale"] = 1 + normal(C, scale=0.2)
            w[b + ln + "/bias"] = normal(C, scale=0.1)
        for part in ("query", "key", "value"):
            w[a + part + "/kernel"] = normal(C, H, D, scale=1 / np.sqrt(C))
            w[a + part + "/bias"] = normal(H, D, scale=0.1)
        w[a + "out/kernel"] = normal(H, D, C, scale=1 / np.sqrt(C))
        w[a + "out/bias"] = normal(C, scale=0.1)
        w[b + "MlpBlock_3/Dense_0/kernel"] = normal(C, M)
        w[b + "MlpBlock_3/Dense_0/bias"] = MLP_BIAS + normal(M, scale=0.1)
        w[b + "MlpBlock_3/Dense_1/kernel"] = normal(M, C, scale=MLP_OUT_GAIN / np.sqrt(M))
        w[b + "MlpBlock_3/Dense_1/bias"] = normal(C, scale=0.1)
    return w


def timm_outputs(ckpt: dict, images: np.ndarray, act_layer: str) -> dict[str, np.ndarray]:
    """timm's features and logits of ``images`` with ``ckpt`` read by ``_load_weights``."""
    import torch
    from timm.models.vision_transformer import VisionTransformer, _load_weights

    model = VisionTransformer(
        img_size=CONFIG["img_size"],
        patch_size=CONFIG["patch_size"],
        embed_dim=CONFIG["embed_dim"],
        depth=CONFIG["depth"],
        num_heads=CONFIG["num_heads"],
        mlp_ratio=CONFIG["mlp_dim"] / CONFIG["embed_dim"],
        num_classes=CONFIG["num_classes"],
        qkv_bias=True,
        class_token=True,
        global_pool="token",
        act_layer=act_layer,
    ).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.npz"
        np.savez(path, **ckpt)
        _load_weights(model, str(path))
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)  # NHWC -> NCHW
        tokens = model.forward_features(x)  # (B, N, C), after norm
        features = model.forward_head(tokens, pre_logits=True)  # (B, C)
        logits = model.forward_head(tokens)  # (B, K)
    return {"features": features.numpy(), "logits": logits.numpy()}


def main() -> None:
    import timm
    import torch

    ckpt = google_layout_checkpoint(CONFIG)
    images = (
        np.random.default_rng(1)
        .uniform(-1, 1, (4, CONFIG["img_size"], CONFIG["img_size"], 3))
        .astype("float32")
    )
    tanh = timm_outputs(ckpt, images, "gelu_tanh")  # Google's function
    exact = timm_outputs(ckpt, images, "gelu")  # timm's default
    gap = float(np.abs(tanh["features"] - exact["features"]).max())
    if gap < MIN_GELU_GAP:
        raise SystemExit(
            f"tanh and exact GELU features differ by only {gap:.2e} "
            f"< MIN_GELU_GAP={MIN_GELU_GAP}: raise MLP_OUT_GAIN"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        images=images,
        logits=tanh["logits"],
        features=tanh["features"],
        logits_exact=exact["logits"],
        features_exact=exact["features"],
        config=np.array(json.dumps(CONFIG)),
        versions=np.array(
            json.dumps(
                {"torch": torch.__version__, "timm": timm.__version__, "act_layer": "gelu_tanh"}
            )
        ),
        **{"ckpt/" + k: v for k, v in ckpt.items()},
    )
    print(
        f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB) with timm {timm.__version__}, "
        f"torch {torch.__version__}; tanh vs exact GELU features differ by {gap:.2e}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

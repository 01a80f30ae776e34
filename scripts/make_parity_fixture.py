"""Make the golden fixture of the ViT parity test (tests/test_vit.py::test_parity_with_timm).

An independent reader of Google's checkpoint layout, timm's ``_load_weights`` with timm's
PyTorch ``VisionTransformer`` [Wightman, 2019], computes the logits of a small random-weight
checkpoint; our Keras ViT must reproduce them within 1e-4. Torch and timm are too heavy for
vitwatch's dependencies, so this script runs once, in a separate virtualenv, and commits its
result (about 0.35 MB) to ``tests/fixtures/vit_parity.npz``:

- the checkpoint, drawn with NumPy in Google's .npz key layout (``embedding/kernel``,
  ``Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel``, ...);
- an input batch in [-1, 1], NHWC;
- timm's logits and class-token features for that batch, and the config used.

The weights are written here with NumPy only (not with vitwatch), so that neither side of the
comparison shares code with the other. To regenerate::

    python3 -m venv /tmp/timmvenv
    /tmp/timmvenv/bin/pip install torch torchvision timm numpy      # CPU wheels are enough
    /tmp/timmvenv/bin/python scripts/make_parity_fixture.py          # from the repository root

Generated with torch 2.14.1, timm 1.0.31.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

CONFIG = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_dim=128,
              num_classes=10)
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vit_parity.npz"


def google_layout_checkpoint(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with the keys and shapes of a Google ViT .npz checkpoint."""
    rng = np.random.default_rng(seed)
    P, C, M, H = cfg["patch_size"], cfg["embed_dim"], cfg["mlp_dim"], cfg["num_heads"]
    D, N, K = C // H, (cfg["img_size"] // P) ** 2 + 1, cfg["num_classes"]

    def normal(*shape, scale=None):
        scale = scale if scale is not None else 1 / np.sqrt(np.prod(shape[:-1]))
        return (scale * rng.standard_normal(shape)).astype("float32")

    w = {"embedding/kernel": normal(P, P, 3, C), "embedding/bias": normal(C, scale=0.1),
         "cls": normal(1, 1, C, scale=0.5),
         "Transformer/posembed_input/pos_embedding": normal(1, N, C, scale=0.5),
         "Transformer/encoder_norm/scale": 1 + normal(C, scale=0.2),
         "Transformer/encoder_norm/bias": normal(C, scale=0.1),
         "head/kernel": normal(C, K), "head/bias": normal(K, scale=0.1)}
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
        w[b + "MlpBlock_3/Dense_0/bias"] = normal(M, scale=0.1)
        w[b + "MlpBlock_3/Dense_1/kernel"] = normal(M, C)
        w[b + "MlpBlock_3/Dense_1/bias"] = normal(C, scale=0.1)
    return w


def main() -> None:
    import timm
    import torch
    from timm.models.vision_transformer import VisionTransformer, _load_weights

    ckpt = google_layout_checkpoint(CONFIG)
    images = np.random.default_rng(1).uniform(-1, 1, (4, CONFIG["img_size"],
                                                      CONFIG["img_size"], 3)).astype("float32")
    model = VisionTransformer(
        img_size=CONFIG["img_size"], patch_size=CONFIG["patch_size"],
        embed_dim=CONFIG["embed_dim"], depth=CONFIG["depth"], num_heads=CONFIG["num_heads"],
        mlp_ratio=CONFIG["mlp_dim"] / CONFIG["embed_dim"], num_classes=CONFIG["num_classes"],
        qkv_bias=True, class_token=True, global_pool="token").eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.npz"
        np.savez(path, **ckpt)
        _load_weights(model, str(path))
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)           # NHWC -> NCHW
        tokens = model.forward_features(x)                           # (B, N, C), after norm
        features = model.forward_head(tokens, pre_logits=True)      # (B, C)
        logits = model.forward_head(tokens)                          # (B, K)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT, images=images, logits=logits.numpy(), features=features.numpy(),
        config=np.array(json.dumps(CONFIG)),
        versions=np.array(json.dumps({"torch": torch.__version__, "timm": timm.__version__})),
        **{"ckpt/" + k: v for k, v in ckpt.items()})
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB) with timm {timm.__version__}, "
          f"torch {torch.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Make the golden fixture of the BiT parity test (tests/test_resnetv2.py::test_parity_with_timm).

An independent reader of Google's BiT checkpoint layout, timm's ``resnetv2._load_weights`` with
timm's PyTorch ``ResNetV2`` [Wightman, 2019] built as timm builds its BiT models
(``stem_type="fixed"``: zero-pad 1 before the max-pool; ``StdConv2d``; ``GroupNormAct``),
computes the outputs of a small random-weight checkpoint; our Keras ResNetV2
(``vitwatch.models.resnetv2``) must reproduce them. Torch and timm are too heavy for vitwatch's
dependencies, so this script runs once, in a separate virtualenv, and commits its result
(about 0.5 MB) to ``tests/fixtures/bit_parity.npz``:

- the checkpoint, drawn with NumPy in Google's key layout (``resnet/root_block/
  standardized_conv2d/kernel``, ``resnet/block1/unit01/a/group_norm/gamma``, ...,
  ``resnet/head/conv2d/kernel``), with two units in block 1 so that both the projection and
  the identity shortcut are exercised, and an odd input size (48 px: maps of 3 x 3 go through
  a stride-2 3x3 conv) so that the padding is tested;
- kernels with a non-zero mean and a scale far from 1 (weight standardisation must remove
  both), group-norm scales and offsets away from 1 and 0;
- an input batch in [-1, 1], NHWC, and timm's logits, pooled features and last activation
  map (after the final GN + ReLU) for it, with the config and the versions used.

The weights are written here with NumPy only (not with vitwatch), so that neither side of the
comparison shares code with the other. To regenerate (torchvision, which timm imports, needs
the torch release it was built for; see /work/.library/env/machines/python.md)::

    python3 -m venv /tmp/bitvenv
    /tmp/bitvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm numpy
    /tmp/bitvenv/bin/python scripts/make_bit_fixture.py        # from the repository root

Generated with the versions stored in the fixture (``versions``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

# Tiny BiT: bottleneck widths 8, 16, 32, 64 (outputs 32 ... 256), 4 groups (widths < 32).
CONFIG = dict(num_units=[2, 1, 1, 1], width=8, num_groups=4, img_size=48, num_classes=10)
OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "bit_parity.npz"


def google_layout_checkpoint(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with the keys and shapes of a Google BiT .npz checkpoint."""
    rng = np.random.default_rng(seed)

    def kernel(*shape):  # mean 0.3, std 2: standardisation must undo both
        return (0.3 + 2.0 * rng.standard_normal(shape)).astype("float32")

    def gn(prefix, c):
        w[prefix + "group_norm/gamma"] = (1 + 0.3 * rng.standard_normal(c)).astype("float32")
        w[prefix + "group_norm/beta"] = (0.2 * rng.standard_normal(c)).astype("float32")

    p, width, K = "resnet/", cfg["width"], cfg["num_classes"]
    w = {p + "root_block/standardized_conv2d/kernel": kernel(7, 7, 3, width)}
    c = width
    for b, units in enumerate(cfg["num_units"], start=1):
        f = width * 2 ** (b - 1)
        for u in range(1, units + 1):
            unit = f"{p}block{b}/unit{u:02d}/"
            gn(unit + "a/", c)
            if u == 1:
                w[unit + "a/proj/standardized_conv2d/kernel"] = kernel(1, 1, c, 4 * f)
            w[unit + "a/standardized_conv2d/kernel"] = kernel(1, 1, c, f)
            gn(unit + "b/", f)
            w[unit + "b/standardized_conv2d/kernel"] = kernel(3, 3, f, f)
            gn(unit + "c/", f)
            w[unit + "c/standardized_conv2d/kernel"] = kernel(1, 1, f, 4 * f)
            c = 4 * f
    gn(p, c)
    w[p + "head/conv2d/kernel"] = (rng.standard_normal((1, 1, c, K)) / np.sqrt(c)).astype("float32")
    w[p + "head/conv2d/bias"] = (0.1 * rng.standard_normal(K)).astype("float32")
    return w


def main() -> None:
    from functools import partial

    import timm
    import torch
    from timm.layers import GroupNormAct, StdConv2d
    from timm.models.resnetv2 import ResNetV2, _load_weights

    cfg = CONFIG
    ckpt = google_layout_checkpoint(cfg)
    S = cfg["img_size"]
    images = np.random.default_rng(1).uniform(-1, 1, (4, S, S, 3)).astype("float32")
    width = cfg["width"]
    model = ResNetV2(
        layers=cfg["num_units"],
        channels=tuple(4 * width * 2**b for b in range(4)),
        stem_chs=width,
        num_classes=cfg["num_classes"],
        stem_type="fixed",
        conv_layer=partial(StdConv2d, eps=1e-8),  # as _create_resnetv2_bit
        norm_layer=partial(GroupNormAct, num_groups=cfg["num_groups"]),
    ).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.npz"
        np.savez(path, **ckpt)
        _load_weights(model, str(path))
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2)  # NHWC -> NCHW
        maps = model.forward_features(x)  # (B, C, h, w), GN+ReLU
        features = model.forward_head(maps, pre_logits=True)  # (B, C)
        logits = model.forward_head(maps)  # (B, K)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        images=images,
        logits=logits.numpy(),
        features=features.numpy(),
        post_relu=maps.permute(0, 2, 3, 1).numpy(),  # (B, h, w, C)
        config=np.array(json.dumps(cfg)),
        versions=np.array(json.dumps({"torch": torch.__version__, "timm": timm.__version__})),
        **{"ckpt/" + k: v for k, v in ckpt.items()},
    )
    print(
        f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB) with timm {timm.__version__}, "
        f"torch {torch.__version__}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

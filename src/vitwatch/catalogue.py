"""What each backbone of the report *is*: architecture family, pre-training data and length, and
its published ImageNet-1k accuracy, with the source of every number.

These facts decide what a comparison of two backbones can separate: two backbones that differ
in pre-training data or length differ in more than their architecture. Sources:

- ViT-S/16 [Steiner et al., 2022] (AugReg): ImageNet-21k for 300 epochs (the checkpoint's name,
  ``S_16-i21k-300ep-...``), then 20k steps at batch 512 on ImageNet-1k (``steps_20k``, about 8
  epochs); ImageNet-1k top-1 80.46 % (AugReg's index of the checkpoints).
- ResNet-50 [He et al., 2016]: ImageNet-1k, 60 x 10^4 iterations at batch 256 (about 120
  epochs); Keras' weights score 74.9 % top-1 (single crop, keras.io applications table).
- BiT-M R50x1 [Kolesnikov et al., 2020]: a ResNet-50v2 (group norm, weight standardisation)
  pre-trained on ImageNet-21k for 90 epochs ("We train both BiT-S and BiT-M for 90 epochs");
  fine-tuned on ImageNet-1k, 80.19 % top-1 at 448 px under timm's evaluation
  (``resnetv2_50x1_bitm``).

ImageNet-1k is a subset of ImageNet-21k [Steiner et al., 2022, Sect. 3.1]: every backbone here
was trained on the ImageNet-1k images.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Facts:
    family: str  # "ViT" or "CNN"
    pretraining: str  # data, in words
    epochs: str  # pre-training length, in words
    in1k_top1: float | None  # published ImageNet-1k top-1 (%), None when no 1k head
    in1k_source: str
    pretraining_key: str  # backbones with the same key share pre-training data
    label: str = ""  # in tables, sentences and legends
    long_label: str = ""  # where the route matters (chapter 4's figures)
    seed_val: float | None = None  # the seed report's validation accuracy (protocol A)


_VIT_21K = "ImageNet-21k (300 epochs)"
FACTS: dict[str, Facts] = {
    "vit_s16": Facts(
        "ViT",
        "ImageNet-21k -> ImageNet-1k",
        f"{_VIT_21K} + ~8 epochs",
        80.46,
        "AugReg index [Steiner et al., 2022]",
        "i21k->i1k",
        "ViT-S/16 (ours)",
        "ViT-S/16 (ours, .npz)",
        0.834,
    ),
    "vit_s16_hub": Facts(
        "ViT",
        "ImageNet-21k -> ImageNet-1k",
        f"{_VIT_21K} + ~8 epochs",
        80.46,
        "AugReg index [Steiner et al., 2022]",
        "i21k->i1k",
        "ViT-S/16 (TF Hub)",
        "ViT-S/16 (TF Hub)",
        0.834,
    ),
    "vit_s16_i21k": Facts(
        "ViT",
        "ImageNet-21k",
        _VIT_21K,
        None,
        "no ImageNet-1k head",
        "i21k",
        "ViT-S/16 (i21k only)",
        "ViT-S/16 (ImageNet-21k only)",
    ),
    "resnet50": Facts(
        "CNN",
        "ImageNet-1k",
        "~120 epochs [He et al., 2016]",
        74.9,
        "Keras applications, single crop",
        "i1k",
        "ResNet-50",
        "ResNet-50",
        0.763,
    ),
    "bit_r50x1": Facts(
        "CNN",
        "ImageNet-21k -> ImageNet-1k",
        "ImageNet-21k (90 epochs) + ImageNet-1k fine-tuning",
        80.19,
        "timm, 448 px [Kolesnikov et al., 2020]",
        "i21k->i1k",
        "BiT-M R50x1",
        "BiT-M R50x1",
    ),
    "bit_r50x1_i21k": Facts(
        "CNN",
        "ImageNet-21k",
        "ImageNet-21k (90 epochs)",
        None,
        "no ImageNet-1k head",
        "i21k",
        "BiT-M R50x1 (i21k only)",
        "BiT-M R50x1 (ImageNet-21k only)",
    ),
}
# Derived tables, read by the analysis, the plots and the sentences (one source: FACTS).
LABELS = {n: f.label for n, f in FACTS.items()}
LONG_LABELS = {n: f.long_label or f.label for n, f in FACTS.items()}
SEED_REFERENCE = {n: f.seed_val for n, f in FACTS.items() if f.seed_val is not None}
# The protocols of chapter 4, in the report's order.
PROTOCOLS = {
    "A": "frozen backbone + head (seed's)",
    "B": "linear probe (cached features)",
    "C": "fine-tuning",
    "Z": "zero-training ImageNet-1k head",
}

# The comparisons of the report: (ViT, CNN, what the pair holds equal).
PAIRS = (
    ("vit_s16", "resnet50", "the seed's pair: different pre-training data"),
    ("vit_s16", "bit_r50x1", "same pre-training data: ImageNet-21k -> ImageNet-1k"),
    ("vit_s16_i21k", "bit_r50x1_i21k", "same pre-training data: ImageNet-21k only"),
)


def facts(name: str) -> Facts | None:
    return FACTS.get(name)

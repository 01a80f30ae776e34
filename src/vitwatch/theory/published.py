"""Published numbers quoted by the report, each with its source (paper, table or figure).

Only numbers that were checked against the paper's text are kept here; the report draws its
charts of published results from these tables and nothing else. Main source: Dosovitskiy et
al., "An Image is Worth 16x16 Words", ICLR 2021 (arXiv 2010.11929, v2), Tables 1, 2, 5, 6, 8.
Figure 3 of the paper also shows BiT ResNets as shaded bands, but their values are not given
in any table, so they are not reproduced here.

Every table is a list of plain dicts with a ``source`` field; :func:`frame` turns one into a
pandas DataFrame for display.
"""

from __future__ import annotations

PAPER = "Dosovitskiy et al., 2021"

# Table 1: model variants (layers, hidden size D, MLP size, heads, parameters).
VIT_VARIANTS = [
    {
        "model": "ViT-Base",
        "depth": 12,
        "embed_dim": 768,
        "mlp_dim": 3072,
        "num_heads": 12,
        "params_m": 86,
        "source": f"{PAPER}, Table 1",
    },
    {
        "model": "ViT-Large",
        "depth": 24,
        "embed_dim": 1024,
        "mlp_dim": 4096,
        "num_heads": 16,
        "params_m": 307,
        "source": f"{PAPER}, Table 1",
    },
    {
        "model": "ViT-Huge",
        "depth": 32,
        "embed_dim": 1280,
        "mlp_dim": 5120,
        "num_heads": 16,
        "params_m": 632,
        "source": f"{PAPER}, Table 1",
    },
]

# Table 2: comparison with the state of the art. Top-1 accuracy (%) after fine-tuning, mean
# over three fine-tuning runs; pre-training cost in TPUv3-core-days.
# "Noisy Student" ImageNet is given as 88.4/88.5 in the paper; 88.4 is kept.
_T2 = f"{PAPER}, Table 2"
STATE_OF_THE_ART = [
    {
        "model": "ViT-H/14",
        "pretraining": "JFT-300M",
        "imagenet": 88.55,
        "imagenet_real": 90.72,
        "cifar10": 99.50,
        "cifar100": 94.55,
        "pets": 97.56,
        "flowers": 99.68,
        "vtab": 77.63,
        "tpu_core_days": 2500,
        "family": "vit",
        "source": _T2,
    },
    {
        "model": "ViT-L/16",
        "pretraining": "JFT-300M",
        "imagenet": 87.76,
        "imagenet_real": 90.54,
        "cifar10": 99.42,
        "cifar100": 93.90,
        "pets": 97.32,
        "flowers": 99.74,
        "vtab": 76.28,
        "tpu_core_days": 680,
        "family": "vit",
        "source": _T2,
    },
    {
        "model": "ViT-L/16",
        "pretraining": "ImageNet-21k",
        "imagenet": 85.30,
        "imagenet_real": 88.62,
        "cifar10": 99.15,
        "cifar100": 93.25,
        "pets": 94.67,
        "flowers": 99.61,
        "vtab": 72.72,
        "tpu_core_days": 230,
        "family": "vit",
        "source": _T2,
    },
    {
        "model": "BiT-L (ResNet152x4)",
        "pretraining": "JFT-300M",
        "imagenet": 87.54,
        "imagenet_real": 90.54,
        "cifar10": 99.37,
        "cifar100": 93.51,
        "pets": 96.62,
        "flowers": 99.63,
        "vtab": 76.29,
        "tpu_core_days": 9900,
        "family": "cnn",
        "source": _T2,
    },
    {
        "model": "Noisy Student (EfficientNet-L2)",
        "pretraining": "JFT-300M",
        "imagenet": 88.4,
        "imagenet_real": 90.55,
        "cifar10": None,
        "cifar100": None,
        "pets": None,
        "flowers": None,
        "vtab": None,
        "tpu_core_days": 12300,
        "family": "cnn",
        "source": _T2,
    },
]

# Table 5 (= Fig. 3): ImageNet top-1 (%) after fine-tuning at 384 px, by pre-training dataset.
# The /32 models are left out (not quoted by the report).
PRETRAINING_IMAGES = {"ImageNet": 1.3e6, "ImageNet-21k": 14e6, "JFT-300M": 303e6}
_T5 = f"{PAPER}, Table 5"
DATA_SCALING = [
    {"model": "ViT-B/16", "pretraining": "ImageNet", "imagenet": 77.91, "source": _T5},
    {"model": "ViT-B/16", "pretraining": "ImageNet-21k", "imagenet": 83.97, "source": _T5},
    {"model": "ViT-B/16", "pretraining": "JFT-300M", "imagenet": 84.15, "source": _T5},
    {"model": "ViT-L/16", "pretraining": "ImageNet", "imagenet": 76.53, "source": _T5},
    {"model": "ViT-L/16", "pretraining": "ImageNet-21k", "imagenet": 85.15, "source": _T5},
    {"model": "ViT-L/16", "pretraining": "JFT-300M", "imagenet": 87.12, "source": _T5},
    {"model": "ViT-H/14", "pretraining": "JFT-300M", "imagenet": 88.04, "source": _T5},
]

# Table 6 (= Fig. 5): ImageNet top-1 (%) against pre-training compute (exaFLOPs), all models
# pre-trained on JFT-300M (7 epochs, 14 for ViT-H/14). Only the rows checked are kept.
_T6 = f"{PAPER}, Table 6"
COMPUTE_SCALING = [
    {"model": "ViT-B/16", "family": "vit", "exaflops": 224, "imagenet": 84.15, "source": _T6},
    {"model": "ViT-H/14", "family": "vit", "exaflops": 4262, "imagenet": 88.08, "source": _T6},
    {"model": "ResNet50x2", "family": "cnn", "exaflops": 199, "imagenet": 82.12, "source": _T6},
    {
        "model": "R50x1+ViT-B/16",
        "family": "hybrid",
        "exaflops": 274,
        "imagenet": 85.58,
        "source": _T6,
    },
]

# Table 8: ViT-B/16, ImageNet 5-shot linear accuracy, position-embedding ablation.
POSITION_EMBEDDING_ABLATION = [
    {
        "position_embedding": "none (bag of patches)",
        "imagenet_5shot": 0.61382,
        "source": f"{PAPER}, Table 8",
    },
    {
        "position_embedding": "1-D learned (default)",
        "imagenet_5shot": 0.64206,
        "source": f"{PAPER}, Table 8",
    },
]

# The reference experiment this report reproduces. No public source: the seed report's own
# figures (frozen backbone + softmax head, Stanford Dogs validation accuracy).
REFERENCE_EXPERIMENT = [
    {
        "model": "ViT-S/16 (ImageNet-21k -> ImageNet-1k)",
        "stanford_dogs_val": 83.4,
        "source": "seed report (no public source)",
    },
    {
        "model": "ResNet-50 (ImageNet-1k)",
        "stanford_dogs_val": 76.3,
        "source": "seed report (no public source)",
    },
]

TABLES = {
    "vit_variants": VIT_VARIANTS,
    "state_of_the_art": STATE_OF_THE_ART,
    "data_scaling": DATA_SCALING,
    "compute_scaling": COMPUTE_SCALING,
    "position_embedding_ablation": POSITION_EMBEDDING_ABLATION,
    "reference_experiment": REFERENCE_EXPERIMENT,
}


def frame(name: str):
    """One of :data:`TABLES` as a pandas DataFrame (unknown name -> ValueError listing them)."""
    import pandas as pd

    if name not in TABLES:
        raise ValueError(f"unknown published table {name!r}; available: {', '.join(TABLES)}")
    return pd.DataFrame(TABLES[name])

"""The backbones of the report, one row each, and the protocols: the one file to open to add a
backbone (a row here, then its name in a profile's ``backbones`` list).

A row is the whole description of a backbone: how the registry builds it (``builder``,
``variant``, the config parameter naming its weights, the download resource of the published
weights), how the report names and draws it (labels, colour), what it *is* (family,
pre-training data and length, preprocessing, input size, published ImageNet-1k top-1 and
GMACs, with their sources), the seed report's number where there is one, and which protocols
of notebook 03 it runs. :mod:`vitwatch.models.registry` builds any row, the plots colour it
(:func:`vitwatch.plotting.color_for`), the tables and sentences label it, and
:func:`for_profile` says which rows a profile runs.

What the facts decide: two backbones that differ in pre-training data or length differ in more
than their architecture. Sources:

- ViT-S/16 [Steiner et al., 2022] (AugReg): ImageNet-21k for 300 epochs (the checkpoint's name,
  ``S_16-i21k-300ep-...``), then 20k steps at batch 512 on ImageNet-1k (``steps_20k``, about 8
  epochs); ImageNet-1k top-1 80.46 % (AugReg's index of the checkpoints; 81.40 % under timm's
  evaluation).
- ViT-B/16 [Steiner et al., 2022] (AugReg): the same recipe (``B_16-i21k-300ep-...
  --imagenet2012-steps_20k-lr_0.01-res_224``, timm's ``vit_base_patch16_224.augreg_in21k_ft_in1k``);
  ImageNet-1k top-1 84.53 % under timm's evaluation (``results/results-imagenet.csv``; its
  AugReg-index number was not found).
- ResNet-50 [He et al., 2016]: ImageNet-1k, 60 x 10^4 iterations at batch 256 (about 120
  epochs); Keras' weights score 74.9 % top-1 (single crop, keras.io applications table).
- BiT-M R50x1 [Kolesnikov et al., 2020]: a ResNet-50v2 (group norm, weight standardisation)
  pre-trained on ImageNet-21k for 90 epochs ("We train both BiT-S and BiT-M for 90 epochs");
  fine-tuned on ImageNet-1k, 80.19 % top-1 at 448 px under timm's evaluation
  (``resnetv2_50x1_bitm``).
- GMACs at the row's ``input_size`` (1 MAC = 2 FLOPs): timm's ``infer_gmacs``
  (``results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv``: ViT-S/16 4.61, ViT-B/16 17.58
  at 224 px; BiT R50x1 4.23 at 224, 16.62 at 448); Keras' ResNet-50 v1 3.86 at 224
  (REFERENCE.md). A built backbone carries its own at the profile's resolution
  (``Backbone.gmacs``).

ImageNet-1k is a subset of ImageNet-21k [Steiner et al., 2022, Sect. 3.1]: every backbone here
was trained on the ImageNet-1k images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One backbone. ``builder``: the code of :mod:`vitwatch.models.registry` that builds it
    ("vit" our Keras ViT on a .npz, "hub" a TF Hub SavedModel, "resnet" Keras' ResNet-50, "bit"
    our ResNetV2 on a BiT .npz); ``variant``: the architecture of the published weights
    (``vit.VARIANTS``, ``resnetv2.VARIANTS``; a profile whose ``vit_variant``/``bit_variant``
    is "testing" builds every row tiny instead); ``checkpoint``: the config parameter naming
    the weights ("" there skips the backbone), or "" for a row without one, whose weights are
    its ``resource`` (a generated stand-in where the profile builds rows tiny); ``resource``: the
    :data:`vitwatch.downloads.RESOURCES` entry of the published weights; ``stand_in_seed``:
    the generated stand-in is drawn with seed ``cfg.seed + stand_in_seed``; ``protocols``: the
    letters of notebook 03's protocols it runs (Z only with an ImageNet-1k head)."""

    name: str
    label: str  # in tables, sentences and legends
    long_label: str  # where the route matters (chapter 4's figures)
    colour: str  # in every figure that compares backbones
    family: str  # "ViT" or "CNN"
    builder: str
    variant: str
    checkpoint: str
    resource: str
    preprocessing: str
    input_size: int  # resolution of the published weights (px)
    in1k_top1: float | None  # published ImageNet-1k top-1 (%), None when no 1k head
    in1k_source: str
    pretraining: str  # data, in words
    epochs: str  # pre-training length, in words
    pretraining_key: str  # backbones with the same key share pre-training data
    gmacs: float  # published, at input_size
    seed_val: float | None = None  # the seed report's validation accuracy (protocol A)
    protocols: str = "B"
    stand_in_seed: int = 0


_VIT_21K = "ImageNet-21k (300 epochs)"
_AUGREG = "AugReg index [Steiner et al., 2022]"
_PM1 = "RGB to [-1, 1]"
_I21K_I1K = "ImageNet-21k -> ImageNet-1k"
_VIT_S16 = Row(
    name="vit_s16",
    label="ViT-S/16 (ours)",
    long_label="ViT-S/16 (ours, .npz)",
    colour="#1f77b4",
    family="ViT",
    builder="vit",
    variant="S/16",
    checkpoint="vit_checkpoint",
    resource="vit_s16_i21k_ft_i1k",
    preprocessing=_PM1,
    input_size=224,
    in1k_top1=80.46,
    in1k_source=_AUGREG,
    pretraining=_I21K_I1K,
    epochs=f"{_VIT_21K} + ~8 epochs",
    pretraining_key="i21k->i1k",
    gmacs=4.61,
    seed_val=0.834,
    protocols="ZABC",
)
_ROWS = [
    _VIT_S16,
    dataclasses.replace(  # the same checkpoint through the seed's TF Hub route
        _VIT_S16,
        name="vit_s16_hub",
        label="ViT-S/16 (TF Hub)",
        long_label="ViT-S/16 (TF Hub)",
        colour="#17becf",
        builder="hub",
        checkpoint="hub_handle",
        resource="hub_vit_s16_fe",
        protocols="B",
    ),
    Row(
        name="vit_s16_i21k",
        label="ViT-S/16 (i21k only)",
        long_label="ViT-S/16 (ImageNet-21k only)",
        colour="#9467bd",
        family="ViT",
        builder="vit",
        variant="S/16",
        checkpoint="vit_i21k_checkpoint",
        resource="vit_s16_i21k",
        preprocessing=_PM1,
        input_size=224,
        in1k_top1=None,
        in1k_source="no ImageNet-1k head",
        pretraining="ImageNet-21k",
        epochs=_VIT_21K,
        pretraining_key="i21k",
        gmacs=4.61,
        stand_in_seed=1,
    ),
    Row(
        name="resnet50",
        label="ResNet-50",
        long_label="ResNet-50",
        colour="#d62728",
        family="CNN",
        builder="resnet",
        variant="50",
        checkpoint="resnet_weights",
        resource="resnet50_imagenet",
        preprocessing="caffe: RGB -> BGR, ImageNet mean subtracted",
        input_size=224,
        in1k_top1=74.9,
        in1k_source="Keras applications, single crop",
        pretraining="ImageNet-1k",
        epochs="~120 epochs [He et al., 2016]",
        pretraining_key="i1k",
        gmacs=3.86,
        seed_val=0.763,
        protocols="ZABC",
    ),
    Row(
        name="bit_r50x1",
        label="BiT-M R50x1",
        long_label="BiT-M R50x1",
        colour="#ff7f0e",
        family="CNN",
        builder="bit",
        variant="R50x1",
        checkpoint="bit_checkpoint",
        resource="bit_m_r50x1_ilsvrc2012",
        preprocessing=_PM1,
        input_size=448,
        in1k_top1=80.19,
        in1k_source="timm, 448 px [Kolesnikov et al., 2020]",
        pretraining=_I21K_I1K,
        epochs="ImageNet-21k (90 epochs) + ImageNet-1k fine-tuning",
        pretraining_key="i21k->i1k",
        gmacs=16.62,
        protocols="ZABC",
        stand_in_seed=2,
    ),
    Row(
        name="bit_r50x1_i21k",
        label="BiT-M R50x1 (i21k only)",
        long_label="BiT-M R50x1 (ImageNet-21k only)",
        colour="#8c564b",
        family="CNN",
        builder="bit",
        variant="R50x1",
        checkpoint="bit_i21k_checkpoint",
        resource="bit_m_r50x1",
        preprocessing=_PM1,
        input_size=224,
        in1k_top1=None,
        in1k_source="no ImageNet-1k head",
        pretraining="ImageNet-21k",
        epochs="ImageNet-21k (90 epochs)",
        pretraining_key="i21k",
        gmacs=4.23,
        stand_in_seed=3,
    ),
    Row(
        name="vit_b16",
        label="ViT-B/16",
        long_label="ViT-B/16 (ours, .npz)",
        colour="#2ca02c",
        family="ViT",
        builder="vit",
        variant="B/16",
        checkpoint="",  # no parameter of its own: its resource (see weights())
        resource="vit_b16_i21k_ft_i1k",
        preprocessing=_PM1,
        input_size=224,
        in1k_top1=84.53,
        in1k_source="timm's evaluation [Steiner et al., 2022]",
        pretraining=_I21K_I1K,
        epochs=f"{_VIT_21K} + ~8 epochs",
        pretraining_key="i21k->i1k",
        gmacs=17.58,
        protocols="ZB",
        stand_in_seed=4,
    ),
]
BACKBONES: dict[str, Row] = {r.name: r for r in _ROWS}


def facts(name: str) -> Row | None:
    return BACKBONES.get(name)


class _Column(Mapping):
    """One field of every row, ``{name: value}`` (rows where it is None left out), read from
    :data:`BACKBONES` at each access: a row added there is in every column."""

    def __init__(self, field: Callable[[Row], object]):
        self._field = field

    def __getitem__(self, name: str):
        value = self._field(BACKBONES[name])
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return (n for n, r in BACKBONES.items() if self._field(r) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


# Read by the analysis, the plots and the sentences (one source: BACKBONES).
LABELS = _Column(lambda r: r.label)
LONG_LABELS = _Column(lambda r: r.long_label or r.label)
SEED_REFERENCE = _Column(lambda r: r.seed_val)

# The parts backbones play in the report's comparisons, first available first.
ROLES = {
    "vit": ("vit_s16", "vit_s16_hub"),  # the seed's ViT: ours, else the TF Hub route
    "cnn": ("resnet50",),  # the seed's CNN
    "matched_cnn": ("bit_r50x1", "bit_r50x1_i21k"),  # the CNN pre-trained like the ViT
}

# The comparisons of the report: (ViT, CNN, what the pair holds equal).
PAIRS = (
    ("vit_s16", "resnet50", "the seed's pair: different pre-training data"),
    ("vit_s16", "bit_r50x1", "same pre-training data: ImageNet-21k -> ImageNet-1k"),
    ("vit_s16_i21k", "bit_r50x1_i21k", "same pre-training data: ImageNet-21k only"),
)

# The protocols of chapter 4, in the report's order.
PROTOCOLS = {
    "A": "frozen backbone + head (seed's)",
    "B": "linear probe (cached features)",
    "C": "fine-tuning",
    "Z": "zero-training ImageNet-1k head",
}


def role(part: str, available: Iterable[str]) -> str | None:
    """The backbone of ``available`` playing ``part`` of :data:`ROLES`, or None."""
    available = set(available)
    return next((n for n in ROLES[part] if n in available), None)


def for_profile(cfg) -> tuple[list[str], dict[str, str]]:
    """The backbones ``cfg`` runs, in the profile's order (``cfg.backbones``), and the ones it
    skips because their checkpoint parameter is empty, with the sentence that says so."""
    unknown = [n for n in cfg.backbones if n not in BACKBONES]
    if unknown:
        raise ValueError(
            f"parameter backbones: unknown {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(BACKBONES)} (vitwatch.catalogue.BACKBONES)"
        )
    names, skipped = [], {}
    for name in dict.fromkeys(cfg.backbones):
        param, spec = weights(BACKBONES[name], cfg)
        if spec:
            names.append(name)
        else:
            skipped[name] = (
                f"{param} is empty: {BACKBONES[name].long_label} is skipped in this profile."
            )
    return names, skipped


def weights(row: Row, cfg) -> tuple[str, str]:
    """(parameter, value) naming ``row``'s weights under ``cfg``: the row's own config parameter
    when it has one; otherwise its download resource, or "generated" (a tiny stand-in) where
    the profile builds every row tiny (``vit_variant``/``bit_variant`` "testing"), so that a
    new backbone needs no parameter of its own."""
    if row.checkpoint:
        return row.checkpoint, getattr(cfg, row.checkpoint)
    return f"backbones ({row.name}'s resource)", "generated" if tiny(row, cfg) else row.resource


def tiny(row: Row, cfg) -> bool:
    """Whether ``cfg`` builds ``row`` tiny (smoke): ``bit_variant`` "testing" for the CNNs
    (BiT, Keras' ResNet-50), ``vit_variant`` "testing" for the rest."""
    cnn = row.builder in ("bit", "resnet")
    return (cfg.bit_variant if cnn else cfg.vit_variant) == "testing"

"""Backbones by name: any row of :data:`vitwatch.catalogue.BACKBONES` built, for a validated
config, into a ready, frozen feature extractor (:class:`Backbone`).

A row names its builder (``vit``: our Keras ViT on a Google .npz; ``hub``: a TF Hub SavedModel
through TFSMLayer; ``resnet``: Keras' ResNet-50; ``bit``: our Keras ResNetV2 on a BiT .npz),
its variant (unless the profile's ``vit_variant``/``bit_variant`` is "testing": every row
tiny, as in the smoke profile) and the config parameter holding its weights: "generated" (the
stand-ins of :mod:`vitwatch.models.offline`, drawn with seed ``cfg.seed +
row.stand_in_seed``), a name or URL of :data:`vitwatch.downloads.RESOURCES`, or a local file.
Every download goes through :mod:`vitwatch.downloads`, whose preflight takes
:func:`required_resources`.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from vitwatch import catalogue, downloads, fastpath
from vitwatch.models import hub, offline, resnet, resnetv2, small, vit


@dataclass
class Backbone:
    """A frozen feature extractor and what the experiment needs to know about it.

    ``model``: preprocessed images (B, S, S, 3) -> features (B, feature_dim); a Keras model
    (``predict_on_batch``, or a layer of a bigger model; set ``model.trainable = True`` to
    fine-tune). ``preprocess``: float32 RGB 0..255 -> model input. ``imagenet_logits``:
    features (N, D) -> ImageNet-1k logits (N, 1000) as a ``tf.Tensor``, ``f @ W + b`` in
    TensorFlow (differentiable: Grad-CAM takes gradients through it; ``np.asarray`` for
    NumPy), or None when the weights carry no ImageNet-1k head. ``cache_key`` changes whenever
    the weights, variant, resolution or preprocessing change. ``params``: parameters of the
    feature extractor (no ImageNet head); ``gmacs``: multiply-accumulates per image at
    ``img_size``; ``source``: the checkpoint file, SavedModel folder or weights name.

    What the analyses read: ``vit``, the :class:`vitwatch.models.vit.VisionTransformer` inside
    (its ``forward`` gives every block's attention and the tokens), or None (CNNs, and the TF
    Hub route, whose ViT is a SavedModel); ``extra["gradcam_layer"]`` (CNNs: the last
    activation map, Grad-CAM's layer) and ``extra["cka_layers"]`` (CNNs: the stage outputs,
    in order). ``cache_dir``: where :mod:`vitwatch.fastpath` remembers its graph/XLA choice.
    """

    name: str
    model: keras.Model
    preprocess: Callable
    img_size: int
    feature_dim: int
    cache_key: str
    imagenet_logits: Callable | None = None
    description: str = ""
    params: int = 0
    gmacs: float | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)
    vit: vit.VisionTransformer | None = None
    cache_dir: str | None = None
    _forward: Callable | None = field(default=None, init=False, repr=False, compare=False)

    def forward(self, images) -> np.ndarray:
        """Images 0..255 (B, S, S, 3), uint8 or float -> float32 features (B, D): preprocessing
        and model, on the path measured fastest on this machine
        (:func:`vitwatch.fastpath.backbone_forward`, built at the first call and kept: batches
        shorter than the first one are padded to its size); a model that is not a Keras model
        (a plain callable) runs eagerly."""
        if self._forward is None:
            if hasattr(self.model, "predict_on_batch"):  # a Keras model
                self._forward = fastpath.backbone_forward(self, self.cache_dir)
            else:
                self._forward = self._eager
        return self._forward(images)  # (B, D)

    def path_timing(self, shape) -> dict | None:
        """The fast path's measurement this process made on input ``shape`` (the first
        :meth:`forward` call's; :func:`vitwatch.fastpath.measure`), None if none was made (a
        choice remembered, forced or eager)."""
        return getattr(self._forward, "measured", {}).get(tuple(shape))

    def _eager(self, images) -> np.ndarray:
        out = self.model(self.preprocess(np.asarray(images).astype(np.float32)))
        if isinstance(out, dict):  # TFSMLayer returns {name: tensor}
            if len(out) != 1:
                raise ValueError(
                    f"backbone {self.name}: model returned several outputs {sorted(out)}; "
                    "expected one feature tensor"
                )
            out = next(iter(out.values()))
        out = np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float32)
        return out.reshape(len(images), -1)  # (B, D)

    def features(self, images) -> np.ndarray:
        """Raw 0..255 images (B, S, S, 3) -> features (B, D) through Keras' own
        ``predict_on_batch``, not the fast path: the reference of notebook 03's route check."""
        return np.asarray(self.model.predict_on_batch(self.preprocess(images)))

    def blocks(self) -> tuple[list[list], list]:
        """``(blocks, after)``: the groups of layers fine-tuning can unfreeze, in order (the
        last last), and the layers after the last group (final norm, pooling)."""
        return _blocks(self.model)


def _blocks(model) -> tuple[list[list], list]:
    """Our ViT (``model.blocks``, ``model.norm``: one group per encoder block); Keras
    functional models whose layers are named ``convN_blockM_*`` (ResNet-50: 16 residual
    blocks) or ``blockN_unitMM_*`` (BiT's ResNetV2: 16 units in R50x1); a model wrapping one
    of those; else ``([], [])``."""
    if getattr(model, "blocks", None):
        after = [getattr(model, n) for n in ("norm",) if getattr(model, n, None) is not None]
        return [[b] for b in model.blocks], after
    layers = list(getattr(model, "layers", []))
    groups: dict[str, list] = {}
    last = -1
    for i, layer in enumerate(layers):
        m = re.match(r"^(conv\d+_block\d+|block\d+_unit\d+)_", layer.name)
        if m:
            groups.setdefault(m.group(1), []).append(layer)
            last = i
    if groups:
        return list(groups.values()), layers[last + 1 :]
    for layer in layers:  # a wrapper: look one level down
        if getattr(layer, "layers", None) or getattr(layer, "blocks", None):
            found = _blocks(layer)
            if found[0]:
                return found
    return [], []


# --- weights identity -----------------------------------------------------------------------

_DIGESTS: dict[tuple, str] = {}


def file_digest(path) -> str:
    """Short sha256 of a file, or of every file of a folder (a SavedModel); memoised."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _DIGESTS:
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(path).as_posix().encode() if path.is_dir() else b"")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        _DIGESTS[stamp] = h.hexdigest()[:16]
    return _DIGESTS[stamp]


def _key(*parts) -> str:
    return "-".join(str(p).replace("/", "").replace(" ", "") for p in parts)


# --- checkpoints and handles ----------------------------------------------------------------


def _resource_for(spec: str) -> str | None:
    """Name of the downloads.RESOURCES entry a parameter value designates (name or URL)."""
    if spec in downloads.RESOURCES:
        return spec
    return next((r.name for r in downloads.RESOURCES.values() if r.url == spec), None)


def _local_or_download(spec: str, cfg, param: str, family: str) -> Path:
    """A checkpoint parameter that is not 'generated': a name or URL of downloads.RESOURCES
    (fetched), else a local .npz path; ``family`` prefixes the resource names listed when an
    unknown URL is given."""
    name = _resource_for(spec)
    if name is not None:
        return downloads.fetch(name, cfg.cache_dir)
    if spec.startswith(("http://", "https://", "gs://")):
        known = ", ".join(r for r in downloads.RESOURCES if r.startswith(family))
        raise ValueError(
            f"parameter {param}={spec!r}: unknown URL; use a name of "
            f"vitwatch.downloads.RESOURCES ({known}) or download the file and "
            "give its local path"
        )
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"parameter {param}={spec!r}: no such .npz file ({path})")
    return path


def _weights_path(row, spec: str, variant: str, cfg) -> Path:
    """The .npz of ``row`` for parameter value ``spec``: 'generated' (a stand-in of ``variant``
    with an ImageNet-1k head when the row has one), a name/URL of downloads.RESOURCES, or a
    local path."""
    if spec == "generated":
        head = 1000 if row.in1k_top1 is not None else 0
        seed = cfg.seed + row.stand_in_seed
        if row.builder == "bit":  # the i21k stand-in has no head: as the real file's is ignored
            return offline.bit_checkpoint(cfg.cache_dir, variant, seed=seed, num_classes=head)
        return offline.vit_checkpoint(
            cfg.cache_dir, variant, cfg.img_size, seed=seed, num_classes=head
        )
    return _local_or_download(spec, cfg, catalogue.weights(row, cfg)[0], row.builder + "_")


def vit_checkpoint_path(spec: str, cfg) -> Path:
    """The .npz of the seed's ViT (:data:`vitwatch.catalogue.ROLES`) for parameter value
    ``spec`` in the profile's ``vit_variant``: 'generated', a name/URL of downloads.RESOURCES,
    or a local .npz path."""
    return _weights_path(catalogue.BACKBONES[catalogue.ROLES["vit"][0]], spec, cfg.vit_variant, cfg)


def _read_head(path) -> tuple[np.ndarray, np.ndarray] | None:
    with np.load(path) as f:
        prefix = "opt/target/" if "opt/target/head/kernel" in f.files else ""
        if prefix + "head/kernel" not in f.files:
            return None
        kernel, bias = f[prefix + "head/kernel"], f[prefix + "head/bias"]
    return (kernel.astype("float32"), bias.astype("float32")) if kernel.shape[1] == 1000 else None


def _logits_fn(head):
    """``features (N, D) -> tf.Tensor (N, 1000)``: ``f @ W + b`` on TF constants, or None."""
    if head is None:
        return None
    import tensorflow as tf

    kernel, bias = (tf.constant(np.asarray(a, np.float32)) for a in head)  # (D, 1000), (1000,)

    def imagenet_logits(features):
        return tf.matmul(tf.cast(features, tf.float32), kernel) + bias  # (N, 1000)

    return imagenet_logits


# --- builders: each takes what it reads ------------------------------------------------------


def _need(name: str, param: str, spec: str) -> None:
    if not spec:
        raise ValueError(f"backbone {name!r} needs parameter {param} (it is empty: skip it)")


def _vit(name, path, variant, img_size, what):
    """Our ViT on the .npz at ``path``; ``what``: the parameter and its value, for errors."""
    try:
        downloads.check_format(Path(path), ".npz")  # a corrupt file is named as such
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"parameter {what}: {exc}; delete it and download it again") from None
    model = vit.build(variant, num_classes=0, img_size=img_size, name=name)
    try:
        vit.load_npz(model, path)
    except ValueError as exc:
        raise ValueError(f"parameter {what} does not fit ViT variant {variant!r}: {exc}") from None
    return dict(
        model=model,
        preprocess=vit.preprocess,
        img_size=img_size,
        feature_dim=model.embed_dim,
        head=_read_head(path),
        source=str(path),
        key=_key(name, variant, img_size, "pm1", "gelu_tanh", file_digest(path)),
        description=f"ViT-{variant} (ours, Keras 3; {Path(path).name})",
        gmacs=vit.gmacs(**vit.VARIANTS[variant], img_size=img_size),
        vit=model,
    )


def _hub_savedmodel(handle, cache_dir, variant, img_size, seed) -> tuple[Path, str]:
    """The SavedModel folder of ``hub_handle`` (generated, a RESOURCES name or a URL), and
    what it is in words."""
    if handle == "generated":
        path = offline.hub_savedmodel(cache_dir, variant, img_size, seed)
        return path, f"generated tiny ViT-{variant}"
    handle = downloads.RESOURCES.get(handle, handle)
    handle = getattr(handle, "url", handle)  # a RESOURCES name -> its URL
    return hub.resolve(handle, cache_dir=cache_dir), handle


def _hub(name, path, what, variant):
    """The SavedModel at ``path`` through TFSMLayer; ``variant``: its ViT (for the GMACs)."""
    model = hub.load_hub_backbone(str(path), trainable=False)
    img_size = model.input_shape[1]
    return dict(
        model=model,
        preprocess=vit.preprocess,
        img_size=img_size,
        feature_dim=model.output_shape[-1],
        head=None,
        source=str(path),
        key=_key(name, img_size, "pm1", file_digest(path)),
        description=f"ViT (TF Hub-style SavedModel via TFSMLayer; {what})",
        gmacs=vit.gmacs(**vit.VARIANTS[variant], img_size=img_size),
        vit=None,  # a SavedModel: no attention to read
    )


def _bit(name, path, variant, img_size, i21k, what):
    """BiT's ResNetV2 on the .npz at ``path``; ``what``: the parameter and its value."""
    model = resnetv2.build(variant, num_classes=0, img_size=img_size, name=name)
    try:
        resnetv2.load_npz(model, path)
    except ValueError as exc:
        raise ValueError(f"parameter {what} does not fit BiT variant {variant!r}: {exc}") from None
    pretraining = "ImageNet-21k" if i21k else "ImageNet-21k -> ImageNet-1k"
    return dict(
        model=model,
        preprocess=resnetv2.preprocess,
        img_size=img_size,
        feature_dim=model.output_shape[-1],
        head=resnetv2.read_head(path, 1000),
        source=str(path),
        key=_key(name, variant, img_size, "pm1", file_digest(path)),
        description=f"BiT-M {variant} ({pretraining}; ours, Keras 3 ResNetV2; {Path(path).name})",
        gmacs=resnetv2.gmacs(**resnetv2.VARIANTS[variant], img_size=img_size),
        extra={"gradcam_layer": resnetv2.GRADCAM_LAYER, "cka_layers": resnetv2.stage_names(model)},
    )


def _resnet(name, weights, img_size, cache_dir, seed, gmacs, variant="50"):
    """Keras' ResNet-50 (``weights``: "imagenet" or random with ``seed``; ``variant`` "testing":
    the tiny copy of :mod:`.resnet`), pooled features; ``gmacs``: its published count at
    ``img_size`` (the tiny one's: counted)."""
    full = resnet.build(
        weights, img_size, include_top=True, cache_dir=cache_dir, seed=seed, variant=variant
    )
    model = keras.Model(full.input, full.get_layer("avg_pool").output, name=name)
    if weights == "imagenet":
        identity = file_digest(downloads.fetch("resnet50_imagenet", cache_dir))
    else:
        identity = f"random{seed}"
    if variant != "50":
        identity, gmacs = f"{identity}-{variant}", small.count_macs(full) / 1e9
    stages = resnet.stage_outputs(model)
    return dict(
        model=model,
        preprocess=resnet.preprocess,
        img_size=img_size,
        feature_dim=model.output_shape[-1],
        head=resnet.imagenet_head(full),
        source=weights,
        key=_key(name, img_size, "caffe", identity),
        description=(
            f"ResNet-50 v1 (Keras applications, {weights} weights)"
            if variant == "50"
            else f"tiny ResNet v1 ('{variant}': {resnet.VARIANTS[variant]}, {weights} weights)"
        ),
        gmacs=gmacs,
        extra={"gradcam_layer": stages[-1], "cka_layers": stages},
    )


def _parts(name: str, cfg) -> dict:
    """The builder of ``name``'s catalogue row on the values of ``cfg`` it reads."""
    row = catalogue.BACKBONES.get(name)
    if row is None:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(catalogue.BACKBONES)}")
    param, spec = catalogue.weights(row, cfg)
    what = f"{param}={spec!r}"
    _need(name, param, spec)
    if row.builder == "resnet":
        seed = cfg.seed + row.stand_in_seed
        gmacs = row.gmacs * (cfg.img_size / row.input_size) ** 2  # published, scaled by pixels
        variant = "testing" if catalogue.tiny(row, cfg) else "50"
        return _resnet(name, spec, cfg.img_size, cfg.cache_dir, seed, gmacs, variant)
    # the profile's "testing" variant builds every row tiny (smoke); else the row's own
    variant = "testing" if catalogue.tiny(row, cfg) else row.variant
    if row.builder == "hub":
        seed = cfg.seed + row.stand_in_seed
        path, what = _hub_savedmodel(spec, cfg.cache_dir, variant, cfg.img_size, seed)
        return _hub(name, path, what, variant)
    path = _weights_path(row, spec, variant, cfg)
    if row.builder == "vit":
        return _vit(name, path, variant, cfg.img_size, what)
    if row.builder == "bit":
        return _bit(name, path, variant, cfg.img_size, row.in1k_top1 is None, what)
    raise ValueError(f"backbone {name!r}: unknown builder {row.builder!r}")


def backbone(name: str, cfg, trainable: bool = False) -> Backbone:
    """Build backbone ``name`` for config ``cfg``: frozen unless ``trainable``."""
    parts = _parts(name, cfg)
    model = parts["model"]
    model.trainable = trainable
    return Backbone(
        name=name,
        model=model,
        preprocess=parts["preprocess"],
        img_size=parts["img_size"],
        feature_dim=int(parts["feature_dim"]),
        cache_key=parts["key"],
        imagenet_logits=_logits_fn(parts["head"]),
        description=parts["description"],
        params=int(model.count_params()),
        gmacs=parts["gmacs"],
        source=parts["source"],
        extra=dict(parts.get("extra", {})),
        vit=parts.get("vit"),
        cache_dir=cfg.cache_dir,
    )


def _optional(name: str) -> bool:
    """A route the report goes on without: its resource is ``downloads.Resource.optional``."""
    res = downloads.RESOURCES.get(catalogue.BACKBONES[name].resource)
    return bool(res and res.optional)


def backbones(names, cfg, trainable: bool = False) -> tuple[dict[str, Backbone], dict[str, str]]:
    """Build ``names`` in order; an optional one (the TF Hub route) whose download fails is left
    out, with the one sentence that says why in the second dict, instead of stopping the run."""
    built, skipped = {}, {}
    for name in names:
        try:
            built[name] = backbone(name, cfg, trainable)
        except downloads.DownloadError as exc:
            if not _optional(name):
                raise
            skipped[name] = _skip_sentence(name, exc)
    return built, skipped


def _skip_sentence(name: str, exc: Exception) -> str:
    """One sentence for the report: which optional route was skipped and why."""
    lines = str(exc).splitlines()
    why = "; ".join(ln.strip(" -") for ln in lines if ln.startswith("  - ")) or lines[0]
    label = catalogue.BACKBONES[name].label
    return (
        f"The {label} comparison ({name}) was skipped because its weights could not be "
        f"downloaded ({why}); every result below uses the other backbones."
    )


def required_resources(cfg) -> list[str]:
    """Names of downloads.RESOURCES the backbones ``cfg`` runs need (for the preflight): each
    one's checkpoint parameter when it names a resource (ResNet-50's "imagenet": its row's)."""
    names = []
    for name in catalogue.for_profile(cfg)[0]:
        row = catalogue.BACKBONES[name]
        spec = catalogue.weights(row, cfg)[1]
        found = row.resource if row.builder == "resnet" and spec == "imagenet" else None
        found = found or (_resource_for(spec) if spec not in ("generated", "random") else None)
        if found:
            names.append(found)
    return list(dict.fromkeys(names))

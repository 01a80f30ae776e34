"""The interactive explorer of notebook 06: any image through every trained backbone.

For a test image or an uploaded photo, each backbone of the results store gives its top-5
breeds (its frozen features through the softmax head that notebook 03 trained and stored:
``head_kernel`` (D, K) and ``head_bias`` (K,) in the run's npz; nothing is retrained), and a map
of where it looks:

- our Keras ViT: the attention rollout of the class token [Abnar & Zuidema, 2020]
  (:func:`vitwatch.theory.attention.rollout`), or the class token's attention in one block and head
  (:func:`vitwatch.theory.attention.cls_attention_maps`, averaged over the heads unless one is
  chosen);
- a CNN: Grad-CAM [Selvaraju et al., 2017] of the predicted breed's score under the stored head
  (:class:`vitwatch.analysis.gradcam.GradCAM`, the head in TensorFlow by
  :func:`vitwatch.analysis.gradcam.linear`);
- the TF Hub ViT: no map (a SavedModel returns no attention).

Functions: :func:`load` (backbones and their heads), :func:`table`, :func:`explain` (one
image, one backbone), :func:`explain_all`, :func:`describe_examples`, :func:`examples` (test
images for the static panel), :func:`image_from_bytes` (an upload). The figure is
:func:`vitwatch.plotting.explorer.panel`; the interactive front end on top of all this is
:mod:`vitwatch.explorer.widget`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HEAD_PROTOCOLS = ("B", "A")  # frozen-backbone runs: their head fits the pretrained backbone


@dataclass
class Explainer:
    """One backbone with the dog head of its best frozen-backbone run (chosen on validation).

    ``kernel`` (D, K) and ``bias`` (K,): the stored softmax head; ``map_kind``: "attention"
    (the backbone's ``vit``), "gradcam" (a CNN: ``extra["gradcam_layer"]``) or "none".
    """

    name: str
    label: str
    run: str
    backbone: Any
    kernel: np.ndarray
    bias: np.ndarray
    map_kind: str = "none"
    _cam: Any = field(default=None, repr=False)

    @property
    def vit(self):
        """The VisionTransformer inside the backbone (attention maps), or None."""
        return self.backbone.vit

    @property
    def depth(self) -> int:
        return int(self.vit.depth) if self.vit is not None else 0

    @property
    def num_heads(self) -> int:
        return int(self.vit.num_heads) if self.vit is not None else 0

    def inputs(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) of any size -> preprocessed (1, S, S, 3) for this backbone."""
        x = resize(image, self.backbone.img_size).astype("float32")[None]  # (1, S, S, 3)
        return np.asarray(self.backbone.preprocess(x))

    def probs(self, image: np.ndarray) -> np.ndarray:
        """Breed probabilities (K,) of one image: features -> stored head -> softmax."""
        from vitwatch import runs

        feats = np.asarray(self.backbone.model.predict_on_batch(self.inputs(image)))  # (1, D)
        return runs.softmax(feats.astype("float32") @ self.kernel + self.bias)[0]  # (K,)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3), bilinear, as the data loader resizes every image
    (:func:`vitwatch.data.images.decode`: no crop, the aspect ratio is not kept)."""
    from PIL import Image

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    if img.shape[:2] == (size, size):
        return img.astype(np.uint8)
    pil = Image.fromarray(np.ascontiguousarray(img).astype(np.uint8))
    return np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))


def stored_heads(cfg, protocols=HEAD_PROTOCOLS) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """backbone -> (run, kernel (D, K), bias (K,)): the head of the best run among
    ``protocols`` (validation accuracy) that stored one. Raises when 03 has not run."""
    from vitwatch import analysis, results

    store = analysis.store.load(results.ResultsStore(cfg.results_dir, cfg.profile))
    heads = {}
    for backbone in dict.fromkeys(m["backbone"] for m, _ in store.runs.values()):
        cands = [
            r
            for r in store.names(backbone)
            if store.runs[r][0]["protocol"] in protocols and "head_kernel" in store.runs[r][1]
        ]
        if not cands:
            continue
        run = max(cands, key=lambda r: (store.runs[r][0].get("val_top1") or 0.0, r))
        arrays = store.runs[run][1]
        heads[backbone] = (
            run,
            np.asarray(arrays["head_kernel"], np.float32),
            np.asarray(arrays["head_bias"], np.float32),
        )
    if not heads:
        raise FileNotFoundError(
            f"results store {cfg.results_dir}: no run of protocol {' or '.join(protocols)} "
            "holds a head (head_kernel, head_bias): execute notebook 03 first"
        )
    return heads


def load(cfg, names=None) -> tuple[list[Explainer], list[str]]:
    """Every backbone with a stored head (or those in ``names``), and the breed names."""
    from vitwatch import analysis, catalogue, results
    from vitwatch.models import registry

    class_names = list(results.ResultsStore(cfg.results_dir).load_dataset()["class_names"])
    heads = stored_heads(cfg)
    order = [n for n in catalogue.BACKBONES if n in heads] + [
        n for n in heads if n not in catalogue.BACKBONES
    ]
    out = []
    for name in order if names is None else names:
        if name not in heads:
            raise ValueError(
                f"backbone {name!r}: no stored head in {cfg.results_dir} "
                f"(available: {', '.join(heads)})"
            )
        run, kernel, bias = heads[name]
        bb = registry.backbone(name, cfg)
        if kernel.shape != (bb.feature_dim, len(class_names)):
            raise ValueError(
                f"{run}.npz head_kernel has shape {kernel.shape}; backbone {name!r} "
                f"gives {bb.feature_dim} features and dataset.json "
                f"{len(class_names)} breeds: rerun notebook 03"
            )
        kind = (
            "attention"
            if bb.vit is not None
            else "gradcam"
            if "gradcam_layer" in bb.extra
            else "none"
        )
        out.append(Explainer(name, analysis.text.label(name), run, bb, kernel, bias, kind))
    return out, class_names


def table(explainers):
    """The backbones of the explorer as a table: label, the run whose head is used, the head's
    size (features x breeds) and the map it can show."""
    import pandas as pd

    maps = {"gradcam": "Grad-CAM", "none": "none"}
    return pd.DataFrame(
        [
            {
                "backbone": ex.label,
                "run (head used)": ex.run,
                "head": f"{ex.kernel.shape[0]} x {ex.kernel.shape[1]}",
                "map": maps.get(ex.map_kind)
                or f"attention ({ex.depth} blocks x {ex.num_heads} heads)",
            }
            for ex in explainers
        ]
    )


def describe_examples(explainers, explained, true_labels, class_names) -> str:
    """On the panel's images (``explained``: :func:`explain_all` of each, ``true_labels``: their
    breeds): how often the backbones agree on the top breed, and each one's correct answers."""
    n = len(explained)
    agree = sum(len({e["top"][0][0] for e in rows}) == 1 for rows in explained)
    right = [
        sum(rows[j]["top"][0][0] == class_names[y] for rows, y in zip(explained, true_labels))
        for j in range(len(explainers))
    ]
    return (
        f"On these {n} images the backbones agree on the top breed for {agree}; correct top-1 "
        "answers: " + ", ".join(f"{ex.label} {r}/{n}" for ex, r in zip(explainers, right)) + "."
    )


def top_k(probs: np.ndarray, class_names, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable breeds, most probable first: [(name, probability), ...]."""
    probs = np.asarray(probs)
    idx = np.argsort(-probs, kind="stable")[: min(k, len(probs))]
    return [(class_names[i], float(probs[i])) for i in idx]


def attention_map(
    vit, x: np.ndarray, layer: int | None = None, head: int | None = None
) -> np.ndarray:
    """(g, g) map of a preprocessed image ``x`` (1, S, S, 3): the class-token row of the
    attention rollout when ``layer`` is None, else the class token's attention in block
    ``layer`` (0-based), head ``head`` (0-based; None: mean over the heads)."""
    from vitwatch.theory import attention

    att = [np.asarray(a) for a in vit.forward(x)["attention"]]  # L x (1, H, N, N)
    g = vit.grid_size
    if layer is None:
        return attention.rollout(att)[0, 0, -g * g :].reshape(g, g)  # (g, g)
    if not 0 <= layer < len(att):
        raise ValueError(f"layer={layer}: the ViT has blocks 0..{len(att) - 1}")
    maps = attention.cls_attention_maps(att[layer], g)[0]  # (H, g, g)
    if head is None:
        return maps.mean(axis=0)
    if not 0 <= head < len(maps):
        raise ValueError(f"head={head}: block {layer} has heads 0..{len(maps) - 1}")
    return maps[head]


def gradcam(ex: Explainer, x: np.ndarray, class_index: int) -> np.ndarray:
    """(h, w) Grad-CAM of breed ``class_index`` under the stored head, on ``x`` (1, S, S, 3)."""
    from vitwatch.analysis import gradcam as cam

    if ex._cam is None:  # at the registry's last activation map, under the stored head
        layer = ex.backbone.extra["gradcam_layer"]
        ex._cam = cam.GradCAM(ex.backbone.model, layer, head=cam.linear(ex.kernel, ex.bias))
    return np.asarray(ex._cam(x, np.asarray([class_index])))[0]


def explain(
    ex: Explainer,
    image: np.ndarray,
    class_names,
    layer: int | None = None,
    head: int | None = None,
    k: int = 5,
) -> dict:
    """One image through one backbone: ``label``, ``top`` (k x (breed, p)), ``map`` ((h, w) or
    None) and ``map_title`` ("rollout", "block 3, head 2", "Grad-CAM of ...", "no map")."""
    x = ex.inputs(image)
    probs = ex.probs(image)
    top = top_k(probs, class_names, k)
    if ex.map_kind == "attention":
        m = attention_map(ex.vit, x, layer, head)
        title = (
            "attention rollout"
            if layer is None
            else f"block {layer + 1}, " + ("mean of heads" if head is None else f"head {head + 1}")
        )
    elif ex.map_kind == "gradcam":
        m, title = gradcam(ex, x, int(np.argmax(probs))), "Grad-CAM, top breed"
    else:
        m, title = None, "no map (TF Hub model)"
    return {
        "name": ex.name,
        "label": ex.label,
        "run": ex.run,
        "top": top,
        "map": m,
        "map_title": title,
    }


def explain_all(explainers, image, class_names, layer=None, head=None, k: int = 5) -> list[dict]:
    """:func:`explain` for every backbone; ``layer``/``head`` apply to the ViTs (a layer
    beyond a ViT's depth falls back to its last block)."""
    out = []
    for ex in explainers:
        lay = None if layer is None or ex.vit is None else min(layer, ex.depth - 1)
        hd = None if head is None or ex.vit is None else min(head, ex.num_heads - 1)
        out.append(explain(ex, image, class_names, lay, hd, k))
    return out


def examples(cfg, n: int = 3, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` test images of distinct breeds (seeded): [(path, true label), ...]."""
    from vitwatch import results

    ds = results.ResultsStore(cfg.results_dir).load_dataset()
    paths, labels = ds["test_paths"], np.asarray(ds["test_labels"])
    order = np.random.default_rng(seed).permutation(len(paths))
    chosen, seen = [], set()
    for i in order:
        if labels[i] not in seen:
            chosen.append((paths[i], int(labels[i])))
            seen.add(labels[i])
        if len(chosen) == n:
            break
    return chosen


def load_test_image(path) -> np.ndarray:
    """uint8 (H, W, 3) of a test image; a clear error when it cannot be decoded."""
    from vitwatch.data import images

    try:
        return images.decode(path)
    except ValueError as exc:
        raise ValueError(f"test image {path}: {exc}") from None


def image_from_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """An uploaded file's bytes -> uint8 (H, W, 3), decoded like every dataset image (EXIF
    rotation, grayscale/CMYK/alpha to RGB); ValueError naming the file when impossible."""
    from vitwatch.data import images

    suffix = Path(name).suffix or ".img"
    with tempfile.TemporaryDirectory(prefix="vitwatch-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(bytes(data))
        try:
            return images.decode(path)
        except ValueError as exc:
            raise ValueError(f"uploaded file {name!r} is not a usable image: {exc}") from None

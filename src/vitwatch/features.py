"""Backbone features of a dataset split, computed once, streamed in shards, cached on disk.

Protocol B (the linear probe) and the analyses need a frozen backbone's features of every
image; computing them is the expensive part (ViT-S/16 on 2 CPU cores: a few images per
second), so :func:`extract` streams the split through :func:`pipeline.batches` and
writes fixed-size shards atomically (temporary file + ``os.replace``) under
``<cache_dir>/features/``, keyed by everything that changes the features: the backbone's name
and ``cache_key`` (weights), the split's file list and labels, ``img_size``, the preprocessing
function, the decoding pipeline version and the view. View 0 is the evaluation view
(``cfg.eval_view``: each backbone's native aspect-preserving resize + centre crop, or a squash
to ``img_size``; see :func:`eval_view_spec`); view k > 0 is the k-th augmented view of seed
``cfg.seed`` (random resized crop + flip, its parameters part of the key). A frozen backbone in
inference mode is deterministic, so the features of an augmented view are computed once and
serve every protocol that shows that view to a head: epoch e of protocol A sees view e + 1,
protocol B's extra views are the first of them (:func:`view_seed`). Memory holds one shard at
a time, not the dataset; a run killed halfway resumes and computes only the missing shards.
The cache layout follows the sharded-and-resumable idea of ``tf.data``'s snapshot, kept to
plain ``.npy`` files.

Typical use::

    feats = features.extract(backbone, dogs.train, "train", cfg)    # float32 (N, D)
    feats, stats = features.extract_with_stats(backbone, dogs.train, "train", cfg)
    stats.compute_seconds, stats.computed_images                      # what it cost
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import fileio
from .data import images, pipeline, stanford_dogs

PIPELINE_VERSION = 1  # bump when decoding / resizing / augmentation change
SHARD_SIZE = 256  # images per shard file (the unit of resumption)
# The augmentation of views k > 0 (pipeline.random_resized_crop defaults + flip): part of
# the cache key, so that a change of these parameters cannot reuse stale features.
AUGMENTATION = "random_resized_crop(scale=(0.35, 1.0), ratio=(3/4, 4/3), bilinear) + hflip(0.5)"
# Each backbone's own evaluation view (timm's pretrained_cfg): resize the shorter side to
# img_size / crop_pct, then centre-crop img_size x img_size. ViT-S/16 (augreg_in21k_ft_in1k):
# crop_pct 0.9, bicubic [Steiner et al., 2022; timm vision_transformer.py]; ResNet-50
# (torchvision / timm tv_in1k): resize 256, crop 224 = 0.875, bilinear [He et al., 2016];
# BiT: crop_pct 1.0, bilinear (timm resnetv2.py). Matched on the backbone name's prefix.
NATIVE_VIEWS = {"vit": (0.9, "bicubic"), "resnet": (0.875, "bilinear"), "bit": (1.0, "bilinear")}
DEFAULT_NATIVE = (0.875, "bilinear")
EVAL_VIEWS = ("native", "squash")
# Backbone batches computed at once. One batch alone leaves cores idle on a small CPU (its
# single-threaded operations, the hand-over between batches); two in flight measured +7 %
# images/s for ViT-S/16 and +16 % for ResNet-50 on 2 cores (AMD EPYC), at no more CPU per image.
IN_FLIGHT = 2


@dataclass(frozen=True)
class ExtractStats:
    """What one :func:`extract_with_stats` call cost: images computed by this call and read
    from the cache, its seconds, and the seconds (and rate) of every run that computed this
    cache entry, resumed ones included."""

    split_name: str
    n_images: int
    computed_images: int  # backbone passes made by this call
    cached_images: int  # rows read from the cache instead
    seconds: float  # this call
    compute_seconds: float  # computing the whole entry, over every run that computed part of it
    images_per_second: float | None  # of that computation
    cache_dir: str


def forwarded(stream, forward: Callable, warm: bool = True, in_flight: int = IN_FLIGHT):
    """``(forward(x), idx)`` for each ``(x, idx)`` of ``stream``, in order, with up to
    ``in_flight`` batches computed at once (threads: TensorFlow releases the GIL). Unless
    ``warm``, the first batch runs alone: it traces the function and measures its fast path."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    it = iter(stream)
    if not warm:
        first = next(it, None)
        if first is None:
            return
        yield forward(first[0]), first[1]
    if in_flight <= 1:
        yield from ((forward(x), idx) for x, idx in it)
        return
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="forward") as pool:
        pending: deque = deque()
        for x, idx in it:
            pending.append((pool.submit(forward, x), idx))
            if len(pending) >= in_flight:
                future, done = pending.popleft()
                yield future.result(), done
        while pending:
            future, done = pending.popleft()
            yield future.result(), done


def _function_id(fn) -> str:
    """A stable name of the preprocessing function (module + qualified name)."""
    fn = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def view_seed(seed: int, view: int) -> int:
    """The augmentation seed of view ``view`` > 0 of run seed ``seed`` (0 for the eval view).

    Used by :func:`extract` and by the streamed protocol A alike, so that a cached view and a
    streamed one are the same pixels."""
    return int(np.random.SeedSequence([int(seed), int(view)]).generate_state(1)[0]) if view else 0


def eval_view_spec(backbone, eval_view: str = "native") -> dict:
    """The evaluation view of ``backbone``: ``{"kind": "squash"}`` (the image resized to
    ``img_size`` x ``img_size``, aspect ratio lost) or ``{"kind": "crop", "crop_pct",
    "interpolation"}`` (its native view, :data:`NATIVE_VIEWS`)."""
    if eval_view not in EVAL_VIEWS:
        raise ValueError(f"parameter eval_view must be one of {EVAL_VIEWS}, got {eval_view!r}")
    if eval_view == "squash":
        return {"kind": "squash"}
    name = str(getattr(backbone, "name", ""))
    crop_pct, interp = next(
        (v for k, v in NATIVE_VIEWS.items() if name.startswith(k)), DEFAULT_NATIVE
    )
    return {"kind": "crop", "crop_pct": crop_pct, "interpolation": interp}


def render_eval(
    path: str, size: int, spec: dict, log: images.BadImageLog | None = None
) -> np.ndarray | None:
    """One image in evaluation view ``spec``: uint8 ``(size, size, 3)``, None if undecodable.

    Crop: shorter side resized to ``floor(size / crop_pct)`` (timm's ``transforms_factory``
    rounding), then the central ``size`` x ``size`` square."""
    if spec["kind"] == "squash":
        return images.load_image(path, size, log=log)
    scaled = math.floor(size / spec["crop_pct"])
    img = images.load_image(path, log=log, min_side=scaled)
    if img is None:
        return None
    h, w = img.shape[:2]
    r = scaled / min(h, w)
    nw, nh = max(size, round(w * r)), max(size, round(h * r))
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[
        spec["interpolation"]
    ]
    img = np.asarray(Image.fromarray(img).resize((nw, nh), resample))
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return img[y0 : y0 + size, x0 : x0 + size]  # (S, S, 3)


def eval_batches(
    split,
    backbone,
    batch_size: int,
    eval_view: str = "native",
    *,
    indices=None,
    log: images.BadImageLog | None = None,
):
    """Stream ``(uint8 (B, S, S, 3), positions)`` of ``split`` in evaluation view ``eval_view``
    (what :func:`extract` computes as view 0, and what protocol C predicts on)."""
    spec = eval_view_spec(backbone, eval_view)
    size = int(backbone.img_size)
    if spec["kind"] == "squash":
        yield from pipeline.batches(split, size, batch_size, indices=indices, log=log)
        return
    from concurrent.futures import ThreadPoolExecutor

    order = np.arange(len(split)) if indices is None else np.asarray(indices, dtype=int)
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for chunk in chunks:
            out = list(pool.map(lambda i: render_eval(split.paths[i], size, spec, log), chunk))
            ok = [j for j, img in enumerate(out) if img is not None]
            if ok:
                yield np.stack([out[j] for j in ok]), chunk[ok].astype(np.int64)


def cache_key(
    backbone, split: stanford_dogs.Split, view: int, seed: int, eval_view: str = "native"
) -> dict:
    """Everything that changes the features of ``split`` (a JSON-able dict)."""
    return {
        "backbone": str(getattr(backbone, "name", type(backbone).__name__)),
        "weights": str(backbone.cache_key),
        "img_size": int(backbone.img_size),
        "preprocess": _function_id(backbone.preprocess),
        "split": split.fingerprint(),
        "n_images": len(split),
        "view": int(view),
        # the eval view (0) does not depend on the seed: share it across seeds
        "augment_seed": int(seed) if view > 0 else None,
        "augmentation": AUGMENTATION if view > 0 else eval_view_spec(backbone, eval_view),
        "pipeline": PIPELINE_VERSION,
    }


def _eval_view(cfg, eval_view: str | None) -> str:
    return eval_view or getattr(cfg, "eval_view", "native")


def cache_dir_for(
    backbone, split, split_name: str, cfg, view: int = 0, eval_view: str | None = None
) -> Path:
    key = cache_key(backbone, split, view, cfg.seed, _eval_view(cfg, eval_view))
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(
        ch if ch.isalnum() or ch in "-_." else "_"
        for ch in f"{key['backbone']}-{split_name}-view{view}"
    )
    return Path(cfg.cache_dir).expanduser() / "features" / f"{safe}-{digest}"


def extract(backbone, split: stanford_dogs.Split, split_name: str, cfg, view: int = 0, **kw):
    """Features ``float32 (N, D)`` of ``split`` (:func:`extract_with_stats` without the
    statistics)."""
    return extract_with_stats(backbone, split, split_name, cfg, view, **kw)[0]


def extract_with_stats(
    backbone,
    split: stanford_dogs.Split,
    split_name: str,
    cfg,
    view: int = 0,
    *,
    shard_size: int | None = None,
    log: images.BadImageLog | None = None,
    progress: bool = True,
    eval_view: str | None = None,
    batch_size: int | None = None,
    forward: Callable | None = None,
) -> tuple[np.ndarray, ExtractStats]:
    """Features ``float32 (N, D)`` of ``split`` (row i = ``split.paths[i]``), cached on disk,
    and what getting them cost (:class:`ExtractStats`).

    ``backbone``: a :class:`vitwatch.models.registry.Backbone`, or anything with its
    ``forward`` (uint8 images -> float32 features), ``preprocess``, ``img_size``,
    ``feature_dim`` and ``cache_key``. ``view`` 0 is the eval view (``eval_view``, default
    ``cfg.eval_view``: :func:`eval_batches`); ``view`` k > 0 the k-th augmented view (random
    resized crop + flip, seeded by :func:`view_seed` of ``cfg.seed`` and k). Batches of
    ``batch_size`` (default ``cfg.batch_size``) through ``forward`` (default
    ``backbone.forward``; a device policy's, :mod:`vitwatch.protocols.device`). An image that
    cannot be decoded
    gets a row of zeros and is recorded in ``log`` (``stanford_dogs.load`` already drops
    undecodable files, so this does not happen for its splits).
    """
    if view < 0:
        raise ValueError(f"extract: view must be >= 0, got {view}")
    shard_size = int(shard_size or SHARD_SIZE)
    batch_size = int(batch_size or cfg.batch_size)
    forward = forward or backbone.forward
    n = len(split)
    eval_view = _eval_view(cfg, eval_view)
    folder = cache_dir_for(backbone, split, split_name, cfg, view, eval_view)
    final, meta_path = folder / "features.npy", folder / "meta.json"
    key = cache_key(backbone, split, view, cfg.seed, eval_view)
    label = f"{key['backbone']} {split_name}" + (f" (view {view})" if view else "")
    t_start = time.perf_counter()
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if final.exists() and meta.get("complete"):
        feats = np.load(final)
        if feats.shape[0] == n:
            return feats, _stats(split_name, n, 0, t_start, meta, folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not meta:
        meta = {"key": key, "complete": False, "compute_seconds": 0.0, "computed_images": 0}
        fileio.write_json(meta_path, meta, indent=1)

    ranges = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    shard = lambda s, e: folder / f"shard_{s:07d}_{e:07d}.npy"  # noqa: E731
    missing = [(s, e) for s, e in ranges if not shard(s, e).exists()]
    n_missing = sum(e - s for s, e in missing)
    if missing:
        print(
            f"features {label}: {n} images, {n - n_missing} cached, {n_missing} to compute "
            f"-> {folder}",
            flush=True,
        )
    dim = getattr(backbone, "feature_dim", None)
    seed = view_seed(cfg.seed, view)
    log = images.BAD_IMAGES if log is None else log
    computed, compute_seconds, estimated = 0, 0.0, False
    bar = tqdm(
        total=n,
        initial=n - n_missing,
        unit="img",
        desc=label,
        mininterval=2.0,
        disable=not progress or not missing,
        file=sys.stderr,
    )
    try:
        for s, e in missing:
            feats, seen = None, np.zeros(e - s, bool)
            t0 = t_last = time.perf_counter()
            stream = (
                pipeline.batches(
                    split,
                    backbone.img_size,
                    batch_size,
                    augment=True,
                    seed=seed,
                    indices=range(s, e),
                    log=log,
                )
                if view > 0
                else eval_batches(
                    split, backbone, batch_size, eval_view, indices=range(s, e), log=log
                )
            )
            for out, idx in forwarded(stream, forward, warm=computed > 0):  # out: (B, D)
                if not np.all(np.isfinite(out)):
                    raise ValueError(
                        f"features {label}: non-finite features from the "
                        f"backbone (images {idx[0]}..{idx[-1]})"
                    )
                if feats is None:
                    dim = dim or out.shape[1]
                    if out.shape[1] != dim:
                        raise ValueError(
                            f"features {label}: backbone returned {out.shape[1]} "
                            f"features, its feature_dim says {dim}"
                        )
                    feats = np.zeros((e - s, dim), np.float32)
                feats[idx - s] = out
                seen[idx - s] = True
                computed += len(idx)
                bar.update(len(idx))
                t_prev, t_last = t_last, time.perf_counter()
                if not estimated and computed >= 2 * batch_size:
                    estimated = True  # rate of the 2nd batch: past the warm-up
                    if n_missing > computed:
                        rate = len(idx) / max(t_last - t_prev, 1e-9)
                        tqdm.write(
                            f"features {label}: estimated time left "
                            f"{_fmt((n_missing - computed) / rate)} "
                            f"({rate:.1f} images/s)"
                        )
            if feats is None:
                feats = np.zeros((e - s, dim or 0), np.float32)
            if not seen.all():
                bad = [split.paths[s + i] for i in np.flatnonzero(~seen)]
                warnings.warn(
                    f"features {label}: {len(bad)} undecodable image(s) got zero "
                    f"features: {bad[:5]}",
                    stacklevel=2,
                )
                bar.update(len(bad))
            fileio.save_npy(shard(s, e), feats)
            compute_seconds += time.perf_counter() - t0
    finally:
        bar.close()
        if computed:
            meta["compute_seconds"] = meta.get("compute_seconds", 0.0) + compute_seconds
            meta["computed_images"] = meta.get("computed_images", 0) + computed
            fileio.write_json(meta_path, meta, indent=1)

    try:
        feats = (
            np.concatenate([np.load(shard(s, e)) for s, e in ranges])
            if ranges
            else np.zeros((0, dim or 0), np.float32)
        )
    except FileNotFoundError:
        # another run sharing this cache (same key: the same features) finished first and
        # removed the shards after writing its whole file (atomically): take that file
        if not final.exists():
            raise
        feats = np.load(final)
        if feats.shape[0] != n:
            raise
    fileio.save_npy(final, feats)
    meta.update(complete=True, shape=list(feats.shape))
    fileio.write_json(meta_path, meta, indent=1)
    for s, e in ranges:
        shard(s, e).unlink(missing_ok=True)
    return feats, _stats(split_name, n, computed, t_start, meta, folder)


def _fmt(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def _stats(split_name, n, computed, t_start, meta, folder) -> ExtractStats:
    cs, ci = meta.get("compute_seconds", 0.0), meta.get("computed_images", 0)
    return ExtractStats(
        split_name=split_name,
        n_images=n,
        computed_images=computed,
        cached_images=n - computed,
        seconds=time.perf_counter() - t_start,
        compute_seconds=cs,
        images_per_second=(ci / cs) if cs else None,
        cache_dir=str(folder),
    )

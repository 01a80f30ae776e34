"""Backbone features of a dataset split, computed once, streamed in shards, cached on disk.

Protocol B (the linear probe) and the analyses need a frozen backbone's features of every
image; computing them is the expensive part (ViT-S/16 on 2 CPU cores: a few images per
second), so :func:`extract` streams the split through :func:`stanford_dogs.batches` and
writes fixed-size shards atomically (temporary file + ``os.replace``) under
``<cache_dir>/features/``, keyed by everything that changes the features: the backbone's name
and ``cache_key`` (weights), the split's file list and labels, ``img_size``, the preprocessing
function, the decoding pipeline version and the view (0 = the plain image; k > 0 = the k-th
augmented view, seeded by ``cfg.seed``). Memory holds one shard at a time, not the dataset; a
run killed halfway resumes and computes only the missing shards. The cache layout follows the
sharded-and-resumable idea of ``tf.data``'s snapshot, kept to plain ``.npy`` files.

Typical use::

    feats = features.extract(backbone, dogs.train, "train", cfg)    # float32 (N, D)
    features.LAST_STATS["images_per_second"]                         # for the results store
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import fileio
from .data import images, stanford_dogs

PIPELINE_VERSION = 1        # bump when decoding / resizing / augmentation change
SHARD_SIZE = 256            # images per shard file (the unit of resumption)

# Statistics of the last extract() call: split_name, n_images, computed_images,
# cached_images, seconds (this call), compute_seconds (all runs that computed this cache,
# resumed ones included), images_per_second (of the computation), cache_dir.
LAST_STATS: dict = {}


def _function_id(fn) -> str:
    """A stable name of the preprocessing function (module + qualified name)."""
    fn = getattr(fn, "func", fn)                      # functools.partial
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def cache_key(backbone, split: stanford_dogs.Split, view: int, seed: int) -> dict:
    """Everything that changes the features of ``split`` (a JSON-able dict)."""
    return {
        "backbone": str(getattr(backbone, "name", type(backbone).__name__)),
        "weights": str(backbone.cache_key),
        "img_size": int(backbone.img_size),
        "preprocess": _function_id(backbone.preprocess),
        "split": split.fingerprint(),
        "n_images": len(split),
        "view": int(view),
        # the plain view (0) does not depend on the seed: share it across seeds
        "augment_seed": int(seed) if view > 0 else None,
        "pipeline": PIPELINE_VERSION,
    }


def cache_dir_for(backbone, split, split_name: str, cfg, view: int = 0) -> Path:
    key = cache_key(backbone, split, view, cfg.seed)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_"
                   for ch in f"{key['backbone']}-{split_name}-view{view}")
    return Path(cfg.cache_dir).expanduser() / "features" / f"{safe}-{digest}"


def _forward(backbone, x: np.ndarray) -> np.ndarray:
    """uint8 (B, S, S, 3) -> float32 (B, D) through the backbone's preprocessing and model."""
    inputs = backbone.preprocess(x.astype(np.float32))
    model = backbone.model
    out = (model.predict_on_batch(inputs) if hasattr(model, "predict_on_batch")
           else model(inputs))
    if isinstance(out, dict):                          # TFSMLayer returns {name: tensor}
        if len(out) != 1:
            raise ValueError(f"backbone {getattr(backbone, 'name', '?')}: model returned "
                             f"several outputs {sorted(out)}; expected one feature tensor")
        out = next(iter(out.values()))
    out = np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float32)
    return out.reshape(len(x), -1)                     # (B, D)


def extract(backbone, split: stanford_dogs.Split, split_name: str, cfg, view: int = 0,
            *, shard_size: int | None = None, log: images.BadImageLog | None = None,
            progress: bool = True) -> np.ndarray:
    """Features ``float32 (N, D)`` of ``split`` (row i = ``split.paths[i]``), cached on disk.

    ``backbone``: anything with ``model`` (preprocessed input -> features), ``preprocess``
    (float32 0..255 -> model input), ``img_size``, ``feature_dim`` and ``cache_key``
    (see ``vitwatch.models.registry``). ``view`` 0 is the eval view (image resized to
    ``img_size``); ``view`` k > 0 the k-th augmented view (random resized crop + flip, seeded
    by ``cfg.seed`` and k). Batches of ``cfg.batch_size``. An image that cannot be decoded
    gets a row of zeros and is recorded in ``log`` (``stanford_dogs.load`` already drops
    undecodable files, so this does not happen for its splits).
    """
    if view < 0:
        raise ValueError(f"extract: view must be >= 0, got {view}")
    shard_size = int(shard_size or SHARD_SIZE)
    n = len(split)
    folder = cache_dir_for(backbone, split, split_name, cfg, view)
    final, meta_path = folder / "features.npy", folder / "meta.json"
    key = cache_key(backbone, split, view, cfg.seed)
    label = f"{key['backbone']} {split_name}" + (f" (view {view})" if view else "")
    t_start = time.perf_counter()
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if final.exists() and meta.get("complete"):
        feats = np.load(final)
        if feats.shape[0] == n:
            _stats(split_name, n, 0, t_start, meta, folder)
            return feats
    folder.mkdir(parents=True, exist_ok=True)
    if not meta:
        meta = {"key": key, "complete": False, "compute_seconds": 0.0, "computed_images": 0}
        fileio.write_json(meta_path, meta, indent=1)

    ranges = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    shard = lambda s, e: folder / f"shard_{s:07d}_{e:07d}.npy"     # noqa: E731
    missing = [(s, e) for s, e in ranges if not shard(s, e).exists()]
    n_missing = sum(e - s for s, e in missing)
    if missing:
        print(f"features {label}: {n} images, {n - n_missing} cached, {n_missing} to compute "
              f"-> {folder}", flush=True)
    dim = getattr(backbone, "feature_dim", None)
    seed = int(np.random.SeedSequence([cfg.seed, view]).generate_state(1)[0]) if view else 0
    log = images.BAD_IMAGES if log is None else log
    computed, compute_seconds, estimated = 0, 0.0, False
    bar = tqdm(total=n, initial=n - n_missing, unit="img", desc=label, mininterval=2.0,
               disable=not progress or not missing, file=sys.stderr)
    try:
        for s, e in missing:
            feats, seen = None, np.zeros(e - s, bool)
            t0 = t_last = time.perf_counter()
            for x, idx in stanford_dogs.batches(split, backbone.img_size, cfg.batch_size,
                                                augment=view > 0, seed=seed,
                                                indices=range(s, e), log=log):
                out = _forward(backbone, x)                             # (B, D)
                if not np.all(np.isfinite(out)):
                    raise ValueError(f"features {label}: non-finite features from the "
                                     f"backbone (images {idx[0]}..{idx[-1]})")
                if feats is None:
                    dim = dim or out.shape[1]
                    if out.shape[1] != dim:
                        raise ValueError(f"features {label}: backbone returned {out.shape[1]} "
                                         f"features, its feature_dim says {dim}")
                    feats = np.zeros((e - s, dim), np.float32)
                feats[idx - s] = out
                seen[idx - s] = True
                computed += len(idx)
                bar.update(len(idx))
                t_prev, t_last = t_last, time.perf_counter()
                if not estimated and computed >= 2 * cfg.batch_size:
                    estimated = True              # rate of the 2nd batch: past the warm-up
                    if n_missing > computed:
                        rate = len(idx) / max(t_last - t_prev, 1e-9)
                        tqdm.write(f"features {label}: estimated time left "
                                   f"{_fmt((n_missing - computed) / rate)} "
                                   f"({rate:.1f} images/s)")
            if feats is None:
                feats = np.zeros((e - s, dim or 0), np.float32)
            if not seen.all():
                bad = [split.paths[s + i] for i in np.flatnonzero(~seen)]
                warnings.warn(f"features {label}: {len(bad)} undecodable image(s) got zero "
                              f"features: {bad[:5]}")
                bar.update(len(bad))
            fileio.save_npy(shard(s, e), feats)
            compute_seconds += time.perf_counter() - t0
    finally:
        bar.close()
        if computed:
            meta["compute_seconds"] = meta.get("compute_seconds", 0.0) + compute_seconds
            meta["computed_images"] = meta.get("computed_images", 0) + computed
            fileio.write_json(meta_path, meta, indent=1)

    feats = np.concatenate([np.load(shard(s, e)) for s, e in ranges]) if ranges else \
        np.zeros((0, dim or 0), np.float32)
    fileio.save_npy(final, feats)
    meta.update(complete=True, shape=list(feats.shape))
    fileio.write_json(meta_path, meta, indent=1)
    for s, e in ranges:
        shard(s, e).unlink(missing_ok=True)
    _stats(split_name, n, computed, t_start, meta, folder)
    return feats


def _fmt(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def _stats(split_name, n, computed, t_start, meta, folder) -> None:
    LAST_STATS.clear()
    cs, ci = meta.get("compute_seconds", 0.0), meta.get("computed_images", 0)
    LAST_STATS.update(split_name=split_name, n_images=n, computed_images=computed,
                      cached_images=n - computed, seconds=time.perf_counter() - t_start,
                      compute_seconds=cs, images_per_second=(ci / cs) if cs else None,
                      cache_dir=str(folder))

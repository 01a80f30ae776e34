"""Which Stanford Dogs test images were ImageNet-1k (ILSVRC-2012) training images.

Stanford Dogs [Khosla et al., 2011] was built from ImageNet, and its file names keep the ImageNet
image IDs: ``Images/n02085620-Chihuahua/n02085620_10074.jpg`` is the image that ILSVRC-2012's
training set stores as ``train/n02085620/n02085620_10074.JPEG``. The overlap between the test
split and the training set of every ImageNet-1k checkpoint can therefore be *counted*, not
guessed: match the IDs (file stem without extension) against the list of the 1,281,167
ILSVRC-2012 training images.

The list comes from a stable public copy: ``train.txt`` inside ``caffe_ilsvrc12.tar.gz``, the
auxiliary archive BVLC/caffe's ``data/ilsvrc12/get_ilsvrc_aux.sh`` downloads (lines
``n01440764/n01440764_10026.JPEG 0``). No checksum of that archive is published, so it is
verified by content: exactly :data:`N_TRAIN_IMAGES` well-formed lines over 1000 synsets (the
size of ILSVRC-2012's training set [Russakovsky et al., 2015]). Alternatives a user can hand
in with the ``imagenet_train_list`` parameter: that ``train.txt`` or archive, any text file with
one training path per line, or the folder of an extracted ILSVRC-2012 training set. The smoke
profile generates a stand-in in the same format (:func:`write_standin`).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from vitwatch import fileio

RESOURCE = "ilsvrc12_aux"  # name in vitwatch.downloads.RESOURCES
N_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 training images [Russakovsky et al., 2015]
N_CLASSES = 1000
MEMBER = "train.txt"  # the member of caffe_ilsvrc12.tar.gz listing them
_ID = re.compile(r"^(n\d{8})_(\d+)$")


@dataclass(frozen=True)
class TrainList:
    """The ImageNet image IDs of ILSVRC-2012's training images, restricted to ``synsets``
    when they were given; ``n_lines`` and ``n_synsets`` count the whole list."""

    ids: frozenset[str]
    n_lines: int
    n_synsets: int
    source: str


def image_id(path: str) -> str:
    """``.../n02085620-Chihuahua/n02085620_10074.jpg`` -> ``n02085620_10074``."""
    stem = Path(str(path)).name.rsplit(".", 1)[0]
    if not _ID.match(stem):
        raise ValueError(
            f"{path}: not an ImageNet-style file name (expected "
            "n<8 digits>_<number>.<ext>, as in Stanford Dogs)"
        )
    return stem


def _parse_lines(lines, source: str, synsets: set[str] | None) -> TrainList:
    ids, seen_synsets, n = set(), set(), 0
    for i, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        rel = line.split()[0]  # "n015/n015_10026.JPEG 0"
        stem = rel.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        m = _ID.match(stem)
        if not m:
            raise ValueError(
                f"{source}, line {i}: {line[:80]!r} is not an ImageNet training "
                "path (expected n<8 digits>/n<8 digits>_<number>.JPEG)"
            )
        n += 1
        seen_synsets.add(m.group(1))
        if synsets is None or m.group(1) in synsets:
            ids.add(stem)
    return TrainList(frozenset(ids), n, len(seen_synsets), source)


def read_train_list(path, synsets=None) -> TrainList:
    """Parse a training list: ``caffe_ilsvrc12.tar.gz`` (its ``train.txt``), a text file with one
    training path per line, or the folder of an extracted training set (``<synset>/<id>.JPEG``).
    """
    path = Path(path).expanduser()
    wanted = set(synsets) if synsets is not None else None
    if not path.exists():
        raise FileNotFoundError(f"imagenet_train_list: {path} does not exist")
    if path.is_dir():
        names = (p.relative_to(path).as_posix() for p in sorted(path.glob("n*/*")) if p.is_file())
        return _parse_lines(names, str(path), wanted)
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            member = next(
                (m for m in tar.getmembers() if m.isfile() and Path(m.name).name == MEMBER), None
            )
            if member is None:
                raise ValueError(
                    f"{path}: archive has no {MEMBER} (expected BVLC/caffe's caffe_ilsvrc12.tar.gz)"
                )
            text = tar.extractfile(member).read().decode("utf-8", errors="strict")
        return _parse_lines(io.StringIO(text), f"{path}:{MEMBER}", wanted)
    with open(path, encoding="utf-8") as f:
        return _parse_lines(f, str(path), wanted)


def check_complete(tl: TrainList) -> None:
    """The published list must be the whole training set: the content check that stands in for
    the checksum nobody published."""
    if tl.n_lines != N_TRAIN_IMAGES or tl.n_synsets != N_CLASSES:
        raise ValueError(
            f"{tl.source}: lists {tl.n_lines:,} images of {tl.n_synsets} synsets; "
            f"ILSVRC-2012's training set has {N_TRAIN_IMAGES:,} images of "
            f"{N_CLASSES} synsets (truncated or a different list)"
        )


def load(cache_dir, list_path: str = "", synsets=None, generated: bool = False) -> TrainList:
    """The training list a profile uses: ``list_path`` when given (checked for completeness
    unless it is a folder or the generated stand-in), else the public copy through
    :func:`vitwatch.downloads.fetch` (content-checked)."""
    if list_path:
        tl = read_train_list(list_path, synsets)
        if not generated and not Path(list_path).expanduser().is_dir():
            check_complete(tl)
        return tl
    from vitwatch import downloads

    path = downloads.fetch(RESOURCE, cache_dir)
    tl = read_train_list(path, synsets)
    check_complete(tl)
    return tl


def required_resources(cfg) -> list[str]:
    """Downloads notebook 04's leakage count needs (names of ``downloads.RESOURCES``)."""
    return [] if cfg.dataset == "synthetic" or cfg.imagenet_train_list else [RESOURCE]


def for_profile(cfg, test_paths, synsets) -> tuple[TrainList, bool]:
    """The training list of ``cfg``'s profile and whether it is the generated stand-in: with the
    synthetic data (smoke) a stand-in listing half of the test images, under
    ``<cache_dir>/generated/``; otherwise ``cfg.imagenet_train_list`` or the public copy."""
    if cfg.dataset == "synthetic":
        key = hashlib.sha256("\n".join(map(image_id, test_paths)).encode()).hexdigest()[:12]
        path = Path(cfg.cache_dir).expanduser() / "generated" / f"ilsvrc12_{cfg.seed}_{key}.tar.gz"
        if not path.exists():
            write_standin(path, test_paths, fraction=0.5, seed=cfg.seed)
        return load(cfg.cache_dir, str(path), synsets, generated=True), True
    return load(cfg.cache_dir, cfg.imagenet_train_list, synsets), False


def seen_mask(test_paths, train: TrainList) -> np.ndarray:
    """(N,) bool: test image i was an ILSVRC-2012 training image."""
    return np.array([image_id(p) in train.ids for p in test_paths], dtype=bool)


def per_breed(seen: np.ndarray, labels, class_names) -> pd.DataFrame:
    """Per breed: test images, how many were ImageNet-1k training images, and the share."""
    import pandas as pd

    labels = np.asarray(labels)
    if seen.shape != labels.shape:
        raise ValueError(f"seen mask {seen.shape} and labels {labels.shape} differ")
    k = len(class_names)
    n = np.bincount(labels, minlength=k)
    s = np.bincount(labels, weights=seen.astype(np.float64), minlength=k).astype(int)
    share = np.divide(s, n, out=np.full(k, np.nan), where=n > 0)
    return pd.DataFrame(
        {
            "breed": list(class_names),
            "test images": n,
            "seen in ImageNet-1k train": s,
            "share": share,
        }
    )


def write_standin(
    path, test_paths, fraction: float = 0.5, seed: int = 0, n_other: int = 200
) -> Path:
    """A ``caffe_ilsvrc12.tar.gz`` stand-in for the smoke profile: its ``train.txt`` lists a
    ``fraction`` of the given test images (chosen with ``seed``) among ``n_other`` IDs of other
    synsets, in the real line format. Written atomically."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    ids = [image_id(p) for p in test_paths]
    chosen = [ids[i] for i in np.flatnonzero(rng.random(len(ids)) < fraction)]
    others = [f"n01440764_{100000 + i}" for i in range(n_other)]
    lines = [
        f"{i.split('_')[0]}/{i}.JPEG {j % N_CLASSES}\n"
        for j, i in enumerate(sorted(chosen + others))
    ]
    data = "".join(lines).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(MEMBER)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return fileio.atomic_write(path, lambda f: f.write(buf.getvalue()))

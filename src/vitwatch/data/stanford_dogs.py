"""Stanford Dogs (Khosla et al., 2011): download, extract once, official split, boxes.

Follows the layout that TFDS' ``stanford_dogs`` builder reads: three archives from the Stanford
Vision Lab (``images.tar`` -> ``Images/<synset>-<breed>/*.jpg``, ``lists.tar`` ->
``train_list.mat`` / ``test_list.mat`` with the official 12,000 / 8,580 split, ``annotation.tar``
-> ``Annotation/<synset>-<breed>/<image id>`` PASCAL VOC XML boxes). Archives come through
:func:`vitwatch.downloads.fetch` (timeouts, retries, resume, the published SHA-256s) or from
``cfg.dogs_archives_dir``, and are extracted safely (:func:`vitwatch.downloads.extract_tar`); the
``synthetic`` dataset generates the same three archives offline (:mod:`.synthetic`) and then
goes through exactly the same extraction, parsing and decoding code.

The class table is :mod:`.breeds`; batches of views of a split come from :mod:`.pipeline`.

Typical use::

    dogs = stanford_dogs.load(cfg)                  # DogsData: train / val / test splits
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import downloads, fileio
from . import breeds, decoded, images, synthetic

ARCHIVES = ("dogs_images", "dogs_lists", "dogs_annotation")  # names in downloads.RESOURCES
MARKER = ".complete"  # written last into an extracted folder
SCAN_FILE = "scan.json"  # decode check of each image, cached next to the marker


@dataclass
class Split:
    """One split: image paths, integer labels, boxes ``(k, 4)`` xyxy (PASCAL VOC, 1-based)
    in the pixels of the image as :func:`images.load_image` returns it (EXIF orientation
    applied: :func:`image_boxes`)."""

    paths: list[str]
    labels: np.ndarray
    boxes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> Split:
        idx = np.asarray(indices, dtype=int)
        return Split([self.paths[i] for i in idx], self.labels[idx], [self.boxes[i] for i in idx])

    def fingerprint(self) -> str:
        """Hash of the file list and labels (keys feature caches)."""
        h = hashlib.sha1()
        for p, y in zip(self.paths, self.labels.tolist()):
            h.update(f"{p}\t{y}\n".encode())
        return h.hexdigest()


@dataclass
class DogsData:
    train: Split
    val: Split
    test: Split
    class_names: list[str]
    synsets: list[str]
    imagenet_indices: np.ndarray
    source: str = "stanford_dogs"  # or "synthetic"
    root: str = ""  # the extracted folder
    bad_images: images.BadImageLog = field(default_factory=images.BadImageLog)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def dataset_record(self) -> dict:
        """The fields of the results store's ``dataset.json`` (CONTRIBUTING.md)."""
        return {
            "source": self.source,
            "class_names": list(self.class_names),
            "synsets": list(self.synsets),
            "imagenet_indices": [int(i) for i in self.imagenet_indices],
            "test_paths": list(self.test.paths),
            "test_labels": [int(y) for y in self.test.labels],
            "test_boxes": [b.tolist() for b in self.test.boxes],
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
            "bad_images": self.bad_images.to_list(),
        }


# --- preparing the files ---------------------------------------------------------------------


def extracted_dir(cfg) -> Path:
    """Where the archives of ``cfg.dataset`` are (or will be) extracted."""
    if cfg.dataset == "synthetic":
        return synthetic_root(cfg) / "extracted"
    return Path(cfg.cache_dir).expanduser() / "stanford_dogs"


def synthetic_root(cfg) -> Path:
    """Cache folder of the synthetic stand-in, keyed by the parameters that change it."""
    key = synthetic.params_key(
        cfg.synthetic_classes,
        cfg.synthetic_train_per_class,
        cfg.synthetic_test_per_class,
        cfg.img_size,
        cfg.seed,
    )
    return Path(cfg.cache_dir).expanduser() / "synthetic" / key


def _local_dir(cfg) -> str | None:
    if not cfg.dogs_archives_dir:
        return None
    local = Path(cfg.dogs_archives_dir).expanduser()
    if not local.is_dir():
        raise ValueError(f"parameter dogs_archives_dir: folder not found: {local}")
    return str(local)


def required_resources(cfg) -> list[str]:
    """Downloads ``load(cfg)`` will need (names of ``downloads.RESOURCES``), for preflight.

    Empty for the synthetic dataset, when the archives are already extracted, cached, or in
    ``cfg.dogs_archives_dir``.
    """
    if cfg.dataset == "synthetic" or (extracted_dir(cfg) / MARKER).exists():
        return []
    local = _local_dir(cfg)
    return [n for n in ARCHIVES if not downloads.is_cached(n, cfg.cache_dir, local)]


def _fetch_archives(cfg) -> dict[str, Path]:
    if cfg.dataset == "synthetic":
        root = synthetic_root(cfg)
        synthetic.generate(
            root,
            cfg.synthetic_classes,
            cfg.synthetic_train_per_class,
            cfg.synthetic_test_per_class,
            cfg.img_size,
            cfg.seed,
        )
        local = str(root)  # fetch() finds the generated archives there: no network
    else:
        local = _local_dir(cfg)
    out = {}
    for name in ARCHIVES:
        try:
            out[name] = downloads.fetch(
                name, cfg.cache_dir, local_dir=local, verify=cfg.dataset != "synthetic"
            )
        except downloads.DownloadError as exc:
            where = (
                f"\n(dogs_archives_dir={cfg.dogs_archives_dir!r} does not hold "
                f"{downloads.RESOURCES[name].fname})"
                if local
                else ""
            )
            raise downloads.DownloadError(f"Stanford Dogs: {exc}{where}") from None
    return out


def extract_archives(archives: Sequence[Path], dest: Path) -> Path:
    """Extract ``archives`` into ``dest`` once, atomically (temp folder, marker, rename)."""
    dest = Path(dest)
    if (dest / MARKER).exists():
        return dest
    tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for archive in archives:
            try:
                downloads.extract_tar(archive, tmp)  # filter="data" or its equivalent
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise ValueError(
                    f"{archive}: not a readable tar archive ({exc}); delete it "
                    "and download it again"
                ) from None
        (tmp / MARKER).write_text(json.dumps([str(a) for a in archives]))
        if dest.exists():  # an older, incomplete extraction
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if (dest / MARKER).exists():  # another process finished first
            return dest
        raise
    return dest


def prepare(cfg) -> Path:
    """Fetch (or generate) and extract the archives; return the extracted folder."""
    dest = extracted_dir(cfg)
    if (dest / MARKER).exists():
        return dest
    archives = _fetch_archives(cfg)
    return extract_archives([archives[n] for n in ARCHIVES], dest)


# --- parsing ---------------------------------------------------------------------------------


def _find(root: Path, name: str) -> Path:
    path = root / name
    if path.exists():
        return path
    found = sorted(root.rglob(name))
    if not found:
        raise ValueError(f"{root}: {name} not found in the extracted archives")
    return found[0]


def _strings(cell) -> list[str]:
    """MATLAB cell array of strings (as scipy.io.loadmat returns it) -> list of str."""
    out = []
    for item in np.asarray(cell, dtype=object).ravel():
        while isinstance(item, np.ndarray):
            item = item.ravel()[0] if item.size else ""
        out.append(str(item))
    return out


def read_list(path: Path) -> tuple[list[str], np.ndarray]:
    """An official list file -> (relative image paths, 1-based labels)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the .mat list ({exc})") from None
    for key in ("file_list", "labels"):
        if key not in mat:
            raise ValueError(f"{path}: field {key!r} missing (has {sorted(mat)})")
    files = _strings(mat["file_list"])
    labels = np.asarray(mat["labels"]).ravel().astype(int)
    if len(files) != len(labels):
        raise ValueError(f"{path}: {len(files)} files but {len(labels)} labels")
    return files, labels


def read_boxes(xml_path: Path) -> np.ndarray:
    """PASCAL VOC XML -> float32 ``(k, 4)`` boxes ``[xmin, ymin, xmax, ymax]`` (pixels)."""
    if not xml_path.exists():
        return np.zeros((0, 4), np.float32)
    try:
        root = ET.parse(xml_path).getroot()
        boxes = [
            [float(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
            for obj in root.iter("object")
        ]
    except (ET.ParseError, AttributeError, TypeError, ValueError):
        return np.zeros((0, 4), np.float32)
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def image_boxes(xml_path: Path, image_path: Path) -> np.ndarray:
    """The boxes of one image in the frame of its pixels as :func:`images.load_image` returns
    them. The XML's boxes are drawn on the stored pixels, so a photo with an EXIF orientation
    (2-8) gets its boxes transposed like its pixels (:func:`images.orient_boxes`)."""
    boxes = read_boxes(xml_path)
    if len(boxes):
        try:
            orientation, stored = images.header(image_path)
        except (FileNotFoundError, ValueError):  # undecodable: never loaded anyway
            return boxes
        boxes = images.orient_boxes(boxes, orientation, stored)
    return boxes


class _Scanner:
    """Decode check of each image, cached in ``<root>/scan.json`` (relative path -> reason)."""

    def __init__(self, root: Path):
        self.root, self.path = root, root / SCAN_FILE
        self.results: dict[str, str] = {}
        if self.path.exists():
            try:
                self.results = json.loads(self.path.read_text())
            except ValueError:
                self.results = {}
        self.dirty = False

    def check(self, rels: Sequence[str]) -> list[str]:
        """Reasons ('' = fine) for ``rels`` (relative to Images/), decoding the unknown ones."""
        todo = [r for r in rels if r not in self.results]
        if todo:
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                reasons = pool.map(images.check_image, [self.root / "Images" / r for r in todo])
                if len(todo) > 500:  # the first load of the full dataset: ~1 min
                    from tqdm import tqdm

                    reasons = tqdm(
                        reasons,
                        total=len(todo),
                        unit="img",
                        mininterval=2.0,
                        desc="checking images (once)",
                    )
                for r, why in zip(todo, reasons):
                    self.results[r] = why or ""
            self.dirty = True
        return [self.results[r] for r in rels]

    def save(self) -> None:
        if self.dirty:
            fileio.write_json(self.path, self.results)


def _select(
    rels: list[str],
    labels: np.ndarray,
    per_class: int,
    rng: np.random.Generator,
    scanner: _Scanner,
    bad: images.BadImageLog,
    root: Path,
) -> list[int]:
    """Indices kept: per class, ``per_class`` decodable images in a seeded order (0 = all)."""
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if per_class > 0:
            idx = rng.permutation(idx)
        chosen = []
        # Check in chunks, so that only about per_class images are decoded per class.
        step = per_class + 2 if per_class > 0 else len(idx)
        for start in range(0, len(idx), step):
            chunk = idx[start : start + step]
            for i, why in zip(chunk, scanner.check([rels[i] for i in chunk])):
                if why:
                    bad.add(root / "Images" / rels[i], why)
                elif per_class <= 0 or len(chosen) < per_class:
                    chosen.append(int(i))
            if per_class > 0 and len(chosen) >= per_class:
                break
        keep.extend(chosen)
    return sorted(keep)


def _val_split(labels: np.ndarray, fraction: float, rng: np.random.Generator):
    """Stratified split of positions: per class round(fraction * n), >= 1, < n when n >= 2."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"parameter val_fraction must be in [0, 1), got {fraction}")
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return sorted(train), sorted(val)


def parse(root: Path, cfg, source: str = "stanford_dogs") -> DogsData:
    """Read the extracted layout: official lists, class folders, boxes; subset and split."""
    root = Path(root)
    bad = images.BadImageLog()
    scanner = _Scanner(root)
    lists = {name: read_list(_find(root, f"{name}_list.mat")) for name in ("train", "test")}
    folders = sorted({rel.split("/")[0] for files, _ in lists.values() for rel in files})
    for f in folders:
        if not breeds.FOLDER_RE.match(f):
            raise ValueError(f"{root}: list entry folder {f!r} is not <synset>-<breed>")
    index = {f: i for i, f in enumerate(folders)}
    folder_of_label: dict[int, str] = {}
    for name, (files, mat_labels) in lists.items():
        for rel, y in zip(files, mat_labels.tolist()):
            if folder_of_label.setdefault(y, rel.split("/")[0]) != rel.split("/")[0]:
                raise ValueError(
                    f"{root}/{name}_list.mat: label {y} is used for both "
                    f"{folder_of_label[y]} and {rel.split('/')[0]}"
                )
    seeds = np.random.SeedSequence(cfg.seed).spawn(3)
    per_class = {"train": cfg.train_per_class, "test": cfg.test_per_class}
    splits = {}
    for k, (name, (files, _)) in enumerate(lists.items()):
        labels = np.array([index[rel.split("/")[0]] for rel in files], dtype=np.int64)
        keep = _select(
            files, labels, per_class[name], np.random.default_rng(seeds[k]), scanner, bad, root
        )
        rels = [files[i] for i in keep]
        splits[name] = Split(
            paths=[str(root / "Images" / r) for r in rels],
            labels=labels[keep],
            boxes=[
                image_boxes(root / "Annotation" / r.rsplit(".", 1)[0], root / "Images" / r)
                for r in rels
            ],
        )
    scanner.save()
    tr, va = _val_split(splits["train"].labels, cfg.val_fraction, np.random.default_rng(seeds[2]))
    synsets = [f.split("-", 1)[0] for f in folders]
    return DogsData(
        train=splits["train"].subset(tr),
        val=splits["train"].subset(va),
        test=splits["test"],
        class_names=[breeds.breed_name(f) for f in folders],
        synsets=synsets,
        imagenet_indices=np.array([breeds.IMAGENET_INDEX.get(s, -1) for s in synsets], np.int64),
        source=source,
        root=str(root),
        bad_images=bad,
    )


def load(cfg) -> DogsData:
    """Stanford Dogs (or its synthetic stand-in, ``cfg.dataset == "synthetic"``) as splits.

    Official train/test lists, subset to ``cfg.train_per_class`` / ``cfg.test_per_class``
    images per class (0 = all; seeded), a stratified ``cfg.val_fraction`` of train held out
    as validation, undecodable images dropped and listed in ``bad_images``.
    """
    if cfg.dataset not in ("stanford_dogs", "synthetic"):
        raise ValueError(f"parameter dataset: unknown dataset {cfg.dataset!r}")
    root = prepare(cfg)
    data = parse(root, cfg, source=cfg.dataset)
    for split in (data.train, data.val, data.test):  # decode once, shared by every view
        decoded.register(split.paths, 2 * cfg.img_size, cfg.cache_dir)
    return data

"""Stanford Dogs (Khosla et al., 2011): download, extract once, official split, boxes, batches.

Follows the layout that TFDS' ``stanford_dogs`` builder reads: three archives from the Stanford
Vision Lab (``images.tar`` -> ``Images/<synset>-<breed>/*.jpg``, ``lists.tar`` ->
``train_list.mat`` / ``test_list.mat`` with the official 12,000 / 8,580 split, ``annotation.tar``
-> ``Annotation/<synset>-<breed>/<image id>`` PASCAL VOC XML boxes). Archives come through
:func:`vitwatch.downloads.fetch` (timeouts, retries, resume, the published SHA-256s) or from
``cfg.dogs_archives_dir``, and are extracted safely (:func:`vitwatch.downloads.extract_tar`); the
``synthetic`` dataset generates the same three archives offline (:mod:`.synthetic`) and then
goes through exactly the same extraction, parsing and decoding code.

Typical use::

    dogs = stanford_dogs.load(cfg)                  # DogsData: train / val / test splits
    for x, idx in stanford_dogs.batches(dogs.train, 224, 32, augment=True, seed=0):
        ...                                         # x: uint8 (B, 224, 224, 3)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .. import downloads, fileio
from . import decoded, images

ARCHIVES = ("dogs_images", "dogs_lists", "dogs_annotation")  # names in downloads.RESOURCES
MARKER = ".complete"  # written last into an extracted folder
SCAN_FILE = "scan.json"  # decode check of each image, cached next to the marker

# The 120 class folders of Images/ (WordNet synset + breed name), in sorted order.
FOLDERS = """
n02085620-Chihuahua n02085782-Japanese_spaniel n02085936-Maltese_dog n02086079-Pekinese
n02086240-Shih-Tzu n02086646-Blenheim_spaniel n02086910-papillon n02087046-toy_terrier
n02087394-Rhodesian_ridgeback n02088094-Afghan_hound n02088238-basset n02088364-beagle
n02088466-bloodhound n02088632-bluetick n02089078-black-and-tan_coonhound n02089867-Walker_hound
n02089973-English_foxhound n02090379-redbone n02090622-borzoi n02090721-Irish_wolfhound
n02091032-Italian_greyhound n02091134-whippet n02091244-Ibizan_hound n02091467-Norwegian_elkhound
n02091635-otterhound n02091831-Saluki n02092002-Scottish_deerhound n02092339-Weimaraner
n02093256-Staffordshire_bullterrier n02093428-American_Staffordshire_terrier
n02093647-Bedlington_terrier n02093754-Border_terrier n02093859-Kerry_blue_terrier
n02093991-Irish_terrier n02094114-Norfolk_terrier n02094258-Norwich_terrier
n02094433-Yorkshire_terrier n02095314-wire-haired_fox_terrier n02095570-Lakeland_terrier
n02095889-Sealyham_terrier n02096051-Airedale n02096177-cairn n02096294-Australian_terrier
n02096437-Dandie_Dinmont n02096585-Boston_bull n02097047-miniature_schnauzer
n02097130-giant_schnauzer n02097209-standard_schnauzer n02097298-Scotch_terrier
n02097474-Tibetan_terrier n02097658-silky_terrier n02098105-soft-coated_wheaten_terrier
n02098286-West_Highland_white_terrier n02098413-Lhasa n02099267-flat-coated_retriever
n02099429-curly-coated_retriever n02099601-golden_retriever n02099712-Labrador_retriever
n02099849-Chesapeake_Bay_retriever n02100236-German_short-haired_pointer n02100583-vizsla
n02100735-English_setter n02100877-Irish_setter n02101006-Gordon_setter
n02101388-Brittany_spaniel n02101556-clumber n02102040-English_springer
n02102177-Welsh_springer_spaniel n02102318-cocker_spaniel n02102480-Sussex_spaniel
n02102973-Irish_water_spaniel n02104029-kuvasz n02104365-schipperke n02105056-groenendael
n02105162-malinois n02105251-briard n02105412-kelpie n02105505-komondor
n02105641-Old_English_sheepdog n02105855-Shetland_sheepdog n02106030-collie
n02106166-Border_collie n02106382-Bouvier_des_Flandres n02106550-Rottweiler
n02106662-German_shepherd n02107142-Doberman n02107312-miniature_pinscher
n02107574-Greater_Swiss_Mountain_dog n02107683-Bernese_mountain_dog n02107908-Appenzeller
n02108000-EntleBucher n02108089-boxer n02108422-bull_mastiff n02108551-Tibetan_mastiff
n02108915-French_bulldog n02109047-Great_Dane n02109525-Saint_Bernard n02109961-Eskimo_dog
n02110063-malamute n02110185-Siberian_husky n02110627-affenpinscher n02110806-basenji
n02110958-pug n02111129-Leonberg n02111277-Newfoundland n02111500-Great_Pyrenees
n02111889-Samoyed n02112018-Pomeranian n02112137-chow n02112350-keeshond
n02112706-Brabancon_griffon n02113023-Pembroke n02113186-Cardigan n02113624-toy_poodle
n02113712-miniature_poodle n02113799-standard_poodle n02113978-Mexican_hairless
n02115641-dingo n02115913-dhole n02116738-African_hunting_dog
""".split()

# ImageNet-1k class index of each synset (position in the sorted list of the 1000 synsets).
IMAGENET_INDEX: dict[str, int] = dict(
    zip(
        [f.split("-", 1)[0] for f in FOLDERS],
        list(range(151, 251)) + list(range(252, 269)) + [273, 274, 275],
    )
)

_FOLDER_RE = re.compile(r"^(n\d{8})-(.+)$")


def breed_name(folder: str) -> str:
    """``n02085620-Chihuahua`` -> ``Chihuahua``; ``n02099601-golden_retriever`` ->
    ``Golden Retriever`` (underscores to spaces, lower-case words capitalised)."""
    m = _FOLDER_RE.match(folder)
    if not m:
        raise ValueError(f"not a Stanford Dogs class folder (n<8 digits>-<breed>): {folder!r}")
    words = m.group(2).replace("_", " ").split()
    return " ".join(w[0].upper() + w[1:] if w[0].islower() else w for w in words)


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
    from . import synthetic

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
        from . import synthetic

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
        if not _FOLDER_RE.match(f):
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
        class_names=[breed_name(f) for f in folders],
        synsets=synsets,
        imagenet_indices=np.array([IMAGENET_INDEX.get(s, -1) for s in synsets], np.int64),
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


# --- batches ---------------------------------------------------------------------------------


def random_resized_crop(
    img: np.ndarray, size: int, rng: np.random.Generator, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3)
) -> np.ndarray:
    """Inception-style crop (Szegedy et al., 2015; torchvision's RandomResizedCrop): a random
    area share in ``scale`` and aspect ratio in ``ratio``, resized to ``(size, size)``."""
    h, w = img.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            break
    else:  # fall back to the central square
        cw = ch = min(h, w)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = Image.fromarray(img[y0 : y0 + ch, x0 : x0 + cw])
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def _view(
    path: str, i: int, img_size: int, augment: bool, seed: int, log: images.BadImageLog | None
) -> np.ndarray | None:
    if not augment:
        return images.load_image(path, img_size, log=log)  # (S, S, 3)
    img = images.load_image(path, log=log, min_side=2 * img_size)
    if img is None:
        return None
    rng = np.random.default_rng([seed, i])  # per image: independent of batching
    img = random_resized_crop(img, img_size, rng)
    return img[:, ::-1] if rng.random() < 0.5 else img


def batches(
    split: Split,
    img_size: int,
    batch_size: int,
    augment: bool = False,
    seed: int = 0,
    *,
    shuffle: bool = False,
    indices: Sequence[int] | None = None,
    log: images.BadImageLog | None = None,
    workers: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``(uint8 (B, S, S, 3), positions in split)`` with ``S = img_size``.

    Eval view (``augment=False``): the image resized to S x S. Augmented view: random resized
    crop + horizontal flip, seeded per image by ``(seed, position)``, so a view does not depend
    on the batch size. ``indices``: only these positions (default: all); ``shuffle``: seeded
    order. Undecodable images are skipped and recorded in ``log`` (default
    ``images.BAD_IMAGES``). Decoding runs in threads, one batch ahead of the consumer.
    """
    if img_size <= 0 or batch_size <= 0:
        raise ValueError(
            f"batches: img_size and batch_size must be > 0, got {img_size}, {batch_size}"
        )
    order = np.arange(len(split)) if indices is None else np.asarray(indices, dtype=int)
    if shuffle:
        order = np.random.default_rng(seed).permutation(order)
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    workers = workers or min(4, os.cpu_count() or 1)

    def submit(pool, chunk):
        return [
            pool.submit(_view, split.paths[i], int(i), img_size, augment, seed, log) for i in chunk
        ]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = submit(pool, chunks[0]) if chunks else None
        for k, chunk in enumerate(chunks):
            results = [f.result() for f in pending]
            if k + 1 < len(chunks):
                pending = submit(pool, chunks[k + 1])  # prefetch the next batch
            ok = [j for j, img in enumerate(results) if img is not None]
            if ok:
                yield (
                    np.stack([results[j] for j in ok]),  # (B, S, S, 3)
                    chunk[ok].astype(np.int64),
                )

"""A small, learnable, offline stand-in for Stanford Dogs, written as its three real archives.

:func:`generate` writes ``images.tar`` (``Images/<synset>-<breed>/<synset>_<n>.jpg``, real
synsets and breed folder names), ``lists.tar`` (``file_list.mat``, ``train_list.mat``,
``test_list.mat`` with the official fields ``file_list``, ``annotation_list``, ``labels``) and
``annotation.tar`` (``Annotation/<synset>-<breed>/<synset>_<n>``, PASCAL VOC XML), so that the
``smoke`` profile goes through the very extraction, parsing and decoding code of the real data
(:mod:`vitwatch.data.stanford_dogs`).

Learnable by design (DESIGN.md, "Offline and CI"): each class is one object (a shape, a colour
and a texture) pasted at a random place and scale on a cluttered background; its box is the
annotation. Colour and shape survive global pooling, so even random-weight conv features with a
linear probe separate the classes, and a label or preprocessing bug shows as chance accuracy.
With ``bad_images=True`` a few files mimic a scraped dataset: an empty file and truncated JPEGs
(undecodable: skipped and reported), plus grayscale, CMYK, PNG-named-.jpg files and photos
stored in another orientation with an EXIF Orientation tag (2-8) saying how to show them
upright (decodable: handled by :mod:`vitwatch.data.images`). As in the real annotations, the
box of such a photo is written in the frame of its *stored* pixels (and ``<size>`` is the
stored size); the manifest keeps the upright box, the one that must come out of loading.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .breeds import FOLDERS, breed_name

VERSION = 2  # bump when the images change: it is part of the cache key
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon")
COLOURS = (
    (220, 40, 40),
    (40, 170, 60),
    (40, 80, 220),
    (235, 200, 30),
    (200, 50, 200),
    (30, 200, 210),
    (245, 130, 20),
    (245, 245, 245),
)
TEXTURES = ("solid", "stripes", "checker", "dots")


def class_folders(num_classes: int) -> list[str]:
    """``num_classes`` real class folders spread over the 120 breeds (sorted)."""
    if not 2 <= num_classes <= len(FOLDERS):
        raise ValueError(
            f"parameter synthetic_classes must be in [2, {len(FOLDERS)}], got {num_classes}"
        )
    picks = np.unique(np.linspace(0, len(FOLDERS) - 1, num_classes).round().astype(int))
    return [FOLDERS[i] for i in picks]


def class_style(c: int) -> tuple[str, tuple[int, int, int], str]:
    """(shape, colour, texture) of class ``c``; distinct for every c < 256."""
    shape = c % 8
    colour = (c % 8 + (c // 8) % 8) % 8
    texture = (c % 4 + c // 64) % 4
    return SHAPES[shape], COLOURS[colour], TEXTURES[texture]


def params_key(
    num_classes: int,
    train_per_class: int,
    test_per_class: int,
    img_size: int,
    seed: int,
    bad_images: bool = True,
) -> str:
    """Cache-folder name of a parameter set."""
    text = json.dumps(
        [VERSION, num_classes, train_per_class, test_per_class, img_size, seed, bad_images]
    )
    return (
        f"c{num_classes}-tr{train_per_class}-te{test_per_class}-s{img_size}-seed{seed}-"
        + hashlib.sha1(text.encode()).hexdigest()[:8]
    )


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple]:
    n = {"triangle": 3, "square": 4, "diamond": 4, "hexagon": 6}.get(shape)
    if shape == "star":
        ang = rot + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    else:
        ang = rot + np.arange(n) * 2 * np.pi / n + (np.pi / 4 if shape == "square" else 0)
        rad = np.full(n, r)
    return list(zip(cx + rad * np.cos(ang), cy + rad * np.sin(ang)))


def _mask(
    shape: str, size: tuple[int, int], box: tuple[int, int, int, int], rng: np.random.Generator
) -> Image.Image:
    """Binary 'L' mask of the object within ``box`` (x0, y0, x1, y1)."""
    mask = Image.new("L", size, 0)
    d = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        d.ellipse(box, fill=255)
    elif shape == "ring":
        d.ellipse(box, fill=255)
        k = 0.45 * r
        d.ellipse((cx - k, cy - k, cx + k, cy + k), fill=0)
    elif shape == "cross":
        t = 0.3 * r
        d.rectangle((x0, cy - t, x1, cy + t), fill=255)
        d.rectangle((cx - t, y0, cx + t, y1), fill=255)
    else:
        rot = rng.uniform(-0.25, 0.25) + (-np.pi / 2 if shape in ("triangle", "star") else 0)
        d.polygon(_polygon(shape, cx, cy, r, rot), fill=255)
    return mask


def _texture(texture: str, size: tuple[int, int], colour, rng) -> np.ndarray:
    w, h = size
    base = np.clip(np.array(colour) + rng.integers(-20, 21, 3), 0, 255).astype(np.float32)
    img = np.broadcast_to(base, (h, w, 3)).copy()  # (H, W, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    period = max(4, int(min(w, h) * rng.uniform(0.05, 0.09)))
    if texture == "stripes":
        pattern = ((xx + yy) // period) % 2 == 0
    elif texture == "checker":
        pattern = ((xx // period) + (yy // period)) % 2 == 0
    elif texture == "dots":
        pattern = (xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2 < (
            period / 3
        ) ** 2
    else:
        pattern = np.zeros((h, w), bool)
    img[pattern] *= 0.35
    return img


def _background(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """Low-frequency muted colour field plus random clutter strokes."""
    w, h = size
    coarse = rng.uniform(70, 190, (4, 4, 3)).astype(np.uint8)
    bg = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    d = ImageDraw.Draw(bg)
    for _ in range(int(rng.integers(6, 14))):
        c = tuple(int(v) for v in rng.uniform(60, 200, 3))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        dx, dy = rng.uniform(-0.3, 0.3) * w, rng.uniform(-0.3, 0.3) * h
        if rng.random() < 0.5:
            d.line((x, y, x + dx, y + dy), fill=c, width=int(rng.integers(1, 4)))
        else:
            r = rng.uniform(0.02, 0.08) * min(w, h)
            d.ellipse((x - r, y - r, x + r, y + r), fill=c)
    noise = rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(bg, np.float32) + noise, 0, 255).astype(np.uint8))


def render(c: int, img_size: int, rng: np.random.Generator) -> tuple[Image.Image, list[int]]:
    """One image of class ``c`` (sides around 1.3-2x ``img_size``) and its xyxy box."""
    w = int(img_size * rng.uniform(1.3, 2.0))
    h = int(img_size * rng.uniform(1.3, 2.0))
    shape, colour, texture = class_style(c)
    img = _background((w, h), rng)
    side = int(min(w, h) * rng.uniform(0.4, 0.75))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    mask = _mask(shape, (w, h), (x0, y0, x0 + side - 1, y0 + side - 1), rng)
    obj = Image.fromarray(_texture(texture, (w, h), colour, rng).astype(np.uint8))
    img.paste(obj, mask=mask.filter(ImageFilter.GaussianBlur(0.6)))
    bx0, by0, bx1, by1 = mask.getbbox()
    return img, [bx0 + 1, by0 + 1, bx1, by1]  # VOC boxes are 1-based, inclusive


def _voc_xml(folder: str, stem: str, size: tuple[int, int], box: list[int]) -> bytes:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = folder.split("-")[0][1:]
    ET.SubElement(ann, "filename").text = stem
    ET.SubElement(ET.SubElement(ann, "source"), "database").text = "vitwatch synthetic"
    sz = ET.SubElement(ann, "size")
    for k, v in zip(("width", "height", "depth"), (*size, 3)):
        ET.SubElement(sz, k).text = str(v)
    ET.SubElement(ann, "segment").text = "0"
    obj = ET.SubElement(ann, "object")
    ET.SubElement(obj, "name").text = breed_name(folder)
    ET.SubElement(obj, "pose").text = "Unspecified"
    ET.SubElement(obj, "truncated").text = "0"
    ET.SubElement(obj, "difficult").text = "0"
    bb = ET.SubElement(obj, "bndbox")
    for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
        ET.SubElement(bb, k).text = str(v)
    return ET.tostring(ann)


# EXIF orientation -> the transpose that stores an upright picture so that the tag's own
# transpose (images.EXIF_TRANSPOSE) shows it upright again: 6 and 8 are each other's inverse.
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_view(img: Image.Image, box: list[int], orientation: int):
    """(stored pixels, box on them) of an upright ``img`` saved with EXIF ``orientation``.

    The box (VOC, 1-based inclusive) is carried by transposing a mask of it with Pillow, not
    by :func:`vitwatch.data.images.orient_boxes`, so that the tests compare two independent
    computations.
    """
    mask = Image.new("L", img.size, 0)
    mask.paste(255, (box[0] - 1, box[1] - 1, box[2], box[3]))
    x0, y0, x1, y1 = mask.transpose(_STORE[orientation]).getbbox()
    return img.transpose(_STORE[orientation]), [x0 + 1, y0 + 1, x1, y1]


def _encode(img: Image.Image, kind: str) -> bytes:
    """JPEG bytes of ``img``, or one of the awkward files a scraped dataset holds; for
    ``exif_<n>``, ``img`` holds the stored pixels (:func:`stored_view`)."""
    buf = io.BytesIO()
    if kind == "grayscale":
        img.convert("L").save(buf, "JPEG", quality=90)
    elif kind == "cmyk":
        img.convert("CMYK").save(buf, "JPEG", quality=90)
    elif kind == "png_as_jpg":
        img.save(buf, "PNG")
    elif kind.startswith("exif_"):  # EXIF Orientation tag 2-8
        exif = Image.Exif()
        exif[0x0112] = int(kind[5:])
        img.save(buf, "JPEG", quality=90, exif=exif)
    else:
        img.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    if kind == "empty":
        return b""
    if kind == "truncated":
        return data[: len(data) // 2]
    return data


# (split, class slot, image slot) -> kind of awkward file; EXIF orientations in both splits
# (test images carry the boxes of notebook 04's localisation)
ODD_FILES = {
    ("train", 0, 0): "empty",
    ("train", 1, 0): "truncated",
    ("test", 0, 0): "truncated",
    ("train", 2, 1): "grayscale",
    ("train", 3, 1): "cmyk",
    ("train", 4, 1): "png_as_jpg",
    ("train", 5, 1): "exif_6",
    ("train", 6, 1): "exif_2",
    ("train", 7, 1): "exif_4",
    ("test", 1, 1): "exif_8",
    ("test", 2, 1): "exif_3",
    ("test", 0, 1): "exif_5",
    ("test", 1, 0): "exif_7",
}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_600_000_000, 0o644
    tar.addfile(info, io.BytesIO(data))


def _mat_bytes(files: list[str], labels: list[int]) -> bytes:
    import scipy.io

    cell = np.empty((len(files), 1), dtype=object)
    ann = np.empty((len(files), 1), dtype=object)
    for i, f in enumerate(files):
        cell[i, 0] = np.array([f])
        ann[i, 0] = np.array([f.rsplit(".", 1)[0]])
    buf = io.BytesIO()
    scipy.io.savemat(
        buf,
        {
            "file_list": cell,
            "annotation_list": ann,
            "labels": np.asarray(labels, np.float64).reshape(-1, 1),
        },
    )
    return buf.getvalue()


def generate(
    root: str | os.PathLike,
    num_classes: int,
    train_per_class: int,
    test_per_class: int,
    img_size: int,
    seed: int,
    bad_images: bool = True,
) -> Path:
    """Write ``images.tar``, ``lists.tar``, ``annotation.tar`` into ``root`` (once).

    A manifest ``synthetic.json`` (parameters, awkward files) is written last; an existing
    complete generation with the same parameters is kept. Returns ``root``.
    """
    root = Path(root)
    params = {
        "version": VERSION,
        "num_classes": num_classes,
        "train_per_class": train_per_class,
        "test_per_class": test_per_class,
        "img_size": img_size,
        "seed": seed,
        "bad_images": bad_images,
    }
    manifest = root / "synthetic.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("params") == params:
        return root
    for name, value in (
        ("synthetic_train_per_class", train_per_class),
        ("synthetic_test_per_class", test_per_class),
        ("img_size", img_size),
    ):
        if value < (2 if name == "synthetic_train_per_class" else 1):
            raise ValueError(f"parameter {name} too small for the synthetic data: {value}")
    folders = class_folders(num_classes)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tmp = {n: root / f"{n}.tar.tmp-{os.getpid()}" for n in ("images", "lists", "annotation")}
    lists = {"train": ([], []), "test": ([], [])}
    odd = []
    with tarfile.open(tmp["images"], "w") as imgs, tarfile.open(tmp["annotation"], "w") as anns:
        number = 0
        for split, per_class in (("train", train_per_class), ("test", test_per_class)):
            for c, folder in enumerate(folders):
                synset = folder.split("-")[0]
                for j in range(per_class):
                    number += 1
                    stem = f"{synset}_{number}"
                    img, box = render(c, img_size, rng)
                    kind = ODD_FILES.get((split, c, j), "jpeg") if bad_images else "jpeg"
                    upright = box
                    if kind.startswith("exif_"):  # stored pixels and their box
                        img, box = stored_view(img, box, int(kind[5:]))
                    _add(imgs, f"Images/{folder}/{stem}.jpg", _encode(img, kind))
                    _add(anns, f"Annotation/{folder}/{stem}", _voc_xml(folder, stem, img.size, box))
                    lists[split][0].append(f"{folder}/{stem}.jpg")
                    lists[split][1].append(FOLDERS.index(folder) + 1)  # official 1-based
                    if kind != "jpeg":
                        odd.append(
                            {"file": f"{folder}/{stem}.jpg", "kind": kind, "upright_box": upright}
                        )
    with tarfile.open(tmp["lists"], "w") as tar:
        for split, (files, labels) in lists.items():
            _add(tar, f"{split}_list.mat", _mat_bytes(files, labels))
        _add(
            tar,
            "file_list.mat",
            _mat_bytes(lists["train"][0] + lists["test"][0], lists["train"][1] + lists["test"][1]),
        )
    for name, path in tmp.items():
        os.replace(path, root / f"{name}.tar")
    tmp_manifest = root / f"synthetic.json.tmp-{os.getpid()}"
    tmp_manifest.write_text(
        json.dumps({"params": params, "folders": folders, "odd_files": odd}, indent=1)
    )
    os.replace(tmp_manifest, manifest)
    return root

"""Full-size stand-ins, in the real formats, of every file the ``quick`` profile downloads.

What the rehearsal serves under each real URL of :data:`vitwatch.downloads.RESOURCES`:

- ``vit_s16_i21k_ft_i1k``: a random ViT-S/16 at 224 px with a 1000-class head, and
  ``vit_s16_i21k``: the same with the 21,843-class ImageNet-21k head, both in Google's .npz key
  layout (:mod:`vitwatch.models.offline`, as in ``vit_jax/checkpoint.py``);
- ``hub_vit_s16_fe``: a SavedModel with the interface of ``sayakpaul/vit_s16_fe`` (signature
  ``serving_default``, input ``inputs`` float32 (None, 224, 224, 3), output dict
  ``{"output_0": (None, 384)}``), written with ``tf.saved_model.save(..., signatures=...)`` from
  the weights of the first .npz, packed as TF Hub's ``?tf-hub-format=compressed`` .tar.gz;
- ``resnet50_imagenet``: a random ResNet-50 in the legacy Keras HDF5 weights layout of
  ``resnet50_weights_tf_dim_ordering_tf_kernels.h5`` (what ``keras.applications.ResNet50(
  weights=path)`` reads);
- ``dogs_images`` / ``dogs_lists`` / ``dogs_annotation``: the three Stanford Dogs archives with
  all 120 class folders (:mod:`vitwatch.data.synthetic`, a few images per class);
- ``bit_m_r50x1_ilsvrc2012`` / ``bit_m_r50x1``: random BiT-M R50x1 checkpoints in Google's
  layout (:func:`vitwatch.models.offline.bit_checkpoint`), 1000- and 21,843-class heads;
- ``cifar10``: ``cifar-10-python.tar.gz`` in the pickled-batch format of Krizhevsky (2009)
  (https://www.cs.toronto.edu/~kriz/cifar.html), pickled as Python 2 did, a few hundred images;
- ``ilsvrc12_aux``: BVLC/caffe's ``caffe_ilsvrc12.tar.gz`` with a ``train.txt`` of the real
  length (1,281,167 lines, 1000 synsets) listing half of the stand-in dog images.

Each file is generated once into ``<cache_dir>/rehearsal/artifacts/`` and written atomically;
``manifest.json`` (written last) records, per resource, the file, its size, SHA-256 and MD5.
The weights are random: the rehearsal checks the code path, never a number.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import tarfile
import types
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vitwatch import fileio
from vitwatch.data.small import CIFAR10_CLASSES

VERSION = 1  # bump when a generator changes: the cache is then regenerated
HUB_S = 224  # input side of the real sayakpaul/vit_s16_fe
I21K_CLASSES = 21843  # ImageNet-21k head of the i21k-only checkpoint


@dataclass(frozen=True)
class Artifact:
    name: str  # key of downloads.RESOURCES
    path: str  # the generated file
    size: int
    sha256: str
    md5: str


def artifacts_dir(cache_dir) -> Path:
    return Path(cache_dir).expanduser() / "rehearsal" / "artifacts"


def digests(path: Path) -> tuple[str, str]:
    """(SHA-256, MD5) hex digests of a file, read in 1 MiB blocks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


# --- Stanford Dogs ------------------------------------------------------------------------------


def dogs_archives(
    root: Path,
    train_per_class: int,
    test_per_class: int,
    seed: int = 0,
    num_classes: int = 120,
    img_size: int = 224,
) -> dict[str, Path]:
    """images.tar / lists.tar / annotation.tar with the real class folders (all 120 by
    default; images with sides about 1.3-2x ``img_size``)."""
    from vitwatch.data import synthetic

    folder = root / (
        f"dogs-c{num_classes}-tr{train_per_class}-te{test_per_class}-s{img_size}-seed{seed}"
    )
    synthetic.generate(folder, num_classes, train_per_class, test_per_class, img_size, seed)
    return {
        "dogs_images": folder / "images.tar",
        "dogs_lists": folder / "lists.tar",
        "dogs_annotation": folder / "annotation.tar",
    }


# --- ViT checkpoints and the TF Hub archive ----------------------------------------------------


def vit_checkpoints(root: Path, seed: int = 0) -> dict[str, Path]:
    """The fine-tuned (1000 classes) and i21k-only (21,843 classes) ViT-S/16 .npz files."""
    from vitwatch.models import offline

    return {
        "vit_s16_i21k_ft_i1k": offline.vit_checkpoint(root, "S/16", 224, seed, 1000),
        "vit_s16_i21k": offline.vit_checkpoint(root, "S/16", 224, seed + 1, I21K_CLASSES),
    }


def write_savedmodel(npz: Path, dest: Path, variant: str = "S/16", img_size: int = HUB_S) -> Path:
    """SavedModel of the headless ViT holding ``npz``, with the real model's signature."""
    import tensorflow as tf

    from vitwatch.models import vit

    model = vit.build(variant, num_classes=0, img_size=img_size)
    vit.load_npz(model, npz)
    module = tf.Module()
    module.model = model  # tracks the variables
    S = img_size

    @tf.function(input_signature=[tf.TensorSpec((None, S, S, 3), tf.float32, name="inputs")])
    def serve(inputs):  # (B, S, S, 3) in [-1, 1]
        return {"output_0": model(inputs, training=False)}  # (B, C): 384 for S/16

    module.serve = serve
    tf.saved_model.save(module, str(dest), signatures={"serving_default": serve})
    return dest


def hub_archive(root: Path, npz: Path) -> Path:
    """``vit_s16_fe.tar.gz``: the SavedModel as TF Hub serves ``?tf-hub-format=compressed``
    (saved_model.pb and variables/ at the archive's top level)."""
    path = root / f"hub_vit_s16_fe_{npz.stem}.tar.gz"
    if path.is_file():
        return path
    staging = root / f".hub-staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_savedmodel(npz, staging)

        def pack(f):
            with tarfile.open(fileobj=f, mode="w:gz", compresslevel=1) as tar:
                for item in sorted(staging.rglob("*")):
                    tar.add(item, arcname=str(item.relative_to(staging)), recursive=False)

        fileio.atomic_write(path, pack)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


# --- ResNet-50 ---------------------------------------------------------------------------------


def resnet_h5(root: Path, seed: int = 0) -> Path:
    """Random ResNet-50 weights in the legacy HDF5 layout of Keras' published file."""
    path = root / f"resnet50_weights_tf_dim_ordering_tf_kernels_seed{seed}.h5"
    if path.is_file():
        return path
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(seed)
    model = keras.applications.ResNet50(weights=None)  # 1000-class top, 224 px
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- CIFAR-10 ----------------------------------------------------------------------------------


def _cifar_images(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """(N, 3072) uint8 rows (1024 R, 1024 G, 1024 B, row-major) of learnable 32 px images."""
    from PIL import Image

    from vitwatch.data import synthetic

    rows, labels = [], []
    for c in range(len(CIFAR10_CLASSES)):
        for _ in range(per_class):
            img, _box = synthetic.render(c, 24, rng)
            x = np.asarray(img.resize((32, 32), Image.Resampling.BILINEAR), np.uint8)
            rows.append(x.transpose(2, 0, 1).reshape(-1))  # (3, 32, 32) -> (3072,)
            labels.append(c)
    order = rng.permutation(len(labels))
    return np.stack(rows)[order], [labels[i] for i in order]


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote the CIFAR-10 batches: ``bytes`` as Python 2
    ``str`` (BINSTRING opcodes, read back as bytes with ``encoding="bytes"``, not
    ``_codecs.encode`` calls) and NumPy globals under ``numpy.core`` (NumPy 2 names them
    ``numpy._core``): the globals a careful reader of the real file must accept."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj) -> None:
        n = len(obj)
        head = (
            pickle.SHORT_BINSTRING + bytes([n])
            if n < 256
            else pickle.BINSTRING + struct.pack("<i", n)
        )
        self.write(head + obj)
        self.memoize(obj)

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if not module.startswith("numpy._core"):
            return super().save_global(obj, name)
        module = "numpy.core" + module[len("numpy._core") :]
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[types.FunctionType] = save_global


def _pickled(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar10_archive(root: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """``cifar-10-python.tar.gz``: ``cifar-10-batches-py/`` with data_batch_1..5, test_batch
    and batches.meta, each a pickled dict with bytes keys (``b"data"``, ``b"labels"``, ...)."""
    path = root / f"cifar-10-python-tr{train_per_class}-te{test_per_class}-seed{seed}.tar.gz"
    if path.is_file():
        return path
    from vitwatch.data.synthetic import _add

    rng = np.random.default_rng(seed)
    x_train, y_train = _cifar_images(train_per_class, rng)
    x_test, y_test = _cifar_images(test_per_class, rng)
    members = {
        "batches.meta": _pickled(
            {
                b"label_names": [c.encode() for c in CIFAR10_CLASSES],
                b"num_cases_per_batch": len(y_train) // 5,
                b"num_vis": 3072,
            }
        )
    }
    for k, part in enumerate(np.array_split(np.arange(len(y_train)), 5), 1):
        members[f"data_batch_{k}"] = _pickled(
            {
                b"batch_label": f"training batch {k} of 5".encode(),
                b"labels": [y_train[i] for i in part],
                b"data": x_train[part],
                b"filenames": [f"img_{i}.png".encode() for i in part],
            }
        )
    members["test_batch"] = _pickled(
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": y_test,
            b"data": x_test,
            b"filenames": [f"t_{i}.png".encode() for i in range(len(y_test))],
        }
    )
    members["readme.html"] = b"<p>vitwatch rehearsal stand-in for CIFAR-10</p>\n"

    def pack(f):
        with tarfile.open(fileobj=f, mode="w:gz") as tar:
            for name, data in members.items():
                _add(tar, f"cifar-10-batches-py/{name}", data)

    return fileio.atomic_write(path, pack)


# --- BiT-M R50x1 and the ILSVRC-2012 training list -------------------------------------------


def bit_checkpoints(root: Path, seed: int = 0) -> dict[str, Path]:
    """BiT-M R50x1 in Google's .npz layout: 1000-class (ILSVRC-2012) and 21,843-class heads."""
    from vitwatch.models import offline

    return {
        "bit_m_r50x1_ilsvrc2012": offline.bit_checkpoint(root, "R50x1", seed, 1000),
        "bit_m_r50x1": offline.bit_checkpoint(root, "R50x1", seed + 1, I21K_CLASSES),
    }


def ilsvrc12_archive(root: Path, images_tar: Path, seed: int = 0) -> Path:
    """``caffe_ilsvrc12.tar.gz`` with a full-length ``train.txt``: exactly 1,281,167 lines over
    1000 synsets (the content check of :mod:`vitwatch.data.imagenet_overlap`), listing every
    other image of ``images_tar`` (so that some test images are "seen") among filler IDs."""
    from vitwatch.data import imagenet_overlap as ov
    from vitwatch.data.breeds import FOLDERS

    path = root / f"caffe_ilsvrc12_{images_tar.parent.name}_seed{seed}.tar.gz"
    if path.is_file():
        return path
    with tarfile.open(images_tar) as tar:
        ids = sorted(Path(n).stem for n in tar.getnames() if n.endswith(".jpg"))
    seen = ids[::2]
    synsets = sorted(
        {f.split("-")[0] for f in FOLDERS}
        | {f"n{90_000_000 + k:08d}" for k in range(ov.N_CLASSES - len(FOLDERS))}
    )
    n_fill = ov.N_TRAIN_IMAGES - len(seen)
    lines = [f"{i.split('_')[0]}/{i}.JPEG {synsets.index(i.split('_')[0])}" for i in seen]
    lines += [
        f"{synsets[k % len(synsets)]}/{synsets[k % len(synsets)]}_{1_000_000 + k}.JPEG "
        f"{k % len(synsets)}"
        for k in range(n_fill)
    ]
    data = ("\n".join(lines) + "\n").encode()
    words = "".join(f"{s} synset {k}\n" for k, s in enumerate(synsets)).encode()
    from vitwatch.data.synthetic import _add

    def pack(f):
        with tarfile.open(fileobj=f, mode="w:gz", compresslevel=1) as tar:
            _add(tar, "synsets.txt", words)
            _add(tar, ov.MEMBER, data)

    return fileio.atomic_write(path, pack)


# --- all of them -------------------------------------------------------------------------------

DOGS = ("dogs_images", "dogs_lists", "dogs_annotation")
VITS = ("vit_s16_i21k_ft_i1k", "vit_s16_i21k")
BITS = ("bit_m_r50x1_ilsvrc2012", "bit_m_r50x1")
PROVIDED = (*DOGS, *VITS, "hub_vit_s16_fe", "resnet50_imagenet", *BITS, "cifar10", "ilsvrc12_aux")


def build(
    cache_dir,
    names=PROVIDED,
    dogs_train: int = 4,
    dogs_test: int = 2,
    cifar_train: int = 60,
    cifar_test: int = 20,
    seed: int = 0,
    log=print,
) -> dict[str, Artifact]:
    """Generate (once) the stand-ins of resources ``names``; return {name: Artifact}.

    Raises ValueError naming any resource without a stand-in generator. The manifest caches
    the digests: a file is hashed again only when its path or size changed.
    """
    missing = sorted(set(names) - set(PROVIDED))
    if missing:
        raise ValueError(
            f"no rehearsal stand-in for {', '.join(missing)}: add a generator to "
            "vitwatch.rehearsal.artifacts"
        )
    root = artifacts_dir(cache_dir) / f"v{VERSION}"
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    known = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    want = set(names)
    files: dict[str, Path] = {}
    if want & {*DOGS, "ilsvrc12_aux"}:
        log("rehearsal: Stanford Dogs archives (120 classes) ...")
        dogs = dogs_archives(root, dogs_train, dogs_test, seed)
        files.update({k: v for k, v in dogs.items() if k in want})
        if "ilsvrc12_aux" in want:
            log("rehearsal: ILSVRC-2012 training list (1,281,167 lines) ...")
            files["ilsvrc12_aux"] = ilsvrc12_archive(root, dogs["dogs_images"], seed)
    if want & {*VITS, "hub_vit_s16_fe"}:
        log("rehearsal: ViT-S/16 checkpoints (1000- and 21,843-class heads) ...")
        npz = vit_checkpoints(root, seed)
        files.update({k: v for k, v in npz.items() if k in want})
        if "hub_vit_s16_fe" in want:
            log("rehearsal: TF Hub SavedModel archive ...")
            files["hub_vit_s16_fe"] = hub_archive(root, npz["vit_s16_i21k_ft_i1k"])
    if "resnet50_imagenet" in want:
        log("rehearsal: ResNet-50 .h5 ...")
        files["resnet50_imagenet"] = resnet_h5(root, seed)
    if want & set(BITS):
        log("rehearsal: BiT-M R50x1 checkpoints ...")
        files.update({k: v for k, v in bit_checkpoints(root, seed).items() if k in want})
    if "cifar10" in want:
        log("rehearsal: CIFAR-10 archive ...")
        files["cifar10"] = cifar10_archive(root, cifar_train, cifar_test, seed)
    out, stamps = {}, known.get("_stamps", {})
    for name, path in files.items():
        st = path.stat()
        stamp = [str(path), st.st_size, st.st_mtime_ns]  # regenerated -> hashed again
        old = known.get(name)
        if old and stamps.get(name) == stamp:
            out[name] = Artifact(**old)
        else:
            out[name] = Artifact(name, str(path), st.st_size, *digests(path))
            stamps[name] = stamp
    fileio.write_json(
        manifest_path,
        {**known, **{k: asdict(a) for k, a in out.items()}, "_stamps": stamps},
        indent=1,
    )
    return out

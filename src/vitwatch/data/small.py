"""Small real image datasets for the from-scratch experiment of notebook 05.

- ``digits``: scikit-learn's handwritten digits ([Alpaydin & Kaynak, 1998], UCI "Optical
  Recognition of Handwritten Digits"; 1,797 grey 8x8 images, 10 classes), shipped inside
  scikit-learn, so it works offline and in the ``smoke`` profile. A fixed stratified split
  (random_state 0) keeps 25 % as test.
- ``cifar10``: CIFAR-10 [Krizhevsky, 2009] (50,000 / 10,000 colour 32x32 images, 10 classes):
  the "python version" archive ``cifar-10-python.tar.gz`` from the author's page, fetched and
  extracted by :mod:`vitwatch.downloads` (resource ``cifar10``: timeouts, retries, resume,
  Keras' published SHA-256) into ``$VITWATCH_CACHE/downloads/cifar-10-batches-py/``; its pickled
  batches are read here (format as documented on that page: a dict with ``data``, uint8
  (10000, 3072) rows of R, G, B planes, and ``labels``), with an unpickler that admits only
  NumPy's array reconstruction, so neither ``~/.keras`` nor Keras' cache file names matter.

Images are uint8 ``(N, H, W, C)``, labels int64 ``(N,)``. Training subsets of growing size are
drawn by :func:`subset`: stratified, and nested for one seed (the 200-image subset contains the
100-image one), so that a curve's points differ only by the images added.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("digits", "cifar10")
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass
class SmallData:
    name: str
    x_train: np.ndarray  # uint8 (N, H, W, C): the pool training subsets are drawn from
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray  # uint8 (M, H, W, C)
    y_test: np.ndarray  # int64 (M,)
    class_names: tuple[str, ...]
    source: str  # one line for the report

    @property
    def img_size(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std of the training pool in [0, 1] units (normalisation)."""
        x = self.x_train.astype(np.float32) / 255.0
        return x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2)) + 1e-6


def required_resources(cfg) -> list[str]:
    """Names of ``vitwatch.downloads.RESOURCES`` notebook 05 needs (for the preflight)."""
    return ["cifar10"] if cfg.small_dataset == "cifar10" else []


def load(cfg) -> SmallData:
    """The dataset named by ``cfg.small_dataset``, its test split cut to ``cfg.small_test_size``
    images (a fixed stratified subset) when that is > 0."""
    if cfg.small_dataset == "digits":
        data = load_digits()
    elif cfg.small_dataset == "cifar10":
        data = load_cifar10(cfg.cache_dir)
    else:
        raise ValueError(
            f"parameter 'small_dataset' must be one of {DATASETS}, got {cfg.small_dataset!r}"
        )
    n_test = getattr(cfg, "small_test_size", 0)
    if n_test < 0:
        raise ValueError(f"parameter 'small_test_size' must be >= 0, got {n_test}")
    if 0 < n_test < len(data.y_test):
        keep = np.sort(subset(data.y_test, n_test, seed=0))
        data.x_test, data.y_test = data.x_test[keep], data.y_test[keep]
        data.source += f"; test cut to a fixed stratified {n_test} images"
    return data


def load_digits(test_fraction: float = 0.25) -> SmallData:
    from sklearn.datasets import load_digits as _load
    from sklearn.model_selection import train_test_split

    bunch = _load()
    # Pixel values are 0..16 counts; rescale to uint8 0..255 like any image.
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=0
    )
    return SmallData(
        "digits",
        x_tr,
        y_tr,
        x_te,
        y_te,
        tuple(str(i) for i in range(10)),
        "scikit-learn digits (UCI optical recognition of handwritten digits), "
        f"8x8 grey, {len(y_tr)} train pool / {len(y_te)} test, stratified split",
    )


# Globals a CIFAR-10 batch may name (a pickled NumPy array, as Keras' RestrictedUnpickler
# admits; plus _codecs.encode, which Python 3 protocol-2 pickles use for bytes); nothing else.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core" + module[len("numpy.core") :]  # NumPy 2 renamed it
        return super().find_class(module, name)


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR-10 batch -> images uint8 (N, 32, 32, 3), labels int64 (N,)."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
        data = np.asarray(batch["data"], np.uint8)
        labels = np.asarray(batch["labels"], np.int64).reshape(-1)
    except (OSError, EOFError, KeyError, AttributeError, pickle.UnpicklingError) as exc:
        raise ValueError(
            f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc}); "
            "delete the folder and download it again"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(
            f"{path}: data {data.shape} / labels {labels.shape} are not CIFAR-10's (N, 3072) / (N,)"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), labels


def load_cifar10(cache_dir: str | os.PathLike) -> SmallData:
    """CIFAR-10 from ``<cache_dir>/downloads/cifar-10-batches-py`` (downloaded once, ~170 MB)."""
    from vitwatch import downloads

    try:
        folder = downloads.fetch("cifar10", cache_dir)
    except downloads.DownloadError as exc:
        raise downloads.DownloadError(
            f"small_dataset='cifar10' needs CIFAR-10, which could not be downloaded. Use "
            f"small_dataset='digits' (offline, shipped with scikit-learn), or put "
            f"cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/ folder) into "
            f"{Path(cache_dir).expanduser() / 'downloads'}.\n{exc}",
            url=exc.url,
            cause=exc.cause,
        ) from None
    train = [read_cifar_batch(Path(folder) / f"data_batch_{i}") for i in range(1, 6)]
    x_te, y_te = read_cifar_batch(Path(folder) / "test_batch")
    x_tr = np.concatenate([x for x, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    return SmallData(
        "cifar10",
        x_tr,
        y_tr,
        x_te,
        y_te,
        CIFAR10_CLASSES,
        f"CIFAR-10 [Krizhevsky, 2009], 32x32 colour, {len(y_tr)} train / "
        f"{len(y_te)} test (official split)",
    )


def subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a stratified subset of ``n`` training images, nested across ``n`` for a seed.

    Each class is shuffled once (by ``seed``); classes are then interleaved round-robin, so the
    first ``n`` indices of that order are as class-balanced as possible and grow by inclusion.
    """
    labels = np.asarray(labels)
    if not 0 < n <= len(labels):
        raise ValueError(
            f"parameter 'small_train_sizes': size {n} outside 1..{len(labels)} "
            "(the training pool of the dataset)"
        )
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    # rank of each image inside its class, then a random tie-break between classes
    order = np.concatenate(per_class)
    rank = np.concatenate([np.arange(len(p)) for p in per_class])
    tie = rng.random(len(order))
    return order[np.lexsort((tie, rank))][:n]

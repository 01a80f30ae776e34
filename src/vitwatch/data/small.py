"""Small real image datasets for the from-scratch experiment of notebook 05.

- ``digits``: scikit-learn's handwritten digits ([Alpaydin & Kaynak, 1998], UCI "Optical
  Recognition of Handwritten Digits"; 1,797 grey 8x8 images, 10 classes), shipped inside
  scikit-learn, so it works offline and in the ``smoke`` profile. A fixed stratified split
  (random_state 0) keeps 25 % as test.
- ``cifar10``: CIFAR-10 [Krizhevsky, 2009] through ``keras.datasets.cifar10`` (50,000 / 10,000
  colour 32x32 images, 10 classes). Reachability is checked first through
  ``vitwatch.downloads`` (resource ``cifar10``), so that offline it fails at once with a clear
  message instead of after a long timeout.

Images are uint8 ``(N, H, W, C)``, labels int64 ``(N,)``. Training subsets of growing size are
drawn by :func:`subset`: stratified, and nested for one seed (the 200-image subset contains the
100-image one), so that a curve's points differ only by the images added.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("digits", "cifar10")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


@dataclass
class SmallData:
    name: str
    x_train: np.ndarray            # uint8 (N, H, W, C): the pool training subsets are drawn from
    y_train: np.ndarray            # int64 (N,)
    x_test: np.ndarray             # uint8 (M, H, W, C)
    y_test: np.ndarray             # int64 (M,)
    class_names: tuple[str, ...]
    source: str                    # one line for the report

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
        raise ValueError(f"parameter 'small_dataset' must be one of {DATASETS}, "
                         f"got {cfg.small_dataset!r}")
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
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, stratify=y,
                                              random_state=0)
    return SmallData("digits", x_tr, y_tr, x_te, y_te, tuple(str(i) for i in range(10)),
                     "scikit-learn digits (UCI optical recognition of handwritten digits), "
                     f"8x8 grey, {len(y_tr)} train pool / {len(y_te)} test, stratified split")


def _keras_cifar_cached() -> bool:
    """True when ``keras.datasets.cifar10`` will not download: Keras keeps the archive as
    ``<KERAS_HOME or ~/.keras>/datasets/cifar-10-batches-py-target_archive`` (checked by hash)."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return (home / "datasets" / "cifar-10-batches-py-target_archive").is_file()


def load_cifar10(cache_dir: str | os.PathLike) -> SmallData:
    """CIFAR-10 through ``keras.datasets`` (downloads ~170 MB once into ``~/.keras``)."""
    import keras

    from vitwatch import downloads

    if not _keras_cifar_cached():
        try:
            downloads.preflight(["cifar10"], cache_dir)
        except downloads.DownloadError as exc:
            raise downloads.DownloadError(
                "small_dataset='cifar10' needs CIFAR-10, which is not in the Keras cache "
                "(~/.keras/datasets) and cannot be downloaded here. Use small_dataset='digits' "
                f"(offline, shipped with scikit-learn) or run on a connected machine.\n{exc}"
            ) from None
    (x_tr, y_tr), (x_te, y_te) = keras.datasets.cifar10.load_data()
    x_tr, x_te = np.asarray(x_tr, np.uint8), np.asarray(x_te, np.uint8)
    if x_tr.ndim != 4 or x_tr.shape[1:] != (32, 32, 3):
        raise ValueError(f"keras.datasets.cifar10 returned images of shape {x_tr.shape[1:]}, "
                         "expected (32, 32, 3) (image_data_format must be channels_last)")
    y_tr = np.asarray(y_tr).reshape(-1).astype(np.int64)
    y_te = np.asarray(y_te).reshape(-1).astype(np.int64)
    return SmallData("cifar10", x_tr, y_tr, x_te, y_te, CIFAR10_CLASSES,
                     f"CIFAR-10 [Krizhevsky, 2009], 32x32 colour, {len(y_tr)} train / "
                     f"{len(y_te)} test (official split)")


def subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a stratified subset of ``n`` training images, nested across ``n`` for a seed.

    Each class is shuffled once (by ``seed``); classes are then interleaved round-robin, so the
    first ``n`` indices of that order are as class-balanced as possible and grow by inclusion.
    """
    labels = np.asarray(labels)
    if not 0 < n <= len(labels):
        raise ValueError(f"parameter 'small_train_sizes': size {n} outside 1..{len(labels)} "
                         "(the training pool of the dataset)")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    # rank of each image inside its class, then a random tie-break between classes
    order = np.concatenate(per_class)
    rank = np.concatenate([np.arange(len(p)) for p in per_class])
    tie = rng.random(len(order))
    return order[np.lexsort((tie, rank))][:n]

"""The training recipe of notebook 05, shared by every model and every size.

The curves differ only by the model and the data: AdamW with linear warm-up and cosine decay,
the same augmentation (random shifts, plus horizontal flips on natural images), and the same
**number of optimizer steps** for every run (``epochs`` passes over the *largest* subset): a
point with 100 images sees them many times, a point with 800 sees each fewer times, and compute
is constant along the x axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vitwatch.data import small as small_data


@dataclass(frozen=True)
class Recipe:
    """Optimisation settings shared by all models (not tuned per model: see the notebook)."""

    batch_size: int
    steps: int
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    shift: int = 1  # random translation, pixels
    flip: bool = False  # random horizontal flip (natural images only)


def recipe(data: small_data.SmallData, sizes, epochs: int) -> Recipe:
    """The recipe for ``data``: the step budget is ``epochs`` passes over the largest size."""
    sizes = check_sizes(sizes, len(data.y_train))
    if epochs < 1:
        raise ValueError(f"parameter 'small_epochs' must be >= 1, got {epochs}")
    natural = data.name == "cifar10"
    batch = 128 if natural else 32
    return Recipe(
        batch_size=batch,
        steps=epochs * math.ceil(max(sizes) / batch),
        learning_rate=1e-3 if natural else 2e-3,
        shift=4 if natural else 1,
        flip=natural,
    )


def check_sizes(sizes, pool: int) -> list[int]:
    """``sizes`` as a list, or ValueError: >= 2 strictly increasing ints in 10..``pool``."""
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(n, int) or isinstance(n, bool) for n in sizes):
        raise ValueError(f"parameter 'small_train_sizes' must be a list of >= 2 ints, got {sizes}")
    if sorted(set(sizes)) != sizes:
        raise ValueError(f"parameter 'small_train_sizes' must be strictly increasing, got {sizes}")
    if sizes[0] < 10 or sizes[-1] > pool:
        raise ValueError(
            f"parameter 'small_train_sizes': sizes must lie in 10..{pool} "
            f"(the training pool), got {sizes}"
        )
    return sizes


def scale_for(data: small_data.SmallData) -> str:
    """The model scale (a key of ``models.small.SCALES``) for ``data``."""
    return "cifar10" if data.name == "cifar10" else "digits"


def batch_order(n: int, rec: Recipe, seed: int) -> np.ndarray:
    """(steps, batch_size) indices into the subset: concatenated random permutations (epochs)."""
    rng = np.random.default_rng(seed)
    need = rec.steps * rec.batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(need / n))])
    return order[:need].reshape(rec.steps, rec.batch_size).astype(np.int32)

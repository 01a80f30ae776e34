"""Datasets of the report: Stanford Dogs and its synthetic stand-in, robust image decoding.

- :mod:`.images`: ``load_image`` (robust PIL decoding) and ``BadImageLog``.
- :mod:`.breeds`: the 120 classes (``FOLDERS``, ``IMAGENET_INDEX``, ``breed_name``).
- :mod:`.stanford_dogs`: ``load(cfg) -> DogsData`` (fetch, extract, parse, split),
  ``required_resources``.
- :mod:`.synthetic`: ``generate(root, ...)``, the offline stand-in in the real archive layout.
- :mod:`.pipeline`: ``batches(split, img_size, batch_size, augment, seed)``, the views of a
  split (eval, or random resized crop + flip) in batches.
- :mod:`.imagenet_overlap`: which test images were ILSVRC-2012 training images (leakage).
- :mod:`.samples` (real photographs) and :mod:`.small` (notebook 05) are imported on first use.
"""

import importlib

from . import breeds, images, pipeline, stanford_dogs, synthetic

__all__ = [
    "breeds",
    "images",
    "pipeline",
    "stanford_dogs",
    "synthetic",
    "samples",
    "small",
    "imagenet_overlap",
]


def __getattr__(name):
    if name in ("samples", "small", "imagenet_overlap"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

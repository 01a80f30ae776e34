"""Datasets of the report: Stanford Dogs and its synthetic stand-in, robust image decoding.

- :mod:`.images`: ``load_image`` (robust PIL decoding) and ``BadImageLog``.
- :mod:`.stanford_dogs`: ``load(cfg) -> DogsData``, ``batches(...)``, ``required_resources``.
- :mod:`.synthetic`: ``generate(root, ...)``, the offline stand-in in the real archive layout.
- :mod:`.imagenet_overlap`: which test images were ILSVRC-2012 training images (leakage).
- :mod:`.samples` (real photographs) and :mod:`.small` (notebook 05) are imported on first use.
"""

import importlib

from . import images, stanford_dogs, synthetic

__all__ = ["images", "stanford_dogs", "synthetic", "samples", "small", "imagenet_overlap"]


def __getattr__(name):
    if name in ("samples", "small", "imagenet_overlap"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

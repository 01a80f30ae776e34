"""The interactive explorer of chapter 06: any image through every trained backbone.

- :mod:`~vitwatch.explorer.core`: the backbones and the heads stored by chapter 03, each
  backbone's top-5 breeds and map of where it looks for one image, the static panel's examples
  and sentences (its functions are exported here: ``explorer.load(cfg)``, ...);
- :mod:`~vitwatch.explorer.widget`: the ipywidgets front end (``explorer.widget.build``), built
  only when a person is there to use it (``explorer.widget.has_front_end()``).

The figure is :func:`vitwatch.plotting.explorer.panel`.
"""

from . import widget
from .core import (
    HEAD_PROTOCOLS,
    Explainer,
    attention_map,
    describe_examples,
    examples,
    explain,
    explain_all,
    gradcam,
    image_from_bytes,
    load,
    load_test_image,
    resize,
    stored_heads,
    table,
    top_k,
)

__all__ = [
    "HEAD_PROTOCOLS",
    "Explainer",
    "attention_map",
    "describe_examples",
    "examples",
    "explain",
    "explain_all",
    "gradcam",
    "image_from_bytes",
    "load",
    "load_test_image",
    "resize",
    "stored_heads",
    "table",
    "top_k",
    "widget",
]

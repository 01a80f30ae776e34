"""What the protocols on a frozen backbone share: cached features and what they cost.

:class:`Extractor` reads a backbone's features of a split and view through the feature cache
(:func:`vitwatch.features.extract_with_stats`) and adds up what they cost, counting the
seconds computing them took even when they come from the cache, so that a protocol's cost does
not depend on which protocol happened to run first.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def progress(
    iterable: Iterable, total: int | None, desc: str, enabled: bool = True, unit: str = "batch"
):
    """``iterable`` with a progress bar when ``enabled``."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, mininterval=2.0)


class Extractor:
    """Cached features of one backbone on ``data``'s splits, and what getting them cost;
    computed under the device ``policy`` (:mod:`vitwatch.protocols.device`: its batch size
    and XLA on a GPU; None or the CPU policy: ``backbone.forward``, ``cfg.batch_size``)."""

    def __init__(self, backbone, data, cfg, progress: bool = True, policy=None):
        self.backbone, self.data, self.cfg, self.progress = backbone, data, cfg, progress
        self.options = {}
        if policy is not None and policy["device"] != "cpu":
            from vitwatch import fastpath

            forward = fastpath.backbone_forward(backbone, backbone.cache_dir, jit=policy["jit"])
            self.options = {"batch_size": int(policy["batch_size"]), "forward": forward}
        self.compute_seconds = 0.0
        self.computed_images = 0  # backbone passes this protocol really made
        self.cached_images = 0  # rows read from the feature cache instead
        self.views: set[tuple[str, int]] = set()

    def __call__(self, split_name: str, view: int = 0) -> np.ndarray:
        """Features (N, D) of split ``split_name`` in view ``view`` (0: the eval view)."""
        from vitwatch import features

        x, stats = features.extract_with_stats(
            self.backbone,
            getattr(self.data, split_name),
            split_name,
            self.cfg,
            view=view,
            progress=self.progress,
            **self.options,
        )
        if (split_name, view) not in self.views:  # count each cached view once
            self.views.add((split_name, view))
            self.compute_seconds += float(stats.compute_seconds or 0.0)
            self.computed_images += stats.computed_images
            self.cached_images += stats.cached_images
        return np.asarray(x, np.float32)

    def counts(self) -> dict[str, float]:
        """Distinct images the protocol needs through the backbone, and how they were got."""
        return {
            "backbone_forward_images": self.computed_images + self.cached_images,
            "computed_images": self.computed_images,
            "cache_hit_images": self.cached_images,
            "extract_seconds": self.compute_seconds,
        }

    def eval_splits(self) -> tuple[np.ndarray, np.ndarray]:
        """Plain-view validation and test features."""
        return self("val"), self("test")


def check_rows(x: np.ndarray, split, name: str) -> None:
    if len(x) != len(split.labels):
        raise ValueError(
            f"features of split {name!r}: {len(x)} rows for {len(split.labels)} "
            "labels (bad images must be dropped from the split when it is loaded)"
        )

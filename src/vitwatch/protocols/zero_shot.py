"""Protocol Z, no training: the backbone's own ImageNet-1k classifier restricted to the dog
classes (every Stanford Dogs breed is an ImageNet-1k class), then a softmax over them."""

from __future__ import annotations

import numpy as np

from vitwatch import runs
from vitwatch.protocols.extract import Extractor, check_rows


def key(cfg) -> dict:
    """Protocol Z's settings in the key of a run: none beyond the common ones."""
    return {}


def run(backbone, data, cfg, progress: bool = True, policy=None) -> runs.RunResult:
    """ImageNet-1k logits of the eval-view features, the dog columns kept, a softmax."""
    if backbone.imagenet_logits is None:
        raise ValueError(f"backbone {backbone.name!r} has no ImageNet-1k head: no protocol Z")
    idx = np.asarray(data.imagenet_indices)
    extractor = Extractor(backbone, data, cfg, progress, policy)
    val_x, test_x = extractor.eval_splits()
    check_rows(val_x, data.val, "val"), check_rows(test_x, data.test, "test")
    val_probs = runs.softmax(np.asarray(backbone.imagenet_logits(val_x))[:, idx])  # (N, K)
    test_probs = runs.softmax(np.asarray(backbone.imagenet_logits(test_x))[:, idx])
    return runs.RunResult(
        "Z",
        backbone.name,
        val_probs,
        np.asarray(data.val.labels),
        test_probs,
        np.asarray(data.test.labels),
        timings={**extractor.counts(), "train_seconds": 0.0},
        extra={"imagenet_indices": idx.tolist()},
    )

"""A fabricated results store in notebook 03's layout (CONTRIBUTING.md), for notebook 04's tests.

``make_store(results_dir, image_dir)`` writes small JPEG photos of varied sizes holding a bright
"dog" rectangle inside a known bounding box, ``dataset.json``, one run per backbone x protocol
with predictions of chosen accuracies (ViT better than ResNet under A and B; ``n_seeds`` head
seeds for A, B and C, stored as 03 stores them: ``seeds``, ``seed_test_probs``,
``seed_val_probs``, the first seed's also as ``test_probs`` / ``val_probs``, accuracies in the
JSON averaged over seeds), and ``cost.json``, all through :mod:`vitwatch.results` so that the
files are exactly what 03 writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vitwatch import results

ACCURACY = {
    ("A", "vit_s16"): 0.85,
    ("A", "resnet50"): 0.65,
    ("B", "vit_s16"): 0.8,
    ("B", "resnet50"): 0.7,
    ("B", "vit_s16_hub"): 0.8,
    ("Z", "vit_s16"): 0.6,
    ("Z", "resnet50"): 0.5,
    ("C", "vit_s16"): 0.9,
    ("C", "resnet50"): 0.88,
}


def _photos(image_dir: Path, n_classes: int, per_class: int, rng) -> tuple[list, list, list]:
    paths, labels, boxes = [], [], []
    image_dir.mkdir(parents=True, exist_ok=True)
    for c in range(n_classes):
        colour = np.array([(60 * c) % 256, (255 - 50 * c) % 256, (120 + 70 * c) % 256])
        for i in range(per_class):
            w, h = int(rng.integers(60, 120)), int(rng.integers(60, 120))
            img = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
            bw, bh = int(rng.integers(w // 5, w // 1.5)), int(rng.integers(h // 5, h // 1.5))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            img[y0 : y0 + bh, x0 : x0 + bw] = colour
            path = image_dir / f"c{c}_{i}.jpg"
            Image.fromarray(img).save(path, quality=90)
            paths.append(str(path))
            labels.append(c)
            boxes.append(np.array([[x0, y0, x0 + bw, y0 + bh]], dtype=float))
    return paths, labels, boxes


def _probs(labels, n_classes, acc, rng) -> np.ndarray:
    n = len(labels)
    logits = rng.normal(size=(n, n_classes))
    right = rng.random(n) < acc
    wrong_to = (labels + 1 + rng.integers(0, n_classes - 1, n)) % n_classes
    logits[np.arange(n), np.where(right, labels, wrong_to)] += 5.0
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def make_store(
    results_dir,
    image_dir,
    n_classes: int = 6,
    per_class: int = 8,
    seed: int = 0,
    runs: dict | None = None,
    n_seeds: int = 2,
):
    """Write a complete store; return it (a ``results.ResultsStore``)."""
    rng = np.random.default_rng(seed)
    rng_seeds = np.random.default_rng(seed + 1000)  # the extra seeds: own stream
    store = results.ResultsStore(results_dir, "smoke", seed)
    paths, labels, boxes = _photos(Path(image_dir), n_classes, per_class, rng)
    labels = np.asarray(labels)
    # dataset.json exactly as CONTRIBUTING.md describes it (written by 03 from DogsData)
    store.write_json(
        "dataset.json",
        {
            "class_names": [f"Breed {c}" for c in range(n_classes)],
            "synsets": [f"n0208{c:04d}" for c in range(n_classes)],
            "imagenet_indices": list(range(151, 151 + n_classes)),
            "test_paths": paths,
            "test_labels": labels.tolist(),
            "test_boxes": [b.tolist() for b in boxes],
            "n_train": 0,
            "n_val": 0,
            "n_test": len(paths),
            "bad_images": [],
            "profile": "smoke",
        },
    )
    machine = {"python": "3.11", "accelerator": "none (CPU)"}
    for (protocol, backbone), acc in (runs or ACCURACY).items():
        probs = _probs(labels, n_classes, acc, rng)
        val_probs = _probs(labels, n_classes, acc, rng)
        hist = (
            {}
            if protocol == "Z"
            else {
                "loss": [1.0, 0.5],
                "accuracy": [0.5, acc],
                "val_loss": [1.1, 0.6],
                "val_accuracy": [0.4, acc],
            }
        )
        arrays = {
            "test_probs": probs,
            "test_labels": labels,
            "val_probs": val_probs,
            "val_labels": labels,
        }
        s = 1 if protocol == "Z" else n_seeds
        if s > 1:
            arrays.update(
                seeds=np.arange(seed, seed + s),
                seed_test_probs=np.stack(
                    [probs] + [_probs(labels, n_classes, acc, rng_seeds) for _ in range(s - 1)]
                ),
                seed_val_probs=np.stack(
                    [val_probs] + [_probs(labels, n_classes, acc, rng_seeds) for _ in range(s - 1)]
                ),
            )

        def acc_of(key, p, arrays=arrays):
            return float(
                np.mean([(q.argmax(1) == labels).mean() for q in arrays.get(key, p[None])])
            )

        store.save(
            f"{protocol}_{backbone}",
            arrays,
            {
                "backbone": backbone,
                "protocol": protocol,
                "top1": acc_of("seed_test_probs", probs),
                "top5": 1.0,
                "val_top1": acc_of("seed_val_probs", val_probs),
                "history": hist,
                "hyperparameters": {},
                "trainable_params": 100,
                "timings": {
                    "backbone_forward_images": 10,
                    "train_seconds": 1.0,
                    "extract_seconds": 1.0,
                    "images_per_second": 50.0,
                },
                "machine": machine,
            },
        )
    store.save_cost(
        {
            "vit_s16": {"params": 22_050_664, "gmacs": 4.61, "images_per_second": 5.0},
            "vit_s16_hub": {"params": 22_050_664, "gmacs": 4.61, "images_per_second": 5.5},
            "resnet50": {"params": 25_636_712, "gmacs": 3.86, "images_per_second": 7.4},
        },
    )
    return store

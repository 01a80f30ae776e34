"""Chapter 3's results store as chapter 4 reads it: the test set, every run's predictions, the
cost table, and the choices made on validation accuracy only.

:func:`load` reads what notebook 03 stored (:mod:`vitwatch.results`) and checks that every run
was evaluated on the same test images; :class:`Store` answers the questions the analyses ask
(which runs, their probabilities and correct answers, the boxes and paths of test images).
Every choice of a run (:meth:`Store.best_run`, :func:`select_runs`) reads validation accuracy
only; ``tests/test_analysis.py`` checks that they never read a test array.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Store:
    """Everything 04 reads: ``dataset`` (dataset.json), ``runs`` name -> (meta, arrays),
    ``cost`` (cost.json, {} when absent), ``profile``."""

    dataset: dict
    runs: dict[str, tuple[dict, dict]]
    cost: dict = field(default_factory=dict)
    profile: str = "smoke"

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset["class_names"])

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset["test_labels"], dtype=np.int64)

    @property
    def paths(self) -> list[str]:
        return list(self.dataset["test_paths"])

    def probs(self, run: str) -> np.ndarray:
        return self.runs[run][1]["test_probs"]

    def preds(self, run: str) -> np.ndarray:
        return self.probs(run).argmax(axis=1)

    def correct(self, run: str) -> np.ndarray:
        return self.preds(run) == self.labels

    def names(self, backbone: str | None = None, protocol: str | None = None) -> list[str]:
        return [
            r
            for r, (m, _) in self.runs.items()
            if (backbone is None or m["backbone"] == backbone)
            and (protocol is None or m["protocol"] == protocol)
        ]

    def best_run(self, backbone: str, protocols=("A", "B", "C")) -> str | None:
        """The run of ``backbone`` with the best validation accuracy among ``protocols``."""
        cands = [r for r in self.names(backbone) if self.runs[r][0]["protocol"] in protocols]
        if not cands:
            return None
        return max(cands, key=lambda r: (self.runs[r][0].get("val_top1") or 0.0, r))

    # --- test images ---------------------------------------------------------------------
    def images(self, positions, img_size: int) -> np.ndarray:
        """uint8 (n, S, S, 3): the test images at ``positions``, resized as backbones see them."""
        return load_images([self.paths[i] for i in positions], img_size)

    def boxes(self, positions) -> list[np.ndarray]:
        """(k, 4) xyxy boxes of each test image, in the pixels of the loaded photo."""
        return [np.asarray(self.dataset["test_boxes"][i]) for i in positions]

    def image_sizes(self, positions) -> list[tuple[int, int]]:
        """(width, height) of each loaded photo: the frame its boxes are given in."""
        from vitwatch.analysis.boxes import image_size

        return [image_size(self.paths[i]) for i in positions]

    def imagenet_classes(self, positions) -> np.ndarray:
        """(n,) ImageNet-1k index of each image's true breed (-1 where none is known)."""
        k = len(self.class_names)
        table = np.asarray(self.dataset.get("imagenet_indices", [-1] * k))
        return table[self.labels[positions]]


def load(results_store) -> Store:
    """Load a :class:`~vitwatch.results.ResultsStore`; a clear error when 03 has not run."""
    names = results_store.list_runs()
    if not names:
        raise FileNotFoundError(
            f"results store {results_store.folder} holds no finished run: execute notebook 03 "
            f"(profile {results_store.profile!r}) first; notebook 04 only reads its results"
        )
    dataset = results_store.load_dataset()
    labels = np.asarray(dataset["test_labels"])
    runs = {}
    for name in names:
        meta, arrays = results_store.load(name)
        probs = arrays["test_probs"]
        if probs.shape != (labels.size, len(dataset["class_names"])):
            raise ValueError(
                f"results store: {name}.npz test_probs has shape {probs.shape}, "
                f"dataset.json describes {labels.size} test images x "
                f"{len(dataset['class_names'])} classes"
            )
        if not np.array_equal(arrays["test_labels"], labels):
            raise ValueError(
                f"results store: {name}.npz test_labels differ from dataset.json: "
                "runs must be evaluated on the same test images, in order"
            )
        runs[name] = (meta, arrays)
    return Store(dataset, runs, results_store.load_cost(), results_store.profile)


def select_runs(store: Store, backbones, protocols=("A", "B", "C")) -> dict[str, str]:
    """backbone -> its run with the best *validation* top-1 among ``protocols``
    (:meth:`Store.best_run`); backbones without such a run are left out. Never reads test."""
    chosen = {b: store.best_run(b, protocols) for b in backbones}
    return {b: r for b, r in chosen.items() if r is not None}


def compared_backbones(store: Store) -> tuple[str | None, str | None, str | None]:
    """The chapter's ViT, its CNN and the CNN pre-trained like the ViT, among the backbones
    of the store (:data:`vitwatch.catalogue.ROLES`; None for a part no stored backbone plays)."""
    from vitwatch import catalogue

    ran = [b for b in catalogue.BACKBONES if store.names(b)]
    return tuple(catalogue.role(part, ran) for part in ("vit", "cnn", "matched_cnn"))


def describe(store: Store) -> str:
    """What the store holds: test images, breeds, runs, skipped files, profile."""
    return (
        f"The test set holds **{store.labels.size} images of {len(store.class_names)} "
        f"breeds**; {len(store.runs)} runs are stored ({', '.join(sorted(store.runs))}); "
        f"{len(store.dataset.get('bad_images', []))} undecodable files were skipped by "
        f"chapter 4. Profile `{store.profile}`."
    )


def load_images(paths, img_size: int) -> np.ndarray:
    """uint8 (n, S, S, 3) of test images (resized as every backbone sees them)."""
    from vitwatch.data import images

    out = []
    for p in paths:
        img = images.load_image(p, img_size)
        if img is None:
            raise ValueError(f"test image {p} cannot be decoded although 03 evaluated it")
        out.append(img)
    return np.stack(out)


def save_summary(results_store, *sections) -> dict:
    """Write ``analysis.json`` into ``results_store``: the numbers behind the chapter's
    conclusions, every section's ``record`` (top-level key -> numbers) merged, in order.
    Returns what was written."""
    summary = {}
    for section in sections:
        summary.update(section.record)
    results_store.write_json("analysis.json", summary)
    return summary


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded, sorted random subset of ``n`` test-image positions."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=min(n, n_total), replace=False))

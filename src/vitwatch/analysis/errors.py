"""Where the models fail: per-breed accuracy, the most confused breeds, and the images behind
them (chapter 4, "Where the models fail").

The metrics come from :mod:`vitwatch.stats` (per-class recall, confusion matrix, most confused
pairs); this module turns them into the chapter's sentence, table and image galleries, the
whole section in one call by :func:`section` (:class:`Errors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitwatch import stats


def describe_per_breed(per_class, other) -> str:
    """The range of per-breed accuracy of one model (``per_class``, from
    :func:`vitwatch.stats.per_class_metrics`), its hardest breeds, and the correlation of
    per-breed accuracy with another model's (``other``): same hard breeds, or different."""
    k = len(per_class)
    r = np.corrcoef(per_class["recall"], other["recall"])[0, 1] if k > 2 else np.nan
    worst = per_class.sort_values("recall").head(3)["class"].tolist()
    if np.isnan(r):
        meaning = "undefined (too few breeds, or the same accuracy for every breed)"
    elif r > 0.5:
        meaning = (
            "the two models find the same breeds hard, which points at the data (look-alike breeds)"
        )
    else:
        meaning = "the models struggle on different breeds, so they fail differently"
    return (
        f"Per-breed accuracy ranges from {100 * per_class.recall.min():.0f} % to "
        f"{100 * per_class.recall.max():.0f} % (median {100 * per_class.recall.median():.0f} %). "
        f"The hardest breeds for the ViT are {', '.join(worst)}. The correlation of per-breed "
        f"accuracy between the ViT and the ResNet is {r:.2f}: {meaning}."
    )


def confused_table(cm, pairs, class_names):
    """The most confused pairs ``(true, predicted, count)`` of confusion matrix ``cm`` as a
    table: breeds, images, and their share of the true breed's test images."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "true breed": class_names[i],
                "predicted as": class_names[j],
                "images": n,
                "share of the true breed (%)": round(100 * n / cm[i].sum(), 1),
            }
            for i, j, n in pairs
        ]
    )


def confused_gallery(store, run: str, pairs, size: int = 160):
    """For each confused pair (true i, predicted j): the first test image of i taken for j, then
    the first image of j rightly called j. Returns (uint8 images, titles)."""
    labels, pred = store.labels, store.preds(run)
    names = store.class_names
    picked, titles = [], []
    for i, j, _ in pairs:
        wrong = np.flatnonzero((labels == i) & (pred == j))
        right = np.flatnonzero((labels == j) & (pred == j))
        for idx, t in (
            (wrong[:1], f"{names[i]}\n→ said {names[j]}"),
            (right[:1], f"a real {names[j]}"),
        ):
            if len(idx):
                picked.append(idx[0])
                titles.append(t)
    return [store.images([i], size)[0] for i in picked], titles


def confident_errors(store, run: str, n: int = 12, size: int = 160):
    """The ``n`` errors of ``run`` with the highest predicted probability, most confident
    first. Returns (uint8 images, titles naming the true and predicted breeds)."""
    probs, pred, labels = store.probs(run), store.preds(run), store.labels
    names = store.class_names
    errors = np.flatnonzero(pred != labels)
    errors = errors[np.argsort(-probs[errors, pred[errors]])][:n]
    images = store.images(errors, size) if len(errors) else []
    titles = [
        f"true: {names[labels[i]]}\nsaid: {names[pred[i]]} ({100 * probs[i, pred[i]]:.0f} %)"
        for i in errors
    ]
    return images, titles


@dataclass
class Errors:
    """The section "Where the models fail" for the runs ``vit_run`` and ``cnn_run``: per-breed
    metrics of both (``per_class``, ``cnn_class``), the ViT run's confusion matrix ``cm`` with
    its clustered ``order`` and most confused ``pairs``, and two galleries, (images, titles)
    each: ``confused`` (the first four pairs) and ``confident`` (the surest errors)."""

    vit_run: str
    cnn_run: str
    class_names: list[str]
    per_class: object
    cnn_class: object
    cm: np.ndarray
    order: np.ndarray
    pairs: list
    confused: tuple
    confident: tuple

    @property
    def note(self) -> str:
        return f"Runs analysed: **{self.vit_run}** and **{self.cnn_run}**."

    @property
    def sentence(self) -> str:
        return describe_per_breed(self.per_class, self.cnn_class)

    @property
    def tables(self) -> list:
        shown = confused_table(self.cm, self.pairs, self.class_names)
        return [shown.style.hide(axis="index")]


def section(store, vit: str, cnn: str, n_pairs: int = 10, n_errors: int = 12) -> Errors:
    """:class:`Errors` of the best run of ``vit`` and of ``cnn`` with a frozen backbone (A or
    B, chosen on validation accuracy; C when neither ran)."""
    vit_run = store.best_run(vit, ("A", "B")) or store.best_run(vit)
    cnn_run = store.best_run(cnn, ("A", "B")) or store.best_run(cnn)
    labels, names = store.labels, store.class_names
    vit_pred = store.preds(vit_run)
    cm = stats.confusion_matrix(labels, vit_pred, len(names))
    pairs = stats.most_confused_pairs(cm, n_pairs)
    return Errors(
        vit_run,
        cnn_run,
        names,
        stats.per_class_metrics(labels, vit_pred, names),
        stats.per_class_metrics(labels, store.preds(cnn_run), names),
        cm,
        stats.cluster_order(cm),
        pairs,
        confused_gallery(store, vit_run, pairs[:4]),
        confident_errors(store, vit_run, n_errors),
    )

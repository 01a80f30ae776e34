"""Where the models fail: per-breed accuracy, the most confused breeds, and the images behind
them (chapter 4, "Where the models fail").

The metrics come from :mod:`vitwatch.stats` (per-class recall, confusion matrix, most confused
pairs); this module turns them into the chapter's sentence, table and image galleries.
"""

from __future__ import annotations

import numpy as np


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

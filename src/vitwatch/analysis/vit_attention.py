"""Inside the ViT: the attention summaries of chapter 4 over a few hundred test images.

:func:`statistics` runs our ViT batch by batch (its ``forward`` returns the attention
probabilities of every block) and keeps three summaries per image: the class token's attention
in each head of the last block, the attention rollout [Abnar & Zuidema, 2020] and the mean
attention distance [Dosovitskiy et al., 2021, Fig. 7] (:mod:`vitwatch.theory.attention`).
:func:`rollout_examples` picks the images of the rollout figure, :func:`describe_distance`
says what the distances show (:class:`Distances`: the sentence and the numbers saved).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def statistics(model, x, batch_size: int):
    """Run the ViT over preprocessed images ``x`` (n, S, S, 3) batch by batch, keeping only
    the summaries (the attention of every block for 200 images would take GBs):

    ``rollout`` (n, g, g): class-token row of the attention rollout;
    ``last_cls`` (n, H, g, g): class-token attention of each head in the last block;
    ``distance`` (L, H): mean attention distance in pixels, averaged over images;
    ``outputs``: logits or features of the model for each image.
    """
    from tqdm import tqdm

    from vitwatch.theory import attention

    g = model.grid_size
    # at most 16 images at once: the attention of ViT-S/16's 12 blocks is 30 MB per image
    batch_size = max(1, min(batch_size, 16))
    rollouts, last, dist, outs = [], [], [], []
    for i in tqdm(range(0, len(x), batch_size), desc="ViT attention", leave=False):
        out = model.forward(x[i : i + batch_size])
        att = [np.asarray(a) for a in out["attention"]]  # L x (B, H, N, N)
        joint = attention.rollout(att)  # (B, N, N)
        rollouts.append(joint[:, 0, 1:].reshape(-1, g, g))  # (B, g, g)
        last.append(attention.cls_attention_maps(att[-1], g))  # (B, H, g, g)
        dist.append(attention.mean_attention_distance(att, g, model.patch_size) * len(att[0]))
        outs.append(np.asarray(out["logits"] if out["logits"] is not None else out["features"]))
    return {
        "rollout": np.concatenate(rollouts),
        "last_cls": np.concatenate(last),
        "distance": np.sum(dist, axis=0) / len(x),
        "outputs": np.concatenate(outs),
    }


def rollout_examples(store, run: str, positions, n: int = 4):
    """Up to ``n`` of the images at ``positions`` that ``run`` classified correctly, then up to
    ``n`` it got wrong. Returns (indices into ``positions``, titles naming the prediction)."""
    names = store.class_names
    pred, labels = store.preds(run)[positions], store.labels[positions]
    ok = pred == labels
    show = np.r_[np.flatnonzero(ok)[:n], np.flatnonzero(~ok)[:n]]
    titles = [
        f"right: {names[pred[s]]}"
        if ok[s]
        else f"said {names[pred[s]]}\n(true: {names[labels[s]]})"
        for s in show
    ]
    return show, titles


def describe_distance(distance, grid_size: int, patch_size: int) -> str:
    """The span of the mean attention distances (L, H) of the first and last blocks, against
    a head that attends uniformly to every patch, and whether local and global heads coexist
    in the first block, as Dosovitskiy et al. found."""
    from vitwatch.theory import attention

    d = np.asarray(distance)
    uniform = attention.patch_distances(grid_size, patch_size).mean()
    if d[0].min() < 0.5 * uniform and d[0].max() > 0.8 * uniform:
        verdict = (
            "The first block mixes local and global heads, as the paper found: attention can "
            "see the whole image from the first layer, and some heads choose not to."
        )
    elif d[0].min() >= 0.5 * uniform:
        verdict = (
            "Every head of the first block already attends about as widely as uniform "
            "attention, with no local heads (typical of an untrained or tiny model)."
        )
    else:
        verdict = (
            "The first block's heads all stay local: the global heads reported in the paper "
            "are not found here."
        )
    return (
        f"In the first block the heads span {d[0].min():.0f} to {d[0].max():.0f} pixels, "
        f"in the last block {d[-1].min():.0f} to {d[-1].max():.0f}; a head spreading its "
        f"attention uniformly over the {grid_size} x {grid_size} patches would score "
        f"{uniform:.0f} pixels. " + verdict
    )


@dataclass
class Distances:
    """The mean attention distances (L, H) of a ViT with ``grid_size`` x ``grid_size`` patches
    of ``patch_size`` pixels: what they show, and the numbers saved."""

    distance: np.ndarray
    grid_size: int
    patch_size: int

    @property
    def sentence(self) -> str:
        return describe_distance(self.distance, self.grid_size, self.patch_size)

    @property
    def record(self) -> dict:
        return {"attention_distance": np.asarray(self.distance).tolist()}

"""Protocol B, a linear probe on cached features.

The backbone runs once per image (plus a few augmented views of train, the first views of
protocol A), then the softmax head of protocol A trains on these arrays in seconds, its
settings (learning rate, L2 strength, standardisation) chosen on validation from a grid that is
the same for every backbone. A linear probe by gradient descent, not the closed-form few-shot
regression of [Kolesnikov et al., 2020; Dosovitskiy et al., 2021]. One probe per head seed, on
the same features.
"""

from __future__ import annotations

import time

import numpy as np

from vitwatch import runs
from vitwatch.protocols import head as heads
from vitwatch.protocols.extract import Extractor, check_rows, progress


def key(cfg) -> dict:
    """Protocol B's settings in the key of a run."""
    return {
        "head_seeds": runs.head_seeds(cfg),
        "probe_views": cfg.probe_views,
        "probe_grid": probe_grid(cfg),
        "probe_epochs": cfg.probe_epochs,
        "head_batch": heads.HEAD_BATCH,
    }


def probe_grid(cfg) -> list[tuple[float, float, bool]]:
    """Every (learning rate, L2, standardise) protocol B tries, the same for every backbone:
    ``probe_lr_grid`` (``[head_lr]`` when empty) x ``probe_l2_grid`` x standardisation
    (``probe_standardize``: "auto" tries raw and standardised features, so that a CNN's
    unnormalised features are not handicapped by one learning rate tuned for another scale)."""
    lrs = list(getattr(cfg, "probe_lr_grid", None) or [cfg.head_lr])
    std = {"auto": (False, True), "never": (False,), "always": (True,)}[
        getattr(cfg, "probe_standardize", "never")
    ]
    return [(float(lr), float(l2), s) for s in std for lr in lrs for l2 in cfg.probe_l2_grid]


def _probe(
    train_x,
    train_y,
    val_x,
    val_y,
    test_x,
    test_y,
    trainer: heads.HeadTrainer,
    cfg,
    seed: int,
    backbone_name: str,
    show: bool,
) -> runs.RunResult:
    """One probe: a head per point of :func:`probe_grid` (seed ``seed``, same epochs for every
    backbone), each trained by ``trainer``, the best on validation kept; the test set is scored
    once, with that head."""
    t0 = time.perf_counter()
    mean = train_x.mean(axis=0)
    scale = train_x.std(axis=0) + 1e-6  # (D,)
    scan, best = {}, None
    grid = probe_grid(cfg)
    desc = f"B {backbone_name} seed {seed}"
    for lr, l2, standardise in progress(grid, len(grid), desc, show, unit="setting"):
        tx, vx = (
            ((train_x - mean) / scale, (val_x - mean) / scale) if standardise else (train_x, val_x)
        )
        history, epoch = heads.fit_head(
            trainer, tx, train_y, vx, val_y, epochs=cfg.probe_epochs, lr=lr, l2=l2, seed=seed
        )
        head = trainer.head
        if standardise:
            heads.fold_standardisation(head, mean, scale)
        val_loss, val_acc, val_probs = heads.evaluate(head, val_x, val_y)
        scan[f"lr={lr:g} l2={l2:g} std={int(standardise)}"] = {
            "val_accuracy": val_acc,
            "val_loss": val_loss,
            "best_epoch": epoch,
        }
        if best is None or (val_acc, -val_loss) > best[0]:
            chosen = (lr, l2, standardise)
            best = ((val_acc, -val_loss), chosen, head.get_weights(), history, epoch, val_probs)
    train_seconds = time.perf_counter() - t0
    _, (lr, l2, standardise), weights, history, epoch, val_probs = best
    head.set_weights(weights)
    extra = {"l2": l2, "lr": lr, "standardize": standardise, "l2_scan": scan, "best_epoch": epoch}
    return heads.head_result(
        "B", backbone_name, head, val_probs, val_y, test_x, test_y, history, train_seconds, extra
    )


def run(backbone, data, cfg, progress: bool = True, policy=None) -> runs.RunResult:
    """Linear probe: features cached once (``cfg.probe_views`` views of train: the eval view,
    then augmented views 1, 2, ..., the same as protocol A's), the softmax head trained for
    each setting of :func:`probe_grid`; the one with the best validation accuracy wins. One
    probe per seed of :func:`vitwatch.runs.head_seeds`, on the same features."""
    if not cfg.probe_l2_grid:
        raise ValueError("parameter 'probe_l2_grid' is empty: give at least one L2 strength")
    if cfg.probe_views < 1:
        raise ValueError(f"parameter 'probe_views' must be >= 1, got {cfg.probe_views}")
    seeds = runs.head_seeds(cfg)
    k = len(data.class_names)
    extractor = Extractor(backbone, data, cfg, progress, policy)
    views = [extractor("train", view=v) for v in range(cfg.probe_views)]
    train_x = np.concatenate(views)  # (V * N, D)
    train_y = np.tile(np.asarray(data.train.labels), cfg.probe_views)
    val_x, test_x = extractor.eval_splits()
    val_y, test_y = np.asarray(data.val.labels), np.asarray(data.test.labels)
    check_rows(views[0], data.train, "train"), check_rows(val_x, data.val, "val")
    trainer = heads.HeadTrainer(train_x.shape[1], k)  # one traced step for every head
    probes = [
        _probe(
            train_x, train_y, val_x, val_y, test_x, test_y, trainer, cfg, s, backbone.name, progress
        )
        for s in seeds
    ]
    out = runs.combine(probes, seeds)
    out.timings.update(extractor.counts())
    return out

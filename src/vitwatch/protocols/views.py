"""The evaluation-view study of notebook 03: what squashing a photograph, instead of each
backbone's native resize + centre crop, does to the linear probe; and ViT-S/16 at a higher
resolution (its position embeddings resampled, no training at that resolution).

Each cell of the study is protocol B with the eval view only (``probe_views`` 1, every head
seed), trained, validated and tested in one view, stored under
``<results store>/eval_views/<view>_<px>/``. :func:`study_table` turns the cells into the
table of 03 with two-level bootstrap intervals (:mod:`vitwatch.seeds`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np

from vitwatch import runs

STUDY_VIEWS = ("squash", "native")


def hires_size(cfg) -> int:
    """The ViT's higher resolution: 384 px at 224 (``img_size * 384 / 224`` rounded to the
    patch size otherwise, e.g. 112 for the smoke profile's 64 px and 8 px patches)."""
    from vitwatch.models import vit

    patch = vit.VARIANTS[cfg.vit_variant]["patch_size"]
    return patch * max(1, round(cfg.img_size * 384 / 224 / patch))


def vit_at(cfg, img_size: int, name: str = "vit_s16"):
    """The profile's ViT checkpoint in a model built for ``img_size``: ``vit.load_npz``
    resamples the position embeddings (bilinear on the patch grid), with no fine-tuning at
    that resolution."""
    from vitwatch.models import registry, vit

    path = registry.vit_checkpoint_path(cfg.vit_checkpoint, cfg)
    model = vit.build(cfg.vit_variant, num_classes=0, img_size=img_size, name=name)
    vit.load_npz(model, path)
    model.trainable = False
    key = registry._key(
        name, cfg.vit_variant, img_size, "pm1", "gelu_tanh", registry.file_digest(path)
    )
    return registry.Backbone(
        name,
        model,
        vit.preprocess,
        img_size,
        model.embed_dim,
        key,
        description=f"ViT-{cfg.vit_variant} at {img_size} px",
        params=int(model.count_params()),
        source=str(path),
        vit=model,
        cache_dir=cfg.cache_dir,
    )


def view_config(cfg, view: str):
    """The config of one cell of the study: protocol B with the eval view only
    (``probe_views`` 1), in view ``view``."""
    out = copy.copy(cfg)
    out.eval_view, out.probe_views = view, 1
    return out


def eval_view_study(
    backbones: dict,
    data,
    cfg,
    store,
    names=("vit_s16", "resnet50"),
    hires: bool = True,
    progress: bool = False,
    log: Callable[[str], None] = print,
    policy=None,
) -> dict[tuple[str, str, int], runs.RunResult]:
    """Protocol B (eval view only, every head seed) of each backbone of ``names`` evaluated
    in each view of :data:`STUDY_VIEWS`, and the ViT at :func:`hires_size` in its native view:
    ``{(backbone, view, img_size): RunResult}``. Training, validation and test images are all
    shown in the view studied. Resumable: each cell is stored in ``store``'s sub-store
    ``eval_views/<view>_<px>``. ``policy``: the device policy (:mod:`.device`)."""
    from vitwatch import protocols

    cells = [(backbones[n], v) for n in names if n in backbones for v in STUDY_VIEWS]
    if hires and "vit_s16" in names and "vit_s16" in backbones:
        cells.append((vit_at(cfg, hires_size(cfg)), "native"))
    out = {}
    for b, view in cells:
        cell_store = store.sub("eval_views", f"{view}_{b.img_size}")
        out[(b.name, view, b.img_size)] = protocols.run(
            "B",
            b,
            data,
            view_config(cfg, view),
            cell_store,
            progress=progress,
            log=log,
            policy=policy,
        )
    return out


def _ci(d: dict, sign: str = "+") -> str:
    """``mean [lo, hi]`` in points."""
    return f"{100 * d['mean']:{sign}.1f} [{100 * d['lo']:{sign}.1f}, {100 * d['hi']:{sign}.1f}]"


def study_table(
    study: dict, backbones: dict, test_labels, img_size: int, n_boot: int, seed: int
) -> tuple[list[dict], list[str]]:
    """The rows of 03's evaluation-view table (mean test top-1 over the head seeds with a
    two-level bootstrap interval, the seeds' s.d., the paired difference from the backbone's
    reference view: squash at the native size; for another size, native at the native size),
    and the ViT-S/16 minus ResNet-50 differences per view at ``img_size`` (sentence parts)."""
    from vitwatch import features, seeds
    from vitwatch.protocols import describe

    y = np.asarray(test_labels)
    hit = {k: seeds.correct(run.seed_test_probs, y) for k, run in study.items()}  # (S, N)
    rows = []
    for (name, view, size), c in hit.items():
        spec = features.eval_view_spec(backbones[name], view)
        native_size = backbones[name].img_size
        base = (name, "squash" if size == native_size else "native", native_size)
        diff = (
            seeds.paired_seed_diff(c, hit[base], n_boot, seed)
            if base != (name, view, size)
            else None
        )
        acc = seeds.seed_bootstrap(c, n_boot, seed)
        shown = f" (crop {spec['crop_pct']}, {spec['interpolation']})" if view == "native" else ""
        rows.append(
            {
                "backbone": describe.label(name),
                "view": view + shown,
                "pixels": size,
                "test top-1 % [95 % CI]": _ci(acc, ""),
                "seed s.d. (points)": 100 * acc["seed_sd"],
                "minus reference, points [95 % CI]": _ci(diff) if diff else "(reference)",
                "reference": f"{base[1]}, {base[2]} px" if diff else "",
            }
        )
    gaps = []
    for view in STUDY_VIEWS:
        a, b = ("vit_s16", view, img_size), ("resnet50", view, img_size)
        if a in hit and b in hit:
            gaps.append(f"{view} {_ci(seeds.paired_seed_diff(hit[a], hit[b], n_boot, seed))}")
    return rows, gaps


def describe_study(gaps: list[str], eval_view: str, head_seeds: int) -> str:
    """The sentence under the table: the ViT minus ResNet differences, the main view."""
    from vitwatch import seeds

    return (
        (
            "ViT-S/16 minus ResNet-50 under this probe, in points (95 % CI, paired on images "
            f"and seeds): {'; '.join(gaps)}. "
            if gaps
            else ""
        )
        + f"The main results use the `{eval_view}` view. "
        + seeds.interval_note(head_seeds)
    )

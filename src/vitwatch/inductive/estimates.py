"""How long notebook 05's grid takes: each profile's training time on this CPU and on a GPU.

Every run of a grid has the same step budget, so a model's cost is its time per step times
the number of steps. The models of a grid train side by side (:mod:`.grid`), so the grid takes
about as long as its slowest model's runs, at the seconds per step measured while the others
train too.
"""

from __future__ import annotations

import functools
import math
import types

import pandas as pd

from vitwatch.inductive import stacked
from vitwatch.inductive.trainer import MAX_RUNS_AT_ONCE
from vitwatch.models import small as small_models

# Seconds per optimizer step (batch 128, CIFAR-10 scale), one model at a time, fp32, TF 2.21,
# on the project's 2-core AMD EPYC CI machine, idle (December 3; 1.6-1.9x the step times an
# earlier session measured on its machine). Three models side by side there took 2.57 s per
# step of all three, 12 % less than one after another (2.92 s): quick's CIFAR-10 grid took
# 13.8 min alone at size. Used to estimate a profile's runtime on another dataset's run, and
# by the runtime plan.
CPU_STEP_SECONDS = {
    "cifar10": {"resnet": 0.83, "vit": 1.05, "vit_spt_lsa": 1.04, "vit_small_patch": 3.84}
}
# No GPU was available to measure: a GPU step is *assumed* to cost a fixed 4 ms (kernel
# launches of a small model), shared by the runs trained in one program (:mod:`.stacked`),
# plus 3 x MACs x batch per run at a sustained 10 TMAC/s (fp32/TF32 on an A100/H100-class
# card), whose memory is 80 GiB. An estimate, stated as such in the report.
GPU_OVERHEAD_S, GPU_MACS_PER_S, GPU_MEMORY_BYTES = 4e-3, 10e12, 80 << 30


def estimate_seconds(
    step_seconds: dict,
    sizes,
    seeds: int,
    epochs: int,
    batch_size: int,
    side_by_side: bool = False,
) -> float:
    """Training time of a grid (evaluation excluded): runs x step budget x seconds per step,
    summed over models (one after another), or the slowest model's when ``side_by_side``
    (``step_seconds`` then measured with the models training at once)."""
    steps = epochs * math.ceil(max(sizes) / batch_size)
    per_model = [len(sizes) * seeds * steps * s for s in step_seconds.values()]
    return float(max(per_model) if side_by_side else sum(per_model))


def gpu_step_seconds(macs: int, batch_size: int, runs_at_once: int = 1) -> float:
    """Assumed seconds of one run's step on a GPU, ``runs_at_once`` runs per program."""
    return GPU_OVERHEAD_S / runs_at_once + 3 * macs * batch_size / GPU_MACS_PER_S


@functools.cache
def _model(arch: str, dataset: str):
    img, ch = (32, 3) if dataset == "cifar10" else (8, 1)
    return small_models.build(arch, dataset, img, ch, 10)


def _macs(arch: str, dataset: str) -> int:
    return small_models.count_macs(_model(arch, dataset))


def runs_at_once(arch: str, cfg) -> int:
    """Runs of ``arch`` the GPU estimate assumes trained in one program under ``cfg``: all of
    them, up to :data:`MAX_RUNS_AT_ONCE` and what fits in :data:`GPU_MEMORY_BYTES`."""
    batch = 128 if cfg.small_dataset == "cifar10" else 32
    fit = stacked.runs_that_fit(_model(arch, cfg.small_dataset), batch, GPU_MEMORY_BYTES)
    return min(len(cfg.small_train_sizes) * cfg.small_seeds, MAX_RUNS_AT_ONCE, fit)


def gpu_steps(cfg) -> dict[str, float]:
    """{model: assumed seconds of one run's step on a GPU} for notebook 05 under ``cfg``
    (``small_*`` parameters), each model's runs stacked (:func:`runs_at_once`)."""
    batch = 128 if cfg.small_dataset == "cifar10" else 32
    return {
        a: gpu_step_seconds(_macs(a, cfg.small_dataset), batch, runs_at_once(a, cfg))
        for a in cfg.small_models
    }


def format_hours(hours: float) -> str:
    """3.2 -> 'about 3.2 hours'; 150 -> 'about 6 days'; minutes below an hour."""
    if math.isnan(hours):
        return "unknown"
    if hours < 1:
        return f"about {max(1, round(60 * hours))} minutes"
    return f"about {hours:.1f} hours" if hours < 48 else f"about {hours / 24:.0f} days"


def profile_estimates(runs: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Training time of each profile's grid, in hours, on this CPU and on a GPU.

    ``runs``: this run's grid on ``dataset`` (:func:`.grid.run_grid`), whose median seconds per
    step per model (measured side by side when its ``side_by_side`` says so) estimate the
    profiles on that dataset; profiles on another dataset use :data:`CPU_STEP_SECONDS`.
    """
    from vitwatch import config

    measured = runs.groupby("arch")["seconds_per_step"].median().to_dict()
    side_by_side = "side_by_side" in runs and bool(runs["side_by_side"].gt(1).all())

    rows = []
    for name in config.PROFILES:
        # the YAML values over the defaults (no paths resolved)
        p = types.SimpleNamespace(
            **{**{k: v.default for k, v in config.PARAMS.items()}, **config.load_profile(name)}
        )
        batch = 128 if p.small_dataset == "cifar10" else 32
        same = p.small_dataset == dataset
        cpu = measured if same else CPU_STEP_SECONDS.get(p.small_dataset, {})
        gpu = gpu_steps(p)
        runs = len(p.small_train_sizes) * p.small_seeds * len(p.small_models)
        steps = p.small_epochs * math.ceil(max(p.small_train_sizes) / batch)
        cpu_h = (
            estimate_seconds(
                {a: cpu[a] for a in p.small_models},
                p.small_train_sizes,
                p.small_seeds,
                p.small_epochs,
                batch,
                side_by_side=same and side_by_side,
            )
            / 3600
            if all(a in cpu for a in p.small_models)
            else math.nan
        )
        rows.append(
            {
                "profile": name,
                "dataset": p.small_dataset,
                "runs": runs,
                "steps per run": steps,
                "CPU hours (this machine)": cpu_h,
                "CPU source": "measured in this run" if same else "reference measurement",
                "GPU hours (estimate)": estimate_seconds(
                    gpu, p.small_train_sizes, p.small_seeds, p.small_epochs, batch
                )
                / 3600,
            }
        )
    return pd.DataFrame(rows)

"""Notebook 05's training step on this machine: one run at a time against runs trained at once.

Run: ``make bench`` (after the backbones) or ``.venv/bin/python benchmarks/bench_small.py``
(``--quick``: fewer steps). For each small model at CIFAR-10 scale (32 x 32 x 3, batch 128,
the recipe of notebook 05, random images), the seconds of one optimizer step of one run:
- **alone**: :class:`vitwatch.inductive.trainer.Trainer`, one run per call (what notebook 05
  does on CPU);
- **stacked xR**: :class:`vitwatch.inductive.stacked.StackedTrainer`, R runs per call, the
  call's time divided by R (what notebook 05 does on a GPU, where a step of a small model is
  mostly kernel launches).
Also wall and process-CPU time, and the achieved multiply-accumulates per second (3 x forward
MACs per image for a training step). Each row is the best of two calls (one with ``--quick``)
after a first, untimed one.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from bench_backbones import best_time  # noqa: E402  (this folder is on the path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    ap.add_argument("--archs", nargs="+", default=["resnet", "vit", "vit_spt_lsa"])
    ap.add_argument("--runs", nargs="+", type=int, default=[3], help="R of the stacked rows")
    ap.add_argument("--steps", type=int, default=0, help="steps per call (0: auto)")
    args = ap.parse_args(argv)

    from vitwatch import fastpath
    from vitwatch.inductive.recipe import Recipe
    from vitwatch.inductive.stacked import StackedTrainer
    from vitwatch.inductive.trainer import Trainer, device_settings
    from vitwatch.models import small

    settings = device_settings()
    how = {"precision": settings["precision"], "jit": settings["jit"]}
    steps = args.steps or (2 if args.quick else 4)
    rounds = 1 if args.quick else 2
    rec = Recipe(batch_size=128, steps=steps, shift=4, flip=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    where = fastpath.gpus() and "GPU" or "CPU"
    print(f"notebook 05 training steps on {where}, batch 128, {settings}, {steps} steps per call")
    print(f"{'model':<16}{'mode':<12}{'s/step/run':>11}{'CPU-s':>8}{'GMAC/s':>9}{'vs alone':>9}")
    for arch in args.archs:
        alone = Trainer(arch, "cifar10", 32, 3, 10, rec, **how)
        macs = small.count_macs(alone.model)
        wall, cpu = best_time(lambda t=alone: t.fit(x, y, 0), rounds)
        base = wall / steps
        print(
            f"{arch:<16}{'alone':<12}{base:>11.4f}{cpu / steps:>8.3f}"
            f"{3 * macs * 128 / base / 1e9:>9.1f}{1.0:>9.2f}"
        )
        for r in args.runs:
            many = StackedTrainer(arch, "cifar10", 32, 3, 10, rec, r, **how)
            subsets, seeds = [np.arange(len(x))] * r, list(range(r))
            wall, cpu = best_time(lambda t=many, a=subsets, s=seeds: t.fit_many(x, y, a, s), rounds)
            per = wall / steps / r
            print(
                f"{arch:<16}{f'stacked x{r}':<12}{per:>11.4f}{cpu / steps / r:>8.3f}"
                f"{3 * macs * 128 / per / 1e9:>9.1f}{base / per:>9.2f}"
            )


if __name__ == "__main__":
    main()

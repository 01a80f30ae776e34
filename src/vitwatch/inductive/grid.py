"""The grid of notebook 05: every (model, size, seed) run, cached and resumable, and its
summary over seeds.

Each finished run is written atomically to ``<store>/05_scratch/<dataset>/`` as one JSON
holding its specification; :func:`run_grid` skips runs whose stored specification matches, so a
killed run resumes where it stopped and a changed setting reruns only what it changes.

On CPU the models train side by side, one thread each (their runs one after another, in grid
order): TensorFlow runs the small operations of one model mostly on one core, and the threads
release the interpreter while their graphs run. On a GPU (``runs_at_once`` > 1 in
:func:`.trainer.device_settings`) the models train one after another, each one's runs stacked
into programs of up to ``runs_at_once`` runs (:mod:`.stacked`); when a program does not fit in
the device's memory, it and the later ones are halved. Every run's numbers are those it gets
alone (within float rounding when stacked): its weights, optimizer, subset, batch order and
augmentation are its own, and everything drawn from a global random state (the seeds' initial
weights) is drawn before the threads start.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from vitwatch import fastpath, results, stats
from vitwatch.data import small as small_data
from vitwatch.inductive import sentences, stacked
from vitwatch.inductive.recipe import Recipe, check_sizes, scale_for
from vitwatch.inductive.trainer import RUNS_AT_ONCE_ENV, device_settings, make_trainer, train_one
from vitwatch.models import small as small_models

VERSION = 1  # bump when the training code changes what a run produces

SCRATCH_FOLDER = "05_scratch"
SUMMARY_FILE = "05_inductive_bias.json"


def spec(
    data: small_data.SmallData, arch: str, n_train: int, seed: int, rec: Recipe, precision: str
) -> dict:
    """Everything that determines a run's result (compared on resume)."""
    return {
        "version": VERSION,
        "dataset": data.name,
        "n_pool": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
        "arch": arch,
        "n_train": int(n_train),
        "seed": int(seed),
        "recipe": asdict(rec),
        "hyperparameters": small_models.hyperparameters(arch, scale_for(data)),
        "precision": precision,
    }


def run_path(store: results.ResultsStore, dataset: str, arch: str, n_train: int, seed: int):
    return Path(store.folder) / SCRATCH_FOLDER / dataset / f"{arch}_n{n_train}_s{seed}.json"


def load_run(path: Path, expected: dict) -> dict | None:
    """The stored run at ``path`` if it exists and was made with ``expected`` settings."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        return None  # a corrupt file is simply rerun
    return stored if results.normalize(stored.get("spec")) == results.normalize(expected) else None


def run_grid(
    store: results.ResultsStore,
    data: small_data.SmallData,
    archs,
    rec: Recipe,
    sizes,
    seeds: int,
    progress: bool = True,
    settings: dict | None = None,
) -> pd.DataFrame:
    """Train every (arch, size, seed) not yet in ``store``; one row per run, in grid order
    (seed, then size, then arch). ``settings``: :func:`.trainer.device_settings` (default:
    those of this machine)."""
    from tqdm import tqdm

    archs = list(archs)
    for a in archs:
        small_models.hyperparameters(a, scale_for(data))  # validates the name
    sizes = check_sizes(sizes, len(data.y_train))
    settings = settings or device_settings()
    grid = [(n, s, a) for s in range(seeds) for n in sizes for a in archs]
    stored, expected = {}, {}
    for n, s, a in grid:
        expected[n, s, a] = spec(data, a, n, s, rec, settings["precision"])
        stored[n, s, a] = load_run(run_path(store, data.name, a, n, s), expected[n, s, a])
    todo = [key for key in grid if stored[key] is None]
    models = list(dict.fromkeys(a for _, _, a in todo))  # those training
    keys = {a: [key for key in todo if key[2] == a] for a in models}
    folder = store.sub(SCRATCH_FOLDER, data.name)
    at_once = int(settings.get("runs_at_once", 1))

    def save(key, out: dict, side_by_side: int, runs_at_once: int = 1) -> None:
        n, s, a = key
        out = {"spec": expected[key], **out}
        out["side_by_side"] = side_by_side  # models training at once: their seconds are shared
        out["runs_at_once"] = runs_at_once  # runs in one program: train_seconds is a share
        folder.write_json(f"{a}_n{n}_s{s}.json", out)
        stored[key] = out

    bar = tqdm(total=len(grid), desc="from-scratch runs", disable=not progress)
    bar.update(len(grid) - len(todo))

    def done(key) -> None:
        n, s, a = key
        bar.set_postfix_str(f"{a} n={n} seed={s}: {stored[key]['test_accuracy']:.3f}")
        bar.update()

    try:
        if at_once > 1:
            for a in models:  # one model after another, its runs stacked (a GPU)
                _stacked_runs(data, a, rec, settings, keys[a], at_once, save, done)
        else:
            _side_by_side(data, rec, settings, keys, save, done)
    finally:
        bar.close()
    rows = []
    for key in grid:
        n, s, a = key
        rows.append(
            {
                "arch": a,
                "n_train": n,
                "seed": s,
                "cached": key not in todo,
                **{k: v for k, v in stored[key].items() if k not in ("spec", "loss_curve")},
            }
        )
    return pd.DataFrame(rows)


def _side_by_side(data, rec: Recipe, settings: dict, keys: dict, save, done) -> None:
    """Each model's runs one after another on its own thread, the models side by side (CPU)."""
    pools, futures, trainers = {}, {}, {}
    for a in keys:
        # every model made, traced and seeded on this thread (Keras' global random state)
        # before any trains: building and tracing while another thread's graphs run crashed
        # TensorFlow (a segfault in its compute threads, quick's CIFAR-10 grid, TF 2.21)
        trainers[a] = make_trainer(a, data, rec, settings["precision"], settings["jit"])
        for _, s, _ in keys[a]:
            trainers[a].initial_weights(s)

    def run(trainer, n: int, s: int, a: str) -> None:  # on the model's own thread
        save((n, s, a), train_one(data, trainer, n, s), len(keys))

    try:
        for a in keys:
            pools[a] = ThreadPoolExecutor(1, thread_name_prefix=f"05-{a}")
            futures.update({pools[a].submit(run, trainers[a], *key): key for key in keys[a]})
        for future in as_completed(futures):
            future.result()
            done(futures[future])
    finally:
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)


def chunks(items: list, at_most: int) -> list[list]:
    """``items`` cut, in order, into the fewest chunks of at most ``at_most``, balanced (their
    sizes differ by one at most, so a model's runs need two traced programs at most)."""
    if not items:
        return []
    count = -(-len(items) // at_most)
    size, extra = divmod(len(items), count)
    out, start = [], 0
    for i in range(count):
        out.append(items[start : start + size + (i < extra)])
        start += len(out[-1])
    return out


def _stacked_runs(data, arch: str, rec: Recipe, settings: dict, keys, at_once, save, done):
    """``arch``'s runs (``keys``) in programs of at most ``at_once`` runs and of what
    :func:`.stacked.runs_that_fit` the device's memory, if stacking measured faster than one
    run at a time on this device (:func:`.stacked.measure`, remembered in the cache like
    :mod:`vitwatch.fastpath`'s choices; ``VITWATCH_RUNS_AT_ONCE`` skips the measurement); when
    a program does not fit after all, it and every later one hold half as many runs."""
    import tensorflow as tf

    trainers: dict = {}

    def trainer(runs: int):
        if runs not in trainers:
            if runs == 1:
                trainers[runs] = make_trainer(
                    arch, data, rec, settings["precision"], settings["jit"]
                )
            else:
                trainers[runs] = stacked.make_stacked(
                    arch, data, rec, runs, settings["precision"], settings["jit"]
                )
        return trainers[runs]

    shape = (data.img_size, data.channels, data.num_classes)
    model = small_models.build(arch, scale_for(data), shape[0], shape[1], shape[2])
    at_once = min(
        at_once, stacked.runs_that_fit(model, rec.batch_size, settings.get("memory_bytes", 0))
    )
    if at_once > 1 and len(keys) > 1 and not os.environ.get(RUNS_AT_ONCE_ENV, "").strip():
        at_once = min(at_once, len(keys))
        choice = fastpath.remembered_or_measured(
            f"05 {arch} x{at_once} {settings['precision']} jit={settings['jit']}",
            (rec.batch_size, data.img_size, data.img_size, data.channels),
            lambda: stacked.measure(
                arch, data, rec, at_once, settings["precision"], settings["jit"]
            ),
        )
        stacked_ms = choice["stacked_s"] and f"{1000 * choice['stacked_s']:.1f} ms"
        print(
            f"{arch}: one run's step {1000 * choice['alone_s']:.1f} ms alone, "
            f"{stacked_ms or 'out of memory'} with {choice['runs']} stacked (measured "
            f"{choice['measured_at']}) -> {at_once if choice['stack'] else 1} at once"
        )
        if not choice["stack"]:
            at_once = 1
    pending = chunks(list(keys), at_once)
    while pending:
        chunk = pending.pop(0)
        try:
            if len(chunk) == 1:
                n, s, _ = chunk[0]
                outs = [train_one(data, trainer(1), n, s)]
            else:
                outs = stacked.train_many(data, trainer(len(chunk)), [(n, s) for n, s, _ in chunk])
        except tf.errors.ResourceExhaustedError:
            if len(chunk) == 1:
                raise
            trainers.pop(len(chunk), None)
            at_once = len(chunk) // 2  # for this program and every later one
            print(f"{arch}: {len(chunk)} runs at once do not fit in memory; {at_once} at most")
            pending = chunks(chunk + [key for later in pending for key in later], at_once)
            continue
        for key, out in zip(chunk, outs):
            save(key, out, 1, len(chunk))
            done(key)


def aggregate(
    runs: pd.DataFrame, confidence: float = 0.95, value: str = "test_accuracy"
) -> pd.DataFrame:
    """One row per (arch, n_train): seeds, mean, std, t-interval bounds clipped to [0, 1]
    (:func:`vitwatch.stats.seed_summary`), and ``train_mean`` when the runs have it."""
    rows = []
    for (arch, n), g in runs.groupby(["arch", "n_train"], sort=False):
        rows.append({"arch": arch, "n_train": int(n), **stats.seed_summary(g[value], confidence)})
        if "train_accuracy" in g:
            rows[-1]["train_mean"] = float(g["train_accuracy"].mean())
    return pd.DataFrame(rows).sort_values(["arch", "n_train"], kind="stable").reset_index(drop=True)


def save_summary(
    store: results.ResultsStore,
    data: small_data.SmallData,
    rec: Recipe,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
) -> Path:
    """``<store>/05_inductive_bias.json``: every run and the aggregated curves."""
    from vitwatch import config

    return store.write_json(
        SUMMARY_FILE,
        {
            "dataset": data.name,
            "source": data.source,
            "profile": store.profile,
            "recipe": asdict(rec),
            "models": list(dict.fromkeys(runs["arch"])),
            "runs": runs.to_dict(orient="records"),
            "summary": summary.to_dict(orient="records"),
            "sentences": sentences.describe(summary, runs),
            "machine": config.machine_summary(),
        },
    )

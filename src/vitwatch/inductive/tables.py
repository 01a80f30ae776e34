"""The tables of notebook 05: the data, the models, accuracy by size, time per step."""

from __future__ import annotations

import math

import pandas as pd

from vitwatch.data import small as small_data
from vitwatch.inductive.recipe import scale_for
from vitwatch.models import small as small_models


def data_table(data: small_data.SmallData, sizes, seeds: int) -> pd.DataFrame:
    """One row: the dataset, its image shape, classes, pool, test images, sizes and seeds."""
    return pd.DataFrame(
        {
            "dataset": [data.name],
            "image": [f"{data.img_size}x{data.img_size}x{data.channels}"],
            "classes": [data.num_classes],
            "training pool": [len(data.y_train)],
            "test images": [len(data.y_test)],
            "training sizes": [", ".join(f"{n:,}" for n in sizes)],
            "seeds": [seeds],
        }
    ).set_index("dataset")


def models_table(data: small_data.SmallData, archs) -> pd.DataFrame:
    """One row per model: hyperparameters, tokens (patches + class token; None for the CNN),
    trainable parameters and millions of multiply-accumulates per image."""
    rows = []
    scale = scale_for(data)
    for arch in archs:
        model = small_models.build(arch, scale, data.img_size, data.channels, data.num_classes)
        hp = small_models.hyperparameters(arch, scale)
        tokens = (data.img_size // hp["patch_size"]) ** 2 + 1 if "patch_size" in hp else None
        shape = ", ".join(f"{k}={v}" for k, v in hp.items() if not isinstance(v, bool))
        rows.append(
            {
                "model": small_models.LABELS[arch],
                "hyperparameters": shape,
                "tokens": tokens,
                "parameters": small_models.count_params(model),
                "MMACs / image": small_models.count_macs(model) / 1e6,
            }
        )
    return pd.DataFrame(rows).set_index("model")


def _mean_and_interval(row) -> str:
    m, lo, hi = row["mean"], row["ci_low"], row["ci_high"]
    ci = "" if math.isnan(lo) else f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{100 * m:.1f}{ci}"


def accuracy_table(summary: pd.DataFrame, archs) -> pd.DataFrame:
    """Test accuracy (%) by size (rows) and model (columns, in ``archs`` order): the mean
    over seeds and its interval in brackets (none with one seed)."""
    table = summary.assign(
        model=summary["arch"].map(small_models.LABELS),
        value=summary.apply(_mean_and_interval, axis=1),
    ).pivot(index="n_train", columns="model", values="value")[
        [small_models.LABELS[a] for a in archs]
    ]
    table.index.name = "training images"
    return table


def timing_table(runs: pd.DataFrame, archs) -> pd.DataFrame:
    """Per model: milliseconds per step (median over its runs) and its runs' training time."""
    measured = runs.groupby("arch")["seconds_per_step"].median().to_dict()
    return pd.DataFrame(
        {
            "model": [small_models.LABELS[a] for a in archs],
            "ms per step (median)": [1000 * measured[a] for a in archs],
            "training seconds, all runs": [
                runs.loc[runs["arch"] == a, "train_seconds"].sum() for a in archs
            ],
        }
    ).set_index("model")

"""The tables and sentences of notebook 03, built from its runs (:class:`vitwatch.runs.RunResult`)
so that each cell of the notebook is one call, and so that the text stays true whatever the
numbers are when the experiment is rerun.

Tables are pandas DataFrames indexed as shown; accuracies are fractions.
"""

from __future__ import annotations

from collections.abc import Mapping

from vitwatch import catalogue, runs

SPLIT_ROLES = {
    "train": "fits the head / the network",
    "val": "chooses epochs, L2 strength, early stop",
    "test": "predicted once per final model",
}
ACCURACY_COLUMNS = {
    "head_seeds": "seeds",
    "val_top1": "validation top-1",
    "top1": "test top-1",
    "top1_seed_sd": "top-1 s.d. over seeds",
    "top5": "test top-5",
    "trainable_params": "trained parameters",
}
COMPUTE_COLUMNS = {
    "forward_images": "forward passes needed",
    "computed_images": "computed by this run",
    "cache_hit_images": "read from the cache",
    "streamed_forward_images": "if streamed",
    "backward_images": "backward passes",
    "extract_seconds": "feature / eval time (s)",
    "train_seconds": "training time (s)",
}


def label(backbone: str) -> str:
    return catalogue.LONG_LABELS.get(backbone, backbone)


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def splits_table(data):
    """Images, classes and role of each split."""
    import numpy as np
    import pandas as pd

    rows = [
        {
            "split": name,
            "images": len(getattr(data, name)),
            "classes": len(np.unique(getattr(data, name).labels)),
            "role": role,
        }
        for name, role in SPLIT_ROLES.items()
    ]
    return pd.DataFrame(rows).set_index("split")


def backbone_table(backbones: Mapping, cost: Mapping[str, Mapping]):
    """Feature dimension, size, GMACs and measured throughput of each backbone."""
    import pandas as pd

    rows = [
        {
            "backbone": label(n),
            "feature dim": b.feature_dim,
            "params (M)": cost[n]["params"] / 1e6,
            "GMACs / image": cost[n]["gmacs"],
            "images/s (this machine)": cost[n]["images_per_second"],
        }
        for n, b in backbones.items()
    ]
    return pd.DataFrame(rows).set_index("backbone")


def _table(results: Mapping[str, runs.RunResult]):
    import pandas as pd

    table = pd.DataFrame(runs.summary(results))
    table["backbone"] = table["backbone"].map(label)
    return table


def zero_shot_table(results: Mapping[str, runs.RunResult]):
    """Validation top-1, test top-1 and top-5 of the Z runs among ``results``."""
    z = {k: v for k, v in results.items() if v.protocol == "Z"}
    columns = {"val_top1": "validation top-1", "top1": "test top-1", "top5": "test top-5"}
    return _table(z).set_index("backbone")[list(columns)].rename(columns=columns)


def seed_table(results: Mapping[str, runs.RunResult], names):
    """Protocol A of each backbone of ``names`` beside the seed report's validation accuracy
    (:data:`vitwatch.catalogue.SEED_REFERENCE`; backbones the seed did not run are left out)."""
    import pandas as pd

    rows = []
    for n in names:
        if n not in catalogue.SEED_REFERENCE:
            continue
        a = results[f"A_{n}"]
        rows.append(
            {
                "backbone": label(n),
                "seed: validation": catalogue.SEED_REFERENCE[n],
                "ours: validation": a.val_top1,
                "ours: test top-1": a.top1,
                "ours: test top-5": a.top5,
                "ours: epoch kept": a.extra["best_epoch"] + 1,
            }
        )
    columns = ["backbone", "seed: validation", "ours: validation", "ours: test top-1"]
    columns += ["ours: test top-5", "ours: epoch kept"]
    return pd.DataFrame(rows, columns=columns).set_index("backbone")


def describe_setup(data, cfg) -> str:
    """Protocol A's setting here and in the seed report, side by side."""
    return (
        f"Ours: {len(data.train)} training / {len(data.val)} validation / "
        f"{len(data.test)} test images at {cfg.img_size} px, {cfg.head_epochs} epochs of "
        f"Adam (learning rate {cfg.head_lr}), batch {cfg.batch_size}, augmentation "
        f"{'on' if cfg.augment else 'off'}. Seed: the official 12,000 / 8,580 split at "
        "224 px, a single 'validation' accuracy reported with no separate test set "
        "described; optimiser settings and epoch count not reported."
    )


def accuracy_table(results: Mapping[str, runs.RunResult]):
    """Every run: accuracies (means over the head seeds), their s.d., trained parameters."""
    cols = ["protocol", "backbone", *ACCURACY_COLUMNS]
    table = _table(results)[cols].sort_values(["protocol", "backbone"])
    return table.set_index(["protocol", "backbone"]).rename(columns=ACCURACY_COLUMNS)


def compute_table(results: Mapping[str, runs.RunResult]):
    """Every run: backbone passes (needed, computed, cached, if streamed), backward passes and
    wall-clock seconds."""
    cols = ["protocol", "backbone", *COMPUTE_COLUMNS]
    table = _table(results)[cols].sort_values(["protocol", "backbone"])
    return table.set_index(["protocol", "backbone"]).rename(columns=COMPUTE_COLUMNS)


def discussion(
    results: Mapping[str, runs.RunResult], profile: str, smoke: bool, skipped: Mapping[str, str]
) -> str:
    """The run's findings in Markdown: ViT-S/16 against ResNet-50 per protocol, the probe
    against the seed's protocol (accuracy and backbone passes), the TF Hub route."""
    lines = []
    for p in ("Z", "A", "B", "C"):
        v, r = results.get(f"{p}_vit_s16"), results.get(f"{p}_resnet50")
        if v and r:
            gap = 100 * (v.top1 - r.top1)
            lead = "ahead" if gap > 0 else "behind" if gap < 0 else "level"
            lines.append(
                f"- **{p}**: ViT-S/16 {pct(v.top1)} vs ResNet-50 {pct(r.top1)} test "
                f"top-1: the ViT is {lead} by {abs(gap):.1f} points."
            )
    a, b = results["A_vit_s16"], results["B_vit_s16"]
    passes = {  # A as the seed ran it: streamed
        "A": a.timings.get("streamed_forward_images", a.timings["backbone_forward_images"]),
        "B": b.timings["backbone_forward_images"],
    }
    ratio = passes["A"] / max(passes["B"], 1)
    fewer = f"{ratio:.1f}x fewer" if ratio >= 1 else f"{1 / ratio:.1f}x more"
    lines.append(
        f"- The linear probe (B) reached {pct(b.top1)} against {pct(a.top1)} for "
        f"the seed's protocol (A) with ViT-S/16, using {fewer} backbone passes."
    )
    if "B_vit_s16_hub" in results:
        h = results["B_vit_s16_hub"]
        lines.append(
            f"- Through TF Hub, the same ViT-S/16 gives {pct(h.top1)} under "
            f"protocol B ({pct(b.top1)} with our implementation)."
        )
    if "vit_s16_hub" in skipped:
        lines.append("- " + skipped["vit_s16_hub"])
    head = f"In this run ({profile} profile" + ("; the numbers are meaningless" if smoke else "")
    return head + "):\n\n" + "\n".join(lines)

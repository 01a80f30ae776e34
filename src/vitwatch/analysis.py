"""Notebook 04's glue: the results store of notebook 03 turned into tables and sentences.

Reads only what 03 stored (:mod:`vitwatch.results`), recomputes no training. Holds:

- :func:`load_store` — dataset description, every run's predictions, the cost table;
- :func:`results_table` — top-1 / top-5 / macro-F1 with bootstrap CIs per run
  (:mod:`vitwatch.stats`), beside the seed report's numbers;
- :func:`paired_comparisons` — ViT vs ResNet on the same test images, per protocol: exact
  McNemar test and paired bootstrap CI of the accuracy difference (:func:`format_pairs` for
  display);
- sentence builders (``describe_*``) that state what the numbers say, whatever they are, so
  that the conclusions of the report stay true when the experiment is rerun.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vitwatch import catalogue, results, stats

PROTOCOLS = catalogue.PROTOCOLS
BACKBONES = catalogue.LABELS
# The seed report: validation accuracy, frozen backbone + softmax head (protocol A).
SEED_REFERENCE = catalogue.SEED_REFERENCE


def backbone_label(name: str) -> str:
    return BACKBONES.get(name, name)


@dataclass
class Store:
    """Everything 04 reads: ``dataset`` (dataset.json), ``runs`` name -> (meta, arrays),
    ``cost`` (cost.json, {} when absent), ``profile``."""

    dataset: dict
    runs: dict[str, tuple[dict, dict]]
    cost: dict = field(default_factory=dict)
    profile: str = "smoke"

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset["class_names"])

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset["test_labels"], dtype=np.int64)

    def probs(self, run: str) -> np.ndarray:
        return self.runs[run][1]["test_probs"]

    def preds(self, run: str) -> np.ndarray:
        return self.probs(run).argmax(axis=1)

    def correct(self, run: str) -> np.ndarray:
        return self.preds(run) == self.labels

    def names(self, backbone: str | None = None, protocol: str | None = None) -> list[str]:
        return [
            r
            for r, (m, _) in self.runs.items()
            if (backbone is None or m["backbone"] == backbone)
            and (protocol is None or m["protocol"] == protocol)
        ]

    def best_run(self, backbone: str, protocols=("A", "B", "C")) -> str | None:
        """The run of ``backbone`` with the best validation accuracy among ``protocols``."""
        cands = [r for r in self.names(backbone) if self.runs[r][0]["protocol"] in protocols]
        if not cands:
            return None
        return max(cands, key=lambda r: (self.runs[r][0].get("val_top1") or 0.0, r))


def load_store(cfg) -> Store:
    """Load the results store at ``cfg.results_dir``; a clear error when 03 has not run."""
    names = results.list_runs(cfg)
    if not names:
        raise FileNotFoundError(
            f"results store {cfg.results_dir} holds no finished run: execute notebook 03 "
            f"(profile {cfg.profile!r}) first; notebook 04 only reads its results"
        )
    dataset = results.load_dataset(cfg)
    labels = np.asarray(dataset["test_labels"])
    runs = {}
    for name in names:
        meta, arrays = results.load(cfg, name)
        probs = arrays["test_probs"]
        if probs.shape != (labels.size, len(dataset["class_names"])):
            raise ValueError(
                f"results store: {name}.npz test_probs has shape {probs.shape}, "
                f"dataset.json describes {labels.size} test images x "
                f"{len(dataset['class_names'])} classes"
            )
        if not np.array_equal(arrays["test_labels"], labels):
            raise ValueError(
                f"results store: {name}.npz test_labels differ from dataset.json: "
                "runs must be evaluated on the same test images, in order"
            )
        runs[name] = (meta, arrays)
    try:
        cost = results.load_cost(cfg)
    except FileNotFoundError:
        cost = {}
    return Store(dataset, runs, cost, cfg.profile)


# --- tables ----------------------------------------------------------------------------------
def results_table(store: Store, n_boot: int, seed: int = 0):
    """One row per run: backbone, protocol, top-1, top-5, macro-F1, each with a 95 % CI."""
    import pandas as pd

    rows = []
    for run, (meta, arrays) in store.runs.items():
        m = stats.bootstrap_metrics(arrays["test_probs"], store.labels, n_boot, seed)
        row = {"run": run, "backbone": meta["backbone"], "protocol": meta["protocol"]}
        for k, (v, lo, hi) in m.items():
            row.update({k: v, f"{k}_lo": lo, f"{k}_hi": hi})
        row["val_top1"] = meta.get("val_top1")
        row["seed_reference"] = (
            SEED_REFERENCE.get(meta["backbone"]) if meta["protocol"] == "A" else None
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    order = {p: i for i, p in enumerate(PROTOCOLS)}
    df["_o"] = df["protocol"].map(lambda p: order.get(p, 9))
    return df.sort_values(["_o", "backbone"]).drop(columns="_o").reset_index(drop=True)


def _pct(v, lo=None, hi=None) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if lo is None:
        return f"{100 * v:.1f}"
    return f"{100 * v:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def format_results(df):
    """The results table as a reader sees it: percentages with their CIs."""
    import pandas as pd

    out = pd.DataFrame(
        {
            "backbone": df["backbone"].map(backbone_label),
            "protocol": df["protocol"].map(lambda p: f"{p}: {PROTOCOLS.get(p, p)}"),
            **{
                name: [_pct(r[k], r[f"{k}_lo"], r[f"{k}_hi"]) for _, r in df.iterrows()]
                for k, name in (
                    ("top1", "top-1 % [95 % CI]"),
                    ("top5", "top-5 %"),
                    ("macro_f1", "macro-F1 %"),
                )
            },
            "val. top-1 %": df["val_top1"].map(_pct),
            "seed (val.) %": df["seed_reference"].map(_pct),
        }
    )
    return out


def paired_comparisons(
    store: Store, vit: str = "vit_s16", cnn: str = "resnet50", n_boot: int = 1000, seed: int = 0
):
    """Per protocol where both ran: accuracies, difference with its CI, exact McNemar."""
    import pandas as pd

    rows = []
    for p in PROTOCOLS:
        a, b = store.names(vit, p), store.names(cnn, p)
        if not (a and b):
            continue
        ca, cb = store.correct(a[0]), store.correct(b[0])
        d, lo, hi = stats.paired_bootstrap_diff(ca, cb, n_boot, seed)
        mc = stats.mcnemar_exact(ca, cb)
        rows.append(
            {
                "protocol": p,
                "vit": a[0],
                "cnn": b[0],
                "vit_top1": ca.mean(),
                "cnn_top1": cb.mean(),
                "diff": d,
                "diff_lo": lo,
                "diff_hi": hi,
                "vit_only": mc["a_only"],
                "cnn_only": mc["b_only"],
                "p_value": mc["p_value"],
            }
        )
    return pd.DataFrame(rows)


def format_pairs(pc):
    """The paired comparisons as a reader sees them: percentages, points, readable p-values."""
    import pandas as pd

    return pd.DataFrame(
        {
            "protocol": pc["protocol"].map(lambda p: f"{p}: {PROTOCOLS.get(p, p)}"),
            "ViT-S/16 top-1 %": pc["vit_top1"].map(_pct),
            "ResNet-50 top-1 %": pc["cnn_top1"].map(_pct),
            "ViT minus ResNet, points [95 % CI]": [
                f"{100 * r['diff']:+.1f} [{100 * r['diff_lo']:+.1f}, {100 * r['diff_hi']:+.1f}]"
                for _, r in pc.iterrows()
            ],
            "b: ViT only": pc["vit_only"].astype(int),
            "c: ResNet only": pc["cnn_only"].astype(int),
            "McNemar p": pc["p_value"].map(lambda v: f"{v:.2g}"),
        }
    )


# --- sentences -------------------------------------------------------------------------------
def smoke_warning(profile: str) -> str:
    if profile == "smoke":
        return (
            "*Smoke profile: synthetic images and tiny random-weight models; every number "
            "below is meaningless and only shows that the analysis runs.* "
        )
    return ""


def describe_comparison(row, alpha: float = 0.05) -> str:
    """One sentence on ViT vs ResNet under one protocol, true whatever the numbers."""
    p = row["protocol"]
    d = 100 * row["diff"]
    lo, hi = 100 * row["diff_lo"], 100 * row["diff_hi"]
    lead = (
        f"ViT-S/16 ahead by {abs(d):.1f} points"
        if d > 0
        else f"ResNet-50 ahead by {abs(d):.1f} points"
        if d < 0
        else "level"
    )
    sig = row["p_value"] < alpha and (lo > 0 or hi < 0)
    verdict = (
        "a difference the paired tests call significant"
        if sig
        else "a difference the paired tests cannot tell from chance"
    )
    return (
        f"Protocol {p}, {PROTOCOLS.get(p, p)}: ViT-S/16 {100 * row['vit_top1']:.1f} % vs "
        f"ResNet-50 {100 * row['cnn_top1']:.1f} %; {lead} "
        f"(95 % CI of ViT minus ResNet [{lo:+.1f}, {hi:+.1f}]), "
        f"{_images(row['vit_only'])} right for ViT only and {row['cnn_only']} for ResNet "
        f"only, McNemar p = {row['p_value']:.2g}: {verdict} at the 5 % level."
    )


def _images(n: int) -> str:
    return f"{n} image" + ("" if n == 1 else "s")


def describe_seed(df) -> str:
    """How protocol A compares with the seed's 83.4 / 76.3 (validation accuracy)."""
    parts = []
    for _, r in df[df["protocol"] == "A"].iterrows():
        ref = r["seed_reference"]
        if ref is None or (isinstance(ref, float) and np.isnan(ref)):
            continue
        inside = r["top1_lo"] <= ref <= r["top1_hi"]
        parts.append(
            f"{backbone_label(r['backbone'])}: {100 * r['top1']:.1f} % on test vs "
            f"the seed's {100 * ref:.1f} % on validation ("
            + ("within" if inside else "outside")
            + " our 95 % CI)"
        )
    if not parts:
        return "Protocol A did not run, so the seed's numbers cannot be checked here."
    return "Against the seed report (protocol A): " + "; ".join(parts) + "."


def localisation_differences(
    loc, ref: str = "ViT rollout", others=None, n_boot: int = 1000, seed: int = 0
):
    """Paired differences of the share of mass inside the boxes, ``ref`` minus each other map,
    on the same images (:func:`vitwatch.localisation.evaluate`'s long table), with percentile
    CIs from a bootstrap over images. One row per other map: ``map``, ``diff``, ``lo``, ``hi``,
    ``n``; also the pointing-game difference (``hit_diff``, ``hit_lo``, ``hit_hi``) where both
    maps have a peak."""
    import pandas as pd

    wide = loc.pivot(index="image", columns="map", values="mass_inside")
    hits = loc.pivot(index="image", columns="map", values="hit")
    if ref not in wide:
        raise ValueError(
            f"localisation_differences: no {ref!r} maps in the table (maps: {list(wide.columns)})"
        )
    order = list(dict.fromkeys(loc["map"]))  # as in the table
    others = [m for m in (others or order) if m != ref and m in wide]
    rows = []
    for m in others:
        d = wide[ref].to_numpy() - wide[m].to_numpy()  # (n,) paired
        row = {
            "map": m,
            "n": d.size,
            **dict(zip(("diff", "lo", "hi"), stats.bootstrap_mean(d, n_boot, seed))),
        }
        h = hits[[ref, m]].dropna()
        if len(h):
            hd = h[ref].astype(float).to_numpy() - h[m].astype(float).to_numpy()
            row.update(
                zip(("hit_diff", "hit_lo", "hit_hi"), stats.bootstrap_mean(hd, n_boot, seed))
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _paired_verdict(lo: float, hi: float, more: str, less: str, same: str) -> str:
    return more if lo > 0 else less if hi < 0 else same


def describe_localisation(summary, diffs=None, ref: str = "ViT rollout") -> str:
    """summary: map -> (mean, lo, hi) share of mass inside the boxes; ``diffs``: the paired
    differences of :func:`localisation_differences`, from which every verdict is drawn
    (separate intervals of paired measurements are never compared)."""
    parts = [
        f"{m} {100 * v[0]:.0f} % [{100 * v[1]:.0f}, {100 * v[2]:.0f}]" for m, v in summary.items()
    ]
    text = "Share of the map's mass inside the boxes (mean, 95 % CI): " + "; ".join(parts) + "."
    if diffs is None or not len(diffs):
        return text
    clauses = []
    for _, r in diffs.iterrows():
        if r["map"] == "uniform":
            continue
        verdict = _paired_verdict(
            r["lo"],
            r["hi"],
            "more of its mass on the dog than",
            "less of its mass on the dog than",
            "a share that cannot be told apart from that of",
        )
        clauses.append(
            f"{verdict} the {r['map']} (paired difference "
            f"{100 * r['diff']:+.1f} points [{100 * r['lo']:+.1f}, "
            f"{100 * r['hi']:+.1f}] over {int(r['n'])} images)"
        )
    if clauses:
        text += f" The {ref} puts " + "; ".join(clauses) + "."
    return text


def select_runs(store: Store, backbones, protocols=("A", "B", "C")) -> dict[str, str]:
    """backbone -> its run with the best *validation* top-1 among ``protocols``
    (:meth:`Store.best_run`); backbones without such a run are left out. Never reads test."""
    chosen = {b: store.best_run(b, protocols) for b in backbones}
    return {b: r for b, r in chosen.items() if r is not None}


def box_size_gaps(
    store: Store,
    vit_run: str,
    cnn_run: str,
    fractions,
    edges=(0.0, 0.25, 0.5, 0.75, 1.0001),
    n_boot: int = 1000,
    seed: int = 0,
):
    """ViT minus CNN accuracy per bin of box area share, paired over the bin's images, and
    the change of that gap from the smallest-box bin to the largest (bins resampled
    independently). Returns ``(per_bin DataFrame, (change, lo, hi) or None)``."""
    import pandas as pd

    fractions = np.asarray(fractions)
    d = store.correct(vit_run).astype(float) - store.correct(cnn_run)  # (N,) paired
    rows, per_bin = [], []
    for lo_e, hi_e in zip(edges[:-1], edges[1:]):
        sel = (fractions >= lo_e) & (fractions < hi_e)
        if not sel.any():
            continue
        v, lo, hi = stats.bootstrap_mean(d[sel], n_boot, seed)
        rows.append(
            {
                "bin": f"{100 * lo_e:.0f}–{min(100, 100 * hi_e):.0f} %",
                "gap": v,
                "lo": lo,
                "hi": hi,
                "n": int(sel.sum()),
            }
        )
        per_bin.append(d[sel])
    change = None
    if len(per_bin) > 1:
        first, last = per_bin[0], per_bin[-1]
        rng = np.random.default_rng(seed)
        reps = np.array(
            [
                first[rng.integers(0, first.size, first.size)].mean()
                - last[rng.integers(0, last.size, last.size)].mean()
                for _ in range(n_boot)
            ]
        )
        change = (float(first.mean() - last.mean()), *stats.percentile_ci(reps))
    return pd.DataFrame(rows), change


def describe_box_gaps(per_bin, change, vit: str = "ViT", cnn: str = "ResNet") -> str:
    """A sentence on whether the ViT's lead grows for small dogs, from paired intervals."""
    if change is None or len(per_bin) < 2:
        return "Too few bins or backbones to compare accuracy across box sizes."
    f, l = per_bin.iloc[0], per_bin.iloc[-1]
    verdict = _paired_verdict(
        change[1],
        change[2],
        "larger for small dogs",
        "smaller for small dogs",
        "not shown to depend on the dog's size (the interval of the change includes zero)",
    )
    return (
        f"{vit} minus {cnn}, paired on the same images: {100 * f['gap']:+.1f} points "
        f"[{100 * f['lo']:+.1f}, {100 * f['hi']:+.1f}] in the smallest-box bin "
        f"({int(f['n'])} images) and {100 * l['gap']:+.1f} [{100 * l['lo']:+.1f}, "
        f"{100 * l['hi']:+.1f}] in the largest ({int(l['n'])}); the change between them, "
        f"{100 * change[0]:+.1f} points [{100 * change[1]:+.1f}, {100 * change[2]:+.1f}], "
        f"says the lead is {verdict}."
    )


def calibration_inputs(store: Store, runs) -> dict:
    """run -> (test_probs, test_labels, val_probs, val_labels) for :func:`calibration.table`;
    runs without stored validation probabilities are skipped."""
    out = {}
    for r in runs:
        arrays = store.runs[r][1]
        if "val_probs" in arrays and "val_labels" in arrays and len(arrays["val_labels"]):
            out[r] = (arrays["test_probs"], store.labels, arrays["val_probs"], arrays["val_labels"])
    return out


def power_table(
    test_sizes: Mapping[str, int],
    discordance=(0.05, 0.1, 0.2),
    alpha: float = 0.05,
    power: float = 0.8,
):
    """Smallest detectable paired accuracy difference (points) per test set and discordance
    (:func:`vitwatch.stats.min_detectable_difference`)."""
    import pandas as pd

    rows = []
    for name, n in test_sizes.items():
        row = {"test set": name, "images": int(n)}
        for psi in discordance:
            d = stats.min_detectable_difference(int(n), psi, alpha, power)
            row[f"{100 * psi:.0f} % discordant"] = 100 * d
        rows.append(row)
    return pd.DataFrame(rows).set_index("test set")


STANFORD_DOGS_TEST = 8580  # images in the official test split
STANFORD_DOGS_CLASSES = 120


def profile_test_sizes() -> dict[str, int]:
    """Test images of each profile, from its YAML: the synthetic stand-in's
    ``synthetic_classes x synthetic_test_per_class``, Stanford Dogs' ``120 x test_per_class``,
    or the whole official test split (8,580) when ``test_per_class`` is 0."""
    import types

    from vitwatch import config

    out = {}
    for name in config.PROFILES:
        # the YAML values over the defaults; not from_profile, which also points
        # save_figure at that profile's figures folder
        p = types.SimpleNamespace(
            **{**{k: v.default for k, v in config.PARAMS.items()}, **config.load_profile(name)}
        )
        if p.dataset == "synthetic":
            out[name] = int(p.synthetic_classes * p.synthetic_test_per_class)
        elif p.test_per_class > 0:
            out[name] = int(STANFORD_DOGS_CLASSES * p.test_per_class)
        else:
            out[name] = STANFORD_DOGS_TEST
    return out


def describe_calibration(cal, runs) -> str:
    """One sentence per run of ``runs``: ECE and NLL before and after temperature scaling
    (``cal`` from :func:`vitwatch.calibration.table`), the verdict from the ECE intervals of
    the same test images."""
    parts = []
    for run in runs:
        rows = cal[cal["run"] == run].set_index("state")
        if len(rows) < 2:
            continue
        b, a = rows.loc["before"], rows.loc["after"]
        tone = (
            "over-confident"
            if a["T"] > 1.05
            else "under-confident"
            if a["T"] < 0.95
            else "about right in its confidence"
        )
        parts.append(
            f"{run}: ECE {100 * b['ece']:.1f} % [{100 * b['ece_lo']:.1f}, "
            f"{100 * b['ece_hi']:.1f}] and NLL {b['nll']:.2f} before; the temperature fitted on "
            f"validation, T = {a['T']:.2f}, says the head is {tone}, and brings them to "
            f"{100 * a['ece']:.1f} % [{100 * a['ece_lo']:.1f}, {100 * a['ece_hi']:.1f}] and "
            f"{a['nll']:.2f} on test"
        )
    if not parts:
        return "No run stored validation probabilities, so no temperature could be fitted."
    return "; ".join(parts) + "."


# --- images and models -----------------------------------------------------------------------
def load_images(paths, img_size: int) -> np.ndarray:
    """uint8 (n, S, S, 3) of test images (resized as every backbone sees them)."""
    from vitwatch.data import images

    out = []
    for p in paths:
        img = images.load_image(p, img_size)
        if img is None:
            raise ValueError(f"test image {p} cannot be decoded although 03 evaluated it")
        out.append(img)
    return np.stack(out)


def vit_model(backbone):
    """The :class:`vitwatch.models.vit.VisionTransformer` inside a registry backbone."""
    for cand in (
        backbone.model,
        getattr(backbone, "vit", None),
        *getattr(backbone.model, "layers", []),
    ):
        if cand is not None and hasattr(cand, "forward") and hasattr(cand, "blocks"):
            return cand
    raise ValueError(
        f"backbone {backbone.name!r} holds no VisionTransformer with forward(): "
        "attention maps need vitwatch's own ViT (vit_s16)"
    )


def subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded, sorted random subset of ``n`` test-image positions."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=min(n, n_total), replace=False))


def attention_statistics(model, x, batch_size: int):
    """Run the ViT over preprocessed images ``x`` (n, S, S, 3) batch by batch, keeping only
    the summaries (the attention of every block for 200 images would take GBs):

    ``rollout`` (n, g, g): class-token row of the attention rollout;
    ``last_cls`` (n, H, g, g): class-token attention of each head in the last block;
    ``distance`` (L, H): mean attention distance in pixels, averaged over images;
    ``logits`` or features of the model for each image.
    """
    from tqdm import tqdm

    from vitwatch import attention

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


def accuracy_by_box_fraction(
    store: Store,
    runs: Mapping[str, str],
    fractions,
    edges=(0.0, 0.25, 0.5, 0.75, 1.0001),
    n_boot: int = 1000,
    seed: int = 0,
):
    """Accuracy of each run (backbone -> run name) per bin of box area share, with CIs."""
    import pandas as pd

    fractions = np.asarray(fractions)
    rows = []
    for lo_e, hi_e in zip(edges[:-1], edges[1:]):
        sel = (fractions >= lo_e) & (fractions < hi_e)
        if not sel.any():
            continue
        label = f"{100 * lo_e:.0f}–{min(100, 100 * hi_e):.0f} %"
        for backbone, run in runs.items():
            acc, lo, hi = stats.bootstrap_mean(store.correct(run)[sel], n_boot, seed)
            rows.append(
                {
                    "backbone": backbone,
                    "run": run,
                    "bin": label,
                    "acc": acc,
                    "lo": lo,
                    "hi": hi,
                    "n": int(sel.sum()),
                }
            )
    return pd.DataFrame(rows)


def cka_matrix(
    vit, vit_prep, cnn_stages, cnn_prep, paths, vit_size: int, cnn_size: int, batch_size: int
):
    """Minibatch linear CKA between every layer of [ViT blocks..., ResNet stages...].

    Returns an (L + S, L + S) matrix: the ViT-ViT, ResNet-ResNet and cross blocks of Raghu
    et al. (2021), Fig. 1 and 2. Batches with fewer than 4 images are dropped (the unbiased
    HSIC needs n > 3).
    """
    from tqdm import tqdm

    from vitwatch import representations

    bs = max(batch_size, 4)
    acc = None
    for i in tqdm(range(0, len(paths), bs), desc="CKA", leave=False):
        chunk = paths[i : i + bs]
        if len(chunk) < 4:
            break
        xv = np.asarray(vit_prep(load_images(chunk, vit_size).astype("float32")))
        xc = np.asarray(cnn_prep(load_images(chunk, cnn_size).astype("float32")))
        acts = representations.vit_block_outputs(vit, xv)  # L x (B, N, C)
        acts += [np.asarray(a) for a in cnn_stages(xc)]  # S x (B, h, w, C)
        if acc is None:
            acc = representations.MinibatchCKA(len(acts), len(acts))
        acc.update(acts, acts)
    if acc is None:
        raise ValueError(f"CKA needs at least 4 images, got {len(paths)} (n_cka_images)")
    return acc.result()


def gradcam_maps(backbone, x, imagenet_classes=None, batch_size: int = 16):
    """Grad-CAM maps of a CNN registry backbone (ResNet-50, BiT) on preprocessed images ``x``,
    at the layer the registry names (``backbone.extra["gradcam_layer"]``, the last activation
    map: ResNet-50's ``conv5_block3_out``, BiT's ``post_relu``).

    Targets the ImageNet-1k logit of each image's true breed (``imagenet_classes``, (n,)) when
    the backbone exposes a differentiable ImageNet head (``imagenet_logits``); otherwise the
    squared norm of the pooled features (class-agnostic, like the attention rollout).
    Returns ``(maps (n, h, w), description)``.
    """
    from vitwatch import localisation

    layer = getattr(backbone, "extra", {}).get("gradcam_layer", localisation.RESNET50_LAST_CONV)
    fn = getattr(backbone, "imagenet_logits", None)
    usable = (
        fn is not None
        and imagenet_classes is not None
        and np.all(np.asarray(imagenet_classes) >= 0)
    )
    if usable:
        head = linear_head(fn, backbone.feature_dim)
        cam = localisation.GradCAM(backbone.model, layer, head=head)
        maps = [
            cam(x[i : i + batch_size], imagenet_classes[i : i + batch_size])
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(maps), "Grad-CAM of the true breed's ImageNet-1k logit"
    cam = localisation.GradCAM(backbone.model, layer)
    maps = [cam(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(maps), "class-agnostic Grad-CAM (squared norm of pooled features)"


def linear_head(logits_fn, dim: int):
    """A differentiable copy of a linear head given as a NumPy function of features.

    The registry's ``imagenet_logits`` computes ``f @ W + b`` in NumPy, which a gradient tape
    cannot follow; probing it with the zero vector and the unit vectors recovers ``b`` and
    ``W`` exactly, and the copy runs in TensorFlow.
    """
    import tensorflow as tf

    bias = np.asarray(logits_fn(np.zeros((1, dim), np.float32)))[0]  # (K,)
    kernel = np.asarray(logits_fn(np.eye(dim, dtype=np.float32))) - bias  # (D, K)
    k, b = tf.constant(kernel, tf.float32), tf.constant(bias, tf.float32)
    return lambda f: tf.matmul(f, k) + b

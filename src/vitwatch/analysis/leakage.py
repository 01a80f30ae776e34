"""Accuracy on the test images ImageNet-1k trained on ("seen") and on the others ("unseen").

Which test images are which comes from :mod:`vitwatch.data.imagenet_overlap` (file-name IDs
matched against ILSVRC-2012's training list). Both parts are scored for every run of the results
store, each with a percentile-bootstrap 95 % interval over its own images, and the ViT-CNN
comparison is paired (same images) within each part. A lead that shrinks on unseen images is
the signature of memorised pre-training images; a lead that holds is not explained by them.
No checkpoint here is a clean control: ImageNet-1k is a subset of ImageNet-21k [Steiner et al.,
2022, Sect. 3.1], so the ImageNet-21k-only checkpoints saw the same images too. The chapter's
section in one call: :func:`section` (:class:`Leakage`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitwatch import stats


def _interval(correct: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    if correct.size == 0:
        return (np.nan, np.nan, np.nan)
    return stats.bootstrap_mean(correct.astype(np.float64), n_boot, seed)


def split_accuracy(store, seen: np.ndarray, n_boot: int = 1000, seed: int = 0):
    """One row per run: top-1 on seen and unseen test images with 95 % CIs, and the gap
    (seen - unseen) with a CI from independent resamples of the two parts."""
    import pandas as pd

    seen = np.asarray(seen, dtype=bool)
    if seen.shape != store.labels.shape:
        raise ValueError(
            f"seen mask has shape {seen.shape}; the results store has "
            f"{store.labels.size} test images"
        )
    rows = []
    for run, (meta, _) in store.runs.items():
        c = store.correct(run)
        s, lo_s, hi_s = _interval(c[seen], n_boot, seed)
        u, lo_u, hi_u = _interval(c[~seen], n_boot, seed + 1)
        gap = lo_g = hi_g = np.nan
        if seen.any() and (~seen).any():
            rng = np.random.default_rng(seed + 2)
            cs, cu = c[seen].astype(np.float64), c[~seen].astype(np.float64)
            reps = cs[rng.integers(0, cs.size, (n_boot, cs.size))].mean(axis=1) - cu[
                rng.integers(0, cu.size, (n_boot, cu.size))
            ].mean(axis=1)
            gap = cs.mean() - cu.mean()
            lo_g, hi_g = stats.percentile_ci(reps)
        rows.append(
            {
                "run": run,
                "backbone": meta["backbone"],
                "protocol": meta["protocol"],
                "n_seen": int(seen.sum()),
                "n_unseen": int((~seen).sum()),
                "seen": s,
                "seen_lo": lo_s,
                "seen_hi": hi_s,
                "unseen": u,
                "unseen_lo": lo_u,
                "unseen_hi": hi_u,
                "gap": gap,
                "gap_lo": lo_g,
                "gap_hi": hi_g,
            }
        )
    return pd.DataFrame(rows)


def paired_by_part(store, seen: np.ndarray, vit: str, cnn: str, n_boot: int = 1000, seed: int = 0):
    """Per protocol where both ran, and per part (all, seen, unseen): ViT minus CNN top-1 on
    the same images, with its paired-bootstrap 95 % CI."""
    import pandas as pd

    seen = np.asarray(seen, dtype=bool)
    rows = []
    for p in sorted({m["protocol"] for m, _ in store.runs.values()}):
        a, b = store.names(vit, p), store.names(cnn, p)
        if not (a and b):
            continue
        ca, cb = store.correct(a[0]), store.correct(b[0])
        for part, mask in (("all", np.ones_like(seen)), ("seen", seen), ("unseen", ~seen)):
            if not mask.any():
                continue
            d, lo, hi = stats.paired_bootstrap_diff(ca[mask], cb[mask], n_boot, seed)
            rows.append(
                {
                    "protocol": p,
                    "part": part,
                    "n": int(mask.sum()),
                    "vit": vit,
                    "cnn": cnn,
                    "vit_top1": float(ca[mask].mean()),
                    "cnn_top1": float(cb[mask].mean()),
                    "diff": d,
                    "diff_lo": lo,
                    "diff_hi": hi,
                }
            )
    return pd.DataFrame(rows)


def _pp(v: float) -> str:
    return f"{100 * v:+.1f}"


def describe_overlap(seen: np.ndarray, source: str, generated: bool) -> str:
    """One sentence: how many test images were ImageNet-1k training images."""
    n, s = seen.size, int(np.sum(seen))
    what = (
        "a generated stand-in of the ILSVRC-2012 training list (smoke profile: the count "
        "is meaningless)"
        if generated
        else f"the ILSVRC-2012 training list ({source})"
    )
    return (
        f"Matched by ImageNet image ID against {what}, {s:,} of the {n:,} test images "
        f"({100 * s / max(n, 1):.1f} %) were ImageNet-1k training images."
    )


def describe_parts(pairs, vit_label: str, cnn_label: str) -> str:
    """What the paired differences on seen and unseen images say, protocol by protocol."""
    if pairs is None or len(pairs) == 0:
        return (
            f"No protocol ran both {vit_label} and {cnn_label}: the seen/unseen comparison "
            "is not available."
        )
    out = []
    for p, g in pairs.groupby("protocol", sort=True):
        parts = {r["part"]: r for _, r in g.iterrows()}
        if "seen" not in parts or "unseen" not in parts:
            continue
        s, u = parts["seen"], parts["unseen"]
        holds = u["diff_lo"] > 0 or u["diff_hi"] < 0
        out.append(
            f"Protocol {p}: {vit_label} minus {cnn_label} is {_pp(s['diff'])} points "
            f"[{_pp(s['diff_lo'])}, {_pp(s['diff_hi'])}] on seen images and "
            f"{_pp(u['diff'])} [{_pp(u['diff_lo'])}, {_pp(u['diff_hi'])}] on unseen ones"
            + (
                "; the difference on unseen images excludes zero."
                if holds
                else "; on unseen images the interval includes zero."
            )
        )
    if not out:
        return "Every test image falls in one part: the seen/unseen comparison is not available."
    return " ".join(out)


# --- chapter 4: the ViT against every CNN, and the zero-training baseline --------------------
def cnns(store, vit: str) -> list[str]:
    """The CNNs of the store, in the catalogue's order: every backbone that is not a ViT."""
    from vitwatch import catalogue

    return [b for b in catalogue.LABELS if b != vit and store.names(b) and not b.startswith("vit")]


def paired_by_cnn(store, seen, vit: str, n_boot: int = 1000, seed: int = 0):
    """:func:`paired_by_part` of ``vit`` against every CNN of :func:`cnns`, in one table."""
    import pandas as pd

    parts = [paired_by_part(store, seen, vit, c, n_boot, seed) for c in cnns(store, vit)]
    return pd.concat(parts or [pd.DataFrame()], ignore_index=True)


def format_parts(pairs):
    """:func:`paired_by_cnn`'s table as a reader sees it (percentages, points with CIs)."""
    from vitwatch.analysis import text

    shown = pairs.assign(
        cnn=pairs["cnn"].map(text.label),
        **{
            "ViT top-1 %": 100 * pairs["vit_top1"],
            "CNN top-1 %": 100 * pairs["cnn_top1"],
            "ViT - CNN [95 % CI]": [
                text.points(r.diff, r.diff_lo, r.diff_hi) for r in pairs.itertuples()
            ],
        },
    )
    cols = ["protocol", "cnn", "part", "n", "ViT top-1 %", "CNN top-1 %", "ViT - CNN [95 % CI]"]
    return shown[cols]


def describe_by_cnn(store, pairs, vit: str) -> str:
    """:func:`describe_parts` for the ViT against each CNN of :func:`cnns`."""
    from vitwatch.analysis import text

    return " ".join(
        describe_parts(
            pairs[pairs["cnn"] == c] if len(pairs) else pairs, text.label(vit), text.label(c)
        )
        for c in cnns(store, vit)
    )


def zero_training(table, chosen_runs):
    """The runs of the zero-training figure: every protocol-Z run and every run of the
    ImageNet-21k-only ViT, beside the trained run of the same backbones chosen on validation
    (``chosen_runs``); rows of the chapter's results ``table``."""
    import pandas as pd

    from vitwatch import catalogue

    i21k_vits = [n for n, r in catalogue.BACKBONES.items() if r.family == "ViT" and not r.in1k_top1]
    leak = table[(table["protocol"] == "Z") | table["backbone"].isin(i21k_vits)]
    best = table[table["run"].isin(list(chosen_runs))]
    return pd.concat([leak, best[best["backbone"].isin(leak["backbone"])]])


def describe_zero_training(table, n_classes: int) -> str:
    """What protocol Z reaches with no training at all, against chance, and what that means
    for comparing the backbones."""
    from vitwatch.analysis import text

    parts = [
        f"{text.label(r['backbone'])} reaches {100 * r['top1']:.1f} % with no training at all"
        for _, r in table[table["protocol"] == "Z"].iterrows()
    ]
    sentence = "; ".join(parts) or "No zero-training run is stored"
    return (
        sentence[0].upper() + sentence[1:] + f" (chance: {100 / n_classes:.1f} %). "
        "A high Z accuracy means the pretrained features already encode these very breeds, and "
        "possibly these very images: the comparison of the backbones is then a comparison of "
        "their pre-training as much as of their architectures. The backbones differ in that "
        "pre-training (data, number of epochs, resolution), so neither Z nor the seen/unseen "
        "split separates architecture from pre-training; only backbones with the same "
        "pre-training data, compared on unseen images, come close."
    )


@dataclass
class Leakage:
    """The section "Leakage": the ``seen`` mask of the test images, the ``overlap`` sentence and
    the ten breeds with the largest seen share (``breeds``), each run's accuracy on both parts
    (``split``), the ViT against each CNN per part (``parts``, sentence ``by_cnn``), and the
    zero-training runs beside the trained ones (``zero``, sentence ``zero_sentence``)."""

    seen: np.ndarray
    overlap: str
    breeds: object
    split: object
    parts: object
    by_cnn: str
    zero: object
    zero_sentence: str

    @property
    def tables(self) -> list:
        """The ViT against each CNN per part, as shown (none when no pair ran)."""
        if not len(self.parts):
            return []
        return [format_parts(self.parts).style.hide(axis="index").format(precision=1)]

    @property
    def record(self) -> dict:
        return {
            "leakage_split": self.split.to_dict(orient="records"),
            "leakage_part_pairs": self.parts.to_dict(orient="records"),
            "n_seen": int(self.seen.sum()),
            "leakage": self.zero.to_dict(orient="records"),
        }


def section(store, train_list, generated: bool, table, vit: str, n_boot: int, seed: int):
    """:class:`Leakage` of ``store``'s test images against ``train_list`` (a
    :class:`vitwatch.data.imagenet_overlap.TrainList`; ``generated``: the smoke stand-in),
    ``table`` being the chapter's results table."""
    from vitwatch.analysis.store import select_runs
    from vitwatch.data import imagenet_overlap

    seen = imagenet_overlap.seen_mask(store.paths, train_list)
    breeds = imagenet_overlap.per_breed(seen, store.labels, store.class_names)
    top = breeds.sort_values(["share", "breed"], ascending=[False, True]).head(10)
    parts = paired_by_cnn(store, seen, vit, n_boot, seed)
    return Leakage(
        seen,
        describe_overlap(seen, train_list.source, generated),
        top.style.hide(axis="index").format({"share": "{:.0%}"}),
        split_accuracy(store, seen, n_boot, seed),
        parts,
        describe_by_cnn(store, parts, vit),
        zero_training(table, select_runs(store, table["backbone"].unique()).values()),
        describe_zero_training(table, len(store.class_names)),
    )

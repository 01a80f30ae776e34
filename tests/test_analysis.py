"""Notebook 04's analyses on a fabricated results store in 03's layout: the store, the choices
on validation, and every table and sentence builder (the verdicts follow the numbers)."""

import json
import types

import numpy as np
import pandas as pd
import pytest
from fake_results import make_store
from test_gradcam import _tiny_cnn

from vitwatch import analysis, results, seeds, stats
from vitwatch.analysis import (
    accuracy,
    box_size,
    calibration,
    cost,
    errors,
    leakage,
    localisation,
    matched,
    power,
    representations,
    vit_attention,
)


@pytest.fixture(scope="module")
def rstore(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    return make_store(root / "results", root / "images")


@pytest.fixture(scope="module")
def store(rstore):
    return analysis.store.load(rstore)


@pytest.fixture(scope="module")
def table(store):
    return seeds.results_table(store, 100, 0)


# --- the store and the choices -----------------------------------------------------------------
def test_load_store_and_what_it_answers(store):
    assert "A_vit_s16" in store.runs and store.labels.size == 48
    assert store.best_run("vit_s16") == "C_vit_s16"
    assert store.best_run("vit_s16", ("A", "B")) in ("A_vit_s16", "B_vit_s16")
    assert analysis.store.compared_backbones(store) == ("vit_s16", "resnet50", None)
    pos = [0, 5, 47]
    assert store.images(pos, 32).shape == (3, 32, 32, 3)
    assert [b.shape[1] for b in store.boxes(pos)] == [4, 4, 4]
    assert all(w >= 60 and h >= 60 for w, h in store.image_sizes(pos))
    np.testing.assert_array_equal(store.imagenet_classes(pos), 151 + store.labels[pos])
    text = analysis.store.describe(store)
    assert "**48 images of" in text and f"{len(store.runs)} runs are stored" in text


def test_missing_or_inconsistent_store(tmp_path, rstore):
    with pytest.raises(FileNotFoundError, match="execute notebook 03"):
        analysis.store.load(results.ResultsStore(tmp_path / "none", "smoke"))
    # a run evaluated on other test images is refused, naming the run
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(rstore.folder, bad)
    z = dict(np.load(bad / "A_resnet50.npz"))
    z["test_labels"] = z["test_labels"][::-1].copy()
    np.savez(bad / "A_resnet50.npz", **z)
    with pytest.raises(ValueError, match="A_resnet50.npz test_labels"):
        analysis.store.load(results.ResultsStore(bad, "smoke"))
    info = json.loads((bad / "dataset.json").read_text())
    assert len(info["test_boxes"]) == 48


class _Forbidden(dict):
    """A mapping whose test-set entries raise when read: selection must not touch them."""

    FORBIDDEN = ("test_probs", "test_preds", "top1", "top5", "macro_f1", "seed_test_probs")

    def __getitem__(self, key):
        if key in self.FORBIDDEN:
            raise AssertionError(f"a selection function read the test set ({key!r})")
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


def test_selection_never_reads_test_arrays(store):
    Store = analysis.store.Store
    guarded = Store(
        store.dataset,
        {r: (_Forbidden(m), _Forbidden(a)) for r, (m, a) in store.runs.items()},
        store.cost,
        store.profile,
    )
    # the choice follows validation accuracy only
    best = guarded.best_run("vit_s16")
    vals = {
        r: m["val_top1"]
        for r, (m, _) in store.runs.items()
        if m["backbone"] == "vit_s16" and m["protocol"] in "ABC"
    }
    assert best == max(vals, key=lambda r: (vals[r], r))
    chosen = analysis.store.select_runs(guarded, ["vit_s16", "resnet50", "absent"], ("A", "B"))
    assert set(chosen) == {"vit_s16", "resnet50"}
    # a run that wins on test but loses on validation is not chosen
    flipped = {
        r: (dict(m, val_top1=0.0 if r == best else m["val_top1"], top1=1.0), a)
        for r, (m, a) in store.runs.items()
    }
    other = Store(store.dataset, flipped, store.cost, store.profile)
    assert other.best_run("vit_s16") != best
    with pytest.raises(AssertionError, match="test set"):
        guarded.probs("A_vit_s16")  # the guard itself works


# --- accuracy and the paired comparison --------------------------------------------------------
def test_describe_split_states_the_held_out_share():
    text = accuracy.describe_split({"n_train": 10800, "n_val": 1200, "n_test": 8580})
    assert "1,200 more (10 % of the training split used)" in text and "8,580 test" in text


def test_results_table_as_shown_and_the_seed_sentence(store, table):
    shown = accuracy.format_results(table)
    assert shown.shape[0] == table.shape[0] and "[" in shown.iloc[0, 2]
    assert shown.iloc[0, 1].startswith("A: ")
    text = accuracy.describe_seed(table)
    assert "seed report" in text and "83.4 % on validation" in text
    assert "Protocol A did not run" in accuracy.describe_seed(table[table["protocol"] != "A"])
    best = accuracy.describe_best(store, table)
    assert "best validation accuracy is ViT-S/16 (ours) with protocol C" in best
    empty = analysis.store.Store(store.dataset, {}, {}, "smoke")
    assert accuracy.describe_best(empty, table.iloc[:0]) is None


def test_significance_is_one_rule_for_every_sentence(store):
    pc = seeds.paired_comparisons(store, "vit_s16", "resnet50", 200, 0)
    assert set(pc["protocol"]) == {"A", "B", "C", "Z"}
    row = pc[pc["protocol"] == "A"].iloc[0]
    assert row["diff"] == pytest.approx(row["vit_top1"] - row["cnn_top1"])
    text = accuracy.describe_comparison(row)
    assert "McNemar" in text and ("ViT-S/16 ahead" in text or "ResNet-50 ahead" in text)
    cases = [  # (diff, lo, hi, p): significant only when p < 0.05 and the CI excludes 0
        (0.01, -0.02, 0.04, 0.5, False),
        (-0.1, -0.15, -0.05, 1e-4, True),
        (0.1, 0.05, 0.15, 0.2, False),  # interval clear of 0, McNemar not
        (0.1, -0.01, 0.2, 0.01, False),  # McNemar rejects, interval includes 0
    ]
    rows = [dict(row, diff=d, diff_lo=lo, diff_hi=hi, p_value=p) for d, lo, hi, p, _ in cases]
    lines = accuracy.verdicts(pd.DataFrame(rows))
    for r, line, (*_, sig) in zip(rows, lines, cases):
        assert accuracy.significant(r) is sig
        assert ("call significant" in accuracy.describe_comparison(r)) is sig
        assert ("a real difference" in line) is sig
        assert ("not distinguishable" in line) is not sig
    assert "ResNet-50 ahead by 10.0 points" in accuracy.describe_comparison(rows[1])
    assert lines[1].startswith("Protocol A: ViT-S/16 minus ResNet-50 = -10.0 points [-15.0, ")
    bullets = accuracy.describe_comparisons(pc)
    assert bullets.count("\n- ") == len(pc) and bullets.startswith("\n\n- Protocol A")
    assert accuracy.describe_comparisons(pc.iloc[:0]) == "No protocol ran for both backbones."
    shown = accuracy.format_pairs(pc)
    assert list(shown["b: ViT only"]) == list(pc["vit_only"])


# --- power ---------------------------------------------------------------------------------
def test_power_table_and_the_observed_discordance(store):
    pt = power.table({"full": 8580, "quick": 600}, discordance=(0.1,))
    assert pt.loc["full", "10 % discordant"] < pt.loc["quick", "10 % discordant"]
    assert pt.loc["full", "10 % discordant"] == pytest.approx(
        100 * stats.min_detectable_difference(8580, 0.1)
    )
    disc, mdd = power.observed(store, "vit_s16", "resnet50")
    a = np.mean(store.correct("A_vit_s16") != store.correct("A_resnet50"))
    assert disc["A"] == pytest.approx(a) and set(mdd) <= set(disc)
    text = power.describe(48, disc, mdd)
    assert text.startswith("This run has 48 test images.")
    assert f"protocol A: {100 * a:.0f} % discordant" in text
    assert "No protocol has discordant images" in power.describe(48, {"A": 0.0}, {})


def test_profile_test_sizes():
    sizes = power.profile_test_sizes()
    assert sizes["full"] == 8580 and sizes["smoke"] < sizes["quick"] < sizes["full"]
    assert "full profile" in power.profiles_table().index


# --- calibration ---------------------------------------------------------------------------
def test_calibration_inputs_table_and_sentence(store):
    inputs = calibration.inputs(store, ["A_vit_s16", "Z_resnet50"])
    assert set(inputs) == {"A_vit_s16", "Z_resnet50"}
    tp, tl, vp, vl = inputs["A_vit_s16"]
    assert tp.shape == vp.shape and tl.shape == vl.shape
    assert set(calibration.inputs(store)) == set(store.runs)  # every protocol's run
    cal = calibration.table({"A_vit_s16": inputs["A_vit_s16"]}, n_boot=50)
    shown = calibration.format_table(cal)
    assert list(shown["temperature"].str[:5]) == ["none ", "fitte"]
    assert shown["ECE % [95 % CI]"].str.contains(r"\[").all()
    text = calibration.describe(cal, ["A_vit_s16"])
    assert "A_vit_s16: ECE" in text and "fitted on validation" in text
    assert "No run stored" in calibration.describe(cal, ["absent"])
    diagrams = calibration.diagrams(store, cal, {"vit_s16": "A_vit_s16", "resnet50": "absent"})
    ((name, (before, after, t)),) = diagrams.items()
    assert name == "ViT-S/16 (ours) (A_vit_s16)" and t == cal["T"].iloc[1]
    assert before["count"].sum() == after["count"].sum() == 48


# --- errors --------------------------------------------------------------------------------
def test_per_breed_sentence_follows_the_correlation():
    names = [f"breed {i}" for i in range(6)]
    rec = np.array([0.1, 0.2, 0.5, 0.6, 0.9, 1.0])
    mk = lambda r: pd.DataFrame({"class": names, "recall": r})  # noqa: E731
    same = errors.describe_per_breed(mk(rec), mk(rec + 0.01))
    assert "find the same breeds hard" in same and "breed 0, breed 1, breed 2" in same
    assert "ranges from 10 % to 100 % (median 55 %)" in same
    assert "fail differently" in errors.describe_per_breed(mk(rec), mk(rec[::-1]))
    assert "undefined" in errors.describe_per_breed(mk(rec)[:2], mk(rec)[:2])


def test_confusions_and_galleries(store):
    run = "A_vit_s16"
    cm = stats.confusion_matrix(store.labels, store.preds(run), len(store.class_names))
    pairs = stats.most_confused_pairs(cm, 3)
    df = errors.confused_table(cm, pairs, store.class_names)
    i, j, n = pairs[0]
    assert df.iloc[0]["images"] == n and df.iloc[0]["true breed"] == store.class_names[i]
    assert df.iloc[0]["share of the true breed (%)"] == round(100 * n / cm[i].sum(), 1)
    images, titles = errors.confused_gallery(store, run, pairs[:1], size=24)
    assert len(images) == len(titles) == 2 and titles[0].endswith(f"said {store.class_names[j]}")
    images, titles = errors.confident_errors(store, run, n=3, size=24)
    wrong = np.flatnonzero(store.preds(run) != store.labels)
    assert len(images) == min(3, wrong.size) and images[0].shape == (24, 24, 3)
    assert titles[0].startswith("true: ")


# --- inside the ViT ------------------------------------------------------------------------
def test_attention_statistics_rollout_examples_and_distances(store):
    from vitwatch.models import vit
    from vitwatch.theory import attention

    model = vit.build("testing", num_classes=0, img_size=32)
    x = np.random.default_rng(1).uniform(-1, 1, (6, 32, 32, 3)).astype("float32")
    st = vit_attention.statistics(model, x, batch_size=4)
    g = model.grid_size
    assert st["rollout"].shape == (6, g, g) and st["last_cls"].shape[1:] == (model.num_heads, g, g)
    full = [np.asarray(a) for a in model.forward(x)["attention"]]
    np.testing.assert_allclose(
        st["distance"], attention.mean_attention_distance(full, g, model.patch_size), rtol=1e-4
    )
    np.testing.assert_allclose(
        st["rollout"][2], attention.rollout(full)[2, 0, 1:].reshape(g, g), rtol=1e-4, atol=1e-7
    )
    pos = np.arange(20)
    show, titles = vit_attention.rollout_examples(store, "A_vit_s16", pos, n=2)
    ok = store.correct("A_vit_s16")[pos]
    assert ok[show[:2]].all() and not ok[show[2:]].any() and len(show) == len(titles)
    assert titles[0].startswith("right: ") and "(true: " in titles[-1]
    uniform = attention.patch_distances(4, 8).mean()
    mixed = np.array([[0.2 * uniform, uniform], [uniform, uniform]])
    assert "mixes local and global heads" in vit_attention.describe_distance(mixed, 4, 8)
    assert "no local heads" in vit_attention.describe_distance(mixed * 0 + uniform, 4, 8)
    assert "all stay local" in vit_attention.describe_distance(mixed * 0 + 0.1, 4, 8)


# --- localisation and box sizes ------------------------------------------------------------
def test_localisation_verdicts_come_from_paired_differences():
    rng = np.random.default_rng(0)
    n = 40
    base = rng.uniform(0.3, 0.7, n)
    rows = []
    for i in range(n):
        # rollout = Grad-CAM + 0.02 on every image: separate intervals would overlap widely,
        # the paired difference is unambiguous
        rows += [
            {"image": i, "map": "ViT rollout", "mass_inside": base[i] + 0.02, "hit": True},
            {"image": i, "map": "Grad-CAM", "mass_inside": base[i], "hit": i % 2 == 0},
            {"image": i, "map": "centre prior", "mass_inside": base[i] + 0.02, "hit": True},
            {"image": i, "map": "uniform", "mass_inside": 0.5, "hit": np.nan},
        ]
    loc = pd.DataFrame(rows)
    diffs = localisation.differences(loc, n_boot=300).set_index("map")
    assert diffs.loc["Grad-CAM", "diff"] == pytest.approx(0.02)
    assert diffs.loc["Grad-CAM", "lo"] > 0
    assert diffs.loc["Grad-CAM", "hit_diff"] == pytest.approx(0.5)
    assert diffs.loc["centre prior", "diff"] == pytest.approx(0.0)
    assert np.isnan(diffs.loc["uniform", "hit_diff"])  # a uniform map has no peak
    summary = localisation.summarise(loc, 300)
    assert summary["ViT rollout"][1] < summary["Grad-CAM"][2]  # the intervals overlap
    text = localisation.describe(summary, diffs.reset_index())
    assert "more of its mass on the dog than the Grad-CAM" in text
    assert "cannot be told apart from that of the centre prior" in text
    assert "paired difference +2.0 points" in text
    shown = localisation.table(summary, loc)
    assert shown.loc["Grad-CAM", "pointing hits (%)"] == pytest.approx(50.0)
    assert np.isnan(shown.loc["uniform", "pointing hits (%)"])
    with pytest.raises(ValueError, match="no 'absent' maps"):
        localisation.differences(loc, ref="absent")
    grid = localisation.coarsest_grid({"a": np.zeros((2, 14, 14)), "b": np.zeros((2, 7, 7))})
    assert grid == (7, 7) and "common 7 x 7 grid" in localisation.grid_note(grid)


def test_box_size_accuracy_gaps_and_sentence(store):
    n = store.labels.size
    fr = np.linspace(0.01, 0.99, n)
    df = box_size.accuracy(store, {"vit_s16": "A_vit_s16"}, fr, n_boot=100)
    assert df["n"].sum() == n and len(df) == 4
    overall = (df["acc"] * df["n"]).sum() / df["n"].sum()
    assert overall == pytest.approx(store.correct("A_vit_s16").mean())
    per_bin, change = box_size.gaps(store, "A_vit_s16", "A_resnet50", fr, n_boot=200)
    d = store.correct("A_vit_s16").astype(float) - store.correct("A_resnet50")
    assert per_bin["n"].sum() == n
    assert per_bin["gap"].iloc[0] == pytest.approx(d[fr < 0.25].mean())
    assert change[0] == pytest.approx(d[fr < 0.25].mean() - d[fr >= 0.75].mean())
    assert change[1] <= change[0] <= change[2]
    text = box_size.describe(per_bin, change)
    assert "smallest-box bin" in text and "change between them" in text
    assert "Too few bins" in box_size.describe(per_bin.iloc[:1], None)
    assert "Too few backbones" in box_size.describe(None, None)
    real = box_size.fractions(store)
    assert 0 < real.min() and real.max() <= 1


# --- cost, leakage, matched pairs ----------------------------------------------------------
def test_cost_table_and_ratios(store, table):
    c = cost.table(store, table)
    assert set(c["backbone"]) == set(store.cost) and c["top1"].notna().all()
    text = cost.describe(c, "vit_s16", "resnet50")
    assert "x the MACs of ResNet-50" in text and "x its throughput" in text
    assert cost.describe(c, "vit_s16", "absent") == "No cost figures to compare."
    assert cost.machine(store).startswith("Measured on: ")
    assert cost.styled(c).data.index.name == "backbone"


def test_leakage_by_cnn_and_zero_training(store, table):
    seen = np.arange(store.labels.size) % 3 == 0
    assert leakage.cnns(store, "vit_s16") == ["resnet50"]
    pairs = leakage.paired_by_cnn(store, seen, "vit_s16", 50)
    assert set(pairs["part"]) == {"all", "seen", "unseen"}
    assert list(leakage.format_parts(pairs).columns)[-1] == "ViT - CNN [95 % CI]"
    assert "minus ResNet-50" in leakage.describe_by_cnn(store, pairs, "vit_s16")
    chosen = analysis.store.select_runs(store, table["backbone"].unique()).values()
    z = leakage.zero_training(table, chosen)
    assert set(z[z["protocol"] != "Z"]["backbone"]) <= set(z[z["protocol"] == "Z"]["backbone"])
    text = leakage.describe_zero_training(table, len(store.class_names))
    assert text.startswith("ResNet-50 reaches") and "; ViT-S/16 (ours) reaches" in text
    assert "all (chance: 16.7 %)" in text
    none = leakage.describe_zero_training(table[table["protocol"] != "Z"], 4)
    assert none.startswith("No zero-training run is stored (chance: 25.0 %)")


def test_matched_pairs_as_shown_and_their_conclusions(store):
    diffs = matched.pair_differences(store, None, 50)
    shown = matched.format_pairs(diffs)
    assert list(shown.columns)[:2] == ["ViT", "CNN"]
    lines = matched.conclusions(diffs)
    assert len(lines) == len({"A", "B", "C"} & set(diffs["protocol"])) > 0
    assert all("the seed's comparison" in line for line in lines)
    assert matched.conclusions(diffs.iloc[:0]) == [matched.conclusion(diffs.iloc[:0], "A")]


# --- representations -----------------------------------------------------------------------
def test_cka_between_backbones_and_its_sentences(store):
    from vitwatch.models import vit

    model = vit.build("testing", num_classes=0, img_size=32)
    layers = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    vit_bb = types.SimpleNamespace(vit=model, preprocess=lambda z: z / 127.5 - 1, img_size=32)
    cnn_bb = types.SimpleNamespace(
        model=_tiny_cnn(), preprocess=lambda z: z, img_size=32, extra={"cka_layers": layers}
    )
    sim = representations.cka_matrix(vit_bb, cnn_bb, store.paths[:9], batch_size=4)
    n = model.depth + 4
    assert sim.shape == (n, n) and np.allclose(np.diag(sim), 1) and np.allclose(sim, sim.T)
    with pytest.raises(ValueError, match="at least 4 images"):
        representations.cka_matrix(vit_bb, cnn_bb, store.paths[:3], 4)
    names = representations.stage_labels(layers)
    assert names == ["stage 2", "stage 3", "stage 4", "stage 5"]
    assert representations.stage_labels(["block1_out"]) == ["block 1"]
    text = representations.describe(sim, model.depth, names)
    assert "The first ViT block is closest to stage" in text
    d = model.depth
    assert "is closer to" in representations.describe_matched(sim, sim + 0.1, d, "BiT")
    assert "no closer to" in representations.describe_matched(sim, sim - 0.1, d, "BiT")

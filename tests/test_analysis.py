"""Notebook 04's glue on a fabricated results store in 03's layout."""

import json
import types

import numpy as np
import pytest
from fake_results import make_store

from vitwatch import analysis, results


@pytest.fixture(scope="module")
def store_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    return make_store(root / "results", root / "images")


def test_load_store_and_tables(store_cfg):
    store = analysis.load_store(store_cfg)
    assert "A_vit_s16" in store.runs and store.labels.size == 48
    assert store.best_run("vit_s16") == "C_vit_s16"
    assert store.best_run("vit_s16", ("A", "B")) in ("A_vit_s16", "B_vit_s16")
    df = analysis.results_table(store, n_boot=200, seed=0)
    assert list(df["protocol"]).index("A") < list(df["protocol"]).index("Z")
    assert (df["top1_lo"] <= df["top1"]).all() and (df["top1"] <= df["top1_hi"]).all()
    a_vit = df[df["run"] == "A_vit_s16"].iloc[0]
    assert a_vit["seed_reference"] == pytest.approx(0.834)
    assert a_vit["top1"] == pytest.approx(store.correct("A_vit_s16").mean())
    shown = analysis.format_results(df)
    assert shown.shape[0] == df.shape[0] and "[" in shown.iloc[0, 2]
    assert "seed report" in analysis.describe_seed(df)


def test_paired_comparisons_and_sentences(store_cfg):
    store = analysis.load_store(store_cfg)
    pc = analysis.paired_comparisons(store, n_boot=300)
    assert set(pc["protocol"]) == {"A", "B", "C", "Z"}
    row = pc[pc["protocol"] == "A"].iloc[0]
    assert row["diff"] == pytest.approx(row["vit_top1"] - row["cnn_top1"])
    assert row["diff_lo"] <= row["diff"] <= row["diff_hi"]
    text = analysis.describe_comparison(row)
    assert "McNemar" in text and ("ViT-S/16 ahead" in text or "ResNet-50 ahead" in text)
    # the verdict follows the numbers
    fake = dict(row, diff=0.01, diff_lo=-0.02, diff_hi=0.04, p_value=0.5)
    assert "cannot tell" in analysis.describe_comparison(fake)
    fake = dict(row, diff=-0.1, diff_lo=-0.15, diff_hi=-0.05, p_value=1e-4)
    assert "ResNet-50 ahead" in analysis.describe_comparison(fake)
    assert "significant" in analysis.describe_comparison(fake)


def test_missing_or_inconsistent_store(tmp_path, store_cfg):
    empty = results.ResultsStore(tmp_path / "none", "smoke")
    with pytest.raises(FileNotFoundError, match="execute notebook 03"):
        analysis.load_store(empty)
    # a run evaluated on other test images is refused, naming the run
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(store_cfg.folder, bad)
    z = dict(np.load(bad / "A_resnet50.npz"))
    z["test_labels"] = z["test_labels"][::-1].copy()
    np.savez(bad / "A_resnet50.npz", **z)
    with pytest.raises(ValueError, match="A_resnet50.npz test_labels"):
        analysis.load_store(results.ResultsStore(bad, "smoke"))
    info = json.loads((bad / "dataset.json").read_text())
    assert len(info["test_boxes"]) == 48


def _tiny_cnn(img=32):
    import keras

    inp = keras.Input((img, img, 3))
    a = keras.layers.Conv2D(
        8, 3, strides=2, padding="same", activation="relu", name="conv2_block3_out"
    )(inp)
    b = keras.layers.Conv2D(
        8, 3, strides=2, padding="same", activation="relu", name="conv3_block4_out"
    )(a)
    c = keras.layers.Conv2D(
        8, 3, strides=2, padding="same", activation="relu", name="conv4_block6_out"
    )(b)
    d = keras.layers.Conv2D(
        16, 3, strides=2, padding="same", activation="relu", name="conv5_block3_out"
    )(c)
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D()(d))


def test_linear_head_and_gradcam_routes():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(16, 10)).astype("float32"), rng.normal(size=10).astype("float32")
    head = analysis.linear_head(lambda f: np.asarray(f) @ w + b, 16)
    f = rng.normal(size=(3, 16)).astype("float32")
    np.testing.assert_allclose(np.asarray(head(f)), f @ w + b, rtol=1e-4, atol=1e-4)
    bb = types.SimpleNamespace(
        model=_tiny_cnn(), feature_dim=16, imagenet_logits=lambda f: np.asarray(f) @ w + b
    )
    x = rng.uniform(-1, 1, (5, 32, 32, 3)).astype("float32")
    maps, kind = analysis.gradcam_maps(bb, x, np.array([0, 1, 2, 3, 4]), batch_size=2)
    assert maps.shape == (5, 2, 2) and "ImageNet-1k logit" in kind
    maps, kind = analysis.gradcam_maps(bb, x, np.array([0, -1, 2, 3, 4]))
    assert maps.shape == (5, 2, 2) and "class-agnostic" in kind


def test_attention_statistics_and_cka_on_tiny_models():
    from vitwatch import attention
    from vitwatch import representations as rep
    from vitwatch.models import vit

    model = vit.build("testing", num_classes=0, img_size=32)
    x = np.random.default_rng(1).uniform(-1, 1, (6, 32, 32, 3)).astype("float32")
    st = analysis.attention_statistics(model, x, batch_size=4)
    g = model.grid_size
    assert st["rollout"].shape == (6, g, g) and st["last_cls"].shape[1:] == (model.num_heads, g, g)
    full = [np.asarray(a) for a in model.forward(x)["attention"]]
    np.testing.assert_allclose(
        st["distance"], attention.mean_attention_distance(full, g, model.patch_size), rtol=1e-4
    )
    np.testing.assert_allclose(
        st["rollout"][2], attention.rollout(full)[2, 0, 1:].reshape(g, g), rtol=1e-4, atol=1e-7
    )
    paths = []
    import pathlib
    import tempfile

    from PIL import Image

    tmp = pathlib.Path(tempfile.mkdtemp())
    for i in range(9):
        p = tmp / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 50, 3), np.uint8)).save(p)
        paths.append(str(p))
    cnn = _tiny_cnn()
    sim = analysis.cka_matrix(
        model,
        lambda z: z / 127.5 - 1,
        rep.stage_model(cnn),
        lambda z: z,
        paths,
        32,
        32,
        batch_size=4,
    )
    n = model.depth + 4
    assert sim.shape == (n, n) and np.allclose(np.diag(sim), 1) and np.allclose(sim, sim.T)
    with pytest.raises(ValueError, match="at least 4 images"):
        analysis.cka_matrix(
            model, lambda z: z, rep.stage_model(cnn), lambda z: z, paths[:3], 32, 32, 4
        )


def test_accuracy_by_box_fraction(store_cfg):
    store = analysis.load_store(store_cfg)
    fr = np.linspace(0, 0.99, store.labels.size)
    df = analysis.accuracy_by_box_fraction(store, {"vit_s16": "A_vit_s16"}, fr, n_boot=100)
    assert df["n"].sum() == store.labels.size and len(df) == 4
    overall = (df["acc"] * df["n"]).sum() / df["n"].sum()
    assert overall == pytest.approx(store.correct("A_vit_s16").mean())


class _Forbidden(dict):
    """A mapping whose test-set entries raise when read: selection must not touch them."""

    FORBIDDEN = ("test_probs", "test_preds", "top1", "top5", "macro_f1", "seed_test_probs")

    def __getitem__(self, key):
        if key in self.FORBIDDEN:
            raise AssertionError(f"a selection function read the test set ({key!r})")
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


def test_selection_never_reads_test_arrays(store_cfg):
    store = analysis.load_store(store_cfg)
    guarded = analysis.Store(
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
    chosen = analysis.select_runs(guarded, ["vit_s16", "resnet50", "absent"], ("A", "B"))
    assert set(chosen) == {"vit_s16", "resnet50"}
    # a run that wins on test but loses on validation is not chosen
    flipped = {
        r: (dict(m, val_top1=0.0 if r == best else m["val_top1"], top1=1.0), a)
        for r, (m, a) in store.runs.items()
    }
    other = analysis.Store(store.dataset, flipped, store.cost, store.profile)
    assert other.best_run("vit_s16") != best
    with pytest.raises(AssertionError, match="test set"):
        guarded.probs("A_vit_s16")  # the guard itself works


def test_localisation_verdicts_come_from_paired_differences():
    import pandas as pd

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
    diffs = analysis.localisation_differences(loc, n_boot=300).set_index("map")
    assert diffs.loc["Grad-CAM", "diff"] == pytest.approx(0.02)
    assert diffs.loc["Grad-CAM", "lo"] > 0
    assert diffs.loc["Grad-CAM", "hit_diff"] == pytest.approx(0.5)
    assert diffs.loc["centre prior", "diff"] == pytest.approx(0.0)
    assert np.isnan(diffs.loc["uniform", "hit_diff"])  # a uniform map has no peak
    summary = {
        m: analysis.stats.bootstrap_mean(g["mass_inside"].to_numpy(), 300)
        for m, g in loc.groupby("map", sort=False)
    }
    assert summary["ViT rollout"][1] < summary["Grad-CAM"][2]  # the intervals overlap
    text = analysis.describe_localisation(summary, diffs.reset_index())
    assert "more of its mass on the dog than the Grad-CAM" in text
    assert "cannot be told apart from that of the centre prior" in text
    assert "paired difference +2.0 points" in text
    with pytest.raises(ValueError, match="no 'absent' maps"):
        analysis.localisation_differences(loc, ref="absent")


def test_box_size_gaps_paired_with_an_interval_on_the_change(store_cfg):
    store = analysis.load_store(store_cfg)
    n = store.labels.size
    fr = np.linspace(0.01, 0.99, n)
    per_bin, change = analysis.box_size_gaps(store, "A_vit_s16", "A_resnet50", fr, n_boot=200)
    d = store.correct("A_vit_s16").astype(float) - store.correct("A_resnet50")
    assert per_bin["n"].sum() == n
    assert per_bin["gap"].iloc[0] == pytest.approx(d[fr < 0.25].mean())
    assert change[0] == pytest.approx(d[fr < 0.25].mean() - d[fr >= 0.75].mean())
    assert change[1] <= change[0] <= change[2]
    text = analysis.describe_box_gaps(per_bin, change)
    assert "smallest-box bin" in text and "change between them" in text
    assert "Too few" in analysis.describe_box_gaps(per_bin.iloc[:1], None)


def test_power_table_and_calibration_inputs(store_cfg):
    store = analysis.load_store(store_cfg)
    pt = analysis.power_table({"full": 8580, "quick": 600}, discordance=(0.1,))
    assert pt.loc["full", "10 % discordant"] < pt.loc["quick", "10 % discordant"]
    assert pt.loc["full", "10 % discordant"] == pytest.approx(
        100 * analysis.stats.min_detectable_difference(8580, 0.1)
    )
    inputs = analysis.calibration_inputs(store, ["A_vit_s16", "Z_resnet50"])
    assert set(inputs) == {"A_vit_s16", "Z_resnet50"}
    tp, tl, vp, vl = inputs["A_vit_s16"]
    assert tp.shape == vp.shape and tl.shape == vl.shape


def test_profile_test_sizes_and_calibration_sentence(store_cfg, monkeypatch):
    import os

    from vitwatch import calibration

    before = "/tmp/vitwatch-figures-of-this-run"
    monkeypatch.setenv("VITWATCH_FIGURES_DIR", before)
    sizes = analysis.profile_test_sizes()
    assert sizes["full"] == 8580 and sizes["smoke"] < sizes["quick"] < sizes["full"]
    assert os.environ["VITWATCH_FIGURES_DIR"] == before  # reading profiles moves nothing
    store = analysis.load_store(store_cfg)
    cal = calibration.table(analysis.calibration_inputs(store, ["A_vit_s16"]), n_boot=50)
    text = analysis.describe_calibration(cal, ["A_vit_s16"])
    assert "A_vit_s16: ECE" in text and "fitted on validation" in text
    assert "No run stored" in analysis.describe_calibration(cal, ["absent"])

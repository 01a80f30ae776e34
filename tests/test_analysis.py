"""Notebook 04's glue on a fabricated results store in 03's layout."""
import json
import types

import numpy as np
import pytest

from vitwatch import analysis

from fake_results import make_store


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
    empty = types.SimpleNamespace(results_dir=str(tmp_path / "none"), profile="smoke")
    with pytest.raises(FileNotFoundError, match="execute notebook 03"):
        analysis.load_store(empty)
    # a run evaluated on other test images is refused, naming the run
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(store_cfg.results_dir, bad)
    z = dict(np.load(bad / "A_resnet50.npz"))
    z["test_labels"] = z["test_labels"][::-1].copy()
    np.savez(bad / "A_resnet50.npz", **z)
    with pytest.raises(ValueError, match="A_resnet50.npz test_labels"):
        analysis.load_store(types.SimpleNamespace(results_dir=str(bad), profile="smoke"))
    info = json.loads((bad / "dataset.json").read_text())
    assert len(info["test_boxes"]) == 48


def _tiny_cnn(img=32):
    import keras
    inp = keras.Input((img, img, 3))
    a = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                            name="conv2_block3_out")(inp)
    b = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                            name="conv3_block4_out")(a)
    c = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                            name="conv4_block6_out")(b)
    d = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu",
                            name="conv5_block3_out")(c)
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D()(d))


def test_linear_head_and_gradcam_routes():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(16, 10)).astype("float32"), rng.normal(size=10).astype("float32")
    head = analysis.linear_head(lambda f: np.asarray(f) @ w + b, 16)
    f = rng.normal(size=(3, 16)).astype("float32")
    np.testing.assert_allclose(np.asarray(head(f)), f @ w + b, rtol=1e-4, atol=1e-4)
    bb = types.SimpleNamespace(model=_tiny_cnn(), feature_dim=16,
                               imagenet_logits=lambda f: np.asarray(f) @ w + b)
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
    np.testing.assert_allclose(st["distance"],
                               attention.mean_attention_distance(full, g, model.patch_size),
                               rtol=1e-4)
    np.testing.assert_allclose(st["rollout"][2], attention.rollout(full)[2, 0, 1:].reshape(g, g),
                               rtol=1e-4, atol=1e-7)
    paths = []
    from PIL import Image
    import tempfile, pathlib
    tmp = pathlib.Path(tempfile.mkdtemp())
    for i in range(9):
        p = tmp / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 50, 3), np.uint8)).save(p)
        paths.append(str(p))
    cnn = _tiny_cnn()
    sim = analysis.cka_matrix(model, lambda z: z / 127.5 - 1, rep.stage_model(cnn),
                              lambda z: z, paths, 32, 32, batch_size=4)
    n = model.depth + 4
    assert sim.shape == (n, n) and np.allclose(np.diag(sim), 1) and np.allclose(sim, sim.T)
    with pytest.raises(ValueError, match="at least 4 images"):
        analysis.cka_matrix(model, lambda z: z, rep.stage_model(cnn), lambda z: z,
                            paths[:3], 32, 32, 4)


def test_accuracy_by_box_fraction(store_cfg):
    store = analysis.load_store(store_cfg)
    fr = np.linspace(0, 0.99, store.labels.size)
    df = analysis.accuracy_by_box_fraction(store, {"vit_s16": "A_vit_s16"}, fr, n_boot=100)
    assert df["n"].sum() == store.labels.size and len(df) == 4
    overall = (df["acc"] * df["n"]).sum() / df["n"].sum()
    assert overall == pytest.approx(store.correct("A_vit_s16").mean())

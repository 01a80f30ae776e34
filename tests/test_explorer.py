"""The explorer of notebook 06: stored heads, top-5, attention and Grad-CAM maps, uploads, figure,
and its widget.

A fabricated results store (``fake_results.make_store``) gets heads for the smoke profile's
generated backbones (tiny ViT, random ResNet-50 at 64 px); nothing is trained or downloaded.
"""

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from fake_results import make_store  # noqa: E402

from vitwatch import config, explorer, results  # noqa: E402
from vitwatch.plotting import explorer as explorer_plots  # noqa: E402
from vitwatch.plotting import legibility  # noqa: E402
from vitwatch.theory import attention  # noqa: E402

K = 6  # breeds of the fabricated store
FAVOURED = 3  # the breed every fabricated head prefers


def _save_head(cfg, run, backbone, dim, val_top1, seed):
    """A run holding a head: zero kernel, so the bias alone decides (breed FAVOURED)."""
    rng = np.random.default_rng(seed)
    kernel = np.zeros((dim, K), np.float32)
    bias = rng.normal(size=K).astype(np.float32)
    bias[FAVOURED] = bias.max() + 2.0
    store = results.ResultsStore(cfg.results_dir, cfg.profile, cfg.seed)
    labels = np.asarray(store.load_dataset()["test_labels"])
    probs = np.full((labels.size, K), 1.0 / K, np.float32)
    store.save(
        run,
        {
            "test_probs": probs,
            "test_labels": labels,
            "val_probs": probs,
            "val_labels": labels,
            "head_kernel": kernel,
            "head_bias": bias,
        },
        {
            "backbone": backbone,
            "protocol": run[0],
            "top1": 0.1,
            "top5": 0.5,
            "val_top1": val_top1,
            "history": {},
            "hyperparameters": {},
            "timings": {},
            "trainable_params": dim * K + K,
        },
    )
    return bias


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("explorer")
    cfg = config.from_profile(
        "smoke",
        cache_dir=str(root / "cache"),
        results_dir=str(root / "results"),
        figures_dir=str(root / "fig"),
    )
    make_store(
        root / "results",
        root / "images",
        n_classes=K,
        runs={("Z", "vit_s16"): 0.5, ("B", "resnet50"): 0.6},
    )  # runs without heads
    from vitwatch.models import resnet, vit

    vit_dim = vit.VARIANTS[cfg.vit_variant]["embed_dim"]
    cnn_dim = 32 * resnet.VARIANTS["testing"]["width"]  # 4 x the last stage's 8 x width
    biases = {
        "A_vit_s16": _save_head(cfg, "A_vit_s16", "vit_s16", vit_dim, 0.4, 1),
        "B_vit_s16": _save_head(cfg, "B_vit_s16", "vit_s16", vit_dim, 0.7, 2),
        "A_resnet50": _save_head(cfg, "A_resnet50", "resnet50", cnn_dim, 0.3, 3),
    }
    explainers, class_names = explorer.load(cfg)
    return cfg, explainers, class_names, biases


def _photo(seed=0, shape=(90, 70)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (*shape, 3)).astype(np.uint8)


def test_best_stored_head_per_backbone_is_chosen_on_validation(store):
    cfg, explainers, class_names, _ = store
    heads = explorer.stored_heads(cfg)
    assert sorted(heads) == ["resnet50", "vit_s16"]  # B_resnet50 stored no head
    assert heads["vit_s16"][0] == "B_vit_s16"  # val 0.7 beats A's 0.4
    assert [e.name for e in explainers] == ["vit_s16", "resnet50"]
    assert class_names == [f"Breed {c}" for c in range(K)]


def test_no_stored_head_is_a_clear_error(tmp_path):
    make_store(tmp_path / "results", tmp_path / "images", n_classes=3, runs={("Z", "vit_s16"): 0.5})
    cfg = config.from_profile("smoke", results_dir=str(tmp_path / "results"))
    with pytest.raises(FileNotFoundError, match="execute notebook 03"):
        explorer.stored_heads(cfg)


def test_probabilities_come_from_the_stored_head(store):
    cfg, explainers, class_names, biases = store
    e_bias = biases["B_vit_s16"].astype(np.float64)
    expected = np.exp(e_bias - e_bias.max()) / np.exp(e_bias - e_bias.max()).sum()
    for ex in explainers:
        p = ex.probs(_photo())
        assert p.shape == (K,) and abs(p.sum() - 1) < 1e-5
        assert int(np.argmax(p)) == FAVOURED  # zero kernel: the bias decides
    np.testing.assert_allclose(explainers[0].probs(_photo()), expected, rtol=1e-5)


def test_top_k_is_sorted_and_named():
    top = explorer.top_k(np.array([0.1, 0.5, 0.05, 0.35]), list("abcd"), k=3)
    assert top == [("b", 0.5), ("d", 0.35), ("a", 0.1)]
    assert len(explorer.top_k(np.array([0.6, 0.4]), ["x", "y"], k=5)) == 2


def test_vit_maps_rollout_and_chosen_block_and_head(store):
    _, explainers, class_names, _ = store
    ex = explainers[0]
    img = _photo(1)
    g = ex.vit.grid_size
    out = explorer.explain(ex, img, class_names)
    assert out["map"].shape == (g, g) and out["map_title"] == "attention rollout"
    assert len(out["top"]) == 5 and out["top"][0][0] == class_names[FAVOURED]
    assert [p for _, p in out["top"]] == sorted((p for _, p in out["top"]), reverse=True)
    # one block and head: exactly the class token's attention from the model's forward()
    x = ex.inputs(img)
    att = [np.asarray(a) for a in ex.vit.forward(x)["attention"]]
    want = attention.cls_attention_maps(att[1], g)[0]  # (H, g, g)
    np.testing.assert_allclose(explorer.attention_map(ex.vit, x, 1, 2), want[2], atol=1e-6)
    np.testing.assert_allclose(explorer.attention_map(ex.vit, x, 1), want.mean(0), atol=1e-6)
    assert explorer.explain(ex, img, class_names, 1, 2)["map_title"] == "block 2, head 3"
    with pytest.raises(ValueError, match="layer=99"):
        explorer.attention_map(ex.vit, x, 99)


def test_cnn_map_is_gradcam_of_the_top_breed(store):
    _, explainers, class_names, _ = store
    out = explorer.explain(explainers[1], _photo(2), class_names)
    assert out["map_title"].startswith("Grad-CAM")
    assert out["map"].ndim == 2 and np.all(np.isfinite(out["map"])) and out["map"].min() >= 0


def test_layer_beyond_depth_falls_back_to_the_last_block(store):
    _, explainers, class_names, _ = store
    rows = explorer.explain_all(explainers, _photo(3), class_names, layer=50, head=50)
    depth, heads = explainers[0].depth, explainers[0].num_heads
    assert rows[0]["map_title"] == f"block {depth}, head {heads}"


def test_upload_is_decoded_and_bad_bytes_name_the_file():
    buf = io.BytesIO()
    Image.fromarray(_photo(4, (40, 30)), mode="RGB").convert("L").save(buf, format="PNG")
    img = explorer.image_from_bytes(buf.getvalue(), "my_dog.png")
    assert img.shape == (40, 30, 3) and img.dtype == np.uint8  # grayscale -> RGB
    with pytest.raises(ValueError, match="my_cat.jpg"):
        explorer.image_from_bytes(b"not an image at all", "my_cat.jpg")


def test_resize_and_bad_shapes():
    assert explorer.resize(_photo(), 32).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="RGB"):
        explorer.resize(np.zeros((8, 8)), 4)


def test_examples_are_distinct_breeds(store):
    cfg = store[0]
    picked = explorer.examples(cfg, 4, seed=0)
    assert len(picked) == 4 and len({y for _, y in picked}) == 4
    assert picked == explorer.examples(cfg, 4, seed=0)


def test_front_end_is_a_person_not_a_headless_run(monkeypatch):
    import types

    import IPython

    assert not explorer.widget.has_front_end()  # plain Python: no kernel

    def kernel_shell(allow_stdin):  # what the kernel knows of the request it is executing
        request = {"content": {"allow_stdin": allow_stdin}}
        return types.SimpleNamespace(kernel=types.SimpleNamespace(get_parent=lambda ch: request))

    monkeypatch.setattr(IPython, "get_ipython", lambda: kernel_shell(True))  # JupyterLab
    assert explorer.widget.has_front_end()
    monkeypatch.setattr(IPython, "get_ipython", lambda: kernel_shell(False))  # papermill
    assert not explorer.widget.has_front_end()
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace())  # a terminal
    assert not explorer.widget.has_front_end()


def test_panel_is_titled_and_legible_when_printed(store):
    _, explainers, class_names, _ = store
    images = [_photo(5), _photo(6, (50, 120))]
    rows = [explorer.explain_all(explainers, im, class_names) for im in images]
    fig = explorer_plots.panel(images, rows, ["true: Breed 1", "true: Breed 2"])
    assert fig._suptitle.get_text()
    legibility.check(fig, "explorer panel")
    with pytest.raises(ValueError, match="at least one image"):
        explorer_plots.panel([], [], [])


def test_widget_builds_and_redraws_without_a_front_end(store):
    pytest.importorskip("ipywidgets")
    cfg, explainers, class_names, _ = store
    box = explorer.widget.build(explainers, class_names, explorer.examples(cfg, 3, 0))
    (pick, upload), (mode,), (layer, head) = (h.children for h in box.children[:3])
    assert layer.disabled and head.disabled  # rollout by default
    mode.value = "layer"
    assert not layer.disabled
    layer.value, head.value = 1, 1
    pick.value = 1
    assert layer.max == explainers[0].depth and head.max == explainers[0].num_heads


def test_table_and_sentence_of_the_panel(store):
    _, explainers, class_names, _ = store
    df = explorer.table(explainers)
    assert list(df["map"]) == [
        f"attention ({explainers[0].depth} blocks x {explainers[0].num_heads} heads)",
        "Grad-CAM",
    ]
    assert list(df["run (head used)"]) == ["B_vit_s16", "A_resnet50"]
    top = lambda breed: {"top": [(breed, 0.9)]}  # noqa: E731
    explained = [[top("Breed 1"), top("Breed 1")], [top("Breed 2"), top("Breed 0")]]
    text = explorer.describe_examples(explainers, explained, [1, 0], class_names)
    assert text.startswith("On these 2 images the backbones agree on the top breed for 1;")
    assert f"{explainers[0].label} 1/2, {explainers[1].label} 2/2." in text

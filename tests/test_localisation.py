"""Boxes, mass inside boxes, centre prior, Grad-CAM (checked against CAM on a linear head)."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from vitwatch import localisation as loc  # noqa: E402


def test_scale_boxes_and_mask():
    boxes = [[0, 0, 100, 50]]                      # left half, top half of a 200 x 100 photo
    scaled = loc.scale_boxes(boxes, (200, 100), 10)
    np.testing.assert_allclose(scaled, [[0, 0, 5, 5]])
    mask = loc.box_mask(scaled, 10, 10)
    assert mask.sum() == 25 and mask[:5, :5].all()
    assert loc.box_fraction(boxes, (200, 100)) == pytest.approx(0.25)
    # union of two overlapping boxes counted once
    two = [[0, 0, 100, 100], [50, 0, 150, 100]]
    assert loc.box_fraction(two, (200, 100)) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="positive"):
        loc.scale_boxes(boxes, (0, 100), 10)


def test_mass_inside_and_pointing():
    mask = loc.box_mask([[4, 4, 12, 12]], 16, 16)
    inside = np.zeros((4, 4))
    inside[1:3, 1:3] = 1.0                         # coarse map, 4 x 4 cells of 4 pixels
    assert loc.mass_inside(inside, mask) > 0.9
    assert loc.pointing_hit(inside, mask)
    uniform = np.ones((8, 8))
    assert loc.mass_inside(uniform, mask) == pytest.approx(mask.mean())
    corner = np.zeros((4, 4))
    corner[0, 0] = 1
    assert loc.mass_inside(corner, mask) < 0.2 and not loc.pointing_hit(corner, mask)
    # negative values are ignored, an all-zero map is uniform
    assert loc.mass_inside(-inside, mask) == pytest.approx(mask.mean())


def test_centre_prior():
    p = loc.centre_prior(20, 20, 0.2)
    assert p.sum() == pytest.approx(1) and np.allclose(p, p[::-1, ::-1])
    centre = loc.box_mask([[5, 5, 15, 15]], 20, 20)
    assert p[centre].sum() > 0.6
    with pytest.raises(ValueError, match="sigma"):
        loc.centre_prior(4, 4, 0)


def test_evaluate_table():
    maps = {"perfect": np.zeros((2, 8, 8))}
    maps["perfect"][:, :4, :4] = 1
    boxes = [np.array([[0, 0, 50, 50]]), np.array([[0, 0, 50, 50], [60, 60, 90, 90]])]
    df = loc.evaluate(maps, boxes, [(100, 100), (100, 100)], grid=16)
    assert set(df["map"]) == {"perfect", "centre prior", "uniform"}
    perfect = df[df["map"] == "perfect"]
    assert perfect["mass_inside"].min() > 0.95 and perfect["hit"].all()
    uni = df[df["map"] == "uniform"]
    np.testing.assert_allclose(uni["mass_inside"], uni["box_fraction"])
    with pytest.raises(ValueError, match="1 perfect maps for 2 images"):
        loc.evaluate({"perfect": maps["perfect"][:1]}, boxes, [(1, 1)] * 2)


def test_image_size_reads_header(tmp_path):
    from PIL import Image
    Image.new("RGB", (30, 20)).save(tmp_path / "a.jpg")
    assert loc.image_size(tmp_path / "a.jpg") == (30, 20)
    with pytest.raises(FileNotFoundError, match="b.jpg"):
        loc.image_size(tmp_path / "b.jpg")


def test_gradcam_equals_cam_for_linear_head():
    # conv -> global average pool -> dense: Grad-CAM reduces to CAM (Zhou et al., 2016),
    # map_k = ReLU(sum_c w_ck A_c) / (h w).
    import keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu",
                            name="last_conv")(inp)
    pooled = keras.layers.GlobalAveragePooling2D()(a)
    logits = keras.layers.Dense(4, name="head")(pooled)
    model = keras.Model(inp, logits)
    x = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype("float32")
    cam = loc.GradCAM(model, "last_conv", logits=True)
    maps = cam(x, class_index=[0, 1, 3])
    assert maps.shape == (3, 8, 8)
    acts = keras.Model(inp, a)(x).numpy()                            # (3, 8, 8, 6)
    w = model.get_layer("head").get_weights()[0]                     # (6, 4)
    for b, k in enumerate([0, 1, 3]):
        ref = np.maximum(acts[b] @ w[:, k], 0) / 64
        np.testing.assert_allclose(maps[b], ref, rtol=1e-4, atol=1e-6)
    # default target = predicted class
    pred = model(x).numpy().argmax(1)
    np.testing.assert_allclose(cam(x), cam(x, class_index=pred), rtol=1e-5)
    with pytest.raises(ValueError, match="not found"):
        loc.GradCAM(model, "conv5_block3_out")


def test_gradcam_on_keras_resnet50_layer_names():
    import keras
    net = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                      input_shape=(64, 64, 3))
    maps = loc.GradCAM(net)(np.random.default_rng(0).uniform(-100, 100, (2, 64, 64, 3)))
    assert maps.shape == (2, 2, 2) and np.all(np.isfinite(maps)) and np.all(maps >= 0)

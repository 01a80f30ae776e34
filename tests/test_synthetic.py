"""The synthetic stand-in: real archive layout, fast, and learnable by a linear probe."""

import io
import json
import tarfile
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import scipy.io

from vitwatch import config, features
from vitwatch.data import breeds, images, synthetic
from vitwatch.data import stanford_dogs as sd


def test_archives_in_the_real_layout(tmp_path):
    t = time.perf_counter()
    root = synthetic.generate(
        tmp_path, num_classes=3, train_per_class=4, test_per_class=2, img_size=32, seed=0
    )
    assert time.perf_counter() - t < 10
    assert sorted(p.name for p in root.glob("*.tar")) == [
        "annotation.tar",
        "images.tar",
        "lists.tar",
    ]
    folders = synthetic.class_folders(3)
    assert all(f in breeds.FOLDERS for f in folders)
    with tarfile.open(root / "images.tar") as tar:
        names = tar.getnames()
    assert len(names) == 3 * 6 and all(
        n.startswith("Images/n0") and n.endswith(".jpg") for n in names
    )
    assert {n.split("/")[1] for n in names} == set(folders)
    with tarfile.open(root / "lists.tar") as tar:
        assert sorted(tar.getnames()) == ["file_list.mat", "test_list.mat", "train_list.mat"]
        mat = scipy.io.loadmat(io.BytesIO(tar.extractfile("train_list.mat").read()))
    assert {"file_list", "annotation_list", "labels"} <= set(mat)
    files = [str(c[0][0]) for c in mat["file_list"]]
    assert len(files) == 12 and all(f"Images/{f}" in names for f in files)
    labels = mat["labels"].ravel().astype(int)
    assert [breeds.FOLDERS[y - 1] for y in labels] == [f.split("/")[0] for f in files]  # 1-based
    with tarfile.open(root / "annotation.tar") as tar:
        member = tar.getnames()[0]
        xml = ET.fromstring(tar.extractfile(member).read())
    assert member.startswith("Annotation/n0") and "." not in member.split("/")[-1]
    assert xml.find("object/bndbox/xmin") is not None
    manifest = json.loads((root / "synthetic.json").read_text())
    assert {o["kind"] for o in manifest["odd_files"]} >= {"empty", "truncated"}
    # A second call with the same parameters keeps the files.
    stamp = (root / "images.tar").stat().st_mtime_ns
    synthetic.generate(root, 3, 4, 2, 32, 0)
    assert (root / "images.tar").stat().st_mtime_ns == stamp


def test_class_styles_are_distinct_and_parameters_checked(tmp_path):
    styles = [synthetic.class_style(c) for c in range(120)]
    assert len(set(styles)) == 120
    with pytest.raises(ValueError, match="synthetic_classes"):
        synthetic.class_folders(1)
    with pytest.raises(ValueError, match="synthetic_train_per_class"):
        synthetic.generate(tmp_path, 3, 1, 1, 32, 0)


def test_smoke_profile_loads_through_the_real_code(tmp_path):
    cfg = config.from_profile("smoke", cache_dir=str(tmp_path))
    t = time.perf_counter()
    dogs = sd.load(cfg)
    assert time.perf_counter() - t < 30
    n_cls = cfg.synthetic_classes
    assert dogs.source == "synthetic" and dogs.num_classes == n_cls
    assert len(dogs.train) + len(dogs.val) == n_cls * cfg.synthetic_train_per_class - 2
    assert len(dogs.test) == n_cls * cfg.synthetic_test_per_class - 1
    assert dogs.bad_images.count == 3
    assert "image(s) skipped" in dogs.bad_images.summary()
    assert (sd.extracted_dir(cfg) / sd.MARKER).exists()
    # The odd-but-decodable files stay in and decode to RGB.
    manifest = json.loads((sd.synthetic_root(cfg) / "synthetic.json").read_text())
    odd = {o["kind"]: o["file"] for o in manifest["odd_files"]}
    for kind in ("grayscale", "cmyk", "png_as_jpg", "exif_6"):
        path = str(sd.extracted_dir(cfg) / "Images" / odd[kind])
        assert path in dogs.train.paths + dogs.val.paths
        assert images.load_image(path, 32).shape == (32, 32, 3)
    # Boxes lie inside their images (VOC, 1-based inclusive).
    for path, box in zip(dogs.test.paths, dogs.test.boxes):
        h, w = images.load_image(path).shape[:2]
        assert 1 <= box[0, 0] < box[0, 2] <= w and 1 <= box[0, 1] < box[0, 3] <= h
    # EXIF-oriented photos: the XML box is on the stored pixels, as in the real annotations;
    # the loaded split holds the upright box, the frame of the loaded pixels.
    boxes = dict(
        zip(
            dogs.train.paths + dogs.val.paths + dogs.test.paths,
            dogs.train.boxes + dogs.val.boxes + dogs.test.boxes,
        )
    )
    oriented = [o for o in manifest["odd_files"] if o["kind"].startswith("exif_")]
    assert {o["kind"] for o in oriented} == {f"exif_{n}" for n in range(2, 9)}
    assert (
        sum(str(sd.extracted_dir(cfg) / "Images" / o["file"]) in dogs.test.paths for o in oriented)
        >= 3
    )  # notebook 04's boxes too
    for o in oriented:
        path = sd.extracted_dir(cfg) / "Images" / o["file"]
        xml = sd.read_boxes(sd.extracted_dir(cfg) / "Annotation" / o["file"][:-4])
        assert xml[0].tolist() != o["upright_box"]  # stored frame != upright
        np.testing.assert_array_equal(boxes[str(path)][0], o["upright_box"])
        h, w = images.load_image(path).shape[:2]
        x0, y0, x1, y1 = o["upright_box"]
        assert 1 <= x0 < x1 <= w and 1 <= y0 < y1 <= h


def _random_convnet(img_size):
    """A small random-weight conv net (no training): mean- and max-pooled conv features."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((img_size, img_size, 3))
    x = inp
    for width in (32, 64, 128):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    out = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalMaxPooling2D()(x)]
    )
    return keras.Model(inp, out)  # (B, 256)


def test_linear_probe_on_random_conv_features_beats_chance(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from vitwatch.models import registry

    cfg = config.from_profile("smoke", cache_dir=str(tmp_path))
    dogs = sd.load(cfg)
    backbone = registry.Backbone(  # features.extract runs Backbone.forward
        "random_convnet",
        _random_convnet(cfg.img_size),
        lambda x: x / 127.5 - 1.0,
        cfg.img_size,
        256,
        "random-seed0",
    )
    train = features.extract(backbone, dogs.train, "train", cfg, progress=False)
    test = features.extract(backbone, dogs.test, "test", cfg, progress=False)
    scaler = StandardScaler().fit(train)
    probe = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(train), dogs.train.labels)
    acc = probe.score(scaler.transform(test), dogs.test.labels)
    chance = 1 / dogs.num_classes
    assert acc >= 0.75 and acc > 5 * chance, acc
    # Shuffled labels: the probe falls back near chance (so the check above can fail).
    shuffled = np.random.default_rng(0).permutation(dogs.train.labels)
    bad = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(train), shuffled)
    assert bad.score(scaler.transform(test), dogs.test.labels) < 0.35

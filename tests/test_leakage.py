"""The ImageNet-1k overlap of the test split, and accuracy on seen vs unseen test images."""

import tarfile

import numpy as np
import pytest

from vitwatch import analysis
from vitwatch.analysis import leakage
from vitwatch.data import imagenet_overlap as ov


def _paths(n, synset="n02085620"):
    return [f"/d/Images/{synset}-Chihuahua/{synset}_{1000 + i}.jpg" for i in range(n)]


def test_image_id_and_bad_name():
    assert ov.image_id("/x/n02085620-Chihuahua/n02085620_10074.jpg") == "n02085620_10074"
    with pytest.raises(ValueError, match="dog.jpg"):
        ov.image_id("/x/dog.jpg")


def test_standin_roundtrip_and_mask(tmp_path):
    paths = _paths(400)
    archive = ov.write_standin(tmp_path / "caffe_ilsvrc12.tar.gz", paths, fraction=0.3, seed=1)
    assert tarfile.is_tarfile(archive)
    tl = ov.read_train_list(archive, synsets={"n02085620"})
    seen = ov.seen_mask(paths, tl)
    assert 0.2 < seen.mean() < 0.4  # about the requested fraction
    # the other synset's 200 lines are counted but not kept
    assert tl.n_lines == seen.sum() + 200 and all(i.startswith("n02085620") for i in tl.ids)
    everything = ov.read_train_list(archive)
    assert len(everything.ids) == tl.n_lines


def test_text_list_and_folder(tmp_path):
    txt = tmp_path / "train.txt"
    txt.write_text("n02085620/n02085620_1000.JPEG 151\n\nn02085620/n02085620_1002.JPEG 151\n")
    tl = ov.read_train_list(txt)
    assert tl.ids == {"n02085620_1000", "n02085620_1002"} and tl.n_lines == 2
    assert ov.seen_mask(_paths(3), tl).tolist() == [True, False, True]
    folder = tmp_path / "train"
    (folder / "n02085620").mkdir(parents=True)
    (folder / "n02085620" / "n02085620_1001.JPEG").write_bytes(b"")
    assert ov.read_train_list(folder).ids == {"n02085620_1001"}


def test_bad_line_and_incomplete_list_are_named(tmp_path):
    bad = tmp_path / "train.txt"
    bad.write_text("n02085620/n02085620_1000.JPEG 1\nnot a path\n")
    with pytest.raises(ValueError, match=r"train.txt, line 2"):
        ov.read_train_list(bad)
    good = tmp_path / "short.txt"
    good.write_text("n02085620/n02085620_1000.JPEG 1\n")
    with pytest.raises(ValueError, match="1,281,167"):
        ov.load(tmp_path, list_path=str(good))
    assert ov.load(tmp_path, list_path=str(good), generated=True).n_lines == 1
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ov.read_train_list(tmp_path / "nowhere")


def test_per_breed_counts():
    seen = np.array([True, False, True, True, False])
    labels = np.array([0, 0, 1, 1, 1])
    df = ov.per_breed(seen, labels, ["a", "b", "c"])
    assert df["test images"].tolist() == [2, 3, 0]
    assert df["seen in ImageNet-1k train"].tolist() == [1, 2, 0]
    assert df["share"].iloc[0] == 0.5 and np.isnan(df["share"].iloc[2])


def _store(correct_by_run):
    n = len(next(iter(correct_by_run.values())))
    labels = np.zeros(n, dtype=int)
    runs = {}
    for (protocol, backbone), correct in correct_by_run.items():
        probs = np.full((n, 3), 0.1, dtype=np.float32)
        probs[np.arange(n), np.where(correct, 0, 1)] = 0.8
        runs[f"{protocol}_{backbone}"] = (
            {"protocol": protocol, "backbone": backbone},
            {"test_probs": probs, "test_labels": labels},
        )
    ds = {"test_labels": labels.tolist(), "class_names": ["a", "b", "c"]}
    return analysis.store.Store(ds, runs)


def test_split_accuracy_and_paired_parts():
    rng = np.random.default_rng(0)
    seen = np.arange(200) < 80
    vit = np.where(seen, True, rng.random(200) < 0.5)  # perfect on seen images
    cnn = rng.random(200) < 0.5
    store = _store({("B", "vit"): vit, ("B", "cnn"): cnn})
    df = leakage.split_accuracy(store, seen, n_boot=300)
    r = df.set_index("backbone").loc["vit"]
    assert r["seen"] == 1.0 and r["unseen"] == pytest.approx(vit[~seen].mean())
    assert r["gap"] == pytest.approx(1.0 - vit[~seen].mean())
    assert r["gap_lo"] <= r["gap"] <= r["gap_hi"] and r["unseen_lo"] < r["unseen_hi"]
    pairs = leakage.paired_by_part(store, seen, "vit", "cnn", n_boot=300)
    assert pairs["part"].tolist() == ["all", "seen", "unseen"]
    u = pairs.set_index("part").loc["unseen"]
    assert u["diff"] == pytest.approx(vit[~seen].mean() - cnn[~seen].mean())
    assert u["n"] == 120
    text = leakage.describe_parts(pairs, "ViT", "CNN")
    assert "Protocol B" in text and "unseen" in text
    with pytest.raises(ValueError, match="200 test images"):
        leakage.split_accuracy(store, seen[:10])


def test_describe_overlap():
    s = leakage.describe_overlap(np.array([True, False, False, True]), "caffe", False)
    assert "2 of the 4 test images (50.0 %)" in s
    assert "meaningless" in leakage.describe_overlap(np.array([True]), "x", True)


def test_for_profile_smoke_standin_and_missing_list(tmp_path):
    import types

    cfg = types.SimpleNamespace(
        dataset="synthetic", cache_dir=str(tmp_path), seed=3, imagenet_train_list=""
    )
    paths = _paths(50)
    tl, generated = ov.for_profile(cfg, paths, ["n02085620"])
    assert generated and 0 < ov.seen_mask(paths, tl).sum() < 50
    again, _ = ov.for_profile(cfg, paths, ["n02085620"])  # cached, same list
    assert again.ids == tl.ids
    real = types.SimpleNamespace(
        dataset="stanford_dogs",
        cache_dir=str(tmp_path),
        seed=0,
        imagenet_train_list=str(tmp_path / "missing.txt"),
    )
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        ov.for_profile(real, paths, ["n02085620"])


def test_required_resources_and_resource_entry():
    import types

    from vitwatch import downloads

    res = downloads.RESOURCES[ov.RESOURCE]
    assert res.url.endswith("/caffe_ilsvrc12.tar.gz") and res.fname == "caffe_ilsvrc12.tar.gz"
    real = types.SimpleNamespace(dataset="stanford_dogs", imagenet_train_list="")
    assert ov.required_resources(real) == [ov.RESOURCE]
    handed = types.SimpleNamespace(dataset="stanford_dogs", imagenet_train_list="/x/train.txt")
    smoke = types.SimpleNamespace(dataset="synthetic", imagenet_train_list="")
    assert ov.required_resources(handed) == [] and ov.required_resources(smoke) == []

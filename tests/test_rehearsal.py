"""The rehearsal's parts, small: the loopback mirror, the generated archives, and the real
download and loading path through ``VITWATCH_MIRROR`` (the whole ``make rehearsal`` is not run
here: it takes minutes)."""

import json
import pickle
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from vitwatch import config, downloads
from vitwatch.data import breeds, small, stanford_dogs
from vitwatch.rehearsal import artifacts, run
from vitwatch.rehearsal.server import Mirror, url_path

DOGS = ("dogs_images", "dogs_lists", "dogs_annotation")


def _get(url, headers=None, timeout=10):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_mirror_serves_ranges_redirects_and_404(tmp_path):
    blob = tmp_path / "blob.bin"
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    blob.write_bytes(data)
    files = {"/storage.example.com/a/blob.bin": blob}
    redirects = {
        "/tfhub.dev/x/1?tf-hub-format=compressed": "/kaggle.example.com/x",
        "/kaggle.example.com/x": "/storage.example.com/a/blob.bin",
    }
    with Mirror(files, redirects) as mirror:
        status, _, body = _get(mirror.url + "/storage.example.com/a/blob.bin")
        assert status == 200 and body == data
        status, head, body = _get(
            mirror.url + "/storage.example.com/a/blob.bin", {"Range": "bytes=1000-"}
        )
        assert status == 206 and body == data[1000:]
        assert head["Content-Range"] == f"bytes 1000-4999/{len(data)}"
        status, _, body = _get(
            mirror.url + "/storage.example.com/a/blob.bin", {"Range": "bytes=10-19"}
        )
        assert status == 206 and body == data[10:20]
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(mirror.url + "/storage.example.com/a/blob.bin", {"Range": "bytes=5000-"})
        assert err.value.code == 416
        # a chain of two redirects, as tfhub.dev -> Kaggle -> storage
        status, _, body = _get(mirror.url + "/tfhub.dev/x/1?tf-hub-format=compressed")
        assert status == 200 and body == data
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(mirror.url + "/tfhub.dev/x/1")  # the query is part of the route
        assert err.value.code == 404
        asked = [(m, p) for m, p, _ in mirror.requests]
    assert ("GET", "/kaggle.example.com/x") in asked
    assert (
        url_path("https://www.cs.toronto.edu/~kriz/c.tar.gz?a=1")
        == "/www.cs.toronto.edu/~kriz/c.tar.gz?a=1"
    )


def test_mirror_layout_uses_the_real_urls(tmp_path):
    fake = {
        name: artifacts.Artifact(name, str(tmp_path / name), 1, "0" * 64, "0" * 32)
        for name in (*DOGS, "hub_vit_s16_fe", "resnet50_imagenet")
    }
    files, redirects = run.mirror_layout(fake)
    assert "/vision.stanford.edu/aditya86/ImageNetDogs/images.tar" in files
    assert (
        "/storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    ) in files
    hop = redirects["/tfhub.dev/sayakpaul/vit_s16_fe/1?tf-hub-format=compressed"]
    assert files[redirects[hop]] == tmp_path / "hub_vit_s16_fe"


def test_dogs_archives_download_through_the_mirror_and_parse(tmp_path, monkeypatch):
    archives = artifacts.dogs_archives(tmp_path / "art", 2, 1, seed=3, num_classes=6, img_size=40)
    arts = {
        n: artifacts.Artifact(n, str(p), p.stat().st_size, *artifacts.digests(p))
        for n, p in archives.items()
    }
    files, redirects = run.mirror_layout(arts)
    checksums = tmp_path / "checksums.json"
    checksums.write_text(json.dumps({n: {"sha256": a.sha256} for n, a in arts.items()}))
    cfg = config.from_profile(
        "quick",
        cache_dir=str(tmp_path / "cache"),
        train_per_class=2,
        test_per_class=1,
        val_fraction=0.25,
    )
    with Mirror(files, redirects) as mirror:
        monkeypatch.setenv("VITWATCH_MIRROR", mirror.url)
        # the published SHA-256 still applies: the stand-in is refused without the override
        with pytest.raises(downloads.DownloadError, match="(?i)checksum|sha"):
            downloads.fetch("dogs_lists", tmp_path / "strict", retries=1)
        monkeypatch.setenv("VITWATCH_MIRROR_CHECKSUMS", str(checksums))
        dogs = stanford_dogs.load(cfg)
        gets = [p for m, p, _ in mirror.requests if m == "GET"]
    assert {
        "/vision.stanford.edu/aditya86/ImageNetDogs/" + f
        for f in ("images.tar", "lists.tar", "annotation.tar")
    } <= set(gets)
    assert dogs.num_classes == 6  # real folders, real synsets
    assert set(dogs.synsets) <= {f.split("-")[0] for f in breeds.FOLDERS}
    assert len(set(dogs.train.labels)) == 6 and len(dogs.test) >= 5  # one test file is bad
    assert all(len(b) and (b[:, 2] > b[:, 0]).all() for b in dogs.test.boxes)


def test_cifar10_archive_in_the_real_format(tmp_path):
    path = artifacts.cifar10_archive(tmp_path, 3, 2, seed=1)
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        meta = pickle.load(tar.extractfile("cifar-10-batches-py/batches.meta"), encoding="bytes")
        tar.extractall(tmp_path / "x", filter="data")
    assert {f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)} <= names
    assert meta[b"label_names"][0] == b"airplane"
    folder = tmp_path / "x" / "cifar-10-batches-py"
    xs, ys = zip(*(small.read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)))
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (30, 32, 32, 3) and x.dtype == np.uint8  # (N, 32, 32, 3)
    assert np.bincount(y).tolist() == [3] * 10
    x_te, y_te = small.read_cifar_batch(folder / "test_batch")
    assert x_te.shape == (20, 32, 32, 3) and x_te.std() > 10


def test_rehearsal_parameters_keep_the_quick_path(tmp_path):
    params = run.parameters(tmp_path / "cache", tmp_path / "out")
    assert params["profile"] == "quick" and params["dataset"] == "stanford_dogs"
    assert params["img_size"] == 224 and params["vit_variant"] == "S/16"
    assert params["resnet_weights"] == "imagenet" and params["small_dataset"] == "cifar10"
    assert params["vit_i21k_checkpoint"] == "vit_s16_i21k"
    assert params["cache_dir"] == str(tmp_path / "cache")
    for key, value in params.items():
        config.check(key, value)


def test_savedmodel_has_the_real_interface(tmp_path):
    import tensorflow as tf

    from vitwatch.models import hub, offline, vit

    npz = offline.vit_checkpoint(tmp_path, "testing", 32, seed=0, num_classes=0)
    path = artifacts.write_savedmodel(npz, tmp_path / "sm", variant="testing", img_size=32)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    _, inputs = fn.structured_input_signature
    assert list(inputs) == ["inputs"] and inputs["inputs"].shape.as_list() == [None, 32, 32, 3]
    assert inputs["inputs"].dtype == tf.float32
    assert list(fn.structured_outputs) == ["output_0"]
    backbone = hub.load_hub_backbone(str(path))  # the notebooks' loader
    ours = vit.build("testing", num_classes=0, img_size=32)
    vit.load_npz(ours, npz)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    got, want = backbone.predict_on_batch(x), np.asarray(ours.predict_on_batch(x))
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4 * max(1, np.abs(want).max())


def test_ilsvrc12_list_passes_the_content_check(tmp_path):
    from vitwatch.data import imagenet_overlap as ov

    dogs = artifacts.dogs_archives(tmp_path, 2, 1, seed=0, num_classes=3, img_size=16)
    path = artifacts.ilsvrc12_archive(tmp_path, dogs["dogs_images"])
    tl = ov.read_train_list(path)
    ov.check_complete(tl)  # 1,281,167 lines, 1000 synsets
    with tarfile.open(dogs["dogs_images"]) as tar:
        ids = {ov.image_id(n) for n in tar.getnames() if n.endswith(".jpg")}
    assert 0 < len(ids & tl.ids) < len(ids)  # some dog images were "seen"


def test_at_size_rehearsal_runs_quick_itself_on_stand_ins_as_large_as_it_reads(tmp_path):
    params = run.parameters(tmp_path / "cache", tmp_path / "out", at_size=True)
    quick = config.load_profile("quick")
    assert {k: v for k, v in params.items() if k in quick} == quick  # no override
    sizes = run.artifact_sizes(params, at_size=True)
    assert (sizes["dogs_train"], sizes["dogs_test"]) == (
        quick["train_per_class"],
        quick["test_per_class"],
    )
    assert 10 * sizes["cifar_train"] >= max(quick["small_train_sizes"])
    assert run.artifact_sizes(params, at_size=False) == {}
    # the plain rehearsal cuts the work
    small = run.parameters(tmp_path / "cache", tmp_path / "out")
    assert small["train_per_class"] < quick["train_per_class"] and small["finetune"]

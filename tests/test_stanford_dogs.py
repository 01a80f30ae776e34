"""Stanford Dogs loader: archives (hand-fetched or downloaded), extraction, split, batches.

The real archives cannot be downloaded here; the tests feed the real code path archives in the
real layout that :mod:`vitwatch.data.synthetic` writes.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vitwatch import config, downloads
from vitwatch.data import breeds, images, pipeline, synthetic
from vitwatch.data import stanford_dogs as sd
from vitwatch.downloads import transfer, web

N_CLASSES, TRAIN, TEST, SIZE = 4, 6, 3, 40


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The three archives, as a user would have fetched them by hand."""
    root = tmp_path_factory.mktemp("hand_fetched")
    synthetic.generate(root, N_CLASSES, TRAIN, TEST, SIZE, seed=3)
    return root


@pytest.fixture(autouse=True)
def published_checksums(archives, monkeypatch):
    """Hand-fetched archives are checked against the published SHA-256 (here the generated
    ones')."""
    import dataclasses
    import hashlib

    for name in sd.ARCHIVES:
        res = downloads.RESOURCES[name]
        digest = hashlib.sha256((archives / res.fname).read_bytes()).hexdigest()
        monkeypatch.setitem(downloads.RESOURCES, name, dataclasses.replace(res, sha256=digest))


def test_tampered_hand_fetched_archive_is_named(tmp_path, archives):
    local = tmp_path / "mine"
    shutil.copytree(archives, local)
    with open(local / "lists.tar", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(
        downloads.DownloadError, match=r"lists\.tar is not the published lists\.tar"
    ):
        sd.load(_cfg(tmp_path, dogs_archives_dir=str(local)))


def _cfg(tmp_path, **kw):
    base = dict(
        cache_dir=str(tmp_path / "cache"), dataset="stanford_dogs", img_size=SIZE, val_fraction=0.34
    )
    base.update(kw)
    return config.from_profile("smoke", **base)


def test_breed_names_and_imagenet_index():
    assert breeds.breed_name("n02085620-Chihuahua") == "Chihuahua"
    assert breeds.breed_name("n02099601-golden_retriever") == "Golden Retriever"
    assert breeds.breed_name("n02096585-Boston_bull") == "Boston Bull"
    assert breeds.breed_name("n02089078-black-and-tan_coonhound") == "Black-and-tan Coonhound"
    with pytest.raises(ValueError, match="Chihuahua"):
        breeds.breed_name("Chihuahua")
    assert len(breeds.FOLDERS) == 120 == len(breeds.IMAGENET_INDEX)
    idx = breeds.IMAGENET_INDEX
    assert (idx["n02085620"], idx["n02110185"], idx["n02110627"], idx["n02116738"]) == (
        151,
        250,
        252,
        275,
    )
    assert 251 not in idx.values() and len(set(idx.values())) == 120


def test_required_resources(tmp_path, archives):
    assert sd.required_resources(_cfg(tmp_path, dataset="synthetic")) == []
    assert sd.required_resources(_cfg(tmp_path)) == list(sd.ARCHIVES)
    assert sd.required_resources(_cfg(tmp_path, dogs_archives_dir=str(archives))) == []
    with pytest.raises(ValueError, match="dogs_archives_dir"):
        sd.required_resources(_cfg(tmp_path, dogs_archives_dir=str(tmp_path / "nowhere")))


def test_download_failure_names_url_and_alternatives(tmp_path, monkeypatch):
    import urllib.error

    calls = []

    def offline(url, headers, timeout):
        calls.append(url)
        raise urllib.error.URLError(OSError("Network is unreachable"))

    monkeypatch.setattr(web, "open_url", offline)
    monkeypatch.setattr(transfer.time, "sleep", lambda s: None)
    with pytest.raises(downloads.DownloadError) as err:
        sd.load(_cfg(tmp_path))
    msg = str(err.value)
    assert "http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar" in msg
    assert "dogs_archives_dir" in msg and "PROFILE=smoke" in msg
    assert calls and all("vision.stanford.edu" in c for c in calls)
    assert not (tmp_path / "cache" / "stanford_dogs").exists()


def test_hand_fetched_archives_official_split_boxes(tmp_path, archives):
    cfg = _cfg(tmp_path, dogs_archives_dir=str(archives))
    dogs = sd.load(cfg)
    root = tmp_path / "cache" / "stanford_dogs"
    assert (root / sd.MARKER).exists() and (root / "Images").is_dir()
    assert not list(root.parent.glob("*.partial-*"))
    # Undecodable files (an empty one and truncated JPEGs) are dropped and reported.
    assert dogs.bad_images.count == 3
    assert any("empty file" in r for r in dogs.bad_images.reasons)
    assert len(dogs.train) + len(dogs.val) == N_CLASSES * TRAIN - 2
    assert len(dogs.test) == N_CLASSES * TEST - 1
    expected = [breeds.breed_name(f) for f in synthetic.class_folders(N_CLASSES)]
    assert dogs.class_names == expected and dogs.num_classes == N_CLASSES
    assert list(dogs.imagenet_indices) == [breeds.IMAGENET_INDEX[s] for s in dogs.synsets]
    for split in (dogs.train, dogs.val, dogs.test):
        for path, y, box in zip(split.paths, split.labels, split.boxes):
            folder = Path(path).parent.name
            assert dogs.class_names[y] == breeds.breed_name(folder)  # labels = folders
            assert box.shape == (1, 4) and (box[:, 2:] > box[:, :2]).all()
            assert images.check_image(path) is None
    # Stratified validation: every class in val, about val_fraction of its train images.
    assert set(dogs.val.labels) == set(range(N_CLASSES))
    assert not set(dogs.val.paths) & set(dogs.train.paths)
    rec = dogs.dataset_record()
    assert rec["n_test"] == len(dogs.test) and len(rec["test_boxes"]) == len(dogs.test)
    json.dumps(rec)


def test_extracted_once_and_archives_no_longer_needed(tmp_path, archives):
    local = tmp_path / "archives"
    shutil.copytree(archives, local)
    cfg = _cfg(tmp_path, dogs_archives_dir=str(local))
    first = sd.load(cfg)
    marker = tmp_path / "cache" / "stanford_dogs" / sd.MARKER
    stamp = marker.stat().st_mtime_ns
    for tar in local.glob("*.tar"):
        tar.unlink()
    assert sd.required_resources(cfg) == []
    again = sd.load(cfg)
    assert marker.stat().st_mtime_ns == stamp
    assert again.train.paths == first.train.paths and again.val.paths == first.val.paths


def test_corrupt_archive_is_named_and_leaves_nothing(tmp_path, archives, monkeypatch):
    import dataclasses

    # without a known checksum, the corruption is found when extracting
    res = downloads.RESOURCES["dogs_lists"]
    monkeypatch.setitem(downloads.RESOURCES, "dogs_lists", dataclasses.replace(res, sha256=None))
    local = tmp_path / "archives"
    shutil.copytree(archives, local)
    (local / "lists.tar").write_bytes(b"this is not a tar file" * 100)
    with pytest.raises(ValueError, match="lists.tar"):
        sd.load(_cfg(tmp_path, dogs_archives_dir=str(local)))
    cache = tmp_path / "cache"
    assert not (cache / "stanford_dogs").exists() and not list(cache.glob("*.partial-*"))


def test_subsetting_is_seeded_and_skips_bad_files(tmp_path, archives):
    cfg = _cfg(
        tmp_path,
        dogs_archives_dir=str(archives),
        train_per_class=3,
        test_per_class=2,
        val_fraction=0.34,
    )
    dogs = sd.load(cfg)
    train_counts = np.bincount(np.concatenate([dogs.train.labels, dogs.val.labels]))
    assert list(train_counts) == [3] * N_CLASSES  # bad files replaced
    assert list(np.bincount(dogs.test.labels)) == [2] * N_CLASSES
    assert list(np.bincount(dogs.val.labels)) == [1] * N_CLASSES
    again = sd.load(cfg)
    assert again.train.paths == dogs.train.paths
    other = sd.load(
        _cfg(tmp_path, dogs_archives_dir=str(archives), train_per_class=3, test_per_class=2, seed=7)
    )
    assert other.train.paths + other.val.paths != dogs.train.paths + dogs.val.paths


def test_inconsistent_list_labels_are_reported(tmp_path, archives):
    root = sd.extract_archives(
        [archives / "images.tar", archives / "lists.tar", archives / "annotation.tar"],
        tmp_path / "x",
    )
    import scipy.io

    mat = scipy.io.loadmat(root / "train_list.mat")
    mat["labels"][:] = 7  # every folder, one label
    scipy.io.savemat(
        root / "train_list.mat", {k: v for k, v in mat.items() if not k.startswith("__")}
    )
    with pytest.raises(ValueError, match="train_list.mat: label 7"):
        sd.parse(root, _cfg(tmp_path))


def test_batches_eval_and_augmented_views(tmp_path, archives):
    dogs = sd.load(_cfg(tmp_path, dogs_archives_dir=str(archives)))
    split = dogs.test
    out = list(pipeline.batches(split, 32, 4))
    sizes = [len(i) for _, i in out]
    assert set(sizes[:-1]) == {4} and 0 < sizes[-1] <= 4 and sum(sizes) == len(split)
    x, idx = out[0]
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.uint8 and list(idx) == [0, 1, 2, 3]
    assert np.array_equal(np.concatenate([i for _, i in out]), np.arange(len(split)))
    # Augmented views: reproducible per image whatever the batch size, different per seed.
    a = np.concatenate([x for x, _ in pipeline.batches(split, 32, 4, augment=True, seed=1)])
    b = np.concatenate([x for x, _ in pipeline.batches(split, 32, 5, augment=True, seed=1)])
    c = np.concatenate([x for x, _ in pipeline.batches(split, 32, 4, augment=True, seed=2)])
    plain = np.concatenate([x for x, _ in out])
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, plain)
    # shuffle / indices
    order = np.concatenate([i for _, i in pipeline.batches(split, 16, 3, shuffle=True, seed=0)])
    assert sorted(order) == list(range(len(split))) and list(order) != sorted(order)
    sub = np.concatenate([i for _, i in pipeline.batches(split, 16, 3, indices=[5, 2, 7])])
    assert list(sub) == [5, 2, 7]


def test_batches_skip_bad_images_without_stopping(tmp_path, archives):
    dogs = sd.load(_cfg(tmp_path, dogs_archives_dir=str(archives)))
    empty = tmp_path / "broken.jpg"
    empty.write_bytes(b"")
    split = sd.Split(
        dogs.test.paths[:3] + [str(empty)] + dogs.test.paths[3:5],
        np.zeros(6, np.int64),
        [np.zeros((0, 4))] * 6,
    )
    log = images.BadImageLog()
    got = list(pipeline.batches(split, 24, 4, log=log))
    assert np.array_equal(np.concatenate([i for _, i in got]), [0, 1, 2, 4, 5])
    assert got[0][0].shape == (3, 24, 24, 3)
    assert log.files == [str(empty)]


def test_random_resized_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (50, 80, 3), np.uint8)
    out = pipeline.random_resized_crop(img, 32, rng)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    tiny = pipeline.random_resized_crop(img[:2, :2], 16, rng)
    assert tiny.shape == (16, 16, 3)


def test_unknown_dataset(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.dataset = "imagenet"
    with pytest.raises(ValueError, match="dataset"):
        sd.load(cfg)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_in_the_frame_of_the_loaded_pixels(tmp_path, orientation):
    """The VOC box, drawn on the stored pixels of an EXIF-oriented photo, comes out of
    image_boxes covering exactly the bright object of the photo as load_image returns it."""
    from PIL import Image

    stored = np.full((40, 64, 3), 20, np.uint8)  # (H, W) stored
    stored[8:16, 16:40] = 235  # object: VOC [17, 9, 40, 16]
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "dog.jpg", quality=95, subsampling=0, exif=exif)
    (tmp_path / "dog").write_text(
        "<annotation><size><width>64</width><height>40</height></size><object><bndbox>"
        "<xmin>17</xmin><ymin>9</ymin><xmax>40</xmax><ymax>16</ymax></bndbox></object>"
        "</annotation>"
    )
    ((x0, y0, x1, y1),) = sd.image_boxes(tmp_path / "dog", tmp_path / "dog.jpg").astype(int)
    bright = images.load_image(tmp_path / "dog.jpg").mean(axis=2) > 128  # (H, W) upright
    expected = np.zeros_like(bright)
    expected[y0 - 1 : y1, x0 - 1 : x1] = True
    np.testing.assert_array_equal(bright, expected)
    # an image that cannot be read keeps its boxes as they are (it is never loaded anyway)
    (tmp_path / "bad.jpg").write_bytes(b"junk")
    assert sd.image_boxes(tmp_path / "dog", tmp_path / "bad.jpg").tolist() == [[17, 9, 40, 16]]

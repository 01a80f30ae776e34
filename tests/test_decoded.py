"""Decode once: the on-disk uint8 cache gives the same views as decoding every time."""

import numpy as np
import pytest

from vitwatch import config
from vitwatch.data import decoded, images, pipeline, synthetic
from vitwatch.data import stanford_dogs as sd

SIZE = 40


@pytest.fixture
def dogs(tmp_path, monkeypatch):
    root = tmp_path / "archives"
    synthetic.generate(root, 3, 5, 3, SIZE + 24, seed=5)
    import dataclasses
    import hashlib

    from vitwatch import downloads

    for name in sd.ARCHIVES:  # hand-fetched archives: the generated ones' SHA-256
        res = downloads.RESOURCES[name]
        digest = hashlib.sha256((root / res.fname).read_bytes()).hexdigest()
        monkeypatch.setitem(downloads.RESOURCES, name, dataclasses.replace(res, sha256=digest))
    cfg = config.from_profile(
        "smoke",
        cache_dir=str(tmp_path / "cache"),
        img_size=SIZE,
        dataset="stanford_dogs",
        dogs_archives_dir=str(root),
        val_fraction=0.34,
    )
    yield sd.load(cfg), cfg
    decoded.clear()


def _views(split):
    plain = np.concatenate([x for x, _ in pipeline.batches(split, SIZE, 4)])
    aug = np.concatenate([x for x, _ in pipeline.batches(split, SIZE, 4, augment=True, seed=3)])
    return plain, aug


def test_cached_views_equal_fresh_decodes_and_decode_once(dogs, monkeypatch):
    data, cfg = dogs
    calls = []
    real = images.decode
    monkeypatch.setattr(images, "decode", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    plain, aug = _views(data.train)  # builds the train cache: one decode each
    again = _views(data.train)  # served from the cache: no decode
    assert sorted(calls) == sorted(data.train.paths)
    assert decoded.LAST_BUILD["n_images"] == len(data.train)
    assert all(np.array_equal(a, b) for a, b in zip((plain, aug), again))
    folder = decoded.DecodedSplit(data.train.paths, 2 * SIZE, cfg.cache_dir).folder
    pixels = np.load(folder / "pixels.npy", mmap_mode="r")  # a valid .npy
    assert pixels.dtype == np.uint8 and pixels.ndim == 1 and pixels.size > 0
    # The same views decoded from the files every time (cache off): the augmented view (same
    # DCT scale as the cache) identical; the squashed view resized from a finer DCT scale, so
    # only close (these photos are > 2x its size, which a fresh decode reduces at 1/2).
    decoded.clear()
    monkeypatch.setenv(decoded.ENV_DISABLE, "0")
    fresh = _views(data.train)
    assert np.array_equal(aug, fresh[1])
    diff = np.abs(plain.astype(int) - fresh[0])
    assert diff.mean() < 4 and not np.array_equal(plain, aug)
    assert len(calls) > len(data.train)  # now each view decoded the files again


def test_undecodable_file_is_logged_from_the_cache(tmp_path, dogs):
    data, cfg = dogs
    empty = tmp_path / "broken.jpg"
    empty.write_bytes(b"")
    paths = data.test.paths[:2] + [str(empty)]
    decoded.register(paths, 2 * SIZE, cfg.cache_dir)
    split = sd.Split(paths, np.zeros(3, np.int64), [np.zeros((0, 4))] * 3)
    log = images.BadImageLog()
    got = list(pipeline.batches(split, SIZE, 4, log=log))
    assert list(got[0][1]) == [0, 1] and log.files == [str(empty)]
    assert "empty" in log.reasons[0]


def test_larger_requests_fall_back_to_the_file(dogs):
    data, _ = dogs
    path = data.test.paths[0]
    found, _, _ = decoded.lookup(path, min_side=8 * SIZE)  # larger than cached
    assert not found
    found, img, _ = decoded.lookup(path, img_size=SIZE)
    assert found and img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8

"""Feature cache: correct rows, keyed by what changes features, atomic, resumable after a kill."""

import types

import numpy as np
import pytest

from vitwatch import config, features
from vitwatch.data import images
from vitwatch.data import stanford_dogs as sd

SIZE = 24


class StubModel:
    """Colour statistics of each image as 'features'; counts calls, can die after k calls."""

    def __init__(self, die_after=None):
        self.calls, self.images, self.die_after, self.max_batch = 0, 0, die_after, 0

    def __call__(self, x):  # (B, S, S, 3) -> (B, 6)
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.images += len(x)
        self.max_batch = max(self.max_batch, len(x))
        x = np.asarray(x)
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


def preprocess(x):
    return x / 255.0


def stub(key="w1", die_after=None, dim=6):
    model = StubModel(die_after)
    return types.SimpleNamespace(
        name="stub",
        model=model,
        forward=lambda x: model(preprocess(np.asarray(x, np.float32))).astype(np.float32),
        preprocess=preprocess,
        img_size=SIZE,
        feature_dim=dim,
        cache_key=key,
    )


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    cache = tmp_path_factory.mktemp("data")
    cfg = config.from_profile(
        "smoke",
        cache_dir=str(cache),
        img_size=SIZE,
        synthetic_classes=3,
        synthetic_train_per_class=8,
        synthetic_test_per_class=2,
    )
    return sd.load(cfg).train  # 22 images


def _cfg(tmp_path, **kw):
    kw.setdefault("eval_view", "squash")  # the reference _direct() squashes
    return config.from_profile(
        "smoke", cache_dir=str(tmp_path / "cache"), batch_size=4, img_size=SIZE, **kw
    )


def _direct(split):
    """Reference: the stub on every eval-view image, without any cache."""
    x = np.stack([images.load_image(p, SIZE) for p in split.paths]).astype(np.float32)
    return StubModel()(preprocess(x)).astype(np.float32)


def test_rows_match_images_and_cache_is_reused(tmp_path, split):
    cfg = _cfg(tmp_path)
    bb = stub()
    f, stats = features.extract_with_stats(bb, split, "train", cfg, shard_size=8)
    assert f.shape == (len(split), 6) and f.dtype == np.float32
    np.testing.assert_allclose(f, _direct(split), atol=1e-5)
    assert bb.model.images == len(split) and bb.model.max_batch <= cfg.batch_size
    assert stats.computed_images == len(split) and stats.cached_images == 0
    folder = features.cache_dir_for(bb, split, "train", cfg)
    assert sorted(p.name for p in folder.iterdir()) == ["features.npy", "meta.json"]
    bb2 = stub()
    again, stats = features.extract_with_stats(bb2, split, "train", cfg, shard_size=8)
    assert bb2.model.calls == 0 and np.array_equal(again, f)
    assert stats.cached_images == len(split) and stats.computed_images == 0
    assert stats.images_per_second > 0 and stats.compute_seconds > 0


def test_killed_run_resumes_computing_only_missing_shards(tmp_path, split, capsys):
    cfg = _cfg(tmp_path)
    # 22 images, shards of 8 (2 batches of 4 each): dies during the 2nd shard.
    with pytest.raises(KeyboardInterrupt):
        features.extract(stub(die_after=3), split, "train", cfg, shard_size=8)
    folder = features.cache_dir_for(stub(), split, "train", cfg)
    shards = sorted(p.name for p in folder.glob("shard_*.npy"))
    assert shards == ["shard_0000000_0000008.npy"]
    assert not list(folder.glob("*.tmp-*")) and not (folder / "features.npy").exists()
    resumed = stub()
    f, stats = features.extract_with_stats(resumed, split, "train", cfg, shard_size=8)
    assert resumed.model.images == len(split) - 8  # only what was missing
    assert stats.computed_images == len(split) - 8
    np.testing.assert_allclose(f, _direct(split), atol=1e-5)
    out = capsys.readouterr().out
    assert f"8 cached, {len(split) - 8} to compute" in out
    assert "estimated time left" in out  # the time estimate


def test_key_covers_weights_view_seed_and_split(tmp_path, split):
    cfg = _cfg(tmp_path)
    base = features.extract(stub("w1"), split, "train", cfg)
    other = stub("w2")  # other weights
    features.extract(other, split, "train", cfg)
    assert other.model.images == len(split)
    v1 = stub("w1")
    aug = features.extract(v1, split, "train", cfg, view=1)  # augmented view
    assert v1.model.images == len(split) and not np.allclose(aug, base)
    v2 = stub("w1")
    aug2 = features.extract(v2, split, "train", cfg, view=2)
    assert v2.model.images == len(split) and not np.allclose(aug2, aug)
    # Another seed: the plain view is shared, augmented views are recomputed and differ.
    cfg7 = _cfg(tmp_path, seed=7)
    plain7, aug7 = stub("w1"), stub("w1")
    features.extract(plain7, split, "train", cfg7)
    a7 = features.extract(aug7, split, "train", cfg7, view=1)
    assert plain7.model.calls == 0 and aug7.model.images == len(split)
    assert not np.allclose(a7, aug)
    # Same view in a fresh cache: identical (deterministic augmentation).
    fresh = features.extract(stub("w1"), split, "train", _cfg(tmp_path / "b"), view=1)
    np.testing.assert_array_equal(fresh, aug)
    # Another split (subset) or image size: other cache entries.
    small = stub("w1")
    features.extract(small, split.subset(range(5)), "train", cfg)
    assert small.model.images == 5
    big = stub("w1")
    big.img_size = SIZE * 2
    features.extract(big, split, "train", cfg)
    assert big.model.images == len(split)


def test_bad_image_in_split_gets_zero_row(tmp_path, split):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff")
    s = sd.Split(split.paths[:3] + [str(broken)], np.zeros(4, np.int64), [None] * 4)
    log = images.BadImageLog()
    with pytest.warns(UserWarning, match="undecodable"):
        f = features.extract(stub(), s, "odd", _cfg(tmp_path), log=log)
    assert f.shape == (4, 6) and not f[3].any() and f[:3].any(axis=1).all()
    assert log.files == [str(broken)]


def test_wrong_feature_dim_is_reported(tmp_path, split):
    with pytest.raises(ValueError, match="feature_dim says 5"):
        features.extract(stub(dim=5), split, "train", _cfg(tmp_path))


def test_native_view_is_resize_then_centre_crop(tmp_path, split):
    """Shorter side to floor(S / crop_pct), centre crop S x S, as timm's eval transform."""
    from PIL import Image

    wide = tmp_path / "wide.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 100, 3)).astype(np.uint8)).save(wide)
    spec = {"kind": "crop", "crop_pct": 0.8, "interpolation": "bilinear"}
    out = features.render_eval(str(wide), 16, spec)
    ref = np.asarray(Image.open(wide).convert("RGB").resize((50, 20), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out, ref[2:18, 17:33])  # (16, 16, 3)
    vit, res = stub(), stub()
    vit.name, res.name = "vit_s16", "resnet50"
    assert features.eval_view_spec(vit)["crop_pct"] == 0.9
    assert features.eval_view_spec(res) == {
        "kind": "crop",
        "crop_pct": 0.875,
        "interpolation": "bilinear",
    }
    assert features.eval_view_spec(res, "squash") == {"kind": "squash"}
    with pytest.raises(ValueError, match="eval_view"):
        features.eval_view_spec(res, "stretch")
    # the native view is its own cache entry, and its rows are the rendered crops
    cfg = _cfg(tmp_path, eval_view="native")
    bb = stub()
    f = features.extract(bb, split, "train", cfg)
    assert bb.model.images == len(split)
    x = np.stack(
        [features.render_eval(p, SIZE, features.eval_view_spec(bb)) for p in split.paths]
    ).astype(np.float32)
    np.testing.assert_allclose(f, StubModel()(preprocess(x)), atol=1e-5)
    assert features.cache_dir_for(bb, split, "train", cfg) != features.cache_dir_for(
        bb, split, "train", _cfg(tmp_path)
    )


def test_a_run_sharing_the_cache_that_finishes_first_is_taken_not_an_error(
    tmp_path, split, monkeypatch
):
    """Two runs extracting the same features at once (make test beside a report): the one that
    consolidates first removes the shards; the other takes its complete file."""
    cfg = _cfg(tmp_path)
    done = features.extract(stub(), split, "train", cfg)  # what the other run will leave
    folder = next((tmp_path / "cache" / "features").iterdir())
    complete = {p.name: p.read_bytes() for p in folder.iterdir()}
    for p in folder.iterdir():
        p.unlink()
    saved = features.fileio.save_npy
    calls = []

    def save_then_other_run_finishes(path, arr):
        saved(path, arr)
        calls.append(path.name)
        if path.name.startswith("shard_") and len(calls) == 1:  # the other run wins here
            for p in folder.glob("shard_*"):
                p.unlink()
            for name, data in complete.items():
                (folder / name).write_bytes(data)

    monkeypatch.setattr(features.fileio, "save_npy", save_then_other_run_finishes)
    again = features.extract(stub(), split, "train", cfg, shard_size=8)
    np.testing.assert_array_equal(again, done)
    assert calls[0].startswith("shard_") and not list(folder.glob("shard_*"))


def test_batches_are_computed_two_at_once_in_order_the_first_alone():
    import threading
    import time

    lock, running, most, order = threading.Lock(), [0], [0], []

    def forward(x):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            order.append(("start", int(x[0])))
        time.sleep(0.05)
        with lock:
            running[0] -= 1
            order.append(("end", int(x[0])))
        return x * 10

    stream = [(np.array([i]), np.array([i])) for i in range(6)]
    out = list(features.forwarded(stream, forward, warm=False, in_flight=2))
    assert [int(o[0]) for o, _ in out] == [0, 10, 20, 30, 40, 50]
    assert [int(i[0]) for _, i in out] == list(range(6))
    assert most[0] == 2, "two batches in flight"
    assert order[:2] == [("start", 0), ("end", 0)], "the first batch runs alone"
    most[0] = 0
    assert len(list(features.forwarded(stream, forward, in_flight=1))) == 6 and most[0] == 1
    assert list(features.forwarded([], forward, warm=False)) == []

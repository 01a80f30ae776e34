"""The TF Hub route (TFSMLayer in a Keras 3 model), offline on a SavedModel we export with the
signature of sayakpaul/vit_s16_fe; the routes and errors of hub.resolve."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from vitwatch import downloads
from vitwatch.models import hub, vit


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = vit.build("testing", num_classes=0, img_size=32)
    path = hub.export_savedmodel(model, tmp_path_factory.mktemp("hub") / "vit_fe")
    return model, path


def test_export_has_the_hub_signature(exported):
    import tensorflow as tf

    _, path = exported
    sig = tf.saved_model.load(str(path)).signatures["serving_default"]
    (spec,) = sig.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, 32, 32, 3] and spec.dtype == tf.float32
    assert not list(path.parent.glob("*.tmp*"))  # written atomically


def test_hub_backbone_matches_the_exported_model(exported):
    model, path = exported
    layer_model = hub.load_hub_backbone(str(path))
    assert layer_model.input_shape == (None, 32, 32, 3)
    assert layer_model.output_shape == (None, 64)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(layer_model.predict_on_batch(x)), np.asarray(model(x)), atol=1e-5
    )


def test_frozen_by_default_and_trainable_on_request(exported):
    _, path = exported
    frozen = hub.load_hub_backbone(str(path))
    assert frozen.trainable_weights == []
    backbone = hub.load_hub_backbone(str(path), trainable=True)
    assert len(backbone.trainable_weights) > 10
    inputs = keras.Input((32, 32, 3))
    clf = keras.Model(inputs, keras.layers.Dense(3)(backbone(inputs)))
    clf.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = np.random.default_rng(1).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    before = np.asarray(backbone.predict_on_batch(x))
    clf.train_on_batch(x, np.arange(8) % 3)
    assert np.abs(np.asarray(backbone.predict_on_batch(x)) - before).max() > 1e-6


def test_resolve_falls_back_to_kaggle_then_names_every_route(monkeypatch, tmp_path):
    """tfhub.dev (through vitwatch.downloads) first, Kaggle Models next; the error names both.
    The HTTP side (403, 5xx, stalls, redirects) is rehearsed in test_downloads.py."""
    import kagglehub

    calls = []

    def refused(name, cache_dir, **kw):
        calls.append((name, kw.get("retries")))
        raise downloads.DownloadError(
            "could not download https://tfhub.dev/...: refused (HTTP 403).\nalternatives",
            cause="refused",
        )

    def no_kaggle(handle, *a, **k):
        raise ConnectionError("Kaggle unreachable")

    monkeypatch.setattr(downloads, "fetch", refused)
    monkeypatch.setattr(kagglehub, "model_download", no_kaggle)
    url = "https://tfhub.dev/sayakpaul/vit_s16_fe/1"
    with pytest.raises(downloads.DownloadError) as err:
        hub.resolve(url, retries=3, cache_dir=tmp_path)
    assert calls == [("hub_vit_s16_fe", 3)]
    msg = str(err.value)
    assert url in msg and "403" in msg and "Kaggle unreachable" in msg
    assert "hub_handle=" in msg  # the offline alternatives


def test_resolve_downloads_unknown_handles_as_compressed_archives(monkeypatch, tmp_path):
    """A handle outside downloads.RESOURCES is fetched as <handle>?tf-hub-format=compressed."""
    asked = []

    def fake_download(url, dest, **kw):
        asked.append(url)
        raise downloads.DownloadError(f"could not download {url}: not found (HTTP 404).")

    monkeypatch.setattr(downloads, "download", fake_download)
    with pytest.raises(downloads.DownloadError, match="no handle"):
        hub.resolve("https://tfhub.dev/x/y/1", cache_dir=tmp_path)
    assert asked == ["https://tfhub.dev/x/y/1?tf-hub-format=compressed"]


def test_tensorflow_hub_is_not_imported_but_still_importable():
    """vitwatch resolves handles itself (tensorflow/hub#934); ``import tensorflow_hub`` must
    still work for users, which the setuptools<81 pin of pyproject.toml ensures on 3.12."""
    from pathlib import Path

    src = Path(hub.__file__).parents[1]
    users = [p for p in src.rglob("*.py") if "import tensorflow_hub" in p.read_text()]
    assert users == []
    import tensorflow_hub

    assert callable(tensorflow_hub.resolve)


def test_local_folder_without_savedmodel_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        hub.resolve(str(tmp_path))


def test_savedmodel_in_the_cache_folder_is_used_offline(exported, tmp_path, monkeypatch):
    """OFFLINE_HINT: a user may copy the extracted SavedModel into the cache folder."""
    import shutil

    _, path = exported
    res = downloads.RESOURCES["hub_vit_s16_fe"]
    shutil.copytree(path, tmp_path / "downloads" / res.fname)
    monkeypatch.setattr(downloads, "fetch", lambda *a, **k: pytest.fail("went online"))
    assert hub.resolve(res.url, cache_dir=tmp_path) == tmp_path / "downloads" / res.fname
    assert downloads.is_cached("hub_vit_s16_fe", tmp_path)

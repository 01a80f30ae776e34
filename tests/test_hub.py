"""The TF Hub route (TFSMLayer in a Keras 3 model), offline on a SavedModel we export with the
signature of sayakpaul/vit_s16_fe; retries and errors of hub.resolve."""
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
    assert not list(path.parent.glob("*.tmp*"))            # written atomically


def test_hub_backbone_matches_the_exported_model(exported):
    model, path = exported
    layer_model = hub.load_hub_backbone(str(path))
    assert layer_model.input_shape == (None, 32, 32, 3)
    assert layer_model.output_shape == (None, 64)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(layer_model.predict_on_batch(x)),
                               np.asarray(model(x)), atol=1e-5)


def test_frozen_by_default_and_trainable_on_request(exported):
    _, path = exported
    frozen = hub.load_hub_backbone(str(path))
    assert frozen.trainable_weights == []
    backbone = hub.load_hub_backbone(str(path), trainable=True)
    assert len(backbone.trainable_weights) > 10
    inputs = keras.Input((32, 32, 3))
    clf = keras.Model(inputs, keras.layers.Dense(3)(backbone(inputs)))
    clf.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(1).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    before = np.asarray(backbone.predict_on_batch(x))
    clf.train_on_batch(x, np.arange(8) % 3)
    assert np.abs(np.asarray(backbone.predict_on_batch(x)) - before).max() > 1e-6


def test_resolve_retries_then_names_the_handle(monkeypatch):
    import tensorflow_hub
    calls = []

    def failing(handle):
        calls.append(handle)
        raise OSError("HTTP Error 403: Forbidden")

    monkeypatch.setattr(tensorflow_hub, "resolve", failing)
    monkeypatch.setattr(hub.time, "sleep", lambda s: None)
    url = "https://tfhub.dev/sayakpaul/vit_s16_fe/1"
    with pytest.raises(downloads.DownloadError) as err:
        hub.resolve(url, retries=3)
    assert len(calls) == 3
    assert url in str(err.value) and "403" in str(err.value)
    assert "hub_handle=" in str(err.value)                 # the offline alternatives


def test_resolve_succeeds_after_a_transient_failure(monkeypatch, tmp_path):
    import tensorflow_hub
    answers = iter([OSError("HTTP Error 503"), str(tmp_path)])

    def flaky(handle):
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    monkeypatch.setattr(tensorflow_hub, "resolve", flaky)
    monkeypatch.setattr(hub.time, "sleep", lambda s: None)
    assert hub.resolve("https://tfhub.dev/x/y/1") == tmp_path


def test_local_folder_without_savedmodel_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        hub.resolve(str(tmp_path))


def test_savedmodel_in_the_cache_folder_is_used_offline(exported, tmp_path, monkeypatch):
    """OFFLINE_HINT: a user may copy the extracted SavedModel into the cache folder."""
    import shutil
    import tensorflow_hub
    _, path = exported
    res = downloads.RESOURCES["hub_vit_s16_fe"]
    shutil.copytree(path, tmp_path / "downloads" / res.fname)
    monkeypatch.setattr(tensorflow_hub, "resolve", lambda h: pytest.fail("went online"))
    assert hub.resolve(res.url, cache_dir=tmp_path) == tmp_path / "downloads" / res.fname
    assert downloads.is_cached("hub_vit_s16_fe", tmp_path)

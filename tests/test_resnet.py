"""ResNet-50 from keras.applications: caffe preprocessing, deterministic random weights, and
the ImageNet-weights path fed offline with a weights file in Keras' own legacy .h5 layout."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from vitwatch import downloads
from vitwatch.models import resnet, small


def test_preprocess_is_caffe_mode_and_pure():
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    copy = x.copy()
    ours = np.asarray(resnet.preprocess(x))
    np.testing.assert_array_equal(x, copy)  # input left untouched
    keras_ref = keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(ours, keras_ref, atol=1e-4)
    np.testing.assert_allclose(ours[..., 0], x[..., 2] - 103.939, atol=1e-4)  # B first


def test_random_weights_deterministic_and_well_scaled():
    a = resnet.build("random", img_size=32, include_top=False, seed=3)
    b = resnet.build("random", img_size=32, include_top=False, seed=3)
    c = resnet.build("random", img_size=32, include_top=False, seed=4)
    wa, wb, wc = (m.get_layer("conv3_block1_1_conv").get_weights()[0] for m in (a, b, c))
    np.testing.assert_array_equal(wa, wb)
    assert not np.allclose(wa, wc)
    x = resnet.preprocess(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)))
    f = np.asarray(a.predict_on_batch(x))
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    assert 1e-3 < f.std() < 1e4  # no explosion through 16 blocks


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' legacy .h5 writer
def test_imagenet_weights_come_through_downloads(monkeypatch, tmp_path):
    """The real path, offline: downloads.fetch hands Keras a legacy-format .h5 file."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = resnet.build("random", img_size=32, include_top=True, seed=7)
    h5 = tmp_path / downloads.RESOURCES["resnet50_imagenet"].fname
    with h5py.File(h5, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    asked = []

    def fake_fetch(name, cache_dir, **kw):
        asked.append(name)
        return h5

    monkeypatch.setattr(downloads, "fetch", fake_fetch)
    full = resnet.build("imagenet", img_size=48, include_top=True, cache_dir=tmp_path)
    assert asked == ["resnet50_imagenet"]
    for name in ("conv1_conv", "conv5_block3_3_bn", "predictions"):
        for w0, w1 in zip(source.get_layer(name).get_weights(), full.get_layer(name).get_weights()):
            np.testing.assert_array_equal(w0, w1)
    kernel, bias = resnet.imagenet_head(full)
    assert kernel.shape == (2048, 1000) and bias.shape == (1000,)


def test_download_failure_propagates_with_the_url(monkeypatch):
    def failing(name, cache_dir, **kw):
        raise downloads.DownloadError(f"could not download {downloads.RESOURCES[name].url}")

    monkeypatch.setattr(downloads, "fetch", failing)
    with pytest.raises(downloads.DownloadError, match="resnet50_weights_tf_dim_ordering"):
        resnet.build("imagenet", img_size=32, cache_dir="/nonexistent")
    with pytest.raises(ValueError, match="resnet_weights"):
        resnet.build("places365")


def test_tiny_testing_variant_has_resnet50s_design_and_names():
    """The smoke profile's ResNet: ResNet-50's layer names and block structure (one bottleneck
    block per stage), so stage outputs, Grad-CAM's layer and fine-tuning's blocks read it as
    they read ResNet-50; random weights only."""
    full = resnet.build("random", img_size=64, include_top=True, seed=1)
    tiny = resnet.build("random", img_size=64, include_top=True, seed=1, variant="testing")
    assert resnet.stage_outputs(full) == [
        "conv2_block3_out",
        "conv3_block4_out",
        "conv4_block6_out",
        "conv5_block3_out",
    ]
    assert resnet.stage_outputs(tiny) == [f"conv{s}_block1_out" for s in (2, 3, 4, 5)]
    for name in ("conv1_conv", "conv2_block1_0_conv", "conv5_block1_3_bn", "avg_pool"):
        assert tiny.get_layer(name).__class__ is full.get_layer(name).__class__
    # the same strides: the last stage is 1/32 of the input in both
    assert tiny.get_layer("conv5_block1_out").output.shape[1:3] == (2, 2)
    assert full.get_layer("conv5_block3_out").output.shape[1:3] == (2, 2)
    assert tiny.count_params() < full.count_params() / 50
    gmacs = {k: small.count_macs(m) / 1e9 for k, m in (("tiny", tiny), ("full", full))}
    assert gmacs["tiny"] < gmacs["full"] / 50
    assert 0.3 < gmacs["full"] / (3.86 * (64 / 224) ** 2) < 1.1  # the published 3.86
    x = resnet.preprocess(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)))
    f = np.asarray(resnet.build("random", 64, include_top=False, variant="testing")(x))
    assert f.shape == (2, 256) and np.isfinite(f).all() and f.std() > 1e-3
    with pytest.raises(ValueError, match="random weights only"):
        resnet.build("imagenet", img_size=64, variant="testing")
    with pytest.raises(ValueError, match="unknown ResNet variant"):
        resnet.build("random", img_size=64, variant="18")

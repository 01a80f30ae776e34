"""The device policy applied to the protocols: nothing changes on CPU; on a GPU (mocked devices:
this machine has none) low precision is checked, extraction and fine-tuning follow it, and the
runs' keys record it."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from vitwatch import config, fastpath, protocols, results
from vitwatch.data import stanford_dogs
from vitwatch.models import registry
from vitwatch.protocols import device, extract, finetune

H200 = {"name": "H200", "compute_capability": (9, 0), "memory_bytes": 140 * 2**30}
V100 = {"name": "V100", "compute_capability": (7, 0), "memory_bytes": 16 * 2**30}


def _gpu(details):
    """``tf.config`` as a machine with one GPU of ``details`` shows it."""
    fake = types.SimpleNamespace(name="/physical_device:GPU:0", device_type="GPU")
    return {
        "list_physical_devices": lambda kind=None: [fake] if kind in (None, "GPU") else [],
        "details": {
            "device_name": details["name"],
            "compute_capability": details["compute_capability"],
            "memory_limit": details["memory_bytes"],
        },
    }


def _backbone(name="vit_s16", seed=0, img_size=16):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((img_size, img_size, 3)),
            keras.layers.Conv2D(8, 4, strides=4),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    model.trainable = False
    w = np.random.default_rng(seed).normal(size=(8, 1000)).astype(np.float32)
    return registry.Backbone(
        name,
        model,
        lambda x: x / 127.5 - 1.0,
        img_size,
        8,
        f"tiny-{seed}",
        imagenet_logits=lambda f: tf.matmul(tf.cast(f, tf.float32), w),
        gmacs=0.01,
    )


def test_cpu_changes_nothing(monkeypatch):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    bbs = {"vit_s16": _backbone()}
    policy = device.choose(bbs, 16)  # fastpath.gpus(): none
    assert policy == {"device": "cpu", "precision": "float32", "jit": None, "batch_size": 16}
    assert device.is_default(policy) and device.key(policy) == {}
    assert device.check(policy, bbs["vit_s16"], None, None) is policy
    assert device.apply(policy, bbs, None)["vit_s16"] is bbs["vit_s16"]
    assert "CPU" in device.describe(policy)
    before = keras.config.dtype_policy().name
    with device.precision(policy):
        assert keras.config.dtype_policy().name == before
    assert extract.Extractor(bbs["vit_s16"], None, None, policy=policy).options == {}


def test_gpu_policy_from_mocked_devices(monkeypatch):
    gpu = _gpu(H200)
    monkeypatch.setattr(tf.config, "list_physical_devices", gpu["list_physical_devices"])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda d: gpu["details"])
    policy = device.choose({"vit_s16": _backbone()}, 16)
    assert policy["device"] == "H200" and policy["precision"] == "mixed_bfloat16"
    assert policy["jit"] is True and policy["batch_size"] > 16
    key = device.key(policy)["device_policy"]
    assert key["precision"] == "mixed_bfloat16" and key["batch_size"] == policy["batch_size"]
    # a V100 computes in float16; ResNet-50-sized training memory bounds the batch
    gpu = _gpu(V100)
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda d: gpu["details"])
    policy = device.choose({"resnet50": types.SimpleNamespace(gmacs=4.1)}, 16)
    assert policy["precision"] == "mixed_float16" and 16 < policy["batch_size"] < 1024


def test_low_precision_is_checked_against_float32():
    policy = fastpath.device_policy([H200], 16, 1e6)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    reference = _backbone()
    built = []

    def build(name, seed=0):
        built.append(keras.config.dtype_policy().name)  # built under the policy's precision
        return _backbone(name, seed)

    kept = device.check(policy, reference, build, images)
    assert built == ["mixed_bfloat16"] and keras.config.dtype_policy().name == "float32"
    assert kept["precision"] == "mixed_bfloat16" and kept["check"]["safe"]
    assert kept["check"]["top1_agreement"] == 1.0 and "kept" in device.describe(kept)
    # another function in low precision: rejected, float32 used
    wrong = device.check(policy, reference, lambda n: build(n, seed=5), images)
    assert wrong["precision"] == "float32" and not wrong["check"]["safe"]
    assert "rejected" in device.describe(wrong)
    low = device.apply(kept, {"vit_s16": reference}, build)["vit_s16"]
    assert low.cache_key == "tiny-0-mixed_bfloat16"  # its features cached apart
    assert low.model.layers[0].compute_dtype == "bfloat16"


def test_extraction_follows_the_gpu_policy(monkeypatch):
    seen = {}

    def forward(backbone, cache_dir=None, log=print, jit=None):
        seen["jit"] = jit
        return backbone.forward

    monkeypatch.setattr(fastpath, "backbone_forward", forward)
    policy = {"device": "H200", "precision": "float32", "jit": True, "batch_size": 512}
    ex = extract.Extractor(_backbone(), None, None, policy=policy)
    assert seen["jit"] is True and ex.options["batch_size"] == 512


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_fine_tuning_under_a_gpu_policy(tmp_path, precision):
    cfg = config.from_profile(
        "smoke",
        cache_dir=str(tmp_path / "c"),
        results_dir=str(tmp_path / "r"),
        batch_size=16,
        finetune_blocks=-1,
    )
    policy = {"device": "GPU", "precision": precision, "jit": False, "batch_size": 64}
    tuner = finetune.Tuner(lambda: _backbone(img_size=16), 10, 100, cfg, policy)
    assert tuner.batch == 64 and tuner.steps == 2
    assert tuner.backbone.model.layers[0].compute_dtype == precision.split("_")[1]
    assert tuner.head.layers[-1].compute_dtype == "float32"  # softmax and loss in fp32
    assert tuner.model.output.dtype == "float32"
    scaled = isinstance(tuner.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")
    assert keras.config.dtype_policy().name == "float32"  # restored


def test_the_policy_is_in_the_key_only_off_cpu(tmp_path, monkeypatch):
    cfg = config.from_profile(
        "smoke", cache_dir=str(tmp_path / "c"), results_dir=str(tmp_path / "r")
    )
    data = stanford_dogs.load(cfg)
    store = results.ResultsStore(cfg.results_dir, cfg.profile, cfg.seed)
    keys = []

    def run_or_load(store, name, hp, fn, log):
        keys.append(hp)
        raise RuntimeError("stop")

    monkeypatch.setattr(protocols.runs, "run_or_load", run_or_load)
    b = _backbone(img_size=cfg.img_size)
    gpu = {"device": "H200", "precision": "mixed_bfloat16", "jit": True, "batch_size": 512}
    cpu = {"device": "cpu", "precision": "float32", "jit": None, "batch_size": 16}
    for policy in (None, cpu, gpu):
        with pytest.raises(RuntimeError, match="stop"):
            protocols.run("B", b, data, cfg, store, policy=policy)
    assert keys[0] == keys[1] and "device_policy" not in keys[0]
    assert keys[2]["device_policy"]["precision"] == "mixed_bfloat16"

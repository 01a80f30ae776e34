"""Where the protocols compute: :func:`vitwatch.fastpath.device_policy` applied to feature
extraction and fine-tuning (issue 13, item 4).

On CPU nothing changes: float32, the path :mod:`vitwatch.fastpath` measured fastest, the
profile's batch size, and nothing added to a run's key, so CPU runs keep their keys and numbers.
On a GPU: XLA; bfloat16 (compute capability >= 8.0) or float16 (7.x) compute, kept only when the
low-precision ViT agrees with float32 on the route-agreement images of notebook 03
(:func:`check`); the batch sized to memory. Extraction then runs a copy of each backbone built
under the low precision (:func:`apply`; its features cached under their own key); fine-tuning
builds its model under it, with a float32 head, softmax and loss, and loss scaling for float16
(:class:`vitwatch.protocols.finetune.Tuner`). The policy is recorded in the key of every run
that used it (:func:`key`).

Typical use (notebook 03)::

    policy = device.choose(backbones, cfg.batch_size)      # fastpath.gpus(); CPU: the default
    policy = device.check(policy, backbones["vit_s16"], build, images)
    backbones = device.apply(policy, backbones, build)     # low-precision copies (GPU only)
    print(device.describe(policy))
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from vitwatch import fastpath

# Training memory per image (activations kept for the backward pass, fp32) per multiply-
# accumulate of the forward pass: ~0.02 bytes/MAC, i.e. ~90 MB per image for ResNet-50 or
# ViT-S/16 at 224 px (ResNet-50 trains at batch 256 in ~24 GB). Sizes the batch.
TRAIN_BYTES_PER_MAC = 0.02
DEFAULT_GMACS = 4.6  # a backbone without a MAC count: sized as ViT-S/16


def is_default(policy: Mapping | None) -> bool:
    """The CPU policy (or none): nothing changes."""
    return policy is None or policy["device"] == "cpu"


def choose(backbones: Mapping, batch_size: int, devices: list[dict] | None = None) -> dict:
    """The policy for ``devices`` (:func:`vitwatch.fastpath.gpus` when None), its batch sized
    for fine-tuning the largest of ``backbones`` (by GMACs)."""
    devices = fastpath.gpus() if devices is None else devices
    gmacs = max([b.gmacs or DEFAULT_GMACS for b in backbones.values()] or [DEFAULT_GMACS])
    return fastpath.device_policy(devices, batch_size, TRAIN_BYTES_PER_MAC * gmacs * 1e9)


@contextlib.contextmanager
def precision(policy: Mapping | None):
    """Keras layers built inside compute in the policy's precision (variables stay float32);
    the global dtype policy is restored on exit. A no-op in float32 (the CPU policy)."""
    import keras

    if is_default(policy) or policy["precision"] == "float32":
        yield
        return
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy["precision"])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def _low(policy: Mapping, build: Callable[[str], object], name: str):
    """Backbone ``name`` built by ``build(name)`` under the policy's precision, its features
    cached under a key of their own."""
    with precision(policy):
        backbone = build(name)
    return dataclasses.replace(backbone, cache_key=f"{backbone.cache_key}-{policy['precision']}")


def check(policy: dict, reference, build: Callable[[str], object], images) -> dict:
    """``policy``, back to float32 unless the low-precision copy of ``reference`` (a backbone
    with an ImageNet-1k head: the ViT) agrees with it in float32 on ``images``
    (:func:`vitwatch.fastpath.agrees_with_fp32` on their ImageNet-1k logits); the verdict is
    kept in ``policy["check"]``."""
    if is_default(policy) or policy["precision"] == "float32":
        return policy
    low = _low(policy, build, reference.name)
    logits32 = np.asarray(reference.imagenet_logits(reference.forward(images)))
    logits_low = np.asarray(reference.imagenet_logits(low.forward(images)))
    verdict = fastpath.agrees_with_fp32(logits32, logits_low)
    out = {**policy, "check": {**verdict, "images": len(images), "backbone": reference.name}}
    if not verdict["safe"]:
        out["precision"] = "float32"
    return out


def apply(policy: Mapping, backbones: Mapping, build: Callable[[str], object]) -> dict:
    """``backbones`` for extraction under ``policy``: the same ones in float32, else copies
    built under its precision."""
    if is_default(policy) or policy["precision"] == "float32":
        return dict(backbones)
    return {name: _low(policy, build, name) for name in backbones}


def key(policy: Mapping | None) -> dict:
    """What a run's key records of the policy: nothing on CPU (keys unchanged), else the
    device, precision, XLA and batch size."""
    if is_default(policy):
        return {}
    return {"device_policy": {k: policy[k] for k in ("device", "precision", "jit", "batch_size")}}


def describe(policy: Mapping) -> str:
    """One line: which policy was applied and why."""
    if is_default(policy):
        return (
            f"Compute: CPU, float32, batch {policy['batch_size']}, the TF graph or XLA path "
            "measured fastest here (no GPU seen)."
        )
    why = ""
    if "check" in policy:
        c = policy["check"]
        verdict = "kept" if c["safe"] else "rejected, float32 used"
        why = (
            f"; low precision {verdict} after comparing with float32 on {c['images']} images "
            f"({c['backbone']}: top-1 agreement {c['top1_agreement']:.0%}, largest relative "
            f"logit error {c['max_rel_error']:.1e})"
        )
    return (
        f"Compute: {policy['device']}, {policy['precision']}, XLA, batch {policy['batch_size']} "
        f"(sized to the GPU's memory){why}."
    )

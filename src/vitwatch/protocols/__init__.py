"""The training protocols of notebook 03, keyed by their letter, and one way to run them.

- **Z** (:mod:`.zero_shot`): no training, the backbone's ImageNet-1k head on the dog classes.
- **A** (:mod:`.linear`): the seed's protocol, frozen backbone + softmax head, a fresh
  augmented view each epoch (cached: the backbone is frozen).
- **B** (:mod:`.probe`): a linear probe on cached features, its settings chosen on validation.
- **C** (:mod:`.finetune`): the last blocks fine-tuned, the head from B's probe (LP-FT).

What they share: the softmax head (:mod:`.head`), cached features (:mod:`.extract`). The
evaluation-view study is :mod:`.views`; the tables and sentences of 03, :mod:`.describe`. The
facts about each protocol (its description) are :data:`vitwatch.catalogue.PROTOCOLS`.

Every protocol module has ``run(...) -> RunResult`` and ``key(cfg)``, its settings in the key
of a run. :func:`run` is what the notebook calls: a protocol on one backbone, loaded from the
results store when it finished before with the same key (:func:`vitwatch.runs.run_or_load`).

Seeds: A, B and C train ``cfg.head_seeds`` heads, with seeds ``cfg.seed + j``; the data subset
and split, and the augmented views of A and B, are drawn once by ``cfg.seed``. Honest
evaluation everywhere: every choice (epoch, L2, early stop) is made on validation; the test
split is predicted once, by the final model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from vitwatch import catalogue, runs
from vitwatch.protocols import device, finetune, linear, probe, zero_shot

PROTOCOLS = {"Z": zero_shot, "A": linear, "B": probe, "C": finetune}  # letter -> module


def _module(letter: str):
    if letter not in PROTOCOLS:
        raise ValueError(f"unknown protocol {letter!r}; known: {', '.join(catalogue.PROTOCOLS)}")
    return PROTOCOLS[letter]


def hyperparameters(letter: str, backbone, data, cfg) -> dict:
    """The key of a run of protocol ``letter`` (:func:`vitwatch.runs.hyperparameters` with the
    protocol's own settings)."""
    return runs.hyperparameters(letter, backbone, data, cfg, _module(letter).key(cfg))


def run(
    letter: str,
    backbone,
    data,
    cfg,
    store,
    *,
    probe: runs.RunResult | None = None,
    policy: Mapping | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> runs.RunResult:
    """Protocol ``letter`` on ``backbone``, or its run from ``store`` if it finished with the
    same key. C fine-tunes a fresh copy of the backbone (``registry.backbone(name, cfg)``,
    built once and restored for each head seed), its heads starting from ``probe`` (a B run of
    the same backbone) if given; the probe's key is then part of C's. ``policy``: where and in
    which precision to compute (:mod:`.device`; None: the CPU default, not in the key)."""
    module = _module(letter)
    hp = {**hyperparameters(letter, backbone, data, cfg), **device.key(policy)}
    if letter == "C":
        from vitwatch.models import registry

        if probe is not None:
            hp["head_init"] = probe.hyperparameters

        def compute():
            return finetune.run(
                lambda: registry.backbone(backbone.name, cfg),
                data,
                cfg,
                head_weights=finetune.probe_heads(probe),
                verbose=progress,
                policy=policy,
            )
    else:

        def compute():
            return module.run(backbone, data, cfg, progress=progress, policy=policy)

    return runs.run_or_load(store, f"{letter}_{backbone.name}", hp, compute, log)


def run_each(
    letter: str,
    names: Iterable[str],
    backbones: Mapping,
    data,
    cfg,
    store,
    *,
    probes: Mapping[str, runs.RunResult] | None = None,
    policy: Mapping | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, runs.RunResult]:
    """:func:`run` of protocol ``letter`` for each backbone of ``names``:
    ``{"<letter>_<name>": RunResult}``. C's heads start from ``probes["B_<name>"]``."""
    out = {}
    for name in names:
        probe = (probes or {}).get(f"B_{name}") if letter == "C" else None
        out[f"{letter}_{name}"] = run(
            letter, backbones[name], data, cfg, store, probe=probe, policy=policy, log=log
        )
    return out


def backbones_for(letter: str, backbones: Mapping, cfg) -> list[str]:
    """The backbones of ``backbones`` that notebook 03 runs protocol ``letter`` on, in order:
    those whose catalogue row lists the letter (:attr:`vitwatch.catalogue.Row.protocols`; the
    ImageNet-21k-only checkpoints and the TF Hub route run B only), Z only with an ImageNet-1k
    head, C only when ``cfg.finetune``."""
    _module(letter)
    if letter == "C" and not cfg.finetune:
        return []
    names = [n for n in backbones if letter in catalogue.BACKBONES[n].protocols]
    if letter == "Z":
        return [n for n in names if backbones[n].imagenet_logits is not None]
    return names

"""Profiles and notebook parameters: one flat, type-checked vocabulary.

Every notebook has one papermill ``parameters`` cell holding flat values, and validates them in
the next cell with :func:`validate` (unknown key or wrong type -> ``ValueError`` naming the key),
in the manner of nanoGPT's ``configurator.py`` but without ``exec``. Profiles
(``notebooks/profiles/{smoke,quick,full}.yaml``) are papermill parameter files over the same
vocabulary; :func:`load_profile` validates one before any notebook starts.

Typical use in a notebook::

    from vitwatch import config
    _names_before = config.snapshot(globals())      # setup cell, before `parameters`
    ...                                              # parameters cell (+ papermill's injection)
    cfg = config.validate(globals(), _names_before)  # next cell
"""

from __future__ import annotations

import os
import platform
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROFILES = ("smoke", "quick", "full")


@dataclass(frozen=True)
class Param:
    type: type | tuple[type, ...]
    default: Any
    help: str
    choices: tuple | None = None


# One vocabulary for every notebook and profile (STYLE.md 9). Defaults are the smoke values, so
# that a notebook opened in JupyterLab runs top to bottom offline in minutes.
PARAMS: dict[str, Param] = {
    # --- run -----------------------------------------------------------------------------
    "profile": Param(str, "smoke", "profile name", PROFILES),
    "seed": Param(int, 0, "global random seed (Python, NumPy, TensorFlow)"),
    "cache_dir": Param(
        str,
        "",
        "downloads, generated artifacts and feature caches; '' = $VITWATCH_CACHE or "
        "~/.cache/vitwatch",
    ),
    "results_dir": Param(str, "", "results store; '' = reports/<profile>/results"),
    "figures_dir": Param(str, "", "figure files; '' = figures/<profile>"),
    "batch_size": Param(int, 16, "batch size of backbone forward passes"),
    # --- data ----------------------------------------------------------------------------
    "dataset": Param(
        str,
        "synthetic",
        "Stanford Dogs or its synthetic offline stand-in",
        ("stanford_dogs", "synthetic"),
    ),
    "dogs_archives_dir": Param(
        str, "", "folder holding images.tar / lists.tar / annotation.tar fetched by hand"
    ),
    "imagenet_train_list": Param(
        str,
        "",
        "ILSVRC-2012 training list for the leakage count: caffe_ilsvrc12.tar.gz, train.txt or "
        "the train folder ('' = download it; smoke: generated)",
    ),
    "img_size": Param(int, 64, "input resolution of the backbones (224 for the real models)"),
    "train_per_class": Param(
        int, 0, "images per class kept from the official train split (0 = all)"
    ),
    "test_per_class": Param(int, 0, "images per class kept from the official test split (0 = all)"),
    "val_fraction": Param(float, 0.2, "share of train carved out (stratified) as validation"),
    "synthetic_classes": Param(int, 10, "number of breeds of the synthetic stand-in"),
    "synthetic_train_per_class": Param(int, 20, "synthetic train images per breed"),
    "synthetic_test_per_class": Param(int, 10, "synthetic test images per breed"),
    # --- backbones -----------------------------------------------------------------------
    "backbones": Param(
        list,
        ["vit_s16", "resnet50", "vit_s16_hub", "vit_s16_i21k", "bit_r50x1", "bit_r50x1_i21k"],
        "backbones run, in order (rows of vitwatch.catalogue.BACKBONES); one whose checkpoint "
        "parameter is empty is skipped",
    ),
    "vit_variant": Param(
        str,
        "testing",
        "ViT variant (vitwatch.models.vit.VARIANTS): 'testing' builds every ViT of the "
        "catalogue tiny (smoke); otherwise each is built in its catalogue row's variant",
        ("testing", "S/16", "B/16"),
    ),
    "vit_checkpoint": Param(
        str,
        "generated",
        "named checkpoint, URL or local .npz; 'generated' = tiny random checkpoint made offline",
    ),
    "vit_i21k_checkpoint": Param(
        str, "", "ImageNet-21k-only checkpoint for the leakage control ('' = skip)"
    ),
    "hub_handle": Param(
        str,
        "generated",
        "TF Hub handle, URL or local SavedModel; 'generated' = tiny SavedModel exported offline; "
        "'' = skip",
    ),
    "resnet_weights": Param(str, "random", "ResNet-50 weights", ("imagenet", "random")),
    "bit_variant": Param(
        str,
        "testing",
        "BiT ResNetV2 variant (vitwatch.models.resnetv2.VARIANTS): 'testing' builds every CNN "
        "of the catalogue tiny (BiT and ResNet-50: smoke); otherwise each is built in its "
        "catalogue row's variant",
        ("testing", "R50x1"),
    ),
    "bit_checkpoint": Param(
        str,
        "generated",
        "BiT-M R50x1 ImageNet-21k -> 1k: named checkpoint, URL or local .npz; 'generated' = tiny "
        "random one made offline; '' = skip",
    ),
    "bit_i21k_checkpoint": Param(
        str,
        "generated",
        "BiT-M R50x1 ImageNet-21k only: named checkpoint, URL or local .npz; 'generated' = tiny "
        "random one; '' = skip",
    ),
    # --- notebook 03: protocols -----------------------------------------------------------
    "head_epochs": Param(int, 3, "protocol A: epochs of the softmax head on the frozen backbone"),
    "head_lr": Param(float, 1e-2, "protocol A: Adam learning rate of the head"),
    "augment": Param(bool, True, "protocol A: random crop / flip augmentation"),
    "head_seeds": Param(
        int, 2, "protocols A, B, C: heads trained per run, with seeds seed, seed + 1, ..."
    ),
    "eval_view": Param(
        str,
        "native",
        "evaluation view of every image: each backbone's aspect-preserving resize + centre crop, "
        "or a squash to img_size",
        ("native", "squash"),
    ),
    "view_study_hires": Param(
        bool, True, "03: the evaluation-view study also probes ViT-S/16 at 384 px (~3x its cost)"
    ),
    "probe_views": Param(
        int, 2, "protocol B: augmented views of train cached (1 = the plain image only)"
    ),
    "probe_l2_grid": Param(
        list, [1e-4, 1e-3, 1e-2], "protocol B: L2 strengths tried, chosen on validation"
    ),
    "probe_lr_grid": Param(
        list, [], "protocol B: Adam learning rates tried, chosen on validation ([] = [head_lr])"
    ),
    "probe_standardize": Param(
        str,
        "auto",
        "protocol B: standardise features (per dimension, train statistics): 'auto' tries both "
        "on validation",
        ("auto", "never", "always"),
    ),
    "probe_epochs": Param(int, 20, "protocol B: epochs of the head on cached features"),
    "finetune": Param(bool, True, "protocol C: run fine-tuning"),
    "finetune_epochs": Param(int, 1, "protocol C: maximum epochs"),
    "finetune_lr": Param(float, 1e-4, "protocol C: peak learning rate"),
    "finetune_blocks": Param(int, 1, "protocol C: last blocks unfrozen (-1 = all)"),
    "finetune_warmup_epochs": Param(float, 0.5, "protocol C: linear warm-up length"),
    "finetune_patience": Param(int, 2, "protocol C: early-stopping patience in epochs"),
    # --- notebook 04: analysis ------------------------------------------------------------
    "n_bootstrap": Param(int, 500, "bootstrap resamples for confidence intervals"),
    "n_attention_images": Param(
        int, 16, "images for mean attention distance and rollout statistics"
    ),
    "n_cka_images": Param(int, 64, "images for the CKA similarity of ViT and ResNet layers"),
    # --- notebook 05: inductive bias ------------------------------------------------------
    "small_dataset": Param(str, "digits", "dataset trained from scratch", ("digits", "cifar10")),
    "small_train_sizes": Param(list, [100, 250, 600], "training-set sizes (log-spaced)"),
    "small_seeds": Param(int, 2, "seeds per training-set size"),
    "small_epochs": Param(
        int, 8, "step budget of every from-scratch run, in passes over the largest size"
    ),
    "small_models": Param(
        list,
        ["resnet", "vit", "vit_spt_lsa"],
        "models of notebook 05 (vitwatch.models.small.ARCHS)",
    ),
    "small_test_size": Param(
        int, 0, "test images used by notebook 05 (stratified subset; 0 = the whole test split)"
    ),
}


def snapshot(namespace: Mapping[str, Any]) -> frozenset[str]:
    """Names defined before the ``parameters`` cell (imports, helpers)."""
    return frozenset(namespace) | {"_names_before"}


def _type_name(t) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def check(key: str, value: Any, source: str = "parameters") -> Any:
    """Validate one key; return the value coerced (int -> float where a float is expected)."""
    if key not in PARAMS:
        close = [k for k in PARAMS if k.split("_")[0] == key.split("_")[0]]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"{source}: unknown parameter {key!r}{hint}; known parameters are listed in "
            f"vitwatch.config.PARAMS"
        )
    p = PARAMS[key]
    if p.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, p.type) and not (isinstance(value, bool) and p.type in (int, float))
    if not ok:
        raise ValueError(
            f"{source}: parameter {key!r} must be {_type_name(p.type)}, got "
            f"{type(value).__name__} {value!r}"
        )
    if p.choices is not None and value not in p.choices:
        raise ValueError(f"{source}: parameter {key!r} must be one of {p.choices}, got {value!r}")
    return value


def validate(
    namespace: Mapping[str, Any],
    names_before: frozenset[str] | None = None,
    source: str = "parameters",
) -> types.SimpleNamespace:
    """Check the names a notebook's parameters cell (and papermill) defined; return the config.

    ``names_before`` is :func:`snapshot` taken before the parameters cell: every name defined
    since must be a known parameter of the right type. Keys not given take their default.
    """
    given = {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_")
        and (names_before is None or k not in names_before)
        and not isinstance(v, types.ModuleType)
        and not callable(v)
    }
    values = {k: p.default for k, p in PARAMS.items()}
    for key, value in given.items():
        values[key] = check(key, value, source)
    return _finish(values)


def load_profile(
    profile: str | os.PathLike, profiles_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Read and validate a profile YAML (by name or path); return its raw mapping."""
    path = Path(profile)
    if not path.suffix:
        path = Path(profiles_dir or default_profiles_dir()) / f"{profile}.yaml"
    if not path.is_file():
        raise ValueError(f"profile file not found: {path} (profiles: {', '.join(PROFILES)})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a profile must be a mapping of parameter: value")
    for key, value in raw.items():
        raw[key] = check(str(key), value, source=str(path))
    return raw


def from_profile(
    profile: str | os.PathLike, profiles_dir: str | os.PathLike | None = None, **overrides
) -> types.SimpleNamespace:
    """The config of a profile as a notebook would see it (used by tests and the CLI)."""
    values = {k: p.default for k, p in PARAMS.items()}
    values.update(load_profile(profile, profiles_dir))
    for key, value in overrides.items():
        values[key] = check(key, value, "overrides")
    return _finish(values)


def _finish(values: dict[str, Any]) -> types.SimpleNamespace:
    cfg = types.SimpleNamespace(**values)
    cfg.cache_dir = str(
        Path(
            cfg.cache_dir or os.environ.get("VITWATCH_CACHE") or Path.home() / ".cache" / "vitwatch"
        ).expanduser()
    )
    root = project_root()
    cfg.results_dir = str(
        Path(cfg.results_dir) if cfg.results_dir else root / "reports" / cfg.profile / "results"
    )
    cfg.figures_dir = str(
        Path(cfg.figures_dir) if cfg.figures_dir else root / "figures" / cfg.profile
    )
    # The one predicate of "this is the offline smoke run": the data are the generated
    # stand-in, so every number is meaningless (the smoke profile, or any profile on synthetic
    # data). Notebooks, sentences and the report's banner read it, not the profile's name.
    cfg.stand_in = cfg.dataset == "synthetic"
    return cfg


def project_root() -> Path:
    """The checkout root (holding notebooks/), else the current directory."""
    env = os.environ.get("VITWATCH_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "notebooks" / "profiles").is_dir():
            return parent
    return Path.cwd()


def default_profiles_dir() -> Path:
    return project_root() / "notebooks" / "profiles"


def machine_summary() -> dict[str, str]:
    """Versions and hardware, for the title page and the results store."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "accelerator": ", ".join(g.name for g in gpus) if gpus else "none (CPU)",
        "platform": platform.platform(terse=True),
    }

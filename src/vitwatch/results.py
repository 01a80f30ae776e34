"""The results store: what notebook 03 measures and notebook 04 reads, without recomputing.

A :class:`ResultsStore` reads and writes one folder (``cfg.results_dir``, by default
``reports/<profile>/results/``), laid out as::

    dataset.json        class names, synsets, test paths / labels / boxes, split sizes, bad images
    cost.json           per backbone: params, gmacs, images_per_second (measured in 03)
    <run>.npz           test_probs (N, K) float32, test_labels (N,), val_probs, val_labels
                        (the first head seed's), and for A, B, C every head seed's:
                        seeds (S,), seed_test_probs (S, N, K), seed_val_probs (S, N_val, K),
                        seed_head_kernel / seed_head_bias (probes), head_kernel, ...
    <run>.json          backbone, protocol, top1, top5, val_top1 (means over the head seeds),
                        top1_seeds, head_seeds, history (first seed), extra.per_seed,
                        hyperparameters, timings, trainable_params, profile, seed, machine
    eval_views/<view>_<px>/B_<backbone>.{npz,json}
                        the evaluation-view study of 03 (probe B per view), same layout
    eval_views.json     its table, and the view the main results use

Run names are ``<protocol>_<backbone>`` (``A_vit_s16``, ``B_resnet50``, ``Z_vit_s16``, ...).
Validation probabilities are stored for every run and seed (temperature scaling fits on them).

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), and
a run's ``.npz`` is written before its ``.json``: a run counts as finished only when its JSON
exists. :meth:`ResultsStore.has` compares the stored hyperparameters with the requested ones, so
a notebook interrupted halfway resumes by skipping exactly the runs that finished with the same
settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import fileio

_RUN = re.compile(r"^[A-Z]_[a-z0-9_]+$")
REQUIRED_ARRAYS = ("test_probs", "test_labels", "val_probs", "val_labels")
REQUIRED_META = (
    "backbone",
    "protocol",
    "top1",
    "top5",
    "val_top1",
    "history",
    "hyperparameters",
    "timings",
    "trainable_params",
)


def _check_name(run_name: str) -> None:
    if not _RUN.match(run_name):
        raise ValueError(
            f"results: run name {run_name!r} must look like 'A_vit_s16' "
            "(protocol letter, underscore, backbone name)"
        )


def _jsonable(obj: Any) -> Any:
    """numpy scalars / arrays and tuples -> plain JSON types (recursively)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def normalize(obj: Any) -> Any:
    """The value as it reads back from JSON (tuples -> lists, numpy -> Python)."""
    return json.loads(json.dumps(_jsonable(obj), sort_keys=True))


def write_json(path: Path, obj: Any) -> Path:
    return fileio.write_json(path, _jsonable(obj), indent=1, sort_keys=True)


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results store: {path} not found (run notebook 03 first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"results store: {path} is not valid JSON: {exc}") from None


# --- the store ----------------------------------------------------------------------------


class ResultsStore:
    """The results store in ``folder``: runs, ``dataset.json``, ``cost.json`` and any other JSON
    file of the report. ``profile`` and ``seed`` (those of the notebook that writes) are stamped
    on every run's JSON and on ``dataset.json``; a reader may leave them out."""

    def __init__(self, folder, profile: str | None = None, seed: int | None = None):
        self.folder = Path(folder)
        self.profile = profile
        self.seed = seed

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.folder)!r}, profile={self.profile!r})"

    def sub(self, *parts: str) -> ResultsStore:
        """The store in a sub-folder (e.g. ``eval_views/native_64``), same provenance."""
        return ResultsStore(self.folder.joinpath(*parts), self.profile, self.seed)

    def write_json(self, name: str, obj: Any) -> Path:
        """``<folder>/<name>`` (a relative path), numpy values made plain."""
        return write_json(self.folder / name, obj)

    def read_json(self, name: str) -> Any:
        return read_json(self.folder / name)

    # --- runs ---------------------------------------------------------------------------------

    def save(self, run_name: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]):
        """Write ``<run_name>.npz`` then ``<run_name>.json``; return the JSON path."""
        _check_name(run_name)
        missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
        missing += [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise ValueError(f"results.save({run_name!r}): missing {', '.join(missing)}")
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        fileio.save_npz(self.folder / f"{run_name}.npz", compressed=True, **arrays)
        meta = dict(meta)
        meta.setdefault("run", run_name)
        meta.setdefault("profile", self.profile)
        meta.setdefault("seed", self.seed)
        if "machine" not in meta:
            from vitwatch import config

            meta["machine"] = config.machine_summary()
        return self.write_json(f"{run_name}.json", meta)

    def load(self, run_name: str) -> tuple[dict, dict[str, np.ndarray]]:
        """``(meta, arrays)`` of one run; a clear error if it is missing or incomplete."""
        _check_name(run_name)
        meta = self.read_json(f"{run_name}.json")
        npz = self.folder / f"{run_name}.npz"
        if not npz.is_file():
            raise FileNotFoundError(f"results store: {npz} missing although its JSON exists")
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return meta, arrays

    def list_runs(self) -> list[str]:
        """Names of the finished runs (those with both files), sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p.stem
            for p in self.folder.glob("*.json")
            if _RUN.match(p.stem) and (self.folder / f"{p.stem}.npz").is_file()
        )

    def has(self, run_name: str, hyperparameters: Mapping[str, Any] | None = None) -> bool:
        """True when the run finished, with the same ``hyperparameters`` if they are given."""
        _check_name(run_name)
        if run_name not in self.list_runs():
            return False
        if hyperparameters is None:
            return True
        try:
            meta = self.read_json(f"{run_name}.json")
        except ValueError:
            return False
        return normalize(meta.get("hyperparameters")) == normalize(hyperparameters)

    # --- dataset and cost ---------------------------------------------------------------------

    def save_dataset(self, data) -> Path:
        """``dataset.json`` from a ``DogsData`` (fields: CONTRIBUTING.md, built by
        ``DogsData.dataset_record()``), plus the profile it was made under."""
        info = dict(data.dataset_record())
        info["test_boxes"] = [
            np.asarray(b, dtype=float).reshape(-1, 4).tolist() for b in data.test.boxes
        ]
        info["profile"] = self.profile
        return self.write_json("dataset.json", info)

    def load_dataset(self) -> dict:
        return self.read_json("dataset.json")

    def save_cost(self, cost: Mapping[str, Mapping[str, Any]]) -> Path:
        """``cost.json``: ``{backbone: {params, gmacs, images_per_second, ...}}``; merges with
        the backbones already stored."""
        path = self.folder / "cost.json"
        merged = read_json(path) if path.is_file() else {}
        merged.update(_jsonable(cost))
        return write_json(path, merged)

    def load_cost(self) -> dict:
        """``cost.json``; ``{}`` when no cost was measured yet."""
        path = self.folder / "cost.json"
        return read_json(path) if path.is_file() else {}

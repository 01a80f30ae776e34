"""Compare two results stores (``reports/<profile>/results``): are the numbers the same?

Used to show that a refactor left the report's numbers unchanged (issue 10): every run's
accuracies and every stored array of one store against the other. Fields that legitimately
change between two runs of the same experiment are ignored: wall-clock timings, the machine,
the code version in the run key, throughput. Prints one line per file and a verdict; exits 1
when a number differs by more than ``--atol`` (arrays) or an accuracy differs at all.

    python scripts/compare_results.py BEFORE_DIR AFTER_DIR [--atol 1e-5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# Keys whose values describe the run's circumstances, not its results.
IGNORED = {
    "timings",
    "machine",
    "code",
    "seconds",
    "seconds_per_step",
    "images_per_second",
    "measured",
    "created",
    "elapsed",
    "wall_seconds",
    "train_seconds",
    "extract_seconds",
}


def _numbers(obj, prefix: str = "") -> dict[str, object]:
    """Flatten a JSON document to {dotted.key: leaf}, dropping :data:`IGNORED` keys."""
    out: dict[str, object] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in IGNORED or "seconds" in k:
                continue
            out.update(_numbers(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = obj
    return out


def compare_json(a: Path, b: Path, atol: float) -> list[str]:
    fa, fb = _numbers(json.loads(a.read_text())), _numbers(json.loads(b.read_text()))
    problems = [f"only in before: {k}" for k in sorted(set(fa) - set(fb))]
    problems += [f"only in after: {k}" for k in sorted(set(fb) - set(fa))]
    for k in sorted(set(fa) & set(fb)):
        va, vb = fa[k], fb[k]
        if isinstance(va, float) or isinstance(vb, float):
            try:
                if abs(float(va) - float(vb)) > atol * max(1.0, abs(float(va))):
                    problems.append(f"{k}: {va!r} -> {vb!r}")
            except (TypeError, ValueError):
                problems.append(f"{k}: {va!r} -> {vb!r}")
        elif va != vb:
            problems.append(f"{k}: {va!r} -> {vb!r}")
    return problems


def compare_npz(a: Path, b: Path, atol: float) -> tuple[list[str], float]:
    problems, worst = [], 0.0
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        for k in sorted(set(za.files) ^ set(zb.files)):
            problems.append(f"array {k} in one store only")
        for k in sorted(set(za.files) & set(zb.files)):
            xa, xb = za[k], zb[k]
            if xa.shape != xb.shape:
                problems.append(f"array {k}: shape {xa.shape} -> {xb.shape}")
            elif xa.dtype.kind in "fc":
                diff = float(np.max(np.abs(xa - xb))) if xa.size else 0.0
                worst = max(worst, diff)
                if diff > atol:
                    problems.append(f"array {k}: max |diff| {diff:.3g}")
            elif not np.array_equal(xa, xb):
                problems.append(f"array {k}: values differ")
    return problems, worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--atol", type=float, default=1e-5, help="tolerance of stored floats")
    args = ap.parse_args(argv)
    for d in (args.before, args.after):
        if not d.is_dir():
            print(f"compare_results: {d} is not a results folder", file=sys.stderr)
            return 2
    files_a = {p.relative_to(args.before) for p in args.before.rglob("*") if p.is_file()}
    files_b = {p.relative_to(args.after) for p in args.after.rglob("*") if p.is_file()}
    bad, worst = 0, 0.0
    for rel in sorted(files_a ^ files_b):
        print(f"MISSING   {rel} (only in {'before' if rel in files_a else 'after'})")
        bad += 1
    for rel in sorted(files_a & files_b):
        a, b = args.before / rel, args.after / rel
        if rel.suffix == ".json":
            problems = compare_json(a, b, args.atol)
        elif rel.suffix == ".npz":
            problems, w = compare_npz(a, b, args.atol)
            worst = max(worst, w)
        else:
            continue
        print(f"{'same' if not problems else 'DIFFERS':9s} {rel}")
        for p in problems[:8]:
            print(f"            {p}")
        bad += bool(problems)
    compared = len(files_a & files_b)
    print(
        f"\n{compared} files compared, {bad} differ; largest difference of a stored float "
        f"array {worst:.3g} (tolerance {args.atol:g})"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""The dress rehearsal of the real run: notebooks 02-05 on the ``quick`` code path, offline.

``make rehearsal`` (``vitwatch rehearsal``) does what a user's ``make report PROFILE=quick``
does, with every download answered by a loopback mirror of the real hosts:

1. full-size stand-ins of every file the profile downloads are generated once
   (:mod:`.artifacts`, cached under ``$VITWATCH_CACHE/rehearsal/artifacts``);
2. :class:`.server.Mirror` serves them on 127.0.0.1 under the real URL paths (tfhub.dev
   answering with a redirect chain, as the real one does) and ``VITWATCH_MIRROR`` points
   :mod:`vitwatch.downloads` at it; ``VITWATCH_MIRROR_CHECKSUMS`` names the stand-ins' digests
   (the published ones stay what real users are checked against);
3. notebooks 02-05 run with papermill under ``quick`` plus :data:`OVERRIDES` (a few images per
   breed, one epoch, few bootstrap resamples), with an empty download cache, so that every
   file goes through the downloader, the extraction and the real loaders; executed copies,
   results and figures go to ``reports/rehearsal/``;
4. one line per notebook with its time; the run fails (exit 1) naming the notebook and cell,
   or naming a resource that no notebook downloaded (a route the rehearsal did not exercise).

``vitwatch rehearsal --at-size`` times ``make report PROFILE=quick`` instead: every notebook
(00-06), two at once as the report runs them (:func:`vitwatch.report.builder.run_notebooks`),
under ``quick`` itself, no overrides, with stand-ins as large as what quick reads (8 training
and 5 test photographs per breed at Stanford Dogs' sizes, the full-size checkpoints, CIFAR-10
pools as large as its subsets). The arithmetic is the real run's; only the pixels and weights
are random, so fine-tuning's early stopping and the probes' grids may stop at other points.
Outputs go to ``reports/rehearsal-at-size/``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from vitwatch import config, fileio
from vitwatch.rehearsal import artifacts as arts
from vitwatch.rehearsal.server import Mirror, url_path

NOTEBOOKS = ("02", "03", "04", "05")
# Keep the quick code path (real loaders, 224 px, ViT-S/16, ResNet-50, CIFAR-10), cut the work.
OVERRIDES = {
    "batch_size": 32,
    "train_per_class": 2,
    "test_per_class": 1,
    "val_fraction": 0.5,
    "vit_i21k_checkpoint": "vit_s16_i21k",
    "hub_handle": "https://tfhub.dev/sayakpaul/vit_s16_fe/1",
    "head_epochs": 1,
    "head_seeds": 1,
    "probe_epochs": 5,
    "probe_l2_grid": [0.001],
    "finetune": True,  # quick leaves fine-tuning and the 384 px view out; rehearse them anyway
    "finetune_epochs": 1,
    "view_study_hires": True,
    "n_bootstrap": 100,
    "n_attention_images": 8,
    "n_cka_images": 16,
    "small_dataset": "cifar10",
    "small_train_sizes": [100, 200],
    "small_seeds": 1,
    "small_epochs": 1,
    "small_test_size": 0,
}
# The redirect chain of tfhub.dev today: the handle -> Kaggle Models -> Google Storage.
_KAGGLE_HOP = (
    "/www.kaggle.com/api/v1/models/spsayakpaul/vision-transformer/tensorFlow2/{}/1/download"
)
_STORAGE_HOP = "/storage.googleapis.com/kaggle-models-data/{}/1/model.tar.gz"


class RehearsalError(RuntimeError):
    """The rehearsal failed; the message names the notebook and cell, or the resource."""


def mirror_layout(artifacts: dict[str, arts.Artifact]) -> tuple[dict, dict]:
    """({url path: file}, {url path: url path}) serving every artifact under its real URL."""
    from vitwatch import downloads

    files, redirects = {}, {}
    for name, a in artifacts.items():
        res = downloads.RESOURCES[name]
        url = getattr(res, "download_url", res.url)
        if "tfhub.dev" in url:  # handle?tf-hub-format=compressed
            slug = res.url.rstrip("/").split("/")[-2].replace("_", "-")
            kaggle, storage = _KAGGLE_HOP.format(slug), _STORAGE_HOP.format(slug)
            redirects[url_path(url)] = kaggle
            redirects[kaggle] = storage
            files[storage] = Path(a.path)
        else:
            files[url_path(url)] = Path(a.path)
    return files, redirects


def parameters(cache_dir: Path, out_dir: Path, at_size: bool = False) -> dict:
    """The ``quick`` profile's parameters with :data:`OVERRIDES` (none ``at_size``), run
    folders and cache."""
    params = config.load_profile("quick")
    known = {k: v for k, v in OVERRIDES.items() if k in config.PARAMS and not at_size}
    params.update({k: config.check(k, v, "rehearsal overrides") for k, v in known.items()})
    params.update(
        cache_dir=str(cache_dir),
        results_dir=str(out_dir / "results"),
        figures_dir=str(out_dir / "figures"),
    )
    return params


def needed_resources(params: dict) -> list[str]:
    """Names of downloads.RESOURCES the run will download: what the report's preflight
    gathers from the loaders, plus the ILSVRC-2012 list of the leakage count when it is
    downloaded rather than handed in."""
    from vitwatch import downloads, report
    from vitwatch.data import imagenet_overlap

    cfg = config.from_profile("quick", **{k: v for k, v in params.items() if k != "profile"})
    names = report.required_resources(cfg)
    aux = imagenet_overlap.RESOURCE
    if (
        aux in downloads.RESOURCES
        and aux not in names
        and cfg.dataset == "stanford_dogs"
        and not getattr(cfg, "imagenet_train_list", "")
    ):
        names.append(aux)
    return names


def _requested(mirror: Mirror, files: dict) -> dict[str, int]:
    """Downloads (GET, not a preflight's ``Range: bytes=0-0`` probe) of each served file."""
    counts = {path: 0 for path in files}
    for method, raw, byte_range in mirror.requests:
        kind, target = mirror.lookup(raw)
        if method == "GET" and kind == "file" and byte_range != "bytes=0-0":
            for path, f in files.items():
                if Path(f) == Path(target):
                    counts[path] += 1
    return counts


def artifact_sizes(params: dict, at_size: bool) -> dict:
    """Images per class of the stand-in archives: the defaults of :func:`.artifacts.build`, or
    (``at_size``) as many as ``params`` reads."""
    if not at_size:
        return {}
    per_class = max(params["small_train_sizes"]) // 10 + 1  # CIFAR-10: 10 classes
    return {
        "dogs_train": params["train_per_class"],
        "dogs_test": params["test_per_class"],
        "cifar_train": per_class,
        "cifar_test": max(1, params["small_test_size"] // 10),
    }


def run(
    cache_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    only: list[str] | None = None,
    kernel: str = "python3",
    stream: bool = False,
    log=print,
    at_size: bool = False,
) -> dict:
    """Generate, serve, execute; return a summary dict; raise :class:`RehearsalError`."""
    from vitwatch import report
    from vitwatch.report import builder

    t_start = time.time()
    cache = Path(
        cache_dir or os.environ.get("VITWATCH_CACHE") or Path.home() / ".cache" / "vitwatch"
    ).expanduser()
    root = config.project_root()
    out = Path(out_dir or root / "reports" / ("rehearsal-at-size" if at_size else "rehearsal"))
    every = [p.name[:2] for p in report.notebooks(root / "notebooks")] if at_size else NOTEBOOKS
    wanted = [n for n in every if not only or n in only]
    books = [p for p in report.notebooks(root / "notebooks") if p.name[:2] in wanted]

    run_cache = cache / "rehearsal" / "run"  # empty: every file is downloaded
    shutil.rmtree(run_cache, ignore_errors=True)
    run_cache.mkdir(parents=True)
    params = parameters(run_cache, out, at_size)
    try:
        artifacts = arts.build(
            cache, needed_resources(params), log=log, **artifact_sizes(params, at_size)
        )
    except ValueError as exc:
        raise RehearsalError(str(exc)) from None
    files, redirects = mirror_layout(artifacts)
    checksums = fileio.write_json(
        run_cache / "checksums.json", {k: {"sha256": a.sha256} for k, a in artifacts.items()}
    )
    for sub in ("executed", "results", "figures"):  # nothing from a previous rehearsal
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "executed").mkdir(parents=True)
    log(
        f"rehearsal: artifacts ready in {time.time() - t_start:.0f} s; "
        f"serving {len(files)} files on 127.0.0.1"
    )

    timings, env_keys = {}, ("VITWATCH_MIRROR", "VITWATCH_MIRROR_CHECKSUMS")
    t_notebooks = time.time()
    saved = {k: os.environ.get(k) for k in env_keys}
    with Mirror(files, redirects) as mirror:
        os.environ.update(VITWATCH_MIRROR=mirror.url, VITWATCH_MIRROR_CHECKSUMS=str(checksums))
        try:
            if at_size:  # as `make report` runs them: two at once, in the order they allow
                try:
                    timings = builder.run_notebooks(
                        books,
                        out / "executed",
                        params,
                        "",
                        kernel,
                        force=True,
                        streaming=stream,
                        jobs=builder.default_jobs(),
                        previous=None,
                    )
                except report.ReportError as exc:
                    raise RehearsalError(str(exc)) from None
            for nb in [] if at_size else books:
                t0 = time.time()
                try:
                    report.execute(nb, out / "executed" / nb.name, params, kernel, stream=stream)
                except report.ReportError as exc:
                    log(f"{nb.name}: FAILED after {time.time() - t0:.0f} s")
                    raise RehearsalError(str(exc)) from None
                timings[nb.name] = round(time.time() - t0, 1)
                log(f"{nb.name}: ok in {timings[nb.name]:.0f} s")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        counts = _requested(mirror, files)
    summary = {
        "notebooks": timings,
        "seconds": round(time.time() - t_start, 1),
        "downloads": counts,
        "requests": len(mirror.requests),
        "parameters": params,
    }
    fileio.write_json(out / "rehearsal.json", summary, indent=1)
    if set(NOTEBOOKS) <= set(wanted):
        missed = [p for p, n in counts.items() if n == 0]
        if missed:
            raise RehearsalError(
                "these files were served but never downloaded, so their "
                "route was not rehearsed: " + ", ".join(missed)
            )
    if at_size:
        summary["notebooks_seconds"] = round(time.time() - t_notebooks, 1)
        fileio.write_json(out / "rehearsal.json", summary, indent=1)
        log(
            f"rehearsal at quick's size: notebooks {summary['notebooks_seconds'] / 60:.1f} min "
            f"(two at once), {summary['seconds'] / 60:.1f} min with the stand-ins' generation"
        )
    log(
        f"rehearsal: {len(timings)} notebooks passed in {summary['seconds'] / 60:.1f} min "
        f"({sum(counts.values())} downloads through the mirror); outputs in {out}"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="vitwatch rehearsal", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return command(parser.parse_args(argv))


def add_arguments(parser) -> None:
    parser.add_argument("--only", nargs="*", help="notebook prefixes among 02 03 04 05")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    parser.add_argument("--verbose", action="store_true", help="echo the notebooks' output")
    parser.add_argument(
        "--at-size",
        action="store_true",
        help="time `make report PROFILE=quick`: every notebook, quick's own sizes, stand-ins",
    )


def command(args) -> int:
    try:
        run(only=args.only, kernel=args.kernel, stream=args.verbose, at_size=args.at_size)
    except (RehearsalError, ValueError) as exc:
        print(f"vitwatch rehearsal: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

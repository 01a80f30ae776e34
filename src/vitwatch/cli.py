"""The ``vitwatch`` command: the Makefile's actions for pip and conda users alike.

vitwatch report --profile smoke      execute every notebook, render HTML + PDF
                                     (exit 0; 1: a notebook or the build failed;
                                     3: HTML written, no browser for the PDF)
vitwatch preflight --profile full    check the downloads a profile needs, and stop
vitwatch test                        the test suite (pytest)
vitwatch bench                       the benchmarks
vitwatch lab                         JupyterLab with the project's kernel
vitwatch strip                       remove outputs from the source notebooks
vitwatch rehearsal                   notebooks 02-05 on the quick path, offline (local mirror)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from . import config


def _report(args) -> int:
    from . import report

    try:
        result = report.build(
            args.profile,
            force=args.force,
            pdf=not args.no_pdf,
            only=args.only,
            kernel=args.kernel,
            stream=args.verbose,
            jobs=args.jobs,
        )
    except (report.ReportError, ValueError) as exc:
        print(f"vitwatch report: {exc}", file=sys.stderr)
        return 1
    if not args.no_pdf and not result.get("pdf"):
        return report.EXIT_NO_PDF  # HTML written, no browser for the PDF (README)
    return 0


def _preflight(args) -> int:
    from . import report

    try:
        report.preflight(config.from_profile(args.profile))
    except (report.ReportError, ValueError) as exc:
        print(f"vitwatch preflight: {exc}", file=sys.stderr)
        return 1
    print(f"preflight: everything profile {args.profile!r} needs is cached or reachable")
    return 0


def _strip(args) -> int:
    import nbformat

    root = config.project_root()
    changed = 0
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        dirty = False
        for cell in nb.cells:
            if cell.cell_type == "code" and (cell.outputs or cell.execution_count):
                cell.outputs, cell.execution_count, dirty = [], None, True
            if cell.metadata.pop("execution", None) is not None:
                dirty = True
        if dirty:
            nbformat.write(nb, str(path))
            changed += 1
            print(f"stripped {path.name}")
    if args.check and changed:
        return 1
    return 0


def _rehearsal_arguments(p) -> None:
    from .rehearsal import run

    run.add_arguments(p)
    p.set_defaults(func=run.command)


def _run(cmd: list[str]) -> int:
    os.chdir(config.project_root())
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vitwatch", description="vitwatch: the executable ViT technology-watch report"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "report",
        help="execute every notebook with papermill and render the HTML "
        "and PDF report (exit 3: HTML only, no browser for the PDF)",
    )
    p.add_argument(
        "--profile",
        default="full",
        help="smoke | quick | full, or a path to a profile YAML (default: full)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="re-run notebooks even when unchanged since their last run",
    )
    p.add_argument("--no-pdf", action="store_true", help="write the HTML only")
    p.add_argument("--only", nargs="*", help="notebook number prefixes to run, e.g. --only 00 01")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="notebooks run at once, each as soon as those it reads from are done "
        "(default: 2, or 1 on a one-core machine)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        default=None,
        help="echo the notebooks' output (progress bars, logs); default: on for quick/full",
    )
    p.set_defaults(func=_report)
    p = sub.add_parser(
        "preflight", help="check that the downloads a profile needs are cached or reachable"
    )
    p.add_argument("--profile", default="full")
    p.set_defaults(func=_preflight)
    p = sub.add_parser("strip", help="remove outputs and execution counts from notebooks/")
    p.add_argument("--check", action="store_true", help="exit 1 if a notebook had outputs")
    p.set_defaults(func=_strip)
    sub.add_parser("test", help="run the test suite").set_defaults(
        func=lambda a: _run([sys.executable, "-m", "pytest", "-q"])
    )
    sub.add_parser("bench", help="run the benchmarks").set_defaults(
        func=lambda a: _run([sys.executable, "benchmarks/bench_backbones.py"])
    )
    sub.add_parser("lab", help="start JupyterLab").set_defaults(
        func=lambda a: _run([sys.executable, "-m", "jupyter", "lab"])
    )
    p = sub.add_parser(
        "rehearsal",
        help="dress rehearsal: notebooks 02-05 on the quick path, "
        "downloads served by a local mirror of the real hosts",
    )
    _rehearsal_arguments(p)
    args = parser.parse_args(argv)
    if args.command in {"report", "preflight"}:
        from . import report

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with report.filtered_stderr():  # TensorFlow's start-up lines, nothing else
            return args.func(args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""Build the report: preflight, papermill execution of every notebook, HTML + PDF rendering.

``build("smoke")`` is what ``make report PROFILE=smoke`` and ``vitwatch report --profile smoke``
run. Order of work:

1. the profile is validated and, for profiles that download, every needed resource is checked
   (cached or reachable) before any notebook starts (:func:`preflight`);
2. each notebook of ``notebooks/`` runs in order with papermill into
   ``reports/<profile>/executed/``; a notebook whose source, profile and package are unchanged
   since its last successful run is not run again (an interrupted build resumes; the notebooks'
   own caches resume within a notebook);
3. a failing notebook stops the build with the notebook and cell named; the previous good
   report stays in place;
4. the merged document is rendered to ``vitwatch-report.html`` and printed to
   ``vitwatch-report.pdf``, both written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import config

REPORT_NAME = "vitwatch-report"


class ReportError(RuntimeError):
    """The build stopped; the message says where and why."""


def notebooks(notebooks_dir: Path) -> list[Path]:
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ReportError(f"no notebooks (NN_name.ipynb) found in {notebooks_dir}")
    return found


def required_resources(cfg) -> list[str]:
    """Names of `downloads.RESOURCES` this profile needs, gathered from the loaders."""
    names: list[str] = []
    from .data import small, stanford_dogs
    from .models import registry

    for module in (stanford_dogs, registry, small):
        for name in module.required_resources(cfg):
            if name not in names:
                names.append(name)
    return names


def preflight(cfg) -> None:
    """Fail fast, before any long work, when a needed download is neither cached nor reachable."""
    from . import downloads

    names = required_resources(cfg)
    if names:
        print(f"preflight: checking {len(names)} downloads ({', '.join(names)})", flush=True)
        try:
            downloads.preflight(names, cfg.cache_dir, cfg.dogs_archives_dir or None)
        except downloads.DownloadError as exc:
            raise ReportError(f"profile {cfg.profile!r} cannot start: {exc}") from None


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _package_files() -> list[Path]:
    root = Path(__file__).parent
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".py", ".yaml", ".css", ".j2"}
                  and "__pycache__" not in p.parts)


def _papermill_logger(stream: bool):
    """papermill's logger: its expected 'unknown parameter' warnings dropped (profiles hold every
    notebook's parameters); with ``stream``, the notebooks' own output (progress bars with time
    left, per-epoch logs) is echoed to the terminal as it comes."""
    import logging

    log = logging.getLogger("papermill")
    if not any(isinstance(f, _DropUnknownParameter) for f in log.filters):
        log.addFilter(_DropUnknownParameter())
    handler = next((h for h in log.handlers if getattr(h, "_vitwatch", False)), None)
    if stream and handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        handler._vitwatch = True
        log.addHandler(handler)
    elif not stream and handler is not None:
        log.removeHandler(handler)
    log.setLevel(logging.INFO if stream else logging.WARNING)
    log.propagate = False
    return log


class _DropUnknownParameter:
    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith("Passed unknown parameter")


def execute(nb: Path, out: Path, parameters: dict, kernel: str = "python3", stream: bool = False) -> float:
    """Run one notebook with papermill; raise ReportError naming the notebook and cell on failure."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    _papermill_logger(stream)
    t0 = time.time()
    # the kernel inherits this environment: it must find the project and draw figures inline
    # (an MPLBACKEND=Agg set for scripts or tests would silently drop every figure)
    env = {"VITWATCH_ROOT": str(config.project_root()), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(str(nb), str(out), parameters=parameters, kernel_name=kernel,
                            cwd=str(nb.parent), progress_bar=sys.stderr.isatty() and not stream, log_output=stream,
                            request_save_on_cell_execute=True)
    except PapermillExecutionError as exc:
        raise ReportError(
            f"notebook {nb.name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}\n  executed copy with the traceback: {out}") from None
    except Exception as exc:  # kernel died, timeout, missing kernel...
        raise ReportError(f"notebook {nb.name} could not be executed: {type(exc).__name__}: {exc}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return time.time() - t0


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:
        return None


def build(profile: str = "smoke", notebooks_dir: str | Path | None = None, out_dir: str | Path | None = None,
          kernel: str = "python3", force: bool = False, pdf: bool = True, only: list[str] | None = None,
          stream: bool | None = None) -> dict:
    """Execute every notebook under ``profile`` and render the report; return a summary dict.

    ``stream``: echo the notebooks' output (progress bars, logs) to the terminal; by default on
    for the long profiles (everything but smoke).
    """
    from . import render

    root = config.project_root()
    nb_dir = Path(notebooks_dir or root / "notebooks")
    parameters = config.load_profile(profile, nb_dir / "profiles")
    cfg = config.from_profile(profile, nb_dir / "profiles")
    profile_name = cfg.profile
    out = Path(out_dir or root / "reports" / profile_name)
    executed_dir = out / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)

    preflight(cfg)

    books = notebooks(nb_dir)
    if only:
        books = [b for b in books if any(b.name.startswith(o) for o in only)]
    package_digest = _digest(_package_files())
    executed, timings = [], {}
    for i, nb in enumerate(books, 1):
        target = executed_dir / nb.name
        stamp = target.with_suffix(".key")
        key = _digest([nb], json.dumps(parameters, sort_keys=True) + package_digest)
        if not force and target.exists() and stamp.exists() and stamp.read_text() == key:
            print(f"[{i}/{len(books)}] {nb.name}: unchanged since its last successful run, reused", flush=True)
        else:
            stamp.unlink(missing_ok=True)
            print(f"[{i}/{len(books)}] {nb.name}: running ...", flush=True)
            seconds = execute(nb, target, parameters, kernel, stream=profile_name != "smoke" if stream is None else stream)
            stamp.write_text(key)
            timings[nb.name] = round(seconds, 1)
            print(f"[{i}/{len(books)}] {nb.name}: done in {seconds:.0f} s", flush=True)
        executed.append(target)

    print("rendering HTML ...", flush=True)
    merged = render.merge(executed)
    mathjax_url = render.copy_mathjax(out)
    machine = config.machine_summary()
    meta = render.title_meta(profile_name, machine, _git_commit(root))
    page, stats = render.finish_html(render.notebook_to_html(merged, mathjax_url), meta, smoke=profile_name == "smoke")
    if stats["unknown_citations"]:
        print(f"warning: citations missing from the bibliography: {stats['unknown_citations']}", flush=True)
    html_path = out / f"{REPORT_NAME}.html"
    tmp_html = out / f".{REPORT_NAME}.tmp.html"
    tmp_html.write_text(page, encoding="utf-8")
    result = {"profile": profile_name, "html": str(html_path), "timings": timings, **stats}
    if pdf:
        print("printing PDF with headless Chromium ...", flush=True)
        tmp_pdf = out / f".{REPORT_NAME}.tmp.pdf"
        try:
            render.html_to_pdf(tmp_html, tmp_pdf)
        except Exception as exc:
            tmp_html.unlink(missing_ok=True)
            raise ReportError(str(exc)) from None
        os.replace(tmp_pdf, out / f"{REPORT_NAME}.pdf")
        result["pdf"] = str(out / f"{REPORT_NAME}.pdf")
    os.replace(tmp_html, html_path)
    (out / "build.json").write_text(json.dumps(result, indent=2))
    print(f"report written: {html_path}" + (f" and {result['pdf']}" if pdf else ""), flush=True)
    return result

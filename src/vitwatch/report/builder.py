"""The build: :func:`build` runs the preflight, executes every notebook in order (a notebook
unchanged since its last successful run is reused), then renders the HTML and prints the PDF,
both written atomically; a failing notebook stops it with the previous good report in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from .. import config
from .errors import ReportError
from .kernel import execute
from .pdf import PdfUnavailable, find_chromium, html_to_pdf
from .resources import preflight

REPORT_NAME = "vitwatch-report"


def notebooks(notebooks_dir: Path) -> list[Path]:
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ReportError(f"no notebooks (NN_name.ipynb) found in {notebooks_dir}")
    return found


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _package_files() -> list[Path]:
    root = Path(__file__).parents[1]  # the vitwatch package
    suffixes = {".py", ".yaml", ".css", ".j2"}
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts
    )


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except Exception:
        return None


def build(
    profile: str = "smoke",
    notebooks_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    kernel: str = "python3",
    force: bool = False,
    pdf: bool = True,
    only: list[str] | None = None,
    stream: bool | None = None,
) -> dict:
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
    streaming = not cfg.stand_in if stream is None else stream
    previous = _previous_timings(out)
    if not cfg.stand_in:  # long work: the expected time first (issue 13)
        from .. import costs

        costs.print_runtime_plan(cfg, [b.name for b in books], previous)
    executed, timings = [], {}
    for i, nb in enumerate(books, 1):
        target = executed_dir / nb.name
        stamp = target.with_suffix(".key")
        key = _digest([nb], json.dumps(parameters, sort_keys=True) + package_digest)
        head = f"[{i}/{len(books)}] {nb.name}"
        if not force and target.exists() and stamp.exists() and stamp.read_text() == key:
            print(f"{head}: unchanged since its last successful run, reused", flush=True)
        else:
            stamp.unlink(missing_ok=True)
            # one line per notebook; with the notebooks' own output echoed, a line before too
            print(
                f"{head}: running ..." if streaming else f"{head} ...",
                end="\n" if streaming else " ",
                flush=True,
            )
            seconds = execute(nb, target, parameters, kernel, stream=streaming)
            stamp.write_text(key)
            timings[nb.name] = round(seconds, 1)
            left = "" if cfg.stand_in else _time_left([b.name for b in books[i:]], previous)
            print(
                f"{head}: done in {_duration(seconds)}{left}"
                if streaming
                else f"done in {_duration(seconds)}{left}",
                flush=True,
            )
        executed.append(target)

    print("rendering HTML ...", flush=True)
    merged = render.merge(executed)
    mathjax_url = render.copy_mathjax(out)
    machine = config.machine_summary()
    meta = render.title_meta(profile_name, machine, _git_commit(root))
    page, stats = render.finish_html(
        render.notebook_to_html(merged, mathjax_url), meta, smoke=cfg.stand_in
    )
    if stats["unknown_citations"]:
        print(
            f"warning: citations missing from the bibliography: {stats['unknown_citations']}",
            flush=True,
        )
    html_path = out / f"{REPORT_NAME}.html"
    pdf_path = out / f"{REPORT_NAME}.pdf"
    tmp_html = out / f".{REPORT_NAME}.tmp.html"
    tmp_html.write_text(page, encoding="utf-8")
    result = {
        "profile": profile_name,
        "html": str(html_path),
        "timings": timings,
        "last_timings": {**previous, **timings},
        **stats,
    }
    if pdf:
        tmp_pdf = out / f".{REPORT_NAME}.tmp.pdf"
        try:
            browser = find_chromium(log=lambda m: print(m, flush=True))
            print(f"printing PDF with headless Chromium ({browser}) ...", flush=True)
            html_to_pdf(tmp_html, tmp_pdf, chromium=browser)
        except PdfUnavailable as exc:
            # the HTML is complete: keep it, drop a PDF of an older build, say what adds the PDF
            pdf_path.unlink(missing_ok=True)
            result.update(pdf=None, pdf_missing=exc.reason, pdf_command=exc.command)
        except Exception as exc:
            tmp_html.unlink(missing_ok=True)
            raise ReportError(str(exc)) from None
        else:
            os.replace(tmp_pdf, pdf_path)
            result["pdf"] = str(pdf_path)
    os.replace(tmp_html, html_path)
    (out / "build.json").write_text(json.dumps(result, indent=2))
    if result.get("pdf"):
        print(f"report written: {html_path} and {result['pdf']}", flush=True)
    elif pdf:
        print(
            f"report written: {html_path} (HTML only)\n{result['pdf_missing']}\n"
            f"  To add the PDF, run: {result['pdf_command']}\n"
            f"  then run the same report command again: the notebooks are not rerun "
            f"(exit status {EXIT_NO_PDF}: HTML only)",
            flush=True,
        )
    else:
        print(f"report written: {html_path}", flush=True)
    return result


EXIT_NO_PDF = 3  # `vitwatch report` / `make report`: the HTML was written, the PDF was not


def _previous_timings(out: Path) -> dict[str, float]:
    """Seconds each notebook took in the last build in ``out`` (build.json), {} if none."""
    try:
        old = json.loads((out / "build.json").read_text())
    except (OSError, ValueError):
        return {}
    merged = {**old.get("timings", {}), **old.get("last_timings", {})}
    return {k: float(v) for k, v in merged.items()}


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _time_left(remaining: list[str], previous: dict[str, float]) -> str:
    """ ", about 1.2 h left (last run)" from the previous build's timings of ``remaining``."""
    if not remaining:
        return ""
    known = [previous[n] for n in remaining if n in previous]
    if len(known) < len(remaining):
        return f"; {len(remaining)} notebook{'s' if len(remaining) > 1 else ''} left"
    return f"; about {_duration(sum(known))} left (timings of the last run)"

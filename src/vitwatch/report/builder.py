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

# What each chapter reads from another: a notebook starts once those it is listed after have
# finished. 04 and 06 read 03's results; the others read nothing another notebook writes (02
# and 03 load the same data set and ViT checkpoint, but one process at a time makes a
# download, the other waiting for it: vitwatch.downloads.fetch). A notebook not listed here (a
# new chapter) runs after every notebook before it.
AFTER = {"00": (), "01": (), "02": (), "03": (), "04": ("03",), "05": (), "06": ("03",)}
# Rough share of a report's time per chapter (smoke and quick alike), for the order in which
# notebooks free to start are started: the longest chain of work first (03 then 04), then the
# heaviest, so that the other kernel is not left alone with a long notebook at the end.
WEIGHT = {"00": 1, "01": 2, "02": 1, "03": 10, "04": 3, "05": 7, "06": 2}
# When notebooks run at once, those of the longest chain of work (03 then 04) run at normal
# priority and the others at this niceness: they take what the chain leaves idle (its
# single-threaded stretches) instead of half its cores, so the chain that sets the report's
# time is not slowed.
BACKGROUND_NICENESS = 10


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
    jobs: int | None = None,
) -> dict:
    """Execute every notebook under ``profile`` and render the report; return a summary dict.

    ``stream``: echo the notebooks' output (progress bars, logs) to the terminal; by default on
    for the long profiles (everything but smoke). ``jobs``: notebooks run at once, each in its
    own kernel, in the order :data:`AFTER` allows (default :func:`default_jobs`).
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
    jobs = jobs or default_jobs()
    if not cfg.stand_in:  # long work: the expected time first (issue 13)
        from .. import costs

        costs.print_runtime_plan(cfg, [b.name for b in books], previous, jobs=jobs)
    timings = run_notebooks(
        books,
        executed_dir,
        parameters,
        package_digest,
        kernel,
        force=force,
        streaming=streaming,
        jobs=jobs,
        previous=None if cfg.stand_in else previous,
    )
    executed = [executed_dir / nb.name for nb in books]

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


def default_jobs() -> int:
    """Notebooks at once: 2 (one kernel's imports, tracing and figures are mostly one core's
    work, so a second kernel fills the other), 1 on a one-core machine."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def waits_for(prefixes: list[str]) -> dict[str, set[str]]:
    """{prefix: the prefixes among ``prefixes`` (in notebook order) it must wait for}
    (:data:`AFTER`; an unlisted notebook waits for every one before it)."""
    return {
        p: {q for q in AFTER[p] if q in prefixes} if p in AFTER else set(prefixes[:i])
        for i, p in enumerate(prefixes)
    }


def prerequisites(books: list[Path]) -> dict[str, set[str]]:
    """{notebook name: names of the notebooks of ``books`` it must wait for}
    (:func:`waits_for` on their number prefixes)."""
    name = {nb.name[:2]: nb.name for nb in books}
    return {name[p]: {name[q] for q in w} for p, w in waits_for(list(name)).items()}


def chain_weights(waits_for: dict[str, set[str]]) -> dict[str, float]:
    """{notebook name: its :data:`WEIGHT` plus the heaviest chain of notebooks waiting for it}
    (critical-path priority; an unknown chapter weighs 1)."""
    out: dict[str, float] = {}

    def chain(n: str) -> float:
        if n not in out:
            after = [m for m, w in waits_for.items() if n in w]
            out[n] = WEIGHT.get(n[:2], 1) + max((chain(m) for m in after), default=0)
        return out[n]

    for n in waits_for:
        chain(n)
    return out


def critical_chain(waits_for: dict[str, set[str]], priority: dict[str, float]) -> list[str]:
    """The notebooks of the longest chain of work (``priority``: :func:`chain_weights`): the
    heaviest notebook that waits for none, then at each step the heaviest that waits for it."""
    chain: list[str] = []
    free = [n for n, w in waits_for.items() if not w]
    while free:
        chain.append(max(free, key=lambda n: (priority[n], n)))
        free = [m for m, w in waits_for.items() if chain[-1] in w]
    return chain


def background_niceness(name: str, critical: list[str], parallel: bool) -> int:
    """The niceness of notebook ``name``: 0 on the ``critical`` chain (:func:`critical_chain`)
    or when notebooks run one at a time, else :data:`BACKGROUND_NICENESS`."""
    return 0 if not parallel or name in critical else BACKGROUND_NICENESS


def run_notebooks(
    books: list[Path],
    executed_dir: Path,
    parameters: dict,
    package_digest: str,
    kernel: str,
    force: bool,
    streaming: bool,
    jobs: int,
    previous: dict | None,
) -> dict[str, float]:
    """Execute ``books`` (``jobs`` at a time, each once its prerequisites are done; a notebook
    unchanged since its last successful run is reused); {name: seconds} of those executed.
    The first failure stops new starts, lets running notebooks finish, and is raised."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    waits_for = prerequisites(books)
    priority = chain_weights(waits_for)  # the longest chain of work first, then in order
    critical = critical_chain(waits_for, priority)  # at normal priority, the others niced
    index = {nb.name: i for i, nb in enumerate(books, 1)}
    todo, done, timings = [nb for nb in books], set(), {}
    head = lambda nb: f"[{index[nb.name]}/{len(books)}] {nb.name}"  # noqa: E731
    parallel = jobs > 1

    def one(nb: Path) -> float | None:
        target = executed_dir / nb.name
        stamp = target.with_suffix(".key")
        key = _digest([nb], json.dumps(parameters, sort_keys=True) + package_digest)
        if not force and target.exists() and stamp.exists() and stamp.read_text() == key:
            print(f"{head(nb)}: unchanged since its last successful run, reused", flush=True)
            return None
        stamp.unlink(missing_ok=True)
        if streaming or parallel:  # one line per event when several run or output is echoed
            print(f"{head(nb)}: running ...", flush=True)
        else:
            print(f"{head(nb)} ...", end=" ", flush=True)
        niceness = background_niceness(nb.name, critical, parallel)
        seconds = execute(nb, target, parameters, kernel, stream=streaming, niceness=niceness)
        stamp.write_text(key)
        return seconds

    error = None
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="notebook") as pool:
        running = {}
        while todo or running:
            ready = [nb for nb in todo if waits_for[nb.name] <= done]
            ready.sort(key=lambda nb: (-priority[nb.name], index[nb.name]))
            while error is None and ready and len(running) < max(1, jobs):
                nb = ready.pop(0)
                todo.remove(nb)
                running[pool.submit(one, nb)] = nb
            if not running:
                break  # after a failure: nothing runs, nothing more starts
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                nb = running.pop(future)
                try:
                    seconds = future.result()
                except Exception as exc:  # noqa: BLE001 (re-raised below, first one wins)
                    error = error or exc
                    continue
                done.add(nb.name)
                if seconds is None:
                    continue
                timings[nb.name] = round(seconds, 1)
                remaining = [b.name for b in todo] + [n.name for n in running.values()]
                left = "" if previous is None else _time_left(remaining, previous)
                line = f"done in {_duration(seconds)}{left}"
                print(f"{head(nb)}: {line}" if streaming or parallel else line, flush=True)
    if error is not None:
        raise error
    return timings


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

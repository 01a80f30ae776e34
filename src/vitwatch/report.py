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

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
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
    from .data import imagenet_overlap, small, stanford_dogs
    from .models import registry

    for module in (stanford_dogs, registry, small, imagenet_overlap):
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
            status = downloads.preflight(names, cfg.cache_dir, cfg.dogs_archives_dir or None)
        except downloads.DownloadError as exc:
            raise ReportError(f"profile {cfg.profile!r} cannot start: {exc}") from None
        for name, state in status.items():
            optional = state not in ("cached", "reachable") and downloads.RESOURCES[name].optional
            print(
                f"  {name}: {state}"
                + (
                    "; optional: Kaggle Models is tried next, else the report goes on without it"
                    if optional
                    else ""
                ),
                flush=True,
            )


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _package_files() -> list[Path]:
    root = Path(__file__).parent
    suffixes = {".py", ".yaml", ".css", ".j2"}
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts
    )


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
    """Drops papermill's expected warnings, and TensorFlow start-up lines from echoed output."""

    def filter(self, record) -> bool:
        message = str(record.getMessage())
        if message.startswith("Passed unknown parameter"):
            return False
        lines = message.splitlines(keepends=True)
        kept = [line for line in lines if not is_startup_noise(line)]
        if len(kept) != len(lines):
            if not "".join(kept).strip():
                return False
            record.msg, record.args = "".join(kept).rstrip("\n"), None
        return True


def _quiet_kernel_manager():
    """A kernel manager that starts kernels without start-up and shutdown noise, at its source.

    - IPC transport (POSIX): ipykernel warns "Kernel is running over TCP without encryption"
      for every TCP kernel; a kernel on local Unix sockets has nothing to warn about.
    - No SIGINT before the shutdown request: jupyter_client interrupts every kernel it shuts
      down, which makes ipykernel log "KeyboardInterrupt caught in kernel" after a notebook
      that ended normally. A cell that times out is still interrupted (nbclient does it).
    """
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            if os.name == "posix":
                kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)
            self._vw_shutting_down = False

        async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False):
            self._vw_shutting_down = True
            try:
                await super()._async_shutdown_kernel(now=now, restart=restart)
            finally:
                self._vw_shutting_down = False

        async def _async_interrupt_kernel(self):
            if not self._vw_shutting_down:
                await super()._async_interrupt_kernel()

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            # ipykernel echoes everything written to the kernel's file descriptor 2 (C libraries
            # included) to the terminal: pass it through a filter of start-up lines.
            if kw.get("stderr") is not None:
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            read_fd, write_fd = os.pipe()
            kw["stderr"] = write_fd
            try:
                await super()._async_launch_kernel(kernel_cmd, **kw)
            finally:
                os.close(write_fd)
            threading.Thread(
                target=filter_stream,
                args=(read_fd, sys.stderr),
                daemon=True,
                name="vitwatch-kernel-stderr",
            ).start()

    return QuietKernelManager


# TensorFlow/absl start-up lines of a kernel, written before absl::InitializeLog (so that
# TF_CPP_MIN_LOG_LEVEL cannot silence them): "I0000 00:00:17.. 8721 cudart_stub.cc:31] ...",
# and absl's own notice. Errors and fatal lines (E..., F...) and everything else pass.
_STARTUP_NOISE = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] .*"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    r"compiler flags\.)$"
)


# "failed call to cuInit: ... UNKNOWN ERROR (303)": TensorFlow's CUDA build looking for a GPU on
# a machine that has none. Noise there; on a machine with an NVIDIA device, a real error.
_CUINIT = re.compile(r"^E\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] failed call to cuInit")


def nvidia_device_present() -> bool:
    """True when this machine shows an NVIDIA GPU (device node or ``nvidia-smi``)."""
    import shutil

    return (
        Path("/dev/nvidia0").exists()
        or Path("/dev/nvidiactl").exists()
        or shutil.which("nvidia-smi") is not None
    )


def is_startup_noise(line: str) -> bool:
    """True for a TensorFlow/absl start-up info or warning line that nobody can act on (and the
    CUDA probe's error on a machine without an NVIDIA GPU)."""
    line = line.rstrip("\r\n")
    if _STARTUP_NOISE.match(line):
        return True
    return bool(_CUINIT.match(line)) and not nvidia_device_present()


@contextlib.contextmanager
def filtered_stderr():
    """Route this process's file descriptor 2 through :func:`filter_stream` while the block
    runs: importing TensorFlow (the CLI does, to list a profile's downloads) prints start-up
    lines before absl's logging is initialised, which no environment variable silences.
    Everything else written to stderr, Python's tracebacks included, passes unchanged."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    out = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    worker = threading.Thread(
        target=filter_stream, args=(read_fd, out), daemon=True, name="vitwatch-stderr"
    )
    worker.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the worker sees EOF
        os.close(saved)
        worker.join(timeout=5)
        out.close()


def filter_stream(read_fd: int, out) -> None:
    """Copy lines from file descriptor ``read_fd`` to text stream ``out``, dropping start-up
    noise (:func:`is_startup_noise`); returns at end of file (the kernel exited)."""
    with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as src:
        for line in src:
            if not is_startup_noise(line):
                out.write(line)
                out.flush()


def kernel_environment() -> dict[str, str]:
    """Environment variables the notebooks' kernels get on top of this process's.

    The kernel must find the project and draw figures inline (an ``MPLBACKEND=Agg`` set for
    scripts or tests would silently drop every figure). TensorFlow's C++ start-up lines
    (``cudart_stub``, ``cuInit``, ``cpu_feature_guard``, oneDNN) are silenced with
    ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user asked for them (0 or 1); on a machine with an
    NVIDIA GPU the level is 2, so that its errors show. ``CUDA_VISIBLE_DEVICES`` is left
    alone (a GPU stays visible), and Python errors still reach the notebook.
    """
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
    quiet = "3" if not nvidia_device_present() else "2"  # with a GPU, its errors show
    return {
        "VITWATCH_ROOT": str(config.project_root()),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "TF_CPP_MIN_LOG_LEVEL": level if level in {"0", "1"} else quiet,
    }


def execute(
    nb: Path, out: Path, parameters: dict, kernel: str = "python3", stream: bool = False
) -> float:
    """Run one notebook with papermill; raise ReportError naming the notebook and cell on
    failure."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    _papermill_logger(stream)
    t0 = time.time()
    env = kernel_environment()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pm.execute_notebook(
            str(nb),
            str(out),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(nb.parent),
            progress_bar=False,
            log_output=stream,
            request_save_on_cell_execute=True,
            kernel_manager_class=_quiet_kernel_manager(),
        )
    except PapermillExecutionError as exc:
        raise ReportError(
            f"notebook {nb.name} failed in cell {exc.cell_index} "
            f"(execution count {exc.exec_count}): "
            f"{exc.ename}: {exc.evalue}\n  executed copy with the traceback: {out}"
        ) from None
    except Exception as exc:  # kernel died, timeout, missing kernel...
        raise ReportError(
            f"notebook {nb.name} could not be executed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return time.time() - t0


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
    streaming = profile_name != "smoke" if stream is None else stream
    previous = _previous_timings(out)
    if profile_name != "smoke":  # long work: the expected time first (issue 13)
        from . import costs

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
            left = (
                "" if profile_name == "smoke" else _time_left([b.name for b in books[i:]], previous)
            )
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
        render.notebook_to_html(merged, mathjax_url), meta, smoke=profile_name == "smoke"
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
            browser = render.find_chromium(log=lambda m: print(m, flush=True))
            print(f"printing PDF with headless Chromium ({browser}) ...", flush=True)
            render.html_to_pdf(tmp_html, tmp_pdf, chromium=browser)
        except render.PdfUnavailable as exc:
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

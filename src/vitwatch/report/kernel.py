"""One notebook executed by papermill in a quiet kernel: :func:`execute`.

The kernel gets :func:`kernel_environment`; it starts without start-up and shutdown noise
(:func:`_quiet_kernel_manager`), and its stderr passes through :func:`noise.filter_stream`;
papermill's expected warnings are dropped and, when asked, the notebook's output is echoed to
the terminal as it comes (:func:`_papermill_logger`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .. import config
from . import noise
from .errors import ReportError


class _EchoHandler(logging.StreamHandler):
    """papermill's handler that echoes the notebooks' output to the terminal (added once)."""


def _papermill_logger(stream: bool):
    """papermill's logger: its expected 'unknown parameter' warnings dropped (profiles hold every
    notebook's parameters); with ``stream``, the notebooks' own output (progress bars with time
    left, per-epoch logs) is echoed to the terminal as it comes."""
    log = logging.getLogger("papermill")
    if not any(isinstance(f, _DropUnknownParameter) for f in log.filters):
        log.addFilter(_DropUnknownParameter())
    handler = next((h for h in log.handlers if isinstance(h, _EchoHandler)), None)
    if stream and handler is None:
        handler = _EchoHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("    %(message)s"))
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
        kept = [line for line in lines if not noise.is_startup_noise(line)]
        if len(kept) != len(lines):
            if not "".join(kept).strip():
                return False
            record.msg, record.args = "".join(kept).rstrip("\n"), None
        return True


def _quiet_kernel_manager(niceness: int = 0):
    """A kernel manager that starts kernels without start-up and shutdown noise, at its source,
    at scheduling priority ``niceness`` (POSIX ``nice``; 0: unchanged).

    - IPC transport (POSIX): ipykernel warns "Kernel is running over TCP without encryption"
      for every TCP kernel; a kernel on local Unix sockets has nothing to warn about. Each
      kernel's sockets get a path of their own (by default they are ``kernel-ipc-<n>`` in the
      working directory, which two kernels starting at once would both pick).
    - No SIGINT before the shutdown request: jupyter_client interrupts every kernel it shuts
      down, which makes ipykernel log "KeyboardInterrupt caught in kernel" after a notebook
      that ended normally. A cell that times out is still interrupted (nbclient does it).
    """
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            if os.name == "posix":
                kwargs.setdefault("transport", "ipc")
                unique = f"vitwatch-kernel-{os.getpid()}-{uuid.uuid4().hex[:12]}"
                kwargs.setdefault("ip", os.path.join(tempfile.gettempdir(), unique))
            super().__init__(**kwargs)
            self._vw_shutting_down = False

        async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False):
            self._vw_shutting_down = True
            try:
                await super()._async_shutdown_kernel(now=now, restart=restart)
            finally:
                self._vw_shutting_down = False

        # AsyncKernelManager.shutdown_kernel is the base class's function object, bound when
        # jupyter_client defines the class: without this, nbclient's km.shutdown_kernel()
        # bypasses the override above and SIGINTs every kernel it shuts down.
        shutdown_kernel = _async_shutdown_kernel

        async def _async_interrupt_kernel(self):
            if not self._vw_shutting_down:
                await super()._async_interrupt_kernel()

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kernel_cmd = niced(kernel_cmd, niceness)
            # the kernel's own environment, not this process's: notebooks may run at once
            kw["env"] = {**(kw.get("env") or os.environ), **kernel_environment()}
            # ipykernel echoes everything written to the kernel's file descriptor 2 (C libraries
            # included) to the terminal: pass it through a filter of start-up lines.
            if kw.get("stderr") is not None:
                await super()._async_launch_kernel(kernel_cmd, **kw)
            else:
                read_fd, write_fd = os.pipe()
                kw["stderr"] = write_fd
                try:
                    await super()._async_launch_kernel(kernel_cmd, **kw)
                finally:
                    os.close(write_fd)
                threading.Thread(
                    target=noise.filter_stream,
                    args=(read_fd, sys.stderr),
                    daemon=True,
                    name="vitwatch-kernel-stderr",
                ).start()
            group_niceness(getattr(self.provisioner, "pid", None), niceness)

    return QuietKernelManager


def niced(cmd: list[str], niceness: int) -> list[str]:
    """``cmd`` run at scheduling priority ``niceness`` (``nice -n``) where the ``nice`` program
    exists (POSIX), else as it is. Every thread of the process inherits it (``setpriority`` on
    a running process reaches only its main thread on Linux)."""
    import shutil

    if not niceness or os.name != "posix" or shutil.which("nice") is None:
        return list(cmd)
    return ["nice", "-n", str(int(niceness)), *cmd]


def group_niceness(pid: int | None, niceness: int) -> bool:
    """Give the scheduling group of process ``pid`` the niceness ``niceness``; whether it was
    set. A kernel starts a session of its own, and where Linux groups each session's processes
    (``/proc/sys/kernel/sched_autogroup_enabled``), groups share the CPU equally whatever the
    niceness of the processes inside: the group's own niceness (``/proc/PID/autogroup``) is
    what gives way to the other kernel. Nothing to do (False) elsewhere."""
    path = Path(f"/proc/{pid}/autogroup")
    if not niceness or pid is None or not path.exists():
        return False
    try:
        path.write_text(str(int(niceness)))
    except OSError:
        return False
    return True


def kernel_environment() -> dict[str, str]:
    """Environment variables the notebooks' kernels get on top of this process's.

    The kernel must find the project and draw figures inline (an ``MPLBACKEND=Agg`` set for
    scripts or tests would silently drop every figure). TensorFlow's C++ start-up lines
    (``cudart_stub``, ``cuInit``, ``cpu_feature_guard``, oneDNN) are silenced with
    ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user asked for them (0 or 1); on a machine with an
    NVIDIA GPU the level is 2, so that its errors show. ``CUDA_VISIBLE_DEVICES`` is left
    alone (a GPU stays visible), and Python errors still reach the notebook. Notebooks may run
    at once (:func:`vitwatch.report.build`'s ``jobs``): on a GPU each kernel takes memory as it
    needs it (``TF_FORCE_GPU_ALLOW_GROWTH=true``, unless set) instead of TensorFlow's default
    of nearly all of it, which would leave none for the second one.
    """
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
    gpu = noise.nvidia_device_present()
    env = {
        "VITWATCH_ROOT": str(config.project_root()),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "TF_CPP_MIN_LOG_LEVEL": level if level in {"0", "1"} else ("2" if gpu else "3"),
    }
    if gpu:  # with a GPU, its errors show (level 2) and memory grows as needed
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return env


def execute(
    nb: Path,
    out: Path,
    parameters: dict,
    kernel: str = "python3",
    stream: bool = False,
    niceness: int = 0,
) -> float:
    """Run one notebook with papermill (its kernel at priority ``niceness``); raise ReportError
    naming the notebook and cell on failure."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    _papermill_logger(stream)
    t0 = time.time()
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
            kernel_manager_class=_quiet_kernel_manager(niceness),
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
    return time.time() - t0

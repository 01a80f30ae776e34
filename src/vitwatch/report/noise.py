"""TensorFlow's start-up lines filtered out of the terminal, real errors kept.

:func:`is_startup_noise` decides line by line; :func:`filter_stream` copies a file descriptor's
lines without the noise (the kernels' stderr, see :mod:`vitwatch.report.kernel`);
:func:`filtered_stderr` routes this process's own stderr through it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from pathlib import Path

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

"""The HTML report printed to PDF by a headless Chrome/Chromium: the system's (Debian's
``chromium`` in CI), else Playwright's, downloaded on first use (:func:`find_chromium`); without
one, :class:`PdfUnavailable` names the one command that adds the PDF.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Browser discovery, in order: a Chrome/Chromium on the PATH or at a usual install location;
# Playwright's own Chromium (downloaded for the user when missing and the network allows);
# otherwise no PDF, and one message saying which command adds it (:class:`PdfUnavailable`).
CHROMIUM_CANDIDATES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "microsoft-edge",
    "msedge",
)
CHROMIUM_PATHS = (
    "/usr/bin/chromium",
    "/usr/lib/chromium/chromium",
    "/snap/bin/chromium",
    "/opt/google/chrome/chrome",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
)
PLAYWRIGHT_INSTALL_TIMEOUT = 300  # s; offline, the download fails in seconds anyway
NO_DOWNLOAD_ENV = "VITWATCH_NO_BROWSER_DOWNLOAD"  # set to 1: never download a browser


class PdfUnavailable(RuntimeError):
    """No browser could print the PDF; ``command`` is the one command that adds it."""

    def __init__(self, reason: str, command: str):
        super().__init__(f"{reason}\n  To add the PDF, run: {command}")
        self.reason, self.command = reason, command


def system_chromium() -> str | None:
    """A Chrome/Chromium found on the PATH or at a usual install location, or None."""
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return next((p for p in CHROMIUM_PATHS if Path(p).is_file()), None)


def playwright_chromium(timeout: float = 60) -> str | None:
    """The Chromium that Playwright installed (``python -m playwright install chromium``), or
    None when Playwright is missing or its browser is not downloaded. Asked in a subprocess
    (Playwright starts a Node driver) bounded by ``timeout``."""
    code = (
        "from playwright.sync_api import sync_playwright\n"
        "with sync_playwright() as p:\n    print(p.chromium.executable_path)"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    return path if path and Path(path).is_file() else None


def install_playwright_chromium(timeout: float = PLAYWRIGHT_INSTALL_TIMEOUT) -> tuple[bool, str]:
    """Run ``python -m playwright install chromium``; ``(ok, reason)``. Bounded by ``timeout``
    so that an offline or firewalled machine fails fast."""
    if importlib.util.find_spec("playwright") is None:
        return False, "the playwright package is not installed"
    cmd = [sys.executable, "-m", "playwright", "install", "chromium"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"`python {' '.join(cmd[1:])}` did not finish within {timeout:.0f} s"
    except OSError as exc:
        return False, f"`python {' '.join(cmd[1:])}` could not start: {exc}"
    if out.returncode != 0:
        why = install_error_summary(out.stderr or out.stdout)
        return False, f"`python {' '.join(cmd[1:])}` failed (exit {out.returncode}): {why}"
    return True, ""


def install_error_summary(text: str) -> str:
    """The telling line of Playwright's installer output: its last ``Error: ...`` line (e.g.
    ``Error: getaddrinfo ENOTFOUND cdn.playwright.dev`` offline), else its last line of text."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    words = [line for line in lines if any(c.isalnum() for c in line)]
    return ((errors or words or ["no message"])[-1])[:300]


def pdf_command() -> str:
    """The one command that gives this machine a browser for the PDF."""
    if shutil.which("apt-get"):
        return "sudo apt-get install -y chromium"
    if sys.platform == "darwin" and shutil.which("brew"):
        return "brew install --cask chromium"
    return f"{Path(sys.executable).name} -m playwright install chromium"


def find_chromium(download: bool | None = None, log=print) -> str:
    """Path of a browser that can print the PDF, downloading Playwright's Chromium if needed.

    ``download``: allow ``python -m playwright install chromium`` (default: unless the
    environment sets ``VITWATCH_NO_BROWSER_DOWNLOAD=1``). Raises :class:`PdfUnavailable`
    naming the one command that adds the PDF.
    """
    path = system_chromium() or playwright_chromium()
    if path:
        return path
    if download is None:
        download = os.environ.get(NO_DOWNLOAD_ENV, "") not in {"1", "true", "yes"}
    reason = "no Chrome/Chromium on this machine"
    if download:
        log("no Chrome/Chromium found: downloading Playwright's Chromium (about 150 MB, once) ...")
        ok, why = install_playwright_chromium()
        path = playwright_chromium() if ok else None
        if path:
            return path
        why = why or "browser not found after install"
        reason += f", and Playwright's could not be installed ({why})"
    else:
        reason += f" ({NO_DOWNLOAD_ENV} forbids downloading Playwright's)"
    raise PdfUnavailable(f"PDF not written: {reason}.", pdf_command())


def html_to_pdf(
    html_path: Path, pdf_path: Path, timeout: int = 300, chromium: str | None = None
) -> None:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium (MathJax given time to
    typeset)."""
    chromium = chromium or find_chromium()
    with tempfile.TemporaryDirectory(prefix="vitwatch-chromium-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=60000",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        raise RuntimeError(
            f"Chromium could not print {html_path} to PDF (exit {proc.returncode}):\n"
            f"{proc.stderr[-2000:]}"
        )

"""Executed notebooks -> one HTML report and one PDF report.

The notebooks are merged in order into one document; nbconvert's lab template (overridden to load
nothing from the network: MathJax 2.7 is copied next to the HTML from ``jupyter-server-mathjax``)
renders it; the HTML is then finished with BeautifulSoup: title page, smoke banner, numbered
chapters and sections, table of contents, numbered figure and table captions, citation links and
the bibliography. The PDF is the HTML printed by a headless Chrome/Chromium: the system's
(Debian's ``chromium`` in CI), else Playwright's, downloaded on first use (:func:`find_chromium`).
"""

from __future__ import annotations

import copy
import datetime as _dt
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import yaml
from bs4 import BeautifulSoup

ASSETS = Path(__file__).parent / "assets"
REMOVE_CELL_TAGS = {"remove-cell", "injected-parameters", "parameters"}
REMOVE_INPUT_TAGS = {"hide-input"}
REMOVE_OUTPUT_TAGS = {"remove-output"}
MATHJAX_PARTS = ("MathJax.js", "config", "extensions", "jax", "fonts", "LICENSE")
_CITE = re.compile(r"\[((?:[^\[\]]+?,\s*\d{4}[a-z]?)(?:;\s*[^\[\]]+?,\s*\d{4}[a-z]?)*)\]")

SMOKE_BANNER = (
    "<strong>Smoke profile: synthetic data, tiny random models.</strong> This document was "
    "produced offline by the <code>smoke</code> profile, which exercises every code path in "
    "minutes. Its images are generated, its models are untrained or tiny, and <strong>every "
    "number, table and "
    "figure in it is meaningless</strong> as a result about Vision Transformers. Run "
    "<code>make report</code> (profile <code>full</code>) for the real experiment."
)


# ----------------------------------------------------------------------------- merge
def merge(executed: list[Path]) -> nbformat.NotebookNode:
    """One notebook with the report's cells of every executed notebook, in order."""
    merged = nbformat.v4.new_notebook()
    merged.cells.append(nbformat.v4.new_markdown_cell('<div id="vw-front"></div>'))
    for path in executed:
        nb = nbformat.read(str(path), as_version=4)
        if not merged.metadata:
            merged.metadata = copy.deepcopy(nb.metadata)
        for key in ("kernelspec", "language_info"):
            if key in nb.metadata and key not in merged.metadata:
                merged.metadata[key] = copy.deepcopy(nb.metadata[key])
        for cell in nb.cells:
            tags = set(cell.get("metadata", {}).get("tags", []))
            if tags & REMOVE_CELL_TAGS:
                continue
            cell = copy.deepcopy(cell)
            if cell.cell_type == "code":
                if tags & REMOVE_INPUT_TAGS:
                    cell.source = ""
                    cell.metadata["vw_hidden_input"] = True
                if tags & REMOVE_OUTPUT_TAGS:
                    cell.outputs = []
                # progress bars and library warnings (stderr) are for the terminal, not the reader
                cell.outputs = [
                    o
                    for o in cell.outputs
                    if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                ]
                if not cell.source and not cell.outputs:
                    continue
            merged.cells.append(cell)
    merged.cells.append(nbformat.v4.new_markdown_cell('<div id="vw-bibliography"></div>'))
    return merged


# ----------------------------------------------------------------------------- html
def notebook_to_html(nb: nbformat.NotebookNode, mathjax_url: str) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_template_paths=[str(ASSETS / "template")],
        template_file="vitwatch.html.j2",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    exporter.mathjax_url = mathjax_url
    resources = {"vitwatch_css": (ASSETS / "report.css").read_text(), "mathjax_url": mathjax_url}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    # cells whose code is hidden keep an empty input area: drop it
    soup = BeautifulSoup(body, "html.parser")
    for area in soup.select(".jp-CodeCell .jp-Cell-inputWrapper"):
        code = area.get_text("", strip=True)
        if not code:
            area.decompose()
    return str(soup)


def copy_mathjax(out_dir: Path) -> str:
    """Copy MathJax 2.7 next to the report; return the relative URL to load it."""
    import jupyter_server_mathjax

    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    dst = out_dir / "mathjax"
    if not (dst / "MathJax.js").exists():
        dst.mkdir(parents=True, exist_ok=True)
        for part in MATHJAX_PARTS:
            s = src / part
            if s.is_dir():
                shutil.copytree(s, dst / part, dirs_exist_ok=True)
            elif s.exists():
                shutil.copy2(s, dst / part)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"


def load_bibliography() -> list[dict]:
    return yaml.safe_load((ASSETS / "bibliography.yaml").read_text())


def finish_html(page: str, meta: dict, smoke: bool) -> tuple[str, dict]:
    """Title page, numbering, TOC, captions, citations, bibliography. Returns (html, stats)."""
    soup = BeautifulSoup(page, "html.parser")
    if soup.title:
        soup.title.string = meta.get("title", "vitwatch report")
    chapters, toc = _number_sections(soup)
    n_fig, n_tab = _number_captions(soup)
    cited, unknown = _link_citations(soup, {e["key"]: e for e in load_bibliography()})
    _insert_front(soup, meta, smoke, toc)
    _insert_bibliography(soup, cited)
    stats = {
        "chapters": chapters,
        "figures": n_fig,
        "tables": n_tab,
        "citations": sorted(cited),
        "unknown_citations": sorted(unknown),
    }
    return str(soup), stats


def _number_sections(soup) -> tuple[list[str], list[tuple[str, str, str, int]]]:
    counters = [0, 0, 0]
    chapters, toc = [], []
    for h in soup.select(
        ".jp-RenderedHTMLCommon h1, .jp-RenderedHTMLCommon h2, .jp-RenderedHTMLCommon h3"
    ):
        level = int(h.name[1]) - 1
        if level == 0:
            counters = [counters[0] + 1, 0, 0]
        elif counters[0] == 0:
            continue
        else:
            counters[level] += 1
            for i in range(level + 1, 3):
                counters[i] = 0
        num = ".".join(str(c) for c in counters[: level + 1])
        for a in h.select("a.anchor-link"):
            a.decompose()
        title = h.get_text(" ", strip=True)
        anchor = f"sec-{num.replace('.', '-')}"
        h["id"] = anchor
        span = soup.new_tag("span", attrs={"class": "vw-secnum"})
        span.string = num
        h.insert(0, span)
        if level == 0:
            chapters.append(title)
        toc.append((num, title, anchor, level))
    return chapters, toc


def _number_captions(soup) -> tuple[int, int]:
    counts = {"Figure": 0, "Table": 0}
    chapter = 0
    per_chapter = {"Figure": 0, "Table": 0}
    for el in soup.select(".jp-RenderedHTMLCommon h1, .jp-RenderedHTMLCommon p"):
        if el.name == "h1":
            chapter += 1
            per_chapter = {"Figure": 0, "Table": 0}
            continue
        strong = el.find("strong")
        if strong is None or el.contents[0] is not strong:
            continue
        kind = strong.get_text(strip=True).rstrip(".:")
        if kind not in counts:
            continue
        counts[kind] += 1
        per_chapter[kind] += 1
        strong.string = f"{kind} {chapter}.{per_chapter[kind]}."
        strong["class"] = "vw-label"
        el["class"] = el.get("class", []) + ["vw-caption"]
        el["id"] = f"{kind.lower()}-{chapter}-{per_chapter[kind]}"
    return counts["Figure"], counts["Table"]


def _link_citations(soup, bib: dict) -> tuple[set[str], set[str]]:
    cited, unknown = set(), set()
    for text in list(soup.select_one("body").find_all(string=_CITE)):
        if text.find_parent(["code", "pre", "script", "style"]):
            continue
        parts, last = [], 0
        for m in _CITE.finditer(str(text)):
            keys = [k.strip() for k in m.group(1).split(";")]
            if not all(k in bib for k in keys):
                unknown.update(k for k in keys if k not in bib)
                continue
            parts.append(html.escape(str(text)[last : m.start()]))
            links = "; ".join(
                f'<a class="vw-cite" href="#bib-{_slug(k)}">{html.escape(k)}</a>' for k in keys
            )
            parts.append(f"[{links}]")
            cited.update(keys)
            last = m.end()
        if parts:
            parts.append(html.escape(str(text)[last:]))
            text.replace_with(BeautifulSoup("".join(parts), "html.parser"))
    return cited, unknown


def _slug(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def _insert_front(soup, meta: dict, smoke: bool, toc) -> None:
    slot = soup.find(id="vw-front")
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in meta["facts"].items()
    )
    banner = f'<div class="vw-banner">{SMOKE_BANNER}</div>' if smoke else ""
    items = []
    for num, title, anchor, level in toc:
        items.append(
            (
                level,
                f'<li><a href="#{anchor}"><span class="vw-num">{num}</span>'
                f"{html.escape(title.removeprefix(num).strip())}</a>",
            )
        )
    toc_html = (
        _nested_list(items)
        + '<ol><li><a href="#vw-references"><span class="vw-num"></span>References</a></li></ol>'
    )
    front = (
        f'<section class="vw-titlepage"><h1 class="vw-title">{html.escape(meta["title"])}</h1>'
        f'<div class="vw-subtitle">{html.escape(meta["subtitle"])}</div>{banner}'
        f'<table class="vw-meta">{rows}</table></section>'
        f'<nav class="vw-toc"><h2>Contents</h2>{toc_html}</nav>'
    )
    slot.replace_with(BeautifulSoup(front, "html.parser"))


def _nested_list(items: list[tuple[int, str]]) -> str:
    out, depth = [], -1
    for level, li in items:
        while depth < level:
            out.append("<ol>")
            depth += 1
        while depth > level:
            out.append("</li></ol>")
            depth -= 1
        if out and not out[-1].endswith("<ol>"):
            out.append("</li>")
        out.append(li)
    while depth >= 0:
        out.append("</li></ol>")
        depth -= 1
    return "".join(out)


def _insert_bibliography(soup, cited: set[str]) -> None:
    slot = soup.find(id="vw-bibliography")
    entries = [e for e in load_bibliography() if e["key"] in cited]
    lis = []
    for e in sorted(entries, key=lambda e: e["key"].lower()):
        url = (
            f' <a href="{html.escape(e["url"])}">{html.escape(e["url"])}</a>'
            if e.get("url")
            else ""
        )
        lis.append(
            f'<li id="bib-{_slug(e["key"])}"><strong>[{html.escape(e["key"])}]</strong> '
            f"{html.escape(e['authors'])}. <em>{html.escape(e['title'])}</em>. "
            f"{html.escape(e['venue'])}.{url}</li>"
        )
    block = f'<h1 id="vw-references">References</h1><ul class="vw-bib">{"".join(lis)}</ul>'
    slot.replace_with(BeautifulSoup(block, "html.parser"))


# ----------------------------------------------------------------------------- pdf
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


def title_meta(profile: str, machine: dict, commit: str | None) -> dict:
    facts = {
        "Date": _dt.date.today().isoformat(),
        "Profile": profile,
        "TensorFlow / Keras": f"{machine.get('tensorflow')} / {machine.get('keras')}",
        "Python": machine.get("python", ""),
        "Machine": machine.get("machine", ""),
        "Accelerator": machine.get("accelerator", ""),
    }
    if commit:
        facts["vitwatch commit"] = commit
    return {
        "title": "Vision Transformers, Put to the Test",
        "subtitle": "An executable technology watch: ViT-S/16 versus ResNet-50 on Stanford Dogs, "
        "from attention to inductive bias",
        "facts": facts,
    }

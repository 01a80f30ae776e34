"""Executed notebooks -> one HTML report (printed to PDF by :mod:`vitwatch.report.pdf`).

The notebooks are merged in order into one document; nbconvert's lab template (overridden to load
nothing from the network: MathJax 2.7 is copied next to the HTML from ``jupyter-server-mathjax``)
renders it; the HTML is then finished with BeautifulSoup: title page, smoke banner, numbered
chapters and sections, table of contents, numbered figure and table captions, citation links and
the bibliography.
"""

from __future__ import annotations

import copy
import datetime as _dt
import html
import re
import shutil
from pathlib import Path

import nbformat
import yaml
from bs4 import BeautifulSoup

ASSETS = Path(__file__).parents[1] / "assets"
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

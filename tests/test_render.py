"""Report rendering on a small hand-made notebook: tags, numbering, captions, citations,
bibliography."""

import nbformat
from bs4 import BeautifulSoup

from vitwatch.report import render


def _notebook(path, title, extra_cells=()):
    nb = nbformat.v4.new_notebook()
    setup = nbformat.v4.new_code_cell("import secret_setup", metadata={"tags": ["remove-cell"]})
    params = nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters", "remove-cell"]})
    teach = nbformat.v4.new_code_cell("def attention(q, k, v):\n    return q")
    plot = nbformat.v4.new_code_cell("plotting_call()", metadata={"tags": ["hide-input"]})
    plot.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
        ),
        nbformat.v4.new_output("stream", name="stderr", text="progress 100%|####|"),
    ]
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# {title}\n\nAs shown by [Dosovitskiy et al., 2021] and [Nobody, 1999]."
        ),
        setup,
        params,
        nbformat.v4.new_markdown_cell("## Method\n\n$$ \\frac{a}{b} $$"),
        teach,
        plot,
        nbformat.v4.new_markdown_cell("**Figure.** A caption sentence."),
        nbformat.v4.new_markdown_cell("### Detail\n\n**Table.** A table caption."),
        *extra_cells,
    ]
    nbformat.write(nb, str(path))
    return path


def test_merge_drops_tagged_cells_and_stderr(tmp_path):
    a = _notebook(tmp_path / "00_a.ipynb", "First chapter")
    merged = render.merge([a])
    sources = "\n".join(c.source for c in merged.cells)
    assert "secret_setup" not in sources and "seed = 0" not in sources
    assert "plotting_call" not in sources  # hide-input: code hidden ...
    assert "def attention" in sources  # ... teaching code kept
    outs = [o for c in merged.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outs)  # ... output kept
    assert not any(o.get("name") == "stderr" for o in outs)


def test_finished_html_is_numbered_captioned_and_cited(tmp_path):
    books = [
        _notebook(tmp_path / "00_a.ipynb", "First chapter"),
        _notebook(tmp_path / "01_b.ipynb", "Second chapter"),
    ]
    page = render.notebook_to_html(render.merge(books), "mathjax/MathJax.js")
    meta = render.title_meta("smoke", {"tensorflow": "2.x", "keras": "3.x"}, "abc123")
    out, stats = render.finish_html(page, meta, smoke=True)
    soup = BeautifulSoup(out, "html.parser")
    assert stats["chapters"] == ["First chapter", "Second chapter"]
    assert [h.get_text(" ", strip=True) for h in soup.select("h2")][1:3] == [
        "1.1 Method",
        "2.1 Method",
    ]
    assert soup.select_one("#sec-2-1-1") is not None
    captions = [p.get_text(" ", strip=True) for p in soup.select(".vw-caption")]
    assert captions == [
        "Figure 1.1. A caption sentence.",
        "Table 1.1. A table caption.",
        "Figure 2.1. A caption sentence.",
        "Table 2.1. A table caption.",
    ]
    assert soup.select_one('a.vw-cite[href="#bib-dosovitskiy-et-al-2021"]') is not None
    assert soup.select_one("#bib-dosovitskiy-et-al-2021") is not None
    assert stats["unknown_citations"] == ["Nobody, 1999"]
    assert "meaningless" in soup.select_one(".vw-banner").get_text()
    toc = soup.select_one("nav.vw-toc").get_text(" ", strip=True)
    assert "1 First chapter" in toc and "2.1.1 Detail" in toc and "References" in toc
    assert (
        "https://" not in "".join(str(t) for t in soup.select("script"))
        and "mathjax/MathJax.js" in out
    )
    assert "abc123" in soup.select_one(".vw-titlepage").get_text()


def test_full_profile_has_no_banner(tmp_path):
    page = render.notebook_to_html(render.merge([_notebook(tmp_path / "00_a.ipynb", "A")]), "m.js")
    out, _ = render.finish_html(page, render.title_meta("full", {}, None), smoke=False)
    assert not BeautifulSoup(out, "html.parser").select(".vw-banner")

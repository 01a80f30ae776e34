"""Report rendering on a small hand-made notebook: tags, numbering, captions, citations,
bibliography; and the choice of the browser that prints the PDF."""

import nbformat
import pytest
from bs4 import BeautifulSoup

from vitwatch import render


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


# ----------------------------------------------------------------------------- browser discovery
# The PDF's browser: system Chrome/Chromium, else Playwright's (installed on demand), else a
# PdfUnavailable naming one command. Discovery is monkeypatched: nothing is downloaded here.


def _discovery(
    monkeypatch, system=None, playwright=None, install=(False, "offline"), after_install=None
):
    calls = {"install": 0}

    def fake_playwright(timeout=60):
        return after_install if calls["install"] else playwright

    def fake_install(timeout=render.PLAYWRIGHT_INSTALL_TIMEOUT):
        calls["install"] += 1
        return install

    monkeypatch.setattr(render, "system_chromium", lambda: system)
    monkeypatch.setattr(render, "playwright_chromium", fake_playwright)
    monkeypatch.setattr(render, "install_playwright_chromium", fake_install)
    monkeypatch.delenv(render.NO_DOWNLOAD_ENV, raising=False)
    return calls


def test_system_chromium_is_preferred_and_nothing_is_downloaded(monkeypatch):
    calls = _discovery(monkeypatch, system="/usr/bin/chromium", playwright="/pw/chrome")
    assert render.find_chromium(log=lambda m: None) == "/usr/bin/chromium"
    assert calls["install"] == 0


def test_playwright_chromium_already_installed_is_used(monkeypatch):
    calls = _discovery(monkeypatch, playwright="/pw/chrome")
    assert render.find_chromium(log=lambda m: None) == "/pw/chrome"
    assert calls["install"] == 0


def test_playwright_chromium_is_installed_when_missing(monkeypatch):
    calls = _discovery(monkeypatch, install=(True, ""), after_install="/pw/new/chrome")
    messages = []
    assert render.find_chromium(log=messages.append) == "/pw/new/chrome"
    assert calls["install"] == 1 and "Playwright" in messages[0]


def test_offline_install_failure_names_one_command(monkeypatch):
    calls = _discovery(
        monkeypatch,
        install=(False, "`-m playwright install chromium` failed (exit 1): getaddrinfo ENOTFOUND"),
    )
    monkeypatch.setattr(
        render.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    with pytest.raises(render.PdfUnavailable) as info:
        render.find_chromium(log=lambda m: None)
    assert calls["install"] == 1
    assert info.value.command == "sudo apt-get install -y chromium"
    assert "ENOTFOUND" in info.value.reason
    assert str(info.value).count("To add the PDF, run:") == 1


def test_no_download_when_forbidden(monkeypatch):
    calls = _discovery(monkeypatch)
    monkeypatch.setenv(render.NO_DOWNLOAD_ENV, "1")
    with pytest.raises(render.PdfUnavailable, match=render.NO_DOWNLOAD_ENV):
        render.find_chromium(log=lambda m: None)
    assert calls["install"] == 0


def test_install_is_bounded_by_its_timeout(monkeypatch):
    def slow(cmd, **kw):
        assert kw["timeout"] == 7
        raise render.subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(render.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(render.subprocess, "run", slow)
    ok, why = render.install_playwright_chromium(timeout=7)
    assert not ok and "within 7 s" in why


def test_command_without_apt_is_playwright_install(monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    monkeypatch.setattr(render.sys, "platform", "linux")
    assert render.pdf_command().endswith("-m playwright install chromium")


def test_install_error_summary_names_the_cause():
    offline = (
        "Downloading Chrome for Testing from https://cdn.example/chrome-linux64.zip\n"
        "Error: getaddrinfo ENOTFOUND cdn.example\n"
        "    at GetAddrInfoReqWrap.onlookupall (node:internal/dns/promises:101:17) {\n"
        "  code: 'ENOTFOUND',\n}\n"
    )
    assert render.install_error_summary(offline) == "Error: getaddrinfo ENOTFOUND cdn.example"
    assert render.install_error_summary("disk full\n}\n") == "disk full"
    assert render.install_error_summary("") == "no message"

"""The report build end to end: every notebook under smoke with papermill, then HTML and PDF checks.

The smoke report is built once per test session (into a temporary folder) and inspected by
several tests; this is the slow part of `make test`.
"""
import json
import re
import shutil

import nbformat
import pytest
from bs4 import BeautifulSoup

from vitwatch import config, downloads, report

pytestmark = pytest.mark.slow
NOTEBOOKS = sorted((config.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _title(path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    line = next(l for l in first.source.splitlines() if l.startswith("# "))
    return line[2:].strip()


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke-report")
    result = report.build("smoke", out_dir=out, force=True)
    return out, result


def test_every_notebook_runs_under_smoke(smoke_report):
    out, result = smoke_report
    assert sorted(result["timings"]) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        nb = nbformat.read(str(out / "executed" / path.name), as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{path.name}: {errors[0]['ename']}"


def test_html_report_is_a_finished_document(smoke_report):
    out, result = smoke_report
    soup = BeautifulSoup((out / "vitwatch-report.html").read_text(), "html.parser")
    chapters = [h.get_text(" ", strip=True) for h in soup.select(".jp-RenderedHTMLCommon h1")]
    for path in NOTEBOOKS:
        assert any(_title(path) in c for c in chapters), f"chapter of {path.name} missing"
    assert soup.select_one(".vw-titlepage .vw-banner"), "smoke banner missing"
    assert len(soup.select("nav.vw-toc li")) >= 3 * len(NOTEBOOKS)
    images = soup.select('img[src^="data:image/png"]')
    assert result["figures"] >= 2 * len(NOTEBOOKS), "too few captioned figures"
    assert len(images) >= result["figures"], "a caption has no figure"
    assert not result["unknown_citations"], f"citations missing from bibliography.yaml: {result['unknown_citations']}"
    assert len(soup.select(".vw-bib li")) >= 5
    scripts = " ".join(str(s) for s in soup.select("script"))
    assert "https://" not in scripts, "the report loads a script from the network"
    assert (out / "mathjax" / "MathJax.js").exists()
    assert "Traceback" not in soup.get_text()


def test_pdf_report_has_typeset_formulas_and_plausible_length(smoke_report):
    from pypdf import PdfReader

    out, result = smoke_report
    reader = PdfReader(str(out / "vitwatch-report.pdf"))
    pages = [p.extract_text() for p in reader.pages]
    text = "\n".join(pages)
    assert len(NOTEBOOKS) + 3 <= len(pages) <= 250
    assert "meaningless" in pages[0]
    for path in NOTEBOOKS:
        assert _title(path).split(":")[0][:30] in text.replace("\n", " "), f"{path.name} title missing from PDF"
    raw_tex = re.findall(r"\\(?:frac|sqrt|mathrm|top|sum|left|right)\b|\$\$", text)
    assert not raw_tex, f"untypeset formulas in the PDF: {raw_tex[:5]}"
    assert "References" in text


def test_failing_notebook_is_named_and_previous_report_kept(tmp_path):
    nb_dir = tmp_path / "notebooks"
    shutil.copytree(config.project_root() / "notebooks" / "profiles", nb_dir / "profiles")
    ok = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Fine"), nbformat.v4.new_code_cell("x = 1")])
    bad = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Broken"),
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise ValueError('boom in the third cell')")])
    for nb in (ok, bad):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(ok, str(nb_dir / "00_fine.ipynb"))
    nbformat.write(bad, str(nb_dir / "01_broken.ipynb"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "vitwatch-report.html").write_text("PREVIOUS GOOD REPORT")
    with pytest.raises(report.ReportError, match=r"01_broken\.ipynb failed in cell \d+.*ValueError: boom"):
        report.build("smoke", notebooks_dir=nb_dir, out_dir=out, pdf=False)
    assert (out / "vitwatch-report.html").read_text() == "PREVIOUS GOOD REPORT"
    # the notebook that succeeded is reused on the next run (resume), the broken one is retried
    assert (out / "executed" / "00_fine.key").exists() and not (out / "executed" / "01_broken.key").exists()


def test_full_profile_offline_stops_before_work_naming_urls(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "reachable", lambda url, timeout=8.0: (False, "URLError: no network"))
    cfg = config.from_profile("full", cache_dir=str(tmp_path))
    with pytest.raises(report.ReportError) as info:
        report.preflight(cfg)
    message = str(info.value)
    assert "http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar" in message
    assert "storage.googleapis.com/vit_models" in message
    assert "PROFILE=smoke" in message


def test_long_profiles_echo_notebook_output_to_the_terminal(tmp_path, capfd):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'smoke'\nunused = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print('epoch 1/3: loss 0.42')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp_path / "00_echo.ipynb"
    nbformat.write(nb, str(src))
    report.execute(src, tmp_path / "out.ipynb", {"profile": "smoke", "seed": 3}, stream=True)
    err = capfd.readouterr().err
    assert "epoch 1/3: loss 0.42" in err
    assert "Passed unknown parameter" not in err
    report.execute(src, tmp_path / "out.ipynb", {"profile": "smoke"}, stream=False)
    assert "epoch 1/3" not in capfd.readouterr().err

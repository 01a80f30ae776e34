"""The report build end to end: every notebook under smoke with papermill, then HTML and PDF checks.

The smoke report is built once per test session (into a temporary folder) and inspected by
several tests; this is the slow part of `make test`.
"""

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from vitwatch import config, report
from vitwatch.downloads import reachability
from vitwatch.report import builder, kernel, noise, pdf

pytestmark = pytest.mark.slow
NOTEBOOKS = sorted((config.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _title(path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    line = next(l for l in first.source.splitlines() if l.startswith("# "))
    return line[2:].strip()


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory, pytestconfig):
    out = tmp_path_factory.mktemp("smoke-report")
    # `make test` shows the build's one line per notebook as it goes (the longest wait of the
    # suite), with TensorFlow's start-up lines filtered out and real errors shown
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nsmoke report: executing {len(NOTEBOOKS)} notebooks (minutes) ...", flush=True)
        with report.filtered_stderr():
            result = report.build("smoke", out_dir=out, force=True)
    return out, result


def test_every_notebook_runs_under_smoke(smoke_report):
    out, result = smoke_report
    assert sorted(result["timings"]) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        nb = nbformat.read(str(out / "executed" / path.name), as_version=4)
        errors = [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.outputs
            if o.output_type == "error"
        ]
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
    assert not result["unknown_citations"], (
        f"citations missing from bibliography.yaml: {result['unknown_citations']}"
    )
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
        assert _title(path).split(":")[0][:30] in text.replace("\n", " "), (
            f"{path.name} title missing from PDF"
        )
    raw_tex = re.findall(r"\\(?:frac|sqrt|mathrm|top|sum|left|right)\b|\$\$", text)
    assert not raw_tex, f"untypeset formulas in the PDF: {raw_tex[:5]}"
    assert "References" in text


def test_failing_notebook_is_named_and_previous_report_kept(tmp_path):
    nb_dir = tmp_path / "notebooks"
    shutil.copytree(config.project_root() / "notebooks" / "profiles", nb_dir / "profiles")
    ok = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Fine"), nbformat.v4.new_code_cell("x = 1")]
    )
    bad = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Broken"),
            nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("raise ValueError('boom in the third cell')"),
        ]
    )
    for nb in (ok, bad):
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
    nbformat.write(ok, str(nb_dir / "00_fine.ipynb"))
    nbformat.write(bad, str(nb_dir / "01_broken.ipynb"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "vitwatch-report.html").write_text("PREVIOUS GOOD REPORT")
    with pytest.raises(
        report.ReportError, match=r"01_broken\.ipynb failed in cell \d+.*ValueError: boom"
    ):
        report.build("smoke", notebooks_dir=nb_dir, out_dir=out, pdf=False)
    assert (out / "vitwatch-report.html").read_text() == "PREVIOUS GOOD REPORT"
    # the notebook that succeeded is reused on the next run (resume), the broken one is retried
    assert (out / "executed" / "00_fine.key").exists() and not (
        out / "executed" / "01_broken.key"
    ).exists()


def test_full_profile_offline_stops_before_work_naming_urls(tmp_path, monkeypatch):
    monkeypatch.setattr(reachability, "probe", lambda url, timeout: "offline (no network)")
    cfg = config.from_profile("full", cache_dir=str(tmp_path))
    with pytest.raises(report.ReportError) as info:
        report.preflight(cfg)
    message = str(info.value)
    assert "http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar" in message
    assert "storage.googleapis.com/vit_models" in message
    assert "PROFILE=smoke" in message


def test_long_profiles_echo_notebook_output_to_the_terminal(tmp_path, capfd):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "profile = 'smoke'\nunused = 1", metadata={"tags": ["parameters"]}
            ),
            nbformat.v4.new_code_cell("print('epoch 1/3: loss 0.42')"),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    src = tmp_path / "00_echo.ipynb"
    nbformat.write(nb, str(src))
    report.execute(src, tmp_path / "out.ipynb", {"profile": "smoke", "seed": 3}, stream=True)
    err = capfd.readouterr().err
    assert "epoch 1/3: loss 0.42" in err
    assert "Passed unknown parameter" not in err
    report.execute(src, tmp_path / "out.ipynb", {"profile": "smoke"}, stream=False)
    assert "epoch 1/3" not in capfd.readouterr().err


def test_startup_noise_filter_keeps_errors():
    import io
    import os

    noisy = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796216049.715930    7609 cudart_stub.cc:31] Could not find cuda drivers\n",
        "W0000 00:00:1796216049.9    7609 cpu_feature_guard.cc:227] This TensorFlow binary\n",
    ]
    kept = [
        "E0000 00:00:1796216070.1    7609 cuda_dnn.cc:522] Could not create cudnn handle\n",
        "Traceback (most recent call last):\n",
        "MemoryError: out of memory\n",
    ]
    assert all(noise.is_startup_noise(l) for l in noisy)
    assert not any(noise.is_startup_noise(l) for l in kept)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, "".join(noisy[:2] + kept + noisy[2:]).encode())
    os.close(write_fd)
    out = io.StringIO()
    noise.filter_stream(read_fd, out)
    assert out.getvalue() == "".join(kept)


def test_kernels_start_quietly_and_real_errors_still_show(tmp_path, capfd):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(
                "import os\n"
                "os.write(2, b'I0000 00:00:1796216049.7    7609 cudart_stub.cc:31] no cuda\\n')\n"
                "os.write(2, b'E0000 00:00:1796216049.7    7609 real.cc:1] a real C++ error\\n')"
            ),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    src = tmp_path / "00_quiet.ipynb"
    nbformat.write(nb, str(src))
    report.execute(src, tmp_path / "out.ipynb", {"profile": "smoke"})
    err = capfd.readouterr().err
    assert "real.cc:1] a real C++ error" in err
    assert "cudart_stub" not in err
    assert "without encryption" not in err and "KeyboardInterrupt" not in err


def test_cuinit_error_is_noise_only_without_an_nvidia_gpu(monkeypatch):
    line = (
        "E0000 00:00:1796216070.199935    7609 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
    )
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setattr(noise, "nvidia_device_present", lambda: False)
    assert noise.is_startup_noise(line)
    assert kernel.kernel_environment()["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setattr(noise, "nvidia_device_present", lambda: True)
    assert not noise.is_startup_noise(line)  # a real GPU's error shows
    assert kernel.kernel_environment()["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # asked for: TensorFlow's logs
    assert kernel.kernel_environment()["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_without_a_browser_the_html_is_kept_and_one_command_given(tmp_path, monkeypatch, capsys):
    nb_dir = tmp_path / "notebooks"
    shutil.copytree(config.project_root() / "notebooks" / "profiles", nb_dir / "profiles")
    ok = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Fine"), nbformat.v4.new_code_cell("x = 1")]
    )
    ok.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(ok, str(nb_dir / "00_fine.ipynb"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "vitwatch-report.pdf").write_text("PDF OF AN OLDER BUILD")

    def no_browser(download=None, log=print):
        raise pdf.PdfUnavailable(
            "PDF not written: no Chrome/Chromium on this machine.",
            "sudo apt-get install -y chromium",
        )

    monkeypatch.setattr(builder, "find_chromium", no_browser)
    result = report.build("smoke", notebooks_dir=nb_dir, out_dir=out)
    printed = capsys.readouterr().out
    assert result["pdf"] is None and result["pdf_command"] == "sudo apt-get install -y chromium"
    assert "Fine" in (out / "vitwatch-report.html").read_text()
    assert not (out / "vitwatch-report.pdf").exists()
    assert printed.count("To add the PDF, run: sudo apt-get install -y chromium") == 1
    assert json.loads((out / "build.json").read_text())["pdf"] is None
    assert report.EXIT_NO_PDF == 3


def test_prerequisites_follow_what_each_chapter_reads(tmp_path):
    names = ["00_a", "01_b", "02_c", "03_d", "04_e", "05_f", "06_g", "07_new"]
    books = [tmp_path / f"{n}.ipynb" for n in names]
    waits = builder.prerequisites(books)
    assert waits["04_e.ipynb"] == waits["06_g.ipynb"] == {"03_d.ipynb"}
    assert waits["00_a.ipynb"] == waits["03_d.ipynb"] == waits["05_f.ipynb"] == set()
    # a chapter the table does not know waits for every one before it
    assert waits["07_new.ipynb"] == {f"{n}.ipynb" for n in names[:-1]}
    # --only: a prerequisite not run is not waited for
    assert builder.prerequisites(books[4:6])["04_e.ipynb"] == set()


def test_the_longest_chain_of_work_starts_first():
    """Critical-path order: 03 (with 04 after it), then the heavy 05, then the rest."""
    names = ["00_a", "01_b", "02_c", "03_d", "04_e", "05_f", "06_g"]
    chain = builder.chain_weights(builder.prerequisites([Path(f"{n}.ipynb") for n in names]))
    order = sorted(chain, key=lambda n: -chain[n])
    assert order[:3] == ["03_d.ipynb", "05_f.ipynb", "04_e.ipynb"]
    assert chain["03_d.ipynb"] == builder.WEIGHT["03"] + builder.WEIGHT["04"]
    unknown = builder.chain_weights({"09_x.ipynb": set()})
    assert unknown == {"09_x.ipynb": 1}


def test_background_notebooks_run_niced_and_a_lone_one_not():
    names = ["00_a", "01_b", "02_c", "03_d", "04_e", "05_f", "06_g"]
    waits = builder.prerequisites([Path(f"{n}.ipynb") for n in names])
    critical = builder.critical_chain(waits, builder.chain_weights(waits))
    assert critical == ["03_d.ipynb", "04_e.ipynb"]
    assert builder.background_niceness("04_e.ipynb", critical, parallel=True) == 0
    assert builder.background_niceness("05_f.ipynb", critical, parallel=True) > 0
    assert builder.background_niceness("05_f.ipynb", critical, parallel=False) == 0
    assert kernel.niced(["python", "-m", "k"], 0) == ["python", "-m", "k"]
    assert kernel.niced(["python"], 10)[-1] == "python"
    if os.name == "posix" and shutil.which("nice"):
        assert kernel.niced(["python"], 10) == ["nice", "-n", "10", "python"]


def _group_niceness_settable() -> bool:
    """Whether this machine lets us nice a new session's scheduling group (a read-only /proc
    would not): tried on a short-lived child of its own session."""
    import subprocess

    child = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        return kernel.group_niceness(child.pid, 1)
    finally:
        child.kill()
        child.wait()


def _timed_notebook(path: Path, log: Path, seconds: float, fail: bool = False) -> None:
    """A notebook that logs its start and end times, its kernel's environment and scheduling
    priority to ``log``."""
    code = (
        "import json, os, time\n"
        f"t0 = time.time(); time.sleep({seconds})\n"
        + ("raise ValueError('boom')\n" if fail else "")
        + f"with open({str(log)!r}, 'a') as f:\n"
        f"    f.write(json.dumps([{path.stem!r}, t0, time.time(), os.environ.get('MPLBACKEND'),"
        " os.getpriority(os.PRIO_PROCESS, 0),"
        " open('/proc/self/autogroup').read().split()[-1]"
        " if os.path.exists('/proc/self/autogroup') else None]) + '\\n')"
    )
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(code),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, str(path))


def test_notebooks_run_two_at_once_in_the_order_their_inputs_allow(tmp_path, monkeypatch, capsys):
    nb_dir = tmp_path / "notebooks"
    shutil.copytree(config.project_root() / "notebooks" / "profiles", nb_dir / "profiles")
    log = tmp_path / "log.jsonl"
    for name, seconds in [("00_a", 2), ("03_d", 1), ("04_e", 1), ("05_f", 3)]:
        _timed_notebook(nb_dir / f"{name}.ipynb", log, seconds)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    before = dict(os.environ)
    out = tmp_path / "out"
    out.mkdir()
    builder.run_notebooks(
        builder.notebooks(nb_dir),
        out,
        {"profile": "smoke"},
        "digest",
        "python3",
        force=False,
        streaming=False,
        jobs=2,
        previous=None,
    )
    rows = {r[0]: r[1:] for r in map(json.loads, log.read_text().splitlines())}
    assert set(rows) == {"00_a", "03_d", "04_e", "05_f"}
    assert rows["04_e"][0] >= rows["03_d"][1], "04 started before 03 had finished"
    first = sorted(rows, key=lambda n: rows[n][0])[:2]
    assert set(first) == {"03_d", "05_f"}, f"the longest chain and the heaviest first: {rows}"
    spans = sorted(rows.values())
    overlap = any(a[1] > b[0] for a, b in zip(spans, spans[1:]))
    assert overlap, f"no two notebooks ran at once: {rows}"
    # each kernel got the notebook environment; this process's own was left as it was
    assert {r[2] for r in rows.values()} == {"module://matplotlib_inline.backend_inline"}
    assert dict(os.environ) == before
    # the head of the longest chain at this process's priority, the other in the background
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert rows["03_d"][3] == base
    assert rows["05_f"][3] == min(19, base + builder.BACKGROUND_NICENESS)
    if rows["05_f"][4] is not None and _group_niceness_settable():
        # Linux groups each kernel's session: the group gives way
        assert rows["05_f"][4] == str(builder.BACKGROUND_NICENESS) and rows["03_d"][4] == "0"
    printed = capsys.readouterr().out
    assert printed.count("running ...") == 4 and printed.count("done in") == 4


def test_a_failure_stops_new_starts_and_the_running_notebook_finishes(tmp_path):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    log = tmp_path / "log.jsonl"
    _timed_notebook(nb_dir / "00_a.ipynb", log, 3)
    _timed_notebook(nb_dir / "03_d.ipynb", log, 0, fail=True)
    _timed_notebook(nb_dir / "04_e.ipynb", log, 0)  # waits for 03, which fails: never starts
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(report.ReportError, match=r"03_d\.ipynb failed"):
        builder.run_notebooks(
            builder.notebooks(nb_dir), out, {}, "d", "python3", False, False, 2, None
        )
    ran = [line.split('"')[1] for line in log.read_text().splitlines()]
    assert ran == ["00_a"], ran
    assert (out / "00_a.key").exists() and not (out / "03_d.key").exists()


def test_a_kernel_shut_down_after_its_notebook_is_not_interrupted(monkeypatch):
    """nbclient shuts a kernel down with km.shutdown_kernel(); jupyter_client would SIGINT it
    first (ipykernel then logs "KeyboardInterrupt caught in kernel." when the signal lands in
    a message handler). The report's kernel manager sends no interrupt on that path."""
    import asyncio

    from jupyter_client.manager import KernelManager

    from vitwatch.report import kernel

    interrupts = []

    async def record(self):
        interrupts.append(self)

    monkeypatch.setattr(KernelManager, "_async_interrupt_kernel", record)
    manager = kernel._quiet_kernel_manager()(kernel_name="python3")

    async def start_and_stop():
        await manager.start_kernel()
        try:
            assert manager.has_kernel
        finally:
            await manager.shutdown_kernel()  # the call nbclient makes

    asyncio.run(asyncio.wait_for(start_and_stop(), 60))
    assert interrupts == [] and not manager.has_kernel

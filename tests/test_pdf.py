"""The choice of the browser that prints the report's PDF: system Chrome/Chromium, else
Playwright's (installed on demand), else a PdfUnavailable naming one command. Discovery is
monkeypatched: nothing is downloaded here."""

import pytest

from vitwatch.report import pdf


def _discovery(
    monkeypatch, system=None, playwright=None, install=(False, "offline"), after_install=None
):
    calls = {"install": 0}

    def fake_playwright(timeout=60):
        return after_install if calls["install"] else playwright

    def fake_install(timeout=pdf.PLAYWRIGHT_INSTALL_TIMEOUT):
        calls["install"] += 1
        return install

    monkeypatch.setattr(pdf, "system_chromium", lambda: system)
    monkeypatch.setattr(pdf, "playwright_chromium", fake_playwright)
    monkeypatch.setattr(pdf, "install_playwright_chromium", fake_install)
    monkeypatch.delenv(pdf.NO_DOWNLOAD_ENV, raising=False)
    return calls


def test_system_chromium_is_preferred_and_nothing_is_downloaded(monkeypatch):
    calls = _discovery(monkeypatch, system="/usr/bin/chromium", playwright="/pw/chrome")
    assert pdf.find_chromium(log=lambda m: None) == "/usr/bin/chromium"
    assert calls["install"] == 0


def test_playwright_chromium_already_installed_is_used(monkeypatch):
    calls = _discovery(monkeypatch, playwright="/pw/chrome")
    assert pdf.find_chromium(log=lambda m: None) == "/pw/chrome"
    assert calls["install"] == 0


def test_playwright_chromium_is_installed_when_missing(monkeypatch):
    calls = _discovery(monkeypatch, install=(True, ""), after_install="/pw/new/chrome")
    messages = []
    assert pdf.find_chromium(log=messages.append) == "/pw/new/chrome"
    assert calls["install"] == 1 and "Playwright" in messages[0]


def test_offline_install_failure_names_one_command(monkeypatch):
    calls = _discovery(
        monkeypatch,
        install=(False, "`-m playwright install chromium` failed (exit 1): getaddrinfo ENOTFOUND"),
    )
    monkeypatch.setattr(
        pdf.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    with pytest.raises(pdf.PdfUnavailable) as info:
        pdf.find_chromium(log=lambda m: None)
    assert calls["install"] == 1
    assert info.value.command == "sudo apt-get install -y chromium"
    assert "ENOTFOUND" in info.value.reason
    assert str(info.value).count("To add the PDF, run:") == 1


def test_no_download_when_forbidden(monkeypatch):
    calls = _discovery(monkeypatch)
    monkeypatch.setenv(pdf.NO_DOWNLOAD_ENV, "1")
    with pytest.raises(pdf.PdfUnavailable, match=pdf.NO_DOWNLOAD_ENV):
        pdf.find_chromium(log=lambda m: None)
    assert calls["install"] == 0


def test_install_is_bounded_by_its_timeout(monkeypatch):
    def slow(cmd, **kw):
        assert kw["timeout"] == 7
        raise pdf.subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(pdf.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(pdf.subprocess, "run", slow)
    ok, why = pdf.install_playwright_chromium(timeout=7)
    assert not ok and "within 7 s" in why


def test_command_without_apt_is_playwright_install(monkeypatch):
    monkeypatch.setattr(pdf.shutil, "which", lambda name: None)
    monkeypatch.setattr(pdf.sys, "platform", "linux")
    assert pdf.pdf_command().endswith("-m playwright install chromium")


def test_install_error_summary_names_the_cause():
    offline = (
        "Downloading Chrome for Testing from https://cdn.example/chrome-linux64.zip\n"
        "Error: getaddrinfo ENOTFOUND cdn.example\n"
        "    at GetAddrInfoReqWrap.onlookupall (node:internal/dns/promises:101:17) {\n"
        "  code: 'ENOTFOUND',\n}\n"
    )
    assert pdf.install_error_summary(offline) == "Error: getaddrinfo ENOTFOUND cdn.example"
    assert pdf.install_error_summary("disk full\n}\n") == "disk full"
    assert pdf.install_error_summary("") == "no message"

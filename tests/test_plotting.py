"""plotting.Figures / save_figure: the folder is passed, names and titles are checked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from vitwatch import config, plotting  # noqa: E402


def _fig(title="A title"):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set(title=title, xlabel="x", ylabel="y")
    return fig


def test_figures_go_to_the_folder_passed_and_nowhere_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITWATCH_FIGURES_DIR", str(tmp_path / "elsewhere"))  # ignored
    cfg = config.from_profile("smoke", figures_dir=str(tmp_path / "run"))
    paths = plotting.Figures(cfg.figures_dir).save(_fig(), "04_example")
    assert sorted(p.name for p in paths) == ["04_example.png", "04_example.svg"]
    assert all(p.parent == tmp_path / "run" and p.stat().st_size > 0 for p in paths)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "figures").exists()
    plt.close("all")


def test_bad_names_and_untitled_figures_are_refused(tmp_path):
    figures = plotting.Figures(tmp_path)
    with pytest.raises(ValueError, match="must look like '04_attention_rollout'"):
        figures.save(_fig(), "Attention Rollout")
    with pytest.raises(ValueError, match="has no title"):
        figures.save(_fig(title=""), "04_untitled")
    assert not list(tmp_path.iterdir())
    plt.close("all")

"""The runtime plan printed before a long report: a model scaled by a few-second probe."""

from vitwatch import config, costs

FAST = {"gflops": 400.0, "decode_per_core": 150.0, "cores": 2, "gpu": False}
SLOW = {**FAST, "gflops": 50.0}


def _total(profile, measured):
    return sum(r["seconds"] for r in costs.runtime_plan(config.from_profile(profile), measured))


def test_plan_grows_with_the_work_and_shrinks_with_the_machine():
    plan = costs.runtime_plan(config.from_profile("quick"), FAST)
    assert [r["notebook"] for r in plan] == ["00", "01", "02", "03", "04", "05", "06"]
    assert all(r["seconds"] > 0 for r in plan)
    assert _total("smoke", FAST) < _total("quick", FAST) < _total("full", FAST)
    assert _total("quick", SLOW) > 4 * _total("quick", FAST) * 0.9
    n03 = {p: costs.runtime_plan(config.from_profile(p), FAST)[3] for p in ("quick", "full")}
    assert n03["full"]["seconds"] > 10 * n03["quick"]["seconds"]
    assert n03["full"]["dominated_by"] == "backbones"


def test_printed_plan_lists_the_notebooks_and_last_run(monkeypatch):
    monkeypatch.setattr(costs, "probe", lambda seconds=3.0: FAST)
    lines = []
    names = ["03_vit_vs_resnet_training.ipynb", "05_inductive_bias.ipynb"]
    costs.print_runtime_plan(
        config.from_profile("quick"), names, {"05_inductive_bias.ipynb": 4000.0}, out=lines.append
    )
    assert "400 GFLOP/s" in lines[0] and len(lines) == 4
    assert lines[1].lstrip().startswith("03_vit") and "last run 67 min" in lines[2]
    assert lines[3].lstrip().startswith("total")

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


def test_forward_passes_follow_each_backbones_protocols():
    quick = config.from_profile("quick")
    base = costs.forward_gmacs03(quick)
    assert set(base) == {"vit_s16", "resnet50", "vit_s16_hub", "bit_r50x1"}
    # the TF Hub route runs protocol B on the evaluation view only: one pass per image
    n_all = 120 * (quick.train_per_class + quick.test_per_class)
    assert abs(base["vit_s16_hub"] - 4.61 * n_all) < 1e-6 * base["vit_s16_hub"]
    tuned = costs.forward_gmacs03(config.from_profile("quick", finetune=True))
    grown = {k for k in base if tuned[k] > base[k]}
    assert grown == {"vit_s16", "resnet50", "bit_r50x1"}  # the rows that run C
    hires = costs.forward_gmacs03(config.from_profile("quick", view_study_hires=True))
    assert {k for k in base if hires[k] != base[k]} == {"vit_s16"}
    more = costs.forward_gmacs03(config.from_profile("quick", head_epochs=4))
    assert more["vit_s16_hub"] == base["vit_s16_hub"] and more["vit_s16"] > base["vit_s16"]


def test_two_at_once_is_bounded_by_the_longest_chain_and_by_the_work():
    plan = costs.runtime_plan(config.from_profile("quick"), FAST)
    one = costs.elapsed(plan, cores=2, jobs=1)
    two = costs.elapsed(plan, cores=2, jobs=2)
    seconds = {r["notebook"]: r["seconds"] for r in plan}
    assert one == sum(seconds.values())
    assert two >= seconds["03"] + seconds["04"]  # 04 waits for 03
    assert two >= sum(r["compute"] for r in plan)  # what uses both cores does not overlap
    assert two < one


def test_on_a_gpu_notebook_05_is_planned_as_its_own_gpu_estimate():
    """With a GPU, 05's row is the step time notebook 05's GPU estimate assumes (its runs
    stacked), not the CPU reference scaled by the probe's matmul speed."""
    from vitwatch.inductive import estimates

    full = config.from_profile("full")
    gpu = {**FAST, "gflops": 100_000.0, "gpu": True}
    row = costs.runtime_plan(full, gpu)[5]
    steps = estimates.gpu_steps(full)
    assert set(steps) == set(full.small_models)
    expected = estimates.estimate_seconds(
        steps, full.small_train_sizes, full.small_seeds, full.small_epochs, 128
    )
    assert row["compute"] == expected and row["seconds"] > expected
    # stacked: the fixed cost per step is shared by the runs of a model
    runs = len(full.small_train_sizes) * full.small_seeds
    macs = estimates._macs("vit", "cifar10")
    assert steps["vit"] == estimates.gpu_step_seconds(macs, 128, runs)
    assert steps["vit"] < estimates.gpu_step_seconds(macs, 128, 1)

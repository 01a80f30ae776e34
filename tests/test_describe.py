"""Notebook 03's tables and sentences (protocols.describe, protocols.views) say what the runs
hold, whatever the numbers are."""

import types

import numpy as np
import pytest

from vitwatch import runs
from vitwatch.protocols import describe, views

K, N = 4, 40
LABELS = np.arange(N) % K


def _probs(acc: float, seed: int) -> np.ndarray:
    """(N, K) probabilities, right on the first ``acc`` share of the images."""
    rng = np.random.default_rng(seed)
    right = np.arange(N) < round(acc * N)
    preds = np.where(right, LABELS, (LABELS + 1) % K)
    p = np.full((N, K), 0.1) + rng.random((N, K)) * 0.01
    p[np.arange(N), preds] = 0.7
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def _run(protocol, backbone, acc, seeds=2, timings=None):
    s = [_probs(acc, j) for j in range(seeds)]
    out = runs.RunResult(
        protocol, backbone, s[0], LABELS, s[0], LABELS, timings=dict(timings or {})
    )
    out.extra["best_epoch"] = 2
    if seeds > 1:
        out.arrays = {"seed_test_probs": np.stack(s), "seed_val_probs": np.stack(s)}
    return out


@pytest.fixture
def results():
    t_a = {"backbone_forward_images": 100, "streamed_forward_images": 400}
    return {
        "Z_vit_s16": _run("Z", "vit_s16", 0.5, 1),
        "Z_resnet50": _run("Z", "resnet50", 0.5, 1),
        "A_vit_s16": _run("A", "vit_s16", 0.75, timings=t_a),
        "A_resnet50": _run("A", "resnet50", 0.5, timings=t_a),
        "B_vit_s16": _run("B", "vit_s16", 0.8, timings={"backbone_forward_images": 100}),
        "B_resnet50": _run("B", "resnet50", 0.9, timings={"backbone_forward_images": 100}),
    }


def test_tables_show_every_run_with_its_labels(results):
    z = describe.zero_shot_table(results)
    assert list(z.index) == ["ViT-S/16 (ours, .npz)", "ResNet-50"]
    assert list(z.columns) == ["validation top-1", "test top-1", "test top-5"]
    assert z["test top-1"].tolist() == [0.5, 0.5]
    acc = describe.accuracy_table(results)
    assert len(acc) == 6 and acc.index.names == ["protocol", "backbone"]
    assert acc.loc[("B", "ResNet-50"), "test top-1"] == pytest.approx(0.9)
    assert acc.loc[("A", "ResNet-50"), "seeds"] == 2
    comp = describe.compute_table(results)
    assert comp.loc[("A", "ResNet-50"), "if streamed"] == 400
    assert comp.loc[("B", "ResNet-50"), "if streamed"] == 100  # B: what it computed


def test_seed_table_only_for_the_seeds_backbones(results):
    t = describe.seed_table(results, ["vit_s16", "resnet50"])
    assert t.loc["ResNet-50", "seed: validation"] == 0.763
    assert t.loc["ViT-S/16 (ours, .npz)", "ours: epoch kept"] == 3  # 1-based
    assert len(describe.seed_table(results, ["bit_r50x1"])) == 0


def test_discussion_states_who_leads_and_the_pass_ratio(results):
    text = describe.discussion(results, "quick", False, {})
    assert text.startswith("In this run (quick profile):")
    assert "**A**: ViT-S/16 75.0 % vs ResNet-50 50.0 % test top-1: the ViT is ahead by 25.0" in text
    assert (
        "**B**: ViT-S/16 80.0 % vs ResNet-50 90.0 % test top-1: the ViT is behind by 10.0" in text
    )
    assert "the ViT is level by 0.0 points" in text  # Z
    assert "using 4.0x fewer backbone passes" in text and "**C**" not in text
    smoke = describe.discussion(results, "smoke", True, {"vit_s16_hub": "no hub here"})
    assert "meaningless" in smoke and smoke.endswith("- no hub here")


def test_setup_sentence():
    data = types.SimpleNamespace(train=[0] * 8, val=[0] * 2, test=[0] * 5)
    cfg = types.SimpleNamespace(
        img_size=64, head_epochs=3, head_lr=0.01, batch_size=16, augment=False
    )
    text = describe.describe_setup(data, cfg)
    assert text.startswith("Ours: 8 training / 2 validation / 5 test images at 64 px, 3 epochs")
    assert "augmentation off" in text


def test_eval_view_table_references_and_gaps():
    bb = {n: types.SimpleNamespace(name=n, img_size=64) for n in ("vit_s16", "resnet50")}
    study = {
        ("vit_s16", "squash", 64): _run("B", "vit_s16", 0.5),
        ("vit_s16", "native", 64): _run("B", "vit_s16", 0.75),
        ("resnet50", "squash", 64): _run("B", "resnet50", 0.5),
        ("resnet50", "native", 64): _run("B", "resnet50", 0.5),
        ("vit_s16", "native", 112): _run("B", "vit_s16", 1.0),
    }
    rows, gaps = views.study_table(study, bb, LABELS, 64, 200, 0)
    assert [r["reference"] for r in rows] == [
        "",
        "squash, 64 px",
        "",
        "squash, 64 px",
        "native, 64 px",
    ]
    assert rows[0]["minus reference, points [95 % CI]"] == "(reference)"
    assert rows[1]["minus reference, points [95 % CI]"].startswith("+25.0 [")
    assert rows[1]["view"] == "native (crop 0.9, bicubic)"
    assert rows[4]["minus reference, points [95 % CI]"].startswith("+25.0 [")
    assert rows[0]["test top-1 % [95 % CI]"].startswith("50.0 [")
    assert gaps[0].startswith("squash +0.0 [") and gaps[1].startswith("native +25.0 [")
    text = views.describe_study(gaps, "native", 2)
    assert "ViT-S/16 minus ResNet-50" in text and "The main results use the `native` view." in text
    assert views.describe_study([], "squash", 1).startswith("The main results use the `squash`")


def test_every_backbone_has_its_own_colour():
    """03's comparison figures plot the backbones together (full: with vit_s16_i21k)."""
    from vitwatch import catalogue, plotting

    colours = [plotting.color_for(n) for n in catalogue.BACKBONES]
    assert len(set(colours)) == len(colours)

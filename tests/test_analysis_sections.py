"""Notebook 04's sections, each computed and summarised in one call (``analysis.<module>
.section``): what they show follows the store (choices on validation, sections that cannot be
made say so), and ``analysis.json`` holds every section's numbers."""

import dataclasses
import json
import types

import numpy as np
import pytest
from fake_results import make_store
from test_gradcam import _tiny_cnn

from vitwatch import analysis, seeds
from vitwatch.data import imagenet_overlap

N_BOOT = 50


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    return analysis.store.load(make_store(root / "results", root / "images"))


@pytest.fixture(scope="module")
def acc(store):
    return analysis.accuracy.results(store, N_BOOT, 0)


def test_results_and_paired_sections(store, acc):
    pd_table = seeds.results_table(store, N_BOOT, 0)
    assert acc.table.equals(pd_table) and len(acc.tables) == 1
    assert "2 head seeds" in acc.note and "Against the seed report" in acc.sentence
    assert "test images that no choice has seen" in acc.sentence  # the split, after it
    assert "best validation accuracy is ViT-S/16 (ours) with protocol C" in acc.best
    pairs = analysis.accuracy.paired(store, "vit_s16", "resnet50", N_BOOT, 0)
    assert set(pairs.table["protocol"]) == {"A", "B", "C", "Z"} and len(pairs.tables) == 1
    assert len(pairs.verdicts) == 4 and pairs.sentence.count("\n- ") == 4
    none = analysis.accuracy.paired(store, "vit_s16", "bit_r50x1", N_BOOT, 0)  # BiT never ran
    assert none.tables == [] and none.verdicts == [] and none.record == {"paired": []}
    assert none.sentence == "No protocol ran for both backbones."


def test_power_section(store):
    pw = analysis.power.section(store, "vit_s16", "resnet50")
    a = np.mean(store.correct("A_vit_s16") != store.correct("A_resnet50"))
    assert pw.n == 48 and pw.discordance["A"] == pytest.approx(a)
    assert pw.sentence.startswith("This run has 48 test images.") and len(pw.tables) == 1
    rec = pw.record["power"]
    assert rec["min_detectable"] == pw.min_detectable and rec["table"][0]["test set"]


def test_calibration_section_skips_backbones_that_did_not_run(store):
    cal = analysis.calibration.section(store, ("vit_s16", "resnet50", None), N_BOOT, 0)
    assert cal.chosen == {"vit_s16": "C_vit_s16", "resnet50": store.best_run("resnet50")}
    assert list(cal.diagrams) == ["ViT-S/16 (ours) (C_vit_s16)", "ResNet-50 (C_resnet50)"]
    assert cal.sentence.startswith("C_vit_s16: ECE") and "; C_resnet50: ECE" in cal.sentence
    assert len(cal.record["calibration"]) == 2 * len(analysis.calibration.inputs(store))


def test_errors_section_reads_the_frozen_backbone_runs(store):
    err = analysis.errors.section(store, "vit_s16", "resnet50", n_errors=3)
    # C is the best ViT run on validation, but the errors are those of a frozen backbone
    assert store.best_run("vit_s16") == "C_vit_s16" and err.vit_run in ("A_vit_s16", "B_vit_s16")
    assert err.note == f"Runs analysed: **{err.vit_run}** and **{err.cnn_run}**."
    assert err.cm.sum() == 48 and sorted(err.order) == list(range(6))
    assert len(err.confident[0]) == len(err.confident[1]) <= 3
    table = err.tables[0].data
    assert list(table["images"]) == [n for _, _, n in err.pairs]
    assert "The hardest breeds for the ViT" in err.sentence
    only_c = analysis.store.Store(
        store.dataset, {r: v for r, v in store.runs.items() if r.startswith("C_")}
    )
    assert analysis.errors.section(only_c, "vit_s16", "resnet50").vit_run == "C_vit_s16"  # else C


def test_localisation_section_with_the_vit_alone(store):
    pos = np.arange(6)
    images = store.images(pos, 32)
    rollout = np.random.default_rng(0).uniform(size=(6, 4, 4))
    loc = analysis.localisation.section(store, pos, images, rollout, [None], 4, N_BOOT, 0, n_show=2)
    assert loc.grid == (4, 4) and set(loc.maps) == {"ViT rollout"}
    assert set(loc.summary) == {"ViT rollout", "centre prior", "uniform"}
    shown, boxes, maps = loc.examples
    assert shown.shape == (2, 32, 32, 3) and len(boxes) == 2
    assert list(maps) == ["ViT rollout", "centre prior"] and maps["centre prior"][0].shape == (4, 4)
    # the boxes of the examples are on the 32-pixel input the ViT saw
    w, h = store.image_sizes([0])[0]
    np.testing.assert_allclose(boxes[0], store.boxes([0])[0] * [32 / w, 32 / h, 32 / w, 32 / h])
    assert "The ViT rollout puts" in loc.sentence and "common 4 x 4 grid" in loc.note
    assert list(loc.record["localisation"]["paired"][0])[:2] == ["map", "n"]


def test_box_size_section_and_its_conclusion(store):
    sizes = analysis.box_size.section(store, "vit_s16", "resnet50", N_BOOT, 0)
    assert sizes.table["n"].sum() == 2 * 48 and sizes.gaps["n"].sum() == 48
    assert sizes.conclusion == ["Bounding boxes: " + sizes.sentence]
    runs = analysis.store.select_runs(store, ("vit_s16", "resnet50"))
    assert set(sizes.table["run"]) == set(runs.values())  # chosen on validation
    alone = analysis.box_size.section(store, "vit_s16", "bit_r50x1", N_BOOT, 0)
    assert alone.gaps is None and alone.conclusion == []
    assert alone.record["box_size"]["paired_gaps"] == []
    assert "Too few backbones" in alone.sentence


def test_cost_section_with_and_without_cost(store, acc):
    costs = analysis.cost.section(store, acc.table, "vit_s16", "resnet50")
    assert len(costs.tables) == 1 and costs.note.startswith("Measured on: ")
    assert set(costs.plotted["backbone"]) == set(store.cost) and "x the MACs" in costs.sentence
    bare = analysis.cost.section(
        dataclasses.replace(store, cost={}), acc.table, "vit_s16", "resnet50"
    )
    assert bare.tables == [] and bare.note == analysis.cost.NO_COST and not len(bare.plotted)
    assert bare.record == {"cost": {}} and bare.sentence == "No cost figures to compare."


def test_leakage_and_matched_sections(store, acc):
    named = [f"/data/n0208{c:04d}_{i}.jpg" for i, c in enumerate(store.labels)]
    st = dataclasses.replace(store, dataset={**store.dataset, "test_paths": named})
    ids = frozenset(imagenet_overlap.image_id(p) for p in named[::3])
    train = imagenet_overlap.TrainList(ids, len(ids), 6, "a test list")
    leak = analysis.leakage.section(st, train, False, acc.table, "vit_s16", N_BOOT, 0)
    assert leak.seen.sum() == 16 and leak.record["n_seen"] == 16
    assert "16 of the 48 test images" in leak.overlap and "(a test list)" in leak.overlap
    assert len(leak.breeds.data) == 6 and len(leak.tables) == 1
    assert set(leak.zero["protocol"]) == {"Z", "C"} and "minus ResNet-50" in leak.by_cnn
    assert leak.zero_sentence.startswith("ResNet-50 reaches")
    match = analysis.matched.section(st, acc.table, leak.seen, N_BOOT, 0)
    assert {"ViT-S/16 (ours)", "ResNet-50"} <= set(match.backbones["backbone"])  # labels
    assert set(match.pairs["part"]) == {"all", "unseen"} and len(match.tables) == 1
    assert len(match.verdicts) == 3  # A, B and C, each with its own conclusion


def test_cka_section_names_its_matrices(store):
    from vitwatch.models import vit

    layers = ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    vit_bb = types.SimpleNamespace(
        vit=vit.build("testing", num_classes=0, img_size=32),
        preprocess=lambda z: z / 127.5 - 1,
        img_size=32,
    )
    cnn = types.SimpleNamespace(
        name="resnet50",
        model=_tiny_cnn(),
        preprocess=lambda z: z,
        img_size=32,
        extra={"cka_layers": layers},
    )
    cka = analysis.representations.section(store, vit_bb, cnn, None, 8, 4, 1)
    d = vit_bb.vit.depth
    assert (
        cka.cnn == "resnet50"
        and cka.n_images == 8
        and cka.matrices["resnet50"].shape
        == (
            d + 4,
            d + 4,
        )
    )
    assert cka.vit_layers == [f"block {i + 1}" for i in range(d)]
    assert "No CNN pre-trained on the ViT's data" in cka.matched_sentence
    assert set(cka.record) == {"cka"} and cka.record["cka"]["layers"][-1] == "stage 5"
    both = dataclasses.replace(
        cka,
        matrices={**cka.matrices, "bit_r50x1": cka.matrices["resnet50"] + 0.1},
        layers={**cka.layers, "bit_r50x1": ["block 1"] * 4},
        matched="bit_r50x1",
    )
    assert "is closer to" in both.matched_sentence and both.record["cka_bit"]["backbone"] == (
        "bit_r50x1"
    )


def test_summary_merges_every_section_record(tmp_path, store, acc):
    from vitwatch import results

    out = results.ResultsStore(tmp_path)
    dist = analysis.vit_attention.Distances(np.ones((2, 3)), 4, 8)
    pw = analysis.power.section(store, "vit_s16", "resnet50")
    written = analysis.store.save_summary(out, acc, pw, dist)
    assert list(written) == ["results", "power", "attention_distance"]
    on_disk = json.loads((tmp_path / "analysis.json").read_text())
    assert on_disk["attention_distance"] == [[1.0] * 3] * 2
    assert len(on_disk["results"]) == len(acc.table)


def test_bullets_leave_out_sentences_with_nothing_to_say():
    assert analysis.text.bullets(["a", None, "", "b"]) == "\n\n- a\n- b"

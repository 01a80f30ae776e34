"""Matched pairs: the backbone table and the conclusion drawn from paired differences."""

import numpy as np
import pandas as pd
import pytest
from test_leakage import _store  # noqa: E402

from vitwatch import catalogue
from vitwatch.analysis import matched


def _three(rng, n=300):
    return _store(
        {
            ("B", "vit_s16"): rng.random(n) < 0.85,
            ("B", "resnet50"): rng.random(n) < 0.6,
            ("B", "bit_r50x1"): rng.random(n) < 0.8,
        }
    )


def test_catalogue_pairs_name_known_backbones():
    for vit, cnn, _ in catalogue.PAIRS:
        assert catalogue.facts(vit).family == "ViT" and catalogue.facts(cnn).family == "CNN"
        # a matched pair holds the pre-training data equal; the seed's does not
        same = catalogue.facts(vit).pretraining_key == catalogue.facts(cnn).pretraining_key
        assert same == ("same pre-training" in _)


def test_pair_differences_are_paired_and_split():
    rng = np.random.default_rng(1)
    store = _three(rng)
    seen = np.arange(300) < 100
    d = matched.pair_differences(store, seen, n_boot=200)
    assert set(zip(d["cnn"], d["part"])) == {
        ("resnet50", "all"),
        ("resnet50", "unseen"),
        ("bit_r50x1", "all"),
        ("bit_r50x1", "unseen"),
    }
    r = d[(d["cnn"] == "bit_r50x1") & (d["part"] == "unseen")].iloc[0]
    expect = store.correct("B_vit_s16")[~seen].mean() - store.correct("B_bit_r50x1")[~seen].mean()
    assert r["diff"] == pytest.approx(expect) and r["lo"] <= r["diff"] <= r["hi"]
    text = matched.conclusion(d, "B", box_sentence="Boxes add nothing.")
    assert "of the seed's lead remains" in text and text.endswith("Boxes add nothing.")
    share = (
        d[(d.cnn == "bit_r50x1") & (d.part == "all")]["diff"].iloc[0]
        / d[(d.cnn == "resnet50") & (d.part == "all")]["diff"].iloc[0]
    )
    assert f"{100 * share:.0f} %" in text


def test_conclusion_without_matched_cnn_says_so():
    rng = np.random.default_rng(2)
    store = _store(
        {("A", "vit_s16"): rng.random(50) < 0.8, ("A", "resnet50"): rng.random(50) < 0.5}
    )
    text = matched.conclusion(matched.pair_differences(store, None, n_boot=100), "A")
    assert "cannot be separated" in text
    assert "cannot be tested" in matched.conclusion(pd.DataFrame(), "A")


def test_backbone_table_rows():
    rng = np.random.default_rng(3)
    store = _three(rng)
    store.cost = {"vit_s16": {"params": 22_050_664, "gmacs": 4.61}}
    table = pd.DataFrame(
        [
            {"backbone": m["backbone"], "protocol": m["protocol"], "top1": store.correct(r).mean()}
            for r, (m, _) in store.runs.items()
        ]
    )
    bt = matched.backbone_table(store, table).set_index("backbone")
    assert bt.loc["vit_s16", "params (M)"] == pytest.approx(22.050664)
    assert "80.46" in bt.loc["vit_s16", "ImageNet-1k top-1 % (published)"]
    assert np.isnan(bt.loc["resnet50", "GMACs"]) and np.isnan(
        bt.loc["bit_r50x1", "Dogs top-1 % (A)"]
    )

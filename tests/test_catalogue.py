"""The catalogue is the one place a backbone is declared: a row added there, named in the
profile's ``backbones``, is built by the registry, run by notebook 03's protocols, and found by
notebook 04's tables and run selection, with its own label and colour."""

import dataclasses

import pytest

from vitwatch import analysis, catalogue, config, plotting, protocols, results, seeds
from vitwatch.data import stanford_dogs
from vitwatch.models import registry


def test_rows_are_complete_and_consistent():
    from vitwatch import downloads
    from vitwatch.models import resnetv2, vit

    variants = {"vit": vit.VARIANTS, "hub": vit.VARIANTS, "bit": resnetv2.VARIANTS}
    for name, row in catalogue.BACKBONES.items():
        assert row.name == name and row.label and row.colour.startswith("#")
        assert row.family in ("ViT", "CNN") and row.resource in downloads.RESOURCES
        assert (not row.checkpoint or row.checkpoint in config.PARAMS) and set(
            row.protocols
        ) <= set(catalogue.PROTOCOLS)
        assert row.variant in variants.get(row.builder, {"50": None})
        assert (row.in1k_top1 is None) == (row.in1k_source == "no ImageNet-1k head")
        assert row.gmacs > 0
    colours = [r.colour for r in catalogue.BACKBONES.values()]
    assert len(set(colours)) == len(colours)
    seeds_drawn = [(r.builder == "bit", r.stand_in_seed) for r in catalogue.BACKBONES.values()]
    assert len(set(seeds_drawn)) >= len(catalogue.BACKBONES) - 2  # the route and ResNet share 0
    for part, names in catalogue.ROLES.items():
        assert all(n in catalogue.BACKBONES for n in names), part
    for vit_name, cnn, _ in catalogue.PAIRS:
        assert (catalogue.facts(vit_name).family, catalogue.facts(cnn).family) == ("ViT", "CNN")


def test_profiles_choose_their_backbones():
    smoke, quick, full = (config.from_profile(p) for p in config.PROFILES)
    names, skipped = catalogue.for_profile(smoke)
    assert names == ["vit_s16", "resnet50", "vit_s16_hub", "bit_r50x1", "bit_r50x1_i21k"]
    assert list(skipped) == ["vit_s16_i21k"]  # vit_i21k_checkpoint: ""
    assert skipped["vit_s16_i21k"].startswith("vit_i21k_checkpoint is empty")
    assert catalogue.for_profile(quick)[0] == ["vit_s16", "resnet50", "vit_s16_hub", "bit_r50x1"]
    assert catalogue.for_profile(full)[0][-1] == "vit_b16" and not catalogue.for_profile(full)[1]
    no_hub = config.from_profile("smoke", hub_handle="")
    assert "vit_s16_hub" in catalogue.for_profile(no_hub)[1]
    with pytest.raises(ValueError, match="unknown 'vit_l16'.*known: vit_s16"):
        catalogue.for_profile(config.from_profile("smoke", backbones=["vit_l16"]))
    assert catalogue.role("vit", ["resnet50", "vit_s16_hub"]) == "vit_s16_hub"
    assert catalogue.role("matched_cnn", ["vit_s16"]) is None


def test_vit_b16_is_one_row_plus_one_profile_line():
    """No parameter of its own: the published file in full, a stand-in under smoke, and the
    preflight asks for its download in full only."""
    from pathlib import Path

    import yaml

    from vitwatch.models import registry

    row = catalogue.BACKBONES["vit_b16"]
    assert row.checkpoint == "" and not any("vit_b16" in k for k in config.PARAMS)
    full, smoke = config.from_profile("full"), config.from_profile("smoke")
    assert catalogue.weights(row, full)[1] == "vit_b16_i21k_ft_i1k" == row.resource
    assert catalogue.weights(row, smoke)[1] == "generated"
    assert row.resource in registry.required_resources(full)
    smoke_b16 = config.from_profile("smoke", backbones=["vit_s16", "vit_b16"])
    assert row.resource not in registry.required_resources(smoke_b16)
    profiles = Path(config.project_root()) / "notebooks" / "profiles"
    lines = {p: (profiles / f"{p}.yaml").read_text() for p in config.PROFILES}
    assert [p for p, text in lines.items() if "vit_b16" in text] == ["full"]
    assert sum("vit_b16" in ln for ln in lines["full"].splitlines()) == 1
    assert "vit_b16" in yaml.safe_load(lines["full"])["backbones"]


def test_a_backbone_added_in_one_place_runs_in_03_and_is_read_by_04(tmp_path, monkeypatch):
    """One catalogue row (a copy of vit_s16's, other stand-in weights) and its name in the
    profile: 03's protocol loop runs it through every protocol its row lists, and 04's results
    table, run selection, labels and colours find it. Fails if any of them holds a list of
    backbone names of its own."""
    row = dataclasses.replace(
        catalogue.BACKBONES["vit_s16"],
        name="vit_new",
        label="ViT (new)",
        long_label="ViT (new, .npz)",
        colour="#000000",
        seed_val=None,
        stand_in_seed=7,
    )
    monkeypatch.setitem(catalogue.BACKBONES, row.name, row)  # the one place
    cfg = config.from_profile(
        "smoke",
        cache_dir=str(tmp_path / "cache"),
        results_dir=str(tmp_path / "results"),
        figures_dir=str(tmp_path / "figures"),
        img_size=32,
        backbones=["vit_s16", "vit_new"],
        head_seeds=1,
        head_epochs=1,
        probe_epochs=5,
        probe_views=1,
    )
    # notebook 03: the profile's backbones, built, then each protocol on the ones it names
    names, _ = catalogue.for_profile(cfg)
    backbones, _ = registry.backbones(names, cfg)
    store = results.ResultsStore(cfg.results_dir, cfg.profile, cfg.seed)
    data = stanford_dogs.load(cfg)
    store.save_dataset(data)
    ran = {}
    for letter in ("Z", "A", "B", "C"):
        chosen = protocols.backbones_for(letter, backbones, cfg)
        ran.update(
            protocols.run_each(
                letter, chosen, backbones, data, cfg, store, probes=ran, log=lambda m: None
            )
        )
    assert {f"{p}_vit_new" for p in row.protocols} <= set(ran)
    # notebook 04: the stored runs, the results table and the run chosen on validation
    st = analysis.store.load(results.ResultsStore(cfg.results_dir, cfg.profile))
    assert sorted(st.names("vit_new")) == sorted(f"{p}_vit_new" for p in row.protocols)
    table = seeds.results_table(st, 20, cfg.seed)
    assert "vit_new" in set(table["backbone"])
    chosen = analysis.store.select_runs(st, table["backbone"].unique())
    assert chosen["vit_new"] in st.names("vit_new")
    assert analysis.store.compared_backbones(st)[0] == "vit_s16"
    assert analysis.text.label("vit_new") == "ViT (new)"
    assert plotting.color_for("vit_new") == "#000000"

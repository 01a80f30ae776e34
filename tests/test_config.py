"""Profile and parameter validation: unknown key or wrong type -> ValueError naming the key."""

import types

import pytest

from vitwatch import config


def test_every_profile_validates_and_covers_the_vocabulary():
    for name in config.PROFILES:
        raw = config.load_profile(name)
        assert raw["profile"] == name
        missing = {k for k in set(config.PARAMS) - set(raw) if not k.startswith("synthetic_")}
        missing -= {"cache_dir", "results_dir", "figures_dir", "dogs_archives_dir"}
        assert not missing, f"{name}.yaml lacks {sorted(missing)}"


def test_validate_accepts_known_names_and_fills_defaults():
    before = config.snapshot({"np": object()})
    ns = {"np": object(), "profile": "quick", "img_size": 224, "head_lr": 1}
    cfg = config.validate(ns, before)
    assert cfg.profile == "quick" and cfg.img_size == 224
    assert cfg.head_lr == 1.0 and isinstance(cfg.head_lr, float)  # int accepted for float
    assert cfg.seed == config.PARAMS["seed"].default
    assert cfg.results_dir.endswith("reports/quick/results")


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="unknown parameter 'img_sise'"):
        config.validate({"img_sise": 224}, frozenset())


def test_wrong_type_is_named():
    with pytest.raises(ValueError, match="'img_size' must be int, got str"):
        config.validate({"img_size": "224"}, frozenset())
    with pytest.raises(ValueError, match="'augment' must be bool"):
        config.validate({"augment": 1}, frozenset())
    with pytest.raises(ValueError, match="'seed' must be int, got bool"):
        config.validate({"seed": True}, frozenset())


def test_bad_choice_is_named():
    with pytest.raises(ValueError, match="'dataset' must be one of"):
        config.validate({"dataset": "imagenet"}, frozenset())


def test_names_before_the_parameters_cell_are_ignored():
    ns = {"np": types.ModuleType("np"), "helper": lambda: 1, "_private": 3}
    before = config.snapshot({"np": 1})
    cfg = config.validate({**ns, "seed": 3}, before)
    assert cfg.seed == 3


def test_profile_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("profile: smoke\nbatch_sise: 3\n")
    with pytest.raises(ValueError, match=r"mine\.yaml: unknown parameter 'batch_sise'"):
        config.load_profile(bad)
    with pytest.raises(ValueError, match="profile file not found"):
        config.load_profile("nonexistent")


def test_notebooks_declare_only_known_parameters():
    """Each notebook's parameters cell holds known names with values of the right type."""
    import ast

    import nbformat

    books = sorted((config.project_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert books, "no notebooks found"
    for path in books:
        nb = nbformat.read(str(path), as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        for node in ast.parse(cells[0].source).body:
            assert isinstance(node, ast.Assign), (
                f"{path.name}: parameters cell holds only assignments"
            )
            name = node.targets[0].id
            config.check(name, ast.literal_eval(node.value), source=path.name)
        assert not any(
            c.get("outputs") or c.get("execution_count") for c in nb.cells if c.cell_type == "code"
        ), f"{path.name} is committed with outputs (run `make strip`)"


def test_one_source_of_parameters():
    """PARAMS defaults, smoke.yaml and every notebook's parameters cell hold the same values."""
    import ast
    from pathlib import Path

    import nbformat

    smoke = config.load_profile("smoke")
    for k, v in smoke.items():
        assert config.PARAMS[k].default == v, f"PARAMS[{k!r}] default differs from smoke.yaml"
    for path in sorted(Path(config.__file__).parents[2].glob("notebooks/[0-9]*.ipynb")):
        cells = [
            c for c in nbformat.read(path, 4).cells if "parameters" in c.metadata.get("tags", [])
        ]
        assert len(cells) == 1, f"{path.name}: one parameters cell expected"
        for node in ast.parse(cells[0].source).body:
            name, value = node.targets[0].id, ast.literal_eval(node.value)
            assert value == config.PARAMS[name].default, (
                f"{path.name}: {name} = {value!r}, PARAMS/smoke.yaml say "
                f"{config.PARAMS[name].default!r}"
            )


def test_one_predicate_for_the_stand_in_run():
    """cfg.stand_in: true exactly when the data are the generated stand-in (smoke), whatever
    the profile is called; the notebooks and the report's banner read it."""
    smoke, quick, full = (config.from_profile(p) for p in config.PROFILES)
    assert smoke.stand_in and not quick.stand_in and not full.stand_in
    assert config.from_profile("quick", dataset="synthetic").stand_in
    assert not config.from_profile("smoke", dataset="stanford_dogs").stand_in
    assert config.validate({}).stand_in  # a notebook opened alone: smoke defaults

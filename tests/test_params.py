from __future__ import annotations

import json

import pytest

from resemote_lib import paths
from resemote_lib.params import (
    CLEAN_DATA_PROTOCOLS,
    PROTOCOLS,
    TrainConfig,
    from_notebook,
    load_params,
    protocol_deviations,
    resolve,
    resolved_values,
)

PARAM_FILES = sorted(p for p in paths.PARAMS.glob("*.yaml") if not p.name.startswith("_"))

# What each params file runs, written out by hand from the files' own comments (not read from them):
# a file whose dataset or protocol changes, directly or through its `base:` chain, fails here until
# this table says so too, and a new params file fails until it is added (files named _*.yaml are
# bases, never run alone).
DATASET_AND_PROTOCOL = {
    "ablation_affectnet.yaml": ("affectnet", "clean"),
    "ablation_fer2013.yaml": ("fer2013", "clean"),
    "ablation_fer2013_cpu.yaml": ("fer2013", "cpu_budget"),
    "ablation_rafdb.yaml": ("rafdb", "clean"),
    "affectnet.yaml": ("affectnet", "paper"),
    "affectnet_clean.yaml": ("affectnet", "clean"),
    "affectnet_reference.yaml": ("affectnet", "reference"),
    "demo.yaml": ("synthetic", "demo"),
    "fer2013.yaml": ("fer2013", "paper"),
    "fer2013_clean.yaml": ("fer2013", "clean"),
    "fer2013_cpu.yaml": ("fer2013", "cpu_budget"),
    "fer2013_reference.yaml": ("fer2013", "reference"),
    "rafdb.yaml": ("rafdb", "paper"),
    "rafdb_clean.yaml": ("rafdb", "clean"),
    "rafdb_reference.yaml": ("rafdb", "reference"),
    "smoke.yaml": ("synthetic", "demo"),
}


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_params_file_loads(path):
    assert path.name in DATASET_AND_PROTOCOL, f"{path.name} is new: add its (dataset, protocol) to DATASET_AND_PROTOCOL"
    cfg = load_params(path)
    assert (cfg.dataset, cfg.protocol) == DATASET_AND_PROTOCOL[path.name], path.name


def test_the_table_of_params_files_lists_every_file_and_no_other():
    assert sorted(DATASET_AND_PROTOCOL) == [p.name for p in PARAM_FILES]


def test_protocol_presets_are_exact():
    fer = load_params(paths.PARAMS / "fer2013.yaml")
    assert (fer.batch_size, fer.epochs, fer.optimizer, fer.scheduler, fer.plateau_factor) == (16, 80, "sgd", "plateau", 0.1)
    assert fer.image_size == 64 and fer.max_train_items is None and fer.selection == "last"
    ref = load_params(paths.PARAMS / "fer2013_reference.yaml")
    assert (ref.lr, ref.momentum, ref.weight_decay, ref.scheduler, ref.early_stopping_patience) == (0.001, 0.9, 1e-4, "none", 15)
    clean = load_params(paths.PARAMS / "rafdb_clean.yaml")
    assert clean.selection == "best_val" and clean.scheduler == "plateau" and clean.dataset == "rafdb"
    assert load_params(paths.PARAMS / "affectnet.yaml").test_per_class == 500


def test_the_paper_protocols_and_the_cpu_budget_train_the_lean_form_of_the_network():
    """Lean ResEmoteNet is the paper's network at the protocol's input size (tests/test_model.py
    proves the equivalence): every protocol that trains ResEmoteNet trains it."""
    for name in ("fer2013.yaml", "fer2013_reference.yaml", "fer2013_clean.yaml", "rafdb.yaml", "fer2013_cpu.yaml"):
        assert load_params(paths.PARAMS / name).model == "resemotenet_lean", name
    cpu = load_params(paths.PARAMS / "fer2013_cpu.yaml")
    assert (cpu.protocol, cpu.dataset, cpu.image_size, cpu.optimizer, cpu.scheduler) == (
        "cpu_budget", "fer2013", 48, "adamw", "onecycle")
    assert cpu.max_train_items is None and cpu.label_smoothing > 0
    assert "cpu_budget" in CLEAN_DATA_PROTOCOLS  # it trains on the deduplicated data, as `clean`


@pytest.mark.parametrize(("text", "message"), [
    ("protocol: clean\nepocs: 3\n", "unknown config key 'epocs'"),
    ("protocol: clean\nepochs: three\n", "epochs must be int, got 'three' \\(str\\)"),
    ("protocol: magic\n", "protocol='magic' is not one of"),
    ("epochs: 0\n", "epochs must be >= 1"),
    ("- a\n- b\n", "expected a mapping"),
    ("epochs: [1\n", "not valid YAML"),
])
def test_bad_params_are_rejected_with_the_reason(tmp_path, text, message):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_params(f)


def test_missing_params_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")


def test_overriding_a_paper_protocol_value_warns():
    with pytest.warns(UserWarning, match="no longer follows"):
        resolve({"protocol": "paper", "batch_size": 64})


def test_base_chain_and_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("protocol: clean\nseed: 3\nepochs: 5\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nepochs: 7\n")
    with pytest.warns(UserWarning, match="overrides the 'clean' protocol's {'epochs': 7}"):
        cfg = load_params(tmp_path / "b.yaml", run_name="x")
    assert (cfg.seed, cfg.epochs, cfg.run_name, cfg.lr) == (3, 7, "x", PROTOCOLS["clean"]["lr"])


def test_ints_are_accepted_for_floats_and_config_is_frozen():
    cfg = resolve({"lr": 1})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    with pytest.raises(AttributeError):
        cfg.lr = 2.0  # type: ignore[misc]
    assert TrainConfig().to_dict()["run_name"] == "smoke"


def test_defaults_are_the_smoke_preset():
    assert not protocol_deviations(TrainConfig())
    assert resolve({}) == TrainConfig() and TrainConfig().protocol == "smoke"


def test_paper_protocols_run_fp32_and_the_reference_stops_after_more_than_15():
    for name in ("paper", "reference"):
        assert resolve({"protocol": name}).amp is False
    assert resolve({"protocol": "clean"}).amp is None  # mixed precision where native (see device.choose_precision)
    assert resolve({"protocol": "reference"}).early_stopping_patience == 15


@pytest.mark.parametrize(("values", "message"), [
    ({"lr": -0.1}, r"lr must be > 0"), ({"lr": float("nan")}, r"lr must be a finite number"),
    ({"lr": 0}, r"lr must be > 0"), ({"weight_decay": -1e-4}, r"weight_decay must be >= 0"),
    ({"momentum": 1.5}, r"momentum must be in \[0, 0.999\]"), ({"image_size": 7}, r"image_size must be in \[8, 1024\]"),
    ({"seed": -1}, r"seed must be in \[0, "), ({"synthetic_n_train": -5}, r"synthetic_n_train must be >= 2"),
    ({"batch_size": 1}, r"batch_size must be >= 2"), ({"plateau_factor": 1.0}, r"plateau_factor must be in \(0, 0.999\]"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, r"val_fraction \+ test_fraction must be below 1"),
    ({"run_name": "../x"}, r"'../x' is not a plain folder name"), ({"run_name": "/abs/x"}, "not a plain folder name"),
    ({"run_name": "paper"}, r"'paper' is reserved"), ({"checkpoint_every": 0}, "checkpoint_every must be >= 1"),
])
def test_out_of_range_values_are_rejected_before_anything_runs(values, message):
    with pytest.raises(ValueError, match=message):
        resolve(values)


def test_numbers_in_strings_are_read_for_float_keys():
    # `lr=1e-3` on a command line, or unquoted in YAML 1.1, arrives as the string "1e-3".
    assert resolve({"lr": "1e-3"}).lr == pytest.approx(0.001)
    with pytest.raises(ValueError, match=r"lr must be float, got 'fast' \(str\)"):
        resolve({"lr": "fast"})
    with pytest.raises(ValueError, match=r"epochs must be int, got '3' \(str\)"):
        resolve({"epochs": "3"})


def test_base_cycle_and_malformed_base_are_one_clear_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nepochs: 2\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match=r"base: files form a cycle \(a.yaml -> b.yaml -> a.yaml\)"):
        load_params(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ValueError, match=r"c.yaml: base must be one file name"):
        load_params(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"missing.yaml \(the base of .*d.yaml\)"):
        load_params(tmp_path / "d.yaml")


def test_notebook_parameters_resolve_like_the_params_file():
    # papermill -f params/fer2013.yaml injects the file's own keys, `base` included, unresolved.
    injected = {"base": "_real.yaml", "dataset": "fer2013", "protocol": "paper", "run_name": "fer2013_paper",
                "epochs": None, "lr": None, "device": None}
    cfg, extra = from_notebook(injected)
    assert cfg == load_params(paths.PARAMS / "fer2013.yaml")
    assert extra["download"] is True and extra["notebooks"] == ["00_data", "01_train", "02_evaluate", "04_explore"]
    # A JupyterLab user who only sets the protocol gets its whole preset.
    cfg, _ = from_notebook({"protocol": "paper", "epochs": None, "max_train_items": None})
    assert not protocol_deviations(cfg) and (cfg.epochs, cfg.batch_size, cfg.max_train_items) == (80, 16, None)
    cfg, extra = from_notebook({})
    assert cfg == TrainConfig() and extra["download"] is False and extra["seeds"] == [0, 1]
    # The pipeline passes the resolved config whole: a null the file sets stays null in the notebook,
    # where the notebook's own None would mean "not set" (and bring back the preset's 15).
    with pytest.warns(UserWarning, match="no longer follows"):
        piped = resolve({"protocol": "reference", "early_stopping_patience": None})
    cfg, _ = from_notebook({"config_json": json.dumps(piped.to_dict()), "protocol": "reference",
                            "early_stopping_patience": None})
    assert cfg == piped and cfg.early_stopping_patience is None
    with pytest.raises(ValueError, match=r"variants \['resnet'\] unknown"):
        from_notebook({"variants": ["cnn", "resnet"]})


def test_resolved_values_include_notebook_keys():
    values = resolved_values(paths.PARAMS / "fer2013.yaml")
    assert values["download"] is True and values["epochs"] == 80
    with pytest.raises(ValueError, match="download must be bool"):
        resolved_values(paths.PARAMS / "smoke.yaml", download="yes")


# --- issue 24: what a params file may not do ---------------------------------------------

# A few hundred bytes that a YAML loader without limits expands to 9**9 list items (the "billion laughs").
ALIAS_BOMB = "\n".join([
    "lr:", '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *(f"  - &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
]) + "\n"


@pytest.mark.parametrize(("text", "message"), [
    ("protocol: clean\nepochs: 3\nseed: 1\nepochs: 5\n", r"p\.yaml, line 4: key 'epochs' appears twice \(first on line 2\)"),
    ("variants: [cnn]\nseeds: [0]\nseeds: [1]\n", r"p\.yaml, line 3: key 'seeds' appears twice \(first on line 2\)"),
])
def test_a_key_given_twice_is_an_error_naming_it_and_its_lines(tmp_path, text, message):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_params(f)


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    import time

    f = tmp_path / "bomb.yaml"
    f.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 500
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"bomb\.yaml, line 3: YAML aliases \(\*name\) are not allowed"):
        load_params(f)
    assert time.perf_counter() - t0 < 2
    f.write_text("defaults: &d 3\nepochs: *d\n")  # a harmless alias is refused as well: no params file needs one
    with pytest.raises(ValueError, match=r"line 2: YAML aliases"):
        load_params(f)


@pytest.mark.parametrize(("values", "cut"), [
    ({"protocol": "x" * 2_000_000}, r"protocol='xxx+\.\.\. \(2,000,002 characters\) is not one of"),
    ({"lr": "y" * 2_000_000}, r"lr must be float, got 'yyy+\.\.\. \(2,000,002 characters\)"),
    ({"z" * 2_000_000: 1}, r"unknown config key 'zzz+\.\.\. \(2,000,002 characters\)"),
    ({"run_name": "../" * 700_000}, r"'(\.\./)+\.*\.\.\. \(2,100,002 characters\) is not a plain folder name"),
    ({"image_size": 10**4000}, r"image_size must be in \[8, 1024\], got 10+\.\.\. \(4,001 characters\)"),
    ({"image_size": 10**6000}, r"image_size must be in \[8, 1024\], got an integer of 19,932 bits"),
])
def test_error_messages_echo_at_most_a_few_hundred_characters_of_a_value(values, cut):
    with pytest.raises(ValueError, match=cut) as e:
        resolve(values)
    assert len(str(e.value)) < 1000


@pytest.mark.parametrize(("text", "want"), [("off", "off"), ("on", "on"), ("no", "off"), ("true", "on"),
                                            ("'off'", "off"), ("auto", "auto")])
def test_on_off_keys_accept_the_booleans_yaml_makes_of_on_and_off(tmp_path, text, want):
    """YAML 1.1 reads an unquoted on/off (yes/no, true/false) as a boolean, in a file and in
    ``key=value`` overrides alike: for a key whose values are on/off, it means that."""
    from resemote_lib.usage import parse_overrides

    (tmp_path / "p.yaml").write_text(f"base: {paths.PARAMS / 'smoke.yaml'}\nstep_graph: {text}\n")
    assert load_params(tmp_path / "p.yaml").step_graph == want
    assert load_params(paths.PARAMS / "smoke.yaml", **parse_overrides([f"step_graph={text}"])).step_graph == want
    with pytest.raises(ValueError, match=r"optimizer must be str, got True \(bool\)"):
        resolve({"optimizer": True})  # not an on/off key: a boolean stays wrong

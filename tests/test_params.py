from __future__ import annotations

import pytest

from resemote_lib import paths
from resemote_lib.params import PROTOCOLS, TrainConfig, load_params, resolve, resolved_values

PARAM_FILES = sorted(p for p in paths.PARAMS.glob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_params_file_loads(path):
    cfg = load_params(path)
    assert cfg.run_name and cfg.dataset


def test_protocol_presets_are_exact():
    fer = load_params(paths.PARAMS / "fer2013.yaml")
    assert (fer.batch_size, fer.epochs, fer.optimizer, fer.scheduler, fer.plateau_factor) == (16, 80, "sgd", "plateau", 0.1)
    assert fer.image_size == 64 and fer.max_train_items is None and fer.selection == "last"
    ref = load_params(paths.PARAMS / "fer2013_reference.yaml")
    assert (ref.lr, ref.momentum, ref.weight_decay, ref.scheduler, ref.early_stopping_patience) == (0.001, 0.9, 1e-4, "none", 15)
    clean = load_params(paths.PARAMS / "rafdb_clean.yaml")
    assert clean.selection == "best_val" and clean.scheduler == "plateau" and clean.dataset == "rafdb"
    assert load_params(paths.PARAMS / "affectnet.yaml").test_per_class == 500


@pytest.mark.parametrize(("text", "message"), [
    ("protocol: clean\nepocs: 3\n", "unknown config key 'epocs'"),
    ("protocol: clean\nepochs: three\n", "epochs must be <class 'int'>, got 'three'"),
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


def test_resolved_values_include_notebook_keys():
    values = resolved_values(paths.PARAMS / "fer2013.yaml")
    assert values["download"] is True and values["epochs"] == 80
    with pytest.raises(ValueError, match="download must be bool"):
        resolved_values(paths.PARAMS / "smoke.yaml", download="yes")

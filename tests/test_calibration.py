"""Calibration lives beside a checkpoint, bound to its bytes (issue 23.6): ``load_model`` sets
``model.temperature`` from it, and the Predictor and export apply that temperature."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from resemote_lib import calibration, checkpoint
from resemote_lib.calibration import calibration_path, read_temperature, write_calibration
from resemote_lib.checkpoint import CheckpointError, load_model, save_checkpoint
from resemote_lib.files import sha256_of
from resemote_lib.model import build_model

CROPS = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)


@pytest.fixture
def tiny(tmp_path):
    """The cnn variant at 32 px, with weights that give confident logits (so a temperature shows)."""
    torch.manual_seed(0)
    model = build_model("cnn")
    with torch.no_grad():
        model.fc4.weight.mul_(20)
    return save_checkpoint(tmp_path / "best.pt", model, image_size=32, config={"model": "cnn", "image_size": 32})


def _probs_by_hand(path, temperature: float) -> np.ndarray:
    """Softmax of the plain model's logits on ``CROPS`` at ``temperature``."""
    from resemote_lib.inference import predict_logits

    model = load_model(path)
    logits = predict_logits(model, torch.from_numpy(CROPS)[:, None])
    return (logits / temperature).softmax(1).numpy()


def test_the_record_sits_beside_the_checkpoint_and_never_changes_it(tiny):
    before = tiny.read_bytes()
    path = write_calibration(tiny, 2.5, fitted_on="val (10 images)")
    assert path == tiny.parent / "best.calibration.json" == calibration_path(tiny)
    assert tiny.read_bytes() == before
    assert json.loads(path.read_text())["checkpoint_sha256"] == sha256_of(tiny)
    assert read_temperature(tiny) == 2.5


def test_load_model_takes_the_calibration_file_then_the_legacy_value_then_one(tiny, tmp_path):
    assert load_model(tiny).temperature == 1.0
    legacy = tmp_path / "legacy.pt"
    payload = checkpoint.read_checkpoint(tiny)
    payload["meta"]["temperature"] = 3.0  # what evaluation stored inside checkpoints before
    torch.save(payload, legacy)
    assert load_model(legacy).temperature == 3.0
    write_calibration(legacy, 2.0)
    assert load_model(legacy).temperature == 2.0  # the file beside it wins


def test_a_calibration_file_for_other_bytes_is_ignored_with_a_warning(tiny):
    write_calibration(tiny, 4.0)
    save_checkpoint(tiny, build_model("cnn"), image_size=32, config={"model": "cnn", "image_size": 32})  # replaced
    with pytest.warns(UserWarning, match=r"best\.calibration\.json was fitted for other bytes than best\.pt"):
        model = load_model(tiny)
    assert model.temperature == 1.0


def test_a_broken_calibration_file_is_named(tiny):
    calibration_path(tiny).write_text('{"temperature": 2.0}')
    with pytest.raises(ValueError, match=r"best\.calibration\.json: not a calibration record"):
        load_model(tiny)
    calibration_path(tiny).write_text(json.dumps({"temperature": -1, "checkpoint_sha256": sha256_of(tiny)}))
    with pytest.raises(ValueError, match=r"best\.calibration\.json: temperature must be a number in \[0\.05, 20\]"):
        load_model(tiny)


def test_one_temperature_check(tiny):
    assert checkpoint.check_temperature is calibration.check_temperature
    path = tiny.with_name("hot.pt")
    save_checkpoint(path, build_model("cnn"), image_size=32, config={"model": "cnn"}, temperature=float("nan"))
    with pytest.raises(CheckpointError, match=r"hot\.pt: the stored calibration: temperature must be a number in"):
        load_model(path)


def test_the_predictor_applies_the_calibration_files_temperature(tiny):
    from resemote_lib.predict import Predictor

    write_calibration(tiny, 3.0)
    predictor = Predictor(tiny, detector=None, device="cpu")
    assert predictor.temperature == 3.0
    got = np.array([[r.faces[0].probs[n] for n in predictor.class_names]
                    for r in predictor.predict_batch(list(CROPS))])
    np.testing.assert_allclose(got, _probs_by_hand(tiny, 3.0), atol=2e-6)
    assert np.abs(got - _probs_by_hand(tiny, 1.0)).max() > 0.01  # the temperature made a difference


def test_export_applies_the_calibration_files_temperature(tiny, tmp_path):
    from resemote_lib.predict.export import export, run_exported

    write_calibration(tiny, 3.0)
    report = export(tiny, tmp_path / "m.pt")
    assert report["temperature"] == 3.0
    got = run_exported(tmp_path / "m.pt", CROPS[:, None].astype(np.float32))
    np.testing.assert_allclose(got, _probs_by_hand(tiny, 3.0), atol=1e-5)
    assert np.abs(got - _probs_by_hand(tiny, 1.0)).max() > 0.01


@pytest.mark.parametrize("value", [1e-300, 1e308, 0.049, 20.5, float("nan"), float("inf"), 0, -1, True, "1.5", None])
def test_a_temperature_outside_the_sane_range_is_refused(value):
    """1e-300 makes every probability NaN, 1e308 makes them uniform (issue 31.2); a JSON ``true``
    is not a number although Python's float() reads it as 1."""
    with pytest.raises(ValueError, match=rf"^where: temperature must be a number in \[0\.05, 20\], got {re.escape(repr(value))} "):
        calibration.check_temperature(value, "where")


@pytest.mark.parametrize("value", [0.05, 20, 1, 2.5, np.float32(1.5), np.float64(0.7)])
def test_a_temperature_inside_the_range_is_kept(value):
    assert calibration.check_temperature(value, "where") == pytest.approx(float(value))


@pytest.mark.parametrize(("value", "shown"), [(1e-300, "1e-300"), (1e308, "1e+308"), (True, "True")])
def test_a_calibration_file_with_such_a_temperature_is_one_error_naming_the_file_and_the_value(tiny, value, shown):
    calibration_path(tiny).write_text(json.dumps({"temperature": value, "checkpoint_sha256": sha256_of(tiny)}))
    with pytest.raises(ValueError, match=rf"best\.calibration\.json: temperature must be a number in \[0\.05, 20\], "
                                         rf"got {re.escape(shown)} "):
        load_model(tiny)


def test_a_calibration_path_that_is_a_folder_is_an_error(tiny):
    calibration_path(tiny).mkdir()
    with pytest.raises(ValueError, match=r"best\.calibration\.json is a folder, not a calibration record"):
        read_temperature(tiny)


def test_fitting_never_leaves_the_range_the_files_accept():
    """Temperature scaling on a validation split the model separates perfectly drives T to 0, on
    one it gets backwards to infinity: the fit stops at the range's ends (NLL is convex in 1/T,
    so the end is the best temperature inside the range), and evaluation can write it."""
    from resemote_lib.metrics import fit_temperature

    logits = np.random.default_rng(0).normal(size=(500, 7))
    assert fit_temperature(logits, logits.argmax(1)) == calibration.TEMPERATURE_RANGE[0]
    assert fit_temperature(logits, logits.argmin(1)) == calibration.TEMPERATURE_RANGE[1]
    calibration.check_temperature(fit_temperature(logits, logits.argmax(1)), "fitted")

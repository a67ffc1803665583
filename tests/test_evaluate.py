from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from resemote_lib.data.base import FaceDataset
from resemote_lib.evaluate import (
    add_dedup_metrics,
    describe_test_set,
    evaluate,
    write_metrics,
    write_predictions,
)
from resemote_lib.metrics import wilson_interval
from resemote_lib.model import ResEmoteNet


def _onehot(pred, c=7, p=1.0):
    out = np.full((len(pred), c), (1 - p) / (c - 1))
    out[np.arange(len(pred)), pred] = p
    return out


def _tiny_dataset(n=20, size=32):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (n, 1, size, size), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 7
    return FaceDataset(images, labels, [f"i{i}" for i in range(n)], name="t", split="test", layout="x", root=None)


def test_evaluate_model_writes_files(tmp_path):
    torch.manual_seed(0)
    model = ResEmoteNet().eval()
    ds = _tiny_dataset()
    m = evaluate(model, ds, tta=True, batch_size=8)
    assert 0 <= m.accuracy <= 1 and m.tta is not None and m.n == 20
    # eval is deterministic: no random test-time flip (the reference's bug)
    assert evaluate(model, ds, tta=False).accuracy == m.accuracy
    pred = write_predictions(tmp_path / "predictions.csv", ds, m.extra["probs"])
    df = pd.read_csv(pred)
    assert list(df.columns[:3]) == ["id", "true", "predicted"] and len(df) == 20
    np.testing.assert_allclose(df.filter(like="p_").sum(axis=1), 1, atol=1e-4)
    out = json.loads(write_metrics(tmp_path / "metrics.json", m, protocol="clean").read_text())
    assert out["protocol"] == "clean" and "tta_flip" in out and "probs" not in out and "logits" not in out


def _in_reference_order(model: ResEmoteNet) -> ResEmoteNet:
    """The same model with its final layer's rows in the reference's label order."""
    import copy

    from resemote_lib.labels import CLASS_NAMES, REFERENCE_CLASS_NAMES

    ref = copy.deepcopy(model)
    order = [CLASS_NAMES.index(n) for n in REFERENCE_CLASS_NAMES]
    with torch.no_grad():
        ref.fc4.weight.copy_(model.fc4.weight[order])
        ref.fc4.bias.copy_(model.fc4.bias[order])
    ref.class_names = REFERENCE_CLASS_NAMES
    return ref


def test_a_model_in_another_label_order_is_evaluated_by_name():
    torch.manual_seed(0)
    model = ResEmoteNet().eval()
    model.class_names = tuple(__import__("resemote_lib").CLASS_NAMES)
    ref = _in_reference_order(model)
    ds = _tiny_dataset()
    a, b = evaluate(model, ds), evaluate(ref, ds)
    assert np.array_equal(a.extra["probs"], b.extra["probs"]) and a.to_dict() == b.to_dict()
    assert ref.class_names[0] == "happy"  # the caller's model is left as it was
    six = ResEmoteNet(num_classes=6).eval()
    six.class_names = ("happy", "surprise", "sad", "angry", "fear", "neutral")
    with pytest.raises(ValueError, match=r"missing \['disgust'\], extra \[\]"):
        evaluate(six, ds)


def test_dedup_figures_exclude_copies_and_mark_them(tmp_path):
    ds = _tiny_dataset(n=10)
    y = ds.labels.numpy()
    pred = y.copy()
    pred[[0, 1, 2]] = (y[[0, 1, 2]] + 1) % 7  # three wrong: items 0, 1, 2
    m = evaluate(ResEmoteNet().eval(), ds, tta=True)
    m.extra["probs"] = m.extra["tta_probs"] = _onehot(pred)
    excluded = pd.DataFrame({"id": ["i0", "i5"], "index": [0, 5], "by_split": ["train", "val"],
                             "by_id": ["a.jpg", "b.jpg"], "kind": ["exact", "near"], "correlation": [1.0, 0.95]})
    duplicate_of = add_dedup_metrics(m, ds, excluded, tmp_path / "test_excluded.csv")
    assert duplicate_of[0] == "train/a.jpg" and duplicate_of[5] == "val/b.jpg" and duplicate_of.count("") == 8
    assert m.extra["dedup"]["n"] == 8 and m.extra["dedup"]["accuracy"] == pytest.approx(6 / 8)  # i1, i2 wrong
    assert m.extra["dedup"]["excluded"] == 2 and m.extra["dedup"]["tta_flip"]["n"] == 8
    assert m.extra["copies_only"]["n"] == 2 and m.extra["copies_only"]["accuracy"] == pytest.approx(1 / 2)
    assert m.extra["dedup"]["accuracy_ci95"] == list(wilson_interval(6, 8))
    assert pd.read_csv(tmp_path / "test_excluded.csv")["id"].tolist() == ["i0", "i5"]
    df = pd.read_csv(write_predictions(tmp_path / "p.csv", ds, m.extra["probs"], duplicate_of), keep_default_na=False)
    assert len(df) == 10 and df["duplicate_of"].tolist()[:2] == ["train/a.jpg", ""]


@pytest.mark.parametrize(("values", "layout", "comparable"), [
    ({"dataset": "fer2013", "protocol": "paper"}, "fer2013-folders", True),
    ({"dataset": "fer2013", "protocol": "clean", "epochs": 1}, "fer2013-csv", True),  # deviations: still its test set
    ({"dataset": "synthetic", "protocol": "demo"}, "fer2013-csv", False),
    ({"dataset": "fer2013", "protocol": "smoke"}, "fer2013-folders", False),
    ({"dataset": "affectnet", "protocol": "paper", "test_per_class": 500}, "affectnet-official", True),
    ({"dataset": "affectnet", "protocol": "paper", "test_per_class": 500}, "affectnet-kaggle", False),
    ({"dataset": "affectnet", "protocol": "paper"}, "affectnet-official", False),
])
def test_the_paper_number_applies_only_to_the_papers_test_set(values, layout, comparable):
    import warnings

    from resemote_lib.params import resolve

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = resolve(values)
    ds = _tiny_dataset()
    ds.layout = layout
    definition = describe_test_set(cfg, ds)
    assert definition["paper_comparable"] is comparable
    assert (definition["why_not_comparable"] is None) is comparable


@pytest.mark.slow
def test_a_reference_format_file_evaluates_like_its_canonical_original(tmp_path, monkeypatch):
    """A trained canonical-order model saved in the reference's format (bare outputs in the
    reference's label order, {"model_state_dict": ...}) gives, through
    `python -m resemote_lib evaluate FILE --dataset synthetic --out DIR`, the metrics and
    predictions of the original; as a recognised release it is its own kind of Table III row."""
    import subprocess
    import sys

    from resemote_lib import files, paths, weights
    from resemote_lib.checkpoint import load_model
    from resemote_lib.evaluate import evaluate_checkpoint
    from resemote_lib.reports import paper

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "resemote_lib", *map(str, args)], capture_output=True, text=True,
                              timeout=900)

    results = tmp_path / "results"
    out = cli("train", paths.PARAMS / "smoke.yaml", f"results_dir={results}", "run_name=canon", "image_size=64",
              "max_train_items=32", "batch_size=8")
    assert out.returncode == 0, out.stderr[-2000:]
    ours = results / "canon" / "best.pt"
    ref = _in_reference_order(load_model(ours))
    torch.save({"model_state_dict": ref.state_dict(), "epoch": 80}, tmp_path / "fer2013_model.pth")
    before = {path: path.read_bytes() for path in (ours, tmp_path / "fer2013_model.pth")}
    for name, path in (("ours", ours), ("theirs", tmp_path / "fer2013_model.pth")):
        out = cli("evaluate", path, "--dataset", "synthetic", "--out", tmp_path / name)
        assert out.returncode == 0 and "accuracy" in out.stdout, out.stderr[-2000:]
    assert all(path.read_bytes() == data for path, data in before.items())  # evaluation never edits a checkpoint
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("ours", "theirs"))
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "nll", "ece", "confusion", "dedup", "tta_flip",
                "reference_random_flip_expected"):
        assert a[key] == b[key], key
    assert (tmp_path / "ours" / "predictions.csv").read_text() == (tmp_path / "theirs" / "predictions.csv").read_text()
    assert b["kind"] == "checkpoint file (unrecognised)" and len(b["checkpoint_sha256"]) == 64
    # Once its SHA-256 is in a record, the same file is recognised and reported as a release.
    record = weights.KnownCheckpoint("reference-test", "synthetic", "fer2013_model.pth", "test",
                                     sha256=files.sha256_of(tmp_path / "fer2013_model.pth"))
    monkeypatch.setitem(weights.KNOWN, record.name, record)
    evaluate_checkpoint(tmp_path / "fer2013_model.pth", "synthetic", out=results / record.name, progress=False)
    assert cli("evaluate", results / "canon").returncode == 0
    assert ours.read_bytes() == before[ours] and (results / "canon" / "best.calibration.json").is_file()
    table = paper.table3(results).set_index("run")
    assert table.loc["reference-test", "kind"] == "authors' released checkpoint"
    assert table.loc["reference-test", "official"] == pytest.approx(100 * b["accuracy"], abs=0.01)
    assert table.loc["canon", "kind"] == "trained here"


def _finished_run(tmp_path, **overrides):
    """A run folder as training leaves it (config.json, best.pt), with untrained weights of the
    small `cnn` variant on a few synthetic faces: enough to evaluate, no training needed."""
    from resemote_lib.checkpoint import save_checkpoint
    from resemote_lib.model import build_model
    from resemote_lib.params import resolve

    cfg = resolve({"dataset": "synthetic", "protocol": "smoke", "model": "cnn", "image_size": 32, "run_name": "run",
                   "results_dir": str(tmp_path / "results"), "synthetic_n_train": 40, "synthetic_n_val": 30,
                   "synthetic_n_test": 30, "tta_flip": False, **overrides})
    run_dir = tmp_path / "results" / "run"
    run_dir.mkdir(parents=True)
    torch.manual_seed(0)
    save_checkpoint(run_dir / "best.pt", build_model("cnn", image_size=32), image_size=32, config=cfg.to_dict(),
                    epoch=1)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    return run_dir


def test_evaluation_never_modifies_the_checkpoint_it_evaluates(tmp_path):
    from resemote_lib.calibration import calibration_path, read_temperature
    from resemote_lib.evaluate import evaluate_run
    from resemote_lib.files import sha256_of

    run_dir = _finished_run(tmp_path)
    before = (run_dir / "best.pt").read_bytes()
    m = evaluate_run(run_dir, progress=False)
    assert (run_dir / "best.pt").read_bytes() == before
    record = json.loads(calibration_path(run_dir / "best.pt").read_text())
    assert record["checkpoint"] == "best.pt" and record["checkpoint_sha256"] == sha256_of(run_dir / "best.pt")
    assert record["temperature"] == m.extra["calibration"]["temperature"] == read_temperature(run_dir / "best.pt")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["checkpoint_sha256"] == record["checkpoint_sha256"]
    # a checkpoint replaced after its calibration gets none: the record is bound to the bytes
    (run_dir / "best.pt").write_bytes(before + b"\0")
    with pytest.warns(UserWarning, match="fitted for other bytes"):
        assert read_temperature(run_dir / "best.pt") is None


def test_evaluation_runs_at_the_precision_validation_ran_at(tmp_path, monkeypatch):
    """The run's precision is applied (TF32 switches, as training sets them) and used for every
    forward pass; the device is mocked as in the precision tests (no GPU needed)."""
    import contextlib

    from resemote_lib import evaluate as ev
    from resemote_lib.device import Precision

    calls = []

    class Recording(Precision):
        def apply(self) -> None:
            calls.append("apply")

        def autocast(self, device):
            calls.append("autocast")
            return contextlib.nullcontext()

    asked = {}

    def choose(device, amp):
        asked["amp"] = amp
        return Recording("tf32")

    monkeypatch.setattr(ev, "choose_precision", choose)
    run_dir = _finished_run(tmp_path, amp=False)
    m = ev.evaluate_run(run_dir, progress=False)
    assert asked == {"amp": False} and calls[0] == "apply" and calls.count("apply") == 1 and "autocast" in calls
    assert m.extra["precision"] == "tf32"


def test_a_checkpoint_evaluation_never_replaces_files_it_did_not_write(tmp_path):
    from resemote_lib.evaluate import check_checkpoint_out

    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # a user's own file
    with pytest.raises(ValueError, match=r"already holds metrics\.json, not from an evaluation of this checkpoint.*"
                                         r"--force"):
        check_checkpoint_out(out, "a" * 64, force=False)
    check_checkpoint_out(out, "a" * 64, force=True)
    (out / "provenance.json").write_text(json.dumps({"checkpoint": {"sha256": "a" * 64}}))
    check_checkpoint_out(out, "a" * 64, force=False)  # an earlier evaluation of the same file: a rerun
    with pytest.raises(ValueError, match="not from an evaluation of this checkpoint"):
        check_checkpoint_out(out, "b" * 64, force=False)
    check_checkpoint_out(tmp_path / "new", "b" * 64, force=False)  # nothing there yet


def test_a_checkpoint_evaluation_gives_predicts_probabilities_and_says_so(tmp_path):
    """Issue 31.4: the same photo, the same probabilities from ``evaluate`` (predictions.csv) and
    ``predict``: the calibration file's temperature, EXIF orientation applied; metrics.json says
    which probabilities it holds. A run's own evaluation says its are uncalibrated."""
    from PIL import Image

    from resemote_lib.calibration import write_calibration
    from resemote_lib.data.synthetic import make_faces
    from resemote_lib.evaluate import evaluate_checkpoint
    from resemote_lib.labels import CLASS_NAMES
    from resemote_lib.predict import Predictor

    checkpoint = _finished_run(tmp_path) / "best.pt"
    write_calibration(checkpoint, 2.5)
    faces, labels = make_faces(14, seed=5)
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone photo stored sideways
    for i, (img, y) in enumerate(zip(faces, labels, strict=True)):
        (tmp_path / "faces" / CLASS_NAMES[int(y)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).resize((64, 48)).save(tmp_path / "faces" / CLASS_NAMES[int(y)] / f"{i}.jpg", exif=exif)
    evaluate_checkpoint(checkpoint, "folder", data_root=str(tmp_path / "faces"), out=tmp_path / "eval",
                        device="cpu", progress=False)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["probabilities"]["temperature"] == 2.5 and metrics["probabilities"]["same_as_predict"]
    rows = pd.read_csv(tmp_path / "eval" / "predictions.csv").set_index("id")
    predictor = Predictor(checkpoint, detector=None, device="cpu")
    for item in rows.index[:4]:
        (face,) = predictor.predict(tmp_path / "faces" / item).faces
        np.testing.assert_allclose([rows.loc[item, f"p_{c}"] for c in CLASS_NAMES], [face.probs[c] for c in CLASS_NAMES],
                                   atol=2e-6)
    assert not (tmp_path / "eval" / ".lock").exists()


def test_a_run_evaluation_says_its_probabilities_are_uncalibrated(tmp_path):
    from resemote_lib.evaluate import evaluate_run

    run_dir = _finished_run(tmp_path)
    evaluate_run(run_dir, progress=False)
    probabilities = json.loads((run_dir / "metrics.json").read_text())["probabilities"]
    assert probabilities["temperature"] == 1.0 and not probabilities["same_as_predict"]
    assert "calibration" in probabilities["definition"] and not (run_dir / ".lock").exists()


def test_a_split_with_no_image_is_an_error_not_an_accuracy_of_zero(tmp_path):
    """Issue 31.1/31.11: every photo without a face, or an empty split: no metrics.json with n=0."""
    from resemote_lib.evaluate import evaluate_checkpoint

    checkpoint = _finished_run(tmp_path) / "best.pt"
    for name in ("angry", "happy", "sad"):  # class folders, all empty
        (tmp_path / "faces" / name).mkdir(parents=True)
    with pytest.raises(ValueError, match=r"^no images in .*faces \(the test split\): nothing to evaluate; no image "
                                         r"files were found there$"):
        evaluate_checkpoint(checkpoint, "folder", data_root=str(tmp_path / "faces"), out=tmp_path / "eval",
                            device="cpu", progress=False)
    assert not (tmp_path / "eval").exists()


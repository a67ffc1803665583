from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from resemote_lib.data.base import FaceDataset
from resemote_lib.evaluate import (
    add_dedup_metrics,
    compute_metrics,
    describe_test_set,
    evaluate,
    expected_calibration_error,
    reliability,
    wilson_interval,
    write_metrics,
    write_predictions,
)
from resemote_lib.model import ResEmoteNet


def _onehot(pred, c=7, p=1.0):
    out = np.full((len(pred), c), (1 - p) / (c - 1))
    out[np.arange(len(pred)), pred] = p
    return out


def test_metrics_against_hand_computed_values():
    # classes 0..2 used; 0: 3 items (2 right), 1: 2 items (1 right), 2: 1 item (right)
    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 0, 2])
    m = compute_metrics(y, _onehot(pred, p=0.7))
    assert m.accuracy == pytest.approx(4 / 6)
    # recall per present class: 2/3, 1/2, 1 -> balanced accuracy = mean over present classes
    assert m.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precision: class0 2/3, class1 1/2, class2 1; f1: 2/3, 1/2, 1; macro over all 7 labels
    assert m.per_class.loc["angry", "precision"] == pytest.approx(2 / 3)
    assert m.per_class.loc["disgust", "f1"] == pytest.approx(0.5)
    assert m.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 1) / 7)
    assert m.confusion[:3, :3].tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    np.testing.assert_allclose(m.confusion_normalized[0, :2], [2 / 3, 1 / 3])
    # NLL: right items have p=0.7, wrong ones p=0.05
    assert m.nll == pytest.approx(-(4 * np.log(0.7) + 2 * np.log(0.05)) / 6)
    # ECE: one bin at confidence 0.7 holding everything, accuracy 4/6
    assert m.ece == pytest.approx(abs(0.7 - 4 / 6))
    assert m.n == 6 and m.to_dict()["confusion"][0][:3] == [2, 1, 0]


def test_ece_zero_for_perfect_calibration_and_reliability_bins():
    y = np.array([0, 1, 2, 3])
    probs = _onehot(y, p=1.0)
    assert expected_calibration_error(probs, y) == 0.0
    table = reliability(probs, y, bins=10)
    assert table["count"].sum() == 4 and table.iloc[-1]["accuracy"] == 1.0


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


def test_wilson_interval_by_hand():
    lo, hi = wilson_interval(8, 10)  # textbook value: (0.4902, 0.9433)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0) and wilson_interval(10, 10)[1] == 1.0
    m = compute_metrics(np.array([0, 1, 2, 3]), _onehot(np.array([0, 1, 2, 0])))
    assert m.to_dict()["accuracy_ci95"] == list(wilson_interval(3, 4))


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

    from resemote_lib import files, paper, paths, weights
    from resemote_lib.checkpoint import load_model
    from resemote_lib.evaluate import evaluate_checkpoint

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
    for name, path in (("ours", ours), ("theirs", tmp_path / "fer2013_model.pth")):
        out = cli("evaluate", path, "--dataset", "synthetic", "--out", tmp_path / name)
        assert out.returncode == 0 and "accuracy" in out.stdout, out.stderr[-2000:]
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
    table = paper.table3(results).set_index("run")
    assert table.loc["reference-test", "kind"] == "authors' released checkpoint"
    assert table.loc["reference-test", "official"] == pytest.approx(100 * b["accuracy"], abs=0.01)
    assert table.loc["canon", "kind"] == "trained here"

"""The pure metric functions (resemote_lib/metrics.py), checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from resemote_lib.metrics import (
    balanced_accuracy_of,
    bootstrap_intervals,
    compute_metrics,
    dedup_metrics,
    expected_calibration_error,
    fit_temperature,
    macro_f1_of,
    reliability,
    softmax,
    wilson_interval,
)


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
    # precision: class0 2/3, class1 1/2, class2 1; f1: 2/3, 1/2, 1; macro over the present classes, as
    # balanced accuracy (issue 31.5: one definition; the 4 classes with no test image have no F1)
    assert m.per_class.loc["angry", "precision"] == pytest.approx(2 / 3)
    assert m.per_class.loc["disgust", "f1"] == pytest.approx(0.5)
    assert m.macro_f1 == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m.to_dict()["averaged_over"] == ["angry", "disgust", "fear"]
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


def test_wilson_interval_by_hand():
    lo, hi = wilson_interval(8, 10)  # textbook value: (0.4902, 0.9433)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 0) == (0.0, 1.0) and wilson_interval(10, 10)[1] == 1.0
    m = compute_metrics(np.array([0, 1, 2, 3]), _onehot(np.array([0, 1, 2, 0])))
    assert m.to_dict()["accuracy_ci95"] == list(wilson_interval(3, 4))


def test_balanced_accuracy_and_macro_f1_from_a_confusion_matrix_equal_scikit_learns():
    """The bootstrap's formulas, checked against scikit-learn on splits with a class never predicted
    and a class absent from the truth (the cases where their conventions matter)."""
    rng = np.random.default_rng(1)
    for y, pred in ((rng.integers(0, 7, 500), rng.integers(0, 7, 500)),
                    (rng.integers(0, 6, 300), np.minimum(rng.integers(0, 7, 300), 5)),  # 6 never true
                    (rng.integers(0, 7, 300), rng.integers(1, 7, 300))):  # 0 never predicted
        m = compute_metrics(y, _onehot(pred))
        assert balanced_accuracy_of(m.confusion) == pytest.approx(m.balanced_accuracy, abs=1e-12)
        assert macro_f1_of(m.confusion) == pytest.approx(m.macro_f1, abs=1e-12)


def test_macro_f1_and_balanced_accuracy_average_over_the_same_classes():
    """Issue 31.5: a class absent from the truth counts in neither figure (it has no recall, and
    its F1 would be 0 for no fault of the model); a wrong prediction of it still costs the class
    it belonged to."""
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 6])  # class 6 never true: predicted once, wrongly
    m = compute_metrics(y, _onehot(pred))
    assert m.balanced_accuracy == pytest.approx((1 + 1 / 2) / 2)
    assert m.macro_f1 == pytest.approx((1 + 2 / 3) / 2)  # f1 of class 1: precision 1, recall 1/2
    assert macro_f1_of(m.confusion) == pytest.approx(m.macro_f1) and balanced_accuracy_of(m.confusion) == pytest.approx(
        m.balanced_accuracy)
    assert m.to_dict()["averaged_over"] == ["angry", "disgust"]


def test_an_empty_subset_reports_null_not_zero():
    """Issue 31.1: no test image has a copy in train or val: ``copies_only`` has n=0 and no accuracy
    (null in metrics.json), never an accuracy of 0.0."""
    y = np.array([0, 1, 2])
    official = compute_metrics(y, _onehot(y))
    official.extra["probs"] = _onehot(y)
    dedup, copies = dedup_metrics(official, y, np.zeros(3, dtype=bool))
    assert dedup["accuracy"] == 1.0 and copies["n"] == 0
    assert copies["accuracy"] is None and copies["balanced_accuracy"] is None and copies["accuracy_ci95"] is None
    empty = compute_metrics(np.zeros(0, dtype=int), np.zeros((0, 7))).to_dict()
    assert {k: empty[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "nll", "ece")} == dict.fromkeys(
        ("accuracy", "balanced_accuracy", "macro_f1", "nll", "ece"))


def test_bootstrap_intervals_hold_the_estimate_and_narrow_with_more_items():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 400)
    pred = np.where(rng.random(400) < 0.6, y, rng.integers(0, 7, 400))
    small = compute_metrics(y, _onehot(pred)).to_dict()
    large = compute_metrics(np.tile(y, 16), _onehot(np.tile(pred, 16))).to_dict()  # same rates, 16x the items
    for key in ("balanced_accuracy", "macro_f1"):
        lo, hi = small[f"{key}_ci95"]
        assert lo < small[key] < hi and 0.04 < hi - lo < 0.2, (key, lo, hi)
        lo16, hi16 = large[f"{key}_ci95"]
        assert lo16 < large[key] < hi16 and (hi16 - lo16) < 0.4 * (hi - lo), (key, hi - lo, hi16 - lo16)
    perfect = compute_metrics(y, _onehot(y)).to_dict()
    assert perfect["balanced_accuracy_ci95"] == [1.0, 1.0] and perfect["macro_f1_ci95"] == [1.0, 1.0]
    assert bootstrap_intervals(np.zeros((7, 7), dtype=int))["macro_f1"] == [0.0, 1.0]


def test_dedup_metrics_split_the_official_figure_into_kept_and_copies():
    y = np.array([0, 1, 2, 3, 4, 5])
    pred = np.array([0, 1, 2, 0, 0, 5])  # right on 0, 1, 2, 5; wrong on 3, 4
    copy = np.array([False, False, True, True, False, False])
    official = compute_metrics(y, _onehot(pred, p=0.9))
    official.extra["probs"] = _onehot(pred, p=0.9)  # what evaluate() keeps for re-scoring subsets
    dedup, copies = dedup_metrics(official, y, copy)
    assert dedup["n"] == 4 and dedup["accuracy"] == pytest.approx(3 / 4) and dedup["excluded"] == 2
    assert copies["n"] == 2 and copies["accuracy"] == pytest.approx(1 / 2)
    assert copies["accuracy_ci95"] == list(wilson_interval(1, 2))


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_t = 2.5
    logits = rng.normal(size=(4000, 7)) * 4
    labels = np.array([rng.choice(7, p=p) for p in softmax(logits, true_t)])
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.1)


def test_temperature_scaling_reduces_ece_on_a_synthetic_validation_split():
    rng = np.random.default_rng(0)
    n, c = 4000, 7
    y = rng.integers(0, c, n)
    correct = rng.random(n) < 0.6  # a 60%-accurate classifier...
    pred = np.where(correct, y, rng.integers(0, c, n))
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), pred] += 6.0  # ...that is far too sure of itself
    val, test = slice(0, 2000), slice(2000, None)
    t = fit_temperature(logits[val], y[val])
    before = expected_calibration_error(softmax(logits[test]), y[test])
    after = expected_calibration_error(softmax(logits[test], t), y[test])
    assert t > 1.5 and after < before / 2
    assert (softmax(logits[test], t).argmax(1) == softmax(logits[test]).argmax(1)).all()

"""The metrics the paper reports and the ones it should have: pure functions of labels and
probabilities (or logits), with no model, data loading or run folders in sight.

Accuracy (multi-class: correct / total; the paper's (TP+TN)/(TP+TN+FP+FN) is a per-class
binary formula, not this), balanced accuracy, macro-F1, per-class precision/recall/F1, the
confusion matrix, negative log-likelihood, expected calibration error, Wilson intervals,
temperature scaling, and the deduplicated test figure's split into kept images and copies.

Balanced accuracy and macro-F1 average over the same classes: those with at least one true
item in the split scored (a class absent from it has no recall, and its F1 would be 0 for no
fault of the model); ``metrics.json`` lists them as ``averaged_over``. A split of no items has
no figures: they are null in ``metrics.json``, never 0.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from .labels import CLASS_NAMES

_NOT_SERIALISED = ("logits", "probs", "tta_probs", "mirror_probs", "split_data")  # kept on Metrics.extra for plots and files


@dataclass
class Metrics:
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    nll: float
    ece: float
    per_class: pd.DataFrame  # index class; precision, recall, f1, support
    confusion: np.ndarray  # rows true, columns predicted
    class_names: tuple[str, ...]
    n: int
    tta: Metrics | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def confusion_normalized(self) -> np.ndarray:
        rows = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, rows, out=np.zeros_like(self.confusion, dtype=float), where=rows > 0)

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values; those of an empty split (``n`` 0) are None."""
        correct = int(np.trace(self.confusion))
        intervals = bootstrap_intervals(self.confusion)
        scored = self.n > 0
        out = {
            "accuracy": self.accuracy if scored else None,
            "accuracy_ci95": list(wilson_interval(correct, self.n)) if scored else None,
            "balanced_accuracy": self.balanced_accuracy if scored else None,
            "balanced_accuracy_ci95": intervals["balanced_accuracy"] if scored else None,
            "macro_f1": self.macro_f1 if scored else None, "macro_f1_ci95": intervals["macro_f1"] if scored else None,
            "nll": self.nll if scored else None, "ece": self.ece if scored else None, "n": self.n,
            "class_names": list(self.class_names),
            "averaged_over": [name for name, s in zip(self.class_names, self.confusion.sum(1), strict=True) if s],
            "per_class": self.per_class.reset_index().to_dict(orient="records"),
            "confusion": self.confusion.tolist(),
            "confusion_normalized": np.round(self.confusion_normalized, 6).tolist(),
        }
        if self.tta is not None:
            out["tta_flip"] = {k: v for k, v in self.tta.to_dict().items() if k != "tta_flip"}
        return {**out, **{k: v for k, v in self.extra.items() if k not in _NOT_SERIALISED}}

    def table(self) -> pd.DataFrame:
        """One-row-per-metric table for display."""
        rows = {"accuracy": self.accuracy, "balanced accuracy": self.balanced_accuracy,
                "macro F1": self.macro_f1, "NLL": self.nll, "ECE": self.ece}
        df = pd.DataFrame({"value": rows})
        if self.tta is not None:
            df["with flip TTA"] = [self.tta.accuracy, self.tta.balanced_accuracy, self.tta.macro_f1,
                                   self.tta.nll, self.tta.ece]
        return df


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% (``z`` 1.96) Wilson score interval of a proportion ``correct / n``."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def balanced_accuracy_of(confusion: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present (rows true, columns predicted; ``(..., C, C)``), as
    scikit-learn's ``balanced_accuracy_score``."""
    support = confusion.sum(-1)
    recall = np.divide(np.diagonal(confusion, axis1=-2, axis2=-1), support, out=np.zeros(support.shape),
                       where=support > 0)
    return recall.sum(-1) / np.maximum((support > 0).sum(-1), 1)


def macro_f1_of(confusion: np.ndarray) -> np.ndarray:
    """Unweighted mean F1 over the classes present, as ``balanced_accuracy_of`` (scikit-learn's
    ``f1_score(average="macro", zero_division=0)`` with ``labels`` the classes present)."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(-1)
    denominator = support + confusion.sum(-2)  # 2 TP + FN + FP
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    return (f1 * (support > 0)).sum(-1) / np.maximum((support > 0).sum(-1), 1)


def bootstrap_intervals(confusion: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """95% percentile bootstrap intervals of balanced accuracy and macro-F1.

    Resampling the test items with replacement is drawing a confusion matrix from the
    multinomial of the observed one, so no per-item data is needed; fixed ``seed``: the same
    matrix always gets the same interval.
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    n, c = int(confusion.sum()), confusion.shape[0]
    if n == 0:
        return {"balanced_accuracy": [0.0, 1.0], "macro_f1": [0.0, 1.0]}
    draws = np.random.default_rng(seed).multinomial(n, confusion.ravel() / n, size=resamples).reshape(-1, c, c)
    return {name: [float(v) for v in np.percentile(fn(draws), [2.5, 97.5])]
            for name, fn in (("balanced_accuracy", balanced_accuracy_of), ("macro_f1", macro_f1_of))}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> pd.DataFrame:
    """Per-bin confidence, accuracy and count (the reliability diagram's data)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        rows.append({"lo": edges[b], "hi": edges[b + 1], "count": int(m.sum()),
                     "confidence": float(conf[m].mean()) if m.any() else np.nan,
                     "accuracy": float(correct[m].mean()) if m.any() else np.nan})
    return pd.DataFrame(rows)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...] = CLASS_NAMES) -> Metrics:
    """All metrics from true labels and predicted probabilities ``(N, C)``."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    labels = list(range(len(class_names)))
    pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
    if not len(y_true):  # an empty subset (e.g. no test image has a copy): no figures (None in to_dict)
        empty = np.zeros(len(labels))
        p, r, f, s, bal = empty, empty, empty, empty.astype(int), 0.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # classes absent from a tiny split: 0, not a warning storm
            p, r, f, s = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
            bal = balanced_accuracy_score(y_true, pred)
    per_class = pd.DataFrame({"precision": p, "recall": r, "f1": f, "support": s},
                             index=pd.Index(class_names, name="class"))
    nll = float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1)).mean()) if len(y_true) else 0.0
    return Metrics(
        accuracy=float((pred == y_true).mean()) if len(y_true) else 0.0,
        balanced_accuracy=float(bal),
        macro_f1=float(f1_score(y_true, pred, labels=sorted(set(y_true.tolist())), average="macro", zero_division=0))
        if len(y_true) else 0.0,
        nll=nll, ece=expected_calibration_error(probs, y_true),
        per_class=per_class, confusion=confusion_matrix(y_true, pred, labels=labels) if len(y_true)
        else np.zeros((len(labels), len(labels)), dtype=int),
        class_names=tuple(class_names), n=len(y_true),
    )


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature scaling (Guo et al., 2017): the T in ``bounds`` minimising NLL of softmax(z / T).

    Fitted on validation logits; it changes confidences, never the predicted class. A split
    the model separates perfectly drives T to 0, one it gets backwards to infinity: the fit
    stops at ``bounds`` (the range ``calibration.TEMPERATURE_RANGE`` accepts; NLL is convex in
    1/T, so the end it stops at is the best T inside them).
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return min(max(t, bounds[0]), bounds[1]) if t == t else 1.0  # t != t: NaN, the fit failed


def subset_metrics(metrics: Metrics, labels: np.ndarray, keep: np.ndarray) -> Metrics:
    """``metrics`` recomputed on the items where ``keep`` is True (flip TTA too)."""
    out = compute_metrics(labels[keep], metrics.extra["probs"][keep], metrics.class_names)
    if metrics.tta is not None:
        out.tta = compute_metrics(labels[keep], metrics.extra["tta_probs"][keep], metrics.class_names)
    return out


def dedup_metrics(metrics: Metrics, labels: np.ndarray, copy: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(dedup, copies_only)``: ``metrics`` recomputed without the test images that have a copy
    in train or val (``copy`` True), and on those copies alone (how much they inflate the
    official figure)."""
    dedup, copies = subset_metrics(metrics, labels, ~copy), subset_metrics(metrics, labels, copy)
    return ({**dedup.to_dict(), "rule": "official test minus every image with an exact, mirrored or near copy in "
             "train or val (data-quality audit)", "excluded": int(copy.sum())},
            {k: v for k, v in copies.to_dict().items()
             if k in ("accuracy", "accuracy_ci95", "n", "balanced_accuracy", "balanced_accuracy_ci95")})


__all__ = ["Metrics", "balanced_accuracy_of", "bootstrap_intervals", "compute_metrics", "dedup_metrics",
           "expected_calibration_error", "fit_temperature", "macro_f1_of", "reliability", "softmax", "subset_metrics",
           "wilson_interval"]

"""Evaluation: the metrics the paper reports and the ones it should have.

``evaluate(model, dataset)`` gives accuracy (multi-class: correct / total; the paper's
(TP+TN)/(TP+TN+FP+FN) is a per-class binary formula, not this), balanced accuracy,
macro-F1, per-class precision/recall/F1, the confusion matrix (counts and row-normalised),
negative log-likelihood and expected calibration error; horizontal-flip test-time
augmentation is reported separately, never silently mixed in.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
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
from torch import nn

from . import inference, provenance
from .checkpoint import load_model, set_checkpoint_meta
from .data import FaceDataset
from .data.transforms import EVAL, Preset
from .device import FP32, Precision, choose_precision, resolve_device
from .labels import CLASS_NAMES
from .params import PAPER_PROTOCOLS, TrainConfig
from .runs import RunLock, load_run_config, open_split, open_training_splits, quality, selected_checkpoint

log = logging.getLogger(__name__)
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
        correct = int(np.trace(self.confusion))
        out = {
            "accuracy": self.accuracy, "accuracy_ci95": list(wilson_interval(correct, self.n)),
            "balanced_accuracy": self.balanced_accuracy, "macro_f1": self.macro_f1,
            "nll": self.nll, "ece": self.ece, "n": self.n, "class_names": list(self.class_names),
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
    if not len(y_true):  # an empty subset (e.g. no test image has a copy): zeros, not an error
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
        macro_f1=float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)) if len(y_true) else 0.0,
        nll=nll, ece=expected_calibration_error(probs, y_true),
        per_class=per_class, confusion=confusion_matrix(y_true, pred, labels=labels) if len(y_true)
        else np.zeros((len(labels), len(labels)), dtype=int),
        class_names=tuple(class_names), n=len(y_true),
    )


def predict_logits(model: nn.Module, dataset: FaceDataset, *, batch_size: int = 256,
                   device: str | torch.device = "cpu", flip: bool = False, progress: bool = False,
                   precision: Precision = FP32, preprocess: Preset = EVAL) -> np.ndarray:
    """Logits ``(N, C)`` with the evaluation preprocessing (no random flip), as NumPy.

    ``flip=True`` returns the logits of the mirror images instead. The loop is
    ``inference.predict_logits``, the one validation and prediction use too.
    """
    device = torch.device(device)
    model = model.to(device)
    return inference.predict_logits(model, dataset.images, batch_size=batch_size, device=device, flip=flip,
                                    precision=precision, progress=progress, preprocess=preprocess).cpu().numpy()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): the T > 0 minimising NLL of softmax(z / T).

    Fitted on validation logits; it changes confidences, never the predicted class.
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
    return float(log_t.detach().exp())


def evaluate(model: nn.Module, dataset: FaceDataset, *, tta: bool = True, batch_size: int = 256,
             device: str | torch.device = "cpu", temperature: float = 1.0, progress: bool = False,
             precision: Precision = FP32, preprocess: Preset = EVAL) -> Metrics:
    """Metrics of ``model`` on ``dataset``; ``tta`` adds flip-TTA metrics in ``.tta``.

    A model whose outputs are in another order (a reference checkpoint's ``class_names``)
    is evaluated by name: a copy has its final layer's rows permuted (``weights.reorder``);
    a model of other classes is an error naming both sets.
    """
    if tuple(getattr(model, "class_names", dataset.class_names)) != tuple(dataset.class_names):
        import copy

        from .weights import reorder

        # By name, on a copy (the caller's model keeps its order): exact, or an error naming both sets.
        model = reorder(copy.deepcopy(model), tuple(dataset.class_names))
    y = dataset.labels.numpy()
    logits = predict_logits(model, dataset, batch_size=batch_size, device=device, progress=progress,
                            precision=precision, preprocess=preprocess)
    probs = softmax(logits, temperature)
    metrics = compute_metrics(y, probs, dataset.class_names)
    metrics.extra["precision"] = precision.name
    metrics.extra["logits"] = logits  # kept for calibration; not serialised
    metrics.extra["probs"] = probs  # kept for predictions.csv and plots; not serialised
    if tta:  # one extra pass over the mirror images, averaged with the pass above
        mirrored = predict_logits(model, dataset, batch_size=batch_size, device=device, flip=True,
                                  precision=precision, preprocess=preprocess)
        metrics.extra["mirror_probs"] = softmax(mirrored, temperature)
        metrics.extra["tta_probs"] = (probs + metrics.extra["mirror_probs"]) / 2
        metrics.tta = compute_metrics(y, metrics.extra["tta_probs"], dataset.class_names)
    return metrics


def subset_metrics(metrics: Metrics, labels: np.ndarray, keep: np.ndarray) -> Metrics:
    """``metrics`` recomputed on the items where ``keep`` is True (flip TTA too)."""
    out = compute_metrics(labels[keep], metrics.extra["probs"][keep], metrics.class_names)
    if metrics.tta is not None:
        out.tta = compute_metrics(labels[keep], metrics.extra["tta_probs"][keep], metrics.class_names)
    return out


def write_predictions(path: str | os.PathLike, dataset: FaceDataset, probs: np.ndarray,
                      duplicate_of: list[str] | None = None) -> Path:
    """``predictions.csv``: item id, true, predicted, one probability column per class, and
    (for a test split) ``duplicate_of``: the train/val copy that excludes the item from the
    deduplicated test figure, empty for the others."""
    path = Path(path)
    df = pd.DataFrame({"id": dataset.ids, "true": [dataset.class_names[i] for i in dataset.targets],
                       "predicted": [dataset.class_names[i] for i in probs.argmax(1)]})
    if duplicate_of is not None:
        df["duplicate_of"] = duplicate_of
    for k, name in enumerate(dataset.class_names):
        df[f"p_{name}"] = np.round(probs[:, k], 6)
    df.to_csv(path, index=False)
    return path


def write_metrics(path: str | os.PathLike, metrics: Metrics, **context: Any) -> Path:
    path = Path(path)
    payload = metrics.to_dict()
    payload.update(context)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path


def evaluate_run(run_dir: str | os.PathLike, *, split: str = "test", device: str = "cpu",
                 progress: bool = True) -> Metrics:
    """Evaluate a finished run's selected checkpoint on ``split`` (once) and write files.

    Writes ``metrics.json`` (``metrics_<split>.json`` for other splits) with the protocol,
    the test set's definition, split sizes, checkpoint, precision and provenance, and
    ``predictions.csv``. On the test split it also scores the deduplicated test set (the
    official one minus every image with a copy in train or val, from the data-quality
    audit): ``metrics["dedup"]``, ``metrics["copies_only"]`` (the excluded images alone:
    how much the copies inflate the official figure) and ``test_excluded.csv``. Every
    accuracy has its 95% Wilson interval. The precision is the run's (what selected the
    checkpoint on validation); the run directory is locked while its files are written.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    device = resolve_device(device)
    precision = choose_precision(device, cfg.amp)
    with RunLock(run_dir, what="evaluation"):
        checkpoint = selected_checkpoint(run_dir, cfg)
        model = load_model(checkpoint, device=device)
        ds = open_split(cfg, split)
        # Temperature scaling, fitted on the validation split training selected on (under the clean
        # protocol: without copies of train images), stored in the checkpoint for the Predictor.
        val = open_training_splits(cfg)["val"]
        val_logits = predict_logits(model, val, batch_size=cfg.eval_batch_size, device=device, precision=precision)
        temperature = fit_temperature(val_logits, val.labels.numpy()) if len(val) else 1.0
        set_checkpoint_meta(checkpoint, temperature=temperature)
        metrics = evaluate(model, ds, tta=cfg.tta_flip, batch_size=cfg.eval_batch_size, device=device,
                           progress=progress, precision=precision)
        calibrated = compute_metrics(ds.labels.numpy(), softmax(metrics.extra["logits"], temperature), ds.class_names)
        metrics.extra["calibration"] = {"temperature": temperature, "fitted_on": f"val ({len(val)} images)",
                                        "ece_before": metrics.ece, "ece_after": calibrated.ece,
                                        "nll_before": metrics.nll, "nll_after": calibrated.nll}
        suffix = "" if split == "test" else f"_{split}"
        duplicate_of = None
        if split == "test":
            duplicate_of = add_dedup_metrics(metrics, ds, quality(cfg).test_excluded(), run_dir / "test_excluded.csv")
        write_predictions(run_dir / f"predictions{suffix}.csv", ds, metrics.extra["probs"], duplicate_of)
        record = provenance.collect(config=cfg.to_dict(), device=device, datasets={split: ds})
        metrics.extra["split_data"] = ds
        write_metrics(run_dir / f"metrics{suffix}.json", metrics, split=split, protocol=cfg.protocol,
                      dataset=cfg.dataset, test_set=describe_test_set(cfg, ds), checkpoint=str(checkpoint),
                      checkpoint_epoch=model.checkpoint_meta.get("epoch"), split_sizes={split: len(ds)},
                      provenance=record)
    return metrics


def checkpoint_results_name(record: Any, checkpoint: Path, digest: str) -> str:
    """``results/<this>/`` for a checkpoint file: the record's name when recognised, else
    ``checkpoint-<file stem>-<first 8 hex of its SHA-256>`` (two files called best.pt never
    share a folder, and no name can land on a run or on results/paper)."""
    if record is not None:
        return record.name
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in checkpoint.stem).strip("._") or "file"
    return f"checkpoint-{stem}-{digest[:8]}"


def evaluate_checkpoint(checkpoint: str | os.PathLike, dataset: str, *, data_root: str | None = None,
                        split: str = "test", out: str | os.PathLike | None = None, device: str = "cpu",
                        batch_size: int = 256, progress: bool = True, crop_faces: bool = False) -> Metrics:
    """Evaluate any checkpoint file (ours or the authors') on any dataset and layout.

    The model's outputs are put into the canonical class order by name (``weights.reorder``,
    exact); images are decoded at the checkpoint's own input size and given its own
    preprocessing. Writes ``metrics.json`` (with, on a test split, the deduplicated figure),
    ``predictions.csv`` (canonical class order) and ``provenance.json`` (the file's SHA-256
    and, when recognised, its record) into ``out`` (default ``results/<record name or
    file stem>/``, where Table III finds it). The reference code flips test images at
    random: the accuracy that gives in expectation (per image, the mean of being right on
    the image and on its mirror) is reported apart, never as the main figure.
    """
    from . import paths
    from .params import resolve
    from .weights import identify, reorder

    checkpoint = Path(checkpoint)
    record, digest = identify(checkpoint)
    device = resolve_device(device)
    model = reorder(load_model(checkpoint, device=device), CLASS_NAMES)
    image_size = record.image_size if record else int(getattr(model, "image_size", 64))
    cfg = resolve({"dataset": dataset, "data_root": data_root, "image_size": image_size, "protocol": "smoke",
                   "run_name": "checkpoint"})
    out = Path(out) if out is not None else paths.RESULTS / checkpoint_results_name(record, checkpoint, digest)
    if (out / "config.json").is_file():
        raise ValueError(f"{out} holds a training run (config.json): its metrics would be replaced by this "
                         "checkpoint's; pass --out to another folder")
    with RunLock(out, what="checkpoint evaluation"):
        ds = open_split(cfg, split, crop_faces=crop_faces)  # crop_faces: the folder dataset's photos
        metrics = evaluate(model, ds, tta=True, batch_size=batch_size, device=device, progress=progress,
                           preprocess=record.transform if record else EVAL)  # the checkpoint's own
        correct = metrics.extra["probs"].argmax(1) == ds.labels.numpy()
        mirrored = metrics.extra["mirror_probs"].argmax(1) == ds.labels.numpy()
        metrics.extra["reference_random_flip_expected"] = {
            "accuracy": float(((correct.astype(float) + mirrored) / 2).mean()) if len(ds) else 0.0,
            "why": "the reference code flips test images at random (p=0.5): this is its expected accuracy"}
        duplicate_of = None
        if split == "test":
            duplicate_of = add_dedup_metrics(metrics, ds, quality(cfg).test_excluded(), out / "test_excluded.csv")
        write_predictions(out / "predictions.csv", ds, metrics.extra["probs"], duplicate_of)
        kind = "authors' released checkpoint" if record else (
            "checkpoint file (ours)" if model.checkpoint_meta.get("config") else "checkpoint file (unrecognised)")
        record_info = {"checkpoint": str(checkpoint), "sha256": digest, "record": record.name if record else None,
                       "recognised": record is not None, "kind": kind, "image_size": image_size}
        prov = provenance.collect(device=device, datasets={split: ds}, checkpoint=record_info)
        provenance.write(out / "provenance.json", prov)
        metrics.extra["split_data"] = ds
        write_metrics(out / "metrics.json", metrics, split=split, protocol="released" if record else "checkpoint",
                      kind=kind, dataset=dataset, test_set=describe_test_set(cfg, ds, trained_here=False),
                      checkpoint=str(checkpoint), checkpoint_sha256=digest, split_sizes={split: len(ds)},
                      provenance=prov)
    return metrics


@dataclass
class Evaluation:
    """What notebook 02 shows: the metrics, the test split, where files went, a title."""

    metrics: Metrics
    test: FaceDataset
    out_dir: Path
    title: str


def evaluate_target(results_dir: str | os.PathLike, *, run_name: str | None = None, checkpoint: str | None = None,
                    dataset: str | None = None, data_root: str | None = None, device: str = "auto") -> Evaluation:
    """A run (``run_name``; None: the most recent finished run under ``results_dir``) or a
    checkpoint file (``checkpoint`` with ``dataset``), evaluated once (notebook 02)."""
    from .runs import finished_runs

    results_dir = Path(results_dir)
    if checkpoint:
        if not dataset:
            raise ValueError(f"checkpoint {checkpoint}: set dataset (fer2013, rafdb, affectnet or synthetic) to say "
                             "which test set to evaluate it on")
        from .weights import identify

        record, digest = identify(checkpoint)
        out = results_dir / checkpoint_results_name(record, Path(checkpoint), digest)
        metrics = evaluate_checkpoint(checkpoint, dataset, data_root=data_root, out=out, device=device)
        return Evaluation(metrics, metrics.extra["split_data"], out, f"{Path(checkpoint).name} on {dataset}")
    runs = finished_runs(results_dir)
    name = run_name or (runs[0] if runs else None)
    if name is None:
        raise FileNotFoundError(f"no finished run in {results_dir} yet: train one (notebook 01_train, or python -m "
                                "resemote_lib train PARAMS.yaml), or set checkpoint= and dataset=")
    cfg = load_run_config(results_dir / name)
    metrics = evaluate_run(results_dir / name, device=device)
    return Evaluation(metrics, metrics.extra["split_data"], results_dir / name,
                      f"{cfg.dataset} test, {cfg.protocol} protocol ({name})")


def add_dedup_metrics(metrics: Metrics, ds: FaceDataset, excluded: pd.DataFrame, csv_path: Path) -> list[str]:
    """Add ``dedup`` and ``copies_only`` to ``metrics.extra``, write ``test_excluded.csv``,
    and return each test image's ``duplicate_of`` (``"<split>/<id>"``, or ``""``)."""
    by_id = {r.id: f"{r.by_split}/{r.by_id}" for r in excluded.itertuples()}
    duplicate_of = [by_id.get(item, "") for item in ds.ids]
    copy = np.array([bool(d) for d in duplicate_of], dtype=bool)
    labels = ds.labels.numpy()
    dedup, copies = subset_metrics(metrics, labels, ~copy), subset_metrics(metrics, labels, copy)
    metrics.extra["dedup"] = {**dedup.to_dict(), "rule": "official test minus every image with an exact, mirrored "
                              "or near copy in train or val (data-quality audit)", "excluded": int(copy.sum())}
    metrics.extra["copies_only"] = {k: v for k, v in copies.to_dict().items()
                                    if k in ("accuracy", "accuracy_ci95", "n", "balanced_accuracy")}
    excluded[["id", "by_split", "by_id", "kind", "correlation"]].to_csv(csv_path, index=False)
    return duplicate_of


def describe_test_set(cfg: TrainConfig, ds: FaceDataset, *, trained_here: bool = True) -> dict[str, Any]:
    """What the test set is, and whether the paper's number is comparable with ours on it.

    The paper tests on FER2013's PrivateTest, RAF-DB's official test list and 500 images
    per class of AffectNet's official validation set; anything else (or a run trained
    under a protocol that is not the paper's, ``trained_here``) gets the reason why not,
    and Table III then shows no published number or gap for it.
    """
    rule = ds.report.get("usage") or ds.report.get("rule") or ds.report.get("source", "")
    why_not = None
    if cfg.dataset == "synthetic":
        why_not = "synthetic faces: the paper has no number for them"
    elif ds.split != "test":
        why_not = f"the {ds.split} split is not a test set"
    elif trained_here and cfg.model != "resemotenet":
        why_not = f"model {cfg.model!r} is an ablation variant, not the paper's network"
    elif trained_here and cfg.protocol not in PAPER_PROTOCOLS:
        why_not = f"protocol {cfg.protocol!r} is not one of the paper's ({', '.join(PAPER_PROTOCOLS)})"
    elif cfg.dataset == "affectnet" and ds.layout != "affectnet-official":
        why_not = "AffectNet's Kaggle release has no official test split: this is a stratified hold-out"
    elif cfg.dataset == "affectnet" and cfg.test_per_class != 500:
        why_not = f"the paper tests on 500 images per class; this test set has test_per_class={cfg.test_per_class}"
    return {"dataset": cfg.dataset, "layout": ds.layout, "split": ds.split, "rule": str(rule), "n": len(ds),
            "image_size": cfg.image_size, "split_seed": cfg.split_seed, "paper_comparable": why_not is None,
            "why_not_comparable": why_not}


__all__ = [
    "Metrics",
    "add_dedup_metrics",
    "compute_metrics",
    "describe_test_set",
    "evaluate",
    "evaluate_run",
    "expected_calibration_error",
    "fit_temperature",
    "predict_logits",
    "reliability",
    "softmax",
    "subset_metrics",
    "wilson_interval",
    "write_metrics",
    "write_predictions",
]

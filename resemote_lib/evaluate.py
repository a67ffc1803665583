"""Evaluation: a model scored on a split, once, and the files that say so.

``evaluate(model, dataset)`` gives the metrics of ``metrics.py`` (accuracy, balanced
accuracy, macro-F1, per class, confusion matrix, NLL, ECE); horizontal-flip test-time
augmentation is reported separately, never silently mixed in. ``evaluate_run`` (a finished
training run) and ``evaluate_checkpoint`` (any checkpoint file, ours or the authors') both
score through ``score_split``, which writes ``predictions.csv`` and, on a test split, the
deduplicated figure; neither ever modifies the checkpoint it evaluates (the fitted
temperature goes to a calibration file beside it, see ``calibration.py``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import inference, provenance
from .calibration import write_calibration
from .checkpoint import load_model
from .data import KAGGLE_SLUGS, FaceDataset, default_root
from .data.transforms import Preset
from .device import FP32, Precision, choose_precision, resolve_device
from .files import atomic_write_text, sha256_of
from .labels import CLASS_NAMES
from .metrics import Metrics, compute_metrics, dedup_metrics, fit_temperature, softmax
from .model import describe
from .params import PAPER_PROTOCOLS, TrainConfig
from .runs import (
    RunLock,
    audit_report,
    load_run_config,
    open_split,
    open_training_splits,
    selected_checkpoint,
)

log = logging.getLogger(__name__)
# What a checkpoint evaluation writes into its folder (``evaluate_checkpoint``'s ``out``).
CHECKPOINT_FILES = ("metrics.json", "predictions.csv", "test_excluded.csv", "provenance.json")
# The paper's network: the reference ResEmoteNet, or its lean form (the same function at its size).
PAPER_NETWORKS = ("resemotenet", "resemotenet_lean")


def dataset_logits(model: nn.Module, dataset: FaceDataset, *, batch_size: int = 256,
                   device: str | torch.device = "cpu", flip: bool = False, progress: bool = False,
                   precision: Precision = FP32, preprocess: Preset | None = None) -> np.ndarray:
    """Logits ``(N, C)`` of a whole split with the evaluation preprocessing (no random flip),
    as NumPy. ``flip=True`` returns the logits of the mirror images instead. The loop is
    ``inference.predict_logits``, the one validation and prediction use too; ``preprocess``
    defaults to the model's own (``inference.preprocess_of``)."""
    device = torch.device(device)
    model = model.to(device)
    preprocess = preprocess or inference.preprocess_of(model)
    return inference.predict_logits(model, dataset.images, batch_size=batch_size, device=device, flip=flip,
                                    precision=precision, progress=progress, preprocess=preprocess).cpu().numpy()


def evaluate(model: nn.Module, dataset: FaceDataset, *, tta: bool = True, batch_size: int = 256,
             device: str | torch.device = "cpu", temperature: float = 1.0, progress: bool = False,
             precision: Precision = FP32, preprocess: Preset | None = None) -> Metrics:
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
    logits = dataset_logits(model, dataset, batch_size=batch_size, device=device, progress=progress,
                            precision=precision, preprocess=preprocess)
    probs = softmax(logits, temperature)
    metrics = compute_metrics(y, probs, dataset.class_names)
    metrics.extra["precision"] = precision.name
    metrics.extra["logits"] = logits  # kept for calibration; not serialised
    metrics.extra["probs"] = probs  # kept for predictions.csv and plots; not serialised
    if tta:  # one extra pass over the mirror images, averaged with the pass above
        mirrored = dataset_logits(model, dataset, batch_size=batch_size, device=device, flip=True,
                                  precision=precision, preprocess=preprocess)
        metrics.extra["mirror_probs"] = softmax(mirrored, temperature)
        metrics.extra["tta_probs"] = (probs + metrics.extra["mirror_probs"]) / 2
        metrics.tta = compute_metrics(y, metrics.extra["tta_probs"], dataset.class_names)
    return metrics


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
    """``metrics.json``: the metrics and ``context`` (protocol, test set, provenance...), atomically."""
    import json

    return atomic_write_text(path, json.dumps({**metrics.to_dict(), **context}, indent=2, default=str))


def score_split(model: nn.Module, cfg: TrainConfig, split: str, out: Path, *, tta: bool, batch_size: int,
                device: torch.device, precision: Precision = FP32, preprocess: Preset | None = None,
                progress: bool = True, crop_faces: bool = False, temperature: float = 1.0) -> Metrics:
    """Score ``model`` on ``cfg``'s ``split`` and write ``predictions[_<split>].csv`` into ``out``;
    on the test split also the deduplicated figure (``metrics.extra["dedup"]``, ``["copies_only"]``)
    and ``test_excluded.csv``. The caller adds its context and writes ``metrics_file(split)``.
    A split with no image to score is a ``ValueError`` saying why, never an accuracy of 0."""
    ds = open_split(cfg, split, crop_faces=crop_faces)
    if len(ds) == 0:
        raise ValueError(nothing_to_score(ds))
    metrics = evaluate(model, ds, tta=tta, batch_size=batch_size, device=device, progress=progress,
                       precision=precision, preprocess=preprocess, temperature=temperature)
    duplicate_of = None
    if split == "test":
        duplicate_of = add_dedup_metrics(metrics, ds, audit_report(cfg).test_excluded(), out / "test_excluded.csv")
    write_predictions(out / f"predictions{_suffix(split)}.csv", ds, metrics.extra["probs"], duplicate_of)
    metrics.extra["split_data"] = ds
    return metrics


def nothing_to_score(ds: FaceDataset) -> str:
    """Why a split holds no image: empty by definition, none listed, or every one excluded."""
    where = ds.report.get("source") or ds.root
    listed = ds.report.get("n_listed", 0)
    if not listed:
        rule = str(ds.report.get("rule", ""))
        why = rule if rule.startswith("empty") else "no image files were found there"
        return f"no images in {where} (the {ds.split} split): nothing to evaluate; {why}"
    bad, no_face = ds.report.get("bad_files") or [], ds.report.get("no_face", 0)
    reasons = ([f"no face found in {no_face}"] if no_face else []) + (
        [f"{len(bad)} unreadable (e.g. {bad[0]['file']}: {bad[0]['error']})"] if bad else [])
    return (f"no images in {where} (the {ds.split} split) to evaluate: of its {listed} image file(s), "
            + " and ".join(reasons or ["none was kept"]))


def metrics_file(split: str) -> str:
    """``metrics.json`` for the test split, ``metrics_<split>.json`` for the others."""
    return f"metrics{_suffix(split)}.json"


def _suffix(split: str) -> str:
    return "" if split == "test" else f"_{split}"


def evaluate_run(run_dir: str | os.PathLike, *, split: str = "test", device: str = "cpu",
                 progress: bool = True) -> Metrics:
    """Evaluate a finished run's selected checkpoint on ``split`` (once) and write files.

    Writes ``metrics.json`` (``metrics_<split>.json`` for other splits) with the protocol,
    the test set's definition, split sizes, checkpoint, precision and provenance, and
    ``predictions.csv``. On the test split it also scores the deduplicated test set (the
    official one minus every image with a copy in train or val, from the data-quality
    audit): ``metrics["dedup"]``, ``metrics["copies_only"]`` (the excluded images alone:
    how much the copies inflate the official figure) and ``test_excluded.csv``. Every
    accuracy has its 95% Wilson interval. It runs at the precision training validated at
    (the run's ``amp``, TF32 switches included), fits a softmax temperature on the
    validation split training selected on and writes it beside the checkpoint
    (``<stem>.calibration.json``): the checkpoint's bytes never change. The run directory
    is locked while its files are written.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    device = resolve_device(device)
    precision = choose_precision(device, cfg.amp)
    precision.apply()  # as training did: TF32 matmuls and convolutions where the run used them
    with RunLock(run_dir, what="evaluation"):
        checkpoint = selected_checkpoint(run_dir, cfg)
        digest = sha256_of(checkpoint)
        model = load_model(checkpoint, device=device)
        calibration = calibrate(model, cfg, checkpoint, digest, device=device, precision=precision)
        metrics = score_split(model, cfg, split, run_dir, tta=cfg.tta_flip, batch_size=cfg.eval_batch_size,
                              device=device, precision=precision, progress=progress)
        ds = metrics.extra["split_data"]
        calibrated = compute_metrics(ds.labels.numpy(), softmax(metrics.extra["logits"], calibration["temperature"]),
                                     ds.class_names)
        metrics.extra["calibration"] = {**calibration, "ece_before": metrics.ece, "ece_after": calibrated.ece,
                                        "nll_before": metrics.nll, "nll_after": calibrated.nll}
        record = provenance.collect(config=cfg.to_dict(), device=device, datasets={split: ds})
        write_metrics(run_dir / metrics_file(split), metrics, split=split, protocol=cfg.protocol,
                      kind=run_kind(cfg), dataset=cfg.dataset, network=describe(cfg.model, cfg.image_size),
                      test_set=describe_test_set(cfg, ds), checkpoint=str(checkpoint),
                      checkpoint_sha256=digest, checkpoint_epoch=model.checkpoint_meta.get("epoch"),
                      split_sizes={split: len(ds)}, probabilities=probabilities_used(1.0, as_predict=False),
                      provenance=record)
    return metrics


def run_kind(cfg: TrainConfig) -> str:
    """Table III's ``kind`` of a run trained here: the paper's protocols, or ours beside them."""
    if cfg.protocol == "cpu_budget":
        return "trained here, CPU budget (not a paper protocol)"
    return "trained here"


def calibrate(model: nn.Module, cfg: TrainConfig, checkpoint: Path, digest: str, *, device: torch.device,
              precision: Precision) -> dict[str, Any]:
    """Temperature scaling fitted on the validation split training selected on (under the clean
    protocols: the deduplicated one), written beside ``checkpoint``; returns what was fitted."""
    val = open_training_splits(cfg)["val"]
    logits = dataset_logits(model, val, batch_size=cfg.eval_batch_size, device=device, precision=precision)
    temperature = fit_temperature(logits, val.labels.numpy()) if len(val) else 1.0
    info = {"temperature": temperature, "fitted_on": f"val ({len(val)} images)"}
    write_calibration(checkpoint, temperature, digest=digest, fitted_on=info["fitted_on"])
    model.temperature = temperature
    return info


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
                        batch_size: int = 256, progress: bool = True, force: bool = False,
                        crop_faces: bool = False) -> Metrics:
    """Evaluate any checkpoint file (ours or the authors') on any dataset and layout.

    The model's outputs are put into the canonical class order by name (``weights.reorder``,
    exact); images are decoded at the checkpoint's own input size and given its own
    preprocessing. Writes ``metrics.json`` (with, on a test split, the deduplicated figure),
    ``predictions.csv`` (canonical class order) and ``provenance.json`` (the file's SHA-256
    and, when recognised, its record) into ``out`` (default ``results/<record name or
    file stem>/``, where Table III finds it). Files already in ``out`` are replaced only when
    they are an earlier evaluation of the same file (its SHA-256 in their provenance.json), or
    with ``force``; an ``out`` that is the data root or inside it is refused. Probabilities are
    predict's: at the temperature of the checkpoint's calibration file (1 without one), as
    ``metrics.json``'s ``probabilities`` says. The reference code flips test images at random:
    the accuracy that gives in expectation (per image, the mean of being right on the image
    and on its mirror) is reported apart, never as the main figure.
    """
    from . import paths
    from .params import resolve
    from .weights import identify, reorder

    checkpoint = Path(checkpoint)
    record, digest = identify(checkpoint)
    device = resolve_device(device)
    out = Path(out) if out is not None else paths.RESULTS / checkpoint_results_name(record, checkpoint, digest)
    check_out_outside_data(out, data_root if data_root is not None or dataset not in KAGGLE_SLUGS
                           else default_root(dataset))
    check_checkpoint_out(out, digest, force=force)
    model = reorder(load_model(checkpoint, device=device), CLASS_NAMES)
    temperature = float(getattr(model, "temperature", 1.0))
    image_size = int(model.image_size)  # load_model: the record's, else the file's
    cfg = resolve({"dataset": dataset, "data_root": data_root, "image_size": image_size, "protocol": "smoke",
                   "run_name": "checkpoint"})
    with RunLock(out, what="checkpoint evaluation"):
        metrics = score_split(model, cfg, split, out, tta=True, batch_size=batch_size, device=device,
                              progress=progress, crop_faces=crop_faces,  # crop_faces: a folder's photos
                              temperature=temperature)  # preprocessing: the model's own (load_model)
        ds = metrics.extra["split_data"]
        correct = metrics.extra["probs"].argmax(1) == ds.labels.numpy()
        mirrored = metrics.extra["mirror_probs"].argmax(1) == ds.labels.numpy()
        metrics.extra["reference_random_flip_expected"] = {
            "accuracy": float(((correct.astype(float) + mirrored) / 2).mean()) if len(ds) else 0.0,
            "why": "the reference code flips test images at random (p=0.5): this is its expected accuracy"}
        kind = "authors' released checkpoint" if record else (
            "checkpoint file (ours)" if model.checkpoint_meta.get("config") else "checkpoint file (unrecognised)")
        record_info = {"checkpoint": str(checkpoint), "sha256": digest, "record": record.name if record else None,
                       "recognised": record is not None, "kind": kind, "image_size": image_size}
        prov = provenance.collect(device=device, datasets={split: ds}, checkpoint=record_info)
        provenance.write(out / "provenance.json", prov)
        write_metrics(out / metrics_file(split), metrics, split=split, protocol="released" if record else "checkpoint",
                      kind=kind, dataset=dataset, test_set=describe_test_set(cfg, ds, trained_here=False),
                      checkpoint=str(checkpoint), checkpoint_sha256=digest, split_sizes={split: len(ds)},
                      probabilities=probabilities_used(temperature, as_predict=True), provenance=prov)
    return metrics


def probabilities_used(temperature: float, *, as_predict: bool) -> dict[str, Any]:
    """What ``metrics.json`` says about its probabilities (NLL, ECE, predictions.csv): the
    temperature they were computed at, and whether ``predict`` gives the same ones."""
    if as_predict:
        definition = ("softmax(logits / temperature) at the temperature predict applies to this checkpoint: its "
                      "calibration file's, else 1 (no calibration)")
    else:
        definition = ("softmax(logits), uncalibrated; 'calibration' holds the temperature fitted on the validation "
                      "split (which predict applies to this checkpoint) with NLL and ECE before and after it")
    return {"temperature": temperature, "calibrated": temperature != 1.0, "same_as_predict": as_predict,
            "definition": definition}


def check_out_outside_data(out: Path, data_root: str | os.PathLike | None) -> None:
    """Refuse an ``out`` folder that is the data root or lies inside it (a class folder, say):
    the evaluation's files would be written into the dataset, as predict refuses to write
    over its inputs."""
    if data_root is None:
        return
    root, where = Path(data_root).expanduser().resolve(), out.expanduser().resolve()
    if where == root or root in where.parents:
        raise ValueError(f"out folder {out} is {'the data root' if where == root else 'inside the data root'} "
                         f"{data_root}: metrics, predictions and provenance would be written into the dataset; "
                         "choose a folder outside it (--out)")


def check_checkpoint_out(out: Path, digest: str, *, force: bool) -> None:
    """Refuse, before any work, an ``out`` folder whose files this evaluation would replace
    when they are not an earlier evaluation of the same checkpoint (and ``force`` is off)."""
    import json

    if (out / "config.json").is_file():
        raise ValueError(f"{out} holds a training run (config.json): its metrics would be replaced by this "
                         "checkpoint's; pass --out to another folder")
    present = [name for name in CHECKPOINT_FILES if (out / name).exists()]
    if not present or force:
        return
    try:
        earlier = json.loads((out / "provenance.json").read_text()).get("checkpoint", {}).get("sha256")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if earlier != digest:
        raise ValueError(f"{out} already holds {', '.join(present)}, not from an evaluation of this checkpoint: "
                         "they would be replaced; choose another --out, or pass --force to replace them")


@dataclass
class Evaluation:
    """What notebook 02 shows: the metrics, the test split, where files went, a title."""

    metrics: Metrics
    test: FaceDataset
    out_dir: Path
    title: str


def evaluate_target(results_dir: str | os.PathLike, *, run_name: str | None = None, checkpoint: str | None = None,
                    dataset: str | None = None, data_root: str | None = None, device: str = "auto") -> Evaluation:
    """A run (``run_name``; None: the first of ``runs.preferred_runs`` under ``results_dir``) or a
    checkpoint file (``checkpoint`` with ``dataset``), evaluated once (notebook 02)."""
    from .runs import preferred_runs

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
    runs = preferred_runs(results_dir)
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
    metrics.extra["dedup"], metrics.extra["copies_only"] = dedup_metrics(metrics, ds.labels.numpy(), copy)
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
    elif cfg.dataset == "folder":
        why_not = "a folder of class folders: not one of the paper's test sets"
    elif ds.split != "test":
        why_not = f"the {ds.split} split is not a test set"
    elif trained_here and cfg.model not in PAPER_NETWORKS:
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


__all__ = ["CHECKPOINT_FILES", "Evaluation", "add_dedup_metrics", "calibrate", "check_checkpoint_out",
           "check_out_outside_data", "checkpoint_results_name", "dataset_logits", "describe_test_set", "evaluate",
           "evaluate_checkpoint", "evaluate_run", "evaluate_target", "metrics_file", "nothing_to_score",
           "probabilities_used", "run_kind", "score_split", "write_metrics", "write_predictions"]

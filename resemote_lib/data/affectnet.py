"""AffectNet (Mollahosseini et al., 2017): the official CSVs and the Kaggle release.

Official: test = validation.csv (optionally ``test_per_class`` items per class, seeded: the
paper's 500-per-class test set), val = a stratified seeded hold-out of training.csv; codes
7..10 (contempt, none, uncertain, no-face) are excluded and counted. Faces are cropped
with the CSV's box before resizing.

Kaggle (noamsegal/affectnet-training-data): labels.csv is the ground truth (not the
folder), contempt is excluded and counted, and train/val/test are stratified seeded
splits (80/10/10 by default); with ``test_per_class`` the test split is that many images
per class (the paper's rule, on a pool that is not the paper's validation set).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..labels import (
    AFFECTNET_CODES,
    AFFECTNET_EXCLUDED_CODES,
    AFFECTNET_KAGGLE_EXCLUDED,
    AFFECTNET_KAGGLE_NAMES,
)
from .base import Items, read_csv_rows, stratified_split

LAYOUTS = {
    "affectnet-official": "training.csv + validation.csv + Manually_Annotated_Images/",
    "affectnet-kaggle": "labels.csv (header ,pth,label,relFCs) + class folders (noamsegal/affectnet-training-data)",
}
OFFICIAL_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                   "facial_landmarks", "expression", "valence", "arousal"]
KAGGLE_HEADER = ["", "pth", "label", "relFCs"]


def detect(folder: Path) -> str | None:
    if (folder / "training.csv").is_file() and (folder / "validation.csv").is_file():
        return "affectnet-official"
    if (folder / "labels.csv").is_file():
        return "affectnet-kaggle"
    return None


def _read_official(path: Path) -> tuple[list[tuple[str, int, tuple[int, int, int, int]]], dict[str, int]]:
    rows, excluded = [], Counter()
    for where, row in read_csv_rows(path, OFFICIAL_HEADER):
        try:
            code = int(row[6])
            box = tuple(int(float(v)) for v in row[1:5])
        except ValueError:
            raise ValueError(f"{where}: expression and face box must be numbers, got "
                             f"{row[6]!r} and {row[1:5]}") from None
        if code in AFFECTNET_EXCLUDED_CODES:
            excluded[AFFECTNET_EXCLUDED_CODES[code]] += 1
            continue
        if code not in AFFECTNET_CODES:
            raise ValueError(f"{where}: unknown expression code {code} (expected 0..10)")
        rows.append((row[0], AFFECTNET_CODES[code], box))
    return rows, dict(excluded)


def _read_kaggle(path: Path) -> tuple[list[tuple[str, int]], dict[str, int]]:
    rows, excluded = [], Counter()
    for where, row in read_csv_rows(path, KAGGLE_HEADER):
        label = row[2].strip()
        if label in AFFECTNET_KAGGLE_EXCLUDED:
            excluded[label] += 1
            continue
        if label not in AFFECTNET_KAGGLE_NAMES:
            raise ValueError(f"{where}: unknown label {label!r} "
                             f"(expected one of {sorted(AFFECTNET_KAGGLE_NAMES | dict.fromkeys(AFFECTNET_KAGGLE_EXCLUDED))})")
        rows.append((row[1].strip(), AFFECTNET_KAGGLE_NAMES[label]))
    return rows, dict(excluded)


def _per_class_subset(labels: list[int], per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.asarray(labels)
    keep = []
    for cls in np.unique(arr):
        idx = np.flatnonzero(arr == cls)
        keep.extend(rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist())
    return np.sort(np.array(keep, dtype=np.int64))


def list_items(root: Path, layout: str, split: str, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
               seed: int = 0, test_per_class: int | None = None, **_: object) -> Items:
    report: dict[str, object] = {"seed": seed}
    if layout == "affectnet-official":
        source = root / ("validation.csv" if split == "test" else "training.csv")
        rows, excluded = _read_official(source)
        labels = [y for _, y, _ in rows]
        if split == "test":
            keep = (_per_class_subset(labels, test_per_class, seed) if test_per_class
                    else np.arange(len(rows)))
            report.update(test_per_class=test_per_class,
                          rule=f"validation.csv, {test_per_class} per class (seeded)" if test_per_class
                          else "validation.csv, all")
        else:
            val_idx, train_idx = stratified_split(labels, (val_fraction,), seed)
            keep = val_idx if split == "val" else train_idx
            report.update(val_fraction=val_fraction, rule="stratified seeded hold-out of training.csv")
        rows = [rows[i] for i in keep]
        images = root / "Manually_Annotated_Images"
        report.update(source=str(source), excluded=excluded)
        return Items(ids=[p for p, _, _ in rows], labels=[y for _, y, _ in rows],
                     files=[images / p for p, _, _ in rows], boxes=[b for _, _, b in rows],
                     sources=[source], report=report)
    source = root / "labels.csv"
    rows, excluded = _read_kaggle(source)
    labels = [y for _, y in rows]
    if test_per_class:  # the paper's rule (N per class) applied to the release's one pool of images
        test_idx = _per_class_subset(labels, test_per_class, seed)
        rest = np.setdiff1d(np.arange(len(labels)), test_idx)
        val_rel, train_rel = stratified_split([labels[i] for i in rest], (val_fraction,), seed)
        val_idx, train_idx = rest[val_rel], rest[train_rel]
        test_rule = f"{test_per_class} per class drawn (seeded) from labels.csv: not the paper's test set"
    else:
        val_idx, test_idx, train_idx = stratified_split(labels, (val_fraction, test_fraction), seed)
        test_rule = f"stratified seeded {test_fraction:.0%} hold-out of labels.csv: not the paper's test set"
    keep = {"train": train_idx, "val": val_idx, "test": test_idx}[split]
    rows = [rows[i] for i in keep]
    report.update(source=str(source), excluded=excluded, val_fraction=val_fraction, test_fraction=test_fraction,
                  test_per_class=test_per_class,
                  rule={"test": test_rule, "val": "stratified seeded hold-out of labels.csv"}.get(split, "the rest"))
    return Items(ids=[p for p, _ in rows], labels=[y for _, y in rows], files=[root / p for p, _ in rows],
                 sources=[source], report=report)


__all__ = ["KAGGLE_HEADER", "LAYOUTS", "OFFICIAL_HEADER", "detect", "list_items"]

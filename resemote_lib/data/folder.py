"""Any labelled folder: one subfolder per class, named as datasets name them.

``dataset: folder`` reads ``DATA_ROOT/<class>/**/<image>``. A class folder's name maps to
our seven classes through ``labels.CLASS_SYNONYMS`` (anger/angry, happiness/joy, ...; any
case); folders of other classes (contempt, for instance) are excluded and counted in
``report["excluded_classes"]``, with one warning. Images are found at any depth below a
class folder; hidden files are skipped and counted.

Splits. Such a folder is an evaluation set: ``test`` is every image, and ``train`` and
``val`` are empty (so the data-quality audit, which opens all three, finds no copies
across splits; training on it stops at its empty training split). A folder whose
``train/`` and ``test/`` subfolders each hold class folders is a full dataset: ``test``
is ``test/``, ``val`` a stratified seeded hold-out of ``train/`` (``val_fraction``,
``seed``), ``train`` the rest.

Datasets of whole photos: ``crop_faces=True`` crops each image to the face the
Predictor's default detector (OpenCV's Haar cascade) finds, with the Predictor's margin,
exactly as ``predict`` crops it; the largest face is taken, and images with no face are
excluded and counted (``report["no_face"]``).
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from ..labels import class_of_folder
from .base import IMAGE_SUFFIXES, Box, Items, Skipped, is_hidden, missing_classes, stratified_split

LAYOUTS = {
    "folder-classes": "<class>/ image folders (angry|anger, disgust|disgusted, fear|fearful|afraid, "
                      "happy|happiness|joy, neutral|calm, sad|sadness, surprise|surprised; any case): an evaluation set",
    "folder-splits": "train/<class>/ and test/<class>/ image folders",
}


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p)) if folder.is_dir() else []


def _holds_classes(folder: Path) -> bool:
    return any(class_of_folder(p.name) is not None for p in _class_folders(folder))


def detect(folder: Path) -> str | None:
    if _holds_classes(folder / "train") and _holds_classes(folder / "test"):
        return "folder-splits"
    if _holds_classes(folder):
        return "folder-classes"
    return None


def _list(folder: Path, where: str) -> tuple[list[str], list[int], list[Path], dict]:
    """Every image below ``folder``'s class folders: ids (``<class folder>/<path>``), labels,
    files, and the report (excluded classes, skipped files, missing classes)."""
    ids, labels, files = [], [], []
    excluded: Counter[str] = Counter()
    skipped = Skipped()
    for cls_dir in _class_folders(folder):
        k = class_of_folder(cls_dir.name)
        images = _images_below(cls_dir, skipped)
        if k is None:
            excluded[cls_dir.name] += len(images)
            continue
        for f in images:
            ids.append(f"{cls_dir.name}/{f.relative_to(cls_dir).as_posix()}")
            labels.append(k)
            files.append(f)
    for p in sorted(folder.iterdir()):
        if p.is_file():  # a README or labels file beside the class folders
            skipped.add(p)
    skipped.warn(folder)
    if excluded:
        warnings.warn(f"{where}: {sum(excluded.values())} image(s) in folders outside the seven classes excluded: "
                      + ", ".join(f"{name}/ ({n})" for name, n in sorted(excluded.items()))
                      + "; dataset.report['excluded_classes'] counts them", stacklevel=4)
    report = {"excluded_classes": dict(sorted(excluded.items())), "skipped": skipped.report(),
              "missing_classes": missing_classes(labels, where)}
    return ids, labels, files, report


def _images_below(folder: Path, skipped: Skipped) -> list[Path]:
    """Image files at any depth below ``folder``, sorted; hidden ones (and hidden folders'
    contents) and other files are added to ``skipped``."""
    out = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).parts
        if any(is_hidden(Path(part)) for part in rel[:-1]):
            continue  # inside a hidden folder (__MACOSX, .ipynb_checkpoints): counted as that folder
        if f.is_dir():
            if is_hidden(f):
                skipped.add(f)
            continue
        if not is_hidden(f) and f.suffix.lower() in IMAGE_SUFFIXES:
            out.append(f)
        else:
            skipped.add(f)
    return out


def list_items(root: Path, layout: str, split: str, *, val_fraction: float = 0.1, seed: int = 0,
               crop_faces: bool = False, **_: object) -> Items:
    if layout == "folder-classes":
        part = root if split == "test" else None
        rule = ("every image of the class folders" if split == "test" else
                "empty: a folder of class folders is an evaluation set (split 'test'); give it train/ and test/ "
                "subfolders of class folders to train on it")
    else:
        part = root / ("test" if split == "test" else "train")
        rule = "test/" if split == "test" else (
            f"{'stratified seeded hold-out' if split == 'val' else 'rest'} of train/")
    if part is None:
        ids, labels, files, report = [], [], [], {}
    else:
        ids, labels, files, report = _list(part, f"folder/{split} ({part})")
    if layout == "folder-splits" and split != "test":
        val_idx, train_idx = stratified_split(labels, (val_fraction,), seed)
        keep = val_idx if split == "val" else train_idx
        ids, labels, files = [ids[i] for i in keep], [labels[i] for i in keep], [files[i] for i in keep]
        report.update(val_fraction=val_fraction, seed=seed)
    report.update(source=str(part if part is not None else root), rule=rule)
    locate = FaceCrop() if crop_faces else None
    if locate is not None:
        report["crop_faces"] = locate.key
    return Items(ids=ids, labels=labels, files=files, report=report, locate=locate)


class FaceCrop:
    """The face ``predict`` would classify in a photo: the Predictor's default detector
    (Haar cascade) and margin, the largest face when there are several; None: no face.

    One detector per thread: images are decoded on a thread pool.
    """

    def __init__(self) -> None:
        from ..predict import Predictor  # the predictor's own defaults, so the two crops cannot drift apart

        defaults = inspect.signature(Predictor).parameters
        self.detector, self.margin = defaults["detector"].default, float(defaults["margin"].default)
        self.key = f"{self.detector}+margin{self.margin}"
        self._local = threading.local()

    def __call__(self, rgb: np.ndarray) -> Box | None:
        from ..predict import expand_box, make_detector

        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = make_detector(self.detector)
        boxes = [box for box, _ in detector(rgb)]
        if not boxes:
            return None
        box = max(boxes, key=lambda b: b[2] * b[3])
        x, y, w, h = expand_box(box, self.margin, rgb.shape[1], rgb.shape[0])
        return (x, y, w, h) if w >= 2 and h >= 2 else None


__all__ = ["LAYOUTS", "FaceCrop", "detect", "list_items"]

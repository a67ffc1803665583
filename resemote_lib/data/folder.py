"""Any labelled folder: one subfolder per class, named as datasets name them.

``dataset: folder`` reads ``DATA_ROOT/<class>/**/<image>``. A class folder's name maps to
our seven classes through ``labels.CLASS_SYNONYMS`` (anger/angry, happiness/joy, ...; any
case); folders of other classes (contempt, for instance) are excluded and counted in
``report["excluded_classes"]``, with one warning. Images are found at any depth below a
class folder; hidden files are skipped and counted. A file reached twice (a linked class
folder, ``joy -> happy``) is counted once, with a warning; an image in a folder named after
another class inside a class folder (``happy/sad/x.jpg``) is labelled by its class folder,
with a warning; a folder that cannot be listed is an error naming it.

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

import os
import threading
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from ..labels import class_of_folder
from .base import IMAGE_SUFFIXES, Box, Items, Skipped, is_hidden, missing_classes, stratified_split
from .faces import DEFAULT_DETECTOR, DEFAULT_MARGIN, expand_box, make_detector

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
    files, and the report (excluded classes, skipped files, missing classes, images reached
    twice through links, images in folders named after another class)."""
    ids, labels, files = [], [], []
    excluded: Counter[str] = Counter()
    nested: Counter[str] = Counter()
    skipped = Skipped()
    first_id: dict[Path, str] = {}  # each file's resolved path -> the id it was counted under
    twice: list[tuple[str, str]] = []  # (id, the id of the same file counted before)
    # Real folders before linked ones: a file reached both ways counts under its own folder.
    for cls_dir in sorted(_class_folders(folder), key=lambda p: (p.is_symlink(), p.name)):
        k = class_of_folder(cls_dir.name)
        images = _images_below(cls_dir, skipped)
        if k is None:
            excluded[cls_dir.name] += len(images)
            continue
        for f in images:
            item = f"{cls_dir.name}/{f.relative_to(cls_dir).as_posix()}"
            real = f.resolve()
            if real in first_id:  # a linked class folder (joy -> happy) or file: the same image again
                twice.append((item, first_id[real]))
                continue
            first_id[real] = item
            other = [part for part in f.relative_to(cls_dir).parts[:-1] if class_of_folder(part) not in (None, k)]
            if other:
                nested[f"{cls_dir.name}/{other[0]}/"] += 1
            ids.append(item)
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
    if twice:
        warnings.warn(f"{where}: {len(twice)} image(s) reached twice through links (e.g. {twice[0][0]} is "
                      f"{twice[0][1]}): counted once; dataset.report['duplicate_links'] counts them", stacklevel=4)
    if nested:
        warnings.warn(f"{where}: {sum(nested.values())} image(s) in folders named after another class inside a class "
                      "folder, labelled by the class folder: " + ", ".join(f"{name} ({n})" for name, n in
                                                                          sorted(nested.items()))
                      + "; move them if that is not their class", stacklevel=4)
    report = {"excluded_classes": dict(sorted(excluded.items())), "skipped": skipped.report(),
              "duplicate_links": len(twice), "nested_class_folders": dict(sorted(nested.items())),
              "missing_classes": missing_classes(labels, where)}
    return ids, labels, files, report


def _images_below(folder: Path, skipped: Skipped) -> list[Path]:
    """Image files at any depth below ``folder``, sorted; hidden ones (a hidden folder counted
    as one) and other files are added to ``skipped``. Linked folders inside are not followed
    (a link loop would never end). A folder that cannot be listed is an error naming it: its
    images would otherwise be dropped without a word."""
    out = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError as e:
            what = "class folder" if current == folder else "folder"
            raise PermissionError(e.errno, f"cannot read the {what} {current} ({e.strerror}); its images would be "
                                  "left out: make it readable (chmod -R a+rX) or move it out of the data root") from None
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir():  # follows links, as a class folder may be one
                if is_hidden(path):
                    skipped.add(path)  # __MACOSX, .ipynb_checkpoints: counted as that folder
                elif not entry.is_symlink():
                    pending.append(path)
            elif not is_hidden(path) and path.suffix.lower() in IMAGE_SUFFIXES:
                out.append(path)
            else:
                skipped.add(path)
    return sorted(out)


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

    One detector per thread: images are decoded on a thread pool. The first is built here, on
    the thread that lists the items, before any worker starts: building it imports OpenCV, and
    threads importing cv2 at the same moment can see a half-initialised module (no
    ``cv2.data``: "this OpenCV has no Haar cascades"), which failed most images of a split.
    A detector that cannot be built is then one error, not an unreadable image per file.
    """

    def __init__(self) -> None:
        # the Predictor's defaults too (data/faces.py), so the two crops cannot drift apart
        self.detector, self.margin = DEFAULT_DETECTOR, DEFAULT_MARGIN
        self.key = f"{self.detector}+margin{self.margin}"
        self._local = threading.local()
        try:
            self._local.detector = make_detector(self.detector)
        except RuntimeError as e:  # no cascade in this OpenCV: one error (exit 2), before any image is read
            raise ValueError(f"crop_faces: the face detector cannot be built: {e}") from None

    def __call__(self, rgb: np.ndarray) -> Box | None:
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

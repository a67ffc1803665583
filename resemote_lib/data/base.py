"""The dataset every family returns, and what the families share to list a split's items.

A family module (``fer2013``, ``rafdb``, ``affectnet``, ``folder``) lists a split's items
(``Items``): ids, canonical labels, and where the pixels are (a file, with an optional face
box, or in-memory pixels from a CSV), using the helpers here: CSV rows checked against
their header, seeded stratified splits, which files in a folder are images. ``cache``
decodes the items once (each file read as ``predict`` reads a photo: ``upright``, EXIF
orientation applied, then ``to_8bit`` and ``to_gray_square``) and wraps them as a
``FaceDataset``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from torch import Tensor

from ..labels import CLASS_NAMES
from .transforms import EVAL, Preset

log = logging.getLogger(__name__)
Box = tuple[int, int, int, int]  # (x, y, w, h)


class FaceLocator(Protocol):
    """Finds the face to crop in a whole photo (``folder.FaceCrop``); None: no face."""

    key: str  # names the detector and its settings in the cache key

    def __call__(self, rgb: np.ndarray) -> Box | None: ...


@dataclass
class Items:
    """What a family lists for one split, before decoding."""

    ids: list[str]
    labels: list[int]
    files: list[Path] | None = None  # one image file per item...
    pixels: np.ndarray | None = None  # ...or uint8 (N, H, W) already in memory
    boxes: list[Box | None] | None = None  # (x, y, w, h) face crops
    locate: FaceLocator | None = None  # ...or a detector that finds each file's face when it is decoded
    sources: list[Path] = field(default_factory=list)  # label/CSV files the split came from
    report: dict[str, Any] = field(default_factory=dict)  # exclusions, seeds, fractions


class FaceDataset(torch.utils.data.Dataset):
    """A decoded split: ``images`` uint8 ``(N, 1, S, S)``, ``labels`` int64 ``(N,)``.

    Items are ``(image, label)`` with ``image`` the preprocessed float ``(3, S, S)``;
    training code should prefer whole batches (``images[idx]`` + ``transform``), which
    skips per-item Python work entirely.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        ids: list[str],
        *,
        name: str,
        split: str,
        layout: str,
        root: Path,
        transform: Preset = EVAL,
        report: dict[str, Any] | None = None,
        class_names: tuple[str, ...] = CLASS_NAMES,
    ) -> None:
        if not (len(images) == len(labels) == len(ids)):
            raise ValueError(f"images/labels/ids disagree: {len(images)}, {len(labels)}, {len(ids)}")
        self.images, self.labels, self.ids = images, labels, ids
        self.name, self.split, self.layout, self.root = name, split, layout, root
        self.transform = transform
        self.report = report or {}
        self.class_names = class_names

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])

    def counts(self) -> list[int]:
        """Items per class, in ``class_names`` order."""
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    def summary(self) -> pd.DataFrame:
        """Per-class counts and shares, for display (the paper's Table II, one column)."""
        counts = self.counts()
        total = max(1, sum(counts))
        return pd.DataFrame(
            {"class": self.class_names, "count": counts, "share": [c / total for c in counts]}
        ).set_index("class")

    def membership_hash(self) -> str:
        """SHA-256 of the sorted item ids with their labels: equal iff same split."""
        h = hashlib.sha256()
        for item_id, y in sorted(zip(self.ids, self.targets, strict=True)):
            h.update(f"{item_id}\t{y}\n".encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (f"FaceDataset({self.name}/{self.split}, layout={self.layout}, n={len(self)}, "
                f"size={self.image_size}, transform={self.transform.name})")


def read_csv_rows(path: Path, header: list[str]) -> Iterator[tuple[str, list[str]]]:
    """Rows of a CSV after checking its header and each row's field count.

    Reads UTF-8, with or without the byte-order mark that Excel's "CSV UTF-8" writes.
    A file in another encoding (UTF-16, latin-1/Windows-1252) is one ``ValueError``
    naming the file, the line and the encoding to save it as; so is a row the csv module
    refuses (a field over its 131,072-character limit: not a dataset's CSV).

    Yields ``(where, row)`` with ``where`` = ``"<file>, line <n>"`` for error messages.
    """
    _check_csv_encoding(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            found = next(reader, None)
            if found is None or [h.strip() for h in found] != header:
                raise ValueError(f"{path}, line 1: expected header {','.join(header)!r}, got {found!r}")
            for row in reader:
                where = f"{path}, line {reader.line_num}"
                if len(row) != len(header):
                    raise ValueError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(row)}")
                yield where, row
        except UnicodeDecodeError:
            raise ValueError(_not_utf8(path)) from None
        except csv.Error as e:  # e.g. "field larger than field limit (131072)", which names neither
            limit = csv.field_size_limit()
            what = f"a field of more than {limit} characters" if "field limit" in str(e) else "not CSV"
            raise ValueError(f"{path}, line {reader.line_num}: {what} ({e}); expected rows of "
                             f"{','.join(header)}: is this the right file?") from None


_SAVE_AS_UTF8 = ("save it as UTF-8 (Excel: File > Save As > 'CSV UTF-8 (Comma delimited)'; a text editor: "
                 "encoding UTF-8), or convert it: iconv -f {enc} -t UTF-8 in.csv > out.csv")


def _check_csv_encoding(path: Path) -> None:
    """Refuse UTF-16 up front: its ASCII text is valid UTF-8 with NULs in between."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        raise ValueError(f"{path}: the file is UTF-16 text (Excel's 'Unicode Text'), not UTF-8; "
                         + _SAVE_AS_UTF8.format(enc="UTF-16"))


def _not_utf8(path: Path) -> str:
    """The message for a CSV that is not UTF-8: the first offending line and byte."""
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                byte = line[e.start:e.start + 1]
                return (f"{path}, line {line_no}: byte {byte!r} at column {e.start + 1} is not UTF-8; the file is "
                        f"probably latin-1/Windows-1252 (older Excel 'CSV'); "
                        + _SAVE_AS_UTF8.format(enc="WINDOWS-1252"))
    return f"{path}: not UTF-8 text; " + _SAVE_AS_UTF8.format(enc="WINDOWS-1252")


def stratified_split(
    labels: list[int], fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """Split indices into disjoint, stratified, seeded parts of the given fractions.

    The last part takes the remainder; each class is shuffled with ``seed`` and cut in
    the same proportions, so per-class shares are kept in every part.
    """
    if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"fractions must be non-negative and sum to at most 1, got {fractions}")
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for cls in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == cls)
        rng.shuffle(idx)
        cuts = np.round(np.cumsum(fractions) * len(idx)).astype(int)
        for k, chunk in enumerate(np.split(idx, cuts)):
            parts[k].extend(chunk.tolist())
    # parts[0..k-1] are the requested fractions, parts[-1] the remainder
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


# PIL modes, by what decoding does with them (https://pillow.readthedocs.io/en/stable/handbook/concepts.html).
_8BIT_MODES = {"L": "L", "1": "L", "LA": "L", "RGB": "RGB", "P": "RGB", "PA": "RGB", "RGBA": "RGB", "RGBX": "RGB",
               "CMYK": "RGB", "YCbCr": "RGB"}
_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # 16-bit PNG/TIFF grayscale ("I": 32-bit int holding it)


def to_8bit(img: Image.Image, source: str | os.PathLike | None = None) -> Image.Image:
    """An 8-bit ``L`` or ``RGB`` image from any PIL mode that holds a photograph.

    8-bit modes convert as PIL does (alpha is dropped; palette, CMYK and YCbCr become
    RGB). 16-bit grayscale (``I;16*``, and ``I`` with values in 0..65535) is scaled to
    8 bits (v / 257, rounded): PIL's own ``convert("L")`` clips it, so almost every pixel
    of a 16-bit PNG would turn white. Any other mode (``F`` float, ``LAB``, ``HSV``...)
    is a ``ValueError`` naming the file and the mode.

    Args:
        img: the image (its ``filename`` names it in errors when ``source`` is not given).
        source: what to call the image in an error message.
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in _8BIT_MODES:
        return img.convert(_8BIT_MODES[mode])
    name = source if source is not None else (getattr(img, "filename", "") or "image")
    if mode in _16BIT_MODES:
        arr = np.asarray(img).astype(np.int64)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(f"{name}: PIL mode {mode!r} with values {lo}..{hi} is not a 16-bit image (0..65535); "
                             "save it as 8- or 16-bit grayscale or RGB")
        return Image.fromarray(((arr + 128) // 257).astype(np.uint8), "L")
    what = {"F": "32-bit floating point", "LAB": "CIE L*a*b*", "HSV": "hue/saturation/value"}.get(mode, "unsupported")
    raise ValueError(f"{name}: PIL mode {mode!r} ({what} pixels) cannot be read as a photograph; save it as 8- or "
                     "16-bit grayscale or RGB (PNG, JPEG)")


def upright(img: Image.Image, source: str | os.PathLike | None = None) -> Image.Image:
    """A photo as viewers show it, 8-bit (``to_8bit``): turned by its EXIF orientation
    (``ImageOps.exif_transpose``), since a phone stores a portrait photo sideways with a tag
    saying so and the model must see the face upright. The one reading of a photo that
    evaluation (every image file without a face box) and ``predict`` share."""
    return to_8bit(ImageOps.exif_transpose(img), source)


def to_gray_square(img: Image.Image, size: int, box: tuple[int, int, int, int] | None = None,
                   *, source: str | os.PathLike | None = None) -> np.ndarray:
    """Crop (optional), grayscale (ITU-R 601-2 luma, as torchvision's Grayscale), resize.

    Any PIL mode is first made 8-bit by ``to_8bit`` (16-bit scaled, unsupported modes
    refused by name). Resize is bilinear with antialiasing, as torchvision's ``Resize``
    on PIL images.
    """
    img = to_8bit(img, source)
    if box is not None:
        x, y, w, h = box
        img = img.crop((x, y, x + w, y + h))
    img = img.convert("L")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


# --- which files in a folder are images ------------------------------------------------

# Every format PIL decodes that image datasets ship in (Kaggle folders mix .jpg, .png, .webp, .gif).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})


def is_hidden(path: Path) -> bool:
    """Dot files and folders: macOS AppleDouble ``._x.jpg``, ``.DS_Store``, ``.ipynb_checkpoints``;
    and ``__MACOSX/``, where macOS zips keep their AppleDouble copies."""
    return path.name.startswith(".") or path.name == "__MACOSX"


@dataclass
class Skipped:
    """Files a folder listing left out: hidden ones (counted) and non-images (counted, one example)."""

    hidden: int = 0
    other: int = 0
    example: Path | None = None

    def add(self, path: Path) -> None:
        if is_hidden(path):
            self.hidden += 1
        else:
            self.other += 1
            self.example = self.example or path

    def report(self) -> dict[str, int]:
        return {"hidden": self.hidden, "not_images": self.other}

    def warn(self, where: str | os.PathLike) -> None:
        """One warning for the non-image files (hidden files are expected and only counted)."""
        if self.other:
            warnings.warn(f"{where}: skipped {self.other} file(s) that are not images "
                          f"({', '.join(sorted(IMAGE_SUFFIXES))}), e.g. {self.example}", stacklevel=3)
        if self.hidden:
            log.info("%s: skipped %d hidden file(s) (macOS ._* AppleDouble, .DS_Store...)", where, self.hidden)


def missing_classes(labels: list[int], where: str) -> list[str]:
    """The classes with no image in a split listed from class folders, with one warning:
    a missing (or empty) ``disgust/`` would otherwise train and test without that class."""
    present = set(labels)
    missing = [name for k, name in enumerate(CLASS_NAMES) if k not in present]
    if missing:
        warnings.warn(f"{where}: no images of {', '.join(missing)} (class folder missing or empty): the model "
                      "sees none of that class; dataset.report['missing_classes'] lists them", stacklevel=3)
    return missing


def image_files(folder: Path, skipped: Skipped) -> list[Path]:
    """The image files directly in ``folder``, sorted; the rest are added to ``skipped``."""
    out = []
    for f in sorted(folder.iterdir()):
        if f.is_file() and not is_hidden(f) and f.suffix.lower() in IMAGE_SUFFIXES:
            out.append(f)
        else:  # hidden files, other files, and folders nested where images belong
            skipped.add(f)
    return out


__all__ = ["IMAGE_SUFFIXES", "Box", "FaceDataset", "FaceLocator", "Items", "Skipped", "image_files", "is_hidden",
           "missing_classes", "read_csv_rows", "stratified_split", "to_8bit", "to_gray_square", "upright"]

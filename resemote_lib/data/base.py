"""The dataset every family returns, decoded once into a uint8 tensor cache.

A family module (``fer2013``, ``rafdb``, ``affectnet``) lists a split's items: ids,
canonical labels, and where the pixels are (a file, with an optional face box, or
in-memory pixels from a CSV). This module decodes them once to grayscale uint8 at the
target size, caches that tensor on disk under a key made of the items (ids, labels, files,
face boxes), and wraps it as ``FaceDataset``. Each cache entry records a digest of what
its pixels came from (every file's size and mtime with its first and last 4 KiB, or the
in-memory pixels): an entry whose files changed, even keeping size and mtime (``cp -p``,
``rsync -a``, unzip) unless only in the middle of a large file, or whose tensor has the
wrong shape, or that is damaged, is rebuilt. Files are decoded as ``predict`` reads a
photo (``upright``: EXIF orientation applied, then ``to_8bit``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps
from torch import Tensor

from .. import paths
from ..files import atomic_torch_save
from ..labels import CLASS_NAMES
from ..progress import tqdm
from .transforms import EVAL, TRAIN, Preset

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # bump when decoding changes, so old caches are not reused (3: EXIF orientation)
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


def _cache_key(name: str, layout: str, split: str, image_size: int, items: Items) -> str:
    """Which items, decoded how: ids, labels, files, boxes, face detector (not their bytes:
    ``content_digest`` checks those when the entry is read)."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, name, layout, split, image_size]).encode())
    h.update(json.dumps([items.ids, items.labels]).encode())
    h.update(json.dumps(items.boxes or []).encode())
    h.update(json.dumps([str(f) for f in items.files or []]).encode())
    h.update(json.dumps(items.locate.key if items.locate is not None else None).encode())
    return h.hexdigest()[:24]


_EDGE = 4096  # bytes read from each end of a file for its digest


def file_digest(path: Path) -> bytes:
    """A file's size and mtime with its first and last 4 KiB: the whole file below 8 KiB (a
    FER2013 JPEG is ~1.5 KB), and for larger ones what a re-encode or a different image
    changes; an edit in the middle shows in the mtime (only one that keeps size and mtime
    stays unseen).

    Plain ``os`` calls, one thread: on FER2013's 28,709 training files this costs what the
    ``stat`` of each file did (about 0.6 s warm); a thread pool was 5x slower.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b"missing"
    try:
        st = os.fstat(fd)
        size = st.st_size
        data = os.read(fd, 2 * _EDGE) if size <= 2 * _EDGE else os.read(fd, _EDGE) + os.pread(fd, _EDGE, size - _EDGE)
    except OSError:
        return b"unreadable"
    finally:
        os.close(fd)
    return size.to_bytes(8, "little") + st.st_mtime_ns.to_bytes(16, "little", signed=True) + data


def content_digest(items: Items) -> str:
    """A digest of what the items' pixels come from: the in-memory pixels, or every
    file's ``file_digest``. Unlike size and mtime, it changes when a copy keeps those."""
    h = hashlib.sha256()
    if items.pixels is not None:
        h.update(repr(items.pixels.shape).encode())
        h.update(np.ascontiguousarray(items.pixels).data)
    for f in items.files or []:
        data = file_digest(f)
        h.update(len(data).to_bytes(4, "little") + data)
    return h.hexdigest()


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


def _decode_file(args: tuple[Path, int, Box | None]) -> np.ndarray | str:
    """A file made gray and square: upright (EXIF) when whole, as stored when cropped to a box
    (the box is given in the stored pixels' coordinates)."""
    path, size, box = args
    try:
        with Image.open(path) as img:
            img.load()
            return to_gray_square(img if box is not None else upright(img, path), size, box, source=path)
    except Exception as e:  # PIL raises many types on corrupt data; we report, not crash
        return f"{type(e).__name__}: {e}"


NO_FACE = None  # what ``_decode_face`` returns for a photo in which the detector found no face


def _decode_face(args: tuple[Path, int, FaceLocator]) -> np.ndarray | str | None:
    """The face ``locate`` finds in a whole photo, cropped as the Predictor crops it (from
    the RGB image), then made gray and square; ``NO_FACE`` when it finds none."""
    path, size, locate = args
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(upright(img, path).convert("RGB"))
        box = locate(rgb)
        if box is None:
            return NO_FACE
        x, y, w, h = box
        return to_gray_square(Image.fromarray(rgb[y:y + h, x:x + w]), size)
    except Exception as e:  # as _decode_file: reported, not a crash
        return f"{type(e).__name__}: {e}"


@dataclass
class Decoded:
    """What decoding a split gives, and what its cache entry holds."""

    images: Tensor  # uint8 (len(keep), 1, S, S)
    keep: list[int]  # the items decoded, as indices into the listing
    bad: list[dict]  # unreadable files: {"id", "file", "error"}
    no_face: list[dict]  # photos in which the face detector found no face: {"id", "file"}


def decode_items(items: Items, image_size: int, *, desc: str = "decode") -> Decoded:
    """Decode every item (cropping each file's face when ``items.locate`` is set)."""
    n = len(items.ids)
    out = np.zeros((n, image_size, image_size), dtype=np.uint8)
    bad: list[dict] = []
    no_face: list[dict] = []
    keep: list[int] = []
    if items.pixels is not None:
        for i in range(n):
            out[i] = to_gray_square(Image.fromarray(items.pixels[i]), image_size)
        keep = list(range(n))
    else:
        assert items.files is not None
        if items.locate is not None:
            decode, jobs = _decode_face, [(f, image_size, items.locate) for f in items.files]
        else:
            boxes = items.boxes or [None] * n
            decode, jobs = _decode_file, [(f, image_size, b) for f, b in zip(items.files, boxes, strict=True)]
        workers = min(8, (os.cpu_count() or 1) * 2)
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(decode, jobs, chunksize=64)
            for i, res in enumerate(tqdm(results, total=n, desc=desc, unit="img", leave=False, disable=n < 500)):
                if isinstance(res, str):
                    bad.append({"id": items.ids[i], "file": str(items.files[i]), "error": res})
                elif res is NO_FACE:
                    no_face.append({"id": items.ids[i], "file": str(items.files[i])})
                else:
                    out[i] = res
                    keep.append(i)
    images = torch.from_numpy(out[keep]).unsqueeze(1).contiguous()
    return Decoded(images, keep, bad, no_face)


def _read_entry(cache_file: Path, n: int, image_size: int, content: str) -> Decoded | None:
    """The cache entry, if it is sound and its files are unchanged; else None (rebuild).

    A damaged entry (unreadable, wrong image size, indices outside the split) is a warning
    naming it; changed files are a log line (rebuilding is the point of the digest).
    """
    if not cache_file.is_file():
        return None
    try:
        entry = torch.load(cache_file, map_location="cpu", weights_only=True)
        decoded = Decoded(entry["images"], entry["keep"].tolist(), json.loads(entry["bad"]),
                          json.loads(entry["no_face"]))
        problem = _entry_problem(decoded, n, image_size)
        fresh = entry["content"] == content
    except Exception as e:  # a damaged cache is rebuilt, not trusted
        problem, fresh = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}", True
    if problem:
        warnings.warn(f"decode cache {cache_file} is damaged ({problem}); rebuilding it", stacklevel=4)
        return None
    if not fresh:
        log.info("decode cache %s: its files changed since it was written; decoding them again", cache_file)
        return None
    return decoded


def _entry_problem(decoded: Decoded, n: int, image_size: int) -> str | None:
    """What is wrong with a cache entry's contents, or None."""
    images, keep = decoded.images, decoded.keep
    expected = (len(keep), 1, image_size, image_size)
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or tuple(images.shape) != expected:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        return f"images of shape {shape}, expected {expected} uint8"
    k = np.asarray(keep, dtype=np.int64)
    if k.size and (k.min() < 0 or k.max() >= n or (np.diff(k) <= 0).any()):
        return f"item indices outside the split's {n} items, or out of order"
    if not isinstance(decoded.bad, list) or not isinstance(decoded.no_face, list):
        return "malformed lists of excluded files"
    return None


def build_dataset(
    items: Items,
    *,
    name: str,
    layout: str,
    split: str,
    root: Path,
    image_size: int,
    train: bool,
    strict: bool = False,
    cache_dir: Path | None = None,
) -> FaceDataset:
    """Decode (or load from cache) ``items`` and wrap them as a ``FaceDataset``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.CACHE / "datasets"
    key = _cache_key(name, layout, split, image_size, items)
    cache_file = cache_dir / f"{name}-{split}-{image_size}-{key}.pt"
    content = content_digest(items)
    decoded = _read_entry(cache_file, len(items.ids), image_size, content)
    if decoded is None:
        decoded = decode_items(items, image_size, desc=f"{name}/{split}")
        entry = {"images": decoded.images, "keep": torch.tensor(decoded.keep, dtype=torch.int64),
                 "bad": json.dumps(decoded.bad), "no_face": json.dumps(decoded.no_face), "content": content}
        try:
            atomic_torch_save(entry, cache_file)
        except OSError as e:  # a read-only cache dir costs speed, not correctness
            log.warning("could not write cache %s: %s", cache_file, e)
    report = dict(items.report)
    report["bad_files"] = decoded.bad
    report["n_listed"] = len(items.ids)
    bad = decoded.bad
    if bad:
        msg = (f"{name}/{split}: {len(bad)} unreadable image(s) excluded, e.g. {bad[0]['file']} "
               f"({bad[0]['error']}); the full list is in dataset.report['bad_files']")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=3)
    if items.locate is not None:
        report["no_face"] = len(decoded.no_face)
        report["no_face_files"] = [x["file"] for x in decoded.no_face]
        if decoded.no_face:
            warnings.warn(f"{name}/{split}: no face found in {len(decoded.no_face)} of {len(items.ids)} image(s), "
                          f"excluded, e.g. {decoded.no_face[0]['file']}; the list is in "
                          "dataset.report['no_face_files']", stacklevel=3)
    labels = torch.tensor([items.labels[i] for i in decoded.keep], dtype=torch.int64)
    ids = [items.ids[i] for i in decoded.keep]
    return FaceDataset(decoded.images, labels, ids, name=name, split=split, layout=layout, root=root,
                       transform=TRAIN if train else EVAL, report=report)


__all__ = ["IMAGE_SUFFIXES", "Decoded", "FaceDataset", "FaceLocator", "Items", "Skipped", "build_dataset",
           "content_digest", "decode_items", "file_digest", "image_files", "is_hidden", "missing_classes",
           "read_csv_rows", "stratified_split", "to_8bit", "to_gray_square", "upright"]

"""FER2013 (Goodfellow et al., 2013): the Kaggle CSV and the Kaggle image folders.

Standard protocol: train = Training (28,709), val = PublicTest (3,589), test =
PrivateTest (3,589). The folder release (msambare/fer2013) merges PublicTest and
PrivateTest into ``test/``; each file name keeps its usage (``PublicTest_5543497.jpg``),
which is how the folder layout yields exactly the CSV's three splits.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..labels import FER2013_CODES, FER2013_FOLDERS
from .base import Items, Skipped, image_files, is_hidden, missing_classes, read_csv_rows
from .cache import file_digest

CSV_HEADER = ["emotion", "pixels", "Usage"]
USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
_PIXELS = 48 * 48

LAYOUTS = {
    "fer2013-csv": "fer2013.csv (header emotion,pixels,Usage)",
    "fer2013-folders": "train/<class>/ and test/<class>/ image folders (msambare/fer2013)",
}


def detect(folder: Path) -> str | None:
    """The layout at ``folder``; both at once is an error (which one is the dataset would be a guess)."""
    csv = (folder / "fer2013.csv").is_file()
    folders = (folder / "train").is_dir() and (folder / "test").is_dir() and any(
        (folder / "train" / c).is_dir() for c in FER2013_FOLDERS
    )
    if csv and folders:
        raise ValueError(f"fer2013: {folder} holds both FER2013 layouts, {folder / 'fer2013.csv'} and the image "
                         f"folders {folder / 'train'}/ and {folder / 'test'}/; they may not be the same images: "
                         "move one of them to another folder and pass that folder as the data root")
    return "fer2013-csv" if csv else "fer2013-folders" if folders else None


@functools.lru_cache(maxsize=4)
def _read_csv(path: Path, _size: int, _mtime_ns: int, _digest: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse and validate the whole CSV once per file version (size, mtime and its first and
    last 4 KiB: ``cp -p`` of another CSV keeps the first two): labels, usages, pixels."""
    labels, usages, pixels = [], [], []
    for where, (code, pix, usage) in read_csv_rows(path, CSV_HEADER):
        try:
            code_int = int(code)
        except ValueError:
            raise ValueError(f"{where}: emotion {code!r} is not an integer") from None
        if code_int not in FER2013_CODES:
            raise ValueError(f"{where}: unknown emotion code {code_int} "
                             f"(expected one of {sorted(FER2013_CODES)})")
        if usage not in USAGE.values():
            raise ValueError(f"{where}: unknown Usage {usage!r} "
                             f"(expected one of {sorted(USAGE.values())})")
        try:
            values = np.array(pix.split(), dtype=np.int32)
        except ValueError:
            raise ValueError(f"{where}: pixels must be space-separated integers") from None
        if values.size != _PIXELS:
            raise ValueError(f"{where}: {values.size} pixel values, expected {_PIXELS} (48x48)")
        if values.min() < 0 or values.max() > 255:
            raise ValueError(f"{where}: pixel values must lie in 0..255")
        labels.append(FER2013_CODES[code_int])
        usages.append(usage)
        pixels.append(values.astype(np.uint8).reshape(48, 48))
    return np.array(labels), np.array(usages), np.stack(pixels) if pixels else np.zeros((0, 48, 48), np.uint8)


def list_csv(root: Path, split: str) -> Items:
    path = root / "fer2013.csv"
    st = path.stat()
    labels, usages, pixels = _read_csv(path, st.st_size, st.st_mtime_ns, file_digest(path))
    idx = np.flatnonzero(usages == USAGE[split])
    # Item id = the CSV data row (1-based, header excluded): stable across runs.
    return Items(ids=[f"row{i + 1}" for i in idx], labels=labels[idx].tolist(), pixels=pixels[idx],
                 sources=[path], report={"usage": USAGE[split], "source": str(path)})


def list_folders(root: Path, split: str) -> Items:
    """One split of the Kaggle folders, from each file name's usage prefix.

    Every image format PIL reads is listed (``base.IMAGE_SUFFIXES``); hidden files
    (macOS ``._*`` AppleDouble copies, ``.DS_Store``) are skipped and counted, and other
    skipped files are counted and warned about once (``report["skipped"]``).
    """
    usage = USAGE[split]
    folder = root / ("train" if split == "train" else "test")
    ids, labels, files = [], [], []
    unknown = []
    skipped = Skipped()
    for cls_dir in sorted(folder.iterdir()):
        if is_hidden(cls_dir) or not cls_dir.is_dir():  # .DS_Store, a README beside the class folders
            skipped.add(cls_dir)
            continue
        if cls_dir.name not in FER2013_FOLDERS:
            raise ValueError(f"{cls_dir}: unknown class folder {cls_dir.name!r} "
                             f"(expected {sorted(FER2013_FOLDERS)})")
        for f in image_files(cls_dir, skipped):
            prefix = f.name.split("_", 1)[0]
            if prefix not in USAGE.values():
                unknown.append(f)
                continue
            if prefix == usage:
                ids.append(f"{cls_dir.name}/{f.name}")
                labels.append(FER2013_FOLDERS[cls_dir.name])
                files.append(f)
    if unknown:
        raise ValueError(f"{len(unknown)} file(s) under {folder} have no Training_/PublicTest_/PrivateTest_ "
                         f"prefix, so their split is unknown, e.g. {unknown[0]}")
    skipped.warn(folder)
    missing = missing_classes(labels, f"fer2013/{split} ({folder})")
    return Items(ids=ids, labels=labels, files=files,
                 report={"usage": usage, "source": str(folder), "skipped": skipped.report(),
                         "missing_classes": missing})


def list_items(root: Path, layout: str, split: str, **_: object) -> Items:
    return list_csv(root, split) if layout == "fer2013-csv" else list_folders(root, split)


__all__ = ["CSV_HEADER", "LAYOUTS", "USAGE", "detect", "list_items"]

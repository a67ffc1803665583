"""Datasets: one entry point, ``open_dataset``, for every dataset in every layout.

Each family lives in its own module (``fer2013``, ``rafdb``, ``affectnet``, plus
``synthetic``, which writes a real fer2013.csv); this module finds the layout under the
folder you give (or one level above or below it, or ``/kaggle/input/<slug>``) and
returns a decoded, cached ``FaceDataset``. A layout found anywhere but at the folder you
gave is a warning naming where, and several datasets below it are an error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from .. import paths
from . import affectnet, fer2013, rafdb, synthetic
from .base import FaceDataset, build_dataset, is_hidden, stratified_split

log = logging.getLogger(__name__)

FAMILIES = {"fer2013": fer2013, "rafdb": rafdb, "affectnet": affectnet}
NAMES = ("fer2013", "rafdb", "affectnet", "synthetic")
SPLITS = ("train", "val", "test")
# Where Kaggle mounts attached datasets (read-only); RESEMOTE_KAGGLE_INPUT moves it (tests
# simulate a Kaggle kernel's layout in a temporary folder).
KAGGLE_INPUT = Path(os.environ.get("RESEMOTE_KAGGLE_INPUT", "/kaggle/input"))
KAGGLE_SLUGS = {
    "fer2013": "msambare/fer2013",
    "rafdb": "shuvoalok/raf-db-dataset",
    "affectnet": "noamsegal/affectnet-training-data",
}
SYNTHETIC_DEFAULTS = {"n_train": 3000, "n_val": 400, "n_test": 600, "seed": 0}


def default_root(name: str) -> Path:
    """Where Kaggle mounts the attached dataset (``/kaggle/input/<slug name>``, or the newer
    ``/kaggle/input/datasets/<owner>/<slug name>``) when it exists, else ``data/<name>``."""
    if name in KAGGLE_SLUGS:
        owner, slug = KAGGLE_SLUGS[name].split("/")
        for mounted in (KAGGLE_INPUT / slug, KAGGLE_INPUT / "datasets" / owner / slug):
            if mounted.is_dir():
                return mounted
    return paths.DATA / name


def _subfolders(root: Path) -> list[Path]:
    """Folders one level below ``root``, skipping hidden ones and macOS's ``__MACOSX``."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p)) if root.is_dir() else []


def detect_layout(name: str, root: str | os.PathLike, *, quiet: bool = False) -> tuple[str, Path]:
    """Find ``name``'s layout at ``root``, else one level below it, else one level above.

    Returns ``(layout, dataset_root)``. A layout found below or above ``root`` is used
    with a warning naming where (``quiet=True``: a log line, for callers that use the
    returned root themselves, such as a download unpacking a nested zip); several datasets
    below ``root`` (``data/fer2013`` and ``data/fer2013_copy``) are an error listing them,
    since picking one would be a guess. Raises ``FileNotFoundError`` listing the layouts
    looked for and what was found.
    """
    family = FAMILIES[name]
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"{name}: folder {root} does not exist. Looked for layouts: "
            + "; ".join(f"{k}: {v}" for k, v in family.LAYOUTS.items())
            + f". Download with resemote_lib.kaggle.download({name!r}, {str(root)!r}) or pass the right root."
        )
    layout = family.detect(root)
    if layout is not None:
        return layout, root
    below = [(folder, family.detect(folder)) for folder in _subfolders(root)]
    below = [(folder, layout) for folder, layout in below if layout is not None]
    if len(below) > 1:
        raise ValueError(f"{name}: {root} holds {len(below)} datasets one level below it: "
                         + ", ".join(f"{folder} ({layout})" for folder, layout in below)
                         + "; pass the one you mean as the data root (data_root=...)")
    above = family.detect(root.parent)
    if below or above is not None:
        folder, layout = below[0] if below else (root.parent, above)
        message = (f"{name}: no dataset at {root} itself; using the {layout} layout found one level "
                   f"{'below' if below else 'above'} it, at {folder}")
        if quiet:
            log.info(message)
        else:
            warnings.warn(f"{message}. Pass {folder} as the data root to silence this warning", stacklevel=2)
        return layout, folder
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:20] if root.is_dir() else []
    raise FileNotFoundError(
        f"{name}: no known layout at {root} (nor one level above or below). Looked for: "
        + "; ".join(f"{k}: {v}" for k, v in family.LAYOUTS.items())
        + f". Found there: {found or 'nothing'}"
    )


def unpack_archives(folder: str | os.PathLike, *, keep: bool = False) -> list[Path]:
    """Unpack every ``*.zip`` in ``folder`` into it (what a Kaggle download leaves there).

    Returns the archives unpacked; ``keep=False`` deletes each once unpacked.
    """
    archives = sorted(Path(folder).glob("*.zip"))
    for archive in archives:
        log.info("unpacking %s", archive)
        shutil.unpack_archive(archive, folder)
        if not keep:
            archive.unlink()
    return archives


def ensure_synthetic(root: str | os.PathLike | None = None, **sizes: int) -> Path:
    """Write the synthetic fer2013.csv under ``root`` unless the same one is there."""
    root = Path(root) if root is not None else paths.DATA / "synthetic"
    spec = {**SYNTHETIC_DEFAULTS, **sizes}
    unknown = set(spec) - set(SYNTHETIC_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown synthetic options {sorted(unknown)}; known: {sorted(SYNTHETIC_DEFAULTS)}")
    marker = root / "synthetic.json"
    csv_path = root / "fer2013.csv"
    if not (csv_path.is_file() and marker.is_file() and json.loads(marker.read_text()) == spec):
        synthetic.write_fer2013_csv(csv_path, **spec)
        marker.write_text(json.dumps(spec))
    return root


def open_dataset(
    name: str,
    root: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 64,
    train: bool | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    test_per_class: int | None = None,
    strict: bool = False,
    cache_dir: str | os.PathLike | None = None,
    synthetic_sizes: dict[str, int] | None = None,
) -> FaceDataset:
    """Open one split of a dataset, decoded once and cached.

    Args:
        name: ``fer2013``, ``rafdb``, ``affectnet`` or ``synthetic``.
        root: the dataset folder (any supported layout, or one level above/below it);
            None: ``/kaggle/input/<slug>`` if present, else ``data/<name>``.
        split: ``train``, ``val`` or ``test``.
        image_size: side of the square model input (64 in the paper).
        train: use the training preset (random flip); default: ``split == "train"``.
        val_fraction: RAF-DB / AffectNet validation hold-out from the training list.
        test_fraction: AffectNet Kaggle release only (it has no official splits).
        seed: seed of every hold-out and subset; recorded in ``dataset.report``.
        test_per_class: AffectNet official: items per class in the test set (paper: 500).
        strict: make an unreadable image an error instead of an excluded, reported item.
        cache_dir: where decoded tensors are kept (default ``.cache/datasets``).
        synthetic_sizes: ``n_train``, ``n_val``, ``n_test``, ``seed`` for ``synthetic``.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; available: {list(NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; available: {list(SPLITS)}")
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError(f"fractions must lie in [0, 1): val_fraction={val_fraction}, test_fraction={test_fraction}")
    family_name = "fer2013" if name == "synthetic" else name
    if name == "synthetic":
        root = ensure_synthetic(root, **(synthetic_sizes or {}))
    elif root is None:
        root = default_root(name)
    layout, dataset_root = detect_layout(family_name, root)
    items = FAMILIES[family_name].list_items(
        dataset_root, layout, split, val_fraction=val_fraction, test_fraction=test_fraction,
        seed=seed, test_per_class=test_per_class,
    )
    items.report.setdefault("layout", layout)
    return build_dataset(items, name=name, layout=layout, split=split, root=dataset_root,
                         image_size=image_size, train=split == "train" if train is None else train,
                         strict=strict, cache_dir=Path(cache_dir) if cache_dir else None)


def open_splits(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> dict[str, FaceDataset]:
    """``{"train": ..., "val": ..., "test": ...}`` with the same options."""
    return {split: open_dataset(name, root, split, **kwargs) for split in SPLITS}


__all__ = ["KAGGLE_SLUGS", "NAMES", "SPLITS", "FaceDataset", "default_root", "detect_layout",
           "ensure_synthetic", "open_dataset", "open_splits", "stratified_split", "unpack_archives"]

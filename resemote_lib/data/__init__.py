"""Datasets: one entry point, ``open_dataset``, for every dataset in every layout.

Each family lives in its own module (``fer2013``, ``rafdb``, ``affectnet``, ``folder``
(any folder of class folders), plus ``synthetic``, which writes a real fer2013.csv); this
module finds the layout under the folder you give (or one level above or below it, or
``/kaggle/input/<slug>``) and returns a decoded, cached ``FaceDataset``. A layout found
anywhere but at the folder you gave is a warning naming where, and several datasets below
it are an error. A folder that holds only one zip archive (the Kaggle download, put there
by hand) is unpacked in place once, the zip kept, unless it is a read-only Kaggle mount.

Synthetic faces are written only where nothing else lives: by default into the cache
(``.cache/synthetic/<sizes>-seed<seed>/``), or into a ``data_root`` that is empty or holds
only an earlier synthetic set (its ``synthetic.json`` marker); a folder holding any other
data is refused, never written into.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

from .. import paths
from . import affectnet, fer2013, folder, rafdb, synthetic
from .base import FaceDataset, is_hidden, stratified_split
from .cache import build_dataset

log = logging.getLogger(__name__)

FAMILIES = {"fer2013": fer2013, "rafdb": rafdb, "affectnet": affectnet, "folder": folder}
NAMES = ("fer2013", "rafdb", "affectnet", "folder", "synthetic")
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
    since picking one would be a guess. When nothing is found and ``root`` holds a single
    zip archive (the Kaggle download, put there by hand), it is unpacked in place (the zip
    kept) if it holds the layout, and detection runs again; a read-only Kaggle mount is
    never written to, and an archive that is not the dataset, or would unpack to far more
    than it should, is a ``ValueError`` saying so. Raises ``FileNotFoundError`` listing the
    layouts looked for and what was found.
    """
    family = FAMILIES[name]
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"{name}: folder {root} does not exist. Looked for layouts: "
            + "; ".join(f"{k}: {v}" for k, v in family.LAYOUTS.items())
            + f". Download with resemote_lib.kaggle.download({name!r}, {str(root)!r}) or pass the right root."
        )
    found = _find_layout(name, root, quiet=quiet)
    if found is None and _unpack_single_zip(name, root):
        found = _find_layout(name, root, quiet=quiet)
    if found is not None:
        return found
    listing = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:20] if root.is_dir() else []
    raise FileNotFoundError(
        f"{name}: no known layout at {root} (nor one level above or below). Looked for: "
        + "; ".join(f"{k}: {v}" for k, v in family.LAYOUTS.items())
        + f". Found there: {listing or 'nothing'}"
    )


def _find_layout(name: str, root: Path, *, quiet: bool) -> tuple[str, Path] | None:
    """``detect_layout``'s search: ``root``, then one level below, then one level above."""
    family = FAMILIES[name]
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
    if not below and above is None:
        return None
    folder, layout = below[0] if below else (root.parent, above)
    message = (f"{name}: no dataset at {root} itself; using the {layout} layout found one level "
               f"{'below' if below else 'above'} it, at {folder}")
    if quiet:
        log.info(message)
    else:
        warnings.warn(f"{message}. Pass {folder} as the data root to silence this warning", stacklevel=3)
    return layout, folder


def _unpack_single_zip(name: str, root: Path) -> bool:
    """Unpack the one zip archive ``root`` holds, beside it, when it holds ``name``'s layout.

    Returns whether it did. The archive's listing is checked first (``_check_archive``: file
    count, unpacked size against the disk and against its packed size). It is unpacked into
    a hidden temporary folder and its entries moved up only when they hold the layout, never
    over a file of the same name; the zip is kept. An archive without the layout leaves
    nothing behind and is a ``ValueError`` saying it is not the dataset and what it holds. A
    read-only Kaggle mount (or any folder this process may not write) is an error saying
    where to unpack it instead.
    """
    entries = [p for p in root.iterdir() if not is_hidden(p)] if root.is_dir() else []
    if len(entries) != 1 or entries[0].suffix.lower() != ".zip" or not entries[0].is_file():
        return False
    archive = entries[0]
    if _within(root, KAGGLE_INPUT) or not os.access(root, os.W_OK):
        raise FileNotFoundError(f"{name}: {root} holds only the archive {archive.name}, and is read-only (a Kaggle "
                                f"mount?): unzip it into a writable folder (unzip {archive} -d data/{name}) and pass "
                                "that folder as the data root")
    members = _check_archive(name, archive, root)
    log.warning("%s: %s holds no dataset but the archive %s: unpacking it there (once; the zip is kept)",
                name, root, archive.name)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=root))
    try:
        shutil.unpack_archive(archive, staging)
        if _find_layout(name, staging, quiet=True) is None:
            examples = ", ".join(members[:3]) + (", ..." if len(members) > 3 else "")
            raise ValueError(f"{name}: {archive} is not {name} (no " + " nor ".join(FAMILIES[name].LAYOUTS.values())
                             + f" in it): it holds {len(members)} file(s), e.g. {examples or 'nothing'}; put the "
                             f"{name} archive there instead, or pass the folder that holds the dataset")
        for entry in sorted(staging.iterdir()):
            if not is_hidden(entry):
                entry.rename(root / entry.name)  # entries is [archive]: nothing of that name exists
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


# What a dataset archive can hold: far more files than any release (AffectNet's ~450,000), or
# more than this many bytes unpacked per byte packed (images are already compressed and a CSV of
# pixel values deflates ~4x; a zip bomb deflates ~1000x) is refused before anything is unpacked.
MAX_ARCHIVE_FILES = 2_000_000
MAX_ARCHIVE_RATIO = 50


def _check_archive(name: str, archive: Path, root: Path) -> list[str]:
    """The files ``archive`` holds (sorted names), after checking from its listing alone that
    unpacking it is sane: a readable zip, not too many files, an unpacked size that fits the
    disk and is not far larger than images and CSVs compress to. ``ValueError`` otherwise."""
    try:
        with zipfile.ZipFile(archive) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{name}: {archive} is not a readable zip archive ({e}); download it again") from None
    total, packed = sum(i.file_size for i in infos), archive.stat().st_size
    ratio = total / max(packed, 1)
    unzip = f"if it is the dataset, unzip it yourself (unzip {archive} -d {root})"
    if len(infos) > MAX_ARCHIVE_FILES:
        raise ValueError(f"{name}: {archive} holds {len(infos):,} files, more than any dataset release "
                         f"({MAX_ARCHIVE_FILES:,} at most): not unpacked; {unzip}")
    if total > 10 * 2**20 and ratio > MAX_ARCHIVE_RATIO:
        raise ValueError(f"{name}: {archive} would unpack to {total / 1e6:.0f} MB from {packed / 1e6:.1f} MB "
                         f"({ratio:.0f}x), far more than images or a CSV of pixels compress (a zip bomb?): not "
                         f"unpacked; {unzip}")
    free = shutil.disk_usage(root).free
    if total > free:
        raise ValueError(f"{name}: {archive} would unpack to {total / 1e6:.0f} MB and {root} has "
                         f"{free / 1e6:.0f} MB free: not unpacked; free some space, or unzip it elsewhere and pass "
                         "that folder as the data root")
    return sorted(i.filename for i in infos)


def _within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def unpack_archives(folder: str | os.PathLike, *, keep: bool = False) -> list[Path]:
    """Unpack every ``*.zip`` in ``folder`` into it (what a Kaggle download leaves there).

    Returns the archives unpacked; ``keep=False`` deletes each once unpacked. Each archive's
    listing is checked first, as a zip in a data root is (``_check_archive``).
    """
    archives = sorted(Path(folder).glob("*.zip"))
    for archive in archives:
        _check_archive(archive.stem, archive, Path(folder))
        log.info("unpacking %s", archive)
        shutil.unpack_archive(archive, folder)
        if not keep:
            archive.unlink()
    return archives


# What the synthetic generator writes into its folder (the CSV is written to .tmp, then renamed).
_SYNTHETIC_FILES = frozenset({"fer2013.csv", "synthetic.json", "fer2013.csv.tmp"})


def synthetic_root(**sizes: int) -> Path:
    """Where the synthetic faces of these sizes are kept by default: the cache, one folder
    per sizes and seed (``.cache/synthetic/<n_train>-<n_val>-<n_test>-seed<seed>``)."""
    spec = _synthetic_spec(sizes)
    return paths.CACHE / "synthetic" / "{n_train}-{n_val}-{n_test}-seed{seed}".format(**spec)


def _synthetic_spec(sizes: dict[str, int]) -> dict[str, int]:
    unknown = set(sizes) - set(SYNTHETIC_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown synthetic options {sorted(unknown)}; known: {sorted(SYNTHETIC_DEFAULTS)}")
    return {**SYNTHETIC_DEFAULTS, **sizes}


def ensure_synthetic(root: str | os.PathLike | None = None, **sizes: int) -> Path:
    """Write the synthetic fer2013.csv unless the same one is there; return its folder.

    ``root`` None: ``synthetic_root(**sizes)`` in the cache. A given ``root`` must be
    missing, empty, or hold only an earlier synthetic set (``synthetic.json`` naming the
    CSV it wrote); a folder with anything else (a real ``fer2013.csv``, the Kaggle folders,
    any file) is a ``ValueError`` naming it, and nothing is written.
    """
    spec = _synthetic_spec(sizes)
    root = Path(root).expanduser() if root is not None else synthetic_root(**spec)
    marker, csv_path = root / "synthetic.json", root / "fer2013.csv"
    written = _synthetic_marker(root)
    if written is not None and written["spec"] == spec and written["csv_sha256"] and csv_path.is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"spec": spec, "csv_sha256": None}))  # claims the folder before the CSV exists
    synthetic.write_fer2013_csv(csv_path, **spec)
    marker.write_text(json.dumps({"spec": spec, "csv_sha256": _sha256(csv_path)}))
    return root


def _synthetic_marker(root: Path) -> dict | None:
    """The marker of the synthetic set in ``root`` (None: nothing there yet); refuses a
    folder holding anything the generator did not write, or a CSV changed since."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"synthetic: data_root {root} is a file; synthetic faces need a folder of their own")
    found = sorted(p.name for p in root.iterdir() if not is_hidden(p)) if root.is_dir() else []
    if not found:
        return None
    marker = _read_marker(root / "synthetic.json")
    others = [name for name in found if name not in _SYNTHETIC_FILES or marker is None]
    csv_path = root / "fer2013.csv"
    if not others and marker["csv_sha256"] and csv_path.exists() and (
            not csv_path.is_file() or _sha256(csv_path) != marker["csv_sha256"]):
        others = ["fer2013.csv (changed since the generator wrote it)"]
    if others:
        what = ", ".join(f"{n}/" if (root / n).is_dir() else n for n in others[:6])
        raise ValueError(f"synthetic: data_root {root} holds other data ({what}), not written by the synthetic "
                         "generator; synthetic faces are never written into it. Leave data_root unset (they go to "
                         f"{paths.CACHE / 'synthetic'}) or name an empty folder")
    return marker


def _read_marker(path: Path) -> dict | None:
    """``synthetic.json`` as ``{"spec", "csv_sha256"}`` (None: no CSV finished yet); None when
    absent or not ours. The first format held the sizes alone."""
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(marker, dict) and set(marker) == set(SYNTHETIC_DEFAULTS):
        return {"spec": marker, "csv_sha256": None}
    if isinstance(marker, dict) and isinstance(marker.get("spec"), dict) and "csv_sha256" in marker:
        return marker
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    crop_faces: bool = False,
) -> FaceDataset:
    """Open one split of a dataset, decoded once and cached.

    Args:
        name: ``fer2013``, ``rafdb``, ``affectnet``, ``folder`` or ``synthetic``.
        root: the dataset folder (any supported layout, or one level above/below it);
            None: ``/kaggle/input/<slug>`` if present, else ``data/<name>``; ``folder``
            needs one; ``synthetic``: see ``ensure_synthetic``.
        split: ``train``, ``val`` or ``test`` (a ``folder`` of class folders is an
            evaluation set: all in ``test``, see ``folder``).
        image_size: side of the square model input (64 in the paper).
        train: use the training preset (random flip); default: ``split == "train"``.
        val_fraction: RAF-DB / AffectNet validation hold-out from the training list.
        test_fraction: AffectNet Kaggle release only (it has no official splits).
        seed: seed of every hold-out and subset; recorded in ``dataset.report``.
        test_per_class: AffectNet official: items per class in the test set (paper: 500).
        strict: make an unreadable image an error instead of an excluded, reported item.
        cache_dir: where decoded tensors are kept (default ``.cache/datasets``).
        synthetic_sizes: ``n_train``, ``n_val``, ``n_test``, ``seed`` for ``synthetic``.
        crop_faces: ``folder`` only: crop each photo to the face the Predictor's detector
            finds (with its margin); photos with no face are excluded and counted.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; available: {list(NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; available: {list(SPLITS)}")
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError(f"fractions must lie in [0, 1): val_fraction={val_fraction}, test_fraction={test_fraction}")
    if crop_faces and name != "folder":
        raise ValueError(f"crop_faces is for the folder dataset (whole photos in class folders); {name} images are "
                         "already face crops")
    family_name = "fer2013" if name == "synthetic" else name
    if name == "synthetic":
        root = ensure_synthetic(root, **(synthetic_sizes or {}))
    elif name == "folder" and root is None:
        raise ValueError("dataset folder needs data_root: a folder of class folders (angry/, happy/, ...; see "
                         "resemote_lib.data.folder)")
    elif root is None:
        root = default_root(name)
    layout, dataset_root = detect_layout(family_name, root)
    items = FAMILIES[family_name].list_items(
        dataset_root, layout, split, val_fraction=val_fraction, test_fraction=test_fraction,
        seed=seed, test_per_class=test_per_class, **({"crop_faces": crop_faces} if crop_faces else {}),
    )
    items.report.setdefault("layout", layout)
    return build_dataset(items, name=name, layout=layout, split=split, root=dataset_root,
                         image_size=image_size, train=split == "train" if train is None else train,
                         strict=strict, cache_dir=Path(cache_dir) if cache_dir else None)


def open_splits(name: str, root: str | os.PathLike | None = None, **kwargs: Any) -> dict[str, FaceDataset]:
    """``{"train": ..., "val": ..., "test": ...}`` with the same options."""
    return {split: open_dataset(name, root, split, **kwargs) for split in SPLITS}


__all__ = ["KAGGLE_SLUGS", "NAMES", "SPLITS", "FaceDataset", "default_root", "detect_layout",
           "ensure_synthetic", "open_dataset", "open_splits", "stratified_split", "synthetic_root",
           "unpack_archives"]

"""Shared test helpers. The root conftest.py isolates results/, data/ and the cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Copied from shared/reference/state_dict_keys.tsv (reference @ fabbe68) so the repo is self-contained.
REFERENCE_KEYS = Path(__file__).resolve().parent / "golden" / "reference_state_dict_keys.tsv"
# EXPECTTEST-style switch: RESEMOTE_ACCEPT=1 rewrites golden files instead of comparing.
ACCEPT = os.environ.get("RESEMOTE_ACCEPT") == "1"


def find_real_dataset(name: str) -> Path | None:
    """A real dataset where a user keeps it: ``$RESEMOTE_DATA/<name>`` (default ``data/<name>``),
    also as the zip a Kaggle download leaves (``data/<name>.zip`` or ``data/<name>/*.zip``),
    which is unpacked beside itself, as the download path does (the zip is kept)."""
    from resemote_lib.data import detect_layout, unpack_archives

    base = Path(os.environ["RESEMOTE_REAL_DATA"])
    folder = base / name
    if (base / f"{name}.zip").is_file() and not folder.exists():
        folder.mkdir(parents=True)
        shutil.copy2(base / f"{name}.zip", folder / f"{name}.zip")
    if not folder.is_dir():
        return None
    if not _has_layout(name, folder):
        unpack_archives(folder, keep=True)
    return detect_layout(name, folder)[1] if _has_layout(name, folder) else None


def _has_layout(name: str, folder: Path) -> bool:
    from resemote_lib.data import detect_layout

    try:
        detect_layout(name, folder)
    except FileNotFoundError:
        return False
    return True


@pytest.fixture(scope="session")
def real_fer2013() -> Path:
    """The real FER2013 (Kaggle msambare/fer2013 folders or fer2013.csv); skips when absent."""
    root = find_real_dataset("fer2013")
    if root is None:
        pytest.skip(f"real FER2013 not found under {os.environ['RESEMOTE_REAL_DATA']}/fer2013 "
                    "(unzip Kaggle's msambare/fer2013 there, or set RESEMOTE_DATA)")
    return root

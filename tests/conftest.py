"""Shared test helpers. The root conftest.py isolates results/, data/ and the cache."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

# Copied from shared/reference/state_dict_keys.tsv (reference @ fabbe68) so the repo is self-contained.
REFERENCE_KEYS = Path(__file__).resolve().parent / "golden" / "reference_state_dict_keys.tsv"
# The reference's output order, transcribed from shared/reference/README.md (see the file's header):
# what labels.REFERENCE_CLASS_NAMES and the loaders are checked against, never the constant itself.
REFERENCE_ORDER_FILE = Path(__file__).resolve().parent / "golden" / "reference_class_order.tsv"
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


def _reference_order() -> tuple[str, ...]:
    rows = [line.split("\t") for line in REFERENCE_ORDER_FILE.read_text().splitlines()
            if line and not line.startswith("#")]
    assert [int(r[0]) for r in rows] == list(range(len(rows))), f"{REFERENCE_ORDER_FILE}: indices {rows}"
    return tuple(r[2] for r in rows)


REFERENCE_ORDER = _reference_order()


# --- a folder that the command under test cannot write, root included -----------------------

_BIND_RO = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
_CHMOD_RO = 'chmod a-w "$0" && "$@"; rc=$?; chmod u+w "$0"; exit $rc'


@functools.cache
def user_namespaces_work() -> bool:
    """Whether ``unshare -rm`` may bind-mount a folder read-only here (root in CI; Docker's
    default seccomp profile and Ubuntu's AppArmor policy refuse it)."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory(prefix="resemote-userns-") as folder:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", _BIND_RO, folder, "true"], capture_output=True)
    return probe.returncode == 0


def read_only_command(folder: Path, cmd: Sequence[str]) -> list[str]:
    """``cmd`` run with ``folder`` read-only to it, also when the tests run as root (as CI does),
    whom permission bits do not stop: a read-only bind mount in a user namespace (``unshare -rm``;
    writes fail with EROFS). Where user namespaces are refused, a user other than root gets the
    folder ``chmod a-w`` for the command's duration (EACCES). Root without user namespaces cannot
    be stopped: the test skips, saying so, which fails it under CI (root conftest.py)."""
    if user_namespaces_work():
        return ["unshare", "-rm", "sh", "-c", _BIND_RO, str(folder), *map(str, cmd)]
    if os.geteuid() != 0:
        return ["sh", "-c", _CHMOD_RO, str(folder), *map(str, cmd)]
    pytest.skip("as root, permission bits do not stop writes, and user namespaces (unshare -rm) are refused here: "
                "run the tests as another user, or allow user namespaces")


# --- a ResEmoteNet checkpoint and its Predictor, for the predict and export tests -------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A ResEmoteNet checkpoint at 48 px (seed 0), saved once per test module and removed after it."""
    import torch

    from resemote_lib.checkpoint import save_checkpoint
    from resemote_lib.model import ResEmoteNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, ResEmoteNet(), image_size=48)
    yield path
    shutil.rmtree(path.parent)  # 321 MB: not kept for the rest of the session


@pytest.fixture(scope="module")
def predictor(checkpoint):
    """A CPU ``Predictor`` of ``checkpoint``, with the default (Haar) detector."""
    from resemote_lib.predict import Predictor

    return Predictor(checkpoint, device="cpu")

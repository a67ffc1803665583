"""What produced a result: code version, environment, device, config and data.

Every run directory gets ``provenance.json`` so that two results can be told apart, or
shown comparable (same split membership hash, same config, same code).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import paths

# The file in which a source bundle without .git (the Kaggle kernel's copy of a commit) carries
# its git state. kaggle/runner.py (standard library only: pasted into the kernel) spells the
# same name; tests/test_provenance.py checks that the two agree.
SOURCE_RECORD = "resemote_source.json"


def installed_version(name: str) -> str | None:
    """A distribution's version, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def code_hash(root: Path = paths.ROOT, parts: tuple[str, ...] | None = None) -> str:
    """SHA-256 of the library's source files (``resemote_lib/**/*.py``, path and content).

    Identifies the code that wrote a checkpoint, with or without ``.git`` (a Kaggle bundle).
    ``parts`` limits it to those modules and packages (``"train.py"``, ``"data"``).
    """
    h = hashlib.sha256()
    package = root / "resemote_lib"
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if parts is None or rel in parts or rel.split("/")[0] in parts:
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def git_state(root: Path = paths.ROOT) -> dict[str, Any]:
    """Commit SHA and whether the working tree differs from it.

    Outside a git checkout, the values recorded in ``resemote_source.json`` by the bundle
    that copied this source (None when there is neither).
    """
    record = root / SOURCE_RECORD
    if not (root / ".git").exists() and record.is_file():
        saved = json.loads(record.read_text())
        return {"commit": saved.get("commit"), "dirty": saved.get("dirty"), "from": SOURCE_RECORD}

    def run(*args: str) -> str | None:
        # 120 s: the first `git status` after a clone or checkout refreshes the index, which took
        # 13.8 s on a busy 2-core machine (a 10 s limit recorded "dirty": null for a clean clone).
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def collect(
    *,
    config: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    datasets: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Everything that identifies a run, as plain JSON-able data."""
    data = {}
    for split, ds in (datasets or {}).items():
        data[split] = {
            "name": ds.name, "layout": ds.layout, "root": str(ds.root), "n": len(ds),
            "counts": ds.counts(), "membership_sha256": ds.membership_hash(),
            "report": {k: v for k, v in ds.report.items() if k != "bad_files"},
            "n_bad_files": len(ds.report.get("bad_files", [])),
        }
    return {
        "git": git_state(),
        "code_sha256": code_hash(),
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": installed_version("torchvision"),  # not imported: that costs ~2 s per CLI call
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "config": config,
        "seed": (config or {}).get("seed"),
        "data": data,
        **extra,
    }


def write(path: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write ``record`` as JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)
    return path


__all__ = ["SOURCE_RECORD", "code_hash", "collect", "device_name", "git_state", "write"]

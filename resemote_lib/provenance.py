"""What produced a result: code version, environment, device, config and data.

Every run directory gets ``provenance.json`` so that two results can be told apart, or
shown comparable (same split membership hash, same config, same code).
"""

from __future__ import annotations

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
import torchvision

from . import paths


def git_state(root: Path = paths.ROOT) -> dict[str, Any]:
    """Commit SHA and whether the working tree differs from it (None outside git)."""
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
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
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
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


__all__ = ["collect", "device_name", "git_state", "write"]

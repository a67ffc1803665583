"""Test-session isolation: results, caches and generated data go to a temporary folder.

Set before anything imports ``resemote_lib.paths`` and before nbval starts a kernel (which
inherits this environment), so neither unit tests nor notebooks write into the repo's
committed ``results/``. The folder holds the notebooks' training runs (checkpoints of
hundreds of MB), so it is deleted when the session passes and reported when it fails.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

_BASE: Path | None = None


def pytest_configure(config):
    global _BASE
    _BASE = Path(tempfile.mkdtemp(prefix="resemote-test-"))
    os.environ["RESEMOTE_RESULTS"] = str(_BASE / "results")
    os.environ["RESEMOTE_DATA"] = str(_BASE / "data")
    os.environ.setdefault("RESEMOTE_CACHE", str(_BASE / "cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONHASHSEED", "0")


def pytest_unconfigure(config):
    if _BASE is None or not _BASE.exists():
        return
    if getattr(config, "_resemote_failed", False):
        size = sum(p.stat().st_size for p in _BASE.rglob("*") if p.is_file())
        print(f"\nresemote test outputs kept for inspection: {_BASE} ({size / 2**20:.0f} MiB)", file=sys.stderr)
    else:
        shutil.rmtree(_BASE, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    session.config._resemote_failed = exitstatus != 0

"""Test-session isolation: results, caches and generated data go to a temporary folder.

Set before anything imports ``resemote_lib.paths`` and before nbval starts a kernel (which
inherits this environment), so neither unit tests nor notebooks write into the repo's
committed ``results/``. The folder holds the notebooks' training runs (checkpoints of
hundreds of MB), so it is deleted when the session passes and reported when it fails.
The session also reports the most disk its outputs held at once: CI's disk is finite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_BASE: Path | None = None
_PEAK: tuple[int, str] = (0, "")
# Real datasets are found where a user keeps them ($RESEMOTE_DATA, else data/), read before the
# session points RESEMOTE_DATA at its own temporary folder. Tests reach them through the
# ``real_data_root`` fixture (tests/conftest.py) and are marked ``realdata``.
REAL_DATA = Path(os.environ.get("RESEMOTE_DATA", Path(__file__).resolve().parent / "data")).resolve()
# CI sets this when it unpacked the real FER2013: a real-data test that skips is then a failure.
REQUIRE_REAL = os.environ.get("RESEMOTE_REQUIRE_REALDATA") == "1"
_REAL_SKIPPED: list[str] = []


def pytest_configure(config):
    global _BASE
    os.environ["RESEMOTE_REAL_DATA"] = str(REAL_DATA)
    _BASE = Path(tempfile.mkdtemp(prefix="resemote-test-"))
    os.environ["RESEMOTE_RESULTS"] = str(_BASE / "results")
    os.environ["RESEMOTE_DATA"] = str(_BASE / "data")
    os.environ.setdefault("RESEMOTE_CACHE", str(_BASE / "cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONHASHSEED", "0")


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    # Sampled after the test body, before its tmp_path is deleted: what it wrote is still there.
    global _PEAK
    held = _tree_bytes(_BASE) + _tree_bytes(item.config._tmp_path_factory.getbasetemp())
    if held > _PEAK[0]:
        _PEAK = (held, item.nodeid)


def pytest_runtest_logreport(report):
    if report.skipped and "realdata" in report.keywords:
        _REAL_SKIPPED.append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if REQUIRE_REAL and _REAL_SKIPPED:
        terminalreporter.write_line(f"RESEMOTE_REQUIRE_REALDATA=1 but {len(_REAL_SKIPPED)} real-data test(s) were "
                                    f"skipped, e.g. {_REAL_SKIPPED[0]}: failing the session", red=True)
    if _PEAK[0]:
        terminalreporter.write_line(f"test outputs on disk peaked at {_PEAK[0] / 2**30:.2f} GiB, after {_PEAK[1]} "
                                    "(not counting a checkpoint's temporary copy while it is saved)")


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_REAL and _REAL_SKIPPED and exitstatus == 0:
        session.exitstatus = exitstatus = 1
    if _BASE is None or not _BASE.exists():
        return
    if exitstatus == 0:
        shutil.rmtree(_BASE, ignore_errors=True)
    else:
        print(f"\nresemote test outputs kept for inspection: {_BASE} ({_tree_bytes(_BASE) / 2**20:.0f} MiB)")

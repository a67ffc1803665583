"""Test-session isolation: results, caches and generated data go to a temporary folder.

Set before anything imports ``resemote_lib.paths`` and before nbval starts a kernel (which
inherits this environment), so neither unit tests nor notebooks write into the repo's
committed ``results/``. The folder holds the notebooks' training runs (checkpoints of
hundreds of MB), so it is deleted when the session passes and reported when it fails.
The session also reports the most disk its outputs held at once: CI's disk is finite.

One rule for tests that cannot run here (a tool, a browser, the real data, a user namespace
missing): they skip, saying why, except where they must run. Under CI (``CI`` set to 1 or
true, as ``.ci/run`` does) every test must run but those marked ``gpu``: a skip fails the test
instead. ``RESEMOTE_REQUIRE_REALDATA=1`` (``make test-real``) asks the same of the realdata
tests alone. The summary says how many tests skipped, and why.
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
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
REQUIRE_REAL = os.environ.get("RESEMOTE_REQUIRE_REALDATA") == "1"
_SKIPPED: dict[str, list[str]] = {}  # why -> the tests that skipped for it
_REFUSED: dict[str, list[str]] = {}  # why -> the tests that had to run, could not, and failed


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


def _must_run(keywords) -> str | None:
    """What requires a test with these markers to run rather than skip, or None."""
    if "gpu" in keywords:  # CI machines need not have a GPU
        return None
    if IN_CI:
        return "CI is set: only tests marked gpu may skip"
    if REQUIRE_REAL and "realdata" in keywords:
        return "RESEMOTE_REQUIRE_REALDATA=1"
    return None


def _skip_reason(report) -> str:
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return text.removeprefix("Skipped: ")


def _apply_rule(report, nodeid: str, keywords) -> None:
    """Count a skip, or turn it into a failure where the test must run."""
    if not report.skipped or hasattr(report, "wasxfail"):  # an expected failure is not a skip
        return
    reason, rule = _skip_reason(report), _must_run(keywords)
    if rule is None:
        _SKIPPED.setdefault(reason, []).append(nodeid)
        return
    _REFUSED.setdefault(reason, []).append(nodeid)
    report.outcome = "failed"
    report.longrepr = f"this test must run ({rule}), but it skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _apply_rule(outcome.get_result(), item.nodeid, item.keywords)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a whole module skipped (a module-level importorskip, say)
    _apply_rule(outcome.get_result(), collector.nodeid, collector.keywords)


def _by_reason(tests: dict[str, list[str]]) -> str:
    return "; ".join(f"{len(ids)} x {why} (e.g. {ids[0]})" for why, ids in sorted(tests.items(), key=lambda kv: -len(kv[1])))


def pytest_terminal_summary(terminalreporter):
    refused = sum(map(len, _REFUSED.values()))
    if refused:
        terminalreporter.write_line(f"{refused} test(s) could not run and failed instead of skipping: "
                                    f"{_by_reason(_REFUSED)}", red=True)
    skipped = sum(map(len, _SKIPPED.values()))
    terminalreporter.write_line(f"skipped: {skipped} test(s)" + (f": {_by_reason(_SKIPPED)}" if skipped else ""),
                                yellow=bool(skipped))
    if _PEAK[0]:
        terminalreporter.write_line(f"test outputs on disk peaked at {_PEAK[0] / 2**30:.2f} GiB, after {_PEAK[1]} "
                                    "(not counting a checkpoint's temporary copy while it is saved)")


def pytest_sessionfinish(session, exitstatus):
    if _BASE is None or not _BASE.exists():
        return
    if exitstatus == 0:
        shutil.rmtree(_BASE, ignore_errors=True)
    else:
        print(f"\nresemote test outputs kept for inspection: {_BASE} ({_tree_bytes(_BASE) / 2**20:.0f} MiB)")

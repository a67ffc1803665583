"""The suite's own rule (conftest.py at the repository root): under CI a skip is a failure,
except for tests marked gpu, and the summary counts the skips. Checked on a throwaway suite
that uses the real conftest.py, in a pytest of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from resemote_lib import paths

SUITE = '''
import pytest

def test_runs():
    pass

def test_lacks_a_tool():
    pytest.skip("no such tool here")

@pytest.mark.gpu
def test_needs_cuda():
    pytest.skip("no CUDA device")

@pytest.mark.realdata
def test_needs_the_data():
    pytest.skip("no data/fer2013")
'''


def _run_suite(tmp_path, **env_changes: str | None) -> tuple[int, str]:
    shutil.copy(paths.ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_throwaway.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n  gpu: x\n  realdata: x\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "RESEMOTE_REQUIRE_REALDATA", "PYTEST_ADDOPTS")}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize("ci", ["1", "true"])
def test_under_ci_a_skip_fails_except_for_gpu_tests(tmp_path, ci):
    rc, text = _run_suite(tmp_path, CI=ci)
    assert rc == 1, text
    assert "2 failed, 1 passed, 1 skipped" in text, text
    assert "2 test(s) could not run and failed instead of skipping" in text
    assert "this test must run (CI is set: only tests marked gpu may skip), but it skipped: no such tool here" in text
    assert "skipped: 1 test(s): 1 x no CUDA device (e.g. test_throwaway.py::test_needs_cuda)" in text


def test_outside_ci_tests_skip_and_the_summary_counts_them(tmp_path):
    rc, text = _run_suite(tmp_path)
    assert rc == 0, text
    assert "1 passed, 3 skipped" in text and "skipped: 3 test(s): " in text, text


def test_make_test_real_requires_only_the_realdata_tests(tmp_path):
    rc, text = _run_suite(tmp_path, RESEMOTE_REQUIRE_REALDATA="1")
    assert rc == 1 and "1 failed, 1 passed, 2 skipped" in text, text
    assert "must run (RESEMOTE_REQUIRE_REALDATA=1), but it skipped: no data/fer2013" in text

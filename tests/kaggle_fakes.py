"""What the Kaggle tests share: credentials removed or faked, a clean clone to bundle, the
Kaggle API faked at its boundary, and the files a push and a kernel leave behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resemote_lib import paths
from resemote_lib.kaggle import push

SMOKE = "params/smoke.yaml"
REAL = "params/fer2013_clean.yaml"


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)


def snapshot(root):
    """Every entry under ``root`` with its size, mtime and mode: equal iff nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns,
                                       p.stat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.fixture
def read_only():
    """chmod -R a-w on the folders given, restored at teardown so tmp_path can be deleted.

    As root, permission bits do not stop writes: the tests also compare ``snapshot``s.
    """
    made = []

    def make(folder):
        from resemote_lib.kaggle.runner import make_read_only

        make_read_only(folder)
        made.append(folder)
        return folder

    yield make
    for folder in made:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A clean clone of this checkout's HEAD."""
    if not (paths.ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    dest = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(paths.ROOT), str(dest)], check=True)
    return dest


@pytest.fixture
def user(monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    return "alice"


class FakeClient:
    """Kaggle's API, faked: records every call and keeps a copy of each pushed folder."""

    def __init__(self, root: Path, states=("complete",), output=None, log="") -> None:
        self.root, self.calls, self.folders = root, [], []
        self.states, self._output, self.log = list(states), output, log

    def username(self):
        self.calls.append(("username",))
        return "from-api"

    def push(self, folder):
        self.calls.append(("push", json.loads((folder / push.METADATA_FILE).read_text())))
        copy = self.root / f"push{len(self.folders)}"
        shutil.copytree(folder, copy)
        self.folders.append(copy)
        return {"ref": "/code/alice/x", "url": "https://www.kaggle.com/code/alice/x", "version": len(self.folders)}

    def status(self, slug):
        self.calls.append(("status", slug))
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def output(self, slug, dest):
        self.calls.append(("output", slug))
        dest.mkdir(parents=True, exist_ok=True)
        if self._output is not None:
            self._output(dest)
        return self.log


def unpack_script(script: Path, dest: Path) -> Path:
    """Run the pushed script's own ``--unpack``: what the kernel does first."""
    subprocess.run([sys.executable, str(script), "--unpack", str(dest)], check=True, capture_output=True, cwd=dest.parent)
    return dest


def embedded_config(script: Path) -> dict:
    text = script.read_text()
    line = next(x for x in text.splitlines() if x.startswith("CONFIG = json.loads("))
    return json.loads(eval(line[len("CONFIG = json.loads("):-1]))  # a repr'd string literal


def pushed_record(results: Path, run: str = "r1", commit: str = "c0ffee", code: str = "abc") -> dict:
    record = {"kernel": "alice/resemote-r1", "commit": commit, "dirty": False, "code_sha256": code,
              "run_name": run, "params": SMOKE}
    (results / run).mkdir(parents=True, exist_ok=True)
    (results / run / push.PUSH_RECORD).write_text(json.dumps(record))
    return record


def fake_run_output(run="r1", commit="c0ffee", code="abc", metrics=True):
    def write(dest: Path):
        d = dest / "results" / run
        (d / "notebooks").mkdir(parents=True)
        (d / "notebooks" / "01_train.ipynb").write_text("{}")
        (d / "provenance.json").write_text(json.dumps({"git": {"commit": commit, "dirty": False},
                                                       "code_sha256": code}))
        if metrics:
            (d / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
        (d / "best.pt").write_bytes(b"weights")
        (dest / "results" / "paper").mkdir()
        (dest / "results" / "paper" / "table3.md").write_text("| kernel's table |")
    return write


@pytest.fixture
def regenerated(monkeypatch):
    from resemote_lib.commands import pipeline

    calls = []

    def fake(results_dir=None, **kw):
        calls.append(Path(results_dir))
        (Path(results_dir) / "paper").mkdir(exist_ok=True)
        return Path(results_dir) / "paper" / "03_paper.ipynb"

    monkeypatch.setattr(pipeline, "regenerate_paper", fake)
    return calls

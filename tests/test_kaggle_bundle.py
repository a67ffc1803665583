"""resemote_lib.kaggle.bundle: one commit's source, deterministic, checked as the kernel sees it."""

from __future__ import annotations

import hashlib
import json
import sys

from resemote_lib import paths, provenance
from resemote_lib.kaggle import bundle, cli, push

from . import kaggle_fakes as F
from .kaggle_fakes import SMOKE, git, unpack_script

repo, user = F.repo, F.user  # fixtures


def test_bundle_is_deterministic_and_checked(repo):
    a = bundle.build_bundle(SMOKE, repo=repo)
    b = bundle.build_bundle(SMOKE, repo=repo)
    assert a.sha256 == b.sha256 == hashlib.sha256(a.archive).hexdigest()
    assert a.archive == b.archive


def test_dirty_tree_is_refused_unless_allowed(repo, tmp_path, user, capsys):
    labels = repo / "resemote_lib" / "labels.py"
    labels.write_text(labels.read_text() + "\n# local change\n")
    out = tmp_path / "kernel"
    assert cli.main(["push", SMOKE, "--repo", str(repo), "--dry-run", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "uncommitted changes" in err and "resemote_lib/labels.py" in err and "--allow-dirty" in err
    assert not out.exists()

    assert cli.main(["push", SMOKE, "--repo", str(repo), "--dry-run", str(out), "--allow-dirty"]) == 0
    src = unpack_script(out / push.CODE_FILE, tmp_path / "src")
    record = json.loads((src / provenance.SOURCE_RECORD).read_text())
    assert record["dirty"] is True and record["modified"] == ["resemote_lib/labels.py"]
    assert record["commit"] == git(repo, "rev-parse", "HEAD")
    assert (src / "resemote_lib" / "labels.py").read_text().endswith("# local change\n")
    assert provenance.git_state(src)["dirty"] is True


def test_untracked_or_outside_params_are_refused(repo, tmp_path, user, capsys):
    (repo / "params" / "mine.yaml").write_text("base: smoke.yaml\nrun_name: mine\n")
    assert cli.main(["push", "params/mine.yaml", "--repo", str(repo), "--dry-run", str(tmp_path / "k")]) == 2
    assert "not tracked by git" in capsys.readouterr().err
    outside = tmp_path / "outside.yaml"
    outside.write_text("run_name: x\n")
    assert cli.main(["push", str(outside), "--repo", str(repo), "--dry-run", str(tmp_path / "k")]) == 2
    assert "must be inside the repository" in capsys.readouterr().err


def test_requirements_are_read_from_pyproject(monkeypatch):
    pyproject = (paths.ROOT / "pyproject.toml").read_text()
    assert bundle.read_requirements(pyproject)[:2] == ["torch>=2.1", "torchvision>=0.16"]
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.10: the fallback reads the same list
    fallback = bundle.read_requirements(pyproject)
    monkeypatch.delitem(sys.modules, "tomllib")
    assert fallback == bundle.read_requirements(pyproject)

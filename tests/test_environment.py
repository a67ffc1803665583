"""environment.yml, pyproject.toml and constraints.txt must describe one set (conda can't run here)."""

from __future__ import annotations

import re

import tomllib
import yaml

from resemote_lib import paths


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_installs_the_locked_project():
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    assert "-c constraints.txt" in pip
    assert f"-e .[{','.join(sorted(extras))}]" in pip


def test_constraints_pin_every_dependency_exactly():
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]
    pins = {}
    for line in (paths.ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = version
    for req in wanted:
        assert _name(req) in pins, f"{req} from pyproject is not pinned in constraints.txt"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["opencv-python-headless"].split(".")[0] == "4"


def test_make_env_names_the_python_the_locked_set_needs(tmp_path):
    """On Python 3.10, pip would fail deep inside the locked set: make env says so first."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        import pytest

        pytest.skip("make is not installed")
    fake = tmp_path / "python3.10"
    fake.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Python 3.10.12"; exit 0; fi\nexit 1\n')
    fake.chmod(0o755)
    out = subprocess.run(["make", "-s", "env", f"PYTHON={fake}"], cwd=paths.ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "needs Python 3.11 or newer" in out.stderr and "Python 3.10.12" in out.stderr

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

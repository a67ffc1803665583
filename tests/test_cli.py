"""The command line's place in the package: the only top, imported by nothing below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from resemote_lib import cli

PACKAGE = Path(cli.__file__).parent
TOPS = {PACKAGE / "cli.py", PACKAGE / "__main__.py"}


def imports_of(path: Path) -> set[str]:
    """The package modules ``path`` imports, as dotted names relative to ``resemote_lib``
    (``from .cli import x`` and ``from resemote_lib.cli import x`` are both ``cli``;
    ``from . import cli`` too), wherever in the file the import stands."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # ("resemote_lib", "data")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {n.removeprefix("resemote_lib.") for n in names if n.startswith("resemote_lib.")}
    return found


def test_no_module_below_the_cli_imports_it():
    offenders = {str(p.relative_to(PACKAGE)): sorted(n for n in imports_of(p) if n == "cli" or n.startswith("cli."))
                 for p in PACKAGE.rglob("*.py") if p not in TOPS}
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("where, source, expected", [
    ("mod.py", "from .cli import main", {"cli", "cli.main"}),
    ("mod.py", "from . import cli", {"cli"}),
    ("data/mod.py", "from resemote_lib.cli import run", {"cli", "cli.run"}),
    ("data/mod.py", "def f():\n    from ..cli import x", {"cli", "cli.x"}),  # in a function, one level up
    ("data/mod.py", "from .cli import x", set()),  # data/cli.py: another module
])
def test_the_import_finder_sees_every_spelling(tmp_path, where, source, expected):
    module = tmp_path / "resemote_lib" / where
    module.parent.mkdir(parents=True)
    module.write_text(source)
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "resemote_lib"
    try:
        found = imports_of(module)
    finally:
        PACKAGE = saved
    assert {n for n in found if n == "cli" or n.startswith("cli.")} == expected


def test_lower_layers_import_only_what_lies_below_them():
    """Metrics are pure functions (no training, runs or evaluation helpers); the data layer saves
    through the leaf ``files`` module, not the model; ``files`` imports nothing of ours."""
    assert imports_of(PACKAGE / "metrics.py") <= {"labels", "labels.CLASS_NAMES"}
    base = imports_of(PACKAGE / "data" / "base.py")
    assert not {m.split(".")[0] for m in base} & {"model", "checkpoint", "train", "evaluate", "runs"}, base
    assert "files" in {m.split(".")[0] for m in base}
    assert imports_of(PACKAGE / "files.py") == set()


def test_imagenet_mean_and_std_are_written_once():
    """One place for the normalisation every model input goes through (data/transforms.py)."""
    holders = [p.relative_to(PACKAGE).as_posix() for p in sorted(PACKAGE.rglob("*.py"))
               if "0.485" in p.read_text() or "0.229" in p.read_text()]
    assert holders == ["data/transforms.py"], holders

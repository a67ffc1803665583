"""The package's shape: the core at the top, tool packages around it, imports only downwards.

The core (``resemote_lib/*.py`` and ``resemote_lib/data/``) is the paper's network and how it is
trained and measured; the tools (``predict/``, ``reports/``, ``commands/``, ``kaggle/``) use it.
A tool imports the core, never the reverse; evaluation never imports training; the command line
is the top, imported by nothing below it; no library module is longer than ``MAX_LINES``.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import resemote_lib

PACKAGE = Path(resemote_lib.__file__).parent
TOOLS = ("predict", "reports", "commands", "kaggle")
MAX_LINES = 500
# Modules that measure or use a trained model: none of them may import training.
NOT_TRAINING = ("evaluate", "inference", "metrics", "calibration", "checkpoint", "runs", "predict", "reports.explore",
                "reports.paper", "reports.plots", "reports.explain", "reports.monitor")
TRAINING = {"train", "train_step", "optim", "resume", "interrupt"}


def imports_of(path: Path) -> set[str]:
    """The package modules ``path`` imports, as dotted names relative to ``resemote_lib``
    (``from .cli import x`` in commands/ and ``from resemote_lib.commands.cli import x`` are both
    ``commands.cli``; ``from .commands import cli`` too), wherever in the file the import stands."""
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


def _files(where: str = "") -> list[Path]:
    return sorted((PACKAGE / where).rglob("*.py")) if where else sorted(PACKAGE.rglob("*.py"))


def _core_files() -> list[Path]:
    return [p for p in _files() if p.relative_to(PACKAGE).parts[0] not in TOOLS]


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tools_imported(path: Path) -> list[str]:
    return sorted(n for n in imports_of(path) if n.split(".")[0] in TOOLS)


@pytest.mark.parametrize("where, source, expected", [
    ("commands/mod.py", "from .cli import main", {"commands.cli", "commands.cli.main"}),
    ("mod.py", "from .commands import cli", {"commands", "commands.cli"}),
    ("data/mod.py", "from resemote_lib.commands.cli import run", {"commands.cli", "commands.cli.run"}),
    ("data/mod.py", "def f():\n    from ..commands.cli import x", {"commands.cli", "commands.cli.x"}),  # one level up
    ("data/mod.py", "from .cli import x", {"data.cli", "data.cli.x"}),  # data/cli.py: another module
    ("mod.py", "import resemote_lib.reports.plots", {"reports.plots"}),
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
    assert found == expected


def test_the_core_never_imports_a_tool():
    """A core module importing ``predict`` or ``reports`` would make the network depend on its users
    (data/folder.py once imported the Predictor for its face detector: detectors are now data/faces.py)."""
    offenders = {_module(p): _tools_imported(p) for p in _core_files() if p.name != "__main__.py"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_and_the_tools_are_where_the_package_docstring_says():
    """The package docstring gives the core's reading order; each module it names exists, in that order."""
    doc = resemote_lib.__doc__ or ""
    named = re.findall(r"``(\w+(?:/\w+)?(?:\.py|/))``", doc)
    order = [n for n in named if n in ("model.py", "data/", "train.py", "train_step.py", "evaluate.py")]
    assert order == ["model.py", "data/", "train.py", "train_step.py", "evaluate.py"], named
    assert all((PACKAGE / n).exists() for n in named), [n for n in named if not (PACKAGE / n).exists()]
    assert all(f"``{tool}/``" in doc for tool in TOOLS), doc


def test_no_module_below_the_cli_imports_it():
    offenders = {_module(p): sorted(n for n in imports_of(p) if n == "commands.cli" or n.startswith("commands.cli."))
                 for p in _files() if p not in (PACKAGE / "commands" / "cli.py", PACKAGE / "__main__.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_evaluation_and_prediction_never_import_training():
    for name in NOT_TRAINING:
        path = PACKAGE / (name.replace(".", "/") + ".py")
        paths = _files(name) if (PACKAGE / name).is_dir() else [path]
        for p in paths:
            assert not {n.split(".")[0] for n in imports_of(p)} & TRAINING, _module(p)
    code = ("import sys, resemote_lib.evaluate, resemote_lib.predict, resemote_lib.reports.explore; "
            "sys.exit(sorted(m for m in sys.modules if m.startswith(('resemote_lib.train', 'resemote_lib.optim'))) "
            "or None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_lower_layers_import_only_what_lies_below_them():
    """Metrics are pure functions (no training, runs or evaluation helpers); the data layer saves
    through the leaf ``files`` module, not the model; ``files`` imports nothing of ours."""
    assert imports_of(PACKAGE / "metrics.py") <= {"labels", "labels.CLASS_NAMES"}
    for path in _files("data"):
        found = {m.split(".")[0] for m in imports_of(path)}
        assert not found & {"model", "checkpoint", "train", "evaluate", "runs"}, (path.name, found)
    assert "files" in {m.split(".")[0] for p in _files("data") for m in imports_of(p)}
    assert imports_of(PACKAGE / "files.py") == set()


def test_no_library_module_is_longer_than_the_limit():
    lengths = {_module(p): len(p.read_text().splitlines()) for p in _files()}
    assert {m: n for m, n in lengths.items() if n > MAX_LINES} == {}


def test_imagenet_mean_and_std_are_written_once():
    """One place for the normalisation every model input goes through (data/transforms.py)."""
    holders = [p.relative_to(PACKAGE).as_posix() for p in _files()
               if "0.485" in p.read_text() or "0.229" in p.read_text()]
    assert holders == ["data/transforms.py"], holders


# Small modules tested through the modules that use them, with the test files that do: each of
# these files must import the module, so the list cannot silently go stale.
TESTED_THROUGH = {
    "distributed": ["test_train.py", "test_train_step.py"],
    "files": ["test_background_save.py", "test_checkpoint.py", "test_calibration.py"],
    "inference": ["test_predictor.py", "test_export.py", "test_calibration.py"],
    "kaggle.cli": ["test_kaggle_pull.py", "test_kaggle_push.py"],
    "optim": ["test_train.py"],
    "paths": ["test_conftest.py", "test_environment.py"],
    "progress": ["test_train_step.py"],
    "usage": ["test_cli.py", "test_params.py"],
    "weights": ["test_checkpoint.py", "test_evaluate.py"],
}
TESTS = Path(__file__).parent


def _helpers_of(test_file: Path) -> list[Path]:
    """The helper modules of tests/ that ``test_file`` imports (``from .predicting import ...``,
    ``from . import layouts as L``)."""
    names = set()
    for node in ast.walk(ast.parse(test_file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module} if node.module else {alias.name for alias in node.names}
    return [TESTS / f"{n}.py" for n in sorted(names) if (TESTS / f"{n}.py").is_file()]


def _imports(test_file: Path, module: str) -> bool:
    """Whether ``test_file`` imports ``module`` (or something in it), itself or through a helper of tests/."""
    found = set().union(imports_of(test_file), *map(imports_of, _helpers_of(test_file)))
    return module in found or any(m.startswith(module + ".") for m in found)


def _own_test_files(module: str) -> list[Path]:
    """``tests/test_<name>.py`` or ``tests/test_<package>_<name>.py`` that imports the module or
    its package (``data.fer2013`` -> test_fer2013.py, ``kaggle.push`` -> test_kaggle_push.py; ``kaggle.cli``
    is not tested by test_cli.py, which tests ``commands.cli``)."""
    *package, name = module.split(".")
    names = [f"test_{name}.py"] + ([f"test_{package[0]}_{name}.py"] if package else [])
    through = [module, *package[:1]]  # a package's modules are often tested through its API (open_dataset)
    return [TESTS / n for n in names if (TESTS / n).exists() and any(_imports(TESTS / n, m) for m in through)]


def _plumbing(path: Path) -> bool:
    """A package's ``__init__.py`` or ``__main__.py`` that defines no function or class (re-exports, the entry point)."""
    return path.name in ("__init__.py", "__main__.py") and not any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for node in ast.parse(path.read_text()).body)


def test_every_library_module_has_a_test_file_named_after_it():
    """One test file per module: a reader finds a module's tests by its name; the few small
    modules tested only through their users are listed in ``TESTED_THROUGH``."""
    modules = {_module(p) for p in _files() if not _plumbing(p)}
    assert [m for m in sorted(modules) if not _own_test_files(m) and m not in TESTED_THROUGH] == []
    assert [m for m in TESTED_THROUGH if _own_test_files(m)] == []  # has its own file now: drop it here
    assert set(TESTED_THROUGH) <= modules


@pytest.mark.parametrize("module", sorted(TESTED_THROUGH))
def test_a_module_tested_through_others_is_imported_by_each_test_file_listed(module):
    for test_file in TESTED_THROUGH[module]:
        assert _imports(TESTS / test_file, module), (module, test_file)

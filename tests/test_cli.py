"""The command line's place in the package: the only top, imported by nothing below it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from resemote_lib.commands import cli
from resemote_lib.usage import ENTRY_POINTS

PACKAGE = Path(cli.__file__).parent
TOPS = {PACKAGE / "cli.py", PACKAGE / "__main__.py"}


def imports_of(path: Path) -> set[str]:
    """The package modules ``path`` imports, as dotted names relative to ``resemote_lib``
    (``from .cli import x`` and ``from resemote_lib.commands.cli import x`` are both ``cli``;
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
    ("data/mod.py", "from resemote_lib.commands.cli import run", {"cli", "cli.run"}),
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


# --- python -m resemote_lib.<module> (issue 31.12b) ----------------------------------------------

def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_dotted(p) for p in PACKAGE.rglob("*.py"))


def _run_module(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=120)


def test_the_entry_points_are_the_modules_that_run_something_as_a_script():
    """A module that does something under ``if __name__ == "__main__"`` is an entry point;
    every other one, run as a script, would define its functions and exit 0 having done nothing."""
    def runs_as_script(path: Path) -> bool:
        return any(isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in
                   ast.unparse(node.test) for node in ast.parse(path.read_text()).body)

    assert {_dotted(p) for p in PACKAGE.rglob("*.py") if runs_as_script(p)} | {"resemote_lib"} == ENTRY_POINTS


@pytest.mark.parametrize("module", [m for m in MODULES if m not in ENTRY_POINTS])
def test_a_library_module_run_as_a_script_says_the_command_and_exits_2(module):
    """``python -m resemote_lib.commands.pipeline params/fer2013.yaml`` (the form README documented
    before the CLI moved) exited 0 having run nothing: every module now says, in one line on
    stderr, the command to run instead, and exits 2."""
    out = _run_module("-m", module, "params/fer2013.yaml")
    assert (out.returncode, out.stdout) == (2, ""), out.stderr[-2000:]
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith(f"error: {module} is not a command"), out.stderr
    assert "python -m resemote_lib " in out.stderr


@pytest.mark.parametrize(("argv", "line"), [
    (["-m", "resemote_lib.commands.pipeline", "params/fer2013.yaml", "--set", "epochs=2"],
     "error: resemote_lib.commands.pipeline is not a command (run as a script it would do nothing); run: python -m "
     "resemote_lib pipeline params/fer2013.yaml --set epochs=2"),
    (["-X", "utf8", "-mresemote_lib.train", "params/smoke.yaml", "run_name=a b"],
     "error: resemote_lib.train is not a command (run as a script it would do nothing); run: python -m "
     "resemote_lib train params/smoke.yaml 'run_name=a b'"),
    (["-m", "resemote_lib.kaggle.pull", "r1"],
     "error: resemote_lib.kaggle.pull is not a command (run as a script it would do nothing); run: python -m "
     "resemote_lib kaggle pull r1"),
    (["-m", "resemote_lib.metrics"],
     "error: resemote_lib.metrics is not a command (run as a script it would do nothing); import it in Python, or "
     "run a command: python -m resemote_lib {train,evaluate,pipeline,predict,export,kaggle} (see python -m "
     "resemote_lib --help)"),
])
def test_the_line_names_the_command_with_the_arguments_given(argv, line):
    out = _run_module(*argv)
    assert (out.returncode, out.stderr) == (2, line + "\n")


def test_the_entry_point_still_runs():
    out = _run_module("-m", "resemote_lib", "--help")
    assert out.returncode == 0 and "exit codes:" in out.stdout

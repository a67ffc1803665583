"""The command line: library modules run as scripts are refused with the command to run (the
package's import rules, the CLI's place at the top among them, are in test_layout.py), and
train, evaluate, predict and export run end to end in a subprocess."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import resemote_lib
from resemote_lib import paths
from resemote_lib.usage import ENTRY_POINTS

PACKAGE = Path(resemote_lib.__file__).parent


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
    """``python -m resemote_lib.pipeline params/fer2013.yaml`` (the form README documented
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
    (["-m", "resemote_lib.pipeline", "params/fer2013.yaml"],  # the form an older README showed
     "error: resemote_lib.pipeline is not a command (run as a script it would do nothing); run: python -m "
     "resemote_lib pipeline params/fer2013.yaml"),
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


@pytest.mark.parametrize(("kept", "line"), [
    ([True, False, True, False], "without test images that have a copy in train/val (2 of 4): accuracy 0.5000"),
    ([False] * 4, "without test images that have a copy in train/val (0 of 4): none left to score, every test "
                  "image has a copy"),
])
def test_evaluate_says_the_figure_without_copies_even_when_none_is_left(tmp_path, monkeypatch, capsys, kept, line):
    """A test split whose every image has a copy in train/val leaves nothing to score: the summary
    says so instead of failing on the missing figure."""
    import numpy as np

    from resemote_lib import evaluate
    from resemote_lib.commands import cli
    from resemote_lib.metrics import compute_metrics, dedup_metrics

    labels = np.array([0, 1, 2, 3])
    probs = np.eye(7)[[0, 1, 0, 0]]  # images 0 and 1 right, 2 and 3 wrong
    metrics = compute_metrics(labels, probs)
    metrics.extra["probs"] = probs
    metrics.extra["dedup"], metrics.extra["copies_only"] = dedup_metrics(metrics, labels, ~np.array(kept))
    monkeypatch.setattr(evaluate, "evaluate_run", lambda *a, **k: metrics)
    (tmp_path / "run").mkdir()
    assert cli.main(["evaluate", str(tmp_path / "run"), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == line


@pytest.mark.slow
def test_cli_end_to_end_on_synthetic_data(tmp_path):
    env_run = lambda *a: subprocess.run([sys.executable, "-m", "resemote_lib", *map(str, a)],  # noqa: E731
                                        capture_output=True, text=True, timeout=900)
    results = tmp_path / "results"
    out = env_run("train", paths.PARAMS / "smoke.yaml", f"results_dir={results}", "run_name=cli")
    assert out.returncode == 0, out.stderr[-2000:]
    out = env_run("evaluate", results / "cli")
    assert out.returncode == 0 and "accuracy" in out.stdout, out.stderr[-2000:]
    faces = tmp_path / "faces"
    faces.mkdir()
    from resemote_lib.data.synthetic import make_faces
    for i, img in enumerate(make_faces(3, seed=9)[0]):
        Image.fromarray(img).save(faces / f"face{i}.png")
    out = env_run("predict", results / "cli" / "best.pt", faces, "--detector", "none", "--out", tmp_path / "p.jsonl")
    assert out.returncode == 0, out.stderr[-2000:]
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3
    (faces / "broken.png").write_bytes(b"nope")
    out = env_run("predict", results / "cli" / "best.pt", faces, "--detector", "none")
    assert out.returncode == 1 and "broken.png: not a readable image" in out.stderr
    out = env_run("export", results / "cli" / "best.pt", tmp_path / "m.onnx")
    assert out.returncode == 0 and "max |exported - PyTorch|" in out.stdout
    out = env_run("predict", tmp_path / "missing.pt", faces)
    assert out.returncode == 2 and "checkpoint not found" in out.stderr
    out = env_run("--help")
    assert out.returncode == 0 and "predict" in out.stdout

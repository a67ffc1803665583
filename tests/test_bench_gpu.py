"""benchmarks/gpu.py (``make bench-gpu``) on the CPU: SMOKE end to end with the packages a bare GPU
machine lacks blocked, its input errors, its time guard; and ``resemote_lib.progress``, the
stand-in for tqdm that lets training and evaluation run without it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from resemote_lib import progress
from resemote_lib.params import TrainConfig
from resemote_lib.resume import TrainState

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
# What a machine with only torch, numpy, pandas, pillow, pyyaml and scikit-learn lacks.
BLOCKED = ("tqdm", "matplotlib", "seaborn", "papermill", "ipywidgets", "cv2", "torchvision", "kaggle")
# Run first in a fresh interpreter: a None entry in sys.modules makes ``import tqdm`` (and of any
# submodule) raise ModuleNotFoundError and ``importlib.util.find_spec("tqdm")`` return None, exactly
# as when the package is not installed (torch._dynamo probes optional packages with find_spec).
BLOCKER = textwrap.dedent(f"""
    import sys
    BLOCKED = {BLOCKED!r}
    assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED], "imported before the blocker"
    sys.modules.update(dict.fromkeys(BLOCKED))
""")
RUN_FILES = ("bench_gpu.json", "metrics.json", "history.csv", "provenance.json")


def run_blocked(code: str, *, smoke: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SMOKE": "1" if smoke else "0"}
    return subprocess.run([sys.executable, "-c", BLOCKER + code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def run_script_blocked(*args: str) -> subprocess.CompletedProcess:
    argv = [str(SCRIPT), *args]
    return run_blocked(f"import runpy\nsys.argv = {argv!r}\nrunpy.run_path({str(SCRIPT)!r}, run_name='__main__')")


@pytest.fixture(scope="module")
def gpu():
    """benchmarks/gpu.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_gpu_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


# --- the bare machine -----------------------------------------------------------------------------

def test_blocker_blocks():
    """The blocker itself works: a blocked package is not importable under it (tqdm is installed here)."""
    done = run_blocked("import importlib.util\nassert importlib.util.find_spec('cv2') is None\nimport tqdm.auto",
                       timeout=60)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr and "tqdm" in done.stderr, done.stderr


def test_script_and_library_path_import_without_the_missing_packages():
    """Everything benchmarks/gpu.py imports (training, evaluation, data, audit, metrics) imports with
    tqdm, matplotlib, seaborn, papermill, ipywidgets, cv2, torchvision and kaggle blocked, and the
    progress bars are then the silent stand-in."""
    code = textwrap.dedent(f"""
        import runpy
        runpy.run_path({str(SCRIPT)!r}, run_name="bench_gpu_imports")
        import resemote_lib.evaluate, resemote_lib.train, resemote_lib.inference, resemote_lib.data.base
        from resemote_lib import progress
        assert progress.tqdm is progress.SilentBar, progress.tqdm
        print("imported:", sorted(m for m in sys.modules if m.startswith("resemote_lib")))
    """)
    done = run_blocked(code, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resemote_lib.train" in done.stdout


@pytest.mark.slow
def test_smoke_end_to_end_on_a_bare_machine(tmp_path):
    """SMOKE=1 on the CPU with the missing packages blocked, on the synthetic faces: phase 1's table
    (eager cells timed, graph cells n/a with the reason), the choice, phase 2 through fit and
    evaluate_run, the four files flat in --out. Two epochs asked within a 1-second budget: the time
    guard ends the run after its first epoch, and the run is finished and evaluated as one epoch."""
    out = tmp_path / "out"
    done = run_script_blocked("--out", str(out), "--work", str(tmp_path / "work"), "--epochs", "2",
                              "--budget-s", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)  # flat: no subfolders
    report = json.loads((out / "bench_gpu.json").read_text())
    assert report["smoke"] is True and report["gpu"] is None
    assert {"machine", "versions", "git", "code_sha256", "data", "phase1", "chosen", "phase2", "total_s"} <= set(report)
    assert report["versions"]["torch"] and report["data"]["dataset"] == "synthetic"
    cells = report["phase1"]["cells"]
    assert [(c["batch"], c["model"], c["mode"]) for c in cells] == [
        (b, m, mode) for b in (16, 32) for m in ("resemotenet", "resemotenet_lean") for mode in ("eager", "graph")]
    for cell in cells:
        if cell["mode"] == "eager":
            assert cell["status"] == "ok" and cell["ms_per_step"] > 0 and cell["mean_loss"] > 0, cell
        else:
            assert cell["status"] == "n/a: CUDA graphs need a CUDA device (this run is on cpu)", cell
    assert report["chosen"]["batch"] == 16 and report["chosen"]["mode"] == "eager"
    p2 = report["phase2"]
    assert p2["status"] == "finished" and p2["model"] == report["chosen"]["model"]
    assert p2["epochs_asked"] == 2 and p2["epochs_run"] == 1
    assert p2["time_guard"]["stopped"] is True and p2["time_guard"]["stopped_after_epoch"] == 1
    assert p2["deviations"]["epochs"] == 1
    assert {"fit", "fit_train", "fit_val", "fit_checkpoint", "fit_other", "evaluate"} <= set(p2["stages_s"])
    assert {"accuracy", "dedup_accuracy", "dedup_n", "copies_only_accuracy", "n"} <= set(p2["test"])
    assert p2["test"]["tta_flip_accuracy"] is None  # SMOKE: tta_flip false
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == p2["test"]["accuracy"] and "dedup" in metrics
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "finished" and provenance["training"]["epochs_run"] == 1
    assert provenance["protocol_deviations"]["epochs"] == 1
    assert len((out / "history.csv").read_text().strip().splitlines()) == 2  # header + 1 epoch
    assert "time guard: stopping after epoch 1" in done.stdout


# --- input errors ----------------------------------------------------------------------------------

def test_no_cuda_without_smoke_is_one_line(gpu, monkeypatch, capsys, tmp_path):
    if gpu.torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setattr(gpu, "SMOKE", False)
    assert gpu.main(["--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench-gpu: no CUDA device") and "SMOKE=1" in err and err.count("\n") == 1


@pytest.mark.parametrize("make", ["missing", "empty", "bad_zip", "zip_without_fer2013"])
def test_bad_data_is_one_line(gpu, monkeypatch, capsys, tmp_path, make):
    monkeypatch.setattr(gpu, "SMOKE", True)
    data = tmp_path / "data"
    if make != "missing":
        data.mkdir()
    if make == "bad_zip":
        (data / "fer2013.zip").write_bytes(b"not a zip")
    if make == "zip_without_fer2013":
        with zipfile.ZipFile(data / "fer2013.zip", "w") as z:
            z.writestr("readme.txt", "nothing here")
    assert gpu.main(["--data", str(data), "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench-gpu: --data ") and err.count("\n") == 1, err


def test_bad_options_are_one_line(gpu, capsys, tmp_path):
    assert gpu.main(["--budget-s", "0", "--out", str(tmp_path)]) == 2
    assert gpu.main(["--epochs", "zero", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--budget-s must be a positive" in err[0] and "--epochs" in err[1]


def test_the_zip_is_unpacked_into_the_work_folder(gpu, tmp_path):
    """--data DIR holding Kaggle's msambare/fer2013 archive: unpacked under --work, the layout found."""
    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "fer2013.zip", "w") as z:
        z.writestr("train/angry/Training_1.jpg", b"")
        z.writestr("test/angry/PublicTest_1.jpg", b"")
    dataset, root, unpacked = gpu.find_data(str(data), tmp_path / "work")
    assert (dataset, root, unpacked) == ("fer2013", tmp_path / "work" / "fer2013", str(data / "fer2013.zip"))
    assert gpu.find_data(str(root), tmp_path / "other")[1:] == (root, None)  # unpacked folders: used in place


# --- the time guard ------------------------------------------------------------------------------------

def test_time_guard_stops_after_the_epoch_past_which_another_would_overrun(gpu):
    """Deadline 100 s, reserve 30 s, epochs of 20 s: after epoch 3 (t=60) another epoch (x1.1) and
    the reserve would end at 112 > 100, so the run is finished as 3 epochs; never before epoch 1."""
    now = [0.0]
    guard = gpu.TimeGuard(deadline=100.0, reserve=30.0, clock=lambda: now[0])
    run = SimpleNamespace(cfg=TrainConfig(epochs=80))
    row = {"epoch": 0, "train_acc": 0.5, "val_acc": 0.5, "lr": 1e-3}
    answers = []
    for epoch in range(4):
        now[0] = 20.0 * epoch
        state = TrainState(epoch=epoch, history=[row | {"epoch": epoch}] if epoch else [])
        answers.append(guard(run, state))
    assert answers == [False, False, False, True]
    assert run.cfg.epochs == 3 and guard.stopped_after == 3
    assert guard(run, state) is True  # and stays finished
    assert guard.epoch_seconds() == [20.0, 20.0, 20.0]
    assert guard.projection(80, 60.0) == 60.0 + 20.0 * 77

    late = gpu.TimeGuard(deadline=0.0, reserve=30.0, clock=lambda: 500.0)
    assert late(SimpleNamespace(cfg=TrainConfig(epochs=80)), TrainState(epoch=0)) is False


def test_time_guard_stands_in_for_train_finished_only_while_fit_runs(gpu):
    from resemote_lib import train

    original = train.finished
    guard = gpu.TimeGuard(deadline=1e9, reserve=0.0)
    with guard.standing_in():
        assert train.finished is guard
    assert train.finished is original


# --- resemote_lib.progress -----------------------------------------------------------------------------

def test_progress_is_tqdm_when_installed():
    assert progress.tqdm.__module__.startswith("tqdm")


def test_silent_bar_has_the_calls_the_library_makes():
    bar = progress.SilentBar(range(3), desc="x", unit="batch", leave=False, disable=False)
    assert list(bar) == [0, 1, 2] and bar.n == 3 and len(bar) == 3
    with progress.SilentBar(total=10, initial=2, bar_format="{desc}") as bar:
        bar.update(3)
        bar.set_postfix(loss="0.1", acc="0.5")
        bar.set_description("epoch 1")
        bar.set_description_str("done")
        bar.refresh()
        bar.write("line")
    assert (bar.n, bar.total, bar.postfix, bar.desc) == (5, 10, {"loss": "0.1", "acc": "0.5"}, "done")
    bar.close()

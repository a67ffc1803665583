from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from resemote_lib import train
from resemote_lib.checkpoint import CheckpointError, read_checkpoint
from resemote_lib.device import check_cuda_arch
from resemote_lib.model import ResEmoteNet
from resemote_lib.params import resolve as make_config
from resemote_lib.train import TrainingDiverged, build_scheduler, fit

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(protocol="demo", dataset="synthetic", image_size=32, epochs=2, batch_size=8, max_train_items=32,
            synthetic_n_train=140, synthetic_n_val=21, synthetic_n_test=21, device="cpu", seed=1)


def _cfg(tmp_path, **kw):
    return make_config({**TINY, "results_dir": str(tmp_path / "results"), "data_root": str(tmp_path / "data"), **kw})


def _same_weights(a: Path, b: Path) -> bool:
    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _history(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns="seconds")


def test_one_optimizer_step_lowers_loss():
    torch.manual_seed(0)
    model = ResEmoteNet().train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 7
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    torch.manual_seed(1)
    before = F.cross_entropy(model(x), y)
    before.backward()
    opt.step()
    torch.manual_seed(1)  # same dropout masks
    with torch.no_grad():
        after = F.cross_entropy(model(x), y)
    assert after < before


def test_fit_writes_run_directory_and_never_opens_test(tmp_path, monkeypatch):
    opened = []
    real = train.open_dataset
    monkeypatch.setattr(train, "open_dataset", lambda name, root, split, **kw: opened.append(split) or real(name, root, split, **kw))
    result = fit(_cfg(tmp_path))
    assert sorted(opened) == ["train", "val"]
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"history.csv", "last.pt", "best.pt", "provenance.json", "config.json"} <= files
    hist = pd.read_csv(result.run_dir / "history.csv")
    assert list(hist.columns) == train.HISTORY_COLUMNS and len(hist) == 2


def test_fit_refuses_to_start_without_disk_for_its_checkpoints(tmp_path, monkeypatch):
    free = 500 * 2**20  # weights are 306 MiB: best.pt (1x) + last.pt with AdamW state (3x) + its temporary copy (3x)
    monkeypatch.setattr(train.shutil, "disk_usage", lambda p: type("Usage", (), {"free": free})())
    with pytest.raises(OSError, match=r"500 MiB free, but this run's checkpoints need about 2143 MiB more"):
        fit(_cfg(tmp_path))
    assert not list((tmp_path / "results").rglob("*.pt"))  # failed before training, not after an epoch


def test_fit_ignores_a_test_split_it_is_given(tmp_path):
    class Poison:
        def __getattr__(self, name):
            raise AssertionError(f"test split touched during fit ({name})")

        def __len__(self):
            raise AssertionError("test split touched during fit (len)")

    splits = train.open_training_splits(_cfg(tmp_path))
    fit(_cfg(tmp_path, epochs=1), datasets={**splits, "test": Poison()})


def test_same_config_gives_identical_runs(tmp_path):
    a = fit(_cfg(tmp_path / "a"))
    b = fit(_cfg(tmp_path / "b"))
    pd.testing.assert_frame_equal(_history(a.run_dir), _history(b.run_dir))
    assert _same_weights(a.run_dir / "best.pt", b.run_dir / "best.pt")


def test_resume_with_another_config_is_an_error(tmp_path):
    fit(_cfg(tmp_path, epochs=1))
    with pytest.raises(ValueError, match="different config.*lr"):
        fit(_cfg(tmp_path, epochs=1, lr=0.1))


def test_resume_from_a_corrupt_last_checkpoint_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, epochs=1)
    last = Path(cfg.results_dir) / cfg.run_name / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 cut off by a full disk")
    with pytest.raises(CheckpointError, match=r"cannot resume: .*last\.pt is not a readable PyTorch checkpoint"
                                              r".*Delete .*last\.pt to restart"):
        fit(cfg)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, epochs=3)
    calls = {"n": 0}
    real = F.cross_entropy

    def poisoned(logits, y, *a, **kw):
        calls["n"] += 1
        out = real(logits, y, *a, **kw)
        return out * float("nan") if calls["n"] > 6 else out  # epoch 1 = 4 train + 1 val batch

    monkeypatch.setattr(train.F, "cross_entropy", poisoned)
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2.*last.pt"):
        fit(cfg)
    run_dir = Path(cfg.results_dir) / cfg.run_name
    assert read_checkpoint(run_dir / "last.pt")["state"]["epoch"] == 1
    assert len(pd.read_csv(run_dir / "history.csv")) == 1


def test_plateau_scheduler_and_early_stopping(tmp_path, monkeypatch):
    scripted = iter([0.50, 0.60, 0.60, 0.55, 0.58, 0.99])
    monkeypatch.setattr(train, "evaluate_loss_acc", lambda *a, **k: (1.0, next(scripted)))
    with pytest.warns(UserWarning, match="no longer follows"):  # a clean run, shrunk for the test
        cfg = _cfg(tmp_path, protocol="clean", epochs=6, scheduler="plateau", plateau_patience=1, lr=0.01,
                   early_stopping_patience=3, max_train_items=16, image_size=16)
    result = fit(cfg)
    # epoch 3 and 4 do not improve on 0.60: the LR drops x0.1 after epoch 4 (patience 1)
    assert result.history["lr"].tolist() == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.001])
    # epochs 3, 4, 5 without gain: stop after epoch 5, never reaching the 0.99
    assert result.stopped_early and result.epochs_run == 5 and result.best_epoch == 2
    assert read_checkpoint(result.selected_checkpoint)["meta"]["epoch"] == 2


def test_reference_protocol_has_no_scheduler_and_patience_15():
    cfg = make_config({"protocol": "reference"})
    assert build_scheduler(cfg, torch.optim.SGD(ResEmoteNet().fc4.parameters(), lr=cfg.lr)) is None
    assert cfg.early_stopping_patience == 15


def test_scheduler_is_mode_max_factor_01():
    cfg = make_config({"protocol": "paper", "plateau_patience": 0})
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    sched = build_scheduler(cfg, opt)
    sched.step(0.5)
    sched.step(0.6)  # improvement (mode max): no change
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched.step(0.6)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_cuda_arch_check_names_gpu_capability_and_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (6, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla P100-PCIE-16GB")
    with pytest.raises(RuntimeError, match=r"Tesla P100.*6\.0 \(sm_60\).*sm_75.*cu126"):
        check_cuda_arch(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 9))  # Ada: sm_86 cubins run
    check_cuda_arch(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "compute_70"])  # PTX JIT
    check_cuda_arch(torch.device("cuda"))


def test_explicit_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    with pytest.raises(RuntimeError, match="cuda.is_available"):
        train.resolve_device("cuda")
    assert train.resolve_device("auto").type in ("cpu", "mps")


def _write_params(tmp_path, **kw) -> Path:
    values = {**TINY, "results_dir": str(tmp_path / "results"), "data_root": str(tmp_path / "data"), **kw}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    params = _write_params(tmp_path, epochs=3, max_train_items=48)
    cmd = [sys.executable, "-m", "resemote_lib.train", str(params)]
    # Same process settings (threads) for both runs: float sums depend on them.
    subprocess.run([*cmd, "run_name=uninterrupted"], env=_env(), check=True, capture_output=True)
    ref_dir = tmp_path / "results" / "uninterrupted"
    run_dir = tmp_path / "results" / "smoke"
    for kill_after_rows in (1, 2):  # kill during epoch 2, then again during epoch 3
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline:
            hist = run_dir / "history.csv"
            if hist.exists() and len(pd.read_csv(hist)) >= kill_after_rows:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # well inside the next epoch
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(cmd, env=_env(), check=True, capture_output=True)
    pd.testing.assert_frame_equal(_history(run_dir), _history(ref_dir))
    assert _same_weights(run_dir / "best.pt", ref_dir / "best.pt")
    last, ref_last = read_checkpoint(run_dir / "last.pt"), read_checkpoint(ref_dir / "last.pt")
    assert all(torch.equal(last["model"][k], ref_last["model"][k]) for k in last["model"])


@pytest.mark.slow
def test_two_process_gloo_run_matches_single_process(tmp_path):
    params = _write_params(tmp_path, epochs=1, max_train_items=64, batch_size=16)
    single = fit(make_config({**yaml.safe_load(params.read_text()), "run_name": "single"}))
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "resemote_lib.train",
                          str(params), "run_name=ddp"], env=_env(), capture_output=True, text=True, timeout=600)
    # torchrun prints the crashed rank's traceback first and its own summary last: show the first.
    rank0 = "\n".join(line for line in out.stderr.splitlines() if line.startswith("[rank0]"))
    assert out.returncode == 0, (rank0 or out.stderr)[-3000:]
    ddp = pd.read_csv(tmp_path / "results" / "ddp" / "history.csv")
    ref = single.history
    # Same data, same init and global batch; only BatchNorm statistics are per process.
    assert ddp["train_loss"].iloc[0] == pytest.approx(ref["train_loss"].iloc[0], rel=0.05)
    assert ddp["val_loss"].iloc[0] == pytest.approx(ref["val_loss"].iloc[0], rel=0.10)
    assert abs(ddp["val_acc"].iloc[0] - ref["val_acc"].iloc[0]) <= 0.25
    assert (tmp_path / "results" / "ddp" / "provenance.json").exists()

"""Resuming a run (``resume.py``): what ``last.pt`` holds, when it is written, the refusals, and a
resumed run equal to an uninterrupted one."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from resemote_lib import provenance, resume
from resemote_lib.checkpoint import CheckpointError, read_checkpoint
from resemote_lib.params import resolve as make_config
from resemote_lib.resume import TrainState, refuse_other_config, rng_state, set_rng_state
from resemote_lib.train import fit

from .tiny_runs import (
    LONG_EPOCHS,
    history_without_times,
    same_weights,
    single_thread_env,
    start,
    tiny_config,
    wait_for,
    write_params,
)

# The config keys whose change leaves a run's numbers alone, and why: every other key is refused on
# resume. Written here, not read from resume.RESUMABLE_CHANGES, so that a key added there must be
# argued for here too.
HARMLESS = {
    "results_dir": "where the run directory lies, not what it holds",
    "eval_batch_size": "validation sums the same per-image losses in other batches",
    "tta_flip": "only the final test evaluation reads it",
    "checkpoint_every": "when last.pt is written, not what training computes",
    "resume_other_code": "the switch that allows resuming at all",
    "step_graph": "a captured step computes what the eager step computes (tests/test_train_step.py)",
    "keep_last": "whether last.pt stays once the run has finished",
}


def test_resume_with_another_config_is_an_error(tmp_path):
    fit(tiny_config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match="different config.*lr"):
        fit(tiny_config(tmp_path, epochs=1, lr=0.1))


def test_resume_refuses_a_checkpoint_of_other_code_unless_told(tmp_path, monkeypatch):
    run_dir = fit(tiny_config(tmp_path, epochs=1)).run_dir
    (run_dir / "config.json").unlink()  # written last: without it the run counts as unfinished, so it resumes
    monkeypatch.setattr(provenance, "code_hash", lambda root=None, parts=None: "f" * 64)
    with pytest.raises(ValueError, match=r"written by different library code .*resume_other_code=true"):
        fit(tiny_config(tmp_path, epochs=1))
    assert fit(tiny_config(tmp_path, epochs=1, resume_other_code=True)).epochs_run == 1


def test_resume_from_a_corrupt_last_checkpoint_is_a_clear_error(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1)
    last = Path(cfg.results_dir) / cfg.run_name / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 cut off by a full disk")
    with pytest.raises(CheckpointError, match=r"cannot resume: .*last\.pt is not a readable PyTorch checkpoint"
                                              r".*Delete .*last\.pt to restart"):
        fit(cfg)


@pytest.mark.parametrize("key", sorted(make_config({}).to_dict()))
def test_resume_refuses_every_config_change_but_the_harmless_ones(key):
    """Each config key, changed on its own: a change to one that decides what the run computes
    (lr, seed, epochs, the model, the data...) is refused, naming it with both values; one of
    ``HARMLESS`` is accepted."""
    saved = make_config({}).to_dict()
    now = {**saved, key: ("changed", saved[key])}
    path = Path("results/run/last.pt")
    if key in HARMLESS:
        refuse_other_config(saved, now, path)
    else:
        with pytest.raises(ValueError, match=rf"different config \{{'{key}': \(.*, \('changed', .*\)\)\}}"):
            refuse_other_config(saved, now, path)


def test_rng_states_saved_in_last_pt_replay_the_same_draws():
    """Python's, NumPy's and torch's generators, saved as ``last.pt`` holds them (through
    torch.save and a ``weights_only`` load) and set again, draw what they drew after the save:
    cached Gaussians included (Python's ``gauss`` and NumPy's legacy ``standard_normal`` keep
    the second value of each pair they compute)."""
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in both

    def draws():
        return (random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.standard_normal()),
                torch.rand(3).tolist())

    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    expected = draws()
    draws()  # move every generator on
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    assert draws() == expected


def test_fit_refuses_to_start_without_disk_for_its_checkpoints(tmp_path, monkeypatch):
    free = 500 * 2**20  # weights are 306 MiB: best.pt (1x) + last.pt with AdamW state (3x) + its temporary copy (3x)
    monkeypatch.setattr(resume.shutil, "disk_usage", lambda p: type("Usage", (), {"free": free})())
    with pytest.raises(OSError, match=r"500 MiB free, but this run's checkpoints need about 2143 MiB more"):
        fit(tiny_config(tmp_path, model="resemotenet"))
    assert not list((tmp_path / "results").rglob("*.pt"))  # failed before training, not after an epoch


def test_last_pt_interval_on_cuda_keeps_writes_under_five_percent(tmp_path):
    def run(device: str, every=None, written=None):
        saver = SimpleNamespace(last_write_seconds={} if written is None else {"last.pt": written})
        return SimpleNamespace(cfg=SimpleNamespace(checkpoint_every=every), device=torch.device(device), saver=saver)

    state = TrainState(history=[{"train_seconds": 2.0, "val_seconds": 0.5}] * 2)
    assert resume.checkpoint_interval(run("cuda", written=3.0), state) == 24  # 3 s / (5% of 2.5 s)
    assert resume.checkpoint_interval(run("cuda", written=0.05), state) == 1
    assert resume.checkpoint_interval(run("cuda"), state) == 1  # before the first write was measured
    assert resume.checkpoint_interval(run("cpu", written=3.0), state) == 1
    assert resume.checkpoint_interval(run("cuda", every=3, written=3.0), state) == 3  # the config's own


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    params = write_params(tmp_path, epochs=3, **LONG_EPOCHS)
    cmd = [sys.executable, "-m", "resemote_lib", "train", str(params)]
    # Same process settings (threads) for both runs: float sums depend on them.
    subprocess.run([*cmd, "run_name=uninterrupted"], env=single_thread_env(), check=True, capture_output=True)
    ref_dir = tmp_path / "results" / "uninterrupted"
    run_dir = tmp_path / "results" / "smoke"
    epoch_seconds = pd.read_csv(ref_dir / "history.csv")["train_seconds"].min()
    for kill_after_rows in (1, 2):  # kill during epoch 2, then again during epoch 3
        proc = start(cmd, tmp_path / f"run{kill_after_rows}.log")
        hist = run_dir / "history.csv"
        wait_for(lambda n=kill_after_rows, h=hist: h.exists() and len(pd.read_csv(h)) >= n, proc)
        time.sleep(epoch_seconds / 3)  # inside the next epoch
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run(cmd, env=single_thread_env(), check=True, capture_output=True)
    pd.testing.assert_frame_equal(history_without_times(run_dir), history_without_times(ref_dir))
    assert same_weights(run_dir / "best.pt", ref_dir / "best.pt")
    last, ref_last = read_checkpoint(run_dir / "last.pt"), read_checkpoint(ref_dir / "last.pt")
    assert all(torch.equal(last["model"][k], ref_last["model"][k]) for k in last["model"])

"""Stopping on request (``interrupt.py``): SIGINT and SIGTERM stop training after a step, save
where, say how to resume, and leave the caller's signal handlers as they were."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch.nn.functional as F

from resemote_lib import runs, train_step
from resemote_lib.checkpoint import read_checkpoint
from resemote_lib.interrupt import StopRequests, TrainingInterrupted
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

STOPS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _handler_of_the_caller() -> Iterator[object]:
    """A handler of the test's own for SIGINT and SIGTERM while inside; the previous ones after."""
    def mine(signum, frame):
        raise AssertionError(f"the caller's handler got {signal.Signals(signum).name}")

    old = {sig: signal.signal(sig, mine) for sig in STOPS}
    try:
        yield mine
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def test_stop_requests_ask_to_stop_then_put_back_the_callers_handlers():
    """Inside: SIGTERM or a first Ctrl-C only asks to stop (the loop finishes its step), a second
    Ctrl-C interrupts at once. Outside, even when left by that KeyboardInterrupt: the handlers
    that were there before."""
    with _handler_of_the_caller() as mine:
        with StopRequests() as stop:
            assert not stop.requested
            signal.raise_signal(signal.SIGTERM)
            assert stop.requested and stop.name == "SIGTERM"
            signal.raise_signal(signal.SIGINT)  # a first Ctrl-C, after SIGTERM: still a request
            assert stop.name == "SIGINT"
        assert all(signal.getsignal(sig) is mine for sig in STOPS)
        with pytest.raises(KeyboardInterrupt), StopRequests():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # the second: at once
        assert all(signal.getsignal(sig) is mine for sig in STOPS)


def test_fit_puts_back_the_callers_signal_handlers_when_it_fails(tmp_path):
    """fit installs its stop requests around the run; a run refused during set-up (an empty
    validation split) leaves the caller's handlers in place."""
    cfg = tiny_config(tmp_path, epochs=1)
    splits = runs.open_training_splits(cfg)
    with _handler_of_the_caller() as mine:
        with pytest.raises(ValueError, match="has no images"):
            fit(cfg, datasets={"train": splits["train"], "val": runs.select(splits["val"], [])})
        assert all(signal.getsignal(sig) is mine for sig in STOPS)


def test_a_stop_mid_epoch_saves_where_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    """SIGTERM during step 2 of epoch 2, in this process: the step finishes, last.pt records
    epoch 1 done and 2 steps of epoch 2 with their running sums, the error says where and how to
    resume; the same fit again ends where an uninterrupted run ends, bit for bit."""
    reference = fit(tiny_config(tmp_path / "reference"), progress=False)
    per_epoch = int(reference.history["train_images"].iloc[0]) // 8  # steps of 8 images
    assert per_epoch > 2
    calls, real = [], F.cross_entropy

    def stop_in_epoch_2(logits, y, *args, **kw):
        if "label_smoothing" in kw:  # the training step's loss (validation computes its own)
            calls.append(y)
            if len(calls) == per_epoch + 2:
                signal.raise_signal(signal.SIGTERM)
        return real(logits, y, *args, **kw)

    cfg = tiny_config(tmp_path / "stopped")
    with monkeypatch.context() as patch:
        patch.setattr(train_step.F, "cross_entropy", stop_in_epoch_2)
        with pytest.raises(TrainingInterrupted, match=rf"stopped by SIGTERM after epoch 2, step 2 of {per_epoch}; "
                                                      r"saved .*last\.pt\. Run the same command"):
            fit(cfg, progress=False)
    run_dir = Path(cfg.results_dir) / cfg.run_name
    state = read_checkpoint(run_dir / "last.pt")["state"]
    assert (state["epoch"], state["step"], state["partial"]["seen"]) == (1, 2, 16), state
    resumed = fit(cfg, progress=False)
    pd.testing.assert_frame_equal(history_without_times(resumed.run_dir), history_without_times(reference.run_dir))
    assert same_weights(resumed.run_dir / "best.pt", reference.run_dir / "best.pt")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_epoch_saves_and_resumes_bit_identical(tmp_path, sig):
    """SIGTERM (a scheduler's stop) or Ctrl-C: finish the step, save the position inside the
    epoch, exit 130 saying how to resume; the resumed run equals an uninterrupted one."""
    params = write_params(tmp_path, epochs=2, **LONG_EPOCHS)
    cmd = [sys.executable, "-m", "resemote_lib", "train", str(params)]
    subprocess.run([*cmd, "run_name=uninterrupted"], env=single_thread_env(), check=True, capture_output=True)
    steps = int(pd.read_csv(tmp_path / "results" / "uninterrupted" / "history.csv")["train_images"].iloc[0]) // 4
    proc = start(cmd, tmp_path / "run.log")
    # provenance.json is written once set up, just before the first step: a signal that arrives
    # before the first step stops after it, so this lands inside epoch 1 (about 100 steps).
    wait_for((tmp_path / "results" / "smoke" / "provenance.json").exists, proc)
    proc.send_signal(sig)
    proc.wait(timeout=300)
    err = proc.log.read_text()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: training stopped by" in err and "Run the same command" in err
    state = read_checkpoint(tmp_path / "results" / "smoke" / "last.pt")["state"]
    assert steps > 90 and state["epoch"] == 0 and 0 < state["step"] < steps, (steps, state)
    subprocess.run(cmd, env=single_thread_env(), check=True, capture_output=True)
    run_dir, ref_dir = tmp_path / "results" / "smoke", tmp_path / "results" / "uninterrupted"
    pd.testing.assert_frame_equal(history_without_times(run_dir), history_without_times(ref_dir))
    assert same_weights(run_dir / "best.pt", ref_dir / "best.pt")

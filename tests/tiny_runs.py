"""Tiny training runs shared by the tests of training, resuming and interrupting: the config,
params files for runs in a subprocess, and the comparisons of two runs.

They train the `cnn` variant (1.3M parameters): what these tests check does not depend on the
architecture, and its checkpoints take 15 MB instead of 1.2 GB. Tests of ResEmoteNet itself say
model="resemotenet".
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from resemote_lib.checkpoint import read_checkpoint
from resemote_lib.params import TrainConfig
from resemote_lib.params import resolve as make_config
from resemote_lib.train import HISTORY_COLUMNS

TINY = dict(protocol="demo", dataset="synthetic", model="cnn", image_size=32, epochs=2, batch_size=8,
            max_train_items=32, synthetic_n_train=140, synthetic_n_val=21, synthetic_n_test=21, device="cpu", seed=1,
            keep_last=True)  # the demo preset drops last.pt once finished; these tests look at it
# The signal tests train on enough images that an epoch is a hundred steps of 4 (seconds on a
# CPU), so a signal sent at a known point lands inside an epoch; ResEmoteNet itself would make
# them minutes each (every epoch saves 1.2 GB) without testing anything more.
LONG_EPOCHS = dict(model="cnn", image_size=32, batch_size=4, synthetic_n_train=420, max_train_items=400)


def tiny_config(tmp_path: Path, **kw) -> TrainConfig:
    """``TINY`` with its results and data under ``tmp_path``, and ``kw`` on top."""
    return make_config({**TINY, "results_dir": str(tmp_path / "results"), "data_root": str(tmp_path / "data"), **kw})


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def history_without_times(run_dir: Path) -> pd.DataFrame:
    """A run's ``history.csv`` without its timings: what two identical runs share."""
    return pd.read_csv(run_dir / "history.csv").drop(columns=[c for c in HISTORY_COLUMNS if "seconds" in c])


def write_params(tmp_path: Path, **kw) -> Path:
    """A params file of ``TINY`` and ``kw``, for ``python -m resemote_lib train``."""
    values = {**TINY, "results_dir": str(tmp_path / "results"), "data_root": str(tmp_path / "data"), **kw}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def single_thread_env() -> dict[str, str]:
    """The environment of a training subprocess: one thread (float sums depend on the thread count)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """A training process whose stderr goes to ``log`` (a pipe would fill up with progress bars)."""
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=single_thread_env(), stdout=subprocess.DEVNULL, stderr=err, text=True)
    proc.log = log
    return proc


def wait_for(predicate, proc, seconds=300) -> None:
    """Until ``predicate()`` holds; an error when ``proc`` ends first or after ``seconds``."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before it could be stopped: "
                                 f"{proc.log.read_text()[-2000:]}")
        time.sleep(0.01)
    raise AssertionError("timed out")

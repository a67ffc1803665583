"""Resuming a run: what ``last.pt`` holds to continue one, when it is written, whether the run's
checkpoints fit on disk, and restoring it.

``train.fit`` saves ``last.pt`` (``save_last``) after epochs and when it is stopped, and restores
it (``restore_last``) before the first epoch. It holds the model, optimiser, scheduler and scaler,
every rank's RNG states and the counters of ``TrainState`` (the position and running sums inside
an interrupted epoch too): on a CPU the resumed run is bit-identical to an uninterrupted one; on
CUDA, cuDNN's non-deterministic kernels make it equal up to float rounding. A run resumes only
under the config (up to ``RESUMABLE_CHANGES``) and the training code that wrote it.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .background_save import BackgroundSaver
from .checkpoint import CheckpointError, read_checkpoint, unwrap
from .distributed import DistInfo
from .files import atomic_torch_save, tensor_bytes
from .params import TrainConfig

log = logging.getLogger(__name__)
SAVE_SHARE = 0.05  # on CUDA, last.pt is written every as many epochs as keep its writes under this share
# Config keys that may change between a run and its resumption without changing its result.
RESUMABLE_CHANGES = ("results_dir", "eval_batch_size", "tta_flip", "checkpoint_every", "resume_other_code",
                     "step_graph", "keep_last")


@dataclass
class TrainState:
    """What ``last.pt`` restores besides the tensors: counters, history, the decisions."""

    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed of the next epoch (> 0 only after an interruption)
    partial: dict[str, Any] | None = None  # that epoch's running sums, when step > 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    epochs_without_gain: int = 0
    stopped_early: bool = False


class Resumable(Protocol):
    """What ``last.pt`` saves and restores of a run (``train.TrainingSetup`` is one)."""

    cfg: TrainConfig
    dist: DistInfo
    device: torch.device
    model: nn.Module  # the plain module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # None without a schedule
    scaler: torch.amp.GradScaler
    saver: BackgroundSaver
    code_sha256: str  # of train.TRAINING_CODE when the run started

    @property
    def last_path(self) -> Path: ...


def save_last(run: Resumable, state: TrainState) -> None:
    """``last.pt`` (written by rank 0, called on every rank: the RNG states are gathered):
    weights, optimiser, scheduler, scaler, each rank's RNG, counters, config, code hash."""
    rng: Any = rng_state()
    if run.dist.active:
        gathered: list[Any] = [None] * run.dist.world_size
        torch.distributed.all_gather_object(gathered, rng)
        rng = gathered
    if run.dist.is_main:
        run.saver.submit(atomic_torch_save, {
            "model": unwrap(run.model).state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
            "scaler": run.scaler.state_dict(), "rng": rng, "state": dataclasses.asdict(state),
            "config": run.cfg.to_dict(), "code_sha256": run.code_sha256}, run.last_path)


def checkpoint_interval(run: Resumable, state: TrainState) -> int:
    """Epochs between writes of ``last.pt``: ``checkpoint_every``, or when unset, 1 on a CPU or
    MPS and, on CUDA, as many as keep the background write of last.pt (measured on the first
    one) under ``SAVE_SHARE`` of the run's time: writing 600 MB after every 2-second epoch of
    an H100 would otherwise put 48 GB on the disk per run."""
    if run.cfg.checkpoint_every is not None:
        return run.cfg.checkpoint_every
    written = run.saver.last_write_seconds.get("last.pt")
    if run.device.type != "cuda" or written is None or not state.history:
        return 1
    epoch_seconds = sum(r["train_seconds"] + r["val_seconds"] for r in state.history) / len(state.history)
    return max(1, math.ceil(written / (SAVE_SHARE * epoch_seconds)))


def check_disk_space(run_dir: Path, model: nn.Module, cfg: TrainConfig) -> None:
    """Fail before the first epoch, not after it, when the run's checkpoints cannot fit on disk.

    At its peak a run holds the selected weights (best.pt or final.pt), last.pt (weights
    and optimizer state) and the temporary copy of last.pt that an atomic save writes
    before it replaces the old one.
    """
    weights = tensor_bytes(model.state_dict())
    slots = 2 if cfg.optimizer == "adamw" else int(cfg.momentum > 0)
    last = weights * (1 + slots)
    needed = weights + 2 * last
    needed -= sum(p.stat().st_size for p in (run_dir / "best.pt", run_dir / "last.pt") if p.is_file())
    free = shutil.disk_usage(run_dir).free
    if needed > free:
        raise OSError(errno.ENOSPC, f"{run_dir} is on a device with {free / 2**20:.0f} MiB free, but this run's "
                      f"checkpoints need about {needed / 2**20:.0f} MiB more (the selected weights, last.pt with "
                      f"{cfg.optimizer} state, and a temporary copy while saving). Free some space or set "
                      "RESEMOTE_RESULTS to a larger disk.")


def restore_last(run: Resumable) -> TrainState | None:
    """The state saved in ``last.pt``, its tensors loaded into the run and its RNG states set,
    after checking that the same config and the same code wrote it; None without ``last.pt``."""
    if not run.last_path.is_file():
        return None
    ckpt = _read_last(run.last_path)
    refuse_other_config(ckpt["config"], run.cfg.to_dict(), run.last_path)
    refuse_other_code(ckpt.get("code_sha256"), run.code_sha256, run.last_path, allowed=run.cfg.resume_other_code)
    unwrap(run.model).load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt["rng"]
    set_rng_state(rng[run.dist.rank] if isinstance(rng, list) else rng)  # one state per rank under DDP
    state = TrainState(**ckpt["state"])
    if state.partial is not None and not run.dist.is_main:
        state.partial = None  # the saved running sums are every rank's, summed: rank 0 carries them
    log.info("resuming %s after epoch %d%s", run.last_path.parent, state.epoch,
             f", step {state.step} of epoch {state.epoch + 1}" if state.step else "")
    return state


def config_changes(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved, now)}`` for each key of ``now`` whose value differs from ``saved``'s,
    leaving out ``RESUMABLE_CHANGES``."""
    return {k: (saved.get(k), v) for k, v in _comparable(now).items() if saved.get(k) != v}


def refuse_other_config(saved: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    """A ``ValueError`` unless ``path``'s config ``saved`` equals ``now`` up to ``RESUMABLE_CHANGES``."""
    if _comparable(saved) != _comparable(now):
        raise ValueError(f"{path} was written by a different config {config_changes(saved, now)} (saved, now); "
                         "use another run_name or delete the run directory")


def refuse_other_code(saved: str | None, now: str, path: Path, *, allowed: bool = False) -> None:
    """A ``ValueError`` when other training code wrote ``path`` (source hash ``saved``), unless
    ``allowed`` (``resume_other_code``)."""
    if saved != now and not allowed:
        raise ValueError(f"{path} was written by different library code (source hash {str(saved)[:12]}, now "
                         f"{now[:12]}): resuming would mix two versions in one run. Use another run_name, or set "
                         "resume_other_code=true to continue anyway")


def rng_state() -> dict[str, Any]:
    """All RNG states (Python, NumPy, torch, every CUDA device) as tensors and plain data, so
    that ``weights_only`` loading works."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {"python": [version, list(internal), py_gauss],
             "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Set the RNG states that ``rng_state`` returned."""
    version, internal, py_gauss = state["python"]
    random.setstate((version, tuple(internal), py_gauss))
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_last(path: Path) -> dict[str, Any]:
    try:
        return read_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f"cannot resume: {e}. Delete {path} to restart this run from epoch 1, "
                              "or use another run_name.") from None


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}


__all__ = [
    "RESUMABLE_CHANGES",
    "Resumable",
    "TrainState",
    "check_disk_space",
    "checkpoint_interval",
    "config_changes",
    "refuse_other_code",
    "refuse_other_config",
    "restore_last",
    "rng_state",
    "save_last",
    "set_rng_state",
]

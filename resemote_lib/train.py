"""Training: ``fit(config) -> RunResult``, the loop over epochs, resumable, on any device, under DDP too.

Read it in this order: ``fit`` -> ``train_one_epoch`` -> ``train_step.TrainStep`` (one step).
``fit`` reads as the steps of torchvision's reference script: set up, restore, train one
epoch, validate, decide, save, finish. Around the loop: ``optim`` builds the optimiser and its
schedule, ``resume`` saves and restores ``last.pt``, ``interrupt`` turns SIGINT or SIGTERM into a
stop after the current step, and ``train_step.LossWatch`` stops a run whose loss diverged.
The loop never touches the test split: the checkpoint is selected on validation, and the test
set is evaluated once, afterwards, by ``evaluate.evaluate_run``.

On the device and without host syncs per step: each epoch's permutation and flip mask are
drawn once (``train_step.epoch_plan``), seeded by (seed, epoch), on the device that holds the
decoded uint8 split; batches are gathered and augmented there; loss and accuracy accumulate
there and are read once per ``LOG_EVERY`` steps. Batches have one static shape (the last
partial batch is dropped and counted in the history). Under DDP every decision is taken from
numbers all ranks share (see ``distributed``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import provenance
from .background_save import BackgroundSaver
from .checkpoint import checkpoint_payload
from .data import FaceDataset
from .data.transforms import AUGMENTATIONS, Preset
from .device import Precision, choose_precision, resolve_device
from .distributed import (
    DistInfo,
    all_reduce_sum,
    any_rank,
    barrier,
    broadcast_buffers,
    init_distributed,
    shard,
)
from .files import atomic_torch_save, atomic_write_text
from .inference import loss_and_correct, predict_logits
from .interrupt import StopRequests, save_and_stop
from .labels import CLASS_NAMES
from .model import build_model, describe
from .optim import build_optimizer, build_scheduler, class_weights
from .params import TrainConfig, protocol_deviations
from .progress import tqdm
from .resume import TrainState, check_disk_space, checkpoint_interval, config_changes, restore_last, save_last
from .runs import RunLock, open_training_splits, run_dir_for, selected_checkpoint
from .train_step import LossWatch, TrainStep, epoch_plan, use_step_graph

log = logging.getLogger(__name__)
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "train_images", "dropped", "val_loss", "val_acc",
                   "train_seconds", "val_seconds", "checkpoint_seconds", "seconds"]
LOG_EVERY = 25  # steps between loss readings (progress bar, NaN check, shared stop requests under DDP)
MONITOR_EVERY = 5.0  # seconds between on_epoch calls (a notebook's redraw took 1.2 s: never every 2-second epoch)
# The modules whose code decides what a run computes: resuming a last.pt that other versions
# of these wrote would mix two versions in one run. An edit to the tool packages does not count;
# one anywhere in data/ does (its face detector crops a folder dataset's training faces too).
TRAINING_CODE = ("train.py", "train_step.py", "optim.py", "resume.py", "interrupt.py", "model.py", "resnet.py",
                 "params.py", "runs.py", "inference.py", "device.py", "distributed.py", "checkpoint.py", "labels.py",
                 "data")


@dataclass
class RunResult:
    run_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_val_acc: float
    selected_checkpoint: Path
    stopped_early: bool
    epochs_run: int
    precision: str = "fp32"
    model: nn.Module | None = None  # the trained weights (last epoch), unwrapped, in eval mode


@dataclass
class TrainingSetup:
    """Everything ``set_up`` prepares once: the objects the steps of ``fit`` share."""

    cfg: TrainConfig
    dist: DistInfo
    device: torch.device
    precision: Precision
    channels_last: bool
    run_dir: Path
    model: nn.Module  # the plain module (saved, validated)
    train_model: nn.Module  # what trains it: DDP and/or torch.compile around ``model``
    optimizer: torch.optim.Optimizer
    scheduler: Any
    augment: Preset  # the training preprocessing (params ``augment``)
    scaler: torch.amp.GradScaler
    step: TrainStep  # one optimisation step (a CUDA graph where possible)
    saver: BackgroundSaver  # writes checkpoints beside training
    images: torch.Tensor  # the training split, uint8, on ``data_device``
    labels: torch.Tensor
    val: FaceDataset
    splits: dict[str, FaceDataset]
    steps: int  # static-shape steps per epoch
    progress: bool
    on_epoch: Callable[[pd.DataFrame], None] | None
    removed_temp_files: list[str]
    code_sha256: str  # of TRAINING_CODE when the run started: what last.pt records
    monitor_shown: float = -math.inf  # time.monotonic() of the last on_epoch call

    @property
    def rank_batch(self) -> int:
        return self.cfg.batch_size // self.dist.world_size

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"


# --- the loop --------------------------------------------------------------------------

def fit(cfg: TrainConfig, *, datasets: dict[str, FaceDataset] | None = None, progress: bool = True,
        on_epoch: Callable[[pd.DataFrame], None] | None = None) -> RunResult:
    """Train ``cfg`` into ``results/<run_name>/``; resume if ``last.pt`` is there.

    Args:
        cfg: the experiment.
        datasets: ``{"train": ..., "val": ...}`` already opened, used as they are (else
            opened from cfg, cleaned under the clean protocol, subset by max_train_items).
            A ``"test"`` entry is ignored: training never looks at test data.
        progress: show tqdm bars.
        on_epoch: called (main process) with the history so far after an epoch is saved, at
            most every ``MONITOR_EVERY`` seconds and after the last epoch, e.g. to redraw a
            notebook's table and curves.

    A run that has already finished with this config is not trained again: its result is
    read back (``finished_result``); with another config it is an error.
    """
    run_dir = run_dir_for(cfg)
    done = finished_result(cfg, run_dir)
    if done is not None:
        return done
    dist_info = init_distributed(cfg.device)
    with RunLock(run_dir) if dist_info.is_main else _NoLock() as lock, StopRequests() as stop:
        run = set_up(cfg, run_dir, dist_info, datasets, progress, on_epoch, list(lock.removed or ()))
        with run.saver:  # every checkpoint submitted is on disk before fit returns or raises
            state = restore(run)  # a refused resumption has written nothing
            announce(run)
            while not finished(run, state):
                stats = train_one_epoch(run, state, stop)
                if stats is None:  # asked to stop mid-epoch: save where, then say how to resume
                    save_and_stop(run, state, stop)
                improved = decide(run, state, stats, validate(run))
                save(run, state, improved)
                if any_rank(stop.requested, run.dist, run.device):
                    save_and_stop(run, state, stop)
            return finish(run, state)


def announce(run: TrainingSetup) -> None:
    """``provenance.json`` with status "running" (main process), once the run may go on, and the
    precision chosen, with why (``precision: bf16 (this CPU has AVX512_BF16)``)."""
    if run.dist.is_main:
        _write_provenance(run, "running", None)
        log.info("precision: %s", run.precision.describe())


def finished(run: TrainingSetup, state: TrainState) -> bool:
    return state.epoch >= run.cfg.epochs or state.stopped_early


def train_one_epoch(run: TrainingSetup, state: TrainState, stop: StopRequests) -> dict[str, float] | None:
    """One pass over the training split (from ``state.step`` on, after an interruption).

    Returns the epoch's training statistics, or None when a stop was requested (the
    position and running sums are then in ``state``).
    """
    epoch, cfg, device = state.epoch + 1, run.cfg, run.device
    plan = epoch_plan(len(run.labels), epoch, cfg.seed, run.images.device, run.augment)
    partial = state.partial or {}
    run.step.new_epoch(plan.flips, plan.warps, partial.get("loss"), partial.get("correct"))
    seen, t0 = partial.get("seen", 0), time.perf_counter() - partial.get("seconds", 0.0)
    run.train_model.train()
    rows = shard(cfg.batch_size, run.dist)  # this rank's rows of each global batch
    watch = LossWatch(run.step, run.dist, epoch, run.last_path)
    bar = tqdm(total=run.steps, initial=state.step, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
               disable=not (run.progress and run.dist.is_main))
    for step in range(state.step, run.steps):
        run.step(plan.order[step * cfg.batch_size:(step + 1) * cfg.batch_size][rows])
        if cfg.scheduler == "onecycle":
            run.scheduler.step()
        seen += run.rank_batch
        state.step = step + 1
        bar.update(1)
        if state.step % LOG_EVERY == 0 or state.step == run.steps:  # the same step on every rank
            watch.check(state.step, seen, bar, final=state.step == run.steps)
        shared_check = state.step % LOG_EVERY == 0 or not run.dist.active  # a collective under DDP
        if state.step < run.steps and shared_check and any_rank(stop.requested, run.dist, device):
            state.partial = _shared_sums(run, seen, time.perf_counter() - t0)
            bar.close()
            return None
    bar.close()
    seen_t = torch.tensor(float(seen), device=device, dtype=torch.float64)
    totals = all_reduce_sum(torch.stack([run.step.loss_sum.double(), run.step.correct.double(), seen_t]),
                            run.dist).tolist()
    return {"train_loss": totals[0] / totals[2], "train_acc": totals[1] / totals[2], "train_images": int(totals[2]),
            "dropped": len(run.labels) - run.steps * cfg.batch_size, "train_seconds": time.perf_counter() - t0}


@torch.inference_mode()
def validate(run: TrainingSetup) -> dict[str, float]:
    """Validation loss and accuracy, identical on every rank: each rank scores its
    unpadded shard with rank 0's BatchNorm statistics, and the sums are all-reduced."""
    t0 = time.perf_counter()
    broadcast_buffers(run.model, run.dist)
    part = shard(len(run.val), run.dist)
    logits = predict_logits(run.model, run.val.images[part], batch_size=run.cfg.eval_batch_size, device=run.device,
                            precision=run.precision, channels_last=run.channels_last,
                            progress=run.progress and run.dist.is_main)
    loss_sum, correct = loss_and_correct(logits, run.val.labels[part])
    n = torch.tensor(float(len(logits)), device=run.device, dtype=torch.float64)
    totals = all_reduce_sum(torch.stack([loss_sum.double(), correct.double(), n]), run.dist).tolist()
    return {"val_loss": totals[0] / totals[2], "val_acc": totals[1] / totals[2],
            "val_seconds": time.perf_counter() - t0}


def decide(run: TrainingSetup, state: TrainState, stats: dict[str, float], val: dict[str, float]) -> bool:
    """LR schedule, best epoch and early stopping, from numbers every rank shares.

    Early stopping follows the reference code: stop when the number of epochs without a
    validation gain exceeds the patience (``patience_counter > patience``).
    """
    cfg, epoch, val_acc = run.cfg, state.epoch + 1, val["val_acc"]
    lr = float(run.optimizer.param_groups[0]["lr"])  # a tensor the scheduler edits in place under a step graph
    if run.cfg.scheduler == "plateau":
        run.scheduler.step(val_acc)
    improved = val_acc > state.best_val_acc
    if improved:
        state.best_val_acc, state.best_epoch, state.epochs_without_gain = val_acc, epoch, 0
    else:
        state.epochs_without_gain += 1
    if cfg.early_stopping_patience is not None and state.epochs_without_gain > cfg.early_stopping_patience:
        state.stopped_early = True
        log.info("early stopping after epoch %d: %d epochs without a gain (best val acc %.4f at epoch %d)", epoch,
                 state.epochs_without_gain, state.best_val_acc, state.best_epoch)
    state.history.append({"epoch": epoch, "lr": lr, **stats, **val, "checkpoint_seconds": 0.0, "seconds": 0.0})
    state.epoch, state.step, state.partial = epoch, 0, None
    log.info("epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.2g", epoch, stats["train_loss"],
             stats["train_acc"], val["val_loss"], val_acc, lr)
    return improved


def save(run: TrainingSetup, state: TrainState, improved: bool) -> None:
    """``best.pt`` when it improved (and is used), ``last.pt`` every ``checkpoint_every``
    epochs and at the end, ``history.csv`` every epoch; main process only. Checkpoints are
    snapshots handed to a background writer (``background_save.BackgroundSaver``): the history's
    ``checkpoint_seconds`` is what the loop itself spent on them (snapshots, waits)."""
    blocked = run.saver.seconds_blocked
    row = state.history[-1]
    row["seconds"] = round(row["train_seconds"] + row["val_seconds"], 3)  # what last.pt records; + saving below
    if state.epoch % checkpoint_interval(run, state) == 0 or finished(run, state):
        save_last(run, state)
    if run.dist.is_main:
        if improved and run.cfg.selection == "best_val":
            run.saver.submit(atomic_torch_save, checkpoint_payload(
                run.model, image_size=run.cfg.image_size, config=run.cfg.to_dict(), epoch=state.epoch,
                val_acc=state.best_val_acc, precision=run.precision.name), run.run_dir / "best.pt")
        row["checkpoint_seconds"] = round(run.saver.seconds_blocked - blocked, 3)
        row["seconds"] = round(row["train_seconds"] + row["val_seconds"] + row["checkpoint_seconds"], 3)
        _write_history(run.run_dir / "history.csv", state.history)
        now = time.monotonic()
        if run.on_epoch is not None and (now - run.monitor_shown >= MONITOR_EVERY or finished(run, state)):
            run.on_epoch(history_frame(state.history))
            run.monitor_shown = now
    barrier(run.dist)


def finish(run: TrainingSetup, state: TrainState) -> RunResult:
    """``final.pt`` (last-epoch selection), ``provenance.json`` and ``config.json``; ``last.pt``
    removed when the config does not keep it (``keep_last``: smoke and demo runs)."""
    selected = selected_checkpoint(run.run_dir, run.cfg)
    if run.dist.is_main:
        if run.cfg.selection == "last":
            run.saver.submit(atomic_torch_save, checkpoint_payload(
                run.model, image_size=run.cfg.image_size, config=run.cfg.to_dict(), epoch=state.epoch,
                precision=run.precision.name), selected)
        run.saver.flush()
        if not run.cfg.keep_last:
            run.last_path.unlink(missing_ok=True)
        _write_provenance(run, "finished", state)
        atomic_write_text(run.run_dir / "config.json", json.dumps(run.cfg.to_dict(), indent=2))
    barrier(run.dist)
    return RunResult(run_dir=run.run_dir, history=history_frame(state.history), best_epoch=state.best_epoch,
                     best_val_acc=state.best_val_acc, selected_checkpoint=selected, stopped_early=state.stopped_early,
                     epochs_run=state.epoch, precision=run.precision.name, model=run.model.eval())


def finished_result(cfg: TrainConfig, run_dir: Path) -> RunResult | None:
    """The result of ``run_dir`` when it has finished training ``cfg`` (its ``config.json`` is
    written last), read back with its selected weights; None when it has not finished; an
    error when it finished with another config (it is never trained over)."""
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        record = json.loads((run_dir / "provenance.json").read_text()).get("training", {})
        history = pd.read_csv(run_dir / "history.csv")
    except (OSError, ValueError) as e:
        raise ValueError(f"{run_dir} looks finished (config.json) but cannot be read back ({e}); use another "
                         "run_name or delete the run directory") from None
    diff = config_changes(saved, cfg.to_dict())
    if diff:
        raise ValueError(f"{run_dir} holds a finished run with a different config {diff} (saved, now): it is not "
                         "trained again or over; use another run_name, or delete the run directory to start afresh")
    from .checkpoint import load_model

    selected = selected_checkpoint(run_dir, cfg)
    best_epoch = int(record.get("best_epoch", int(history["val_acc"].idxmax()) + 1))
    return RunResult(run_dir=run_dir, history=history, best_epoch=best_epoch,
                     best_val_acc=float(history["val_acc"].iloc[best_epoch - 1]), selected_checkpoint=selected,
                     stopped_early=bool(record.get("stopped_early", False)), epochs_run=len(history),
                     precision=record.get("precision", "fp32"), model=load_model(selected))


# --- set-up and restore ----------------------------------------------------------------

def set_up(cfg: TrainConfig, run_dir: Path, dist_info: DistInfo, datasets: dict[str, FaceDataset] | None,
           progress: bool, on_epoch: Callable[[pd.DataFrame], None] | None, removed: list[Path]) -> TrainingSetup:
    """Device, precision, data, model, optimiser: everything checked before epoch 1."""
    device = resolve_device(cfg.device)
    if device.type == "cuda" and dist_info.active:
        device = torch.device("cuda", dist_info.local_rank)
    if cfg.batch_size % dist_info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} does not divide by the {dist_info.world_size} processes: "
                         "each process must take an equal part of every batch")
    seed_everything(cfg.seed)
    splits = {k: v for k, v in (datasets or open_training_splits(cfg)).items() if k in ("train", "val")}
    train_ds, val_ds = splits["train"], splits["val"]
    steps = len(train_ds) // cfg.batch_size
    if steps < 1:
        raise ValueError(f"the training split of {cfg.dataset} has {len(train_ds)} image(s), fewer than one batch "
                         f"(batch_size {cfg.batch_size}); lower batch_size or train on more images")
    if len(val_ds) == 0:
        raise ValueError(f"the validation split of {cfg.dataset} ({val_ds.report.get('source', val_ds.root)}) "
                         "has no images: checkpoints could not be selected; check the data (FER2013 needs "
                         "PublicTest rows) or val_fraction")
    precision = choose_precision(device, cfg.amp)
    precision.apply()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # static batch shapes: autotune each convolution once
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    model = build_model(cfg.model, num_classes=len(CLASS_NAMES), image_size=cfg.image_size).to(device)
    if cfg.sync_bn and dist_info.active:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model, device)
    if dist_info.is_main:
        check_disk_space(run_dir, model, cfg)
    train_model: nn.Module = model
    if dist_info.active:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    # The uint8 splits live on the accelerator when they fit (FER2013 at 64x64: 118 MB):
    # batches are then gathered there, with no host-to-device copy per step.
    on_device = device.type != "cpu" and train_ds.images.numel() + val_ds.images.numel() < 2 * 1024**3
    data_device = device if on_device else torch.device("cpu")
    if on_device:
        val_ds = _to_device(val_ds, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaler)
    capture = use_step_graph(cfg, device, scaler=precision.scaler, distributed=dist_info.active)
    images, labels = train_ds.images.to(data_device), train_ds.labels.to(data_device)
    step = TrainStep(model=train_model, optimizer=optimizer, scaler=scaler, precision=precision, images=images,
                     labels=labels, augment=AUGMENTATIONS[cfg.augment], batch=cfg.batch_size // dist_info.world_size,
                     device=device, channels_last=channels_last, label_smoothing=cfg.label_smoothing, capture=capture,
                     class_weights=class_weights(train_ds.labels, cfg.class_balance))
    return TrainingSetup(
        cfg=cfg, dist=dist_info, device=device, precision=precision, channels_last=channels_last, run_dir=run_dir,
        model=model, train_model=train_model, optimizer=optimizer, scheduler=build_scheduler(cfg, optimizer, steps),
        augment=AUGMENTATIONS[cfg.augment], scaler=scaler, step=step, saver=BackgroundSaver(), images=images,
        labels=labels, val=val_ds, splits=splits, steps=steps, progress=progress, on_epoch=on_epoch,
        removed_temp_files=[p.name for p in removed], code_sha256=provenance.code_hash(parts=TRAINING_CODE))


def restore(run: TrainingSetup) -> TrainState:
    """Where the run goes on from: the state ``last.pt`` holds (``resume.restore_last`` checks that
    the same config and code wrote it), or a fresh one. The history is cut back to it: epochs
    after the checkpoint are redone."""
    state = restore_last(run)
    if state is None:
        return TrainState()
    if run.dist.is_main:
        _write_history(run.run_dir / "history.csv", state.history)
    return state


# --- parts -----------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def history_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def _to_device(ds: FaceDataset, device: torch.device) -> FaceDataset:
    return FaceDataset(ds.images.to(device), ds.labels.to(device), ds.ids, name=ds.name, split=ds.split,
                       layout=ds.layout, root=ds.root, transform=ds.transform, report=ds.report,
                       class_names=ds.class_names)


def _shared_sums(run: TrainingSetup, seen: int, seconds: float) -> dict[str, Any]:
    """The running sums of every rank, summed (what rank 0 restores on resume)."""
    seen_t = torch.tensor(float(seen), device=run.device, dtype=torch.float64)
    total = all_reduce_sum(torch.stack([run.step.loss_sum.double(), run.step.correct.double(), seen_t]), run.dist)
    return {"loss": total[0].to(run.step.loss_sum.dtype).cpu(), "correct": total[1].long().cpu(), "seen": int(total[2]),
            "seconds": seconds}


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    history_frame(rows).to_csv(tmp, index=False)
    tmp.replace(path)


def _write_provenance(run: TrainingSetup, status: str, state: TrainState | None) -> None:
    record = provenance.collect(
        config=run.cfg.to_dict(), device=run.device, datasets=run.splits, world_size=run.dist.world_size,
        protocol=run.cfg.protocol, protocol_deviations=protocol_deviations(run.cfg), status=status,
        training={"network": describe(run.cfg.model, run.cfg.image_size), "precision": run.precision.name,
                  "precision_reason": run.precision.why,
                  "class_weights": None if run.step.class_weights is None else run.step.class_weights.tolist(),
                  "channels_last": run.channels_last, "compile": run.cfg.compile,
                  "step_graph": run.step.capture,
                  "sync_bn": run.cfg.sync_bn and run.dist.active, "optimizer": type(run.optimizer).__name__,
                  "optimizer_fused": bool(run.optimizer.defaults.get("fused")), "steps_per_epoch": run.steps,
                  "global_batch": run.cfg.batch_size, "world_size": run.dist.world_size,
                  "removed_temp_files": run.removed_temp_files,
                  **({"epochs_run": state.epoch, "best_epoch": state.best_epoch, "stopped_early": state.stopped_early}
                     if state is not None else {})})
    provenance.write(run.run_dir / "provenance.json", record)


class _NoLock:
    """Ranks other than 0 write nothing, so they take no lock."""

    removed: tuple[Path, ...] = ()

    def __enter__(self) -> _NoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["HISTORY_COLUMNS", "RunResult", "decide", "finish", "fit", "restore", "save", "seed_everything", "set_up",
           "train_one_epoch", "validate"]

"""One training step as one launch: gather, augment, forward, loss, backward, update and the
running sums, over static buffers and with no host sync, captured as one CUDA graph where
that is possible.

At batch 16 a step is ~270 separate PyTorch operations; on a fast GPU their launch cost
exceeds the arithmetic. ``TrainStep`` writes every input a step reads into buffers that never
move (the batch's indices, the epoch's flips and warps, the learning rate as a device tensor
that the schedulers fill), so after a few eager warm-up steps the whole step can be recorded
once (``torch.cuda.CUDAGraph``) and replayed: one launch per step. The same code runs eagerly
wherever capture is off (CPU, MPS, fp16 with its gradient scaler, DDP, torch.compile, or
``step_graph: off``), and ``tests/test_train_step.py`` checks on the CPU that it computes exactly
what a textbook PyTorch step computes.

Around the step: ``epoch_plan`` draws what an epoch's steps read (order, flips, warps) from
(seed, epoch) alone; ``use_step_graph`` decides whether a run captures its step; ``LossWatch`` reads
the running loss every few steps (``train.LOG_EVERY``) for the progress bar, without stalling the
device, and stops a run whose loss is no longer finite (``TrainingDiverged``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.transforms import AUGMENTATIONS, Preset
from .device import Precision
from .distributed import DistInfo, all_reduce_sum
from .params import TrainConfig
from .progress import tqdm

log = logging.getLogger(__name__)
WARMUP_STEPS = 3  # eager steps before capture (lazy optimiser state, cuDNN autotuning, allocator pools)


def graph_possible(device: torch.device, *, scaler: bool, distributed: bool, compiled: bool) -> str | None:
    """Why a step cannot be captured as a CUDA graph here (None: it can)."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (this run is on {device.type})"
    if scaler:
        return "fp16's gradient scaler reads its overflow flag on the host every step"
    if distributed:
        return "DDP's gradient all-reduce is not captured here"
    if compiled:
        return "torch.compile manages its own graphs"
    return None


def lr_on_device(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Hold each parameter group's learning rate in a tensor on ``device``: a captured step reads
    it there, and the schedulers (``lr_scheduler._update_param_group_val``) fill it in place."""
    for group in optimizer.param_groups:
        if not isinstance(group["lr"], Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)


def use_step_graph(cfg: TrainConfig, device: torch.device, *, scaler: bool, distributed: bool) -> bool:
    """Whether each step is captured as one CUDA graph (``step_graph``: auto, on, off)."""
    why_not = graph_possible(device, scaler=scaler, distributed=distributed, compiled=cfg.compile)
    if cfg.step_graph == "on" and why_not:
        raise ValueError(f"step_graph=on: {why_not}; use step_graph=auto (captures where it can) or off")
    return cfg.step_graph != "off" and why_not is None


class EpochPlan(NamedTuple):
    order: torch.Tensor  # the items in this epoch's order
    flips: torch.Tensor  # bool, per item: mirrored
    warps: torch.Tensor | None  # (n, 4) per item: the augmentation's random warp (None: no warping)


def epoch_plan(n: int, epoch: int, seed: int, device: torch.device, augment: Preset = AUGMENTATIONS["flip"]
               ) -> EpochPlan:
    """The epoch's order of the ``n`` training items, which of them are flipped and how each
    is warped (when ``augment`` warps).

    A function of (seed, epoch) only, drawn on ``device`` in one go: the same for every
    rank (each takes its rows of every global batch), and the same again on resume.
    """
    g = torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g, device=device)
    flips = torch.rand(n, generator=g, device=device) < augment.flip
    return EpochPlan(order, flips, augment.draw_warps(n, g, device) if augment.warps else None)


class TrainStep:
    """The training step of one run, over static buffers (see the module docstring).

    Args:
        model: the module that trains (DDP and/or compile around the plain model).
        optimizer: its optimiser; a float learning rate is turned into a device tensor
            when the step is captured, so that schedulers change it in place.
        images, labels: the training split (uint8 ``(N, 1, S, S)`` and int64), on the
            device batches are gathered on.
        augment: the training preprocessing (flips, optional warps, normalisation).
        batch: this process's rows of each global batch.
        capture: record the step as a CUDA graph after ``WARMUP_STEPS`` eager steps.
    """

    def __init__(self, *, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 precision: Precision, images: Tensor, labels: Tensor, augment: Preset, batch: int,
                 device: torch.device, channels_last: bool, label_smoothing: float, capture: bool,
                 class_weights: Tensor | None = None) -> None:
        self.model, self.optimizer, self.scaler, self.precision = model, optimizer, scaler, precision
        self.images, self.labels, self.augment, self.device = images, labels, augment, device
        self.channels_last, self.label_smoothing, self.capture = channels_last, label_smoothing, capture
        self.class_weights = None if class_weights is None else class_weights.to(device)
        self.idx = torch.zeros(batch, dtype=torch.int64, device=images.device)
        dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.loss_sum = torch.zeros((), dtype=dtype, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.flips: Tensor | None = None
        self.warps: Tensor | None = None
        self.graph: Any = None
        self.eager_steps = 0
        if capture:
            lr_on_device(optimizer, device)

    def new_epoch(self, flips: Tensor, warps: Tensor | None, loss_sum: Tensor | None = None,
                  correct: Tensor | None = None) -> None:
        """Take the epoch's flips and warps (copied into the same buffers when captured) and
        start the running sums (from an interrupted epoch's, when resuming)."""
        if self.capture and self.flips is not None:
            self.flips.copy_(flips)
            if warps is not None:
                self.warps.copy_(warps)
        else:
            self.flips, self.warps = flips.clone(), None if warps is None else warps.clone()
        self.loss_sum.copy_(loss_sum if loss_sum is not None else torch.zeros(()))
        self.correct.copy_(correct if correct is not None else torch.zeros((), dtype=torch.int64))

    def __call__(self, batch: Tensor) -> None:
        """One step on the items ``batch`` (indices on the data's device)."""
        self.idx.copy_(batch, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
        elif self.capture and self.eager_steps >= WARMUP_STEPS:
            self._capture()
            self.graph.replay()
        elif self.capture:  # warm-up on a side stream, as torch's whole-network capture recipe does
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.optimizer.zero_grad(set_to_none=True)
                self.compute()
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.eager_steps += 1
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.compute()
            self.eager_steps += 1

    def compute(self) -> None:
        """Gather, augment, forward, loss, backward, update, sums: all on the device, no sync."""
        idx, device = self.idx, self.device
        warps = self.warps[idx].to(device, non_blocking=True) if self.warps is not None else None
        x = self.augment(self.images[idx].to(device, non_blocking=True),
                         flip_mask=self.flips[idx].to(device, non_blocking=True), warps=warps)
        y = self.labels[idx].to(device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast(device):
            logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y, weight=self.class_weights, label_smoothing=self.label_smoothing)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.loss_sum += loss.detach().to(self.loss_sum.dtype) * len(idx)
        self.correct += (logits.detach().argmax(1) == y).sum()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the gradients it writes
        with torch.cuda.graph(graph):
            self.compute()
        self.graph = graph
        log.info("training step captured as one CUDA graph after %d eager steps", self.eager_steps)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class LossWatch:
    """An epoch's running loss, read for the progress bar and the NaN check.

    On a CUDA device (one process) a reading is copied to pinned host memory without waiting
    and looked at one interval later, when the copy has long finished: the device never
    stalls for it. Elsewhere, and under DDP (where every rank must stop at the same step: the
    loss is summed over ranks), it is read at once.

    Args:
        train_step: the run's step, whose running sums are read.
        dist: the processes (the sums are all-reduced under DDP).
        epoch: the epoch being watched (1-based), named in the error.
        last_path: the run's ``last.pt``, named in the error as the last good checkpoint.
    """

    def __init__(self, train_step: TrainStep, dist: DistInfo, epoch: int, last_path: Path) -> None:
        self.train_step, self.dist, self.epoch, self.last_path = train_step, dist, epoch, last_path
        self.deferred = train_step.device.type == "cuda" and not dist.active
        self.pending: tuple[Tensor, Any, int, int] | None = None

    def check(self, step: int, seen: int, bar: tqdm, *, final: bool = False) -> None:
        """Read the sums after ``step`` steps and ``seen`` images of this rank (``final``: the
        epoch's last reading, judged at once); raise ``TrainingDiverged`` on a non-finite loss."""
        sums = self.train_step
        if not self.deferred:
            loss = float(all_reduce_sum(sums.loss_sum.double().reshape(1), self.dist))
            self._judge(loss, float(sums.correct), seen * self.dist.world_size, step, bar)
            return
        host = torch.empty(2, dtype=torch.float64, pin_memory=True)
        host.copy_(torch.stack([sums.loss_sum.double(), sums.correct.double()]), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        previous, self.pending = self.pending, (host, event, step, seen)
        for reading in (previous, self.pending if final else None):
            if reading is not None:
                values, done, at, n = reading
                done.synchronize()  # long finished for the previous reading; a real wait only at the epoch's end
                self._judge(float(values[0]), float(values[1]), n, at, bar)

    def _judge(self, loss_sum: float, correct: float, seen: int, step: int, bar: tqdm) -> None:
        mean_loss = loss_sum / max(1, seen)
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"loss became {mean_loss} at epoch {self.epoch}, step {step}; stopped. The last good checkpoint is "
                f"{self.last_path if self.last_path.exists() else '(none yet)'}. Try a lower lr (now "
                f"{float(self.train_step.optimizer.param_groups[0]['lr'])}) or amp=false.")
        bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{correct / max(1, seen):.3f}")


__all__ = ["WARMUP_STEPS", "EpochPlan", "LossWatch", "TrainStep", "TrainingDiverged", "epoch_plan", "graph_possible",
           "lr_on_device", "use_step_graph"]

"""One training step as one launch: gather, augment, forward, loss, backward, update and the
running sums, over static buffers and with no host sync, captured as one CUDA graph where
that is possible.

At batch 16 a step is ~270 separate PyTorch operations; on a fast GPU their launch cost
exceeds the arithmetic. ``TrainStep`` writes every input a step reads into buffers that never
move (the batch's indices, the epoch's flips and warps, the learning rate as a device tensor
that the schedulers fill), so after a few eager warm-up steps the whole step can be recorded
once (``torch.cuda.CUDAGraph``) and replayed: one launch per step. The same code runs eagerly
wherever capture is off (CPU, MPS, fp16 with its gradient scaler, DDP, torch.compile, or
``step_graph: off``), and ``tests/test_step.py`` checks on the CPU that it computes exactly
what a textbook PyTorch step computes.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.transforms import Preset
from .device import Precision

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


__all__ = ["WARMUP_STEPS", "TrainStep", "graph_possible", "lr_on_device"]

"""What a training step is built from besides the model: the optimiser, its learning-rate
schedule and the loss's per-class weights (``class_balance``)."""

from __future__ import annotations

import torch
from torch import nn

from .labels import CLASS_NAMES
from .params import TrainConfig


def build_optimizer(cfg: TrainConfig, model: nn.Module, device: torch.device, *,
                    implementation: str | None = None) -> torch.optim.Optimizer:
    """SGD or AdamW; by default on CUDA and CPU the ``fused`` implementation (one kernel for all
    parameters; ``make bench`` times it against ``foreach`` on the CPU-budget recipe)."""
    implementation = implementation or ("fused" if device.type in ("cuda", "cpu") else None)
    if implementation not in (None, "fused", "foreach"):
        raise ValueError(f"optimizer implementation {implementation!r}: expected 'fused' or 'foreach'")
    kwargs = {implementation: True} if implementation else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               **kwargs)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int = 1):
    """``plateau``: x ``plateau_factor`` when validation accuracy stalls (stepped per epoch);
    ``onecycle``: Smith & Topin's one-cycle policy over the whole run, peaking at ``lr``
    (stepped per batch; torch's defaults: 30% warm-up from lr/25, cosine down to lr/25e4)."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    return None


def class_weights(labels: torch.Tensor, balance: str, num_classes: int = len(CLASS_NAMES)) -> torch.Tensor | None:
    """Per-class loss weights for ``class_balance``: ``(1 / frequency)^p`` with p = 1/2 (sqrt) or 1
    (inverse), scaled so that the average weight over the training images is 1 (the loss keeps its
    size, so the learning rate means the same); None for ``none``. A class absent from the split
    gets weight 0 (it has no frequency to invert)."""
    if balance == "none":
        return None
    counts = torch.bincount(labels.cpu().long(), minlength=num_classes).double()
    power = {"sqrt": 0.5, "inverse": 1.0}[balance]
    weights = torch.where(counts > 0, (counts.sum() / counts.clamp(min=1)) ** power, torch.zeros_like(counts))
    return (weights * counts.sum() / (weights * counts).sum()).float()


__all__ = ["build_optimizer", "build_scheduler", "class_weights"]

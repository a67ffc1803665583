"""Data-parallel training across processes (torchrun): joining, sharding, agreeing.

Every decision a training run takes (LR drop, early stop, best epoch) is taken from numbers
that are identical on every rank: all-reduced sums, after rank 0's BatchNorm statistics
were broadcast so that every rank validates the same model. Without that, each rank's own
running statistics give it its own validation accuracy, and ranks can drift apart (one cuts
its LR, another does not) or hang (one stops while the others wait in a collective).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set): NCCL on
    GPUs, gloo on CPU. A single process gets ``DistInfo()``."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        use_nccl = device_name != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return info


def shard(n: int, info: DistInfo) -> slice:
    """This rank's contiguous, unpadded part of ``n`` items (parts differ by at most one).

    Unlike ``DistributedSampler``, nothing is padded, so no item is counted twice
    (pytorch/vision#4559).
    """
    return slice(n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``values`` over ranks (identical on every rank); itself when alone."""
    if info.active:
        values = values.clone()
        dist.all_reduce(values)
    return values


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if ``flag`` is True on any (a stop request must be shared)."""
    if not info.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_buffers(model: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics)."""
    if info.active:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "broadcast_buffers",
    "init_distributed",
    "shard",
    "shutdown",
]

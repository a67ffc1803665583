"""Training: ``fit(config) -> RunResult``, resumable, on any device, under DDP too.

The loop never touches the test split: model selection uses validation only, and the
test set is evaluated once, afterwards, by ``evaluate.evaluate_run``. Batches are sliced
from the decoded uint8 tensor and augmented on the device (no per-item Python work).
Each epoch appends to ``history.csv`` and writes ``last.pt`` atomically with everything
needed to continue bit-for-bit (model, optimiser, scheduler, scaler, RNG states,
counters); rerunning the same run directory resumes from it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import paths, provenance
from .checkpoint import (
    CheckpointError,
    atomic_torch_save,
    read_checkpoint,
    save_checkpoint,
    tensor_bytes,
    unwrap,
)
from .data import FaceDataset, open_dataset
from .data.base import stratified_split
from .data.transforms import EVAL, TRAIN
from .device import check_cuda_arch, resolve_device
from .labels import CLASS_NAMES
from .model import ResEmoteNet
from .params import TrainConfig, resolve

log = logging.getLogger(__name__)
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunResult:
    run_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_val_acc: float
    selected_checkpoint: Path
    stopped_early: bool
    epochs_run: int


# --- reproducibility -------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """All RNG states as tensors and plain data, so ``weights_only`` loading works."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {"python": [version, list(internal), py_gauss],
             "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, py_gauss = state["python"]
    random.setstate((version, tuple(internal), py_gauss))
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- distributed -----------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set)."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        use_nccl = device_name != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return info


# --- data ------------------------------------------------------------------------------

def open_split(cfg: TrainConfig, split: str) -> FaceDataset:
    """One split of ``cfg``'s dataset with all of its data options."""
    return open_dataset(cfg.dataset, cfg.data_root, split, image_size=cfg.image_size, val_fraction=cfg.val_fraction,
                        test_fraction=cfg.test_fraction, seed=cfg.seed, test_per_class=cfg.test_per_class,
                        synthetic_sizes={"n_train": cfg.synthetic_n_train, "n_val": cfg.synthetic_n_val,
                                         "n_test": cfg.synthetic_n_test, "seed": cfg.seed})


def open_training_splits(cfg: TrainConfig) -> dict[str, FaceDataset]:
    """The train and val splits of ``cfg`` (never test), with the optional train subset."""
    out = {split: open_split(cfg, split) for split in ("train", "val")}
    if cfg.max_train_items is not None and cfg.max_train_items < len(out["train"]):
        out["train"] = subset(out["train"], cfg.max_train_items, cfg.seed)
    return out


def selected_checkpoint(run_dir: str | os.PathLike, cfg: TrainConfig) -> Path:
    """The weights a run is tested with: ``best.pt`` (best validation) or ``final.pt`` (last epoch)."""
    return Path(run_dir) / ("best.pt" if cfg.selection == "best_val" else "final.pt")


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The config a finished (or running) training run was started with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a finished training run "
                                "(run 01_train, or python -m resemote_lib.train, first)")
    return resolve(json.loads(path.read_text()), where=str(path))


def subset(ds: FaceDataset, n: int, seed: int) -> FaceDataset:
    """A seeded, stratified subset of ``n`` items (for smoke runs and learning curves)."""
    keep, _ = stratified_split(ds.targets, (n / len(ds),), seed)
    idx = torch.as_tensor(keep)
    report = {**ds.report, "subset": {"n": len(idx), "of": len(ds), "seed": seed}}
    return FaceDataset(ds.images[idx], ds.labels[idx], [ds.ids[i] for i in keep], name=ds.name, split=ds.split,
                       layout=ds.layout, root=ds.root, transform=ds.transform, report=report,
                       class_names=ds.class_names)


def epoch_indices(n: int, epoch: int, seed: int, dist_info: DistInfo) -> torch.Tensor:
    """This rank's shuffled indices for ``epoch``: a function of (seed, epoch) only.

    Same contract as ``DistributedSampler(shuffle=True, drop_last=False)``: one shared
    permutation, padded by wrapping to a multiple of the world size, strided by rank.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    if dist_info.world_size > 1:
        total = math.ceil(n / dist_info.world_size) * dist_info.world_size
        perm = torch.cat([perm, perm[: total - n]])[dist_info.rank::dist_info.world_size]
    return perm


# --- model, optimiser ------------------------------------------------------------------

def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    use = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if not use:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16  # CPU/MPS autocast, only when asked for explicitly


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def check_disk_space(run_dir: Path, model: nn.Module, cfg: TrainConfig) -> None:
    """Fail before the first epoch, not after it, when the run's checkpoints cannot fit on disk.

    At its peak a run holds best.pt (weights), last.pt (weights and optimizer state) and the
    temporary copy of last.pt that an atomic save writes before it replaces the old one.
    """
    weights = tensor_bytes(model.state_dict())
    slots = 2 if cfg.optimizer == "adamw" else int(cfg.momentum > 0)
    last = weights * (1 + slots)
    needed = weights + 2 * last
    needed -= sum(p.stat().st_size for p in (run_dir / "best.pt", run_dir / "last.pt") if p.is_file())
    free = shutil.disk_usage(run_dir).free
    if needed > free:
        raise OSError(errno.ENOSPC, f"{run_dir} is on a device with {free / 2**20:.0f} MiB free, but this run's "
                      f"checkpoints need about {needed / 2**20:.0f} MiB more (best.pt, last.pt with {cfg.optimizer} "
                      "state, and a temporary copy while saving). Free some space or set RESEMOTE_RESULTS to "
                      "a larger disk.")


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    return None


# --- evaluation used during training (validation only) ---------------------------------

@torch.inference_mode()
def evaluate_loss_acc(model: nn.Module, ds: FaceDataset, device: torch.device, batch_size: int,
                      amp_dtype: torch.dtype | None = None, channels_last: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split, no augmentation."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for start in range(0, len(ds), batch_size):
        x = ds.images[start:start + batch_size].to(device, non_blocking=True)
        y = ds.labels[start:start + batch_size].to(device, non_blocking=True)
        x = _prepare(x, channels_last, train=False)
        with _autocast(device, amp_dtype):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = max(1, len(ds))
    return float(loss_sum) / n, float(correct) / n


def _prepare(x: torch.Tensor, channels_last: bool, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 batch -> normalised float batch (flipped at random when training)."""
    x = (TRAIN if train else EVAL)(x, generator=generator)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --- the loop --------------------------------------------------------------------------

def run_dir_for(cfg: TrainConfig) -> Path:
    return Path(cfg.results_dir or paths.RESULTS) / cfg.run_name


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    # Keys that may change between a run and its resumption without changing the result.
    return {k: v for k, v in config.items() if k not in ("results_dir", "eval_batch_size", "tta_flip")}


def fit(cfg: TrainConfig, *, datasets: dict[str, FaceDataset] | None = None, progress: bool = True) -> RunResult:
    """Train ``cfg`` into ``results/<run_name>/``; resume if ``last.pt`` is there.

    Args:
        cfg: the experiment.
        datasets: ``{"train": ..., "val": ...}`` already opened (else opened from cfg).
            A ``"test"`` entry is ignored: training never looks at test data.
        progress: show tqdm bars.
    """
    dist_info = init_distributed(cfg.device)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and dist_info.world_size > 1:
        device = torch.device("cuda", dist_info.local_rank)
    run_dir = run_dir_for(cfg)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    seed_everything(cfg.seed)
    splits = {k: v for k, v in (datasets or open_training_splits(cfg)).items() if k in ("train", "val")}
    train_ds, val_ds = splits["train"], splits["val"]
    if len(train_ds) < 2:
        raise ValueError(f"training split of {cfg.dataset} has {len(train_ds)} item(s); need at least 2")

    model = ResEmoteNet(num_classes=len(CLASS_NAMES)).to(device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    if dist_info.is_main:
        check_disk_space(run_dir, model, cfg)
    amp_dtype = _amp_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    state: dict[str, Any] = {"epoch": 0, "history": [], "best_val_acc": -1.0, "best_epoch": 0,
                             "epochs_without_gain": 0, "stopped_early": False}
    if last_path.is_file():
        try:
            ckpt = read_checkpoint(last_path)
        except CheckpointError as e:
            raise CheckpointError(f"cannot resume: {e}. Delete {last_path} to restart this run from epoch 1, "
                                  "or use another run_name.") from None
        if _comparable(ckpt["config"]) != _comparable(cfg.to_dict()):
            diff = {k: (ckpt["config"].get(k), v) for k, v in _comparable(cfg.to_dict()).items()
                    if ckpt["config"].get(k) != v}
            raise ValueError(f"{last_path} was written by a different config {diff} (saved, now); "
                             "use another run_name or delete the run directory")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state = ckpt["state"]
        _set_rng_state(ckpt["rng"])
        log.info("resuming %s from epoch %d", run_dir, state["epoch"])

    train_model: nn.Module = model
    if dist_info.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)

    per_rank_batch = max(1, cfg.batch_size // dist_info.world_size)
    # The uint8 split lives on the accelerator when it fits (FER2013 at 64x64: 118 MB): batches
    # are then gathered there, with no host-to-device copy per step.
    on_device = device.type != "cpu" and train_ds.images.numel() < 2 * 1024**3
    train_images = train_ds.images.to(device) if on_device else train_ds.images
    train_labels = train_ds.labels.to(device) if on_device else train_ds.labels
    while state["epoch"] < cfg.epochs and not state["stopped_early"]:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        train_model.train()
        idx = epoch_indices(len(train_ds), epoch, cfg.seed, dist_info)
        flip_gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 31 + dist_info.rank)
        batches = [idx[i:i + per_rank_batch] for i in range(0, len(idx), per_rank_batch)]
        if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm cannot train on one item
            batches = batches[:-1]
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not (progress and dist_info.is_main))
        for step, b in enumerate(bar, start=1):
            # uint8 to the device (4x less traffic than float), then flip/normalise there.
            if on_device:
                b = b.to(device, non_blocking=True)
            x = train_images[b].to(device, non_blocking=True)
            y = train_labels[b].to(device, non_blocking=True)
            x = _prepare(x, channels_last, train=True, generator=flip_gen)
            with _autocast(device, amp_dtype):
                logits = train_model(x)
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach().double() * len(b)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(b)
            if step % 10 == 0 or step == len(batches):
                mean_loss = float(loss_sum) / seen  # one host sync every 10 steps
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(
                        f"loss became {mean_loss} at epoch {epoch}, step {step}; stopped. The last good "
                        f"checkpoint is {last_path if last_path.exists() else '(none yet)'}. Try a lower lr "
                        f"(now {optimizer.param_groups[0]['lr']}) or amp=False.")
                bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{float(correct) / seen:.3f}",
                                img_s=f"{seen * dist_info.world_size / (time.perf_counter() - t0):.0f}")
        if dist_info.world_size > 1:
            stats = torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), device=device,
                                                                          dtype=torch.float64)])
            dist.all_reduce(stats)
            loss_sum, correct, seen = stats[0], stats[1], int(stats[2])
        train_loss, train_acc = float(loss_sum) / seen, float(correct) / seen
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"loss became {train_loss} at epoch {epoch}; stopped. Last good checkpoint: "
                                   f"{last_path if last_path.exists() else '(none yet)'}")
        val_loss, val_acc = evaluate_loss_acc(model, val_ds, device, cfg.eval_batch_size, amp_dtype, channels_last)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step(val_acc)
        state["history"].append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                                 "val_loss": val_loss, "val_acc": val_acc,
                                 "seconds": round(time.perf_counter() - t0, 3)})
        improved = val_acc > state["best_val_acc"]
        if improved:
            state.update(best_val_acc=val_acc, best_epoch=epoch, epochs_without_gain=0)
        else:
            state["epochs_without_gain"] += 1
        if cfg.early_stopping_patience is not None and state["epochs_without_gain"] >= cfg.early_stopping_patience:
            state["stopped_early"] = True
            log.info("early stopping at epoch %d (best val acc %.4f at epoch %d)", epoch, state["best_val_acc"],
                     state["best_epoch"])
        state["epoch"] = epoch
        if dist_info.is_main:
            meta = {"config": cfg.to_dict(), "epoch": epoch, "val_acc": val_acc}
            if improved:
                save_checkpoint(best_path, model, image_size=cfg.image_size, **meta)
            atomic_torch_save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict() if scheduler is not None else None,
                               "scaler": scaler.state_dict(), "rng": _rng_state(), "state": state,
                               "config": cfg.to_dict()}, last_path)
            # history.csv is rewritten from the checkpoint's history: the two always agree.
            _write_history(run_dir / "history.csv", state["history"])
        log.info("epoch %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f | lr %.2g",
                 epoch, train_loss, train_acc, val_loss, val_acc, lr)
        if dist_info.world_size > 1:
            dist.barrier()

    selected = selected_checkpoint(run_dir, cfg)
    if dist_info.is_main:
        if cfg.selection == "last":
            save_checkpoint(selected, model, image_size=cfg.image_size, config=cfg.to_dict(), epoch=state["epoch"])
        record = provenance.collect(config=cfg.to_dict(), device=device, datasets=splits,
                                    world_size=dist_info.world_size, protocol=cfg.protocol)
        provenance.write(run_dir / "provenance.json", record)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    return RunResult(run_dir=run_dir, history=pd.DataFrame(state["history"], columns=HISTORY_COLUMNS),
                     best_epoch=state["best_epoch"], best_val_acc=state["best_val_acc"],
                     selected_checkpoint=selected, stopped_early=state["stopped_early"],
                     epochs_run=state["epoch"])


def _write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    pd.DataFrame(rows, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m resemote_lib.train params/x.yaml [key=value ...]`` (torchrun-friendly)."""
    import argparse

    import yaml

    from .params import load_params
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("params", help="params/*.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value (YAML values), e.g. epochs=3")
    args = parser.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.overrides)}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    fit(load_params(args.params, **overrides))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "HISTORY_COLUMNS",
    "RunResult",
    "TrainingDiverged",
    "check_cuda_arch",
    "fit",
    "load_run_config",
    "open_split",
    "open_training_splits",
    "resolve_device",
    "seed_everything",
    "selected_checkpoint",
    "subset",
]

"""Saving and loading checkpoints: ours and the reference implementation's.

Loading never runs code (``torch.load(weights_only=True)``), does all key surgery in
``checkpoint_filter_fn`` (timm's pattern) and then loads with ``strict=True``; the number
of classes and input channels are read off the tensors' shapes (CLIP's ``build_model``).
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .labels import CLASS_NAMES, REFERENCE_CLASS_NAMES
from .model import ResEmoteNet

log = logging.getLogger(__name__)

FORMAT = "resemote-checkpoint"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CheckpointSpec:
    """What a family of checkpoints expects and means (torchvision's ``Weights.meta``)."""

    source: str
    class_names: tuple[str, ...]
    image_size: int = 64
    grayscale: bool = True  # grayscale replicated to 3 channels
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    sha256: str | None = None  # of a published file, where one is known


# The reference repository's checkpoints: bare state_dict or {"model_state_dict": ...},
# outputs in its own folder order. No released file's SHA-256 is known to us.
REFERENCE = CheckpointSpec(
    source="github.com/ArnabKumarRoy02/ResEmoteNet @ fabbe68 (approach/ResEmoteNet.py)",
    class_names=REFERENCE_CLASS_NAMES,
)
RESEMOTE = CheckpointSpec(source="resemote save_checkpoint", class_names=CLASS_NAMES)


class CheckpointError(ValueError):
    """A file that is not a usable ResEmoteNet checkpoint."""


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a saved file gets the usual mode
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else f"{path.name} was not written"
        if _interrupted(exc):  # Ctrl-C inside torch's writer surfaces as its "unexpected pos" error
            raise KeyboardInterrupt(f"interrupted while saving {path}; {kept}") from exc
        needed, free = tensor_bytes(obj), shutil.disk_usage(path.parent).free
        if _is_disk_full(exc, needed, free):
            raise OSError(errno.ENOSPC, f"no space left on the device holding {path.parent} while saving "
                          f"{path.name}: it needs about {needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free; "
                          f"{kept}. Free some space (or point RESEMOTE_RESULTS elsewhere) and rerun: "
                          "training resumes from last.pt.") from exc
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _causes(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        out.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return out


def _interrupted(exc: BaseException) -> bool:
    return any(isinstance(e, KeyboardInterrupt) for e in _causes(exc))


def _is_disk_full(exc: BaseException, needed: int, free: int) -> bool:
    """ENOSPC/EDQUOT, or torch's zip-writer error ("unexpected pos ... vs ...") when the
    free space really is short: that error also follows other write failures."""
    causes = _causes(exc)
    if any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in causes):
        return True
    return free < needed and any(isinstance(e, RuntimeError) and "unexpected pos" in str(e) for e in causes)


def tensor_bytes(obj: Any) -> int:
    """Bytes of tensor data in a (nested) checkpoint payload: about its size on disk."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
    image_size: int = 64,
    **meta: Any,
) -> Path:
    """Write one self-describing checkpoint file, atomically.

    Args:
        path: destination file.
        model: a ``ResEmoteNet``, possibly wrapped by DDP or ``torch.compile``.
        class_names: what each output means; defaults to the model's ``class_names``
            attribute, else the canonical order.
        image_size: the input size the model was trained at.
        **meta: provenance (config, git commit, metrics...); must be plain Python data.
    """
    model = unwrap(model)
    if class_names is None:
        class_names = getattr(model, "class_names", CLASS_NAMES)
    num_classes = model.fc4.out_features
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} outputs")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(class_names),
        "image_size": int(image_size),
        "in_channels": model.conv1.in_channels,
        "meta": meta,
    }
    return atomic_torch_save(payload, path)


def set_checkpoint_meta(path: str | os.PathLike, **meta: Any) -> Path:
    """Add or update ``meta`` entries of one of our checkpoints, atomically."""
    payload = read_checkpoint(path)
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a resemote checkpoint; its metadata cannot be updated")
    payload["meta"] = {**payload.get("meta", {}), **meta}
    return atomic_torch_save(payload, path)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


def checkpoint_filter_fn(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    """Turn any supported checkpoint payload into a plain ResEmoteNet state_dict.

    Unwraps ``state_dict`` / ``model_state_dict`` / ``model`` containers and strips the
    ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes.
    """
    sd: Any = state_dict
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError("no state_dict found (expected a mapping of parameter names to tensors)")
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"entry {key!r} is a {type(value).__name__}, not a tensor")
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file's payload without executing any code in it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any global it does not know: never execute it.
        raise CheckpointError(
            f"{path} was refused: it holds objects other than tensors and plain data "
            f"(loading it could run code). Detail: {str(e).splitlines()[0]}"
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError... on junk
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another format?): "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    return dict(payload)


def load_model(
    path: str | os.PathLike,
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
    device: str | torch.device = "cpu",
) -> ResEmoteNet:
    """Load a checkpoint into an eval-mode ``ResEmoteNet`` with ``class_names`` set.

    Accepts our own format, a reference bare state_dict and a reference
    ``{"model_state_dict": ...}`` (also with DDP / compile prefixes). A reference
    checkpoint keeps the reference's output order, and ``class_names`` says so.

    Args:
        path: the checkpoint file.
        class_names: override what the outputs mean (e.g. for a 6-class reference model).
        device: where to put the model.
    """
    payload = read_checkpoint(path)
    ours = payload.get("format") == FORMAT
    state_dict = checkpoint_filter_fn(payload)
    for key in ("fc4.weight", "conv1.weight"):
        if key not in state_dict:
            raise CheckpointError(f"{path}: no {key!r}; this is not a ResEmoteNet state_dict "
                                  f"(first keys: {list(state_dict)[:5]})")
    num_classes = state_dict["fc4.weight"].shape[0]
    in_channels = state_dict["conv1.weight"].shape[1]
    model = ResEmoteNet(num_classes=num_classes, in_channels=in_channels)
    _load_strict(model, state_dict, path)
    if class_names is None:
        if ours:
            class_names = payload["class_names"]
        elif num_classes == len(REFERENCE.class_names):
            class_names = REFERENCE.class_names
        else:
            class_names = tuple(f"class_{i}" for i in range(num_classes))
            warnings.warn(f"{path}: {num_classes}-class reference checkpoint with no known label "
                          "order; pass class_names=... to name its outputs", stacklevel=2)
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} outputs")
    model.class_names = tuple(class_names)
    model.image_size = int(payload.get("image_size", REFERENCE.image_size))
    model.checkpoint_meta = payload.get("meta", {}) if ours else {"source": REFERENCE.source}
    from .device import resolve_device

    return model.to(resolve_device(str(device))).eval()


def _load_strict(model: nn.Module, state_dict: dict[str, Tensor], path: Path | str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
                   for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{path} does not match ResEmoteNet: missing keys {missing or 'none'}; "
            f"unexpected keys {unexpected or 'none'}; shape mismatches {wrong_shape or 'none'}"
        )
    model.load_state_dict(state_dict, strict=True)


__all__ = [
    "REFERENCE", "RESEMOTE", "CheckpointError", "CheckpointSpec", "atomic_torch_save",
    "checkpoint_filter_fn", "load_model", "read_checkpoint", "save_checkpoint", "set_checkpoint_meta", "tensor_bytes",
    "unwrap",
]

"""Saving and loading checkpoints: ours, our training states and the reference's.

Loading never runs code (``torch.load(weights_only=True)``), does all key surgery in
``checkpoint_filter_fn`` (timm's pattern) and then loads with ``strict=True``; the number
of classes and input channels are read off the tensors' shapes (CLIP's ``build_model``).

``classify`` is the one place that says what a checkpoint file is, and so what its
outputs mean and what input size it expects:

- ``resemote``: ``save_checkpoint``'s format (``best.pt``, ``final.pt``): class names,
  image size and provenance are in the file;
- ``training-state``: a run's ``last.pt`` (weights, optimizer, counters, config): its
  ``model`` weights, canonical class order, the config's image size;
- ``reference``: the reference repository's bare state_dict or
  ``{"model_state_dict": ...}``: the reference's class order, 64x64.

Anything else is a ``CheckpointError`` that says what the file is instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .calibration import check_temperature, read_temperature
from .data.transforms import EVAL, Preset
from .files import atomic_torch_save, tensor_bytes
from .labels import CLASS_NAMES, REFERENCE_CLASS_NAMES
from .model import VARIANTS, ResEmoteNet, build_model
from .params import RANGES

if TYPE_CHECKING:
    from .weights import KnownCheckpoint

log = logging.getLogger(__name__)

FORMAT = "resemote-checkpoint"
FORMAT_VERSION = 1
# The reference repository's checkpoints: bare state_dict or {"model_state_dict": ...}, outputs
# in its own folder order (labels.REFERENCE_CLASS_NAMES), 64x64 input. What each released file
# is, expects and means is its record in weights.KNOWN, the one checkpoint record.
REFERENCE_SOURCE = "github.com/ArnabKumarRoy02/ResEmoteNet @ fabbe68 (approach/ResEmoteNet.py)"
REFERENCE_IMAGE_SIZE = 64


class CheckpointError(ValueError):
    """A file that is not a usable ResEmoteNet checkpoint."""


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
    image_size: int = 64,
    **meta: Any,
) -> Path:
    """Write one self-describing checkpoint file (``checkpoint_payload``), atomically."""
    return atomic_torch_save(checkpoint_payload(model, class_names=class_names, image_size=image_size, **meta), path)


def checkpoint_payload(
    model: nn.Module,
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
    image_size: int = 64,
    **meta: Any,
) -> dict[str, Any]:
    """What ``save_checkpoint`` writes: weights, class names, input size, provenance.

    Args:
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
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(class_names),
        "image_size": int(image_size),
        "in_channels": model.conv1.in_channels,
        "meta": meta,
    }


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


def checkpoint_filter_fn(state_dict: Mapping[str, Any], path: str | os.PathLike = "checkpoint") -> dict[str, Tensor]:
    """Turn any supported checkpoint payload into a plain ResEmoteNet state_dict.

    Unwraps ``state_dict`` / ``model_state_dict`` / ``model`` containers and strips the
    ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes.
    """
    sd: Any = state_dict
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{path}: no state_dict found (expected a mapping of parameter names to tensors)")
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


ZIP_MAGIC = b"PK\x03\x04"  # torch.save since PyTorch 1.6 (and TorchScript) write a zip archive
_PICKLE_PROTOCOLS = range(2, 6)  # older torch.save and pickle.dump: b"\x80" + protocol byte


def file_kind(path: str | os.PathLike) -> str:
    """What a file is, from its first bytes and (for a zip) its member names.

    Returns ``"checkpoint"`` (a ``torch.save`` zip archive), ``"torchscript"`` (a
    ``torch.jit.save`` archive), ``"pickle"`` (a legacy ``torch.save`` or a plain pickle),
    ``"empty"`` or ``"other"``. Reads no tensor data.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return "checkpoint"  # a truncated torch.save: torch.load says what is wrong with it
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "checkpoint"
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return "pickle"
    return "other"


def read_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint file's payload without executing any code in it.

    Args:
        path: the file.
        mmap: map the tensors' bytes instead of reading them (zip checkpoints only): a
            ``last.pt`` is mostly optimizer state that loading a model never touches.
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is a folder; pass the .pt file inside it (best.pt, last.pt)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    kind = file_kind(path)
    if kind == "empty":
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted copy or download? Copy it again")
    if kind == "torchscript":
        raise CheckpointError(f"{path} is a TorchScript export, not a checkpoint: run it with "
                              "resemote_lib.predict.export.run_exported (or torch.jit.load); predict and export "
                              "need the checkpoint it was exported from")
    if kind == "other":
        with open(path, "rb") as f:
            head = f.read(8)
        hint = " (an ONNX export? predict and export need the .pt checkpoint)" if path.suffix == ".onnx" else ""
        raise CheckpointError(f"{path} is not a PyTorch checkpoint at all{hint}: it starts with bytes {head!r}, "
                              "neither a zip archive (PK\\x03\\x04, torch.save) nor a pickle (\\x80 + protocol). "
                              "Is it the right file?")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and kind == "checkpoint")
    except pickle.UnpicklingError as e:
        # weights_only refuses any global it does not know: never execute it.
        raise CheckpointError(
            f"{path} was refused: it is a PyTorch/pickle file holding objects other than tensors and plain data, "
            f"and loading it could run code. Detail: {str(e).splitlines()[0]}"
        ) from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError... on junk
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or another format?): "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    return dict(payload)


@dataclass(frozen=True)
class Classified:
    """What ``classify`` found: the weights and what they mean."""

    kind: str  # "resemote", "training-state" or "reference"
    state_dict: dict[str, Tensor]
    class_names: tuple[str, ...] | None  # None: a reference model with an unknown number of classes
    image_size: int
    meta: dict[str, Any]


TRAINING_STATE_KEYS = frozenset({"model", "optimizer", "state", "config"})  # train.save_last


def classify(payload: Mapping[str, Any], path: str | os.PathLike = "checkpoint") -> Classified:
    """Say what a checkpoint payload is (see the module docstring) and extract its weights.

    Raises ``CheckpointError`` for a payload that is none of ours, a training state or the
    reference's, naming its top-level keys.
    """
    if payload.get("format") == FORMAT:
        version = payload.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{path} has format_version {version!r}; this resemote reads up to "
                                  f"{FORMAT_VERSION}: update resemote")
        if "class_names" not in payload:
            raise CheckpointError(f"{path} has no class_names: a resemote checkpoint says what each output means; "
                                  "this one was cut down or written by other code. Use the run's best.pt or final.pt")
        meta = payload.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise CheckpointError(f"{path}: meta is a {type(meta).__name__}, not a mapping")
        return Classified("resemote", checkpoint_filter_fn(payload["state_dict"], path),
                          check_class_names(payload["class_names"], path),
                          check_image_size(payload.get("image_size", REFERENCE_IMAGE_SIZE), path), dict(meta))
    if set(payload) >= TRAINING_STATE_KEYS:
        config, state = payload["config"], payload["state"]
        if not isinstance(config, Mapping) or "image_size" not in config or not isinstance(state, Mapping):
            raise CheckpointError(f"{path} looks like a training state (keys {sorted(TRAINING_STATE_KEYS)}) but its "
                                  "config has no image_size: it was not written by resemote's training")
        meta = {"source": f"training state {Path(path).name} (weights after epoch {state.get('epoch', '?')}"
                          + (f", step {state['step']} of the next" if state.get("step") else "") + ")",
                "training_state": True, "epoch": state.get("epoch"), "step": state.get("step", 0),
                "config": dict(config)}
        return Classified("training-state", checkpoint_filter_fn(payload["model"], path), CLASS_NAMES,
                          check_image_size(config["image_size"], path), meta)
    wrapped = [k for k in ("state_dict", "model_state_dict", "model") if isinstance(payload.get(k), Mapping)]
    values = list(payload.values())
    if wrapped or (values and all(isinstance(v, Tensor) for v in values)):
        state_dict = checkpoint_filter_fn(payload, path)
        n = state_dict["fc4.weight"].shape[0] if "fc4.weight" in state_dict else None
        names = REFERENCE_CLASS_NAMES if n == len(REFERENCE_CLASS_NAMES) else None
        return Classified("reference", state_dict, names, REFERENCE_IMAGE_SIZE, {"source": REFERENCE_SOURCE})
    raise CheckpointError(
        f"{path} is a PyTorch file but not a ResEmoteNet checkpoint: top-level keys {sorted(map(str, payload))[:10]}. "
        f"Expected one of: ours (format {FORMAT!r}: best.pt, final.pt), a training state "
        f"({sorted(TRAINING_STATE_KEYS)}: last.pt), or the reference's state_dict / {{'model_state_dict': ...}}"
    )


def check_finite(state_dict: Mapping[str, Tensor], path: str | os.PathLike = "checkpoint") -> None:
    """Raise ``CheckpointError`` naming the first tensor holding NaN or infinity."""
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{path}: tensor {key!r} holds {bad} NaN/inf value(s) of {value.numel()}: these "
                                  "weights are broken (a run that diverged?); use an earlier checkpoint")


def check_image_size(value: Any, path: str | os.PathLike = "checkpoint") -> int:
    """A checkpoint's input size, in the range training accepts (``params.RANGES``), checked
    before anything is allocated for it."""
    lo, hi = RANGES["image_size"]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise CheckpointError(f"{path}: image_size {shown} is not a whole number in [{lo}, {hi}] (the sizes training "
                              "accepts); the file is damaged or was not written by resemote")
    return value


def check_class_names(names: Any, path: str | os.PathLike = "checkpoint") -> tuple[str, ...]:
    """What a checkpoint's outputs mean: distinct strings, or ``CheckpointError`` naming the file."""
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: class_names must be a list of strings, got {type(names).__name__}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CheckpointError(f"{path}: class_names {list(names)} name {', '.join(map(repr, repeated))} more than once; "
                              "two outputs cannot mean the same class: the file is damaged or was edited")
    return tuple(names)


def load_model(
    path: str | os.PathLike,
    *,
    class_names: tuple[str, ...] | list[str] | None = None,
    device: str | torch.device = "cpu",
) -> ResEmoteNet:
    """Load a checkpoint into an eval-mode ``ResEmoteNet`` with ``class_names`` set.

    Accepts our own format, a run's ``last.pt`` (its weights, with the run's image size),
    a reference bare state_dict and a reference ``{"model_state_dict": ...}`` (also with
    DDP / compile prefixes): ``classify`` tells them apart. A reference checkpoint keeps
    the reference's output order, and ``class_names`` says so. Weights holding NaN or
    infinity, repeated class names, an image size outside training's range, an unknown
    model variant and a stored temperature that is not a finite number > 0 are refused.

    The model gets ``class_names``, ``image_size``, ``preprocess`` (the ``Preset`` its inputs
    expect: a released checkpoint's record says, ``weights.KNOWN``, with its input size and
    class names; else ``EVAL``, ImageNet's mean/std on gray replicated to as many channels as
    the first convolution takes, 3 for all resemote trains), ``temperature`` (the
    calibration file's beside the checkpoint, else an older checkpoint's stored one, else 1),
    ``checkpoint_kind`` (``classify``'s kind) and ``checkpoint_meta`` (the file's
    provenance; for a training state, its epoch and config and ``training_state: True``).

    Args:
        path: the checkpoint file.
        class_names: override what the outputs mean (e.g. for a 6-class reference model).
        device: where to put the model.
    """
    found = classify(read_checkpoint(path, mmap=True), path)
    state_dict = found.state_dict
    for key in ("fc4.weight", "conv1.weight"):
        if key not in state_dict:
            raise CheckpointError(f"{path}: no {key!r}; this is not a ResEmoteNet state_dict "
                                  f"(first keys: {list(state_dict)[:5]})")
    check_finite(state_dict, path)
    temperature = _temperature(path, found.meta)
    num_classes = state_dict["fc4.weight"].shape[0]
    in_channels = state_dict["conv1.weight"].shape[1]
    model = build_model(_variant(path, found.meta), num_classes=num_classes, in_channels=in_channels,
                        image_size=found.image_size)
    _load_strict(model, state_dict, path)
    record = _record(path, found.kind)
    if class_names is None:
        class_names = record.class_names if record else found.class_names
        if class_names is None:
            class_names = tuple(f"class_{i}" for i in range(num_classes))
            warnings.warn(f"{path}: {num_classes}-class reference checkpoint with no known label "
                          "order; pass class_names=... to name its outputs", stacklevel=2)
    class_names = check_class_names(class_names, path)
    if len(class_names) != num_classes:
        raise ValueError(f"{path}: {len(class_names)} class names for {num_classes} outputs")
    model.class_names = class_names
    model.image_size = check_image_size(record.image_size, path) if record else found.image_size
    model.preprocess = _preprocess(record, in_channels, path)
    model.temperature = temperature
    model.checkpoint_kind = found.kind
    model.checkpoint_meta = found.meta
    if found.kind == "training-state":
        log.info("%s: %s", path, found.meta["source"])
    from .device import resolve_device

    return model.to(resolve_device(str(device))).eval()


def _record(path: str | os.PathLike, kind: str) -> KnownCheckpoint | None:
    """The released checkpoint this file is, by its hash (only reference files can be one;
    imported here: training never loads one, so the records are not part of its code)."""
    if kind != "reference":
        return None
    from .weights import identify

    return identify(path)[0]


def _preprocess(record: KnownCheckpoint | None, in_channels: int, path: str | os.PathLike) -> Preset:
    """The record's preprocessing, else resemote's ``EVAL`` with as many channels as the first
    convolution takes; a record that disagrees with the file's first convolution is refused."""
    if record is None:
        return dataclasses.replace(EVAL, channels=in_channels) if in_channels != EVAL.channels else EVAL
    if record.channels != in_channels:
        raise CheckpointError(f"{path}: its record {record.name!r} says {record.channels} input channel(s), but the "
                              f"file's conv1 takes {in_channels}: the file is not the checkpoint the record describes")
    return record.transform


def _temperature(path: str | os.PathLike, meta: Mapping[str, Any]) -> float:
    """The softmax temperature fitted for this checkpoint: its calibration file's
    (``calibration.read_temperature``), else the one older evaluations stored inside the
    file, else 1."""
    fitted = read_temperature(path)
    if fitted is not None:
        return fitted
    if "temperature" not in meta:
        return 1.0
    try:
        return check_temperature(meta["temperature"], f"{path}: the stored calibration")
    except ValueError as e:
        raise CheckpointError(f"{e}. Re-run the evaluation that fitted it, or reset it: "
                              f"set_checkpoint_meta({str(path)!r}, temperature=1.0)") from None


def _variant(path: str | os.PathLike, meta: Mapping[str, Any]) -> str:
    """The model variant a run of an ablation (params key ``model``) names in its config."""
    config = meta.get("config") or {}
    variant = config.get("model", "resemotenet") if isinstance(config, Mapping) else "resemotenet"
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise CheckpointError(f"{path}: its config names model {variant!r}, which this resemote does not know "
                              f"(known: {', '.join(sorted(VARIANTS))}); was it trained by a newer resemote?")
    return variant


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
    "REFERENCE_IMAGE_SIZE", "REFERENCE_SOURCE", "CheckpointError", "Classified", "atomic_torch_save",
    "check_class_names", "check_finite", "check_image_size", "check_temperature", "checkpoint_filter_fn", "checkpoint_payload", "classify",
    "file_kind", "load_model", "read_checkpoint",
    "save_checkpoint", "set_checkpoint_meta", "tensor_bytes", "unwrap",
]

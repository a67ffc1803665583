"""Which device to run on, whether this torch build can run on it, and at what precision."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


class DeviceError(RuntimeError):
    """The device asked for is absent, or this torch build cannot run on it (exit code 2)."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. Explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but torch.cuda.is_available() is False "
                               f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
        check_cuda_arch(device)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' requested but this torch build or machine has no MPS support")
    return device


def check_cuda_arch(device: torch.device) -> None:
    """Fail early, and clearly, if this torch build has no kernels for the GPU.

    CUDA 13 builds of torch (PyPI's default for 2.9+) ship sm_75 (Turing) and newer only,
    so Kaggle's Tesla P100 (sm_60) would otherwise die with "no kernel image is available"
    inside the first convolution.
    """
    major, minor = torch.cuda.get_device_capability(device)
    arch_list = torch.cuda.get_arch_list()
    capability = major * 10 + minor
    ok = False
    for arch in arch_list:
        kind, _, num = arch.partition("_")
        if not num.isdigit():
            continue
        n = int(num)
        # sm_XY cubins run on the same major with minor >= Y; compute_XY PTX JITs forward.
        if (kind == "sm" and n // 10 == major and n <= capability) or (kind == "compute" and n <= capability):
            ok = True
    if not ok:
        name = torch.cuda.get_device_name(device)
        raise DeviceError(
            f"GPU {name} has compute capability {major}.{minor} (sm_{major}{minor}), but this torch "
            f"{torch.__version__} (CUDA {torch.version.cuda}) has kernels only for {arch_list}. "
            "Fix: install a torch build that supports it, e.g. "
            "pip install torch torchvision --index-url https://download.pytorch.org/whl/cu126 "
            "(CUDA 12.6 builds still include sm_60/sm_70); on Kaggle keep the preinstalled torch and "
            "install this project with: pip install --no-deps -e . (see README, 'Kaggle'). "
            "Or run on CPU with device='cpu'."
        )


@dataclass(frozen=True)
class Precision:
    """The arithmetic a run uses, recorded as ``name``: fp32, tf32, bf16 or fp16.

    ``bf16``/``fp16`` run the forward pass under autocast; ``fp16`` also needs a gradient
    scaler (its range is too small for raw gradients); ``tf32`` is fp32 storage with
    TF32 tensor-core matmuls and convolutions (Ampere and newer).
    """

    name: str
    dtype: torch.dtype | None = None  # autocast dtype; None: no autocast

    @property
    def scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def apply(self) -> None:
        """Set torch's global TF32 switches to match (they persist in the process)."""
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = self.name == "tf32"
            torch.backends.cudnn.allow_tf32 = self.name == "tf32"


FP32 = Precision("fp32")
# Compute capability from which bf16 is native and TF32 exists (Ampere, sm_80). Below it
# (P100 6.0, V100 7.0, T4 7.5) cuDNN has no bf16 convolutions: autocast to bf16 there runs
# emulated or falls back, so mixed precision means fp16 with a gradient scaler.
NATIVE_BF16_CAPABILITY = (8, 0)


def choose_precision(device: torch.device, amp: bool | None) -> Precision:
    """The precision for ``device`` given the config's ``amp`` (None: on for CUDA only).

    Decided from the GPU's compute capability, not ``torch.cuda.is_bf16_supported()``,
    which counts emulation as support (True on a P100 or T4) in some torch versions and
    lacks the switch to say otherwise in others.
    """
    use_amp = device.type == "cuda" if amp is None else amp
    if device.type == "cuda":
        modern = torch.cuda.get_device_capability(device) >= NATIVE_BF16_CAPABILITY
        if use_amp:
            return Precision("bf16", torch.bfloat16) if modern else Precision("fp16", torch.float16)
        return Precision("tf32") if modern else FP32
    if use_amp and device.type == "cpu":
        return Precision("bf16", torch.bfloat16)  # CPU autocast only when asked for explicitly
    return FP32  # MPS: fp32 (its autocast support varies by macOS and torch version)


__all__ = ["FP32", "NATIVE_BF16_CAPABILITY", "DeviceError", "Precision", "check_cuda_arch", "choose_precision", "resolve_device"]

"""Which device to run on, whether this torch build can run on it, and at what precision."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch


class DeviceError(RuntimeError):
    """The device asked for is absent, or this torch build cannot run on it (exit code 2)."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. Explicit names are checked: a name torch does
    not know (``banana``, ``cuda:x``), a device type this project does not run on (``meta``),
    an absent GPU and a CUDA index past the GPUs are each a ``DeviceError`` saying so."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):  # torch: "Expected one of cpu, cuda, ipu, xpu, ... device type at start of..."
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {name!r} is not a device resemote runs on; use one of: auto, cpu, cuda, cuda:N, mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but torch.cuda.is_available() is False "
                               f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {name!r}: this machine has {count} CUDA device(s): "
                              f"{', '.join(f'cuda:{i}' for i in range(count))}")
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
            "install this project with: pip install --no-deps -e . (see docs/reproducing.md, 'On Kaggle'). "
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
    why: str = field(default="", compare=False)  # the reason, in words, for the log and provenance

    def describe(self) -> str:
        """``"bf16 (this CPU has AVX512_BF16)"``: what training prints before its first step."""
        return f"{self.name} ({self.why})" if self.why else self.name

    @property
    def scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The forward pass's context: torch's autocast to ``dtype``, or nothing in full precision."""
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


CPUINFO = Path("/proc/cpuinfo")  # the operating system's CPU flags (Linux)


def cpu_bf16_instructions() -> str | None:
    """This CPU's native bf16 dot-product instructions, ``"AMX_BF16"`` or ``"AVX512_BF16"``, or None.

    A CPU counts when both torch (its cpuinfo library, which its kernels dispatch on) and the
    operating system's flags say so; where the OS has no ``/proc/cpuinfo`` (macOS, Windows),
    torch's word alone. Without such instructions (AVX2-only x86, most ARM builds) bf16 arithmetic
    is emulated and slower than fp32.
    """
    says = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if says is None or not says():
        return None
    try:
        flags = {f for line in CPUINFO.read_text().splitlines() if line.startswith("flags")
                 for f in line.split(":", 1)[1].split()}
    except OSError:
        return "AVX512_BF16"
    if "amx_bf16" in flags:
        return "AMX_BF16"
    return "AVX512_BF16" if "avx512_bf16" in flags else None


def choose_precision(device: torch.device, amp: bool | None) -> Precision:
    """The precision for ``device`` given the config's ``amp`` (None: automatic).

    Automatic: on CUDA, mixed precision, bf16 or fp16 by compute capability, decided from the
    capability, not ``torch.cuda.is_bf16_supported()``, which counts emulation as support (True
    on a P100 or T4) in some torch versions and lacks the switch to say otherwise in others. On
    a CPU, bf16 autocast where it has native bf16 dot products (``cpu_bf16_instructions``: 1.8x
    faster training measured on an AVX512_BF16 EPYC), fp32 elsewhere. ``amp=False``: fp32 (TF32
    on GPUs that have it); ``amp=True``: mixed precision even where it is emulated.
    """
    if device.type == "cuda":
        modern = torch.cuda.get_device_capability(device) >= NATIVE_BF16_CAPABILITY
        if amp is False:
            return Precision("tf32", why="amp=false; TF32 tensor cores") if modern else Precision("fp32", why="amp=false")
        if modern:
            return Precision("bf16", torch.bfloat16, why="this GPU has native bf16 (compute capability 8.0+)")
        return Precision("fp16", torch.float16, why="this GPU predates native bf16: fp16 with a gradient scaler")
    if device.type == "cpu":
        if amp is False:
            return Precision("fp32", why="amp=false")
        native = cpu_bf16_instructions()
        if native:
            return Precision("bf16", torch.bfloat16, why=f"this CPU has {native}")
        if amp:
            return Precision("bf16", torch.bfloat16, why="amp=true; this CPU has no native bf16: emulated, "
                                                          "likely slower than fp32")
        return Precision("fp32", why="this CPU has no native bf16 dot products (no AVX512_BF16/AMX)")
    return Precision("fp32", why=f"{device.type}: fp32 (its autocast support varies)")


__all__ = ["FP32", "NATIVE_BF16_CAPABILITY", "DeviceError", "Precision", "check_cuda_arch", "choose_precision", "cpu_bf16_instructions", "resolve_device"]

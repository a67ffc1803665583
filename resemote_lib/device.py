"""Which device to run on, and whether this torch build can run on it at all."""

from __future__ import annotations

import torch


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
            raise RuntimeError(f"device {name!r} requested but torch.cuda.is_available() is False "
                               f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
        check_cuda_arch(device)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' requested but this torch build or machine has no MPS support")
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
        raise RuntimeError(
            f"GPU {name} has compute capability {major}.{minor} (sm_{major}{minor}), but this torch "
            f"{torch.__version__} (CUDA {torch.version.cuda}) has kernels only for {arch_list}. "
            "Fix: install a torch build that supports it, e.g. "
            "pip install torch torchvision --index-url https://download.pytorch.org/whl/cu126 "
            "(CUDA 12.6 builds still include sm_60/sm_70); on Kaggle keep the preinstalled torch and "
            "install this project with: pip install --no-deps -e . (see README, 'Kaggle'). "
            "Or run on CPU with device='cpu'."
        )


__all__ = ["check_cuda_arch", "resolve_device"]

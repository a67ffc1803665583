from __future__ import annotations

import pytest
import torch

from resemote_lib.device import FP32, check_cuda_arch, choose_precision, resolve_device


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA device of a chosen compute capability (torch.cuda mocked)."""
    def set_capability(major: int, minor: int) -> torch.device:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (major, minor))
        # The emulation trap: some torch versions say True for any GPU, P100 and T4 included.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        return torch.device("cuda")
    return set_capability


@pytest.mark.parametrize(("capability", "auto", "fp32"), [
    ((6, 0), "fp16", "fp32"),  # P100: no bf16 convolutions in cuDNN, no TF32
    ((7, 0), "fp16", "fp32"),  # V100
    ((7, 5), "fp16", "fp32"),  # T4
    ((8, 0), "bf16", "tf32"),  # A100
    ((8, 9), "bf16", "tf32"),  # L4 / Ada
    ((9, 0), "bf16", "tf32"),  # H100
])
def test_precision_is_chosen_from_compute_capability(gpu, capability, auto, fp32):
    device = gpu(*capability)
    mixed = choose_precision(device, None)
    assert mixed.name == auto and mixed.scaler == (auto == "fp16")
    assert mixed.dtype == (torch.float16 if auto == "fp16" else torch.bfloat16)
    assert choose_precision(device, True).name == auto
    plain = choose_precision(device, False)  # the paper/reference protocols: fp32, TF32 where it exists
    assert plain.name == fp32 and plain.dtype is None and not plain.scaler


def test_cpu_runs_fp32_unless_amp_is_asked_for():
    cpu = torch.device("cpu")
    assert choose_precision(cpu, None) == FP32 and choose_precision(cpu, False) == FP32
    assert choose_precision(cpu, True).name == "bf16"


def test_cuda_arch_check_names_gpu_capability_and_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (6, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla P100-PCIE-16GB")
    with pytest.raises(RuntimeError, match=r"Tesla P100.*6\.0 \(sm_60\).*sm_75.*cu126"):
        check_cuda_arch(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 9))  # Ada: sm_86 cubins run
    check_cuda_arch(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "compute_70"])  # PTX JIT
    check_cuda_arch(torch.device("cuda"))


def test_explicit_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine that has one
    with pytest.raises(RuntimeError, match="cuda.is_available"):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")

from __future__ import annotations

import pytest
import torch

from resemote_lib import device
from resemote_lib.device import FP32, DeviceError, check_cuda_arch, choose_precision, resolve_device


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


AVX512_BF16_FLAGS = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
AMX_FLAGS = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX2_FLAGS = "flags\t\t: fpu sse2 avx2 fma\n"


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """A CPU whose /proc/cpuinfo flags and torch's own bf16 check are chosen by the test."""
    def set_cpu(flags: str | None, torch_says: bool) -> torch.device:
        info = tmp_path / "cpuinfo"
        if flags is not None:
            info.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\n{flags}")
        monkeypatch.setattr(device, "CPUINFO", info if flags is not None else tmp_path / "absent")
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: torch_says, raising=False)
        return torch.device("cpu")
    return set_cpu


@pytest.mark.parametrize(("flags", "torch_says", "auto", "why"), [
    (AVX512_BF16_FLAGS, True, "bf16", "this CPU has AVX512_BF16"),  # the AVX-512 EPYCs (Zen 4/5)
    (AMX_FLAGS, True, "bf16", "this CPU has AMX_BF16"),  # Sapphire Rapids and newer
    (AVX2_FLAGS, False, "fp32", "this CPU has no native bf16 dot products (no AVX512_BF16/AMX)"),  # AVX2-only
    (AVX2_FLAGS, True, "fp32", "this CPU has no native bf16"),  # torch and the OS disagree: fp32
    (AVX512_BF16_FLAGS, False, "fp32", "this CPU has no native bf16"),
    (None, True, "bf16", "this CPU has AVX512_BF16"),  # no /proc/cpuinfo (macOS, Windows): torch's word
])
def test_cpu_precision_is_bf16_where_the_processor_has_native_bf16_dot_products(cpu, flags, torch_says, auto, why):
    dev = cpu(flags, torch_says)
    chosen = choose_precision(dev, None)
    assert chosen.name == auto and chosen.why.startswith(why) and not chosen.scaler
    assert chosen.dtype == (torch.bfloat16 if auto == "bf16" else None)
    assert chosen.describe() == f"{auto} ({chosen.why})"
    assert choose_precision(dev, False) == FP32 and choose_precision(dev, False).why == "amp=false"
    forced = choose_precision(dev, True)  # amp=true: bf16 even where it is emulated, and it says so
    assert forced.name == "bf16" and (auto == "bf16" or "emulated" in forced.why)


def test_amp_auto_in_a_params_file_is_the_automatic_default():
    from resemote_lib.params import resolve

    assert resolve({"amp": "auto"}).amp is None and resolve({}).amp is None


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


@pytest.mark.parametrize("name", ["banana", "cuda:x", "meta", "", "CPU"])
def test_a_device_torch_does_not_know_or_we_do_not_run_on_is_a_device_error_listing_the_choices(name):
    with pytest.raises(DeviceError, match=rf"^device {name!r} is not a device resemote runs on; use one of: auto, "
                                          r"cpu, cuda, cuda:N, mps$"):
        resolve_device(name)


def test_a_cuda_index_past_the_gpus_is_a_device_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_90"])
    with pytest.raises(DeviceError, match=r"^device 'cuda:3': this machine has 1 CUDA device\(s\): cuda:0"):
        resolve_device("cuda:3")

"""``make bench``: speed as ratios measured side by side in one run.

1. loader: our decode-once cached batches vs a reference-style pipeline (torchvision
   ImageFolder + PIL Resize/Grayscale/flip/ToTensor/Normalize per item, DataLoader) over
   the same JPEG folder;
2. the real training loop: ``train.fit`` itself (its per-step time, from the history it
   writes) against a model-only step on pre-made tensors of the same shape, at batch 16
   and 128, as the median of interleaved repeats; the rest of the loop's time (data
   gather, augmentation, bookkeeping) as its host share; and the checkpoint write time of
   an epoch (best.pt + last.pt);
3. compute efficiency: achieved training FLOP/s (counted by torch's FlopCounterMode)
   divided by a large fp32 matmul's FLOP/s measured in the same run; and the same for the
   CPU-budget recipe (params/fer2013_cpu.yaml, read at run time: lean ResEmoteNet at 48 px,
   batch 64, fused AdamW, one-cycle, flips) through ``train.fit`` itself, in fp32 and in bf16
   autocast: its images/s, its FLOP/s over the fp32 and the bf16 matmul rates, and one profiled
   step of each (convolution/matmul share, fused vs foreach optimiser update). The loop rows
   (2, 3's first ratio, 5) run fp32 (``amp=false``);
4. inference: images/s at batch 1 and 64, eager vs channels_last vs torch.compile vs ONNX
   Runtime; best / eager;
5. time per training image of ``fit`` vs the reference training loop's structure on the
   same data.
On CUDA it also reports ``fit``'s training images/s at batch 16 and 128 with AMP on and off
and with torch.compile, and the projected wall time of the paper's 80-epoch FER2013 run.
Writes results/bench/bench.json and bench.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resemote_lib import paths
from resemote_lib.data import open_dataset
from resemote_lib.data.synthetic import make_faces
from resemote_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TRAIN
from resemote_lib.device import cpu_bf16_instructions, resolve_device
from resemote_lib.labels import CLASS_NAMES
from resemote_lib.model import ResEmoteNet, build_model
from resemote_lib.optim import build_optimizer
from resemote_lib.params import load_params, resolve
from resemote_lib.runs import select
from resemote_lib.train import fit

PAPER_TRAIN_SIZES = {"fer2013": 28_709, "rafdb": 12_271 * 9 // 10, "affectnet": 283_901 * 9 // 10}


def timed(fn, *, repeat: int, warmup: int = 1, sync=lambda: None) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def write_jpeg_folder(root: Path, n: int, seed: int = 0) -> Path:
    """FER2013's Kaggle layout (train/<class>/Training_<i>.jpg) of synthetic faces."""
    images, labels = make_faces(n, seed=seed)
    for name in CLASS_NAMES:
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        (root / "test" / name).mkdir(parents=True, exist_ok=True)
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(img).save(root / "train" / CLASS_NAMES[y] / f"Training_{i}.jpg", quality=90)
    return root


def reference_transform(size: int) -> T.Compose:
    # The reference code's training transforms, applied per item with PIL.
    return T.Compose([T.Resize((size, size)), T.Grayscale(num_output_channels=3), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def reference_loader(root: Path, size: int, batch: int) -> torch.utils.data.DataLoader:
    ds = torchvision.datasets.ImageFolder(str(root / "train"), transform=reference_transform(size))
    return torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True)  # reference: default workers


def our_batches(ds, batch: int, device: torch.device, gen: torch.Generator):
    perm = torch.randperm(len(ds), generator=gen)
    for i in range(0, len(perm), batch):
        idx = perm[i:i + batch]
        x = ds.images[idx].to(device, non_blocking=True)
        yield TRAIN(x, generator=gen), ds.labels[idx].to(device, non_blocking=True)


def bench_loader(root: Path, size: int, device: torch.device, cache: Path) -> dict:
    t = time.perf_counter()
    ds = open_dataset("fer2013", root, "train", image_size=size, cache_dir=cache)
    cold = time.perf_counter() - t
    gen = torch.Generator().manual_seed(0)

    def ours():
        for _ in our_batches(ds, 16, device, gen):
            pass

    def theirs():
        for _ in reference_loader(root, size, 16):
            pass

    t_ours = timed(ours, repeat=3)
    t_ref = timed(theirs, repeat=1, warmup=0)
    n = len(ds)
    return {"images": n, "ours_img_s": n / t_ours, "reference_img_s": n / t_ref, "ratio": t_ref / t_ours,
            "ours_first_open_s (decode + cache)": cold, "target": ">= 20"}


def train_step_fn(model, opt, device, amp_dtype=None):
    def step(x, y):
        with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else torch.autocast(device.type, enabled=False):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def fit_once(ds, val, size: int, device: torch.device, batch: int, steps: int, work: Path, **overrides) -> dict:
    """One epoch of ``train.fit`` on ``steps`` batches: the loop's seconds per step (from
    the history: the whole loop, first step included) and the epoch's checkpoint seconds."""
    train_ds = select(ds, [i % len(ds) for i in range(batch * steps)])  # repeats images when the set is small
    with tempfile.TemporaryDirectory(prefix="bench-fit-", dir=work) as tmp:  # 1.2 GB of checkpoints: not kept
        # The paper's optimiser (SGD, momentum, weight decay) under the non-paper smoke preset.
        cfg = resolve({"dataset": "fer2013", "protocol": "smoke", "optimizer": "sgd", "lr": 1e-3, "momentum": 0.9,
                       "weight_decay": 1e-4, "image_size": size, "batch_size": batch, "epochs": 1,
                       "max_train_items": None, "device": str(device), "seed": 0, "run_name": "bench_fit",
                       "results_dir": tmp, "amp": False, **overrides})  # fp32 unless a row asks otherwise
        row = fit(cfg, datasets={"train": train_ds, "val": val}, progress=False).history.iloc[0]
    return {"step_s": row["train_seconds"] / steps, "checkpoint_s": row["checkpoint_seconds"]}


def model_only_once(size: int, device: torch.device, batch: int, steps: int, sync) -> float:
    """Seconds per step of the same model and optimiser on fixed tensors (first step included)."""
    torch.manual_seed(0)
    model = ResEmoteNet().to(device).train()
    opt = build_optimizer(resolve({"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4}), model,
                          device)
    step = train_step_fn(model, opt, device)
    x, y = torch.randn(batch, 3, size, size, device=device), torch.randint(0, 7, (batch,), device=device)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    sync()
    return (time.perf_counter() - t) / steps


def bench_fit_loop(ds, val, size: int, device: torch.device, work: Path, sync, batches=(16, 128),
                   steps: dict | None = None, repeats: int = 5) -> dict:
    """``fit``'s loop vs a model-only step, interleaved ``repeats`` times (A/B/A/B...) so
    machine drift falls on both; medians. Both build a fresh model each repeat."""
    steps = steps or {16: 8, 128: 3}
    out = {}
    for b in batches:
        loop, model_only, ckpt = [], [], []
        for _ in range(repeats):
            model_only.append(model_only_once(size, device, b, steps[b], sync))
            r = fit_once(ds, val, size, device, b, steps[b], work)
            loop.append(r["step_s"])
            ckpt.append(r["checkpoint_s"])
        t_loop, t_model = float(np.median(loop)), float(np.median(model_only))
        out[f"batch_{b}"] = {"steps": steps[b], "repeats": repeats, "fit_img_s": b / t_loop, "model_only_img_s": b / t_model,
                             "ratio": t_model / t_loop, "host_share": max(0.0, 1 - t_model / t_loop),
                             "ratio_all": [m / lp for m, lp in zip(model_only, loop, strict=True)],
                             "checkpoint_s_per_epoch": float(np.median(ckpt)), "target": ">= 0.95"}
    return out


def matmul_flops(device: torch.device, n: int = 2048, sync=lambda: None, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    t = timed(lambda: a @ b, repeat=5, sync=sync)
    return 2 * n**3 / t


def train_flops_per_image(size: int, model_name: str = "resemotenet") -> float:
    model = build_model(model_name, image_size=size).train()
    x = torch.randn(4, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.zeros(4, dtype=torch.long)).backward()
    return counter.get_total_flops() / 4


def bench_efficiency(step_result: dict, size: int, device: torch.device, sync) -> dict:
    peak = matmul_flops(device, sync=sync)
    per_img = train_flops_per_image(size)
    best = max(v["model_only_img_s"] for v in step_result.values())
    achieved = best * per_img
    return {"train_gflop_per_image": per_img / 1e9, "achieved_gflop_s": achieved / 1e9,
            "matmul_fp32_gflop_s": peak / 1e9, "ratio": achieved / peak, "target": ">= 0.5"}


def bench_recipe(ds, val, device: torch.device, work: Path, sync, steps: int = 6, repeats: int = 3) -> dict:
    """The CPU-budget recipe's training speed through ``train.fit`` in fp32 (``amp=false``) and in
    bf16 autocast (``amp=true``), each the median of ``repeats`` runs of ``steps`` steps (first step
    included), interleaved so that machine drift falls on both; its training FLOP/s over the fp32
    and the bf16 matmul rates; and one step of each profiled. ``native_bf16`` names the CPU's bf16
    instructions (None: bf16 is emulated there, and ``amp: auto`` trains in fp32)."""
    cfg = load_params(paths.PARAMS / "fer2013_cpu.yaml", device=str(device))
    size, batch = cfg.image_size, cfg.batch_size
    recipe = {k: getattr(cfg, k) for k in ("protocol", "model", "optimizer", "lr", "weight_decay", "scheduler",
                                           "label_smoothing", "augment", "image_size", "batch_size")}
    small = open_dataset("fer2013", ds.root, "train", image_size=size, cache_dir=work / "cache")
    val_small = select(small, list(range(8)))
    img_s: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        for name in img_s:
            r = fit_once(small, val_small, size, device, batch, steps, work, **recipe, amp=name == "bf16")
            img_s[name].append(batch / r["step_s"])
    per_img = train_flops_per_image(size, cfg.model)
    peak = {"fp32": matmul_flops(device, sync=sync), "bf16": matmul_flops(device, sync=sync, dtype=torch.bfloat16)}
    out: dict = {"recipe": recipe, "native_bf16": cpu_bf16_instructions() if device.type == "cpu" else None,
                 "train_gflop_per_image": per_img / 1e9, "matmul_fp32_gflop_s": peak["fp32"] / 1e9,
                 "matmul_bf16_gflop_s": peak["bf16"] / 1e9, "target": ">= 1.0 (bf16, over the fp32 matmul rate)"}
    for name, speeds in img_s.items():
        achieved = float(np.median(speeds)) * per_img
        out[name] = {"fit_img_s": float(np.median(speeds)), "fit_img_s_all": speeds,
                     "achieved_gflop_s": achieved / 1e9, "ratio_fp32_matmul": achieved / peak["fp32"],
                     "ratio_bf16_matmul": achieved / peak["bf16"],
                     "profile": profile_recipe_step(cfg, device, sync, bf16=name == "bf16")}
    return out


CONV_FORWARD = ("aten::mkldnn_convolution", "aten::_convolution", "aten::cudnn_convolution")
# where a training step's FLOPs are spent: convolutions (forward, backward) and matrix products
FLOP_OPS = ("aten::convolution_backward", *CONV_FORWARD, "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
            "aten::addmm", "aten::mm", "aten::bmm")


def op_shares(step) -> dict[str, float]:
    """One call of ``step`` (after a warm-up call) under the CPU profiler: each operator's share
    of the total self time."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return {e.key: e.self_cpu_time_total / total for e in events}


def profile_recipe_step(cfg, device: torch.device, sync, bf16: bool = False) -> dict:
    """One step of the recipe's model and optimiser, profiled: the share of its time in
    convolutions and matrix products (the FLOPs) against everything else, and the optimiser
    update timed with torch's fused and foreach implementations (``build_optimizer`` uses fused)."""
    torch.manual_seed(0)
    model = build_model(cfg.model, image_size=cfg.image_size).to(device).train()
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device=device)
    y = torch.randint(0, 7, (cfg.batch_size,), device=device)
    opt = build_optimizer(cfg, model, device)
    step = train_step_fn(model, opt, device, amp_dtype=torch.bfloat16 if bf16 else None)
    share = op_shares(lambda: step(x, y))
    update_s = {}  # the last step's gradients stand in for a new one's
    for name in ("fused", "foreach"):
        update_s[name] = timed(build_optimizer(cfg, model, device, implementation=name).step, repeat=3, sync=sync)
    return {"step_s": timed(lambda: step(x, y), repeat=3, sync=sync),
            "flop_ops_share": sum(share.get(k, 0.0) for k in FLOP_OPS),
            "optimizer_fused_s": update_s["fused"], "optimizer_foreach_s": update_s["foreach"],
            "top_ops": sorted(share.items(), key=lambda kv: kv[1], reverse=True)[:6]}


def profile_step(size: int, device: torch.device, sync, batch: int = 128) -> dict:
    """Where a training step's time goes (the bound on compute efficiency), and whether
    channels_last helps: one profiled step, then contiguous and channels_last steps in turn."""
    def setup(channels_last: bool):
        torch.manual_seed(0)
        model = ResEmoteNet().to(device).train()
        x = torch.randn(batch, 3, size, size, device=device)
        if channels_last:
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        step = train_step_fn(model, opt, device)
        y = torch.randint(0, 7, (batch,), device=device)
        return (lambda: step(x, y)), opt

    step, opt = setup(False)
    share = op_shares(step)
    t_opt = timed(opt.step, repeat=3, sync=sync)
    cl_step, _ = setup(True)
    t_contig, t_cl = [], []
    for _ in range(2):
        t_contig.append(timed(step, repeat=1, warmup=0, sync=sync))
        t_cl.append(timed(cl_step, repeat=1, warmup=1 if not t_cl else 0, sync=sync))
    return {"batch": batch, "conv_backward_share": share.get("aten::convolution_backward", 0.0),
            "conv_forward_share": sum(share.get(k, 0.0) for k in CONV_FORWARD), "optimizer_step_s": t_opt,
            "contiguous_step_s": float(np.median(t_contig)), "channels_last_step_s": float(np.median(t_cl))}


def bench_inference(size: int, device: torch.device, sync, try_compile: bool = True) -> dict:
    torch.manual_seed(0)
    model = ResEmoteNet().to(device).eval()
    variants = {"eager": model}
    cl = ResEmoteNet().to(device).eval().to(memory_format=torch.channels_last)
    cl.load_state_dict(model.state_dict())
    variants["channels_last"] = cl
    if try_compile:
        try:
            with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
                compiled = torch.compile(model)
                with torch.inference_mode():
                    compiled(torch.randn(2, 3, size, size, device=device))
            variants["torch.compile"] = compiled
        except Exception as e:
            variants["torch.compile"] = f"unavailable: {type(e).__name__}: {str(e)[:120]}"
    out: dict = {}
    for batch in (1, 64):
        x = torch.randn(batch, 3, size, size, device=device)
        row = {}
        for name, m in variants.items():
            if isinstance(m, str):
                row[name] = m
                continue
            xin = x.contiguous(memory_format=torch.channels_last) if name == "channels_last" else x
            with torch.inference_mode():
                t = timed(lambda m=m, xin=xin: m(xin), repeat=5 if batch == 1 else 3, warmup=2, sync=sync)
            row[name] = batch / t
        if device.type == "cpu":
            row["onnxruntime"] = _onnx_img_s(model, x)
        numeric = {k: v for k, v in row.items() if isinstance(v, float)}
        row["best"] = max(numeric, key=numeric.get)
        row["best_over_eager"] = numeric[row["best"]] / numeric["eager"]
        out[f"batch_{batch}_img_s"] = row
    return out


def _onnx_img_s(model, x) -> float | str:
    try:
        import onnxruntime as ort
    except ImportError:
        return "unavailable: onnxruntime not installed"
    with tempfile.TemporaryDirectory(prefix="resemote-bench-onnx-") as tmp:  # a 321 MB file: not left behind
        path = Path(tmp) / "m.onnx"
        try:
            with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()):
                torch.onnx.export(model, (x[:1],), str(path), input_names=["x"], output_names=["logits"],
                                  dynamic_axes={"x": {0: "batch"}}, dynamo=False)
        except Exception as e:
            return f"unavailable: export failed: {type(e).__name__}: {str(e)[:120]}"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    t = timed(lambda: sess.run(None, {"x": xn}), repeat=5 if len(xn) == 1 else 3, warmup=2)
    return len(xn) / t


def bench_epoch(root: Path, ds, val, size: int, device: torch.device, sync, work: Path, max_items: int,
                rounds: int = 3) -> dict:
    """Training time per image: the reference loop's structure (ImageFolder + PIL transforms
    per item, DataLoader, batch 16) vs ``fit`` on the same number of images; in turns of
    ``rounds``, so machine noise falls on both alike."""
    def reference_chunk() -> tuple[float, int]:
        torch.manual_seed(0)
        model = ResEmoteNet().to(device).train()
        step = train_step_fn(model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4),
                             device)
        seen, t = 0, time.perf_counter()
        for x, y in reference_loader(root, size, 16):
            if len(y) < 2:
                continue
            step(x.to(device), y.to(device))
            seen += len(y)
            if seen >= max_items:
                break
        sync()
        return time.perf_counter() - t, seen

    reference_chunk()  # warm-up: first-call costs are not an epoch's
    ref_t = ref_n = ours_t = ours_n = 0.0
    for _ in range(rounds):
        t, n = reference_chunk()
        ref_t, ref_n = ref_t + t, ref_n + n
        steps = max(1, max_items // 16)
        ours_t += fit_once(ds, val, size, device, 16, steps, work)["step_s"] * steps
        ours_n += steps * 16
    return {"images": int(ours_n), "reference_s": ref_t / ref_n * ours_n, "ours_s": ours_t,
            "ratio_ours_over_reference": (ours_t / ours_n) / (ref_t / ref_n)}


def bench_gpu(ds, val, size: int, device: torch.device, work: Path, try_compile: bool) -> dict:
    """``fit``'s training images/s on CUDA at batch 16 and 128, AMP on and off, and with
    torch.compile; the projected wall time of the paper's 80 epochs on FER2013."""
    out = {}
    for b, steps in ((16, 40), (128, 10)):
        for amp in (False, True):
            r = fit_once(ds, val, size, device, b, steps, work, amp=amp)
            out[f"batch_{b}_amp_{'on' if amp else 'off'}_img_s"] = b / r["step_s"]
        if try_compile:
            r = fit_once(ds, val, size, device, b, steps, work, amp=True, compile=True)
            out[f"batch_{b}_amp_on_compile_img_s"] = b / r["step_s"]  # first step's compilation included
    for key in ("amp_off", "amp_on", "amp_on_compile"):
        rate = out.get(f"batch_16_{key}_img_s")
        if rate:
            out[f"paper_fer2013_80_epochs_hours_{key}"] = 80 * PAPER_TRAIN_SIZES["fer2013"] / rate / 3600
    return out


def markdown(report: dict) -> str:
    lines = ["| measurement | value | target |", "|---|---|---|"]
    lo = report["loader"]
    lines.append(f"| loader: ours / reference-style img/s | {lo['ratio']:.1f}x ({lo['ours_img_s']:.0f} vs "
                 f"{lo['reference_img_s']:.0f} img/s) | >= 20x |")
    for b, v in report["fit_loop"].items():
        lines.append(f"| fit loop {b}: model-only step / fit step (median of {v['repeats']}) | {v['ratio']:.3f} "
                     f"({v['fit_img_s']:.1f} vs {v['model_only_img_s']:.1f} img/s; host share {v['host_share']:.0%}; "
                     f"all repeats {', '.join(f'{r:.2f}' for r in v['ratio_all'])}) | >= 0.95 |")
        lines.append(f"| checkpoint write per epoch ({b}, best.pt + last.pt) | {v['checkpoint_s_per_epoch']:.1f} s "
                     "| report |")
    ef = report["efficiency"]
    lines.append(f"| training FLOP/s / fp32 matmul FLOP/s | {ef['ratio']:.2f} ({ef['achieved_gflop_s']:.1f} vs "
                 f"{ef['matmul_fp32_gflop_s']:.1f} GFLOP/s) | >= 0.5 |")
    rc = report.get("recipe")
    if rc:
        r = rc["recipe"]
        native = rc["native_bf16"] or "no native bf16: emulated"
        for name in ("fp32", "bf16"):
            v = rc[name]
            lines.append(f"| CPU-budget recipe ({r['model']}, {r['image_size']} px, batch {r['batch_size']}, "
                         f"{r['optimizer']}), {name}{f' ({native})' if name == 'bf16' else ''}: fit img/s (median "
                         f"of {len(v['fit_img_s_all'])}) | {v['fit_img_s']:.1f} (all "
                         f"{', '.join(f'{x:.1f}' for x in v['fit_img_s_all'])}) | report |")
            lines.append(f"| CPU-budget recipe, {name}: training FLOP/s / fp32 matmul FLOP/s; / bf16 matmul FLOP/s "
                         f"| {v['ratio_fp32_matmul']:.2f}; {v['ratio_bf16_matmul']:.2f} ({v['achieved_gflop_s']:.1f} vs "
                         f"{rc['matmul_fp32_gflop_s']:.1f} and {rc['matmul_bf16_gflop_s']:.1f} GFLOP/s; "
                         f"{rc['train_gflop_per_image']:.2f} GFLOP per image) | "
                         f"{'>= 1.0 over fp32 matmul' if name == 'bf16' else '>= 0.5'} |")
            pr = v["profile"]
            top = ", ".join(f"{k.removeprefix('aten::')} {s:.0%}" for k, s in pr["top_ops"][:5])
            lines.append(f"| CPU-budget recipe step profile, {name}: convolution/matmul share | "
                         f"{pr['flop_ops_share']:.0%} (step {pr['step_s'] * 1000:.0f} ms; top: {top}; optimiser "
                         f"update fused {pr['optimizer_fused_s'] * 1000:.0f} ms vs foreach "
                         f"{pr['optimizer_foreach_s'] * 1000:.0f} ms) | report |")
    sp = report["step_profile"]
    lines.append(f"| batch-{sp['batch']} step profile: convolution backward share | {sp['conv_backward_share']:.0%} "
                 f"(forward convs {sp['conv_forward_share']:.0%}, SGD update {sp['optimizer_step_s'] * 1000:.0f} ms, "
                 f"step {sp['contiguous_step_s']:.2f} s, channels_last {sp['channels_last_step_s']:.2f} s) | report |")
    for b, row in report["inference"].items():
        vals = ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} n/a" for k, v in row.items()
                         if k not in ("best", "best_over_eager"))
        lines.append(f"| inference {b}: best / eager | {row['best_over_eager']:.2f} ({row['best']}; {vals}) | report |")
    ep = report["epoch"]
    lines.append(f"| epoch time fit / reference loop | {ep['ratio_ours_over_reference']:.3f} "
                 f"({ep['ours_s']:.1f} s vs {ep['reference_s']:.1f} s for {ep['images']} images) | < 1 |")
    for key, value in report.get("gpu", {}).items():
        unit = "h" if "hours" in key else "img/s"
        lines.append(f"| GPU {key} | {value:.1f} {unit} | report |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image-size", type=int, default=64, help="64: the paper's input")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs in the loader benchmark")
    parser.add_argument("--epoch-images", type=int, default=128, help="images per round of the epoch-time comparison")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of the fit-loop comparison")
    parser.add_argument("--steps-16", type=int, default=8, help="steps per fit-loop repeat at batch 16")
    parser.add_argument("--steps-128", type=int, default=3, help="steps per fit-loop repeat at batch 128")
    parser.add_argument("--recipe-steps", type=int, default=6, help="steps per run of the CPU-budget recipe")
    parser.add_argument("--recipe-repeats", type=int, default=3, help="runs of the CPU-budget recipe")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", default=str(paths.RESULTS / "bench"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory(prefix="resemote-bench-") as work:
        return run(args, device, sync, Path(work))


def run(args: argparse.Namespace, device: torch.device, sync, work: Path) -> int:
    root = write_jpeg_folder(work / "fer2013", args.images)
    report: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                "device": str(device),
                                "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
                    "versions": {"python": platform.python_version(), "torch": torch.__version__,
                                 "torchvision": torchvision.__version__, "numpy": np.__version__},
                    "config": vars(args)}
    stages = [("loader", lambda: bench_loader(root, args.image_size, device, work / "cache"))]
    for name, fn in stages:
        report[name] = fn()
        print(f"{name}: {json.dumps(report[name], default=str)}", flush=True)
    ds = open_dataset("fer2013", root, "train", image_size=args.image_size, cache_dir=work / "cache")
    val = select(ds, list(range(8)))  # validation is not what is timed: keep it tiny
    report["fit_loop"] = bench_fit_loop(ds, val, args.image_size, device, work, sync, repeats=args.repeats,
                                        steps={16: args.steps_16, 128: args.steps_128})
    print(f"fit_loop: {json.dumps(report['fit_loop'])}", flush=True)
    report["efficiency"] = bench_efficiency(report["fit_loop"], args.image_size, device, sync)
    print(f"efficiency: {json.dumps(report['efficiency'])}", flush=True)
    report["recipe"] = bench_recipe(ds, val, device, work, sync, steps=args.recipe_steps, repeats=args.recipe_repeats)
    print(f"recipe: {json.dumps(report['recipe'])}", flush=True)
    report["step_profile"] = profile_step(args.image_size, device, sync)
    print(f"step_profile: {json.dumps(report['step_profile'])}", flush=True)
    report["inference"] = bench_inference(args.image_size, device, sync, try_compile=not args.no_compile)
    print(f"inference: {json.dumps(report['inference'], default=str)}", flush=True)
    report["epoch"] = bench_epoch(root, ds, val, args.image_size, device, sync, work, args.epoch_images)
    print(f"epoch: {json.dumps(report['epoch'])}", flush=True)
    if device.type == "cuda":
        report["gpu"] = bench_gpu(ds, val, args.image_size, device, work, try_compile=not args.no_compile)
        print(f"gpu: {json.dumps(report['gpu'])}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    md = markdown(report)
    (out / "bench.md").write_text(f"# Benchmark ({report['machine']['device_name']}, torch {torch.__version__})\n\n"
                                  f"{md}\n")
    print("\n" + md)
    print(f"\nwritten: {out / 'bench.json'}, {out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

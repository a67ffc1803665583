"""``make bench``: speed as ratios measured side by side in one run.

1. loader: our decode-once cached batches vs a reference-style pipeline (torchvision
   ImageFolder + PIL Resize/Grayscale/flip/ToTensor/Normalize per item, DataLoader) over
   the same JPEG folder;
2. training step: full pipeline step (loader + augmentation + forward + backward +
   optimiser) divided by a model-only step on pre-made tensors, at batch 16 and 128;
3. compute efficiency: achieved training FLOP/s (counted by torch's FlopCounterMode)
   divided by a large fp32 matmul's FLOP/s measured in the same run;
4. inference: images/s at batch 1 and 64, eager vs channels_last vs torch.compile vs ONNX
   Runtime; best / eager;
5. epoch time of our loop vs the reference training loop's structure on the same data.
On CUDA it also reports training images/s at batch 16 and 128 with AMP on and off and the
projected time of the paper's 80-epoch runs. Writes results/bench/bench.json and bench.md.
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
from resemote_lib.device import choose_precision, resolve_device
from resemote_lib.labels import CLASS_NAMES
from resemote_lib.model import ResEmoteNet

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


class BatchStream:
    """Endless training batches from our cached loader (skips a last batch of one)."""

    def __init__(self, ds, batch: int, device: torch.device, seed: int = 1) -> None:
        self.ds, self.batch, self.device = ds, batch, device
        self.gen = torch.Generator().manual_seed(seed)
        self.it = our_batches(ds, batch, device, self.gen)

    def next(self):
        for _ in range(2):
            for x, y in self.it:
                if len(y) > 1:
                    return x, y
            self.it = our_batches(self.ds, self.batch, self.device, self.gen)
        raise RuntimeError("dataset too small for a batch")


def bench_train_step(ds, size: int, device: torch.device, batches=(16, 128), sync=lambda: None) -> dict:
    out = {}
    for b in batches:
        torch.manual_seed(0)
        model = ResEmoteNet().to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        step = train_step_fn(model, opt, device)
        fixed = (torch.randn(b, 3, size, size, device=device), torch.randint(0, 7, (b,), device=device))
        stream = BatchStream(ds, b, device)
        # Interleaved A/B/A/B after a shared warm-up, so drift (allocator, caches, other
        # load) hits both sides alike; medians of each.
        reps = 6 if device.type == "cpu" and b <= 16 else 4
        model_only = lambda step=step, fixed=fixed: step(*fixed)  # noqa: E731
        full = lambda step=step, stream=stream: step(*stream.next())  # noqa: E731
        for fn in (model_only, full, model_only, full):
            fn()
        sync()
        t_model, t_full = [], []
        for _ in range(reps):
            t_model.append(timed(model_only, repeat=1, warmup=0, sync=sync))
            t_full.append(timed(full, repeat=1, warmup=0, sync=sync))
        t_model, t_full = float(np.median(t_model)), float(np.median(t_full))
        out[f"batch_{b}"] = {"model_only_img_s": b / t_model, "full_pipeline_img_s": b / t_full,
                             "ratio": t_model / t_full, "target": ">= 0.95"}
    return out


def matmul_flops(device: torch.device, n: int = 2048, sync=lambda: None) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t = timed(lambda: a @ b, repeat=5, sync=sync)
    return 2 * n**3 / t


def train_flops_per_image(size: int) -> float:
    model = ResEmoteNet().train()
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


def profile_step(size: int, device: torch.device, sync, batch: int = 128) -> dict:
    """Where a training step's time goes (the bound on compute efficiency), and whether
    channels_last helps: one profiled step, then contiguous and channels_last steps in turn."""
    from torch.profiler import ProfilerActivity, profile

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
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv_bwd = sum(e.self_cpu_time_total for e in events if e.key == "aten::convolution_backward")
    conv_fwd = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mkldnn_convolution",
                                                                      "aten::_convolution", "aten::cudnn_convolution"))
    t_opt = timed(opt.step, repeat=3, sync=sync)
    cl_step, _ = setup(True)
    t_contig, t_cl = [], []
    for _ in range(2):
        t_contig.append(timed(step, repeat=1, warmup=0, sync=sync))
        t_cl.append(timed(cl_step, repeat=1, warmup=1 if not t_cl else 0, sync=sync))
    return {"batch": batch, "step_s": total / 1e6, "conv_backward_share": conv_bwd / total,
            "conv_forward_share": conv_fwd / total, "optimizer_step_s": t_opt,
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


def bench_epoch(root: Path, ds, size: int, device: torch.device, sync, max_items: int, rounds: int = 3) -> dict:
    """Training time per image: the reference loop's structure (ImageFolder + PIL transforms
    per item, DataLoader, batch 16) vs ours (cached uint8 batches, on-device augmentation).

    Both train the same model from the same weights; they take turns in ``rounds`` chunks of
    ``max_items`` images each, so machine noise falls on both alike.
    """
    def make():
        torch.manual_seed(0)
        model = ResEmoteNet().to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        return train_step_fn(model, opt, device)

    def chunk(step, batches) -> tuple[float, int]:
        seen = 0
        t = time.perf_counter()
        for x, y in batches:
            if len(y) < 2:
                continue
            step(x.to(device), y.to(device))
            seen += len(y)
            if seen >= max_items:
                break
        sync()
        return time.perf_counter() - t, seen

    gen = torch.Generator().manual_seed(0)
    sides = {"reference": (make(), lambda: iter(reference_loader(root, size, 16))),
             "ours": (make(), lambda: our_batches(ds, 16, device, gen))}
    for step, batches in sides.values():  # warm-up: first-call costs are not an epoch's
        chunk(step, batches())
    totals = {k: [0.0, 0] for k in sides}
    for _ in range(rounds):
        for name, (step, batches) in sides.items():
            t, n = chunk(step, batches())
            totals[name][0] += t
            totals[name][1] += n
    per_image = {k: t / n for k, (t, n) in totals.items()}
    return {"images": totals["ours"][1], "reference_s": per_image["reference"] * totals["ours"][1],
            "ours_s": totals["ours"][0], "ratio_ours_over_reference": per_image["ours"] / per_image["reference"]}


def bench_gpu(ds, size: int, device: torch.device, sync) -> dict:
    out = {}
    for b in (16, 128):
        for amp in (False, True):
            torch.manual_seed(0)
            model = ResEmoteNet().to(device).train().to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            dtype = choose_precision(device, amp).dtype
            step = train_step_fn(model, opt, device, dtype)
            x = torch.randn(b, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 7, (b,), device=device)
            t = timed(lambda step=step, x=x, y=y: step(x, y), repeat=20, warmup=5, sync=sync)
            out[f"batch_{b}_amp_{'on' if amp else 'off'}_img_s"] = b / t
    best16 = max(out["batch_16_amp_on_img_s"], out["batch_16_amp_off_img_s"])
    out["paper_80_epochs_hours_at_batch_16"] = {k: 80 * n / best16 / 3600 for k, n in PAPER_TRAIN_SIZES.items()}
    return out


def markdown(report: dict) -> str:
    lines = ["| measurement | value | target |", "|---|---|---|"]
    lo = report["loader"]
    lines.append(f"| loader: ours / reference-style img/s | {lo['ratio']:.1f}x ({lo['ours_img_s']:.0f} vs "
                 f"{lo['reference_img_s']:.0f} img/s) | >= 20x |")
    for b, v in report["train_step"].items():
        lines.append(f"| train step {b}: full pipeline / model only | {v['ratio']:.3f} "
                     f"({v['full_pipeline_img_s']:.1f} vs {v['model_only_img_s']:.1f} img/s) | >= 0.95 |")
    ef = report["efficiency"]
    lines.append(f"| training FLOP/s / fp32 matmul FLOP/s | {ef['ratio']:.2f} ({ef['achieved_gflop_s']:.1f} vs "
                 f"{ef['matmul_fp32_gflop_s']:.1f} GFLOP/s) | >= 0.5 |")
    sp = report["step_profile"]
    lines.append(f"| batch-{sp['batch']} step profile: convolution backward share | {sp['conv_backward_share']:.0%} "
                 f"(forward convs {sp['conv_forward_share']:.0%}, SGD update {sp['optimizer_step_s'] * 1000:.0f} ms, "
                 f"step {sp['contiguous_step_s']:.2f} s, channels_last {sp['channels_last_step_s']:.2f} s) | report |")
    for b, row in report["inference"].items():
        vals = ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} n/a" for k, v in row.items()
                         if k not in ("best", "best_over_eager"))
        lines.append(f"| inference {b}: best / eager | {row['best_over_eager']:.2f} ({row['best']}; {vals}) | report |")
    ep = report["epoch"]
    lines.append(f"| epoch time ours / reference loop | {ep['ratio_ours_over_reference']:.3f} "
                 f"({ep['ours_s']:.1f} s vs {ep['reference_s']:.1f} s for {ep['images']} images) | < 1 |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image-size", type=int, default=64, help="64: the paper's input")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs in the loader benchmark")
    parser.add_argument("--epoch-images", type=int, default=128, help="images per round of the epoch-time comparison")
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
    report["train_step"] = bench_train_step(ds, args.image_size, device, sync=sync)
    print(f"train_step: {json.dumps(report['train_step'])}", flush=True)
    report["efficiency"] = bench_efficiency(report["train_step"], args.image_size, device, sync)
    print(f"efficiency: {json.dumps(report['efficiency'])}", flush=True)
    report["step_profile"] = profile_step(args.image_size, device, sync)
    print(f"step_profile: {json.dumps(report['step_profile'])}", flush=True)
    report["inference"] = bench_inference(args.image_size, device, sync, try_compile=not args.no_compile)
    print(f"inference: {json.dumps(report['inference'], default=str)}", flush=True)
    report["epoch"] = bench_epoch(root, ds, args.image_size, device, sync, args.epoch_images)
    print(f"epoch: {json.dumps(report['epoch'])}", flush=True)
    if device.type == "cuda":
        report["gpu"] = bench_gpu(ds, args.image_size, device, sync)
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

"""``make bench-ablation``: each ablation variant's speed under the CPU-budget recipe, measured alone.

The ablation's runs (``make ablation-real``) last hours and share the machine with whatever else
runs, so the img/s they record is not a benchmark. Here every variant of
``params/ablation_fer2013_cpu.yaml`` trains through ``train.fit`` itself with that file's recipe
(lean forms at 48 px, batch 64, AdamW + one-cycle, flips, bf16 autocast where the CPU has native
bf16), ``--steps`` steps per run (first step included), ``--repeats`` runs interleaved across the
variants so that machine drift falls on all; the median is reported. Inference: images/s over
512 images at the evaluation batch size, after one warm pass. Synthetic JPEG faces stand in for
FER2013 (speed does not depend on the pixels). Writes results/bench/ablation_speed.{json,md,csv}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from run import fit_once, write_jpeg_folder

from resemote_lib import paths
from resemote_lib.data import open_dataset
from resemote_lib.device import choose_precision, cpu_bf16_instructions, resolve_device
from resemote_lib.model import build_model, count_parameters, flops_per_image
from resemote_lib.params import load_params, resolved_values
from resemote_lib.reports.ablation import inference_img_s
from resemote_lib.runs import select

RECIPE_KEYS = ("protocol", "optimizer", "lr", "weight_decay", "scheduler", "label_smoothing", "class_balance",
               "augment", "image_size", "batch_size", "amp")


def measure(params: Path, steps: int, repeats: int, device: torch.device, work: Path) -> pd.DataFrame:
    """One row per variant: params, GFLOPs, training img/s (median and all runs), inference img/s."""
    cfg = load_params(params, device=str(device))
    variants = resolved_values(params)["variants"]
    recipe = {k: getattr(cfg, k) for k in RECIPE_KEYS}
    root = write_jpeg_folder(work / "fer2013", cfg.batch_size * steps)
    faces = open_dataset("fer2013", root, "train", image_size=cfg.image_size, cache_dir=work / "cache")
    val = select(faces, list(range(8)))
    train_img_s: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for variant in variants:
            r = fit_once(faces, val, cfg.image_size, device, cfg.batch_size, steps, work, **recipe, model=variant)
            train_img_s[variant].append(cfg.batch_size / r["step_s"])
    precision = choose_precision(device, cfg.amp)
    rows = []
    for variant in variants:
        model = build_model(variant, image_size=cfg.image_size)
        rows.append({"variant": variant, "params": count_parameters(model),
                     "gflops": flops_per_image(model, cfg.image_size) / 1e9,
                     "train_img_s": float(np.median(train_img_s[variant])),
                     "train_img_s_runs": " ".join(f"{v:.1f}" for v in train_img_s[variant]),
                     "infer_img_s": inference_img_s(model.to(device), faces.images[:512], cfg.eval_batch_size, device,
                                                    precision),
                     "precision": precision.name})
    return pd.DataFrame(rows)


def _shown(path: Path) -> str:
    return str(path.resolve().relative_to(paths.ROOT)) if path.resolve().is_relative_to(paths.ROOT) else str(path)


def _cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo), else the machine type."""
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else (platform.processor() or platform.machine())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(paths.PARAMS / "ablation_fer2013_cpu.yaml"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=6, help="training steps per run (first step included)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per variant (the median is shown)")
    parser.add_argument("--out", default=str(paths.RESULTS / "bench"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="resemote-bench-ablation-") as work:
        table = measure(Path(args.params), args.steps, args.repeats, device, Path(work))
    machine = (f"{_cpu_model()}, {torch.get_num_threads()} threads, "
               f"native bf16: {cpu_bf16_instructions() or 'none'}" if device.type == "cpu"
               else torch.cuda.get_device_name(device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "ablation_speed.csv", index=False)
    (out / "ablation_speed.json").write_text(json.dumps({"machine": machine, "torch": torch.__version__,
                                                         "config": vars(args), "rows": table.to_dict("records")},
                                                        indent=2))
    shown = table.assign(params=(table["params"] / 1e6).round(2), gflops=table["gflops"].round(3),
                         train_img_s=table["train_img_s"].round(1), infer_img_s=table["infer_img_s"].round(1))
    md = (f"# Ablation variants' speed, measured alone ({device}: {machine}; torch {torch.__version__})\n\n"
          + shown.rename(columns={"params": "params (M)", "gflops": "GFLOPs/img", "train_img_s": "train img/s",
                                  "train_img_s_runs": "train img/s, each run", "infer_img_s": "infer img/s"})
          .to_markdown(index=False)
          + f"\n\n`make bench-ablation` ({_shown(Path(args.params))}): training through `train.fit` with the recipe, "
          f"{args.steps} steps per run, median of {args.repeats} interleaved runs; inference over 512 images.\n")
    (out / "ablation_speed.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

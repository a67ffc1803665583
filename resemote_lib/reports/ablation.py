"""The ablation the paper does not report: what the SE block and the residual blocks buy.

``run_ablation`` trains every variant of ``model.VARIANTS`` with several seeds under one
protocol (each a full run: ``fit``, then ``evaluate_run`` on the official and the
deduplicated test sets), and measures each variant's parameters, FLOPs and training and
inference speed; ``summarize`` gives mean and spread over seeds. Runs live under
``results/<run_name>/runs/<variant>_s<seed>/`` and are skipped when already evaluated,
so an interrupted ablation resumes. A progress bar over the runs says which variant and
seed is training (and which are done or skipped), above each run's own epoch bar.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from ..device import choose_precision, resolve_device
from ..evaluate import evaluate_run
from ..inference import predict_logits
from ..model import build_model, count_parameters
from ..params import TrainConfig, resolve
from ..runs import open_split, run_dir_for
from ..train import fit

METRICS = ["accuracy", "dedup_accuracy", "nll", "ece", "balanced_accuracy"]
COLUMNS = ["variant", "seed", "params", "gflops", "train_img_s", "infer_img_s", *METRICS, "best_epoch", "run"]


def run_ablation(cfg: TrainConfig, variants: Sequence[str], seeds: Sequence[int], *, progress: bool = True,
                 keep_checkpoints: bool = False) -> pd.DataFrame:
    """One row per (variant, seed) (``COLUMNS``), training and evaluating what is missing.

    Args:
        cfg: the protocol and data; its ``model`` and ``seed`` are replaced per run.
        variants: names from ``model.VARIANTS``.
        seeds: training seeds (the test set is the same for all: ``cfg.split_seed``).
        progress: a bar over the runs naming the variant and seed at work, and each run's
            epoch bars.
        keep_checkpoints: keep each run's weights; by default they are deleted once the run
            is evaluated (10 runs of the full network hold about 12 GB).
    """
    base = run_dir_for(cfg) / "runs"
    rows, trained, speeds = [], 0, {}
    bar = tqdm(total=len(variants) * len(seeds), desc="ablation", unit="run", disable=not progress)
    try:
        for seed in seeds:  # seeds outer: an ablation stopped half-way has every variant at least once
            for variant in variants:
                if variant not in speeds:
                    bar.set_description(f"ablation: {variant}, measuring speed")
                    speeds[variant] = _speeds(cfg, variant)
                run_dir = _run_dir(cfg, base, variant, seed)
                if (run_dir / "metrics.json").is_file():
                    bar.set_description(f"ablation: {variant} seed {seed} already done")
                else:
                    _train_and_test(_run_config(cfg, base, variant, seed), bar, progress, keep_checkpoints)
                    trained += 1
                rows.append({"variant": variant, "seed": seed, **speeds[variant], **_metrics(run_dir),
                             "run": run_dir.relative_to(base.parent).as_posix()})  # beside ablation.csv
                bar.update(1)
        bar.set_description(f"ablation: done, {trained} trained now, {len(rows) - trained} already done")
    finally:
        bar.close()
    order = {name: k for k, name in enumerate(variants)}
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["variant", "seed"], key=lambda c: c.map(order) if c.name == "variant" else c,
                             kind="stable", ignore_index=True)


def _run_config(cfg: TrainConfig, base: Path, variant: str, seed: int) -> TrainConfig:
    """The ablation's run of ``variant`` and ``seed``: ``cfg`` with only those (and its folder) changed."""
    with warnings.catch_warnings():  # the variant is the ablation's subject, not a deviation to warn of
        warnings.filterwarnings("ignore", message=r".*overrides the .* protocol's \{'model'")
        return resolve({**cfg.to_dict(), "model": variant, "seed": seed, "results_dir": str(base),
                        "run_name": f"{variant}_s{seed}"}, where=f"ablation {variant} seed {seed}")


def _run_dir(cfg: TrainConfig, base: Path, variant: str, seed: int) -> Path:
    return run_dir_for(_run_config(cfg, base, variant, seed))


def _train_and_test(run_cfg: TrainConfig, bar: tqdm, progress: bool, keep_checkpoints: bool) -> None:
    """One run of the ablation: trained, tested once, its weights deleted unless kept."""
    bar.set_description(f"ablation: training {run_cfg.model} seed {run_cfg.seed}")
    fit(run_cfg, progress=progress)  # its result (the model) is not kept: freed before the next run
    bar.set_description(f"ablation: testing {run_cfg.model} seed {run_cfg.seed}")
    run_dir = run_dir_for(run_cfg)
    evaluate_run(run_dir, device=run_cfg.device, progress=False)
    if not keep_checkpoints:
        for name in ("best.pt", "final.pt", "last.pt"):
            (run_dir / name).unlink(missing_ok=True)


def write(table: pd.DataFrame, flow: pd.DataFrame, out_dir: Path, note: str = "") -> dict[str, Path]:
    """``ablation.csv`` (per run), ``ablation_summary.csv``, ``gradient_flow.csv`` and
    ``ablation.md`` (the summary as mean ± spread over seeds, and ``note``) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(table)
    files = {"runs": out_dir / "ablation.csv", "summary": out_dir / "ablation_summary.csv",
             "flow": out_dir / "gradient_flow.csv", "md": out_dir / "ablation.md"}
    table.to_csv(files["runs"], index=False)
    summary.to_csv(files["summary"], index=False)
    flow.to_csv(files["flow"], index=False)
    shown = pd.DataFrame({
        "variant": summary["variant"], "params (M)": (summary["params"] / 1e6).round(2),
        "GFLOPs/img": summary["gflops"].round(3), "train img/s": summary["train_img_s"].round(1),
        "infer img/s": summary["infer_img_s"].round(1), "seeds": summary["seeds"],
        **{name: [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(summary[f"{key}_mean"], summary[f"{key}_std"],
                                                                      strict=True)]
           for name, key in (("test acc %", "accuracy"), ("dedup acc %", "dedup_accuracy"),
                             ("balanced acc %", "balanced_accuracy"))},
        "NLL": [f"{m:.3f} ± {s:.3f}" for m, s in zip(summary["nll_mean"], summary["nll_std"], strict=True)],
        "ECE": [f"{m:.3f} ± {s:.3f}" for m, s in zip(summary["ece_mean"], summary["ece_std"], strict=True)],
    })
    files["md"].write_text("# Ablation: what the SE block and the residual blocks buy\n\n"
                           + shown.to_markdown(index=False) + "\n\nMean ± standard deviation over seeds. "
                           + note + "\n")
    return files


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per variant: parameters, GFLOPs, speeds, and each metric's mean and spread
    (standard deviation over seeds), in the order the variants were run."""
    grouped = table.groupby("variant", sort=False)
    out = grouped[["params", "gflops", "train_img_s", "infer_img_s"]].mean()
    out["seeds"] = grouped["seed"].count()
    for metric in METRICS:
        out[f"{metric}_mean"] = grouped[metric].mean()
        out[f"{metric}_std"] = grouped[metric].std(ddof=1).fillna(0.0)
    return out.reset_index()


def flops_per_image(model: torch.nn.Module, image_size: int) -> float:
    """Forward FLOPs of one image (torch's FlopCounterMode: 2 per multiply-add)."""
    x = torch.zeros(1, model.conv1.in_channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return float(counter.get_total_flops())


def _speeds(cfg: TrainConfig, variant: str) -> dict[str, float]:
    """Parameters, GFLOPs per image and inference images/s (one warm pass, one timed pass
    over up to 512 test images at the evaluation batch size)."""
    device = resolve_device(cfg.device)
    model = build_model(variant, image_size=cfg.image_size)
    flops = flops_per_image(model, cfg.image_size)
    images = open_split(cfg, "test").images[:512]
    model = model.to(device)
    precision = choose_precision(device, cfg.amp)
    predict_logits(model, images[:cfg.eval_batch_size], batch_size=cfg.eval_batch_size, device=device,
                   precision=precision)
    start = time.perf_counter()
    predict_logits(model, images, batch_size=cfg.eval_batch_size, device=device, precision=precision).cpu()
    return {"params": count_parameters(model), "gflops": flops / 1e9,
            "infer_img_s": len(images) / max(time.perf_counter() - start, 1e-9)}


def _metrics(run_dir: Path) -> dict[str, float]:
    m = json.loads((run_dir / "metrics.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    return {"train_img_s": float(history["train_images"].sum() / history["train_seconds"].sum()),
            "accuracy": m["accuracy"], "dedup_accuracy": (m.get("dedup") or {}).get("accuracy"), "nll": m["nll"],
            "ece": m["ece"], "balanced_accuracy": m["balanced_accuracy"], "best_epoch": m.get("checkpoint_epoch")}


__all__ = ["COLUMNS", "METRICS", "flops_per_image", "run_ablation", "summarize", "write"]

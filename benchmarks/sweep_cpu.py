"""The measured sweep behind the CPU-budget recipe (``params/fer2013_cpu.yaml``).

Each recipe trains the lean ResEmoteNet on the real FER2013 under the ``cpu_budget``
protocol (the clean protocol's deduplicated data, the full training split) for 2 epochs on a
2-core CPU, and its selected weights are scored on the validation split (PublicTest without
blanks) only: accuracy, balanced accuracy, macro-F1 and the rare classes' recall. The test
split plays no part in choosing the recipe. A finished recipe is read back, not retrained,
and an interrupted one resumes from its last.pt, so a stopped sweep continues where it stopped.

    python benchmarks/sweep_cpu.py --data-root data/fer2013

writes ``results/sweep_cpu/sweep.{csv,md}`` (recipe, epochs, precision, minutes, images/s,
validation accuracy, balanced accuracy, macro-F1) and one run folder per recipe under ``results/sweep_cpu/runs/``.
Time nothing else while it runs: on 2 cores a second busy process slows training 5-10x.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resemote_lib import paths
from resemote_lib.checkpoint import load_model
from resemote_lib.device import choose_precision
from resemote_lib.evaluate import evaluate
from resemote_lib.params import load_params
from resemote_lib.runs import open_training_splits
from resemote_lib.train import fit

PARAMS = paths.PARAMS / "fer2013_cpu.yaml"
# name -> overrides of params/fer2013_cpu.yaml. Every recipe: lean ResEmoteNet at 48 px, label
# smoothing 0.1, a one-cycle schedule over its whole (short) run, at the precision amp=auto picks
# (bf16 on an AVX512_BF16/AMX CPU, fp32 elsewhere). The first sweep (7-epoch recipe, fp32) is in
# docs/fer2013_cpu/sweep.md's history; this one (issue 32) asks what the bf16 hour should train:
# batch and peak rate, augmentation, and class-balanced loss for the rare classes (disgust, fear).
RECIPES: dict[str, dict] = {
    "b64_lr2e-3_flip": dict(batch_size=64, lr=2e-3, augment="flip"),
    "b128_lr3e-3_flip": dict(batch_size=128, lr=3e-3, augment="flip"),
    "b64_lr2e-3_flip_sqrt_balance": dict(batch_size=64, lr=2e-3, augment="flip", class_balance="sqrt"),
    "b64_lr2e-3_affine": dict(batch_size=64, lr=2e-3, augment="affine"),
    "b64_lr2e-3_flip_inverse_balance": dict(batch_size=64, lr=2e-3, augment="flip", class_balance="inverse"),
}
COMMON = dict(image_size=48, epochs=2, optimizer="adamw", weight_decay=0.05, label_smoothing=0.1,
              scheduler="onecycle", tta_flip=False)


def describe(overrides: dict) -> str:
    """A recipe in words, for the table."""
    o = {"class_balance": "none", **COMMON, **overrides}
    balance = "" if o["class_balance"] == "none" else f", {o['class_balance']} class balance"
    return (f"{o['image_size']} px, batch {o['batch_size']}, AdamW lr {o['lr']:g} wd {o['weight_decay']:g}, "
            f"one-cycle, label smoothing {o['label_smoothing']:g}, {o['augment']}{balance}")


def run_recipe(name: str, overrides: dict, data_root: str | None, out: Path) -> dict:
    """Train one recipe (or read it back when finished) and score its selected weights on the
    validation split: accuracy, balanced accuracy and macro-F1."""
    cfg = load_params(PARAMS, **{**COMMON, **overrides}, run_name=name, results_dir=str(out / "runs"),
                      **({"data_root": data_root} if data_root else {}))
    result = fit(cfg)
    history = pd.read_csv(result.run_dir / "history.csv")
    val = open_training_splits(cfg)["val"]
    precision = choose_precision(torch.device("cpu"), cfg.amp)
    m = evaluate(load_model(result.selected_checkpoint), val, tta=False, batch_size=cfg.eval_batch_size,
                 precision=precision)
    return {"recipe": name, "description": describe(overrides), "epochs": int(cfg.epochs),
            "precision": precision.name, "minutes": round(float(history["seconds"].sum()) / 60, 1),
            "train img/s": round(history["train_images"].sum() / history["train_seconds"].sum(), 1),
            "val acc %": round(100 * m.accuracy, 2), "val balanced acc %": round(100 * m.balanced_accuracy, 2),
            "val macro-F1 %": round(100 * m.macro_f1, 2),
            "val disgust recall %": round(100 * float(m.per_class.loc["disgust", "recall"]), 1),
            "val fear recall %": round(100 * float(m.per_class.loc["fear", "recall"]), 1), "val n": m.n}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", help="the real FER2013 (default: data/fer2013, $RESEMOTE_DATA or the Kaggle "
                                            "mount)")
    parser.add_argument("--out", default=str(paths.RESULTS / "sweep_cpu"))
    parser.add_argument("--only", nargs="*", choices=list(RECIPES), help="run only these recipes")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = []
    for name, overrides in RECIPES.items():
        if args.only and name not in args.only:
            continue
        rows.append(run_recipe(name, overrides, args.data_root, out))
        provenance = json.loads((out / "runs" / name / "provenance.json").read_text())
        table = pd.DataFrame(rows)
        table.to_csv(out / "sweep.csv", index=False)
        machine = f"{_cpu_model()}; {provenance['device_name']}; torch {provenance['torch']}"
        (out / "sweep.md").write_text(
            f"# CPU-budget sweep on the real FER2013 (validation split only)\n\nMachine: {machine}\n"
            f"Command: python benchmarks/sweep_cpu.py{' --data-root ' + args.data_root if args.data_root else ''}"
            f"\n\n{table.to_markdown(index=False)}\n")
        print(table.to_string(index=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

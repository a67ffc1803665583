"""The measured sweep behind the CPU-budget recipe (``params/fer2013_cpu.yaml``).

Each recipe trains the lean ResEmoteNet on the real FER2013 under the ``cpu_budget``
protocol (the clean protocol's deduplicated data, the full training split) for about the
same wall time on a 2-core CPU (2 epochs at 48 px, 4 at 32 px, which costs a third as much
per image), and is scored on the validation split (PublicTest without blanks) only: the test
split plays no part in choosing the recipe. A finished recipe is read back, not retrained,
so an interrupted sweep continues where it stopped.

    python benchmarks/sweep_cpu.py --data-root data/fer2013

writes ``results/sweep_cpu/sweep.{csv,md}`` (recipe, epochs, minutes, images/s, best and
last validation accuracy) and one run folder per recipe under ``results/sweep_cpu/runs/``.
Time nothing else while it runs: on 2 cores a second busy process slows training 5-10x.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resemote_lib import paths
from resemote_lib.params import load_params
from resemote_lib.train import fit

PARAMS = paths.PARAMS / "fer2013_cpu.yaml"
# name -> overrides of params/fer2013_cpu.yaml. Every recipe: lean ResEmoteNet, batch 64,
# label smoothing 0.1, one-cycle schedule over its whole (short) run.
RECIPES: dict[str, dict] = {
    "48px_adamw_flip": dict(image_size=48, epochs=2, optimizer="adamw", lr=2e-3, weight_decay=0.05, augment="flip"),
    "48px_adamw_affine": dict(image_size=48, epochs=2, optimizer="adamw", lr=2e-3, weight_decay=0.05,
                              augment="affine"),
    "32px_adamw_affine": dict(image_size=32, epochs=4, optimizer="adamw", lr=2e-3, weight_decay=0.05,
                              augment="affine"),
    "48px_sgd_affine": dict(image_size=48, epochs=2, optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4,
                            augment="affine"),
}
COMMON = dict(batch_size=64, label_smoothing=0.1, scheduler="onecycle", tta_flip=False)


def describe(overrides: dict) -> str:
    """A recipe in words, for the table."""
    o = {**COMMON, **overrides}
    opt = (f"AdamW lr {o['lr']:g} wd {o['weight_decay']:g}" if o["optimizer"] == "adamw"
           else f"SGD lr {o['lr']:g} momentum {o['momentum']:g} wd {o['weight_decay']:g}")
    return (f"{o['image_size']} px, batch {o['batch_size']}, {opt}, one-cycle, label smoothing "
            f"{o['label_smoothing']:g}, {o['augment']}")


def run_recipe(name: str, overrides: dict, data_root: str | None, out: Path) -> dict:
    cfg = load_params(PARAMS, **COMMON, **overrides, run_name=name, results_dir=str(out / "runs"),
                      **({"data_root": data_root} if data_root else {}))
    run_dir = out / "runs" / name
    if not (run_dir / "config.json").is_file():
        fit(cfg)
    history = pd.read_csv(run_dir / "history.csv")
    seconds = float(history["seconds"].sum())
    return {"recipe": name, "description": describe(overrides), "epochs": int(cfg.epochs),
            "minutes": round(seconds / 60, 1),
            "train img/s": round(history["train_images"].sum() / history["train_seconds"].sum(), 1),
            "best val acc %": round(100 * history["val_acc"].max(), 2),
            "last val acc %": round(100 * history["val_acc"].iloc[-1], 2), "val n": None}


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
        rows[-1]["val n"] = provenance["data"]["val"]["n"]
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

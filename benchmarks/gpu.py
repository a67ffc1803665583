"""``make bench-gpu``: the paper's FER2013 run, timed on one GPU, in one call of under 10 minutes.

Needs Python 3.11+ with torch, numpy, pandas, pillow, pyyaml and scikit-learn only (no tqdm,
matplotlib, torchvision...), run from a checkout (``PYTHONPATH=.``; nothing installed, nothing
downloaded)::

    python benchmarks/gpu.py --data DIR --out OUT   # DIR: fer2013.zip, or Kaggle's train/ and test/

1. data: FER2013 unpacked from the zip (into the work folder), decoded at 64 px (cached), and the
   data-quality audit behind the deduplicated test figure (cached), before anything is timed;
2. phase 1 (about a minute on an H100/H200): milliseconds per training step of {resemotenet,
   resemotenet_lean} x {eager, CUDA graph} at batch 16 and 128. What is timed is the library's own
   step (``train.set_up`` builds it from the paper protocol's config: SGD, lr 1e-3, momentum 0.9,
   weight decay 1e-4, fp32 with TF32) on the real training images, in the order and with the flips
   an epoch draws, called as ``train.train_one_epoch`` calls it: ``TIMED`` steps between two CUDA
   events after ``WARMUP`` steps (a graph is captured during the warm-up);
3. phase 2: the whole paper protocol (params/fer2013.yaml: 80 epochs, batch 16) through
   ``train.fit`` with the configuration that was fastest at batch 16 (every cell is exact: the lean
   network computes the full one's function at 64 px, the graph what eager computes), then
   ``evaluate.evaluate_run``: official and deduplicated test accuracy.

Time guard (``--budget-s``, default 480 s, counted from the start of ``main``): after each epoch,
phase 2 stops when one more epoch (as long as the last one) plus the evaluation
(``EVAL_RESERVE_S``) would end past the budget. The epochs trained are then finished as a run of
that many epochs (final.pt, config.json and provenance.json say so: ``epochs`` is recorded as a
deviation from the protocol) and evaluated. They are exactly the first epochs of the 80-epoch
run, learning-rate schedule included (the plateau schedule does not look at the total). The guard
stands in for ``train.finished`` while ``fit`` runs. ``bench_gpu.json`` says whether it stopped
the run (``phase2.time_guard``) and projects the full run's wall time from the epochs measured.

Writes ``bench_gpu.json``, ``metrics.json``, ``history.csv`` and ``provenance.json`` into ``--out``
(flat) and prints a summary; ``bench_gpu.json`` is written after phase 1 too, so a failure in
phase 2 keeps the step times (and records the error). ``SMOKE=1`` runs the same code on the CPU at
tiny sizes (32 px; batch 16 and 32; 1 warm-up and 2 timed steps a cell; graph cells "n/a" with the reason; phase 2
one epoch of 256 images without flip TTA), on the synthetic faces when ``--data`` is not given.
Bad input (no data, no CUDA without SMOKE, bad options) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resemote_lib import evaluate, paths, provenance, resume, train
from resemote_lib.data import fer2013
from resemote_lib.device import DeviceError, choose_precision, resolve_device
from resemote_lib.distributed import DistInfo
from resemote_lib.files import atomic_write_text
from resemote_lib.model import count_parameters
from resemote_lib.params import PROTOCOLS, TrainConfig, load_params, protocol_deviations
from resemote_lib.runs import audit_report, open_split, open_training_splits
from resemote_lib.train_step import epoch_plan, graph_possible

SMOKE = os.environ.get("SMOKE") == "1"
PARAMS = paths.PARAMS / "fer2013.yaml"
MODELS = ("resemotenet", "resemotenet_lean")
MODES = ("eager", "graph")
EVAL_RESERVE_S = 30.0  # seconds kept for finishing the run and evaluating it (a few on an H100)
GUARD_MARGIN = 1.1  # the next epoch is assumed to take this much longer than the last one
RUN_FILES = ("metrics.json", "history.csv", "provenance.json")


@dataclass(frozen=True)
class Sizes:
    """What one invocation measures: the real sizes, or SMOKE's tiny ones."""

    batches: tuple[int, ...] = (16, 128)
    warmup: int = 20  # eager steps, then (graph cells) the capture, before the timed ones
    timed: int = 200
    config: tuple[tuple[str, Any], ...] = ()  # overrides of params/fer2013.yaml for both phases
    phase2: tuple[tuple[str, Any], ...] = ()  # further overrides for phase 2


FULL = Sizes()
TINY = Sizes(batches=(16, 32), warmup=1, timed=2, config=(("image_size", 32),),
             phase2=(("epochs", 1), ("max_train_items", 256), ("tta_flip", False)))
SYNTHETIC = (("synthetic_n_train", 300), ("synthetic_n_val", 60), ("synthetic_n_test", 70))


class BenchError(RuntimeError):
    """Bad input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise BenchError(f"{message} (see --help)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder holding fer2013.zip or Kaggle's msambare/fer2013 train/ and "
                        "test/ folders (or the zip itself); SMOKE=1 without it: synthetic faces")
    parser.add_argument("--out", default=str(paths.RESULTS / "bench" / "gpu"),
                        help="folder for bench_gpu.json, metrics.json, history.csv, provenance.json")
    parser.add_argument("--work", help="folder for the unpacked data and the run's checkpoints (kept); "
                        "default: a temporary folder, deleted at the end")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="phase 2 stops after the epoch past which another would end later than this "
                        "many seconds after the start (default 480: a 10-minute call with room to spare)")
    parser.add_argument("--epochs", type=int, help="phase 2 epochs (default: the protocol's 80; SMOKE: 1)")
    args = parser.parse_args(argv)
    if not args.budget_s > 0:
        raise BenchError(f"--budget-s must be a positive number of seconds, got {args.budget_s}")
    if args.epochs is not None and args.epochs < 1:
        raise BenchError(f"--epochs must be at least 1, got {args.epochs}")
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    try:
        args = parse_args(argv)
        device = choose_device()
        out = out_folder(args.out)
    except BenchError as e:
        print(f"bench-gpu: {e}", file=sys.stderr)
        return 2
    with work_folder(args.work) as work:
        try:
            base, data = prepare(args, device, work)
        except (BenchError, FileNotFoundError, ValueError, OSError) as e:
            print(f"bench-gpu: {one_line(e)}", file=sys.stderr)
            return 2
        return bench(args, base, data, out, started)


def bench(args: argparse.Namespace, base: TrainConfig, data: dict[str, Any], out: Path, started: float) -> int:
    """Phase 1, the choice, phase 2; ``bench_gpu.json`` after phase 1 and at the end."""
    sizes = TINY if SMOKE else FULL
    report = describe_machine(base, args) | {"data": data}
    t = time.monotonic()
    cells = phase1(base, data["splits"], sizes)
    report["phase1"] = phase1_record(base, sizes, cells, time.monotonic() - t)
    chosen = choose(cells, base.batch_size)
    report["chosen"] = chosen
    report["phase2"] = {"status": "running"}
    write_report(out, report, started)
    status = 0
    try:
        if chosen is None:
            raise RuntimeError(f"no phase-1 cell at batch {base.batch_size} ran: nothing to train with")
        report["phase2"] = phase2(base, chosen, sizes, args, started, out)
    except Exception as e:  # a one-shot run: keep phase 1's figures and say what failed
        traceback.print_exc()
        report["phase2"] = {"status": "failed", "error": one_line(e)}
        status = 1
    write_report(out, report, started)
    print_summary(report, out)
    return status


# --- set-up --------------------------------------------------------------------------------

def choose_device() -> torch.device:
    """The GPU (CPU under SMOKE); no CUDA is bad input."""
    if SMOKE:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BenchError(f"no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}): this "
                         "benchmark times a GPU; SMOKE=1 runs it on the CPU at tiny sizes")
    try:
        return resolve_device("cuda")
    except DeviceError as e:
        raise BenchError(one_line(e)) from None


def out_folder(value: str) -> Path:
    out = Path(value).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def work_folder(value: str | None) -> Iterator[Path]:
    """``--work`` (kept), or a temporary folder deleted afterwards (it holds ~1 GB of checkpoints)."""
    if value is not None:
        work = Path(value).expanduser().absolute()
        work.mkdir(parents=True, exist_ok=True)
        yield work
        return
    work = Path(tempfile.mkdtemp(prefix="resemote-bench-gpu-"))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare(args: argparse.Namespace, device: torch.device, work: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The base config (params/fer2013.yaml on this data and device) and the data, decoded and
    audited (cached) so that neither phase pays for it."""
    t = time.monotonic()
    dataset, root, unpacked_from = find_data(args.data, work)
    base = base_config(dataset, root, work, device)
    if (Path(base.results_dir) / base.run_name).exists():
        raise BenchError(f"--work {work} already holds the run {base.run_name}/: give an empty --work folder")
    splits = open_training_splits(base)
    test = open_split(base, "test")
    audit_report(base)  # cached: the evaluation's deduplicated figure reads it
    return base, {"dataset": dataset, "root": str(root), "unpacked_from": unpacked_from,
                  "sizes": {"train": len(splits["train"]), "val": len(splits["val"]), "test": len(test)},
                  "image_size": base.image_size, "seconds": round(time.monotonic() - t, 2), "splits": splits}


def find_data(value: str | None, work: Path) -> tuple[str, Path, str | None]:
    """``(dataset, root, zip unpacked)``: FER2013 where ``--data`` says, unpacking its zip into
    ``work`` when that is what is there; synthetic faces under SMOKE without ``--data``."""
    if value is None:
        if SMOKE:
            return "synthetic", work / "synthetic", None
        raise BenchError("--data DIR is required: the folder holding fer2013.zip or Kaggle's msambare/fer2013 "
                         "train/ and test/ folders")
    path = Path(value).expanduser().absolute()
    if not path.exists():
        raise BenchError(f"--data {path}: no such file or folder (give the folder holding fer2013.zip or "
                         "Kaggle's msambare/fer2013 train/ and test/ folders)")
    if path.is_dir() and (root := fer2013_root(path)) is not None:
        return "fer2013", root, None
    archive = path if path.is_file() else next(iter(sorted(path.glob("fer2013*.zip")) + sorted(path.glob("*.zip"))),
                                                None)
    if archive is None or archive.suffix != ".zip":
        found = sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else [path.name]
        raise BenchError(f"--data {path}: neither fer2013.zip nor FER2013's train/ and test/ folders (Kaggle "
                         f"msambare/fer2013) there; found {found or 'nothing'}")
    target = work / "fer2013"
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(target)
    except (zipfile.BadZipFile, OSError) as e:
        raise BenchError(f"--data {archive}: cannot unpack it ({one_line(e)})") from None
    root = fer2013_root(target)
    if root is None:
        raise BenchError(f"--data {archive}: unpacked, but it holds no FER2013 train/ and test/ folders or "
                         "fer2013.csv (expected Kaggle's msambare/fer2013 archive)")
    return "fer2013", root, str(archive)


def fer2013_root(folder: Path) -> Path | None:
    """The folder at or one level below ``folder`` that holds a FER2013 layout, looked for without
    side effects (``data.detect_layout`` would unpack a lone zip in place: here it goes to the work
    folder instead)."""
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if fer2013.detect(candidate) is not None:
            return candidate
    return None


def base_config(dataset: str, root: Path, work: Path, device: torch.device) -> TrainConfig:
    """params/fer2013.yaml (the paper protocol) with this data, device and work folder."""
    sizes = TINY if SMOKE else FULL
    values: dict[str, Any] = {"dataset": dataset, "data_root": str(root), "results_dir": str(work / "results"),
                              "device": device.type, **dict(sizes.config)}
    if dataset == "synthetic":
        values |= {"run_name": "synthetic_paper", **dict(SYNTHETIC)}
    with warnings.catch_warnings():  # SMOKE's overrides of the protocol: recorded in bench_gpu.json instead
        warnings.simplefilter("ignore", UserWarning)
        return load_params(PARAMS, **values)


# --- phase 1: ms per step ----------------------------------------------------------------------

def phase1(base: TrainConfig, splits: dict[str, Any], sizes: Sizes) -> list[dict[str, Any]]:
    """Every cell of {batch} x {model} x {eager, graph}, one after the other."""
    cells = []
    for batch in sizes.batches:
        for model in MODELS:
            for mode in MODES:
                cell = time_cell(base, splits, model, batch, mode, sizes)
                print(f"phase 1: batch {batch:>3} {model:<17} {mode:<5} {cell_text(cell)}", flush=True)
                cells.append(cell)
    return cells


def time_cell(base: TrainConfig, splits: dict[str, Any], model: str, batch: int, mode: str,
              sizes: Sizes) -> dict[str, Any]:
    """One cell: the run ``train.set_up`` prepares for this config, its step timed."""
    cfg = dataclasses.replace(base, model=model, batch_size=batch, step_graph="on" if mode == "graph" else "off")
    cell: dict[str, Any] = {"model": model, "batch": batch, "mode": mode}
    why_not = graph_unavailable(cfg) if mode == "graph" else None
    if why_not is not None:
        return cell | {"status": f"n/a: {why_not}"}
    run_dir = Path(cfg.results_dir) / "phase1"
    run_dir.mkdir(parents=True, exist_ok=True)
    run = None
    try:
        run = train.set_up(cfg, run_dir, DistInfo(), splits, False, None, [])
        return cell | {"status": "ok", **time_steps(run, sizes)}
    except Exception as e:  # an out-of-memory or a failed capture is this cell's result, not the end
        return cell | {"status": f"error: {one_line(e)}"}
    finally:
        del run
        release_memory()


def graph_unavailable(cfg: TrainConfig) -> str | None:
    device = resolve_device(cfg.device)
    return graph_possible(device, scaler=choose_precision(device, cfg.amp).scaler, distributed=False,
                          compiled=cfg.compile)


def time_steps(run: train.TrainingSetup, sizes: Sizes) -> dict[str, Any]:
    """``sizes.timed`` steps after ``sizes.warmup``, each called as ``train_one_epoch`` calls it."""
    cfg = run.cfg
    plan = epoch_plan(len(run.labels), 1, cfg.seed, run.images.device, run.augment)
    run.step.new_epoch(plan.flips, plan.warps)
    run.train_model.train()

    def step(i: int) -> None:
        s = i % run.steps
        run.step(plan.order[s * cfg.batch_size:(s + 1) * cfg.batch_size])

    for i in range(sizes.warmup):
        step(i)
    with Clock(run.device) as clock:
        for i in range(sizes.warmup, sizes.warmup + sizes.timed):
            step(i)
    steps = sizes.warmup + sizes.timed
    return {"ms_per_step": round(1000 * clock.seconds / sizes.timed, 4),
            "wall_ms_per_step": round(1000 * clock.wall_seconds / sizes.timed, 4),
            "images_per_s": round(cfg.batch_size * sizes.timed / clock.seconds, 1),
            "captured": run.step.graph is not None, "precision": run.precision.name,
            "mean_loss": finite(float(run.step.loss_sum) / (steps * cfg.batch_size)),
            "parameters": count_parameters(run.model)}


class Clock:
    """Seconds of a block of GPU work: between two CUDA events (on CUDA), and wall-clock time
    from a synchronised start to a synchronised end."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = self.wall_seconds = 0.0

    def __enter__(self) -> Clock:
        if self.cuda:
            torch.cuda.synchronize()
            self.events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.events[0].record()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            self.events[1].record()
            self.events[1].synchronize()
        self.wall_seconds = time.perf_counter() - self.t0
        self.seconds = self.events[0].elapsed_time(self.events[1]) / 1000 if self.cuda else self.wall_seconds


def choose(cells: list[dict[str, Any]], batch: int) -> dict[str, Any] | None:
    """The fastest cell at the protocol's batch whose loss stayed finite (all cells are exact)."""
    ran = [c for c in cells if c["batch"] == batch and c["status"] == "ok" and c["mean_loss"] is not None]
    if not ran:
        return None
    best = min(ran, key=lambda c: c["ms_per_step"])
    others = ", ".join(f"{c['model']}/{c['mode']} {c['ms_per_step']:.3f}" for c in ran if c is not best)
    return {k: best[k] for k in ("model", "mode", "batch", "ms_per_step")} | {
        "why": f"fastest at the protocol's batch {batch} (ms per step; others: {others or 'none ran'}); the lean "
               "network is exact at the protocol's input size and the graph computes what eager does"}


def phase1_record(base: TrainConfig, sizes: Sizes, cells: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    return {"image_size": base.image_size, "warmup_steps": sizes.warmup, "timed_steps": sizes.timed,
            "optimizer": {"name": base.optimizer, "lr": base.lr, "momentum": base.momentum,
                          "weight_decay": base.weight_decay},
            "amp": base.amp, "timing": "CUDA events around the timed steps" if base.device == "cuda"
            else "wall clock around the timed steps", "seconds": round(seconds, 2), "cells": cells}


# --- phase 2: the paper protocol ----------------------------------------------------------------

def phase2(base: TrainConfig, chosen: dict[str, Any], sizes: Sizes, args: argparse.Namespace, started: float,
           out: Path) -> dict[str, Any]:
    """``train.fit`` under the time guard, then ``evaluate.evaluate_run``; the run's files copied to ``out``."""
    overrides = dict(sizes.phase2) | ({"epochs": args.epochs} if args.epochs else {})
    cfg = dataclasses.replace(base, model=chosen["model"], step_graph="on" if chosen["mode"] == "graph" else "off",
                              **overrides)
    guard = TimeGuard(deadline=started + args.budget_s, reserve=EVAL_RESERVE_S)
    t = time.monotonic()
    with guard.standing_in():
        result = train.fit(cfg, progress=False)
    fit_s = time.monotonic() - t
    t = time.monotonic()
    metrics = evaluate.evaluate_run(result.run_dir, device=cfg.device, progress=False)
    evaluate_s = time.monotonic() - t
    for name in RUN_FILES:
        shutil.copy2(result.run_dir / name, out / name)
    history = result.history
    seconds = {k: round(float(history[f"{k}_seconds"].sum()), 2) for k in ("train", "val", "checkpoint")}
    return {"status": "finished", "run_name": cfg.run_name, "model": cfg.model, "step_graph": cfg.step_graph,
            "precision": result.precision, "epochs_protocol": PROTOCOLS[cfg.protocol]["epochs"],
            "epochs_asked": cfg.epochs, "epochs_run": result.epochs_run,
            "deviations": protocol_deviations(dataclasses.replace(cfg, epochs=result.epochs_run)),
            "time_guard": guard.record(args.budget_s, cfg.epochs),
            "stages_s": {"fit": round(fit_s, 2), **{f"fit_{k}": v for k, v in seconds.items()},
                         "fit_other": round(fit_s - sum(seconds.values()), 2), "evaluate": round(evaluate_s, 2)},
            "epoch_wall_s": guard.epoch_seconds(),
            "projected_protocol_s": guard.projection(PROTOCOLS[cfg.protocol]["epochs"], fit_s),
            "projected_from_phase1_train_s": round(PROTOCOLS[cfg.protocol]["epochs"] * steps_per_epoch(result, cfg)
                                                   * chosen["ms_per_step"] / 1000, 1),
            "best_val_acc": result.best_val_acc, "last_val_acc": float(history["val_acc"].iloc[-1]),
            "test": test_figures(metrics)}


def steps_per_epoch(result: train.RunResult, cfg: TrainConfig) -> int:
    return int(result.history["train_images"].iloc[0]) // cfg.batch_size


def test_figures(metrics: Any) -> dict[str, Any]:
    dedup, copies = metrics.extra["dedup"], metrics.extra["copies_only"]
    return {"accuracy": metrics.accuracy, "accuracy_ci95": metrics.to_dict()["accuracy_ci95"], "n": metrics.n,
            "tta_flip_accuracy": metrics.tta.accuracy if metrics.tta is not None else None,
            "dedup_accuracy": dedup["accuracy"], "dedup_accuracy_ci95": dedup["accuracy_ci95"], "dedup_n": dedup["n"],
            "copies_only_accuracy": copies["accuracy"], "copies_only_n": copies["n"],
            "balanced_accuracy": metrics.balanced_accuracy, "macro_f1": metrics.macro_f1}


class TimeGuard:
    """Ends ``fit`` after the epoch past which one more would overrun the budget.

    While ``standing_in``, it is ``train.finished``, which ``fit`` asks before every epoch and
    ``save`` asks after one: it notes when each epoch count is first seen, and once
    ``now + GUARD_MARGIN * last epoch + reserve`` passes the deadline it sets the run's
    ``epochs`` to those trained, so that ``fit`` finishes the run as one of that many epochs
    (``final.pt``, ``config.json``, provenance's deviations). It never stops before epoch 1.
    """

    def __init__(self, *, deadline: float, reserve: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline, self.reserve, self.clock = deadline, reserve, clock
        self.seen: dict[int, float] = {}  # epochs completed -> time.monotonic() when first seen
        self.stopped_after: int | None = None
        self.original = train.finished

    @contextlib.contextmanager
    def standing_in(self) -> Iterator[TimeGuard]:
        train.finished = self
        try:
            yield self
        finally:
            train.finished = self.original

    def __call__(self, run: train.TrainingSetup, state: resume.TrainState) -> bool:
        now = self.clock()
        if state.epoch not in self.seen:
            self.seen[state.epoch] = now
            if state.history:
                print_epoch(state.history[-1], run.cfg.epochs, now - self.seen.get(state.epoch - 1, now))
        if self.original(run, state):
            return True
        last = self.seen[state.epoch] - self.seen.get(state.epoch - 1, self.seen[state.epoch])
        if state.epoch == 0 or state.step or now + GUARD_MARGIN * last + self.reserve <= self.deadline:
            return False
        self.stopped_after = state.epoch
        run.cfg = dataclasses.replace(run.cfg, epochs=state.epoch)
        print(f"phase 2: time guard: stopping after epoch {state.epoch} (another would take ~{last:.1f} s "
              f"and end {now + GUARD_MARGIN * last + self.reserve - self.deadline:.0f} s past the budget)",
              flush=True)
        return True

    def epoch_seconds(self) -> list[float]:
        marks = [self.seen[k] for k in sorted(self.seen)]
        return [round(b - a, 3) for a, b in itertools.pairwise(marks)]

    def projection(self, epochs: int, fit_s: float) -> float | None:
        """The whole protocol's fit time: this fit plus its median epoch for each epoch not run."""
        done = self.epoch_seconds()
        return round(fit_s + float(np.median(done)) * max(0, epochs - len(done)), 1) if done else None

    def record(self, budget_s: float, asked: int) -> dict[str, Any]:
        return {"budget_s": budget_s, "reserve_s": self.reserve, "margin": GUARD_MARGIN,
                "stopped": self.stopped_after is not None, "stopped_after_epoch": self.stopped_after,
                "epochs_asked": asked,
                "rule": "after each epoch: stop when now + margin x last epoch + reserve passes the budget; the "
                        "epochs trained are the 80-epoch run's first ones, finished and evaluated as a run of that "
                        "many epochs"}


def print_epoch(row: dict[str, Any], epochs: int, wall: float) -> None:
    print(f"phase 2: epoch {row['epoch']:>2}/{epochs} train acc {row['train_acc']:.4f} val acc {row['val_acc']:.4f} "
          f"lr {float(row['lr']):.0e} {wall:6.2f} s", flush=True)


# --- records ------------------------------------------------------------------------------------

def describe_machine(base: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(base.device)
    record = provenance.collect(device=device)
    gpu = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        gpu = {"name": props.name, "capability": f"{props.major}.{props.minor}",
               "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count,
               "nvidia_smi": nvidia_smi()}
    return {"smoke": SMOKE, "argv": sys.argv[1:], "budget_s": args.budget_s,
            "machine": {"platform": record["platform"], "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "device": str(device), "device_name": record["device_name"]},
            "gpu": gpu,
            "versions": {"python": record["python"], "torch": record["torch"], "cuda": record["cuda"],
                         "cudnn": torch.backends.cudnn.version(), "numpy": record["numpy"]},
            "git": record["git"], "code_sha256": record["code_sha256"], "utc": record["utc"],
            "protocol": {"params": str(PARAMS.relative_to(paths.ROOT)), "protocol": base.protocol,
                         "deviations": protocol_deviations(base)}}


def nvidia_smi() -> str | None:
    """Driver, clocks and power limit as nvidia-smi reports them (None where it is absent)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_report(out: Path, report: dict[str, Any], started: float) -> None:
    report["total_s"] = round(time.monotonic() - started, 1)
    data = {k: v for k, v in report["data"].items() if k != "splits"}
    atomic_write_text(out / "bench_gpu.json", json.dumps(report | {"data": data}, indent=2, default=str))


def print_summary(report: dict[str, Any], out: Path) -> None:
    gpu = report["gpu"]["name"] if report["gpu"] else report["machine"]["device_name"]
    print(f"\n== bench-gpu{' (SMOKE)' if SMOKE else ''}: {gpu}, torch {report['versions']['torch']}, "
          f"CUDA {report['versions']['cuda']}, {report['total_s']} s in all")
    cells = report["phase1"]["cells"]
    for batch in dict.fromkeys(c["batch"] for c in cells):
        print(f"phase 1, ms per step at batch {batch}: " + " | ".join(
            f"{c['model']} {c['mode']} {cell_text(c).split(':')[0]}" for c in cells if c["batch"] == batch))
    print(f"chosen: {report['chosen']}")
    p2 = report["phase2"]
    if p2.get("status") != "finished":
        print(f"phase 2: {p2.get('status')}: {p2.get('error')}")
    else:
        test, guard = p2["test"], p2["time_guard"]
        print(f"phase 2: {p2['epochs_run']}/{p2['epochs_protocol']} epochs"
              f"{' (time guard stopped it)' if guard['stopped'] else ''}, stages {p2['stages_s']}; projected "
              f"{p2['epochs_protocol']}-epoch fit {p2['projected_protocol_s']} s")
        print(f"test accuracy {test['accuracy']:.4f} (n {test['n']}), deduplicated {test['dedup_accuracy']:.4f} "
              f"(n {test['dedup_n']}), flip TTA {test['tta_flip_accuracy']}")
    print(f"written: {', '.join(str(out / n) for n in ('bench_gpu.json', *RUN_FILES) if (out / n).exists())}")


def cell_text(cell: dict[str, Any]) -> str:
    return f"{cell['ms_per_step']:.3f}" if cell["status"] == "ok" else cell["status"]


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, BenchError) else f"{type(e).__name__}: {text}"


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


if __name__ == "__main__":
    raise SystemExit(main())

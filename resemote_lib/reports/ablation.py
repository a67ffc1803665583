"""The ablation the paper does not report: what the SE block and the residual blocks buy.

``run_ablation`` trains every variant of ``model.VARIANTS`` with several seeds under one
protocol (each a full run: ``fit``, then ``evaluate_run`` on the official and the
deduplicated test sets), and measures each variant's parameters, FLOPs and training and
inference speed; ``summarize`` gives mean and spread over seeds. Runs live under
``results/<run_name>/runs/<variant>_s<seed>/`` and are skipped when already evaluated,
so an interrupted ablation resumes. A progress bar over the runs says which variant and
seed is training (and which are done or skipped), above each run's own epoch bar.

``paired_differences`` answers the ablation's question on the same test images: each variant
against ``REFERENCE`` (the paper's network in its lean form), seed-matched (seed s of the variant
against seed s of the reference), with the paired difference's 95% interval and the exact McNemar
p-value (``comparison``), per seed and over all seeds (``seed == "all"``: each image's difference averaged over the seeds
first, so that every test image counts once; see ``comparison``). The intervals cover the test
images' sampling; the spread between training seeds shows in the per-seed rows and the summary.
``contrasts`` reads the four variants as the 2x2 design they are (SE block with or without, residual
blocks with or without) and gives each block's effect twice, with and without the other block
(``CONTRASTS``: the variant with the block minus the one without it, paired the same way).
``per_class_recall`` gives each run's recall per class. This module trains (``run_ablation`` calls
``train.fit``): it is the experiment and its report, a tool over the core like the others.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..comparison import paired_difference
from ..device import Precision, choose_precision, resolve_device
from ..evaluate import evaluate_run
from ..inference import predict_logits
from ..labels import CLASS_NAMES
from ..model import build_model, count_parameters, flops_per_image
from ..params import TrainConfig, resolve
from ..runs import open_split, run_dir_for
from ..train import fit

METRICS = ["accuracy", "dedup_accuracy", "balanced_accuracy", "macro_f1", "nll", "ece"]
REFERENCE = "resemotenet_lean"  # what every ablated variant is compared with
TEST_SETS = ("official", "dedup")  # every test image; only those with no copy in train or val
PAIRED_COLUMNS = ["variant", "reference", "test_set", "seed", "n", "seeds", "accuracy", "reference_accuracy", "difference",
                  "low", "high", "variant_only", "reference_only", "mcnemar_p"]
# The 2x2 design of the variants (SE block x residual blocks): each block's effect, with and without the other.
# Each contrast pairs the variant with the block and the same variant without it, lean with lean (the same
# cost per image) where both ran, else the full forms (the GPU ablations run resemotenet and cnn_res).
CONTRASTS = (  # (block, context, [(with the block, without it), ...] in order of preference)
    ("SE block", "with the residual blocks", [("resemotenet_lean", "cnn_res_lean"), ("resemotenet", "cnn_res")]),
    ("SE block", "without the residual blocks", [("cnn_se", "cnn")]),
    ("residual blocks", "with the SE block", [("resemotenet_lean", "cnn_se"), ("resemotenet", "cnn_se")]),
    ("residual blocks", "without the SE block", [("cnn_res_lean", "cnn"), ("cnn_res", "cnn")]),
)
CONTRAST_COLUMNS = ["block", "context", "with_variant", "without_variant", "test_set", "seed", "n", "seeds",
                    "with_accuracy", "without_accuracy", "difference", "low", "high", "with_only", "without_only",
                    "mcnemar_p"]
COLUMNS = ["variant", "seed", "params", "gflops", "train_img_s", "infer_img_s", *METRICS, "best_epoch", "run"]


def run_ablation(cfg: TrainConfig, variants: Sequence[str], seeds: Sequence[int], *, progress: bool = True,
                 keep_checkpoints: bool = False, train_missing: bool = True) -> pd.DataFrame:
    """One row per (variant, seed) (``COLUMNS``), training and evaluating what is missing.

    Args:
        cfg: the protocol and data; its ``model`` and ``seed`` are replaced per run.
        variants: names from ``model.VARIANTS``.
        seeds: training seeds (the test set is the same for all: ``cfg.split_seed``).
        progress: a bar over the runs naming the variant and seed at work, and each run's
            epoch bars.
        keep_checkpoints: keep each run's weights; by default they are deleted once the run
            is evaluated (10 runs of the full network hold about 12 GB).
        train_missing: False tabulates the finished runs only (an ablation still training, or
            stopped half-way); ``table.attrs["missing"]`` names the others, as ``variant_s<seed>``.
    """
    base = run_dir_for(cfg) / "runs"
    rows, trained, speeds, missing = [], 0, {}, []
    test_images = None  # the first 512 test images, opened once for every variant's inference speed
    bar = tqdm(total=len(variants) * len(seeds), desc="ablation", unit="run", disable=not progress)
    try:
        for seed in seeds:  # seeds outer: an ablation stopped half-way has every variant at least once
            for variant in variants:
                if variant not in speeds:
                    bar.set_description(f"ablation: {variant}, measuring speed")
                    test_images = open_split(cfg, "test").images[:512] if test_images is None else test_images
                    speeds[variant] = _speeds(cfg, variant, test_images)
                run_cfg = _run_config(cfg, base, variant, seed)
                run_dir = run_dir_for(run_cfg)
                if (run_dir / "metrics.json").is_file():
                    bar.set_description(f"ablation: {variant} seed {seed} already done")
                elif not train_missing:
                    missing.append(run_dir.name)
                    bar.update(1)
                    continue
                else:
                    _train_and_test(run_cfg, bar, progress, keep_checkpoints)
                    trained += 1
                rows.append({"variant": variant, "seed": seed, **speeds[variant], **_metrics(run_dir),
                             "run": run_dir.relative_to(base.parent).as_posix()})  # beside ablation.csv
                bar.update(1)
        bar.set_description(f"ablation: done, {trained} trained now, {len(rows) - trained} already done"
                            + (f", {len(missing)} not finished (not trained: train_missing is off)" if missing else ""))
    finally:
        bar.close()
    order = {name: k for k, name in enumerate(variants)}
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values(
        ["variant", "seed"], key=lambda c: c.map(order) if c.name == "variant" else c, kind="stable", ignore_index=True)
    table.attrs["missing"] = missing
    return table


def _run_config(cfg: TrainConfig, base: Path, variant: str, seed: int) -> TrainConfig:
    """The ablation's run of ``variant`` and ``seed``: ``cfg`` with only those (and its folder) changed."""
    with warnings.catch_warnings():  # the variant is the ablation's subject, not a deviation to warn of
        warnings.filterwarnings("ignore", message=r".*overrides the .* protocol's \{'model'")
        return resolve({**cfg.to_dict(), "model": variant, "seed": seed, "results_dir": str(base),
                        "run_name": f"{variant}_s{seed}"}, where=f"ablation {variant} seed {seed}")


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


def write(table: pd.DataFrame, flow: pd.DataFrame, out_dir: Path, note: str = "",
          reference: str = REFERENCE) -> dict[str, Path]:
    """The ablation's files in ``out_dir``: ``ablation.csv`` (per run), ``ablation_summary.csv``,
    ``paired.csv`` (``paired_differences`` against ``reference``), ``contrasts.csv``
    (``contrasts``), ``recall.csv`` (``per_class_recall``), ``gradient_flow.csv`` and
    ``ablation.md`` (the summary as mean ± spread over seeds, the paired differences, how seeds
    are combined, what each block buys, and ``note``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, paired, blocks = summarize(table), paired_differences(table, out_dir, reference), contrasts(table, out_dir)
    files = {"runs": out_dir / "ablation.csv", "summary": out_dir / "ablation_summary.csv",
             "paired": out_dir / "paired.csv", "contrasts": out_dir / "contrasts.csv", "recall": out_dir / "recall.csv",
             "flow": out_dir / "gradient_flow.csv", "md": out_dir / "ablation.md"}
    table.to_csv(files["runs"], index=False)
    summary.to_csv(files["summary"], index=False)
    paired.to_csv(files["paired"], index=False)
    blocks.to_csv(files["contrasts"], index=False)
    per_class_recall(table, out_dir).to_csv(files["recall"], index=False)
    flow.to_csv(files["flow"], index=False)
    files["md"].write_text("# Ablation: what the SE block and the residual blocks buy\n\n"
                           + _summary_markdown(summary) + "\n\nMean ± standard deviation over seeds (± 0.00: one "
                           "seed). Test accuracy: the official test set; dedup: only its images with no copy in "
                           "train or val. Train img/s: measured during each run, whatever else the machine ran.\n\n"
                           + _paired_markdown(paired, reference) + "\n\n"
                           + _contrasts_markdown(blocks, missing_contrasts(table)) + "\n\n"
                           + _missing_note(table) + note + "\n")
    return files


def _missing_note(table: pd.DataFrame) -> str:
    missing = table.attrs.get("missing") or []
    return (f"**Partial: {len(missing)} run(s) not finished and not in these tables**: {', '.join(missing)}.\n\n"
            if missing else "")


def _summary_markdown(summary: pd.DataFrame) -> str:
    percent = (("test acc %", "accuracy"), ("dedup acc %", "dedup_accuracy"), ("balanced acc %", "balanced_accuracy"),
               ("macro-F1 %", "macro_f1"))
    shown = pd.DataFrame({
        "variant": summary["variant"], "params (M)": (summary["params"] / 1e6).round(2),
        "GFLOPs/img": summary["gflops"].round(3), "train img/s": summary["train_img_s"].round(1),
        "infer img/s": summary["infer_img_s"].round(1), "seeds": summary["seeds"],
        **{name: [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(summary[f"{key}_mean"], summary[f"{key}_std"],
                                                                      strict=True)] for name, key in percent},
        "NLL": [f"{m:.3f} ± {s:.3f}" for m, s in zip(summary["nll_mean"], summary["nll_std"], strict=True)],
        "ECE": [f"{m:.3f} ± {s:.3f}" for m, s in zip(summary["ece_mean"], summary["ece_std"], strict=True)],
    })
    return shown.to_markdown(index=False)


def _paired_markdown(paired: pd.DataFrame, reference: str) -> str:
    if paired.empty:
        return f"No paired comparison: no run of `{reference}` to compare with."
    shown = pd.DataFrame({
        "variant": paired["variant"], "test set": paired["test_set"], "seed": paired["seed"].astype(str),
        "n": paired["n"], "acc %": (100 * paired["accuracy"]).round(2),
        f"{reference} acc %": (100 * paired["reference_accuracy"]).round(2),
        "difference (pp)": _with_interval(paired),
        "only variant right": paired["variant_only"], f"only {reference} right": paired["reference_only"],
        "McNemar p": paired["mcnemar_p"].map("{:.2g}".format),
    })
    return (f"## Each variant against `{reference}`, on the same test images\n\n" + shown.to_markdown(index=False)
            + f"\n\nDifference: the variant's accuracy minus `{reference}`'s on the same images, in percentage "
            "points, with its 95% interval (Wald, for paired proportions); McNemar p: exact two-sided test on the "
            "images only one of the two gets right. Seeds are matched (seed s against seed s); `all`: each image's "
            "difference averaged over the seeds first (each image counts once), its interval from those per-image "
            "differences, its p-value the exact sign test of the images the variant gets right more often against "
            "those it gets right less often. The intervals cover the test set's sampling, not the spread between "
            "training seeds (the per-seed rows and the table above show that). p-values are not adjusted for the "
            "number of comparisons.")


def _with_interval(frame: pd.DataFrame) -> list[str]:
    """Each row's ``difference`` and 95% interval (``low``, ``high``) in percentage points."""
    return [f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"
            for d, lo, hi in zip(frame["difference"], frame["low"], frame["high"], strict=True)]


def _contrasts_markdown(blocks: pd.DataFrame, missing: list[str]) -> str:
    title = "## What each block buys: with it minus without it, in both contexts\n\n"
    not_run = f"Not measured, its variants did not run: {'; '.join(missing)}." if missing else ""
    if blocks.empty:
        return title + (not_run or "No contrast.")
    shown = pd.DataFrame({
        "block": blocks["block"], "context": blocks["context"],
        "with - without": [f"{w} - {wo}" for w, wo in zip(blocks["with_variant"], blocks["without_variant"], strict=True)],
        "test set": blocks["test_set"], "seed": blocks["seed"].astype(str), "n": blocks["n"],
        "difference (pp)": _with_interval(blocks),
        "only the one with it right": blocks["with_only"], "only the one without it right": blocks["without_only"],
        "McNemar p": blocks["mcnemar_p"].map("{:.2g}".format),
    })
    return (title + shown.to_markdown(index=False)
            + "\n\nThe variants are a 2x2 design (SE block yes/no x residual blocks yes/no): each block's effect is "
            "the variant with it minus the same variant without it, measured with and without the other block; "
            "paired on the same test images, seed s against seed s, and combined over seeds (`all`) as in the "
            "paired table. " + not_run)


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


def inference_img_s(model: torch.nn.Module, images: torch.Tensor, batch_size: int, device: torch.device,
                    precision: Precision) -> float:
    """Images/s of ``predict_logits`` over ``images`` (one warm batch first, then one timed pass)."""
    predict_logits(model, images[:batch_size], batch_size=batch_size, device=device, precision=precision)
    start = time.perf_counter()
    predict_logits(model, images, batch_size=batch_size, device=device, precision=precision).cpu()
    return len(images) / max(time.perf_counter() - start, 1e-9)


def _speeds(cfg: TrainConfig, variant: str, test_images: torch.Tensor) -> dict[str, float]:
    """Parameters, GFLOPs per image and inference images/s over ``test_images`` at the
    evaluation batch size."""
    device = resolve_device(cfg.device)
    model = build_model(variant, image_size=cfg.image_size)
    flops = flops_per_image(model, cfg.image_size)
    speed = inference_img_s(model.to(device), test_images, cfg.eval_batch_size, device,
                            choose_precision(device, cfg.amp))
    return {"params": count_parameters(model), "gflops": flops / 1e9, "infer_img_s": speed}


def _metrics(run_dir: Path) -> dict[str, float]:
    m = json.loads((run_dir / "metrics.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    return {"train_img_s": float(history["train_images"].sum() / history["train_seconds"].sum()),
            "accuracy": m["accuracy"], "dedup_accuracy": (m.get("dedup") or {}).get("accuracy"), "nll": m["nll"],
            "ece": m["ece"], "balanced_accuracy": m["balanced_accuracy"], "macro_f1": m.get("macro_f1"),
            "best_epoch": m.get("checkpoint_epoch")}


def paired_differences(table: pd.DataFrame, out_dir: Path, reference: str = REFERENCE) -> pd.DataFrame:
    """Each variant of ``table`` (``run_ablation``'s) minus ``reference`` on the same test images
    (``PAIRED_COLUMNS``): per test set, one row per seed both have, then a row over all of them
    (seed ``"all"``) when there are several. ``out_dir``: the ablation's folder (``table["run"]``
    is relative to it). Empty when ``reference`` has no run."""
    runs = {(r.variant, r.seed): Path(out_dir) / r.run for r in table.itertuples()}
    rows = []
    for variant in dict.fromkeys(table["variant"]):
        seeds = [s for (v, s) in runs if v == variant and (reference, s) in runs]
        if variant == reference or not seeds:
            continue
        for test_set in TEST_SETS:
            pairs = {seed: _paired_correctness(runs[variant, seed], runs[reference, seed], test_set) for seed in seeds}
            for seed, (mine, theirs) in pairs.items():
                rows.append(_paired_row(variant, reference, test_set, seed, mine, theirs))
            if len(pairs) > 1:
                rows.append(_paired_row(variant, reference, test_set, "all", *_stacked(pairs.values())))
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def contrasts(table: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """What each block buys (``CONTRAST_COLUMNS``): for each of ``CONTRASTS``, its first pair of
    variants that both ran, the variant with the block minus the one without it on the same test
    images, per seed and over seeds, as ``paired_differences`` pairs them. A contrast none of whose
    pairs ran has no row (``missing_contrasts`` names it)."""
    frames = []
    for block, context, pairs in CONTRASTS:
        pair = _pair_that_ran(pairs, table)
        if pair is not None:
            both = table[table["variant"].isin(pair)]
            frames.append(paired_differences(both, out_dir, reference=pair[1]).rename(columns=_AS_CONTRAST)
                          .assign(block=block, context=context))
    return pd.concat(frames, ignore_index=True)[CONTRAST_COLUMNS] if frames else pd.DataFrame(columns=CONTRAST_COLUMNS)


def missing_contrasts(table: pd.DataFrame) -> list[str]:
    """The contrasts of ``CONTRASTS`` that ``table``'s variants cannot give, with what each needs."""
    return [f"{block} {context} (needs " + " or ".join(f"{w} and {wo}" for w, wo in pairs) + ")"
            for block, context, pairs in CONTRASTS if _pair_that_ran(pairs, table) is None]


_AS_CONTRAST = {"variant": "with_variant", "reference": "without_variant", "accuracy": "with_accuracy",
                "reference_accuracy": "without_accuracy", "variant_only": "with_only", "reference_only": "without_only"}


def _pair_that_ran(pairs: list[tuple[str, str]], table: pd.DataFrame) -> tuple[str, str] | None:
    """The first of ``pairs`` (with the block, without it) whose two variants both have runs in ``table``."""
    ran = set(table["variant"])
    return next((pair for pair in pairs if set(pair) <= ran), None)


def per_class_recall(table: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """Recall of each class (canonical order) in each run: columns variant, seed, class, recall, support."""
    rows = []
    for r in table.itertuples():
        per_class = {c["class"]: c for c in json.loads((Path(out_dir) / r.run / "metrics.json").read_text())["per_class"]}
        rows += [{"variant": r.variant, "seed": r.seed, "class": name, "recall": per_class[name]["recall"],
                  "support": per_class[name]["support"]} for name in CLASS_NAMES if name in per_class]
    return pd.DataFrame(rows, columns=["variant", "seed", "class", "recall", "support"])


def accuracy_intervals(table: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """Each run's accuracy on each test set with its 95% interval (as ``metrics.json`` gives it):
    columns variant, seed, test_set, accuracy, low, high."""
    rows = []
    for r in table.itertuples():
        m = json.loads((Path(out_dir) / r.run / "metrics.json").read_text())
        for test_set, part in (("official", m), ("dedup", m.get("dedup") or {})):
            if part.get("accuracy") is not None:
                low, high = part["accuracy_ci95"]
                rows.append({"variant": r.variant, "seed": r.seed, "test_set": test_set, "accuracy": part["accuracy"],
                             "low": low, "high": high})
    return pd.DataFrame(rows, columns=["variant", "seed", "test_set", "accuracy", "low", "high"])


def _stacked(pairs) -> tuple[np.ndarray, np.ndarray]:
    """Seed-matched pairs as two ``(seeds, images)`` arrays, every seed's images in one order."""
    pairs = list(pairs)
    order = pairs[0][0].index
    if any(not mine.index.equals(order) for mine, _ in pairs):
        raise ValueError("the seeds of one variant were tested on different images: they cannot be combined")
    return (np.vstack([mine.to_numpy() for mine, _ in pairs]), np.vstack([theirs.to_numpy() for _, theirs in pairs]))


def _paired_row(variant: str, reference: str, test_set: str, seed: int | str, mine: pd.Series | np.ndarray,
                theirs: pd.Series | np.ndarray) -> dict:
    d = paired_difference(np.asarray(mine), np.asarray(theirs))
    return {"variant": variant, "reference": reference, "test_set": test_set, "seed": seed, "n": d.n, "seeds": d.seeds,
            "accuracy": d.accuracy_a, "reference_accuracy": d.accuracy_b, "difference": d.difference, "low": d.low,
            "high": d.high, "variant_only": d.a_only, "reference_only": d.b_only, "mcnemar_p": d.mcnemar_p}


def _paired_correctness(run: Path, reference_run: Path, test_set: str) -> tuple[pd.Series, pd.Series]:
    """Per test image (aligned by id), whether each of two runs classified it right."""
    mine, theirs = (_correctness(r, test_set) for r in (run, reference_run))
    if set(mine.index) != set(theirs.index):
        raise ValueError(f"{run} and {reference_run} were tested on different images ({test_set}: "
                         f"{len(mine)} and {len(theirs)}, {len(set(mine.index) ^ set(theirs.index))} not shared): "
                         "a paired comparison needs the same test set")
    return mine, theirs.loc[mine.index]


def _correctness(run: Path, test_set: str) -> pd.Series:
    predictions = pd.read_csv(run / "predictions.csv", keep_default_na=False, dtype=str)
    if test_set == "dedup":
        predictions = predictions[predictions["duplicate_of"] == ""]
    return (predictions["true"] == predictions["predicted"]).set_axis(predictions["id"]).sort_index()


__all__ = ["COLUMNS", "CONTRASTS", "CONTRAST_COLUMNS", "METRICS", "PAIRED_COLUMNS", "REFERENCE", "accuracy_intervals",
           "contrasts", "inference_img_s", "missing_contrasts", "paired_differences", "per_class_recall", "run_ablation",
           "summarize", "write"]

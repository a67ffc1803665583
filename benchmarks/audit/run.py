"""The data-quality audit measured on the real FER2013 (Kaggle msambare/fer2013 folders).

    python benchmarks/audit/run.py [--data data/fer2013] [--out results/bench]

1. time: ``quality_report`` on the three splits decoded at ``AUDIT_SIZE``, no cache;
2. recall of byte-identical copies: the ground truth is the SHA-256 of each JPEG file
   (never the audit), every cross-split pair of files with one digest; found = reported as
   kind ``exact``; pairs of blank images are kept out of ``pairs`` by design and counted
   apart (they are all in ``blanks``);
3. precision of near pairs from ``fer2013_reviewed_pairs.csv`` (pairs drawn at random from
   strata of correlation x hash distance, reviewed blind, verdict ``same`` photograph or
   not): per stratum, the reviewed share of ``same`` times the stratum's population (the
   non-exact pairs of a wide search) gives the expected false positives over the threshold
   and false negatives under it;
4. the test split without ``test_excluded``, what the clean protocol removes per reason,
   label conflicts and blanks.
Writes ``audit.json`` and ``audit.md`` to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from resemote_lib import paths
from resemote_lib.data import FaceDataset, open_splits
from resemote_lib.data.audit import AUDIT_SIZE, QualityReport, quality_report
from resemote_lib.metrics import wilson_interval

HERE = Path(__file__).resolve().parent
REVIEWED = HERE / "fer2013_reviewed_pairs.csv"
REVIEW_COLUMNS = ["sample", "round", "drawn_from", "split_a", "id_a", "split_b", "id_b", "kind", "hamming", "correlation",
                  "corr_lo", "corr_hi", "ham_lo", "ham_hi", "verdict", "note"]


def file_of(ds: FaceDataset, item_id: str) -> Path:
    """The JPEG behind an item of the folder layout (``<root>/<train|test>/<class>/<name>``)."""
    if ds.layout != "fer2013-folders":
        raise ValueError(f"{ds.root}: layout {ds.layout!r}; byte-level ground truth needs the image folders "
                         "(Kaggle msambare/fer2013), whose files carry the bytes")
    return ds.root / ("train" if ds.split == "train" else "test") / item_id


def byte_identical_pairs(splits: dict[str, FaceDataset]) -> tuple[set, set, int]:
    """Cross-split and within-split pairs ``((split, index), (split, index))`` of files
    with the same SHA-256 (each pair in splits' order), and the number of digests shared."""
    order = {s: k for k, s in enumerate(splits)}
    by_digest: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, ds in splits.items():
        for i, item_id in enumerate(ds.ids):
            by_digest[hashlib.sha256(file_of(ds, item_id).read_bytes()).hexdigest()].append((name, i))
    cross, within = set(), set()
    shared = 0
    for members in by_digest.values():
        if len(members) < 2:
            continue
        shared += 1
        for a, b in itertools.combinations(sorted(members, key=lambda m: (order[m[0]], m[1])), 2):
            (cross if a[0] != b[0] else within).add((a, b))
    return cross, within, shared


def recall(report: QualityReport, splits: dict[str, FaceDataset]) -> dict:
    t = time.perf_counter()
    truth_cross, truth_within, shared = byte_identical_pairs(splits)
    seconds = time.perf_counter() - t
    exact = report.pairs[report.pairs["kind"] == "exact"]
    found = {((r.split_a, r.index_a), (r.split_b, r.index_b)) for r in exact.itertuples()}
    blank = set(zip(report.blanks["split"], report.blanks["index"], strict=True))

    def score(truth: set) -> dict:
        hit = truth & found
        missed = truth - found
        missed_blank = {p for p in missed if p[0] in blank and p[1] in blank}
        non_blank = len(truth) - len(missed_blank)
        return {"pairs": len(truth), "found_as_exact": len(hit),
                "recall": len(hit) / len(truth) if truth else 1.0,
                "pairs_of_blank_images (reported in blanks, kept out of pairs)": len(missed_blank),
                "recall_excluding_blank_pairs": len(hit) / non_blank if non_blank else 1.0,
                "missed_other": sorted(map(str, missed - missed_blank))[:10]}

    truth_all = truth_cross | truth_within
    return {"ground_truth": "SHA-256 of each JPEG file, pairs of files with one digest",
            "digests_shared_by_2+_files": shared, "hash_seconds": round(seconds, 1),
            "cross_split": score(truth_cross), "within_split": score(truth_within),
            "exact_pairs_not_byte_identical": len(found - truth_all)}


def _in_box(frame: pd.DataFrame, box: tuple[float, float, int, int]) -> pd.Series:
    lo, hi, hlo, hhi = box
    upper = frame["correlation"] <= hi if hi >= 1.0 else frame["correlation"] < hi
    return (frame["correlation"] >= lo) & upper & (frame["hamming"] >= hlo) & (frame["hamming"] <= hhi)


def _box_label(box: tuple[float, float, int, int]) -> tuple[str, str]:
    lo, hi, hlo, hhi = box
    return f"[{lo:g}, {hi:g}{']' if hi >= 1 else ')'}", f"{hlo}-{hhi}"


def precision(report: QualityReport, splits: dict[str, FaceDataset], reviewed_csv: Path) -> dict:
    """Precision over the threshold and expected errors either side of it, from the review.

    Strata are disjoint: ``near`` pairs in each box the non-exact samples were drawn from;
    ``flipped`` pairs in the box the census of mirrored pairs covered, and in the other
    boxes outside it. Each stratum is split by whether the report keeps the pair; a cell's
    share of ``same`` verdicts times its population (the non-exact pairs of a wide search,
    same coordinates as the CSV) gives its expected false positives (kept) or negatives.
    """
    rev = pd.read_csv(reviewed_csv, dtype={"id_a": str, "id_b": str, "note": str}, keep_default_na=False)
    if list(rev.columns) != REVIEW_COLUMNS:
        raise ValueError(f"{reviewed_csv}, line 1: expected columns {REVIEW_COLUMNS}, got {list(rev.columns)}")
    bad = rev[~rev["verdict"].isin(["same", "different"])]
    if len(bad):
        raise ValueError(f"{reviewed_csv}, line {bad.index[0] + 2}: verdict {bad.iloc[0]['verdict']!r}, "
                         "expected 'same' or 'different'")
    twice = rev[rev.duplicated(["id_a", "id_b"], keep=False)].groupby(["id_a", "id_b"])["verdict"].nunique()
    if (twice > 1).any():
        raise ValueError(f"{reviewed_csv}: pair {twice[twice > 1].index[0]} reviewed twice with two verdicts")
    reviewed_rows = len(rev)
    rev = rev.drop_duplicates(["id_a", "id_b"]).reset_index(drop=True)
    settings = report.settings
    t = time.perf_counter()
    lowest = float(rev["corr_lo"].min())
    wide = quality_report(splits, use_cache=False, min_correlation=lowest, min_correlation_flipped=lowest,
                          max_hamming=int(rev["ham_hi"].max()))
    wide_seconds = time.perf_counter() - t
    pop = wide.pairs[wide.pairs["kind"] != "exact"].copy()
    kept_ids = set(zip(report.pairs["id_a"], report.pairs["id_b"], strict=True))
    for frame in (pop, rev):
        frame["kept"] = [(a, b) in kept_ids for a, b in zip(frame["id_a"], frame["id_b"], strict=True)]
    in_wide = set(zip(pop["id_a"], pop["id_b"], strict=True))
    unmatched = [int(n) for n, a, b in zip(rev["sample"], rev["id_a"], rev["id_b"], strict=True)
                 if (a, b) not in in_wide]

    boxes = {d: sorted({tuple(b) for b in g[["corr_lo", "corr_hi", "ham_lo", "ham_hi"]].itertuples(index=False)})
             for d, g in rev.groupby("drawn_from")}
    census = boxes.get("flipped", [])

    def stratum(frame: pd.DataFrame, kind: str, box: tuple) -> pd.Series:
        mask = (frame["kind"] == kind) & _in_box(frame, box)
        if kind == "flipped" and box not in census:
            for c in census:  # the census covers these
                mask &= ~_in_box(frame, c)
        return mask

    strata = [("flipped", b) for b in census] + [(k, b) for b in boxes.get("non-exact", []) for k in ("near", "flipped")]
    cells, covered_pop = [], pd.Series(False, index=pop.index)
    for kind, box in strata:
        in_pop, in_rev = stratum(pop, kind, box), stratum(rev, kind, box)
        covered_pop |= in_pop
        for kept in (True, False):
            sub = rev[in_rev & (rev["kept"] == kept)]
            population = int((in_pop & (pop["kept"] == kept)).sum())
            if not len(sub) and not population:
                continue
            n, same = len(sub), int((sub["verdict"] == "same").sum())
            corr, ham = _box_label(box)
            cells.append({"kind": kind, "correlation": corr, "hamming": ham, "kept_by_report": kept,
                          "reviewed": n, "same": same, "population": population,
                          "expected_false_positives": round(population * (n - same) / n, 1) if kept and n else 0.0,
                          "expected_false_negatives": round(population * same / n, 1) if not kept and n else 0.0})
    cells.sort(key=lambda c: (c["kind"] != "near", c["hamming"], c["correlation"], not c["kept_by_report"]))
    cells_df = pd.DataFrame(cells)
    reviewed_cells = cells_df[cells_df["reviewed"] > 0]
    kept_rev = rev[rev["kept"]]
    k, n = int((kept_rev["verdict"] == "same").sum()), len(kept_rev)
    kept_pop = int(reviewed_cells.loc[reviewed_cells["kept_by_report"], "population"].sum())
    fp = float(cells_df["expected_false_positives"].sum())
    fn = float(cells_df["expected_false_negatives"].sum())
    unreviewed = cells_df[cells_df["reviewed"] == 0]
    rejected = rev[~rev["kept"]]
    by_kind = {}
    for kind, g in kept_rev.groupby("kind"):
        by_kind[kind] = {"reviewed": len(g), "same": int((g["verdict"] == "same").sum())}
    diff = rev[rev["verdict"] == "different"]
    return {
        "threshold": {key: settings[key] for key in ("min_correlation", "min_correlation_flipped", "max_hamming")},
        "reviewed_rows": reviewed_rows, "reviewed_pairs": len(rev),
        "reviewed_same": int((rev["verdict"] == "same").sum()),
        "reviewed_kept": n, "reviewed_kept_same": k, "reviewed_kept_by_kind": by_kind,
        "precision_reviewed": k / n if n else None, "precision_reviewed_wilson95": wilson_interval(k, n),
        "precision_estimated (strata-weighted)": 1 - fp / kept_pop if kept_pop else None,
        "expected_false_positives_over_threshold": round(fp, 1),
        "expected_false_negatives_in_reviewed_strata_under_threshold": round(fn, 1),
        "reviewed_rejected": len(rejected), "reviewed_rejected_same": int((rejected["verdict"] == "same").sum()),
        "highest_correlation_reviewed_different": {
            kind: float(g["correlation"].max()) for kind, g in diff[diff["hamming"] <= settings["max_hamming"]]
            .groupby("kind")},
        "lowest_correlation_reviewed_same": float(rev[rev["verdict"] == "same"]["correlation"].min()),
        "non_exact_pairs_kept": int((report.pairs["kind"] != "exact").sum()),
        "of_which_in_reviewed_cells": kept_pop,
        "kept_pairs_in_unreviewed_cells": int(unreviewed.loc[unreviewed["kept_by_report"], "population"].sum()),
        "rejected_pairs_in_unreviewed_cells": int(unreviewed.loc[~unreviewed["kept_by_report"], "population"].sum()),
        "wide_search": {"min_correlation": lowest, "max_hamming": int(rev["ham_hi"].max()),
                        "non_exact_pairs": len(pop), "outside_every_stratum": int((~covered_pop).sum()),
                        "seconds": round(wide_seconds, 1)},
        "reviewed_pairs_not_in_wide_search": unmatched,
        "cells": cells,
    }


def quality(report: QualityReport, splits: dict[str, FaceDataset]) -> dict:
    excluded = report.test_excluded()
    clean = report.clean_exclusions()
    conflicts = report.conflicts()
    groups = report.groups()
    return {
        "pairs": len(report.pairs), "summary": report.summary().to_dict("records"),
        "groups": int(groups["group"].nunique()) if len(groups) else 0, "images_in_groups": len(groups),
        "conflict_groups": int(conflicts["group"].nunique()) if len(conflicts) else 0,
        "conflict_images": len(conflicts),
        "conflict_images_per_split": conflicts.groupby("split").size().to_dict(),
        "blanks": len(report.blanks),
        "blanks_per_reason": report.blanks.groupby("reason").size().to_dict(),
        "blanks_per_split": report.blanks.groupby("split").size().to_dict(),
        "test": len(splits["test"]), "test_excluded": len(excluded),
        "test_excluded_per_kind": excluded.groupby("kind").size().to_dict(),
        "test_excluded_by_split": excluded.groupby("by_split").size().to_dict(),
        "test_deduplicated": len(splits["test"]) - len(excluded),
        "clean_exclusions_per_reason": {f"{s}/{r}": int(v) for (s, r), v in
                                        clean.groupby(["split", "reason"]).size().items()},
        "clean_train": len(splits["train"]) - int((clean["split"] == "train").sum()),
        "clean_val": len(splits["val"]) - int((clean["split"] == "val").sum()),
    }


def markdown(out: dict) -> str:
    t, r, p, q = out["timing"], out["recall"], out["precision"], out["quality"]
    rc = r["cross_split"]
    lines = [
        "# Data-quality audit on the real FER2013",
        "",
        f"Written by `python benchmarks/audit/run.py` on {out['machine']['platform']} "
        f"({out['machine']['cpus']} CPUs); every number below comes from `audit.json`.",
        "",
        "## Time",
        "",
        f"- `quality_report` on {q['test'] + out['sizes']['train'] + out['sizes']['val']:,} images at "
        f"{AUDIT_SIZE}x{AUDIT_SIZE}, no cache: **{t['quality_report_s']:.1f} s** "
        f"(opening the splits: {t['open_splits_s']:.1f} s; process peak RSS {t['peak_rss_mib']:.0f} MiB)",
        "",
        "## Recall on byte-identical copies (ground truth: SHA-256 of the JPEG files)",
        "",
        "| | pairs | found as exact | recall | pairs of blank images (in `blanks`) | recall without them |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("cross_split", "within_split"):
        s = r[name]
        lines.append(f"| {name.replace('_', '-')} | {s['pairs']:,} | {s['found_as_exact']:,} | {s['recall']:.4f} | "
                     f"{s['pairs_of_blank_images (reported in blanks, kept out of pairs)']} | "
                     f"{s['recall_excluding_blank_pairs']:.4f} |")
    lines += [
        "",
        f"Every byte-identical cross-split pair of non-blank images is found ({rc['found_as_exact']:,}); the "
        f"{rc['pairs_of_blank_images (reported in blanks, kept out of pairs)']} others pair FER2013's identical "
        "all-black files, which the audit reports in `blanks` instead of pairing (the clean protocol removes "
        f"them from train). Exact pairs that are not byte-identical: {r['exact_pairs_not_byte_identical']}.",
        "",
        "## Precision of near pairs (reviewed sample)",
        "",
        f"Thresholds: correlation >= {p['threshold']['min_correlation']} (>= "
        f"{p['threshold']['min_correlation_flipped']} for a match with the mirror image), hash distance <= "
        f"{p['threshold']['max_hamming']} bits. `fer2013_reviewed_pairs.csv` holds {p['reviewed_pairs']} distinct "
        "non-exact pairs: random samples from strata of correlation x hash distance around the threshold, and "
        "every mirrored pair over 0.92 (a census), each shown side by side in random order with a number only "
        "and judged 'same photograph' or not.",
        "",
        f"- kept by the report: {p['reviewed_kept']} reviewed, {p['reviewed_kept_same']} same "
        f"({p['reviewed_kept_by_kind']}): precision **{p['precision_reviewed']:.3f}** (95% Wilson "
        f"{p['precision_reviewed_wilson95'][0]:.3f}-{p['precision_reviewed_wilson95'][1]:.3f}); weighted by "
        f"stratum population {p['precision_estimated (strata-weighted)']:.3f}",
        f"- expected false positives among the {p['non_exact_pairs_kept']:,} non-exact pairs kept: "
        f"**{p['expected_false_positives_over_threshold']}** ({p['of_which_in_reviewed_cells']:,} lie in reviewed "
        f"cells, {p['kept_pairs_in_unreviewed_cells']} in cells nobody reviewed)",
        f"- rejected: {p['reviewed_rejected']} reviewed, {p['reviewed_rejected_same']} of them the same photograph; "
        f"expected false negatives in the reviewed strata under the thresholds: "
        f"**{p['expected_false_negatives_in_reviewed_strata_under_threshold']}** (pairs under correlation "
        f"{p['wide_search']['min_correlation']} or over {p['wide_search']['max_hamming']} bits were not searched)",
        f"- highest correlation of a reviewed 'different' pair within the hash limit, per kind: "
        f"{p['highest_correlation_reviewed_different']}; lowest of a 'same' pair: "
        f"{p['lowest_correlation_reviewed_same']:.4f}",
        "",
        pd.DataFrame(p["cells"]).to_markdown(index=False),
        "",
        "## Report",
        "",
        f"- duplicate pairs: {q['pairs']:,} in {q['groups']:,} groups ({q['images_in_groups']:,} images)",
        f"- label conflicts: {q['conflict_groups']} groups, {q['conflict_images']} images "
        f"({q['conflict_images_per_split']})",
        f"- blanks: {q['blanks']} ({q['blanks_per_reason']}; per split {q['blanks_per_split']})",
        f"- test: {q['test']:,}, of which {q['test_excluded']} ({q['test_excluded'] / q['test']:.1%}) have a copy in "
        f"train or val ({q['test_excluded_per_kind']}): deduplicated test split **{q['test_deduplicated']:,}**",
        f"- clean protocol removes: {q['clean_exclusions_per_reason']}; keeps train {q['clean_train']:,}, "
        f"val {q['clean_val']:,}",
        "",
        pd.DataFrame(q["summary"]).to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(paths.DATA / "fer2013"), help="the FER2013 image folders")
    parser.add_argument("--out", default=str(paths.RESULTS / "bench"))
    parser.add_argument("--reviewed", default=str(REVIEWED), help="the reviewed near pairs (CSV)")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    splits = open_splits("fer2013", args.data, image_size=AUDIT_SIZE)
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    report = quality_report(splits, use_cache=False)
    report_s = time.perf_counter() - t
    print(f"quality_report: {report_s:.1f} s, {len(report.pairs)} pairs, {len(report.blanks)} blanks", flush=True)
    out: dict = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "data": args.data, "sizes": {k: len(v) for k, v in splits.items()},
        "settings": report.settings,
        "timing": {"open_splits_s": round(open_s, 2), "quality_report_s": round(report_s, 2),
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
    }
    out["recall"] = recall(report, splits)
    print(f"recall: {json.dumps(out['recall']['cross_split'])}", flush=True)
    out["quality"] = quality(report, splits)
    out["precision"] = precision(report, splits, Path(args.reviewed))
    print(f"precision: {out['precision']['precision_reviewed']:.3f} over {out['precision']['reviewed_kept']} "
          f"reviewed kept pairs", flush=True)
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "audit.json").write_text(json.dumps(out, indent=1, default=str))
    (dest / "audit.md").write_text(markdown(out))
    print(f"wrote {dest / 'audit.json'} and {dest / 'audit.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

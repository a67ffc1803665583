"""Data-quality report: duplicate images within and across splits, blanks, label conflicts.

The search itself (perceptual hashes, candidate pairs, their confirmation by thumbnail
correlation, blank detection, the thresholds) is ``duplicates.search``; this module turns
what it finds into the report the notebooks and the ``clean`` protocol read: pair counts,
groups of copies, label conflicts, the test images to exclude and what ``clean`` removes.

The report (``quality_report``) always audits images decoded at ``AUDIT_SIZE``, so its
result does not depend on the size a model trains at, and is cached as plain CSV and JSON
files keyed by the splits' membership hashes and the settings. ``benchmarks/audit/run.py``
measures it on the real FER2013 (recall on byte-identical copies, precision from a
reviewed sample of near pairs around the threshold).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .. import paths
from .base import FaceDataset
from .duplicates import BLANK_COLUMNS, BLANK_REASONS, DEFAULTS, KINDS, PAIR_COLUMNS, resolve_settings, search

log = logging.getLogger(__name__)

AUDIT_SIZE: int = 48  # FER2013's native size: the audit never depends on a model's input size
VERSION = 2  # bump when the search (duplicates.py) changes, so cached reports are recomputed
GROUP_COLUMNS = ["group", "split", "id", "index", "label"]
EXCLUDED_COLUMNS = ["id", "index", "by_split", "by_id", "kind", "correlation"]
CLEAN_COLUMNS = ["split", "id", "index", "reason", "other_split", "other_id"]
CLEAN_REASONS = ("duplicate_of_val", "duplicate_of_test", "label_conflict", *BLANK_REASONS)
_CACHE_FILES = ("pairs.csv", "blanks.csv", "report.json")


@dataclass(eq=False)  # frames have no truth value: compare the fields you mean
class QualityReport:
    """The audit of a set of splits (see the module docstring); build with ``quality_report``.

    Attributes:
        pairs: every confirmed duplicate pair, within and across splits, one row each
            (``PAIR_COLUMNS``); ``split_a`` comes before ``split_b`` in the splits' order,
            and within a split ``index_a < index_b``. Labels are class names.
        blanks: blank, near-constant and text-placeholder images (``BLANK_COLUMNS``), which
            take no part in ``pairs``.
        membership: split -> ``FaceDataset.membership_hash()`` of the audited splits.
        settings: the thresholds (``duplicates.DEFAULTS``), ``audit_size``, ``version`` and ``pixels``.
        seconds: wall time of the computation (kept when loaded from the cache).
        cached: True when this report was read from the cache rather than computed.
    """

    pairs: pd.DataFrame
    blanks: pd.DataFrame
    membership: dict[str, str]
    settings: dict[str, Any]
    seconds: float
    cached: bool = field(default=False, compare=False)

    @property
    def split_names(self) -> list[str]:
        """The audited splits, in their order."""
        return list(self.membership)

    def summary(self) -> pd.DataFrame:
        """Pair counts per ``(split_a, split_b, kind)``, every combination (zeros included),
        within-split rows (``split_a == split_b``) too."""
        names = self.split_names
        combos = [(a, b, k) for i, a in enumerate(names) for b in names[i:] for k in KINDS]
        counts = self.pairs.groupby(["split_a", "split_b", "kind"]).size()
        rows = [(a, b, k, int(counts.get((a, b, k), 0))) for a, b, k in combos]
        return pd.DataFrame(rows, columns=["split_a", "split_b", "kind", "pairs"])

    def groups(self, splits: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Connected components of the duplicate graph (``GROUP_COLUMNS``), one row per
        image; groups are numbered by their first member (splits' order, then index).
        ``splits`` keeps only the pairs between those splits (the graph they alone give)."""
        pairs = self.pairs
        if splits is not None:
            pairs = pairs[pairs["split_a"].isin(splits) & pairs["split_b"].isin(splits)]
        if pairs.empty:
            return pd.DataFrame(columns=GROUP_COLUMNS)
        order = {s: i for i, s in enumerate(self.split_names)}
        a = pairs[["split_a", "id_a", "index_a", "label_a"]].set_axis(GROUP_COLUMNS[1:], axis=1)
        b = pairs[["split_b", "id_b", "index_b", "label_b"]].set_axis(GROUP_COLUMNS[1:], axis=1)
        nodes = pd.concat([a, b]).drop_duplicates(["split", "index"])
        nodes = nodes.assign(_o=nodes["split"].map(order)).sort_values(["_o", "index"]).reset_index(drop=True)
        node_of = {(s, i): n for n, (s, i) in enumerate(zip(nodes["split"], nodes["index"], strict=True))}
        src = [node_of[k] for k in zip(pairs["split_a"], pairs["index_a"], strict=True)]
        dst = [node_of[k] for k in zip(pairs["split_b"], pairs["index_b"], strict=True)]
        graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(len(nodes), len(nodes)))
        _, comp = connected_components(graph, directed=False)
        # renumber components by first member (nodes are already in that order)
        first = pd.Series(comp).drop_duplicates()
        renum = dict(zip(first.to_numpy(), range(len(first)), strict=True))
        nodes["group"] = [renum[c] for c in comp]
        nodes = nodes.sort_values(["group", "_o", "index"], kind="stable")
        return nodes[GROUP_COLUMNS].reset_index(drop=True)

    def conflicts(self, splits: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Members of groups that hold more than one label (``GROUP_COLUMNS``); ``splits``
        as in ``groups``."""
        groups = self.groups(splits)
        if groups.empty:
            return groups
        mixed = groups.groupby("group")["label"].transform("nunique") > 1
        return groups[mixed].reset_index(drop=True)

    def _cross(self, split: str, others: tuple[str, ...]) -> pd.DataFrame:
        """Pairs joining ``split`` to any of ``others``, seen from ``split``: columns
        index, id, by_split, by_index, by_id, kind, correlation, hamming; closest first."""
        p = self.pairs
        cols = ["index", "id", "by_split", "by_index", "by_id", "kind", "correlation", "hamming"]
        a_side = p[(p["split_a"] == split) & p["split_b"].isin(others)]
        b_side = p[(p["split_b"] == split) & p["split_a"].isin(others)]
        seen = pd.concat([
            a_side[["index_a", "id_a", "split_b", "index_b", "id_b", "kind", "correlation", "hamming"]]
            .set_axis(cols, axis=1),
            b_side[["index_b", "id_b", "split_a", "index_a", "id_a", "kind", "correlation", "hamming"]]
            .set_axis(cols, axis=1),
        ])
        if seen.empty:
            return pd.DataFrame(columns=cols)
        order = {s: i for i, s in enumerate(self.split_names)}
        # closest: an exact copy, then the highest correlation, the fewest hash bits, first split/index
        seen = seen.assign(_exact=seen["kind"] != "exact", _neg=-seen["correlation"].astype(float),
                           _so=seen["by_split"].map(order))
        seen = seen.sort_values(["index", "_exact", "_neg", "hamming", "_so", "by_index"], kind="stable")
        return seen[cols].reset_index(drop=True)

    def test_excluded(self) -> pd.DataFrame:
        """One row per test image with an exact, flipped or near duplicate in train or val
        (``EXCLUDED_COLUMNS``): its closest such duplicate; sorted by index. Blank test
        images are not listed here (see ``blanks``)."""
        seen = self._cross("test", ("train", "val"))
        if seen.empty:
            return pd.DataFrame(columns=EXCLUDED_COLUMNS)
        return seen.drop_duplicates("index")[EXCLUDED_COLUMNS].reset_index(drop=True)

    def clean_exclusions(self) -> pd.DataFrame:
        """What the ``clean`` protocol removes (``CLEAN_COLUMNS``), one row per (split, id).

        train: every image that duplicates a val image (``duplicate_of_val``) or a test image
        (``duplicate_of_test``), every train member of a conflicting-label group among train
        and val (``label_conflict``), every blank (its ``blanks`` reason). val: its blanks
        only. A train-val copy is removed from one side, train's: removing the val side too
        would shrink validation for nothing, since train no longer holds the copy. An image
        with several reasons gets the first in that order; ``other_split``/``other_id`` name
        the closest duplicate (for a conflict: the first group member with another label;
        none for a blank).
        """
        rows: list[tuple] = []

        def add_duplicates(split: str, other: str, reason: str) -> None:
            seen = self._cross(split, (other,)).drop_duplicates("index")
            rows.extend((split, r.id, int(r.index), reason, r.by_split, r.by_id) for r in seen.itertuples())

        add_duplicates("train", "val", "duplicate_of_val")
        add_duplicates("train", "test", "duplicate_of_test")
        # Conflicts among train and val only: the test split's labels never decide what is trained on.
        conflicts = self.conflicts(("train", "val"))
        for _, members in conflicts.groupby("group", sort=True):
            for m in members[members["split"] == "train"].itertuples():
                other = members[members["label"] != m.label].iloc[0]
                rows.append(("train", m.id, int(m.index), "label_conflict", other["split"], other["id"]))
        for split in ("train", "val"):
            for b in self.blanks[self.blanks["split"] == split].itertuples():
                rows.append((split, b.id, int(b.index), b.reason, None, None))
        out = pd.DataFrame(rows, columns=CLEAN_COLUMNS).drop_duplicates(["split", "id"], keep="first")
        out = out.assign(_o=(out["split"] != "train").astype(int)).sort_values(["_o", "index"], kind="stable")
        return out[CLEAN_COLUMNS].reset_index(drop=True)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``pairs.csv``, ``blanks.csv`` and ``report.json`` into ``folder`` (created);
        files are written to a temporary folder first, so a reader never sees half a report."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            self.pairs.to_csv(tmp / "pairs.csv", index=False)
            self.blanks.to_csv(tmp / "blanks.csv", index=False)
            meta = {"membership": self.membership, "settings": self.settings, "seconds": self.seconds,
                    "pairs": len(self.pairs), "blanks": len(self.blanks)}
            (tmp / "report.json").write_text(json.dumps(meta, indent=1))
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> QualityReport:
        """Read a report written by ``save``; a missing or malformed file is an error
        naming it."""
        folder = Path(folder)
        for name in _CACHE_FILES:
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: missing; a saved QualityReport has {list(_CACHE_FILES)}")
        meta = json.loads((folder / "report.json").read_text())
        missing = {"membership", "settings", "seconds"} - set(meta)
        if missing:
            raise ValueError(f"{folder / 'report.json'}: missing keys {sorted(missing)}")
        pairs = _read_table(folder / "pairs.csv", PAIR_COLUMNS,
                            {"index_a": "int64", "index_b": "int64", "hamming": "int64", "correlation": "float64"})
        blanks = _read_table(folder / "blanks.csv", BLANK_COLUMNS, {"index": "int64", "std": "float64"})
        for where, frame, n in (("pairs.csv", pairs, meta.get("pairs")), ("blanks.csv", blanks, meta.get("blanks"))):
            if n is not None and len(frame) != n:
                raise ValueError(f"{folder / where}: {len(frame)} rows, report.json says {n} (truncated file?)")
        return cls(pairs, blanks, dict(meta["membership"]), dict(meta["settings"]), float(meta["seconds"]),
                   cached=True)


def _read_table(path: Path, columns: list[str], numeric: dict[str, str]) -> pd.DataFrame:
    text_cols = {c: str for c in columns if c not in numeric}
    frame = pd.read_csv(path, dtype=text_cols, keep_default_na=False)
    if list(frame.columns) != columns:
        raise ValueError(f"{path}, line 1: expected columns {columns}, got {list(frame.columns)}")
    for col, dtype in numeric.items():
        try:
            frame[col] = frame[col].astype(dtype)
        except ValueError as e:
            raise ValueError(f"{path}: column {col!r} is not {dtype}: {e}") from None
    return frame


def report_key(membership: dict[str, str], settings: dict[str, Any]) -> str:
    """The cache key: the splits (names, order, membership hashes) and every setting."""
    blob = json.dumps({"splits": list(membership.items()), "settings": sorted(settings.items())})
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _compute_report(splits: dict[str, FaceDataset], settings: dict[str, Any]) -> QualityReport:
    start = time.perf_counter()
    thresholds = {k: v for k, v in settings.items() if k in DEFAULTS}
    pairs, blanks = search(splits, **thresholds)
    seconds = time.perf_counter() - start
    membership = {name: ds.membership_hash() for name, ds in splits.items()}
    log.info("audit: %d duplicate pair(s), %d blank image(s) in %.1f s", len(pairs), len(blanks), seconds)
    return QualityReport(pairs, blanks, membership, dict(settings), round(seconds, 3))


def quality_report(
    splits: dict[str, FaceDataset],
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    **settings: float,
) -> QualityReport:
    """The data-quality report of ``splits``, computed once and then read from the cache.

    Args:
        splits: e.g. ``open_splits("fer2013", image_size=AUDIT_SIZE)``; every split must
            be decoded at ``AUDIT_SIZE``.
        cache_dir: where reports are kept (default ``.cache/audit``), one folder per key
            (``report_key``: the splits' membership hashes and the settings).
        use_cache: False computes afresh and writes nothing (for timing).
        **settings: thresholds overriding ``duplicates.DEFAULTS`` (and the dataset's
            ``duplicates.DATASET_SETTINGS``).

    Raises:
        ValueError: a split decoded at another size, or an unknown or malformed setting.
    """
    for name, ds in splits.items():
        if tuple(ds.images.shape[-2:]) != (AUDIT_SIZE, AUDIT_SIZE):
            raise ValueError(f"split {name!r} is decoded at {ds.images.shape[-1]}x{ds.images.shape[-2]}, "
                             f"the audit runs at AUDIT_SIZE={AUDIT_SIZE}: open the splits with "
                             f"image_size={AUDIT_SIZE} for the audit (training may use any size)")
    # The key covers the pixels too: re-encoded or repaired files under the same names give a new report.
    pixels = {name: hashlib.sha256(ds.images.numpy().tobytes()).hexdigest()[:24] for name, ds in splits.items()}
    full = {**resolve_settings(splits, settings), "audit_size": AUDIT_SIZE, "version": VERSION, "pixels": pixels}
    membership = {name: ds.membership_hash() for name, ds in splits.items()}
    folder = Path(cache_dir) if cache_dir is not None else paths.CACHE / "audit"
    folder = folder / report_key(membership, full)
    if use_cache and folder.is_dir():
        try:
            report = QualityReport.load(folder)
        except (OSError, ValueError) as e:  # a damaged cache is recomputed, not trusted
            log.warning("ignoring unreadable audit cache %s (%s)", folder, e)
        else:
            if report.membership == membership and report.settings == full:
                log.info("audit: read from cache %s (computed in %.1f s)", folder, report.seconds)
                return report
            log.warning("audit cache %s does not match its key; recomputing", folder)
    report = _compute_report(splits, full)
    if use_cache:
        try:
            report.save(folder)
        except OSError as e:  # a read-only cache costs time, not correctness
            log.warning("could not write audit cache %s: %s", folder, e)
    return report


__all__ = ["AUDIT_SIZE", "CLEAN_COLUMNS", "EXCLUDED_COLUMNS", "GROUP_COLUMNS", "VERSION",
           "QualityReport", "quality_report", "report_key"]

"""Data-quality report: duplicate images within and across splits, blanks, label conflicts.

Duplicates. A perceptual hash (pHash: sign of the low-frequency DCT coefficients against
their median) is unchanged by brightness and contrast changes and barely moved by
re-encoding; hashing each image's mirror image too catches horizontal flips. Every pair of
images (within a split and across splits) whose hashes lie within ``max_hamming`` bits is a
candidate, confirmed by the Pearson correlation of the (possibly mirrored) 32x32
thumbnails, so distinct but similar faces are not reported. ``kind`` is ``exact``
(identical decoded pixels), ``flipped`` (matches the mirror image, under a stricter
threshold: comparing twice doubles the chances of a look-alike) or ``near`` (same picture
after a brightness/contrast change, re-encoding, a watermark, a slightly shifted crop...).
The thresholds come from a blind review of real FER2013 pairs around them; a copy cropped
differently can fall under them (``benchmarks/audit/run.py`` measures precision and
estimates the misses).

Blanks. Constant and near-constant images (FER2013 has twelve all-black files, a grey one,
and "this image was deleted" text pages) are found first, reported in ``blanks`` and kept
out of the pair search: they match each other trivially (an O(n^2) pile of meaningless
pairs) and their correlation is undefined.

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
import torch.nn.functional as F
from scipy.fft import dctn
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

from .. import paths
from .base import FaceDataset

log = logging.getLogger(__name__)

AUDIT_SIZE: int = 48  # FER2013's native size: the audit never depends on a model's input size
VERSION = 2  # bump when the algorithm changes, so cached reports are recomputed
KINDS = ("exact", "flipped", "near")
BLANK_REASONS = ("blank", "near-constant", "text-placeholder")
COLUMNS = ["split_a", "id_a", "index_a", "split_b", "id_b", "index_b", "kind", "hamming", "correlation"]
PAIR_COLUMNS = ["split_a", "id_a", "index_a", "label_a", "split_b", "id_b", "index_b", "label_b", "kind",
                "hamming", "correlation"]
BLANK_COLUMNS = ["split", "id", "index", "label", "std", "reason"]
GROUP_COLUMNS = ["group", "split", "id", "index", "label"]
EXCLUDED_COLUMNS = ["id", "index", "by_split", "by_id", "kind", "correlation"]
CLEAN_COLUMNS = ["split", "id", "index", "reason", "other_split", "other_id"]
CLEAN_REASONS = ("duplicate_of_val", "duplicate_of_test", "label_conflict", *BLANK_REASONS)

# Every threshold the result depends on (the cache key holds them all). The blank rules
# are fractions of pixels and grey levels, so they hold at any image size; their values
# are justified on the real FER2013 by benchmarks/audit/run.py (its audit.md) and the reviewed
# pairs beside it (fer2013_reviewed_pairs.csv).
DEFAULTS: dict[str, float] = {
    "max_hamming": 12,  # hash bits (of 64) at or under which a pair is a candidate
    "min_correlation": 0.92,  # thumbnail correlation at or over which a candidate is a duplicate
    # A pair is compared as it is and mirrored and the better kept, so chance matches are
    # likelier mirrored: all 68 mirrored pairs over 0.92 were reviewed, 12 were different
    # people, all under 0.943 (benchmarks/audit/fer2013_reviewed_pairs.csv).
    "min_correlation_flipped": 0.945,  # the same, for a match with the mirror image
    "blank_std": 1.0,  # pixel std under which an image is "blank" (one grey level)
    "flat_tolerance": 8,  # grey levels around the median that count as "flat" background
    "near_constant_flat": 0.9,  # share of flat pixels at or over which an image is "near-constant"
    "text_min_median": 240,  # "text-placeholder": a white page (median at least this)...
    "text_max_std": 40,  # ...of low contrast (line drawings of faces have std > 60)...
    "text_min_flat": 0.6,  # ...that is mostly flat (faces on white stay under 0.5)
}
# Synthetic faces are one cartoon template (an oval, brows, eyes, mouth on a plain ground):
# distinct ones correlate up to 0.978 on thumbnails (the demo's 4,000 faces), so the
# threshold measured on photographs would pair them. Planted copies still score >= 0.995.
DATASET_SETTINGS: dict[str, dict[str, float]] = {
    "synthetic": {"min_correlation": 0.985, "min_correlation_flipped": 0.985},
}
_HASH_SIDE = 32  # pHash works on a 32x32 thumbnail, keeping its 8x8 lowest frequencies
_ROWS = 512  # rows of the hash distance matrix computed at once: about 0.2 GB for 36k images
_BATCH = 8192  # candidate pairs whose correlation is computed at once
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
        settings: the thresholds (``DEFAULTS``), ``audit_size`` and ``version``.
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


# ---------------------------------------------------------------- image features


def _thumbnails(images: Tensor) -> np.ndarray:
    """uint8 (N, 1, H, W) -> float32 (N, 32, 32), area-averaged."""
    x = images.float()
    if x.shape[-1] != _HASH_SIDE or x.shape[-2] != _HASH_SIDE:
        x = F.interpolate(x, size=(_HASH_SIDE, _HASH_SIDE), mode="area")
    return x[:, 0].numpy()


def phash(thumbs: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (uint64) of (N, 32, 32) thumbnails."""
    low = dctn(np.asarray(thumbs, dtype=np.float64), axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(thumbs), 64)
    med = np.median(low[:, 1:], axis=1, keepdims=True)  # DC excluded: brightness-invariant
    bits = (low > med).astype(np.uint64)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1, dtype=np.uint8)


def _standardized(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm rows (N, 1024) and which rows are constant (norm 0): the
    dot product of two rows is then their Pearson correlation."""
    z = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    z = z - z.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    constant = norm[:, 0] < 1e-6
    z /= np.where(constant[:, None], 1.0, norm)
    z[constant] = 0.0  # correlation with a constant image is undefined: never a match
    return z, constant


def blank_reasons(images: Tensor, settings: dict[str, Any] | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Per image: pixel std and why it is not a usable face (``BLANK_REASONS``) or None.

    ``blank``: std under ``blank_std``. ``near-constant``: at least ``near_constant_flat``
    of the pixels within ``flat_tolerance`` grey levels of the median (a face would fill
    under a tenth of the picture). ``text-placeholder``: a white page (median at least
    ``text_min_median``) of low contrast (std at most ``text_max_std``), mostly flat (at
    least ``text_min_flat``): the "this image was deleted" pages of image hosts.
    """
    s = {**DEFAULTS, **(settings or {})}
    stds, reasons = [], []
    for start in range(0, len(images), 4096):
        x = images[start:start + 4096].flatten(1).float()
        std = x.std(dim=1, unbiased=False)
        med = x.median(dim=1, keepdim=True).values
        flat = ((x - med).abs() <= s["flat_tolerance"]).float().mean(dim=1)
        med = med[:, 0]
        for sd, md, fl in zip(std.tolist(), med.tolist(), flat.tolist(), strict=True):
            stds.append(sd)
            if sd < s["blank_std"]:
                reasons.append("blank")
            elif fl >= s["near_constant_flat"]:
                reasons.append("near-constant")
            elif md >= s["text_min_median"] and sd <= s["text_max_std"] and fl >= s["text_min_flat"]:
                reasons.append("text-placeholder")
            else:
                reasons.append(None)
    return np.asarray(stds, dtype=np.float64), reasons


# ---------------------------------------------------------------- the pair search


def resolve_settings(splits: dict[str, FaceDataset], settings: dict[str, Any]) -> dict[str, Any]:
    """``DEFAULTS``, then the dataset's ``DATASET_SETTINGS``, then ``settings``; validated."""
    names = {ds.name for ds in splits.values()}
    preset = DATASET_SETTINGS.get(names.pop(), {}) if len(names) == 1 else {}
    return _check_settings({**preset, **settings})


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown audit setting(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out = dict(DEFAULTS)
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"audit setting {key}={value!r}: expected a number like {DEFAULTS[key]!r}")
        out[key] = value
    if not 0 <= out["max_hamming"] <= 64:
        raise ValueError(f"max_hamming={out['max_hamming']}: expected 0..64 (bits of a 64-bit hash)")
    for key in ("min_correlation", "min_correlation_flipped"):
        if not -1 <= out[key] <= 1:
            raise ValueError(f"{key}={out[key]}: expected a correlation in [-1, 1]")
    return out


def _candidates(hashes: np.ndarray, mirrored: np.ndarray, split_of: np.ndarray, max_hamming: int,
                within: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` (positions in ``hashes``) within ``max_hamming`` bits, directly
    or against the mirror image; pairs of one split only when ``within``. Computed
    ``_ROWS`` rows at a time against the columns after them, so memory stays bounded."""
    n = len(hashes)
    ii, jj, ds, df = [], [], [], []
    # for cross-split-only search, row i's columns start after its own split
    split_end = np.searchsorted(split_of, split_of, side="right")
    for start in range(0, n, _ROWS):
        stop = min(n, start + _ROWS)
        col0 = start if within else int(split_end[start])
        if col0 >= n:
            continue
        cols = slice(col0, n)
        d_same = _popcount(hashes[start:stop, None] ^ hashes[None, cols])
        d_flip = _popcount(hashes[start:stop, None] ^ mirrored[None, cols])
        hit = np.minimum(d_same, d_flip) <= max_hamming
        r, c = np.nonzero(hit)
        i, j = r + start, c + col0
        keep = (j > i) if within else (split_of[j] != split_of[i])
        r, c, i, j = r[keep], c[keep], i[keep], j[keep]
        ii.append(i)
        jj.append(j)
        ds.append(d_same[r, c])
        df.append(d_flip[r, c])
    if not ii:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e.astype(np.uint8), e.astype(np.uint8)
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(ds), np.concatenate(df)


def _confirm(z: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of each candidate pair, directly and with ``j`` mirrored."""
    same = np.empty(len(i), dtype=np.float32)
    flip = np.empty(len(i), dtype=np.float32)
    side = _HASH_SIDE
    for start in range(0, len(i), _BATCH):
        a = z[i[start:start + _BATCH]]
        b = z[j[start:start + _BATCH]]
        same[start:start + _BATCH] = np.einsum("nk,nk->n", a, b)
        b_flip = b.reshape(-1, side, side)[:, :, ::-1].reshape(len(b), -1)
        flip[start:start + _BATCH] = np.einsum("nk,nk->n", a, b_flip)
    return same, flip


def _find(splits: dict[str, FaceDataset], settings: dict[str, Any], *, within: bool
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pair search and blank detection on the splits' images as they are decoded."""
    names = list(splits)
    sizes = {tuple(ds.images.shape[-2:]) for ds in splits.values() if len(ds)}
    if len(sizes) > 1:
        raise ValueError(f"splits are decoded at different sizes {sorted(sizes)}: "
                         + ", ".join(f"{k}={tuple(ds.images.shape[-2:])}" for k, ds in splits.items())
                         + "; open them all with one image_size")
    split_list, index_list, stds_all, reasons_all = [], [], [], []
    for k, name in enumerate(names):
        ds = splits[name]
        std, reasons = blank_reasons(ds.images, settings)
        split_list.append(np.full(len(ds), k, dtype=np.int64))
        index_list.append(np.arange(len(ds), dtype=np.int64))
        stds_all.append(std)
        reasons_all.extend(reasons)
    split_of = np.concatenate(split_list) if split_list else np.zeros(0, dtype=np.int64)
    index_of = np.concatenate(index_list) if index_list else np.zeros(0, dtype=np.int64)
    std_of = np.concatenate(stds_all) if stds_all else np.zeros(0)
    is_blank = np.array([r is not None for r in reasons_all], dtype=bool)

    def meta(g: np.ndarray) -> tuple[list[str], list[str], list[int], list[str]]:
        s, x = split_of[g], index_of[g]
        ids = [splits[names[a]].ids[b] for a, b in zip(s, x, strict=True)]
        labels = [splits[names[a]].class_names[int(splits[names[a]].labels[b])] for a, b in zip(s, x, strict=True)]
        return [names[a] for a in s], ids, x.tolist(), labels

    blank_pos = np.flatnonzero(is_blank)
    bs, bi, bx, bl = meta(blank_pos)
    blanks = pd.DataFrame({"split": bs, "id": bi, "index": bx, "label": bl,
                           "std": np.round(std_of[blank_pos], 4), "reason": [reasons_all[g] for g in blank_pos]},
                          columns=BLANK_COLUMNS)

    # only usable images take part in the pair search; positions below index ``active``
    active = np.flatnonzero(~is_blank)
    thumbs = np.concatenate([_thumbnails(splits[n].images) for n in names]) if names else np.zeros((0, 32, 32))
    thumbs = thumbs[active]
    hashes = np.concatenate([phash(thumbs[s:s + 4096]) for s in range(0, len(thumbs), 4096)] or
                            [np.zeros(0, np.uint64)])
    mirrored = np.concatenate([phash(thumbs[s:s + 4096, :, ::-1]) for s in range(0, len(thumbs), 4096)] or
                              [np.zeros(0, np.uint64)])
    i, j, d_same, d_flip = _candidates(hashes, mirrored, split_of[active], int(settings["max_hamming"]), within)
    z, _ = _standardized(thumbs)
    del thumbs
    corr_same, corr_flip = _confirm(z, i, j)
    del z
    # a mirrored match must beat the direct one and its own (stricter) threshold
    flipped = (corr_flip > corr_same) & (corr_flip >= settings["min_correlation_flipped"])
    ok = flipped | (corr_same >= settings["min_correlation"])
    corr = np.where(flipped, corr_flip, corr_same)[ok]
    hamming = np.where(flipped, d_flip, d_same)[ok].astype(np.int64)
    i, j, flipped = active[i[ok]], active[j[ok]], flipped[ok]
    # exact: identical decoded pixels (compared at full size, not on thumbnails)
    flat = {n: splits[n].images.flatten(1).numpy() for n in names}
    exact = np.array([np.array_equal(flat[names[split_of[a]]][index_of[a]], flat[names[split_of[b]]][index_of[b]])
                      for a, b in zip(i, j, strict=True)], dtype=bool)
    kind = np.where(exact, "exact", np.where(flipped, "flipped", "near"))
    sa, ia, xa, la = meta(i)
    sb, ib, xb, lb = meta(j)
    pairs = pd.DataFrame({"split_a": sa, "id_a": ia, "index_a": xa, "label_a": la,
                          "split_b": sb, "id_b": ib, "index_b": xb, "label_b": lb, "kind": kind,
                          "hamming": hamming, "correlation": np.round(corr.astype(np.float64), 6)},
                         columns=PAIR_COLUMNS)
    pairs = pairs.astype({"index_a": "int64", "index_b": "int64", "hamming": "int64", "correlation": "float64"})
    blanks = blanks.astype({"index": "int64", "std": "float64"})
    return pairs.reset_index(drop=True), blanks


# ---------------------------------------------------------------- public entry points


def find_duplicates(
    splits: dict[str, FaceDataset],
    *,
    max_hamming: int | None = None,
    min_correlation: float | None = None,
    chunk: int | None = None,
) -> pd.DataFrame:
    """Cross-split duplicate pairs, one row each (columns ``COLUMNS``), at whatever size the
    splits are decoded; ``quality_report`` is the full audit (within-split pairs, blanks,
    conflicts, cache). Blank images take no part (see ``blank_reasons``).

    Args:
        splits: e.g. ``{"train": ..., "val": ..., "test": ...}``.
        max_hamming: hash distance (of 64 bits) at or under which a pair is a candidate
            (default: ``DEFAULTS``, or the dataset's ``DATASET_SETTINGS``).
        min_correlation: thumbnail correlation at or over which a candidate is confirmed.
        chunk: ignored (kept for callers of the first version; memory is bounded inside).
    """
    del chunk
    given = {"max_hamming": max_hamming, "min_correlation": min_correlation}
    settings = resolve_settings(splits, {k: v for k, v in given.items() if v is not None})
    pairs, _ = _find(splits, settings, within=False)
    log.info("audit: %d cross-split duplicate pair(s)", len(pairs))
    return pairs[COLUMNS]


def summarize(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs counted by split pair and kind, present combinations only (the first audit's
    table; ``QualityReport.summary`` lists every combination)."""
    if pairs.empty:
        return pd.DataFrame(columns=["split_a", "split_b", "kind", "pairs"])
    return pairs.groupby(["split_a", "split_b", "kind"]).size().rename("pairs").reset_index()


def report_key(membership: dict[str, str], settings: dict[str, Any]) -> str:
    """The cache key: the splits (names, order, membership hashes) and every setting."""
    blob = json.dumps({"splits": list(membership.items()), "settings": sorted(settings.items())})
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _compute_report(splits: dict[str, FaceDataset], settings: dict[str, Any]) -> QualityReport:
    start = time.perf_counter()
    thresholds = {k: v for k, v in settings.items() if k in DEFAULTS}
    pairs, blanks = _find(splits, thresholds, within=True)
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
        **settings: thresholds overriding ``DEFAULTS`` (and the dataset's
            ``DATASET_SETTINGS``).

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


__all__ = [
    "AUDIT_SIZE",
    "BLANK_COLUMNS",
    "BLANK_REASONS",
    "CLEAN_COLUMNS",
    "COLUMNS",
    "DEFAULTS",
    "EXCLUDED_COLUMNS",
    "GROUP_COLUMNS",
    "KINDS",
    "PAIR_COLUMNS",
    "VERSION",
    "QualityReport",
    "blank_reasons",
    "find_duplicates",
    "phash",
    "quality_report",
    "report_key",
    "summarize",
]

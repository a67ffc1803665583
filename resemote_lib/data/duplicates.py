"""Duplicate search: exact, mirrored and near copies of images within and across splits.

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
and "this image was deleted" text pages) are found first and kept out of the pair search:
they match each other trivially (an O(n^2) pile of meaningless pairs) and their
correlation is undefined.

``search`` runs both on the splits as they are decoded; ``audit.quality_report`` is the
report built on it (at a fixed size, cached, with groups, conflicts and exclusions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch.nn.functional as F
from scipy.fft import dctn
from torch import Tensor

from .base import FaceDataset

KINDS = ("exact", "flipped", "near")
BLANK_REASONS = ("blank", "near-constant", "text-placeholder")
PAIR_COLUMNS = ["split_a", "id_a", "index_a", "label_a", "split_b", "id_b", "index_b", "label_b", "kind",
                "hamming", "correlation"]
BLANK_COLUMNS = ["split", "id", "index", "label", "std", "reason"]

# Every threshold the result depends on (the audit's cache key holds them all). The blank rules
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


@dataclass
class _Positions:
    """Every image of the splits by position (the splits in their order, each by index)."""

    splits: dict[str, FaceDataset]
    split_of: np.ndarray  # position -> the split's number in ``splits``
    index_of: np.ndarray  # position -> index within its split

    @classmethod
    def of(cls, splits: dict[str, FaceDataset]) -> _Positions:
        sizes = [len(ds) for ds in splits.values()]
        split_of = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        index_of = np.concatenate([np.arange(n, dtype=np.int64) for n in sizes] or [np.zeros(0, np.int64)])
        return cls(splits, split_of, index_of)

    def describe(self, g: np.ndarray) -> tuple[list[str], list[str], list[int], list[str]]:
        """Split name, id, index and label (class name) of the images at positions ``g``."""
        names = list(self.splits)
        found = [(names[s], self.splits[names[s]], int(x)) for s, x in zip(self.split_of[g], self.index_of[g],
                                                                            strict=True)]
        return ([name for name, _, _ in found], [ds.ids[x] for _, ds, x in found], [x for _, _, x in found],
                [ds.class_names[int(ds.labels[x])] for _, ds, x in found])


def _check_one_size(splits: dict[str, FaceDataset]) -> None:
    sizes = {tuple(ds.images.shape[-2:]) for ds in splits.values() if len(ds)}
    if len(sizes) > 1:
        raise ValueError(f"splits are decoded at different sizes {sorted(sizes)}: "
                         + ", ".join(f"{k}={tuple(ds.images.shape[-2:])}" for k, ds in splits.items())
                         + "; open them all with one image_size")


def _hashes(thumbs: np.ndarray) -> np.ndarray:
    """``phash`` of every thumbnail, 4096 at a time."""
    return np.concatenate([phash(thumbs[s:s + 4096]) for s in range(0, len(thumbs), 4096)]
                          or [np.zeros(0, np.uint64)])


def _matches(where: _Positions, active: np.ndarray, settings: dict[str, Any], within: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Confirmed pairs among the images at positions ``active``: positions ``i < j``, hash
    distance, correlation, and whether the match is with the mirror image."""
    images = [ds.images for ds in where.splits.values()]
    thumbs = np.concatenate([_thumbnails(x) for x in images])[active] if images else np.zeros((0, 32, 32))
    hashes, mirrored = _hashes(thumbs), _hashes(thumbs[:, :, ::-1])
    i, j, d_same, d_flip = _candidates(hashes, mirrored, where.split_of[active], int(settings["max_hamming"]), within)
    z, _ = _standardized(thumbs)
    del thumbs
    corr_same, corr_flip = _confirm(z, i, j)
    del z
    # a mirrored match must beat the direct one and its own (stricter) threshold
    flipped = (corr_flip > corr_same) & (corr_flip >= settings["min_correlation_flipped"])
    ok = flipped | (corr_same >= settings["min_correlation"])
    corr = np.where(flipped, corr_flip, corr_same)[ok]
    hamming = np.where(flipped, d_flip, d_same)[ok].astype(np.int64)
    return active[i[ok]], active[j[ok]], hamming, corr, flipped[ok]


def _identical(where: _Positions, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Whether each pair has identical decoded pixels (compared at full size, not on thumbnails)."""
    flat = [ds.images.flatten(1).numpy() for ds in where.splits.values()]
    s, x = where.split_of, where.index_of
    return np.array([np.array_equal(flat[s[a]][x[a]], flat[s[b]][x[b]]) for a, b in zip(i, j, strict=True)],
                    dtype=bool)


def search(splits: dict[str, FaceDataset], *, within: bool = True, **settings: float
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Duplicate pairs and blank images of ``splits``, at whatever size they are decoded.

    Args:
        splits: e.g. ``{"train": ..., "val": ..., "test": ...}``, all decoded at one size.
        within: pairs within a split too; False: across splits only.
        **settings: thresholds overriding ``DEFAULTS`` (and the dataset's ``DATASET_SETTINGS``).

    Returns:
        ``(pairs, blanks)``: every confirmed pair (``PAIR_COLUMNS``, ``split_a`` before
        ``split_b`` in the splits' order, ``index_a < index_b`` within a split, labels as class
        names), and the blank, near-constant and text-placeholder images (``BLANK_COLUMNS``),
        which take no part in ``pairs``.

    Raises:
        ValueError: splits decoded at different sizes, or an unknown or malformed setting.
    """
    settings = resolve_settings(splits, settings)
    _check_one_size(splits)
    where = _Positions.of(splits)
    scans = [blank_reasons(ds.images, settings) for ds in splits.values()]
    std = np.concatenate([s for s, _ in scans] or [np.zeros(0)])
    reasons = [r for _, rs in scans for r in rs]
    is_blank = np.array([r is not None for r in reasons], dtype=bool)
    blank = np.flatnonzero(is_blank)
    split, ids, index, label = where.describe(blank)
    blanks = pd.DataFrame({"split": split, "id": ids, "index": index, "label": label, "std": np.round(std[blank], 4),
                           "reason": [reasons[g] for g in blank]}, columns=BLANK_COLUMNS)
    # only usable images take part in the pair search
    active = np.flatnonzero(~is_blank)
    i, j, hamming, corr, flipped = _matches(where, active, settings, within)
    kind = np.where(_identical(where, i, j), "exact", np.where(flipped, "flipped", "near"))
    a, b = where.describe(i), where.describe(j)
    pairs = pd.DataFrame(dict(zip(PAIR_COLUMNS, [*a, *b, kind, hamming, np.round(corr.astype(np.float64), 6)],
                                  strict=True)), columns=PAIR_COLUMNS)
    pairs = pairs.astype({"index_a": "int64", "index_b": "int64", "hamming": "int64", "correlation": "float64"})
    return pairs.reset_index(drop=True), blanks.astype({"index": "int64", "std": "float64"})

__all__ = ["BLANK_COLUMNS", "BLANK_REASONS", "DATASET_SETTINGS", "DEFAULTS", "KINDS", "PAIR_COLUMNS", "blank_reasons",
           "phash", "resolve_settings", "search"]

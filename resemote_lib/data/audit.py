"""Leakage audit: exact and near-duplicate images across splits.

A perceptual hash (pHash: sign of the low-frequency DCT coefficients against their
median) is unchanged by brightness and contrast changes and barely moved by re-encoding;
hashing each image and its mirror image catches horizontal flips. Hash neighbours are
then confirmed by the Pearson correlation of the (possibly mirrored) pixels, so distinct
but similar faces are not reported. FER2013 has such cross-split duplicates, and the
reference data copies put augmented test images into training.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.fft import dctn
from torch import Tensor

from .base import FaceDataset

log = logging.getLogger(__name__)
_HASH_SIDE = 32  # pHash works on a 32x32 thumbnail, keeping its 8x8 lowest frequencies
COLUMNS = ["split_a", "id_a", "index_a", "split_b", "id_b", "index_b", "kind", "hamming", "correlation"]


def _thumbnails(images: Tensor) -> np.ndarray:
    """uint8 (N, 1, H, W) -> float64 (N, 32, 32), area-averaged."""
    x = images.float()
    if x.shape[-1] != _HASH_SIDE:
        x = F.interpolate(x, size=(_HASH_SIDE, _HASH_SIDE), mode="area")
    return x[:, 0].double().numpy()


def phash(thumbs: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (uint64) of (N, 32, 32) thumbnails."""
    low = dctn(thumbs, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(thumbs), 64)
    med = np.median(low[:, 1:], axis=1, keepdims=True)  # DC excluded: brightness-invariant
    bits = (low > med).astype(np.uint64)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = a[:, None] ^ b[None, :]
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int32)
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1).astype(np.int32)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float(np.array_equal(a, b))


def find_duplicates(
    splits: dict[str, FaceDataset],
    *,
    max_hamming: int = 10,
    min_correlation: float = 0.97,
    chunk: int = 2048,
) -> pd.DataFrame:
    """Cross-split duplicate pairs, one row each (columns ``COLUMNS``).

    ``kind`` is ``exact`` (identical pixels), ``flipped`` (matches the mirror image) or
    ``near`` (same picture after brightness/contrast change, re-encoding, ...).

    Args:
        splits: e.g. ``{"train": ..., "val": ..., "test": ...}``.
        max_hamming: hash distance (of 64 bits) under which a pair is a candidate.
        min_correlation: pixel correlation over which a candidate is confirmed. Planted
            copies score >= 0.995, distinct synthetic faces of one expression up to 0.93.
        chunk: rows of the distance matrix computed at once (memory bound).
    """
    thumbs = {k: _thumbnails(ds.images) for k, ds in splits.items()}
    hashes = {k: phash(t) for k, t in thumbs.items()}
    mirrored = {k: phash(t[:, :, ::-1].copy()) for k, t in thumbs.items()}
    rows = []
    for a, b in itertools.combinations(splits, 2):
        if not len(hashes[a]) or not len(hashes[b]):
            continue
        for start in range(0, len(hashes[a]), chunk):
            ha = hashes[a][start:start + chunk]
            d_same = _hamming(ha, hashes[b])
            d_flip = _hamming(ha, mirrored[b])
            for i, j in zip(*np.nonzero(np.minimum(d_same, d_flip) <= max_hamming), strict=True):
                ia = start + int(i)
                img_a = thumbs[a][ia]
                corr_same = _correlation(img_a, thumbs[b][j])
                corr_flip = _correlation(img_a, thumbs[b][j][:, ::-1])
                flipped = corr_flip > corr_same
                corr = max(corr_same, corr_flip)
                if corr < min_correlation:
                    continue
                full_a, full_b = splits[a].images[ia], splits[b].images[int(j)]
                if torch.equal(full_a, full_b):
                    kind = "exact"
                elif flipped:
                    kind = "flipped"
                else:
                    kind = "near"
                rows.append([a, splits[a].ids[ia], ia, b, splits[b].ids[int(j)], int(j), kind,
                             int(d_flip[i, j] if flipped else d_same[i, j]), round(corr, 4)])
    found = pd.DataFrame(rows, columns=COLUMNS)
    log.info("audit: %d cross-split duplicate pair(s)", len(found))
    return found


def summarize(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs counted by split pair and kind (the audit's table)."""
    if pairs.empty:
        return pd.DataFrame(columns=["split_a", "split_b", "kind", "pairs"])
    return pairs.groupby(["split_a", "split_b", "kind"]).size().rename("pairs").reset_index()


__all__ = ["COLUMNS", "find_duplicates", "phash", "summarize"]

"""In-memory splits of synthetic faces and the copies planted in them, for the duplicate
search (test_duplicates.py) and the audit report built on it (test_audit.py)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import torch
from PIL import Image

from resemote_lib.data.base import FaceDataset


def split(images: np.ndarray, name: str, labels: list[int] | None = None, dataset: str = "synthetic") -> FaceDataset:
    """A split of in-memory images, ids ``<name><index>``; ``synthetic`` takes that dataset's
    audit settings."""
    t = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    y = torch.tensor(labels if labels is not None else [0] * len(t), dtype=torch.int64)
    return FaceDataset(t, y, [f"{name}{i}" for i in range(len(t))], name=dataset, split=name, layout="x", root=None)


def reencode(img: np.ndarray, quality: int = 60) -> np.ndarray:
    """``img`` saved as a JPEG of that quality and read back."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("L"))


def brighter(img: np.ndarray) -> np.ndarray:
    """``img`` with less contrast and more light: the same picture, other pixels."""
    return (img.astype(float) * 0.8 + 20).round().astype(np.uint8)


def found(pairs: pd.DataFrame) -> dict[tuple, str]:
    """``{(split_a, index_a, split_b, index_b): kind}`` of the pairs found."""
    return {(r.split_a, r.index_a, r.split_b, r.index_b): r.kind for r in pairs.itertuples()}

"""In-memory splits of synthetic faces and the copies planted in them, for the duplicate
search (test_duplicates.py), the audit report built on it (test_audit.py) and its figure
(test_audit_figure.py)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import torch
from PIL import Image

from resemote_lib.data.base import FaceDataset
from resemote_lib.data.synthetic import make_faces


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


def hand_built_splits() -> dict[str, FaceDataset]:
    """Duplicates within and across splits, two label conflicts and blanks, all known."""
    faces, _ = make_faces(20, seed=3)
    train, val, test = faces[:10].copy(), faces[10:15].copy(), faces[15:].copy()
    y_train, y_val, y_test = [0] * 10, [0] * 5, [0] * 5
    test[0] = train[1]  # exact, train/test
    test[1] = val[0][:, ::-1]  # mirror image, val/test
    test[2] = brighter(train[3])  # near, train/test...
    val[1] = test[2]  # ...and its exact copy in val: group {train3, val1, test2}
    val[2] = train[5]  # exact, train/val, with another label: a conflict
    y_val[2] = 3
    train[8] = train[7]  # exact within train, another label: a conflict
    y_train[8] = 5
    train[9] = 0  # blanks: black, black, grey
    val[4] = 0
    test[4] = 128
    return {"train": split(train, "train", y_train), "val": split(val, "val", y_val), "test": split(test, "test", y_test)}

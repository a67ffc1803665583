from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from resemote_lib.data.audit import find_duplicates, phash, summarize
from resemote_lib.data.base import FaceDataset
from resemote_lib.data.synthetic import make_faces


def _ds(images: np.ndarray, split: str) -> FaceDataset:
    t = torch.from_numpy(images).unsqueeze(1)
    return FaceDataset(t, torch.zeros(len(t), dtype=torch.int64), [f"{split}{i}" for i in range(len(t))],
                       name="t", split=split, layout="x", root=None)


def _reencode(img: np.ndarray, quality: int = 60) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("L"))


def test_finds_every_planted_copy_and_no_false_pairs():
    # 300 distinct faces; all 7 classes, so many look alike (same expression, similar pose).
    faces, _ = make_faces(300, seed=11)
    train, test = faces[:240].copy(), faces[240:].copy()
    planted = {
        0: ("exact", test[0]),
        1: ("flipped", test[1][:, ::-1]),
        2: ("near", np.clip(test[2].astype(int) + 35, 0, 255).astype(np.uint8)),  # brighter
        3: ("near", np.clip((test[3].astype(float) - 128) * 0.7 + 128, 0, 255).astype(np.uint8)),  # contrast
        4: ("near", _reencode(test[4], 50)),  # re-encoded JPEG
        5: ("flipped", _reencode(np.clip(test[5].astype(int) - 20, 0, 255).astype(np.uint8)[:, ::-1], 70)),
    }
    slots = [10, 40, 80, 120, 160, 200]
    for slot, (_, (_, img)) in zip(slots, planted.items(), strict=True):
        train[slot] = np.ascontiguousarray(img)
    pairs = find_duplicates({"train": _ds(train, "train"), "test": _ds(test, "test")})
    found = {(r.index_a, r.index_b): r.kind for r in pairs.itertuples()}
    expected = {(slot, k): kind for slot, (k, (kind, _)) in zip(slots, planted.items(), strict=True)}
    assert found == expected, pairs
    table = summarize(pairs)
    assert table["pairs"].sum() == 6


def test_no_pairs_among_distinct_images():
    faces, _ = make_faces(400, seed=12)
    pairs = find_duplicates({"train": _ds(faces[:300], "train"), "val": _ds(faces[300:], "val")})
    assert pairs.empty, pairs
    assert summarize(pairs).empty


def test_phash_ignores_brightness_and_contrast():
    faces, _ = make_faces(5, seed=1)
    x = faces.astype(np.float64)
    small = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=(32, 32), mode="area")[:, 0].numpy()
    assert (phash(small) == phash(small * 0.6 + 40)).all()

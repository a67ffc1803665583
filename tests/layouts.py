"""Tiny fixtures in every real on-disk layout, with known per-class counts.

Pixels are synthetic faces; what matters here is the layout, the file names and the
label codes, written exactly as the real releases write them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from resemote_lib.data.synthetic import render_face
from resemote_lib.labels import (
    AFFECTNET_CODES,
    AFFECTNET_KAGGLE_NAMES,
    CLASS_NAMES,
    FER2013_CODES,
    RAFDB_CODES,
)

# Per canonical class (angry..surprise) counts of each fixture split.
FER_COUNTS = {"Training": [3, 1, 2, 4, 3, 2, 2], "PublicTest": [1, 1, 1, 2, 1, 1, 1], "PrivateTest": [2, 1, 1, 1, 1, 2, 1]}
RAF_COUNTS = {"train": [4, 2, 3, 6, 5, 4, 3], "test": [1, 1, 2, 2, 1, 1, 1]}
AFFECT_COUNTS = {"training": [6, 3, 4, 8, 7, 5, 4], "validation": [2, 2, 2, 2, 2, 2, 2]}
AFFECT_EXCLUDED = {7: 2, 8: 1, 9: 1, 10: 1}  # contempt, none, uncertain, no-face rows
KAGGLE_AFFECT_COUNTS = [10, 10, 10, 12, 10, 10, 10]
KAGGLE_CONTEMPT = 3


def _face(k: int, rng: np.random.Generator, size: int = 48, rgb: bool = False) -> Image.Image:
    img = Image.fromarray(render_face(CLASS_NAMES[k], rng)).resize((size, size))
    return img.convert("RGB") if rgb else img


def _inverse(table: dict) -> dict:
    return {v: k for k, v in table.items()}


def write_fer2013_csv(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    code = _inverse(FER2013_CODES)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for usage, counts in FER_COUNTS.items():
            for k, n in enumerate(counts):
                for _ in range(n):
                    pix = np.asarray(_face(k, rng))
                    w.writerow([code[k], " ".join(map(str, pix.ravel())), usage])
    return root


def write_fer2013_folders(root: Path, seed: int = 0) -> Path:
    """msambare/fer2013: train/<class>/Training_<id>.jpg; test/ merges Public+Private."""
    rng = np.random.default_rng(seed)
    next_id = 10118481
    for usage, counts in FER_COUNTS.items():
        part = "train" if usage == "Training" else "test"
        for k, n in enumerate(counts):
            folder = root / part / CLASS_NAMES[k]
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(n):
                _face(k, rng).save(folder / f"{usage}_{next_id}.jpg", quality=95)
                next_id += 7
    for part in ("train", "test"):  # empty class folders still exist in the release
        for name in CLASS_NAMES:
            (root / part / name).mkdir(parents=True, exist_ok=True)
    return root


def write_rafdb_official(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    code = _inverse(RAFDB_CODES)
    base = root / "basic"
    (base / "EmoLabel").mkdir(parents=True)
    (base / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for part, counts in RAF_COUNTS.items():
        i = 1
        for k, n in enumerate(counts):
            for _ in range(n):
                name = f"{part}_{i:05d}.jpg" if part == "train" else f"{part}_{i:04d}.jpg"
                lines.append(f"{name} {code[k]}")
                _face(k, rng, 100, rgb=True).save(base / "Image" / "aligned" / f"{Path(name).stem}_aligned.jpg")
                i += 1
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def write_rafdb_kaggle(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    code = _inverse(RAFDB_CODES)
    for part, counts in RAF_COUNTS.items():
        rows = []
        i = 1
        for k, n in enumerate(counts):
            folder = root / "DATASET" / part / str(code[k])
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(n):
                name = f"{part}_{i:05d}_aligned.jpg" if part == "train" else f"{part}_{i:04d}_aligned.jpg"
                _face(k, rng, 100, rgb=True).save(folder / name)
                rows.append((name, code[k]))
                i += 1
        with open(root / f"{part}_labels.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "label"])
            w.writerows(rows)
    return root


def write_affectnet_official(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    code = _inverse(AFFECTNET_CODES)
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
              "facial_landmarks", "expression", "valence", "arousal"]
    for part, counts in AFFECT_COUNTS.items():
        rows = []
        i = 0
        for k, n in enumerate(counts):
            for _ in range(n):
                rel = f"{100 + i % 3}/{part}_{i:04d}.jpg"
                path = root / "Manually_Annotated_Images" / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                # The face sits at (20, 10) in a larger photo; the loader must crop it.
                photo = Image.new("RGB", (120, 100), (30, 90, 160))
                photo.paste(_face(k, rng, 64, rgb=True), (20, 10))
                photo.save(path)
                rows.append([rel, 20, 10, 64, 64, "1;2;3", code[k], 0.1, -0.2])
                i += 1
        if part == "training":
            for excl, n in AFFECT_EXCLUDED.items():
                rows += [[f"999/x{excl}_{j}.jpg", 0, 0, 10, 10, "", excl, 0, 0] for j in range(n)]
        with open(root / f"{part}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    return root


def write_affectnet_kaggle(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    name_of = {v: k for k, v in AFFECTNET_KAGGLE_NAMES.items()}
    rows = []
    i = 0
    plan = [(name_of[k], k, n) for k, n in enumerate(KAGGLE_AFFECT_COUNTS)] + [("contempt", 4, KAGGLE_CONTEMPT)]
    for folder, k, n in plan:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            rel = f"{folder}/image{i:07d}.jpg"
            _face(k, rng, 96, rgb=True).save(root / rel)
            rows.append([i, rel, folder, 0.9])
            i += 1
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "pth", "label", "relFCs"])
        w.writerows(rows)
    return root

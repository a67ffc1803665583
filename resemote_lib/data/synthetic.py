"""Synthetic faces: a small, real vision task that needs no download.

Procedurally drawn 48x48 grayscale cartoon faces whose expression (one of the 7 classes)
shows only through brows, eyes and mouth. Nuisances (position, scale, rotation, lighting
gradient, contrast, occlusion, noise) vary per image, so a linear model on raw pixels does
poorly while a CNN learns the task. Seeded and deterministic; class frequencies follow
FER2013's training split. Written as a genuine ``fer2013.csv`` so the demo goes through
the very loader real users use.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..labels import CLASS_NAMES, FER2013_CODES

log = logging.getLogger(__name__)

# FER2013 Training counts per canonical class (angry ... surprise): its imbalance.
FER2013_TRAIN_COUNTS = (3995, 436, 4097, 7215, 4965, 4830, 3171)
_CANVAS = 192  # drawn at 4x, then warped and downsampled to 48 (anti-aliasing)
_SIZE = 48


@dataclass(frozen=True)
class Nuisance:
    """Ranges of the per-image variation. Defaults are the demo's task."""

    shift: float = 0.10  # max translation, fraction of the image side
    scale: tuple[float, float] = (0.80, 1.10)
    rotation: float = 18.0  # max degrees either way
    lighting: float = 0.5  # max strength of a linear brightness gradient
    contrast: tuple[float, float] = (0.45, 1.0)
    occlusion: float = 0.3  # probability of a random grey block over the lower or upper face
    noise: float = 10.0  # gaussian noise std, grey levels


def _expression(cls: str, rng: np.random.Generator) -> dict[str, float]:
    """Feature parameters of one expression, with a little per-face variety.

    brow_tilt > 0 lowers the inner ends (anger); < 0 raises them (sadness, fear).
    mouth_curve > 0 smiles, < 0 frowns; mouth_open is the opening height.
    """
    j = lambda s: float(rng.normal(0, s))  # noqa: E731 - tiny local jitter helper
    base = {
        "angry": dict(brow_y=-0.02, brow_tilt=0.10, eye_h=0.45, mouth_curve=-0.02, mouth_open=0.0, mouth_w=0.34, asym=0),
        "disgust": dict(brow_y=0.0, brow_tilt=0.05, eye_h=0.5, mouth_curve=-0.05, mouth_open=0.0, mouth_w=0.36, asym=1),
        "fear": dict(brow_y=0.05, brow_tilt=-0.07, eye_h=1.25, mouth_curve=-0.04, mouth_open=0.08, mouth_w=0.42, asym=0),
        "happy": dict(brow_y=0.01, brow_tilt=0.0, eye_h=0.8, mouth_curve=0.10, mouth_open=0.0, mouth_w=0.46, asym=0),
        "neutral": dict(brow_y=0.0, brow_tilt=0.0, eye_h=0.8, mouth_curve=0.0, mouth_open=0.0, mouth_w=0.36, asym=0),
        "sad": dict(brow_y=0.01, brow_tilt=-0.08, eye_h=0.7, mouth_curve=-0.09, mouth_open=0.0, mouth_w=0.36, asym=0),
        "surprise": dict(brow_y=0.10, brow_tilt=0.0, eye_h=1.35, mouth_curve=0.0, mouth_open=0.17, mouth_w=0.24, asym=0),
    }[cls]
    return {
        "brow_y": base["brow_y"] + j(0.012), "brow_tilt": base["brow_tilt"] + j(0.012),
        "eye_h": base["eye_h"] * (1 + j(0.08)), "mouth_curve": base["mouth_curve"] + j(0.012),
        "mouth_open": max(0.0, base["mouth_open"] + j(0.01)), "mouth_w": base["mouth_w"] * (1 + j(0.06)),
        "asym": base["asym"],
    }


def _draw_face(cls: str, rng: np.random.Generator) -> Image.Image:
    """The face on a 4x canvas, centred, before nuisances."""
    c = _CANVAS
    img = Image.new("L", (c, c), int(rng.integers(40, 110)))
    d = ImageDraw.Draw(img)
    e = _expression(cls, rng)
    skin = int(rng.integers(150, 215))
    fw, fh = c * rng.uniform(0.30, 0.36), c * rng.uniform(0.38, 0.44)
    d.ellipse([c / 2 - fw, c / 2 - fh, c / 2 + fw, c / 2 + fh], fill=skin)
    ink = int(rng.integers(10, 60))
    lw = max(3, round(c * 0.022))
    eye_dx, eye_y = c * 0.14, c * 0.43
    for side in (-1, 1):
        ex = c / 2 + side * eye_dx
        ew, eh = c * 0.055, c * 0.04 * e["eye_h"]
        d.ellipse([ex - ew, eye_y - eh, ex + ew, eye_y + eh], fill=255 - ink // 2, outline=ink, width=lw // 2 + 1)
        pr = c * 0.022
        d.ellipse([ex - pr, eye_y - pr, ex + pr, eye_y + pr], fill=ink)
        # Brow: a thick segment above the eye; tilt moves its inner end.
        by = eye_y - c * (0.085 + e["brow_y"])
        inner, outer = ex - side * c * 0.07, ex + side * c * 0.075
        tilt = c * e["brow_tilt"] * (1.6 if e["asym"] and side > 0 else 1.0)
        d.line([(inner, by + tilt), (outer, by - tilt * 0.3)], fill=ink, width=lw + 2)
    # Mouth: a quadratic curve (smile/frown), optionally open (filled ellipse).
    mx, my, mw = c / 2, c * 0.66, c * e["mouth_w"] / 2
    if e["mouth_open"] > 0.02:
        mh = c * e["mouth_open"] / 2
        d.ellipse([mx - mw, my - mh, mx + mw, my + mh], fill=ink, outline=ink)
    else:
        pts = []
        for t in np.linspace(-1, 1, 25):
            wave = c * 0.02 * math.sin(3 * math.pi * t) if e["asym"] else 0.0
            skew = c * 0.03 * t if e["asym"] else 0.0
            pts.append((mx + t * mw, my + c * e["mouth_curve"] * (1 - t * t) + wave + skew))
        d.line(pts, fill=ink, width=lw, joint="curve")
    if e["asym"]:  # disgust: wrinkled nose
        for k in (-1, 1):
            d.line([(c / 2 + k * c * 0.03, c * 0.52), (c / 2 + k * c * 0.055, c * 0.56)], fill=ink, width=lw // 2 + 1)
    return img


def render_face(cls: str, rng: np.random.Generator, nuisance: Nuisance = Nuisance()) -> np.ndarray:
    """One 48x48 uint8 face of class ``cls`` under random nuisances."""
    img = _draw_face(cls, rng)
    n = nuisance
    angle = math.radians(rng.uniform(-n.rotation, n.rotation))
    scale = rng.uniform(*n.scale)
    tx, ty = (rng.uniform(-n.shift, n.shift, size=2) * _CANVAS)
    # Inverse affine map (output -> input) about the canvas centre.
    cos, sin, c = math.cos(angle) / scale, math.sin(angle) / scale, _CANVAS / 2
    a, b, d_, e_ = cos, sin, -sin, cos
    coeffs = (a, b, c - a * (c + tx) - b * (c + ty), d_, e_, c - d_ * (c + tx) - e_ * (c + ty))
    fill = int(np.asarray(img)[0, 0])
    img = img.transform(img.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=fill)
    arr = np.asarray(img.resize((_SIZE, _SIZE), Image.Resampling.LANCZOS), dtype=np.float32)
    if rng.random() < n.occlusion:  # a hand or a scarf: a flat block over part of the face
        w, h = rng.integers(10, 22), rng.integers(6, 12)
        x0, y0 = rng.integers(0, _SIZE - w), rng.choice([rng.integers(4, 14), rng.integers(30, 40)])
        arr[y0:y0 + h, x0:x0 + w] = rng.uniform(40, 200)
    yy, xx = np.mgrid[0:_SIZE, 0:_SIZE] / _SIZE - 0.5
    theta = rng.uniform(0, 2 * math.pi)
    arr *= 1 + rng.uniform(0, n.lighting) * (xx * math.cos(theta) + yy * math.sin(theta)) * 2
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(*n.contrast) + mean + rng.uniform(-25, 25)
    arr += rng.normal(0, n.noise, arr.shape)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _class_counts(total: int) -> list[int]:
    """Split ``total`` into FER2013's training proportions (largest remainders)."""
    weights = np.array(FER2013_TRAIN_COUNTS, dtype=float)
    raw = weights / weights.sum() * total
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][: total - counts.sum()]] += 1
    return counts.tolist()


def make_faces(n: int, seed: int, nuisance: Nuisance = Nuisance()) -> tuple[np.ndarray, np.ndarray]:
    """``n`` faces (uint8, ``(n, 48, 48)``) and canonical labels, shuffled, deterministic."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), _class_counts(n))
    rng.shuffle(labels)
    images = np.stack([render_face(CLASS_NAMES[k], rng, nuisance) for k in labels]) if n else (
        np.zeros((0, _SIZE, _SIZE), np.uint8))
    return images, labels


def write_fer2013_csv(
    path: str | os.PathLike,
    *,
    n_train: int = 3000,
    n_val: int = 400,
    n_test: int = 600,
    seed: int = 0,
    nuisance: Nuisance = Nuisance(),
) -> Path:
    """Write a synthetic ``fer2013.csv`` (header ``emotion,pixels,Usage``, FER2013 codes).

    Each split is drawn from its own seed stream, so its images are independent of the
    other splits' sizes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_code = {canon: code for code, canon in FER2013_CODES.items()}
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for k, (usage, n) in enumerate((("Training", n_train), ("PublicTest", n_val), ("PrivateTest", n_test))):
            images, labels = make_faces(n, seed=seed * 1000 + k, nuisance=nuisance)
            for img, y in zip(images, labels, strict=True):
                w.writerow([to_code[int(y)], " ".join(map(str, img.ravel().tolist())), usage])
    os.replace(tmp, path)
    log.info("wrote %d synthetic faces to %s", n_train + n_val + n_test, path)
    return path


__all__ = ["FER2013_TRAIN_COUNTS", "Nuisance", "make_faces", "render_face", "write_fer2013_csv"]

"""Face detectors, and how a detected face is cropped: one place for prediction and datasets.

``make_detector`` turns a spec into a detector: ``"auto"``/``"haar"`` (OpenCV's bundled
Haar cascade, fully offline), ``None``/``"none"`` (the image is already a face crop: the
whole image is the one face), a ``YuNetDetector`` (with a model file you provide),
``FixedBoxes`` (boxes computed elsewhere) or any callable ``rgb -> [(box, score)]``.
``expand_box`` grows a detected box by a margin before it is cropped.

``DEFAULT_DETECTOR`` and ``DEFAULT_MARGIN`` are the ``Predictor``'s defaults and the ones the
folder dataset's ``crop_faces`` uses, so evaluation on whole photos crops each face exactly
as ``predict`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from .base import Box

DEFAULT_DETECTOR = "auto"
DEFAULT_MARGIN = 0.15  # of the box's width and height, on each side


class Detector(Protocol):
    def __call__(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        """Faces in an RGB uint8 image: ``[(box, score), ...]``."""


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade (offline; opencv-python-headless < 5)."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24) -> None:
        import cv2

        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise RuntimeError("this OpenCV has no Haar cascades (opencv 5.x dropped them): "
                               "pip install 'opencv-python-headless<5'")
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade at {path}")
        self.kw = dict(scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size))

    def __call__(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        boxes, _, weights = self.cascade.detectMultiScale3(gray, outputRejectLevels=True, **self.kw)
        return [(tuple(int(v) for v in b), float(w)) for b, w in zip(boxes, np.ravel(weights), strict=True)]


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``) with an ONNX model file you provide."""

    def __init__(self, model_path: str | os.PathLike, score_threshold: float = 0.7) -> None:
        import cv2

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"YuNet model not found: {model_path} (face_detection_yunet_*.onnx "
                                    "from the OpenCV model zoo)")
        self.net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold)

    def __call__(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        import cv2

        h, w = rgb.shape[:2]
        self.net.setInputSize((w, h))
        _, faces = self.net.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return [] if faces is None else [((int(f[0]), int(f[1]), int(f[2]), int(f[3])), float(f[-1])) for f in faces]


class FixedBoxes:
    """Boxes computed elsewhere: the same list for every image, or a function of the source."""

    def __init__(self, boxes: Sequence[Box] | Callable[[np.ndarray], Sequence[Box]]) -> None:
        self.boxes = boxes

    def __call__(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        boxes = self.boxes(rgb) if callable(self.boxes) else self.boxes
        return [(tuple(int(v) for v in b), 1.0) for b in boxes]


def whole_image(rgb: np.ndarray) -> list[tuple[Box, float]]:
    """The detector of ``detector=None``: the image is a face crop, cropped no further."""
    return [((0, 0, rgb.shape[1], rgb.shape[0]), 1.0)]


def make_detector(detector: str | Detector | None) -> Detector:
    """The detector a spec names (see the module docstring); a callable is returned as is."""
    if detector is None or detector == "none":
        return whole_image
    if detector in ("auto", "haar"):
        return HaarDetector()
    if isinstance(detector, str):
        raise ValueError(f"unknown detector {detector!r}: use 'auto'/'haar', None, a YuNetDetector(path), "
                         "FixedBoxes(boxes) or any callable rgb -> [(box, score)]")
    return detector


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """Grow ``box`` by ``margin`` of its size on each side, clipped to the image."""
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, x1 - x0, y1 - y0


__all__ = ["DEFAULT_DETECTOR", "DEFAULT_MARGIN", "Box", "Detector", "FixedBoxes", "HaarDetector", "YuNetDetector",
           "expand_box", "make_detector", "whole_image"]

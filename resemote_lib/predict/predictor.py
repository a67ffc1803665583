"""The ``Predictor``: faces and their emotions in one image, or in a batch of images.

It finds faces (``data.faces``: OpenCV's bundled Haar cascade by default, fully offline;
YuNet with a model file you provide; boxes computed elsewhere; or ``detector=None`` for
images that are already face crops), crops each with a margin, applies exactly the
evaluation preprocessing (``inference.predict_logits``), and returns per face its box, the
probabilities keyed by class name (calibrated with the model's ``temperature``: the
checkpoint's calibration file, else 1), the top label and the detector's score.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..calibration import check_temperature
from ..checkpoint import load_model
from ..data.base import to_gray_square
from ..data.faces import (
    DEFAULT_DETECTOR,
    DEFAULT_MARGIN,
    Box,
    Detector,
    expand_box,
    make_detector,
    whole_image,
)
from ..device import resolve_device
from ..inference import predict_logits, preprocess_of
from ..model import ResEmoteNet
from .decode import to_rgb


@dataclass
class Face:
    box: Box
    probs: dict[str, float]
    label: str
    score: float  # detector confidence (1.0 for given boxes or no detector)


@dataclass
class Result:
    source: str
    faces: list[Face] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "error": self.error, "faces": [asdict(f) for f in self.faces]}


class Predictor:
    """Faces and their emotions in images: a model, its preprocessing and its calibration.

    ``predict_files`` and ``predict_video`` run a Predictor over files, folders, videos and
    webcams.

    Args:
        model_or_checkpoint: a ``ResEmoteNet`` (with ``class_names``) or a checkpoint path.
        detector: ``"auto"`` (Haar cascade), ``None`` (images are face crops), a
            ``YuNetDetector``, ``FixedBoxes`` or any callable ``rgb -> [(box, score)]``.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        tta: average each face with its mirror image.
        margin: crop margin around each detected box, as a fraction of its size.
        temperature: softmax temperature (a finite number > 0); default the model's
            ``temperature`` (``load_model`` reads the checkpoint's calibration file), else 1.
    """

    def __init__(self, model_or_checkpoint: ResEmoteNet | str | os.PathLike,
                 detector: str | Detector | None = DEFAULT_DETECTOR, device: str | torch.device = "auto",
                 tta: bool = False, margin: float = DEFAULT_MARGIN, temperature: float | None = None,
                 image_size: int | None = None) -> None:
        self.device = resolve_device(device)
        model = model_or_checkpoint
        if not isinstance(model, torch.nn.Module):
            model = load_model(model, device=self.device)
        self.model = model.to(self.device).eval()
        self.class_names = tuple(getattr(model, "class_names", ()))
        if len(self.class_names) != model.fc4.out_features:
            raise ValueError("the model needs a class_names attribute naming its outputs")
        self.temperature = check_temperature(temperature if temperature is not None else getattr(model, "temperature", 1.0),
                                             "Predictor" if temperature is not None else "the model's temperature")
        self.image_size = int(image_size or getattr(model, "image_size", 64))
        self.preprocess = preprocess_of(model)
        self.detector = make_detector(detector)
        self.tta, self.margin = tta, margin

    def _classify(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, len(self.class_names)))
        images = torch.from_numpy(np.stack(crops))[:, None]
        views = (False, True) if self.tta else (False,)
        probs = [(predict_logits(self.model, images, device=self.device, flip=flip, preprocess=self.preprocess)
                  / self.temperature).softmax(1) for flip in views]
        out = (sum(probs) / len(probs)).cpu().numpy()
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        if bad:  # written out they would be NaN: invalid JSON, and argmax calls them "angry"
            raise ValueError(f"the model's probabilities for {bad} face(s) are not finite (NaN or inf): its logits "
                             f"overflow (temperature {self.temperature:g}); check the checkpoint's weights")
        return out

    def _crops(self, rgb: np.ndarray) -> tuple[list[np.ndarray], list[tuple[Box, float]]]:
        """Detected faces of one RGB image, cropped with the margin and preprocessed."""
        h, w = rgb.shape[:2]
        crops, kept = [], []
        for box, score in self.detector(rgb):
            x, y, bw, bh = expand_box(box, self.margin, w, h) if self.detector is not whole_image else box
            if bw < 2 or bh < 2:
                continue
            crops.append(to_gray_square(Image.fromarray(rgb[y:y + bh, x:x + bw]), self.image_size))
            kept.append((box, score))
        return crops, kept

    def _faces(self, kept: list[tuple[Box, float]], probs: np.ndarray) -> list[Face]:
        return [Face(box=box, probs={n: round(float(p), 6) for n, p in zip(self.class_names, row, strict=True)},
                     label=self.class_names[int(row.argmax())], score=score)
                for (box, score), row in zip(kept, probs, strict=True)]

    def faces(self, rgb: np.ndarray) -> list[Face]:
        """Detect, crop and classify every face of one RGB uint8 image."""
        crops, kept = self._crops(rgb)
        return self._faces(kept, self._classify(crops))

    def predict(self, image: str | os.PathLike | Image.Image | np.ndarray, color: str | None = None) -> Result:
        """One image: a path, a PIL image, or an array with ``color`` given."""
        source = str(image) if isinstance(image, str | os.PathLike) else type(image).__name__
        return Result(source=source, faces=self.faces(to_rgb(image, color)))

    def predict_batch(self, images: Sequence[str | os.PathLike | Image.Image | np.ndarray],
                      color: str | None = None) -> list[Result]:
        """Several images, their faces classified in one forward pass."""
        per_image = [self._crops(to_rgb(img, color)) for img in images]
        probs = self._classify([c for crops, _ in per_image for c in crops])
        out, start = [], 0
        for img, (crops, kept) in zip(images, per_image, strict=True):
            source = str(img) if isinstance(img, str | os.PathLike) else type(img).__name__
            out.append(Result(source=source, faces=self._faces(kept, probs[start:start + len(crops)])))
            start += len(crops)
        return out


__all__ = ["Face", "Predictor", "Result"]

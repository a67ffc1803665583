"""The paper's/reference's preprocessing, as named presets, on single images or whole batches.

Reference (train and test): Resize(64) -> Grayscale(3 channels) -> RandomHorizontalFlip ->
ToTensor -> Normalize(ImageNet mean/std). The reference also flips at *test* time, at
random: a bug (predictions change from run to run), which we do not copy: evaluation uses
no flip; flip test-time augmentation is a separate, deterministic, reported option.

Images are decoded once to uint8 grayscale at the target size (see ``base.py``), so what
remains is cheap tensor work: flip and normalise, done per batch on the training device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preset:
    """One named preprocessing. ``flip`` is the probability of a horizontal flip."""

    name: str
    flip: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channels: int = 3  # grayscale replicated, as the reference's Grayscale(3)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """uint8 ``(N, 1, H, W)`` (or ``(1, H, W)``) -> normalised float ``(N, C, H, W)``."""
        single = images.dim() == 3
        x = images.unsqueeze(0) if single else images
        x = x.float().div_(255.0).expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean[: self.channels], device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std[: self.channels], device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
        if self.flip > 0:
            draw = torch.rand(x.shape[0], generator=generator, device=generator.device if generator else "cpu")
            x = torch.where((draw < self.flip).to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
        return x[0] if single else x


TRAIN = Preset("train", flip=0.5)
EVAL = Preset("eval", flip=0.0)
PRESETS = {p.name: p for p in (TRAIN, EVAL)}

__all__ = ["EVAL", "IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "TRAIN", "Preset"]

"""The paper's/reference's preprocessing, as named presets, on single images or whole batches.

Reference (train and test): Resize(64) -> Grayscale(3 channels) -> RandomHorizontalFlip ->
ToTensor -> Normalize(ImageNet mean/std). The reference also flips at *test* time, at
random: a bug (predictions change from run to run), which we do not copy: evaluation uses
no flip; flip test-time augmentation is a separate, deterministic, reported option.

Images are decoded once to uint8 grayscale at the target size (see ``base.py``), so what
remains is cheap tensor work: flip and normalise, done per batch on the training device.
"""

from __future__ import annotations

import functools
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

    def __call__(self, images: Tensor, generator: torch.Generator | None = None,
                 flip_mask: Tensor | None = None) -> Tensor:
        """uint8 ``(N, 1, H, W)`` (or ``(1, H, W)``) -> normalised float ``(N, C, H, W)``.

        Args:
            generator: draws the random flips (on its own device).
            flip_mask: bool ``(N,)`` on the images' device: which to flip, drawn beforehand
                (the training loop draws a whole epoch's at once); overrides ``generator``.
        """
        single = images.dim() == 3
        x = images.unsqueeze(0) if single else images
        scale, shift = _affine(self.mean, self.std, self.channels, x.device)
        x = x.float().expand(-1, self.channels, -1, -1) * scale + shift  # (x / 255 - mean) / std
        if flip_mask is None and self.flip > 0:
            device = generator.device if generator is not None else x.device
            flip_mask = (torch.rand(x.shape[0], generator=generator, device=device) < self.flip).to(x.device)
        if flip_mask is not None:
            x = torch.where(flip_mask.view(-1, 1, 1, 1), x.flip(-1), x)
        return x[0] if single else x


@functools.cache
def _affine(mean: tuple[float, ...], std: tuple[float, ...], channels: int,
            device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-channel scale and shift on ``device``, made once per device: no host-to-device
    copy per batch (a blocking one on CUDA)."""
    m = torch.tensor(mean[:channels], dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std[:channels], dtype=torch.float32).view(1, -1, 1, 1)
    return (1 / (255 * s)).to(device), (-m / s).to(device)


TRAIN = Preset("train", flip=0.5)
EVAL = Preset("eval", flip=0.0)
PRESETS = {p.name: p for p in (TRAIN, EVAL)}

__all__ = ["EVAL", "IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "TRAIN", "Preset"]

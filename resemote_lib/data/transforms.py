"""The paper's/reference's preprocessing, as named presets, on single images or whole batches.

Reference (train and test): Resize(64) -> Grayscale(3 channels) -> RandomHorizontalFlip ->
ToTensor -> Normalize(ImageNet mean/std). The reference also flips at *test* time, at
random: a bug (predictions change from run to run), which we do not copy: evaluation uses
no flip; flip test-time augmentation is a separate, deterministic, reported option.

Images are decoded once to uint8 grayscale at the target size (see ``cache.py``), so what
remains is cheap tensor work: flip, an optional random affine warp (rotation, scale, shift:
our CPU-budget recipe, not the paper's) and normalise, done per batch on the training device.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preset:
    """One named preprocessing. ``flip`` is the probability of a horizontal flip; ``degrees``,
    ``scale`` and ``shift`` bound a random affine warp (rotation up to +-degrees, zoom by a
    factor in [1 - scale, 1 + scale], shift up to +-shift of the side), off when all are 0."""

    name: str
    flip: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channels: int = 3  # grayscale replicated, as the reference's Grayscale(3)
    degrees: float = 0.0
    scale: float = 0.0
    shift: float = 0.0

    @property
    def warps(self) -> bool:
        return bool(self.degrees or self.scale or self.shift)

    def draw_warps(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """``(n, 4)`` warp parameters (angle in radians, zoom, shift x, shift y), uniform in the
        preset's bounds, drawn from ``generator`` in one go (the training loop draws an epoch's)."""
        u = torch.rand(n, 4, generator=generator, device=device) * 2 - 1
        bounds = torch.tensor([math.radians(self.degrees), self.scale, self.shift, self.shift], device=device)
        return u * bounds + torch.tensor([0.0, 1.0, 0.0, 0.0], device=device)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None,
                 flip_mask: Tensor | None = None, warps: Tensor | None = None) -> Tensor:
        """uint8 ``(N, 1, H, W)`` (or ``(1, H, W)``) -> normalised float ``(N, C, H, W)``.

        Args:
            generator: draws the random flips and warps (on its own device).
            flip_mask: bool ``(N,)`` on the images' device: which to flip, drawn beforehand
                (the training loop draws a whole epoch's at once); overrides ``generator``.
            warps: ``(N, 4)`` from ``draw_warps``, drawn beforehand likewise.
        """
        single = images.dim() == 3
        x = images.unsqueeze(0) if single else images
        scale, shift = _affine(self.mean, self.std, self.channels, x.device)
        x = x.float()
        if warps is None and self.warps:
            device = generator.device if generator is not None else x.device
            warps = self.draw_warps(x.shape[0], generator, device).to(x.device)
        if warps is not None:
            x = warp(x, warps)
        x = x.expand(-1, self.channels, -1, -1) * scale + shift  # (x / 255 - mean) / std
        if flip_mask is None and self.flip > 0:
            device = generator.device if generator is not None else x.device
            flip_mask = (torch.rand(x.shape[0], generator=generator, device=device) < self.flip).to(x.device)
        if flip_mask is not None:
            x = torch.where(flip_mask.view(-1, 1, 1, 1), x.flip(-1), x)
        return x[0] if single else x


def warp(images: Tensor, params: Tensor) -> Tensor:
    """Float images ``(N, 1, H, W)`` rotated, zoomed and shifted by ``params`` ``(N, 4)``
    (bilinear; the border pixels extend past the edges, so no black corners appear)."""
    angle, zoom, tx, ty = params.to(images.dtype).unbind(1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, 2 * tx], 1), torch.stack([sin, cos, 2 * ty], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


@functools.cache
def _affine(mean: tuple[float, ...], std: tuple[float, ...], channels: int,
            device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-channel scale and shift on ``device``, made once per device: no host-to-device
    copy per batch (a blocking one on CUDA)."""
    m = torch.tensor(mean[:channels], dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std[:channels], dtype=torch.float32).view(1, -1, 1, 1)
    return (1 / (255 * s)).to(device), (-m / s).to(device)


TRAIN = Preset("train", flip=0.5)
# The CPU-budget recipe's augmentation (params ``augment: affine``): the paper's flip plus
# rotation up to 10 degrees, zoom by up to 10% and shifts up to 10% of the side.
TRAIN_AFFINE = Preset("train_affine", flip=0.5, degrees=10.0, scale=0.1, shift=0.1)
EVAL = Preset("eval", flip=0.0)
PRESETS = {p.name: p for p in (TRAIN, TRAIN_AFFINE, EVAL)}
# params ``augment`` -> the training preset.
AUGMENTATIONS = {"flip": TRAIN, "affine": TRAIN_AFFINE}

__all__ = ["AUGMENTATIONS", "EVAL", "IMAGENET_MEAN", "IMAGENET_STD", "PRESETS", "TRAIN", "TRAIN_AFFINE", "Preset",
           "warp"]

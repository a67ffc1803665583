"""The one evaluation loop: logits of a model on decoded images, at a stated precision.

Validation during training, testing after it, the Predictor and the explorer all call
``predict_logits``, so the number that selects a checkpoint and the number that tests it
come from the same code, preprocessing and precision (recorded by the callers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.transforms import EVAL, Preset
from .device import FP32, Precision
from .progress import tqdm


@torch.inference_mode()
def predict_logits(model: nn.Module, images: Tensor, *, batch_size: int = 256, device: torch.device | str = "cpu",
                   precision: Precision = FP32, channels_last: bool = False, flip: bool = False,
                   progress: bool = False, preprocess: Preset = EVAL) -> Tensor:
    """Float32 logits ``(N, C)`` on ``device`` for uint8 images ``(N, 1, S, S)``.

    Args:
        model: in eval mode here; its parameters must already be on ``device``.
        images: decoded grayscale uint8 images (a ``FaceDataset.images`` or face crops).
        batch_size: images per forward pass.
        device: where to run; batches are copied there as uint8 (4x less traffic).
        precision: autocast precision (``Precision("bf16", torch.bfloat16)``, ...).
        channels_last: feed NHWC tensors (faster convolutions on recent GPUs).
        flip: the mirror images' logits instead (flip test-time augmentation).
        progress: a progress bar over batches.
        preprocess: uint8 -> normalised float (a checkpoint record's own ``transform``).
    """
    device = torch.device(device)
    model.eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="evaluate", unit="batch", leave=False,
                      disable=not progress):
        x = preprocess(images[start:start + batch_size].to(device, non_blocking=True))
        if flip:
            x = x.flip(-1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast(device):
            out.append(model(x).float())
    if not out:
        return torch.zeros((0, _num_outputs(model)), device=device)
    return torch.cat(out)


def preprocess_of(model: nn.Module) -> Preset:
    """The preprocessing ``model``'s inputs expect: ``load_model`` sets ``model.preprocess``
    (a released checkpoint's record may differ from resemote's ``EVAL``); a model built in
    code gets ``EVAL``."""
    return getattr(model, "preprocess", EVAL)


def loss_and_correct(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy and number of correct top-1 predictions, on the logits' device
    (no host sync: the caller decides when to read them)."""
    labels = labels.to(logits.device)
    return F.cross_entropy(logits, labels, reduction="sum"), (logits.argmax(1) == labels).sum()


def _num_outputs(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else 0


__all__ = ["loss_and_correct", "predict_logits", "preprocess_of"]

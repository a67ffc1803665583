"""Export a checkpoint to ONNX (verified with ONNX Runtime) and TorchScript.

The exported graph includes the preprocessing after decoding: it takes grayscale face
crops as float ``(N, 1, S, S)`` in 0..255, replicates them to 3 channels, normalises
with ImageNet mean/std, and returns logits and (temperature-calibrated) probabilities.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .checkpoint import load_model
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)


class Deployable(nn.Module):
    """ResEmoteNet with its preprocessing and softmax inside: 0..255 gray in, probabilities out."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.temperature = float(temperature)

    def forward(self, gray255: Tensor) -> tuple[Tensor, Tensor]:
        x = (gray255 / 255.0).expand(-1, 3, -1, -1)
        logits = self.model((x - self.mean) / self.std)
        return logits, (logits / self.temperature).softmax(1)


def export(checkpoint: str | os.PathLike, path: str | os.PathLike, *, verify: bool = True) -> dict:
    """Export ``checkpoint`` to ``path`` (``.onnx``, or ``.pt``/``.ts`` for TorchScript).

    Returns a report: path, input size, class names and, when verified, the maximum
    absolute difference of the exported model's probabilities from PyTorch's.
    """
    model = load_model(checkpoint)
    meta = model.checkpoint_meta or {}
    wrapped = Deployable(model, float(meta.get("temperature", 1.0))).eval()
    size = model.image_size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 1, size, size) * 255
    report = {"path": str(path), "input": f"float32 (N, 1, {size}, {size}), gray 0..255",
              "outputs": ["logits", "probs"], "class_names": list(model.class_names)}
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # the TorchScript-based exporters warn about their deprecation
        if path.suffix == ".onnx":
            torch.onnx.export(wrapped, (example,), str(path), input_names=["gray255"], output_names=["logits", "probs"],
                              dynamic_axes={"gray255": {0: "batch"}, "logits": {0: "batch"}, "probs": {0: "batch"}},
                              dynamo=False)
        elif path.suffix in (".pt", ".ts"):
            torch.jit.trace(wrapped, example).save(str(path))
        else:
            raise ValueError(f"unknown export format {path.suffix!r}: use .onnx or .pt")
    if verify:
        x = torch.rand(5, 1, size, size) * 255  # a batch size other than the traced one
        with torch.inference_mode():
            expected = wrapped(x)[1].numpy()
        got = run_exported(path, x.numpy())
        report["max_abs_diff"] = float(np.abs(got - expected).max())
    log.info("exported %s", report)
    return report


def run_exported(path: str | os.PathLike, gray255: np.ndarray) -> np.ndarray:
    """Probabilities from an exported file (ONNX Runtime on CPU, or TorchScript)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(["probs"], {"gray255": gray255.astype(np.float32)})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": still works
        module = torch.jit.load(str(path))
    with torch.inference_mode():
        return module(torch.from_numpy(gray255.astype(np.float32)))[1].numpy()


__all__ = ["Deployable", "export", "run_exported"]

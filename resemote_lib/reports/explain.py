"""What the network looks at: SE channel gates and class activation maps.

The head is four fully connected layers, not one linear layer on pooled features, so
classic CAM does not apply. The map is taken at the SE block's output, the last map with
spatial detail (8x8 at 64x64 input; after the residual blocks it is 4x4, 2x2, then 1x1).
We use LayerCAM (Jiang et al., 2021): ``relu(sum_k relu(dy/dA_k) * A_k)`` per location.
Grad-CAM's channel-averaged weights can make the map negative everywhere at this layer
(seen on the demo model), leaving nothing after its ReLU; LayerCAM's per-location positive
gradients always keep the evidence for the class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..model import ResEmoteNet


def has_se(model: ResEmoteNet) -> bool:
    """Whether ``model`` has the SE block (the ``cnn`` and ``cnn_res`` variants do not)."""
    return getattr(model, "se", None) is not None


def se_gates(model: ResEmoteNet, x: Tensor) -> np.ndarray:
    """The SE block's 256 channel weights for one preprocessed image ``(3, H, W)``."""
    if not has_se(model):
        raise ValueError("this model variant has no SE block (see resemote_lib.model.VARIANTS)")
    captured: dict[str, Tensor] = {}
    handle = model.se.register_forward_hook(lambda m, inp, out: captured.setdefault("x", inp[0]))
    try:
        with torch.inference_mode():
            model.eval()(x.unsqueeze(0))
    finally:
        handle.remove()
    return model.se.gates(captured["x"])[0].detach().cpu().numpy()


def layer_cam(model: ResEmoteNet, x: Tensor, target: int | None = None) -> tuple[np.ndarray, int]:
    """LayerCAM of class ``target`` (default: the predicted one) at the SE output.

    Returns the map resized to the input, scaled to [0, 1], and the class used.
    """
    model.eval()
    store: dict[str, Tensor] = {}

    def hook(_m, _inp, out: Tensor) -> None:
        out.retain_grad()
        store["act"] = out

    handle = model.stem_out.register_forward_hook(hook)  # the SE output (the stem's, without SE)
    try:
        with torch.enable_grad():
            logits = model(x.unsqueeze(0).requires_grad_(False))
            cls = int(logits.argmax(1)) if target is None else int(target)
            model.zero_grad(set_to_none=True)
            logits[0, cls].backward()
    finally:
        handle.remove()
    act, grad = store["act"][0].detach(), store["act"].grad[0]
    model.zero_grad(set_to_none=True)  # leave no gradients behind in the caller's model
    cam = F.relu((F.relu(grad) * act).sum(0))
    cam = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cam.detach().cpu().numpy(), cls


__all__ = ["has_se", "layer_cam", "se_gates"]

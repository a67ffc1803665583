"""What a model looks at (resemote_lib/reports/explain.py): SE gates and Layer-CAM."""

from __future__ import annotations

import pytest
import torch

from resemote_lib.model import ResEmoteNet
from resemote_lib.reports.explain import layer_cam, se_gates


def test_se_gates_and_layer_cam_shapes():
    torch.manual_seed(0)
    model = ResEmoteNet()
    x = torch.randn(3, 64, 64)
    gates = se_gates(model, x)
    assert gates.shape == (256,) and ((gates >= 0) & (gates <= 1)).all()
    cam, cls = layer_cam(model, x)
    assert cam.shape == (64, 64) and cam.min() >= 0 and cam.max() == pytest.approx(1.0) and 0 <= cls < 7
    _, forced = layer_cam(model, x, target=2)
    assert forced == 2
    assert all(p.grad is None for p in model.parameters())

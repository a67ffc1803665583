from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from resemote_lib import plots
from resemote_lib.data.base import FaceDataset
from resemote_lib.evaluate import compute_metrics, reliability
from resemote_lib.explain import layer_cam, se_gates
from resemote_lib.gradients import gradient_flow_table
from resemote_lib.model import ResEmoteNet


def _ds(n=28, size=32):
    g = torch.Generator().manual_seed(0)
    return FaceDataset(torch.randint(0, 255, (n, 1, size, size), dtype=torch.uint8, generator=g),
                       torch.arange(n) % 7, [f"i{i}" for i in range(n)], name="t", split="test", layout="x", root=None)


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


def test_every_plot_renders_to_png(tmp_path):
    ds = _ds()
    hist = pd.DataFrame({"epoch": [1, 2], "lr": [1e-3, 1e-4], "train_loss": [2, 1], "train_acc": [0.2, 0.5],
                         "val_loss": [2, 1.5], "val_acc": [0.2, 0.4], "seconds": [1, 1]})
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=len(ds))
    m = compute_metrics(ds.labels.numpy(), probs)
    figs = {
        "dist": plots.class_distribution({"train": ds, "test": ds}),
        "grid": plots.example_grid(ds, per_class=3),
        "curves": plots.training_curves(hist),
        "confusion": plots.confusion_matrix(m.confusion, ds.class_names),
        "reliability": plots.reliability_diagram(reliability(probs, ds.labels.numpy()), m.ece),
        "confused": plots.confused_examples(ds, probs, m.confusion),
        "pairs": plots.image_pairs([]),
        "bars": plots.probability_bars(probs[0], ds.class_names),
        "gates": plots.se_gates(np.linspace(0, 1, 256)),
        "cam": plots.cam_overlay(np.zeros((32, 32)), np.ones((32, 32))),
        "paper": plots.paper_comparison(pd.DataFrame({"dataset": ["x", "s"], "protocol": ["p", "demo"], "run": ["a", "b"],
                                                      "published": [80.0, None], "official": [70.0, 93.0],
                                                      "official 95% CI": ["67.1-72.8", "90.9-94.8"],
                                                      "dedup": [68.0, None], "dedup 95% CI": ["64.9-71.0", ""]})),
        "flow": plots.gradient_flow(gradient_flow_table(["cnn", "cnn_se"], sizes=(16, 32), batch=2)),
        "ablation": plots.ablation(pd.DataFrame({"variant": ["resemotenet", "cnn"], "params": [80e6, 1.3e6],
                                                 "gflops": [0.67, 0.2], "accuracy_mean": [0.9, 0.7],
                                                 "accuracy_std": [0.01, 0.02], "dedup_accuracy_mean": [0.88, 0.69],
                                                 "dedup_accuracy_std": [0.01, 0.03]})),
    }
    for name, fig in figs.items():
        path = plots.save(fig, name, tmp_path)
        with Image.open(path) as img:
            assert img.size[0] > 100 and img.size[1] > 100, name

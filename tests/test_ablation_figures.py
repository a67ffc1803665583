"""The ablation's figures (resemote_lib/reports/ablation_figures.py), checked on the matplotlib
objects (issue 24.18): legends clear of the bars, gradient-flow labels readable."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from resemote_lib.reports import ablation_figures
from resemote_lib.reports.gradients import gradient_flow_table

from .figures import boxes_overlap, legend_clear_of_bars, legend_colours

ABLATION = pd.DataFrame({"variant": ["resemotenet", "cnn"], "params": [80e6, 1.3e6], "gflops": [0.67, 0.2],
                         "accuracy_mean": [0.95, 0.97], "accuracy_std": [0.01, 0.02],
                         "dedup_accuracy_mean": [0.94, 0.96], "dedup_accuracy_std": [0.01, 0.03]})


def test_ablation_legend_covers_no_bar():
    fig = ablation_figures.ablation(ABLATION)
    assert not legend_clear_of_bars(fig)
    colours = legend_colours(fig)
    assert len(set(colours.values())) == 2
    plt.close(fig)


def test_gradient_flow_labels_are_readable_and_do_not_overlap():
    flow = gradient_flow_table(["resemotenet", "cnn", "cnn_se"], sizes=(32, 48), batch=2)
    fig = ablation_figures.gradient_flow(flow)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for ax in fig.axes[:1] for t in (*ax.get_xticklabels(), *ax.get_yticklabels())]
    assert labels and min(t.get_fontsize() for t in labels) >= 8
    ax = fig.axes[0]
    assert all(t.get_rotation() == 0 for t in ax.get_yticklabels())
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        boxes = [t.get_window_extent(renderer) for t in ticks if t.get_text()]
        assert not [i for i in range(len(boxes) - 1) if boxes_overlap(boxes[i], boxes[i + 1])]
    headers = [t.get_window_extent(renderer) for t in ax.texts if t.get_fontweight() == "bold"]
    assert len(headers) == 3 and not [i for i in range(2) if boxes_overlap(headers[i], headers[i + 1])]
    layers = {t.get_text() for t in ax.get_yticklabels()}
    assert {"conv1", "se.fc.0", "res_block3.conv2", "fc4"} <= layers
    plt.close(fig)

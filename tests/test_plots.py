"""The figures (resemote_lib/reports/plots.py): every one renders, and what they look like,
checked on the matplotlib objects (issue 24.18)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgba
from PIL import Image

from resemote_lib.data.base import FaceDataset
from resemote_lib.labels import CLASS_NAMES
from resemote_lib.metrics import compute_metrics, reliability
from resemote_lib.reports import ablation_figures, plots
from resemote_lib.reports.gradients import gradient_flow_table

from .figures import boxes_overlap, legend_clear_of_bars, legend_colours


def _ds(n=28, size=32):
    g = torch.Generator().manual_seed(0)
    return FaceDataset(torch.randint(0, 255, (n, 1, size, size), dtype=torch.uint8, generator=g),
                       torch.arange(n) % 7, [f"i{i}" for i in range(n)], name="t", split="test", layout="x", root=None)


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
        "bars": plots.probability_bars(probs[0], ds.class_names),
        "gates": plots.se_gates(np.linspace(0, 1, 256)),
        "cam": plots.cam_overlay(np.zeros((32, 32)), np.ones((32, 32))),
        "paper": plots.paper_comparison(pd.DataFrame({"dataset": ["x", "s"], "protocol": ["p", "demo"], "run": ["a", "b"],
                                                      "published": [80.0, None], "official": [70.0, 93.0],
                                                      "official 95% CI": ["67.1-72.8", "90.9-94.8"],
                                                      "dedup": [68.0, None], "dedup 95% CI": ["64.9-71.0", ""]})),
        "flow": ablation_figures.gradient_flow(gradient_flow_table(["cnn", "cnn_se"], sizes=(16, 32), batch=2)),
        "ablation": ablation_figures.ablation(pd.DataFrame({"variant": ["resemotenet", "cnn"], "params": [80e6, 1.3e6],
                                                 "gflops": [0.67, 0.2], "accuracy_mean": [0.9, 0.7],
                                                 "accuracy_std": [0.01, 0.02], "dedup_accuracy_mean": [0.88, 0.69],
                                                 "dedup_accuracy_std": [0.01, 0.03]})),
    }
    for name, fig in figs.items():
        path = plots.save(fig, name, tmp_path)
        with Image.open(path) as img:
            assert img.size[0] > 100 and img.size[1] > 100, name


# --- issue 24.18: what the figures look like, checked on the matplotlib objects ------------------

TABLE3 = pd.DataFrame({"dataset": ["fer2013", "synthetic"], "protocol": ["clean", "demo"], "run": ["a", "b"],
                       "published": [79.79, None], "official": [70.0, 93.0],
                       "official 95% CI": ["67.1-72.8", "90.9-94.8"], "dedup": [68.0, 92.0],
                       "dedup 95% CI": ["64.9-71.0", "89.9-94.0"]})


@pytest.mark.parametrize("rows", [[0, 1], [1]], ids=["with a published number", "synthetic only"])
def test_table3_series_have_distinct_colours_and_only_drawn_series_are_in_the_legend(rows):
    fig = plots.paper_comparison(TABLE3.iloc[rows].reset_index(drop=True))
    colours = legend_colours(fig)
    assert len(set(colours.values())) == len(colours), colours  # "published" was blue like "ours, official"
    assert ("published (paper)" in colours) == (0 in rows), "a series with no bars has no legend entry"
    bars = {to_rgba(p.get_facecolor()) for p in fig.axes[0].patches}
    assert bars <= set(colours.values())
    assert not legend_clear_of_bars(fig)
    plt.close(fig)


def test_table3_chart_greys_the_papers_figure_where_a_run_is_not_comparable():
    """Table III shows the paper's figure greyed, in parentheses, beside a run on another protocol or
    test set (``reference``); the chart drew no bar for it at all."""
    fig = plots.paper_comparison(TABLE3.assign(published=[None, None], reference=[79.79, None]))
    ax, colours = fig.axes[0], legend_colours(fig)
    assert "published (paper)" not in colours  # not comparable: no published bar, no gap
    grey = colours["paper's figure (reference only)"]
    assert grey[0] == grey[1] == grey[2] > to_rgba(plots.PUBLISHED_COLOR)[0], "a grey lighter than the published bar"
    greyed = [p for p in ax.patches if to_rgba(p.get_facecolor()) == grey]
    assert [(p.get_x() + p.get_width() / 2, p.get_height()) for p in greyed] == [(pytest.approx(-0.27), 79.79)]
    assert "(79.8)" in [t.get_text() for t in ax.texts]  # in parentheses, as in the table
    assert not legend_clear_of_bars(fig)
    plt.close(fig)


def test_confusion_matrix_class_names_are_horizontal_and_clear_of_the_axis_titles():
    fig = plots.confusion_matrix(np.diag([5, 1, 4, 9, 6, 6, 4]), list(CLASS_NAMES))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[:2]:
        names = ax.get_yticklabels()
        assert [t.get_text() for t in names] == list(CLASS_NAMES)
        assert all(t.get_rotation() == 0 for t in names), "vertical row names read as 'true happy'"
        ylabel, xlabel = ax.yaxis.label.get_window_extent(renderer), ax.xaxis.label.get_window_extent(renderer)
        for t in names:
            assert not boxes_overlap(ylabel, t.get_window_extent(renderer)), t.get_text()
        for t in ax.get_xticklabels():
            assert not boxes_overlap(xlabel, t.get_window_extent(renderer)), t.get_text()
    plt.close(fig)


@pytest.mark.parametrize("epochs", [1, 2, 30])
def test_epoch_axis_has_whole_epochs_only(epochs):
    hist = pd.DataFrame({"epoch": range(1, epochs + 1), "lr": 1e-3, "train_loss": 1.0, "train_acc": 0.5,
                         "val_loss": 1.5, "val_acc": 0.4, "seconds": 1.0})
    fig = plots.training_curves(hist)
    fig.canvas.draw()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    plt.close(fig)

"""The ablation's two figures: accuracy with its interval per variant, and recall per class side by side.

Both read the tables ``reports.ablation`` computes from the runs' own files (``accuracy_intervals``,
``per_class_recall``); ``plots.show`` displays and saves them like every other figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..labels import CLASS_NAMES
from .plots import DEDUP_COLOR, OFFICIAL_COLOR

TEST_SET_STYLE = {"official": ("official test", OFFICIAL_COLOR, -0.15), "dedup": ("without copies of train/val",
                                                                               DEDUP_COLOR, 0.15)}


def accuracy_with_intervals(intervals: pd.DataFrame) -> Figure:
    """Per variant (in the table's order), each seed's test accuracy as a point with its 95% interval,
    official and deduplicated side by side, and the mean over seeds as a short bar."""
    variants = list(dict.fromkeys(intervals["variant"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(variants) + 2), 3.8))
    for test_set, (label, color, offset) in TEST_SET_STYLE.items():
        part = intervals[intervals["test_set"] == test_set]
        for k, variant in enumerate(variants):
            runs = part[part["variant"] == variant]
            if runs.empty:
                continue
            spread = np.linspace(-0.05, 0.05, len(runs)) if len(runs) > 1 else np.zeros(1)
            x = k + offset + spread
            ax.errorbar(x, 100 * runs["accuracy"], yerr=100 * np.vstack([runs["accuracy"] - runs["low"],
                                                                       runs["high"] - runs["accuracy"]]),
                        fmt="o", color=color, markersize=4, capsize=2, label=label if k == 0 else None)
            ax.hlines(100 * runs["accuracy"].mean(), k + offset - 0.1, k + offset + 0.1, color=color, linewidth=2.5)
    ax.set_xticks(range(len(variants)), variants, fontsize=8)
    ax.set_ylabel("test accuracy (%)\n(each seed, 95% interval; bar: mean)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def recall_by_class(recall: pd.DataFrame) -> Figure:
    """Recall of each class (canonical order), one bar per variant (mean over seeds, with the range
    of the seeds as an error bar), so that a variant's gain or loss shows where it comes from."""
    variants = list(dict.fromkeys(recall["variant"]))
    classes = [c for c in CLASS_NAMES if c in set(recall["class"])]
    stats = recall.groupby(["variant", "class"])["recall"].agg(["mean", "min", "max"])
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(classes) + 2), 3.8))
    colors = plt.get_cmap("tab10")
    x = np.arange(len(classes))
    for k, variant in enumerate(variants):
        s = stats.loc[variant].reindex(classes)
        ax.bar(x - 0.4 + width * (k + 0.5), 100 * s["mean"], width=width, color=colors(k), label=variant,
               yerr=100 * np.vstack([s["mean"] - s["min"], s["max"] - s["mean"]]), capsize=2,
               error_kw={"linewidth": 0.8})
    ax.set_xticks(x, classes, fontsize=9)
    ax.set_ylabel("recall (%), mean over seeds\n(error bar: the seeds' range)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(variants), 5), loc="upper center", bbox_to_anchor=(0.5, 1.18), frameon=False)
    fig.tight_layout()
    return fig


__all__ = ["accuracy_with_intervals", "recall_by_class"]

"""The ablation's figures: accuracy per variant (mean and spread; each seed with its interval),
recall per class side by side, and the gradient flow of each variant's layers.

Each reads a table ``reports.ablation`` or ``reports.gradients`` computes from the runs' own files;
``plots.show`` displays and saves them like every other figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..labels import CLASS_NAMES
from .plots import DEDUP_COLOR, OFFICIAL_COLOR, legend_above

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


def ablation(summary: pd.DataFrame) -> Figure:
    """Test accuracy (official and deduplicated) per variant, mean ± spread over seeds, with
    each variant's parameters and GFLOPs (from ``ablation.summarize``); the legend above."""
    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(summary) + 2), 3.8))
    x = np.arange(len(summary))
    for offset, key, label, color in ((-0.18, "accuracy", "official test", OFFICIAL_COLOR),
                                      (0.18, "dedup_accuracy", "without copies of train/val", DEDUP_COLOR)):
        ax.bar(x + offset, 100 * summary[f"{key}_mean"], width=0.36, yerr=100 * summary[f"{key}_std"], capsize=3,
               label=label, color=color)
    labels = [f"{r.variant}\n{r.params / 1e6:.1f}M params\n{r.gflops:.2f} GFLOPs" for r in summary.itertuples()]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("test accuracy (%),\nmean ± s.d. over seeds")
    ax.set_ylim(0, 105)
    legend_above(ax, ncol=2)
    fig.tight_layout()
    return fig


def gradient_flow(table: pd.DataFrame) -> Figure:
    """Share of each layer's weights with an exactly-zero gradient (from
    ``gradients.gradient_flow_table``): one row per layer (names written horizontally), one
    column per input size, grouped by variant (named above its columns); blank where a
    variant has no such layer."""
    variants, sizes = list(dict.fromkeys(table["variant"])), sorted(table["image_size"].unique())
    layers = list(dict.fromkeys(table["layer"]))
    columns = [(v, s) for v in variants for s in sizes]
    grid = (table.pivot_table(index="layer", columns=["variant", "image_size"], values="zero_grad_share")
            .reindex(index=layers, columns=pd.MultiIndex.from_tuples(columns)))
    fig, ax = plt.subplots(figsize=(2.4 + 0.6 * len(columns), 1.4 + 0.3 * len(layers)))
    sns.heatmap(grid.to_numpy(dtype=float) * 100, ax=ax, vmin=0, vmax=100, cmap="magma_r", annot=True, fmt=".0f",
                annot_kws={"fontsize": 7}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": "% of the layer's weights with a zero gradient", "shrink": 0.8})
    ax.set_facecolor("#eeeeee")  # no such layer in that variant
    ax.set_yticks(np.arange(len(layers)) + 0.5, layers, rotation=0, fontsize=8)
    ax.set_xticks(np.arange(len(columns)) + 0.5, [f"{s}" for _, s in columns], rotation=0, fontsize=8)
    ax.set_xlabel("input size (px)", fontsize=9)
    ax.set_ylabel("")
    for k, variant in enumerate(variants):
        left = k * len(sizes)
        if k:
            ax.axvline(left, color="black", linewidth=1.5)
        ax.text(left + len(sizes) / 2, -0.3, variant, ha="center", va="bottom", fontsize=8, fontweight="bold",
                rotation=0 if len(sizes) >= 2 else 30)
    ax.set_title("gradient flow: share of each layer's weights with a zero gradient (%)", fontsize=10, pad=22)
    fig.tight_layout()
    return fig


__all__ = ["ablation", "accuracy_with_intervals", "gradient_flow", "recall_by_class"]

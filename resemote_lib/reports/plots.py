"""Every figure of the project, each a function returning a matplotlib Figure.

Notebooks call these and ``save``; nothing is drawn anywhere else (a figure with many
parts draws them through its own module beside this one: ``audit_figure``), so every
figure in results/ is produced by code a test runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt  # headless, matplotlib falls back to Agg by itself
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import paths
from ..data.audit import QualityReport
from ..data.base import FaceDataset
from . import audit_figure


def save(fig: Figure, name: str, out_dir: str | os.PathLike | None = None, *, dpi: int = 120,
         close: bool = False) -> Path:
    """Write ``fig`` as ``<out_dir>/<name>.png`` (default ``results/figures``); ``close``
    it afterwards (a notebook then does not draw it)."""
    out = Path(out_dir) if out_dir is not None else paths.FIGURES
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return path


def png(fig: Figure, dpi: int = 120) -> bytes:
    """``fig`` as PNG bytes, the figure closed (the inline backend never draws it again)."""
    import io

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def show(fig: Figure, name: str | None = None, out_dir: str | os.PathLike | None = None, *, dpi: int = 120) -> None:
    """Save ``fig`` (when ``name`` is given), display it once as a PNG, and close it.

    Displaying the PNG explicitly shows the figure whatever the matplotlib backend
    (``MPLBACKEND=Agg`` included) and keeps it in saved notebooks; closing it stops the
    inline backend from drawing it a second time. Returns None: no stray repr in a cell.
    """
    from IPython.display import Image, display

    if name is not None:
        save(fig, name, out_dir, dpi=dpi)
    display(Image(png(fig, dpi)))


def class_distribution(splits: dict[str, FaceDataset], title: str = "") -> Figure:
    """Per-class counts of each split, side by side (the paper's Table II as a chart)."""
    names = next(iter(splits.values())).class_names
    df = pd.DataFrame({split: ds.counts() for split, ds in splits.items()}, index=names)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    df.plot.bar(ax=ax, width=0.8)
    ax.set_ylabel("images")
    ax.set_title(title or "class distribution per split")
    ax.tick_params(axis="x", rotation=0)
    for container in ax.containers:
        ax.bar_label(container, fontsize=7)
    fig.tight_layout()
    return fig


def example_grid(ds: FaceDataset, per_class: int = 6, seed: int = 0, title: str = "") -> Figure:
    """``per_class`` random images of each class, one row per class (the paper's Fig. 2)."""
    rng = np.random.default_rng(seed)
    labels = ds.labels.numpy()
    fig, axes = plt.subplots(len(ds.class_names), per_class, figsize=(per_class * 1.1, len(ds.class_names) * 1.15),
                             squeeze=False)
    for k, name in enumerate(ds.class_names):
        idx = np.flatnonzero(labels == k)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for j, ax in enumerate(axes[k]):
            ax.axis("off")
            if j < len(pick):
                ax.imshow(ds.images[pick[j], 0].numpy(), cmap="gray", vmin=0, vmax=255)
        axes[k][0].text(-0.15, 0.5, name, transform=axes[k][0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle(title or f"{ds.name} {ds.split}: examples per class", fontsize=10)
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Loss, accuracy and learning rate per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    h = history
    axes[0].plot(h["epoch"], h["train_loss"], "o-", label="train")
    axes[0].plot(h["epoch"], h["val_loss"], "o-", label="validation")
    axes[0].set_title("cross-entropy loss")
    axes[1].plot(h["epoch"], h["train_acc"], "o-", label="train")
    axes[1].plot(h["epoch"], h["val_acc"], "o-", label="validation")
    axes[1].set_title("accuracy")
    axes[1].set_ylim(0, 1)
    axes[2].plot(h["epoch"], h["lr"], "o-", color="C2")
    axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        # Epochs are whole: integer ticks only, over at least one epoch's width (a single epoch
        # would otherwise get ticks 0.96, 0.98, ...).
        ax.set_xlim(h["epoch"].min() - 0.5, h["epoch"].max() + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """Counts and row-normalised heat-maps side by side (the paper's Fig. 3 style)."""
    rows = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros_like(confusion, dtype=float), where=rows > 0)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    sns.heatmap(confusion, annot=True, fmt="d", cmap="Blues", xticklabels=class_names, yticklabels=class_names,
                ax=axes[0], cbar=False)
    sns.heatmap(norm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, xticklabels=class_names,
                yticklabels=class_names, ax=axes[1])
    for ax, sub in zip(axes, ("counts", "row-normalised (recall on the diagonal)"), strict=True):
        # seaborn writes the row names vertically: beside the axis title they read as one phrase
        # ("true happy"). Horizontal names, and the axis titles set apart by a pad.
        ax.tick_params(axis="y", rotation=0)
        ax.tick_params(axis="x", rotation=30)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
        ax.set_xlabel("predicted class", labelpad=8, fontweight="bold")
        ax.set_ylabel("true class", labelpad=10, fontweight="bold")
        ax.set_title(sub)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def reliability_diagram(table: pd.DataFrame, ece: float | None = None, title: str = "") -> Figure:
    """Accuracy against confidence per bin, with bin counts (from ``evaluate.reliability``)."""
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(4.8, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centers = (table["lo"] + table["hi"]) / 2
    width = float((table["hi"] - table["lo"]).iloc[0])
    ax.bar(centers, table["accuracy"].fillna(0), width=width * 0.95, edgecolor="k", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(title or (f"reliability (ECE {ece:.3f})" if ece is not None else "reliability"))
    ax2.bar(centers, table["count"], width=width * 0.95, color="C1")
    ax2.set_xlabel("confidence")
    ax2.set_ylabel("items")
    fig.tight_layout()
    return fig


def confused_examples(ds: FaceDataset, probs: np.ndarray, confusion: np.ndarray, top: int = 3,
                      per_pair: int = 4) -> Figure:
    """For the ``top`` most-confused (true, predicted) pairs, the most confident mistakes."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.dstack(np.unravel_index(np.argsort(off.ravel())[::-1], off.shape))[0][:top]
    y, pred = ds.labels.numpy(), probs.argmax(1)
    fig, axes = plt.subplots(max(1, len(order)), per_pair, figsize=(per_pair * 1.4, max(1, len(order)) * 1.6),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (t, p) in enumerate(order):
        idx = np.flatnonzero((y == t) & (pred == p))
        idx = idx[np.argsort(probs[idx, p])[::-1]][:per_pair]
        axes[r][0].set_title(f"{ds.class_names[t]} -> {ds.class_names[p]} ({off[t, p]})", fontsize=8, loc="left")
        for j, i in enumerate(idx):
            axes[r][j].imshow(ds.images[i, 0].numpy(), cmap="gray", vmin=0, vmax=255)
    fig.suptitle("most-confused pairs: true -> predicted (count)", fontsize=10)
    fig.tight_layout()
    return fig


def probability_bars(probs: Sequence[float], class_names: Sequence[str], title: str = "") -> Figure:
    fig, ax = plt.subplots(figsize=(5, 2.6))
    colors = ["C3" if i == int(np.argmax(probs)) else "C0" for i in range(len(probs))]
    ax.barh(list(class_names), list(probs), color=colors)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("probability")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def se_gates(gates: np.ndarray, title: str = "SE block: channel weights (256 channels)") -> Figure:
    fig, ax = plt.subplots(figsize=(8, 2.4))
    ax.bar(np.arange(len(gates)), gates, width=1.0)
    ax.set_ylim(0, 1)
    ax.set_xlabel("channel")
    ax.set_ylabel("gate")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def cam_overlay(image: np.ndarray, cam: np.ndarray, title: str = "") -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[1].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[1].imshow(cam, cmap="jet", alpha=0.45, extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))
    for ax in axes:
        ax.axis("off")
    axes[1].set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# Series colours of the comparison figures: one hue each, never a cycle colour shared with another series.
PUBLISHED_COLOR, OFFICIAL_COLOR, DEDUP_COLOR = "#9a9a9a", "#1f5fa8", "#3a9a3a"
REFERENCE_COLOR = "#d6d6d6"  # the paper's figure where it is not comparable: greyed, as in Table III


def legend_above(ax: plt.Axes, ncol: int) -> None:
    """The legend in a row above the axes: never over a bar."""
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=ncol, fontsize=8, frameon=False,
              borderaxespad=0.2)


def paper_comparison(table: pd.DataFrame) -> Figure:
    """Per run (from ``paper.table3``): the published accuracy where the test set is the
    paper's, ours on the official test set and on the deduplicated one, each with its 95%
    interval; where the run cannot be compared with the paper, the paper's figure greyed (as
    Table III shows it). Each series has its own colour; the legend sits above the bars and
    lists only the series drawn."""
    fig, ax = plt.subplots(figsize=(max(5, 1.9 * len(table) + 2), 4.0))
    if table.empty:
        ax.text(0.5, 0.5, "no evaluated runs yet", ha="center")
        ax.axis("off")
        return fig
    labels = [f"{r.dataset}\n{r.protocol}\n{r.run}" for r in table.itertuples()]
    x = np.arange(len(table))
    _paper_bars(ax, x, table)
    for offset, column, label, color in ((0.0, "official", "ours, official test", OFFICIAL_COLOR),
                                         (0.27, "dedup", "ours, without copies of train/val", DEDUP_COLOR)):
        values = table[column].astype(float)
        if values.isna().all():
            continue
        lo_hi = np.array([_interval(c, v) for c, v in zip(table[f"{column} 95% CI"], values, strict=True)])
        err = np.abs(lo_hi.T - values.to_numpy())
        ax.bar(x + offset, values, width=0.27, yerr=err, capsize=3, label=label, color=color)
        for xi, v, hi in zip(x, values, lo_hi[:, 1], strict=True):
            if np.isfinite(v):
                ax.text(xi + offset, max(v, hi) + 1.5, f"{v:.1f}", ha="center", fontsize=7)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlim(-0.8, len(table) - 0.2)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 110)
    legend_above(ax, ncol=3 if len(table) > 1 else 2)  # one run: a narrow figure
    fig.tight_layout()
    return fig


def _paper_bars(ax: plt.Axes, x: np.ndarray, table: pd.DataFrame) -> None:
    """The paper's figure left of each run's bars: grey where the test set is the paper's
    (``published``); light grey, its value in parentheses, where the protocol or test set is
    not (``reference``, greyed in Table III too): a reference, not a target."""
    for column, label, color in (("published", "published (paper)", PUBLISHED_COLOR),
                                 ("reference", "paper's figure (reference only)", REFERENCE_COLOR)):
        values = table[column].astype(float) if column in table else pd.Series(np.nan, index=table.index)
        shown = values.notna().to_numpy()
        if shown.any():
            ax.bar(x[shown] - 0.27, values[shown], width=0.27, label=label, color=color, hatch="//", edgecolor="white")
        if column == "reference":
            for xi, v in zip(x[shown], values[shown], strict=True):
                ax.text(xi - 0.27, v + 1.5, f"({v:.1f})", ha="center", fontsize=7, color=PUBLISHED_COLOR)


def _interval(ci: object, value: float) -> tuple[float, float]:
    """``"71.2-74.3"`` -> (71.2, 74.3); the value itself when there is no interval."""
    if isinstance(ci, str) and "-" in ci:
        lo, hi = ci.split("-")
        return float(lo), float(hi)
    return value, value


def _prediction_captions(ds: FaceDataset, rows: pd.DataFrame) -> list[str]:
    """``"true happy / pred. sad 87%"`` (two lines) for rows of ``explore.predictions``."""
    names = ds.class_names
    return [f"true {names[int(r.true)]}\npred. {names[int(r.predicted)]} {r.confidence:.0%}" for r in rows.itertuples()]


def prediction_grid(ds: FaceDataset, rows: pd.DataFrame, title: str = "", cols: int = 8,
                    empty: str = "none") -> Figure:
    """The faces of ``rows`` (from ``explore.predictions``), each captioned with its true class
    and the prediction with its probability, green when right and red when wrong, ``cols``
    per row; the sentence ``empty`` when ``rows`` is empty."""
    n = len(rows)
    if n == 0:
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.axis("off")
        ax.text(0, 0.5, empty, fontsize=11, va="center")
        ax.set_title(title, fontsize=10, loc="left")
        return fig
    cols = min(cols, n)
    grid_rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(grid_rows, cols, figsize=(cols * 1.3, grid_rows * 1.75 + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, index, right, text in zip(axes.ravel(), rows["index"], rows["correct"], _prediction_captions(ds, rows),
                                      strict=False):
        ax.imshow(ds.images[int(index), 0].numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(text, fontsize=7.5, color="#1a7f1a" if right else "#c0202a", pad=3)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def cam_grid(ds: FaceDataset, rows: pd.DataFrame, cams: Sequence[np.ndarray], title: str = "",
             cols: int = 4) -> Figure:
    """Each face of ``rows`` (from ``explore.predictions``) beside its class activation map
    (``cams``, over the face), captioned like ``prediction_grid``; ``cols`` faces per row."""
    n = max(1, len(rows))
    cols = min(cols, n)
    grid_rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(grid_rows, 2 * cols, figsize=(cols * 2.5, grid_rows * 1.75 + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (index, cam, text) in enumerate(zip(rows["index"], cams, _prediction_captions(ds, rows), strict=True)):
        r, c = divmod(k, cols)
        image = ds.images[int(index), 0].numpy()
        face, over = axes[r][2 * c], axes[r][2 * c + 1]
        face.imshow(image, cmap="gray", vmin=0, vmax=255)
        over.imshow(image, cmap="gray", vmin=0, vmax=255)
        over.imshow(cam, cmap="jet", alpha=0.45, extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))
        face.set_title(text, fontsize=7.5, loc="left", pad=3)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout()
    return fig


def confused_pairs(pairs: pd.DataFrame, title: str = "most confused class pairs") -> Figure:
    """The confusions of ``explore.confused_pairs`` as horizontal bars, largest on top,
    each labelled with its count and its share of the true class."""
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.32 * max(1, len(pairs))))
    if pairs.empty:
        ax.axis("off")
        ax.text(0, 0.5, "no confusions: every face was classified right", fontsize=11, va="center")
        return fig
    names = [f"{r.true} -> {r.predicted}" for r in pairs.itertuples()]
    ax.barh(names, pairs["faces"], color="#c0602a")
    for y, (n, share) in enumerate(zip(pairs["faces"], pairs["% of the true class"], strict=True)):
        ax.text(n, y, f" {n} ({share:.1f}% of the true class)", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, pairs["faces"].max() * 1.6)
    ax.set_xlabel("test faces (true -> predicted)")
    ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    return fig


def quality_examples(report: QualityReport, splits: dict[str, FaceDataset], per_kind: int = 2, conflicts: int = 4,
                     blanks: int = 8, cols: int = 4) -> Figure:
    """Examples from a ``data.audit.QualityReport``: ``per_kind`` pairs of every (split pair,
    kind) present, spread over the correlation range (the weakest kept pair included), then
    ``conflicts`` label-conflict groups and ``blanks`` blank images covering every reason.

    Each pair is captioned with its splits, kind and correlation, then each image's label
    and file stem. ``splits`` must be the audited splits (the indices are theirs). The
    parts (which examples, their captions, the tile grids) are in ``audit_figure``.
    """
    parts = audit_figure.sections(report, splits, per_kind=per_kind, conflicts=conflicts, blanks=blanks, cols=cols)
    if not parts:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0, 0.5, "no duplicates, conflicts or blanks found", fontsize=11)
        return fig
    heights = [part.height for part in parts]
    fig = plt.figure(figsize=(cols * 2.7, sum(heights)), layout="constrained")
    subfigs = fig.subfigures(len(parts), 1, height_ratios=heights, squeeze=False)[:, 0]
    for sub, part in zip(subfigs, parts, strict=True):
        part.draw(sub)
    return fig


__all__ = ["cam_grid", "cam_overlay", "class_distribution", "confused_examples", "confused_pairs",
           "confusion_matrix", "example_grid", "legend_above", "paper_comparison", "png",
           "prediction_grid", "probability_bars", "quality_examples", "reliability_diagram", "save", "se_gates", "show",
           "training_curves"]

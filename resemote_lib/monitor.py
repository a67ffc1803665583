"""What a notebook shows while a run trains: a per-epoch table and curves, updated in place.

``fit(cfg, on_epoch=TrainingMonitor(title))`` redraws one table and one figure after every
epoch, in the same output (IPython display ids), so an 80-epoch run in JupyterLab shows
its whole history at any moment, and the executed notebook that papermill writes keeps
the final version as a static image (no live kernel needed to see it).
"""

from __future__ import annotations

import pandas as pd
from IPython.display import Image, display

from . import plots


class TrainingMonitor:
    """Callable ``history -> None`` for ``fit(on_epoch=...)``; call ``show`` once first."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self._table = None
        self._figure = None

    def show(self, history: pd.DataFrame | None = None) -> None:
        """Create the two outputs (empty until the first epoch ends, or ``history``)."""
        history = history if history is not None else pd.DataFrame()
        self._table = display(_table(history), display_id=True)
        self._figure = display(_png(history, self.title), display_id=True)

    def __call__(self, history: pd.DataFrame) -> None:
        if self._table is None:
            self.show(history)
            return
        self._table.update(_table(history))
        self._figure.update(_png(history, self.title))


def _table(history: pd.DataFrame) -> pd.DataFrame | str:
    if history.empty:
        return "waiting for the first epoch..."
    cols = [c for c in ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds") if c in history]
    return history[cols].set_index("epoch").round(4)


def _png(history: pd.DataFrame, title: str) -> Image | str:
    """The curves as a PNG (a static image: it shows in saved notebooks too), figure closed."""
    if history.empty:
        return ""
    return Image(plots.png(plots.training_curves(history, title=title), dpi=90))


__all__ = ["TrainingMonitor"]

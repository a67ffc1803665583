"""What a notebook shows besides figures: the training monitor, and tables and sentences
where a bare cell would print raw Python (a ``TrainConfig(...)``, a dict, a quoted string).

``fit(cfg, on_epoch=TrainingMonitor(title))`` redraws one status line, one table and one
figure after every epoch, in the same outputs (IPython display ids), so an 80-epoch run in
JupyterLab shows its whole history at any moment, and the executed notebook that
papermill writes keeps the final version as a static image (no live kernel needed to see
it). ``TrainingMonitor.done(result)`` then says how the run ended; a run that was already
finished (nothing left to train) shows its saved history instead of waiting for an epoch
that never comes.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pandas as pd
from IPython.display import Image, Markdown, display

from ..params import TrainConfig, protocol_deviations
from . import plots

WAITING = "waiting for the first epoch..."


class TrainingMonitor:
    """Callable ``history -> None`` for ``fit(on_epoch=...)``; call ``show`` once first and
    ``done(result)`` once ``fit`` returns."""

    def __init__(self, title: str = "", epochs: int | None = None) -> None:
        self.title = title
        self.epochs = epochs
        self.epochs_seen = 0  # epochs that ended while this monitor watched (0: nothing was trained)
        self.status = ""
        self._status = None
        self._table = None
        self._figure = None

    def show(self, history: pd.DataFrame | None = None) -> None:
        """Create the three outputs (a status line, then the table and curves, empty until
        the first epoch ends, or ``history``)."""
        history = history if history is not None else pd.DataFrame()
        self.status = WAITING if history.empty else f"{len(history)} epoch(s) so far"
        self._status = display(Markdown(self.status), display_id=True)
        self._table = display(history_table(history), display_id=True)
        self._figure = display(_png(history, self.title), display_id=True)

    def __call__(self, history: pd.DataFrame) -> None:
        self.epochs_seen += 1
        if self._table is None:
            self.show(history)
        last = history.iloc[-1]
        of = f" of {self.epochs}" if self.epochs else ""
        self._update(f"epoch {int(last['epoch'])}{of} done: validation accuracy {last['val_acc']:.2%}", history)

    def done(self, result: Any) -> None:
        """Say how training ended (``result``: ``train.RunResult``) and show its whole history."""
        if self._table is None:
            self.show()
        run = getattr(result.run_dir, "name", result.run_dir)
        best = f"best validation accuracy {result.best_val_acc:.2%} at epoch {result.best_epoch}"
        how = " (stopped early)" if result.stopped_early else ""
        if self.epochs_seen == 0:
            status = (f"**{run}** was already finished ({result.epochs_run} epoch(s){how}, {best}): nothing left to "
                      "train. Its saved history is below; to train again, set another `run_name`.")
        else:
            status = (f"**{run}** finished: {self.epochs_seen} epoch(s) trained now, {result.epochs_run} in all"
                      f"{how}; {best}.")
        self._update(status, result.history)

    def _update(self, status: str, history: pd.DataFrame) -> None:
        self.status = status
        self._status.update(Markdown(status))
        self._table.update(history_table(history))
        self._figure.update(_png(history, self.title))


def history_table(history: pd.DataFrame) -> pd.DataFrame | Markdown:
    """One row per epoch, readable: accuracies in %, losses to 4 decimals, seconds to 0.1."""
    if history.empty:
        return Markdown("")
    out = pd.DataFrame(index=pd.Index(history["epoch"].astype(int), name="epoch"))
    formats = {"lr": "{:.2g}", "train_loss": "{:.4f}", "train_acc": "{:.2%}", "val_loss": "{:.4f}",
               "val_acc": "{:.2%}", "seconds": "{:.1f}"}
    for column, fmt in formats.items():
        if column in history:
            out[column.replace("_", " ")] = [fmt.format(v) for v in history[column]]
    return out


def _png(history: pd.DataFrame, title: str) -> Image | Markdown:
    """The curves as a PNG (a static image: it shows in saved notebooks too), figure closed."""
    if history.empty:
        return Markdown("")
    return Image(plots.png(plots.training_curves(history, title=title), dpi=90))


def describe_config(cfg: TrainConfig) -> pd.DataFrame:
    """What a run will do, as a short two-column table (not the dataclass's repr)."""
    data = cfg.dataset
    if cfg.dataset == "synthetic":
        data += f" ({cfg.synthetic_n_train}/{cfg.synthetic_n_val}/{cfg.synthetic_n_test} train/val/test faces)"
    elif cfg.data_root:
        data += f" from {cfg.data_root}"
    schedule = {"none": "constant lr", "plateau": f"lr x{cfg.plateau_factor} after {cfg.plateau_patience} epochs "
                "without gain", "onecycle": "one-cycle lr"}[cfg.scheduler]
    deviations = protocol_deviations(cfg)
    rows = {
        "run": cfg.run_name,
        "data": f"{data}, {cfg.image_size} px, training subset {cfg.max_train_items or 'all'}",
        "model": cfg.model,
        "protocol": cfg.protocol + (" (with deviations)" if deviations else ""),
        "training": f"{cfg.epochs} epoch(s), batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g}, {schedule}, "
                    f"{cfg.augment} augmentation",
        "tested weights": "best validation epoch" if cfg.selection == "best_val" else "last epoch",
        "device": cfg.device,
        "differs from the protocol": ", ".join(f"{k}={v}" for k, v in deviations.items()) or "nothing",
    }
    return pd.DataFrame({"value": rows})


def formatted(table: pd.DataFrame, percent: tuple[str, ...] | list[str] = (), digits: int = 3) -> pd.DataFrame:
    """``table`` as text: the ``percent`` columns as ``24.29%``, other floats to ``digits``
    decimals, everything else as it is (a fraction such as 0.242857 reads as a percentage)."""
    out = table.copy()
    for column in out.columns:
        if column in percent:
            out[column] = [f"{v:.2%}" if pd.notna(v) else "n/a" for v in out[column]]
        elif pd.api.types.is_float_dtype(out[column]):
            out[column] = [f"{v:.{digits}f}" if pd.notna(v) else "n/a" for v in out[column]]
    return out


PERCENT_METRICS = ("accuracy", "balanced accuracy", "macro F1")


def metrics_tables(metrics: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """02_evaluate's two tables (``evaluate.Metrics``), readable: accuracy, balanced accuracy
    and macro F1 in %, NLL and ECE to 3 decimals; per class precision, recall and F1 in %."""
    table = metrics.table()
    summary = pd.DataFrame({column: [f"{v:.2%}" if name in PERCENT_METRICS else f"{v:.3f}"
                                     for name, v in table[column].items()] for column in table}, index=table.index)
    per_class = formatted(metrics.per_class, percent=[c for c in ("precision", "recall", "f1")
                                                      if c in metrics.per_class])
    return summary, per_class


def table_or_sentence(table: pd.DataFrame, empty: str) -> pd.DataFrame | Markdown:
    """``table``, or the sentence ``empty`` when it has no rows (an empty table says nothing)."""
    return Markdown(empty) if table.empty else table


def one_line_warnings() -> None:
    """Show warnings in a notebook as one line each (``UserWarning: message``), without the
    library file and source line Python adds, and resemote_lib's logged warnings as one
    line too (``WARNING: message``). For notebooks: it changes this process's warnings
    formatting."""
    warnings.formatwarning = _one_line
    logger = logging.getLogger("resemote_lib")
    if not any(isinstance(h, _NotebookHandler) for h in logger.handlers):
        handler = _NotebookHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)


class _NotebookHandler(logging.StreamHandler):
    """stderr, one line per record (a class of its own: added once however often a cell runs)."""


def _one_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
              line: str | None = None) -> str:
    return f"{category.__name__}: {message}\n"


__all__ = ["PERCENT_METRICS", "WAITING", "TrainingMonitor", "describe_config", "formatted", "history_table",
           "metrics_tables", "one_line_warnings", "table_or_sentence"]

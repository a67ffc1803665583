"""What the notebooks show besides figures: the training monitor, readable tables, one-line warnings."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from IPython.display import Image, Markdown

from resemote_lib.evaluate import compute_metrics
from resemote_lib.params import TrainConfig, resolve
from resemote_lib.reports import monitor

HISTORY = pd.DataFrame({"epoch": [1, 2], "lr": [3e-4, 3e-4], "train_loss": [1.9, 1.7], "train_acc": [0.2, 0.3],
                        "val_loss": [1.95, 1.8], "val_acc": [0.242857, 0.3], "seconds": [2.04, 1.96]})


class _Handles:
    """Stands in for IPython's display: each displayed object gets a handle whose latest content is kept."""

    def __init__(self) -> None:
        self.shown: list[list[object]] = []

    def __call__(self, obj: object, display_id: bool = False) -> SimpleNamespace:
        slot = [obj]
        self.shown.append(slot)
        return SimpleNamespace(update=lambda new: slot.append(new))

    def latest(self) -> list[object]:
        return [slot[-1] for slot in self.shown]


@pytest.fixture
def handles(monkeypatch) -> _Handles:
    h = _Handles()
    monkeypatch.setattr(monitor, "display", h)
    return h


def _result(epochs_run: int = 2) -> SimpleNamespace:
    return SimpleNamespace(run_dir=Path("/results/nb_train_synthetic_smoke"), history=HISTORY.head(epochs_run),
                           best_val_acc=0.3, best_epoch=2, stopped_early=False, epochs_run=epochs_run)


def test_rerunning_a_finished_run_says_so_and_shows_its_history(handles):
    """Issue 24.17: fit on a finished run trains nothing and calls on_epoch never; the monitor
    must not wait for a first epoch forever."""
    m = monitor.TrainingMonitor("run", epochs=2)
    m.show()
    status, table, figure = handles.latest()
    assert isinstance(status, Markdown) and status.data == monitor.WAITING
    assert not isinstance(table, str) and not isinstance(figure, str), "a bare str shows as a quoted repr"
    m.done(_result())  # no epoch ran while it watched
    status, table, figure = handles.latest()
    assert "already finished" in status.data and "nb_train_synthetic_smoke" in status.data
    assert monitor.WAITING not in status.data
    assert list(table.index) == [1, 2] and isinstance(figure, Image)


def test_a_run_trained_now_reports_each_epoch_then_how_it_ended(handles):
    m = monitor.TrainingMonitor("run", epochs=2)
    m.show()
    m(HISTORY.head(1))
    assert "epoch 1 of 2 done" in handles.latest()[0].data and "24.29%" in handles.latest()[0].data
    m(HISTORY)
    m.done(_result())
    status = handles.latest()[0].data
    assert "finished: 2 epoch(s) trained now" in status and "already" not in status


def test_history_table_shows_percentages_not_raw_fractions():
    table = monitor.history_table(HISTORY)
    assert table.loc[1, "val acc"] == "24.29%" and table.loc[1, "train loss"] == "1.9000"
    assert table.loc[2, "seconds"] == "2.0" and table.index.name == "epoch"
    assert isinstance(monitor.history_table(pd.DataFrame()), Markdown)


def test_config_is_a_short_table_not_the_dataclass_repr():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = resolve({"protocol": "paper", "epochs": 2, "run_name": "nb_train_synthetic_paper"})
    table = monitor.describe_config(cfg)
    text = table.to_string()
    assert "TrainConfig(" not in text and len(table) <= 10
    assert table.loc["run", "value"] == "nb_train_synthetic_paper"
    assert table.loc["differs from the protocol", "value"] == "epochs=2"
    assert monitor.describe_config(TrainConfig()).loc["differs from the protocol", "value"] == "nothing"


def test_empty_tables_become_a_sentence_and_metrics_percentages():
    said = monitor.table_or_sentence(pd.DataFrame(columns=["a"]), "No blank images.")
    assert isinstance(said, Markdown) and said.data == "No blank images."
    full = pd.DataFrame({"a": [1]})
    assert monitor.table_or_sentence(full, "x") is full
    y = np.arange(14) % 7
    m = compute_metrics(y, np.eye(7)[np.where(np.arange(14) < 3, y, (y + 1) % 7)])
    summary, per_class = monitor.metrics_tables(m)
    assert summary.loc["accuracy", "value"] == "21.43%" and summary.loc["NLL", "value"].count(".") == 1
    assert per_class["recall"].str.endswith("%").all()


def test_warnings_and_logged_warnings_show_as_one_line(monkeypatch, capsys):
    """Issue 24.19: a notebook showed each warning with the library's file and source line."""
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored afterwards
    logger = logging.getLogger("resemote_lib")
    before = list(logger.handlers)
    try:
        monitor.one_line_warnings()
        monitor.one_line_warnings()  # a cell run twice adds no second handler
        line = warnings.formatwarning("overrides the 'paper' protocol", UserWarning, "/x/params.py", 265,
                                      "warnings.warn(...)")
        assert line == "UserWarning: overrides the 'paper' protocol\n"
        logging.getLogger("resemote_lib.runs").warning("removing %d temporary file(s)", 2)
        assert capsys.readouterr().err == "WARNING: removing 2 temporary file(s)\n"
    finally:
        logger.handlers[:] = before

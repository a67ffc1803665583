"""Stopping on request: SIGINT or SIGTERM (a scheduler's stop) let the current step finish; the
loop then saves ``last.pt`` (``resume.save_last``) and stops with ``TrainingInterrupted``, saying
how to resume. ``train.fit`` holds ``StopRequests`` around a run; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any, NoReturn, Protocol

from .distributed import barrier
from .resume import Resumable, TrainState, save_last

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped training after a step; ``last.pt`` holds where, to resume."""


class StopRequests:
    """SIGINT and SIGTERM ask the loop to stop after the current step (and save); a second
    SIGINT interrupts at once. Handlers are installed only in the main thread, and the previous
    ones are put back on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal else "?"

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("%s received: stopping after this step and saving last.pt (press Ctrl-C again to stop at once)",
                    signal.Signals(signum).name)


class Interruptible(Resumable, Protocol):
    """A run that can be stopped mid-epoch (``train.TrainingSetup`` is one)."""

    steps: int  # per epoch


def save_and_stop(run: Interruptible, state: TrainState, stop: StopRequests) -> NoReturn:
    """Save ``last.pt`` where the run stands, wait until it is on disk (every rank), and raise
    ``TrainingInterrupted`` saying where it stopped and how to resume."""
    save_last(run, state)
    run.saver.flush()
    barrier(run.dist)
    where = f"epoch {state.epoch + 1}, step {state.step} of {run.steps}" if state.step else f"epoch {state.epoch}"
    raise TrainingInterrupted(f"training stopped by {stop.name} after {where}; saved {run.last_path}. Run the same "
                              "command (or notebook) again to resume from there.")


__all__ = ["Interruptible", "StopRequests", "TrainingInterrupted", "save_and_stop"]

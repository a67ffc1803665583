"""Checkpoints written beside training, not in its way.

The training thread only takes a snapshot (every tensor copied to host memory: pinned, and
without waiting, on CUDA); one background thread pickles, writes, fsyncs and renames
(``files.atomic_torch_save``), in submission order. A killed process leaves at most a
temporary file and the previous checkpoint intact, exactly as a synchronous save would;
training resumes from whatever was last renamed into place. An error of a background write
is raised in the training thread at the next save or at ``flush``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

def snapshot(obj: Any) -> Any:
    """``obj`` with every tensor copied to host memory (nested dicts, lists and tuples kept).

    CUDA tensors go to pinned memory without blocking, followed by one synchronisation; CPU
    tensors are cloned (training goes on changing the originals)."""
    cuda = []

    def copy(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            if x.device.type == "cuda":
                host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
                host.copy_(x.detach(), non_blocking=True)
                cuda.append(x.device)
                return host
            return x.detach().to("cpu", copy=True)
        if isinstance(x, Mapping):
            return {k: copy(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return type(x)(copy(v) for v in x)
        return x

    out = copy(obj)
    for device in set(cuda):
        torch.cuda.synchronize(device)
    return out


class BackgroundSaver:
    """One writer thread for a run's checkpoints (``submit`` returns once the snapshot is taken).

    ``seconds_blocked`` sums the time the training thread spent in ``submit``/``flush``
    (snapshots and waits for the disk); ``last_write_seconds[path.name]`` is how long the
    newest write of that file took in the background.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.seconds_blocked = 0.0
        self.last_write_seconds: dict[str, float] = {}

    def submit(self, write: Callable[[Any, Path], Any], payload: Any, path: Path) -> None:
        """Snapshot ``payload`` now, then ``write(snapshot, path)`` in the background."""
        t0 = time.perf_counter()
        self._raise_pending()
        job = (write, snapshot(payload), Path(path))
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="resemote-checkpoint-writer", daemon=True)
            self._thread.start()
        self._jobs.put(job)
        self.seconds_blocked += time.perf_counter() - t0

    def flush(self) -> None:
        """Wait until every submitted checkpoint is on disk; raise a write's error here."""
        t0 = time.perf_counter()
        self._jobs.join()
        self.seconds_blocked += time.perf_counter() - t0
        self._raise_pending()

    def __enter__(self) -> BackgroundSaver:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        """Wait for every write; with an exception already on its way, a write's own error is
        logged rather than raised over it."""
        if exc is None:
            self.flush()
            return
        try:
            self.flush()
        except Exception as e:
            log.warning("a checkpoint write failed while %s was being raised: %s", type(exc).__name__, e)

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            write, payload, path = self._jobs.get()
            try:
                t0 = time.perf_counter()
                write(payload, path)
                self.last_write_seconds[path.name] = time.perf_counter() - t0
            except BaseException as e:  # surfaced in the training thread
                self._error = e
            finally:
                self._jobs.task_done()


__all__ = ["BackgroundSaver", "snapshot"]

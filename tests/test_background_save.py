"""Checkpoints written by a background thread: snapshots, order, errors, waiting."""

from __future__ import annotations

import threading

import pytest
import torch

from resemote_lib.background_save import BackgroundSaver, snapshot
from resemote_lib.files import atomic_torch_save


def test_a_snapshot_is_a_copy_taken_when_submitted(tmp_path):
    """Training goes on changing its tensors while the writer works: what is written is what
    they held at submit time (a clone), nested containers and plain values kept."""
    weights = torch.zeros(4)
    saver = BackgroundSaver()
    saver.submit(atomic_torch_save, {"model": {"w": weights}, "state": [1, (2, weights)], "epoch": 3},
                 tmp_path / "last.pt")
    weights += 1  # the next step, before the write may even have started
    saver.flush()
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert torch.equal(saved["model"]["w"], torch.zeros(4)) and torch.equal(saved["state"][1][1], torch.zeros(4))
    assert saved["epoch"] == 3 and saved["state"][0] == 1 and "last.pt" in saver.last_write_seconds
    copy = snapshot({"w": weights})
    assert copy["w"] is not weights and copy["w"].data_ptr() != weights.data_ptr()


def test_writes_happen_in_order_off_the_calling_thread(tmp_path):
    order, threads = [], set()
    release = threading.Event()

    def slow_write(payload, path):
        release.wait(5)
        threads.add(threading.current_thread().name)
        order.append(payload["n"])
        path.write_text(str(payload["n"]))

    saver = BackgroundSaver()
    for n in range(3):
        saver.submit(slow_write, {"n": n}, tmp_path / f"{n}.txt")
    assert order == []  # submit returned while the first write still waits
    release.set()
    saver.flush()
    assert order == [0, 1, 2] and threading.current_thread().name not in threads


def test_a_failed_background_write_is_raised_in_the_training_thread(tmp_path):
    def full_disk(payload, path):
        raise OSError(28, "No space left on device")

    saver = BackgroundSaver()
    saver.submit(full_disk, {}, tmp_path / "last.pt")
    with pytest.raises(OSError, match="No space left"):
        saver.flush()
    saver.submit(atomic_torch_save, {"w": torch.ones(1)}, tmp_path / "ok.pt")  # the saver goes on working
    saver.flush()
    assert (tmp_path / "ok.pt").is_file()

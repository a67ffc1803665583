"""The Kaggle kernels API as ``push`` and ``pull`` use it: a protocol (a fake in tests) and
the real client, the ``kaggle`` package called through ``credentials.call_api``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from .credentials import KaggleError, call_api

DONE, CANCELLED = "complete", ("error", "cancelrequested", "cancelacknowledged")


class KernelStatus(NamedTuple):
    state: str  # normalised: queued, running, complete, error, cancelrequested, cancelacknowledged, ...
    message: str = ""


class KernelClient(Protocol):
    """The Kaggle API as push and pull use it (a fake in tests)."""

    def username(self) -> str | None:
        """The authenticated user's name."""

    def push(self, folder: Path) -> dict[str, Any]:
        """Push the kernel folder (metadata + code), which starts a run: ``{ref, url, version}``."""

    def status(self, kernel: str) -> KernelStatus | str:
        """The kernel's latest run status."""

    def output(self, kernel: str, dest: Path) -> str:
        """Download the latest run's output files into ``dest``; return its log text."""


def normalize_state(raw: Any) -> str:
    """``KernelWorkerStatus.CANCEL_ACKNOWLEDGED`` (kaggle 2.x), ``"cancelAcknowledged"`` (1.x)
    -> ``"cancelacknowledged"``."""
    name = getattr(raw, "name", None) or str(raw)
    return name.split(".")[-1].replace("_", "").lower()


def as_status(value: KernelStatus | str) -> KernelStatus:
    if isinstance(value, KernelStatus):
        return KernelStatus(normalize_state(value.state), value.message or "")
    return KernelStatus(normalize_state(value))


def has_ended(status: KernelStatus) -> bool:
    return status.state == DONE or status.state in CANCELLED


class KaggleKernelClient:
    """The real client: the ``kaggle`` package, imported quietly (it authenticates and prints
    at import, and raises SystemExit without credentials), every failure one KaggleError."""

    def username(self) -> str | None:
        return call_api("reading the Kaggle user name", lambda api: api.get_config_value("username"))

    def push(self, folder: Path) -> dict[str, Any]:
        resp = call_api(f"pushing {folder}", lambda api: api.kernels_push(str(folder)))
        if resp is None or getattr(resp, "error", None):
            raise KaggleError(f"Kaggle refused the kernel: {getattr(resp, 'error', 'no response')}")
        invalid = getattr(resp, "invalid_dataset_sources", None)
        if invalid:
            raise KaggleError(f"Kaggle does not know the dataset source(s) {invalid}: the kernel runs without them")
        return {"ref": resp.ref, "url": resp.url, "version": resp.version_number}

    def status(self, kernel: str) -> KernelStatus:
        resp = call_api(f"reading the status of {kernel}", lambda api: api.kernels_status(kernel))
        return KernelStatus(normalize_state(resp.status), getattr(resp, "failure_message", "") or "")

    def output(self, kernel: str, dest: Path) -> str:
        dest.mkdir(parents=True, exist_ok=True)
        call_api(f"downloading the output of {kernel}",
                 lambda api: api.kernels_output(kernel, str(dest), force=True, quiet=True))
        log_file = dest / f"{kernel.split('/')[-1]}.log"  # where kernels_output writes the log
        text = log_file.read_text(errors="replace") if log_file.is_file() else ""
        log_file.unlink(missing_ok=True)
        return text


def log_lines(raw: str) -> list[str]:
    """A kernel log as text lines: Kaggle stores it as a JSON list of ``{stream_name, time, data}``."""
    try:
        entries = json.loads(raw)
    except ValueError:
        return raw.splitlines()
    if isinstance(entries, list) and all(isinstance(e, dict) for e in entries):
        return "".join(str(e.get("data", "")) for e in entries).splitlines()
    return raw.splitlines()


__all__ = ["CANCELLED", "DONE", "KaggleKernelClient", "KernelClient", "KernelStatus", "as_status", "has_ended",
           "log_lines", "normalize_state"]

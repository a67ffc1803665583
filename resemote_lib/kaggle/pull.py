"""``kaggle pull``: wait for a pushed kernel, download its output, check it, take it in.

The output is checked outside ``results/`` (``metrics.json`` and ``provenance.json``
present, the provenance's commit, dirty flag and code hash equal to the pushed ones), then
moved into ``results/<run_name>/`` (the kernel's log as ``kaggle.log``, its own Table III
as ``kaggle_paper/``), and Table III is regenerated from every run in ``results/``. An
output that fails a check stays outside ``results/``, so it never enters Table III.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .. import paths
from ..params import check_run_name
from ..runs import RunBusy, RunLock
from ..usage import UsageError, WorkFailed
from .credentials import KaggleError, credential_sources, missing_credentials
from .kernels import DONE, KaggleKernelClient, KernelClient, KernelStatus, as_status, has_ended, log_lines
from .push import PUSH_RECORD

LOG_TAIL = 30
RECORD_KEYS = ("kernel", "commit", "dirty")  # what pull needs from kaggle_push.json
PUSH_AGAIN = "push the run again (python -m resemote_lib kaggle push PARAMS.yaml), which rewrites it"


def read_push_record(run_dir: Path) -> dict[str, Any]:
    """``run_dir/kaggle_push.json``, checked; every problem is a ``UsageError`` naming the file."""
    record_file = run_dir / PUSH_RECORD
    if not record_file.is_file():
        raise UsageError(f"nothing pushed for run {run_dir.name!r} (no {record_file}); push it first: "
                         "python -m resemote_lib kaggle push PARAMS.yaml")
    try:
        record = json.loads(record_file.read_text())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"{record_file} is not valid JSON ({e}); {PUSH_AGAIN}") from None
    if not isinstance(record, dict):
        raise UsageError(f"{record_file} holds a JSON {type(record).__name__}, not a push record (an object with "
                         f"{', '.join(RECORD_KEYS)}); {PUSH_AGAIN}")
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise UsageError(f"{record_file} has no {', '.join(repr(k) for k in missing)}, so it is not a complete push "
                         f"record; {PUSH_AGAIN}")
    if not isinstance(record["kernel"], str) or record["kernel"].count("/") != 1:
        raise UsageError(f"{record_file}: kernel is {record['kernel']!r}, not OWNER/SLUG; {PUSH_AGAIN}")
    return record


def wait(client: KernelClient, kernel: str, *, timeout: float, poll: float, progress: bool = True,
         retries: int = 5) -> KernelStatus:
    """Poll until the kernel's run ends or ``timeout`` seconds pass; a status line meanwhile."""
    from tqdm.auto import tqdm

    start, failures = time.monotonic(), 0
    with tqdm(total=None, bar_format="{desc} [{elapsed}]", desc=f"{kernel}: ...", disable=not progress,
              file=sys.stderr) as bar:
        while True:
            try:
                status = as_status(client.status(kernel))
                failures = 0
            except KaggleError:
                failures += 1
                if failures > retries:
                    raise
                status = KernelStatus("unreachable")
            bar.set_description_str(f"{kernel}: {status.state}")
            if has_ended(status):
                return status
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                return status
            time.sleep(min(poll, left))


def _produced_run(staging: Path, run_name: str) -> Path:
    """The run folder inside a kernel's output (written under /kaggle/working/results/)."""
    for candidate in (staging / "results" / run_name, staging / run_name):
        if candidate.is_dir():
            return candidate
    return staging / "results" / run_name


def check_output(run: Path, record: dict[str, Any]) -> str | None:
    """Why a kernel's run folder cannot be accepted, or None."""
    for name in ("metrics.json", "provenance.json"):
        if not (run / name).is_file():
            return f"the kernel {record['kernel']} completed but its output has no results/{run.name}/{name}"
    try:
        prov = json.loads((run / "provenance.json").read_text())
    except ValueError as e:
        return f"the output's provenance.json is not valid JSON ({e})"
    if not isinstance(prov, dict):
        return f"the output's provenance.json holds a JSON {type(prov).__name__}, not an object"
    git = prov.get("git") or {}
    if git.get("commit") != record["commit"]:
        return (f"commit mismatch: the output's provenance.json records commit {git.get('commit')}, the push "
                f"recorded {record['commit']}: this output did not come from the pushed code")
    if git.get("dirty") != record["dirty"]:
        return f"dirty flag mismatch: provenance.json says {git.get('dirty')}, the push recorded {record['dirty']}"
    if record.get("code_sha256") and prov.get("code_sha256") != record["code_sha256"]:
        return (f"code hash mismatch: provenance.json records {prov.get('code_sha256')}, the pushed source had "
                f"{record['code_sha256']}")
    return None


def _move_into(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        target = dest / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(item), str(target))


def _take_in(produced: Path, run_dir: Path, staging: Path) -> None:
    """Move a checked output into the run folder, under its lock (never under a local process writing it)."""
    with RunLock(run_dir, what="kaggle pull"):
        if (run_dir / "last.pt").is_file():
            raise UsageError(f"{run_dir} holds a local training run (last.pt); the kernel's output stays in "
                             f"{staging}: move it by hand or pull into another results folder")
        _move_into(produced, run_dir)
        kernel_paper = produced.parent / "paper"
        if kernel_paper.is_dir():
            _move_into(kernel_paper, run_dir / "kaggle_paper")


def _accuracy(run_dir: Path) -> str:
    try:
        accuracy = json.loads((run_dir / "metrics.json").read_text()).get("accuracy")
    except (OSError, ValueError, AttributeError):
        return ""
    return f"; test accuracy {accuracy:.2%}" if isinstance(accuracy, (int, float)) else ""


def pull(run_name: str, *, timeout: float, poll: float, results_dir: str | os.PathLike | None = None,
         client: KernelClient | None = None, staging: str | os.PathLike | None = None,
         progress: bool = True) -> str:
    """Wait for the kernel pushed for ``run_name``, check its output, take it in, regenerate Table III.

    Returns the line to show the user. Raises ``UsageError`` (nothing usable pushed, no
    credentials, a local run in the way), ``WorkFailed`` (the kernel failed, its output
    failed a check, Table III failed) or ``RunBusy`` (still running after ``timeout``
    seconds, or a local process holds the run).
    """
    from ..commands import pipeline

    results = Path(results_dir).resolve() if results_dir is not None else paths.RESULTS
    try:
        run_dir = results / check_run_name(run_name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    record = read_push_record(run_dir)
    kernel = record["kernel"]
    if client is None:
        if not credential_sources():
            raise UsageError(missing_credentials(f"{kernel} cannot be reached"))
        client = KaggleKernelClient()
    try:
        status = wait(client, kernel, timeout=timeout, poll=poll, progress=progress)
    except KaggleError as e:
        raise WorkFailed(str(e)) from None
    if not has_ended(status):
        raise RunBusy(f"{kernel} is still {status.state} after {timeout:.0f} s: pull again later")
    # Outside results/: an output that fails its checks must never enter Table III.
    staging = Path(staging) if staging is not None else paths.CACHE / "kaggle" / run_name
    if staging.exists():
        shutil.rmtree(staging)
    try:
        log_text = client.output(kernel, staging)
    except KaggleError as e:
        raise WorkFailed(str(e)) from None
    (run_dir / "kaggle.log").write_text(log_text)
    if status.state != DONE:
        tail = "\n".join(log_lines(log_text)[-LOG_TAIL:])
        raise WorkFailed(f"kernel {kernel} ended with status {status.state}"
                         f"{': ' + status.message if status.message else ''}; its output is in {staging}, its log "
                         f"in {run_dir / 'kaggle.log'}; last lines:\n{tail}")
    produced = _produced_run(staging, run_name)
    problem = check_output(produced, record)
    if problem:
        raise WorkFailed(f"{problem} (output left in {staging}, log in {run_dir / 'kaggle.log'})")
    _take_in(produced, run_dir, staging)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        paper = pipeline.regenerate_paper(results, progress=False)
    except (RuntimeError, ValueError, OSError) as e:  # a params error or a failed 03_paper notebook
        raise WorkFailed(f"the output is in {run_dir} but Table III was not regenerated: {e}") from None
    return (f"{run_name}: pulled {kernel} (commit {record['commit'][:12]}) into {run_dir}{_accuracy(run_dir)}"
            f"; Table III: {paper.parent}")


__all__ = ["LOG_TAIL", "check_output", "pull", "read_push_record", "wait"]

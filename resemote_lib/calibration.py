"""A checkpoint's softmax temperature, kept in a file beside it, never inside it.

Evaluation fits a temperature on the validation split (``metrics.fit_temperature``) and
writes ``<stem>.calibration.json`` next to the checkpoint (``best.pt`` ->
``best.calibration.json``) with the checkpoint's SHA-256: evaluating a checkpoint never
changes its bytes, so its hash in provenance stays true. ``load_model`` reads the file back
only when that hash still matches (a checkpoint replaced after its calibration gets none,
with a warning) and sets ``model.temperature``, which the Predictor and export apply.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

from .files import atomic_write_text, sha256_of

log = logging.getLogger(__name__)
SUFFIX = ".calibration.json"
# The temperatures a calibration may hold. Fitted ones land near 1 (Guo et al., 2017, report
# 1-3 for over-confident networks); a factor of 20 either way is far past any of them, yet
# refuses the values that silently break the output: 1e-300 overflows every logit to
# inf (NaN probabilities, the label "angry"), 1e308 flattens them to uniform. Fitting stops at
# the same ends (``metrics.fit_temperature``, which cannot import this module).
TEMPERATURE_RANGE = (0.05, 20.0)


def calibration_path(checkpoint: str | os.PathLike) -> Path:
    """``best.pt`` -> ``best.calibration.json``, in the checkpoint's folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def check_temperature(value: Any, where: str) -> float:
    """A softmax temperature: a number in ``TEMPERATURE_RANGE`` (``ValueError`` naming ``where``
    and ``value`` otherwise; a bool or a string is not a number, though ``float`` reads them)."""
    lo, hi = TEMPERATURE_RANGE
    try:
        t = math.nan if isinstance(value, bool | str | bytes) else float(value)
    except (TypeError, ValueError):
        t = math.nan
    if not lo <= t <= hi:  # NaN fails too
        raise ValueError(f"{where}: temperature must be a number in [{lo:g}, {hi:g}], got {value!r} (1 leaves the "
                         "probabilities as the model gives them; evaluation fits one on the validation split)")
    return t


def write_calibration(checkpoint: str | os.PathLike, temperature: float, *, digest: str | None = None,
                      **info: Any) -> Path:
    """Write ``temperature`` (and ``info``: what it was fitted on, ECE before and after) beside
    ``checkpoint``, atomically, bound to the checkpoint's SHA-256 (``digest`` if known)."""
    checkpoint = Path(checkpoint)
    record = {"checkpoint": checkpoint.name, "checkpoint_sha256": digest or sha256_of(checkpoint),
              "temperature": check_temperature(temperature, f"calibration of {checkpoint}"), **info}
    return atomic_write_text(calibration_path(checkpoint), json.dumps(record, indent=2, default=str))


def read_temperature(checkpoint: str | os.PathLike, *, digest: str | None = None) -> float | None:
    """The temperature fitted for ``checkpoint``, or None: no calibration file beside it, or one
    written for other bytes (the checkpoint was replaced since: a warning says so). A file (or
    folder) that is not a calibration record, or holds a temperature outside
    ``TEMPERATURE_RANGE``, is a ``ValueError`` naming it and the value."""
    path = calibration_path(checkpoint)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a calibration record: remove it, or re-run the evaluation once "
                         "it is gone")
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a calibration record ({e}); delete it and re-run the evaluation") from None
    if not isinstance(record, dict) or "temperature" not in record or "checkpoint_sha256" not in record:
        raise ValueError(f"{path}: not a calibration record (expected keys temperature and checkpoint_sha256); "
                         "delete it and re-run the evaluation")
    if record["checkpoint_sha256"] != (digest or sha256_of(checkpoint)):
        warnings.warn(f"{path} was fitted for other bytes than {Path(checkpoint).name} (the checkpoint changed "
                      "since): ignored; re-run the evaluation to calibrate this one", stacklevel=2)
        return None
    return check_temperature(record["temperature"], str(path))


__all__ = ["SUFFIX", "TEMPERATURE_RANGE", "calibration_path", "check_temperature", "read_temperature", "write_calibration"]

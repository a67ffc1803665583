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


def calibration_path(checkpoint: str | os.PathLike) -> Path:
    """``best.pt`` -> ``best.calibration.json``, in the checkpoint's folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def check_temperature(value: Any, where: str) -> float:
    """A softmax temperature: a finite number > 0 (``ValueError`` naming ``where`` otherwise)."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: temperature must be a number > 0, got {value!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"{where}: temperature must be a finite number > 0, got {value!r} (1 leaves the "
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
    written for other bytes (the checkpoint was replaced since: a warning says so). A file that
    is not a calibration record, or holds a temperature that is not a finite number > 0, is a
    ``ValueError`` naming it."""
    path = calibration_path(checkpoint)
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


__all__ = ["SUFFIX", "calibration_path", "check_temperature", "read_temperature", "write_calibration"]

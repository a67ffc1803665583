"""Absolute paths of the project, resolved once from the repository root.

Code that writes files asks this module where, so that notebooks, the CLI and tests
behave the same from any working directory (showyourwork's rule).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"
# RESEMOTE_RESULTS lets tests and batch jobs write somewhere other than the repo.
RESULTS = Path(os.environ.get("RESEMOTE_RESULTS", ROOT / "results")).resolve()
FIGURES = RESULTS / "figures"
PAPER = RESULTS / "paper"
DATA = Path(os.environ.get("RESEMOTE_DATA", ROOT / "data")).resolve()
# Decoded uint8 tensors of every split; safe to delete, rebuilt on demand.
CACHE = Path(os.environ.get("RESEMOTE_CACHE", ROOT / ".cache")).resolve()

__all__ = ["CACHE", "DATA", "FIGURES", "NOTEBOOKS", "PAPER", "PARAMS", "RESULTS", "ROOT"]

"""Shared test helpers. The root conftest.py isolates results/, data/ and the cache."""

from __future__ import annotations

import os
from pathlib import Path

# Copied from shared/reference/state_dict_keys.tsv (reference @ fabbe68) so the repo is self-contained.
REFERENCE_KEYS = Path(__file__).resolve().parent / "golden" / "reference_state_dict_keys.tsv"
# EXPECTTEST-style switch: RESEMOTE_ACCEPT=1 rewrites golden files instead of comparing.
ACCEPT = os.environ.get("RESEMOTE_ACCEPT") == "1"

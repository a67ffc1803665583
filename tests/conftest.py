"""Shared fixtures. Every test writes under tmp_path, never into the repo's results/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Copied from shared/reference/state_dict_keys.tsv (reference @ fabbe68) so the repo is self-contained.
REFERENCE_KEYS = Path(__file__).resolve().parent / "golden" / "reference_state_dict_keys.tsv"
# EXPECTTEST-style switch: RESEMOTE_ACCEPT=1 rewrites golden files instead of comparing.
ACCEPT = os.environ.get("RESEMOTE_ACCEPT") == "1"


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path_factory, monkeypatch):
    """Point results/ and the tensor cache at temporary folders for every test."""
    base = tmp_path_factory.mktemp("resemote")
    monkeypatch.setenv("RESEMOTE_RESULTS", str(base / "results"))
    monkeypatch.setenv("RESEMOTE_CACHE", str(base / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    torch.set_num_threads(max(1, os.cpu_count() or 1))

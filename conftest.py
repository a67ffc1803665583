"""Test-session isolation: results, caches and generated data go to a temporary folder.

Set before anything imports ``resemote_lib.paths`` and before nbval starts a kernel (which
inherits this environment), so neither unit tests nor notebooks write into the repo's
committed ``results/``.
"""

from __future__ import annotations

import os
import tempfile


def pytest_configure(config):
    base = tempfile.mkdtemp(prefix="resemote-test-")
    os.environ["RESEMOTE_RESULTS"] = os.path.join(base, "results")
    os.environ["RESEMOTE_DATA"] = os.path.join(base, "data")
    os.environ.setdefault("RESEMOTE_CACHE", os.path.join(base, "cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONHASHSEED", "0")

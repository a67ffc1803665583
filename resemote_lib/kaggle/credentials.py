"""Kaggle credentials, the one message saying where to put them, and quiet calls of the API.

The ``kaggle`` package authenticates when imported, printing to stdout or raising
SystemExit without credentials (which ``except Exception`` misses), so ``call_api``
imports it lazily, inside a guard, and only callers that found credentials call it.
Credentials are never printed or written anywhere by this package.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Where the credentials go: every message about missing or refused credentials says this.
WHERE_CREDENTIALS_GO = ("put your Kaggle API token in ~/.kaggle/kaggle.json (chmod 600; kaggle.com > Settings > API > "
                        "Create New Token; $KAGGLE_CONFIG_DIR moves the folder), or set KAGGLE_USERNAME and "
                        "KAGGLE_KEY, or KAGGLE_API_TOKEN")


class KaggleError(RuntimeError):
    """Credentials missing, or a Kaggle API call failed; the message says what to do."""


def config_dir() -> Path:
    """The folder of ``kaggle.json`` (``$KAGGLE_CONFIG_DIR``, default ``~/.kaggle``)."""
    return Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))


def credential_sources() -> list[str]:
    """Where Kaggle credentials were found (names of places, never their contents)."""
    config = config_dir()
    found = []
    if (config / "kaggle.json").is_file():
        found.append(str(config / "kaggle.json"))
    if (config / "access_token").is_file():
        found.append(str(config / "access_token"))
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        found.append("KAGGLE_USERNAME/KAGGLE_KEY")
    if os.environ.get("KAGGLE_API_TOKEN"):
        found.append("KAGGLE_API_TOKEN")
    return found


def missing_credentials(consequence: str) -> str:
    """``no Kaggle credentials, so <consequence>: put your Kaggle API token in ...``."""
    return f"no Kaggle credentials found, so {consequence}: {WHERE_CREDENTIALS_GO}"


def download_by_hand(slug: str, dest: Path) -> str:
    """How to get dataset ``slug`` without the API."""
    return f"Or download by hand: https://www.kaggle.com/datasets/{slug} -> Download, then unzip into {dest}."


def configured_username() -> str | None:
    """``KAGGLE_USERNAME``, else the ``username`` in kaggle.json (no API call)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    try:
        return json.loads((config_dir() / "kaggle.json").read_text()).get("username") or None
    except (OSError, ValueError, AttributeError):  # AttributeError: a kaggle.json that is not an object
        return None


def call_api(what: str, fn: Callable[[Any], T], *, hint: str = "") -> T:
    """``fn(kaggle.api)``, the package imported quietly; every failure is one KaggleError
    saying ``<what> failed (<type>: <first line>)``, then ``hint``. What the package prints
    is dropped: it may echo credentials."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import kaggle

            return fn(kaggle.api)
    except (Exception, SystemExit) as e:  # SystemExit: kaggle's authenticate() without credentials
        first = str(e).splitlines()[0] if str(e) else ""
        raise KaggleError(f"{what} failed ({type(e).__name__}: {first})" + (f". {hint}" if hint else "")) from None


__all__ = ["WHERE_CREDENTIALS_GO", "KaggleError", "call_api", "config_dir", "configured_username",
           "credential_sources", "download_by_hand", "missing_credentials"]

"""Download the datasets from Kaggle, or say exactly how to do it by hand.

The ``kaggle`` package authenticates when imported, printing to stdout or raising
SystemExit without credentials (which ``except Exception`` misses), so it is imported
lazily, inside a guard, and only after credentials were found. Credentials are never
printed or written anywhere by this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Protocol

from . import paths
from .data import KAGGLE_SLUGS, detect_layout, unpack_archives

log = logging.getLogger(__name__)


class KaggleError(RuntimeError):
    """Credentials missing, or the download failed; the message says what to do."""


class DownloadClient(Protocol):
    def download(self, slug: str, dest: Path) -> None:
        """Put the dataset's files (or its zip) into ``dest``."""


def credential_sources() -> list[str]:
    """Where Kaggle credentials were found (names of places, never their contents)."""
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
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


def _manual_instructions(slug: str, dest: Path) -> str:
    return (
        "Put your Kaggle API token in ~/.kaggle/kaggle.json (chmod 600; from kaggle.com > Settings > "
        "API > Create New Token), or set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN. "
        f"Or download by hand: https://www.kaggle.com/datasets/{slug} -> Download, then unzip into {dest}."
    )


class KaggleApiClient:
    """The real client: the ``kaggle`` package, imported quietly on first use."""

    def download(self, slug: str, dest: Path) -> None:
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                import kaggle

                kaggle.api.dataset_download_files(slug, path=str(dest), unzip=False, quiet=True, force=True)
        except (Exception, SystemExit) as e:  # SystemExit: kaggle's authenticate() without credentials
            raise KaggleError(
                f"downloading {slug} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                + _manual_instructions(slug, dest)
            ) from None


def download(
    name: str,
    dest: str | os.PathLike | None = None,
    *,
    slug: str | None = None,
    client: DownloadClient | None = None,
) -> Path:
    """Make ``name`` available under ``dest`` and return the folder holding its layout.

    Skips the download when a valid layout is already there (a Kaggle mount counts).
    Unzips whatever archive the client left, then validates the layout.

    Args:
        name: ``fer2013``, ``rafdb`` or ``affectnet``.
        dest: target folder (default ``data/<name>``).
        slug: Kaggle ``owner/dataset`` (default: ``data.KAGGLE_SLUGS[name]``).
        client: anything with ``download(slug, dest)``; default the kaggle package.
    """
    if name not in KAGGLE_SLUGS:
        raise ValueError(f"no Kaggle dataset for {name!r}; available: {sorted(KAGGLE_SLUGS)}")
    slug = slug or KAGGLE_SLUGS[name]
    dest = Path(dest) if dest is not None else paths.DATA / name
    if dest.exists():
        try:
            layout, root = detect_layout(name, dest)
            log.info("%s already present at %s (%s): not downloading", name, root, layout)
            return root
        except FileNotFoundError:
            pass
    if client is None:
        if not credential_sources():
            raise KaggleError(f"no Kaggle credentials found, so {slug} cannot be downloaded. "
                              + _manual_instructions(slug, dest))
        client = KaggleApiClient()
    dest.mkdir(parents=True, exist_ok=True)
    client.download(slug, dest)
    unpack_archives(dest)
    try:
        layout, root = detect_layout(name, dest)
    except FileNotFoundError as e:
        raise KaggleError(f"downloaded {slug} into {dest}, but: {e}") from None
    log.info("%s ready at %s (%s)", name, root, layout)
    return root


__all__ = ["DownloadClient", "KaggleApiClient", "KaggleError", "credential_sources", "download"]

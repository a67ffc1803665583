"""Datasets from Kaggle: the read-only mount inside a kernel, else a download, else how to
get them by hand.

On Kaggle itself an attached dataset is mounted read-only under ``/kaggle/input`` (as
``<slug name>/`` or, in newer images, ``datasets/<owner>/<slug name>/``):
``download`` then returns the mounted copy without downloading or writing anything
there, whatever the params' ``download`` says. ``RESEMOTE_KAGGLE_INPUT`` moves that
folder (tests simulate a kernel's layout). The ``kaggle`` package is only imported after
credentials were found (``credentials.call_api``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

from .. import data, paths
from ..data import KAGGLE_SLUGS, detect_layout, unpack_archives
from .credentials import (
    WHERE_CREDENTIALS_GO,
    KaggleError,
    call_api,
    credential_sources,
    download_by_hand,
    missing_credentials,
)

log = logging.getLogger(__name__)


class DownloadClient(Protocol):
    def download(self, slug: str, dest: Path) -> None:
        """Put the dataset's files (or its zip) into ``dest``."""


class KaggleApiClient:
    """The real client: the ``kaggle`` package, imported quietly on first use."""

    def download(self, slug: str, dest: Path) -> None:
        call_api(f"downloading {slug}",
                 lambda api: api.dataset_download_files(slug, path=str(dest), unzip=False, quiet=True, force=True),
                 hint=f"If it is the credentials: {WHERE_CREDENTIALS_GO}. {download_by_hand(slug, dest)}")


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def mount_candidates(name: str) -> list[Path]:
    """Where Kaggle may mount ``name``: ``data.default_root`` when it points into the input
    folder (``/kaggle/input/<slug name>``), then ``/kaggle/input/datasets/<owner>/<slug name>``."""
    default = data.default_root(name)  # the first of the two that exists, else data/<name>
    return [default] if _is_within(default, data.KAGGLE_INPUT) else []


def mounted_root(name: str) -> Path | None:
    """The folder holding ``name``'s layout in a Kaggle mount, or None when none is attached."""
    for candidate in mount_candidates(name):
        if candidate.is_dir():
            try:
                return detect_layout(name, candidate, quiet=True)[1]
            except FileNotFoundError as e:
                log.warning("%s is mounted at %s but holds no known layout: %s", name, candidate, e)
    return None


def _present(name: str, folder: str | os.PathLike | None) -> Path | None:
    """The folder holding ``name``'s layout at ``folder`` (or one level off), else None."""
    if folder is None or not Path(folder).exists():
        return None
    try:
        layout, root = detect_layout(name, folder, quiet=True)
    except FileNotFoundError:
        return None
    log.info("%s already present at %s (%s): not downloading", name, root, layout)
    return root


def download(
    name: str,
    dest: str | os.PathLike | None = None,
    *,
    slug: str | None = None,
    client: DownloadClient | None = None,
) -> Path:
    """Make ``name`` available and return the folder holding its layout.

    In this order: ``dest`` when it already holds a valid layout; the Kaggle mount
    (``mounted_root``) when it does; otherwise a download into ``dest``, unzipped and
    validated. The first two need no credentials and write nothing; a read-only mount is
    never written to (a ``dest`` inside the Kaggle input folder that lacks the data is an
    error saying to attach the dataset).

    Args:
        name: ``fer2013``, ``rafdb`` or ``affectnet``.
        dest: target folder (default ``data/<name>``).
        slug: Kaggle ``owner/dataset`` (default: ``data.KAGGLE_SLUGS[name]``).
        client: anything with ``download(slug, dest)``; default the kaggle package.
    """
    if name not in KAGGLE_SLUGS:
        raise ValueError(f"no Kaggle dataset for {name!r}; available: {sorted(KAGGLE_SLUGS)}")
    slug = slug or KAGGLE_SLUGS[name]
    root = _present(name, dest)
    if root is not None:
        return root
    mounted = mounted_root(name)
    if mounted is not None:
        log.info("%s: using the attached Kaggle dataset at %s (read-only): not downloading", name, mounted)
        return mounted
    dest = Path(dest) if dest is not None else paths.DATA / name
    if _is_within(dest, data.KAGGLE_INPUT):
        raise KaggleError(f"{dest} is inside the read-only Kaggle input folder {data.KAGGLE_INPUT} but holds no "
                          f"{name} layout: attach the dataset {slug} to the notebook (Add Input), or give a "
                          "writable data_root to download into.")
    root = _present(name, dest)
    if root is not None:
        return root
    if client is None:
        if not credential_sources():
            raise KaggleError(missing_credentials(f"{slug} cannot be downloaded") + ". "
                              + download_by_hand(slug, dest))
        client = KaggleApiClient()
    dest.mkdir(parents=True, exist_ok=True)
    client.download(slug, dest)
    unpack_archives(dest)
    try:
        layout, root = detect_layout(name, dest, quiet=True)
    except FileNotFoundError as e:
        raise KaggleError(f"downloaded {slug} into {dest}, but: {e}") from None
    log.info("%s ready at %s (%s)", name, root, layout)
    return root


__all__ = ["DownloadClient", "KaggleApiClient", "download", "mount_candidates", "mounted_root"]

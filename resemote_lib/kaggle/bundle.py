"""The source a kernel runs: one commit of this repository as a deterministic tar.gz.

``build_bundle`` takes ``git archive HEAD`` (or, with ``allow_dirty``, the tracked files as
they are on disk), leaves out ``EXCLUDED`` folders, adds ``resemote_source.json`` (the
commit, the dirty flag and the library's code hash, as ``provenance`` will compute it on
Kaggle) and checks the params file as the kernel will see it. Same files, same bytes: the
archive has sorted entries and no times or owners.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from .runner import SOURCE_RECORD

# Never in a bundle: outputs, data, environments (only results/ is tracked, for its reviewed tables).
EXCLUDED = ("results/", "data/", ".venv/", ".cache/")


class DirtyTreeError(ValueError):
    """Tracked files differ from HEAD and ``--allow-dirty`` was not given."""


@dataclass
class Bundle:
    """One commit's source as the kernel gets it."""

    archive: bytes  # deterministic tar.gz
    sha256: str
    record: dict[str, Any]  # resemote_source.json
    files: list[str]
    params: str  # the params file, relative to the repository
    values: dict[str, Any]  # its resolved values (overrides applied)
    requirements: list[str]  # pyproject.toml's dependencies


def _git(repo: Path, *args: str) -> bytes:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        raise ValueError(f"git {' '.join(args)} could not run in {repo}: {e}") from None
    if out.returncode != 0:
        raise ValueError(f"git {' '.join(args)} failed in {repo} (is it a git checkout?): "
                         f"{out.stderr.decode(errors='replace').strip()}")
    return out.stdout


def source_files(repo: Path, *, allow_dirty: bool = False) -> tuple[dict[str, tuple[bytes, int]], dict[str, Any]]:
    """Path -> (content, mode) of the source to bundle, and its git record.

    A clean tree gives exactly ``git archive HEAD``; with ``allow_dirty``, a tree whose
    tracked files differ from HEAD gives those tracked files as they are on disk.
    Untracked files are never bundled. ``EXCLUDED`` folders are left out.
    """
    commit = _git(repo, "rev-parse", "HEAD").decode().strip()
    status = _git(repo, "status", "--porcelain", "--untracked-files=no").decode()
    modified = [line[3:] for line in status.splitlines() if line.strip()]
    if modified and not allow_dirty:
        shown = ", ".join(modified[:5]) + (f" and {len(modified) - 5} more" if len(modified) > 5 else "")
        raise DirtyTreeError(f"uncommitted changes to tracked files ({shown}): commit them, so the kernel runs a "
                             "commit, or pass --allow-dirty (recorded as dirty)")
    files: dict[str, tuple[bytes, int]] = {}
    if not modified:
        with tarfile.open(fileobj=io.BytesIO(_git(repo, "archive", "--format=tar", "HEAD"))) as tar:
            for member in tar.getmembers():
                f = tar.extractfile(member) if member.isfile() else None
                if f is not None:
                    files[member.name] = (f.read(), member.mode)
    else:
        for name in _git(repo, "ls-files", "-z").decode().split("\0"):
            p = repo / name
            if name and p.is_file() and not p.is_symlink():  # a deleted tracked file is not bundled
                files[name] = (p.read_bytes(), p.stat().st_mode)
    files = {name: (content, 0o755 if mode & 0o111 else 0o644) for name, (content, mode) in files.items()
             if not name.startswith(EXCLUDED)}
    record = {"commit": commit, "dirty": bool(modified), "modified": modified,
              "source": "git ls-files, as on disk" if modified else "git archive HEAD"}
    return files, record


def _targz(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar.gz with sorted entries and no times or owners: same files, same bytes."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w",
                                                                             format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            content, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, 0
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _relative_params(params_file: str | os.PathLike, repo: Path) -> str:
    path = Path(params_file)
    if not path.is_absolute():  # relative to the repository, else to the working directory
        path = repo / path if (repo / path).exists() else path
    try:
        return path.resolve().relative_to(repo).as_posix()
    except ValueError:
        raise ValueError(f"{params_file}: the params file must be inside the repository {repo} (the kernel "
                         "gets the repository's files only)") from None


def build_bundle(params_file: str | os.PathLike, overrides: dict[str, Any] | None = None, *,
                 repo: str | os.PathLike | None = None, allow_dirty: bool = False) -> Bundle:
    """The source bundle for one params file, checked as the kernel will see it.

    The bundled files are unpacked into a temporary folder first: the params file is
    resolved there (its ``base:`` chain included) and validated against the notebooks, and
    the code hash is computed there exactly as ``provenance.code_hash`` will on Kaggle.
    """
    from .. import params, provenance
    from ..commands import pipeline

    repo = Path(repo or paths.ROOT).resolve()
    overrides = dict(overrides or {})
    rel = _relative_params(params_file, repo)
    files, record = source_files(repo, allow_dirty=allow_dirty)
    if rel not in files:
        raise ValueError(f"{rel} is not tracked by git, so the kernel would not have it: commit it")
    if "pyproject.toml" not in files:
        raise ValueError(f"{repo}: no pyproject.toml in the bundle")
    with tempfile.TemporaryDirectory(prefix="resemote-bundle-") as tmp:
        for name, (content, _) in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_bytes(content)
        record["code_sha256"] = provenance.code_hash(Path(tmp))
        values = params.resolved_values(Path(tmp) / rel, **overrides)
        pipeline.check_params(values, rel)
    files[SOURCE_RECORD] = (json.dumps(record, indent=2).encode() + b"\n", 0o644)
    archive = _targz(files)
    return Bundle(archive=archive, sha256=hashlib.sha256(archive).hexdigest(), record=record, files=sorted(files),
                  params=rel, values=values,
                  requirements=read_requirements(files["pyproject.toml"][0].decode()))


def read_requirements(pyproject_text: str) -> list[str]:
    """``[project] dependencies`` of a pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the array of quoted strings, read directly
        block = re.search(r"(?ms)^dependencies\s*=\s*\[(.*?)^\]", pyproject_text)
        return re.findall(r'"([^"]+)"', block.group(1)) if block else []
    return list(tomllib.loads(pyproject_text).get("project", {}).get("dependencies", []))


__all__ = ["EXCLUDED", "Bundle", "DirtyTreeError", "build_bundle", "read_requirements", "source_files"]

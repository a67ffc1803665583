"""Writing files so that a crash or a full disk never leaves a truncated one, and hashing them.

A leaf module (it imports nothing of the package): the data cache, checkpoints, calibration
records, metrics and histories all save through it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~umask())
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sha256_of(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; a saved file gets the usual mode
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else f"{path.name} was not written"
        if _interrupted(exc):  # Ctrl-C inside torch's writer surfaces as its "unexpected pos" error
            raise KeyboardInterrupt(f"interrupted while saving {path}; {kept}") from exc
        needed, free = tensor_bytes(obj), shutil.disk_usage(path.parent).free
        if _is_disk_full(exc, needed, free):
            raise OSError(errno.ENOSPC, f"no space left on the device holding {path.parent} while saving "
                          f"{path.name}: it needs about {needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free; "
                          f"{kept}. Free some space (or point RESEMOTE_RESULTS elsewhere) and rerun: "
                          "training resumes from last.pt.") from exc
        raise
    return path


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _causes(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        out.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return out


def _interrupted(exc: BaseException) -> bool:
    return any(isinstance(e, KeyboardInterrupt) for e in _causes(exc))


def _is_disk_full(exc: BaseException, needed: int, free: int) -> bool:
    """ENOSPC/EDQUOT, or torch's zip-writer error ("unexpected pos ... vs ...") when the
    free space really is short: that error also follows other write failures."""
    causes = _causes(exc)
    if any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in causes):
        return True
    return free < needed and any(isinstance(e, RuntimeError) and "unexpected pos" in str(e) for e in causes)


def tensor_bytes(obj: Any) -> int:
    """Bytes of tensor data in a (nested) checkpoint payload: about its size on disk."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, Mapping):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def temporary_beside(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A new empty file beside ``path`` to write it under: hidden and named after it and
    this process (``.<name>.<pid>.<random><suffix>``), so that ``remove_stale_temporaries``
    can tell what a killed process left from what a running one is writing."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def remove_stale_temporaries(path: str | os.PathLike, suffix: str = ".tmp") -> list[Path]:
    """Delete the ``temporary_beside(path, suffix)`` files of processes that no longer run
    (a SIGKILL mid-write leaves one); returns them. Other processes' files are left alone."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[a-z0-9_]+{re.escape(suffix)}")
    removed = []
    for p in sorted(path.parent.iterdir()) if path.parent.is_dir() else []:
        found = pattern.fullmatch(p.name)
        if found and not _running(int(found.group(1))) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a pid no process can have: leave the file)
    return True


__all__ = ["atomic_torch_save", "atomic_write_text", "remove_stale_temporaries", "sha256_of", "temporary_beside",
           "tensor_bytes", "umask"]

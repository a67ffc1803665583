"""Where the ``predict`` command writes, decided and checked before any work.

``plan_outputs`` names every file the command will write and refuses, before the model is
loaded, what would fail or destroy a file: an input or a PyTorch file as ``--out``, a place
that cannot be written, a way out of ``--annotate`` through a linked folder, or anything
already where another output goes (a file, or a link, even a broken one: never replaced or
followed). Names two inputs would share get ``-2``, ``-3``...
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import file_kind
from ..usage import UsageError


def video_source(spec: str) -> str | int:
    """A video input as OpenCV opens it: a file name, or ``webcam:N`` -> camera ``N``."""
    if not spec.startswith("webcam:"):
        return spec
    index = spec.split(":", 1)[1]
    if not index.isdigit():
        raise UsageError(f"{spec}: a webcam is webcam:N, N the camera's number (webcam:0 is the first camera). "
                         "Nothing was computed")
    return int(index)


@dataclass
class Outputs:
    """Every file a ``predict`` command will write, decided and checked before any work."""

    annotated: list[Path | None]  # per image input
    videos: list[tuple[Path | None, Path | None]]  # per video: (annotated .mp4, frames .csv or None: stdout)


def _check_writable_folder(folder: Path, what: str) -> None:
    """Create ``folder`` and prove a file can be written there, or raise naming ``what``."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(f"{what}: cannot write there: {blocker} is a file, not a folder; choose another "
                                 "place. Nothing was computed")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(f"{what}: cannot write in {folder} ({e.strerror}); choose a writable place. "
                      "Nothing was computed") from None


def _stem(source: str) -> str:
    return Path(source.replace(":", "_")).stem


def _unique(path: Path, taken: set[Path]) -> Path:
    """``path``, or ``<stem>-2<suffix>``, ``-3``... when an earlier output of this run took it
    (``taken`` holds resolved paths)."""
    candidate, n = path, 1
    while candidate.resolve() in taken:
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    taken.add(candidate.resolve())
    return candidate


def _check_out(out: Path, inputs: list[Path]) -> None:
    """``--out FILE`` may be replaced: not an input (a video neither), not a PyTorch file, writable."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name (results.jsonl or results.csv)")
    if out.exists():
        if any(p.exists() and os.path.samefile(p, out) for p in inputs):
            raise ValueError(f"--out {out} is one of the inputs; writing results there would destroy it")
        if file_kind(out) not in ("other", "empty"):
            raise FileExistsError(f"--out {out} is an existing PyTorch file; refusing to replace it with "
                                  "results: choose another name (results.jsonl or results.csv)")
        if not os.access(out, os.W_OK):
            raise PermissionError(f"--out {out} exists and is not writable; choose another name or make it "
                                  "writable. Nothing was computed")
    _check_writable_folder(out.parent, f"--out {out}")


def plan_outputs(checkpoint: Path, images: list[tuple[Path, Path]], videos: list[str], out: Path | None,
                  annotate: Path | None) -> Outputs:
    """Name every output, and refuse (before any work) what would fail or destroy a file:
    an input as ``--out``, a way out of ``--annotate``, or anything already where another
    output goes (a file, or a link, even a broken one: it is never replaced or followed)."""
    taken: set[Path] = set()
    sources = [video_source(v) for v in videos]
    if out is not None:
        _check_out(out, [checkpoint, *(p for p, _ in images), *(Path(s) for s in sources if isinstance(s, str))])
        taken.add(out.resolve())
    if annotate is not None:
        if annotate.exists() and not annotate.is_dir():
            raise ValueError(f"--annotate {annotate} is a file; give a folder (it is created if missing)")
        _check_writable_folder(annotate, f"--annotate {annotate}")
    annotated = [_unique(annotate / name.with_name(f"{name.stem}_annotated.jpg"), taken) if annotate else None
                 for _, name in images]
    planned_videos = []
    for v in videos:
        mp4 = _unique(annotate / f"{_stem(v)}_annotated.mp4", taken) if annotate else None
        folder = out.parent if out is not None else annotate
        frames = _unique(folder / f"{_stem(v)}_frames.csv", taken) if folder is not None else None
        planned_videos.append((mp4, frames))
    in_annotate = [p for p in annotated + [mp4 for mp4, _ in planned_videos] if p is not None]
    _check_inside(annotate, in_annotate)
    frames_of = {frames: v for v, (_, frames) in zip(videos, planned_videos, strict=True) if frames is not None}
    _refuse_existing(in_annotate, frames_of, out, annotate)
    return Outputs(annotated, planned_videos)


def _refuse_existing(in_annotate: list[Path], frames_of: dict[Path, str], out: Path | None,
                     annotate: Path | None) -> None:
    """A file, or a link (even a broken one), where an output goes: ``FileExistsError`` naming it."""
    existing = [p for p in in_annotate + list(frames_of) if os.path.lexists(p)]
    beside_out = [p for p in existing if annotate is None or not p.is_relative_to(annotate)]
    if beside_out:
        raise FileExistsError(f"{_named(beside_out[0])} already exists: predict would write {frames_of[beside_out[0]]}'s "
                              f"per-frame table there (beside --out {out}); nothing was replaced. Move or delete it, "
                              "or give --out in another folder. Nothing was computed")
    if existing:
        raise FileExistsError(f"--annotate {annotate}: {len(existing)} of the files this command would write already "
                              f"exist, e.g. {_named(existing[0])}; nothing was replaced. Choose an empty folder, or "
                              "delete them")


def _check_inside(annotate: Path | None, outputs: list[Path]) -> None:
    """No output of ``--annotate DIR`` may land outside DIR through a linked subfolder."""
    if annotate is None:
        return
    root = annotate.resolve()
    for p in outputs:
        if not p.parent.resolve().is_relative_to(root):
            raise ValueError(f"--annotate {annotate}: {p.parent} leads out of the folder (a symbolic link to "
                             f"{p.parent.resolve()}); predict writes only inside --annotate. Remove the link or "
                             "choose another folder. Nothing was computed")


def _named(path: Path) -> str:
    return f"{path} (a symbolic link to {os.readlink(path)})" if path.is_symlink() else str(path)


__all__ = ["Outputs", "plan_outputs", "video_source"]

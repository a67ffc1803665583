"""The command line's ``predict``: images and folders in batches, then videos and webcams.

``predict_command`` checks every output it will write before it loads the model (exit 2
with nothing computed: ``outputs.plan_outputs``), never replaces a file it was not asked to
write, writes results as they come, and says what it kept when it stops (Ctrl-C or SIGTERM:
exit 130) or when inputs failed (exit 1).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.faces import YuNetDetector
from ..device import resolve_device
from ..files import remove_stale_temporaries, temporary_beside, umask
from ..usage import WorkFailed
from .batch import ResultWriter, media_inputs, predict_files
from .decode import VIDEO_SUFFIXES, to_rgb
from .outputs import plan_outputs, video_source
from .predictor import Predictor, Result
from .video import draw_faces, predict_video

log = logging.getLogger(__name__)


def _detector(spec: str) -> str | YuNetDetector | None:
    if spec == "none":
        return None
    if spec.startswith("yunet:"):
        return YuNetDetector(spec.split(":", 1)[1])
    return spec


def _frame_fields(class_names: Sequence[str]) -> list[str]:
    return ["source", "frame", "time_s", "faces", "box", "label", *[f"p_{n}" for n in class_names]]


class _ResultsFile:
    """``--out FILE``: results written as they come to a hidden temporary file beside FILE,
    which replaces FILE when predict ends (also when stopped) if at least one image was
    read; otherwise FILE is left as it was (or not created)."""

    def __init__(self, out: Path, class_names: Sequence[str]) -> None:
        suffix = f".partial{out.suffix}"  # the suffix says CSV or JSON lines
        stale = remove_stale_temporaries(out, suffix)
        if stale:
            log.warning("removed %d temporary file(s) left by an interrupted predict: %s", len(stale),
                        ", ".join(p.name for p in stale))
        self.out, self.read = out, 0
        self.writer = ResultWriter(temporary_beside(out, suffix), class_names)

    @property
    def written(self) -> int:
        return self.writer.written

    def write(self, r: Result) -> None:
        self.read += r.error is None
        self.writer.write(r)

    def close(self) -> str:
        """Finish; returns what became of FILE, in words."""
        self.writer.close()
        tmp = self.writer.path
        if self.read:
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; results get the usual mode
            os.replace(tmp, self.out)
            return f"{self.out} holds the {self.written} done"
        tmp.unlink(missing_ok=True)
        return f"{self.out} was {'left as it was' if self.out.exists() else 'not written'} (no image could be read)"


class _Printed:
    """Results on standard output: JSON lines (``--out -``), or one line per image."""

    def __init__(self, class_names: Sequence[str], as_json: bool) -> None:
        self.writer = ResultWriter("-", class_names) if as_json else None
        self.written = 0

    def write(self, r: Result) -> None:
        if self.writer is not None:
            self.writer.write(r)
        elif r.error is None:
            summary = ", ".join(f"{f.label} {f.probs[f.label]:.2f} at {f.box}" for f in r.faces) or "no face found"
            print(f"{r.source}: {summary}", flush=True)
        self.written += 1

    def close(self) -> str:
        return f"the {self.written} done were printed"


class _FrameTable:
    """One video's per-frame rows as they come: to a new CSV file (created at the first
    frame, so a video that cannot be read leaves none, and never over an existing file), or
    to standard output (CSV, or JSON lines with ``--out -``)."""

    def __init__(self, source: str, path: Path | None, fields: list[str], as_json: bool) -> None:
        self.source, self.path, self.fields, self.as_json = source, path, fields, as_json
        self.rows = 0
        self._file: Any = None

    def write(self, row: dict) -> None:
        if self._file is None:
            self._file = open(self.path, "x", newline="", encoding="utf-8") if self.path else sys.stdout  # noqa: SIM115
            self._csv = csv.DictWriter(self._file, fieldnames=self.fields, restval="")
            if not self.as_json:
                self._csv.writeheader()
        if self.as_json:
            self._file.write(json.dumps({"source": self.source, **row}, allow_nan=False) + "\n")
        else:
            self._csv.writerow({"source": self.source, **row})
        self._file.flush()
        self.rows += 1

    def close(self) -> str:
        if self._file is not None and self.path is not None:
            self._file.close()
        if not self.rows:
            return ""
        return f"{self.path} holds {self.source}'s {self.rows} frame(s) done" if self.path else \
            f"{self.source}'s {self.rows} frame(s) done were printed"


@dataclass
class _Progress:
    """What a predict command has done and kept so far, for its closing line."""

    total: int
    done: int = 0
    failed: int = 0
    current: str = ""  # the input being processed when the command stopped
    kept: list[str] = field(default_factory=list)

    def _kept(self) -> str:
        return "; ".join(k for k in self.kept if k) or "nothing was written"

    def stopped(self) -> str:
        during = f" (stopped during {self.current})" if self.current else ""
        return f"predict stopped after {self.done} of {self.total} inputs{during}; {self._kept()}"

    def failures(self) -> str:
        return f"{self.failed} of {self.total} inputs failed (each is named above); {self._kept()}"


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``kill``, a job scheduler) stops predict as Ctrl-C does: what was written is
    kept and named, exit 130. Installed only in the main thread (signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def predict_command(args: Any) -> int:
    """The CLI's ``predict``: images and folders in batches, then videos.

    Before the model is loaded, every output is named and checked (``--out`` and
    ``--annotate`` writable, no input or checkpoint overwritten, no existing file replaced
    anywhere but ``--out`` itself, ``webcam:N`` well formed): a problem there is exit 2
    with nothing computed. Output places:

    - ``--out FILE``: one line (.jsonl) or row per face (.csv) per image, written as they
      come to a hidden temporary file beside FILE that replaces FILE at the end (also when
      stopped) if at least one image could be read; else FILE is left as it was. Each
      video's per-frame table goes beside it, to ``<FILE's folder>/<video>_frames.csv``;
    - ``--out -``: JSON lines on standard output, one per image, and (without
      ``--annotate``) one per video frame;
    - without ``--out``: one line per image on stdout; each video's per-frame table goes to
      ``<DIR>/<video>_frames.csv`` with ``--annotate DIR``, else to stdout as CSV;
    - ``--annotate DIR`` (created if missing): ``<path below the input folder>/<name>_annotated.jpg``
      per image and ``<video>_annotated.mp4`` per video; names two inputs would share get
      ``-2``, ``-3``...; a file or link already there is never replaced (exit 2 instead).

    An input that fails is named on stderr and the rest go on; the command then ends with a
    ``WorkFailed`` (exit 1) saying how many failed and what was kept. Ctrl-C and SIGTERM
    end it with a ``KeyboardInterrupt`` (exit 130) saying how far it got and what was kept.
    """
    device = resolve_device(args.device)  # a bad --device is refused before any folder is made
    to_stdout = args.out == "-"
    out = Path(args.out) if args.out and not to_stdout else None
    annotate = Path(args.annotate) if args.annotate else None
    images = [i for i in args.inputs if Path(i).suffix.lower() not in VIDEO_SUFFIXES and not i.startswith("webcam:")]
    videos = [i for i in args.inputs if i not in images]
    missing = [i for i in images if not Path(i).exists()]
    if missing:  # docs/reliability.md's exit codes: a missing file is bad usage (2), found before the model loads
        raise FileNotFoundError(f"{missing[0]}: no such file or folder" + (
            f" (nor {len(missing) - 1} other input(s))" if len(missing) > 1 else "") + "; nothing was predicted")
    inputs, in_folders = media_inputs(images)
    videos += [str(v) for v, _ in in_folders]  # a folder means all in it: its videos are read as one given directly
    plan = plan_outputs(Path(args.checkpoint), inputs, videos, out, annotate)
    progress = _Progress(total=len(inputs) + len(videos))
    with _sigterm_interrupts():
        try:
            predictor = Predictor(args.checkpoint, detector=_detector(args.detector), device=device, tta=args.tta)
            if inputs:
                sink = _ResultsFile(out, predictor.class_names) if out else _Printed(predictor.class_names, to_stdout)
                _predict_images(predictor, inputs, plan.annotated, sink, progress)
            for v, (mp4, frames) in zip(videos, plan.videos, strict=True):
                _predict_video_file(predictor, v, mp4, frames, args, progress, as_json=to_stdout)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(progress.stopped()) from None
    if progress.failed:
        raise WorkFailed(progress.failures())
    return 0


def _predict_images(predictor: Predictor, inputs: list[tuple[Path, Path]], annotated: list[Path | None],
                    sink: _ResultsFile | _Printed, progress: _Progress) -> None:
    """Every image input's result to ``sink`` (closed at the end, also when stopped)."""
    start = progress.done
    try:
        for r, dest in zip(predict_files(predictor, [p for p, _ in inputs]), annotated, strict=True):
            sink.write(r)
            progress.done = start + sink.written
            if r.error:
                progress.failed += 1
                print(f"{r.source}: {r.error}", file=sys.stderr)
            elif dest is not None:
                progress.failed += not _write_annotated(r, dest)
    finally:
        progress.done = start + sink.written
        progress.kept.append(sink.close())


def _write_annotated(r: Result, dest: Path) -> bool:
    """The image with its faces drawn, to a new file ``dest`` (never over a file or through a link)."""
    import cv2

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        ok, encoded = cv2.imencode(".jpg", draw_faces(to_rgb(r.source)[:, :, ::-1], r.faces))
        if not ok:
            raise OSError("OpenCV could not encode it as JPEG")
        with open(dest, "xb") as f:
            f.write(encoded.tobytes())
    except (OSError, ValueError) as e:
        print(f"{r.source}: could not write {dest}: {e}", file=sys.stderr)
        return False
    return True


def _predict_video_file(predictor: Predictor, v: str, mp4: Path | None, frames: Path | None, args: Any,
                        progress: _Progress, *, as_json: bool) -> None:
    """One video's frames, written row by row to ``frames`` (None: stdout); a video that cannot
    be opened is named on stderr and counted as failed."""
    table = _FrameTable(v, frames, _frame_fields(predictor.class_names), as_json)
    progress.current = v
    rows = None
    try:
        rows = predict_video(predictor, video_source(v), every=args.every, smoothing=args.smoothing, annotate=mp4,
                             max_frames=args.max_frames, on_row=table.write)
    except FileNotFoundError as e:
        progress.failed += 1
        print(f"{v}: {e}", file=sys.stderr)
    finally:
        progress.kept.append(table.close())
    progress.current, progress.done = "", progress.done + 1
    if rows is not None and frames is not None:
        print(f"{v}: {len(rows)} frames -> {frames}" + (f", {mp4}" if mp4 else ""),
              file=sys.stderr if as_json else sys.stdout)


__all__ = ["predict_command"]

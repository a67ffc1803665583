"""Many image files through a ``Predictor``: files and folders in, results written as they come.

``predict_files`` yields one ``Result`` per image (files given, and image files found in
folders), classified in batches; an image that cannot be read is reported in its result and
the rest go on. ``ResultWriter`` and ``write_results`` write results as JSON lines (one per
image) or CSV (one row per face).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..data.base import IMAGE_SUFFIXES, is_hidden
from .decode import VIDEO_SUFFIXES, read_image
from .predictor import Predictor, Result

log = logging.getLogger(__name__)


def predict_files(predictor: Predictor, inputs: Iterable[str | os.PathLike], *, batch_size: int = 32,
                  progress: bool = False) -> Iterator[Result]:
    """One ``Result`` per image file of ``inputs`` (files, and folders recursively), in order,
    classified in batches. A missing, unreadable or oversized image (over PIL's
    decompression-bomb limit) and a path that is not a regular file (a FIFO...) are reported
    in their ``Result.error``, and the rest go on."""
    from tqdm.auto import tqdm

    files = list(iter_image_files(inputs))
    with tqdm(total=len(files), desc="predict", unit="img", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            batch = [(path, *read_image(path)) for path in files[start:start + batch_size]]
            readable = [(path, rgb) for path, rgb, _ in batch if rgb is not None]
            done = iter(predictor.predict_batch([rgb for _, rgb in readable], "rgb"))
            for path, rgb, error in batch:
                result = Result(source=str(path), error=error) if rgb is None else next(done)
                result.source = str(path)
                yield result
            bar.update(len(batch))


def iter_image_files(inputs: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files as given (even if missing, so they can be reported) and image files in folders
    (recursively; hidden files and folders such as macOS ``._*`` copies are skipped). Videos
    in folders are not images: one warning per folder counts them (``predict_video`` reads
    them; so does the ``predict`` command, which finds them with ``media_inputs``)."""
    images, videos = media_inputs(inputs)
    for folder in sorted({folder for _, folder in videos}):
        n = sum(f == folder for _, f in videos)
        log.warning("%s: %d video(s) skipped (predict_video reads videos; the predict command reads them too)",
                    folder, n)
    for path, _ in images:
        yield path


def media_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """``(images, videos)``: ``(file, name)`` per image, ``name`` the path below the folder it
    was found in or the file's own name for a file given directly; ``(video, folder)`` per
    video found in a folder ``inputs`` names (a video given directly is the caller's)."""
    images, videos = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            # not p.is_file(): a FIFO or a broken link named *.png is listed, to be reported, not skipped
            found = sorted(p for p in path.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES and not p.is_dir())
            hidden = [p for p in found if any(is_hidden(Path(part)) for part in p.relative_to(path).parts)]
            if hidden:
                log.info("%s: skipping %d hidden file(s) (macOS ._* copies...), e.g. %s", path, len(hidden), hidden[0])
            found = [p for p in found if p not in set(hidden)]
            images += [(p, p.relative_to(path)) for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
            videos += [(p, path) for p in found if p.suffix.lower() in VIDEO_SUFFIXES]
        else:
            images.append((path, Path(path.name)))
    return images, videos


class ResultWriter:
    """Results written as they come, flushed after each: ``.csv`` one row per face, else
    ``.jsonl`` one line per input; ``"-"``: JSON lines on standard output. A run that stops
    half-way keeps what it computed; ``written`` counts the results written."""

    def __init__(self, path: str | os.PathLike, class_names: Sequence[str]) -> None:
        self.path = Path(path)
        self.names = list(class_names)
        self.is_csv = self.path.suffix.lower() == ".csv"
        self.written = 0
        if str(path) == "-":
            self._file, self.is_csv = sys.stdout, False
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # closed by close() / the with block: the file stays open while results come in
            self._file = open(self.path, "w", newline="" if self.is_csv else None, encoding="utf-8")  # noqa: SIM115
        if self.is_csv:
            self._csv = csv.writer(self._file)
            self._csv.writerow(["source", "error", "x", "y", "w", "h", "label", "score",
                                *[f"p_{n}" for n in self.names]])

    def write(self, r: Result) -> None:
        if self.is_csv:
            if not r.faces:
                self._csv.writerow([r.source, r.error or "no face found", *[""] * (6 + len(self.names))])
            for face in r.faces:
                self._csv.writerow([r.source, "", *face.box, face.label, face.score,
                                    *[face.probs.get(n, "") for n in self.names]])
        else:
            self._file.write(json.dumps(r.to_dict(), allow_nan=False) + "\n")  # never a bare NaN: invalid JSON
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        if self._file is not sys.stdout:
            self._file.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_results(results: Iterable[Result], path: str | os.PathLike,
                  class_names: Sequence[str] | None = None) -> Path:
    """``.jsonl`` (one result per line) or ``.csv`` (one face per row), written as they come.

    Args:
        class_names: the CSV's probability columns, in order; default: every name found
            in the results, sorted (which reads them all first).
    """
    if class_names is None:
        results = list(results)
        class_names = sorted({n for r in results for face in r.faces for n in face.probs})
    with ResultWriter(path, class_names) as writer:
        for r in results:
            writer.write(r)
    return writer.path


__all__ = ["ResultWriter", "iter_image_files", "media_inputs", "predict_files", "write_results"]

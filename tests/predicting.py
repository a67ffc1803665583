"""Helpers of the predict tests (test_predict_batch.py, test_predict_outputs.py,
test_predict_command.py): synthetic faces written as image files, and ``resemote predict`` run in
this process as the command line parses it."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from resemote_lib.commands.cli import build_parser
from resemote_lib.data.synthetic import make_faces
from resemote_lib.predict.command import predict_command


def write_faces(folder: Path, names: list[str], seed: int = 0) -> Path:
    """Synthetic faces saved as ``folder/<name>`` for each of ``names`` (subfolders made; the
    suffix picks the format); returns ``folder``."""
    for name, img in zip(names, make_faces(len(names), seed=seed)[0], strict=True):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / name)
    return folder


def run_predict(*argv) -> int:
    """``resemote predict ARGV`` run in this process, as the command line parses it; its exit code."""
    return predict_command(build_parser().parse_args(["predict", *map(str, argv)]))

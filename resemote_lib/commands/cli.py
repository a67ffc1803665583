"""``python -m resemote_lib COMMAND``: the functions the notebooks call, from a shell.

Commands: train, evaluate, pipeline, predict, export, kaggle (each has --help). Every
command ends through ``run``, so ``EXIT_CODES`` holds for all of them: a user error is one
line on stderr naming the culprit (no traceback), and its exit code says what kind it was.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from ..usage import UsageError, WorkFailed, parse_overrides

EXIT_CODES = {
    0: "success",
    1: "the work failed: some inputs failed (each is reported and the rest processed), training diverged, "
       "the disk filled up, or a notebook or Kaggle kernel failed",
    2: "bad usage: wrong arguments, a bad params file, a missing or unusable file, folder, checkpoint or run, "
       "or a device that is absent or that this torch build cannot use",
    3: "busy: another process is writing that run directory (its pid is named), or its Kaggle kernel is still "
       "queued or running (kaggle pull: pull again later)",
    130: "interrupted (Ctrl-C or SIGTERM): a training run saved its state and resumes when rerun",
}

log = logging.getLogger(__name__)
# What evaluate --dataset accepts (params.CHOICES["dataset"]; not imported: the CLI starts without torch).
DATASETS = ("fer2013", "rafdb", "affectnet", "folder", "synthetic")


def exit_code(error: BaseException) -> int:
    """The ``EXIT_CODES`` entry of an exception a command raised (None: a bug)."""
    import errno

    from ..checkpoint import CheckpointError
    from ..device import DeviceError
    from ..interrupt import TrainingInterrupted
    from ..runs import RunBusy
    from ..train_step import TrainingDiverged
    from .pipeline import NotebookFailed

    if isinstance(error, RunBusy):
        return 3
    if isinstance(error, TrainingInterrupted | KeyboardInterrupt):
        return 130
    if isinstance(error, TrainingDiverged | NotebookFailed | WorkFailed):
        return 1
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return 1  # the work ran out of disk; what was saved before is intact (the message says so)
    if isinstance(error, FileNotFoundError | CheckpointError | ValueError | OSError | UsageError | DeviceError):
        return 2
    raise error


def run(command: Callable[[], int]) -> int:
    """Call ``command`` and turn a user error into one stderr line and its exit code."""
    try:
        return command()
    except BaseException as e:
        if isinstance(e, SystemExit):
            raise
        code = exit_code(e)
        message = (e.strerror if isinstance(e, OSError) and e.strerror and not e.filename else str(e)).strip()
        message = message or type(e).__name__
        print(f"error: {message}" if code != 130 else f"interrupted: {message}", file=sys.stderr)
        return code


# --- commands --------------------------------------------------------------------------

def cmd_train(argv: list[str]) -> int:
    from ..params import load_params

    parser = argparse.ArgumentParser(prog="python -m resemote_lib train",
                                     description="Train one experiment (resumes when its run directory has last.pt).")
    parser.add_argument("params", help="params/*.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value (YAML values), e.g. epochs=3 lr=1e-3")
    args = parser.parse_args(argv)
    cfg = load_params(args.params, **parse_overrides(args.overrides))  # a bad file fails before any data loads
    from ..device import resolve_device

    resolve_device(cfg.device)  # so does a device that is not one (device=banana): no run folder is made
    from ..distributed import shutdown
    from ..train import fit

    logging.getLogger("resemote_lib").setLevel(logging.INFO)
    try:
        result = fit(cfg)
    finally:
        shutdown()
    print(f"{result.run_dir}: {result.epochs_run} epoch(s), best val acc {result.best_val_acc:.4f} at epoch "
          f"{result.best_epoch}; tested weights: {result.selected_checkpoint.name}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..evaluate import evaluate_checkpoint, evaluate_run

    resolve_device(args.device)  # --device banana: refused before --out or a lock is made
    target = Path(args.target)
    if target.is_dir():
        if args.dataset or args.data_root or args.out or args.force or args.crop_faces:
            raise UsageError(f"{target} is a run directory: it knows its dataset; --dataset, --data-root, --out, "
                             "--force and --crop-faces are for checkpoint files")
        metrics = evaluate_run(target, split=args.split, device=args.device)
    elif target.is_file():
        if not args.dataset:
            raise UsageError(f"{target} is a checkpoint file: say which data to evaluate it on with --dataset "
                             f"({', '.join(DATASETS)})")
        metrics = evaluate_checkpoint(target, args.dataset, data_root=args.data_root, split=args.split, out=args.out,
                                      device=args.device, force=args.force, crop_faces=args.crop_faces)
    else:
        raise FileNotFoundError(f"{target}: no such run directory or checkpoint file")
    print(metrics.table().to_string())
    if "dedup" in metrics.extra:
        d = metrics.extra["dedup"]
        figure = f"accuracy {d['accuracy']:.4f}" if d["n"] else "none left to score, every test image has a copy"
        print(f"without test images that have a copy in train/val ({d['n']} of {metrics.n}): {figure}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..predict.export import export

    report = export(args.checkpoint, args.output, overwrite=args.force)
    print(f"exported {report['path']} ({report['input']}); max |exported - PyTorch| = {report['max_abs_diff']:.2e}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..predict import predict_command

    return predict_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resemote_lib", description=__doc__ + _codes_text(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="emotions of the faces in images, folders, videos or a webcam")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="image files, folders (their images and videos, recursively), videos (.mp4...) or webcam:N")
    p.add_argument("--out", metavar="FILE",
                   help="results file: .jsonl (one line per image) or .csv (one row per face), written as results come "
                        "to a hidden .FILE.*.partial beside it that replaces FILE when predict ends (also on Ctrl-C) if "
                        "at least one image could be read; if none could, FILE is left as it was. Each video's "
                        "per-frame table goes beside it, to <FILE's folder>/<video>_frames.csv, which must not exist "
                        "yet (exit 2 otherwise). --out -: JSON lines on stdout (images, and video frames without "
                        "--annotate). Without --out: one line per image on stdout, and each video's per-frame table in "
                        "the --annotate DIR when given, else on stdout (CSV). Nothing is written to the working folder")
    p.add_argument("--annotate", metavar="DIR",
                   help="write images/videos with boxes and labels here (created if missing), keeping the path below "
                        "an input folder (<name>_annotated.jpg, <video>_annotated.mp4; -2, -3... where two inputs "
                        "would share a name). A file or link already there is never replaced or followed: the command "
                        "stops first (exit 2)")
    p.add_argument("--detector", default="auto", help="auto (Haar), none (inputs are face crops), yunet:MODEL.onnx")
    p.add_argument("--device", default="auto")
    p.add_argument("--tta", action="store_true", help="average each face with its mirror image")
    p.add_argument("--every", type=_positive_int, default=1, help="videos: classify every n-th frame")
    p.add_argument("--smoothing", type=_fraction, default=0.0, help="videos: EMA weight of the past, in [0, 1)")
    p.add_argument("--max-frames", type=_positive_int, default=None, help="videos/webcam: stop after this many frames")
    p.set_defaults(func=cmd_predict)
    e = sub.add_parser("export", help="export a checkpoint to .onnx or TorchScript .pt, verified")
    e.add_argument("checkpoint")
    e.add_argument("output", help="model.onnx or model.pt (never the input checkpoint; written atomically)")
    e.add_argument("--force", action="store_true",
                   help="replace OUTPUT whatever it is (a checkpoint, another network's ONNX model, any file); without "
                        "it only an earlier export of ours is replaced")
    e.set_defaults(func=cmd_export)
    ev = sub.add_parser("evaluate", help="evaluate a finished run, or any checkpoint file (ours or the authors')")
    ev.add_argument("target", help="a run directory (results/<run>), or a checkpoint file with --dataset")
    ev.add_argument("--dataset", choices=DATASETS,
                    help="checkpoint files: the dataset to evaluate on; folder: any folder of class folders "
                         "(angry/ or anger/, happy/ or joy/...; other classes are excluded and counted), all of it "
                         "the test split")
    ev.add_argument("--data-root", help="checkpoint files: the dataset's folder (default: data/<dataset> or the "
                                        "Kaggle mount; --dataset folder needs it)")
    ev.add_argument("--crop-faces", action="store_true",
                    help="--dataset folder of whole photos: crop each to the face predict's detector finds, with "
                         "its margin (photos with no face are excluded and counted)")
    ev.add_argument("--out", help="checkpoint files: where metrics.json, predictions.csv and provenance.json go "
                                  "(default results/<record name or file stem>/, where Table III finds them)")
    ev.add_argument("--force", action="store_true",
                    help="checkpoint files: replace metrics.json, predictions.csv... already in --out that an earlier "
                         "evaluation of this same file did not write")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--device", default="cpu")
    ev.set_defaults(func=cmd_evaluate)
    for name, text in (("train", "train: PARAMS.yaml [key=value ...] (see train --help)"),
                       ("pipeline", "run the notebooks: PARAMS.yaml... (see pipeline --help)"),
                       ("kaggle", "push a run to a Kaggle GPU kernel, pull its results (see kaggle --help)")):
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _codes_text() -> str:
    return "\n\nexit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if argv and argv[0] in ("train", "pipeline", "kaggle"):
        command, rest = argv[0], argv[1:]
        if command == "train":
            return run(lambda: cmd_train(rest))
        if command == "pipeline":
            from .pipeline import pipeline_command

            return run(lambda: pipeline_command(rest))
        from ..kaggle.cli import main as kaggle_main

        return run(lambda: kaggle_main(rest))
    args = build_parser().parse_args(argv)
    return run(lambda: args.func(args))


__all__ = ["EXIT_CODES", "build_parser", "exit_code", "main", "run"]

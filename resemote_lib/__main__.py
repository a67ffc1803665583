"""``python -m resemote_lib COMMAND``: the functions the notebooks call, from a shell.

Commands: predict, export, train, evaluate, pipeline (each has --help). Exit codes: 0 on
success, 1 when some inputs failed (each is reported, the batch goes on), 2 for bad usage
or a missing checkpoint/run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def _detector(spec: str):
    from .predict import YuNetDetector

    if spec == "none":
        return None
    if spec.startswith("yunet:"):
        return YuNetDetector(spec.split(":", 1)[1])
    return spec


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import Predictor, draw_faces, to_rgb, write_results

    predictor = Predictor(args.checkpoint, detector=_detector(args.detector), device=args.device, tta=args.tta)
    images = [i for i in args.inputs if Path(i).suffix.lower() not in VIDEO_SUFFIXES and not i.startswith("webcam:")]
    videos = [i for i in args.inputs if i not in images]
    failed = 0
    results = []
    for r in predictor.predict_many(images):
        results.append(r)
        if r.error:
            failed += 1
            print(f"{r.source}: {r.error}", file=sys.stderr)
        elif args.annotate:
            import cv2

            out = Path(args.annotate) / f"{Path(r.source).stem}_annotated.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), draw_faces(to_rgb(r.source)[:, :, ::-1], r.faces))
    if args.out:
        write_results(results, args.out)
    else:
        for r in results:
            summary = ", ".join(f"{f.label} {f.probs[f.label]:.2f} at {f.box}" for f in r.faces) or "no face found"
            print(f"{r.source}: {r.error or summary}")
    for v in videos:
        import pandas as pd

        source = int(v.split(":", 1)[1]) if v.startswith("webcam:") else v
        annotate = Path(args.annotate) / f"{Path(str(v)).stem}_annotated.mp4" if args.annotate else None
        try:
            rows = predictor.predict_video(source, every=args.every, smoothing=args.smoothing, annotate=annotate,
                                           max_frames=args.max_frames)
        except FileNotFoundError as e:
            failed += 1
            print(f"{v}: {e}", file=sys.stderr)
            continue
        out = Path(args.out).with_name(f"{Path(str(v)).stem}_frames.csv") if args.out else Path(f"{Path(str(v)).stem}_frames.csv")
        pd.DataFrame(rows).to_csv(out, index=False)
        print(f"{v}: {len(rows)} frames -> {out}")
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    report = export(args.checkpoint, args.output)
    print(f"exported {report['path']} ({report['input']}); max |exported - PyTorch| = {report['max_abs_diff']:.2e}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run

    metrics = evaluate_run(args.run_dir, split=args.split, device=args.device)
    print(metrics.table().to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resemote_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="emotions of the faces in images, folders, videos or a webcam")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="image files, folders, videos (.mp4...) or webcam:N")
    p.add_argument("--out", help="results file: .jsonl (default format) or .csv")
    p.add_argument("--annotate", metavar="DIR", help="write images/videos with boxes and labels here")
    p.add_argument("--detector", default="auto", help="auto (Haar), none (inputs are face crops), yunet:MODEL.onnx")
    p.add_argument("--device", default="auto")
    p.add_argument("--tta", action="store_true", help="average each face with its mirror image")
    p.add_argument("--every", type=int, default=1, help="videos: classify every n-th frame")
    p.add_argument("--smoothing", type=float, default=0.0, help="videos: EMA weight of the past, 0..1")
    p.add_argument("--max-frames", type=int, default=None, help="videos/webcam: stop after this many frames")
    p.set_defaults(func=cmd_predict)
    e = sub.add_parser("export", help="export a checkpoint to .onnx or TorchScript .pt, verified")
    e.add_argument("checkpoint")
    e.add_argument("output", help="model.onnx or model.pt")
    e.set_defaults(func=cmd_export)
    ev = sub.add_parser("evaluate", help="evaluate a finished run's selected checkpoint")
    ev.add_argument("run_dir")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--device", default="cpu")
    ev.set_defaults(func=cmd_evaluate)
    sub.add_parser("train", help="train: PARAMS.yaml [key=value ...] (see train --help)", add_help=False)
    sub.add_parser("pipeline", help="run the notebooks: PARAMS.yaml... (see pipeline --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if argv and argv[0] in ("train", "pipeline"):
        from . import pipeline, train

        return (train.main if argv[0] == "train" else pipeline.main)(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

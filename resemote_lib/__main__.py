"""``python -m resemote_lib {train,evaluate,pipeline} ...``: the same functions the notebooks call."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m resemote_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train one experiment: train PARAMS.yaml [key=value ...]", add_help=False)
    ev = sub.add_parser("evaluate", help="evaluate a finished run's selected checkpoint on its test split")
    ev.add_argument("run_dir")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.add_argument("--device", default="cpu")
    sub.add_parser("pipeline", help="run the notebooks for params files (see pipeline --help)", add_help=False)
    if argv and argv[0] in ("train", "pipeline"):
        from . import pipeline, train

        return (train.main if argv[0] == "train" else pipeline.main)(argv[1:])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from .evaluate import evaluate_run

    try:
        metrics = evaluate_run(args.run_dir, split=args.split, device=args.device)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(metrics.table().to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

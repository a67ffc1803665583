"""Run a params file on a Kaggle GPU, then fetch and check its results.

``python -m resemote_lib kaggle push PARAMS.yaml``
    [--accelerator gpu-t4|gpu-p100] [--set KEY=VALUE ...] [--allow-dirty] [--no-internet]
    [--user NAME] [--dry-run DIR] [--results DIR] [--repo DIR]

    Bundles the source of the current commit (``git archive HEAD``, less ``results/``,
    plus ``resemote_source.json`` recording the commit and the library's code hash) into a
    private Kaggle script kernel with the params' dataset attached and a GPU on, and pushes
    it, which starts it. The kernel runs ``resemote_lib/kaggle/runner.py`` (it says there
    what is installed and what is left as output). What was pushed (kernel, commit, params,
    time) goes to ``results/<run_name>/kaggle_push.json``. A tree whose tracked files
    differ from HEAD is refused unless ``--allow-dirty``; then the tracked files as they
    are on disk are bundled and recorded as dirty. ``--dry-run DIR`` writes the kernel
    folder (``kernel-metadata.json``, ``resemote_kernel.py``) into DIR and pushes nothing
    (no credentials needed).

``python -m resemote_lib kaggle pull RUN_NAME [--timeout S] [--poll S] [--results DIR]``

    Waits for the kernel pushed for RUN_NAME (a status line: queued, running, ...),
    downloads its output, checks it (``metrics.json`` and ``provenance.json`` present, the
    provenance's commit, dirty flag and code hash equal to the pushed ones), moves it into
    ``results/<run_name>/`` (the kernel's log as ``kaggle.log``, its own Table III as
    ``kaggle_paper/``) and regenerates Table III from every run in ``results/``. An
    output that fails a check is left outside ``results/`` (the path is printed), so it
    never enters Table III.

The source travels inside the kernel script, as base64 of a deterministic tar.gz (about
0.2 MB): the kernel version on Kaggle then is the exact code it ran, one push does
everything, nothing needs cloning (kernels often have no internet), and no private
dataset has to be created, versioned and waited for at each commit.

Exit codes (as ``python -m resemote_lib``): 0 success; 1 the run failed (the push was
rejected, the kernel ended in error or was cancelled, its output lacks metrics.json or
provenance.json or comes from another commit, Table III could not be regenerated);
2 bad usage, missing Kaggle credentials, uncommitted changes without ``--allow-dirty``,
nothing pushed for that run, an unreadable push record; 3 busy: the kernel, which writes
that run, was still queued or running when ``--timeout`` ran out (pull again later). Each
failure is one line on stderr (a failed kernel's line is followed by the tail of its log).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..runs import RunBusy
from ..usage import UsageError, WorkFailed, parse_overrides
from .kernels import KernelClient
from .pull import pull
from .push import ACCELERATORS, push

EXIT_CODES = {WorkFailed: 1, UsageError: 2, RunBusy: 3}  # as resemote_lib.commands.cli.EXIT_CODES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m resemote_lib kaggle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("push", help="push a Kaggle kernel that runs the pipeline for PARAMS.yaml on a GPU")
    p.add_argument("params", help="params/*.yaml, tracked by git")
    p.add_argument("--accelerator", choices=sorted(ACCELERATORS), default="gpu-t4",
                   help="Kaggle GPU (default gpu-t4; gpu-p100 is retired and fails with the default image's torch)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (YAML value), e.g. --set epochs=3")
    p.add_argument("--allow-dirty", action="store_true", help="bundle uncommitted changes, recorded as dirty")
    p.add_argument("--no-internet", action="store_true",
                   help="turn the kernel's internet off (then the image must already have every requirement)")
    p.add_argument("--user", help="Kaggle user name (default: KAGGLE_USERNAME, kaggle.json, or the API)")
    p.add_argument("--dry-run", metavar="DIR", help="write the kernel folder into DIR and push nothing")
    p.add_argument("--results", help="results folder for kaggle_push.json (default: results/ or $RESEMOTE_RESULTS)")
    p.add_argument("--repo", help="the git checkout to bundle (default: this one)")
    q = sub.add_parser("pull", help="wait for a pushed run, download, check, regenerate Table III")
    q.add_argument("run_name")
    q.add_argument("--timeout", type=float, default=13 * 3600,
                   help="seconds to wait (default 13 h: a Kaggle session stops after 12 h)")
    q.add_argument("--poll", type=float, default=60.0, help="seconds between status checks (default 60)")
    q.add_argument("--results", help="results folder (default: results/ or $RESEMOTE_RESULTS)")
    q.add_argument("--no-progress", action="store_true")
    return parser


def _command(args: argparse.Namespace, client: KernelClient | None) -> str:
    if args.command == "push":
        try:
            overrides = parse_overrides(args.set)
        except UsageError as e:
            raise UsageError(f"--set: {e}") from None
        return push(args.params, overrides=overrides, accelerator=args.accelerator, allow_dirty=args.allow_dirty,
                    internet=not args.no_internet, user=args.user, dry_run=args.dry_run, results_dir=args.results,
                    repo=args.repo, client=client)
    return pull(args.run_name, timeout=args.timeout, poll=args.poll, results_dir=args.results, client=client,
                progress=not args.no_progress)


def main(argv: list[str] | None = None, *, client: KernelClient | None = None) -> int:
    """``kaggle push|pull``: the summary on stdout and exit 0, or ``kaggle push: <why>`` on
    stderr and the exit code of its kind (``EXIT_CODES``). ``client`` replaces the Kaggle API."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("papermill").setLevel(logging.WARNING)  # check_params inspects every notebook
    try:
        print(_command(args, client))
    except tuple(EXIT_CODES) as e:
        print(f"kaggle {args.command}: {e}", file=sys.stderr)
        return next(code for kind, code in EXIT_CODES.items() if isinstance(e, kind))
    return 0


__all__ = ["EXIT_CODES", "build_parser", "main"]

"""What a command was given: ``key=value`` overrides, and the two errors every command's exit
code distinguishes besides the library's own (``cli.EXIT_CODES`` maps them).

Below every command module: the CLI, the pipeline and the Kaggle commands import it, and it
imports nothing of theirs, so ``cli`` stays the only top of the package.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import Any


class UsageError(Exception):
    """A command used wrongly, found before any work (exit 2)."""


class WorkFailed(Exception):
    """Work that ran and failed (exit 1), e.g. a notebook that raised."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["epochs=3", "lr=1e-3"]`` -> ``{"epochs": 3, "lr": "1e-3"}`` (YAML values; the
    params validation reads numeric strings for float keys)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"override {item!r} is not key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(f"override {item!r}: {value!r} is not a YAML value") from None
    return out


# ``python -m NAME`` for these runs a command; any other module of the package, run so, is refused.
ENTRY_POINTS = frozenset({"resemote_lib", "resemote_lib.__main__"})
# The command a module serves (by its name below resemote_lib, else its package's): what to run instead.
# Old top-level names (cli, pipeline, export) stay: a user may type the form an older README showed.
_COMMAND_OF = {"cli": "", "commands": "", "commands.cli": "", "train": "train", "evaluate": "evaluate",
               "pipeline": "pipeline", "commands.pipeline": "pipeline", "predict": "predict", "export": "export",
               "predict.export": "export", "kaggle": "kaggle", "kaggle.push": "kaggle push",
               "kaggle.pull": "kaggle pull", "kaggle.runner": "kaggle push"}


def module_run_refusal(orig_argv: Sequence[str], argv: Sequence[str]) -> str | None:
    """The one line refusing ``python -m resemote_lib.<module> ARGS``, or None when the command
    line runs no module of the package, or one of ``ENTRY_POINTS``.

    Run as a script, a library module defines its functions and exits 0 having done nothing: a
    user's ``python -m resemote_lib.pipeline params/fer2013.yaml`` (the form README documented
    before the CLI moved) "succeeded" with no run. ``orig_argv`` and ``argv`` are
    ``sys.orig_argv`` and ``sys.argv`` while ``python -m`` imports the package to find the
    module: ``argv[0]`` is ``"-m"`` then, and the module's name is the word of ``orig_argv``
    just before the script's arguments (``-mNAME`` and ``-ImNAME`` spell it in one word).
    """
    if not argv or argv[0] != "-m" or len(orig_argv) < len(argv) + 1:
        return None
    word = orig_argv[len(orig_argv) - len(argv)]
    name = word.split("m", 1)[1] if word.startswith("-") else word
    if not name.startswith("resemote_lib.") or name in ENTRY_POINTS:
        return None
    module = name.removeprefix("resemote_lib.")
    command = _COMMAND_OF.get(module, _COMMAND_OF.get(module.split(".")[0]))
    line = f"error: {name} is not a command (run as a script it would do nothing)"
    if command is None:
        return (f"{line}; import it in Python, or run a command: python -m resemote_lib "
                "{train,evaluate,pipeline,predict,export,kaggle} (see python -m resemote_lib --help)")
    return f"{line}; run: " + shlex.join(["python", "-m", "resemote_lib", *command.split(), *argv[1:]])


def refuse_module_run() -> None:
    """Exit 2 with ``module_run_refusal``'s line when this process is ``python -m
    resemote_lib.<module>``; the package's ``__init__`` calls it first, so the line comes before
    torch loads."""
    line = module_run_refusal(sys.orig_argv, sys.argv)
    if line is not None:
        sys.stderr.write(line + "\n")
        raise SystemExit(2)


__all__ = ["ENTRY_POINTS", "UsageError", "WorkFailed", "module_run_refusal", "parse_overrides", "refuse_module_run"]

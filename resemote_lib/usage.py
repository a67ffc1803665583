"""What a command was given: ``key=value`` overrides, and the two errors every command's exit
code distinguishes besides the library's own (``cli.EXIT_CODES`` maps them).

Below every command module: the CLI, the pipeline and the Kaggle commands import it, and it
imports nothing of theirs, so ``cli`` stays the only top of the package.
"""

from __future__ import annotations

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


__all__ = ["UsageError", "WorkFailed", "parse_overrides"]

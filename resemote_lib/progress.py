"""Progress bars: tqdm's when it is installed, else a silent stand-in with the same calls.

Training and evaluation import ``tqdm`` from here, so they run where only torch, numpy,
pandas, pillow, pyyaml and scikit-learn are installed (a bare GPU machine:
``benchmarks/gpu.py``). The stand-in shows nothing; it takes every argument tqdm takes and
offers what the library calls: iteration, ``update``, ``close``, ``set_postfix``,
``set_description``/``set_description_str``, ``refresh``, ``write`` and ``with``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any


class SilentBar:
    """A progress bar that counts and shows nothing (tqdm's interface, the parts used here)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *args: Any, total: float | None = None,
                 initial: float = 0, **kwargs: Any) -> None:
        self.iterable = iterable
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.n = initial
        self.postfix: dict[str, Any] = {}
        self.desc = str(kwargs.get("desc") or "")

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.n += 1

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> SilentBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n

    def close(self) -> None:
        return None

    def refresh(self) -> None:
        return None

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    @staticmethod
    def write(text: str, *args: Any, **kwargs: Any) -> None:
        return None


def _length(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


# Set by the pipeline for the notebook kernels it starts: their bars are then text on stderr,
# redrawn every TEXT_EVERY seconds, which papermill logs as lines (a widget bar would show nothing
# in the terminal of `make demo-real` for an hour of training).
TEXT_PROGRESS = "RESEMOTE_TEXT_PROGRESS"
TEXT_EVERY = 30.0


def _text_bar(*args: Any, **kwargs: Any) -> Any:
    from tqdm.std import tqdm as text

    kwargs.setdefault("mininterval", TEXT_EVERY)
    kwargs.setdefault("file", sys.stderr)
    return text(*args, **kwargs)


try:
    from tqdm.auto import tqdm
    if os.environ.get(TEXT_PROGRESS):
        tqdm = _text_bar  # type: ignore[assignment,misc]
except ImportError:  # a bare machine: training and evaluation run, silently
    tqdm = SilentBar  # type: ignore[assignment,misc]

__all__ = ["TEXT_PROGRESS", "SilentBar", "tqdm"]

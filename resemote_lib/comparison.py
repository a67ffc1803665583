"""Two classifiers on the same test images: the paired difference and an exact McNemar test.

Pure functions of per-image correctness (no model, files or runs). Pairing is what makes a small
difference measurable: only the images one model gets right and the other wrong (the discordant
pairs) carry information about which is better; images both get right or both get wrong cancel.

- ``paired_difference``: accuracy of A minus accuracy of B on the same ``n`` images, with a 95%
  Wald interval for paired proportions, ``d +- 1.96 * sqrt(n10 + n01 - (n10 - n01)^2 / n) / n``
  (``n10``: A right and B wrong, ``n01``: the reverse; Agresti, *Categorical Data Analysis*, 10.1).
- ``mcnemar_exact_p``: the two-sided exact McNemar p-value, the binomial test of ``n10`` among
  ``n10 + n01`` discordant pairs against one half, computed in integers (no normal approximation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """A minus B on ``n`` shared images: accuracies, their difference with a 95% interval, the
    discordant counts and the exact McNemar p-value."""

    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    low: float
    high: float
    a_only: int  # images A gets right and B wrong (n10)
    b_only: int  # images B gets right and A wrong (n01)
    mcnemar_p: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: ``min(1, 2 * P(X <= min(a_only, b_only)))`` with
    ``X ~ Binomial(a_only + b_only, 1/2)``; 1.0 when there is no discordant pair."""
    if a_only < 0 or b_only < 0:
        raise ValueError(f"discordant counts must be non-negative, got {a_only} and {b_only}")
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_difference(a_correct: np.ndarray, b_correct: np.ndarray, z: float = 1.96) -> PairedDifference:
    """``a_correct`` and ``b_correct``: one boolean per image, the same images in the same order."""
    a, b = _as_correctness(a_correct, "a_correct"), _as_correctness(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same images: {a.size} and {b.size} results")
    if a.size == 0:
        raise ValueError("paired comparison of no images")
    n, a_only, b_only = a.size, int((a & ~b).sum()), int((~a & b).sum())
    difference = (a_only - b_only) / n
    half = z * math.sqrt(max(a_only + b_only - (a_only - b_only) ** 2 / n, 0.0)) / n
    return PairedDifference(n=n, accuracy_a=float(a.mean()), accuracy_b=float(b.mean()), difference=difference,
                            low=difference - half, high=difference + half, a_only=a_only, b_only=b_only,
                            mcnemar_p=mcnemar_exact_p(a_only, b_only))


def _as_correctness(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not (array.dtype == bool or np.isin(array, (0, 1)).all()):
        raise ValueError(f"{name}: one 0/1 or boolean per image expected, got shape {array.shape}, dtype {array.dtype}")
    return array.astype(bool)


__all__ = ["PairedDifference", "mcnemar_exact_p", "paired_difference"]

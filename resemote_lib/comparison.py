"""Two classifiers on the same test images: the paired difference and an exact McNemar test.

Pure functions of per-image correctness (no model, files or runs). Pairing is what makes a small
difference measurable: only the images one model gets right and the other wrong (the discordant
pairs) carry information about which is better; images both get right or both get wrong cancel.

- ``paired_difference``: accuracy of A minus accuracy of B on the same ``n`` images, with a 95%
  Wald interval for paired proportions, ``d +- 1.96 * sqrt(n10 + n01 - (n10 - n01)^2 / n) / n``
  (``n10``: A right and B wrong, ``n01``: the reverse; Agresti, *Categorical Data Analysis*, 10.1),
  and the two-sided exact McNemar p-value (``mcnemar_exact_p``: the binomial test of ``n10``
  among ``n10 + n01`` discordant pairs against one half, in integers, no normal approximation).
- Several seeds (A's seed s against B's seed s, one row each): the per-image difference ``D_i``
  is averaged over seeds first, so that each test image counts once (an image hard for one seed
  is usually hard for the others: counting it once per seed would narrow the interval by up to
  the square root of the number of seeds). The difference is ``mean(D_i)``, its interval
  ``1.96 * sd(D_i) / sqrt(n)`` (the formula above when there is one seed), and the p-value the
  exact sign test of the images with ``D_i > 0`` against those with ``D_i < 0`` (McNemar's test
  when there is one seed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """A minus B on ``n`` shared images (over ``seeds`` seed-matched pairs of runs): accuracies,
    their difference with a 95% interval, how many images favour each, and the exact p-value."""

    n: int
    seeds: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    low: float
    high: float
    a_only: int  # images A gets right more often than B (one seed: A right and B wrong, n10)
    b_only: int  # images B gets right more often than A (one seed: n01)
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
    """``a_correct`` and ``b_correct``: one boolean per image (the same images in the same order),
    or one row of them per seed (``(seeds, images)``, row s of A paired with row s of B)."""
    a, b = _as_correctness(a_correct, "a_correct"), _as_correctness(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same images and seeds: shapes {a.shape} and {b.shape}")
    if a.shape[1] == 0:
        raise ValueError("paired comparison of no images")
    per_image = (a.astype(float) - b.astype(float)).mean(axis=0)  # D_i: each image counts once
    n = per_image.size
    difference = float(per_image.mean())
    half = z * float(per_image.std()) / math.sqrt(n)
    a_only, b_only = int((per_image > 0).sum()), int((per_image < 0).sum())
    return PairedDifference(n=n, seeds=a.shape[0], accuracy_a=float(a.mean()), accuracy_b=float(b.mean()),
                            difference=difference, low=difference - half, high=difference + half, a_only=a_only,
                            b_only=b_only, mcnemar_p=mcnemar_exact_p(a_only, b_only))


def _as_correctness(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or not (array.dtype == bool or np.isin(array, (0, 1)).all()):
        raise ValueError(f"{name}: one 0/1 or boolean per image (a row per seed) expected, got shape "
                         f"{np.asarray(values).shape}, dtype {array.dtype}")
    return array.astype(bool)


__all__ = ["PairedDifference", "mcnemar_exact_p", "paired_difference"]

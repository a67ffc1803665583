"""Paired difference and exact McNemar p-value against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from resemote_lib.comparison import mcnemar_exact_p, paired_difference


@pytest.mark.parametrize("a_only, b_only, expected", [
    (0, 0, 1.0),  # no discordant pair: no evidence either way
    (0, 6, 2 / 64),  # P(X <= 0) = 1/64 for X ~ Bin(6, 1/2), two-sided
    (6, 0, 2 / 64),  # symmetric
    (1, 9, 2 * (1 + 10) / 1024),  # P(X <= 1) = (C(10,0) + C(10,1)) / 2^10
    (2, 1, 1.0),  # 2 * (1 + 3) / 8 = 1, capped at 1
    (5, 5, 1.0),
    (3, 12, 2 * (1 + 15 + 105 + 455) / 2**15),  # 0.03515625
])
def test_exact_mcnemar_p_values_computed_by_hand(a_only, b_only, expected):
    assert mcnemar_exact_p(a_only, b_only) == pytest.approx(expected, rel=1e-12, abs=0)


def test_exact_mcnemar_stays_exact_for_thousands_of_discordant_pairs():
    """At n = 2000 a float binomial pmf underflows term by term; the integer sum does not."""
    p = mcnemar_exact_p(900, 1100)
    assert 0 < p < 1e-5
    assert p == pytest.approx(2 * sum(math.comb(2000, k) for k in range(901)) / 2**2000, rel=1e-12)


def test_paired_difference_by_hand():
    a = np.array([1, 1, 0, 0, 1], bool)  # 3/5 right
    b = np.array([1, 0, 0, 1, 0], bool)  # 2/5 right; a_only = 2 (items 1, 4), b_only = 1 (item 3)
    d = paired_difference(a, b)
    half = 1.96 * math.sqrt(2 + 1 - (2 - 1) ** 2 / 5) / 5  # 0.6559...
    assert (d.n, d.a_only, d.b_only) == (5, 2, 1)
    assert (d.accuracy_a, d.accuracy_b, d.difference) == pytest.approx((0.6, 0.4, 0.2))
    assert (d.low, d.high) == pytest.approx((0.2 - half, 0.2 + half))
    assert d.mcnemar_p == pytest.approx(1.0)


def test_identical_classifiers_differ_by_zero_with_a_zero_width_interval():
    a = np.array([1, 0, 1, 1, 0, 1], bool)
    d = paired_difference(a, a.copy())
    assert (d.difference, d.low, d.high, d.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)


def test_the_difference_is_antisymmetric():
    rng = np.random.default_rng(0)
    a, b = rng.random(500) < 0.6, rng.random(500) < 0.55
    ab, ba = paired_difference(a, b), paired_difference(b, a)
    assert ab.difference == pytest.approx(-ba.difference)
    assert (ab.low, ab.high) == pytest.approx((-ba.high, -ba.low))
    assert ab.mcnemar_p == ba.mcnemar_p


def test_seeds_are_averaged_per_image_so_that_each_image_counts_once():
    """Two seeds that behave identically carry no more information about the test set than one:
    the interval must not narrow (concatenating the seeds' pairs narrowed it by sqrt(2))."""
    rng = np.random.default_rng(1)
    a, b = rng.random(300) < 0.6, rng.random(300) < 0.5
    one, two = paired_difference(a, b), paired_difference(np.vstack([a, a]), np.vstack([b, b]))
    assert (two.n, two.seeds, one.seeds) == (300, 2, 1)
    assert (two.difference, two.low, two.high, two.mcnemar_p) == pytest.approx(
        (one.difference, one.low, one.high, one.mcnemar_p))


def test_two_seeds_by_hand():
    a = np.array([[1, 0, 1], [0, 0, 1]], bool)
    b = np.array([[0, 0, 1], [0, 1, 1]], bool)  # per image, a - b: seed 0 [1, 0, 0], seed 1 [0, -1, 0]
    d = paired_difference(a, b)  # mean over seeds: [.5, -.5, 0]: one image each way
    half = 1.96 * math.sqrt((0.25 + 0.25 + 0) / 3) / math.sqrt(3)
    assert (d.n, d.seeds, d.a_only, d.b_only, d.mcnemar_p) == (3, 2, 1, 1, 1.0)
    assert (d.accuracy_a, d.accuracy_b, d.difference) == pytest.approx((0.5, 0.5, 0.0))
    assert (d.low, d.high) == pytest.approx((-half, half))


@pytest.mark.parametrize("a, b, message", [
    ([1, 0, 1], [1, 0], "same images"),
    ([], [], "no images"),
    ([0.5, 1], [1, 1], "0/1 or boolean"),
])
def test_unpaired_or_malformed_inputs_are_refused(a, b, message):
    with pytest.raises(ValueError, match=message):
        paired_difference(np.array(a), np.array(b))

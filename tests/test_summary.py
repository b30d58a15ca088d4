"""Cohort summary: the Clopper-Pearson bounds found with fewer bisection steps are exactly the ones 200 steps find.

`clopper_pearson` stops its bisection once a step changes nothing (every later step would repeat it), and
`clopper_pearson_pct` (what the summary reports) stops as soon as both ends of the bracket round to the same
percentage. Both must give the very same numbers as the plain 200-step bisection, which is kept here as the
reference, on every (k, n) with small n and on a seeded sample of large cohorts, plus published values.
"""

from __future__ import annotations

import random

import pytest

from crlm_response import summary
from crlm_response.summary import clopper_pearson, clopper_pearson_pct, regularized_beta


def quantile_200_steps(p: float, a: float, b: float) -> float:
    """The bisection as it was first written: always 200 steps."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if regularized_beta(mid, a, b) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def reference(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    alpha = 1.0 - confidence
    lower = 0.0 if k == 0 else quantile_200_steps(alpha / 2.0, k, n - k + 1)
    upper = 1.0 if k == n else quantile_200_steps(1.0 - alpha / 2.0, k + 1, n - k)
    return (lower, upper)


def small_pairs(up_to: int) -> list[tuple[int, int]]:
    return [(k, n) for n in range(1, up_to + 1) for k in range(n + 1)]


def large_pairs(count: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        n = rng.randint(30, 200_000)
        pairs.append((rng.choice([0, 1, 2, n // 2, n - 1, n, rng.randint(0, n)]), n))
    return pairs


PROOF_PAIRS = small_pairs(22) + large_pairs(40, seed=18) + [(9_958, 45_000), (43_932, 45_000), (1, 992_659)]


def test_the_early_stop_gives_the_200_step_bounds_to_the_last_bit() -> None:
    differ = [(k, n) for k, n in PROOF_PAIRS if clopper_pearson(k, n) != reference(k, n)]
    assert differ == []


def test_the_reported_percentages_are_those_of_the_200_step_bounds() -> None:
    for confidence in (0.95, 0.9):
        pairs = PROOF_PAIRS if confidence == 0.95 else small_pairs(12)
        want = {(k, n): tuple(round(100.0 * b, 2) for b in reference(k, n, confidence)) for k, n in pairs}
        got = {(k, n): clopper_pearson_pct(k, n, confidence) for k, n in pairs}
        assert got == want


def test_more_reported_percentages_match_the_exact_bounds() -> None:
    """A wider net (the exact bounds are proven equal to the 200-step ones above): every k for n up to 60."""
    differ = [
        (k, n)
        for k, n in small_pairs(60) + large_pairs(60, seed=7)
        if clopper_pearson_pct(k, n) != tuple(round(100.0 * b, 2) for b in clopper_pearson(k, n))
    ]
    assert differ == []


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Published exact 95 % intervals (Clopper-Pearson tables; R binom.test gives the same).
        (0, 10, 0.0, 30.85),
        (3, 10, 6.67, 65.25),
        (5, 10, 18.71, 81.29),
        (7, 10, 34.75, 93.33),
        (10, 10, 69.15, 100.0),
        (1, 2, 1.26, 98.74),
    ],
)
def test_published_intervals(k: int, n: int, low: float, high: float) -> None:
    assert clopper_pearson_pct(k, n) == (low, high)


def test_the_summary_needs_a_few_dozen_evaluations_not_800(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = summary.regularized_beta

    def counted(x: float, a: float, b: float) -> float:
        calls["n"] += 1
        return real(x, a, b)

    monkeypatch.setattr(summary, "regularized_beta", counted)
    assert clopper_pearson_pct(9_958, 45_000) == (21.75, 22.52)
    assert calls["n"] <= 2 * 40, calls["n"]

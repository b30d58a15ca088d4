"""Cohort summary: best-response distribution, objective response rate and disease control rate with exact
(Clopper-Pearson) 95 % confidence intervals, per criteria set.

Both rates count roles, not words (see `roles.py`): ORR = subjects whose best response has a responder role
(the set's `best_response.responders`, by default complete and partial) / subjects; DCR = subjects whose best
response has a clinical-benefit role (by default complete, partial, minor, stable and non-measurable stable) /
subjects. For RECIST that is (CR + PR) / n and (CR + PR + SD + NON-CR/NON-PD) / n. Every subject scored counts
in the denominator, not evaluable included (intention-to-treat style), as in RECIST trial reporting.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd

from .roles import DEFAULT_WORDS

# The best-response table's per-subject verdicts on the set's roles (`bor.best_overall_response`: Y / N).
RATE_COLUMNS = (("objective_response_rate", "responder"), ("disease_control_rate", "clinical_benefit"))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the regularised incomplete beta function (Numerical Recipes, Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the CDF of the Beta(a, b) distribution at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _bisection(p: float, a: float, b: float) -> Iterator[tuple[float, float]]:
    """The brackets (lo, hi) of the bisection for `regularized_beta(x, a, b) = p`, after each step (200 at most).

    It stops early once a step leaves the bracket as it was: the next step would test the same midpoint and
    decide the same way, so all the steps left would too (lo and hi have met, or are neighbouring floats).
    """
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        step = (mid, hi) if regularized_beta(mid, a, b) < p else (lo, mid)
        if step == (lo, hi):
            return
        lo, hi = step
        yield lo, hi


def beta_quantile(p: float, a: float, b: float) -> float:
    """Inverse of `regularized_beta` in x, by bisection (monotone; the bracket stops shrinking within 200 steps,
    far below 1e-12)."""
    lo, hi = collections.deque(_bisection(p, a, b), maxlen=1).pop()  # the last bracket
    return (lo + hi) / 2.0


def beta_quantile_pct(p: float, a: float, b: float, digits: int = 2) -> float:
    """`round(100 * beta_quantile(p, a, b), digits)`, with the bisection stopped as soon as that is known.

    The answer always lies inside the current bracket and x -> round(100 * x, digits) never decreases, so once
    both ends of the bracket round alike, so does the answer: about 20 steps instead of 60 or more.
    """
    lo, hi = 0.0, 1.0
    for lo, hi in _bisection(p, a, b):
        if round(100.0 * lo, digits) == round(100.0 * hi, digits):
            return round(100.0 * lo, digits)
    return round(100.0 * ((lo + hi) / 2.0), digits)


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for successes / n (as proportions)."""
    if n <= 0:
        return (math.nan, math.nan)
    alpha = 1.0 - confidence
    lower = 0.0 if successes == 0 else beta_quantile(alpha / 2.0, successes, n - successes + 1)
    upper = 1.0 if successes == n else beta_quantile(1.0 - alpha / 2.0, successes + 1, n - successes)
    return (lower, upper)


def clopper_pearson_pct(successes: int, n: int, confidence: float = 0.95, digits: int = 2) -> tuple[float, float]:
    """`clopper_pearson` as percentages rounded to `digits` (what the summary reports), found in fewer steps."""
    alpha = 1.0 - confidence
    lower = 0.0 if successes == 0 else beta_quantile_pct(alpha / 2.0, successes, n - successes + 1, digits)
    upper = 100.0 if successes == n else beta_quantile_pct(1.0 - alpha / 2.0, successes + 1, n - successes, digits)
    return (lower, upper)


def summarise(best: pd.DataFrame, confidence: float = 0.95) -> list[dict[str, Any]]:
    """One summary per criteria set from a best-response table (columns criteria, best_overall_response,
    responder, clinical_benefit)."""
    out: list[dict[str, Any]] = []
    if best.empty:
        return out
    for criteria, group in best.groupby("criteria", sort=False):
        responses = group["best_overall_response"].fillna(DEFAULT_WORDS["missing"]).astype(str)
        n = len(responses)
        counts = responses.value_counts()
        entry: dict[str, Any] = {
            "criteria": criteria,
            "subjects": n,
            "best_response": {k: int(v) for k, v in counts.items()},
        }
        for name, column in RATE_COLUMNS:
            k = int((group[column] == "Y").sum())
            low, high = clopper_pearson_pct(k, n, confidence) if n else (None, None)
            entry[name] = {
                "n": k,
                "rate_pct": round(100.0 * k / n, 2) if n else None,
                "ci_low_pct": low,
                "ci_high_pct": high,
                "confidence": confidence,
                "method": "Clopper-Pearson exact",
            }
        out.append(entry)
    return out


def summary_table(summary: list[dict[str, Any]]) -> pd.DataFrame:
    """The summary as a flat table (one row per criteria set and measure), for CSV output."""
    rows = []
    for entry in summary:
        for word, count in entry["best_response"].items():
            rows.append(
                {
                    "criteria": entry["criteria"],
                    "measure": f"best_response_{word}",
                    "n": count,
                    "subjects": entry["subjects"],
                    "rate_pct": round(100.0 * count / entry["subjects"], 2),
                    "ci_low_pct": None,
                    "ci_high_pct": None,
                }
            )
        for measure in ("objective_response_rate", "disease_control_rate"):
            m = entry[measure]
            rows.append(
                {
                    "criteria": entry["criteria"],
                    "measure": measure,
                    "n": m["n"],
                    "subjects": entry["subjects"],
                    "rate_pct": m["rate_pct"],
                    "ci_low_pct": m["ci_low_pct"],
                    "ci_high_pct": m["ci_high_pct"],
                }
            )
    return pd.DataFrame(rows, columns=["criteria", "measure", "n", "subjects", "rate_pct", "ci_low_pct", "ci_high_pct"])

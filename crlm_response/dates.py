"""Dates as trials collect them: study days, partial dates and their imputation, the stable-disease reference.

* Study day (SDTM `--DY`, ADaM `ADY`): date - reference + 1 on or after the reference date (RFSTDTC), date -
  reference before it; there is no day 0. `continuous_day` turns a study day back into days since the reference,
  so intervals between study days are right across the reference (day -3 to day 40 is 42 days, not 43).
* Partial dates (`2014-02`, `2014`) are ranges of days. A visit whose day is unknown is still scored (its place
  is known from VISITNUM, or from its range); only intervals need a day. `--date-imputation first|mid|last` picks
  one (admiral's `derive_vars_dt()` conventions: first day, the 15th or 30 June, last day), then bounds it by the
  neighbouring assessments of the same stream: never on or before the previous scan, never on or after the next.
  The imputed date is flagged as ADaM's ADTF: "D" (day imputed) or "M" (month and day imputed).
* Stable disease's minimum interval counts from the baseline scan, or from randomisation (`--sd-from
  randomisation`, admiralonco's `ADT >= RANDDT + 42`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

IMPUTATIONS = ("none", "first", "mid", "last")
SD_FROM = ("baseline", "randomisation")
FLAG_OF_PRECISION = {"month": "D", "year": "M"}


@dataclass(frozen=True)
class DateOptions:
    """How dates are used: imputation of partial dates, and where the stable-disease minimum counts from."""

    imputation: str = "none"  # none | first | mid | last
    sd_from: str = "baseline"  # baseline | randomisation

    def __post_init__(self) -> None:
        if self.imputation not in IMPUTATIONS:
            raise ValueError(f"date imputation must be one of {', '.join(IMPUTATIONS)}")
        if self.sd_from not in SD_FROM:
            raise ValueError(f"sd_from must be one of {', '.join(SD_FROM)}")

    def parameters(self) -> dict[str, str]:
        """As recorded with the results (`parameters`, the run summary)."""
        return {"date_imputation": self.imputation, "sd_from": self.sd_from}

    def describe(self) -> str:
        """One line for the run summary."""
        reference = "randomisation (RANDDT)" if self.sd_from == "randomisation" else "the baseline scan"
        imputed = (
            "partial dates not imputed (--date-imputation none)"
            if self.imputation == "none"
            else f"partial dates imputed (--date-imputation {self.imputation})"
        )
        return f"dates: stable-disease minimum counted from {reference}; {imputed}"


def epoch_days(dates: np.ndarray) -> np.ndarray:
    """datetime64 values -> days since 1970-01-01 as float (NaN for NaT): a position on a time axis only."""
    values = np.asarray(dates).astype("datetime64[D]")
    out = values.astype(np.int64).astype(float)
    out[np.isnat(values)] = np.nan
    return out


def from_epoch_days(days: np.ndarray) -> np.ndarray:
    """The inverse of `epoch_days`: datetime64[ns] (NaT for NaN)."""
    values = np.asarray(days, dtype=float)
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    known = ~np.isnan(values)
    out[known] = values[known].astype(np.int64).astype("datetime64[D]")
    return out.astype("datetime64[ns]")


def study_day(date_days: np.ndarray, reference_days: np.ndarray) -> np.ndarray:
    """SDTM study day of a date (both as epoch days): date - reference + 1 on or after it, date - reference before
    it (no day 0). NaN when either is unknown."""
    delta = np.asarray(date_days, dtype=float) - np.asarray(reference_days, dtype=float)
    return np.where(delta >= 0, delta + 1, delta)


def continuous_day(study_days: np.ndarray) -> np.ndarray:
    """Days since the reference date from a study day (the inverse of `study_day`'s shift; NaN stays NaN)."""
    values = np.asarray(study_days, dtype=float)
    return np.where(values > 0, values - 1, values)


def mid_dates(first: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """admiral's "mid" imputation of a partial date: the 15th of the month, or 30 June of the year."""
    out = np.asarray(first).astype("datetime64[D]").copy()
    month = np.asarray(precision, dtype=object) == "month"
    year = np.asarray(precision, dtype=object) == "year"
    out[month] = out[month] + np.timedelta64(14, "D")
    if year.any():
        years = out[year].astype("datetime64[Y]")
        out[year] = (years.astype("datetime64[M]") + np.timedelta64(5, "M")).astype("datetime64[D]") + np.timedelta64(
            29, "D"
        )
    return out


@dataclass
class Imputed:
    """The outcome of `impute` per visit (arrays parallel to its input)."""

    value: np.ndarray  # the imputed position on the time axis (NaN where nothing was imputed)
    low: np.ndarray  # the bounds the neighbouring scans allow (NaN: no neighbour on that side)
    high: np.ndarray
    impossible: np.ndarray  # a partial date no day of which lies between the neighbouring scans


def impute(
    subject: np.ndarray, value: np.ndarray, first: np.ndarray, mid: np.ndarray, last: np.ndarray, method: str
) -> Imputed:
    """Impute the unknown positions of partial dates, rows in assessment order within each subject.

    `value` is each visit's position on the subject's time axis (NaN: unknown); `first`/`mid`/`last` the
    candidates of a partial date on the same axis (NaN: no partial date, or one that cannot be placed). Bounds are
    the neighbouring scans: after the previous one (known, or imputed before it), before the next. `method`
    "first" and "mid" fill forwards, "last" backwards, so two partial dates in one month stay in order."""
    n = len(value)
    out = np.full(n, np.nan)
    low = np.full(n, np.nan)
    high = np.full(n, np.nan)
    impossible = np.zeros(n, dtype=bool)
    todo = np.isnan(value) & ~np.isnan(first)
    if not todo.any():
        return Imputed(out, low, high, impossible)
    candidate = {"first": first, "mid": mid, "last": last}.get(method)
    codes = pd.factorize(np.asarray(subject, dtype=object))[0]
    for code in np.unique(codes[todo]):
        rows = np.flatnonzero(codes == code)
        resolved = value[rows].copy()
        for i in range(len(rows)) if method != "last" else reversed(range(len(rows))):
            row = rows[i]
            if not todo[row]:
                continue
            before, after = resolved[:i], resolved[i + 1 :]
            prev = before[~np.isnan(before)][-1] if (~np.isnan(before)).any() else np.nan
            following = after[~np.isnan(after)][0] if (~np.isnan(after)).any() else np.nan
            low[row], high[row] = prev, following
            lo = first[row] if np.isnan(prev) else max(first[row], prev + 1)
            hi = last[row] if np.isnan(following) else min(last[row], following - 1)
            if lo > hi:
                impossible[row] = True
            elif candidate is not None:
                out[row] = resolved[i] = min(max(candidate[row], lo), hi)
    return Imputed(out, low, high, impossible)


def imputation_flags(imputed: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """ADaM ADTF per visit: "D" (day imputed), "M" (month and day imputed), None (not imputed)."""
    done = ~np.isnan(np.asarray(imputed, dtype=float))
    flags = np.full(len(done), None, dtype=object)
    if done.any():  # only imputed visits are flagged: the precisions of the others are not looked at
        picked = np.asarray(precision, dtype=object)[done]
        flags[done] = pd.Series(picked).map(FLAG_OF_PRECISION).to_numpy(dtype=object)
    return flags

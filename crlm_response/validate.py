"""Cross-row checks and keys: turn `Tables` into `Prepared`, listing every problem found.

The same vectorised code serves one case file and a million CSV rows. Problems carry a stable `code`, the
subject, timepoint and lesion, and the source (file and line) so messages point at the input. Errors make a
subject unscorable; warnings (`severity == "warning"`) are scored and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .dates import (
    DateOptions,
    Imputed,
    epoch_days,
    from_epoch_days,
    imputation_flags,
    impute,
    mid_dates,
    study_day,
)
from .tables import Prepared, Tables, from_codes, text_codes, with_none

BASELINE_NAMES = {"baseline", "screening", "bl", "base", "pre-treatment", "pretreatment"}

ESSENTIAL_LESION_COLUMNS = {
    "subject_id",
    "timepoint",
    "lesion_id",
    "kind",
    "organ",
    "is_lymph_node",
    "status",
    "source",
    "line",
}
PROBLEM_COLUMNS = ["subject_id", "timepoint", "lesion_id", "severity", "code", "message", "source", "line"]


class Problems:
    """Collects problem rows from vectorised masks; messages are rendered only for the rows that fail."""

    def __init__(self) -> None:
        self._frames: list[pd.DataFrame] = []

    def add(
        self,
        rows: pd.DataFrame,
        mask: Any,
        code: str,
        message: str,
        severity: str = "error",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """One problem per row of `rows` where `mask` holds. `message` may name columns of `rows` or keys of
        `extra` (arrays aligned with `rows`) in braces: "lesion {lesion_id} at {timepoint}"."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        hit = rows.loc[mask]
        values = {name: hit[name].to_numpy(dtype=object) for name in hit.columns if "{" + name + "}" in message}
        for name, arr in (extra or {}).items():
            values[name] = np.asarray(arr, dtype=object)[mask]
        messages = [message.format(**{k: _show(v[i]) for k, v in values.items()}) for i in range(int(mask.sum()))]
        frame = pd.DataFrame(
            {
                "subject_id": hit["subject_id"].to_numpy(dtype=object),
                "timepoint": hit["timepoint"].to_numpy(dtype=object) if "timepoint" in hit else None,
                "lesion_id": hit["lesion_id"].to_numpy(dtype=object) if "lesion_id" in hit else None,
                "severity": severity,
                "code": code,
                "message": np.asarray(messages, dtype=object),
                "source": hit["source"].to_numpy(dtype=object) if "source" in hit else None,
                "line": hit["line"].to_numpy() if "line" in hit else np.nan,
            }
        )
        self._frames.append(frame)

    def frame(self) -> pd.DataFrame:
        if not self._frames:
            return pd.DataFrame(columns=PROBLEM_COLUMNS)
        return pd.concat(self._frames, ignore_index=True)[PROBLEM_COLUMNS]


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column, or all-missing when the input does not have it (trial exports carry few optional fields)."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    return frame[column].to_numpy(dtype=float)


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _date_days(values: pd.Series) -> np.ndarray:
    """Dates (datetime64, date objects or ISO text) -> days since 1970-01-01 as float (NaN if missing)."""
    stamps = pd.to_datetime(values, errors="coerce")
    days = np.full(len(values), np.nan)
    ok = stamps.notna().to_numpy()
    if ok.any():
        days[ok] = stamps[ok].to_numpy().astype("datetime64[D]").astype(np.int64)
    return days


def _shared_codes(*columns: Any) -> list[np.ndarray]:
    """Integer codes for values that must match across columns (e.g. subject ids of visits and of lesions); -1 for
    a missing value. Categorical text columns over the same categories (the reader's codes) are used as they are."""
    arrays = [c.array if isinstance(c, pd.Series) else c for c in columns]
    coded = [a for a in arrays if isinstance(a, pd.Categorical)]
    if arrays and len(coded) == len(arrays):
        first = coded[0].categories
        if all(a.categories is first or a.categories.equals(first) for a in coded[1:]):
            return [a.codes.astype(np.int64) for a in coded]
    joined = np.concatenate([np.asarray(a, dtype=object) for a in arrays]) if arrays else np.zeros(0, dtype=object)
    codes = pd.factorize(joined, use_na_sentinel=True)[0].astype(np.int64)
    out, start = [], 0
    for a in arrays:
        out.append(codes[start : start + len(a)])
        start += len(a)
    return out


def _positions(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of `wanted` is among `keys` (distinct integers >= 0): its index, or -1 (also for a negative
    key). Small key ranges use a lookup array, large ones a hash index."""
    if not len(keys) or not len(wanted):
        return np.full(len(wanted), -1, dtype=np.int64)
    top = int(max(keys.max(), wanted.max())) + 1
    if top > 4 * (len(keys) + len(wanted)) + 1024:
        return pd.Index(keys).get_indexer(wanted).astype(np.int64)
    table = np.full(top + 1, -1, dtype=np.int64)
    table[keys] = np.arange(len(keys))
    return table[np.where(wanted >= 0, wanted, top)]


def _word_mask(codes: np.ndarray, names: np.ndarray, *words: str) -> np.ndarray:
    """Rows whose text (codes into `names`) is one of `words`; never a missing value."""
    return np.append(np.isin(names, list(words)), False)[codes]


def _text_like(original: Any, codes: np.ndarray, names: np.ndarray) -> Any:
    """Codes into `names` in the form `original` had: categorical text stays categorical, plain text stays a
    numpy object array (None = missing)."""
    if isinstance(original.array if isinstance(original, pd.Series) else original, pd.Categorical):
        return from_codes(codes, names)
    return with_none(names)[codes]


def _pair_keys(*pairs: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """One int64 key per pair of non-negative codes (-1 if either is negative), comparable across all `pairs`.

    Every pair is encoded with the same width: keys of visits and of lesions must be built alike, or a subject's
    lesions would meet another subject's timepoints."""
    width = max((int(b.max()) + 1 for _, b in pairs if len(b)), default=0) + 1
    return [np.where((a < 0) | (b < 0), -1, a.astype(np.int64) * width + b) for a, b in pairs]


def _pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`_pair_keys` for one pair (keys only compared among themselves)."""
    return _pair_keys((a, b))[0]


def _group_broadcast(values: np.ndarray, codes: np.ndarray, n_groups: int, pick: np.ndarray) -> np.ndarray:
    """The value at the row marked in `pick` (one per group), broadcast to every row of its group."""
    chosen = np.full(n_groups, np.nan)
    chosen[codes[pick]] = values[pick]
    return chosen[codes]


@dataclass
class _Time:
    """Each visit's place on its subject's time axis (days; any origin), before the baseline is chosen.

    `value` is known for a visit with a day or a full date (NaN otherwise); `first`/`mid`/`last` are a partial
    date's candidates on the same axis (NaN when there is none, or when the axis is not tied to the calendar);
    `offset` turns the axis into calendar dates (epoch days = value + offset; NaN when not tied)."""

    value: np.ndarray
    offset: np.ndarray
    first: np.ndarray
    mid: np.ndarray
    last: np.ndarray
    precision: np.ndarray
    use_days: np.ndarray


def _date_range(v: pd.DataFrame, name: str) -> np.ndarray:
    return epoch_days(v[name].to_numpy(dtype="datetime64[ns]")) if name in v else np.full(len(v), np.nan)


def _placed_time(v: pd.DataFrame) -> _Time:
    """A reader that placed its visits in time itself (SDTM: study days, VISITNUM) gives the axis directly."""
    n = len(v)
    offset = v["day_offset"].to_numpy(dtype=float)
    precision = v["date_precision"].to_numpy(dtype=object) if "date_precision" in v else np.full(n, None)
    first, last = _date_range(v, "date_first") - offset, _date_range(v, "date_last") - offset
    mid = epoch_days(_mid_of(v, precision)) - offset
    return _Time(v["day"].to_numpy(dtype=float), offset, first, mid, last, precision, np.ones(n, dtype=bool))


def _mid_of(v: pd.DataFrame, precision: np.ndarray) -> np.ndarray:
    if "date_first" not in v:
        return np.full(len(v), np.datetime64("NaT"), dtype="datetime64[ns]")
    return mid_dates(v["date_first"].to_numpy(dtype="datetime64[ns]"), precision).astype("datetime64[ns]")


def _long_time(v: pd.DataFrame, codes: np.ndarray, n_subjects: int, problems: Problems) -> _Time:
    """Case files and long tables: each subject is timed by days when every timed visit has one, else by dates.
    A visit with only a partial date is placed by its range (see `_visit_order`)."""
    n = len(v)
    day_given = v["day"].to_numpy(dtype=float)
    date_days = _date_days(v["date"]) if "date" in v else np.full(n, np.nan)
    has_day, has_date = ~np.isnan(day_given), ~np.isnan(date_days)
    precision = v["date_precision"].to_numpy(dtype=object) if "date_precision" in v else np.full(n, None)
    partial = ~has_day & ~has_date & np.isin(precision, ["month", "year"])
    untimed = ~has_day & ~has_date & ~partial
    problems.add(
        v,
        untimed,
        "no_day_or_date",
        "timepoint {timepoint} has neither a day nor a date: its place in time is unknown; give its day or date",
    )
    timed = has_day | has_date
    missing_day = np.bincount(codes, weights=(timed & ~has_day).astype(float), minlength=n_subjects)
    missing_date = np.bincount(codes, weights=(timed & ~has_date).astype(float), minlength=n_subjects)
    use_days = (missing_day == 0)[codes]
    mixed = ~use_days & (missing_date > 0)[codes]
    problems.add(
        v,
        mixed & ~has_date & timed,
        "day_and_date_mixed",
        "timepoint {timepoint} has a day but no date while other timepoints of this subject have only "
        "dates; give every timepoint a date, or every timepoint a day",
    )
    value = np.where(use_days, day_given, date_days)
    # Days relate to dates through any visit that has both (their agreement is checked later).
    both = has_day & has_date
    pair_offset = np.full(n_subjects, np.nan)
    pair_offset[codes[both][::-1]] = (date_days - day_given)[both][::-1]
    offset = np.where(use_days, pair_offset[codes], 0.0)
    first, last = _date_range(v, "date_first") - offset, _date_range(v, "date_last") - offset
    mid = epoch_days(_mid_of(v, precision)) - offset
    return _Time(value, offset, first, mid, last, precision, use_days)


def _visit_order(v: pd.DataFrame, codes: np.ndarray, time: _Time, problems: Problems) -> np.ndarray:
    """The order of visits within a subject: VISITNUM when the reader gives it, else time (a partial date by its
    range, which must not overlap another visit's date: their order would be unknown)."""
    if "visit_order" in v:
        return _dated_visit_order(v, codes, time, problems)
    key = np.where(np.isnan(time.value), (time.first + time.last) / 2.0, time.value)
    partial = np.isnan(time.value) & np.isin(time.precision, ["month", "year"])
    problems.add(
        v,
        partial & np.isnan(key),
        "partial_date_order_unknown",
        "timepoint {timepoint} has only the partial date {collected} while the other timepoints of this subject "
        "have days: its place in time is unknown; give its day",
        extra={"collected": _collected(v)},
    )
    if not partial.any():
        return key
    order = np.lexsort((key, codes))
    low = np.where(np.isnan(time.value), time.first, time.value)[order]
    high = np.where(np.isnan(time.value), time.last, time.value)[order]
    same = np.r_[False, codes[order][1:] == codes[order][:-1]]
    overlap_prev = same & (low <= np.r_[-np.inf, high[:-1]])
    overlap_next = np.r_[overlap_prev[1:], False]
    clash = np.zeros(len(v), dtype=bool)
    clash[order] = (overlap_prev | overlap_next) & partial[order]
    names = v["timepoint"].to_numpy(dtype=object)[order]
    other = np.full(len(v), None, dtype=object)
    other[order] = np.where(overlap_prev, np.r_[None, names[:-1]], np.r_[names[1:], None])
    problems.add(
        v,
        clash,
        "partial_date_order_unknown",
        "timepoint {timepoint} has the partial date {collected}, which overlaps timepoint {other}: their order "
        "is unknown; give the full date or the day",
        extra={"collected": _collected(v), "other": other},
    )
    return key


def _dated_visit_order(v: pd.DataFrame, codes: np.ndarray, time: _Time, problems: Problems) -> np.ndarray:
    """The reader's visit order (VISITNUM), with the scan dates ruling where they are known: a scan is placed by its
    day, and a visit without one follows the dated visit before it in VISITNUM order. When VISITNUM and the dates
    disagree (an unscheduled visit numbered 9.3 scanned before 9.2), the dates win and the visit is named: ordering
    by VISITNUM there would date a progression late."""
    visitnum = v["visit_order"].to_numpy(dtype=float)
    by_number = np.lexsort((visitnum, codes))
    known = time.value[by_number]
    # the time of the last dated visit at or before each visit in VISITNUM order, within its subject
    carried = pd.Series(known).groupby(codes[by_number]).ffill().to_numpy(dtype=float)
    undated_first = np.isnan(carried)
    rank = np.empty(len(v), dtype=float)
    order = np.lexsort((visitnum[by_number], np.isnan(known), np.where(undated_first, -np.inf, carried)))
    order = order[np.argsort(codes[by_number][order], kind="stable")]
    rank[by_number[order]] = np.arange(len(v), dtype=float)
    dated = ~np.isnan(time.value)
    if dated.any():
        out_of_step = _dated_before_an_earlier_number(codes, visitnum, time.value, dated)
        problems.add(
            v,
            out_of_step,
            "visit_order_conflict",
            "timepoint {timepoint} (VISITNUM {visitnum}) is dated before a visit with a lower VISITNUM: visits are "
            "placed by their scan dates; check VISITNUM and the dates",
            severity="warning",
            extra={"visitnum": np.array([f"{x:g}" for x in visitnum], dtype=object)},
        )
    return rank


def _dated_before_an_earlier_number(
    codes: np.ndarray, visitnum: np.ndarray, value: np.ndarray, dated: np.ndarray
) -> np.ndarray:
    """Dated visits whose time is before the latest time of the dated visits numbered below them (same subject)."""
    rows = np.flatnonzero(dated)
    order = rows[np.lexsort((visitnum[rows], codes[rows]))]
    subject = codes[order]
    latest = pd.Series(value[order]).groupby(subject).cummax()
    latest_before = latest.groupby(subject).shift(1).to_numpy(dtype=float)
    conflict = np.zeros(len(codes), dtype=bool)
    conflict[order] = value[order] < latest_before
    return conflict


def _collected(v: pd.DataFrame) -> np.ndarray:
    """The date as collected, for messages."""
    if "date_collected" in v:
        return v["date_collected"].to_numpy(dtype=object)
    return np.full(len(v), None, dtype=object)


def _choose_baseline(
    v: pd.DataFrame, codes: np.ndarray, n_subjects: int, order_key: np.ndarray, day_zero: np.ndarray, problems: Problems
) -> np.ndarray:
    """A timepoint named like a baseline, else the one on day 0 (long tables), else the first in order."""
    tp_codes, tp_names = pd.factorize(v["timepoint"].to_numpy(dtype=object))
    named_names = np.array([str(t).strip().lower() in BASELINE_NAMES for t in tp_names], dtype=bool)
    named = np.where(tp_codes >= 0, named_names[np.maximum(tp_codes, 0)] if len(named_names) else False, False)
    priority = np.where(named, 0, np.where(day_zero, 1, 2))
    order = np.lexsort((np.nan_to_num(order_key, nan=np.inf), priority, codes))
    first = np.zeros(len(v), dtype=bool)
    if len(order):
        sorted_codes = codes[order]
        first[order[np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]]] = True
    n_named = np.bincount(codes, weights=named.astype(float), minlength=n_subjects)[codes]
    problems.add(
        v,
        named & (n_named > 1) & ~first,
        "two_baselines",
        "timepoint {timepoint} is named like a baseline but another timepoint is the baseline; rename one of them",
    )
    return first


def _warn_unnamed_late_baseline(v: pd.DataFrame, first: np.ndarray, late: np.ndarray, problems: Problems) -> None:
    """A baseline taken by order that the table itself dates after day 0 is most likely a follow-up whose baseline
    scan is missing from the file: every response of the subject would be measured from the wrong scan."""
    codes, names = text_codes(v["timepoint"])  # each distinct name looked at once
    named = np.append(np.array([str(t).strip().lower() in BASELINE_NAMES for t in names], dtype=bool), False)[codes]
    problems.add(
        v,
        first & late & ~named,
        "baseline_not_day_zero",
        "no timepoint is named baseline and none is on day 0: {timepoint} (day {day}) is taken as the baseline; "
        "if the baseline scan is missing from the file, every response of this subject is measured from the wrong "
        "scan (name the baseline timepoint, or give it day 0)",
        severity="warning",
    )


def _resolve_days(visits: pd.DataFrame, problems: Problems, dates: DateOptions | None = None) -> pd.DataFrame:
    """Choose each subject's baseline and express every timepoint as days since baseline (NaN: unknown)."""
    dates = dates or DateOptions()
    v = visits.copy()
    codes, uniques = pd.factorize(v["subject_id"].to_numpy(dtype=object))
    n_subjects = len(uniques)

    dup = v.duplicated(["subject_id", "timepoint"], keep="first").to_numpy()
    problems.add(
        v,
        dup,
        "duplicate_timepoint",
        "timepoint id {timepoint} appears twice for this subject; give each timepoint its own id",
    )
    placed = "day_offset" in v
    time = _placed_time(v) if placed else _long_time(v, codes, n_subjects, problems)
    order_key = _visit_order(v, codes, time, problems)
    sequence = np.lexsort((order_key, codes))
    imputed = _impute(v, codes, sequence, time, dates.imputation)
    value = np.where(np.isnan(time.value), imputed.value, time.value)

    day_given = v["day"].to_numpy(dtype=float)
    day_zero = ~placed & time.use_days & (day_given == 0)
    first = _choose_baseline(v, codes, n_subjects, order_key, day_zero, problems)
    _warn_unnamed_late_baseline(v, first, ~placed & time.use_days & (day_given > 0), problems)
    base_value = _group_broadcast(value, codes, n_subjects, first)
    base_order = _group_broadcast(order_key, codes, n_subjects, first)

    day = value - base_value
    v["day"] = day
    v["is_baseline"] = first
    problems.add(
        v,
        ~first & ~np.isnan(day) & (day <= 0),
        "follow_up_not_after_baseline",
        "follow-up {timepoint} is on day {day} relative to baseline; follow-ups must come after the "
        "baseline scan (check its day or date)",
    )
    baseline_name = _group_broadcast_object(v["timepoint"].to_numpy(dtype=object), codes, n_subjects, first)
    problems.add(
        v,
        ~first & np.isnan(day) & (order_key < base_order),
        "follow_up_not_after_baseline",
        "follow-up {timepoint} comes before the baseline {baseline} in visit order; follow-ups must come after "
        "the baseline scan (check VISITNUM or the dates)",
        extra={"baseline": baseline_name},
    )
    if not placed:
        _check_day_date(v, problems, codes, n_subjects, first, time, day)
    _same_day(v, problems, codes, day, dup)
    n_follow = np.bincount(codes, weights=(~first).astype(float), minlength=n_subjects)[codes]
    problems.add(
        v,
        first & (n_follow == 0),
        "no_follow_up",
        "only a baseline timepoint: there is no follow-up to assess yet",
        severity="warning",
    )
    _date_warnings(v, problems, time, imputed, order_key, placed, dates.imputation)
    _date_columns(v, codes, n_subjects, time, imputed, order_key, value, placed, dates)
    return v


def _group_broadcast_object(values: np.ndarray, codes: np.ndarray, n_groups: int, pick: np.ndarray) -> np.ndarray:
    chosen = np.full(n_groups, None, dtype=object)
    chosen[codes[pick]] = values[pick]
    return chosen[codes]


def _check_day_date(
    v: pd.DataFrame,
    problems: Problems,
    codes: np.ndarray,
    n_subjects: int,
    first: np.ndarray,
    time: _Time,
    day: np.ndarray,
) -> None:
    """A timepoint with both a day and a date: the day must be the dates' distance from the baseline date."""
    date_days = _date_days(v["date"]) if "date" in v else np.full(len(v), np.nan)
    base_date = _group_broadcast(date_days, codes, n_subjects, first)
    both = time.use_days & ~np.isnan(date_days) & ~np.isnan(base_date)
    problems.add(
        v,
        both & ((date_days - base_date) != day),
        "day_date_mismatch",
        "timepoint {timepoint} has day {day} but its date is {date_offset} days after the baseline date; "
        "correct one of them",
        extra={"date_offset": date_days - base_date},
    )


def _same_day(v: pd.DataFrame, problems: Problems, codes: np.ndarray, day: np.ndarray, dup: np.ndarray) -> None:
    dated = pd.DataFrame({"s": codes, "d": day, "t": v["timepoint"].to_numpy(dtype=object)})
    same_day = dated.duplicated(["s", "d"], keep="first").to_numpy() & ~np.isnan(day) & ~dup
    if same_day.any():
        first_on_day = dated.dropna(subset=["d"]).drop_duplicates(["s", "d"]).rename(columns={"t": "other"})
        other = dated.merge(first_on_day, on=["s", "d"], how="left")["other"].to_numpy(dtype=object)
        problems.add(
            v,
            same_day,
            "same_day_timepoints",
            "timepoint {timepoint} is on the same day ({day}) as timepoint {other}; merge them into one timepoint",
            extra={"other": other},
        )


def _impute(v: pd.DataFrame, codes: np.ndarray, sequence: np.ndarray, time: _Time, method: str) -> Imputed:
    """`dates.impute` on the visits in assessment order, results back in row order."""
    n = len(v)
    result = impute(
        codes[sequence],
        time.value[sequence],
        time.first[sequence],
        time.mid[sequence],
        time.last[sequence],
        method,
    )
    out = Imputed(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=bool))
    out.value[sequence], out.low[sequence], out.high[sequence] = result.value, result.low, result.high
    out.impossible[sequence] = result.impossible
    return out


def _as_date_text(axis: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Positions on the time axis as YYYY-MM-DD (None where unknown or not tied to the calendar)."""
    stamps = from_epoch_days(np.asarray(axis, dtype=float) + offset)
    text = pd.Series(stamps).dt.strftime("%Y-%m-%d").to_numpy(dtype=object, copy=True)
    text[np.isnat(stamps)] = None
    return text


def _date_warnings(
    v: pd.DataFrame,
    problems: Problems,
    time: _Time,
    imputed: Imputed,
    order_key: np.ndarray,
    placed: bool,
    method: str,
) -> None:
    """`partial_date` for a visit whose day stays unknown, `date_imputed` for one whose date was imputed."""
    unknown = np.isnan(time.value)
    if not unknown.any():
        return
    where = (
        pd.Series(v["visit_order"]).map(lambda k: f" (VISITNUM {k:g})" if k == k else "").to_numpy(dtype=object)
        if placed and "visit_order" in v
        else np.full(len(v), "", dtype=object)
    )
    collected = _collected(v)
    shown = np.where(pd.isna(collected), "no date", "the partial date " + pd.Series(collected).astype(str))
    prev_text = _as_date_text(imputed.low, time.offset)
    next_text = _as_date_text(imputed.high, time.offset)
    bounds = np.where(pd.isna(prev_text), "", "after the previous scan (" + pd.Series(prev_text).astype(str) + ")")
    bounds = np.where(
        pd.isna(next_text),
        bounds,
        np.where(bounds == "", "", pd.Series(bounds).astype(str) + " and ")
        + "before the next ("
        + pd.Series(next_text).astype(str)
        + ")",
    )
    placeable = ~np.isnan(time.first)
    done = ~np.isnan(imputed.value)
    flag = imputation_flags(imputed.value, time.precision)
    problems.add(
        v,
        done,
        "date_imputed",
        "timepoint {timepoint}{where}: {shown} is imputed as {date} (--date-imputation {method}, ADTF {flag}; "
        "{bounds})",
        severity="warning",
        extra={
            "where": where,
            "shown": shown,
            "date": _as_date_text(imputed.value, time.offset),
            "method": np.full(len(v), method, dtype=object),
            "flag": flag,
            "bounds": np.where(bounds == "", "no neighbouring scan bounds it", bounds),
        },
    )
    scored = "it is scored in its place, but no interval from it counts (stable-disease minimum, confirmation)"
    problems.add(
        v,
        unknown & imputed.impossible,
        "partial_date",
        "timepoint {timepoint}{where} has {shown}, but no day of it lies {bounds}: its day stays unknown and "
        + scored.replace("it is scored", "it is still scored")
        + "; check the date and the visit order",
        severity="warning",
        extra={"where": where, "shown": shown, "bounds": bounds},
    )
    options = _option_dates(v, time, imputed, order_key)
    waiting = unknown & placeable & ~done & ~imputed.impossible
    problems.add(
        v,
        waiting,
        "partial_date",
        "timepoint {timepoint}{where} has {shown} and no day: "
        + scored
        + "; --date-imputation first, mid or last would place it on {options}",
        severity="warning",
        extra={"where": where, "shown": shown, "options": options},
    )
    reference = "no reference date relates it to the other timepoints' study days; give --sdtm-dm (RFSTDTC)"
    problems.add(
        v,
        unknown & ~placeable & placed,  # in a long table such a visit is an error (see `_long_time`)
        "partial_date",
        "timepoint {timepoint}{where} has {shown} and no study day: " + scored + ("; " + reference if placed else ""),
        severity="warning",
        extra={"where": where, "shown": shown},
    )


def _option_dates(v: pd.DataFrame, time: _Time, imputed: Imputed, order_key: np.ndarray) -> np.ndarray:
    """For a partial date left unknown: the dates first, mid and last imputation would give ("a, b or c")."""
    codes = pd.factorize(v["subject_id"].to_numpy(dtype=object))[0]
    sequence = np.lexsort((order_key, codes))
    texts = []
    for method in ("first", "mid", "last"):
        texts.append(_as_date_text(_impute(v, codes, sequence, time, method).value, time.offset))
    joined = pd.Series(texts[0]).astype(str) + ", " + pd.Series(texts[1]).astype(str) + " or " + texts[2]
    return joined.to_numpy(dtype=object)


def _date_columns(
    v: pd.DataFrame,
    codes: np.ndarray,
    n_subjects: int,
    time: _Time,
    imputed: Imputed,
    order_key: np.ndarray,
    value: np.ndarray,
    placed: bool,
    dates: DateOptions,
) -> None:
    """The date columns every input shares (see `Prepared`): date (imputed when asked for), date_collected,
    date_imputation (ADTF), study_day, visit_order, and sd_day (days the stable-disease minimum is counted on)."""
    n = len(v)
    given = v["date"] if "date" in v else pd.Series([None] * n, dtype=object)
    full = pd.to_datetime(given, errors="coerce").to_numpy(dtype="datetime64[ns]", copy=True)
    done = ~np.isnan(imputed.value)
    full[done] = from_epoch_days(imputed.value + time.offset)[done]
    if "date_collected" not in v:
        v["date_collected"] = pd.Series(_as_date_text(epoch_days(full), np.zeros(n)), index=v.index, dtype=object)
    v["date"] = full
    # Text columns stay Python objects (None, not NaN, when absent), whatever pandas infers.
    v["date_imputation"] = pd.Series(imputation_flags(imputed.value, time.precision), index=v.index, dtype=object)
    v["date_collected"] = v["date_collected"].astype(object).where(v["date_collected"].notna(), None)
    if "study_day" not in v:
        v["study_day"] = np.nan
    if "reference_day" in v:  # ADaM's ADY of an imputed date (SDTM's RSDY stays empty: SDTM does not impute)
        from_imputed = study_day(imputed.value + time.offset, v["reference_day"].to_numpy(dtype=float))
        v["study_day"] = np.where(done, from_imputed, v["study_day"].to_numpy(dtype=float))
    if "visit_order" not in v:
        rank = pd.Series(order_key).groupby(codes).rank(method="first").to_numpy(dtype=float)
        v["visit_order"] = rank
    v["date_partial"] = np.isnan(time.value) & ~np.isnan(time.first)
    v["_order"] = order_key
    day = v["day"].to_numpy(dtype=float)
    if dates.sd_from == "randomisation" and "randomisation_date" in v:
        randomised = epoch_days(v["randomisation_date"].to_numpy(dtype="datetime64[ns]"))
        v["sd_day"] = value + time.offset - randomised
    else:
        v["sd_day"] = day


def _link_lesions(visits: pd.DataFrame, lesions: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    """Attach each lesion row to its visit and to its own baseline row; check the lesion bookkeeping.

    Text is compared through integer codes (the reader's categorical codes, or codes made here once per column),
    so no check hashes or compares a million strings."""
    les = lesions.copy(deep=False)
    n = len(les)
    v_subj, l_subj = _shared_codes(visits["subject_id"], les["subject_id"])
    v_tp, l_tp = _shared_codes(visits["timepoint"], les["timepoint"])
    v_key, l_key = _pair_keys((v_subj, v_tp), (l_subj, l_tp))
    visit_dup = pd.Series(v_key).duplicated(keep=False).to_numpy()
    first_visit = ~pd.Series(v_key).duplicated(keep="first").to_numpy()
    vpos = _positions(v_key[first_visit], l_key)
    orphan = vpos < 0
    problems.add(les, orphan, "unknown_timepoint", "lesion {lesion_id} names a timepoint this subject does not have")
    base_flags = visits["is_baseline"].to_numpy(dtype=bool)[first_visit]
    is_base = ~orphan & base_flags[np.maximum(vpos, 0)] if n else np.zeros(0, dtype=bool)
    les["is_baseline"] = is_base

    lesion_code = text_codes(les["lesion_id"])[0]
    row_key = _pair_key(l_key, lesion_code)
    dup = pd.Series(row_key).duplicated(keep="first").to_numpy()
    # A timepoint id given twice already made the subject unscorable; its lesions are not duplicates too.
    in_twice_visit = np.isin(l_key, v_key[visit_dup]) if visit_dup.any() else np.zeros(n, dtype=bool)
    problems.add(
        les,
        dup & ~in_twice_visit,
        "duplicate_lesion",
        "lesion id {lesion_id} appears twice in timepoint {timepoint}; each lesion is listed once per "
        "timepoint (use fragments_mm for a split lesion)",
    )

    pair = _pair_key(l_subj, lesion_code)
    base_mask = is_base & ~dup & (pair >= 0)
    base_rows = np.flatnonzero(base_mask)
    pos = _positions(pair[base_mask], pair)
    base_row = np.where(pos >= 0, base_rows[np.maximum(pos, 0)] if len(base_rows) else -1, -1)
    has_base = base_row >= 0
    _kind_checks(les, is_base, has_base, base_row, orphan, problems)
    _inherit(les, is_base, has_base, base_row, problems)
    _units_check(les, problems)
    _measurement_checks(les, is_base, problems)
    return les


def _kind_checks(
    les: pd.DataFrame,
    is_base: np.ndarray,
    has_base: np.ndarray,
    base_row: np.ndarray,
    orphan: np.ndarray,
    problems: Problems,
) -> None:
    """A lesion's kind is chosen at baseline and kept: none missing there, no new lesion there, no target first
    seen at follow-up, no kind changed later."""
    kind, names = text_codes(les["kind"])
    kind_missing = kind < 0
    base_kind = np.where(has_base, kind[np.maximum(base_row, 0)], -1) if len(kind) else kind
    problems.add(
        les,
        is_base & kind_missing,
        "kind_missing_at_baseline",
        "lesion {lesion_id} has no kind at baseline; give kind: target, non_target or ablated",
    )
    problems.add(
        les,
        is_base & _word_mask(kind, names, "new"),
        "new_lesion_at_baseline",
        "lesion {lesion_id} is kind new at baseline; lesions present at baseline are target or non_target",
    )
    first_at_fu = ~is_base & ~has_base & ~orphan
    problems.add(
        les,
        first_at_fu & _word_mask(kind, names, "target", "non_target", "ablated"),
        "target_first_seen_at_follow_up",
        "lesion {lesion_id} is {kind} but first appears at {timepoint}; target and non-target lesions are "
        "chosen at baseline (RECIST 1.1 §4.2), a lesion first seen at follow-up is kind: new",
    )
    problems.add(
        les,
        first_at_fu & kind_missing,
        "kind_missing_for_new_lesion",
        "lesion {lesion_id} first appears at {timepoint} without a kind; a lesion first seen at follow-up is kind: new",
    )
    changed = ~is_base & has_base & ~kind_missing & (kind != base_kind)
    if changed.any():
        problems.add(
            les,
            changed,
            "kind_changed",
            "lesion {lesion_id} is {base_kind} at baseline but {kind} at {timepoint}; a lesion keeps its "
            "baseline kind (a new lesion needs a new id)",
            extra={"base_kind": with_none(names)[base_kind]},
        )


def _inherit(
    les: pd.DataFrame, is_base: np.ndarray, has_base: np.ndarray, base_row: np.ndarray, problems: Problems
) -> None:
    """What a follow-up row may leave out comes from the lesion's baseline row: its kind and whether it is a node
    (when not given), its organ (always; a different organ is a warning); a node is also known by its organ."""
    safe = np.maximum(base_row, 0)
    for column in ("kind", "organ"):
        codes, names = text_codes(les[column])
        base_codes = codes[safe] if len(codes) else codes
        if column == "organ":
            differs = has_base & (codes >= 0) & (base_codes >= 0) & (codes != base_codes) & ~is_base
            if differs.any():
                problems.add(
                    les,
                    differs,
                    "lesion_organ_changed",
                    "lesion {lesion_id} is recorded in {organ} at {timepoint} but in {base_organ} at baseline; "
                    "the baseline organ is used",
                    severity="warning",
                    extra={"base_organ": with_none(names)[base_codes]},
                )
            inherited = np.where(has_base, base_codes, codes)
        else:
            inherited = np.where(has_base & (codes < 0), base_codes, codes)
        les[column] = _text_like(les[column], inherited, names)
    node = les["is_lymph_node"].to_numpy(dtype=float)
    base_node = node[safe] if len(node) else node
    node = np.where(has_base & np.isnan(node), base_node, node)
    organ, organ_names = text_codes(les["organ"])
    node_names = pd.Series(organ_names, dtype=object).astype(str).str.contains("lymph|node", regex=True).to_numpy()
    node_from_organ = np.append(node_names.astype(bool), False)[organ]
    les["is_lymph_node"] = np.where(np.isnan(node), node_from_organ.astype(float), node)


def _measurement_checks(les: pd.DataFrame, is_base: np.ndarray, problems: Problems) -> None:
    """Measurements the criteria cannot do without."""
    kind, kind_names = text_codes(les["kind"])
    status, status_names = text_codes(les["status"])
    is_node = les["is_lymph_node"].to_numpy(dtype=float) == 1
    target = _word_mask(kind, kind_names, "target")
    present = _word_mask(status, status_names, "present")
    no_ld = np.isnan(_numbers(les, "longest_diameter_mm")) & np.isnan(_numbers(les, "fragments_sum_mm"))
    problems.add(
        les,
        target & is_node & present & np.isnan(_numbers(les, "short_axis_mm")),
        "target_node_without_short_axis",
        "target lymph node {lesion_id} at {timepoint} has no short_axis_mm; nodes are measured in short axis "
        "(RECIST 1.1), or give status too_small / not_evaluated",
    )
    problems.add(
        les,
        target & ~is_node & present & no_ld,
        "target_without_longest_diameter",
        "target lesion {lesion_id} at {timepoint} has no longest_diameter_mm; give the measurement, or status "
        "disappeared / too_small / not_evaluated",
    )
    problems.add(
        les,
        target & _word_mask(status, status_names, "unequivocal_progression"),
        "status_not_allowed",
        "target lesion {lesion_id} has status unequivocal_progression, which applies to non-target lesions "
        "only; record the measured size instead",
    )
    problems.add(
        les,
        is_base & target & ~present,
        "baseline_target_not_measured",
        "target lesion {lesion_id} has status {status} at baseline; every target must be measured at baseline",
    )
    coalesced = _word_mask(status, status_names, "coalesced")
    if coalesced.any() and "coalesced_into" in les:
        own = pd.MultiIndex.from_arrays(
            [
                les["subject_id"].to_numpy(dtype=object),
                les["timepoint"].to_numpy(dtype=object),
                les["lesion_id"].to_numpy(dtype=object),
            ]
        )
        carrier = pd.MultiIndex.from_arrays(
            [
                les["subject_id"].to_numpy(dtype=object),
                les["timepoint"].to_numpy(dtype=object),
                les["coalesced_into"].to_numpy(dtype=object),
            ]
        )
        found = own.drop_duplicates().get_indexer(carrier) >= 0
        problems.add(
            les,
            coalesced & (pd.isna(les["coalesced_into"].to_numpy(dtype=object)) | ~found),
            "coalesced_without_carrier",
            "lesion {lesion_id} at {timepoint} is coalesced but coalesced_into does not name a lesion of the "
            "same timepoint; name the lesion that carries the merged diameter (RECIST 1.1 §4.3)",
        )


def _units_check(les: pd.DataFrame, problems: Problems) -> None:
    """Every measured baseline target under 10: the sizes were probably typed in centimetres."""
    node = les["is_lymph_node"].to_numpy(dtype=float) == 1
    size = np.where(node, _numbers(les, "short_axis_mm"), _numbers(les, "longest_diameter_mm"))
    kind, kind_names = text_codes(les["kind"])
    measured = les["is_baseline"].to_numpy(dtype=bool) & _word_mask(kind, kind_names, "target") & ~np.isnan(size)
    if not measured.any():
        return
    subject = text_codes(les["subject_id"])[0][measured]
    top = np.full(int(subject.max()) + 2, -np.inf)
    np.maximum.at(top, subject, size[measured])  # a missing subject (-1) lands in the spare last slot
    if not ((top < 10) & (top > 0)).any():
        return
    frame = pd.DataFrame({"s": les["subject_id"].to_numpy(dtype=object)[measured], "v": size[measured]})
    largest = frame.groupby("s")["v"].max()
    suspicious = largest[(largest < 10) & (largest > 0)]
    if suspicious.empty:
        return
    first = les.loc[measured].drop_duplicates("subject_id")
    hit = first["subject_id"].isin(suspicious.index).to_numpy()
    problems.add(
        first,
        hit,
        "units_look_like_cm",
        "every baseline target of this subject measures under 10 (largest {largest}): are the sizes in "
        "centimetres? Sizes are in mm; scored as given",
        severity="warning",
        extra={"largest": first["subject_id"].map(suspicious).to_numpy(dtype=object)},
    )


def _key(
    visits: pd.DataFrame, lesions: pd.DataFrame, subjects: pd.DataFrame, settings: dict[str, dict[str, dict[str, Any]]]
) -> Prepared:
    """Sort and add integer keys (see `Prepared`). Subjects are ordered by id, so results never depend on the
    order of the input rows."""
    v_subj, l_subj = _shared_codes(visits["subject_id"], lesions["subject_id"])
    subject_order, rank = _id_order(visits["subject_id"], v_subj, l_subj)
    subj_key_v = rank[v_subj]
    # Baseline first, then assessment order (VISITNUM, or time), then day.
    order_key = visits["_order"].to_numpy(dtype=float) if "_order" in visits else visits["day"].to_numpy(dtype=float)
    baseline_last = ~visits["is_baseline"].to_numpy(dtype=bool) if "is_baseline" in visits else np.zeros(len(visits))
    order = np.lexsort((visits["day"].to_numpy(dtype=float), order_key, baseline_last, subj_key_v))
    v = visits.iloc[order].reset_index(drop=True).drop(columns=["_order"], errors="ignore")
    v["subj_key"] = subj_key_v[order]
    v["tp_order"] = v.groupby("subj_key").cumcount().to_numpy()
    v["is_baseline"] = v["tp_order"].to_numpy() == 0

    v_tp, l_tp = _shared_codes(v["timepoint"], lesions["timepoint"])
    v_key, l_key = _pair_keys((v["subj_key"].to_numpy().astype(np.int64), v_tp), (rank[l_subj], l_tp))
    tp_key = _positions(v_key, l_key)
    lesion_code = _lesion_order(lesions["lesion_id"]) if len(lesions) else np.array([], dtype=np.int64)
    lorder = _int_lexsort(lesion_code, tp_key)
    # Columns no row fills (most exports carry few of the optional fields) are not carried along.
    empty = [c for c in lesions.columns if c not in ESSENTIAL_LESION_COLUMNS and lesions[c].isna().all()]
    les = lesions.drop(columns=empty).iloc[lorder].reset_index(drop=True)
    les["tp_key"] = tp_key[lorder]
    visit_of = les["tp_key"].to_numpy()
    les["subj_key"] = v["subj_key"].to_numpy()[visit_of] if len(les) else np.array([], dtype=int)
    les["is_baseline"] = v["is_baseline"].to_numpy()[visit_of] if len(les) else np.array([], dtype=bool)
    les["day"] = v["day"].to_numpy()[visit_of] if len(les) else np.array([], dtype=float)

    codes = lesion_code[lorder].astype(np.int64)
    pair = _pair_key(les["subj_key"].to_numpy().astype(np.int64), codes)
    base_mask = les["is_baseline"].to_numpy(dtype=bool) & (pair >= 0)
    base_rows = np.flatnonzero(base_mask)
    pos = _positions(pair[base_mask], pair)
    les["base_row"] = np.where(pos >= 0, base_rows[np.maximum(pos, 0)] if len(base_rows) else -1, -1)

    subj = subjects.drop_duplicates("subject_id")
    subj = subj.set_index("subject_id").reindex(subject_order).reset_index(names="subject_id")
    subj["subj_key"] = np.arange(len(subj))
    return Prepared(subjects=subj, visits=v, lesions=les, settings=settings)


def _int_lexsort(*keys: np.ndarray) -> np.ndarray:
    """`np.lexsort` of integer keys (the last one first), as one stable sort of a combined key when it fits."""
    if not len(keys[0]):
        return np.zeros(0, dtype=np.int64)
    combined = np.zeros(len(keys[0]), dtype=np.int64)
    span_so_far = 1
    for key in reversed(keys):
        low, high = int(key.min()), int(key.max())
        span = high - low + 1
        span_so_far *= span
        if span_so_far >= 2**62:
            return np.lexsort(keys)
        combined = combined * span + (key.astype(np.int64) - low)
    return np.argsort(combined, kind="stable")


def _id_order(ids: Any, codes: np.ndarray, *others: np.ndarray) -> tuple[pd.Index, np.ndarray]:
    """The subjects that have visits, ordered by id text, and each code's rank in that order (-1: a code with no
    visit; a missing code, -1, also maps to -1 through the spare last slot)."""
    width = max([int(c.max()) + 1 for c in (codes, *others) if len(c)], default=0)
    used = np.unique(codes[codes >= 0])
    if isinstance(ids.array, pd.Categorical):
        names = text_codes(ids)[1]
    else:  # plain text: the codes came from factorizing the columns together; name each by a row that has it
        row_of = np.zeros(width, dtype=np.int64)
        row_of[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
        names = np.full(width, None, dtype=object)
        names[used] = np.asarray(ids, dtype=object)[row_of[used]]
    ordered = sorted(used.tolist(), key=lambda c: str(names[c]))
    rank = np.full(width + 1, -1, dtype=np.int64)
    rank[ordered] = np.arange(len(ordered))
    return pd.Index([names[c] for c in ordered], dtype=object), rank


def _lesion_order(lesion_ids: pd.Series) -> np.ndarray:
    """Each lesion id's place among the ids sorted as text (ties: equal text)."""
    codes, names = text_codes(lesion_ids)
    ranks = pd.factorize(names.astype(str), sort=True)[0]
    return np.append(ranks, -1)[codes]


def validate_and_prepare(tables: Tables, dates: DateOptions | None = None) -> tuple[Prepared, pd.DataFrame]:
    """Check the tables, drop subjects with errors, and key the rest.

    Returns the prepared tables of every subject without an error, and all problems found (errors and
    warnings). The caller decides what an error means: `assess` refuses the case, `batch` sets the
    subject's rows aside in the errors output. `dates`: imputation of partial dates, the stable-disease reference.
    """
    problems = Problems()
    visits = tables.visits
    if "randomisation_date" in tables.subjects:
        randomised = tables.subjects.drop_duplicates("subject_id").set_index("subject_id")["randomisation_date"]
        visits = visits.assign(randomisation_date=randomised.reindex(visits["subject_id"]).to_numpy())
    visits = _resolve_days(visits, problems, dates)
    lesions = _link_lesions(visits, tables.lesions, problems)
    found = problems.frame()
    bad = set(found.loc[found["severity"] == "error", "subject_id"].tolist())
    if bad:
        visits = visits.loc[~visits["subject_id"].isin(bad)].reset_index(drop=True)
        lesions = lesions.loc[~lesions["subject_id"].isin(bad)].reset_index(drop=True)
    subjects = tables.subjects.loc[~tables.subjects["subject_id"].isin(bad)]
    settings = {k: s for k, s in tables.settings.items() if k not in bad}
    prepared = _key(visits, lesions, subjects, settings)
    prepared.dates = dates.parameters() if dates is not None else {}
    return prepared, found

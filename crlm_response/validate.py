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


def _unmeasured(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Rows without a value in a numeric column (all of them when the input does not have it)."""
    if column not in frame:
        return np.ones(len(frame), dtype=bool)
    return np.isnan(frame[column].to_numpy(dtype=float))


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def _given_dates(v: pd.DataFrame) -> pd.Series | None:
    """The visits' `date` column parsed once (datetime64, date objects or ISO text); None when no visit has a date,
    as in most trial exports, which time their visits by day: then no date work is done at all."""
    if "date" not in v or not v["date"].notna().to_numpy().any():
        return None
    return pd.to_datetime(v["date"], errors="coerce")


def _date_days(stamps: pd.Series | None, n: int) -> np.ndarray:
    """Parsed dates (`_given_dates`) -> days since 1970-01-01 as float (NaN if missing)."""
    days = np.full(n, np.nan)
    if stamps is None:
        return days
    ok = stamps.notna().to_numpy()
    if ok.any():
        days[ok] = stamps[ok].to_numpy().astype("datetime64[D]").astype(np.int64)
    return days


def _shared_codes(*columns: Any) -> list[np.ndarray]:
    """Integer codes for values that must match across columns (e.g. subject ids of visits and of lesions); -1 for
    a missing value. Categorical text columns over the same categories (the reader's codes) are used as they are,
    in their own small integer type (arithmetic on them widens first: see `_pair_of`)."""
    arrays = [c.array if isinstance(c, pd.Series) else c for c in columns]
    coded = [a for a in arrays if isinstance(a, pd.Categorical)]
    if arrays and len(coded) == len(arrays):
        first = coded[0].categories
        if all(a.categories is first or a.categories.equals(first) for a in coded[1:]):
            return [a.codes for a in coded]
    joined = np.concatenate([np.asarray(a, dtype=object) for a in arrays]) if arrays else np.zeros(0, dtype=object)
    codes = pd.factorize(joined, use_na_sentinel=True)[0].astype(np.int64)
    out, start = [], 0
    for a in arrays:
        out.append(codes[start : start + len(a)])
        start += len(a)
    return out


def _positions(keys: np.ndarray, wanted: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """Where each of `wanted` is among `keys` (distinct integers >= 0): its index, or `values` (integers >= 0) at
    that index, or -1 (also for a negative key). Small key ranges use a lookup array, large ones a hash index."""
    if not len(keys) or not len(wanted):
        return np.full(len(wanted), -1, dtype=np.int64)
    top = int(max(keys.max(), wanted.max())) + 1
    if top > 4 * (len(keys) + len(wanted)) + 1024:
        found = pd.Index(keys).get_indexer(wanted).astype(np.int64)
        return found if values is None else np.where(found >= 0, values[np.maximum(found, 0)], -1)
    table = np.full(top + 1, -1, dtype=np.int64)
    table[keys] = np.arange(len(keys)) if values is None else values
    return table[wanted if wanted.min() >= 0 else np.where(wanted >= 0, wanted, top)]


def _codes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """`text_codes`, but a categorical's codes stay in their own small integer type: the lesion checks pass a
    million of them through several steps, and a byte each moves faster than eight."""
    array = values.array if isinstance(values, pd.Series) else values
    if isinstance(array, pd.Categorical):
        return array.codes, array.categories.to_numpy(dtype=object)
    return text_codes(values)


def _word_mask(codes: np.ndarray, names: np.ndarray, *words: str) -> np.ndarray:
    """Rows whose text (codes into `names`) is one of `words`; never a missing value. A few words are found by
    comparing codes, which costs less than looking each row's code up."""
    named = np.isin(names, list(words))
    hits = np.flatnonzero(named)
    if len(hits) > 4:
        return np.append(named, False)[codes]
    mask = np.zeros(len(codes), dtype=bool)
    for code in hits:
        mask |= codes == int(code)
    return mask


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
    return [_pair_of(a, b, width) for a, b in pairs]


def _pair_of(a: np.ndarray, b: np.ndarray, width: int) -> np.ndarray:
    keys = np.multiply(a, width, dtype=np.int64)
    keys += b
    if len(a) and (a.min() < 0 or b.min() < 0):
        keys[(a < 0) | (b < 0)] = -1
    return keys


def _pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`_pair_keys` for one pair (keys only compared among themselves)."""
    return _pair_keys((a, b))[0]


def _value_pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One integer per pair of codes, a missing value (-1) counting as a value of its own, as
    `DataFrame.duplicated` counts it."""
    width = int(b.max()) + 2 if len(b) else 1
    return (a.astype(np.int64) + 1) * width + (b.astype(np.int64) + 1)


def _repeats(keys: np.ndarray, runs: np.ndarray | None = None) -> np.ndarray:
    """Rows whose integer key an earlier row already has (`duplicated(keep="first")`). Keys in ascending order,
    as rows grouped by subject and visit usually come, only need comparing with their neighbour.

    `runs`: when two rows can only have the same key if they have the same run (the lesions of one visit, for
    lesion keys), and equal runs are adjacent, each row need only be compared with the few rows before it."""
    n = len(keys)
    if n < 2:
        return np.zeros(n, dtype=bool)
    if (keys[1:] >= keys[:-1]).all():
        return np.r_[False, keys[1:] == keys[:-1]]
    longest = _longest_run(runs) if runs is not None and keys.min() >= 0 else None
    if longest is not None and longest <= 32:
        repeat = np.zeros(n, dtype=bool)
        for back in range(1, longest):
            repeat[back:] |= keys[back:] == keys[:-back]
        return repeat
    return pd.Series(keys).duplicated(keep="first").to_numpy()


def _longest_run(runs: np.ndarray) -> int | None:
    """The length of the longest run of equal values, or None when equal values are not all adjacent (not sorted)."""
    if not (runs[1:] >= runs[:-1]).all():
        return None
    starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])
    return int(np.diff(np.r_[starts, len(runs)]).max())


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
    `offset` turns the axis into calendar dates (epoch days = value + offset; NaN when not tied). `ranged`: the
    visit's date is a month or a year."""

    value: np.ndarray
    offset: np.ndarray
    first: np.ndarray
    mid: np.ndarray
    last: np.ndarray
    precision: np.ndarray
    use_days: np.ndarray
    ranged: np.ndarray


def _date_range(v: pd.DataFrame, name: str, offset: np.ndarray) -> np.ndarray:
    """A partial date's first or last day on the time axis (NaN: none)."""
    if name not in v:
        return np.full(len(v), np.nan)
    return epoch_days(v[name].to_numpy(dtype="datetime64[ns]")) - offset


def _precision(v: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each visit's date precision (None: a full date or none), and whether it is a month or a year."""
    if "date_precision" not in v:
        return np.full(len(v), None), np.zeros(len(v), dtype=bool)
    precision = v["date_precision"].to_numpy(dtype=object)
    return precision, np.isin(precision, ["month", "year"])


def _placed_time(v: pd.DataFrame) -> _Time:
    """A reader that placed its visits in time itself (SDTM: study days, VISITNUM) gives the axis directly."""
    n = len(v)
    offset = v["day_offset"].to_numpy(dtype=float)
    precision, ranged = _precision(v)
    first, last = _date_range(v, "date_first", offset), _date_range(v, "date_last", offset)
    mid = _mid_days(v, precision, offset)
    day = v["day"].to_numpy(dtype=float)
    return _Time(day, offset, first, mid, last, precision, np.ones(n, dtype=bool), ranged)


def _mid_days(v: pd.DataFrame, precision: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The "mid" candidate of each partial date on the time axis (NaN: none)."""
    if "date_first" not in v:
        return np.full(len(v), np.nan)
    mid = mid_dates(v["date_first"].to_numpy(dtype="datetime64[ns]"), precision)
    return epoch_days(mid.astype("datetime64[ns]")) - offset


def _long_time(v: pd.DataFrame, codes: np.ndarray, n_subjects: int, date_days: np.ndarray, problems: Problems) -> _Time:
    """Case files and long tables: each subject is timed by days when every timed visit has one, else by dates
    (`date_days`: each visit's full date as epoch days). A visit with only a partial date is placed by its range
    (see `_visit_order`)."""
    day_given = v["day"].to_numpy(dtype=float)
    has_day, has_date = ~np.isnan(day_given), ~np.isnan(date_days)
    precision, ranged = _precision(v)
    partial = ~has_day & ~has_date & ranged
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
    first, last = _date_range(v, "date_first", offset), _date_range(v, "date_last", offset)
    mid = _mid_days(v, precision, offset)
    return _Time(value, offset, first, mid, last, precision, use_days, ranged)


def _visit_order(v: pd.DataFrame, codes: np.ndarray, time: _Time, problems: Problems) -> np.ndarray:
    """The order of visits within a subject: VISITNUM when the reader gives it, else time (a partial date by its
    range, which must not overlap another visit's date: their order would be unknown)."""
    if "visit_order" in v:
        return _dated_visit_order(v, codes, time, problems)
    key = np.where(np.isnan(time.value), (time.first + time.last) / 2.0, time.value)
    partial = np.isnan(time.value) & time.ranged
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


def _named_baseline(tp_codes: np.ndarray, tp_names: np.ndarray) -> np.ndarray:
    """Visits whose timepoint is named like a baseline (each distinct name looked at once)."""
    named = np.array([str(t).strip().lower() in BASELINE_NAMES for t in tp_names], dtype=bool)
    return np.append(named, False)[tp_codes]


def _choose_baseline(
    v: pd.DataFrame,
    codes: np.ndarray,
    n_subjects: int,
    order_key: np.ndarray,
    sequence: np.ndarray,
    named: np.ndarray,
    day_zero: np.ndarray,
    problems: Problems,
) -> np.ndarray:
    """A timepoint named like a baseline, else the one on day 0 (long tables), else the first in order
    (`sequence`: `np.lexsort((order_key, codes))`)."""
    priority = np.where(named, 0, np.where(day_zero, 1, 2))
    order = _by_priority(codes, priority, order_key, sequence)
    first = np.zeros(len(v), dtype=bool)
    if len(order):
        sorted_codes = codes[order]
        first[order[np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]]] = True
    passed_over = named & ~first
    if passed_over.any():
        n_named = np.bincount(codes, weights=named.astype(float), minlength=n_subjects)[codes]
        problems.add(
            v,
            passed_over & (n_named > 1),
            "two_baselines",
            "timepoint {timepoint} is named like a baseline but another timepoint is the baseline; rename one of them",
        )
    return first


def _by_priority(codes: np.ndarray, priority: np.ndarray, key: np.ndarray, sequence: np.ndarray) -> np.ndarray:
    """The rows by subject, priority, then `key` (a missing key last) and row: `sequence` (by subject and key)
    sorted again by subject and priority, stably. An infinite key, which would tie with a missing one, takes the
    full sort."""
    if np.isinf(key).any():
        return np.lexsort((np.nan_to_num(key, nan=np.inf), priority, codes))
    return sequence[np.argsort(codes[sequence] * 3 + priority[sequence], kind="stable")]


def _warn_unnamed_late_baseline(
    v: pd.DataFrame, first: np.ndarray, named: np.ndarray, late: np.ndarray, problems: Problems
) -> None:
    """A baseline taken by order that the table itself dates after day 0 is most likely a follow-up whose baseline
    scan is missing from the file: every response of the subject would be measured from the wrong scan."""
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
    v = visits.copy(deep=False)  # columns are replaced, never written into
    codes, uniques = text_codes(v["subject_id"])
    n_subjects = len(uniques)
    tp_codes, tp_names = text_codes(v["timepoint"])

    dup = _repeats(_value_pair_key(codes, tp_codes))
    problems.add(
        v,
        dup,
        "duplicate_timepoint",
        "timepoint id {timepoint} appears twice for this subject; give each timepoint its own id",
    )
    placed = "day_offset" in v
    stamps = _given_dates(v)
    date_days = _date_days(stamps, len(v))
    time = _placed_time(v) if placed else _long_time(v, codes, n_subjects, date_days, problems)
    order_key = _visit_order(v, codes, time, problems)
    sequence = _lexsort((order_key, codes))
    imputed = _impute(v, codes, sequence, time, dates.imputation)
    value = np.where(np.isnan(time.value), imputed.value, time.value)

    day_given = v["day"].to_numpy(dtype=float)
    day_zero = ~placed & time.use_days & (day_given == 0)
    named = _named_baseline(tp_codes, tp_names)
    first = _choose_baseline(v, codes, n_subjects, order_key, sequence, named, day_zero, problems)
    _warn_unnamed_late_baseline(v, first, named, ~placed & time.use_days & (day_given > 0), problems)
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
    before_baseline = ~first & np.isnan(day) & (order_key < base_order)
    if before_baseline.any():
        baseline_name = _group_broadcast_object(v["timepoint"].to_numpy(dtype=object), codes, n_subjects, first)
        problems.add(
            v,
            before_baseline,
            "follow_up_not_after_baseline",
            "follow-up {timepoint} comes before the baseline {baseline} in visit order; follow-ups must come after "
            "the baseline scan (check VISITNUM or the dates)",
            extra={"baseline": baseline_name},
        )
    if not placed and stamps is not None:
        _check_day_date(v, problems, codes, n_subjects, first, time, date_days, day)
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
    _date_columns(v, codes, sequence, time, stamps, imputed, order_key, value, dates)
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
    date_days: np.ndarray,
    day: np.ndarray,
) -> None:
    """A timepoint with both a day and a date: the day must be the dates' distance from the baseline date."""
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
    same_day = _repeated_days(codes, day) & ~np.isnan(day) & ~dup
    if same_day.any():
        dated = pd.DataFrame({"s": codes, "d": day, "t": v["timepoint"].to_numpy(dtype=object)})
        first_on_day = dated.dropna(subset=["d"]).drop_duplicates(["s", "d"]).rename(columns={"t": "other"})
        other = dated.merge(first_on_day, on=["s", "d"], how="left")["other"].to_numpy(dtype=object)
        problems.add(
            v,
            same_day,
            "same_day_timepoints",
            "timepoint {timepoint} is on the same day ({day}) as timepoint {other}; merge them into one timepoint",
            extra={"other": other},
        )


def _repeated_days(codes: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Visits on a day an earlier visit of the same subject is on (`duplicated(keep="first")` of the pairs)."""
    if len(day) > 1:
        later_subject = codes[1:] > codes[:-1]
        if (later_subject | ((codes[1:] == codes[:-1]) & (day[1:] >= day[:-1]))).all():
            # rows in subject and day order (as most files list them): a repeat follows its first
            return np.r_[False, ~later_subject & (day[1:] == day[:-1])]
    return _repeats(_value_pair_key(codes, pd.factorize(day)[0]))


def _impute(v: pd.DataFrame, codes: np.ndarray, sequence: np.ndarray, time: _Time, method: str) -> Imputed:
    """`dates.impute` on the visits in assessment order, results back in row order."""
    n = len(v)
    out = Imputed(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, dtype=bool))
    if not (np.isnan(time.value) & ~np.isnan(time.first)).any():
        return out  # no partial date to impute
    result = impute(
        codes[sequence],
        time.value[sequence],
        time.first[sequence],
        time.mid[sequence],
        time.last[sequence],
        method,
    )
    out.value[sequence], out.low[sequence], out.high[sequence] = result.value, result.low, result.high
    out.impossible[sequence] = result.impossible
    return out


def _as_date_text(axis: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Positions on the time axis as YYYY-MM-DD (None where unknown or not tied to the calendar)."""
    epoch = np.asarray(axis, dtype=float) + offset
    if np.isnan(epoch).all():
        return np.full(len(epoch), None, dtype=object)
    stamps = from_epoch_days(epoch)
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
    sequence: np.ndarray,
    time: _Time,
    stamps: pd.Series | None,
    imputed: Imputed,
    order_key: np.ndarray,
    value: np.ndarray,
    dates: DateOptions,
) -> None:
    """The date columns every input shares (see `Prepared`): date (imputed when asked for), date_collected,
    date_imputation (ADTF), study_day, visit_order, and sd_day (days the stable-disease minimum is counted on).
    `stamps`: the dates given (`_given_dates`); `sequence`: the visits in subject, then assessment order."""
    n = len(v)
    if stamps is None:
        full = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    else:
        full = stamps.to_numpy(dtype="datetime64[ns]", copy=True)
    done = ~np.isnan(imputed.value)
    if done.any():
        full[done] = from_epoch_days(imputed.value + time.offset)[done]
    # Text columns stay Python objects (None, not NaN, when absent), whatever pandas infers.
    if "date_collected" not in v:
        dated = stamps is not None or done.any()
        collected = _as_date_text(epoch_days(full), np.zeros(n)) if dated else np.full(n, None, dtype=object)
        v["date_collected"] = pd.Series(collected, index=v.index, dtype=object)
    else:
        v["date_collected"] = v["date_collected"].astype(object).where(v["date_collected"].notna(), None)
    v["date"] = full
    v["date_imputation"] = pd.Series(imputation_flags(imputed.value, time.precision), index=v.index, dtype=object)
    if "study_day" not in v:
        v["study_day"] = np.nan
    if "reference_day" in v:  # ADaM's ADY of an imputed date (SDTM's RSDY stays empty: SDTM does not impute)
        from_imputed = study_day(imputed.value + time.offset, v["reference_day"].to_numpy(dtype=float))
        v["study_day"] = np.where(done, from_imputed, v["study_day"].to_numpy(dtype=float))
    if "visit_order" not in v:
        v["visit_order"] = _rank_in_group(codes, order_key, sequence)
    v["date_partial"] = np.isnan(time.value) & ~np.isnan(time.first)
    v["_order"] = order_key
    day = v["day"].to_numpy(dtype=float)
    if dates.sd_from == "randomisation" and "randomisation_date" in v:
        randomised = epoch_days(v["randomisation_date"].to_numpy(dtype="datetime64[ns]"))
        v["sd_day"] = value + time.offset - randomised
    else:
        v["sd_day"] = day


def _rank_in_group(codes: np.ndarray, key: np.ndarray, sequence: np.ndarray) -> np.ndarray:
    """Each row's rank by `key` within its group (1, 2, ...; ties in row order; NaN for a NaN key), as
    `groupby(codes).rank(method="first")` gives it. `sequence` is `np.lexsort((key, codes))`, which puts a
    group's NaN keys last, so the known keys are ranked first."""
    rank = np.empty(len(codes), dtype=float)
    rank[sequence] = _place_in_run(codes[sequence]) + 1
    rank[np.isnan(key)] = np.nan
    return rank


@dataclass
class _Link:
    """Where `_link_lesions` found each lesion row, kept so that `_key` need not look again: its visit (a row of the
    visits, -1: none), its baseline row (a row of the lesions, -1: none), its lesion id's codes, and whether it
    repeats an earlier row."""

    visit_row: np.ndarray
    base_row: np.ndarray
    lesion_code: np.ndarray
    lesion_names: np.ndarray
    repeat: np.ndarray

    def kept(self, keep_visits: np.ndarray, keep_lesions: np.ndarray) -> _Link:
        """The same after the rows not kept are dropped (a row pointing at a dropped row points nowhere)."""
        visit_row = _renumbered(self.visit_row[keep_lesions], keep_visits)
        base_row = _renumbered(self.base_row[keep_lesions], keep_lesions)
        return _Link(visit_row, base_row, self.lesion_code[keep_lesions], self.lesion_names, self.repeat[keep_lesions])

    def trusted(self) -> bool:
        """Every row has its visit and none is a repeat: keys made anew from the ids would find the same rows."""
        return bool((self.visit_row >= 0).all() and not self.repeat.any())


def _renumbered(rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Row numbers of a table after only its `keep` rows stay (-1: a dropped row, or none)."""
    new_number = np.where(keep, np.cumsum(keep) - 1, -1)
    return np.where(rows >= 0, new_number[np.maximum(rows, 0)], -1) if len(new_number) else np.full(len(rows), -1)


def _link_lesions(visits: pd.DataFrame, lesions: pd.DataFrame, problems: Problems) -> tuple[pd.DataFrame, _Link]:
    """Attach each lesion row to its visit and to its own baseline row; check the lesion bookkeeping.

    Text is compared through integer codes (the reader's categorical codes, or codes made here once per column),
    so no check hashes or compares a million strings."""
    les = lesions.copy(deep=False)
    n = len(les)
    v_subj, l_subj = _shared_codes(visits["subject_id"], les["subject_id"])
    v_tp, l_tp = _shared_codes(visits["timepoint"], les["timepoint"])
    v_key, l_key = _pair_keys((v_subj, v_tp), (l_subj, l_tp))
    visit_repeat = _repeats(v_key)
    first_visit = np.flatnonzero(~visit_repeat)
    visit_row = _positions(v_key[first_visit], l_key, values=first_visit)
    orphan = visit_row < 0
    problems.add(les, orphan, "unknown_timepoint", "lesion {lesion_id} names a timepoint this subject does not have")
    base_flags = visits["is_baseline"].to_numpy(dtype=bool)
    if n and orphan.any():
        is_base = ~orphan & base_flags[np.maximum(visit_row, 0)]
    else:
        is_base = base_flags[visit_row] if n else np.zeros(0, dtype=bool)
    les["is_baseline"] = is_base

    lesion_code, lesion_names = _codes(les["lesion_id"])
    row_key = _pair_key(l_key, lesion_code)
    dup = _repeats(row_key, runs=l_key)
    # A timepoint id given twice already made the subject unscorable; its lesions are not duplicates too.
    in_twice_visit = np.isin(l_key, v_key[visit_repeat]) if visit_repeat.any() else np.zeros(n, dtype=bool)
    problems.add(
        les,
        dup & ~in_twice_visit,
        "duplicate_lesion",
        "lesion id {lesion_id} appears twice in timepoint {timepoint}; each lesion is listed once per "
        "timepoint (use fragments_mm for a split lesion)",
    )

    pair = _pair_key(l_subj, lesion_code)
    base_mask = is_base & ~dup & (pair >= 0)
    base_row = _positions(pair[base_mask], pair, values=np.flatnonzero(base_mask))
    has_base = base_row >= 0
    at_base = np.maximum(base_row, 0)  # a row without a baseline row points at row 0 (masked by has_base)
    kind = _codes(les["kind"])
    kind_at_base = kind[0][at_base] if n else kind[0]
    _kind_checks(les, kind, kind_at_base, is_base, has_base, orphan, problems)
    kind = _inherit(les, kind, kind_at_base, is_base, has_base, at_base, problems)
    _units_check(les, kind, l_subj, problems)
    _measurement_checks(les, kind, is_base, problems)
    return les, _Link(visit_row, base_row, lesion_code, lesion_names, dup)


def _kind_checks(
    les: pd.DataFrame,
    kind_codes: tuple[np.ndarray, np.ndarray],
    kind_at_base: np.ndarray,
    is_base: np.ndarray,
    has_base: np.ndarray,
    orphan: np.ndarray,
    problems: Problems,
) -> None:
    """A lesion's kind is chosen at baseline and kept: none missing there, no new lesion there, no target first
    seen at follow-up, no kind changed later. `kind_codes`: `text_codes` of the kind column; `kind_at_base`: the
    codes at each row's baseline row (meaningless where there is none)."""
    kind, names = kind_codes
    kind_missing = kind < 0
    base_kind = np.where(has_base, kind_at_base, -1) if len(kind) else kind
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
    les: pd.DataFrame,
    kind_codes: tuple[np.ndarray, np.ndarray],
    kind_at_base: np.ndarray,
    is_base: np.ndarray,
    has_base: np.ndarray,
    at_base: np.ndarray,
    problems: Problems,
) -> tuple[np.ndarray, np.ndarray]:
    """What a follow-up row may leave out comes from the lesion's baseline row: its kind and whether it is a node
    (when not given), its organ (always; a different organ is a warning); a node is also known by its organ.
    `at_base`: each row's baseline row (any row where it has none). Returns the codes of the kind column as it is
    now (`kind_codes`, `kind_at_base`: as it was)."""
    now: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for column in ("kind", "organ"):
        codes, names = kind_codes if column == "kind" else _codes(les[column])
        base_codes = kind_at_base if column == "kind" else codes[at_base] if len(codes) else codes
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
        if not (_plain_categorical(les[column]) and np.array_equal(inherited, codes)):
            les[column] = _text_like(les[column], inherited, names)
        now[column] = (inherited, names)
    _inherit_node(les, has_base, at_base, now["organ"])
    return now["kind"]


def _plain_categorical(column: pd.Series) -> bool:
    """Categorical text that `_text_like` would build again as it is (so it need not be built when no code
    changes)."""
    dtype = column.dtype
    return isinstance(dtype, pd.CategoricalDtype) and not dtype.ordered and dtype.categories.dtype == object


def _inherit_node(
    les: pd.DataFrame, has_base: np.ndarray, at_base: np.ndarray, organ_codes: tuple[np.ndarray, np.ndarray]
) -> None:
    """Whether a lesion is a node: as given, else as at its baseline, else by its organ's name."""
    given = les["is_lymph_node"]
    node = given.to_numpy(dtype=float)
    unknown = np.isnan(node)
    if given.dtype == np.float64 and not unknown.any():
        return  # every row says it: the column stays as it is
    base_node = node[at_base] if len(node) else node
    node = np.where(has_base & unknown, base_node, node)
    organ, organ_names = organ_codes
    node_names = pd.Series(organ_names, dtype=object).astype(str).str.contains("lymph|node", regex=True).to_numpy()
    node_from_organ = np.append(node_names.astype(bool), False)[organ]
    les["is_lymph_node"] = np.where(np.isnan(node), node_from_organ.astype(float), node)


def _measurement_checks(
    les: pd.DataFrame, kind_codes: tuple[np.ndarray, np.ndarray], is_base: np.ndarray, problems: Problems
) -> None:
    """Measurements the criteria cannot do without (`kind_codes`: `text_codes` of the kind column)."""
    kind, kind_names = kind_codes
    status, status_names = _codes(les["status"])
    is_node = les["is_lymph_node"].to_numpy(dtype=float) == 1
    target = _word_mask(kind, kind_names, "target")
    present = _word_mask(status, status_names, "present")
    no_ld = _unmeasured(les, "longest_diameter_mm") & _unmeasured(les, "fragments_sum_mm")
    problems.add(
        les,
        target & is_node & present & _unmeasured(les, "short_axis_mm"),
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


def _units_check(
    les: pd.DataFrame, kind_codes: tuple[np.ndarray, np.ndarray], subject_codes: np.ndarray, problems: Problems
) -> None:
    """Every measured baseline target under 10: the sizes were probably typed in centimetres."""
    kind, kind_names = kind_codes
    rows = np.flatnonzero(les["is_baseline"].to_numpy(dtype=bool) & _word_mask(kind, kind_names, "target"))
    node = les["is_lymph_node"].to_numpy(dtype=float)[rows] == 1
    size = np.where(node, _numbers(les, "short_axis_mm")[rows], _numbers(les, "longest_diameter_mm")[rows])
    rows, size = rows[~np.isnan(size)], size[~np.isnan(size)]
    if not len(rows):
        return
    if not _some_largest_under_10(subject_codes[rows], size):
        return
    measured = np.zeros(len(les), dtype=bool)
    measured[rows] = True
    frame = pd.DataFrame({"s": les["subject_id"].to_numpy(dtype=object)[measured], "v": size})
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


def _some_largest_under_10(subject: np.ndarray, size: np.ndarray) -> bool:
    """Whether some subject's largest size is above 0 and under 10 (a missing subject, -1, counts as one)."""
    slot = subject.astype(np.int64) + 1
    width = int(slot.max()) + 1
    above_zero = np.bincount(slot[size > 0], minlength=width) > 0
    ten_or_more = np.bincount(slot[size >= 10], minlength=width) > 0
    return bool((above_zero & ~ten_or_more).any())


def _key(
    visits: pd.DataFrame,
    lesions: pd.DataFrame,
    subjects: pd.DataFrame,
    settings: dict[str, dict[str, dict[str, Any]]],
    link: _Link,
) -> Prepared:
    """Sort and add integer keys (see `Prepared`). Subjects are ordered by id, so results never depend on the
    order of the input rows. `link`: where `_link_lesions` found each lesion row's visit and baseline row."""
    v_subj, l_subj = _shared_codes(visits["subject_id"], lesions["subject_id"])
    subject_order, rank = _id_order(visits["subject_id"], v_subj, l_subj)
    subj_key_v = rank[v_subj]
    # Baseline first, then assessment order (VISITNUM, or time), then day.
    order_key = visits["_order"].to_numpy(dtype=float) if "_order" in visits else visits["day"].to_numpy(dtype=float)
    baseline_last = ~visits["is_baseline"].to_numpy(dtype=bool) if "is_baseline" in visits else np.zeros(len(visits))
    order = _lexsort((visits["day"].to_numpy(dtype=float), order_key, baseline_last, subj_key_v))
    v = _rows(visits, order).drop(columns=["_order"], errors="ignore")
    v["subj_key"] = subj_key_v[order]
    v["tp_order"] = _place_in_run(v["subj_key"].to_numpy())
    v["is_baseline"] = v["tp_order"].to_numpy() == 0

    trusted = link.trusted()
    if trusted:  # each lesion row's visit is known: follow it to its place in the sorted visits
        place = np.empty(len(order), dtype=np.int64)
        place[order] = np.arange(len(order))
        tp_key = place[link.visit_row]
        lesion_code = _text_rank(link.lesion_code, link.lesion_names)
    else:
        v_tp, l_tp = _shared_codes(v["timepoint"], lesions["timepoint"])
        v_key, l_key = _pair_keys((v["subj_key"].to_numpy().astype(np.int64), v_tp), (rank[l_subj], l_tp))
        tp_key = _positions(v_key, l_key)
        lesion_code = _lesion_order(lesions["lesion_id"]) if len(lesions) else np.array([], dtype=np.int64)
    lorder = _int_lexsort(lesion_code, tp_key)
    # Columns no row fills (most exports carry few of the optional fields) are not carried along.
    empty = [c for c in lesions.columns if c not in ESSENTIAL_LESION_COLUMNS and _unfilled(lesions[c])]
    les = _rows(lesions.drop(columns=empty), lorder)
    les["tp_key"] = tp_key[lorder]
    visit_of = les["tp_key"].to_numpy()
    les["subj_key"] = v["subj_key"].to_numpy()[visit_of] if len(les) else np.array([], dtype=int)
    if not (trusted and "is_baseline" in les):  # else the flag `_link_lesions` set is the same (the visit's own)
        les["is_baseline"] = v["is_baseline"].to_numpy()[visit_of] if len(les) else np.array([], dtype=bool)
    les["day"] = v["day"].to_numpy()[visit_of] if len(les) else np.array([], dtype=float)
    if trusted:  # the same baseline rows `_link_lesions` found, at their sorted places
        place = np.empty(len(lorder), dtype=np.int64)
        place[lorder] = np.arange(len(lorder))
        base_row = link.base_row[lorder]
        les["base_row"] = np.where(base_row >= 0, place[np.maximum(base_row, 0)], -1)
    else:
        les["base_row"] = _base_rows(les, lesion_code[lorder].astype(np.int64))

    subj = subjects.drop_duplicates("subject_id")
    subj = subj.set_index("subject_id").reindex(subject_order).reset_index(names="subject_id")
    subj["subj_key"] = np.arange(len(subj))
    return Prepared(subjects=subj, visits=v, lesions=les, settings=settings)


def _unfilled(column: pd.Series) -> bool:
    """No row has a value (a column with values usually shows one in its first rows: those are looked at first)."""
    return not column.iloc[:1000].notna().any() and bool(column.isna().all())


def _base_rows(les: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
    """Each sorted lesion row's baseline row, found by subject and lesion id (-1: none)."""
    pair = _pair_key(les["subj_key"].to_numpy().astype(np.int64), codes)
    base_mask = les["is_baseline"].to_numpy(dtype=bool) & (pair >= 0)
    base_rows = np.flatnonzero(base_mask)
    pos = _positions(pair[base_mask], pair)
    return np.where(pos >= 0, base_rows[np.maximum(pos, 0)] if len(base_rows) else -1, -1)


def _rows(frame: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """The rows of `frame` in `order`, numbered from 0; not copied when they are in that order already. Taken
    column by column, each keeping its dtype, which moves less than `iloc` on a wide frame."""
    if np.array_equal(order, np.arange(len(frame))):
        return frame.reset_index(drop=True)
    if not frame.columns.is_unique:
        return frame.iloc[order].reset_index(drop=True)
    index = pd.RangeIndex(len(order))
    taken = {
        name: pd.Series(column.array.take(order), index=index, dtype=column.dtype, copy=False)
        for name, column in frame.items()
    }
    out = pd.DataFrame(taken, index=index, copy=False)
    out.columns = frame.columns
    return out


def _lexsort(keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """`np.lexsort(keys)`; rows already in that order (as files usually list them) cost one pass, not a sort."""
    n = len(keys[0])
    undecided = np.ones(max(n - 1, 0), dtype=bool)
    for key in reversed(keys):
        earlier, later = key[:-1], key[1:]
        if (undecided & ~(later >= earlier)).any():  # a row before its predecessor (or a NaN: let the sort place it)
            return np.lexsort(keys)
        undecided &= later == earlier
    return np.arange(n)


def _place_in_run(keys: np.ndarray) -> np.ndarray:
    """Each row's place (0, 1, ...) in its run of equal `keys` (sorted keys: its place in its group)."""
    n = len(keys)
    starts = np.r_[True, keys[1:] != keys[:-1]] if n else np.zeros(0, dtype=bool)
    place = np.arange(n)
    return place - np.maximum.accumulate(np.where(starts, place, 0))


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
    present = codes[codes >= 0]
    used = np.flatnonzero(np.bincount(present, minlength=width)) if len(present) else np.zeros(0, dtype=np.int64)
    if isinstance(ids.array, pd.Categorical):
        names = text_codes(ids)[1]
    else:  # plain text: the codes came from factorizing the columns together; name each by a row that has it
        row_of = np.zeros(width, dtype=np.int64)
        row_of[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
        names = np.full(width, None, dtype=object)
        names[used] = np.asarray(ids, dtype=object)[row_of[used]]
    ordered = _by_text(used, names)
    rank = np.full(width + 1, -1, dtype=np.int64)
    rank[ordered] = np.arange(len(ordered))
    return pd.Index(names[ordered], dtype=object), rank


def _by_text(used: np.ndarray, names: np.ndarray) -> np.ndarray:
    """The codes `used` ordered by the text of their names (ties: by code, as a stable sort leaves them).
    Names that are all text and already in order (a reader's sorted categories) are only checked."""
    texts = names[used]
    if len(texts) < 2:
        return used
    if pd.api.types.infer_dtype(texts, skipna=False) != "string":
        texts = np.array([str(t) for t in texts], dtype=object)  # once per distinct id
    if (texts[1:] > texts[:-1]).all():
        return used
    return used[np.argsort(texts, kind="stable")]


def _lesion_order(lesion_ids: pd.Series) -> np.ndarray:
    """Each lesion id's place among the ids sorted as text (ties: equal text)."""
    return _text_rank(*text_codes(lesion_ids))


def _text_rank(codes: np.ndarray, names: np.ndarray) -> np.ndarray:
    """Each code's place among its names sorted as text (ties: equal text; -1 stays -1)."""
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
    lesions, link = _link_lesions(visits, tables.lesions, problems)
    found = problems.frame()
    bad = set(found.loc[found["severity"] == "error", "subject_id"].tolist())
    if bad:
        keep_visits = ~visits["subject_id"].isin(bad)
        keep_lesions = ~lesions["subject_id"].isin(bad)
        link = link.kept(keep_visits.to_numpy(dtype=bool), keep_lesions.to_numpy(dtype=bool))
        visits = visits.loc[keep_visits].reset_index(drop=True)
        lesions = lesions.loc[keep_lesions].reset_index(drop=True)
    subjects = tables.subjects.loc[~tables.subjects["subject_id"].isin(bad)]
    settings = {k: s for k, s in tables.settings.items() if k not in bad}
    prepared = _key(visits, lesions, subjects, settings, link)
    prepared.dates = dates.parameters() if dates is not None else {}
    return prepared, found

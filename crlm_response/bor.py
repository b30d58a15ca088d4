"""Best overall response from per-visit responses (RECIST 1.1 §4.4 / E2009 Table 3; REFERENCE §1.9).

One vectorised function serves `assess`, `batch` and the `bor` command, for every criteria set: it works on the
*roles* of the set's words (see `roles.py`), never on the words themselves.

Method ``recist`` (E2009; admiralonco `derive_param_confirmed_bor` conventions for sequences longer than two):

1. Visits are taken up to and including the first progression (`stop_at_first_pd`).
2. With confirmation, a complete response needs a later complete response, and a partial response a later
   complete or partial response, at least `min_confirmation_interval_days` later, with only allowed responses in
   between (at most `max_ne_between_confirmation` not evaluable, and for a partial response at most one stable
   disease when `accept_sd_between_pr_confirmation`). An unconfirmed response counts as stable disease once
   `sd_min_days` have passed.
3. Stable disease (and non-target-only disease) counts only from `sd_min_days` after baseline; earlier it counts
   as not evaluable (so early SD then PD is PD, early SD then nothing is NE).
4. The best contribution wins (the set's ranking; ties: the earliest). Not done ranks below not evaluable; a subject
   with no assessment at all gets the `missing` role (admiralonco MISSING), or not evaluable with `missing_as_ne`.
5. An external progression day (`pd_day`, admiralonco `source_pd`) ends the assessment period: visits after it are
   dropped, the one on it is kept; a subject left with nothing gets the `missing` role.

Method ``rank``: the best-ranked word of the set's ranking, with no time windows (Chun, PERCIST).

Every subject also gets a one-line reason: why its best response is what it is and, when it is lower than its
best visit, why; and the days a time-to-event analysis starts from (admiral `derive_param_tte()` inputs):
`first_response_day` (first complete/partial response, confirmed when confirmation is required), `first_pd_day`,
`last_assessment_day` (last adequate assessment) and `duration_of_response_days` with its censor flag. Nothing loops
over visits in Python: confirmation pairs are built with numpy over all subjects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from .roles import ADEQUATE_ROLES, CONFIRMED_ROLES, ROLE_CODE, TIMED_ROLES, ResponseScale

# Words that mean "no assessment" when they stand in a per-visit response column (exports write missing values so).
MISSING_WORDS = frozenset({"", "NA", "NAN", "NONE", "MISSING", "NULL"})
NO_ROLE = -1
_R = ROLE_CODE
# The time-to-event columns of the subjects table, in output order.
EVENT_COLUMNS = (
    "first_response_day",
    "first_pd_day",
    "last_assessment_day",
    "duration_of_response_days",
    "duration_of_response_censored",
)


@dataclass(frozen=True)
class BorSettings:
    """Parameters of REFERENCE §1.9 (names as in the rule files and `bor` options)."""

    confirmation_required: bool = False
    min_confirmation_interval_days: float = 28
    sd_min_days: float = 42
    non_cr_non_pd_min_days: float | None = None  # None: same as sd_min_days (admiralonco convention)
    max_ne_between_confirmation: int = 1
    accept_sd_between_pr_confirmation: bool = False
    stop_at_first_pd: bool = True
    missing_as_ne: bool = False
    sd_from: str = "baseline"  # what the stable-disease minimum counts from: the baseline scan or randomisation

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BorSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in known and v is not None})

    @property
    def non_target_min_days(self) -> float:
        return self.sd_min_days if self.non_cr_non_pd_min_days is None else self.non_cr_non_pd_min_days


@dataclass
class BorResult:
    """Per subject: best response, its day and reason; per input row: what each visit contributed.

    The per-row arrays are written out when first read (the engine reads only the subjects)."""

    # subject, best_overall_response, best_overall_response_day, best_row, responder, clinical_benefit,
    # EVENT_COLUMNS, best_overall_response_reason, best_overall_response_note
    subjects: pd.DataFrame
    cr_then_pr: pd.DataFrame  # warnings: subject, pr_row, cr_row
    n_rows: int  # input rows
    kept_rows: np.ndarray  # the input row of each visit that counts (kept after the cut-offs)
    kept_words: Callable[[], np.ndarray]  # the word each of those visits counts as
    kept_confirming: np.ndarray  # per kept visit: the kept visit that confirms it (-1: none)

    @cached_property
    def contribution(self) -> np.ndarray:
        """Per input row: the word the visit counts as (None: does not count / dropped)."""
        out = np.full(self.n_rows, None, dtype=object)
        out[self.kept_rows] = self.kept_words()
        return out

    @cached_property
    def confirmed(self) -> np.ndarray:
        """Per input row: a response confirmed by a later visit."""
        out = np.zeros(self.n_rows, dtype=bool)
        out[self.kept_rows] = self.kept_confirming >= 0
        return out

    @cached_property
    def confirmed_by(self) -> np.ndarray:
        """Per input row: the input row that confirms it (-1: none)."""
        out = np.full(self.n_rows, -1, dtype=np.int64)
        by = self.kept_confirming
        out[self.kept_rows] = np.where(by >= 0, self.kept_rows[np.maximum(by, 0)], -1)
        return out


def role_codes(words: np.ndarray, scale: ResponseScale, method: str = "recist") -> np.ndarray:
    """Role code per word (NO_ROLE for missing words and, with method recist, for not-applicable ones)."""
    codes, uniques = pd.factorize(pd.Series(words, dtype=object), use_na_sentinel=True)
    return _word_roles(uniques, scale, method)[codes]


def _word_roles(words: Any, scale: ResponseScale, method: str) -> np.ndarray:
    """Role code per distinct word, and NO_ROLE in a last slot, so that code -1 (missing) reads NO_ROLE."""
    mapped = np.full(len(words) + 1, NO_ROLE, dtype=np.int64)
    for k, word in enumerate(words):
        text = str(word).strip()
        role = scale.role_of(text)  # a set's own word first: Chun's "none" is a category, not a missing value
        if role is None and text.upper() in MISSING_WORDS:
            continue
        if method == "rank" and text not in scale.ranking:
            role = None
        if role is not None and not (method == "recist" and role in ("not_applicable", "missing")):
            mapped[k] = _R[role]
    return mapped


def _categories(values: Any) -> pd.Categorical | None:
    """`values` as a Categorical of text (a Series' too), or None when it is not one."""
    values = values.array if isinstance(values, pd.Series) else values
    if isinstance(values, pd.Categorical) and pd.api.types.infer_dtype(values.categories, skipna=False) == "string":
        return values
    return None


def _coded(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1: missing) and distinct values of a column, as `pd.factorize` gives them; a Categorical of text
    gives its own, so nothing is hashed."""
    categorical = _categories(values)
    if categorical is not None:
        return categorical.codes.astype(np.int64), categorical.categories.to_numpy(dtype=object)
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _subject_codes(subject: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each row's place among the subjects sorted, and the sorted subjects (`pd.factorize(sort=True)`). A
    Categorical of text whose categories are sorted and all used (the engine's subject keys) is read as it is."""
    categorical = _categories(subject)
    if categorical is not None and categorical.categories.is_monotonic_increasing:
        codes = categorical.codes.astype(np.int64)
        if np.bincount(codes[codes >= 0], minlength=len(categorical.categories)).all():
            return codes, categorical.categories.to_numpy(dtype=object)
    codes, uniques = pd.factorize(np.asarray(subject, dtype=object), sort=True)
    return codes, np.asarray(uniques, dtype=object)


def _distinct(codes: np.ndarray, values: np.ndarray, rows: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1: missing) and the values they stand for, to be written as text once per distinct value. Values that
    are not all text are kept one per row (`rows()` gives each row's value): values equal as Python objects may
    read differently (1, 1.0, True)."""
    if len(values) and pd.api.types.infer_dtype(values, skipna=False) != "string":
        return np.where(codes >= 0, np.arange(len(codes)), -1), rows()
    return codes, values


def _texts(values: Any) -> np.ndarray:
    """`str` of each value, as an object array."""
    return np.array([str(v) for v in values] + [None], dtype=object)[:-1]


def _one(value: Any) -> np.ndarray:
    """A one-value object array (whatever the value: a word, None)."""
    out = np.empty(1, dtype=object)
    out[0] = value
    return out


def _labels(labels: Any, order: np.ndarray) -> np.ndarray:
    return np.asarray(labels, dtype=object)[order]


def _visit_order(code: np.ndarray, rank_in_time: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Rows sorted by subject, then `rank_in_time`, then day: `np.lexsort((days, rank_in_time, code))`. Callers
    mostly list each subject's visits in time order already (the engine does), so a stable sort by subject alone is
    tried first and kept when it is in that order."""
    order = np.argsort(code, kind="stable")
    c, r = code[order], rank_in_time[order]
    with np.errstate(invalid="ignore"):
        unsure = np.flatnonzero((c[1:] == c[:-1]) & ~(r[:-1] < r[1:]))  # same subject, not plainly later
        r0, r1 = r[unsure], r[unsure + 1]
        d0, d1 = days[order[unsure]], days[order[unsure + 1]]
        # NaN sorts last and ties with NaN, as in np.lexsort.
        tied = (r0 == r1) | (np.isnan(r0) & np.isnan(r1))
        later = np.isnan(r1) & ~np.isnan(r0)
        day_ok = (d0 <= d1) | np.isnan(d1)
    if (later | (tied & day_ok)).all():
        return order
    return np.lexsort((days, rank_in_time, code))


def _group_start(code: np.ndarray) -> np.ndarray:
    """For each row of an array grouped by code (each code's rows together), the index of its group's first row."""
    n = len(code)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    return np.repeat(starts, np.diff(np.r_[starts, n]))


def _first_of_groups(code: np.ndarray) -> np.ndarray:
    """The first row of each group of an array grouped by code."""
    return np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else np.zeros(0, dtype=np.int64)


def _best_in_groups(code: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Per group of an array grouped by code (in group order): its row with the smallest rank, the first one on a
    tie (`np.lexsort((rows, rank, code))`'s first row of each group, without sorting)."""
    n = len(code)
    if not n:
        return np.zeros(0, dtype=np.int64)
    group = np.cumsum(np.r_[True, code[1:] != code[:-1]]) - 1
    best = np.full(int(group[-1]) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, group, rank.astype(np.int64) * n + np.arange(n))
    return best % n


def _in_roles(role: np.ndarray, roles: Any) -> np.ndarray:
    """role is one of `roles` (role codes, NO_ROLE never), through a lookup table."""
    table = np.zeros(len(ROLE_CODE) + 1, dtype=bool)  # the last slot answers NO_ROLE (-1)
    table[[_R[r] for r in roles]] = True
    return table[role]


def _group_end(subject: np.ndarray) -> np.ndarray:
    """For each row of a subject-sorted array, the index one past the subject's last row."""
    n = len(subject)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.r_[subject[1:] != subject[:-1], True]
    ends = np.flatnonzero(change) + 1
    sizes = ends - np.r_[0, ends[:-1]]
    return np.repeat(ends, sizes)


def confirmations(subject: np.ndarray, day: np.ndarray, role: np.ndarray, s: BorSettings) -> np.ndarray:
    """For each complete/partial response row, the first later row of the same subject that confirms it (-1: none).

    Rows are sorted by subject and day. All (response, later visit) pairs of a subject are built at once."""
    n = len(role)
    confirming = np.full(n, -1, dtype=np.int64)
    is_cr, is_pr = role == _R["complete"], role == _R["partial"]
    candidates = np.flatnonzero(is_cr | is_pr)
    if not len(candidates):
        return confirming
    ends = np.r_[np.flatnonzero(subject[1:] != subject[:-1]) + 1, n]
    counts = ends[np.searchsorted(ends, candidates, side="right")] - candidates - 1
    i = np.repeat(candidates, counts)
    if not len(i):
        return confirming
    j = i + 1 + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    # What lies between each response and its later visit: read row by row when the gaps are short (the usual
    # case), else from running counts over all rows.
    if int((j - i).sum()) <= 4 * n:
        between = _between_by_scan(role, i, j)
    else:
        between = _between_by_counts(subject, role, i, j)
    far_enough = (day[j] - day[i]) >= s.min_confirmation_interval_days
    ne_ok = between.ne <= s.max_ne_between_confirmation
    cr_pair = is_cr[i] & is_cr[j] & (between.not_cr_or_ne == 0)
    sd_allowed = 1 if s.accept_sd_between_pr_confirmation else 0  # admiralonco accept_sd: ONE SD is acceptable
    pr_pair = (
        is_pr[i]
        & (is_cr[j] | is_pr[j])
        & (between.not_allowed == 0)
        & ~between.pr_after_cr
        & (between.sd <= sd_allowed)
    )
    ok = far_enough & ne_ok & (cr_pair | pr_pair)
    # Pairs run by response, later visits in order: the first pair that holds is the earliest confirmation.
    ok_i, ok_j = i[ok], j[ok]
    first = np.r_[True, ok_i[1:] != ok_i[:-1]] if len(ok_i) else np.zeros(0, dtype=bool)
    confirming[ok_i[first]] = ok_j[first]
    return confirming


@dataclass
class _Between:
    """Per (response, later visit) pair: what the visits strictly between them were."""

    ne: np.ndarray  # how many not evaluable
    not_cr_or_ne: np.ndarray  # how many neither complete response nor not evaluable
    not_allowed: np.ndarray  # how many not CR, PR, SD or NE
    sd: np.ndarray  # how many stable disease
    # admiralonco: no PR after a CR inside a PR's confirmation window (a CR, then a PR up to the later visit).
    pr_after_cr: np.ndarray


def _between_by_scan(role: np.ndarray, i: np.ndarray, j: np.ndarray) -> _Between:
    """`_Between` read visit by visit from each response on, over the pairs whose window is still open."""
    m = len(i)
    out = _Between(_counts(m), _counts(m), _counts(m), _counts(m), np.zeros(m, dtype=bool))
    seen_cr = np.zeros(m, dtype=bool)
    open_pairs = np.arange(m)
    step = 1
    while len(open_pairs):
        row = i[open_pairs] + step  # at most the later visit itself
        inside = row < j[open_pairs]
        r = role[row]
        cr, pr, ne, sd = r == _R["complete"], r == _R["partial"], r == _R["not_evaluable"], r == _R["stable"]
        out.pr_after_cr[open_pairs] |= seen_cr[open_pairs] & pr
        seen_cr[open_pairs] |= cr
        out.ne[open_pairs] += inside & ne
        out.not_cr_or_ne[open_pairs] += inside & ~(cr | ne)
        out.not_allowed[open_pairs] += inside & ~(cr | pr | sd | ne)
        out.sd[open_pairs] += inside & sd
        open_pairs = open_pairs[inside]
        step += 1
    return out


def _counts(m: int) -> np.ndarray:
    return np.zeros(m, dtype=np.int64)


def _between_by_counts(subject: np.ndarray, role: np.ndarray, i: np.ndarray, j: np.ndarray) -> _Between:
    """`_Between` from running counts over all rows (for long windows)."""

    def between(mask: np.ndarray) -> np.ndarray:  # how many rows in the open interval (i, j) satisfy mask
        c = np.r_[0, np.cumsum(mask.astype(np.int64))]
        return c[j] - c[i + 1]

    n = len(role)
    is_cr, is_pr = role == _R["complete"], role == _R["partial"]
    is_ne, is_sd = role == _R["not_evaluable"], role == _R["stable"]
    idx = np.arange(n)
    big = n + 1
    # Running extremes of row numbers over the whole array, then kept only where they fall in the row's own subject.
    next_cr_from = np.minimum.accumulate(np.where(is_cr, idx, big)[::-1])[::-1]
    next_cr_from = np.where(next_cr_from < _group_end(subject), next_cr_from, big)
    next_cr_after = np.where(np.r_[subject[1:] == subject[:-1], False], np.r_[next_cr_from[1:], big], big)
    last_pr_upto = np.maximum.accumulate(np.where(is_pr, idx, -1))
    last_pr_upto = np.where(last_pr_upto >= _group_start(subject), last_pr_upto, -1)
    return _Between(
        ne=between(is_ne),
        not_cr_or_ne=between(~(is_cr | is_ne)),
        not_allowed=between(~(is_cr | is_pr | is_sd | is_ne)),
        sd=between(is_sd),
        pr_after_cr=next_cr_after[i] < last_pr_upto[j],
    )


def _confirmed_progression(subject: np.ndarray, role: np.ndarray) -> np.ndarray:
    """Unconfirmed progression (iUPD) whose run of unconfirmed progression ends in progression (iCPD) was progression
    all along (iRECIST Table 3, examples 6 and 7: iUPD, iCPD -> iCPD; iUPD, iUPD, iCPD -> iCPD)."""
    pending = role == _R["unconfirmed_progression"]
    if not pending.any():
        return pending
    n = len(role)
    idx = np.arange(n)
    big = n + 1
    # For each row: the first row at or after it, in the same subject, that is not unconfirmed progression.
    stops = np.where(~pending, idx, big)[::-1]
    next_stop = pd.Series(stops).groupby(subject[::-1]).cummin().to_numpy()[::-1]
    ends = np.where(next_stop < n, next_stop, 0)
    return pending & (next_stop < n) & (role[ends] == _R["progression"])


def _contribution(
    subject: np.ndarray, role: np.ndarray, day: np.ndarray, confirmed: np.ndarray, s: BorSettings
) -> np.ndarray:
    """The role each kept visit counts as towards the best response (method recist). `day` counts from the
    stable-disease reference; an unknown day (NaN) never meets a minimum."""
    out = role.copy()
    out[_confirmed_progression(subject, role)] = _R["progression"]
    late = day >= s.sd_min_days
    responding = (role == _R["complete"]) | (role == _R["partial"])
    if s.confirmation_required:
        unconfirmed = responding & ~confirmed
        out[unconfirmed] = np.where(late[unconfirmed], _R["stable"], _R["not_evaluable"])
    timed = (role == _R["stable"]) | (role == _R["minor"])
    out[timed & ~late] = _R["not_evaluable"]
    non_target = role == _R["non_measurable_stable"]
    out[non_target & ~(day >= s.non_target_min_days)] = _R["not_evaluable"]
    return out


def _rank_of_roles(scale: ResponseScale) -> np.ndarray:
    """Sort key per role code: the set's ranking first, then roles it does not rank, in the default order."""
    keys = np.full(len(ROLE_CODE), 10_000, dtype=np.int64)
    for role, code in ROLE_CODE.items():
        word = scale.word(role)
        keys[code] = scale.ranking.index(word) if word in scale.ranking else len(scale.ranking) + code
    return keys


def best_overall_response(
    subject: np.ndarray | pd.Series,
    day: np.ndarray | pd.Series,
    response: np.ndarray | pd.Series,
    settings: BorSettings,
    scale: ResponseScale,
    method: str = "recist",
    labels: np.ndarray | pd.Series | None = None,
    pd_day: np.ndarray | pd.Series | None = None,
    sequence: np.ndarray | pd.Series | None = None,
    sd_day: np.ndarray | pd.Series | None = None,
) -> BorResult:
    """Best overall response per subject.

    `subject`, `day` (days since the reference date; NaN when unknown) and `response` (the set's words, or
    missing) are parallel arrays in any order; `labels` (optional) name each visit in the reasons ("PR at FU2 (day
    126)"); `pd_day` (optional) is the subject's progression day from another source on each of its rows (NaN:
    none). `sequence` (optional) orders the visits of a subject (VISITNUM; default: the day), so a visit with an
    unknown day keeps its place; `sd_day` (optional) is the day the stable-disease minimum counts from (default:
    `day`). An unknown day never meets a minimum interval.
    """
    days = np.asarray(day, dtype=float)
    word_code, word_values = _coded(response)
    n = len(word_code)
    rank_in_time = np.asarray(sequence, dtype=float) if sequence is not None else days
    from_reference = np.asarray(sd_day, dtype=float) if sd_day is not None else days
    codes, uniques = _subject_codes(subject)
    order = _visit_order(codes, rank_in_time, days) if n else np.zeros(0, dtype=np.int64)
    s_code, s_day, s_wcode = codes[order], days[order], word_code[order]
    s_sd_day = from_reference[order]
    # Words stay codes into their distinct values; each distinct word is read once.
    role = _word_roles(word_values, scale, method)[s_wcode]
    missing_as_ne = method == "recist" and settings.missing_as_ne
    if missing_as_ne:
        # A visit without a response is NE; a row without a day is no visit (the engine lists every subject so),
        # and a subject with no visit at all gets NE below, as admiralonco's missing_as_ne does. Every NE visit
        # then reads as the set's NE word.
        role = np.where((role == NO_ROLE) & ~np.isnan(s_day), _R["not_evaluable"], role)
        word_values = np.append(word_values, _one(scale.word("not_evaluable")))
        s_wcode = np.where(role == _R["not_evaluable"], len(word_values) - 1, s_wcode)

    def sorted_words() -> np.ndarray:
        words = np.asarray(response, dtype=object)[order]
        if missing_as_ne:
            words = np.where(role == _R["not_evaluable"], _one(scale.word("not_evaluable")), words)
        return words

    s_wcode, word_values = _distinct(s_wcode, word_values, sorted_words)
    name_code, name_values = _coded(labels) if labels is not None else (np.full(n, -1, dtype=np.int64), [])
    s_ncode = name_code[order]
    s_ncode, name_values = _distinct(s_ncode, np.asarray(name_values, dtype=object), lambda: _labels(labels, order))
    keep = role != NO_ROLE
    external_pd = np.asarray(pd_day, dtype=float)[order] if pd_day is not None else np.full(n, np.nan)
    after_pd_date = keep & (s_day > external_pd)  # NaN compares False: no external progression, nothing dropped
    keep &= ~after_pd_date
    after_pd = np.zeros(n, dtype=bool)
    if method == "recist" and settings.stop_at_first_pd:
        is_pd = (role == _R["progression"]) & keep
        # Rows are grouped by subject: a progression counts from the subject's first row on.
        upto = np.r_[0, np.cumsum(is_pd, dtype=np.int64)]
        before = upto[1:] - upto[_group_start(s_code)] - is_pd
        after_pd = keep & (before > 0)
        keep &= ~after_pd

    k = np.flatnonzero(keep)
    k_code, k_day, k_role, k_wcode = s_code[k], s_day[k], role[k], s_wcode[k]
    k_sd_day = s_sd_day[k]
    confirming = np.full(len(k), -1, dtype=np.int64)
    if method == "recist":
        if settings.confirmation_required:
            confirming = confirmations(k_code, k_day, k_role, settings)
        contribution = _contribution(k_code, k_role, k_sd_day, confirming >= 0, settings)
        rank = _rank_of_roles(scale)[contribution]
        raw_rank = _rank_of_roles(scale)[k_role]
    else:
        position = {w: r for r, w in enumerate(scale.ranking)}
        rank_of_word = pd.Series(word_values, dtype=object).map(position).to_numpy(dtype=float)
        rank = pd.Series(rank_of_word[k_wcode], dtype=float).to_numpy(dtype=np.int64)
        raw_rank = rank
        contribution = k_role

    n_subjects = len(uniques)
    best_k = np.full(n_subjects, -1, dtype=np.int64)
    if len(k):
        top = _best_in_groups(k_code, rank)  # kept rows are grouped by subject, in time order
        best_k[k_code[top]] = top
    has_best = best_k >= 0
    safe_best = np.maximum(best_k, 0)
    if method == "recist":
        best_role = np.where(has_best, contribution[safe_best] if len(k) else 0, _R["missing"])
        if settings.missing_as_ne:
            best_role = np.where(has_best, best_role, _R["not_evaluable"])
        bor_values = np.array([scale.word(r) for r in ROLE_CODE] + [None], dtype=object)[:-1]
        bor_code = best_role
        kept_words = bor_values, contribution
    else:
        best_role = np.where(has_best, k_role[safe_best] if len(k) else 0, _R["missing"])
        bor_values = np.append(word_values, _one(scale.word("missing")))
        bor_code = np.full(n_subjects, len(bor_values) - 1, dtype=np.int64)
        if len(k):
            bor_code[has_best] = k_wcode[safe_best[has_best]]
        kept_words = word_values, k_wcode
    bor = bor_values[bor_code]

    rows_sorted = order[k]  # kept row -> input row
    best_row = np.where(has_best, rows_sorted[safe_best] if len(k) else -1, -1)
    columns: dict[str, Any] = {
        "subject": uniques.astype(object) if n_subjects else np.zeros(0, dtype=object),
        "best_overall_response": bor,
        "best_overall_response_day": np.where(has_best, k_day[safe_best] if len(k) else np.nan, np.nan),
        "best_row": best_row,
    }
    bor_roles = pd.Series(bor_values, dtype=object).map(scale.roles)
    columns["responder"] = np.where(bor_roles.isin(list(scale.responder_roles)).to_numpy()[bor_code], "Y", "N")
    columns["clinical_benefit"] = np.where(bor_roles.isin(list(scale.benefit_roles)).to_numpy()[bor_code], "Y", "N")
    counted_role = contribution if method == "recist" else k_role
    columns.update(_event_days(k_code, k_day, k_role, counted_role, _per_subject_min(s_code, external_pd, n_subjects)))

    facts = _Facts(
        scale=scale,
        settings=settings,
        method=method,
        n_subjects=n_subjects,
        k_code=k_code,
        k_day=k_day,
        k_sd_day=k_sd_day,
        k_role=k_role,
        k_word=k_wcode,
        k_name=s_ncode[k],
        raw_rank=raw_rank,
        rank=rank,
        confirming=confirming,
        best_k=best_k,
        best_role=best_role,
        bor=bor_code,
        after_pd_code=s_code[after_pd],
        after_pd_date_code=s_code[after_pd_date],
        external_pd=external_pd,
        pd_rows=np.flatnonzero(keep & (role == _R["progression"])),
        s_code=s_code,
        s_day=s_day,
        s_name=s_ncode,
        s_word=s_wcode,
        words=_texts(word_values),
        names=_texts(name_values),
        bor_words=_texts(bor_values),
    )
    columns["best_overall_response_reason"], columns["best_overall_response_note"] = _reasons(facts)
    table = pd.DataFrame(columns, copy=False)  # every column is a new array

    warn = _cr_then_pr(k_code, k_role, rows_sorted, uniques) if method == "recist" else _empty_warnings()
    words_of, codes_of = kept_words
    return BorResult(table, warn, n, rows_sorted, lambda: words_of[codes_of], confirming)


def best_by_reader(
    frame: pd.DataFrame,
    settings: BorSettings,
    scale: ResponseScale,
    method: str = "recist",
    pd_day: np.ndarray | None = None,
    population: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, BorResult]:
    """The `bor` command's table: one row per subject and reader of `frame` (subject_id, reader, day, response;
    `trial.read_responses`), with the best response, its day, the flags and the time-to-event days. Subjects and
    readers of `population` without a row of `frame` get the `missing` role's word (admiralonco MISSING)."""
    if population is not None and len(population):
        # a row without a day is no visit: it only lists the subject (as the engine lists every subject)
        listed = population.assign(day=np.nan, response=None)[["subject_id", "reader", "day", "response"]]
        frame = pd.concat([frame[["subject_id", "reader", "day", "response"]], listed], ignore_index=True)
        if pd_day is not None:
            pd_day = np.r_[pd_day, np.full(len(listed), np.nan)]
    stream = frame["subject_id"] + ("|" + frame["reader"]).where(frame["reader"] != "", "")
    result = best_overall_response(
        stream.to_numpy(dtype=object), frame["day"], frame["response"], settings, scale, method, pd_day=pd_day
    )
    table = result.subjects.rename(columns={"subject": "stream"}).drop(columns=["best_row"])
    lookup = pd.DataFrame({"stream": stream, "subject_id": frame["subject_id"], "reader": frame["reader"]})
    table = table.merge(lookup.drop_duplicates("stream"), on="stream", how="left")
    columns = (
        ["subject_id"]
        + (["reader"] if (table["reader"] != "").any() else [])
        + ["best_overall_response", "best_overall_response_day", "responder", "clinical_benefit"]
        + list(EVENT_COLUMNS)
        + ["best_overall_response_reason"]
    )
    table = table.sort_values(["subject_id", "reader"], kind="stable")[columns].reset_index(drop=True)
    return whole_days(table), result


def whole_days(table: pd.DataFrame) -> pd.DataFrame:
    """Day columns as whole numbers (missing allowed) when every value is whole, as the inputs give days."""
    for column in ("best_overall_response_day", *EVENT_COLUMNS):
        if column in table and column != "duration_of_response_censored":
            values = pd.to_numeric(table[column], errors="coerce")
            present = values.dropna()
            if (present == present.round()).all():
                table[column] = values.astype("Int64")
    return table


# --------------------------------------------------------------------------------------------------
# Reasons
# --------------------------------------------------------------------------------------------------


@dataclass
class _Facts:
    """What the reasons are written from (kept rows are `k_*`, all sorted rows `s_*`)."""

    scale: ResponseScale
    settings: BorSettings
    method: str
    n_subjects: int
    k_code: np.ndarray
    k_day: np.ndarray
    k_sd_day: np.ndarray
    k_role: np.ndarray
    k_word: np.ndarray  # codes into `words`
    k_name: np.ndarray  # codes into `names` (-1: the visit has no name)
    raw_rank: np.ndarray
    rank: np.ndarray
    confirming: np.ndarray
    best_k: np.ndarray
    best_role: np.ndarray
    bor: np.ndarray  # codes into `bor_words`
    after_pd_code: np.ndarray
    after_pd_date_code: np.ndarray
    external_pd: np.ndarray
    pd_rows: np.ndarray
    s_code: np.ndarray
    s_day: np.ndarray
    s_name: np.ndarray
    s_word: np.ndarray
    words: np.ndarray  # texts of the distinct words
    names: np.ndarray  # texts of the distinct visit names
    bor_words: np.ndarray  # texts of the distinct best responses


def _day_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes into day numbers as text (whole days without decimals; `unknown` for a visit whose day is not known),
    each distinct number written once (told apart by its bits, so -0 stays `-0`)."""
    bits = np.ascontiguousarray(values, dtype=float).view(np.int64)
    codes, distinct = pd.factorize(bits)
    text = [("unknown" if np.isnan(v) else f"{v:g}") for v in np.asarray(distinct).view(float).tolist()]
    return codes.astype(np.int64), np.array(text + [None], dtype=object)[:-1]


def _dense(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..m-1 for the distinct values of an integer key, and a row holding each."""
    codes, uniques = pd.factorize(key)
    first = np.zeros(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return codes.astype(np.int64), first


@dataclass
class _Places:
    """When some visits were, as codes: each distinct (visit name, day) pair once."""

    code: np.ndarray  # per visit: its pair
    name: np.ndarray  # per pair: the code of the visit name (-1: none)
    day: np.ndarray  # per pair: the day as text


def _places(name: np.ndarray, day: np.ndarray) -> _Places:
    """The (visit name, day) pairs of some visits; `name` are codes (-1: no name)."""
    day_code, day_text = _day_codes(day)
    code, first = _dense((name + 1) * max(len(day_text), 1) + day_code)
    return _Places(code, name[first], day_text[day_code[first]])


def _visit_texts(
    word: np.ndarray, words: np.ndarray, places: _Places, names: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`PR at FU2 (day 126)`, or `PR on day 126` when visits have no names (`day unknown` without a day), as codes
    into the distinct texts. `word` are codes into the texts `words`, `places` the visits' names (codes into the
    texts `names`) and days; each distinct visit is written once."""
    visit, first = _dense(word * max(len(places.name), 1) + places.code)
    pair = places.code[first]
    texts = [
        _one_visit(words[w], names[n] if n >= 0 else None, d)
        for w, n, d in zip(word[first].tolist(), places.name[pair].tolist(), places.day[pair].tolist(), strict=True)
    ]
    return visit, np.array(texts + [None], dtype=object)[:-1]


def _visit_text(word: np.ndarray, words: np.ndarray, places: _Places, names: np.ndarray) -> np.ndarray:
    """`_visit_texts`, one text per visit."""
    codes, texts = _visit_texts(word, words, places, names)
    return texts[codes]


def _followed(texts: tuple[np.ndarray, np.ndarray], rows: np.ndarray, tail: str) -> np.ndarray:
    """The coded texts of `rows`, each followed by `tail` (added once per distinct text)."""
    codes, distinct = texts
    return (distinct + tail)[codes[rows]] if len(distinct) else np.zeros(0, dtype=object)


def _one_visit(word: str, name: str | None, day: str) -> str:
    if name is not None:
        return word + " at " + name + " (day " + day + ")"
    return (word + " on day " + day).replace("on day unknown", "on an unknown day")


def _reasons(f: _Facts) -> tuple[np.ndarray, np.ndarray]:
    """One line per subject: why the best response is what it is, and (note) why it is lower than a visit's."""
    scale, s = f.scale, f.settings
    reason = np.full(f.n_subjects, "", dtype=object)
    note = np.full(f.n_subjects, None, dtype=object)
    has_best = f.best_k >= 0
    b = np.maximum(f.best_k, 0)
    if len(f.k_code):
        places = _places(f.k_name[b], f.k_day[b])
        best_visit = _visit_texts(f.k_word[b], f.words, places, f.names)
        as_counted = _visit_text(f.bor, f.bor_words, places, f.names)
    else:
        best_visit = (np.zeros(f.n_subjects, dtype=np.int64), np.array([""], dtype=object))
        as_counted = np.full(f.n_subjects, "", dtype=object)
    at_best = best_visit[1][best_visit[0]]
    bor_texts = (f.bor, f.bor_words)
    confirmers = _confirmation_rules(scale, s)

    if f.method == "rank":
        reason[has_best] = _followed(best_visit, has_best, ": the best-ranked response")
    else:
        raw_role = f.k_role[b] if len(f.k_code) else np.zeros(f.n_subjects, dtype=np.int64)
        same = has_best & (raw_role == f.best_role)
        confirmed = f.confirming[b] >= 0 if len(f.k_code) else np.zeros(f.n_subjects, dtype=bool)
        responding = _in_roles(f.best_role, CONFIRMED_ROLES)
        if s.confirmation_required and len(f.k_code):
            c = np.maximum(f.confirming[b], 0)
            by = _visit_text(f.k_word[c], f.words, _places(f.k_name[c], f.k_day[c]), f.names)
            hit = same & responding & confirmed
            reason[hit] = at_best[hit] + ", confirmed by " + by[hit]
        else:
            hit = same & responding
            reason[hit] = _followed(best_visit, hit, "; confirmation not required")
        timed = same & _in_roles(f.best_role, TIMED_ROLES)
        reason[timed] = _followed(best_visit, timed, f", at least {s.sd_min_days:g} days after {_reference(s)}")
        non_target = same & (f.best_role == _R["non_measurable_stable"])
        reason[non_target] = _followed(
            best_visit, non_target, f", at least {s.non_target_min_days:g} days after {_reference(s)}"
        )
        plain = same & _in_roles(f.best_role, ("unconfirmed_progression", "progression"))
        reason[plain] = at_best[plain]
        # A response that was not confirmed, counted as stable disease once the minimum time had passed.
        demoted = has_best & ~same & (f.best_role == _R["stable"])
        reason[demoted] = as_counted[demoted]
        for code, rule in confirmers.items():
            hit = demoted & (raw_role == code)
            note[hit] = _followed(best_visit, hit, f" not confirmed: no {rule}, so it counts as {scale.word('stable')}")
        confirmed_later = has_best & ~same & (f.best_role == _R["progression"])
        reason[confirmed_later] = (
            as_counted[confirmed_later] + ": " + at_best[confirmed_later] + " was confirmed by a later "
            f"{scale.word('progression')}"
        )
        ne = has_best & (f.best_role == _R["not_evaluable"])
        reason[ne] = _followed(bor_texts, ne, ": no assessment qualifies for a better response")
        nd = has_best & (f.best_role == _R["not_done"])
        reason[nd] = _followed(bor_texts, nd, ": no assessment was done")
        _lower_notes(f, note, confirmers)
    missing = ~has_best
    reason[missing] = _followed(bor_texts, missing, ": no assessment")
    _after_pd_notes(f, note)
    _after_pd_date_notes(f, note)
    with_note = ~pd.isna(note)
    reason[with_note] = reason[with_note] + "; " + note[with_note]
    return reason, note


def _confirmation_rules(scale: ResponseScale, s: BorSettings) -> dict[int, str]:
    """What confirms a complete and a partial response, in words ("CR or PR at least 28 days later with ...")."""
    ne = scale.word("not_evaluable")
    ne_text = f"at most {s.max_ne_between_confirmation} {ne}" if s.max_ne_between_confirmation else f"no {ne}"
    sd_text = (
        f"at most one {scale.word('stable')}"
        if s.accept_sd_between_pr_confirmation
        else "no " + str(scale.word("stable"))
    )
    complete = " or ".join(scale.words_with_roles({"complete"}))
    either = " or ".join(scale.words_with_roles({"complete", "partial"}))
    later = f"at least {s.min_confirmation_interval_days:g} days later"
    return {
        _R["complete"]: f"{complete} {later} with only {complete} and {ne_text} in between",
        _R["partial"]: f"{either} {later} with {ne_text} and {sd_text} in between",
    }


def _lower_notes(f: _Facts, note: np.ndarray, confirmers: dict[int, str]) -> None:
    """When a visit's own response ranks above the best response: say why it did not count."""
    if not len(f.k_code):
        return
    s = f.settings
    top = _best_in_groups(f.k_code, f.raw_rank)  # per subject with kept rows: the best response as recorded
    subjects = f.k_code[top]
    best_rank = f.rank[np.maximum(f.best_k[subjects], 0)]
    lower = (f.raw_rank[top] < best_rank) & (top != f.best_k[subjects])
    if not lower.any():
        return
    rows, subjects = top[lower], subjects[lower]
    visit = _visit_text(f.k_word[rows], f.words, _places(f.k_name[rows], f.k_day[rows]), f.names)
    role, day = f.k_role[rows], f.k_sd_day[rows]
    unknown = np.isnan(day)
    text = np.full(len(rows), None, dtype=object)
    for code, rule in confirmers.items():
        hit = (role == code) & (f.confirming[rows] < 0) & s.confirmation_required
        text[hit] = visit[hit] + f" not confirmed: no {rule}"
        early = hit & ~(day >= s.sd_min_days)
        text[early] = text[early] + _too_early(unknown[early], s.sd_min_days, s, ", and ")
    timed = _in_roles(role, TIMED_ROLES) & ~(day >= s.sd_min_days)
    text[timed] = visit[timed] + _too_early(unknown[timed], s.sd_min_days, s, " ")
    non_target = (role == _R["non_measurable_stable"]) & ~(day >= s.non_target_min_days)
    text[non_target] = visit[non_target] + _too_early(unknown[non_target], s.non_target_min_days, s, " ")
    note[subjects] = text


def _reference(s: BorSettings) -> str:
    return "randomisation" if s.sd_from == "randomisation" else "baseline"


def _too_early(unknown: np.ndarray, minimum: float, s: BorSettings, joint: str) -> np.ndarray:
    """Why a visit is too early for stable disease: before the minimum, or its day is not known (a partial date)."""
    before = f"{joint}before the {minimum:g}-day minimum for stable disease"
    if joint == " ":
        before = f" is before the {minimum:g}-day minimum for stable disease"
    not_known = f"{joint}its day is unknown, so it cannot count as {minimum:g} days after {_reference(s)}"
    if joint == " ":
        not_known = f" cannot count as {minimum:g} days after {_reference(s)}: its day is unknown"
    return np.where(unknown, not_known, before).astype(object)


def _after_pd_notes(f: _Facts, note: np.ndarray) -> None:
    """Visits after the first progression never count (E2009 §4.4): say so, naming the progression visit."""
    if not len(f.after_pd_code):
        return
    subjects = f.after_pd_code[_first_of_groups(f.after_pd_code)]  # rows are grouped by subject
    pd_of_subject = np.full(f.n_subjects, -1, dtype=np.int64)
    pd_of_subject[f.s_code[f.pd_rows][::-1]] = f.pd_rows[::-1]  # the first progression of each subject
    rows = pd_of_subject[subjects]
    codes, visits = _visit_texts(f.s_word[rows], f.words, _places(f.s_name[rows], f.s_day[rows]), f.names)
    _add_note(note, subjects, ("visits after " + visits + " ignored")[codes])


def _add_note(note: np.ndarray, subjects: np.ndarray, text: np.ndarray) -> None:
    """Give `subjects` the note `text`, after the note they have (`; ` between)."""
    current = note[subjects]
    has = ~pd.isna(current)
    text[has] = current[has] + "; " + text[has]
    note[subjects] = text


def _after_pd_date_notes(f: _Facts, note: np.ndarray) -> None:
    """Visits after a progression day given from another source never count (admiralonco `source_pd`)."""
    if not len(f.after_pd_date_code):
        return
    subjects = f.after_pd_date_code[_first_of_groups(f.after_pd_date_code)]  # rows are grouped by subject
    day = _per_subject_min(f.s_code, f.external_pd, f.n_subjects)[subjects]
    codes, days = _day_codes(day)
    _add_note(note, subjects, ("visits after the progression day " + days + " (given) ignored")[codes])


# --------------------------------------------------------------------------------------------------
# Time-to-event days
# --------------------------------------------------------------------------------------------------


def _per_subject_min(code: np.ndarray, values: np.ndarray, n_subjects: int) -> np.ndarray:
    """The smallest non-missing value per subject code (NaN when none)."""
    out = np.full(n_subjects, np.inf)
    ok = ~np.isnan(values)
    np.minimum.at(out, code[ok], values[ok])
    out[np.isinf(out)] = np.nan
    return out


def _per_subject_max(code: np.ndarray, values: np.ndarray, n_subjects: int) -> np.ndarray:
    return -_per_subject_min(code, -values, n_subjects)


def _event_days(
    code: np.ndarray, day: np.ndarray, role: np.ndarray, counted: np.ndarray, external_pd: np.ndarray
) -> dict[str, np.ndarray]:
    """Per subject, from the visits that count (kept rows): the days a time-to-event analysis needs.

    first_response_day: the first visit counted as complete or partial response (so, with confirmation required,
    the first confirmed one); first_pd_day: the first progression, or the progression day given from another
    source if earlier; last_assessment_day: the last adequate assessment (a response other than NE / ND);
    duration_of_response_days: first response to the first progression after it (event, censored N), else to the
    last adequate assessment (censored Y), counted as admiral's `derive_vars_duration()` does (end - start + 1)."""
    n_subjects = len(external_pd)
    responding = _in_roles(counted, CONFIRMED_ROLES)
    first_response = _per_subject_min(code, np.where(responding, day, np.nan), n_subjects)
    progression = role == _R["progression"]
    first_pd = np.fmin(_per_subject_min(code, np.where(progression, day, np.nan), n_subjects), external_pd)
    adequate = _in_roles(role, ADEQUATE_ROLES)
    last_assessment = _per_subject_max(code, np.where(adequate, day, np.nan), n_subjects)
    start = first_response[code] if len(code) else np.zeros(0)
    later_pd = _per_subject_min(code, np.where(progression & (day > start), day, np.nan), n_subjects)
    with np.errstate(invalid="ignore"):
        later_pd = np.fmin(later_pd, np.where(external_pd >= first_response, external_pd, np.nan))
    responded = ~np.isnan(first_response)
    event = responded & ~np.isnan(later_pd)
    end = np.where(event, later_pd, last_assessment)
    duration = np.where(responded, end - first_response + 1, np.nan)
    censored = np.full(n_subjects, None, dtype=object)
    censored[responded] = np.where(event[responded], "N", "Y")
    return {
        "first_response_day": first_response,
        "first_pd_day": first_pd,
        "last_assessment_day": last_assessment,
        "duration_of_response_days": duration,
        "duration_of_response_censored": censored,
    }


def _empty_warnings() -> pd.DataFrame:
    return pd.DataFrame(
        {"subject": pd.Series(dtype=object), "pr_row": pd.Series(dtype=np.int64), "cr_row": pd.Series(dtype=np.int64)}
    )


def _cr_then_pr(code: np.ndarray, role: np.ndarray, rows: np.ndarray, uniques: Any) -> pd.DataFrame:
    """A partial after a complete response (up to the first PD): E2009 Table 3 note a asks for a re-read."""
    is_cr = role == _R["complete"]
    if not is_cr.any():
        return _empty_warnings()
    last_cr = np.maximum.accumulate(np.where(is_cr, np.arange(len(role)), -1))  # rows are grouped by subject
    last_cr = np.where(last_cr >= _group_start(code), last_cr, -1)
    hit = (role == _R["partial"]) & (last_cr >= 0)
    if not hit.any():
        return _empty_warnings()
    return pd.DataFrame(
        {"subject": np.asarray(uniques, dtype=object)[code[hit]], "pr_row": rows[hit], "cr_row": rows[last_cr[hit]]}
    )


def persist_category(
    subject: np.ndarray, category: np.ndarray, keep: str, replaces: list[Any], stop: tuple[str, ...]
) -> np.ndarray:
    """Once `keep` has occurred for a subject, later `replaces` values become `keep` until a `stop` value.

    Rows must be sorted by subject and time. Used for the RECIST FAQ "sticky PR" parameter.
    """
    reached = pd.Series((category == keep).astype(np.int64)).groupby(subject).cumsum().to_numpy() > 0
    stopped = pd.Series(np.isin(category.astype(str), stop).astype(np.int64)).groupby(subject).cumsum().to_numpy() > 0
    swap = reached & ~stopped & np.isin(category.astype(str), [str(r) for r in replaces])
    out = category.copy()
    out[swap] = keep
    return out

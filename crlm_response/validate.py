"""Cross-row checks and keys: turn `Tables` into `Prepared`, listing every problem found.

The same vectorised code serves one case file and a million CSV rows. Problems carry a stable `code`, the
subject, timepoint and lesion, and the source (file and line) so messages point at the input. Errors make a
subject unscorable; warnings (`severity == "warning"`) are scored and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

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


def _resolve_days(visits: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    """Choose each subject's baseline and express every timepoint as days since baseline."""
    v = visits.copy()
    codes, uniques = pd.factorize(v["subject_id"].to_numpy(dtype=object))
    n_subjects = len(uniques)
    day_given = v["day"].to_numpy(dtype=float)
    date_days = _date_days(v["date"]) if "date" in v else np.full(len(v), np.nan)
    has_day = ~np.isnan(day_given)
    has_date = ~np.isnan(date_days)

    dup = v.duplicated(["subject_id", "timepoint"], keep="first").to_numpy()
    problems.add(
        v,
        dup,
        "duplicate_timepoint",
        "timepoint id {timepoint} appears twice for this subject; give each timepoint its own id",
    )

    missing_day = np.bincount(codes, weights=(~has_day).astype(float), minlength=n_subjects)
    missing_date = np.bincount(codes, weights=(~has_date).astype(float), minlength=n_subjects)
    use_days = (missing_day == 0)[codes]
    mixed = ~use_days & (missing_date > 0)[codes]
    problems.add(
        v,
        mixed & ~has_date,
        "day_and_date_mixed",
        "timepoint {timepoint} has a day but no date while other timepoints of this subject have only "
        "dates; give every timepoint a date, or every timepoint a day",
    )
    value = np.where(use_days, day_given, date_days)

    tp_codes, tp_names = pd.factorize(v["timepoint"].to_numpy(dtype=object))
    named_names = np.array([str(t).strip().lower() in BASELINE_NAMES for t in tp_names], dtype=bool)
    named = np.where(tp_codes >= 0, named_names[np.maximum(tp_codes, 0)] if len(named_names) else False, False)
    # Baseline: a timepoint named like one, else the one on day 0, else the earliest.
    priority = np.where(named, 0, np.where(use_days & (day_given == 0), 1, 2))
    order = np.lexsort((np.nan_to_num(value, nan=np.inf), priority, codes))
    first = np.zeros(len(v), dtype=bool)
    if len(order):
        sorted_codes = codes[order]
        first[order[np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]]] = True
    base_value = _group_broadcast(value, codes, n_subjects, first)

    n_named = np.bincount(codes, weights=named.astype(float), minlength=n_subjects)[codes]
    problems.add(
        v,
        named & (n_named > 1) & ~first,
        "two_baselines",
        "timepoint {timepoint} is named like a baseline but another timepoint is the baseline; rename one of them",
    )

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

    base_date = _group_broadcast(date_days, codes, n_subjects, first)
    both = use_days & has_date & ~np.isnan(base_date)
    problems.add(
        v,
        both & ((date_days - base_date) != day),
        "day_date_mismatch",
        "timepoint {timepoint} has day {day} but its date is {date_offset} days after the baseline date; "
        "correct one of them",
        extra={"date_offset": date_days - base_date},
    )

    dated = pd.DataFrame({"s": codes, "d": day, "t": v["timepoint"].to_numpy(dtype=object)})
    same_day = dated.duplicated(["s", "d"], keep="first").to_numpy() & ~np.isnan(day) & ~dup
    if same_day.any():
        first_on_day = dated.drop_duplicates(["s", "d"]).rename(columns={"t": "other"})
        other = dated.merge(first_on_day, on=["s", "d"], how="left")["other"].to_numpy(dtype=object)
        problems.add(
            v,
            same_day,
            "same_day_timepoints",
            "timepoint {timepoint} is on the same day ({day}) as timepoint {other}; merge them into one timepoint",
            extra={"other": other},
        )
    n_follow = np.bincount(codes, weights=(~first).astype(float), minlength=n_subjects)[codes]
    problems.add(
        v,
        first & (n_follow == 0),
        "no_follow_up",
        "only a baseline timepoint: there is no follow-up to assess yet",
        severity="warning",
    )
    return v


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
    order = np.lexsort((visits["day"].to_numpy(dtype=float), subj_key_v))
    v = visits.iloc[order].reset_index(drop=True)
    v["subj_key"] = subj_key_v[order]
    v["tp_order"] = v.groupby("subj_key").cumcount().to_numpy()
    v["is_baseline"] = v["tp_order"].to_numpy() == 0

    v_tp, l_tp = _shared_codes(v["timepoint"], lesions["timepoint"])
    v_key, l_key = _pair_keys((v["subj_key"].to_numpy().astype(np.int64), v_tp), (rank[l_subj], l_tp))
    tp_key = _positions(v_key, l_key)
    lesion_code = _lesion_order(lesions["lesion_id"]) if len(lesions) else np.array([], dtype=np.int64)
    lorder = np.lexsort((lesion_code, tp_key))
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


def validate_and_prepare(tables: Tables) -> tuple[Prepared, pd.DataFrame]:
    """Check the tables, drop subjects with errors, and key the rest.

    Returns the prepared tables of every subject without an error, and all problems found (errors and
    warnings). The caller decides what an error means: `assess` refuses the case, `batch` sets the
    subject's rows aside in the errors output.
    """
    problems = Problems()
    visits = _resolve_days(tables.visits, problems)
    lesions = _link_lesions(visits, tables.lesions, problems)
    found = problems.frame()
    bad = set(found.loc[found["severity"] == "error", "subject_id"].tolist())
    if bad:
        visits = visits.loc[~visits["subject_id"].isin(bad)].reset_index(drop=True)
        lesions = lesions.loc[~lesions["subject_id"].isin(bad)].reset_index(drop=True)
    subjects = tables.subjects.loc[~tables.subjects["subject_id"].isin(bad)]
    settings = {k: s for k, s in tables.settings.items() if k not in bad}
    return _key(visits, lesions, subjects, settings), found

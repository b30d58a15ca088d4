"""Cross-row checks and keys: turn `Tables` into `Prepared`, listing every problem found.

The same vectorised code serves one case file and a million CSV rows. Problems carry a stable `code`, the
subject, timepoint and lesion, and the source (file and line) so messages point at the input. Errors make a
subject unscorable; warnings (`severity == "warning"`) are scored and reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .tables import Prepared, Tables

BASELINE_NAMES = {"baseline", "screening", "bl", "base", "pre-treatment", "pretreatment"}

PROBLEM_COLUMNS = ["subject_id", "timepoint", "lesion_id", "severity", "code", "message", "source", "line"]


class Problems:
    """Collects problem rows from vectorised masks."""

    def __init__(self) -> None:
        self._frames: list[pd.DataFrame] = []

    def add(self, rows: pd.DataFrame, mask: Any, code: str, message: Any, severity: str = "error") -> None:
        """Record one problem per row of `rows` where `mask` holds; `message` is a str or a Series."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        hit = rows.loc[mask]
        msg = message[mask] if isinstance(message, pd.Series) else message
        frame = pd.DataFrame({
            "subject_id": hit["subject_id"].to_numpy(dtype=object),
            "timepoint": hit["timepoint"].to_numpy(dtype=object) if "timepoint" in hit else None,
            "lesion_id": hit["lesion_id"].to_numpy(dtype=object) if "lesion_id" in hit else None,
            "severity": severity,
            "code": code,
            "message": np.asarray(msg, dtype=object) if not isinstance(msg, str) else msg,
            "source": hit["source"].to_numpy(dtype=object) if "source" in hit else None,
            "line": hit["line"].to_numpy() if "line" in hit else np.nan,
        })
        self._frames.append(frame)

    def frame(self) -> pd.DataFrame:
        if not self._frames:
            return pd.DataFrame(columns=PROBLEM_COLUMNS)
        return pd.concat(self._frames, ignore_index=True)[PROBLEM_COLUMNS]


def _text(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), "").astype(str)


def _date_days(values: pd.Series) -> np.ndarray:
    """Dates (datetime64, date objects or ISO text) -> days since 1970-01-01 as float (NaN if missing)."""
    stamps = pd.to_datetime(values, errors="coerce")
    days = np.full(len(values), np.nan)
    ok = stamps.notna().to_numpy()
    if ok.any():
        days[ok] = stamps[ok].to_numpy().astype("datetime64[D]").astype(np.int64)
    return days


def _resolve_days(visits: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    """Choose each subject's baseline and express every timepoint as days since baseline."""
    v = visits.copy()
    subj = v["subject_id"]
    day_given = v["day"].to_numpy(dtype=float)
    date_days = _date_days(v["date"]) if "date" in v else np.full(len(v), np.nan)
    has_day = ~np.isnan(day_given)
    has_date = ~np.isnan(date_days)

    dup = v.duplicated(["subject_id", "timepoint"], keep="first").to_numpy()
    problems.add(v, dup, "duplicate_timepoint",
                 "timepoint id " + _text(v["timepoint"]) + " appears twice for this subject; give each timepoint its own id")

    all_days = pd.Series(has_day).groupby(subj.to_numpy()).transform("all").to_numpy()
    all_dates = pd.Series(has_date).groupby(subj.to_numpy()).transform("all").to_numpy()
    mixed = ~all_days & ~all_dates
    problems.add(v, mixed & ~has_date, "day_and_date_mixed",
                 "timepoint " + _text(v["timepoint"]) + " has a day but no date while other timepoints of this "
                 "subject have only dates; give every timepoint a date, or every timepoint a day")
    use_days = all_days
    value = np.where(use_days, day_given, date_days)

    named = _text(v["timepoint"]).str.strip().str.lower().isin(BASELINE_NAMES).to_numpy()
    # Baseline: a timepoint named like one, else the one on day 0, else the earliest.
    priority = np.where(named, 0, np.where(use_days & (day_given == 0), 1, 2))
    subject_codes = pd.factorize(subj)[0]
    order = np.lexsort((np.nan_to_num(value, nan=np.inf), priority, subject_codes))
    sorted_codes = subject_codes[order]
    first = np.zeros(len(v), dtype=bool)
    if len(order):
        first[order[np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]]] = True
    base_value = pd.Series(np.where(first, value, np.nan)).groupby(subj.to_numpy()).transform("max").to_numpy()

    n_named = pd.Series(named).groupby(subj.to_numpy()).transform("sum").to_numpy()
    problems.add(v, named & (n_named > 1) & ~first, "two_baselines",
                 "timepoint " + _text(v["timepoint"]) + " is named like a baseline but another timepoint is the "
                 "baseline; rename one of them")

    day = value - base_value
    v["day"] = day
    v["is_baseline"] = first
    not_after = ~first & ~np.isnan(day) & (day <= 0)
    problems.add(v, not_after, "follow_up_not_after_baseline",
                 "follow-up " + _text(v["timepoint"]) + " is on day " + pd.Series(day).map("{:g}".format)
                 + " relative to baseline; follow-ups must come after the baseline scan (check its day or date)")

    # Both day and date given: they must tell the same story.
    base_date = pd.Series(np.where(first, date_days, np.nan)).groupby(subj.to_numpy()).transform("max").to_numpy()
    both = use_days & has_date & ~np.isnan(base_date)
    mismatch = both & ((date_days - base_date) != day)
    problems.add(v, mismatch, "day_date_mismatch",
                 "timepoint " + _text(v["timepoint"]) + " has day " + pd.Series(day).map("{:g}".format)
                 + " but its date is " + pd.Series(date_days - base_date).map("{:g}".format)
                 + " days after the baseline date; correct one of them")

    dated = v.assign(_d=day)
    same_day = dated.duplicated(["subject_id", "_d"], keep="first").to_numpy() & ~np.isnan(day) & ~dup
    first_on_day = dated.drop_duplicates(["subject_id", "_d"]).set_index(["subject_id", "_d"])["timepoint"]
    other = pd.Series([first_on_day.get((s, d)) for s, d in zip(subj, day, strict=True)], dtype=object)
    problems.add(v, same_day, "same_day_timepoints",
                 "timepoint " + _text(v["timepoint"]) + " is on the same day (" + pd.Series(day).map("{:g}".format)
                 + ") as timepoint " + other.astype(str) + "; merge them into one timepoint")
    n_follow = pd.Series(~first).groupby(subj.to_numpy()).transform("sum").to_numpy()
    problems.add(v, first & (n_follow == 0), "no_follow_up",
                 "only a baseline timepoint: there is no follow-up to assess yet", severity="warning")
    return v


def _link_lesions(visits: pd.DataFrame, lesions: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    """Attach each lesion row to its visit and to its own baseline row; check the lesion bookkeeping."""
    les = lesions.copy()
    vkey = pd.MultiIndex.from_arrays([visits["subject_id"].to_numpy(dtype=object),
                                      visits["timepoint"].to_numpy(dtype=object)])
    lkey = pd.MultiIndex.from_arrays([les["subject_id"].to_numpy(dtype=object),
                                      les["timepoint"].to_numpy(dtype=object)])
    vpos = vkey.drop_duplicates().get_indexer(lkey) if len(les) else np.array([], dtype=int)
    uniq_visits = visits.loc[~visits.duplicated(["subject_id", "timepoint"])].reset_index(drop=True)
    orphan = vpos < 0
    problems.add(les, orphan, "unknown_timepoint", "lesion row names a timepoint this subject does not have")
    vpos = np.where(orphan, 0, vpos)
    is_base = np.where(orphan, False, uniq_visits["is_baseline"].to_numpy(dtype=bool)[vpos] if len(uniq_visits) else False)
    les["is_baseline"] = is_base

    dup = les.duplicated(["subject_id", "timepoint", "lesion_id"], keep="first").to_numpy()
    # A timepoint id given twice already made the subject unscorable; its lesions are not duplicates too.
    visit_dup = visits.duplicated(["subject_id", "timepoint"], keep=False)
    twice = pd.MultiIndex.from_frame(visits.loc[visit_dup, ["subject_id", "timepoint"]].astype(object))
    problems.add(les, dup & ~lkey.isin(twice), "duplicate_lesion",
                 "lesion id " + _text(les["lesion_id"]) + " appears twice in timepoint " + _text(les["timepoint"])
                 + "; each lesion is listed once per timepoint (use fragments_mm for a split lesion)")

    pair = pd.MultiIndex.from_arrays([les["subject_id"].to_numpy(dtype=object), les["lesion_id"].to_numpy(dtype=object)])
    base_mask = is_base & ~dup
    base_index = pair[base_mask]
    base_rows = np.flatnonzero(base_mask)
    pos = base_index.get_indexer(pair) if len(base_index) else np.full(len(les), -1)
    base_row = np.where(pos >= 0, base_rows[np.maximum(pos, 0)] if len(base_rows) else -1, -1)
    les["base_row"] = base_row
    has_base = base_row >= 0

    kind = les["kind"].to_numpy(dtype=object)
    base_kind = np.where(has_base, kind[np.maximum(base_row, 0)] if len(les) else None, None)
    lid = _text(les["lesion_id"])
    tp = _text(les["timepoint"])

    problems.add(les, is_base & pd.isna(kind), "kind_missing_at_baseline",
                 "lesion " + lid + " has no kind at baseline; give kind: target, non_target or ablated")
    problems.add(les, is_base & (kind == "new"), "new_lesion_at_baseline",
                 "lesion " + lid + " is kind new at baseline; lesions present at baseline are target or non_target")
    first_at_fu = ~is_base & ~has_base
    problems.add(les, first_at_fu & np.isin(kind, ["target", "non_target", "ablated"]), "target_first_seen_at_follow_up",
                 "lesion " + lid + " is " + _text(les["kind"]) + " but first appears at " + tp
                 + "; target and non-target lesions are chosen at baseline (RECIST 1.1 §4.2), a lesion first seen "
                 "at follow-up is kind: new")
    problems.add(les, first_at_fu & pd.isna(kind), "kind_missing_for_new_lesion",
                 "lesion " + lid + " first appears at " + tp + " without a kind; a lesion first seen at follow-up "
                 "is kind: new")
    changed = ~is_base & has_base & ~pd.isna(kind) & (kind != base_kind)
    problems.add(les, changed, "kind_changed",
                 "lesion " + lid + " is " + pd.Series(base_kind).astype(str) + " at baseline but "
                 + _text(les["kind"]) + " at " + tp + "; a lesion keeps its baseline kind (a new lesion needs a new id)")

    # Inherit what a follow-up row may leave out.
    for column in ("kind", "organ", "is_lymph_node"):
        values = les[column].to_numpy()
        base_values = values[np.maximum(base_row, 0)] if len(les) else values
        missing = pd.isna(values)
        les[column] = np.where(has_base & missing, base_values, values)
        if column == "organ":
            differs = has_base & ~missing & ~pd.isna(base_values) & (values != base_values)
            problems.add(les, differs & ~is_base, "lesion_organ_changed",
                         "lesion " + lid + " is recorded in " + _text(les["organ"]) + " at " + tp
                         + " but in " + pd.Series(base_values).astype(str) + " at baseline; the baseline organ is used",
                         severity="warning")
            les["organ"] = np.where(has_base, base_values, les["organ"].to_numpy())
    organ = les["organ"].to_numpy(dtype=object)
    node_from_organ = pd.Series(organ).astype(str).str.contains("lymph|node", regex=True).to_numpy()
    node = les["is_lymph_node"].to_numpy(dtype=float)
    les["is_lymph_node"] = np.where(np.isnan(node), node_from_organ.astype(float), node)

    # Measurements the criteria cannot do without.
    kind = les["kind"].to_numpy(dtype=object)
    status = les["status"].to_numpy(dtype=object)
    is_node = les["is_lymph_node"].to_numpy(dtype=float) == 1
    target = kind == "target"
    present = status == "present"
    no_ld = les["longest_diameter_mm"].isna().to_numpy() & les["fragments_sum_mm"].isna().to_numpy()
    problems.add(les, target & is_node & present & les["short_axis_mm"].isna().to_numpy(),
                 "target_node_without_short_axis",
                 "target lymph node " + lid + " at " + tp + " has no short_axis_mm; nodes are measured in short axis "
                 "(RECIST 1.1), or give status too_small / not_evaluated")
    problems.add(les, target & ~is_node & present & no_ld, "target_without_longest_diameter",
                 "target lesion " + lid + " at " + tp + " has no longest_diameter_mm; give the measurement, or status "
                 "disappeared / too_small / not_evaluated")
    problems.add(les, target & (status == "unequivocal_progression"), "status_not_allowed",
                 "target lesion " + lid + " has status unequivocal_progression, which applies to non-target "
                 "lesions only; record the measured size instead")
    problems.add(les, is_base & np.isin(kind, ["target"]) & ~present, "baseline_target_not_measured",
                 "target lesion " + lid + " has status " + _text(les["status"]) + " at baseline; every target must "
                 "be measured at baseline")
    coalesced = status == "coalesced"
    carrier = pd.MultiIndex.from_arrays([les["subject_id"].to_numpy(dtype=object), les["timepoint"].to_numpy(dtype=object),
                                         les["coalesced_into"].to_numpy(dtype=object)])
    own = pd.MultiIndex.from_arrays([les["subject_id"].to_numpy(dtype=object), les["timepoint"].to_numpy(dtype=object),
                                     les["lesion_id"].to_numpy(dtype=object)])
    carrier_found = own.drop_duplicates().get_indexer(carrier) >= 0 if len(les) else np.array([], dtype=bool)
    problems.add(les, coalesced & (pd.isna(les["coalesced_into"].to_numpy(dtype=object)) | ~carrier_found),
                 "coalesced_without_carrier",
                 "lesion " + lid + " at " + tp + " is coalesced but coalesced_into does not name a lesion of the same "
                 "timepoint; name the lesion that carries the merged diameter (RECIST 1.1 §4.3)")
    return les


def _key(visits: pd.DataFrame, lesions: pd.DataFrame, subjects: pd.DataFrame,
         settings: dict[str, dict[str, dict[str, Any]]]) -> Prepared:
    """Sort and add integer keys (see `Prepared`)."""
    subject_order = pd.Index(sorted(set(visits["subject_id"].tolist()), key=str))
    subj_key_v = subject_order.get_indexer(visits["subject_id"].to_numpy(dtype=object))
    order = np.lexsort((visits["day"].to_numpy(dtype=float), subj_key_v))
    v = visits.iloc[order].reset_index(drop=True)
    v["subj_key"] = subj_key_v[order]
    v["tp_order"] = v.groupby("subj_key").cumcount().to_numpy()
    v["is_baseline"] = v["tp_order"].to_numpy() == 0

    vindex = pd.MultiIndex.from_arrays([v["subject_id"].to_numpy(dtype=object), v["timepoint"].to_numpy(dtype=object)])
    lkey = pd.MultiIndex.from_arrays([lesions["subject_id"].to_numpy(dtype=object),
                                      lesions["timepoint"].to_numpy(dtype=object)])
    tp_key = vindex.get_indexer(lkey) if len(lesions) else np.array([], dtype=np.int64)
    lesion_code = pd.factorize(lesions["lesion_id"].astype(str), sort=True)[0] if len(lesions) else np.array([], dtype=int)
    lorder = np.lexsort((lesion_code, tp_key))
    les = lesions.iloc[lorder].reset_index(drop=True)
    les["tp_key"] = tp_key[lorder]
    les["subj_key"] = v["subj_key"].to_numpy()[les["tp_key"].to_numpy()] if len(les) else np.array([], dtype=int)
    les["is_baseline"] = v["is_baseline"].to_numpy()[les["tp_key"].to_numpy()] if len(les) else np.array([], dtype=bool)
    les["day"] = v["day"].to_numpy()[les["tp_key"].to_numpy()] if len(les) else np.array([], dtype=float)

    pair = pd.MultiIndex.from_arrays([les["subj_key"].to_numpy(), les["lesion_id"].to_numpy(dtype=object)])
    base_mask = les["is_baseline"].to_numpy(dtype=bool)
    base_rows = np.flatnonzero(base_mask)
    pos = pair[base_mask].get_indexer(pair) if len(base_rows) else np.full(len(les), -1)
    les["base_row"] = np.where(pos >= 0, base_rows[np.maximum(pos, 0)] if len(base_rows) else -1, -1)

    subj = subjects.drop_duplicates("subject_id")
    subj = subj.set_index("subject_id").reindex(subject_order).reset_index(names="subject_id")
    subj["subj_key"] = np.arange(len(subj))
    return Prepared(subjects=subj, visits=v, lesions=les, settings=settings)


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

"""Batch scoring: trial tables -> per-visit responses, best response per subject, summary, rejected rows.

The same engine as `assess` (a case is a batch of one subject). Rows that cannot be scored are set aside with
their reason by the readers' ledgers, so `rows read = rows scored + rows rejected` for every input file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .assessment import ordered_ids, score_prepared, select_criteria
from .bor import whole_days
from .dates import DateOptions
from .engine import RuleSetResult
from .summary import summarise
from .tables import Prepared, Tables, with_object_strings
from .trial import ERROR_COLUMNS, ReadResult
from .validate import validate_and_prepare
from .vectors import round_output

KEY_ORDER = ["subject_id", "criteria", "timepoint", "day", "overall", "target", "non_target", "new_lesions"]
Progress = Callable[[str], None]


@dataclass
class BatchResult:
    """All outputs of one batch run, as tables."""

    visits: pd.DataFrame
    best: pd.DataFrame
    lesions: pd.DataFrame
    flags: pd.DataFrame
    warnings: pd.DataFrame
    rejected: pd.DataFrame
    counts: dict[str, dict[str, int]]
    summary: list[dict[str, Any]]
    results: dict[str, RuleSetResult] = field(default_factory=dict)
    prepared: Prepared | None = None
    # A run written part by part keeps no warning rows in memory, only their summary (see summarise_warnings)
    # and how many subjects have a warning (parts never share a subject, so the parts' counts add up).
    warnings_summarised: pd.DataFrame | None = None
    subjects_with_warnings: int | None = None
    dates: DateOptions = field(default_factory=DateOptions)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The output tables by the names `batch` writes them under (`-o`, `--best`, `--errors`, ...)."""
        return {
            "visits": self.visits,
            "best": self.best,
            "errors": self.rejected,
            "warnings": self.warnings,
            "flags": self.flags,
            "lesions": self.lesions,
        }

    def nothing_scored(self) -> str | None:
        """Why this run scored no subject (every row rejected, or no subject left), or None if it scored one."""
        read = sum(c["read"] for c in self.counts.values())
        scored = sum(c["scored"] for c in self.counts.values())
        if read and scored == 0:
            return f"no subject was scored: all {read:,} rows read were rejected"
        if len(self.best.columns) and self.best.empty:
            return "no subject was scored: every subject was set aside"
        return None

    def warning_summary(self) -> pd.DataFrame:
        if self.warnings_summarised is not None:
            return self.warnings_summarised
        return summarise_warnings(self.warnings)

    @property
    def n_warnings(self) -> int:
        if self.warnings_summarised is not None:
            return int(self.warnings_summarised["count"].sum())
        return len(self.warnings)

    @property
    def n_subjects_with_warnings(self) -> int:
        if self.subjects_with_warnings is not None:
            return self.subjects_with_warnings
        return count_warned_subjects(self.warnings)

    def accounting_lines(self) -> list[str]:
        """`rows read = rows scored + rows rejected`, per input file."""
        return accounting_lines(self.counts)


def accounting_lines(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """`rows read = rows scored + rows rejected` per input file, as every command that reads tables says it."""
    return [
        f"{Path(file).name}: rows read {c['read']:,} = rows scored {c['scored']:,} + rows rejected {c['rejected']:,}"
        for file, c in counts.items()
    ]


WARNING_SUMMARY_COLUMNS = ["code", "count", "subjects", "first_subjects", "message", "first_subject"]


def summarise_warnings(warnings: pd.DataFrame, first: int = 3) -> pd.DataFrame:
    """Per warning code: how many, in how many subjects, the first subjects (by id, as text) and the message of
    the first one. Parts of a cohort (subject-complete) are summarised alone and merged with `merge_warning_summaries`,
    which gives the same table as summarising the whole cohort at once."""
    if warnings.empty or "code" not in warnings:
        return pd.DataFrame(columns=WARNING_SUMMARY_COLUMNS)
    subject = warnings["subject_id"].map(lambda v: None if v is None or v != v else str(v))  # v != v: NaN
    frame = pd.DataFrame({"code": warnings["code"].to_numpy(), "s": subject.to_numpy(), "m": warnings["message"]})
    rows = []
    for code, group in frame.groupby("code", sort=True):
        ids = sorted(set(group["s"].dropna()))
        first_row = group.sort_values("s", na_position="last", kind="stable").iloc[0]
        rows.append(
            {
                "code": code,
                "count": len(group),
                "subjects": len(ids),
                "first_subjects": ids[:first],
                "message": first_row["m"],
                "first_subject": ids[0] if ids else None,
            }
        )
    return pd.DataFrame(rows, columns=WARNING_SUMMARY_COLUMNS)


def count_warned_subjects(warnings: pd.DataFrame) -> int:
    """How many subjects have at least one warning (file-level warnings belong to none)."""
    return int(warnings["subject_id"].dropna().astype(str).nunique()) if "subject_id" in warnings else 0


def merge_warning_summaries(parts: Sequence[pd.DataFrame], first: int = 3) -> pd.DataFrame:
    """One summary from the summaries of subject-complete parts (subjects never span parts)."""
    filled = [p for p in parts if not p.empty]
    if not filled:
        return pd.DataFrame(columns=WARNING_SUMMARY_COLUMNS)
    rows = []
    for code, group in pd.concat(filled, ignore_index=True).groupby("code", sort=True):
        ids = sorted({s for subjects in group["first_subjects"] for s in subjects})
        keyed = group.assign(_k=group["first_subject"].map(lambda v: (v is None, v or "")))
        rows.append(
            {
                "code": code,
                "count": int(group["count"].sum()),
                "subjects": int(group["subjects"].sum()),
                "first_subjects": ids[:first],
                "message": keyed.sort_values("_k", kind="stable")["message"].iat[0],
                "first_subject": ids[0] if ids else None,
            }
        )
    return pd.DataFrame(rows, columns=WARNING_SUMMARY_COLUMNS)


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """The key columns first (KEY_ORDER), then the others as they come; the columns are not copied."""
    first = [c for c in KEY_ORDER if c in frame.columns]
    columns = first + [c for c in frame.columns if c not in first]
    if columns == list(frame.columns):
        return frame
    return pd.DataFrame({c: frame[c] for c in columns}, index=frame.index, copy=False)


def _with_criteria(frame: pd.DataFrame, rule_id: str) -> pd.DataFrame:
    """A rule set's table with its id as second column (a shallow copy: the rule set's table is left as it is)."""
    out = frame.copy(deep=False)
    out.insert(1, "criteria", rule_id)
    return out


def _sorted(frame: pd.DataFrame, keys: Sequence[str], criteria_order: Sequence[str]) -> pd.DataFrame:
    """Rows by subject id (as text), then criteria set in run order, then the other `keys`; a stable sort, so
    that within those keys the engine's order stands. The rows are copied only when they move."""
    if frame.empty:
        return frame.reset_index(drop=True)
    order = _row_order(frame, keys, criteria_order)
    if order is not None:
        frame = frame.take(order)
    return frame.reset_index(drop=True)


def _row_order(frame: pd.DataFrame, keys: Sequence[str], criteria_order: Sequence[str]) -> np.ndarray | None:
    """The row positions in `_sorted`'s order, or None when the rows are in that order already."""
    subject = frame["subject_id"].astype(str).to_numpy(dtype=object)
    criteria = _criteria_rank(frame, criteria_order)
    others = [k for k in keys if k in frame.columns and k not in ("criteria", "subject_id")]
    if others:
        keyed = pd.DataFrame(
            {"_subject": subject, "_criteria_rank": criteria} | {f"_{i}": frame[k].array for i, k in enumerate(others)}
        )
        order = keyed.sort_values(list(keyed.columns), kind="stable").index.to_numpy()
    elif (criteria == criteria[0]).all() and pd.Index(subject).is_monotonic_increasing:
        return None  # one criteria set, subjects in order: the usual case, known without sorting
    else:
        order = np.lexsort((criteria, _text_rank(subject)))
    return None if (order == np.arange(len(order))).all() else order


def _criteria_rank(frame: pd.DataFrame, criteria_order: Sequence[str]) -> np.ndarray:
    """Each row's criteria set by its place in the run order; sets not in it (and none) after all of them."""
    if "criteria" not in frame:
        return np.zeros(len(frame), dtype=np.int64)
    rank = {c: i for i, c in enumerate(criteria_order)}
    codes, uniques = pd.factorize(frame["criteria"].to_numpy(dtype=object))
    ranks = np.array([rank.get(u, len(rank)) for u in uniques] + [len(rank)], dtype=np.int64)
    return ranks[codes]  # code -1 (no criteria set) takes the last entry


def _text_rank(text: np.ndarray) -> np.ndarray:
    """The rank of each text among the distinct texts in sorted order (equal texts, equal ranks)."""
    codes, uniques = pd.factorize(text)
    ranks = np.empty(len(uniques), dtype=np.int64)
    ranks[np.argsort(uniques, kind="stable")] = np.arange(len(uniques))
    return ranks[codes]


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Report values with two decimals, as `assess` does (decisions were made on exact values)."""
    for column in frame.columns:
        if frame[column].dtype.kind == "f":
            frame[column] = round_output(frame[column])
    return frame


def combine_results(
    results: Mapping[str, RuleSetResult], problems: pd.DataFrame, explain: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stack every rule set's tables into the batch outputs (visits, best, lesions, flags, warnings)."""
    order = ordered_ids(list(results))
    visits, best, lesions, flags, warnings = [], [], [], [], []
    for rule_id in order:
        result = results[rule_id]
        if result.rule_set.schema.kind == "response":
            tp = _with_criteria(result.timepoints, rule_id)
            if "explanation" in tp:
                if explain:
                    tp["explanation"] = [" | ".join(lines) for lines in tp["explanation"]]
                else:
                    tp = tp.drop(columns=["explanation"])
            visits.append(tp)
            if result.best is not None:
                b = _with_criteria(result.best, rule_id)
                base = result.baseline.drop(columns=["timepoint"])
                b = b.merge(base, on="subject_id", how="left")
                best.append(b)
            if not result.lesions.empty:
                lesions.append(_with_criteria(result.lesions, rule_id))
        if not result.flags.empty:
            f = result.flags.copy()
            f["evidence"] = [e if isinstance(e, str) else json.dumps(e, default=str) for e in f["evidence"]]
            flags.append(f)
        warnings.append(result.warnings)
    extra = problems.loc[problems["severity"] == "warning", ["subject_id", "code", "timepoint", "lesion_id", "message"]]
    if not extra.empty:
        # Data checks belong to no criteria set; `imputation_sensitive` names the set whose answer moves.
        criteria = problems.loc[extra.index, "criteria"] if "criteria" in problems else None
        warnings.append(extra.assign(criteria=criteria))

    def stack(parts: list[pd.DataFrame]) -> pd.DataFrame:
        filled = [p for p in parts if not p.empty]
        if filled:
            return pd.concat(filled, ignore_index=True)
        # No rows (every subject set aside): keep the columns, so the output still has its header line.
        return pd.DataFrame(columns=list(dict.fromkeys(c for p in parts for c in p.columns)))

    # Within a subject the engine's order stands (baseline, then VISITNUM or time): a day may be unknown.
    visit_table = _rounded(_sorted(_ordered(stack(visits)), ["subject_id", "criteria"], order))
    best_table = whole_days(_rounded(_sorted(stack(best), ["subject_id", "criteria"], order)))
    lesion_table = _sorted(stack(lesions), ["subject_id", "criteria", "timepoint", "lesion_id"], order)
    flag_table = _sorted(stack(flags), ["subject_id", "day", "flag", "lesion_id"], order)
    warning_table = stack(warnings)
    if not warning_table.empty:
        warning_table = warning_table[["subject_id", "criteria", "code", "timepoint", "lesion_id", "message"]]
        warning_table = _sorted(warning_table, ["subject_id", "criteria", "code", "timepoint", "lesion_id"], order)
    return visit_table, best_table, lesion_table, flag_table, warning_table


@with_object_strings
def score_read(
    read: ReadResult,
    criteria: Sequence[str] | str | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    explain: bool = False,
    progress: Progress | None = None,
    dates: DateOptions | None = None,
) -> BatchResult:
    """Validate the tables a reader built, set aside unscorable subjects, score the rest with every rule set.
    `dates`: imputation of partial dates and the stable-disease reference (see `dates.DateOptions`)."""
    say = progress or (lambda _msg: None)
    dates = dates or DateOptions()
    say("checking subjects")
    prepared, problems = validate_and_prepare(read.tables, dates)
    read.set_aside(problems)
    if read.warnings is not None and not read.warnings.empty:
        problems = pd.concat([problems, read.warnings], ignore_index=True)
    rule_ids = select_criteria(None, criteria)
    say("scoring " + ", ".join(str(r) for r in rule_ids))
    results = score_prepared(prepared, rule_ids, settings, None, explain=explain)
    sensitive = imputation_sensitivity(read.tables, prepared, results, rule_ids, settings, dates)
    if not sensitive.empty:
        problems = pd.concat([problems, sensitive], ignore_index=True)
    visits, best, lesions, flags, warnings = combine_results(results, problems, explain)
    rejected = read.rejected()
    rejected = (
        rejected.sort_values(["file", "line"], kind="stable").reset_index(drop=True)
        if not rejected.empty
        else pd.DataFrame(columns=ERROR_COLUMNS)
    )
    return BatchResult(
        visits, best, lesions, flags, warnings, rejected, read.counts(), summarise(best), results, prepared, dates=dates
    )


def imputation_sensitivity(
    tables: Tables,
    prepared: Prepared,
    results: Mapping[str, RuleSetResult],
    rule_ids: Sequence[str | Path],
    settings: Mapping[str, Mapping[str, Any]] | None,
    dates: DateOptions,
) -> pd.DataFrame:
    """`imputation_sensitive`: subjects whose best response would differ between imputing their partial dates to
    the first and to the last possible day. Only the subjects with such a date are scored again, twice."""
    columns = ["subject_id", "criteria", "code", "timepoint", "lesion_id", "message", "severity"]
    if "date_partial" not in prepared.visits or not prepared.visits["date_partial"].any():
        return pd.DataFrame(columns=columns)
    partial = prepared.visits.loc[prepared.visits["date_partial"].to_numpy(dtype=bool)]
    subjects = set(partial["subject_id"])
    subset = Tables(
        subjects=tables.subjects.loc[tables.subjects["subject_id"].isin(subjects)],
        visits=tables.visits.loc[tables.visits["subject_id"].isin(subjects)],
        lesions=tables.lesions.loc[tables.lesions["subject_id"].isin(subjects)],
        settings={k: v for k, v in tables.settings.items() if k in subjects},
    )
    answers = {}
    for method in ("first", "last"):
        again, _ = validate_and_prepare(subset, dataclasses.replace(dates, imputation=method))
        answers[method] = score_prepared(again, rule_ids, settings)
    where = partial.groupby("subject_id")["timepoint"].agg(lambda t: ", ".join(map(str, t)))
    rows = []
    for rule_id, result in results.items():
        if result.best is None or rule_id not in answers["first"]:
            continue
        first, last = (answers[m][rule_id].best for m in ("first", "last"))
        assert first is not None and last is not None
        both = first[["subject_id", "best_overall_response"]].merge(
            last[["subject_id", "best_overall_response"]], on="subject_id", suffixes=("_first", "_last")
        )
        both = both.set_index("subject_id")
        differ = both.loc[
            both["best_overall_response_first"].astype(str) != both["best_overall_response_last"].astype(str)
        ]
        for subject, row in differ.iterrows():
            rows.append(
                {
                    "subject_id": subject,
                    "criteria": rule_id,
                    "code": "imputation_sensitive",
                    "timepoint": None,
                    "lesion_id": None,
                    "message": f"the best response depends on the partial date(s) at {where.get(subject)}: "
                    f"{row['best_overall_response_first']} with --date-imputation first, "
                    f"{row['best_overall_response_last']} with --date-imputation last",
                    "severity": "warning",
                }
            )
    return pd.DataFrame(rows, columns=columns)

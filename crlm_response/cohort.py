"""A cohort to score as a whole: case files (one, or a folder of them) or any batch table, with each subject's
own settings. `diff` compares two criteria sets on one.

A case file may set a criteria set's parameters for its subject (`settings:`); those subjects are scored with
them, everyone else with the defaults (and, for both, the overrides given for the run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .batch import accounting_lines
from .engine import RuleSetResult, resolve_params, score
from .errors import CrlmError
from .rules import LoadedRuleSet
from .tables import Prepared


@dataclass
class Cohort:
    """Prepared tables of a cohort, the case settings per subject, and what was read (one line per source)."""

    prepared: Prepared
    settings: dict[str, Any] = field(default_factory=dict)
    accounting: list[str] = field(default_factory=list)


def load_cohort(
    path: Path,
    column_map: Path | None = None,
    organs: Path | None = None,
    encoding: str = "auto",
    sheet: str | None = None,
) -> Cohort:
    """Case files (one YAML, or a folder of them) or any batch input (CSV / Parquet / Excel) as one cohort."""
    if path.is_dir() or path.suffix.lower() in (".yaml", ".yml"):
        return _case_files(path)
    from .tables import object_strings
    from .trial import SourceOptions, load_column_map, read_long
    from .validate import validate_and_prepare

    read = read_long(path, organs=organs, options=SourceOptions(encoding, sheet, load_column_map(column_map)))
    with object_strings():
        prepared, problems = validate_and_prepare(read.tables)
    read.set_aside(problems)
    return Cohort(prepared, {}, accounting_lines(read.counts()))


def _case_files(path: Path) -> Cohort:
    from .assessment import problems_to_error
    from .readers import load_case_with_lines
    from .tables import object_strings, tables_from_cases
    from .validate import validate_and_prepare

    files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    if not files:
        raise CrlmError("no case files (*.yaml) in this folder", file=path)
    loaded = []
    for file in files:
        case, lines = load_case_with_lines(file)
        loaded.append((case, str(file), lines))
    ids = [c.case_id for c, _, _ in loaded]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise CrlmError(
            f"case_id given in more than one file: {', '.join(dup)}",
            file=path,
            hint="every case in a cohort needs its own case_id",
        )
    with object_strings():
        prepared, problems = validate_and_prepare(tables_from_cases(loaded))
    if (problems["severity"] == "error").any():
        raise problems_to_error(problems)
    return Cohort(prepared, {c.case_id: c.settings for c, _, _ in loaded}, [f"{len(loaded)} case file(s)"])


def score_cohort(cohort: Cohort, rules: LoadedRuleSet, overrides: Mapping[str, Any] | None = None) -> RuleSetResult:
    """Score a cohort with one criteria set; subjects whose case files set its parameters are scored with them."""
    groups: dict[str, list[str]] = {}
    layers: dict[str, dict[str, Any]] = {}
    for subject in cohort.prepared.subjects["subject_id"]:
        own = (cohort.settings.get(subject) or {}).get(rules.id, {})
        key = repr(sorted(own.items()))
        groups.setdefault(key, []).append(subject)
        layers[key] = own
    results = []
    for key, subjects in groups.items():
        result = score(cohort.prepared, rules, resolve_params(rules, layers[key], dict(overrides or {})), explain=True)
        results.append(_only(result, set(subjects)) if len(groups) > 1 else result)
    return results[0] if len(results) == 1 else _stacked(results)


def _only(result: RuleSetResult, keep: set[str]) -> RuleSetResult:
    """The rows of these subjects (scored with one set of parameters)."""

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.loc[frame["subject_id"].isin(keep)] if "subject_id" in frame else frame

    return dataclasses.replace(
        result,
        timepoints=rows(result.timepoints),
        lesions=rows(result.lesions),
        baseline=rows(result.baseline),
        best=rows(result.best) if result.best is not None else None,
        flags=rows(result.flags),
        warnings=rows(result.warnings),
    )


def _stacked(results: list[RuleSetResult]) -> RuleSetResult:
    """The results of the subject groups as one result (parameters shown: the first group's)."""

    def stack(name: str) -> pd.DataFrame:
        return pd.concat([getattr(r, name) for r in results], ignore_index=True)

    first = results[0]
    return dataclasses.replace(
        first,
        timepoints=stack("timepoints"),
        lesions=stack("lesions"),
        baseline=stack("baseline"),
        best=stack("best") if first.best is not None else None,
        flags=stack("flags"),
        warnings=stack("warnings"),
    )

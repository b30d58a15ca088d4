"""`assess`: one case through the same engine as a batch (a case is a batch of one subject).

The result is an `Assessment`, whose `to_dict()` is the JSON contract of `assess --format json`:
``{"case_id", "criteria": {"<id>": {"timepoints": [...], "best_overall_response", ...}}, "toxicity": [...],
"warnings": [...], "disagreements": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .bor import EVENT_COLUMNS
from .engine import RuleSetResult, _plain, resolve_params, score
from .errors import CaseError, SettingsError, StrictModeError
from .models import Case
from .readers import load_case_with_lines
from .rules import LoadedRuleSet, builtin_ids, load_rules
from .tables import Prepared, tables_from_cases, with_object_strings
from .validate import validate_and_prepare

# Verdicts that say nothing about the tumour (the set does not apply, or nothing was assessed): never a
# disagreement with another set.
SILENT_ROLES = frozenset({"not_applicable", "not_done", "missing"})
# Display order: RECIST first, then the sets a reader compares it with; anything else after, by id.
PREFERRED_ORDER = (
    "recist1.1",
    "choi",
    "mchoi",
    "chun_morphologic",
    "who",
    "mrecist",
    "easl",
    "percist1.0",
    "ablation",
    "toxicity",
)


def ordered_ids(ids: Sequence[str]) -> list[str]:
    rank = {rule_id: i for i, rule_id in enumerate(PREFERRED_ORDER)}
    return sorted(ids, key=lambda r: (rank.get(r, len(rank)), r))


@lru_cache(maxsize=64)
def _cached_rules(reference: str) -> LoadedRuleSet:
    return load_rules(reference)


def get_rules(reference: str | Path) -> LoadedRuleSet:
    """Load a rule set by id or path, cached for the life of the process (files are not re-read)."""
    return _cached_rules(str(reference))


def _has_input(case: Case, field_name: str) -> bool:
    for tp in case.timepoints:
        for holder in [*tp.lesions, tp.organs, tp.pet]:
            if holder is not None and getattr(holder, field_name, None) not in (None, False, []):
                return True
    return False


def select_criteria(case: Case | None, requested: Sequence[str] | str | None) -> list[str]:
    """Which rule sets to run: those asked for (`all` = every shipped set), else the case's own `criteria`,
    else the default sets plus every set whose required inputs the case contains."""
    if isinstance(requested, str):
        requested = [r.strip() for r in requested.split(",") if r.strip()]
    if requested:
        if list(requested) == ["all"]:
            return ordered_ids(builtin_ids())
        return list(dict.fromkeys(requested))
    if case is not None and case.criteria:
        return list(dict.fromkeys(case.criteria))
    chosen = []
    for rule_id in ordered_ids(builtin_ids()):
        rules = get_rules(rule_id)
        has_inputs = case is not None and rules.schema.inputs and all(_has_input(case, f) for f in rules.schema.inputs)
        if rules.schema.default or (has_inputs and not rules.schema.only_when_asked):
            chosen.append(rule_id)
    return chosen


@dataclass
class Assessment:
    """The answer for one case: per criteria set, toxicity flags, warnings."""

    case_id: str
    results: dict[str, RuleSetResult]
    warnings: list[dict[str, Any]] = field(default_factory=list)
    prepared: Prepared | None = None  # the tables the results were scored from (ADaM needs the visits)

    @property
    def response_results(self) -> dict[str, RuleSetResult]:
        return {k: r for k, r in self.results.items() if r.rule_set.schema.kind == "response"}

    @property
    def toxicity(self) -> list[dict[str, Any]]:
        flags: list[dict[str, Any]] = []
        for result in self.results.values():
            for row in result.flags.to_dict("records"):
                item = {"flag": row["flag"], "timepoint": row["timepoint"], "day": row["day"]}
                if not pd.isna(row["lesion_id"]):
                    item["lesion"] = row["lesion_id"]
                if not pd.isna(row["grade"]):
                    item["grade"] = int(row["grade"])
                item.update(
                    {
                        "evidence": row["evidence"],
                        "explanation": row["explanation"],
                        "citation": row["citation"],
                        "evidence_level": row["evidence_level"],
                        "criteria": result.id,
                    }
                )
                flags.append(item)
        return flags

    @property
    def toxicity_assessed(self) -> bool:
        """Whether a toxicity rule set was run (an empty flag list then means "none raised")."""
        return any(r.rule_set.schema.kind == "toxicity" for r in self.results.values())

    def block(self, rule_id: str) -> dict[str, Any]:
        result = self.results[rule_id]
        schema = result.rule_set.schema
        out: dict[str, Any] = {"name": schema.name, "kind": schema.kind}
        if not result.baseline.empty:
            for key in result.baseline.columns:
                if key not in ("subject_id", "timepoint"):
                    out[key] = _plain(result.baseline[key].iat[0])
        lesions_by_tp: dict[Any, list[dict[str, Any]]] = {}
        for row in result.lesions.to_dict("records"):
            entry = {"id": row.pop("lesion_id")}
            tp = row.pop("timepoint")
            row.pop("subject_id")
            entry.update({str(k): _plain(v) for k, v in row.items()})
            lesions_by_tp.setdefault(tp, []).append(entry)
        timepoints = []
        for row in result.timepoints.to_dict("records"):
            row.pop("subject_id")
            tp_id = row.pop("timepoint")
            item: dict[str, Any] = {"id": tp_id}
            explanation = row.pop("explanation", None)
            item.update({str(k): _plain(v) for k, v in row.items()})
            if schema.kind == "response" and "overall" not in item:
                item["overall"] = None
            if tp_id in lesions_by_tp:
                item["lesions"] = lesions_by_tp[tp_id]
            if explanation is not None:
                item["explanation"] = explanation
            timepoints.append(item)
        out["timepoints"] = timepoints
        if result.best is not None and not result.best.empty:
            best = result.best.iloc[0]
            for key in (
                "best_overall_response",
                "best_overall_response_day",
                "best_overall_response_timepoint",
                "best_overall_response_reason",
                "responder",
                "clinical_benefit",
                *EVENT_COLUMNS,
            ):
                out[key] = _plain(best[key])
        out["parameters"] = {k: _plain(v) if not isinstance(v, list) else v for k, v in result.params.items()}
        out["warnings"] = [w for w in self.warnings if w.get("criteria") == rule_id]
        return out

    def disagreements(self) -> list[dict[str, Any]]:
        """Timepoints where the response sets' overall verdicts mean different things: their roles differ (a
        RECIST SD and a Chun optimal response disagree; a RECIST CR and a PERCIST CMR agree)."""
        verdicts: dict[str, dict[str, Any]] = {}
        roles: dict[str, dict[str, str]] = {}
        for rule_id, result in self.response_results.items():
            if "overall" not in result.timepoints or result.rule_set.schema.best_response is None:
                continue  # ablation outcomes are about the treated lesion, not the patient's response
            scale = result.rule_set.scale
            for tp, value in zip(result.timepoints["timepoint"], result.timepoints["overall"], strict=True):
                role = scale.role_of(value)
                if role is not None and role not in SILENT_ROLES:
                    verdicts.setdefault(tp, {})[rule_id] = value
                    roles.setdefault(tp, {})[rule_id] = role
        out = []
        for tp, by_set in verdicts.items():
            if len(by_set) > 1 and len(set(roles[tp].values())) > 1:
                out.append({"timepoint": tp, "verdicts": by_set, "roles": roles[tp]})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "crlm_response_version": __version__,
            "criteria": {rule_id: self.block(rule_id) for rule_id in self.response_results},
            # "Not assessed" must never read as "none raised": null, not an empty list, when no toxicity set ran.
            "toxicity": self.toxicity if self.toxicity_assessed else None,
            "toxicity_assessed": self.toxicity_assessed,
            "warnings": self.warnings,
            "disagreements": self.disagreements(),
        }


def problems_to_error(problems: pd.DataFrame) -> CaseError:
    """The first data error of a case, located; the count of the others in the hint."""
    errors = problems.loc[problems["severity"] == "error"]
    first = errors.iloc[0]
    source = str(first["source"] or "")
    file, _, key = source.partition(": ")
    line = int(first["line"]) if pd.notna(first["line"]) else None
    more = len(errors) - 1
    return CaseError(
        str(first["message"]),
        file=file or None,
        line=line,
        key=key or None,
        hint=f"and {more} more problem(s)" if more else None,
    )


def score_prepared(
    prepared: Prepared,
    rule_ids: Sequence[str | Path],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    case_settings: Mapping[str, Mapping[str, Any]] | None = None,
    explain: bool = False,
) -> dict[str, RuleSetResult]:
    """Run each rule set over prepared tables: file defaults, then case settings, then `settings` (--set)."""
    settings = settings or {}
    case_settings = case_settings or {}
    results: dict[str, RuleSetResult] = {}
    for reference in rule_ids:
        rules = get_rules(reference)
        params = resolve_params(rules, case_settings.get(rules.id, {}), settings.get(rules.id, {}))
        results[rules.id] = score(prepared, rules, params, explain=explain)
    return results


@with_object_strings
def assess(
    case: Case | str | Path,
    criteria: Sequence[str] | str | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    explain: bool = True,
    strict: bool = False,
) -> Assessment:
    """Assess one case: a path to a case YAML file, or a `Case`.

    `criteria`: rule-set ids or files (default: the case's own list, else the default sets);
    `settings`: {rule_set_id: {parameter: value}} overriding the case's `settings`;
    `strict`: raise on any warning.
    """
    if isinstance(case, str | Path):
        file = str(case)
        case_obj, lines = load_case_with_lines(case)
    else:
        file, case_obj, lines = "<case>", case, {}
    rule_ids = select_criteria(case_obj, criteria)
    known = set(builtin_ids()) | {get_rules(r).id for r in rule_ids}
    for rule_id in case_obj.settings:
        if rule_id not in known:
            raise SettingsError(
                f"unknown rule set `{rule_id}`",
                file=file,
                line=lines.get(("settings", rule_id)),
                key=f"settings.{rule_id}",
                hint="shipped rule sets: " + ", ".join(builtin_ids()),
            )
    tables = tables_from_cases([(case_obj, file, lines)])
    prepared, problems = validate_and_prepare(tables)
    if (problems["severity"] == "error").any():
        raise problems_to_error(problems)
    results = score_prepared(prepared, rule_ids, settings, case_obj.settings, explain=explain)
    # The criteria's own warnings first (the most specific), then the data checks shared by every set.
    warnings: list[dict[str, Any]] = []
    for result in results.values():
        warnings.extend(_warning_dict(w) for w in result.warnings.to_dict("records"))
    warnings.extend(_warning_dict(w) for w in problems.loc[problems["severity"] == "warning"].to_dict("records"))
    if strict and warnings:
        first = warnings[0]
        line, key = _warning_location(prepared, first)
        raise StrictModeError(
            f"warning {first['code']}: {first['message']}",
            file=file,
            line=line,
            key=key,
            hint=f"--strict turns warnings into errors; {len(warnings)} warning(s) in all",
        )
    return Assessment(case_obj.case_id, results, warnings, prepared)


def _warning_location(prepared: Prepared, warning: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The case-file line and key of the timepoint or lesion a warning is about."""
    table = prepared.lesions if warning.get("lesion") is not None else prepared.visits
    mask = table["timepoint"].to_numpy(dtype=object) == warning.get("timepoint")
    if warning.get("lesion") is not None:
        mask &= table["lesion_id"].to_numpy(dtype=object) == warning["lesion"]
    rows = table.loc[mask]
    if rows.empty:
        return None, None
    line = rows["line"].iat[0]
    source = str(rows["source"].iat[0] or "")
    return (int(line) if pd.notna(line) else None), (source.partition(": ")[2] or None)


def _warning_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = {"code": row.get("code"), "timepoint": row.get("timepoint"), "message": row.get("message")}
    if row.get("lesion_id") is not None and not (
        isinstance(row.get("lesion_id"), float) and np.isnan(row["lesion_id"])
    ):
        out["lesion"] = row["lesion_id"]
    if row.get("criteria"):
        out["criteria"] = row["criteria"]
    return out

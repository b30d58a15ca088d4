"""The engine: prepared lesion tables + one rule set -> categories, best response, flags, warnings.

One code path scores one case or a whole trial: every step works on whole columns (all subjects at once).
The rule set decides everything clinical; the engine only knows how to evaluate checks, ordered decision
lists, tables, aggregates and flags, and how to sequence visits into a best overall response.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .bor import BorSettings, best_overall_response, persist_category
from .conditions import few_rows, format_value, on_rows
from .errors import RuleSetError
from .functions import history_changed
from .metrics import METRICS, Context, Level, equal_codes
from .rules import CompiledOutput, LoadedRuleSet, check_parameter_value, report_items
from .tables import Prepared, blank_where, text_codes, with_none
from .vectors import round_output

WARNING_COLUMNS = ["subject_id", "criteria", "code", "timepoint", "lesion_id", "message"]
FLAG_COLUMNS = [
    "subject_id",
    "flag",
    "timepoint",
    "day",
    "lesion_id",
    "grade",
    "evidence",
    "explanation",
    "citation",
    "evidence_level",
]


class _LevelEnv:
    """The condition environment at one level (see conditions.Env)."""

    def __init__(self, ctx: Context, level: Level) -> None:
        self.ctx = ctx
        self.level = level
        self.n = ctx.n[level]

    def text_equal(self, a: Any, b: Any) -> Any:
        return self.ctx.text_equal(a, b)

    def get(self, name: str) -> Any:
        try:
            return self.ctx.get(name, self.level)
        except KeyError as exc:
            raise RuleSetError(
                f"a metric used here needs the parameter {exc.args[0]!r}, which this rule set does not define"
            ) from None

    def subset(self, rows: np.ndarray) -> _RowsEnv:
        return _RowsEnv(self, rows)


class _RowsEnv:
    """The condition environment on some rows of a level (conditions.Env): the values of those rows only.

    A condition that only matters where another holds (`a and b`; a rule of a decision list, on the rows no earlier
    rule decided) is worked out on those rows alone. Every operation of the rule language is row by row, so the
    answer is the same on each row; text columns known as codes keep their codes here."""

    def __init__(self, level: _LevelEnv, rows: np.ndarray) -> None:
        self.level = level
        self.rows = rows
        self.n = len(rows)
        self._codes: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def get(self, name: str) -> Any:
        value = self.level.get(name)
        if not (isinstance(value, np.ndarray) and value.shape == (self.level.n,)):
            return value  # a parameter
        part = value[self.rows]
        coded = self.level.ctx.codes_of(value)
        if coded is not None:
            self._codes[id(part)] = (part, coded[0][self.rows], coded[1])
        return part

    def text_equal(self, a: Any, b: Any) -> Any:
        for column, word in ((a, b), (b, a)):
            entry = self._codes.get(id(column)) if not isinstance(word, np.ndarray) else None
            if entry is not None and entry[0] is column:
                return equal_codes(entry[1], entry[2], word)
        return self.level.ctx.text_equal(a, b)

    def subset(self, rows: np.ndarray) -> _RowsEnv:
        return _RowsEnv(self.level, self.rows[rows])


@dataclass
class RuleSetResult:
    """Everything one rule set says about a cohort, as tables (one row per follow-up, lesion, subject)."""

    rule_set: LoadedRuleSet
    params: dict[str, Any]
    timepoints: pd.DataFrame
    lesions: pd.DataFrame
    baseline: pd.DataFrame
    best: pd.DataFrame | None
    flags: pd.DataFrame
    warnings: pd.DataFrame

    @property
    def id(self) -> str:
        return self.rule_set.id


def resolve_params(rule_set: LoadedRuleSet, *overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Rule-file defaults, then each override in turn (case `settings`, then `--set`), all checked."""
    params = rule_set.default_params
    for layer in overrides:
        for name, value in layer.items():
            params[name] = check_parameter_value(rule_set, name, value, f"{rule_set.id}.{name}")
    return params


def _scope(ctx: Context, out: CompiledOutput, env: _LevelEnv) -> np.ndarray:
    if out.where is not None:
        return out.where.evaluate(env)
    if out.spec.level == "timepoint":
        return np.asarray(ctx.value("is_follow_up"), dtype=bool)
    return ~np.asarray(ctx.value("is_lesion_baseline"), dtype=bool)


def _decide(out: CompiledOutput, env: _LevelEnv, scope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordered decision list: the first rule that holds decides. Returns (values, index of the rule).

    Yes/no outputs are float arrays (1.0 / 0.0 / NaN outside the scope), like yes/no inputs."""
    fired = np.full(env.n, -1, dtype=np.int64)
    open_rows = scope.copy()
    for k, rule in enumerate(out.rules):
        if not open_rows.any():
            break
        if rule.condition is None:
            hit = open_rows
        elif (rows := few_rows(env, open_rows)) is not None:  # a rule only decides rows no earlier rule decided
            hit = on_rows(env, rows, rule.condition.evaluate)
        else:
            hit = rule.condition.evaluate(env)  # a new array: narrowed in place
            hit &= open_rows
        np.putmask(fired, hit, k)
        open_rows &= ~hit
    # Each row takes the result of the rule that fired (the last slot: none fired).
    if all(isinstance(rule.result, bool) for rule in out.rules):
        return np.array([float(rule.result) for rule in out.rules] + [np.nan])[fired], fired
    results = np.empty(len(out.rules) + 1, dtype=object)
    for k, rule in enumerate(out.rules):
        results[k] = rule.result
    values = results[fired]
    # A word output is a few words through the rule that fired: compared as codes later.
    words, word_of_rule = _rule_words(out)
    env.ctx.coded(values, np.append(word_of_rule, -1)[fired], words)
    return values, fired


def _rule_words(out: CompiledOutput) -> tuple[np.ndarray, np.ndarray]:
    """The distinct results of an output's rules, and for each rule the index of its result among them."""
    words: list[Any] = []
    index: list[int] = []
    for rule in out.rules:
        match = next((i for i, w in enumerate(words) if type(w) is type(rule.result) and w == rule.result), None)
        if match is None:
            words.append(rule.result)
            match = len(words) - 1
        index.append(match)
    return np.array(words + [None], dtype=object)[:-1], np.array(index, dtype=np.int64)


def _aggregate(ctx: Context, out: CompiledOutput, params: Mapping[str, Any], scope: np.ndarray) -> np.ndarray:
    agg = out.spec.aggregate
    assert agg is not None
    method = params.get(agg.method, agg.method) if agg.method in params else agg.method
    source = ctx.value(agg.source)
    n_visits = ctx.n["timepoint"]
    eligible = ~pd.isna(source)
    for value in agg.ignore:
        eligible &= ~np.asarray(source == value, dtype=bool)
    result = np.full(n_visits, None, dtype=object)
    if method == "any":
        hit = np.zeros(len(source), dtype=bool)
        for value in agg.values:
            hit |= np.asarray(source == value, dtype=bool)
        flags = np.full(n_visits, np.nan)
        flags[scope] = 0.0
        flags[(ctx.per_visit_count(hit & eligible) > 0) & scope] = 1.0
        return flags
    visit = ctx.lesion_visit
    if method == "worst_lesion":
        rank = np.full(len(source), np.inf)
        for r, value in enumerate(agg.order):
            rank[eligible & np.asarray(source == value, dtype=bool)] = r
        for value in agg.unknown:
            rank[eligible & np.asarray(source == value, dtype=bool)] = 0.5
        best = ctx.per_visit_reduce(rank, eligible & np.isfinite(rank), "min")
        for r, value in enumerate(agg.order):
            result[(best == r) & scope] = value
        if agg.unknown:
            result[(best == 0.5) & scope] = agg.unknown[0]
    elif method == "largest_lesion":
        size = np.nan_to_num(ctx.value(agg.size), nan=-1.0)
        rows = np.flatnonzero(eligible)
        if len(rows):
            frame = pd.DataFrame({"visit": visit[rows], "size": size[rows], "row": rows})
            top = frame.sort_values(["visit", "size", "row"], ascending=[True, False, True]).drop_duplicates("visit")
            chosen = np.full(n_visits, -1, dtype=np.int64)
            chosen[top["visit"].to_numpy()] = top["row"].to_numpy()
            has = (chosen >= 0) & scope
            result[has] = source[chosen[has]]
    else:
        raise RuleSetError(f"unknown aggregate method {method!r} in {out.spec.name}")
    if agg.empty is not None:
        result[scope & pd.isna(result)] = agg.empty
    return result


def _render_rows(template: Any, ctx: Context, level: Level, rows: np.ndarray) -> list[str]:
    """Explanation or warning text for the given rows, rendered column-wise."""
    if template is None:
        return [""] * len(rows)
    columns = {}
    for name, _ in template.fields:
        column = ctx.get(name, level)
        column = column[rows] if isinstance(column, np.ndarray) else column
        if isinstance(column, np.ndarray) and column.dtype.kind == "f" and ctx.type_of(name) == "bool":
            column = np.where(np.isnan(column), None, column == 1)  # yes/no, not 1.0/0.0
        columns[name] = column
    return list(template.render_many(columns, len(rows)))


def _warning_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=WARNING_COLUMNS) if rows else pd.DataFrame(columns=WARNING_COLUMNS)


def score(
    prepared: Prepared, rule_set: LoadedRuleSet, params: Mapping[str, Any] | None = None, explain: bool = False
) -> RuleSetResult:
    """Apply one rule set to every subject of `prepared`.

    `params` are the resolved parameters (see `resolve_params`); `explain` adds, per timepoint, one line per
    decision naming the rule and the numbers it saw.
    """
    params = dict(params if params is not None else rule_set.default_params)
    # How dates were used (imputation, the stable-disease reference) travels with the results' parameters.
    params.update({k: v for k, v in prepared.dates.items() if k not in params})
    ctx = Context(prepared, params, rule_set.scale)
    envs = {level: _LevelEnv(ctx, level) for level in ("lesion", "timepoint", "subject")}
    visits, lesions = prepared.visits, prepared.lesions
    warnings: list[dict[str, Any]] = []

    def add_warnings(level: Level, mask: np.ndarray, code: str, template: Any) -> None:
        rows = np.flatnonzero(mask)
        if not len(rows):
            return
        messages = _render_rows(template, ctx, level, rows)
        # Ids as text for the warned rows only (the tables keep them as codes).
        frame = lesions if level == "lesion" else visits
        subjects, tps = (frame[c].iloc[rows].to_numpy(dtype=object) for c in ("subject_id", "timepoint"))
        lesion_ids = lesions["lesion_id"].iloc[rows].to_numpy(dtype=object) if level == "lesion" else None
        for i, message in enumerate(messages):
            subject, tp = subjects[i], tps[i]
            lesion = lesion_ids[i] if lesion_ids is not None else None
            warnings.append(
                {
                    "subject_id": subject,
                    "criteria": rule_set.id,
                    "code": code,
                    "timepoint": tp,
                    "lesion_id": lesion,
                    "message": message,
                }
            )

    fired_by_output = _decide_outputs(ctx, rule_set, envs, params)
    # History functions read the previous pass's outputs: decide again until what they read no longer changes.
    # Each pass settles at least one more timepoint of every subject, so this ends (usually after one pass).
    limit = int(np.bincount(ctx.visit_subject).max(initial=0)) + 2
    for _ in range(limit):
        if not history_changed(ctx, {name: ctx.value(name) for name in rule_set.history_outputs}):
            break
        ctx.previous_outputs = {name: ctx.value(name) for name in rule_set.history_outputs}
        ctx.history_used = {}
        fired_by_output = _decide_outputs(ctx, rule_set, envs, params)
    else:
        raise RuleSetError(f"{rule_set.id}: decisions that read earlier timepoints did not settle")

    for check in rule_set.checks:
        add_warnings(
            check.spec.level, check.condition.evaluate(envs[check.spec.level]), check.spec.code, check.template
        )
    for out in rule_set.outputs:
        for k, rule in enumerate(out.rules if out.spec.aggregate is None else []):
            code = getattr(rule.rule, "warn", None)
            if code:
                add_warnings(out.spec.level, fired_by_output[out.spec.name] == k, code, rule.template)

    flags = _flags(ctx, rule_set, envs, visits, lesions, explain)
    timepoints = _timepoint_table(ctx, rule_set, visits, fired_by_output, explain)
    lesion_table = _lesion_table(ctx, rule_set, lesions)
    baseline = _baseline_table(ctx, rule_set, visits)
    best = None
    if rule_set.schema.best_response is not None:
        best, bor_warnings = _best(ctx, rule_set, visits, params)
        warnings.extend(bor_warnings)
    return RuleSetResult(rule_set, params, timepoints, lesion_table, baseline, best, flags, _warning_frame(warnings))


def _decide_outputs(
    ctx: Context, rule_set: LoadedRuleSet, envs: dict[str, _LevelEnv], params: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """One pass over the outputs in file order; each output is stored for the outputs after it.
    Returns, per output, the index of the rule that decided each row (-1: none)."""
    fired_by_output: dict[str, np.ndarray] = {}
    for out in rule_set.outputs:
        level: Level = out.spec.level
        env = envs[level]
        scope = _scope(ctx, out, env)
        if out.spec.aggregate is not None:
            values = _aggregate(ctx, out, params, scope)
            fired = np.where(scope, 0, -1)
        else:
            values, fired = _decide(out, env, scope)
        persist = out.spec.persist
        if persist is not None and bool(params.get(persist.parameter)):
            values = _persist(ctx, rule_set, values, persist.category, persist.replaces, params)
        ctx.store(out.spec.name, level, values, rule_set.output_type(out.spec.name))
        fired_by_output[out.spec.name] = fired
    return fired_by_output


def _persist(
    ctx: Context, rule_set: LoadedRuleSet, values: np.ndarray, keep: Any, replaces: list[Any], params: Mapping[str, Any]
) -> np.ndarray:
    """RECIST FAQ: once PR is assigned (and confirmed, when confirmation is required) it stays until progression."""
    subject = ctx.visit_subject
    follow = np.asarray(ctx.value("is_follow_up"), dtype=bool)
    stop = tuple(rule_set.scale.words_with_roles({"progression"}))
    out = values.copy()
    if bool(params.get("confirmation_required")):
        rows = np.flatnonzero(follow)
        day = ctx.prepared.visits["day"].to_numpy(dtype=float)
        settings = dataclasses.replace(BorSettings.from_params(dict(params)), stop_at_first_pd=False)
        result = best_overall_response(
            subject[rows], day[rows], values[rows], settings, rule_set.scale, sequence=rows.astype(float)
        )
        anchor = np.zeros(len(values), dtype=bool)
        anchor[rows] = result.confirmed & (values[rows] == keep)
        reached = pd.Series(anchor.astype(np.int64)).groupby(subject).cumsum().to_numpy() > 0
        stopped = pd.Series(np.isin(values.astype(str), stop).astype(np.int64)).groupby(subject).cumsum().to_numpy() > 0
        swap = reached & ~anchor & ~stopped & np.isin(values.astype(str), [str(r) for r in replaces])
        out[swap] = keep
        return out
    out[follow] = persist_category(subject[follow], values[follow], keep, replaces, stop)
    return out


def _flags(
    ctx: Context,
    rule_set: LoadedRuleSet,
    envs: dict[str, _LevelEnv],
    visits: pd.DataFrame,
    lesions: pd.DataFrame,
    explain: bool,
) -> pd.DataFrame:
    """One row per raised flag, built column-wise; explanation text only where asked for (assess always asks)."""
    parts: list[pd.DataFrame] = []
    for flag in rule_set.flags:
        level: Level = flag.spec.level
        env = envs[level]
        follow = np.asarray(ctx.get("is_follow_up", level), dtype=bool)
        mask = flag.condition.evaluate(env) & follow
        ctx.store(flag.spec.flag, level, mask, "bool")
        hits = np.flatnonzero(mask)
        if not len(hits):
            continue
        grade = np.full(env.n, None, dtype=object)
        open_rows = mask.copy()
        for rule in flag.grade:
            hit = open_rows if rule.condition is None else open_rows & rule.condition.evaluate(env)
            grade[hit] = rule.result
            open_rows &= ~hit
        evidence = _evidence(ctx, flag.spec.evidence, level, hits, as_json=not explain)
        table = lesions if level == "lesion" else visits
        frame = pd.DataFrame(
            {
                "subject_id": table["subject_id"].to_numpy(dtype=object)[hits],
                "flag": flag.spec.flag,
                "timepoint": table["timepoint"].to_numpy(dtype=object)[hits],
                "day": whole_days(np.asarray(ctx.get("day", level), dtype=float)[hits]),
                "lesion_id": table["lesion_id"].to_numpy(dtype=object)[hits] if level == "lesion" else None,
                "grade": grade[hits],
                "evidence": evidence,
                "citation": flag.spec.citation,
                "evidence_level": flag.spec.evidence_level,
            }
        )
        if explain:
            because = _render_rows(flag.template, ctx, level, hits)
            notes = [(c.evaluate(env)[hits], text) for c, text in flag.context]
            frame["explanation"] = [
                " ".join([b] + [t for hold, t in notes if hold[i]]).strip() for i, b in enumerate(because)
            ]
        else:
            frame["explanation"] = None
        parts.append(frame[FLAG_COLUMNS])
    if not parts:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    return pd.concat(parts, ignore_index=True)


def _evidence(ctx: Context, names: list[str], level: Level, rows: np.ndarray, as_json: bool) -> list[Any]:
    """Evidence values per raised flag: dicts (for `assess`), or JSON text built column-wise (for batch)."""
    columns: dict[str, Any] = {}
    for name in names:
        column = np.asarray(ctx.get(name, level))[rows]
        metric = METRICS.get(name)
        if metric is not None and metric.type == "bool":
            column = np.where(pd.isna(column), None, column == 1)
        elif column.dtype.kind == "f":
            column = round_output(column)
        columns[name] = column
    if not as_json:
        return [{name: _plain(col[i]) for name, col in columns.items()} for i in range(len(rows))]
    text = pd.Series(["{"] * len(rows), dtype=object)
    for k, (name, column) in enumerate(columns.items()):
        if column.dtype.kind == "f":
            values = pd.Series(column).map("{:g}".format).where(~np.isnan(column), "null")
        elif column.dtype == object:
            values = pd.Series(column, dtype=object).map(
                lambda v: "null" if v is None else ("true" if v is True else "false" if v is False else json.dumps(v))
            )
        else:
            values = pd.Series(column).astype(str)
        text = text + ("" if k == 0 else ", ") + f'"{name}": ' + values
    return list(text + "}")


def whole_days(values: np.ndarray) -> pd.arrays.IntegerArray:
    """Days as whole numbers, empty where a visit's day is unknown (a partial date not imputed)."""
    return pd.array(np.asarray(values, dtype=float), dtype="Int64")


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; NaN -> None; values rounded to 2 decimals for reporting."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        if np.isnan(value):
            return None
        return float(round_output(float(value)))
    if isinstance(value, np.str_):
        return str(value)
    return value


def _timepoint_table(
    ctx: Context, rule_set: LoadedRuleSet, visits: pd.DataFrame, fired: dict[str, np.ndarray], explain: bool
) -> pd.DataFrame:
    follow = np.flatnonzero(~ctx.visit_is_baseline)
    columns: dict[str, Any] = {
        "subject_id": _objects_at(visits["subject_id"], follow),
        "timepoint": _objects_at(visits["timepoint"], follow),
        "day": whole_days(visits["day"].to_numpy(dtype=float)[follow]),
    }
    for key, name in report_items(rule_set.schema.report.timepoint):
        if key in columns:
            continue
        columns[key] = np.asarray(ctx.get(name, "timepoint"))[follow]
    for out in rule_set.outputs:
        if out.spec.level == "timepoint" and out.spec.report:
            values = ctx.value(out.spec.name)[follow]
            if values.dtype != object:  # yes/no outputs: true / false / missing
                values = blank_where(values == 1, np.isnan(values))
            columns[out.spec.name] = values
    table = pd.DataFrame(columns, copy=False)  # the columns are new arrays: no second copy
    if explain:
        table["explanation"] = _explanations(ctx, rule_set, fired, follow)
    return table


def _objects_at(column: pd.Series, rows: np.ndarray) -> np.ndarray:
    """`column.to_numpy(dtype=object)[rows]`, a categorical read through its codes (only `rows` are written)."""
    values = column.array
    if isinstance(values, pd.Categorical):
        names = np.append(values.categories.to_numpy(dtype=object), _nan_object())
        return names[values.codes[rows]]
    return column.to_numpy(dtype=object)[rows]


def _nan_object() -> np.ndarray:
    missing = np.empty(1, dtype=object)
    missing[0] = np.nan
    return missing


def _explanations(
    ctx: Context, rule_set: LoadedRuleSet, fired: dict[str, np.ndarray], rows: np.ndarray
) -> list[list[str]]:
    lines: list[list[str]] = [[] for _ in rows]
    position = {int(r): i for i, r in enumerate(rows)}
    lesion_ids = ctx.prepared.lesions["lesion_id"].to_numpy(dtype=object)
    for out in rule_set.outputs:
        if not out.spec.report and out.spec.level != "timepoint":
            continue
        name = out.spec.name
        values = ctx.value(name)
        if out.spec.level == "lesion":
            for k, rule in enumerate(out.rules):
                hit = np.flatnonzero(fired[name] == k)
                hit = hit[np.isin(ctx.lesion_visit[hit], rows)]
                rendered = _render_rows(rule.template, ctx, "lesion", hit)
                citation = getattr(rule.rule, "citation", None)
                for row, text in zip(hit, rendered, strict=True):
                    line = f"{lesion_ids[row]} {name} {format_value(values[row])}" + (f": {text}" if text else "")
                    lines[position[int(ctx.lesion_visit[row])]].append(line + (f" [{citation}]" if citation else ""))
            continue
        which = fired[name][rows]
        if out.spec.aggregate is not None:
            agg = out.spec.aggregate
            rendered = _render_rows(out.aggregate_template, ctx, "timepoint", rows)
            source = ctx.value(agg.source)
            parts: dict[int, list[str]] = {}
            for row in np.flatnonzero(np.array([v is not None for v in source], dtype=bool)):
                visit = int(ctx.lesion_visit[row])
                if visit in position:
                    parts.setdefault(visit, []).append(f"{lesion_ids[row]} {format_value(source[row])}")
            for i in range(len(rows)):
                if which[i] >= 0:
                    text = f"{name} {_shown(values[rows[i]], ctx.type_of(name))}"
                    detail = ", ".join(parts.get(int(rows[i]), []))
                    text += f": {detail}" if detail else ""
                    text += f" ({rendered[i]})" if rendered[i] else ""
                    lines[i].append(text + (f" [{agg.citation}]" if agg.citation else ""))
            continue
        for k, rule in enumerate(out.rules):
            hit = np.flatnonzero(which == k)
            if not out.spec.report:  # a bookkeeping output (a definitive CR, a confirmed iUPD) speaks when it holds
                hit = hit[_truth_of(values[rows[hit]])]
            if not len(hit):
                continue
            rendered = _render_rows(rule.template, ctx, "timepoint", rows[hit])
            citation = getattr(rule.rule, "citation", None)
            for j, text in zip(hit, rendered, strict=True):
                line = f"{name} {_shown(values[rows[j]], ctx.type_of(name))}"
                line += f": {text}" if text else ""
                lines[j].append(line + (f" [{citation}]" if citation else ""))
    return lines


def _truth_of(values: np.ndarray) -> np.ndarray:
    """Yes/no output values (1.0 / 0.0 / NaN) as booleans: NaN is not yes."""
    return np.asarray(values, dtype=float) == 1.0


def _shown(value: Any, vtype: str) -> str:
    if vtype == "bool" and isinstance(value, float) and not np.isnan(value):
        return format_value(value == 1)
    return format_value(value)


def _lesion_table(ctx: Context, rule_set: LoadedRuleSet, lesions: pd.DataFrame) -> pd.DataFrame:
    reported = [o.spec.name for o in rule_set.outputs if o.spec.level == "lesion" and o.spec.report]
    if not reported:
        return pd.DataFrame(columns=["subject_id", "timepoint", "lesion_id"])
    has = np.zeros(ctx.n["lesion"], dtype=bool)
    for name in reported:
        has |= ~pd.isna(ctx.value(name))
    rows = np.flatnonzero(has)
    columns: dict[str, Any] = {
        "subject_id": _objects_at(lesions["subject_id"], rows),
        "timepoint": _objects_at(lesions["timepoint"], rows),
        "lesion_id": _objects_at(lesions["lesion_id"], rows),
    }
    for key, name in report_items(rule_set.schema.report.lesion):
        columns[key] = np.asarray(ctx.get(name, "lesion"))[rows]
    for name in reported:
        columns[name] = ctx.value(name)[rows]
    return pd.DataFrame(columns, copy=False)


def _baseline_table(ctx: Context, rule_set: LoadedRuleSet, visits: pd.DataFrame) -> pd.DataFrame:
    rows = np.flatnonzero(ctx.visit_is_baseline)
    columns: dict[str, Any] = {
        "subject_id": _objects_at(visits["subject_id"], rows),
        "timepoint": _objects_at(visits["timepoint"], rows),
    }
    for key, name in report_items(rule_set.schema.report.baseline):
        columns[key] = np.asarray(ctx.get(name, "timepoint"))[rows]
    return pd.DataFrame(columns, copy=False)


def _in_order(subjects: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """bor's rows (one per subject, column `subject`) in the order of `order`. bor sorts subjects by id, as the
    prepared tables do, so they usually are in that order already."""
    if np.array_equal(subjects["subject"].to_numpy(dtype=object), order):
        return subjects
    return subjects.set_index("subject").reindex(pd.Index(order)).reset_index(names="subject")


def _categorical(codes: np.ndarray, names: np.ndarray) -> Any:
    """names[codes] (code -1: missing) as a categorical, so that no text is hashed again; as objects when the names
    cannot be categories (a missing or repeated name)."""
    index = pd.Index(names, dtype=object)
    if index.hasnans or not index.is_unique:
        return with_none(names)[codes]
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(index), validate=False)


def _best(
    ctx: Context, rule_set: LoadedRuleSet, visits: pd.DataFrame, params: Mapping[str, Any]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    spec = rule_set.schema.best_response
    assert spec is not None
    follow = np.flatnonzero(~ctx.visit_is_baseline)
    day = visits["day"].to_numpy(dtype=float)
    sd_day = visits["sd_day"].to_numpy(dtype=float) if "sd_day" in visits else day
    settings = BorSettings.from_params(dict(params)) if spec.method == "recist" else BorSettings()
    all_subjects = ctx.prepared.subjects["subject_id"].to_numpy(dtype=object)
    n_subjects = len(all_subjects)
    # Every subject appears, also one without a follow-up (its best response is then the `missing` role's word).
    # Visits keep the prepared order (VISITNUM, or time), so one whose day is unknown keeps its place. Subjects,
    # responses and visit names go as codes (categoricals): no text is hashed again.
    missing = np.full(n_subjects, -1, dtype=np.int64)
    tp_codes, tp_names = text_codes(visits["timepoint"])
    response = ctx.value(spec.output)
    coded = ctx.codes_of(response)
    none = np.full(n_subjects, np.nan)
    result = best_overall_response(
        _categorical(np.r_[ctx.visit_subject[follow], np.arange(n_subjects)], all_subjects),
        np.r_[day[follow], none],
        _categorical(np.r_[coded[0][follow], missing], coded[1])
        if coded is not None
        else np.r_[response[follow], np.full(n_subjects, None, dtype=object)],
        settings,
        rule_set.scale,
        spec.method,
        labels=_categorical(np.r_[tp_codes[follow], missing], tp_names),
        sequence=np.r_[follow.astype(float), np.full(n_subjects, np.inf)],
        sd_day=np.r_[sd_day[follow], none],
    )
    timepoint_ids = _objects_at(visits["timepoint"], follow)
    table = _in_order(result.subjects, all_subjects)
    best_row = table["best_row"].fillna(-1).astype(np.int64).to_numpy()
    chosen = np.full(len(best_row), None, dtype=object)
    if len(timepoint_ids):
        chosen[best_row >= 0] = timepoint_ids[best_row[best_row >= 0]]
    last = ["best_overall_response_timepoint", "best_overall_response_note", "best_overall_response_reason"]
    columns: dict[str, Any] = {"subject_id": all_subjects}
    columns.update({c: table[c] for c in table.columns if c not in ("subject", "best_row", *last)})
    columns["best_overall_response_day"] = table["best_overall_response_day"].astype(float)
    columns.update({"best_overall_response_timepoint": chosen, **{c: table[c] for c in last[1:]}})
    table = pd.DataFrame(columns, copy=False)
    warnings = []
    for _, w in result.cr_then_pr.iterrows():
        pr_tp, cr_tp = timepoint_ids[int(w["pr_row"])], timepoint_ids[int(w["cr_row"])]
        pr_word, cr_word = rule_set.scale.word("partial"), rule_set.scale.word("complete")
        warnings.append(
            {
                "subject_id": w["subject"],
                "criteria": rule_set.id,
                "code": "recist_cr_then_pr",
                "timepoint": pr_tp,
                "lesion_id": None,
                "message": f"{pr_word} at {pr_tp} follows {cr_word} at {cr_tp}: re-read both scans; if {cr_word} was "
                f"real the later disease is progression, if not the {cr_word} should have been {pr_word} (E2009 "
                "Table 3 note). Scored as recorded.",
            }
        )
    return table, warnings

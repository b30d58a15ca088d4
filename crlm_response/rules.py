"""Rule sets: the strict schema of `rules/*.yaml`, loading with `extends:`, and compilation.

A rule set is data: parameters (every threshold, with unit and citation), checks (warnings with stable
codes), outputs (ordered decision lists, overall-response tables, lesion-to-patient aggregation), toxicity
flags and the best-overall-response method. Loading validates the file against this schema
(`extra="forbid"`: a misspelt key is an error), resolves `extends:` chains, and compiles every condition
against the metric vocabulary so that an unknown word fails at load time, naming the file and the rule.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .conditions import (
    Condition,
    Template,
    ValueType,
    compile_condition,
    compile_template,
    constant_names,
)
from .errors import ConditionError, RuleSetError
from .functions import FUNCTIONS, DeclaredOutput, FunctionRef, Name
from .metrics import LEVEL_RANK, METRICS, Level
from .roles import DEFAULT_BENEFIT_ROLES, DEFAULT_RESPONDER_ROLES, ResponseScale, Role
from .yamlio import format_loc, line_of, load_yaml

Category = str | bool | int
EvidenceTag = Literal["C", "S", "U", "E"]
CODE_PATTERN = r"^[a-z][a-z0-9_]*$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
BOR_PARAMETERS = (
    "confirmation_required",
    "min_confirmation_interval_days",
    "sd_min_days",
    "max_ne_between_confirmation",
    "accept_sd_between_pr_confirmation",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Parameter(_Strict):
    """One threshold or choice, with its unit and the paper it comes from."""

    value: bool | int | float | str | list[float] | None
    unit: str | None = None
    description: str
    citation: str
    evidence: EvidenceTag | None = None
    choices: list[bool | int | float | str] | None = None
    minimum: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        None, description="smallest value allowed (for a list: for each of its values)"
    )
    maximum: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        None, description="largest value allowed (for a list: for each of its values)"
    )
    length: Annotated[int, Field(ge=1, le=100)] | None = Field(
        None, description="for a list: how many values it holds (default: as many as `value` has)"
    )
    order: Literal["ascending"] | None = Field(
        None, description="for a list: each value larger than the one before (class boundaries, grade cut-offs)"
    )
    disputed: bool = False

    @model_validator(mode="after")
    def _value_allowed(self) -> Parameter:
        if (self.length is not None or self.order is not None) and not isinstance(self.value, list):
            raise ValueError("`length` and `order` are for list values only")
        problem = parameter_problem(self, self.value)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def list_length(self) -> int | None:
        """The number of values a list parameter holds, in the rule file and in every override: conditions index
        it (`margin_boundaries_mm[1]`), and those indexes are checked against this length when the file loads."""
        if self.length is not None:
            return self.length
        return len(self.value) if isinstance(self.value, list) else None


# Parameters counted in these units take whole numbers: 42.5 days is a typo, not a threshold.
WHOLE_UNITS = ("days", "lesions", "assessments")


def parameter_problem(param: Parameter, value: Any) -> str | None:
    """Why `value` is not allowed for `param` (None when it is)."""
    if param.choices is not None and value not in param.choices:
        return f"must be one of {', '.join(map(str, param.choices))}, not {value!r}"
    if isinstance(value, list):
        return _list_problem(param, value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _number_problem(param, value)
    return None


def _number_problem(param: Parameter, value: int | float) -> str | None:
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return f"must be a number of at most about 1.8e308, not {_shown_value(value)}"
    if not math.isfinite(number):
        return f"must be a number, not {value}"  # NaN passes every minimum/maximum test
    if isinstance(value, float) and param.unit in WHOLE_UNITS and not value.is_integer():
        return f"must be a whole number of {param.unit}, not {value:g}"
    if param.minimum is not None and number < param.minimum:
        return f"must be >= {param.minimum:g}, not {number:g}"
    if param.maximum is not None and number > param.maximum:
        return f"must be <= {param.maximum:g}, not {number:g}"
    return None


def _list_problem(param: Parameter, values: list[Any]) -> str | None:
    """A list parameter: its declared length and order, and each value as a number within the limits."""
    length = param.list_length
    if length is not None and len(values) != length:
        return f"must be a list of {length} numbers, not {len(values)} ({_shown_list(values)})"
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int | float):
            return f"must be a list of numbers, not {_shown_list(values)}"
        problem = _number_problem(param, item)
        if problem:
            return problem.replace("must be", "values must each be", 1)
    if param.order == "ascending" and any(b <= a for a, b in zip(values, values[1:], strict=False)):
        return f"must be in ascending order (each value larger than the one before), not {_shown_list(values)}"
    return None


def _shown_list(values: list[Any]) -> str:
    text = "[" + ", ".join(_shown_value(v) for v in values[:10]) + "]"
    return text if len(values) <= 10 else text[:-1] + ", ...]"


def _shown_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1024:
        # beyond any float; Python refuses to print integers of more than 4,300 digits
        digits = f"{len(str(abs(value)))} digits" if value.bit_length() < 14_000 else "thousands of digits"
        return f"an integer of {digits}"
    return repr(value)


class Rule(_Strict):
    """One entry of an ordered decision list: the first rule whose `when` holds decides."""

    when: str | None = None
    then: Category | None = None
    otherwise: Category | None = None
    because: str | None = None
    citation: str | None = None
    warn: Annotated[str, Field(pattern=CODE_PATTERN)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        if self.otherwise is not None:
            if self.when is not None or self.then is not None:
                raise ValueError("an `otherwise` entry has no `when`/`then`")
        elif self.when is None or self.then is None:
            raise ValueError("each rule needs `when` and `then` (or a final `otherwise`)")
        return self

    @property
    def result(self) -> Category:
        return self.otherwise if self.otherwise is not None else self.then  # type: ignore[return-value]


class TableRow(_Strict):
    """One row of an overall-response table: the values of earlier outputs it matches, and the result."""

    match: dict[str, Category | list[Category]]
    then: Category
    because: str | None = None
    citation: str | None = None


class Aggregate(_Strict):
    """Patient-level value from a lesion-level output (e.g. Chun: worst lesion or largest lesion)."""

    source: str = Field(alias="from")
    method: str = Field(description="worst_lesion | largest_lesion | any, or the name of a parameter holding one")
    order: list[Category] = Field(default_factory=list, description="worst first")
    ignore: list[Category] = Field(default_factory=list)
    unknown: list[Category] = Field(default_factory=list)
    empty: Category | None = None
    values: list[Category] = Field(default_factory=list, description="for `any`: the values that count")
    size: str = "baseline_lesion_mm"
    because: str | None = None
    citation: str | None = None


class Persist(_Strict):
    """Keep a category once reached (RECIST FAQ "sticky PR"), if the named parameter is true."""

    parameter: str
    category: Category
    replaces: list[Category]


class Output(_Strict):
    name: Annotated[str, Field(pattern=CODE_PATTERN)]
    level: Literal["lesion", "timepoint"] = "timepoint"
    description: str | None = None
    where: str | None = Field(None, description="which rows take part (default: follow-up rows)")
    categories: list[Category] | None = None
    rules: list[Rule] | None = None
    table: list[TableRow] | None = None
    aggregate: Aggregate | None = None
    persist: Persist | None = None
    report: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> Output:
        given = [x for x in (self.rules, self.table, self.aggregate) if x is not None]
        if len(given) != 1:
            raise ValueError("an output has exactly one of `rules`, `table` or `aggregate`")
        if self.rules is not None:
            if not self.rules:
                raise ValueError("`rules` is empty")
            if any(r.otherwise is not None for r in self.rules[:-1]):
                raise ValueError("`otherwise` must be the last rule")
        if self.aggregate is not None and self.level != "timepoint":
            raise ValueError("an aggregate produces a timepoint-level output")
        return self


class Check(_Strict):
    """A warning with a stable code, raised on every row where `when` holds."""

    code: Annotated[str, Field(pattern=CODE_PATTERN)]
    level: Literal["lesion", "timepoint"] = "timepoint"
    when: str
    message: str
    citation: str | None = None


class ContextNote(_Strict):
    when: str
    text: str


class Flag(_Strict):
    """A toxicity flag: raised at follow-up rows where `when` holds, with evidence values and citation."""

    flag: Annotated[str, Field(pattern=CODE_PATTERN)]
    level: Literal["lesion", "timepoint"] = "timepoint"
    label: str | None = Field(None, description="the flag in plain words, as reports and the terminal show it")
    description: str
    when: str
    evidence: list[str] = Field(default_factory=list)
    because: str
    citation: str
    evidence_level: EvidenceTag
    grade: list[Rule] | None = None
    context: list[ContextNote] = Field(default_factory=list)


class CategoryInfo(_Strict):
    """What one response word means (its role, see `roles.py`) and how it reads in plain language."""

    role: Role | None = None
    label: str | None = None


class BestResponse(_Strict):
    output: str = "overall"
    method: Literal["recist", "rank"] = "recist"
    ranking: list[Category] = Field(description="best first")
    responders: list[Role] = Field(
        default_factory=lambda: list(DEFAULT_RESPONDER_ROLES), description="roles that count as objective response"
    )
    clinical_benefit: list[Role] = Field(
        default_factory=lambda: list(DEFAULT_BENEFIT_ROLES), description="roles that count as disease control"
    )
    citation: str | None = None


ReportItem = str | dict[str, str]


class Report(_Strict):
    baseline: list[ReportItem] = Field(default_factory=list)
    timepoint: list[ReportItem] = Field(default_factory=list)
    lesion: list[ReportItem] = Field(default_factory=list)


class RuleSet(_Strict):
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    name: str
    version: str | None = None
    kind: Literal["response", "toxicity"] = "response"
    description: str
    extends: str | None = None
    citations: dict[str, str] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list, description="case fields this set needs")
    default: bool = Field(False, description="run when a case names no criteria")
    only_when_asked: bool = Field(
        False, description="run only when named (--criteria, a case's criteria:), not because a case has its inputs"
    )
    rscat: str | None = Field(None, description="SDTM RS category (RSCAT) of this set's rows; default: its name")
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    categories: dict[str, CategoryInfo] = Field(
        default_factory=dict, description="response words: their role and plain-language label"
    )
    checks: list[Check] = Field(default_factory=list)
    outputs: list[Output] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)
    best_response: BestResponse | None = None
    report: Report = Field(default_factory=Report)

    @field_validator("citations")
    @classmethod
    def _citation_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", key):
                raise ValueError(f"citation key {key!r} must be one word (letters, digits, _ or -)")
        return value


# --------------------------------------------------------------------------------------------------
# Finding and loading
# --------------------------------------------------------------------------------------------------


def builtin_rules_dir() -> Path:
    """The shipped rule files: inside the installed package, or `rules/` of a source checkout."""
    packaged = resources.files("crlm_response") / "rules"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "rules"


def builtin_ids() -> list[str]:
    directory = builtin_rules_dir()
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def _resolve_reference(reference: str, relative_to: Path | None) -> Path:
    if reference in builtin_ids():
        return builtin_rules_dir() / f"{reference}.yaml"
    candidates = []
    path = Path(reference)
    if relative_to is not None and not path.is_absolute():
        candidates.append(relative_to.parent / path)
    candidates.append(path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = ", ".join(builtin_ids())
    raise RuleSetError(f"unknown rule set `{reference}`", hint=f"shipped rule sets: {known}; or give a file path")


# The lists a variant merges into its parent's by name; their items move to new positions.
MERGED_LISTS = {"checks": "code", "outputs": "name", "flags": "flag"}


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[str, int], int]]:
    """`extends:` semantics: child keys replace parent keys; parameters and citations merge per entry
    (a child may give only `value`); checks, outputs and flags replace by name and append new ones.

    Also returns where each of the child's list items landed: (list, index in the child) -> index in the merge."""
    merged = copy.deepcopy(parent)
    placed: dict[tuple[str, int], int] = {}
    for key, value in child.items():
        if key == "citations" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            # The variant's own references first: they name what it changes.
            merged[key] = {**copy.deepcopy(value), **{k: v for k, v in merged[key].items() if k not in value}}
        elif key in ("parameters", "categories") and isinstance(value, dict) and isinstance(merged.get(key), dict):
            for name, entry in value.items():
                old = merged[key].get(name)
                if isinstance(old, dict) and isinstance(entry, dict):
                    merged[key][name] = {**old, **entry}
                else:
                    merged[key][name] = entry
        elif key in MERGED_LISTS and isinstance(value, list) and isinstance(merged.get(key), list):
            ident = MERGED_LISTS[key]
            by_name = {item.get(ident): i for i, item in enumerate(merged[key]) if isinstance(item, dict)}
            for own_index, item in enumerate(value):
                name = item.get(ident) if isinstance(item, dict) else None
                if name in by_name:
                    merged[key][by_name[name]] = item
                    placed[(key, own_index)] = by_name[name]
                else:
                    placed[(key, own_index)] = len(merged[key])
                    merged[key].append(item)
        else:
            merged[key] = copy.deepcopy(value)
    merged.pop("extends", None)
    return merged, placed


@dataclass
class RawRuleSet:
    """A rule file's data merged with what it extends. `lines` are keyed by positions in the merged data;
    `own_index` maps a merged position back to the file's own (`checks[7]` of the merge is this file's `checks[0]`),
    so messages point at what the user wrote."""

    data: dict[str, Any]
    path: Path
    lines: dict[tuple[Any, ...], int]
    chain: list[str] = field(default_factory=list)
    own_index: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # every file of the `extends:` chain, this one last

    def shown(self, loc: tuple[Any, ...]) -> str:
        """A merged position as the key path of the file itself."""
        head = tuple(loc[:2])
        if len(head) == 2 and head in self.own_index:
            loc = self.own_index[head] + tuple(loc[2:])  # type: ignore[index]
        return format_loc(loc)


class _ExtendsLoop(RuleSetError):
    """An `extends:` chain that comes back to a file already in it."""


def _read_raw(path: Path, seen: tuple[str, ...] = ()) -> RawRuleSet:
    key = str(path.resolve())
    if len(seen) > 10:
        raise RuleSetError("`extends:` chain deeper than 10 files", file=path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise RuleSetError("a rule file is a YAML mapping with id, name, description, parameters, ...", file=path)
    parent_ref = data.get("extends")
    if parent_ref is None:
        return RawRuleSet(data, path, lines, [str(data.get("id", path.stem))], files=[path])
    if not isinstance(parent_ref, str):
        raise RuleSetError("`extends` names one rule set id or file", file=path, key="extends")
    try:
        parent_path = _resolve_reference(parent_ref, path)
    except RuleSetError as exc:
        raise RuleSetError(exc.message, file=path, line=lines.get(("extends",)), key="extends", hint=exc.hint) from None
    parent_key = str(parent_path.resolve())
    try:
        if parent_key in seen + (key,):
            chain = " -> ".join(Path(s).name for s in seen + (key, parent_key))
            hint = (
                "a rule file cannot extend itself; name the rule set it varies, e.g. recist1.1"
                if parent_key == key
                else "one of these files must extend a shipped rule set instead"
            )
            raise _ExtendsLoop(f"`extends:` loops back on itself ({chain})", hint=hint)
        parent = _read_raw(parent_path, seen + (key,))
    except _ExtendsLoop as exc:  # reported at the `extends:` of the file the user named, the start of the chain
        raise _ExtendsLoop(exc.message, file=path, line=lines.get(("extends",)), key="extends", hint=exc.hint) from None
    merged, placed = _merge(parent.data, data)
    own_index = {(name, at): (name, own) for (name, own), at in placed.items()}
    merged_lines = {}
    for loc, line in lines.items():
        head = tuple(loc[:2])
        if len(head) == 2 and head in placed:
            loc = (head[0], placed[head]) + tuple(loc[2:])  # type: ignore[index]
        merged_lines[loc] = line
    ids = parent.chain + [str(data.get("id", path.stem))]
    return RawRuleSet(merged, path, merged_lines, ids, own_index, files=parent.files + [path])


def load_rules(reference: str | Path) -> LoadedRuleSet:
    """Load, validate and compile a rule set: a shipped id (`recist1.1`) or a YAML file path."""
    path = reference if isinstance(reference, Path) else _resolve_reference(str(reference), None)
    raw = _read_raw(path)
    try:
        schema = RuleSet.model_validate(raw.data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key also makes the right key "missing": name the misspelling, the cause, first.
        first = min(errors, key=lambda e: e.get("type") != "extra_forbidden")
        loc = tuple(first["loc"])
        loc = tuple(p for p in loc if not (isinstance(p, str) and p in ("str", "bool", "int", "float", "list[float]")))
        message, advice = _pydantic_message(first)
        hints = [advice] if advice else []
        if len(errors) > 1:
            hints.append(f"{len(errors) - 1} more problem(s) in this file")
        raise RuleSetError(
            message,
            file=path,
            line=line_of(raw.lines, loc),
            key=raw.shown(loc) or None,
            hint="; ".join(hints) or None,
        ) from None
    return compile_rule_set(schema, raw)


def _pydantic_message(error: Any) -> tuple[str, str | None]:
    """A validation error as (message, advice)."""
    if error.get("type") == "extra_forbidden":
        return "unknown key", "check its spelling against the rule schema"
    if error.get("type") == "missing":
        return "required key is missing", None
    return str(error.get("msg", "invalid")).removeprefix("Value error, "), None


# --------------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------------


class RuleVocabulary:
    """Names a condition may use at one level: metrics (this level or coarser), parameters, outputs so far."""

    def __init__(
        self,
        level: Level,
        params: dict[str, Any],
        outputs: dict[str, tuple[Level, ValueType]],
        declared: dict[str, Output] | None = None,
    ) -> None:
        self.level = level
        self.values = params
        self.params = constant_names(params)
        self.outputs = outputs
        self.declared = declared or {}

    def type_of(self, name: Name) -> ValueType | None:
        if isinstance(name, FunctionRef):
            return name.function.type_in(self, name)
        if name in self.outputs:
            level, vtype = self.outputs[name]
            return vtype if LEVEL_RANK[level] <= LEVEL_RANK[self.level] else None
        if name in self.params:
            return self.params[name]
        metric = METRICS.get(name)
        if metric is not None and LEVEL_RANK[metric.level] <= LEVEL_RANK[self.level]:
            return metric.type
        return None

    def declared_output(self, name: str) -> DeclaredOutput | None:
        out = self.declared.get(name)
        if out is None:
            return None
        categories = tuple(str(c) for c in out.categories) if out.categories is not None else None
        return DeclaredOutput(out.level, categories)

    def list_length(self, name: str) -> int | None:
        value = self.values.get(name)
        return len(value) if isinstance(value, list) else None

    def describe(self) -> str:
        return f"see `crlm-response rules metrics` for the {self.level}-level vocabulary; parameters of this set: " + (
            ", ".join(sorted(self.params)) or "none"
        )


@dataclass
class CompiledRule:
    rule: Rule | TableRow
    condition: Condition | None
    template: Template | None
    result: Category
    label: str


@dataclass
class CompiledOutput:
    spec: Output
    where: Condition | None
    rules: list[CompiledRule]
    aggregate_template: Template | None = None


@dataclass
class CompiledCheck:
    spec: Check
    condition: Condition
    template: Template


@dataclass
class CompiledFlag:
    spec: Flag
    condition: Condition
    template: Template
    grade: list[CompiledRule]
    context: list[tuple[Condition, str]]


@dataclass
class LoadedRuleSet:
    """A validated rule set with compiled conditions, ready for the engine."""

    schema: RuleSet
    path: Path
    lines: dict[tuple[Any, ...], int]
    chain: list[str]
    checks: list[CompiledCheck]
    outputs: list[CompiledOutput]
    flags: list[CompiledFlag]
    files: list[Path] = field(default_factory=list)  # the files read, with those reached through `extends:`

    @property
    def id(self) -> str:
        return self.schema.id

    @property
    def default_params(self) -> dict[str, Any]:
        return {name: p.value for name, p in self.schema.parameters.items()}

    @functools.cached_property
    def scale(self) -> ResponseScale:
        """The set's response words with their roles and labels, ranked as its best response ranks them."""
        best = self.schema.best_response
        categories = self.schema.categories
        return ResponseScale(
            tuple(str(w) for w in best.ranking) if best is not None else (),
            {word: info.role for word, info in categories.items() if info.role is not None},
            {word: info.label for word, info in categories.items() if info.label is not None},
            tuple(best.responders) if best is not None else DEFAULT_RESPONDER_ROLES,
            tuple(best.clinical_benefit) if best is not None else DEFAULT_BENEFIT_ROLES,
        )

    @functools.cached_property
    def history_outputs(self) -> frozenset[str]:
        """Outputs that history functions read at earlier timepoints (see functions.HistoryFunction)."""
        return frozenset(
            output
            for c in self._conditions()
            for n in c.names
            if isinstance(n, FunctionRef)
            for output in n.function.outputs_read_before(n)
        )

    @functools.cached_property
    def functions(self) -> list[str]:
        """The rule-language functions this set calls, in the language's order."""
        used = {f for c in self._conditions() for f in c.functions}
        return [name for name in FUNCTIONS if name in used]

    def _conditions(self) -> list[Condition]:
        found: list[Condition] = [c.condition for c in self.checks]
        for out in self.outputs:
            found += [out.where] if out.where is not None else []
            found += [r.condition for r in out.rules if r.condition is not None]
        for flag in self.flags:
            found += [flag.condition] + [r.condition for r in flag.grade if r.condition is not None]
            found += [condition for condition, _ in flag.context]
        return found

    def output_type(self, name: str) -> ValueType:
        for out in self.outputs:
            if out.spec.name == name:
                return _category_type(out)
        return "text"


def _category_type(out: CompiledOutput) -> ValueType:
    values = [r.result for r in out.rules] if out.rules else []
    if out.spec.aggregate is not None and out.spec.aggregate.method == "any":
        return "bool"
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "number"
    return "text"


def _citation_ok(text: str | None, keys: dict[str, str]) -> bool:
    if not text:
        return False
    words = set(re.findall(r"[A-Za-z][A-Za-z0-9_\-]*", text))
    return bool(words & set(keys))


def compile_rule_set(schema: RuleSet, raw: RawRuleSet) -> LoadedRuleSet:
    """Check and compile a validated rule set, in the order a reader meets its sections; the first problem
    is raised, located at the file's own line and key."""
    step = _Compilation(schema, raw)
    step.check_parameter_citations()
    checks = step.compile_checks()
    outputs = step.compile_outputs()
    flags = step.compile_flags()
    step.check_report_items()
    step.check_parameters_needed(outputs, checks, flags)
    step.check_best_response()
    step.check_roles(outputs)
    return LoadedRuleSet(schema, raw.path, raw.lines, raw.chain, checks, outputs, flags, raw.files)


Loc = tuple[Any, ...]
AGGREGATE_METHODS = {"worst_lesion", "largest_lesion", "any"}


class _Compilation:
    """The state of compiling one rule set: the outputs decided so far (what later conditions may name) and how
    to locate a problem in the file."""

    def __init__(self, schema: RuleSet, raw: RawRuleSet) -> None:
        self.schema = schema
        self.raw = raw
        self.file = str(raw.path)
        self.params = {name: p.value for name, p in schema.parameters.items()}
        self.outputs_seen: dict[str, tuple[Level, ValueType]] = {}
        self.declared = {out.name: out for out in schema.outputs}

    # -- locating and compiling text ----------------------------------------------------------------
    def line(self, loc: Loc) -> int | None:
        return line_of(self.raw.lines, loc)

    def vocab(self, level: Level) -> RuleVocabulary:
        return RuleVocabulary(level, self.params, self.outputs_seen, self.declared)

    def _located(self, exc: ConditionError, loc: Loc) -> RuleSetError:
        return RuleSetError(exc.message, file=self.file, line=self.line(loc), key=self.raw.shown(loc), hint=exc.hint)

    def cond(self, source: str, vocab: RuleVocabulary, loc: Loc) -> Condition:
        try:
            return compile_condition(source, vocab, self.raw.shown(loc))
        except ConditionError as exc:
            raise self._located(exc, loc) from None

    def tmpl(self, source: str, vocab: RuleVocabulary, loc: Loc) -> Template:
        try:
            return compile_template(source, vocab, self.raw.shown(loc))
        except ConditionError as exc:
            raise self._located(exc, loc) from None

    def maybe_tmpl(self, source: str | None, vocab: RuleVocabulary, loc: Loc) -> Template | None:
        return None if source is None else self.tmpl(source, vocab, loc)

    def cite(self, text: str | None, loc: Loc, required: bool = True) -> None:
        if text is None and not required:
            return
        if not _citation_ok(text, self.schema.citations):
            raise RuleSetError(
                f"citation {text!r} names no reference of this rule set" if text else "citation is missing",
                file=self.file,
                line=self.line(loc),
                key=self.raw.shown(loc),
                hint="start with a key of `citations:` (" + ", ".join(self.schema.citations) + ")",
            )

    # -- the steps ------------------------------------------------------------------------------------
    def check_parameter_citations(self) -> None:
        for name, param in self.schema.parameters.items():
            self.cite(param.citation, ("parameters", name, "citation"))

    def compile_checks(self) -> list[CompiledCheck]:
        checks = []
        for i, check in enumerate(self.schema.checks):
            loc = ("checks", i)
            checks.append(
                CompiledCheck(
                    check,
                    self.cond(check.when, self.vocab(check.level), loc + ("when",)),
                    self.tmpl(check.message, self.vocab(check.level), loc + ("message",)),
                )
            )
            self.cite(check.citation, loc + ("citation",), required=False)
        return checks

    def compile_outputs(self) -> list[CompiledOutput]:
        """Outputs in file order; each becomes a name the outputs after it may use."""
        compiled_outputs = []
        for i, out in enumerate(self.schema.outputs):
            loc = ("outputs", i)
            if out.name in self.outputs_seen:
                raise RuleSetError(f"output `{out.name}` is defined twice", file=self.file, line=self.line(loc))
            compiled = self.compile_output(out, loc)
            self.outputs_seen[out.name] = (out.level, _category_type(compiled))
            compiled_outputs.append(compiled)
        return compiled_outputs

    def compile_output(self, out: Output, loc: Loc) -> CompiledOutput:
        v = self.vocab(out.level)
        where = self.cond(out.where, v, loc + ("where",)) if out.where else None
        if out.rules is not None:
            rules = self.decision_rules(out, out.rules, v, loc)
        elif out.table is not None:
            rules = self.table_rules(out, out.table, v, loc)
        else:
            rules = []
        aggregate_template = self.check_aggregate(out.aggregate, v, loc) if out.aggregate is not None else None
        if out.persist is not None and out.persist.parameter not in self.schema.parameters:
            raise RuleSetError(
                f"persist parameter `{out.persist.parameter}` is not a parameter of this set",
                file=self.file,
                line=self.line(loc + ("persist",)),
            )
        return CompiledOutput(out, where, rules, aggregate_template)

    def decision_rules(self, out: Output, rules: list[Rule], v: RuleVocabulary, loc: Loc) -> list[CompiledRule]:
        compiled = []
        for j, rule in enumerate(rules):
            rloc = loc + ("rules", j)
            condition = self.cond(rule.when, v, rloc + ("when",)) if rule.when is not None else None
            self.check_category(out, rule.result, rloc + ("then",))
            because = self.maybe_tmpl(rule.because, v, rloc + ("because",))
            compiled.append(CompiledRule(rule, condition, because, rule.result, f"{out.name}[{j}]"))
            self.cite(rule.citation, rloc + ("citation",), required=False)
        return compiled

    def table_rules(self, out: Output, rows: list[TableRow], v: RuleVocabulary, loc: Loc) -> list[CompiledRule]:
        """Overall-response table rows as decision rules: each row's `match` becomes a condition."""
        compiled = []
        for j, row in enumerate(rows):
            rloc = loc + ("table", j)
            source = self.table_condition(row, rloc)
            self.check_category(out, row.then, rloc + ("then",))
            because = row.because or ", ".join(f"{c.replace('_', '-')} {{{c}}}" for c in row.match)
            condition = self.cond(source, v, rloc + ("match",))
            template = self.maybe_tmpl(because, v, rloc + ("because",))
            compiled.append(CompiledRule(row, condition, template, row.then, f"{out.name}[{j}]"))
            self.cite(row.citation, rloc + ("citation",), required=False)
        return compiled

    def table_condition(self, row: TableRow, loc: Loc) -> str:
        """`{target: CR, non_target: [CR, NA], new_lesions: false}` -> a condition string."""
        parts: list[str] = []
        for column, wanted in row.match.items():
            if column not in self.outputs_seen:
                raise RuleSetError(
                    f"table column `{column}` is not an earlier output", file=self.file, line=self.line(loc)
                )
            if wanted == "any":
                continue
            values = wanted if isinstance(wanted, list) else [wanted]
            if all(isinstance(v, bool) for v in values):
                if len(values) == 1:
                    parts.append(column if values[0] else f"not {column}")
                continue
            parts.append(f"{column} in ({', '.join(repr(v) for v in values)},)")
        return " and ".join(parts) if parts else "true"

    def check_category(self, out: Output, value: Category, loc: Loc) -> None:
        if out.categories is not None and value not in out.categories:
            raise RuleSetError(
                f"`{value}` is not one of the categories of `{out.name}`: " + ", ".join(map(str, out.categories)),
                file=self.file,
                line=self.line(loc),
                key=self.raw.shown(loc),
                hint=f"use one of them, or add {value} to `categories:`",
            )

    def check_aggregate(self, agg: Aggregate, v: RuleVocabulary, loc: Loc) -> Template | None:
        line = self.line(loc + ("aggregate",))
        if agg.source not in self.outputs_seen or self.outputs_seen[agg.source][0] != "lesion":
            raise RuleSetError(
                f"aggregate `from: {agg.source}` must name an earlier lesion-level output", file=self.file, line=line
            )
        if agg.method not in AGGREGATE_METHODS:
            choice = self.schema.parameters.get(agg.method)
            if choice is None or not set(choice.choices or []) <= AGGREGATE_METHODS:
                raise RuleSetError(
                    f"aggregate method `{agg.method}` is neither one of {sorted(AGGREGATE_METHODS)} nor a parameter "
                    "whose choices are among them",
                    file=self.file,
                    line=line,
                )
        if METRICS.get(agg.size) is None or METRICS[agg.size].level != "lesion":
            raise RuleSetError(f"aggregate size `{agg.size}` is not a lesion-level metric", file=self.file, line=line)
        template = self.maybe_tmpl(agg.because, v, loc + ("aggregate", "because"))
        self.cite(agg.citation, loc + ("aggregate", "citation"), required=False)
        return template

    def compile_flags(self) -> list[CompiledFlag]:
        flags = []
        for i, flag in enumerate(self.schema.flags):
            flags.append(self.compile_flag(flag, ("flags", i)))
            self.outputs_seen[flag.flag] = (flag.level, "bool")
        return flags

    def compile_flag(self, flag: Flag, loc: Loc) -> CompiledFlag:
        v = self.vocab(flag.level)
        grade_rules = []
        for j, rule in enumerate(flag.grade or []):
            condition = self.cond(rule.when, v, loc + ("grade", j, "when")) if rule.when else None
            grade_rules.append(CompiledRule(rule, condition, None, rule.result, f"{flag.flag}.grade[{j}]"))
        for k, name in enumerate(flag.evidence):
            if v.type_of(name) is None:
                raise RuleSetError(
                    f"evidence `{name}` is not a metric of this level",
                    file=self.file,
                    line=self.line(loc + ("evidence", k)),
                    hint=v.describe(),
                )
        context = [(self.cond(c.when, v, loc + ("context", k, "when")), c.text) for k, c in enumerate(flag.context)]
        self.cite(flag.citation, loc + ("citation",))
        condition = self.cond(flag.when, v, loc + ("when",))
        return CompiledFlag(flag, condition, self.tmpl(flag.because, v, loc + ("because",)), grade_rules, context)

    def check_report_items(self) -> None:
        report = self.schema.report
        for _, name in _report_items(report.timepoint) + _report_items(report.baseline):
            if self.vocab("timepoint").type_of(name) is None:
                raise RuleSetError(
                    f"report value `{name}` is not a timepoint-level metric or output",
                    file=self.file,
                    line=self.line(("report",)),
                )
        for _, name in _report_items(report.lesion):
            if self.vocab("lesion").type_of(name) is None:
                raise RuleSetError(
                    f"lesion report value `{name}` is not a lesion-level metric or output",
                    file=self.file,
                    line=self.line(("report", "lesion")),
                )

    def check_parameters_needed(
        self, outputs: list[CompiledOutput], checks: list[CompiledCheck], flags: list[CompiledFlag]
    ) -> None:
        """Metrics computed with a parameter (e.g. the measurability limit) need it defined in this set."""
        used = _used_metrics(outputs, checks, flags, self.schema)
        missing = sorted({p for name in used for p in METRICS[name].params} - set(self.schema.parameters))
        if missing:
            raise RuleSetError(
                f"metrics used by this set need the parameter(s) {', '.join(missing)}",
                file=self.file,
                hint="add them under `parameters:` with value, unit and citation",
            )

    def check_best_response(self) -> None:
        best = self.schema.best_response
        if best is None:
            return
        line = self.line(("best_response",))
        if best.output not in self.outputs_seen:
            raise RuleSetError(f"best_response output `{best.output}` is not an output", file=self.file, line=line)
        if best.method == "recist":
            absent = [p for p in BOR_PARAMETERS if p not in self.schema.parameters]
            if absent:
                raise RuleSetError(
                    "best_response method recist needs the parameters " + ", ".join(absent), file=self.file, line=line
                )
        self.cite(best.citation, ("best_response", "citation"), required=False)

    def check_roles(self, outputs: list[CompiledOutput]) -> None:
        """Every word of a best-response ranking has a role, one word per role; declared words are real
        categories."""
        schema = self.schema
        words = {str(c) for out in outputs for c in (out.spec.categories or []) if not isinstance(c, bool)}
        words |= {str(w) for w in (schema.best_response.ranking if schema.best_response else [])}
        for word in schema.categories:
            if word not in words:
                raise RuleSetError(
                    f"`{word}` is not a category of any output",
                    file=self.file,
                    line=self.line(("categories", word)),
                    key=f"categories.{word}",
                    hint="declare roles and labels for the words the outputs use",
                )
        if schema.best_response is not None:
            self.check_ranking_roles(schema.best_response)

    def check_ranking_roles(self, best: BestResponse) -> None:
        seen: dict[str, str] = {}
        for k, ranked in enumerate(best.ranking):
            word = str(ranked)
            info = self.schema.categories.get(word)
            if info is None or info.role is None:
                raise RuleSetError(
                    f"ranked word `{word}` has no role",
                    file=self.file,
                    line=self.line(("best_response", "ranking", k)) or self.line(("best_response",)),
                    key=f"best_response.ranking[{k}]",
                    hint=f"add `categories: {{{word}: {{role: ...}}}}` (roles: complete, partial, stable, ...)",
                )
            if info.role in seen:
                raise RuleSetError(
                    f"`{word}` and `{seen[info.role]}` have the same role `{info.role}`; a ranking has one word per "
                    "role",
                    file=self.file,
                    line=self.line(("categories", word)),
                    key=f"categories.{word}",
                )
            seen[info.role] = word
        if best.method == "recist":
            for role in ("stable", "not_evaluable"):
                if role not in seen:
                    raise RuleSetError(
                        f"best_response method recist needs a ranked word with role `{role}`",
                        file=self.file,
                        line=self.line(("best_response",)),
                        key="best_response.ranking",
                        hint="unconfirmed or too-early responses count as stable disease or not evaluable",
                    )


def _report_items(items: list[ReportItem]) -> list[tuple[str, str]]:
    """Report entries as (key in the output, metric or output name)."""
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            out.append((item, item))
        else:
            out.extend(item.items())
    return out


def report_items(items: list[ReportItem]) -> list[tuple[str, str]]:
    return _report_items(items)


def _used_metrics(
    outputs: list[CompiledOutput], checks: list[CompiledCheck], flags: list[CompiledFlag], schema: RuleSet
) -> set[str]:
    names: set[Name] = set()
    for out in outputs:
        if out.where:
            names |= out.where.names
        for rule in out.rules:
            if rule.condition:
                names |= rule.condition.names
            if rule.template:
                names |= {f for f, _ in rule.template.fields}
    for check in checks:
        names |= check.condition.names | {f for f, _ in check.template.fields}
    for flag in flags:
        names |= flag.condition.names | set(flag.spec.evidence)
    for items in (schema.report.baseline, schema.report.timepoint, schema.report.lesion):
        names |= {m for _, m in _report_items(items)}
    plain = {n for n in names if isinstance(n, str)}
    plain |= {a for n in names if isinstance(n, FunctionRef) for a in n.function.names_used(n)}
    return {n for n in plain if n in METRICS}


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "yes/no (true or false)"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "list of numbers"
    return "word"


def check_parameter_value(rule_set: LoadedRuleSet, name: str, value: Any, source: str) -> Any:
    """Validate one override (case `settings` or `--set`) against the rule set's parameter; return the value."""
    from .errors import SettingsError

    params = rule_set.schema.parameters
    if name not in params:
        raise SettingsError(
            f"`{rule_set.id}` has no parameter `{name}`", key=source, hint="parameters: " + ", ".join(sorted(params))
        )
    param = params[name]
    current = param.value
    expected = _value_kind(current)
    if value is None and current is not None:  # a parameter whose default is empty may be set back to empty
        raise SettingsError(f"`{rule_set.id}.{name}` needs a value (a {expected})", key=source)
    if current is not None and _value_kind(value) != expected:
        if expected == "number" and isinstance(value, str):
            try:
                value = float(value) if "." in value else int(value)
            except ValueError:
                pass
        if _value_kind(value) != expected:
            raise SettingsError(f"`{rule_set.id}.{name}` must be a {expected}, not {value!r}", key=source)
    problem = parameter_problem(param, value)
    if problem:
        raise SettingsError(f"`{rule_set.id}.{name}` {problem}", key=source)
    return value


def describe(rules: LoadedRuleSet) -> dict[str, Any]:
    """A plain description of a loaded rule set (for `rules show` and its JSON)."""
    schema = rules.schema
    outputs = []
    for out in rules.outputs:
        entries: list[dict[str, Any]] = []
        if out.spec.aggregate is not None:
            agg = out.spec.aggregate
            entries.append(
                {
                    "when": f"{agg.method} of lesion `{agg.source}`",
                    "then": ", ".join(map(str, agg.order or agg.values)),
                    "citation": agg.citation,
                }
            )
        for rule in out.rules:
            when = rule.condition.source if rule.condition is not None else "otherwise"
            entries.append({"when": when, "then": rule.result, "citation": getattr(rule.rule, "citation", None)})
        outputs.append(
            {"name": out.spec.name, "level": out.spec.level, "description": out.spec.description, "rules": entries}
        )
    return {
        "id": schema.id,
        "name": schema.name,
        "kind": schema.kind,
        "description": " ".join(schema.description.split()),
        "file": str(rules.path),
        "chain": rules.chain,
        "inputs": schema.inputs,
        "parameters": {
            name: {"value": p.value, **p.model_dump(exclude_none=True, exclude={"value"})}
            for name, p in schema.parameters.items()
        },
        "checks": [{"code": c.spec.code, "when": c.condition.source} for c in rules.checks],
        "outputs": outputs,
        "flags": [
            {
                "flag": f.spec.flag,
                "label": f.spec.label or f.spec.description.rstrip("."),
                "when": f.condition.source,
                "citation": f.spec.citation,
                "evidence_level": f.spec.evidence_level,
            }
            for f in rules.flags
        ],
        "functions": {name: FUNCTIONS[name].help for name in rules.functions},
        "citations": schema.citations,
    }


def main_citation(rules: LoadedRuleSet) -> str:
    """The first reference of a rule set as "first author et al. year"."""
    if not rules.schema.citations:
        return ""
    text = next(iter(rules.schema.citations.values()))
    author = text.split(",")[0].split(".")[0].strip()
    years = re.findall(r"\b(?:19|20)\d\d\b", text)
    person = len(author.split()) <= 2
    return f"{author}{' et al.' if person else ''} {years[-1]}" if years else author

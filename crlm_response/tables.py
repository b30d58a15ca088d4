"""The lesion table: every input (case file, long CSV, SDTM) becomes the same three pandas tables.

* `subjects`: one row per subject (treatment);
* `visits`:   one row per subject x timepoint (day, modality, organ and PET readings);
* `lesions`:  one row per subject x timepoint x lesion.

Numbers are float64 (NaN = not reported), yes/no fields are float64 1.0/0.0/NaN so that "not reported"
survives, words are Python objects (None = not reported). `prepare` then sorts the tables and adds the
integer keys the engine works with. A single case is simply a batch of one subject.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, ParamSpec, TypeVar

import annotated_types
import numpy as np
import pandas as pd
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from .models import Case, Lesion, Meta, Organs, Pet, Timepoint, Treatment

# --------------------------------------------------------------------------------------------------
# Field specifications, read off the Pydantic models so CSV checks and case checks share one truth.
# --------------------------------------------------------------------------------------------------

Kind = Literal["number", "integer", "bool", "text", "date", "list"]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class FieldSpec:
    """What one column may hold: its kind, numeric limits and allowed words."""

    name: str
    kind: Kind
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    allow_missing: bool = True
    description: str = ""
    label: str = ""
    unit: str | None = None
    sdtm: str | None = None


def _spec_from(name: str, info: FieldInfo) -> FieldSpec:
    bounds: dict[str, float] = {}
    choices: list[str] = []
    kinds: list[str] = []

    def visit(tp: Any, metadata: list[Any]) -> None:
        for meta in metadata:
            for attr in ("ge", "gt", "le"):
                value = getattr(meta, attr, None)
                if value is not None and isinstance(meta, annotated_types.BaseMetadata | FieldInfo):
                    bounds[attr] = float(value)
            if isinstance(meta, FieldInfo):
                visit(None, list(meta.metadata))
        if tp is None:
            return
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            base, *extra = typing.get_args(tp)
            visit(base, list(extra))
        elif origin in (typing.Union, types.UnionType):
            for arg in typing.get_args(tp):
                if arg is not type(None):
                    visit(arg, [])
        elif origin is Literal:
            choices.extend(str(a) for a in typing.get_args(tp))
            kinds.append("text")
        elif origin is list:
            kinds.append("list")
            (item,) = typing.get_args(tp)
            visit(item, [])
        elif tp is bool:
            kinds.append("bool")
        elif tp is int:
            kinds.append("integer")
        elif tp is float:
            kinds.append("number")
        elif tp is dt.date:
            kinds.append("date")
        else:
            kinds.append("text")

    visit(info.annotation, list(info.metadata))
    kind: Kind = "list" if "list" in kinds else kinds[0] if kinds else "text"  # type: ignore[assignment]
    meta = next((m for m in info.metadata if isinstance(m, Meta)), None)
    return FieldSpec(
        name=name,
        kind=kind,
        ge=bounds.get("ge"),
        gt=bounds.get("gt"),
        le=bounds.get("le"),
        choices=tuple(choices) or None,
        description=info.description or "",
        label=meta.label if meta else name.replace("_", " "),
        unit=meta.unit if meta else None,
        sdtm=meta.sdtm if meta else None,
    )


def field_specs(model: type[BaseModel]) -> dict[str, FieldSpec]:
    return {name: _spec_from(name, info) for name, info in model.model_fields.items()}


LESION_SPECS = {k: v for k, v in field_specs(Lesion).items() if k != "id"}
ORGAN_SPECS = field_specs(Organs)
PET_SPECS = field_specs(Pet)
TIMEPOINT_SPECS = {k: v for k, v in field_specs(Timepoint).items() if k not in ("id", "lesions", "organs", "pet")}
TREATMENT_SPECS = field_specs(Treatment)

SUBJECT_COLUMNS = ("subject_id", "regimen", "agents", "setting", "procedure_day")
VISIT_VALUE_COLUMNS = tuple(TIMEPOINT_SPECS) + tuple(ORGAN_SPECS) + tuple(PET_SPECS)
LESION_VALUE_COLUMNS = tuple(k for k in LESION_SPECS if k != "fragments_mm") + ("fragments_sum_mm",)
TRACE_COLUMNS = ("source", "line")

_VISIT_SPECS = {**TIMEPOINT_SPECS, **ORGAN_SPECS, **PET_SPECS}
_LESION_SPECS = {
    **{k: v for k, v in LESION_SPECS.items() if k != "fragments_mm"},
    "fragments_sum_mm": FieldSpec("fragments_sum_mm", "number", ge=0),
}


def spec_of(column: str) -> FieldSpec | None:
    """The spec of a lesion, timepoint, organ or PET column, or None for keys and free text."""
    return _LESION_SPECS.get(column) or _VISIT_SPECS.get(column)


@dataclass
class Tables:
    """Raw input as three tables, before sorting and keys (see module docstring)."""

    subjects: pd.DataFrame
    visits: pd.DataFrame
    lesions: pd.DataFrame
    # Per-subject rule-set settings from case files: {subject_id: {rule_set_id: {param: value}}}.
    settings: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def _typed_frame(rows: list[dict[str, Any]], columns: tuple[str, ...], specs: dict[str, FieldSpec]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns)) if rows else pd.DataFrame(columns=list(columns))
    return coerce_known_types(frame, specs)


def blank_where(values: Any, missing: Any) -> np.ndarray:
    """An object array of `values` with None where `missing` holds (numpy's `where` with None, typed)."""
    out = np.array(values, dtype=object, copy=True)
    out[np.asarray(missing, dtype=bool)] = None
    return out


def is_numeric_kind(spec: FieldSpec | None) -> bool:
    """Numbers, whole numbers and yes/no are float64 in the engine (missing = NaN); the rest are objects."""
    return spec is not None and spec.kind in ("number", "integer", "bool")


def add_absent_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Give `frame` every one of `columns` it lacks, all missing, typed as the engine expects."""
    for column in columns:
        if column not in frame:
            frame[column] = np.nan if is_numeric_kind(spec_of(column)) else None


def coerce_known_types(frame: pd.DataFrame, specs: dict[str, FieldSpec]) -> pd.DataFrame:
    """Give already-valid columns their engine dtypes: numbers and yes/no as float64, words as objects."""
    out: dict[str, Any] = {}
    for column in frame.columns:
        spec = specs.get(column)
        values = frame[column]
        if is_numeric_kind(spec):
            if values.dtype == np.float64:
                out[column] = values.to_numpy()
            else:
                out[column] = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        elif spec is not None and spec.kind == "date":
            out[column] = values.astype(object).where(values.notna(), None).to_numpy(dtype=object)
        else:
            arr = values.to_numpy(dtype=object)
            missing = pd.isna(arr)
            out[column] = blank_where(arr, missing) if missing.any() else arr
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def tables_from_cases(cases: list[tuple[Case, str, dict[tuple[Any, ...], int]]]) -> Tables:
    """Flatten validated cases into the three tables.

    Each entry is (case, file name, line map); `source`/`line` columns keep the way back to the YAML key,
    so a cross-row problem found later is reported at its line in the case file.
    """
    subjects: list[dict[str, Any]] = []
    visits: list[dict[str, Any]] = []
    lesions: list[dict[str, Any]] = []
    settings: dict[str, dict[str, dict[str, Any]]] = {}
    for case, file, lines in cases:
        sid = case.case_id
        t = case.treatment
        subjects.append(
            {
                "subject_id": sid,
                "regimen": t.regimen,
                "agents": ";".join(t.agents),
                "setting": t.setting,
                "procedure_day": t.procedure_day,
                "source": file,
                "line": lines.get(("case_id",), 1),
            }
        )
        if case.settings:
            settings[sid] = case.settings
        for ti, tp in enumerate(case.timepoints):
            row: dict[str, Any] = {"subject_id": sid, "timepoint": tp.id}
            for name in TIMEPOINT_SPECS:
                row[name] = getattr(tp, name)
            for name in ORGAN_SPECS:
                row[name] = getattr(tp.organs, name) if tp.organs else None
            for name in PET_SPECS:
                row[name] = getattr(tp.pet, name) if tp.pet else None
            row["source"] = f"{file}: timepoints[{ti}]"
            row["line"] = lines.get(("timepoints", ti), None)
            visits.append(row)
            for li, lesion in enumerate(tp.lesions):
                lrow: dict[str, Any] = {"subject_id": sid, "timepoint": tp.id, "lesion_id": lesion.id}
                for name in LESION_SPECS:
                    if name == "fragments_mm":
                        continue
                    lrow[name] = getattr(lesion, name)
                if lrow["slice_thickness_mm"] is None:
                    lrow["slice_thickness_mm"] = tp.slice_thickness_mm
                lrow["fragments_sum_mm"] = sum(lesion.fragments_mm) if lesion.fragments_mm else None
                lrow["source"] = f"{file}: timepoints[{ti}].lesions[{li}]"
                lrow["line"] = lines.get(("timepoints", ti, "lesions", li), None)
                lesions.append(lrow)
    return Tables(
        subjects=_typed_frame(subjects, SUBJECT_COLUMNS + TRACE_COLUMNS, {"procedure_day": FieldSpec("p", "number")}),
        visits=_typed_frame(
            visits,
            ("subject_id", "timepoint") + VISIT_VALUE_COLUMNS + TRACE_COLUMNS,
            {**_VISIT_SPECS, "line": FieldSpec("line", "number")},
        ),
        lesions=_typed_frame(
            lesions,
            ("subject_id", "timepoint", "lesion_id") + LESION_VALUE_COLUMNS + TRACE_COLUMNS,
            {**_LESION_SPECS, "line": FieldSpec("line", "number")},
        ),
        settings=settings,
    )


# --------------------------------------------------------------------------------------------------
# Prepared tables: sorted, keyed, baseline-linked. Built once, shared by every rule set.
# --------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Sorted tables with integer keys.

    visits:  sorted by subject, baseline first, then assessment order (VISITNUM for SDTM, else time); `subj_key`,
             `tp_order` (0 = baseline), `is_baseline`, `day` (days since baseline; NaN when unknown: a partial
             date not imputed). Date columns shared by every input (see `validate._date_columns`): `date` (full,
             imputed when asked for), `date_collected` (as written, e.g. `2014-02`), `date_imputation` (ADTF "D" /
             "M" / None), `study_day` (--DY / ADY, or NaN), `visit_order`, and `sd_day` (the day the stable-disease
             minimum counts from: `day`, or days since randomisation).
    lesions: sorted by visit then lesion id; `tp_key` (row of `visits`), `subj_key`, `base_row` (row of the
             same lesion at baseline, -1 if none), `kind`/`organ`/`is_lymph_node` inherited from baseline.
    dates:   how dates were used (`DateOptions.parameters()`), recorded with every result's parameters; empty
             when the caller left the defaults unstated (case files).
    """

    subjects: pd.DataFrame
    visits: pd.DataFrame
    lesions: pd.DataFrame
    settings: dict[str, dict[str, dict[str, Any]]]
    dates: dict[str, Any] = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        return len(self.subjects)


def long_frame(tables: Tables) -> pd.DataFrame:
    """The long trial format (one row per lesion per timepoint; a timepoint without lesions gets one row with an
    empty lesion_id) from tables, e.g. to turn case files into a trial CSV."""
    visits = tables.visits.drop(columns=[c for c in TRACE_COLUMNS if c in tables.visits.columns])
    lesions = tables.lesions.drop(columns=[c for c in TRACE_COLUMNS if c in tables.lesions.columns])
    lesions = lesions.rename(columns={"fragments_sum_mm": "fragments_mm"})
    subjects = tables.subjects[["subject_id", "regimen", "agents", "setting", "procedure_day"]]
    # A field both levels carry (slice thickness) is already on every lesion row; one column of that name.
    visits = visits.drop(
        columns=[c for c in visits.columns if c in lesions.columns and c not in ("subject_id", "timepoint")]
    )
    merged = visits.merge(lesions, on=["subject_id", "timepoint"], how="left")
    merged = subjects.merge(merged, on="subject_id", how="right")
    keep = [c for c in merged.columns if merged[c].notna().any() or c in ("subject_id", "timepoint", "lesion_id")]
    first = ["subject_id", "timepoint", "day", "date", "lesion_id"]
    order = [c for c in first if c in keep] + [c for c in keep if c not in first]
    out = merged[order].copy()
    for column in out.columns:
        spec = spec_of(column)
        if spec is not None and spec.kind == "bool":
            out[column] = out[column].map({1.0: "true", 0.0: "false"})
        elif spec is not None and spec.kind == "integer":
            out[column] = out[column].astype("Int64")
    if "day" in out:
        out["day"] = out["day"].astype("Int64")
    return out


@contextlib.contextmanager
def object_strings() -> Iterator[None]:
    """Keep text columns as plain Python objects inside the engine (pandas 2 behaviour).

    pandas 3 stores inferred text as Arrow strings; the engine converts text columns to numpy object arrays
    many times, which costs an order of magnitude more with Arrow strings on large cohorts. Results are the
    same either way: this only changes speed, and it is skipped on pandas versions without the option.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            context: Any = pd.option_context("future.infer_string", False)
        except (KeyError, pd.errors.OptionError):
            context = contextlib.nullcontext()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context.__enter__()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            context.__exit__(None, None, None)


def with_object_strings(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of `object_strings` for the library's entry points."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with object_strings():
            return func(*args, **kwargs)

    return wrapper

"""Named metrics: the vocabulary rule files may use.

Every metric is a small function of the prepared tables, computed for all subjects at once (numpy over
whole columns, no Python loop per row). A metric lives at one level:

* ``lesion``    - one value per lesion row (subject x timepoint x lesion);
* ``timepoint`` - one value per timepoint row (subject x timepoint);
* ``subject``   - one value per subject (treatment).

Rule conditions at the lesion level may also use timepoint and subject metrics (broadcast to the lesion's
row); conditions at the timepoint level may use subject metrics. Every input field of the case model is a
metric too (``longest_diameter_mm``, ``status``, ``liver_attenuation_hu`` ...). Functions such as
``baseline(x)`` extend the vocabulary (`functions.py`); the context evaluates them by asking the function.

Units are in each metric's docstring. Percentages are ``100 * (value - reference) / reference`` and are
missing (NaN) when the reference is 0 or missing; rules that must be exact at a threshold compare without
division (see rules/recist1.1.yaml).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from .functions import FunctionRef, Name, baseline_of
from .roles import ResponseScale
from .tables import LESION_VALUE_COLUMNS, VISIT_VALUE_COLUMNS, Prepared, object_values, spec_of, text_codes
from .vectors import ValueType, text_equal

Level = Literal["lesion", "timepoint", "subject"]
LEVEL_RANK = {"subject": 0, "timepoint": 1, "lesion": 2}


@dataclass(frozen=True)
class Metric:
    name: str
    level: Level
    type: ValueType
    unit: str
    doc: str
    params: tuple[str, ...]
    func: Callable[[Context], np.ndarray]


METRICS: dict[str, Metric] = {}


def metric(
    level: Level, type: ValueType = "number", unit: str = "", params: tuple[str, ...] = ()
) -> Callable[[Callable[[Context], np.ndarray]], Callable[[Context], np.ndarray]]:
    """Register a function as a metric named after the quantity it returns."""

    def register(func: Callable[[Context], np.ndarray]) -> Callable[[Context], np.ndarray]:
        doc = inspect.getdoc(func) or ""
        METRICS[func.__name__] = Metric(func.__name__, level, type, unit, doc, params, func)
        return func

    return register


def _field_type(column: str) -> ValueType:
    spec = spec_of(column)
    if spec is None:
        return "text"
    return {"number": "number", "integer": "number", "bool": "bool", "date": "text"}.get(spec.kind, "text")  # type: ignore[return-value]


def _field(level: Level, column: str) -> Metric:
    spec = spec_of(column)
    unit = ""
    for suffix, u in (("_mm2", "mm²"), ("_mm", "mm"), ("_hu", "HU"), ("_ml", "mL"), ("_pct", "%")):
        if column.endswith(suffix):
            unit = u
            break
    doc = f"Input field `{column}`" + (f": {spec.description}" if spec and spec.description else "") + "."

    def read(ctx: Context) -> np.ndarray:
        return ctx.column(level, column)

    return Metric(column, level, _field_type(column), unit, doc, (), read)


for _column in LESION_VALUE_COLUMNS + ("lesion_id", "timepoint"):
    METRICS.setdefault(_column if _column != "timepoint" else "lesion_timepoint", _field("lesion", _column))
for _column in VISIT_VALUE_COLUMNS:
    if _column not in ("date",):
        METRICS.setdefault(_column, _field("timepoint", _column))
METRICS["timepoint_id"] = Metric(
    "timepoint_id", "timepoint", "text", "", "Timepoint id.", (), lambda ctx: ctx.column("timepoint", "timepoint")
)
METRICS["subject_id"] = Metric(
    "subject_id", "subject", "text", "", "Subject id.", (), lambda ctx: ctx.column("subject", "subject_id")
)


class Context:
    """Metric values of one scoring run: prepared tables + rule-set parameters, computed lazily, cached.

    Rule outputs (``target``, ``overall`` ...) are stored here too once decided, so later rules can use them.
    """

    def __init__(self, prepared: Prepared, params: Mapping[str, Any], scale: ResponseScale | None = None) -> None:
        self.prepared = prepared
        self.params = params
        self.scale = scale  # the rule set's response words and roles (history functions read roles)
        v, les = prepared.visits, prepared.lesions
        self.n = {"subject": len(prepared.subjects), "timepoint": len(v), "lesion": len(les)}
        self.visit_subject = v["subj_key"].to_numpy(dtype=np.int64)
        self.lesion_visit = les["tp_key"].to_numpy(dtype=np.int64)
        self.lesion_subject = les["subj_key"].to_numpy(dtype=np.int64)
        self.base_row = les["base_row"].to_numpy(dtype=np.int64)
        self.visit_is_baseline = v["is_baseline"].to_numpy(dtype=bool)
        first = np.full(self.n["subject"], -1, dtype=np.int64)
        base_rows = np.flatnonzero(self.visit_is_baseline)
        first[self.visit_subject[base_rows]] = base_rows
        self.subject_baseline_visit = first
        codes = _lesion_codes(les["lesion_id"]) if len(les) else np.zeros(0, dtype=np.int64)
        self.lesion_key = self.lesion_subject * (int(codes.max()) + 1 if len(codes) else 1) + codes
        self._lesion_slots: tuple[np.ndarray, int] | None = None
        self._visit_steps: list[np.ndarray] | None = None
        # Intermediate columns several metrics share (e.g. the count of targets evaluated per timepoint).
        self._shared: dict[tuple[str, ...], Any] = {}
        self._values: dict[Name, np.ndarray] = {}
        # Text columns known as codes into a few words (id of the array -> the array, codes, words): comparing
        # such a column with a word compares the words once and reads the answer through the codes.
        self._words: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._levels: dict[str, Level] = {}
        self._types: dict[str, ValueType] = {}
        # Outputs of the previous pass over the decisions, read by history functions (functions.HistoryFunction),
        # and the values those functions returned in this pass.
        self.previous_outputs: dict[str, np.ndarray] | None = None
        self.history_used: dict[FunctionRef, np.ndarray] = {}

    # -- access --------------------------------------------------------------------------------------
    def column(self, level: Level, name: str) -> np.ndarray:
        frame = {"lesion": self.prepared.lesions, "timepoint": self.prepared.visits, "subject": self.prepared.subjects}[
            level
        ]
        if name not in frame:
            # An absent column is one missing value repeated: a read-only view, no memory per row.
            spec = spec_of(name)
            if spec is not None and spec.kind in ("number", "integer", "bool", "list"):
                return np.broadcast_to(np.float64(np.nan), (self.n[level],))
            nothing = np.broadcast_to(np.int8(-1), (self.n[level],))
            empty = np.broadcast_to(np.array(None, dtype=object), (self.n[level],))
            return self.coded(empty, nothing, np.zeros(0, dtype=object))
        values = frame[name]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy()
            return self.coded(object_values(values), codes, values.cat.categories.to_numpy(dtype=object))
        if values.dtype == object or not pd.api.types.is_numeric_dtype(values.dtype):
            return values.to_numpy(dtype=object)
        return values.to_numpy(dtype=float)

    def coded(self, values: np.ndarray, codes: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Remember that `values` are `words[codes]` (code -1: missing), so comparisons run on the codes."""
        self._words[id(values)] = (values, codes, words)
        return values

    def codes_of(self, values: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """The codes and words of a column remembered by `coded`, or None."""
        entry = self._words.get(id(values))
        return (entry[1], entry[2]) if entry is not None and entry[0] is values else None

    def equals(self, values: Any, *words: Any) -> np.ndarray:
        """Rows of a text column equal to one of `words` (never a missing value)."""
        coded = self.codes_of(values)
        if coded is not None:
            return equal_codes(*coded, *words)
        out = np.zeros(len(values), dtype=bool)
        for word in words:
            out |= np.asarray(values == word, dtype=bool)
        return out

    def text_equal(self, a: Any, b: Any) -> Any:
        """`vectors.text_equal`, through the codes when one side is a remembered column and the other one word."""
        if isinstance(a, np.ndarray) and not isinstance(b, np.ndarray) and self.codes_of(a) is not None:
            return self.equals(a, b)
        if isinstance(b, np.ndarray) and not isinstance(a, np.ndarray) and self.codes_of(b) is not None:
            return self.equals(b, a)
        return text_equal(a, b)

    def level_of(self, name: Name) -> Level:
        if name in self._levels:
            return self._levels[name]
        if isinstance(name, FunctionRef):
            level: Level = name.function.level(self, name)
            return level
        return METRICS[name].level

    def value(self, name: Name) -> np.ndarray:
        """A metric, stored output or function value at its own level."""
        if name in self._values:
            return self._values[name]
        if isinstance(name, FunctionRef):
            result = name.function.value(self, name)
            if not name.function.cached:
                return result
        else:
            result = METRICS[name].func(self)
        self._values[name] = result
        return result

    def get(self, name: Name, level: Level) -> Any:
        """`name` as seen from `level` (broadcast down from coarser levels), or a parameter value."""
        if isinstance(name, str) and name in self.params and name not in self._levels and name not in METRICS:
            return self.params[name]
        return self.broadcast(self.value(name), self.level_of(name), level)

    def store(self, name: str, level: Level, values: np.ndarray, vtype: ValueType = "text") -> None:
        self._values[name] = values
        self._levels[name] = level
        self._types[name] = vtype

    def type_of(self, name: str) -> ValueType:
        if name in self._types:
            return self._types[name]
        metric = METRICS.get(name)
        return metric.type if metric is not None else "text"

    def param(self, name: str) -> Any:
        return self.params[name]

    def broadcast(self, values: np.ndarray, source: Level, target: Level) -> np.ndarray:
        if source == target:
            return values
        if source == "timepoint" and target == "lesion":
            rows = self.lesion_visit
        elif source == "subject" and target == "timepoint":
            rows = self.visit_subject
        elif source == "subject" and target == "lesion":
            rows = self.lesion_subject
        else:
            raise ValueError(f"cannot use a {source}-level value at the {target} level")
        coded = self.codes_of(values)
        if coded is not None:
            return self.coded(values[rows], coded[0][rows], coded[1])
        return values[rows]

    # -- building blocks -----------------------------------------------------------------------------
    def at_baseline(self, values: np.ndarray, level: Level) -> np.ndarray:
        """Each row's value at baseline: the subject's baseline timepoint, or the lesion's baseline row."""
        if level == "subject":
            return values
        rows = self.subject_baseline_visit[self.visit_subject] if level == "timepoint" else self.base_row
        coded = self.codes_of(values)
        if coded is not None and len(values):
            return self.coded(_take(values, rows), np.where(rows >= 0, coded[0][np.maximum(rows, 0)], -1), coded[1])
        return _take(values, rows)

    def text_keys(self, values: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Equal integers for values that are equal as text (`str`, so a missing value reads "None"), for all rows
        or only `rows`."""
        coded = self.codes_of(values)
        if coded is None:
            return pd.factorize(np.asarray(values if rows is None else values[rows]).astype(str))[0]
        codes, words = coded
        keys = pd.factorize(np.array([str(w) for w in words] + ["None"], dtype=object))[0]
        return keys[codes if rows is None else codes[rows]]  # code -1 (missing) picks "None"

    def per_visit_sum(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        keep = mask & ~np.isnan(values)
        return np.bincount(self.lesion_visit[keep], weights=values[keep], minlength=self.n["timepoint"])

    def evaluated_targets(self, quantity: str) -> tuple[np.ndarray, np.ndarray]:
        """Per timepoint: how many targets have a value of `quantity`, and the sum of those values (computed once
        for the metrics that share them). Read-only."""
        key = ("evaluated_targets", quantity)
        if key not in self._shared:
            values = self.value(quantity)
            kept = self.value("is_target") & ~np.isnan(values)
            visits = self.lesion_visit[kept]
            n = self.n["timepoint"]
            counts = np.bincount(visits, minlength=n).astype(float)
            self._shared[key] = (counts, np.bincount(visits, weights=values[kept], minlength=n))
        result: tuple[np.ndarray, np.ndarray] = self._shared[key]
        return result

    def per_visit_count(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.lesion_visit[mask], minlength=self.n["timepoint"]).astype(float)

    def per_subject_count(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.lesion_subject[mask], minlength=self.n["subject"]).astype(float)

    def per_visit_reduce(self, values: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
        out = np.full(self.n["timepoint"], np.nan)
        keep = mask & ~np.isnan(values)
        if keep.any():
            grouped = pd.Series(values[keep]).groupby(self.lesion_visit[keep]).agg(how)
            out[grouped.index.to_numpy()] = grouped.to_numpy()
        return out

    def prior_min(self, values: np.ndarray) -> np.ndarray:
        """Smallest non-missing value at earlier timepoints of the same subject (NaN if none)."""
        steps = self.visit_steps()
        if steps is None:
            return self._prior_min_grouped(values)
        values = np.asarray(values, dtype=float)
        running = values.copy()  # the smallest non-missing value up to each row (a tie keeps the earlier one)
        out = np.full(len(values), np.nan)
        for rows in steps[1:]:
            before = running[rows - 1]  # the same subject's previous timepoint
            out[rows] = before
            here = values[rows]
            running[rows] = np.where(np.isnan(before) | (here < before), here, before)
        return out

    def _prior_min_grouped(self, values: np.ndarray) -> np.ndarray:
        series = pd.Series(values)
        running = series.groupby(self.visit_subject).cummin()
        running = running.groupby(self.visit_subject).ffill()
        return running.groupby(self.visit_subject).shift(1).to_numpy(dtype=float)

    def visit_steps(self) -> list[np.ndarray] | None:
        """The timepoint rows by their place in the subject (first, second ...), so that a running value over a
        subject's timepoints is a few whole-column steps; None when a subject has too many timepoints for that."""
        if self._visit_steps is None:
            subject = self.visit_subject
            starts = (
                np.flatnonzero(np.r_[True, subject[1:] != subject[:-1]])
                if len(subject)
                else np.zeros(0, dtype=np.int64)
            )
            place = np.arange(len(subject)) - np.repeat(starts, np.diff(np.r_[starts, len(subject)]))
            deepest = int(place.max(initial=0))
            self._visit_steps = [np.flatnonzero(place == k) for k in range(deepest + 1)] if deepest < 64 else []
        return self._visit_steps or None

    def earlier_any(self, mask: np.ndarray) -> np.ndarray:
        """For lesion rows: does an earlier row of the same lesion satisfy `mask`?"""
        slot, n_slots = self.lesion_slots()
        rows = np.flatnonzero(mask)
        first = np.full(n_slots, len(slot), dtype=np.int64)  # per lesion, its first row in `mask`
        np.minimum.at(first, slot[rows], rows)
        return first[slot] < np.arange(len(slot))

    def lesion_slots(self) -> tuple[np.ndarray, int]:
        """Per lesion row, a slot shared by the rows of the same lesion, and the number of slots: the lesion key
        itself when its range is small (no hashing), else its distinct values numbered (once per run)."""
        if self._lesion_slots is None:
            key = self.lesion_key
            span = int(key.max()) + 1 if len(key) else 0
            if span <= 4 * len(key) + 1024 and (not len(key) or int(key.min()) >= 0):
                self._lesion_slots = (self.lesion_key, span)
            else:
                codes, uniques = pd.factorize(key)
                self._lesion_slots = (codes.astype(np.int64), len(uniques))
        return self._lesion_slots


def equal_codes(codes: np.ndarray, names: np.ndarray, *words: Any) -> np.ndarray:
    """Rows whose code is that of one of `words` (`names[codes]` equal to a word; code -1 is missing, never equal):
    the words are compared with the few names once."""
    hit = np.zeros(len(names), dtype=bool)
    for word in words:
        hit |= np.asarray(names == word, dtype=bool)
    out = np.zeros(len(codes), dtype=bool)
    for code in np.flatnonzero(hit):
        out |= codes == code
    return out


def _lesion_codes(lesion_ids: pd.Series) -> np.ndarray:
    """Equal codes for equal lesion ids (as text)."""
    if isinstance(lesion_ids.dtype, pd.CategoricalDtype):
        return text_codes(lesion_ids)[0]  # distinct categories are distinct texts
    return pd.factorize(lesion_ids.astype(str))[0]


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows] with -1 meaning missing (NaN or None)."""
    safe = np.maximum(rows, 0)
    out = values[safe] if len(values) else np.full(len(rows), np.nan)
    missing = rows < 0
    if missing.any():
        out = out.copy()
        if out.dtype == object:
            out[missing] = None
        elif out.dtype == bool:
            out = out.astype(float)
            out[missing] = np.nan
        else:
            out = out.astype(float)
            out[missing] = np.nan
    return out


def _pct(value: np.ndarray, reference: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        result = 100.0 * (value - reference) / reference
    return np.where(reference == 0, np.nan, result)


def _mentions(ctx: Context, values: np.ndarray, word: str) -> np.ndarray:
    """Rows whose text holds `word` in any case (never a missing value); each distinct text looked at once."""

    def test(texts: np.ndarray) -> np.ndarray:
        found = pd.Series(texts, dtype=object).str.upper().str.contains(word, regex=False)
        return found.fillna(False).to_numpy(dtype=bool)

    coded = ctx.codes_of(values)
    if coded is None:
        return test(values)
    codes, words = coded
    return np.append(test(words), False)[codes]


def _yes(values: np.ndarray) -> np.ndarray:
    return np.asarray(values == 1, dtype=bool)


# ==================================================================================================
# Lesion-level identity and state
# ==================================================================================================


@metric("lesion", "bool")
def is_target(ctx: Context) -> np.ndarray:
    """The lesion is a target lesion (kind chosen at baseline)."""
    return ctx.equals(ctx.value("kind"), "target")


@metric("lesion", "bool")
def is_non_target(ctx: Context) -> np.ndarray:
    """The lesion is a non-target lesion (kind chosen at baseline)."""
    return ctx.equals(ctx.value("kind"), "non_target")


@metric("lesion", "bool")
def is_new(ctx: Context) -> np.ndarray:
    """The lesion is a new lesion (first seen at follow-up)."""
    return ctx.equals(ctx.value("kind"), "new")


@metric("lesion", "bool")
def is_ablated(ctx: Context) -> np.ndarray:
    """The lesion was treated by thermal ablation (kind ablated)."""
    return ctx.equals(ctx.value("kind"), "ablated")


@metric("lesion", "bool")
def is_node(ctx: Context) -> np.ndarray:
    """The lesion is a lymph node (measured in short axis; RECIST 1.1 §3.1)."""
    return _yes(ctx.value("is_lymph_node"))


@metric("lesion", "bool")
def is_liver(ctx: Context) -> np.ndarray:
    """The lesion is in the liver."""
    return ctx.equals(ctx.value("organ"), "liver")


@metric("lesion", "bool")
def is_disappeared(ctx: Context) -> np.ndarray:
    """Status disappeared at this timepoint."""
    return ctx.equals(ctx.value("status"), "disappeared")


@metric("lesion", "bool")
def is_lesion_baseline(ctx: Context) -> np.ndarray:
    """The lesion row belongs to the baseline timepoint."""
    return ctx.prepared.lesions["is_baseline"].to_numpy(dtype=bool)


@metric("lesion", "text")
def organ_group(ctx: Context) -> np.ndarray:
    """Organ for the per-organ target limit: all lymph nodes together count as one organ (RECIST FAQ)."""
    given = ctx.value("organ")
    node = ctx.value("is_node")
    organ = given.copy()
    organ[node] = "lymph_node"
    coded = ctx.codes_of(given)
    if coded is None:
        return organ
    codes, words = coded
    known = np.flatnonzero(np.asarray(words == "lymph_node", dtype=bool))
    if not len(known):
        words = np.array([*words, "lymph_node", None], dtype=object)[:-1]
    return ctx.coded(organ, np.where(node, known[0] if len(known) else len(words) - 1, codes), words)


@metric("lesion", "number")
def target_rank_in_organ(ctx: Context) -> np.ndarray:
    """1-based order of a baseline target within its subject and organ group (by lesion id); NaN otherwise."""
    rows = np.flatnonzero(ctx.value("is_target") & ctx.value("is_lesion_baseline"))
    out = np.full(ctx.n["lesion"], np.nan)
    if len(rows):
        organ = ctx.text_keys(ctx.value("organ_group"), rows)
        out[rows] = _place_in_group(ctx.lesion_subject[rows] * (int(organ.max()) + 1) + organ) + 1
    return out


def _place_in_group(key: np.ndarray) -> np.ndarray:
    """0, 1, 2 ... for the rows of each key in row order (`groupby(key).cumcount()`), by one stable sort."""
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    place = np.empty(len(key), dtype=np.int64)
    place[order] = np.arange(len(key)) - np.repeat(starts, np.diff(np.r_[starts, len(key)]))
    return place


@metric("lesion", "number", "mm", params=("too_small_default_mm",))
def lesion_mm(ctx: Context) -> np.ndarray:
    """RECIST measurement of one lesion in mm (E2009 §4.3).

    present: short axis for nodes, else the sum of fragments or the longest diameter; too_small: the
    default (5 mm); disappeared or coalesced: 0 mm; not_evaluated: missing.
    """
    status = ctx.value("status")
    node = ctx.value("is_node")
    fragments = ctx.value("fragments_sum_mm")
    measured = np.where(
        node, ctx.value("short_axis_mm"), np.where(np.isnan(fragments), ctx.value("longest_diameter_mm"), fragments)
    )
    return _by_status(ctx, status, measured, float(ctx.param("too_small_default_mm")))


def _by_status(ctx: Context, status: np.ndarray, measured: np.ndarray, too_small_value: float) -> np.ndarray:
    out = np.where(ctx.equals(status, "too_small"), too_small_value, measured).astype(float, copy=False)
    out[ctx.equals(status, "disappeared", "coalesced")] = 0.0
    out[ctx.equals(status, "not_evaluated")] = np.nan
    return out


@metric("lesion", "number", "mm²", params=("too_small_default_mm",))
def lesion_product_mm2(ctx: Context) -> np.ndarray:
    """WHO bidimensional product of one lesion: longest diameter x greatest perpendicular (mm²).

    too_small counts as a square of the default size; disappeared or coalesced 0; missing perpendicular
    leaves the product missing.
    """
    fragments = ctx.value("fragments_sum_mm")
    longest = np.where(np.isnan(fragments), ctx.value("longest_diameter_mm"), fragments)
    small = float(ctx.param("too_small_default_mm"))
    return _by_status(ctx, ctx.value("status"), longest * ctx.value("perpendicular_mm"), small * small)


@metric("lesion", "number", "mm")
def lesion_viable_mm(ctx: Context) -> np.ndarray:
    """Longest diameter of the viable (arterially enhancing) part of one lesion (mRECIST), mm."""
    return _by_status(ctx, ctx.value("status"), ctx.value("viable_diameter_mm"), np.nan)


@metric("lesion", "number", "mm²")
def lesion_viable_area_mm2(ctx: Context) -> np.ndarray:
    """Bidimensional product of the enhancing part of one lesion (EASL), mm²."""
    return _by_status(
        ctx, ctx.value("status"), ctx.value("viable_diameter_mm") * ctx.value("viable_perpendicular_mm"), np.nan
    )


@metric("lesion", "number")
def group(ctx: Context) -> np.ndarray:
    """Chun morphology group (1, 2, 3) read at this timepoint."""
    return ctx.value("morphology_group")


@metric("lesion", "number")
def baseline_group(ctx: Context) -> np.ndarray:
    """Chun morphology group of the same lesion at baseline."""
    return ctx.value(baseline_of("morphology_group"))


@metric("timepoint", "number")
def n_graded_liver_lesions(ctx: Context) -> np.ndarray:
    """Liver lesions given a Chun morphology group at baseline."""
    graded = ctx.value("is_liver") & ~np.isnan(ctx.value("morphology_group"))
    return _baseline_count(ctx, graded)


@metric("lesion", "number", "mm")
def baseline_lesion_mm(ctx: Context) -> np.ndarray:
    """RECIST measurement of the same lesion at baseline (mm); used to pick the largest lesion."""
    return ctx.at_baseline(
        np.where(
            np.isnan(ctx.value("longest_diameter_mm")), ctx.value("short_axis_mm"), ctx.value("longest_diameter_mm")
        ),
        "lesion",
    )


@metric("lesion", "bool")
def newly_disappeared(ctx: Context) -> np.ndarray:
    """Status disappeared here and at no earlier timepoint of the same lesion."""
    gone = ctx.value("is_disappeared")
    return gone & ~ctx.earlier_any(gone)


@metric("lesion", "bool")
def present_at_baseline(ctx: Context) -> np.ndarray:
    """The same lesion was present (measured or too small) at baseline."""
    status = ctx.value(baseline_of("status"))
    return ctx.equals(status, "present") | ctx.equals(status, "too_small")


@metric("lesion", "bool", params=("node_normal_short_axis_mm",))
def new_lesion_unequivocal(ctx: Context) -> np.ndarray:
    """A new lesion that counts for progression (RECIST 1.1 §4.3.2 and its FDG-PET rule, E2009 §4.3.2).

    Equivocal new lesions do not count yet. A new lymph node below the normal short axis (10 mm) is normal,
    not a new lesion (RECIST FAQ "new lymph node lesions"). A lesion detected on FDG-PET counts when the site
    was negative on a baseline PET, or, without baseline PET, when CT confirms it; an FDG-avid focus at a site
    that was already positive at baseline is not a new lesion.
    """
    small_node = ctx.value("is_node") & (ctx.value("short_axis_mm") < float(ctx.param("node_normal_short_axis_mm")))
    new = ctx.value("is_new") & ~ctx.value("is_disappeared") & ~_yes(ctx.value("equivocal")) & ~small_node
    by_pet = _mentions(ctx, ctx.value("detected_by"), "PET")
    pet_site = ctx.value("baseline_fdg_pet_at_site")
    confirmed = _yes(ctx.value("confirmed_on_ct"))
    pet_counts = ctx.equals(pet_site, "negative") | (~ctx.equals(pet_site, "positive") & confirmed)
    return new & (~by_pet | pet_counts)


@metric("lesion", "bool", params=("node_normal_short_axis_mm",))
def new_lesion_equivocal(ctx: Context) -> np.ndarray:
    """A new lesion reported as equivocal, or found on FDG-PET and not (yet) confirmed on CT."""
    small_node = ctx.value("is_node") & (ctx.value("short_axis_mm") < float(ctx.param("node_normal_short_axis_mm")))
    new = ctx.value("is_new") & ~ctx.value("is_disappeared") & ~small_node
    return new & ~ctx.value("new_lesion_unequivocal") & ~ctx.equals(ctx.value("baseline_fdg_pet_at_site"), "positive")


@metric("lesion", "bool", params=("node_normal_short_axis_mm",))
def new_lesion_confirmed_later(ctx: Context) -> np.ndarray:
    """An equivocal (or PET-only) new lesion that a later scan shows unequivocally (same lesion id).

    Progression is then declared at the scan that first showed it (E2009 §4.3.2 "progression should be declared
    using the date of the initial scan"; the same for an FDG-PET finding that a later CT confirms).
    """
    equivocal = ctx.value("new_lesion_equivocal")
    rows = np.flatnonzero(equivocal)  # only these can be confirmed later
    out = np.zeros(len(equivocal), dtype=bool)
    out[rows] = ~pd.isna(ctx.value("new_lesion_confirmed_at")[rows])
    return out


@metric("lesion", "text", params=("node_normal_short_axis_mm",))
def new_lesion_confirmed_at(ctx: Context) -> np.ndarray:
    """For an equivocal new lesion: the timepoint of the first later scan that shows it unequivocally."""
    unequivocal = ctx.value("new_lesion_unequivocal")
    visit = ctx.lesion_visit
    out = np.full(ctx.n["lesion"], None, dtype=object)
    rows = np.flatnonzero(ctx.value("new_lesion_equivocal"))  # only these can have a later confirmation
    if not (len(rows) and unequivocal.any()):
        return out
    # Visits are ordered by day within a subject, so the smallest visit row is the earliest scan.
    earliest = pd.Series(visit[unequivocal]).groupby(ctx.lesion_key[unequivocal]).min()
    where = earliest.index.get_indexer(pd.Index(ctx.lesion_key[rows]))
    first = np.where(where >= 0, earliest.to_numpy()[np.maximum(where, 0)], -1)
    later = first > visit[rows]
    out[rows[later]] = ctx.column("timepoint", "timepoint")[first[later]]
    return out


@metric("lesion", "bool", params=("node_normal_short_axis_mm", "too_small_default_mm"))
def reappeared(ctx: Context) -> np.ndarray:
    """A baseline target or non-target lesion present again after it had gone at an earlier follow-up.

    Gone: disappeared (a node: below the normal short axis, 10 mm). Present again: measured above 0 mm, too
    small to measure, or unequivocal progression (a node: pathological again, 10 mm or more). After a definitive
    CR any such reappearance is PD, however small (RECIST FAQ "Does a new lesion always result in PD?").
    """
    limit = float(ctx.param("node_normal_short_axis_mm"))
    node = ctx.value("is_node")
    status = ctx.value("status")
    value = ctx.value("lesion_mm")
    short_axis = ctx.value("short_axis_mm")
    baseline_lesion = ctx.value("is_target") | ctx.value("is_non_target")
    disappeared = ctx.value("is_disappeared")
    target_at_zero = ctx.value("is_target") & (value == 0)
    gone = np.where(node, disappeared | (short_axis < limit), disappeared | target_at_zero)
    progressing = ctx.equals(status, "unequivocal_progression")
    shown = ctx.equals(status, "present", "too_small") | progressing
    back = np.where(node, (short_axis >= limit) | progressing, shown & ~target_at_zero)
    follow = ~ctx.value("is_lesion_baseline")
    return baseline_lesion & follow & back & ctx.earlier_any(gone & follow)


# ==================================================================================================
# Timepoint-level: timing
# ==================================================================================================


@metric("timepoint", "bool")
def is_baseline(ctx: Context) -> np.ndarray:
    """The timepoint is the subject's baseline."""
    return ctx.visit_is_baseline


@metric("timepoint", "bool")
def is_follow_up(ctx: Context) -> np.ndarray:
    """The timepoint is a follow-up (day > 0)."""
    return ~ctx.visit_is_baseline


@metric("timepoint", "number")
def n_lesions_reported(ctx: Context) -> np.ndarray:
    """Lesion rows reported at this timepoint (0 = no imaging reported)."""
    return np.bincount(ctx.lesion_visit, minlength=ctx.n["timepoint"]).astype(float)  # every lesion row counts


@metric("timepoint", "bool")
def modality_changed(ctx: Context) -> np.ndarray:
    """The imaging modality differs from baseline's (RECIST 1.1 §3.2: same technique throughout)."""
    modality = ctx.value("modality")
    base = ctx.value(baseline_of("modality"))
    here, there = ctx.codes_of(modality), ctx.codes_of(base)
    if here is not None and there is not None and here[1] is there[1]:
        # Codes into the same distinct words: different codes are different words (-1: missing).
        return (here[0] >= 0) & (there[0] >= 0) & (here[0] != there[0])
    return ~pd.isna(modality) & ~pd.isna(base) & (modality != base)


@metric("timepoint", "text")
def imaging_description(ctx: Context) -> np.ndarray:
    """Modality and CT phase in words, e.g. `CT, unenhanced phase`, `MRI` (for messages about attenuation)."""
    modality = pd.Series(ctx.value("modality"), dtype=object)
    phase = pd.Series(ctx.value("ct_phase"), dtype=object).str.replace("_", "-", regex=False) + " phase"
    both = modality.notna() & phase.notna()
    text = modality.where(modality.notna(), phase).where(~both, modality + ", " + phase)
    return text.where(text.notna(), "images of unstated modality and phase").to_numpy(dtype=object)


@metric("timepoint", "text")
def baseline_modality(ctx: Context) -> np.ndarray:
    """Imaging modality at baseline (CT, MRI, PET-CT)."""
    return ctx.value(baseline_of("modality"))


# ==================================================================================================
# Timepoint-level: target lesions and their sums (RECIST 1.1 and the size-based sets)
# ==================================================================================================


def _baseline_count(ctx: Context, mask: np.ndarray) -> np.ndarray:
    return ctx.broadcast(ctx.per_subject_count(mask & ctx.value("is_lesion_baseline")), "subject", "timepoint")


@metric("timepoint", "number")
def n_targets(ctx: Context) -> np.ndarray:
    """Number of target lesions chosen at baseline."""
    return _baseline_count(ctx, ctx.value("is_target"))


@metric("timepoint", "bool")
def has_targets(ctx: Context) -> np.ndarray:
    """The subject has at least one target lesion."""
    return ctx.value("n_targets") > 0


@metric("timepoint", "number")
def n_targets_evaluated(ctx: Context) -> np.ndarray:
    """Target lesions with a RECIST value at this timepoint (measured, too small, disappeared)."""
    return ctx.evaluated_targets("lesion_mm")[0].copy()


@metric("timepoint", "text")
def targets_evaluated(ctx: Context) -> np.ndarray:
    """Targets evaluated out of targets chosen, as text, e.g. `2/3`."""
    done = ctx.value("n_targets_evaluated").astype(np.int64)
    total = ctx.value("n_targets").astype(np.int64)
    # Few distinct pairs: each is written once and reached through its code.
    codes, pairs = pd.factorize(done * (int(total.max(initial=0)) + 1) + total)
    width = int(total.max(initial=0)) + 1
    words = np.array([f"{p // width}/{p % width}" for p in pairs.tolist()] + [None], dtype=object)[:-1]
    return ctx.coded(words[codes] if len(words) else np.zeros(0, dtype=object), codes, words)


def _sum_family(quantity: str, label: str, unit: str, **names: str) -> None:
    """Register the sum, baseline, nadir and change metrics of one per-lesion quantity over the targets.

    The nadir is the smallest complete sum at an earlier timepoint, baseline included (E2009 §4.3.1);
    a timepoint whose targets were not all evaluated is never a nadir (E2009 "missing assessments").
    Changes from the nadir use the sum of the targets evaluated, so a partial sum can still show PD.
    """

    def available(ctx: Context) -> np.ndarray:
        evaluated, total = ctx.evaluated_targets(quantity)
        # No target evaluated is no sum at all (not 0, which would read as "-100 % from the nadir").
        return np.where(evaluated > 0, total, np.nan)

    def complete(ctx: Context) -> np.ndarray:
        counted = ctx.evaluated_targets(quantity)[0]
        return ctx.value("has_targets") & (counted == ctx.value("n_targets"))

    def total(ctx: Context) -> np.ndarray:
        return np.where(ctx.value(names["complete"]), ctx.value(names["available"]), np.nan)

    def baseline(ctx: Context) -> np.ndarray:
        return ctx.at_baseline(ctx.value(names["sum"]), "timepoint")

    def nadir(ctx: Context) -> np.ndarray:
        return ctx.prior_min(ctx.value(names["sum"]))

    def pct_baseline(ctx: Context) -> np.ndarray:
        return _pct(ctx.value(names["sum"]), ctx.value(names["baseline"]))

    def pct_nadir(ctx: Context) -> np.ndarray:
        return _pct(ctx.value(names["available"]), ctx.value(names["nadir"]))

    def change_nadir(ctx: Context) -> np.ndarray:
        return ctx.value(names["available"]) - ctx.value(names["nadir"])

    docs = {
        "available": (
            f"Sum of {label} over the targets evaluated at this timepoint ({unit}), even if some are missing; "
            "missing when none was evaluated.",
            available,
            "number",
            unit,
        ),
        "complete": (f"Every target has a {label} value at this timepoint.", complete, "bool", ""),
        "sum": (
            f"Sum of {label} over all targets ({unit}); missing if any target was not evaluated.",
            total,
            "number",
            unit,
        ),
        "baseline": (f"Sum of {label} at baseline ({unit}).", baseline, "number", unit),
        "nadir": (
            f"Nadir: smallest complete sum of {label} at an earlier timepoint, baseline included ({unit}).",
            nadir,
            "number",
            unit,
        ),
        "pct_baseline": (f"Per cent change of the sum of {label} from baseline (%).", pct_baseline, "number", "%"),
        "pct_nadir": (
            "Per cent change from the nadir, on the sum of the targets evaluated (%).",
            pct_nadir,
            "number",
            "%",
        ),
        "change_nadir": (
            f"Change from the nadir, on the sum of the targets evaluated ({unit}).",
            change_nadir,
            "number",
            unit,
        ),
    }
    needs = METRICS[quantity].params
    for key, (doc, func, vtype, u) in docs.items():
        METRICS[names[key]] = Metric(names[key], "timepoint", vtype, u, doc, needs, func)  # type: ignore[arg-type]


_sum_family(
    "lesion_mm",
    "diameters (longest diameter; short axis for nodes)",
    "mm",
    available="available_sum_mm",
    complete="all_targets_evaluated",
    sum="sum_mm",
    baseline="baseline_sum_mm",
    nadir="nadir_mm",
    pct_baseline="pct_from_baseline",
    pct_nadir="pct_from_nadir",
    change_nadir="mm_from_nadir",
)
_sum_family(
    "lesion_product_mm2",
    "bidimensional products (WHO)",
    "mm²",
    available="available_sum_products_mm2",
    complete="all_products_evaluated",
    sum="sum_products_mm2",
    baseline="baseline_sum_products_mm2",
    nadir="nadir_products_mm2",
    pct_baseline="pct_products_from_baseline",
    pct_nadir="pct_products_from_nadir",
    change_nadir="mm2_products_from_nadir",
)
_sum_family(
    "lesion_viable_mm",
    "viable-tumour diameters (mRECIST)",
    "mm",
    available="available_viable_sum_mm",
    complete="all_viable_evaluated",
    sum="viable_sum_mm",
    baseline="baseline_viable_sum_mm",
    nadir="nadir_viable_mm",
    pct_baseline="pct_viable_from_baseline",
    pct_nadir="pct_viable_from_nadir",
    change_nadir="mm_viable_from_nadir",
)
_sum_family(
    "lesion_viable_area_mm2",
    "viable-tumour areas (EASL)",
    "mm²",
    available="available_viable_area_mm2",
    complete="all_viable_areas_evaluated",
    sum="viable_area_mm2",
    baseline="baseline_viable_area_mm2",
    nadir="nadir_viable_area_mm2",
    pct_baseline="pct_viable_area_from_baseline",
    pct_nadir="pct_viable_area_from_nadir",
    change_nadir="mm2_viable_area_from_nadir",
)


@metric("timepoint", "number", "%", params=("too_small_default_mm",))
def pct_size_from_baseline(ctx: Context) -> np.ndarray:
    """Per cent change of the sum of diameters from baseline (Choi size), %."""
    return ctx.value("pct_from_baseline")


@metric("timepoint", "number", "%", params=("too_small_default_mm",))
def pct_size_from_nadir(ctx: Context) -> np.ndarray:
    """Per cent change of the sum of diameters from the nadir (Choi size, when growth is read from nadir), %."""
    return ctx.value("pct_from_nadir")


@metric("timepoint", "bool", params=("too_small_default_mm",))
def non_nodal_targets_all_disappeared(ctx: Context) -> np.ndarray:
    """Every non-nodal target measures 0 mm (disappeared) at this timepoint (RECIST 1.1 CR)."""
    non_nodal = ctx.value("is_target") & ~ctx.value("is_node")
    not_gone = non_nodal & ~(ctx.value("lesion_mm") == 0)
    return ctx.value("all_targets_evaluated") & (ctx.per_visit_count(not_gone) == 0)


@metric("timepoint", "bool", params=("too_small_default_mm", "node_normal_short_axis_mm"))
def all_nodes_normal(ctx: Context) -> np.ndarray:
    """Every lymph node reported, target or non-target, has a short axis below the normal limit (10 mm).

    A non-target node counts as normal when reported disappeared or measured below the limit (E2009 §4.3.1).
    """
    limit = float(ctx.param("node_normal_short_axis_mm"))
    node = ctx.value("is_node")
    target_abnormal = ctx.value("is_target") & node & ~(ctx.value("lesion_mm") < limit)
    nt_normal = ctx.value("is_disappeared") | (ctx.value("short_axis_mm") < limit)
    non_target_abnormal = (
        ctx.value("is_non_target") & node & ~nt_normal & ~ctx.equals(ctx.value("status"), "not_evaluated")
    )
    return ctx.per_visit_count(target_abnormal | non_target_abnormal) == 0


# ==================================================================================================
# Timepoint-level: non-target and new lesions
# ==================================================================================================


@metric("timepoint", "number")
def n_non_targets(ctx: Context) -> np.ndarray:
    """Number of non-target lesions recorded at baseline."""
    return _baseline_count(ctx, ctx.value("is_non_target"))


@metric("timepoint", "bool")
def has_non_targets(ctx: Context) -> np.ndarray:
    """The subject has non-target disease at baseline."""
    return ctx.value("n_non_targets") > 0


@metric("timepoint", "bool")
def any_non_target_progression(ctx: Context) -> np.ndarray:
    """A non-target lesion is reported with unequivocal progression (a reader's judgement, E2009 §4.3.3)."""
    hit = ctx.value("is_non_target") & ctx.equals(ctx.value("status"), "unequivocal_progression")
    return ctx.per_visit_count(hit) > 0


@metric("timepoint", "bool")
def any_non_target_not_evaluated(ctx: Context) -> np.ndarray:
    """A baseline non-target lesion is not evaluated, or not reported at all, at this timepoint."""
    nt = ctx.value("is_non_target")
    reported = ctx.per_visit_count(nt & ~ctx.equals(ctx.value("status"), "not_evaluated"))
    return reported < ctx.value("n_non_targets")


@metric("timepoint", "bool", params=("node_normal_short_axis_mm",))
def all_non_targets_absent(ctx: Context) -> np.ndarray:
    """Every baseline non-target lesion has disappeared; a node counts as absent below the normal limit."""
    limit = float(ctx.param("node_normal_short_axis_mm"))
    gone = ctx.value("is_disappeared") | (ctx.value("is_node") & (ctx.value("short_axis_mm") < limit))
    absent = ctx.per_visit_count(ctx.value("is_non_target") & gone)
    return absent == ctx.value("n_non_targets")


@metric("timepoint", "bool")
def markers_above_normal(ctx: Context) -> np.ndarray:
    """Tumour markers above normal (not reported = normal, REFERENCE §1.5)."""
    return _yes(ctx.value("tumor_markers_above_normal"))


@metric("timepoint", "bool", params=("node_normal_short_axis_mm",))
def any_new_lesion(ctx: Context) -> np.ndarray:
    """At least one unequivocal new lesion at this timepoint (see `new_lesion_unequivocal`)."""
    return ctx.per_visit_count(ctx.value("new_lesion_unequivocal")) > 0


@metric("timepoint", "bool", params=("node_normal_short_axis_mm",))
def any_new_lesion_confirmed_later(ctx: Context) -> np.ndarray:
    """An equivocal new lesion at this timepoint that a later scan confirms (PD dates back here, E2009 §4.3.2)."""
    return ctx.per_visit_count(ctx.value("new_lesion_confirmed_later")) > 0


@metric("timepoint", "bool", params=("node_normal_short_axis_mm",))
def any_unconfirmed_new_lesion(ctx: Context) -> np.ndarray:
    """An equivocal (or PET-only) new lesion at this timepoint that no later scan has confirmed (yet)."""
    pending = ctx.value("new_lesion_equivocal") & ~ctx.value("new_lesion_confirmed_later")
    return ctx.per_visit_count(pending) > 0


@metric("timepoint", "text", params=("node_normal_short_axis_mm",))
def backdated_new_lesions(ctx: Context) -> np.ndarray:
    """Ids of the equivocal new lesions at this timepoint that a later scan confirms, e.g. `NEW1, NEW2`."""
    return _ids_per_visit(ctx, ctx.value("new_lesion_confirmed_later"))


@metric("timepoint", "text", params=("node_normal_short_axis_mm",))
def new_lesion_confirmation(ctx: Context) -> np.ndarray:
    """The later timepoint(s) whose scan confirms this timepoint's equivocal new lesions, e.g. `FU2`."""
    confirmed = ctx.value("new_lesion_confirmed_later")
    return _text_per_visit(ctx, confirmed, ctx.value("new_lesion_confirmed_at"))


@metric("timepoint", "bool", params=("node_normal_short_axis_mm", "too_small_default_mm"))
def any_target_reappeared(ctx: Context) -> np.ndarray:
    """A target lesion that had gone is present again (see `reappeared`)."""
    return ctx.per_visit_count(ctx.value("reappeared") & ctx.value("is_target")) > 0


@metric("timepoint", "bool", params=("node_normal_short_axis_mm", "too_small_default_mm"))
def any_non_target_reappeared(ctx: Context) -> np.ndarray:
    """A non-target lesion that had gone is present again (see `reappeared`)."""
    return ctx.per_visit_count(ctx.value("reappeared") & ctx.value("is_non_target")) > 0


@metric("timepoint", "text", params=("node_normal_short_axis_mm", "too_small_default_mm"))
def reappeared_lesions(ctx: Context) -> np.ndarray:
    """Ids of the lesions present again after they had gone, e.g. `L1, NT2`."""
    return _ids_per_visit(ctx, ctx.value("reappeared"))


def _ids_per_visit(ctx: Context, mask: np.ndarray) -> np.ndarray:
    return _text_per_visit(ctx, mask, ctx.column("lesion", "lesion_id"))


def _text_per_visit(ctx: Context, mask: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The distinct texts of the lesion rows in `mask`, joined per visit in order (None where there are none)."""
    out = np.full(ctx.n["timepoint"], None, dtype=object)
    rows = np.flatnonzero(mask)
    if len(rows):
        frame = pd.DataFrame({"visit": ctx.lesion_visit[rows], "text": text[rows].astype(str)}).drop_duplicates()
        joined = frame.groupby("visit", sort=True)["text"].agg(", ".join)
        out[joined.index.to_numpy()] = joined.to_numpy(dtype=object)
    return out


@metric("timepoint", "bool", params=("node_normal_short_axis_mm",))
def any_equivocal_new_lesion(ctx: Context) -> np.ndarray:
    """At least one equivocal (or unconfirmed FDG-PET) new lesion at this timepoint."""
    return ctx.per_visit_count(ctx.value("new_lesion_equivocal")) > 0


@metric("timepoint", "bool", params=("too_small_default_mm", "node_normal_short_axis_mm"))
def all_lesions_disappeared(ctx: Context) -> np.ndarray:
    """Every target measures 0 mm (nodes below the normal limit) and every non-target is absent."""
    targets_gone = np.where(
        ctx.value("has_targets"), ctx.value("non_nodal_targets_all_disappeared") & ctx.value("all_nodes_normal"), True
    )
    non_targets_gone = np.where(ctx.value("has_non_targets"), ctx.value("all_non_targets_absent"), True)
    return targets_gone & non_targets_gone & (ctx.value("has_targets") | ctx.value("has_non_targets"))


# ==================================================================================================
# iRECIST: new lesions measured apart from the baseline sum, confirmation of progression (Seymour 2017)
# ==================================================================================================

_NEW_TARGET_PARAMS = (
    "measurable_min_mm",
    "measurable_slice_factor",
    "measurable_node_short_axis_mm",
    "max_new_lesion_targets",
    "max_new_lesion_targets_per_organ",
    "too_small_default_mm",
)


@metric("lesion", "bool", params=_NEW_TARGET_PARAMS)
def is_new_lesion_target(ctx: Context) -> np.ndarray:
    """iRECIST: a new lesion measured as a new-lesion target (NLT), fixed when it is first seen.

    `new_lesion_role: target` or `non_target` as the reader gave it; otherwise a new lesion measurable by RECIST 1.1
    when first seen (non-nodal longest diameter at least 10 mm or 2 x the slice thickness, node short axis at least
    15 mm) is a target, up to 5 in all and 2 per organ, in the order they appear (Seymour 2017, "new lesions")."""
    new = ctx.value("is_new")
    first_seen = new & ~ctx.earlier_any(new)
    role = ctx.value("new_lesion_role")
    node = ctx.value("is_node")
    slice_mm = np.nan_to_num(ctx.value("slice_thickness_mm"), nan=0.0)
    size_floor = np.maximum(
        float(ctx.param("measurable_min_mm")), float(ctx.param("measurable_slice_factor")) * slice_mm
    )
    measurable = np.where(
        node,
        ctx.value("short_axis_mm") >= float(ctx.param("measurable_node_short_axis_mm")),
        ctx.value("lesion_mm") >= size_floor,
    )
    explicit = first_seen & ctx.equals(role, "target")
    candidate = first_seen & pd.isna(role) & measurable
    chosen = explicit.copy()
    rows = np.flatnonzero(candidate)
    if len(rows):
        # Rows are in time order within a subject, so cumulative counts follow the order new lesions appear.
        keys = pd.DataFrame({"s": ctx.lesion_subject[rows], "o": ctx.text_keys(ctx.value("organ_group"), rows)})
        in_all = keys.groupby("s").cumcount().to_numpy()
        in_organ = keys.groupby(["s", "o"]).cumcount().to_numpy()
        fits = (in_all < int(ctx.param("max_new_lesion_targets"))) & (
            in_organ < int(ctx.param("max_new_lesion_targets_per_organ"))
        )
        chosen[rows[fits]] = True
    return new & np.isin(ctx.lesion_key, ctx.lesion_key[chosen])


@metric("timepoint", "number", "mm", params=_NEW_TARGET_PARAMS)
def new_lesion_target_sum_mm(ctx: Context) -> np.ndarray:
    """iRECIST: sum of diameters of the new-lesion targets (NLT) at this timepoint, kept apart from the baseline sum
    (mm; 0 when there is none)."""
    return ctx.per_visit_sum(ctx.value("lesion_mm"), ctx.value("is_new_lesion_target"))


@metric("timepoint", "number", "mm", params=_NEW_TARGET_PARAMS)
def new_lesion_target_nadir_mm(ctx: Context) -> np.ndarray:
    """iRECIST: smallest sum of the new-lesion targets at earlier timepoints that had any (mm; missing before the
    first new-lesion target). New-lesion targets progress by RECIST 1.1 from here (iFAQ)."""
    has_targets = ctx.per_visit_count(ctx.value("is_new_lesion_target")) > 0
    return ctx.prior_min(np.where(has_targets, ctx.value("new_lesion_target_sum_mm"), np.nan))


@metric("timepoint", "bool", params=_NEW_TARGET_PARAMS)
def any_new_non_target_progression(ctx: Context) -> np.ndarray:
    """iRECIST: a new lesion followed as non-target is reported with unequivocal progression."""
    new_non_target = ctx.value("is_new") & ~ctx.value("is_new_lesion_target")
    return ctx.per_visit_count(new_non_target & ctx.equals(ctx.value("status"), "unequivocal_progression")) > 0


@metric("timepoint", "bool", params=("node_normal_short_axis_mm",))
def any_first_seen_new_lesion(ctx: Context) -> np.ndarray:
    """An unequivocal new lesion seen at this timepoint for the first time (iRECIST: "another new lesion")."""
    new = ctx.value("is_new")
    first_seen = new & ~ctx.earlier_any(new)
    return ctx.per_visit_count(first_seen & ctx.value("new_lesion_unequivocal")) > 0


@metric("timepoint", "bool", params=_NEW_TARGET_PARAMS)
def any_further_increase(ctx: Context) -> np.ndarray:
    """The reader records a further increase (`further_increase: true`) of a non-target or new non-target lesion
    (iRECIST confirms iUPD by any such increase; it need not be unequivocal)."""
    followed = ctx.value("is_non_target") | (ctx.value("is_new") & ~ctx.value("is_new_lesion_target"))
    return ctx.per_visit_count(followed & _yes(ctx.value("further_increase"))) > 0


@metric("timepoint", "number", "days")
def days_since_previous_scan(ctx: Context) -> np.ndarray:
    """Days since the subject's previous timepoint (the baseline for the first follow-up)."""
    day = ctx.prepared.visits["day"].to_numpy(dtype=float)
    previous = pd.Series(day).groupby(ctx.visit_subject).shift(1).to_numpy(dtype=float)
    return day - previous


@metric("timepoint", "number", "mm", params=("too_small_default_mm",))
def mm_from_previous_scan(ctx: Context) -> np.ndarray:
    """Change of the sum of the targets evaluated since the previous timepoint (mm)."""
    available = ctx.value("available_sum_mm")
    previous = pd.Series(available).groupby(ctx.visit_subject).shift(1).to_numpy(dtype=float)
    return available - previous


# ==================================================================================================
# Timepoint-level: attenuation (Choi, modified Choi)
# ==================================================================================================


@metric("timepoint", "number", "HU", params=("density_aggregation", "too_small_default_mm"))
def mean_hu(ctx: Context) -> np.ndarray:
    """Patient attenuation: mean of the target lesions' mean HU (portal-venous CT), lesions still present.

    `density_aggregation`: `mean_of_lesions` (arithmetic mean, the default; Choi 2007 does not say) or
    `volume_weighted` (weights = longest diameter cubed). A lesion that has disappeared has no density.
    Missing when no target is left or any present target lacks attenuation_hu.
    """
    present = ctx.value("is_target") & (ctx.value("lesion_mm") > 0)
    hu = ctx.value("attenuation_hu")
    if ctx.param("density_aggregation") == "volume_weighted":
        weight = np.where(present, ctx.value("lesion_mm") ** 3, 0.0)
    else:
        weight = present.astype(float)
    total_w = ctx.per_visit_sum(weight, present & ~np.isnan(hu))
    mean = ctx.per_visit_sum(hu * weight, present & ~np.isnan(hu))
    with np.errstate(invalid="ignore", divide="ignore"):
        result = mean / total_w
    complete = ctx.per_visit_count(present & np.isnan(hu)) == 0
    return np.where(complete & (total_w > 0), result, np.nan)


@metric("timepoint", "bool", params=("too_small_default_mm",))
def attenuation_missing(ctx: Context) -> np.ndarray:
    """A target lesion still present here or at baseline has no attenuation_hu."""
    present = ctx.value("is_target") & (ctx.value("lesion_mm") > 0)
    here = ctx.per_visit_count(present & np.isnan(ctx.value("attenuation_hu"))) > 0
    return here | ctx.at_baseline(here.astype(float), "timepoint").astype(bool)


@metric("timepoint", "number", "HU", params=("density_aggregation", "too_small_default_mm"))
def baseline_mean_hu(ctx: Context) -> np.ndarray:
    """Patient attenuation at baseline (HU)."""
    return ctx.at_baseline(ctx.value("mean_hu"), "timepoint")


@metric("timepoint", "number", "%", params=("density_aggregation", "too_small_default_mm"))
def pct_hu_from_baseline(ctx: Context) -> np.ndarray:
    """Per cent change of patient attenuation from baseline (Choi density), %."""
    return _pct(ctx.value("mean_hu"), ctx.value("baseline_mean_hu"))


@metric("timepoint", "bool")
def any_intratumoral_nodule(ctx: Context) -> np.ndarray:
    """A lesion shows a new or enlarging intratumoral nodule (Choi PD)."""
    nodule = ctx.value("intratumoral_nodule")
    return ctx.per_visit_count(ctx.equals(nodule, "new") | ctx.equals(nodule, "enlarging")) > 0


# ==================================================================================================
# Per-lesion WHO change, for the per-lesion PD option
# ==================================================================================================


@metric("lesion", "number", "%", params=("too_small_default_mm",))
def lesion_product_pct_from_baseline(ctx: Context) -> np.ndarray:
    """Per cent change of one lesion's bidimensional product from its baseline value (WHO), %."""
    product = ctx.value("lesion_product_mm2")
    return _pct(product, ctx.at_baseline(product, "lesion"))


@metric("lesion", "number", "%", params=("too_small_default_mm",))
def lesion_product_pct_from_nadir(ctx: Context) -> np.ndarray:
    """Per cent change of one lesion's product from its smallest earlier value, baseline included (WHO), %."""
    product = ctx.value("lesion_product_mm2")
    series = pd.Series(product)
    running = series.groupby(ctx.lesion_key).cummin().groupby(ctx.lesion_key).ffill()
    prior = running.groupby(ctx.lesion_key).shift(1).to_numpy(dtype=float)
    return _pct(product, prior)


@metric("timepoint", "number", "%", params=("too_small_default_mm",))
def max_lesion_product_pct_from_baseline(ctx: Context) -> np.ndarray:
    """Largest per-lesion product increase from baseline among the targets (WHO per-lesion PD), %."""
    return ctx.per_visit_reduce(ctx.value("lesion_product_pct_from_baseline"), ctx.value("is_target"), "max")


@metric("timepoint", "number", "%", params=("too_small_default_mm",))
def max_lesion_product_pct_from_nadir(ctx: Context) -> np.ndarray:
    """Largest per-lesion product increase from that lesion's nadir among the targets (WHO per-lesion PD), %."""
    return ctx.per_visit_reduce(ctx.value("lesion_product_pct_from_nadir"), ctx.value("is_target"), "max")


@metric("timepoint", "bool")
def no_viable_tumour(ctx: Context) -> np.ndarray:
    """No target shows viable (enhancing) tumour: every viable diameter is 0 mm (mRECIST / EASL CR)."""
    viable = ctx.value("lesion_viable_mm")
    left = ctx.value("is_target") & ~(viable == 0)
    return ctx.value("has_targets") & (ctx.per_visit_count(left) == 0)


# ==================================================================================================
# PET (PERCIST 1.0)
# ==================================================================================================


@metric("timepoint", "bool")
def pet_reported(ctx: Context) -> np.ndarray:
    """An FDG PET reading (SULpeak of the hottest lesion) is reported at this timepoint."""
    return ~np.isnan(ctx.value("sul_peak_hottest"))


@metric("timepoint", "number", "SUL", params=("measurable_liver_mean_factor", "measurable_liver_sd_factor"))
def measurable_threshold_sul(ctx: Context) -> np.ndarray:
    """PERCIST measurability threshold from the baseline liver: factor x liver SULmean + factor x SD (SUL)."""
    mean = ctx.at_baseline(ctx.value("liver_sul_mean"), "timepoint")
    sd = ctx.at_baseline(ctx.value("liver_sul_sd"), "timepoint")
    return float(ctx.param("measurable_liver_mean_factor")) * mean + float(ctx.param("measurable_liver_sd_factor")) * sd


@metric("timepoint", "number", "SUL")
def sul_peak(ctx: Context) -> np.ndarray:
    """SULpeak of the hottest lesion at this timepoint (SUL)."""
    return ctx.value("sul_peak_hottest")


@metric("timepoint", "number", "SUL")
def baseline_sul_peak(ctx: Context) -> np.ndarray:
    """SULpeak of the hottest lesion at baseline (SUL)."""
    return ctx.at_baseline(ctx.value("sul_peak_hottest"), "timepoint")


@metric("timepoint", "number", "%")
def pct_sul_from_baseline(ctx: Context) -> np.ndarray:
    """Per cent change of SULpeak from baseline (PERCIST), %."""
    return _pct(ctx.value("sul_peak"), ctx.value("baseline_sul_peak"))


@metric("timepoint", "number", "SUL")
def sul_change_from_baseline(ctx: Context) -> np.ndarray:
    """Absolute change of SULpeak from baseline (SUL units)."""
    return ctx.value("sul_peak") - ctx.value("baseline_sul_peak")


@metric("timepoint", "number", "%")
def pct_liver_sul_from_baseline(ctx: Context) -> np.ndarray:
    """Per cent change of the liver reference SULmean from baseline (PERCIST comparability), %."""
    return _pct(ctx.value("liver_sul_mean"), ctx.value(baseline_of("liver_sul_mean")))


# ==================================================================================================
# Ablation (Ahmed 2014 terminology)
# ==================================================================================================


@metric("lesion", "bool")
def is_post_ablation_study(ctx: Context) -> np.ndarray:
    """A follow-up row of an ablated lesion after the procedure day (default day 0)."""
    procedure = ctx.broadcast(np.nan_to_num(ctx.column("subject", "procedure_day"), nan=0.0), "subject", "lesion")
    day = ctx.prepared.lesions["day"].to_numpy(dtype=float)
    return ctx.value("is_ablated") & ~ctx.value("is_lesion_baseline") & (day > procedure)


@metric("lesion", "bool")
def is_first_post_ablation_study(ctx: Context) -> np.ndarray:
    """The first contrast study of an ablated lesion after the procedure (technique efficacy)."""
    post = ctx.value("is_post_ablation_study")
    return post & ~ctx.earlier_any(post)


@metric("lesion", "bool")
def ablation_incomplete(ctx: Context) -> np.ndarray:
    """Enhancing tissue at the ablation edge, or the ablation zone does not cover the tumour."""
    return _yes(ctx.value("enhancing_tissue_at_ablation_edge")) | (ctx.value("ablation_zone_covers_tumor") == 0)


@metric("lesion", "bool")
def ablation_reading_missing(ctx: Context) -> np.ndarray:
    """Neither ablation-zone coverage nor edge enhancement is reported for a post-ablation study."""
    return np.isnan(ctx.value("enhancing_tissue_at_ablation_edge")) & np.isnan(ctx.value("ablation_zone_covers_tumor"))


@metric("lesion", "bool")
def complete_ablation_documented_before(ctx: Context) -> np.ndarray:
    """An earlier post-ablation study of this lesion showed complete ablation (no viable tissue)."""
    complete = (
        ctx.value("is_post_ablation_study") & ~ctx.value("ablation_incomplete") & ~ctx.value("ablation_reading_missing")
    )
    return ctx.earlier_any(complete)


# ==================================================================================================
# Whole-organ measurements (toxicity)
# ==================================================================================================


@metric("timepoint", "number", "HU")
def liver_minus_spleen_hu(ctx: Context) -> np.ndarray:
    """Liver attenuation minus spleen attenuation (HU), same phase (Limanond 2004)."""
    return ctx.value("liver_attenuation_hu") - ctx.value("spleen_attenuation_hu")


@metric("timepoint", "number")
def liver_spleen_ratio(ctx: Context) -> np.ndarray:
    """Liver-to-spleen attenuation ratio (L/S), same phase (Zeb 2012)."""
    return _safe_ratio(ctx.value("liver_attenuation_hu"), ctx.value("spleen_attenuation_hu"))


def _safe_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, np.nan, a / b)


@metric("timepoint", "number", "mL")
def baseline_spleen_volume_ml(ctx: Context) -> np.ndarray:
    """Spleen volume at the pre-chemotherapy baseline (mL)."""
    return ctx.at_baseline(ctx.value("spleen_volume_ml"), "timepoint")


@metric("timepoint", "number", "%")
def spleen_pct_change(ctx: Context) -> np.ndarray:
    """Per cent change of spleen volume from the pre-chemotherapy baseline (%)."""
    return _pct(ctx.value("spleen_volume_ml"), ctx.value("baseline_spleen_volume_ml"))


@metric("timepoint", "bool")
def nodular_contour_new(ctx: Context) -> np.ndarray:
    """Nodular liver contour reported now and not at baseline (pseudocirrhosis sign)."""
    return _yes(ctx.value("liver_contour_nodular")) & ~_yes(ctx.value(baseline_of("liver_contour_nodular")))


@metric("timepoint", "bool")
def capsular_retraction_new(ctx: Context) -> np.ndarray:
    """Capsular retraction reported now and not at baseline (pseudocirrhosis sign)."""
    return _yes(ctx.value("capsular_retraction")) & ~_yes(ctx.value(baseline_of("capsular_retraction")))


@metric("subject", "text")
def regimen(ctx: Context) -> np.ndarray:
    """Treatment regimen as written in the case (free text)."""
    return ctx.column("subject", "regimen")


def metric_names_by_level() -> dict[Level, list[str]]:
    out: dict[Level, list[str]] = {"lesion": [], "timepoint": [], "subject": []}
    for name, m in METRICS.items():
        out[m.level].append(name)
    return out

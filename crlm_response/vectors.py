"""Values of the rule language as numpy columns: their types, truth, missingness and tolerant comparison.

Shared by the condition compiler (`conditions.py`) and the rule-language functions (`functions.py`), so that a
function compares and tests values exactly as a written condition does.

Numeric comparisons treat values within 1e-9 (relative) as equal. Measurements have at most a few decimals,
so this never changes a real decision, and it keeps exact thresholds exact: a sum that is 20 % above the
nadir on paper is 20 % above it here too, whatever binary floating point makes of 12.6 - 10.5.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

ValueType = Literal["number", "bool", "text", "list", "any"]
Evaluator = Callable[["Env"], Any]
RELATIVE_TOLERANCE = 1e-9


class Env(Protocol):
    """Values for the names of a compiled condition, as numpy arrays of one length or scalars."""

    n: int

    def get(self, name: Any) -> Any: ...


@dataclass(frozen=True)
class Compiled:
    evaluate: Evaluator
    type: ValueType


def tolerance(a: Any, b: Any) -> Any:
    with np.errstate(invalid="ignore"):
        column, other = (a, b) if isinstance(a, np.ndarray) else (b, a)
        if not isinstance(column, np.ndarray) or column.dtype != np.float64 or column.ndim == 0:
            return RELATIVE_TOLERANCE * np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
        # One new column, worked on in place: the same numbers (max is exact, in any grouping; NaN stays NaN).
        if np.ndim(other) == 0:
            bound = np.abs(column)
            np.maximum(bound, np.maximum(1.0, np.abs(other)), out=bound)
        else:
            bound = np.maximum(np.abs(a), np.abs(b))
            np.maximum(bound, 1.0, out=bound)
        bound *= RELATIVE_TOLERANCE
        return bound


def as_float(x: Any) -> Any:
    if isinstance(x, np.ndarray) and x.dtype == object:
        return pd.to_numeric(pd.Series(x, dtype=object), errors="coerce").to_numpy(dtype=float)
    return np.asarray(x, dtype=float) if isinstance(x, np.ndarray) else (np.nan if x is None else x)


def num_compare(op: ast.cmpop, a: Any, b: Any) -> Any:
    a = as_float(a)
    b = as_float(b)
    with np.errstate(invalid="ignore"):
        tol = tolerance(a, b)
        if isinstance(op, ast.GtE):
            return a >= _shifted(b, tol, np.subtract)
        if isinstance(op, ast.Gt):
            return a > _shifted(b, tol, np.add)
        if isinstance(op, ast.LtE):
            return a <= _shifted(b, tol, np.add)
        if isinstance(op, ast.Lt):
            return a < _shifted(b, tol, np.subtract)
        if isinstance(op, ast.Eq):
            return np.abs(a - b) <= tol
        if isinstance(op, ast.NotEq):
            return ~(np.abs(a - b) <= tol) & ~np.isnan(a) & ~np.isnan(b)
    raise AssertionError(op)


def _shifted(b: Any, tol: Any, shift: np.ufunc) -> Any:
    """b - tol or b + tol, written over `tol` when it is a column (a new one, made by `tolerance`)."""
    if isinstance(tol, np.ndarray) and tol.dtype == np.float64 and np.shape(b) in ((), tol.shape):
        return shift(b, tol, out=tol)
    return shift(b, tol)


def text_equal(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        result = np.asarray(a == b if isinstance(a, np.ndarray) else b == a)
        return result.astype(bool)
    return a == b


def truth(x: Any) -> Any:
    """Yes/no values are stored as 1.0 / 0.0 / NaN; NaN (not reported) is not true."""
    if isinstance(x, np.ndarray):
        if x.dtype == bool:
            return x
        if x.dtype == object:
            return np.asarray(x == True, dtype=bool)  # noqa: E712 - elementwise: True, 1 and 1.0 count
        return x == 1
    return bool(x is True or (x is not None and not (isinstance(x, float) and math.isnan(x)) and x == 1))


def is_known(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return ~pd.isna(x)
        if x.dtype.kind == "f":
            return ~np.isnan(x)
        return np.ones(x.shape, dtype=bool)
    return not (x is None or (isinstance(x, float) and math.isnan(x)))


def safe_divide(a: Any, b: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.divide(a, b)
    return np.where(np.asarray(b) == 0, np.nan, result)


# One rounding rule for every output (JSON, CSV, Parquet, reports, the terminal): two decimals, rounded by numpy
# (half to even on the scaled value), so `assess` and `batch` can never show one value two ways. Decisions are made
# on the unrounded values.
OUTPUT_DECIMALS = 2


def round_output(values: Any) -> Any:
    """`values` (an array, a pandas column or a number) as every output shows them."""
    return np.round(values, OUTPUT_DECIMALS)

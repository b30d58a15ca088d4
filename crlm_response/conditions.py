"""Rule conditions: small Python-like expressions, parsed with `ast`, checked, compiled to numpy.

A condition such as ``100 * (sum_mm - nadir_mm) >= pd_pct_from_nadir * nadir_mm and mm_from_nadir >= 5``
is parsed with Python's own parser but never executed by Python: only a closed set of node types is
accepted (comparisons, and/or/not, + - * /, numbers, quoted words, names from the rule vocabulary, and a few
named functions), every name is checked against the vocabulary when the rule file is loaded, and the tree
is compiled to vectorised numpy operations over whole metric columns.

The functions a condition may call are objects of `functions.py` (one per function); how values compare
(numbers within 1e-9 relative count as equal) is in `vectors.py`.
"""

from __future__ import annotations

import ast
import functools
import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConditionError
from .functions import FUNCTIONS, FunctionRef, Name, Vocabulary
from .vectors import (
    OUTPUT_DECIMALS,
    Compiled,
    Env,
    Evaluator,
    ValueType,
    as_float,
    is_known,
    num_compare,
    round_output,
    safe_divide,
    text_equal,
    truth,
)

__all__ = ["FUNCTIONS", "Compiled", "Condition", "Env", "ValueType", "Vocabulary", "compile_condition"]

MAX_CONDITION_LENGTH = 2000
MAX_CONDITION_NODES = 400
# Width and precision of `{name:8.2f}` in explanations: `{sum_mm:.50000000f}` would write 50 MB per row.
MAX_FORMAT_DIGITS = 20
# Python's format-spec mini-language: [[fill]align][sign][z][#][0][width][grouping][.precision][type].
_FORMAT_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>[0-9]+)?[,_]?(?:\.(?P<precision>[0-9]+))?[bcdeEfFgGnosxX%]?", re.S
)


class _Compiler:
    def __init__(self, vocabulary: Vocabulary, where: str, source: str) -> None:
        self.vocabulary = vocabulary
        self.where = where
        self.source = source
        self.names: set[Name] = set()
        self.functions: set[str] = set()

    def fail(self, message: str, hint: str | None = None) -> ConditionError:
        return ConditionError(f"{message} in `{_short(self.source, 200)}`", key=self.where, hint=hint)

    def name(self, name: str) -> Compiled:
        vtype = self.vocabulary.type_of(name)
        if vtype is None:
            raise self.fail(f"unknown word `{name}`", hint=self.vocabulary.describe())
        self.names.add(name)
        return Compiled(lambda env: env.get(name), vtype)

    def compile(self, node: ast.AST) -> Compiled:
        method = getattr(self, "node_" + type(node).__name__, None)
        if method is None:
            raise self.fail(
                f"`{ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__}` is not allowed",
                hint="conditions use names, numbers, 'words', comparisons, and/or/not, "
                "+ - * /, and the functions " + ", ".join(FUNCTIONS),
            )
        result: Compiled = method(node)
        return result

    def node_Expression(self, node: ast.Expression) -> Compiled:
        return self.compile(node.body)

    def node_Constant(self, node: ast.Constant) -> Compiled:
        value = node.value
        if isinstance(value, bool):
            return Compiled(lambda env: value, "bool")
        if isinstance(value, int | float):
            number = self.finite_number(value, node)
            return Compiled(lambda env: number, "number")
        if isinstance(value, str):
            return Compiled(lambda env: value, "text")
        if value is None:
            return Compiled(lambda env: None, "any")
        raise self.fail(f"constant {value!r} is not allowed")

    def finite_number(self, value: int | float, node: ast.AST) -> float:
        """A numeric literal as the float it is compared as; one no float can hold is refused here, at load,
        not when the first row is scored (an OverflowError) or silently (`1e999` is infinity)."""
        shown = _short(ast.get_source_segment(self.source, node) or repr(value))
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self.fail(
                f"the number `{shown}` is too large: numbers must be finite and at most about 1.8e308",
                hint="use a threshold a measurement can reach",
            )
        return number

    def node_Name(self, node: ast.Name) -> Compiled:
        if node.id in ("true", "false"):
            return Compiled(lambda env: node.id == "true", "bool")
        return self.name(node.id)

    def node_Subscript(self, node: ast.Subscript) -> Compiled:
        if (
            not isinstance(node.value, ast.Name)
            or not isinstance(node.slice, ast.Constant)
            or not isinstance(node.slice.value, int)
        ):
            raise self.fail("only a parameter list indexed by a number (`name[0]`) is allowed")
        inner = self.name(node.value.id)
        if inner.type != "list":
            raise self.fail(f"`{node.value.id}` is not a list")
        index = node.slice.value
        length = self.vocabulary.list_length(node.value.id)
        if length is not None and not 0 <= index < length:
            raise self.fail(
                f"`{ast.unparse(node)}` is out of range: `{node.value.id}` holds {length} value(s)",
                hint=f"use an index from 0 to {length - 1}" if length else None,
            )
        return Compiled(lambda env: float(inner.evaluate(env)[index]), "number")

    def node_UnaryOp(self, node: ast.UnaryOp) -> Compiled:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.Not):
            self.expect(operand, "bool", node.operand)
            return Compiled(lambda env: np.logical_not(truth(operand.evaluate(env))), "bool")
        if isinstance(node.op, ast.USub | ast.UAdd):
            self.expect(operand, "number", node.operand)
            sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
            return Compiled(lambda env: sign * as_float(operand.evaluate(env)), "number")
        raise self.fail("this operator is not allowed")

    def node_BoolOp(self, node: ast.BoolOp) -> Compiled:
        parts = [self.compile(v) for v in node.values]
        for part, value in zip(parts, node.values, strict=True):
            self.expect(part, "bool", value)
        both = isinstance(node.op, ast.And)
        combine = np.logical_and if both else np.logical_or

        def evaluate(env: Env, _parts: list[Compiled] = parts) -> Any:
            result = truth(_parts[0].evaluate(env))
            for k, part in enumerate(_parts[1:], 1):
                rows = few_rows(env, result) if both else None
                if rows is not None:  # the rest only matters where the parts so far hold
                    return on_rows(env, rows, functools.partial(evaluate, _parts=_parts[k:]))
                result = combine(result, truth(part.evaluate(env)))
            return result

        return Compiled(evaluate, "bool")

    def node_BinOp(self, node: ast.BinOp) -> Compiled:
        left, right = self.compile(node.left), self.compile(node.right)
        self.expect(left, "number", node.left)
        self.expect(right, "number", node.right)
        ops: dict[type, Callable[[Any, Any], Any]] = {
            ast.Add: np.add,
            ast.Sub: np.subtract,
            ast.Mult: np.multiply,
            ast.Div: safe_divide,
        }
        fn = ops.get(type(node.op))
        if fn is None:
            raise self.fail("only + - * / are allowed")

        def evaluate(env: Env, _l: Evaluator = left.evaluate, _r: Evaluator = right.evaluate) -> Any:
            with np.errstate(invalid="ignore", over="ignore"):
                return fn(as_float(_l(env)), as_float(_r(env)))

        return Compiled(evaluate, "number")

    def node_Compare(self, node: ast.Compare) -> Compiled:
        left = self.compile(node.left)
        steps: list[Evaluator] = []
        current = left
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right_node, ast.Tuple | ast.List):
                    raise self.fail("`in` needs a literal list, e.g. target in ('CR', 'PR')")
                options = [self.compile(e) for e in right_node.elts]
                if any(not isinstance(e, ast.Constant) for e in right_node.elts):
                    raise self.fail("`in` lists hold only constants")
                values = [e.value for e in right_node.elts if isinstance(e, ast.Constant)]
                steps.append(self._membership(current, values, isinstance(op, ast.NotIn)))
                current = options[0] if options else current
                continue
            right = self.compile(right_node)
            steps.append(self._comparison(op, current, right, node))
            current = right

        def evaluate(env: Env, _steps: list[Evaluator] = steps) -> Any:
            result = _steps[0](env)
            for step in _steps[1:]:
                result = np.logical_and(result, step(env))
            return result

        return Compiled(evaluate, "bool")

    def _membership(self, left: Compiled, values: list[Any], negate: bool) -> Evaluator:
        numeric = left.type in ("number", "bool")

        def evaluate(env: Env, _l: Evaluator = left.evaluate) -> Any:
            x = _l(env)
            hit: Any = False
            for value in values:
                if numeric and isinstance(value, int | float):
                    hit = np.logical_or(hit, num_compare(ast.Eq(), x, float(value)))
                else:
                    hit = np.logical_or(hit, _text_equal(env, x, value))
            if negate:
                return np.logical_and(np.logical_not(hit), is_known(x))
            return hit

        return evaluate

    def _comparison(self, op: ast.cmpop, left: Compiled, right: Compiled, node: ast.AST) -> Evaluator:
        types = {left.type, right.type} - {"any"}
        if isinstance(op, ast.Eq | ast.NotEq):
            if types <= {"number", "bool"} and types:
                return lambda env: num_compare(op, left.evaluate(env), right.evaluate(env))
            if len(types) > 1:
                raise self.fail(f"cannot compare a {left.type} with a {right.type}")
            if isinstance(op, ast.Eq):
                return lambda env: _text_equal(env, left.evaluate(env), right.evaluate(env))
            return lambda env: np.logical_and(
                np.logical_not(_text_equal(env, left.evaluate(env), right.evaluate(env))), is_known(left.evaluate(env))
            )
        if not types <= {"number"}:
            raise self.fail(f"`{ast.unparse(node)}` orders values that are not numbers")
        return lambda env: num_compare(op, left.evaluate(env), right.evaluate(env))

    def node_Call(self, node: ast.Call) -> Compiled:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise self.fail(
                f"`{ast.unparse(node.func)}` is not a known function", hint="functions: " + ", ".join(FUNCTIONS)
            )
        if node.keywords:
            raise self.fail("functions take positional arguments only")
        self.functions.add(node.func.id)
        return FUNCTIONS[node.func.id].compile_call(self, node)

    def reference(self, ref: FunctionRef) -> Compiled:
        """A value function's column (`baseline(x)` ...), checked against the vocabulary like a name."""
        vtype = self.vocabulary.type_of(ref)
        if vtype is None:
            raise self.fail(f"unknown word `{ref}`", hint=self.vocabulary.describe())
        self.names.add(ref)
        return Compiled(lambda env: env.get(ref), vtype)

    def expect(self, compiled: Compiled, wanted: ValueType, node: ast.AST) -> None:
        if compiled.type in (wanted, "any"):
            return
        if wanted == "number" and compiled.type == "bool":
            return
        text = ast.unparse(node) if isinstance(node, ast.expr) else "?"
        hint = "compare it, e.g. `x > 0` or `x == 'CR'`" if wanted == "bool" else None
        raise self.fail(f"`{text}` is a {compiled.type}, but a {wanted} is needed here", hint=hint)


def few_rows(env: Env, mask: Any) -> np.ndarray | None:
    """The rows of a yes/no column that hold, when they are at most half of the rows and the environment can be
    narrowed to them (`env.subset`); else None."""
    if getattr(env, "subset", None) is None or not isinstance(mask, np.ndarray) or mask.dtype != bool:
        return None
    if mask.shape != (env.n,) or np.count_nonzero(mask) * 2 > env.n:
        return None
    return np.flatnonzero(mask)


def on_rows(env: Env, rows: np.ndarray, evaluate: Callable[[Env], Any]) -> np.ndarray:
    """A yes/no condition worked out on `rows` only (false elsewhere). Every operation of the language is row by
    row, so each of those rows gets the answer it would get among all rows."""
    out = np.zeros(env.n, dtype=bool)
    out[rows] = truth(evaluate(env.subset(rows)))  # type: ignore[attr-defined]
    return out


def _text_equal(env: Env, a: Any, b: Any) -> Any:
    """Text equality, through the environment when it can compare codes instead of strings (the scoring context)."""
    equal = getattr(env, "text_equal", None)
    return equal(a, b) if equal is not None else text_equal(a, b)


@dataclass(frozen=True)
class Condition:
    """A compiled, vocabulary-checked condition. Call `evaluate(env)` for a boolean array of length env.n."""

    source: str
    names: frozenset[Name]  # vocabulary names and value-function calls it reads
    _compiled: Compiled
    functions: frozenset[str] = frozenset()  # the functions it calls

    def evaluate(self, env: Env) -> np.ndarray:
        value = self._compiled.evaluate(env)
        result = np.asarray(truth(value) if self._compiled.type != "bool" else value)
        if result.dtype != bool:
            result = truth(result) if result.dtype != object else np.array([bool(v) for v in result])
        return np.broadcast_to(np.asarray(result, dtype=bool), (env.n,)).copy()


def compile_condition(source: str, vocabulary: Vocabulary, where: str) -> Condition:
    """Parse and check a condition; raise ConditionError naming `where` and the offending word."""
    if not isinstance(source, str):
        if isinstance(source, bool):
            source = "true" if source else "false"
        else:
            raise ConditionError(f"a condition must be text, not {type(source).__name__}", key=where)
    text = " ".join(source.split())  # folded YAML keeps line breaks; they mean nothing here
    if not text:
        raise ConditionError("empty condition", key=where)
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError(f"condition longer than {MAX_CONDITION_LENGTH} characters", key=where)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConditionError(
            f"cannot parse `{text}`: {exc.msg}",
            key=where,
            hint="write e.g. `pct_from_baseline <= -30 and not new_lesions`",
        ) from None
    if sum(1 for _ in ast.walk(tree)) > MAX_CONDITION_NODES:
        raise ConditionError(f"condition has more than {MAX_CONDITION_NODES} parts", key=where)
    compiler = _Compiler(vocabulary, where, text)
    compiled = compiler.compile(tree)
    if compiled.type not in ("bool", "any"):
        raise ConditionError(
            f"`{text}` is a {compiled.type}, not a yes/no condition", key=where, hint="compare it, e.g. `sum_mm > 0`"
        )
    return Condition(text, frozenset(compiler.names), compiled, frozenset(compiler.functions))


# --------------------------------------------------------------------------------------------------
# Explanation templates: "sum {sum_mm} mm, {pct_from_baseline}% from baseline {baseline_sum_mm} mm".
# --------------------------------------------------------------------------------------------------


def format_value(value: Any, spec: str = "") -> str:
    """Numbers with at most two decimals (no trailing zeros), yes/no for booleans, n/a for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        if spec:
            return format(number, spec)
        text = f"{float(round_output(number)):.{OUTPUT_DECIMALS}f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    return str(value)


def format_values(values: Any, n: int, spec: str = "") -> pd.Series:
    """`format_value` for a whole column at once (same text, vectorised)."""
    if n == 0:
        return pd.Series([], dtype=object)
    if not isinstance(values, np.ndarray):
        return pd.Series([format_value(values, spec)] * n, dtype=object)
    if values.dtype == bool:
        return pd.Series(np.where(values, "yes", "no"), dtype=object)
    if values.dtype.kind in "fiu" and not spec:
        numbers = values.astype(float)
        text = pd.Series(round_output(numbers), dtype=float).map(f"{{:.{OUTPUT_DECIMALS}f}}".format).astype(object)
        text = text.str.rstrip("0").str.rstrip(".").replace("-0", "0")
        return text.where(~np.isnan(numbers), "n/a").astype(object)
    return pd.Series([format_value(v, spec) for v in values], dtype=object)


@dataclass(frozen=True)
class Template:
    """An explanation text with `{name}` fields from the vocabulary (no attribute or index access)."""

    source: str
    fields: tuple[tuple[str, str], ...]

    def render(self, values: Mapping[str, Any]) -> str:
        out: list[str] = []
        for literal, name, spec, _conv in string.Formatter().parse(self.source):
            out.append(literal)
            if name is not None:
                out.append(format_value(values.get(name), spec or ""))
        return "".join(out)

    def render_many(self, columns: Mapping[str, Any], n: int) -> np.ndarray:
        """Render for n rows at once; `columns` maps each field to an array of n values (or a scalar)."""
        out = pd.Series([""] * n, dtype=object)
        for literal, name, spec, _conv in string.Formatter().parse(self.source):
            if literal:
                out = out + literal
            if name is not None:
                out = out + format_values(columns.get(name), n, spec or "")
        return out.to_numpy(dtype=object)


def compile_template(source: str, vocabulary: Vocabulary, where: str) -> Template:
    source = " ".join(source.split())  # folded YAML text keeps no stray newlines
    fields: list[tuple[str, str]] = []
    try:
        parsed = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise ConditionError(
            f"bad explanation text: {exc}", key=where, hint="use {name} for values, {{ for a brace"
        ) from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if conversion or not name.isidentifier():
            raise ConditionError(
                f"`{{{name}}}` is not allowed in an explanation", key=where, hint="use plain names such as {sum_mm}"
            )
        if vocabulary.type_of(name) is None:
            raise ConditionError(f"unknown word `{name}` in explanation", key=where, hint=vocabulary.describe())
        if spec:
            _check_format_spec(spec, name, where)
        fields.append((name, spec or ""))
    return Template(source, tuple(fields))


def _check_format_spec(spec: str, name: str, where: str) -> None:
    """A number format must be valid and short: its width and precision are capped before anything is formatted."""
    parts = _FORMAT_SPEC.fullmatch(spec)
    for part in ("width", "precision"):
        digits = parts.group(part) if parts is not None else None
        if digits is not None and (len(digits.lstrip("0")) > 3 or int(digits) > MAX_FORMAT_DIGITS):
            raise ConditionError(
                f"number format `{_short(spec)}` for {name}: {part} {_short(digits)} is above the limit of "
                f"{MAX_FORMAT_DIGITS}",
                key=where,
                hint=f"write e.g. {{{name}:.1f}}",
            )
    try:
        format(1.5, spec)
    except ValueError:
        raise ConditionError(f"bad number format `{_short(spec)}` for {name}", key=where) from None


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else f"{text[: limit - 4]}... ({len(text)} characters)"


def constant_names(vocabulary_names: Mapping[str, Any]) -> dict[str, ValueType]:
    """Types of parameter values, for the vocabulary."""
    out: dict[str, ValueType] = {}
    for name, value in vocabulary_names.items():
        if isinstance(value, bool):
            out[name] = "bool"
        elif isinstance(value, int | float):
            out[name] = "number"
        elif isinstance(value, list):
            out[name] = "list"
        else:
            out[name] = "text"
    return out

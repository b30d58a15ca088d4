"""The functions of the rule language: one registered object per function.

Each object holds everything about its function: the name written in conditions, its arguments, how a call
compiles, how the rule vocabulary checks it, how it is evaluated and the line that explains it (in `rules
metrics`, `rules show` and the hints of error messages). A new function is one new object and one `register`
line here; the condition compiler, the vocabulary and the scoring context ask these objects and know no
function by name.

Three kinds:

* **Column functions** (`known`, `abs`, `min`, `at_least` ...) compile to numpy over their arguments' columns.
* **Value functions** (`baseline(x)`, `has_agent('x')`) stand for a column the scoring context computes. A
  condition refers to such a value by a `FunctionRef` (the function and its arguments); the vocabulary asks
  the function whether the reference is valid (`type_in`), the context asks it for the values (`value`).
* **History functions** (`recorded_before(overall, 'CR')` ...) are value functions that read an output of the
  set at the subject's earlier timepoints. They may name an output decided later in the rule file, because
  they only look back in time: they read the *previous pass* over the decisions, and the engine repeats the
  passes until what they read no longer changes (`engine.score`). A new one declares its arguments and
  implements `read`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import pandas as pd

from .bor import BorSettings, confirmations, role_codes
from .errors import ConditionError
from .roles import ResponseScale
from .vectors import Compiled, Env, ValueType, as_float, is_known, num_compare, truth

# An argument as written: a vocabulary name (`sum_mm`), an output of the set read at earlier timepoints
# (`overall`, checked by the function, not as a name in scope), a quoted category of the output before it
# (`'CR'`), or quoted text (`'oxaliplatin'`).
ArgumentKind = Literal["name", "output", "word", "text"]


@dataclass(frozen=True)
class DeclaredOutput:
    """An output as the rule file declares it (what history functions may read)."""

    level: str
    categories: tuple[str, ...] | None


class Vocabulary(Protocol):
    """What names a condition may use, and their types."""

    @property
    def level(self) -> str: ...

    def type_of(self, name: Name) -> ValueType | None: ...

    def list_length(self, name: str) -> int | None:
        """How many values the list `name` holds (None: not a list, or unknown)."""
        ...

    def declared_output(self, name: str) -> DeclaredOutput | None:
        """An output of the rule set, wherever the file declares it (None: no such output)."""
        ...

    def describe(self) -> str: ...


class CallCompiler(Protocol):
    """What the condition compiler offers a function while it compiles a call."""

    @property
    def vocabulary(self) -> Vocabulary: ...

    def fail(self, message: str, hint: str | None = None) -> ConditionError: ...

    def compile(self, node: ast.AST) -> Compiled: ...

    def name(self, name: str) -> Compiled: ...

    def reference(self, ref: FunctionRef) -> Compiled: ...

    def expect(self, compiled: Compiled, wanted: ValueType, node: ast.AST) -> None: ...


class Scoring(Protocol):
    """What value functions read from the scoring context (`metrics.Context`)."""

    n: dict[str, int]
    params: Mapping[str, Any]
    scale: ResponseScale | None
    prepared: Any
    visit_subject: np.ndarray
    visit_is_baseline: np.ndarray
    previous_outputs: dict[str, np.ndarray] | None
    history_used: dict[FunctionRef, np.ndarray]

    def value(self, name: Name) -> np.ndarray: ...

    def level_of(self, name: Name) -> Any: ...

    def at_baseline(self, values: np.ndarray, level: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class FunctionRef:
    """A call of a value function, e.g. `baseline(sum_mm)`: the function object and its arguments."""

    function: ValueFunction
    args: tuple[str, ...]

    def __str__(self) -> str:
        return self.function.label(self.args)


Name = str | FunctionRef


class Function:
    """One function of the rule language."""

    name: str
    help: str  # one line: the call, then what it gives

    def compile_call(self, c: CallCompiler, node: ast.Call) -> Compiled:
        raise NotImplementedError


FUNCTIONS: dict[str, Function] = {}
F = TypeVar("F", bound=Function)


def register(function: F) -> F:
    """Add a function to the language; messages list the functions in the order they are registered."""
    FUNCTIONS[function.name] = function
    return function


def function_help() -> list[str]:
    return [f.help for f in FUNCTIONS.values()]


# --------------------------------------------------------------------------------------------------
# Column functions
# --------------------------------------------------------------------------------------------------


class ColumnFunction(Function):
    """Compiled to numpy over the columns of its arguments (each argument is any expression)."""

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help

    def compile_call(self, c: CallCompiler, node: ast.Call) -> Compiled:
        return self.build(c, [c.compile(a) for a in node.args], node.args)

    def build(self, c: CallCompiler, args: list[Compiled], nodes: list[ast.expr]) -> Compiled:
        raise NotImplementedError


class Known(ColumnFunction):
    """`known(x)` / `missing(x)`: whether a value is reported."""

    def __init__(self, name: str, help: str, want: bool) -> None:
        super().__init__(name, help)
        self.want = want

    def build(self, c: CallCompiler, args: list[Compiled], nodes: list[ast.expr]) -> Compiled:
        if len(args) != 1:
            raise c.fail(f"{self.name}() takes one argument")
        arg, want = args[0], self.want
        return Compiled(lambda env: is_known(arg.evaluate(env)) == want, "bool")


class Abs(ColumnFunction):
    def build(self, c: CallCompiler, args: list[Compiled], nodes: list[ast.expr]) -> Compiled:
        if len(args) != 1:
            raise c.fail("abs() takes one argument")
        c.expect(args[0], "number", nodes[0])
        arg = args[0]
        return Compiled(lambda env: np.abs(as_float(arg.evaluate(env))), "number")


class Extreme(ColumnFunction):
    """`min(...)` / `max(...)` of two or more numbers; a missing value is ignored (fmin / fmax)."""

    def __init__(self, name: str, help: str, reduce: Callable[[Any, Any], Any]) -> None:
        super().__init__(name, help)
        self.reduce = reduce

    def build(self, c: CallCompiler, args: list[Compiled], nodes: list[ast.expr]) -> Compiled:
        if len(args) < 2:
            raise c.fail(f"{self.name}() takes two or more arguments")
        for arg, node in zip(args, nodes, strict=True):
            c.expect(arg, "number", node)
        reduce = self.reduce

        def evaluate(env: Env) -> Any:
            result = as_float(args[0].evaluate(env))
            for arg in args[1:]:
                result = reduce(result, as_float(arg.evaluate(env)))
            return result

        return Compiled(evaluate, "number")


class Bound(ColumnFunction):
    """`at_least(x, t, inclusive)` / `at_most(...)`: a threshold whose inclusiveness is a parameter."""

    def __init__(self, name: str, help: str, strict_op: ast.cmpop, loose_op: ast.cmpop) -> None:
        super().__init__(name, help)
        self.strict_op, self.loose_op = strict_op, loose_op

    def build(self, c: CallCompiler, args: list[Compiled], nodes: list[ast.expr]) -> Compiled:
        if len(args) != 3:
            raise c.fail(f"{self.name}() takes three arguments: value, threshold, inclusive")
        wanted: tuple[ValueType, ...] = ("number", "number", "bool")
        for arg, node, kind in zip(args, nodes, wanted, strict=True):
            c.expect(arg, kind, node)
        strict_op, loose_op = self.strict_op, self.loose_op

        def evaluate(env: Env) -> Any:
            x, t, inclusive = args[0].evaluate(env), args[1].evaluate(env), truth(args[2].evaluate(env))
            return np.where(inclusive, num_compare(loose_op, x, t), num_compare(strict_op, x, t))

        return Compiled(evaluate, "bool")


# --------------------------------------------------------------------------------------------------
# Value functions: columns the scoring context computes
# --------------------------------------------------------------------------------------------------


class ValueFunction(Function):
    """A function whose value the scoring context computes; a condition refers to it by a `FunctionRef`."""

    arguments: tuple[ArgumentKind, ...]
    usage: str  # the message when the arguments do not fit, with an example
    key: str  # how a reference reads in messages: `<key>:<arguments>`
    cached = True  # the context keeps the values for the rest of the run

    def compile_call(self, c: CallCompiler, node: ast.Call) -> Compiled:
        return c.reference(FunctionRef(self, self.read_arguments(c, node.args)))

    def read_arguments(self, c: CallCompiler, nodes: list[ast.expr]) -> tuple[str, ...]:
        if len(nodes) != len(self.arguments) or not all(
            _fits(kind, node) for kind, node in zip(self.arguments, nodes, strict=True)
        ):
            raise c.fail(self.usage)
        values = []
        for kind, node in zip(self.arguments, nodes, strict=True):
            if isinstance(node, ast.Name):
                if kind == "name":
                    c.name(node.id)  # checked and recorded like a name written on its own
                values.append(node.id)
            elif isinstance(node, ast.Constant):
                values.append(str(node.value))
        return tuple(values)

    def label(self, args: tuple[str, ...]) -> str:
        return ":".join((self.key, *args))

    def type_in(self, vocabulary: Vocabulary, ref: FunctionRef) -> ValueType | None:
        """The type of the value at the vocabulary's level (None: the call is not valid there)."""
        raise NotImplementedError

    def level(self, ctx: Scoring, ref: FunctionRef) -> Any:
        raise NotImplementedError

    def value(self, ctx: Scoring, ref: FunctionRef) -> np.ndarray:
        raise NotImplementedError

    def names_used(self, ref: FunctionRef) -> tuple[str, ...]:
        """Vocabulary names whose values the call reads (for the parameters a rule set must define)."""
        return tuple(a for a, kind in zip(ref.args, self.arguments, strict=True) if kind == "name")

    def outputs_read_before(self, ref: FunctionRef) -> tuple[str, ...]:
        """Outputs the call reads at earlier timepoints (only history functions do)."""
        return ()


def _fits(kind: ArgumentKind, node: ast.expr) -> bool:
    if kind in ("name", "output"):
        return isinstance(node, ast.Name)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


class Baseline(ValueFunction):
    name = "baseline"
    help = "baseline(name): the value of `name` at the subject's (or lesion's) baseline"
    arguments = ("name",)
    usage = "baseline() takes one name, e.g. baseline(spleen_volume_ml)"
    key = "baseline"

    def type_in(self, vocabulary: Vocabulary, ref: FunctionRef) -> ValueType | None:
        return vocabulary.type_of(ref.args[0])

    def level(self, ctx: Scoring, ref: FunctionRef) -> Any:
        return ctx.level_of(ref.args[0])

    def value(self, ctx: Scoring, ref: FunctionRef) -> np.ndarray:
        inner = ref.args[0]
        return ctx.at_baseline(ctx.value(inner), ctx.level_of(inner))


class HasAgent(ValueFunction):
    name = "has_agent"
    help = "has_agent('oxaliplatin'): the subject's treatment includes that agent"
    arguments = ("text",)
    usage = "has_agent() takes one quoted agent name, e.g. has_agent('oxaliplatin')"
    key = "agent"

    def read_arguments(self, c: CallCompiler, nodes: list[ast.expr]) -> tuple[str, ...]:
        return tuple(a.strip().lower() for a in super().read_arguments(c, nodes))

    def type_in(self, vocabulary: Vocabulary, ref: FunctionRef) -> ValueType | None:
        return "bool"

    def level(self, ctx: Scoring, ref: FunctionRef) -> Any:
        return "subject"

    def value(self, ctx: Scoring, ref: FunctionRef) -> np.ndarray:
        agents = ctx.prepared.subjects["agents"].fillna("").astype(str).to_numpy()
        return np.array([ref.args[0] in [a.strip() for a in text.split(";")] for text in agents], dtype=bool)


BASELINE = Baseline()


def baseline_of(name: str) -> FunctionRef:
    """`baseline(name)` as the context evaluates it (metrics use it too)."""
    return FunctionRef(BASELINE, (name,))


# --------------------------------------------------------------------------------------------------
# History functions: outputs at the subject's earlier timepoints
# --------------------------------------------------------------------------------------------------


class HistoryFunction(ValueFunction):
    """Reads outputs of the set at earlier timepoints, from the previous pass over the decisions.

    In the first pass nothing is known about earlier timepoints (`first_pass`: false everywhere). Every value
    read is recorded in the context, so the engine can tell whether another pass would read something else.
    """

    key = "history"
    cached = False  # each pass reads the pass before it

    def label(self, args: tuple[str, ...]) -> str:
        return ":".join((self.key, self.name, *args))

    def type_in(self, vocabulary: Vocabulary, ref: FunctionRef) -> ValueType | None:
        """Valid at the timepoint level, on timepoint-level outputs of the set (declared anywhere in the file),
        with words that are categories of the output before them."""
        if vocabulary.level != "timepoint":
            return None
        output: DeclaredOutput | None = None
        for kind, arg in zip(self.arguments, ref.args, strict=True):
            if kind == "output":
                output = vocabulary.declared_output(arg)
                if output is None or output.level != "timepoint":
                    return None
            elif kind == "word" and output is not None and output.categories is not None:
                if arg not in output.categories:
                    return None
        return self.result_type(vocabulary, ref)

    def result_type(self, vocabulary: Vocabulary, ref: FunctionRef) -> ValueType | None:
        return "bool"

    def level(self, ctx: Scoring, ref: FunctionRef) -> Any:
        return "timepoint"

    def outputs_read_before(self, ref: FunctionRef) -> tuple[str, ...]:
        return tuple(a for a, kind in zip(ref.args, self.arguments, strict=True) if kind == "output")

    def value(self, ctx: Scoring, ref: FunctionRef) -> np.ndarray:
        if ctx.previous_outputs is None:
            values = self.first_pass(ctx, ref)
        else:
            values = self.read(ctx, ref, ctx.previous_outputs)
        ctx.history_used[ref] = values
        return values

    def first_pass(self, ctx: Scoring, ref: FunctionRef) -> np.ndarray:
        return np.zeros(ctx.n["timepoint"], dtype=bool)

    def read(self, ctx: Scoring, ref: FunctionRef, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The values at every timepoint row, from `outputs` (one array per output read, all timepoint rows)."""
        raise NotImplementedError


def history_changed(ctx: Scoring, outputs: Mapping[str, np.ndarray]) -> bool:
    """Would the history functions of this pass read something else from `outputs` than they read?"""
    for ref, used in ctx.history_used.items():
        function = ref.function
        assert isinstance(function, HistoryFunction)
        if not pd.Series(function.read(ctx, ref, outputs)).equals(pd.Series(used)):
            return True
    return False


class _ResponseBefore(HistoryFunction):
    """An earlier timepoint of the subject had a given category of an output."""

    arguments = ("output", "word")

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self.usage = f"{name}() takes an output and a quoted response word, e.g. {name}(overall, 'CR')"

    def read(self, ctx: Scoring, ref: FunctionRef, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        output, word = ref.args
        subject = ctx.visit_subject
        hit = np.asarray(outputs[output] == word, dtype=bool) & ~ctx.visit_is_baseline
        first = np.full(ctx.n["subject"], np.iinfo(np.int64).max, dtype=np.int64)
        self.mark_first(ctx, hit, outputs[output], first)
        return np.arange(ctx.n["timepoint"]) > first[subject]

    def mark_first(self, ctx: Scoring, hit: np.ndarray, values: np.ndarray, first: np.ndarray) -> None:
        """Lower `first` (per subject) to the row from which the category counts as having happened."""
        rows = np.flatnonzero(hit)
        np.minimum.at(first, ctx.visit_subject[rows], rows)


class ConfirmedBefore(_ResponseBefore):
    """Counts from the visit that confirmed the response (the set's confirmation parameters and roles)."""

    def mark_first(self, ctx: Scoring, hit: np.ndarray, values: np.ndarray, first: np.ndarray) -> None:
        assert ctx.scale is not None, "confirmed_before needs the rule set's response scale"
        follow_rows = np.flatnonzero(~ctx.visit_is_baseline)  # visits are sorted by subject, day
        subject = ctx.visit_subject[follow_rows]
        day = ctx.prepared.visits["day"].to_numpy(dtype=float)[follow_rows]
        settings = BorSettings.from_params(dict(ctx.params))
        confirming = confirmations(subject, day, role_codes(values[follow_rows], ctx.scale), settings)
        ok = hit[follow_rows] & (confirming >= 0)
        np.minimum.at(first, subject[ok], follow_rows[confirming[ok]])


class Previous(HistoryFunction):
    """The subject's previous follow-up had a given category of an output (iRECIST: a pending iUPD)."""

    name = "previous"
    help = "previous(overall, 'iUPD'): the subject's previous follow-up timepoint had that response"
    arguments = ("output", "word")
    usage = "previous() takes an output and a quoted response word, e.g. previous(overall, 'iUPD')"

    def read(self, ctx: Scoring, ref: FunctionRef, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        output, word = ref.args
        hit = np.asarray(outputs[output] == word, dtype=bool) & ~ctx.visit_is_baseline
        return _previous_row_of_subject(ctx, hit)


class AtRunStart(HistoryFunction):
    """A value at the first timepoint of the run of a category that ends at the previous follow-up.

    iRECIST adds up increases within a run of iUPD timepoints (+4 mm then +2 mm is a further 6 mm, measured from
    the first iUPD of the run); missing where the previous follow-up is not in such a run."""

    name = "at_run_start"
    help = (
        "at_run_start(sum_mm, overall, 'iUPD'): the value at the first timepoint of the run of that response "
        "ending at the previous follow-up (missing otherwise)"
    )
    arguments = ("name", "output", "word")
    usage = (
        "at_run_start() takes a name, an output and a quoted response word, e.g. at_run_start(sum_mm, overall, 'iUPD')"
    )

    def result_type(self, vocabulary: Vocabulary, ref: FunctionRef) -> ValueType | None:
        return vocabulary.type_of(ref.args[0])

    def first_pass(self, ctx: Scoring, ref: FunctionRef) -> np.ndarray:
        return np.full(ctx.n["timepoint"], np.nan)

    def read(self, ctx: Scoring, ref: FunctionRef, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        name, output, word = ref.args
        values = np.asarray(ctx.value(name), dtype=float)
        subject = ctx.visit_subject
        rows = np.arange(ctx.n["timepoint"])
        hit = np.asarray(outputs[output] == word, dtype=bool) & ~ctx.visit_is_baseline
        same_as_before = np.r_[False, subject[1:] == subject[:-1]]
        continues = hit & np.r_[False, hit[:-1]] & same_as_before
        start = pd.Series(np.where(hit & ~continues, rows, np.nan)).ffill().to_numpy()
        start = np.where(hit, start, np.nan)
        previous_start = np.r_[np.nan, start[:-1]]
        out = np.full(len(rows), np.nan)
        ok = same_as_before & ~np.isnan(previous_start)
        out[ok] = values[previous_start[ok].astype(np.int64)]
        return out


def _previous_row_of_subject(ctx: Scoring, hit: np.ndarray) -> np.ndarray:
    """Per timepoint row: does the subject's previous follow-up row satisfy `hit`? (rows sorted by subject, day)"""
    subject = ctx.visit_subject
    same_as_before = np.r_[False, subject[1:] == subject[:-1]]
    return same_as_before & np.r_[False, hit[:-1]]


# --------------------------------------------------------------------------------------------------
# The language, in the order messages list it
# --------------------------------------------------------------------------------------------------

register(Known("known", "known(x): true where x is reported (not missing)", True))
register(Known("missing", "missing(x): true where x is not reported", False))
register(Abs("abs", "abs(x): absolute value"))
register(Extreme("min", "min(a, b, ...): smallest value, ignoring missing ones", np.fmin))
register(Extreme("max", "max(a, b, ...): largest value, ignoring missing ones", np.fmax))
register(Bound("at_least", "at_least(x, t, inclusive): x >= t if inclusive else x > t", ast.Gt(), ast.GtE()))
register(Bound("at_most", "at_most(x, t, inclusive): x <= t if inclusive else x < t", ast.Lt(), ast.LtE()))
register(BASELINE)
register(HasAgent())
register(
    _ResponseBefore(
        "recorded_before", "recorded_before(overall, 'CR'): an earlier timepoint of the subject had that response"
    )
)
register(
    ConfirmedBefore(
        "confirmed_before",
        "confirmed_before(overall, 'CR'): an earlier response of that role was confirmed by a timepoint before "
        "this one (the set's confirmation parameters)",
    )
)
register(Previous())
register(AtRunStart())

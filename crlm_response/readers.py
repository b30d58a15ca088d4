"""Reading inputs: case YAML files (trial tables are read by `trial.py`).

Only readers and writers touch files. Every problem becomes a `CrlmError` naming the file, the line and the
key, with what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import CaseError
from .models import Case
from .yamlio import LineMap, format_loc, line_of, load_yaml, parse_yaml


def _friendly(error: Any) -> str:
    kind = error.get("type", "")
    message = str(error.get("msg", "invalid value"))
    if kind == "extra_forbidden":
        return "unknown key (check its spelling; see the case schema in the README)"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        ctx = error.get("ctx") or {}
        expected = ctx.get("expected", "")
        return f"{error.get('input')!r} is not allowed; use one of {expected}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{error.get('input')!r}: {message.lower()}"
    if kind.endswith("_parsing") or kind.endswith("_type"):
        return f"{error.get('input')!r} is not valid: {message.lower()}"
    return message.removeprefix("Value error, ")


def case_from_data(data: Any, file: str, lines: LineMap | None = None) -> Case:
    """Validate already-parsed YAML data as a case; errors name the key and line."""
    lines = lines or {}
    if not isinstance(data, dict):
        what = (
            "the file holds a list; "
            if isinstance(data, list)
            else "the file holds only text; "
            if isinstance(data, str)
            else ""
        )
        raise CaseError(
            what + "a case file is a YAML mapping with case_id and timepoints",
            file=file,
            line=lines.get(()),
            hint="see sample_cases/ for examples",
        )
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        more = len(errors) - 1
        raise CaseError(
            _friendly(first),
            file=file,
            line=line_of(lines, loc),
            key=format_loc(loc) or None,
            hint=f"and {more} more problem(s)" if more else None,
        ) from None


def load_case_with_lines(path: str | Path) -> tuple[Case, LineMap]:
    data, lines = load_yaml(path)
    return case_from_data(data, str(path), lines), lines


def load_case(path: str | Path) -> Case:
    """Read one case file (YAML). Raises CaseError with file, line and key for any problem."""
    return load_case_with_lines(path)[0]


def parse_case(text: str, name: str = "<case>") -> Case:
    """Validate a case given as YAML text (for notebooks and tests)."""
    data, lines = parse_yaml(text, name)
    return case_from_data(data, name, lines)

"""Reading inputs: case YAML files (trial tables are read by `trial.py`).

Only readers and writers touch files. Every problem becomes a `CrlmError` naming the file, the line and the
key, with what is allowed.
"""

from __future__ import annotations

import datetime as dt
import functools
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ValidationError

from .errors import CaseError
from .models import Case
from .yamlio import LineMap, YamlDocument, format_loc, line_of, load_yaml_document, parse_yaml_document

WrittenText = dict[tuple[Any, ...], str]


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


# --------------------------------------------------------------------------------------------------
# Text fields keep the characters written. YAML reads a plain `case_id: 0012` as the number 12, `id: NO` as
# false and `location: 1.50` as 1.5; the loader keeps each such scalar's text, and every field the case
# schema types as text (ids, words, free text, dates) gets that text back before validation.
# --------------------------------------------------------------------------------------------------

TEXT = "text"
Shape = Any  # TEXT, {input key: Shape} for a model, or ("list", Shape)


def _is_text(annotation: Any) -> bool:
    if annotation in (str, dt.date):
        return True
    return typing.get_origin(annotation) is Literal and all(isinstance(a, str) for a in typing.get_args(annotation))


def _shape(annotation: Any) -> Shape | None:
    """Where text lives inside a value of this type (None: nowhere). A union is text only if all its types are."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _shape(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        shapes = [_shape(a) for a in members]
        if all(s == TEXT for s in shapes) or (len(shapes) == 1 and shapes[0] is not None):
            return shapes[0]
        return None
    if origin is list:
        inner = _shape(typing.get_args(annotation)[0])
        return ("list", inner) if inner is not None else None
    if _is_text(annotation):
        return TEXT
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model_shape(annotation)
    return None


@functools.cache
def _model_shape(model: type[BaseModel]) -> dict[str, Shape]:
    shape: dict[str, Shape] = {}
    for name, info in model.model_fields.items():
        inner = _shape(info.annotation)
        if inner is None:
            continue
        names = {name, info.alias} | set(
            info.validation_alias.choices if isinstance(info.validation_alias, AliasChoices) else []
        )
        shape.update({key: inner for key in names if isinstance(key, str)})
    return shape


def keep_written_text(value: Any, shape: Shape, written: WrittenText, path: tuple[Any, ...] = ()) -> Any:
    """`value` with every text field that YAML read as a number or yes/no replaced by the text as written."""
    if shape == TEXT:
        return written.get(path, value) if isinstance(value, bool | int | float) else value
    if isinstance(shape, tuple) and isinstance(value, list):
        return [keep_written_text(item, shape[1], written, path + (i,)) for i, item in enumerate(value)]
    if isinstance(shape, dict) and isinstance(value, dict):
        return {
            key: keep_written_text(item, shape[key], written, path + (key,)) if key in shape else item
            for key, item in value.items()
        }
    return value


def case_from_data(data: Any, file: str, lines: LineMap | None = None, written: WrittenText | None = None) -> Case:
    """Validate already-parsed YAML data as a case; errors name the key and line.

    `written` (from `YamlDocument`) gives text fields back the characters written; without it, `id: 0012` is 12."""
    lines = lines or {}
    if written:
        data = keep_written_text(data, _model_shape(Case), written)
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


def _case_from_document(document: YamlDocument, file: str) -> Case:
    return case_from_data(document.data, file, document.lines, document.written)


def load_case_with_lines(path: str | Path) -> tuple[Case, LineMap]:
    document = load_yaml_document(path)
    return _case_from_document(document, str(path)), document.lines


def load_case(path: str | Path) -> Case:
    """Read one case file (YAML). Raises CaseError with file, line and key for any problem."""
    return load_case_with_lines(path)[0]


def parse_case(text: str, name: str = "<case>") -> Case:
    """Validate a case given as YAML text (for notebooks and tests)."""
    return _case_from_document(parse_yaml_document(text, name), name)

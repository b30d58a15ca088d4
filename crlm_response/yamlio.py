"""Safe YAML reading with line numbers, for located error messages.

Only PyYAML's SafeLoader is used: tags such as `!!python/object` are refused. The node tree is walked once
with a budget, so a document built from nested aliases ("billion laughs") or absurd nesting is refused
quickly instead of exhausting memory when something later walks the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import CrlmError, not_utf8_message

MAX_YAML_BYTES = 20 * 1024 * 1024
MAX_YAML_NODES = 500_000
MAX_YAML_DEPTH = 64

LineMap = dict[tuple[Any, ...], int]


class YamlError(CrlmError):
    """A YAML file that cannot be read as YAML (syntax, encoding, size, unsafe tags)."""


def _decode(raw: bytes, file: str) -> str:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise YamlError(f"cannot decode UTF-16 text: {exc.reason}", file=file) from None
    if raw[:200].count(b"\x00") > len(raw[:200]) // 4:
        raise YamlError(
            "the file looks like UTF-16 text without a byte-order mark", file=file, hint="save the file as UTF-8"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        message, line = not_utf8_message(raw, exc)
        raise YamlError(
            message,
            file=file,
            line=line,
            hint="save the file as UTF-8",
        ) from None


def read_yaml_text(path: str | Path) -> str:
    """Read a YAML file as text, with clear errors for missing, huge or non-UTF-8 files."""
    file = str(path)
    p = Path(path)
    if not p.exists():
        raise YamlError("file not found", file=file)
    if p.is_dir():
        raise YamlError("is a folder, not a file", file=file)
    size = p.stat().st_size
    if size > MAX_YAML_BYTES:
        raise YamlError(
            f"file is {size / 1e6:.1f} MB; the limit for YAML input is {MAX_YAML_BYTES // 10**6} MB", file=file
        )
    return _decode(p.read_bytes(), file)


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text (pydantic parses and explains them) and keeps `no`/`yes` as
    booleans only where a yes/no is expected (pydantic refuses a boolean where a number is expected)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_FRIENDLY_PROBLEMS = (
    (
        "found character '\\t' that cannot start any token",
        "a tab character is used for indentation; indent with spaces",
    ),
    (
        "expected <block end>, but found",
        "this line is indented differently from the lines above it; keys of one item must start in the same column",
    ),
    (
        "mapping values are not allowed here",
        "a `key: value` is not allowed here (a missing space after ':' or a misplaced indentation?)",
    ),
    (
        "found unacceptable character",
        "the file holds a control character that YAML does not allow; delete it (it "
        "often comes from copy-paste out of a word processor)",
    ),
)


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[str, int | None]:
    problem = exc.problem or exc.context or "invalid YAML"
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    for pattern, friendly in _FRIENDLY_PROBLEMS:
        if pattern in problem:
            return friendly, line
    if exc.context and "flow" in exc.context and exc.context_mark is not None:
        opened = exc.context_mark.line + 1
        return f"the bracket opened on line {opened} is not closed ({problem} on line {line})", opened
    return problem, line


_CONTROL_NAMES = {0x00: "NUL", 0x08: "backspace", 0x0B: "vertical tab", 0x0C: "form feed", 0x1B: "escape"}


def _control_character(exc: yaml.reader.ReaderError, text: str, file: str) -> YamlError:
    line = text[: exc.position].count("\n") + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    name = _CONTROL_NAMES.get(code)
    label = f"U+{code:04X}" + (f" ({name})" if name else "")
    return YamlError(
        f"invalid YAML: control character {label} is not allowed; delete it (it often comes from "
        "copy-paste out of a word processor)",
        file=file,
        line=line,
    )


def parse_yaml(text: str, file: str = "<text>") -> tuple[Any, LineMap]:
    """Parse YAML text safely; return the data and a map from key path to 1-based line number."""
    if not text.strip():
        raise YamlError("the file is empty", file=file)
    loader = None
    try:
        _check_nesting(text, file)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            problem, line = _yaml_problem(exc)
            raise YamlError(f"invalid YAML: {problem}", file=file, line=line) from None
        except yaml.YAMLError as exc:
            raise YamlError(f"invalid YAML: {exc}", file=file) from None
        if node is None:
            raise YamlError("the file is empty", file=file)
        lines: LineMap = {}
        _walk(node, (), lines, file, [0])
        try:
            data = loader.construct_document(node)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            raise YamlError(
                f"unsupported YAML tag or value: {exc.problem}",
                file=file,
                line=mark.line + 1 if mark else None,
                hint="only plain YAML is read; tags such as !!python/object are refused",
            ) from None
        except (ValueError, OverflowError) as exc:
            raise YamlError(f"invalid YAML value: {exc}", file=file) from None
        return data, lines
    except yaml.reader.ReaderError as exc:
        raise _control_character(exc, text, file) from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_nesting(text: str, file: str) -> None:
    """Refuse deep nesting before PyYAML's composer, which recurses once per level and would exhaust Python's stack.

    The event parser keeps its own stack, so counting open collections over its events is safe at any depth."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    mark = event.start_mark
                    raise YamlError(
                        f"nesting deeper than {MAX_YAML_DEPTH} levels", file=file, line=mark.line + 1 if mark else None
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # a syntax error: the full parse that follows reports it with its line


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: LineMap, file: str, budget: list[int]) -> None:
    budget[0] += 1
    if budget[0] > MAX_YAML_NODES:
        raise YamlError(
            f"document expands to more than {MAX_YAML_NODES:,} values (nested aliases?)",
            file=file,
            hint="real case and rule files are far smaller; remove the anchors/aliases",
        )
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                raise YamlError(
                    f"key given twice (also on line {seen[key]}); keep one value",
                    file=file,
                    line=line,
                    key=format_loc(path + (key,)),
                )
            seen[key] = line
            lines.setdefault(path + (key,), line)
            _walk(value_node, path + (key,), lines, file, budget)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines, file, budget)


def load_yaml(path: str | Path) -> tuple[Any, LineMap]:
    """Read and parse one YAML file (see `parse_yaml`)."""
    return parse_yaml(read_yaml_text(path), str(path))


def line_of(lines: LineMap, loc: tuple[Any, ...]) -> int | None:
    """The line of the longest prefix of `loc` that the map knows."""
    for cut in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:cut]))
        if line is not None:
            return line
    return None


def format_loc(loc: tuple[Any, ...]) -> str:
    """`('timepoints', 1, 'lesions', 0, 'status')` -> `timepoints[1].lesions[0].status`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out

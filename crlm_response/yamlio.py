"""Safe YAML reading with line numbers, for located error messages.

Only PyYAML's safe loaders are used: tags such as `!!python/object` are refused. libyaml (PyYAML's C loader)
parses when PyYAML has it, about six times faster than pure Python on big case files; a document it refuses is
parsed again in pure Python so that the message and its line are the same either way.

Numbers are plain decimal numbers only: YAML 1.1 forms such as `0012` (octal), `0x1A`, `1:20` (base 60) and `1_000`
are text here, and `0012` is twelve (YAML 1.2). Every plain scalar read as a number or a yes/no keeps its written
text beside the data (`YamlDocument.written`), so a text field can take back `0012` or `NO` as typed.

The node tree is walked once with a budget, so a document built from nested aliases ("billion laughs"), an alias
inside the value it names, or absurd nesting is refused quickly instead of exhausting memory or the stack when
something later walks the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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


# YAML 1.1 reads `0012` as octal 10, `0x1A` as 26, `1:20` as 80 (base 60) and `1_000` as 1000. Nobody typing a
# day, a size or an id means that, so only plain decimal numbers are numbers here (`0012` is 12, as in YAML 1.2);
# the other forms stay text, which a number field then refuses and a text field keeps as written.
_DECIMAL_INT = re.compile(r"^[-+]?[0-9]+$")
_DECIMAL_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?
    |[-+]?\.[0-9]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
# Dates stay text (pydantic parses and explains them); `=` is YAML 1.1's "value" type, which no loader constructs.
_DROPPED_TAGS = (INT_TAG, FLOAT_TAG, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")


def _implicit_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    table = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for first in "-+.0123456789":
        table.setdefault(first, []).append((FLOAT_TAG, _DECIMAL_FLOAT))
    for first in "-+0123456789":
        table[first].append((INT_TAG, _DECIMAL_INT))
    return {first: resolvers for first, resolvers in table.items() if resolvers}


class _TooLong(yaml.constructor.ConstructorError):
    """A number whose digits Python will not convert (more than 4,300)."""


def _construct_decimal_int(loader: Any, node: yaml.ScalarNode) -> int:
    """`0012` is 12 (PyYAML would read octal); a number too long for Python is refused at its line."""
    text = loader.construct_scalar(node)
    try:
        return int(str(text), 10)
    except ValueError:
        raise _TooLong(None, None, f"a number with {len(str(text)):,} digits is too long", node.start_mark) from None


_PLAIN_RESOLVERS = _implicit_resolvers()
STR_TAG = "tag:yaml.org,2002:str"


class _Resolution:
    """The same resolution and construction for the C and the pure-Python loader (see `_DECIMAL_INT`)."""

    yaml_implicit_resolvers = _PLAIN_RESOLVERS

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # PyYAML's own `resolve` spends a third of a big file's parse time on bookkeeping for path resolvers,
        # which are not used here; a plain scalar's tag depends on its text alone.
        if kind is yaml.ScalarNode and implicit[0]:
            for tag, regexp in _PLAIN_RESOLVERS.get(value[:1], ()):
                if regexp.match(value):
                    return tag
            return STR_TAG
        return super().resolve(kind, value, implicit)  # type: ignore[misc]


class _Loader(_Resolution, yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader with the resolution above; gives PyYAML's own error messages, which `_yaml_problem` rewords."""


_Loader.add_constructor(INT_TAG, _construct_decimal_int)

if getattr(yaml, "__with_libyaml__", False):

    class _FastLoader(_Resolution, yaml.CSafeLoader):  # type: ignore[misc]
        """libyaml parses about ten times faster than pure Python; its nodes carry the same line numbers."""

    _FastLoader.add_constructor(INT_TAG, _construct_decimal_int)
    _FAST: type[Any] = _FastLoader
else:  # pragma: no cover - PyYAML built without libyaml
    _FAST = _Loader

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


@dataclass
class YamlDocument:
    """A parsed YAML file: its data, the line of each key path, and, for every plain scalar that YAML read as a
    number or a yes/no, the text as written (`case_id: 0012` -> "0012"), so text fields can keep what was typed."""

    data: Any
    lines: LineMap
    written: dict[tuple[Any, ...], str] = field(default_factory=dict)


def parse_yaml_document(text: str, file: str = "<text>") -> YamlDocument:
    """Parse YAML text safely (see the module docstring) into data, line numbers and scalar texts."""
    if not text.strip():
        raise YamlError("the file is empty", file=file)
    loader = None
    try:
        _check_nesting(text, file)
        node, loader = _compose(text, file)
        if node is None:
            raise YamlError("the file is empty", file=file)
        walk = _Walk(file)
        walk.visit(node, ())
        return YamlDocument(_construct(loader, node, file), walk.lines, walk.written)
    except yaml.reader.ReaderError as exc:
        raise _control_character(exc, text, file) from None
    finally:
        if loader is not None:
            loader.dispose()


def parse_yaml(text: str, file: str = "<text>") -> tuple[Any, LineMap]:
    """Parse YAML text safely; return the data and a map from key path to 1-based line number."""
    document = parse_yaml_document(text, file)
    return document.data, document.lines


def _compose(text: str, file: str) -> tuple[yaml.Node | None, Any]:
    """The node tree, from libyaml when PyYAML has it. A document libyaml refuses is parsed again in pure Python,
    so the message is PyYAML's (which `_yaml_problem` rewords) and its line is counted in characters."""
    if _FAST is not _Loader:
        loader = _FAST(text)
        try:
            return loader.get_single_node(), loader
        except yaml.YAMLError:
            loader.dispose()
    loader = _Loader(text)
    try:
        return loader.get_single_node(), loader
    except yaml.reader.ReaderError:
        loader.dispose()
        raise
    except yaml.MarkedYAMLError as exc:
        loader.dispose()
        problem, line = _yaml_problem(exc)
        raise YamlError(f"invalid YAML: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        loader.dispose()
        raise YamlError(f"invalid YAML: {exc}", file=file) from None


def _construct(loader: Any, node: yaml.Node, file: str) -> Any:
    try:
        return loader.construct_document(node)
    except _TooLong as exc:
        mark = exc.problem_mark
        raise YamlError(
            str(exc.problem), file=file, line=mark.line + 1 if mark else None, hint="quote it if it is an id"
        ) from None
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


def _check_nesting(text: str, file: str) -> None:
    """Refuse deep nesting before the composers, which recurse once per level and would exhaust the stack.

    The event parsers keep their own stack, so counting open collections over their events is safe at any depth.
    libyaml stops at its own limit (1,000 levels) or at a syntax error; the pure-Python parser then counts again,
    since the pure-Python composer is what parses a document libyaml refuses."""
    loaders: list[type[Any]] = list(dict.fromkeys((_FAST, _Loader)))
    for loader in loaders:
        try:
            _count_nesting(text, file, loader)
            return
        except yaml.YAMLError:
            continue  # a syntax error: the full parse that follows reports it with its line


def _count_nesting(text: str, file: str, loader: type[Any]) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                mark = event.start_mark
                raise YamlError(
                    f"nesting deeper than {MAX_YAML_DEPTH} levels", file=file, line=mark.line + 1 if mark else None
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


_WRITTEN_TAGS = (INT_TAG, FLOAT_TAG, BOOL_TAG)


class _Walk:
    """One pass over the node tree before anything is built from it: line numbers, written texts, and limits.

    Aliases make the tree a graph, so three things are checked here rather than trusted to the file's shape:
    the number of values it expands to ("billion laughs"), how deep it nests through aliases, and an alias
    inside the value it names (which would make the value infinite)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: LineMap = {}
        self.written: dict[tuple[Any, ...], str] = {}
        self.count = 0
        self.open: set[int] = set()

    def visit(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self.count += 1
        if self.count > MAX_YAML_NODES:
            raise YamlError(
                f"document expands to more than {MAX_YAML_NODES:,} values (nested aliases?)",
                file=self.file,
                hint="real case and rule files are far smaller; remove the anchors/aliases",
            )
        if id(node) in self.open:
            raise YamlError(
                f"an alias refers to the value that contains it (anchored on line {node.start_mark.line + 1}), "
                "so the value never ends; remove the alias or copy the value",
                file=self.file,
                line=line_of(self.lines, path),
                key=format_loc(path) or None,
            )
        if len(path) > MAX_YAML_DEPTH:
            raise YamlError(
                f"nesting deeper than {MAX_YAML_DEPTH} levels (through aliases)",
                file=self.file,
                line=line_of(self.lines, path),
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            if not node.style and node.tag in _WRITTEN_TAGS:  # plain (libyaml says "", PyYAML None)
                self.written[path] = node.value
            return
        self.open.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self.mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.visit(item, path + (index,))
        self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: tuple[Any, ...]) -> None:
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                raise YamlError(
                    f"key given twice (also on line {seen[key]}); keep one value",
                    file=self.file,
                    line=line,
                    key=format_loc(path + (key,)),
                )
            seen[key] = line
            self.lines.setdefault(path + (key,), line)
            self.visit(value_node, path + (key,))


def load_yaml_document(path: str | Path) -> YamlDocument:
    """Read and parse one YAML file (see `parse_yaml_document`)."""
    return parse_yaml_document(read_yaml_text(path), str(path))


def load_yaml(path: str | Path) -> tuple[Any, LineMap]:
    """Read and parse one YAML file (see `parse_yaml`)."""
    document = load_yaml_document(path)
    return document.data, document.lines


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

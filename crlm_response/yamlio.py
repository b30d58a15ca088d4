"""Safe YAML reading with line numbers, for located error messages.

Only PyYAML's SafeLoader is used: tags such as `!!python/object` are refused. The node tree is walked once
with a budget, so a document built from nested aliases ("billion laughs") or absurd nesting is refused
quickly instead of exhausting memory when something later walks the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import CrlmError

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
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(
            f"not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})",
            file=file,
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
        raise YamlError(f"file is {size / 1e6:.1f} MB; the limit for YAML input is {MAX_YAML_BYTES // 10**6} MB",
                        file=file)
    return _decode(p.read_bytes(), file)


def parse_yaml(text: str, file: str = "<text>") -> tuple[Any, LineMap]:
    """Parse YAML text safely; return the data and a map from key path to 1-based line number."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            problem = exc.problem or exc.context or "invalid YAML"
            raise YamlError(f"invalid YAML: {problem}", file=file, line=line) from None
        except yaml.YAMLError as exc:
            raise YamlError(f"invalid YAML: {exc}", file=file) from None
        if node is None:
            return None, {}
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
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: LineMap, file: str, budget: list[int]) -> None:
    budget[0] += 1
    if budget[0] > MAX_YAML_NODES:
        raise YamlError(
            f"document expands to more than {MAX_YAML_NODES:,} values (nested aliases?)",
            file=file,
            hint="real case and rule files are far smaller; remove the anchors/aliases",
        )
    if len(path) > MAX_YAML_DEPTH:
        raise YamlError(f"nesting deeper than {MAX_YAML_DEPTH} levels", file=file, line=node.start_mark.line + 1)
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            lines.setdefault(path + (key,), key_node.start_mark.line + 1)
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

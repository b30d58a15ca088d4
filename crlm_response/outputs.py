"""Which paths a run may write: every command that writes asks `check_outputs` before it reads anything.

A clinical tool may refuse an output; it may never destroy an input. So an output is refused (a usage error,
exit 2, naming both paths) when it is an input, lies inside an input folder, or is a folder holding an input
(inputs include rule files reached through `extends:` and a case's own `criteria:` list); when two outputs of
one run share a path; and when the path holds something that is not a regular file (a FIFO, a device, a
folder), which replacing would destroy. `-` is standard output and is never a file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import EXIT_USAGE_ERROR
from .writers import OutputError

STDOUT = "-"


class OutputConflictError(OutputError):
    """An output path the run must not write (an input, another output, a FIFO or device): a usage error."""

    exit_code = EXIT_USAGE_ERROR


def is_stdout(path: str | Path | None) -> bool:
    return path is not None and str(path) == STDOUT


@dataclass(frozen=True)
class _Output:
    label: str  # the option that names it, e.g. "-o" or "--errors", as the user will recognise it
    path: Path
    folder: bool  # a folder the run replaces as a whole (a partitioned dataset)

    @property
    def real(self) -> Path:
        return _real(self.path)


def _real(path: Path) -> Path:
    """The path with symlinks and `..` resolved (an output reached through another spelling is the same file)."""
    return Path(os.path.realpath(path))


def _inside(inner: Path, outer: Path) -> bool:
    return inner != outer and outer in inner.parents


def check_outputs(
    outputs: Mapping[str, str | Path | None],
    inputs: Iterable[str | Path | None],
    folders: Mapping[str, str | Path | None] | None = None,
) -> None:
    """Refuse, before any work, outputs that would destroy an input, another output, or a non-regular file.

    `outputs`: option label -> file path (None: not written; a command that streams to standard output passes
    None for `-`); `folders`: label -> a folder output replaced as a whole; `inputs`: every file or folder the
    run reads."""
    for label, p in {**outputs, **(folders or {})}.items():
        if is_stdout(p):
            raise OutputConflictError(
                f"{label} - (standard output) is not available for this output", hint="give a file path"
            )
    planned = [_Output(label, Path(p), False) for label, p in outputs.items() if p is not None]
    planned += [_Output(label, Path(p), True) for label, p in (folders or {}).items() if p is not None]
    read = [Path(p) for p in inputs if p is not None and not is_stdout(p) and not str(p).startswith("<")]
    for output in planned:
        for source in read:
            _refuse_input_overlap(output, source)
    _refuse_shared_paths(planned)
    for output in planned:
        _refuse_special_file(output)


def _refuse_input_overlap(output: _Output, source: Path) -> None:
    out, src = output.real, _real(source)
    if out == src:
        raise OutputConflictError(
            f"{output.label} would overwrite the input {source}", file=output.path, hint="choose another output path"
        )
    if _inside(out, src):
        raise OutputConflictError(
            f"{output.label} lies inside the input folder {source}",
            file=output.path,
            hint="write outputs outside the folders the run reads",
        )
    if (output.folder or out.is_dir()) and _inside(src, out):
        raise OutputConflictError(
            f"{output.label} is a folder holding the input {source}",
            file=output.path,
            hint="choose a new or empty output folder",
        )


def _refuse_shared_paths(planned: list[_Output]) -> None:
    for i, first in enumerate(planned):
        for second in planned[i + 1 :]:
            if first.real == second.real:
                raise OutputConflictError(
                    f"given for both {first.label} and {second.label}",
                    file=second.path,
                    hint="give each output its own path",
                )
            for inner, outer in ((first, second), (second, first)):
                if outer.folder and _inside(inner.real, outer.real):
                    raise OutputConflictError(
                        f"{inner.label} lies inside the output folder {outer.path} ({outer.label})",
                        file=inner.path,
                        hint="write it outside that folder",
                    )


def _refuse_special_file(output: _Output) -> None:
    try:
        mode = os.stat(output.path).st_mode
    except OSError:
        return  # nothing there yet (or unreadable: the write itself will say why)
    if output.folder:
        if not stat.S_ISDIR(mode):
            raise OutputConflictError(
                f"{output.label} names a dataset folder, but this is {_kind(mode)}",
                file=output.path,
                hint="give a folder path ending in /",
            )
        return
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise OutputConflictError(f"{output.label} is a folder; give a file name", file=output.path)
    raise OutputConflictError(
        f"{output.label} is {_kind(mode)}, not a regular file; outputs only ever replace regular files",
        file=output.path,
        hint="to stream the output, write it to standard output with -o - and redirect that",
    )


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"


def rule_inputs(references: Iterable[str | Path] | None) -> list[Path]:
    """The files rule sets are read from: each rule file named, and every file its `extends:` chain reaches
    (a shipped rule set, too). Built-in ids and `all` need no file of the user's."""
    from .assessment import get_rules
    from .rules import builtin_ids

    files: list[Path] = []
    for reference in references or ():
        if str(reference) == "all" or str(reference) in builtin_ids():
            continue
        if not Path(reference).is_file():
            continue  # the option check reports it
        files.extend(get_rules(reference).files)
    return files


def case_inputs(case_file: Path, requested: Iterable[str] | None) -> list[Path]:
    """What `assess`/`report` read: the case, the rule files asked for, and (when none are asked for) the rule
    files the case's own `criteria:` list names."""
    if requested:
        return [case_file, *rule_inputs(requested)]
    if not case_file.is_file():
        return [case_file]
    from .readers import load_case

    return [case_file, *rule_inputs(load_case(case_file).criteria)]

"""Errors the library raises: each one says where (file, line, key), what, and what to do.

The CLI turns every `CrlmError` into a one-line `Error: ...` on stderr and exit code 1, so a user never
sees a traceback for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_INPUT_ERROR = 1
EXIT_USAGE_ERROR = 2


@dataclass
class Location:
    """Where a problem is: a file, a line in it (1-based), and a key path or row."""

    file: str | None = None
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(self.file + (f":{self.line}" if self.line else ""))
        elif self.line:
            parts.append(f"line {self.line}")
        if self.key:
            parts.append(self.key)
        return ": ".join(parts)


class CrlmError(Exception):
    """Base class of every error caused by the user's input (exit code 1, or `exit_code`)."""

    exit_code: int = EXIT_INPUT_ERROR

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.location = Location(str(file) if file is not None else None, line, key)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.location)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class CaseError(CrlmError):
    """A case file or case data that cannot be scored as given."""


class RuleSetError(CrlmError):
    """A rule file that does not follow the rule schema or uses an unknown word."""


class ConditionError(RuleSetError):
    """A rule condition that uses a word or operator outside the closed vocabulary."""


class SettingsError(CrlmError):
    """A `--set` value or a case `settings` entry that names no parameter or has the wrong type."""


class InputTableError(CrlmError):
    """A trial table (CSV, Parquet, SDTM) that cannot be read at all (missing columns, not a table)."""


class StrictModeError(CrlmError):
    """A warning turned into an error by `--strict`."""


class OutputError(CrlmError):
    """An output that cannot be written (folder missing, not writable, same file as an input)."""


class OptionError(CrlmError):
    """A wrong option value, or options that do not go together: a usage error (exit code 2).

    `option` names the option at fault (`--set`, `RULE_SET_A`); the CLI then says `Invalid value for OPTION`.
    Without it the message is about a combination of options, shown under the command's usage line."""

    exit_code = EXIT_USAGE_ERROR

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


def not_utf8_message(raw: bytes, exc: UnicodeDecodeError) -> tuple[str, int]:
    """The message for text that is not UTF-8, naming the bad byte and its column, and the 1-based line."""
    line = raw[: exc.start].count(b"\n") + 1
    column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
    return f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column})", line

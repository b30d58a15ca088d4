"""Option values as the user types them -> checked library values: `--criteria`, `--set`, dates, output paths.

Shared by every command (and usable without the command line). A value that cannot be used raises
`OptionError`, a usage error (exit code 2) naming the option, before any file is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .assessment import get_rules
from .errors import OptionError, SettingsError
from .rules import builtin_ids, check_parameter_value
from .yamlio import YamlError, parse_yaml

ADAM_DATASETS = ("adrs", "adtr")


def shorten(text: str, limit: int = 200) -> str:
    """Echo user input in a message without letting a huge value flood the terminal."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def parse_criteria(value: str | Sequence[str] | None) -> list[str] | None:
    """`recist1.1,choi` (or a list) -> rule-set ids or rule files; `all`; None or empty: the default choice."""
    if not value:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    ids = [str(v).strip() for v in items if str(v).strip()]
    if ids == ["all"]:
        return ids
    for rule_id in ids:
        if rule_id in builtin_ids() or Path(rule_id).is_file():
            continue
        if _looks_like_a_path(rule_id):
            raise OptionError(f"rule file `{rule_id}` not found", "--criteria")
        raise OptionError(
            f"unknown criteria `{rule_id}`; choose from {', '.join(builtin_ids())}, `all`, or give a rule file",
            "--criteria",
        )
    return ids


def _looks_like_a_path(text: str) -> bool:
    return Path(text).suffix.lower() in (".yaml", ".yml") or "/" in text or os.sep in text


def check_rule_set(reference: str, option: str = "RULE_SET") -> str:
    """A shipped rule-set id or an existing rule file, else a usage error naming the argument."""
    if reference not in builtin_ids() and not Path(reference).is_file():
        raise OptionError(
            f"unknown rule set `{reference}`; choose from {', '.join(builtin_ids())} or give a file", option
        )
    return reference


def parse_set_options(
    values: Sequence[str], references: Sequence[str | Path] = (), option: str = "--set"
) -> dict[str, dict[str, Any]]:
    """`recist1.1.sd_min_days=56` -> {"recist1.1": {"sd_min_days": 56}}; rule-set ids may contain dots.

    `references` are the rule sets in play (ids or files), so a site variant's own id can be set too."""
    out: dict[str, dict[str, Any]] = {}
    known: dict[str, str | Path] = {rule_id: rule_id for rule_id in builtin_ids()}
    for reference in references:
        if reference != "all":
            known[get_rules(reference).id] = reference
    longest_first = sorted(known, key=len, reverse=True)  # `mchoi.x` must not match `choi`
    for item in values:
        rule_id, name, value = _one_setting(item, known, longest_first, option)
        out.setdefault(rule_id, {})[name] = value
    return out


def _one_setting(
    item: str, known: dict[str, str | Path], longest_first: list[str], option: str
) -> tuple[str, str, Any]:
    shown = shorten(item)
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise OptionError(f"{shown!r}: write RULESET.PARAMETER=VALUE, e.g. recist1.1.sd_min_days=56", option)
    key = key.strip()
    rule_id = next((i for i in longest_first if key.startswith(i + ".")), None)
    if rule_id is None:
        raise OptionError(
            f"{shown!r}: `{shorten(key)}` does not start with a rule set id ({', '.join(sorted(known))})", option
        )
    name = key[len(rule_id) + 1 :]
    rules = get_rules(known[rule_id])
    if name not in rules.schema.parameters:
        raise OptionError(
            f"{shown!r}: `{rule_id}` has no parameter `{shorten(name)}`; parameters: "
            + ", ".join(sorted(rules.schema.parameters)),
            option,
        )
    try:
        value = check_parameter_value(rules, name, set_value(raw), f"{rule_id}.{name}")
    except (SettingsError, YamlError) as exc:
        raise OptionError(f"{shown!r}: {shorten(exc.message)}", option) from None
    return rule_id, name, value


def set_value(raw: str) -> Any:
    """A `--set` value read as YAML (numbers, yes/no, lists) with the same safety limits as input files;
    text that is not valid YAML stays text (the parameter check then says what is expected)."""
    if not raw.strip():
        return None
    try:
        value, _ = parse_yaml(raw, "--set")
    except YamlError as exc:
        if exc.message.startswith("invalid YAML"):
            return raw
        raise
    return value


def checked_date(value: str | None, option: str | None = None) -> str | None:
    """A date option, checked before any file is read (by the parser every table date goes through)."""
    from .sources import parse_dates

    if value is None:
        return None
    _, problem = parse_dates(pd.Series([value.strip()], dtype=object), "date")
    if problem[0] is not None or len(value.strip()) != 10:
        raise OptionError(f"{shorten(value)!r} is not a date (YYYY-MM-DD)", option)
    return value.strip()


def file_output(path: Path | None) -> Path | None:
    """An -o path, or None for standard output (`-o -`)."""
    from .outputs import is_stdout

    return None if path is None or is_stdout(path) else path


def default_path(output: Path, suffix: str) -> Path:
    """`responses.csv` -> `responses.best.csv` (same folder, same format)."""
    return output.with_name(f"{output.stem}.{suffix}{output.suffix or '.csv'}")


def adam_paths(adam_dir: Path | None, adam_format: str) -> dict[str, Path]:
    """`--adam-dir` and `--adam-format` -> the ADRS and ADTR files (none without a folder)."""
    return {n: adam_dir / f"{n}.{adam_format}" for n in ADAM_DATASETS} if adam_dir else {}


def adam_labels(adam: dict[str, Path]) -> dict[str, Path | None]:
    """The ADaM files by the label output checks show them under (`--adam-dir (ADRS)`)."""
    return {f"--adam-dir ({n.upper()})": p for n, p in adam.items()}

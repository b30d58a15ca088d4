"""Bad-input corpus for every input path other than case files and long tables: rule files (`rules validate`,
`assess --criteria FILE`), column maps (`batch --map`), `--set` values, `bor` inputs, SDTM TU/TR, and the
numeric / encoding / multi-file corners of batch. Each mistake gets a clear message naming the file (and line
and key when there is one), what is wrong and what to do; never a traceback, never "internal error".

Each case is one input `tests/bad_inputs/other/<name>.<ext>` (raw bytes: encodings are kept as written), optional
extra files `<name>.<part>.<ext>` beside it (a second SDTM domain, the lesion table a column map is used with, the
case a rule file is tried on), and `<name>.expected`, a small YAML file:

    command: [batch, "{input}", -o, "{tmp}/out.csv"]   # the CLI arguments
    exit: 1                                             # the expected exit code
    message: "Error: {input}: ..."                      # the exact stderr (trailing whitespace ignored)
    input: other.csv          # optional: use another case's input instead of an own one
    errors:                   # optional: exactly the rejected rows of `{tmp}/out.errors.csv`, for each file named
    - {line: 3, code: not_allowed, reason: "substring", value: VGPR, column: response, file: basename (default: input)}
    subjects_scored: [P2]     # optional: the subjects in `{tmp}/out.csv` (and no others)
    warnings: [units_look_like_cm]   # optional: codes that must be in `{tmp}/out.warnings.csv`
    stdout_contains: "..."    # optional: a text stdout must contain
    max_seconds: 5            # optional: the command must finish within this time (alias bombs)
    must_not_create: /tmp/x   # optional: a file the input would create if anything in it were executed

Placeholders (in `command`, `message`, `stdout_contains`): `{input}` the paired input's path, `{dir}` this
folder, `{tmp}` a fresh empty folder for outputs, `{rule_sets}` the shipped rule-set ids joined by ", ".
The first line of each `.expected` is a comment: `# OK` (the tool's own behaviour, reviewed) or `# WANTED` (what
the tool should do and does not yet; the comment says what it does instead).

Whenever stderr carries accounting lines, each must balance: rows read = rows scored + rows rejected.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import run_cli

from crlm_response.rules import builtin_ids

CASE_DIR = Path(__file__).resolve().parent / "bad_inputs" / "other"
EXPECTED = ".expected"
KNOWN_KEYS = {
    "command",
    "exit",
    "message",
    "input",
    "errors",
    "subjects_scored",
    "warnings",
    "stdout_contains",
    "max_seconds",
    "must_not_create",
}
ACCOUNTING = re.compile(
    r"^(?P<file>.+?): rows read (?P<read>[\d,]+) = rows scored (?P<scored>[\d,]+) "
    r"\+ rows rejected (?P<rejected>[\d,]+)\s*$",
    re.MULTILINE,
)


def expected_files() -> list[Path]:
    return sorted(CASE_DIR.glob("*" + EXPECTED))


def data_files() -> list[Path]:
    return sorted(p for p in CASE_DIR.iterdir() if p.is_file() and p.suffix != EXPECTED)


def load_spec(path: Path) -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(spec, dict), f"{path.name}: must be a YAML mapping"
    unknown = set(spec) - KNOWN_KEYS
    assert not unknown, f"{path.name}: unknown keys {sorted(unknown)}"
    for key in ("command", "exit", "message"):
        assert key in spec, f"{path.name}: needs `{key}`"
    assert isinstance(spec["command"], list) and spec["command"], f"{path.name}: `command` is a list of arguments"
    return spec


def own_input(stem: str) -> list[Path]:
    """The case's own input: `<stem>.<ext>` with a single extension."""
    return [p for p in data_files() if p.name.startswith(stem + ".") and "." not in p.name[len(stem) + 1 :]]


def input_for(expected: Path, spec: dict[str, Any]) -> Path:
    if "input" in spec:
        return CASE_DIR / str(spec["input"])
    matches = own_input(expected.stem)
    assert len(matches) == 1, f"{expected.name}: want exactly one input {expected.stem}.<ext>, got {matches}"
    return matches[0]


def fill(text: str, input_path: Path, tmp: Path) -> str:
    # str.replace, not str.format: messages quote `{` and `}` from the inputs.
    return (
        text.replace("{input}", str(input_path))
        .replace("{dir}", str(CASE_DIR))
        .replace("{tmp}", str(tmp))
        .replace("{rule_sets}", ", ".join(builtin_ids()))
    )


def check_errors_file(spec: dict[str, Any], input_path: Path, tmp: Path) -> None:
    errors_path = tmp / "out.errors.csv"
    assert errors_path.is_file(), f"no errors file {errors_path.name}"
    errors = pd.read_csv(errors_path, dtype=str, keep_default_na=False)
    errors["name"] = errors["file"].map(lambda f: Path(f).name)
    want = {(str(e.get("file", input_path.name)), int(e["line"])): e for e in spec["errors"] or []}
    files = {f for f, _ in want} or {input_path.name}
    got = {(r["name"], int(r["line"])): r for r in errors.to_dict("records") if r["name"] in files}
    assert sorted(got) == sorted(want), (
        "rejected rows differ:\n" + errors[["name", "line", "column", "value", "code", "reason"]].to_string()
    )
    problems = []
    for key, e in want.items():
        row = got[key]
        if row["code"] != e["code"]:
            problems.append(f"{key}: code {row['code']!r}, expected {e['code']!r}")
        if str(e["reason"]) not in row["reason"]:
            problems.append(f"{key}: reason {row['reason']!r} does not contain {e['reason']!r}")
        for column in ("value", "column"):
            if column in e and row[column] != str(e[column]):
                problems.append(f"{key}: {column} {row[column]!r}, expected {e[column]!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("expected", expected_files(), ids=lambda p: p.stem)
def test_bad_other_input(expected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(expected)
    input_path = input_for(expected, spec)
    assert input_path.is_file(), f"{expected.name}: no input {input_path.name}"
    tmp = tmp_path / "out"
    tmp.mkdir()
    args = [fill(str(a), input_path, tmp) for a in spec["command"]]
    marker = Path(spec["must_not_create"]) if spec.get("must_not_create") else None
    if marker is not None and marker.exists():
        os.remove(marker)
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping of long lines (paths) by the terminal renderer
    monkeypatch.chdir(tmp_path)

    start = time.monotonic()
    unraisable: list[str] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda info: unraisable.append(f"{type(info.exc_value).__name__}: {info.exc_value}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # third-party start-up chatter (e.g. Dask) is not the tool's message
            result = run_cli(*args)
        gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    elapsed = time.monotonic() - start

    # "Exception ignored in ... Traceback" is what a user sees for an exception Python could only print
    assert not unraisable, f"Python printed a traceback on stderr: {unraisable}"

    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream
        assert "internal error" not in stream, stream
    want = fill(str(spec["message"]), input_path, tmp).rstrip()
    assert result.stderr.rstrip() == want
    assert result.exit_code == spec["exit"], result.stderr
    if spec.get("max_seconds") is not None:
        assert elapsed < float(spec["max_seconds"]), f"took {elapsed:.1f} s"
    if marker is not None:
        assert not marker.exists(), f"the input was executed: {marker} was created"
    if spec.get("stdout_contains"):
        assert fill(str(spec["stdout_contains"]), input_path, tmp) in result.stdout
    for m in ACCOUNTING.finditer(result.stderr):
        read, scored, rejected = (int(m[k].replace(",", "")) for k in ("read", "scored", "rejected"))
        assert read == scored + rejected, m.group(0)
    if "errors" in spec:
        check_errors_file(spec, input_path, tmp)
    if "subjects_scored" in spec:
        visits = pd.read_csv(tmp / "out.csv", dtype=str, keep_default_na=False)
        assert sorted(set(visits["subject_id"])) == sorted(map(str, spec["subjects_scored"]))
    if spec.get("warnings"):
        found = pd.read_csv(tmp / "out.warnings.csv", dtype=str, keep_default_na=False)
        missing = sorted(set(spec["warnings"]) - set(found["code"]))
        assert not missing, f"warnings {missing} not raised; got {sorted(set(found['code']))}"


def test_every_input_has_an_expected_file_and_vice_versa() -> None:
    specs = {p.stem: load_spec(p) for p in expected_files()}
    owners: dict[str, str] = {}
    for path in data_files():
        stems = [s for s in specs if path.name.startswith(s + ".")]
        assert stems, f"{path.name}: no .expected file claims it"
        owners[path.name] = max(stems, key=len)
    for stem, spec in specs.items():
        own = own_input(stem)
        if "input" in spec:
            assert not own, f"{stem}.expected: uses `input:` but also has its own input {own}"
            assert (CASE_DIR / str(spec["input"])).is_file(), f"{stem}.expected: no input {spec['input']}"
        else:
            assert len(own) == 1, f"{stem}.expected: want exactly one input {stem}.<ext>, got {own}"
    for path in expected_files():
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith(("# OK", "# WANTED")), f"{path.name}: first line must say OK or WANTED"
    assert len(specs) >= 30, "the corpus should cover at least 30 mistakes"

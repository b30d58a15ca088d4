"""Bad-input corpus for `crlm-response assess`: each mistake gets a clear, located message, no traceback.

Each mistake is one input file `tests/bad_inputs/case/<name>.<ext>` (usually `.yaml`; encodings are written as
raw bytes) paired with `tests/bad_inputs/case/<name>.expected`, a small YAML file:

    args: [extra CLI args]        # optional, e.g. ["--strict"] or ["--set", "recist1.1.no_such_param=3"]
    exit: 1                       # expected exit code (1 input error, 2 usage error, 0 accepted)
    message: "Error: {file}:12: ..."   # the exact stderr (trailing whitespace ignored)
    path: does_not_exist.yaml     # optional: run on this path (relative to the folder), no paired input
    stdout_contains: "..."        # optional: a text stdout must contain (for inputs that are accepted)
    max_seconds: 5                # optional: the command must finish within this time (alias bombs)
    must_not_create: /tmp/x       # optional: a file the input would create if it were executed (YAML tags)

Placeholders in `message`: `{file}` is the input path as passed on the command line; `{rule_sets}` is the
comma-separated list of shipped rule-set ids (so adding a rule set does not break the corpus).
The comment on the first line of each `.expected` says whether the message is the tool's own or a wanted one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from crlm_response.rules import builtin_ids

CASE_DIR = Path(__file__).resolve().parent / "bad_inputs" / "case"
EXPECTED_SUFFIX = ".expected"


def _expected_files() -> list[Path]:
    return sorted(CASE_DIR.glob("*" + EXPECTED_SUFFIX))


def _input_files() -> list[Path]:
    return sorted(p for p in CASE_DIR.iterdir() if p.is_file() and p.suffix != EXPECTED_SUFFIX)


def _load_spec(expected: Path) -> dict[str, Any]:
    spec = yaml.safe_load(expected.read_text(encoding="utf-8"))
    assert isinstance(spec, dict), f"{expected}: must be a YAML mapping"
    known = {"args", "exit", "message", "path", "stdout_contains", "max_seconds", "must_not_create"}
    unknown = set(spec) - known
    assert not unknown, f"{expected}: unknown keys {sorted(unknown)}"
    assert "exit" in spec and "message" in spec, f"{expected}: needs `exit` and `message`"
    return spec


def _input_for(expected: Path, spec: dict[str, Any]) -> Path:
    if "path" in spec:
        return CASE_DIR / spec["path"]
    matches = [p for p in _input_files() if p.stem == expected.stem]
    assert len(matches) == 1, f"{expected.name}: want one input {expected.stem}.*, got {matches}"
    return matches[0]


def _fill(text: str, file: str) -> str:
    # str.replace, not str.format: messages may quote `{` and `}` from the input.
    return text.replace("{file}", file).replace("{rule_sets}", ", ".join(builtin_ids()))


@pytest.mark.parametrize("expected", _expected_files(), ids=lambda p: p.stem)
def test_bad_input(expected: Path, cli_runner: Any) -> None:
    spec = _load_spec(expected)
    path = _input_for(expected, spec)
    args = [str(a) for a in spec.get("args") or []]
    marker = Path(spec["must_not_create"]) if spec.get("must_not_create") else None
    if marker is not None and marker.exists():
        os.remove(marker)

    start = time.monotonic()
    result = cli_runner("assess", str(path), *args)
    elapsed = time.monotonic() - start

    assert "Traceback" not in result.stdout
    assert "Traceback" not in result.stderr
    want = _fill(str(spec["message"]), str(path)).rstrip()
    assert result.stderr.rstrip() == want
    assert result.exit_code == spec["exit"], result.stderr
    if spec.get("stdout_contains"):
        assert _fill(str(spec["stdout_contains"]), str(path)) in result.stdout
    if spec.get("max_seconds") is not None:
        assert elapsed < float(spec["max_seconds"]), f"took {elapsed:.1f} s"
    if marker is not None:
        assert not marker.exists(), f"the input was executed: {marker} was created"


def test_every_input_has_an_expected_file_and_vice_versa() -> None:
    expected_stems = {p.stem for p in _expected_files()}
    input_stems = [p.stem for p in _input_files()]
    assert len(input_stems) == len(set(input_stems)), "two inputs share a name"
    path_only = {p.stem for p in _expected_files() if "path" in _load_spec(p)}
    assert sorted(set(input_stems) - expected_stems) == [], "inputs without a .expected file"
    assert sorted(expected_stems - path_only - set(input_stems)) == [], ".expected files without an input"
    assert sorted(path_only & set(input_stems)) == [], "a `path:` case must not also have a paired input"
    for expected in _expected_files():
        spec = _load_spec(expected)
        if "path" in spec:
            assert not (CASE_DIR / spec["path"]).exists(), f"{expected.name}: {spec['path']} must not exist"

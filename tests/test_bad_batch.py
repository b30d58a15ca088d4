"""Bad-input corpus for `crlm-response batch`: each mistake in a trial table is rejected with its line and
reason, never a traceback, and the books always balance.

Each case is `tests/bad_inputs/batch/<name>.csv` (raw bytes: encodings and malformed rows are kept as
written), optional extra files `<name>.<part>.csv` (e.g. an organ table), and `<name>.expected`, a small
YAML file:

    args: [extra CLI args]     # optional; `{dir}` is this folder, `{file}` the input. The runner always adds
                               # `-o <tmp>/out.csv --criteria recist1.1`.
    exit: 0                    # expected exit code
    stderr: "Error: {file}: ..."   # either: the exact stderr (trailing whitespace ignored) ...
    errors:                    # ... or: exactly the rejected rows of the errors file
    - {line: 3, code: not_a_number, reason: "substring of the reason", file: basename (default: the input)}
    subjects_scored: [P2]      # optional: the subjects that must be in the per-visit output (and no others)
    input: other.csv           # optional: run on another case's input (same folder)
    encoding: latin-1          # optional: the input's encoding, for counting its data rows

Whenever the run succeeds, stderr must show `rows read N = rows scored S + rows rejected R` for every
input file, with N = S + R and N the file's data rows, and the errors file must list exactly R rows of that
file.
The comment on the first line of each `.expected` says whether the expectation is the tool's own (OK) or
wanted (WANTED: the tool does not do it yet).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import run_cli

CASE_DIR = Path(__file__).resolve().parent / "bad_inputs" / "batch"
KNOWN_KEYS = {"args", "exit", "stderr", "errors", "subjects_scored", "input", "encoding"}
ACCOUNTING = re.compile(
    r"^(?P<file>\S+): rows read (?P<read>[\d,]+) = rows scored (?P<scored>[\d,]+) "
    r"\+ rows rejected (?P<rejected>[\d,]+)\s*$",
    re.MULTILINE,
)


def expected_files() -> list[Path]:
    return sorted(CASE_DIR.glob("*.expected"))


def load_spec(path: Path) -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(spec, dict), f"{path.name}: must be a YAML mapping"
    unknown = set(spec) - KNOWN_KEYS
    assert not unknown, f"{path.name}: unknown keys {sorted(unknown)}"
    assert "exit" in spec, f"{path.name}: needs `exit`"
    assert ("stderr" in spec) != ("errors" in spec), f"{path.name}: give exactly one of `stderr` and `errors`"
    return spec


def fill(text: str, file: Path) -> str:
    return text.replace("{file}", str(file)).replace("{dir}", str(CASE_DIR))


def data_rows(path: Path, encoding: str) -> int:
    """Non-blank CSV records after the header (csv module; a row with too many fields still counts)."""
    text = path.read_bytes().decode(encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    return max(0, sum(1 for row in csv.reader(io.StringIO(text)) if row) - 1)


@pytest.mark.parametrize("expected", expected_files(), ids=lambda p: p.stem)
def test_bad_batch_input(expected: Path, tmp_path: Path) -> None:
    spec = load_spec(expected)
    input_path = CASE_DIR / spec.get("input", f"{expected.stem}.csv")
    assert input_path.is_file(), f"{expected.name}: no input {input_path.name}"
    args = [fill(str(a), input_path) for a in spec.get("args") or []]
    out = tmp_path / "out.csv"
    result = run_cli("batch", input_path, "-o", out, "--criteria", "recist1.1", *args)

    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr
    assert "internal error" not in result.stderr, result.stderr
    if "stderr" in spec:
        assert result.stderr.rstrip() == fill(str(spec["stderr"]), input_path).rstrip()
    assert result.exit_code == spec["exit"], result.stderr
    if result.exit_code != 0:
        return

    # The books balance for every input file.
    errors = pd.read_csv(tmp_path / "out.errors.csv", dtype=str, keep_default_na=False)
    errors["name"] = errors["file"].map(lambda f: Path(f).name)
    counts = {
        m["file"]: {k: int(m[k].replace(",", "")) for k in ("read", "scored", "rejected")}
        for m in ACCOUNTING.finditer(result.stderr)
    }
    inputs = [input_path] + [Path(a) for a in args if a.startswith(str(CASE_DIR))]
    for path in inputs:
        c = counts.get(path.name)
        assert c is not None, f"no accounting line for {path.name}: {result.stderr!r}"
        assert c["read"] == c["scored"] + c["rejected"], c
        encoding = spec.get("encoding", "utf-8") if path == input_path else "utf-8"
        assert c["read"] == data_rows(path, encoding), f"{path.name}: read {c['read']} of {data_rows(path, encoding)}"
        assert int((errors["name"] == path.name).sum()) == c["rejected"], f"{path.name}: errors file vs count"

    # Exactly the expected rejected rows.
    if "errors" in spec:
        want = {(e.get("file", input_path.name), int(e["line"])): e for e in spec["errors"] or []}
        got = {(r["name"], int(r["line"])): r for r in errors.to_dict("records")}
        assert sorted(got) == sorted(want), (
            "rejected rows differ:\n" + errors[["name", "line", "code", "reason"]].to_string()
        )
        problems = []
        for key, e in want.items():
            row = got[key]
            if row["code"] != e["code"]:
                problems.append(f"{key}: code {row['code']!r}, expected {e['code']!r}")
            if str(e["reason"]) not in row["reason"]:
                problems.append(f"{key}: reason {row['reason']!r} does not contain {e['reason']!r}")
        assert not problems, "\n".join(problems)

    if "subjects_scored" in spec:
        visits = pd.read_csv(out, dtype=str, keep_default_na=False)
        assert sorted(set(visits["subject_id"])) == sorted(spec["subjects_scored"])


def test_every_input_has_an_expected_file_and_vice_versa() -> None:
    specs = {p.stem: load_spec(p) for p in expected_files()}
    used: set[str] = set()
    for stem, spec in specs.items():
        main = spec.get("input", f"{stem}.csv")
        assert (CASE_DIR / main).is_file(), f"{stem}.expected: no input {main}"
        used.add(main)
        used.update(p.name for p in CASE_DIR.glob(f"{stem}.*.csv"))
    present = {p.name for p in CASE_DIR.iterdir() if p.is_file() and p.suffix != ".expected"}
    assert sorted(present - used) == [], "inputs without a .expected file"
    for path in expected_files():
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith(("# OK", "# WANTED")), f"{path.name}: first line must say OK or WANTED"

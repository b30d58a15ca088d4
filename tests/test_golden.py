"""Golden cases: hand-written expected answers, checked through the library and the CLI.

Two sources of cases, one generic runner:

* ``tests/golden/<rule-set-id>.yaml`` — named cases written by hand from REFERENCE.md for one rule set
  (test ids ``<rule_set>::<name>``, so ``pytest -k recist1.1`` or ``-k choi`` selects one set).
* ``tests/fixtures/examples.yaml`` — the team's shared worked cases; every criteria id in a case's
  ``expected`` becomes one test (ids ``examples::EX-01::recist1.1``).

Numbers are compared with exact equality after rounding both sides to 2 decimals (the tool reports
2-decimal rounding). A case whose rule set is not shipped yet is skipped with "rule set not implemented
yet"; the skip disappears by itself once ``rules/<id>.yaml`` exists.

Golden file format (one file per rule set)::

    rule_set: recist1.1
    cases:
      - name: pr_at_exactly_minus_30_percent      # snake_case, unique in the file
        description: one line                     # the clinical situation
        citation: E2009 §4.3.1                    # where the expected answer comes from
        settings: {recist1.1: {...}}              # optional: merged into the case's `settings`
        criteria: [recist1.1]                     # optional: default [rule_set]
        case: {...}                               # a case document (case_id optional: defaults to name)
        expected:                                 # or `error: "substring"` (must be refused: CrlmError)
          baseline_sum_mm: 100.0                  # any key at the top of the criteria block
          timepoints: [{id: FU1, target: PR}]     # listed keys checked, others ignored
          lesions: [{id: FU1, lesion: L1, response: optimal}]   # criteria.<id>.timepoints[].lesions[]
          warnings: [{code: ..., timepoint: ...}] # must be raised (code + timepoint, lesion if given)
          no_warnings: [code, ...]                # must not be raised
          toxicity_present: [{flag: ..., timepoint: ...}]
          toxicity_absent: [{flag: ..., timepoint: ...}]

Other top-level keys of a golden file must start with ``x-`` (holders for YAML anchors such as a shared
``treatment``); the runner ignores them.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURES, SHARED_EXAMPLES, TESTS, run_cli, write_case

from crlm_response import assess
from crlm_response.errors import EXIT_INPUT_ERROR, CrlmError
from crlm_response.readers import case_from_data
from crlm_response.rules import builtin_ids

GOLDEN_DIR = TESTS / "golden"
EXAMPLES = FIXTURES / "examples.yaml"
NOT_IMPLEMENTED = "rule set not implemented yet"
EXAMPLES_HEADER_LINES = 2  # the fixture's own comment above the copy of the shared file

GOLDEN_CASE_KEYS = {"name", "description", "citation", "settings", "criteria", "case", "expected", "error"}
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def announced_ids() -> set[str]:
    """Criteria ids listed in the examples header (`ids: recist1.1 | who | ...`): the sets the team plans."""
    match = re.search(r"^#\s*ids:\s*(.+)$", EXAMPLES.read_text(encoding="utf-8"), re.MULTILINE)
    return {part.strip() for part in match.group(1).split("|") if part.strip()} if match else set()


def golden_files() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.yaml"))


def golden_params() -> list[Any]:
    params = []
    for path in golden_files():
        data = _load_yaml(path) or {}
        rule_set = data.get("rule_set", path.stem)
        for case in data.get("cases") or []:
            test_id = f"{rule_set}::{case.get('name')}"
            params.append(pytest.param(rule_set, case, id=test_id))
    return params


def example_params() -> list[Any]:
    params = []
    for case in _load_yaml(EXAMPLES)["cases"]:
        for criteria_id in case.get("expected") or {}:
            params.append(pytest.param(case, criteria_id, id=f"examples::{case['case_id']}::{criteria_id}"))
    return params


def _skip_unimplemented(criteria: list[str]) -> None:
    missing = [c for c in criteria if c not in builtin_ids()]
    if missing:
        pytest.skip(f"{NOT_IMPLEMENTED}: {', '.join(missing)}")


def golden_document(rule_set: str, golden: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The case document to score (golden `settings` merged in) and the criteria to run."""
    doc = copy.deepcopy(golden["case"])
    doc.setdefault("case_id", golden["name"])
    for rule_id, params in (golden.get("settings") or {}).items():
        doc.setdefault("settings", {}).setdefault(rule_id, {}).update(params)
    return doc, list(golden.get("criteria") or [rule_set])


def example_document(example: dict[str, Any]) -> dict[str, Any]:
    """The worked case as a case document.

    Settings for rule sets that are not shipped yet are left out: the tool refuses settings naming an
    unknown rule set, which would otherwise stop e.g. the recist1.1 part of a case that also sets `choi`.
    Once the rule set exists its settings are passed on unchanged.
    """
    doc = copy.deepcopy(example)
    shipped = set(builtin_ids())
    if "settings" in doc:
        doc["settings"] = {k: v for k, v in doc["settings"].items() if k in shipped}
    return doc


def run_library(doc: dict[str, Any], criteria: list[str]) -> dict[str, Any]:
    return assess(case_from_data(doc, str(doc.get("case_id", "<case>"))), criteria=criteria).to_dict()


def run_command(doc: dict[str, Any], criteria: list[str], tmp_path: Path) -> dict[str, Any]:
    path = write_case(tmp_path, doc)
    result = run_cli("assess", str(path), "--format", "json", "--criteria", ",".join(criteria))
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------------------


def same(actual: Any, expected: Any) -> bool:
    """Equal; numbers equal after rounding both to 2 decimals; booleans and null compared exactly."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and actual == expected
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and round(float(actual), 2) == round(float(expected), 2)
    return bool(actual == expected)


class Checker:
    """Collects every mismatch of one case so a failure lists them all."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def value(self, where: str, actual: Any, expected: Any) -> None:
        if not same(actual, expected):
            self.fail(f"{where}: expected {expected!r}, got {actual!r}")

    def block(self, criteria_id: str) -> dict[str, Any] | None:
        block = self.result.get("criteria", {}).get(criteria_id)
        if block is None:
            present = sorted(self.result.get("criteria", {}))
            self.fail(f"no `{criteria_id}` block in the result (criteria: {present})")
        return block

    def timepoint(self, block: dict[str, Any], criteria_id: str, tp_id: Any) -> dict[str, Any] | None:
        for row in block.get("timepoints", []):
            if row.get("id") == tp_id:
                return row
        self.fail(f"{criteria_id}: timepoint {tp_id!r} not in the result")
        return None

    def keys(self, where: str, actual: dict[str, Any], expected: dict[str, Any], skip: set[str]) -> None:
        for key, want in expected.items():
            if key in skip:
                continue
            if key not in actual:
                self.fail(f"{where}: key `{key}` missing from the result (expected {want!r})")
            else:
                self.value(f"{where}.{key}", actual[key], want)

    def timepoint_rows(
        self, block: dict[str, Any], criteria_id: str, rows: list[dict[str, Any]], rename: dict[str, str] | None = None
    ) -> None:
        rename = rename or {}
        for row in rows:
            tp = self.timepoint(block, criteria_id, row["id"])
            if tp is not None:
                wanted = {rename.get(k, k): v for k, v in row.items()}
                self.keys(f"{criteria_id}.{row['id']}", tp, wanted, skip={"id"})

    def lesion_rows(self, block: dict[str, Any], criteria_id: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            tp = self.timepoint(block, criteria_id, row["id"])
            if tp is None:
                continue
            found = [les for les in tp.get("lesions") or [] if les.get("id") == row["lesion"]]
            if not found:
                self.fail(f"{criteria_id}.{row['id']}: lesion {row['lesion']!r} not in the result")
                continue
            self.keys(f"{criteria_id}.{row['id']}.{row['lesion']}", found[0], row, skip={"id", "lesion"})

    @staticmethod
    def _matches(item: dict[str, Any], row: dict[str, Any], keys: tuple[str, ...]) -> bool:
        return all(same(item.get(k), row[k]) for k in keys if k in row)

    def warnings_raised(self, rows: list[dict[str, Any]], exclusive: bool = False) -> None:
        raised = self.result.get("warnings", [])
        keys = ("code", "timepoint", "lesion", "criteria")
        for row in rows:
            if not any(self._matches(w, row, keys) for w in raised):
                listed = [(w.get("code"), w.get("timepoint")) for w in raised]
                self.fail(f"warning {row} not raised; raised: {listed}")
        if exclusive:  # examples: no other warning of a listed code may be raised
            codes = {row["code"] for row in rows}
            for w in raised:
                if w.get("code") in codes and not any(self._matches(w, row, keys) for row in rows):
                    self.fail(f"unexpected warning {w.get('code')} at {w.get('timepoint')}: {w.get('message')}")

    def warnings_absent(self, rows: list[Any]) -> None:
        for row in rows:
            row = {"code": row} if isinstance(row, str) else row
            for w in self.result.get("warnings", []):
                if self._matches(w, row, ("code", "timepoint", "lesion", "criteria")):
                    self.fail(
                        f"warning {w.get('code')} must not be raised (at {w.get('timepoint')}): {w.get('message')}"
                    )

    def toxicity(self, present: list[dict[str, Any]], absent: list[dict[str, Any]]) -> None:
        flags = self.result.get("toxicity", [])
        keys = ("flag", "timepoint", "lesion")
        for row in present:
            hits = [f for f in flags if self._matches(f, row, keys)]
            if not hits:
                listed = [(f.get("flag"), f.get("timepoint")) for f in flags]
                self.fail(f"toxicity flag {row} not raised; raised: {listed}")
                continue
            flag = hits[0]
            evidence = flag.get("evidence") if isinstance(flag.get("evidence"), dict) else {}
            where = f"toxicity {row['flag']} {row['timepoint']}"
            for key, want in row.items():
                if key in keys:
                    continue
                if key in flag:
                    self.value(f"{where}.{key}", flag[key], want)
                elif key in evidence:
                    self.value(f"{where}.evidence.{key}", evidence[key], want)
                else:
                    self.fail(f"{where}: `{key}` not reported (expected {want!r})")
        for row in absent:
            for flag in flags:
                if self._matches(flag, row, keys):
                    self.fail(f"toxicity flag {flag.get('flag')} must not be raised at {flag.get('timepoint')}")

    def parameters(self, block: dict[str, Any], criteria_id: str, wanted: dict[str, Any]) -> None:
        params = block.get("parameters", {})
        for key, want in wanted.items():
            self.value(f"{criteria_id}.parameters.{key}", params.get(key), want)

    def done(self) -> None:
        assert not self.problems, "\n".join(self.problems)


GOLDEN_SPECIAL = {"timepoints", "lesions", "warnings", "no_warnings", "toxicity_present", "toxicity_absent"}


def check_golden(result: dict[str, Any], rule_set: str, expected: dict[str, Any]) -> None:
    check = Checker(result)
    top_level = {"warnings", "no_warnings", "toxicity_present", "toxicity_absent"}
    needs_block = any(k not in top_level for k in expected)
    block = check.block(rule_set) if needs_block else None
    if block is not None:
        check.keys(rule_set, block, expected, skip=GOLDEN_SPECIAL)
        check.timepoint_rows(block, rule_set, expected.get("timepoints") or [])
        check.lesion_rows(block, rule_set, expected.get("lesions") or [])
    check.warnings_raised(expected.get("warnings") or [])
    check.warnings_absent(expected.get("no_warnings") or [])
    check.toxicity(expected.get("toxicity_present") or [], expected.get("toxicity_absent") or [])
    check.done()


EXAMPLE_SPECIAL = {
    "timepoints",
    "patient_timepoints",
    "warnings",
    "bor_settings",
    "patient_aggregation",
    "present",
    "absent",
}


def check_example(result: dict[str, Any], criteria_id: str, expected: dict[str, Any]) -> None:
    check = Checker(result)
    if "present" in expected or "absent" in expected:
        check.toxicity(expected.get("present") or [], expected.get("absent") or [])
    needs_block = any(k not in {"present", "absent", "warnings"} for k in expected)
    block = check.block(criteria_id) if needs_block else None
    if block is not None:
        check.keys(criteria_id, block, expected, skip=EXAMPLE_SPECIAL)
        rows = expected.get("timepoints") or []
        check.timepoint_rows(block, criteria_id, [r for r in rows if "lesion" not in r])
        check.lesion_rows(block, criteria_id, [r for r in rows if "lesion" in r])
        # patient-level result of a per-lesion set (chun_morphologic) is the timepoint's `overall`
        check.timepoint_rows(
            block, criteria_id, expected.get("patient_timepoints") or [], rename={"response": "overall"}
        )
        # the parameters the example was computed with must be the ones the tool used
        check.parameters(block, criteria_id, expected.get("bor_settings") or {})
        if "patient_aggregation" in expected:
            actual = block.get("patient_aggregation", block.get("parameters", {}).get("patient_aggregation"))
            check.value(f"{criteria_id}.patient_aggregation", actual, expected["patient_aggregation"])
    if "warnings" in expected:
        check.warnings_raised(expected["warnings"] or [], exclusive=True)
    check.done()


# ---------------------------------------------------------------------------------------------------------
# Golden cases
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule_set", "golden"), golden_params())
def test_golden_case(rule_set: str, golden: dict[str, Any]) -> None:
    doc, criteria = golden_document(rule_set, golden)
    _skip_unimplemented([rule_set, *criteria])
    if "error" in golden:
        with pytest.raises(CrlmError) as info:
            run_library(doc, criteria)
        assert golden["error"] in str(info.value)
        return
    check_golden(run_library(doc, criteria), rule_set, golden["expected"])


@pytest.mark.parametrize(("rule_set", "golden"), golden_params())
def test_golden_case_cli(rule_set: str, golden: dict[str, Any], tmp_path: Path) -> None:
    doc, criteria = golden_document(rule_set, golden)
    _skip_unimplemented([rule_set, *criteria])
    if "error" in golden:
        path = write_case(tmp_path, doc)
        result = run_cli("assess", str(path), "--format", "json", "--criteria", ",".join(criteria))
        assert result.exit_code == EXIT_INPUT_ERROR, result.stdout
        assert golden["error"] in result.stderr
        assert "Traceback" not in result.stderr
        return
    check_golden(run_command(doc, criteria, tmp_path), rule_set, golden["expected"])


# ---------------------------------------------------------------------------------------------------------
# Shared worked cases (examples.yaml)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("example", "criteria_id"), example_params())
def test_example(example: dict[str, Any], criteria_id: str) -> None:
    _skip_unimplemented([criteria_id])
    result = run_library(example_document(example), [criteria_id])
    check_example(result, criteria_id, example["expected"][criteria_id])


@pytest.mark.parametrize(("example", "criteria_id"), example_params())
def test_example_cli(example: dict[str, Any], criteria_id: str, tmp_path: Path) -> None:
    _skip_unimplemented([criteria_id])
    result = run_command(example_document(example), [criteria_id], tmp_path)
    check_example(result, criteria_id, example["expected"][criteria_id])


# ---------------------------------------------------------------------------------------------------------
# Completeness, both ways
# ---------------------------------------------------------------------------------------------------------


def test_examples_header_lists_criteria_ids() -> None:
    assert "recist1.1" in announced_ids(), "could not read the `ids:` line of the examples header"


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_golden_file_names_an_existing_rule_set(path: Path) -> None:
    data = _load_yaml(path)
    assert isinstance(data, dict) and "rule_set" in data, f"{path.name}: needs `rule_set:` and `cases:`"
    rule_set = data["rule_set"]
    assert path.stem == rule_set, f"{path.name} holds cases for `{rule_set}`; name it {rule_set}.yaml"
    if rule_set in builtin_ids():
        return
    if rule_set in announced_ids():
        pytest.skip(f"{NOT_IMPLEMENTED}: {rule_set}")
    pytest.fail(f"{path.name}: no rule set `{rule_set}` (shipped: {builtin_ids()}; planned: {sorted(announced_ids())})")


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_golden_file_is_well_formed(path: Path) -> None:
    data = _load_yaml(path)
    cases = data.get("cases")
    assert isinstance(cases, list) and cases, f"{path.name}: `cases` must be a non-empty list"
    problems = [
        f"{path.name}: unknown top-level key `{key}` (use rule_set, cases, or an x- anchor holder)"
        for key in data
        if key not in ("rule_set", "cases") and not str(key).startswith("x-")
    ]
    names: set[str] = set()
    for i, case in enumerate(cases):
        name = case.get("name")
        where = f"{path.name} case {i} ({name})"
        if not isinstance(name, str) or not SNAKE_CASE.match(name):
            problems.append(f"{where}: name must be snake_case")
        if name in names:
            problems.append(f"{where}: duplicate name")
        names.add(name)
        unknown = set(case) - GOLDEN_CASE_KEYS
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("description", "citation", "case"):
            if not case.get(key):
                problems.append(f"{where}: `{key}` is required")
        if ("expected" in case) == ("error" in case):
            problems.append(f"{where}: give exactly one of `expected` and `error`")
    assert not problems, "\n".join(problems)


def test_every_shipped_rule_set_has_golden_cases() -> None:
    shipped = builtin_ids()
    assert shipped, "no shipped rule sets found"
    problems = []
    for rule_id in shipped:
        path = GOLDEN_DIR / f"{rule_id}.yaml"
        if not path.is_file():
            problems.append(f"rule set `{rule_id}` has no golden file tests/golden/{rule_id}.yaml")
            continue
        cases = (_load_yaml(path) or {}).get("cases") or []
        if len(cases) < 3:
            problems.append(f"tests/golden/{rule_id}.yaml has {len(cases)} case(s); at least 3 are required")
    assert not problems, "\n".join(problems)


def test_examples_fixture_equals_shared_file() -> None:
    if not SHARED_EXAMPLES.is_file():
        pytest.skip(f"shared examples not present at {SHARED_EXAMPLES}")
    fixture = EXAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)[EXAMPLES_HEADER_LINES:]
    shared = SHARED_EXAMPLES.read_text(encoding="utf-8")
    assert "".join(fixture) == shared, (
        "tests/fixtures/examples.yaml differs from the shared examples.yaml; copy the shared file below the "
        f"{EXAMPLES_HEADER_LINES} header lines"
    )

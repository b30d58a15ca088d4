"""Safety: the tool never executes what it reads, never blows up on hostile YAML, never damages or overwrites
its inputs or existing outputs, writes CSV that a spreadsheet cannot run, answers the same whatever the row
order, and never loses a row.

(a) no dynamic code execution or unsafe deserialisation in the package source;
(b) YAML `!!python/...` tags in a case file, a rule file, a column map and a `--set` value are refused, never run;
(c) alias bombs ("billion laughs") in each YAML input are refused quickly;
(d) atomic outputs: a failed run leaves existing outputs untouched and no temporary file behind;
(e) no command writes over one of its inputs;
(f) CSV formula neutralisation in every CSV output (and `--no-safe-csv` turns it off);
(g) row order never changes an output byte;
(h) generated cohorts with injected bad rows: every row is scored or rejected, and rejections set exactly the
    affected subjects aside;
(i) outputs never destroy anything (issue 13): an output that is, holds or lies inside an input (rule files
    reached through `extends:` or a case's `criteria:`, input folders), two outputs on one path, a FIFO or a
    device are refused as usage errors; stale side files go; `bor` is all-or-nothing; SIGTERM leaves no
    temporary file; two runs into one output never leave a mixed set; CSV on stdout is formula-safe.
"""

from __future__ import annotations

import ast
import csv
import errno
import io
import json
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crlm_response.writers as writers
from crlm_response.synthetic import generate_cohort

PACKAGE = ROOT / "crlm_response"
SAMPLE_CASE = ROOT / "sample_cases" / "folfox_bev_partial_response.yaml"
TRIAL = ROOT / "sample_cases" / "trial_lesions.csv"
OVERWRITE = "would overwrite the input"

LESIONS_CSV = """\
subject_id,timepoint,day,lesion_id,kind,organ,is_lymph_node,longest_diameter_mm,status,agents
P1,baseline,0,L1,target,liver,false,40,present,oxaliplatin;fluorouracil
P1,baseline,0,L2,target,lung,false,30,present,oxaliplatin;fluorouracil
P1,FU1,56,L1,,,,28,present,oxaliplatin;fluorouracil
P1,FU1,56,L2,,,,20,present,oxaliplatin;fluorouracil
P2,baseline,0,L1,target,liver,false,50,present,irinotecan
P2,FU1,56,L1,,,,45,present,irinotecan
"""

VARIANT_RULES = """\
id: site_recist
extends: recist1.1
name: RECIST 1.1 (site variant)
description: Site variant used in protocol XYZ.
parameters:
  pd_pct_from_nadir: {value: 25, citation: "E2009 §4.3.1; protocol XYZ amendment 2"}
"""

COLUMN_MAP = "columns: {subject_id: subject_id}\n"

VISITS_CSV = """\
subject_id,day,response
A,56,PR
A,84,PR
A,140,PD
B,42,SD
B,98,PR
B,154,PR
C,49,NE
C,105,SD
D,56,CR
D,112,CR
D,168,PR
"""


def clean(result: Any) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, stream
        assert "internal error" not in stream, stream


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def case_text() -> str:
    return SAMPLE_CASE.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# (a) no eval/exec/compile/__import__/pickle/yaml.load/pd.eval/DataFrame.query in the package
# --------------------------------------------------------------------------------------------------

FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}
FORBIDDEN_YAML = {"load", "unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"}
FORBIDDEN_METHODS = {"eval", "query"}  # pandas' pd.eval / DataFrame.eval / DataFrame.query parse expressions
FORBIDDEN_TEXT = (
    "pickle",
    "yaml.load(",
    "yaml.unsafe_load",
    "pd.eval",
    "pandas.eval",
    "DataFrame.query",
    "UnsafeLoader",
    "yaml.Loader",
    "FullLoader",
)


def forbidden_uses(path: Path) -> list[str]:
    """Calls and imports that could run text from an input as code, found on the syntax tree (a method such as
    `self.compile(node)` of the condition compiler is not the builtin `compile`)."""
    source = path.read_text(encoding="utf-8")
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                hits.append(f"{path.name}:{node.lineno}: {func.id}(...)")
            if isinstance(func, ast.Attribute):
                owner = ast.unparse(func.value)
                if func.attr in FORBIDDEN_BUILTINS and owner in ("builtins", "__builtins__"):
                    hits.append(f"{path.name}:{node.lineno}: {owner}.{func.attr}(...)")
                if func.attr in FORBIDDEN_YAML and owner == "yaml":
                    hits.append(f"{path.name}:{node.lineno}: yaml.{func.attr}(...)")
                if func.attr in FORBIDDEN_METHODS:
                    hits.append(f"{path.name}:{node.lineno}: {ast.unparse(func)}(...)")
            if isinstance(func, ast.Name) and func.id == "getattr" and node.args:
                target = ast.unparse(node.args[0])
                if target in ("builtins", "__builtins__"):
                    hits.append(f"{path.name}:{node.lineno}: getattr({target}, ...)")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    hits.append(f"{path.name}:{node.lineno}: import {name}")
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("#", 1)[0]
        for text in FORBIDDEN_TEXT:
            if text in code:
                hits.append(f"{path.name}:{number}: {text!r} in {line.strip()!r}")
    return hits


def test_package_source_has_no_dynamic_execution_or_unsafe_loading() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert files, PACKAGE
    hits = [hit for path in files for hit in forbidden_uses(path)]
    assert hits == [], "\n".join(hits)


def test_the_source_scan_would_see_a_forbidden_call(tmp_path: Path) -> None:
    """The scanner itself works (a scan that finds nothing because it looks at nothing proves nothing)."""
    sample = write(
        tmp_path / "bad.py",
        "import pickle\nx = eval('1')\ny = df.query('a > 1')\nz = yaml.load(t)\n"
        "class C:\n    def f(self, n):\n        return self.compile(n)\n",
    )
    hits = forbidden_uses(sample)
    assert any("eval(" in h for h in hits) and any("query" in h for h in hits)
    assert any("import pickle" in h for h in hits) and any("yaml.load" in h for h in hits)
    assert not any("self.compile" in h for h in hits)


# --------------------------------------------------------------------------------------------------
# (b) YAML python tags are refused and never executed
# --------------------------------------------------------------------------------------------------

TAGS = {
    "apply_os_system": '!!python/object/apply:os.system ["touch {marker}"]',
    "new_os_system": '!!python/object/new:os.system ["touch {marker}"]',
    "apply_subprocess": '!!python/object/apply:subprocess.check_call [["touch", "{marker}"]]',
    "name_os_system": "!!python/name:os.system",
    "module_os": "!!python/module:os",
}


def tagged_inputs(kind: str, payload: str, tmp_path: Path) -> list[str]:
    """The CLI arguments of a run that reads `payload` in a `kind` input."""
    if kind == "case":
        path = write(tmp_path / "case.yaml", case_text().replace("case_id: CRLM-0001", f"case_id: {payload}", 1))
        assert payload in path.read_text(encoding="utf-8")
        return ["assess", str(path)]
    if kind == "case_key":
        path = write(tmp_path / "case.yaml", f"? {payload}\n: 1\n" + case_text())
        return ["assess", str(path)]
    if kind == "rule_validate":
        path = write(
            tmp_path / "rules.yaml", VARIANT_RULES.replace("name: RECIST 1.1 (site variant)", f"name: {payload}")
        )
        return ["rules", "validate", str(path)]
    if kind == "rule_criteria":
        path = write(
            tmp_path / "rules.yaml", VARIANT_RULES.replace("name: RECIST 1.1 (site variant)", f"name: {payload}")
        )
        return ["assess", str(write(tmp_path / "case.yaml", case_text())), "--criteria", str(path)]
    if kind == "column_map":
        lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
        path = write(tmp_path / "map.yaml", f"columns:\n  subject_id: {payload}\n")
        return ["batch", str(lesions), "--map", str(path), "-o", str(tmp_path / "out" / "r.csv")]
    if kind == "set_value":
        return ["assess", str(write(tmp_path / "case.yaml", case_text())), "--set", f"recist1.1.sd_min_days={payload}"]
    raise AssertionError(kind)


@pytest.mark.parametrize("tag", sorted(TAGS))
@pytest.mark.parametrize("kind", ["case", "case_key", "rule_validate", "rule_criteria", "column_map", "set_value"])
def test_python_tags_are_refused_and_never_executed(kind: str, tag: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    args = tagged_inputs(kind, TAGS[tag].replace("{marker}", str(marker)), tmp_path)
    result = run_cli(*args)
    clean(result)
    assert not marker.exists(), f"the YAML tag was executed: {marker} exists"
    if kind == "set_value":
        assert result.exit_code == 2, result.stderr  # a bad --set is a usage error
    else:
        assert result.exit_code == 1, result.stderr
        assert "unsupported YAML tag" in result.stderr and "tags such as !!python/object are refused" in result.stderr


# --------------------------------------------------------------------------------------------------
# (c) alias bombs are refused quickly
# --------------------------------------------------------------------------------------------------


def bomb_lines(levels: int = 9, width: int = 10) -> list[str]:
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return lines


def bomb_inputs(kind: str, tmp_path: Path) -> list[str]:
    block = "\n".join(bomb_lines()) + "\n"
    if kind == "case":
        path = write(tmp_path / "case.yaml", block + case_text().replace("case_id: CRLM-0001", "case_id: *a9", 1))
        return ["assess", str(path)]
    if kind == "rule_validate":
        path = write(
            tmp_path / "rules.yaml",
            block + VARIANT_RULES.replace("description: Site variant used in protocol XYZ.", "description: *a9"),
        )
        return ["rules", "validate", str(path)]
    if kind == "rule_criteria":
        path = write(
            tmp_path / "rules.yaml",
            block + VARIANT_RULES.replace("description: Site variant used in protocol XYZ.", "description: *a9"),
        )
        return ["assess", str(write(tmp_path / "case.yaml", case_text())), "--criteria", str(path)]
    if kind == "column_map":
        lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
        path = write(
            tmp_path / "map.yaml", block + "columns: {subject_id: subject_id}\nvalues: {status: {GONE: *a9}}\n"
        )
        return ["batch", str(lesions), "--map", str(path), "-o", str(tmp_path / "out" / "r.csv")]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["case", "rule_validate", "rule_criteria", "column_map"])
def test_alias_bombs_are_refused_quickly(kind: str, tmp_path: Path) -> None:
    args = bomb_inputs(kind, tmp_path)
    start = time.monotonic()
    result = run_cli(*args)
    elapsed = time.monotonic() - start
    clean(result)
    assert result.exit_code == 1, result.stderr
    assert "document expands to more than" in result.stderr, result.stderr
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_alias_bomb_in_a_set_value_is_refused_quickly_and_briefly(tmp_path: Path) -> None:
    """`--set` values are YAML too. Six levels (10**6 leaves) keep this test light; nine levels make the tool run
    for over 30 s and exhaust memory while it formats the value into its error message."""
    value = "{" + ", ".join(bomb_lines(levels=6)) + "}"
    start = time.monotonic()
    result = run_cli("assess", write(tmp_path / "case.yaml", case_text()), "--set", f"recist1.1.sd_min_days={value}")
    elapsed = time.monotonic() - start
    clean(result)
    assert result.exit_code == 2
    assert len(result.stderr) < 5_000, f"the error message is {len(result.stderr):,} characters (the alias expansion)"
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_deep_nesting_is_refused_without_recursion_error(tmp_path: Path) -> None:
    deep = "[" * 5000 + "]" * 5000
    path = write(tmp_path / "case.yaml", case_text() + f"\nx_deep: {deep}\n")
    result = run_cli("assess", path)
    clean(result)
    assert result.exit_code == 1
    assert "nesting deeper than" in result.stderr or "invalid YAML" in result.stderr, result.stderr


# --------------------------------------------------------------------------------------------------
# (d) atomic outputs
# --------------------------------------------------------------------------------------------------

OLD = "OLD CONTENT - must survive a failed run\n"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")) or ".tmp" in p.name)


def seed_outputs(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write(folder / name, OLD)


def assert_untouched(folder: Path, names: list[str]) -> None:
    changed = [name for name in names if (folder / name).read_text(encoding="utf-8") != OLD]
    assert changed == [], f"a failed run changed existing outputs: {changed}"
    assert leftovers(folder) == [], f"temporary files left behind: {leftovers(folder)}"


def failing_write_csv(monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
    """Make the `fail_at`-th CSV write fail as a full disk would."""
    real = writers.write_csv
    calls = {"n": 0}

    def write_csv(frame: pd.DataFrame, path: Any) -> None:
        calls["n"] += 1
        if calls["n"] == fail_at:
            Path(path).write_text("partial", encoding="utf-8")  # a real failure leaves half a file
            raise OSError(errno.ENOSPC, "No space left on device")
        real(frame, path)

    monkeypatch.setattr(writers, "write_csv", write_csv)


BATCH_OUTPUTS = ["r.csv", "r.best.csv", "r.errors.csv", "r.warnings.csv"]


@pytest.mark.parametrize("fail_at", [1, 2, 3])
@pytest.mark.parametrize("engine", ["pandas", "chunked"])
def test_a_failed_write_leaves_existing_batch_outputs_untouched(
    engine: str, fail_at: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All or nothing: when the run fails while writing its 2nd or 3rd output, the 1st must not already have been
    replaced (a new r.csv next to an old r.errors.csv is a set of results that never existed)."""
    out = tmp_path / "out"
    seed_outputs(out, BATCH_OUTPUTS)
    failing_write_csv(monkeypatch, fail_at)
    extra = ["--chunk-rows", "1000"] if engine == "chunked" else []
    result = run_cli("batch", TRIAL, "-o", out / "r.csv", "--criteria", "recist1.1", *extra)
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert_untouched(out, BATCH_OUTPUTS)


def test_a_failed_write_is_reported_as_an_output_problem_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk is the user's to fix: name the file and the reason, like every other input/output error."""
    failing_write_csv(monkeypatch, 1)
    out = tmp_path / "out" / "r.csv"
    result = run_cli("batch", TRIAL, "-o", out, "--criteria", "recist1.1")
    assert result.exit_code == 1
    clean(result)
    assert str(out) in result.stderr and "No space left on device" in result.stderr, result.stderr


def test_an_invalid_input_leaves_existing_outputs_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    seed_outputs(out, BATCH_OUTPUTS + ["report.html", "assess.txt", "bor.csv"])
    bad_csv = write(tmp_path / "bad.csv", LESIONS_CSV.replace("timepoint,", "visit,", 1))
    result = run_cli("batch", bad_csv, "-o", out / "r.csv")
    assert result.exit_code == 1 and "missing required column" in result.stderr
    bad_case = write(tmp_path / "bad.yaml", case_text().replace("timepoints:", "timepoint:", 1))
    for args in (["assess", bad_case, "-o", out / "assess.txt"], ["report", bad_case, "-o", out / "report.html"]):
        result = run_cli(*args)
        assert result.exit_code == 1, result.stderr
        clean(result)
    result = run_cli("bor", write(tmp_path / "v.csv", "subject_id,day\nA,56\n"), "-o", out / "bor.csv")
    assert result.exit_code == 1
    assert_untouched(out, BATCH_OUTPUTS + ["report.html", "assess.txt", "bor.csv"])


@pytest.mark.parametrize("command", ["assess", "report", "bor"])
def test_a_failed_write_of_other_commands_leaves_the_old_output(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    seed_outputs(out, ["result.txt"])

    def write_text(path: Any, text: str) -> None:  # the real one, failing half-way
        with writers.atomic_path(path) as tmp:
            tmp.write_text(text[: len(text) // 2], encoding="utf-8")
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(writers, "write_text", write_text)
    failing_write_csv(monkeypatch, 1)
    args = {
        "assess": ["assess", SAMPLE_CASE],
        "report": ["report", SAMPLE_CASE],
        "bor": ["bor", write(tmp_path / "v.csv", VISITS_CSV)],
    }[command]
    result = run_cli(*args, "-o", out / "result.txt")
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert_untouched(out, ["result.txt"])


# --------------------------------------------------------------------------------------------------
# (e) no command writes over one of its inputs
# --------------------------------------------------------------------------------------------------


def overwrite_runs(tmp_path: Path) -> dict[str, tuple[list[Any], Path]]:
    """name -> (CLI args, the input the output would replace)."""
    case = write(tmp_path / "case.yaml", case_text())
    lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
    rules = write(tmp_path / "site_recist.yaml", VARIANT_RULES)
    column_map = write(tmp_path / "map.yaml", COLUMN_MAP)
    visits = write(tmp_path / "visits.csv", VISITS_CSV)
    results = tmp_path / "res" / "r.csv"
    assert run_cli("batch", lesions, "-o", results).exit_code == 0
    trial = tmp_path / "trial.csv"
    trial.write_bytes(TRIAL.read_bytes())
    return {
        "assess -o case": (["assess", case, "-o", case], case),
        "assess -o rule file": (["assess", case, "--criteria", rules, "-o", rules], rules),
        "report -o case": (["report", case, "-o", case], case),
        "report -o rule file": (["report", case, "--criteria", rules, "-o", rules], rules),
        "batch -o input": (["batch", lesions, "-o", lesions], lesions),
        "batch --errors input": (["batch", lesions, "-o", tmp_path / "o" / "r.csv", "--errors", lesions], lesions),
        "batch --best input": (["batch", lesions, "-o", tmp_path / "o" / "r.csv", "--best", lesions], lesions),
        "batch --summary-file input": (["batch", lesions, "--summary-file", lesions], lesions),
        "batch -o map": (["batch", lesions, "--map", column_map, "-o", column_map], column_map),
        "batch -o rule file": (["batch", lesions, "--criteria", rules, "-o", rules], rules),
        "batch --summary-file rule file": (
            ["batch", lesions, "--criteria", rules, "-o", tmp_path / "o" / "r.csv", "--summary-file", rules],
            rules,
        ),
        "batch chunked --errors input": (
            ["batch", trial, "--chunk-rows", "1000", "-o", tmp_path / "c" / "r.csv", "--errors", trial],
            trial,
        ),
        "bor -o input": (["bor", visits, "-o", visits], visits),
        "bor --errors input": (["bor", visits, "-o", tmp_path / "o" / "b.csv", "--errors", visits], visits),
        "diff -o cases": (
            [
                "diff",
                "recist1.1",
                "recist1.1",
                "--set-b",
                "recist1.1.confirmation_required=true",
                "--cases",
                lesions,
                "-o",
                lesions,
            ],
            lesions,
        ),
        "diff -o rule file": (["diff", "recist1.1", rules, "--cases", lesions, "-o", rules], rules),
        "plot -o results": (["plot", "waterfall", results, "-o", results], results),
    }


OVERWRITE_CASES = [
    "assess -o case",
    "assess -o rule file",
    "report -o case",
    "report -o rule file",
    "batch -o input",
    "batch --errors input",
    "batch --best input",
    "batch --summary-file input",
    "batch -o map",
    "batch -o rule file",
    "batch --summary-file rule file",
    "batch chunked --errors input",
    "bor -o input",
    "bor --errors input",
    "diff -o cases",
    "diff -o rule file",
    "plot -o results",
]


@pytest.mark.parametrize("name", OVERWRITE_CASES)
def test_no_command_writes_over_one_of_its_inputs(name: str, tmp_path: Path) -> None:
    args, victim = overwrite_runs(tmp_path)[name]
    before = victim.read_bytes()
    result = run_cli(*args)
    after = victim.read_bytes()
    assert after == before, f"{name}: the input {victim.name} was overwritten (exit {result.exit_code})"
    assert result.exit_code == 2, result.stderr  # a usage error (issue 13): the output path is wrong
    assert OVERWRITE + f" {victim}" in result.stderr, result.stderr
    clean(result)


def test_an_output_reached_through_another_spelling_of_the_input_path_is_refused(tmp_path: Path) -> None:
    lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(lesions)
    for output in (tmp_path / "sub" / ".." / "lesions.csv", link):
        result = run_cli("batch", lesions, "-o", output)
        assert result.exit_code == 2 and OVERWRITE in result.stderr, (output, result.stderr)
    assert lesions.read_text(encoding="utf-8") == LESIONS_CSV


# --------------------------------------------------------------------------------------------------
# (f) CSV formula neutralisation
# --------------------------------------------------------------------------------------------------

FORMULA_CSV = """\
subject_id,timepoint,day,lesion_id,kind,organ,location,is_lymph_node,longest_diameter_mm,morphology_group,status,agents,regimen
"=HYPERLINK(""http://x"")",baseline,0,+L1,target,liver,@SUM(1),false,40,3,present,oxaliplatin;fluorouracil;bevacizumab,=1+1
"=HYPERLINK(""http://x"")",baseline,0,-L2,target,liver,-2+3,false,8,3,present,oxaliplatin;fluorouracil;bevacizumab,=1+1
"=HYPERLINK(""http://x"")",FU1,56,+L1,,,,,28,2,present,oxaliplatin;fluorouracil;bevacizumab,=1+1
"=HYPERLINK(""http://x"")",FU1,56,-L2,,,,,6,2,present,oxaliplatin;fluorouracil;bevacizumab,=1+1
@P2,baseline,0,L1,target,liver,segment II,false,50,3,present,irinotecan,FOLFIRI
@P2,FU1,56,L1,,,,,=2+3,3,present,irinotecan,FOLFIRI
+P3,baseline,0,L1,target,liver,segment II,false,50,3,present,irinotecan,FOLFIRI
+P3,FU1,56,L1,,,,,70,3,present,irinotecan,FOLFIRI
-P4,baseline,0,L1,target,liver,segment II,false,60,3,present,irinotecan,FOLFIRI
-P4,FU1,56,L1,,,,,30,2,present,irinotecan,FOLFIRI
"""
DANGEROUS_IDS = {'=HYPERLINK("http://x")', "@P2", "+P3", "-P4", "+L1", "-L2", "=2+3"}


def csv_cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def formula_cells(paths: list[Path]) -> list[str]:
    return [
        f"{p.name}: {cell!r}"
        for p in paths
        for cell in csv_cells(p)
        if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not is_number(cell)
    ]


def batch_outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.csv"))


def test_every_batch_csv_output_is_formula_safe_and_numbers_stay_numbers(tmp_path: Path) -> None:
    source = write(tmp_path / "in.csv", FORMULA_CSV)
    out = tmp_path / "out"
    result = run_cli(
        "batch", source, "-o", out / "r.csv", "--criteria", "all", "--explain", "--summary-file", out / "summary.csv"
    )
    assert result.exit_code == 0, result.stderr
    paths = batch_outputs(out)
    assert {"r.csv", "r.best.csv", "r.errors.csv", "r.warnings.csv", "r.lesions.csv"} <= {p.name for p in paths}
    assert formula_cells(paths) == []
    cells = {cell for p in paths for cell in csv_cells(p)}
    for dangerous in DANGEROUS_IDS:
        assert "'" + dangerous in cells, f"{dangerous!r} is not in any output, neutralised"
    visits = pd.read_csv(out / "r.csv", dtype=str, keep_default_na=False)
    negative = visits.loc[visits["criteria"] == "recist1.1", "pct_from_baseline"]
    assert any(v.startswith("-") and is_number(v) for v in negative), negative.tolist()


def test_no_safe_csv_writes_cells_as_they_were(tmp_path: Path) -> None:
    source = write(tmp_path / "in.csv", FORMULA_CSV)
    out = tmp_path / "out"
    result = run_cli("batch", source, "-o", out / "r.csv", "--criteria", "all", "--no-safe-csv")
    assert result.exit_code == 0, result.stderr
    cells = {cell for p in batch_outputs(out) for cell in csv_cells(p)}
    assert DANGEROUS_IDS <= cells
    assert not any(c.startswith("'") and c[1:] in DANGEROUS_IDS for c in cells)


def test_chunked_batch_outputs_are_formula_safe(tmp_path: Path) -> None:
    cohort = generate_cohort(subjects=60, seed=3)
    first = cohort["subject_id"] == cohort["subject_id"].iloc[0]
    cohort.loc[first, "subject_id"] = '=HYPERLINK("http://x")'
    cohort.loc[cohort["lesion_id"] == "T1", "lesion_id"] = "+T1"
    source = tmp_path / "in.csv"
    cohort.to_csv(source, index=False)
    assert len(cohort) >= 1000
    out = tmp_path / "out"
    result = run_cli(
        "batch", source, "-o", out / "r.csv", "--criteria", "recist1.1,chun_morphologic", "--chunk-rows", "1000"
    )
    assert result.exit_code == 0, result.stderr
    paths = batch_outputs(out)
    assert formula_cells(paths) == []
    cells = {cell for p in paths for cell in csv_cells(p)}
    assert '\'=HYPERLINK("http://x")' in cells and "'+T1" in cells


SDTM_TU = """\
STUDYID,DOMAIN,USUBJID,TUSEQ,TULNKID,TUTESTCD,TUORRES,TUSTRESC,TULOC,TUEVAL,VISITNUM,VISIT
ST1,TU,=HYPERLINK(1),1,T01,TUMIDENT,TARGET,TARGET,LIVER,INVESTIGATOR,10,SCREENING
ST1,TU,=HYPERLINK(1),2,T02,TUMIDENT,TARGET,TARGET,LUNG,INVESTIGATOR,10,SCREENING
ST1,TU,S-002,1,@T01,TUMIDENT,TARGET,TARGET,LIVER,INVESTIGATOR,10,SCREENING
"""
SDTM_TR = """\
STUDYID,DOMAIN,USUBJID,TRSEQ,TRLNKGRP,TRLNKID,TRTESTCD,TRORRES,TRORRESU,TRSTRESC,TRSTRESN,TRSTRESU,TRMETHOD,TREVAL,VISITNUM,VISIT,TRDTC,TRDY
ST1,TR,=HYPERLINK(1),1,A1,T01,LDIAM,40,mm,40,40,mm,CT SCAN,INVESTIGATOR,10,SCREENING,2025-01-06,-4
ST1,TR,=HYPERLINK(1),2,A1,T02,LDIAM,30,mm,30,30,mm,CT SCAN,INVESTIGATOR,10,SCREENING,2025-01-06,-4
ST1,TR,=HYPERLINK(1),3,A2,T01,LDIAM,28,mm,28,28,mm,CT SCAN,INVESTIGATOR,20,+WEEK 8,2025-03-03,53
ST1,TR,=HYPERLINK(1),4,A2,T02,LDIAM,20,mm,20,20,mm,CT SCAN,INVESTIGATOR,20,+WEEK 8,2025-03-03,53
ST1,TR,S-002,1,A1,@T01,LDIAM,50,mm,50,50,mm,CT SCAN,INVESTIGATOR,10,SCREENING,2025-01-08,-2
ST1,TR,S-002,2,A2,@T01,LDIAM,45,mm,45,45,mm,CT SCAN,INVESTIGATOR,20,+WEEK 8,2025-03-05,55
"""


def test_sdtm_rs_and_adam_outputs_are_formula_safe(tmp_path: Path) -> None:
    tu, tr = write(tmp_path / "tu.csv", SDTM_TU), write(tmp_path / "tr.csv", SDTM_TR)
    out = tmp_path / "out"
    result = run_cli(
        "batch",
        "--sdtm-tu",
        tu,
        "--sdtm-tr",
        tr,
        "-o",
        out / "r.csv",
        "--out-rs",
        out / "rs.csv",
        "--adam-dir",
        out / "adam",
    )
    assert result.exit_code == 0, result.stderr
    paths = batch_outputs(out)
    assert {"rs.csv", "adrs.csv", "adtr.csv", "r.csv"} <= {p.name for p in paths}
    assert formula_cells(paths) == []
    cells = {cell for p in paths for cell in csv_cells(p)}
    assert "'=HYPERLINK(1)" in cells and "'+WEEK 8" in cells


def test_bor_and_diff_csv_outputs_are_formula_safe(tmp_path: Path) -> None:
    visits = write(tmp_path / "v.csv", VISITS_CSV.replace("\nA,", "\n=cmd|' /C calc'!A0,").replace("\nB,", "\n@B,"))
    out = tmp_path / "out"
    result = run_cli("bor", visits, "-o", out / "bor.csv")
    assert result.exit_code == 0, result.stderr
    source = write(tmp_path / "in.csv", FORMULA_CSV)
    result = run_cli(
        "diff",
        "recist1.1",
        "recist1.1",
        "--set-b",
        "recist1.1.confirmation_required=true",
        "--cases",
        source,
        "-o",
        out / "diff.csv",
    )
    assert result.exit_code == 0, result.stderr
    paths = batch_outputs(out)
    assert formula_cells(paths) == []
    cells = {cell for p in paths for cell in csv_cells(p)}
    assert "'=cmd|' /C calc'!A0" in cells


# --------------------------------------------------------------------------------------------------
# (g) row order never changes an output byte
# --------------------------------------------------------------------------------------------------


def shuffled(text: str, seed: int) -> str:
    header, *rows = text.splitlines(keepends=True)
    if seed == -1:
        rows.reverse()
    else:
        random.Random(seed).shuffle(rows)
    return header + "".join(rows)


def output_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("engine", ["pandas", "chunked"])
def test_batch_outputs_are_byte_identical_in_any_row_order(engine: str, tmp_path: Path) -> None:
    text = TRIAL.read_text(encoding="utf-8")
    extra = ["--chunk-rows", "1000"] if engine == "chunked" else []
    runs = {}
    for seed in (0, 1, 2, -1):
        source = write(tmp_path / f"in{seed}.csv", text if seed == 0 else shuffled(text, seed))
        out = tmp_path / f"out{seed}"
        result = run_cli(
            "batch",
            source,
            "-o",
            out / "r.csv",
            "--criteria",
            "all",
            "--explain",
            "--summary-file",
            out / "summary.csv",
            *extra,
        )
        assert result.exit_code == 0, result.stderr
        runs[seed] = output_bytes(out)
    reference = runs[0]
    assert len(reference) >= 5, sorted(reference)
    for seed, outputs in runs.items():
        assert sorted(outputs) == sorted(reference)
        differ = [name for name in reference if outputs[name] != reference[name]]
        assert differ == [], f"row order {seed} changed {differ}"


def bor_outputs_in_orders(text: str, tmp_path: Path, args: list[str]) -> dict[int, dict[str, bytes]]:
    runs = {}
    for seed in (0, 1, 2, 3, -1):
        source = write(tmp_path / f"v{seed}.csv", text if seed == 0 else shuffled(text, seed))
        out = tmp_path / f"bor{seed}"
        result = run_cli("bor", source, "-o", out / "bor.csv", *args)
        # exit 1 when no subject is left (issue 13); the exit code is part of the answer that must not change
        assert result.exit_code in (0, 1), result.stderr
        runs[seed] = {name: data for name, data in output_bytes(out).items() if "errors" not in name}
        runs[seed]["exit code"] = bytes([result.exit_code])
    return runs


@pytest.mark.parametrize("confirm", ["--confirm", "--no-confirm"])
def test_bor_output_is_byte_identical_in_any_row_order(confirm: str, tmp_path: Path) -> None:
    fixtures = sorted((ROOT / "tests" / "fixtures" / "bor").glob("*.csv"))
    frames = []
    for i, path in enumerate(p for p in fixtures if not p.name.endswith(".expected.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if {"subject_id", "day", "response"} <= set(frame.columns):
            frame = frame[["subject_id", "day", "response"]].copy()
            frame["subject_id"] = f"F{i}-" + frame["subject_id"]
            frames.append(frame)
    text = pd.concat(frames, ignore_index=True).to_csv(index=False) + VISITS_CSV.split("\n", 1)[1]
    runs = bor_outputs_in_orders(text, tmp_path, [confirm])
    for seed, outputs in runs.items():
        assert outputs == runs[0], f"row order {seed} changed the bor output"


def test_bor_output_does_not_depend_on_the_order_of_two_responses_on_one_day(tmp_path: Path) -> None:
    """Two responses on the same day for one subject (a duplicated visit with a correction, two readers merged):
    the answer must be one answer - the visit rejected, or resolved the same way whatever the order."""
    text = "subject_id,day,response\nA,56,PR\nA,56,PD\nA,112,PR\nB,56,SD\nB,56,PR\nB,84,PR\n"
    runs = bor_outputs_in_orders(text, tmp_path, ["--confirm"])
    answers = {seed: outputs["bor.csv"].decode() for seed, outputs in runs.items()}
    assert len(set(answers.values())) == 1, "\n".join(f"order {s}:\n{a}" for s, a in answers.items())


# --------------------------------------------------------------------------------------------------
# (h) generated cohorts with injected bad rows: nothing is lost, exactly the affected subjects are set aside
# --------------------------------------------------------------------------------------------------

MUTATIONS = ("negative_size", "bad_status", "text_day", "duplicate")
ACCOUNTING_LINE = "rows read {read} = rows scored {scored} + rows rejected {rejected}"


def inject(cohort: pd.DataFrame, picks: list[tuple[int, str]]) -> tuple[pd.DataFrame, set[str]]:
    """Apply the mutations to rows of the cohort; return the new table and the subjects that got a bad row."""
    frame = cohort.astype(object).copy()
    frame = frame.where(frame.notna(), None)
    duplicates = []
    touched: set[str] = set()
    for index, mutation in picks:
        row = index % len(cohort)
        touched.add(str(frame.at[row, "subject_id"]))
        if mutation == "negative_size":
            frame.at[row, "longest_diameter_mm"] = -12.0
        elif mutation == "bad_status":
            frame.at[row, "status"] = "vanished"
        elif mutation == "text_day":
            frame.at[row, "day"] = f"day {frame.at[row, 'day']}"
        else:
            duplicates.append(row)
    if duplicates:
        copies = frame.loc[duplicates]
        frame = pd.concat([frame, copies]).sort_index(kind="stable").reset_index(drop=True)
    return frame, touched


def read_output(path: Path) -> pd.DataFrame:
    """An output table; a 0-byte file (see test_outputs_keep_their_header_when_every_subject_is_rejected) is empty."""
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=["subject_id"])
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def csv_data_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        return max(0, sum(1 for row in csv.reader(handle) if row) - 1)


@settings(
    max_examples=int(os.environ.get("CRLM_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.integers(0, 10_000),
    subjects=st.integers(3, 12),
    picks=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(MUTATIONS)), min_size=0, max_size=5),
)
def test_injected_bad_rows_are_accounted_for_and_set_exactly_their_subjects_aside(
    seed: int, subjects: int, picks: list[tuple[int, str]]
) -> None:
    cohort = generate_cohort(subjects=subjects, seed=seed)
    frame, touched = inject(cohort, picks)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        source = tmp / "cohort.csv"
        frame.to_csv(source, index=False)
        result = run_cli("batch", source, "-o", tmp / "out" / "r.csv", "--criteria", "recist1.1")
        clean(result)
        # issue 13: a run that scores no subject exits 1 (its outputs are still written)
        nothing_left = touched >= set(cohort["subject_id"].astype(str))
        assert result.exit_code == (1 if nothing_left else 0), result.stderr
        errors = read_output(tmp / "out" / "r.errors.csv")
        best = read_output(tmp / "out" / "r.best.csv")
        visits = read_output(tmp / "out" / "r.csv")
        read = csv_data_rows(source)
        rejected = len(errors)
        # rows read = rows scored + rows rejected, with rows read = the file's rows
        line = ACCOUNTING_LINE.format(read=f"{read:,}", scored=f"{read - rejected:,}", rejected=f"{rejected:,}")
        assert f"cohort.csv: {line}" in result.stderr, (line, result.stderr)
        # the errors file lists each rejected line once, and only lines of the file
        lines = errors["line"].astype(int)
        assert lines.is_unique, errors.loc[lines.duplicated(keep=False)].to_string()
        assert set(lines) <= set(range(2, read + 2))
        # exactly the subjects with an injected bad row are set aside, all of their rows
        rejected_subjects = set(errors["subject_id"])
        assert rejected_subjects == touched, (sorted(rejected_subjects), sorted(touched))
        file_subjects = frame["subject_id"].astype(str)
        for subject in touched:
            own_lines = set((np.flatnonzero((file_subjects == subject).to_numpy()) + 2).tolist())
            assert set(lines[errors["subject_id"] == subject]) == own_lines, subject
        # no rejected subject in the outputs; every other subject is there
        scored_subjects = set(file_subjects) - touched
        assert set(best["subject_id"]) == scored_subjects
        assert set(visits["subject_id"]) <= scored_subjects


def test_outputs_keep_their_header_when_every_subject_is_rejected(tmp_path: Path) -> None:
    """A results file without even a header line breaks every reader downstream (pandas: "No columns to parse")."""
    source = write(tmp_path / "in.csv", LESIONS_CSV.replace(",40,", ",-40,").replace(",50,", ",-50,"))
    out = tmp_path / "out"
    result = run_cli("batch", source, "-o", out / "r.csv", "--criteria", "recist1.1")
    # issue 13: a run that scores nothing exits 1 with the reason; its outputs are still written, with headers
    assert result.exit_code == 1, result.stderr
    assert "rows scored 0 + rows rejected 6" in result.stderr
    assert "Error: no subject was scored: all 6 rows read were rejected" in result.stderr
    for name in ("r.csv", "r.best.csv", "r.errors.csv"):
        header = (out / name).read_text(encoding="utf-8").split("\n", 1)[0]
        assert "subject_id" in header, f"{name} has no header line: {header!r}"


def test_injection_helper_produces_the_bad_rows_it_claims() -> None:
    cohort = generate_cohort(subjects=4, seed=1)
    frame, touched = inject(cohort, [(0, "negative_size"), (5, "duplicate")])
    assert len(frame) == len(cohort) + 1
    assert frame.loc[0, "longest_diameter_mm"] == -12.0
    assert touched == {str(cohort.at[0, "subject_id"]), str(cohort.at[5, "subject_id"])}
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    assert buffer.getvalue().count("\n") == len(frame) + 1


# --------------------------------------------------------------------------------------------------
# (i) outputs never destroy anything
# --------------------------------------------------------------------------------------------------

CHILD_RULES = "id: site_child\nextends: site_recist.yaml\nname: Child variant\ndescription: Varies the variant.\n"


def refused(result: Any, message: str) -> None:
    clean(result)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr, result.stderr


def rule_chain(tmp_path: Path) -> tuple[Path, Path]:
    """A rule file that extends another rule file (which extends recist1.1)."""
    parent = write(tmp_path / "site_recist.yaml", VARIANT_RULES)
    child = write(tmp_path / "child.yaml", CHILD_RULES)
    assert run_cli("rules", "validate", child).exit_code == 0
    return parent, child


@pytest.mark.parametrize("command", ["assess", "report", "batch", "diff"])
def test_a_rule_file_reached_through_extends_is_never_overwritten(command: str, tmp_path: Path) -> None:
    parent, child = rule_chain(tmp_path)
    case = write(tmp_path / "case.yaml", case_text())
    lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
    args = {
        "assess": ["assess", case, "--criteria", child],
        "report": ["report", case, "--criteria", child],
        "batch": ["batch", lesions, "--criteria", child],
        "diff": ["diff", "recist1.1", child, "--cases", lesions],
    }[command]
    result = run_cli(*args, "-o", parent)
    refused(result, f"Error: {parent}: -o would overwrite the input {parent} (choose another output path)")
    assert parent.read_text(encoding="utf-8") == VARIANT_RULES


@pytest.mark.parametrize("target", ["site_recist.yaml", "child.yaml"])
def test_rule_files_named_in_the_case_criteria_list_are_never_overwritten(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case's own `criteria:` list names rule files (read relative to the working folder)."""
    monkeypatch.chdir(tmp_path)
    rule_chain(tmp_path)
    case = write(tmp_path / "case.yaml", case_text() + "criteria: [child.yaml]\n")
    before = (tmp_path / target).read_text(encoding="utf-8")
    for command in ("assess", "report"):
        result = run_cli(command, case, "-o", target)
        refused(result, f"Error: {target}: -o would overwrite the input {target}")
    assert (tmp_path / target).read_text(encoding="utf-8") == before


def test_an_output_inside_an_input_folder_is_refused(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    cases.mkdir()
    write(cases / "a.yaml", case_text())
    result = run_cli("diff", "recist1.1", "choi", "--cases", cases, "-o", cases / "verdicts.csv")
    refused(result, f"Error: {cases / 'verdicts.csv'}: -o lies inside the input folder {cases}")
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write(cohort / "part1.csv", LESIONS_CSV)
    result = run_cli("batch", cohort, "--chunk-rows", "1000", "-o", cohort / "r.csv")
    refused(result, f"Error: {cohort / 'r.csv'}: -o lies inside the input folder {cohort}")
    assert sorted(p.name for p in cases.iterdir()) == ["a.yaml"]
    assert sorted(p.name for p in cohort.iterdir()) == ["part1.csv"]


def test_a_dataset_folder_holding_an_input_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    lesions = write(folder / "lesions.csv", LESIONS_CSV)
    result = run_cli("batch", lesions, "--chunk-rows", "1000", "-o", f"{folder}/")
    message = f"Error: {folder}: -o is a folder holding the input {lesions} (choose a new or empty output folder)"
    refused(result, message)
    assert sorted(p.name for p in folder.iterdir()) == ["lesions.csv"]


@pytest.mark.parametrize(
    "args, path, labels",
    [
        (["-o", "x.csv", "--errors", "x.csv"], "x.csv", "-o and --errors"),
        (["-o", "r.csv", "--best", "r.errors.csv"], "r.errors.csv", "--best and -o (errors file)"),
        (
            ["-o", "r.csv", "--summary-file", "r.warnings.csv"],
            "r.warnings.csv",
            "-o (warnings file) and --summary-file",
        ),
        (["-o", "r.csv", "--errors", "r.csv", "--chunk-rows", "1000"], "r.csv", "-o and --errors"),
    ],
)
def test_two_outputs_of_one_run_on_one_path_are_refused(
    args: list[str], path: str, labels: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
    result = run_cli("batch", lesions, *args)
    refused(result, f"Error: {path}: given for both {labels} (give each output its own path)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesions.csv"]


def test_two_outputs_of_bor_on_one_path_are_refused(tmp_path: Path) -> None:
    visits = write(tmp_path / "v.csv", VISITS_CSV)
    out = tmp_path / "b.csv"
    result = run_cli("bor", visits, "-o", out, "--errors", out)
    refused(result, f"Error: {out}: given for both -o and --errors (give each output its own path)")
    assert not out.exists()


FIFO_MESSAGE = (
    "-o is a FIFO (named pipe), not a regular file; outputs only ever replace regular files (to stream the output, "
    "write it to standard output with -o - and redirect that)"
)


@pytest.mark.parametrize("command", ["assess", "report", "batch", "batch-chunked", "bor", "diff", "plot"])
def test_a_fifo_is_never_replaced(command: str, tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.out"
    os.mkfifo(pipe)
    lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
    results = tmp_path / "res" / "r.csv"
    assert run_cli("batch", lesions, "-o", results).exit_code == 0
    args = {
        "assess": ["assess", SAMPLE_CASE],
        "report": ["report", SAMPLE_CASE],
        "batch": ["batch", lesions],
        "batch-chunked": ["batch", lesions, "--chunk-rows", "1000"],
        "bor": ["bor", write(tmp_path / "v.csv", VISITS_CSV)],
        "diff": ["diff", "recist1.1", "choi", "--cases", lesions],
        "plot": ["plot", "waterfall", results],
    }[command]
    result = run_cli(*args, "-o", pipe)
    refused(result, f"Error: {pipe}: {FIFO_MESSAGE}")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode), "the FIFO was replaced"


def test_a_side_file_on_a_fifo_is_refused_too(tmp_path: Path) -> None:
    pipe = tmp_path / "r.warnings.csv"
    os.mkfifo(pipe)
    result = run_cli("batch", write(tmp_path / "lesions.csv", LESIONS_CSV), "-o", tmp_path / "r.csv")
    refused(result, f"Error: {pipe}: -o (warnings file) is a FIFO (named pipe)")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)


def test_a_device_stays_a_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-o /dev/null` must not replace the device with a file (as root the rename would succeed). The guard turns
    a regression into a failed test instead of a broken machine."""
    real_replace = os.replace

    def guarded(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if os.path.exists(dst) and not os.path.isfile(dst) and not os.path.isdir(dst):
            raise AssertionError(f"tried to replace the special file {dst}")
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", guarded)
    for args in (["assess", SAMPLE_CASE], ["bor", write(tmp_path / "v.csv", VISITS_CSV)]):
        result = run_cli(*args, "-o", "/dev/null")
        refused(result, "Error: /dev/null: -o is a character device, not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not [p for p in os.listdir("/dev") if p.startswith(".null.")], "temporary files left in /dev"


def test_a_folder_is_not_a_file_output(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    result = run_cli("batch", write(tmp_path / "lesions.csv", LESIONS_CSV), "-o", folder)
    refused(result, f"Error: {folder}: -o is a folder; give a file name")


@pytest.mark.parametrize("engine", ["pandas", "chunked"])
def test_side_files_of_an_earlier_run_do_not_pass_for_this_runs(engine: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    extra = ["--chunk-rows", "1000"] if engine == "chunked" else []
    first = run_cli("batch", TRIAL, "-o", out / "r.csv", "--criteria", "all", *extra)
    assert first.exit_code == 0, first.stderr
    stale = ["r.warnings.csv", "r.flags.csv", "r.lesions.csv"]
    assert all((out / name).is_file() for name in stale)
    lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
    second = run_cli("batch", lesions, "-o", out / "r.csv", "--criteria", "recist1.1", *extra)
    assert second.exit_code == 0, second.stderr
    assert sorted(p.name for p in out.iterdir()) == ["r.best.csv", "r.csv", "r.errors.csv"]
    assert "warning" not in second.stderr


@pytest.mark.parametrize("fail_at", [1, 2])
def test_bor_outputs_are_all_or_nothing(fail_at: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    seed_outputs(out, ["bor.csv", "bor.errors.csv"])
    failing_write_csv(monkeypatch, fail_at)
    result = run_cli("bor", write(tmp_path / "v.csv", VISITS_CSV), "-o", out / "bor.csv")
    assert result.exit_code == 1, result.stderr
    clean(result)
    assert_untouched(out, ["bor.csv", "bor.errors.csv"])


SIGTERM_SCRIPT = """
import os, signal, sys
import crlm_response.writers as writers
real = writers.write_csv
calls = {"n": 0}
at = int(sys.argv[1])
def write_csv(frame, path):
    calls["n"] += 1
    real(frame, path)
    if calls["n"] == at:
        os.kill(os.getpid(), signal.SIGTERM)
writers.write_csv = write_csv
from crlm_response.cli import main
sys.argv = ["crlm-response", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize("engine", ["pandas", "chunked"])
def test_sigterm_removes_temporary_files_and_leaves_the_old_outputs(engine: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seed_outputs(out, BATCH_OUTPUTS)
    extra = ["--chunk-rows", "1000"] if engine == "chunked" else []
    args = ["batch", str(TRIAL), "-o", str(out / "r.csv"), "--criteria", "recist1.1", *extra]
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_SCRIPT, "2", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 128 + signal.SIGTERM, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert "Error: stopped by SIGTERM" in done.stderr
    assert_untouched(out, BATCH_OUTPUTS)


LOCK_HOLDER = """
import fcntl, os, sys, time
handle = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def test_a_run_never_publishes_while_another_run_is_putting_its_outputs_in_place(tmp_path: Path) -> None:
    """Runs into one output folder put their sets in place one at a time (under a lock on the folder), so two
    runs at once leave one run's complete set. Here another process holds the lock: the run must wait, with its
    finished files still temporary, and complete once the lock is free."""
    out = tmp_path / "out"
    seed_outputs(out, BATCH_OUTPUTS)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        run = subprocess.Popen(
            [sys.executable, "-m", "crlm_response", "batch", str(TRIAL), "-o", str(out / "r.csv")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and run.poll() is None and len(leftovers(out)) < 3:
            time.sleep(0.2)
        time.sleep(1.0)
        changed = [name for name in BATCH_OUTPUTS if (out / name).read_text(encoding="utf-8") != OLD]
        assert changed == [], f"outputs replaced while another run held the folder: {changed}"
        assert run.poll() is None, "the run ended instead of waiting for the lock"
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    _, stderr = run.communicate(timeout=240)
    assert run.returncode == 0, stderr
    assert all((out / name).read_text(encoding="utf-8") != OLD for name in BATCH_OUTPUTS)
    assert leftovers(out) == []


def test_csv_on_stdout_is_formula_safe(tmp_path: Path) -> None:
    visits = write(tmp_path / "v.csv", VISITS_CSV.replace("\nA,", "\n=cmd|' /C calc'!A0,").replace("\nB,", "\n@B,"))
    for extra in ([], ["-o", "-"]):
        result = run_cli("bor", visits, *extra)
        assert result.exit_code == 0, result.stderr
        cells = [cell for row in csv.reader(io.StringIO(result.stdout)) for cell in row]
        assert "'=cmd|' /C calc'!A0" in cells and "'@B" in cells, result.stdout
        assert formula_cells_in(cells) == []
    assert not (tmp_path / "-").exists()


def formula_cells_in(cells: list[str]) -> list[str]:
    return [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not is_number(c)]


def test_dash_writes_to_standard_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("assess", SAMPLE_CASE, "--format", "json", "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["case_id"] == "CRLM-0001"
    result = run_cli("report", SAMPLE_CASE, "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.lstrip().lower().startswith("<!doctype html")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["batch", "diff"])
def test_dash_is_refused_where_a_command_writes_files_only(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`batch` (several files) and `diff` (whose stdout is the report) cannot stream -o: never a file named `-`."""
    monkeypatch.chdir(tmp_path)
    lesions = write(tmp_path / "lesions.csv", LESIONS_CSV)
    args = {"batch": ["batch", lesions], "diff": ["diff", "recist1.1", "choi", "--cases", lesions]}[command]
    result = run_cli(*args, "-o", "-")
    refused(result, "Error: -o - (standard output) is not available for this output (give a file path)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesions.csv"]

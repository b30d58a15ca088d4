"""Every engine reads through the one source layer (crlm_response/sources.py), so every bad input gets the same
answer in memory, in bounded-memory chunks and on Dask: the same exit code, the same message and the same
errors file (issue 13 §1). The inputs are the bad-input corpora of tests/bad_inputs/batch and the lesion-table
cases of tests/bad_inputs/other; a property test adds generated cohorts with injected bad rows.

Dask starts slowly, so one local cluster (one worker) serves the whole module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crlm_response.synthetic import generate_cohort

BAD = Path(__file__).resolve().parent / "bad_inputs"
ENGINES = {
    "memory": [],
    "chunks": ["--chunk-rows", "1000"],
    "dask": ["--engine", "dask"],  # + --scheduler of the module's cluster
}
OUTPUTS = ("out.csv", "out.best.csv", "out.errors.csv", "out.warnings.csv")

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> Any:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    ) as cluster:
        yield cluster.scheduler_address


def batch_cases() -> list[tuple[str, list[str]]]:
    """(name, arguments after `batch`) for every lesion-table case of both corpora; `{tmp}` is the output folder."""
    cases = []
    for expected in sorted((BAD / "batch").glob("*.expected")):
        spec = yaml.safe_load(expected.read_text(encoding="utf-8"))
        folder = BAD / "batch"
        source = folder / spec.get("input", f"{expected.stem}.csv")
        extra = [str(a).replace("{dir}", str(folder)).replace("{file}", str(source)) for a in spec.get("args") or []]
        cases.append(
            (f"batch/{expected.stem}", [str(source), "-o", "{tmp}/out.csv", "--criteria", "recist1.1", *extra])
        )
    for expected in sorted((BAD / "other").glob("*.expected")):
        spec = yaml.safe_load(expected.read_text(encoding="utf-8"))
        command = [str(a) for a in spec["command"]]
        # SDTM input and RS/ADaM output run on the pandas engine only (the large engines refuse them up front)
        pandas_only = ("--sdtm-tu", "--sdtm-tr", "--adam-dir", "--out-rs", "--engine", "--chunk-rows")
        if command[0] != "batch" or any(a in command for a in pandas_only):
            continue
        folder = BAD / "other"
        own = [p for p in folder.glob(f"{expected.stem}.*") if p.suffix != ".expected" and p.name.count(".") == 1]
        source = folder / spec["input"] if "input" in spec else (own[0] if own else None)
        args = [
            a.replace("{input}", str(source)).replace("{dir}", str(folder)).replace("{tmp}", "{tmp}")
            for a in command[1:]
        ]
        if "-o" not in args:
            continue
        if args[args.index("-o") + 1] == "{tmp}":  # `-o folder`: a dataset for the large engines, refused in memory
            continue
        cases.append((f"other/{expected.stem}", args))
    return cases


def run(engine: str, args: list[str], tmp: Path, scheduler: str) -> dict[str, Any]:
    folder = tmp / engine
    folder.mkdir()
    filled = [a.replace("{tmp}", str(folder)) for a in args]
    extra = ENGINES[engine] + (["--scheduler", scheduler] if engine == "dask" else [])
    result = run_cli("batch", *filled, *extra)
    outputs = {}
    for name in OUTPUTS:
        path = folder / name
        if path.exists():
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            outputs[name] = frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)
    return {
        "exit": result.exit_code,
        "stderr": result.stderr.replace(str(folder), "{tmp}"),
        "outputs": outputs,
    }


def assert_same(reference: dict[str, Any], other: dict[str, Any], engine: str) -> None:
    assert other["exit"] == reference["exit"], f"{engine}: {other['stderr']}"
    assert other["stderr"] == reference["stderr"], engine
    for name in ("out.csv", "out.best.csv", "out.errors.csv"):
        assert (name in other["outputs"]) == (name in reference["outputs"]), f"{engine}: {name}"
        if name in reference["outputs"]:
            want, have = reference["outputs"][name], other["outputs"][name]
            pd.testing.assert_frame_equal(have[list(want.columns)], want, obj=f"{engine} {name}")
    if "out.warnings.csv" in reference["outputs"]:
        want = reference["outputs"]["out.warnings.csv"]
        have = other["outputs"].get("out.warnings.csv")
        assert have is not None, f"{engine}: no warnings file"
        pd.testing.assert_frame_equal(have[list(want.columns)], want, obj=f"{engine} warnings")


CASES = batch_cases()


@pytest.mark.parametrize("args", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_every_bad_input_gets_the_same_answer_from_every_engine(
    args: list[str], tmp_path: Path, scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    reference = run("memory", args, tmp_path, scheduler)
    assert "internal error" not in reference["stderr"] and "Traceback" not in reference["stderr"]
    for engine in ("chunks", "dask"):
        assert_same(reference, run(engine, args, tmp_path, scheduler), engine)


def test_the_corpora_hold_enough_table_cases() -> None:
    assert len(CASES) >= 55, len(CASES)


INJECTIONS = ("negative_size", "text_in_number", "unknown_word", "blank_line", "malformed_row", "bad_date", "nul_id")


def cohort_text(subjects: int, seed: int, injections: list[tuple[int, str]]) -> bytes:
    """A generated cohort as CSV text with bad rows written in (by line, so blank and malformed lines too)."""
    frame = generate_cohort(subjects=subjects, seed=seed)
    lines = frame.to_csv(index=False).splitlines()
    columns = lines[0].split(",")
    for row, kind in sorted(injections, reverse=True):
        at = 1 + row % (len(lines) - 1)
        cells = lines[at].split(",")
        if kind == "negative_size":
            cells[columns.index("longest_diameter_mm")] = "-4"
        elif kind == "text_in_number":
            cells[columns.index("day")] = "soon"
        elif kind == "unknown_word":
            cells[columns.index("status")] = "gone"
        elif kind == "bad_date":
            cells[columns.index("day")] = "2025-02-30"
        elif kind == "nul_id":
            cells[columns.index("lesion_id")] = "L\x001"
        if kind == "blank_line":
            lines.insert(at, "")
            continue
        if kind == "malformed_row":
            cells.append("extra")
        lines[at] = ",".join(cells)
    return ("\n".join(lines) + "\n").encode("utf-8")


@settings(
    max_examples=int(os.environ.get("CRLM_ENGINE_EXAMPLES", "3")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    subjects=st.integers(min_value=2, max_value=40),
    seed=st.integers(min_value=0, max_value=10_000),
    injections=st.lists(
        st.tuples(st.integers(min_value=0, max_value=10_000), st.sampled_from(INJECTIONS)), min_size=1, max_size=6
    ),
)
@example(subjects=12, seed=1, injections=[(5, "blank_line"), (9, "malformed_row"), (14, "nul_id"), (30, "bad_date")])
def test_engines_agree_on_generated_cohorts_with_bad_rows(
    subjects: int,
    seed: int,
    injections: list[tuple[int, str]],
    tmp_path_factory: pytest.TempPathFactory,
    scheduler: str,
) -> None:
    tmp = tmp_path_factory.mktemp("cohort")
    source = tmp / "cohort.csv"
    source.write_bytes(cohort_text(subjects, seed, injections))
    args = [str(source), "-o", "{tmp}/out.csv"]
    reference = run("memory", args, tmp, scheduler)
    assert reference["exit"] in (0, 1), reference["stderr"]
    assert "internal error" not in reference["stderr"]
    for engine in ("chunks", "dask"):
        assert_same(reference, run(engine, args, tmp, scheduler), engine)


def test_every_engine_explains_when_asked(tmp_path: Path, scheduler: str) -> None:
    """`--explain` was silently dropped by --chunk-rows and Dask (audit finding 3): every engine writes the same
    explanation column, and the same columns."""
    sample = Path(__file__).resolve().parent.parent / "sample_cases" / "trial_lesions.csv"
    args = [str(sample), "-c", "recist1.1", "-o", "{tmp}/out.csv", "--explain"]
    reference = run("memory", args, tmp_path, scheduler)
    assert reference["exit"] == 0, reference["stderr"]
    visits = reference["outputs"]["out.csv"]
    assert "explanation" in visits.columns and (visits["explanation"] != "").all()
    for engine in ("chunks", "dask"):
        other = run(engine, args, tmp_path, scheduler)
        assert list(other["outputs"]["out.csv"].columns) == list(visits.columns), engine
        assert_same(reference, other, engine)

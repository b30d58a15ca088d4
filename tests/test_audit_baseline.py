"""Audit: a file whose baseline scan is missing must not be scored from a follow-up silently. When no timepoint is
named like a baseline and none is on day 0, the first visit is still taken as the baseline (a table may start at
any day), but the warning `baseline_not_day_zero` says so."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import run_cli

HEADER = "subject_id,timepoint,day,lesion_id,kind,organ,longest_diameter_mm\n"


def _warnings(tmp_path: Path, rows: str) -> list[dict[str, str]]:
    table = tmp_path / "lesions.csv"
    table.write_text(HEADER + rows, encoding="utf-8")
    result = run_cli("batch", table, "-c", "recist1.1", "-o", tmp_path / "out.csv")
    assert result.exit_code == 0, result.stderr
    written = tmp_path / "out.warnings.csv"
    return list(csv.DictReader(written.open(encoding="utf-8"))) if written.exists() else []


def test_a_baseline_missing_from_the_file_is_named(tmp_path: Path) -> None:
    warnings = _warnings(tmp_path, "P1,FU1,56,L1,target,liver,50\nP1,FU2,112,L1,target,liver,30\n")
    (warning,) = [w for w in warnings if w["code"] == "baseline_not_day_zero"]
    assert (warning["subject_id"], warning["timepoint"]) == ("P1", "FU1")
    assert warning["message"].startswith(
        "no timepoint is named baseline and none is on day 0: FU1 (day 56) is taken as the baseline"
    )


def test_a_named_or_day_zero_baseline_is_not_warned(tmp_path: Path) -> None:
    rows = (
        "P1,baseline,-7,L1,target,liver,50\nP1,FU1,56,L1,target,liver,30\n"  # named, before day 0
        "P2,scan A,0,L1,target,liver,50\nP2,scan B,56,L1,target,liver,30\n"  # on day 0
    )
    assert [w for w in _warnings(tmp_path, rows) if w["code"] == "baseline_not_day_zero"] == []

"""Audit: ADaM flags that say "up to the first progression" follow the visits' order, not their days. A visit
with a partial date (day unknown) that comes before the progression is before it (CDISC.md §8: a partial date
never blocks ordering; ADRS ANL02FL, ADTR ANL03FL/ANL04FL)."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import run_cli

SAMPLES = Path(__file__).resolve().parent.parent / "sample_cases"


def _adam(tmp_path: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    # sample_cases/sdtm_tr.csv: S-001 SCREENING 50 mm, WEEK 6 (TRDTC 2025-02, partial) 45 mm, WEEK 12 62 mm (PD).
    result = run_cli(
        "batch",
        "--sdtm-tu",
        SAMPLES / "sdtm_tu.csv",
        "--sdtm-tr",
        SAMPLES / "sdtm_tr.csv",
        "--sdtm-dm",
        SAMPLES / "sdtm_dm.csv",
        "-o",
        tmp_path / "out.csv",
        "--adam-dir",
        tmp_path / "adam",
    )
    assert result.exit_code == 0, result.stderr
    read = [list(csv.DictReader((tmp_path / "adam" / f"{n}.csv").open(encoding="utf-8"))) for n in ("adrs", "adtr")]
    return read[0], read[1]


def test_adrs_anl02fl_keeps_a_partial_date_visit_before_the_progression(tmp_path: Path) -> None:
    adrs, _ = _adam(tmp_path)
    ovr = [(r["AVISIT"], r["AVALC"], r["ANL02FL"]) for r in adrs if r["USUBJID"] == "S-001" and r["PARAMCD"] == "OVR"]
    assert sorted(ovr) == [("WEEK 12", "PD", "Y"), ("WEEK 6", "SD", "Y")]


def test_adtr_progression_flags_by_visit_order(tmp_path: Path) -> None:
    _, adtr = _adam(tmp_path)
    sums = {r["AVISIT"]: r for r in adtr if r["USUBJID"] == "S-001" and r["PARAMCD"] == "SDIAM"}
    assert {v: (r["PDFL"], r["ANL03FL"], r["ANL04FL"]) for v, r in sums.items()} == {
        "SCREENING": ("", "Y", "Y"),
        "WEEK 6": ("", "Y", "Y"),
        "WEEK 12": ("Y", "", "Y"),
    }


def test_records_numbered_in_visit_order(tmp_path: Path) -> None:
    """ASEQ follows the visits' order, so the partial-date WEEK 6 sits between SCREENING and WEEK 12 (it used to
    come first: it has no day to sort by)."""
    adrs, adtr = _adam(tmp_path)
    sums = [(r["AVISIT"], int(r["ASEQ"])) for r in adtr if r["USUBJID"] == "S-001" and r["PARAMCD"] == "SDIAM"]
    assert [v for v, _ in sorted(sums, key=lambda x: x[1])] == ["SCREENING", "WEEK 6", "WEEK 12"]
    ovr = [(r["AVISIT"], int(r["ASEQ"])) for r in adrs if r["USUBJID"] == "S-001" and r["PARAMCD"] == "OVR"]
    assert [v for v, _ in sorted(ovr, key=lambda x: x[1])] == ["WEEK 6", "WEEK 12"]

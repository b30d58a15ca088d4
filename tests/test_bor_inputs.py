"""What `bor` reads besides its simple table: `batch -o` output (one criteria set at a time), an RS holding two
criteria sets (RSCAT), and a file that is an RS but holds no overall tumour response (audit findings 4-6,
docs/audit-wave3.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

PILOT_RS = ROOT.parent / "shared" / "data" / "cdisc-dataset-json" / "sdtm"

BATCH_OUTPUT = """subject_id,criteria,timepoint,day,overall
P1,recist1.1,FU1,56,SD
P1,choi,FU1,56,PR
P1,recist1.1,FU2,112,PR
P1,choi,FU2,112,PR
P1,recist1.1,FU3,168,PD
P1,choi,FU3,168,PD
"""

TWO_SETS_RS = """STUDYID,USUBJID,RSTESTCD,RSCAT,RSSTRESC,RSEVAL,VISITNUM,RSDTC,RSDY
ST,P1,OVRLRESP,RECIST 1.1,PR,INVESTIGATOR,2,2024-02-26,57
ST,P1,OVRLRESP,iRECIST,iPR,INVESTIGATOR,2,2024-02-26,57
ST,P1,OVRLRESP,RECIST 1.1,PD,INVESTIGATOR,3,2024-04-22,113
ST,P1,OVRLRESP,iRECIST,iUPD,INVESTIGATOR,3,2024-04-22,113
"""


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("criteria", "best", "day", "first_pd"),
    [
        ([], "PR", "112", "168"),  # default recist1.1: SD, PR, PD
        (["--criteria", "choi"], "PR", "56", "168"),  # Choi: PR from the first visit
    ],
)
def test_bor_reads_batch_output_one_set_at_a_time(
    tmp_path: Path, criteria: list[str], best: str, day: str, first_pd: str
) -> None:
    visits = tmp_path / "visits.csv"
    visits.write_text(BATCH_OUTPUT, encoding="utf-8")
    result = run_cli("bor", visits, *criteria, "-o", tmp_path / "bor.csv")
    assert result.exit_code == 0, result.stderr
    (row,) = rows(tmp_path / "bor.csv")
    assert (row["subject_id"], row["best_overall_response"], row["best_overall_response_day"]) == ("P1", best, day)
    assert row["first_pd_day"] == first_pd
    assert "rows read 6 = rows scored 3 + rows rejected 3" in result.stderr


def test_bor_on_batch_output_without_the_chosen_set_names_the_sets_it_has(tmp_path: Path) -> None:
    visits = tmp_path / "visits.csv"
    visits.write_text(BATCH_OUTPUT.replace("recist1.1", "who"), encoding="utf-8")
    result = run_cli("bor", visits, "-o", tmp_path / "bor.csv")
    assert result.exit_code == 1
    assert "this batch output holds the criteria sets choi, who, not recist1.1" in result.stderr
    assert "choose one with --criteria" in result.stderr
    assert not (tmp_path / "bor.csv").exists()


def test_bor_on_rs_with_two_criteria_sets_scores_the_chosen_rscat(tmp_path: Path) -> None:
    rs = tmp_path / "rs.csv"
    rs.write_text(TWO_SETS_RS, encoding="utf-8")
    result = run_cli("bor", rs, "-o", tmp_path / "bor.csv")
    assert result.exit_code == 0, result.stderr
    (row,) = rows(tmp_path / "bor.csv")
    assert (row["best_overall_response"], row["first_pd_day"]) == ("PR", "112")  # RSDY 113: day 112 of the scale
    assert "rows read 4 = rows scored 2 + rows rejected 2" in result.stderr
    errors = rows(tmp_path / "bor.errors.csv")
    assert {e["reason"] for e in errors} == {"RSCAT is not RECIST 1.1"}


def test_bor_on_rs_of_another_set_only_names_its_rscat(tmp_path: Path) -> None:
    rs = tmp_path / "rs.csv"
    rs.write_text(TWO_SETS_RS.replace("RECIST 1.1", "EASL"), encoding="utf-8")
    result = run_cli("bor", rs, "-o", tmp_path / "bor.csv")
    assert result.exit_code == 1
    assert "no RS record has RSCAT 'RECIST 1.1' (the file has EASL, iRECIST)" in result.stderr


@pytest.mark.parametrize("name", ["rs.xpt", "rs.json", "rs.ndjson"])
def test_bor_refuses_an_rs_without_overall_tumour_response(tmp_path: Path, name: str) -> None:
    """The CDISC pilot RS is a depression questionnaire (HAM-D): MISSING for everyone would read as a result."""
    path = PILOT_RS / name
    if not path.exists():
        pytest.skip("the shared CDISC pilot files are not next to this clone")
    result = run_cli("bor", path, "-o", tmp_path / "bor.csv")
    assert result.exit_code == 1
    assert "no OVRLRESP record: this file holds no per-visit overall tumour response (RSTESTCD HAMD101" in (
        result.stderr
    )
    assert not (tmp_path / "bor.csv").exists()

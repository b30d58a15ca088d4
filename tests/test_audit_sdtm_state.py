"""Audit: SDTM TR TUMSTATE is read from the standardised result (TRSTRESC), and a state word the tool does not
know is refused, never read as PRESENT (REFERENCE §1.5: unequivocal progression of a non-target is PD)."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import run_cli

TU = """STUDYID,USUBJID,TULNKID,TUTESTCD,TUSTRESC,TULOC,TUEVAL
ST,P1,T01,TUMIDENT,TARGET,LIVER,INVESTIGATOR
ST,P1,NT01,TUMIDENT,NON-TARGET,PERITONEUM,INVESTIGATOR
"""
TR_HEAD = "STUDYID,USUBJID,TRLNKID,TRTESTCD,TRORRES,TRSTRESC,TRSTRESN,TRSTRESU,VISITNUM,VISIT,TRDTC,TRDY,TREVAL\n"
TR_ROWS = """ST,P1,T01,LDIAM,50,50,50,mm,1,SCREENING,2024-01-01,1,INVESTIGATOR
ST,P1,NT01,TUMSTATE,PRESENT,PRESENT,,,1,SCREENING,2024-01-01,1,INVESTIGATOR
ST,P1,T01,LDIAM,45,45,45,mm,2,WEEK 8,2024-02-26,57,INVESTIGATOR
"""


def _run(tmp_path: Path, state_row: str) -> tuple[int, list[dict[str, str]], list[dict[str, str]]]:
    (tmp_path / "tu.csv").write_text(TU, encoding="utf-8")
    (tmp_path / "tr.csv").write_text(TR_HEAD + TR_ROWS + state_row, encoding="utf-8")
    out = tmp_path / "out" / "out.csv"
    result = run_cli("batch", "--sdtm-tu", tmp_path / "tu.csv", "--sdtm-tr", tmp_path / "tr.csv", "-o", out)
    visits = list(csv.DictReader(out.open(encoding="utf-8"))) if out.exists() else []
    errors = list(csv.DictReader((out.parent / "out.errors.csv").open(encoding="utf-8")))
    return result.exit_code, visits, errors


def test_free_text_trorres_with_standard_unequivocal_is_pd(tmp_path: Path) -> None:
    # TRORRES as the reader wrote it, TRSTRESC standardised: the non-target progressed, so WEEK 8 is PD
    # (targets -10 %: SD). Before the fix TRORRES was read, not recognised, and taken as PRESENT: overall SD.
    code, visits, errors = _run(
        tmp_path, "ST,P1,NT01,TUMSTATE,Unequivocal progression,UNEQUIVOCAL,,,2,WEEK 8,2024-02-26,57,INVESTIGATOR\n"
    )
    assert code == 0
    assert [(v["timepoint"], v["target"], v["non_target"], v["overall"]) for v in visits] == [
        ("WEEK 8", "SD", "PD", "PD")
    ]
    assert errors == []


def test_unknown_state_word_is_refused_not_present(tmp_path: Path) -> None:
    code, visits, errors = _run(tmp_path, "ST,P1,NT01,TUMSTATE,Progressed,,,,2,WEEK 8,2024-02-26,57,INVESTIGATOR\n")
    assert code == 1  # the only subject is set aside
    assert visits == []
    bad = [e for e in errors if e["code"] == "not_allowed"]
    assert [(e["line"], e["lesion_id"], e["value"]) for e in bad] == [("5", "NT01", "Progressed")]
    assert bad[0]["reason"].startswith("TUMSTATE result must be one of PRESENT, ABSENT, UNEQUIVOCAL")
    assert {e["code"] for e in errors} == {"not_allowed", "subject_set_aside"}


def test_known_words_any_case_still_read(tmp_path: Path) -> None:
    code, visits, _ = _run(tmp_path, "ST,P1,NT01,TUMSTATE,absent,,,,2,WEEK 8,2024-02-26,57,INVESTIGATOR\n")
    assert code == 0
    assert [(v["non_target"], v["overall"]) for v in visits] == [("CR", "SD")]


def test_empty_state_without_not_done_is_refused(tmp_path: Path) -> None:
    """An empty TUMSTATE that TRSTAT does not mark NOT DONE is an unknown state, not PRESENT."""
    code, visits, errors = _run(tmp_path, "ST,P1,NT01,TUMSTATE,,,,,2,WEEK 8,2024-02-26,57,INVESTIGATOR\n")
    assert code == 1 and visits == []
    reasons = [e["reason"] for e in errors if e["code"] == "missing_value"]
    assert reasons == [
        "TUMSTATE result is empty and TRSTAT is not NOT DONE: the lesion's state is unknown; give the state, or "
        "TRSTAT = NOT DONE when it was not assessed"
    ]

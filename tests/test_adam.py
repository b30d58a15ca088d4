"""ADaM ADRS and ADTR as admiralonco writes them, from any input (issue 15; standards/CDISC.md §5 and §8).

The conventions checked come from admiralonco (commit 83370b1): `inst/templates/ad_adrs.R` (variables, parameter
codes, PARCAT1 "Tumor Response", PARCAT2 the evaluator, ANL01FL/ANL02FL, ASEQ), `aval_resp()` (CR 1 ... MISSING
7) and `yn_to_numeric()` (Y 1, N 0), `inst/templates/ad_adtr.R` (LDIAMn/NLDIAMn, SDIAM, BASE, NADIR, CHGNAD,
PCHGNAD, PDFL, ANL01FL-ANL04FL). The expected values of `tests/fixtures/adam/long.csv` were worked by hand:

| subject | visit (day, date) | targets (mm) | sum | vs baseline | nadir before | overall |
| --- | --- | --- | --- | --- | --- | --- |
| P1 | baseline (0, 2025-01-06) | T1 40, T2 30, N1 20 (node, short axis) | 90 | | | |
| P1 | FU1 (56, 2025-03-03) | 20, 15, 10 | 45 | -50 % | 90 | PR |
| P1 | FU2 (112, 2025-04-28) | 18, 12, 9 | 39 | -56.67 % | 45 | PR (node 9 mm, T1/T2 remain: not CR) |
| P1 | FU3 (168, 2025-06-23) | T1 not evaluated, 25, 22 | 47 of 2 | | 39 | PD: +8 mm, +20.51 % on a partial sum |
| P2 | baseline only | T1 35 | 35 | | | (no follow-up) |
| P3 | baseline (0) / FU1 (30) / FU2 (60) | T1 50 / 48 / 45 | | -4 % / -10 % | | SD / SD |

P1: BOR PR (FU1); CBOR PR (FU1 confirmed by FU2, 56 days later); first response day 56, first PD day 168, last
adequate assessment 168, duration of response 168 - 56 + 1 = 113 days (event). P2: BOR MISSING. P3: SD at day 30
is before the 42-day minimum (NE), so BOR SD at FU2 (day 60).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import FIXTURES, run_cli

from crlm_response.adam import ADRS_COLUMNS, ADTR_COLUMNS, AVAL_BY_ROLE

LONG = FIXTURES / "adam" / "long.csv"
SDTM = FIXTURES / "sdtm"
TU, TR = SDTM / "crlm_tu.csv", SDTM / "crlm_tr.csv"
PHARMA_TU, PHARMA_TR = SDTM / "pharmaverse_subset" / "tu_onco.csv", SDTM / "pharmaverse_subset" / "tr_onco.csv"
SAMPLE = FIXTURES.parent.parent / "sample_cases"

# admiralonco ad_adrs.R / the issue: the variables of ADRS; ad_adtr.R: of ADTR.
ADMIRALONCO_ADRS = {
    "STUDYID",
    "USUBJID",
    "RSEVAL",
    "RSEVALID",
    "RSACPTFL",
    "PARAMCD",
    "PARAM",
    "PARCAT1",
    "PARCAT2",
    "PARCAT3",
    "AVALC",
    "AVAL",
    "ADT",
    "ADTF",
    "ADY",
    "AVISIT",
    "AVISITN",
    "ANL01FL",
    "ANL02FL",
    "ASEQ",
    "RSSEQ",
}
ADMIRALONCO_ADTR = {
    "STUDYID",
    "USUBJID",
    "PARAMCD",
    "PARAM",
    "PARCAT1",
    "PARCAT2",
    "PARCAT3",
    "AVAL",
    "ABLFL",
    "BASE",
    "CHG",
    "PCHG",
    "NADIR",
    "CHGNAD",
    "PCHGNAD",
    "PDFL",
    "ANL01FL",
    "ANL02FL",
    "ANL03FL",
    "ANL04FL",
    "ADT",
    "ADTF",
    "ADY",
    "AVISIT",
    "AVISITN",
    "ASEQ",
}
RESPONSE_PARAMS = {"OVR", "BOR", "CBOR", "RSP", "CRSP", "CB", "CCB", "BCP", "CBCP", "PD", "LSTA", "MDIS"}
YES_NO_PARAMS = {"RSP", "CRSP", "CB", "CCB", "BCP", "CBCP", "PD", "MDIS", "DEATH"}
COMPARED = [
    "best_overall_response",
    "best_overall_response_day",
    "responder",
    "clinical_benefit",
    "first_response_day",
    "first_pd_day",
    "last_assessment_day",
    "duration_of_response_days",
    "duration_of_response_censored",
]


def text(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def run_ok(*args: Any) -> Any:
    result = run_cli(*args)
    assert "Traceback" not in result.stderr
    assert result.exit_code == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("adam_long")
    run_ok("batch", LONG, "-o", tmp / "r.csv", "--adam-dir", tmp / "adam", "-c", "recist1.1")
    return {"adrs": text(tmp / "adam" / "adrs.csv"), "adtr": text(tmp / "adam" / "adtr.csv")}


def record(frame: pd.DataFrame, usubjid: str, paramcd: str) -> dict[str, str]:
    rows = frame.loc[(frame["USUBJID"] == usubjid) & (frame["PARAMCD"] == paramcd)]
    assert len(rows) == 1, f"{usubjid} {paramcd}: {len(rows)} records"
    return rows.iloc[0].to_dict()


# ---------------------------------------------------------------------------------------------------------
# Shapes and codes: admiralonco's conventions
# ---------------------------------------------------------------------------------------------------------


def test_adrs_and_adtr_carry_the_admiralonco_variables(long_run: dict[str, pd.DataFrame]) -> None:
    assert ADMIRALONCO_ADRS <= set(ADRS_COLUMNS)
    assert ADMIRALONCO_ADTR <= set(ADTR_COLUMNS)
    assert list(long_run["adrs"].columns) == ADRS_COLUMNS
    assert list(long_run["adtr"].columns) == ADTR_COLUMNS
    # names fit SAS V5 transport
    assert all(len(c) <= 8 for c in ADRS_COLUMNS + ADTR_COLUMNS)


def test_adrs_parameters_categories_and_codes(long_run: dict[str, pd.DataFrame]) -> None:
    adrs = long_run["adrs"]
    assert set(adrs["PARAMCD"]) == RESPONSE_PARAMS
    assert set(adrs["PARCAT1"]) == {"Tumor Response"}
    assert set(adrs["PARCAT3"]) == {"RECIST 1.1"}
    assert set(adrs["STUDYID"]) == {"CRLM-T1"}  # from the table's STUDYID column
    # aval_resp(): CR 1, PR 2, SD 3, NON-CR/NON-PD 4, PD 5, NE 6, MISSING 7, by the role of the word
    assert AVAL_BY_ROLE == {
        "complete": 1,
        "partial": 2,
        "stable": 3,
        "non_measurable_stable": 4,
        "progression": 5,
        "not_evaluable": 6,
        "missing": 7,
    }
    words = {"CR": "1", "PR": "2", "SD": "3", "NON-CR/NON-PD": "4", "PD": "5", "NE": "6", "MISSING": "7", "": ""}
    response = adrs.loc[~adrs["PARAMCD"].isin(YES_NO_PARAMS)]
    assert (response["AVALC"].map(words) == response["AVAL"]).all()
    yes_no = adrs.loc[adrs["PARAMCD"].isin(YES_NO_PARAMS)]
    assert set(zip(yes_no["AVALC"], yes_no["AVAL"], strict=True)) == {("Y", "1"), ("N", "0")}
    # every derived parameter is an analysis record; ASEQ numbers each subject's records 1..n
    assert (adrs.loc[adrs["PARAMCD"] != "OVR", "ANL01FL"] == "Y").all()
    for _, rows in adrs.groupby("USUBJID"):
        assert sorted(rows["ASEQ"].astype(int)) == list(range(1, len(rows) + 1))


def test_param_states_the_derivation(long_run: dict[str, pd.DataFrame]) -> None:
    adrs = long_run["adrs"]
    param = dict(zip(adrs["PARAMCD"], adrs["PARAM"], strict=False))
    assert param["BOR"] == (
        "Best Overall Response (confirmation not required; SD at least 42 days after the baseline scan)"
    )
    assert param["CBOR"] == (
        "Best Confirmed Overall Response (confirmed at least 28 days later; SD at least 42 days after the "
        "baseline scan)"
    )
    assert param["RSP"] == "Response (confirmation not required)"
    assert param["BCP"] == "Best Overall Response of CR/PR (confirmation not required)"
    assert param["LSTA"] == "Last Adequate Disease Assessment"


# ---------------------------------------------------------------------------------------------------------
# ADaM from a long CSV, by hand
# ---------------------------------------------------------------------------------------------------------

# (USUBJID, PARAMCD): AVALC, AVAL, ADT, BLDAYS, AVISIT; from the table in the module docstring.
EXPECTED_PARAMS = {
    ("P1", "BOR"): ("PR", "2", "2025-03-03", "56", "FU1"),
    ("P1", "CBOR"): ("PR", "2", "2025-03-03", "56", "FU1"),
    ("P1", "RSP"): ("Y", "1", "2025-03-03", "56", "FU1"),
    ("P1", "CRSP"): ("Y", "1", "2025-03-03", "56", "FU1"),
    ("P1", "CB"): ("Y", "1", "2025-03-03", "56", "FU1"),
    ("P1", "CCB"): ("Y", "1", "2025-03-03", "56", "FU1"),
    ("P1", "BCP"): ("Y", "1", "2025-03-03", "56", "FU1"),
    ("P1", "CBCP"): ("Y", "1", "2025-03-03", "56", "FU1"),
    ("P1", "PD"): ("Y", "1", "2025-06-23", "168", "FU3"),
    ("P1", "LSTA"): ("PD", "5", "2025-06-23", "168", "FU3"),
    ("P1", "MDIS"): ("Y", "1", "", "", ""),
    ("P2", "BOR"): ("MISSING", "7", "", "", ""),
    ("P2", "CBOR"): ("MISSING", "7", "", "", ""),
    ("P2", "RSP"): ("N", "0", "", "", ""),
    ("P2", "CB"): ("N", "0", "", "", ""),
    ("P2", "BCP"): ("N", "0", "", "", ""),
    ("P2", "PD"): ("N", "0", "", "", ""),
    ("P2", "LSTA"): ("", "", "", "", ""),
    ("P2", "MDIS"): ("Y", "1", "", "", ""),
    ("P3", "BOR"): ("SD", "3", "2025-03-07", "60", "FU2"),
    ("P3", "CBOR"): ("SD", "3", "2025-03-07", "60", "FU2"),
    ("P3", "RSP"): ("N", "0", "", "", ""),
    ("P3", "CRSP"): ("N", "0", "", "", ""),
    ("P3", "CB"): ("Y", "1", "2025-03-07", "60", "FU2"),
    ("P3", "CCB"): ("Y", "1", "2025-03-07", "60", "FU2"),
    ("P3", "BCP"): ("N", "0", "", "", ""),
    ("P3", "PD"): ("N", "0", "", "", ""),
    ("P3", "LSTA"): ("SD", "3", "2025-03-07", "60", "FU2"),
}


def test_adrs_from_a_long_csv(long_run: dict[str, pd.DataFrame]) -> None:
    adrs = long_run["adrs"]
    problems = []
    for (usubjid, paramcd), want in EXPECTED_PARAMS.items():
        r = record(adrs, usubjid, paramcd)
        got = (r["AVALC"], r["AVAL"], r["ADT"], r["BLDAYS"], r["AVISIT"])
        if got != want:
            problems.append(f"{usubjid} {paramcd}: {got}, expected {want}")
    assert not problems, "\n".join(problems)
    ovr = adrs.loc[adrs["PARAMCD"] == "OVR"]
    got_ovr = [tuple(r) for r in ovr[["USUBJID", "AVISIT", "AVALC", "ADT", "ANL01FL", "ANL02FL"]].to_numpy()]
    assert got_ovr == [
        ("P1", "FU1", "PR", "2025-03-03", "Y", "Y"),
        ("P1", "FU2", "PR", "2025-04-28", "Y", "Y"),
        ("P1", "FU3", "PD", "2025-06-23", "Y", "Y"),
        ("P3", "FU1", "SD", "2025-02-05", "Y", "Y"),
        ("P3", "FU2", "SD", "2025-03-07", "Y", "Y"),
    ]
    # no study day without a reference date (CDISC.md §8), no RS behind a long table, no readers named
    assert (adrs["ADY"] == "").all() and (adrs["RSSEQ"] == "").all() and (adrs["RSEVAL"] == "").all()


def test_adtr_from_a_long_csv(long_run: dict[str, pd.DataFrame]) -> None:
    adtr = long_run["adtr"]
    sums = adtr.loc[(adtr["USUBJID"] == "P1") & (adtr["PARAMCD"] == "SDIAM")]
    columns = ["AVISIT", "AVAL", "ABLFL", "BASE", "CHG", "PCHG", "NADIR", "CHGNAD", "PCHGNAD"]
    assert [tuple(r) for r in sums[columns].to_numpy()] == [
        ("baseline", "90", "Y", "90", "", "", "", "", ""),
        ("FU1", "45", "", "90", "-45", "-50", "90", "-45", "-50"),
        ("FU2", "39", "", "90", "-51", "-56.67", "45", "-6", "-13.33"),
        # the PD visit, scored on the two targets measured, stays in (AVAL the partial sum, as admiralonco sums)
        ("FU3", "47", "", "90", "-43", "-47.78", "39", "8", "20.51"),
    ]
    flags = ["PDFL", "ANL01FL", "ANL02FL", "ANL03FL", "ANL04FL"]
    assert [tuple(r) for r in sums[flags].to_numpy()] == [
        ("", "Y", "", "Y", "Y"),
        ("", "Y", "", "Y", "Y"),
        ("", "Y", "Y", "Y", "Y"),  # the best PCHG: the waterfall value
        ("Y", "", "", "", "Y"),  # spider series up to (ANL03FL) and including (ANL04FL) the PD
    ]
    lesions = adtr.loc[(adtr["USUBJID"] == "P1") & (adtr["PARAMCD"] != "SDIAM")]
    # targets numbered in lesion-id order (N1, T1, T2); nodes measured in short axis are NLDIAMn
    by_code = lesions.groupby("PARAMCD")["AVAL"].agg(list).to_dict()
    assert by_code == {
        "NLDIAM1": ["20", "10", "9", "22"],
        "LDIAM2": ["40", "20", "18", ""],
        "LDIAM3": ["30", "15", "12", "25"],
    }
    assert dict(zip(lesions["PARAMCD"], lesions["TRLNKID"], strict=False)) == {
        "NLDIAM1": "N1",
        "LDIAM2": "T1",
        "LDIAM3": "T2",
    }
    assert set(lesions.loc[lesions["AVAL"] == "", "ANL01FL"]) == {""}
    assert set(lesions["PARCAT1"]) == set(sums["PARCAT1"]) == {"Target Lesion(s)"}
    params = dict(zip(adtr["PARAMCD"], adtr["PARAM"], strict=False))
    assert params["LDIAM2"] == "Target Lesion 2 Analysis Diameter"
    assert params["NLDIAM1"] == "Target Lesion 1 Analysis Perpendicular"
    assert params["SDIAM"] == "Target Lesions Sum of Diameters"


def test_best_response_table_carries_the_time_to_event_days(tmp_path: Path) -> None:
    run_ok("batch", LONG, "-o", tmp_path / "r.csv", "-c", "recist1.1")
    best = text(tmp_path / "r.best.csv").set_index("subject_id")
    assert best.loc["P1", COMPARED].tolist() == ["PR", "56", "Y", "Y", "56", "168", "168", "113", "N"]
    assert best.loc["P2", COMPARED].tolist() == ["MISSING", "", "N", "N", "", "", "", "", ""]
    assert best.loc["P3", COMPARED].tolist() == ["SD", "60", "N", "Y", "", "", "60", "", ""]


# ---------------------------------------------------------------------------------------------------------
# Round trip: batch --adam-dir, then bor adrs.*
# ---------------------------------------------------------------------------------------------------------


def bor_of(adrs: Path, *args: Any, tmp: Path) -> pd.DataFrame:
    out = tmp / f"bor_{adrs.suffix[1:]}.csv"
    run_ok("bor", adrs, *args, "-o", out)
    table = text(out)
    if "reader" in table:  # batch names a reader's stream subject|evaluator|reader
        table["subject_id"] += ("|" + table["reader"]).where(table["reader"] != "", "")
    return table.set_index("subject_id")[COMPARED]


ROUND_TRIPS = {
    "long_csv": ([LONG, "-c", "recist1.1"], []),
    "sample_trial": ([SAMPLE / "trial_lesions.csv", "-c", "recist1.1"], []),
    "sdtm_fixture": (["--sdtm-tu", TU, "--sdtm-tr", TR], []),
    "pharmaverse_subset": (["--sdtm-tu", PHARMA_TU, "--sdtm-tr", PHARMA_TR], []),
    "confirmed": (
        [SAMPLE / "trial_lesions.csv", "-c", "recist1.1", "--set", "recist1.1.confirmation_required=true"],
        ["--confirm"],
    ),
}


# every input in CSV; two of them in every ADaM format as well
RUNS = [(c, "csv") for c in ROUND_TRIPS] + [
    (c, f) for c in ("long_csv", "sdtm_fixture") for f in ("parquet", "xpt", "json")
]


@pytest.mark.parametrize(("case", "fmt"), RUNS, ids=[f"{c}-{f}" for c, f in RUNS])
def test_round_trip_batch_adam_then_bor_gives_the_same_best_responses(case: str, fmt: str, tmp_path: Path) -> None:
    """`batch --adam-dir` then `bor adrs.*` (with the same settings) reproduces batch's best responses exactly:
    the best response, its day, the flags and the time-to-event days of every subject and reader."""
    batch_args, bor_args = ROUND_TRIPS[case]
    run_ok("batch", *batch_args, "-o", tmp_path / "r.csv", "--adam-dir", tmp_path / "adam", "--adam-format", fmt)
    best = text(tmp_path / "r.best.csv").set_index("subject_id")[COMPARED].sort_index()
    again = bor_of(tmp_path / "adam" / f"adrs.{fmt}", *bor_args, tmp=tmp_path).sort_index()
    assert list(again.index) == list(best.index)
    pd.testing.assert_frame_equal(again, best)


def test_round_trip_confirmed_bor_is_cbor(tmp_path: Path) -> None:
    """`bor adrs.csv --confirm` gives ADRS's own CBOR, from the same OVR records."""
    run_ok("batch", "--sdtm-tu", TU, "--sdtm-tr", TR, "-o", tmp_path / "r.csv", "--adam-dir", tmp_path / "adam")
    adrs = text(tmp_path / "adam" / "adrs.csv")
    cbor = adrs.loc[adrs["PARAMCD"] == "CBOR"]
    key = cbor["USUBJID"] + "|" + cbor["RSEVAL"] + ("|" + cbor["RSEVALID"]).where(cbor["RSEVALID"] != "", "")
    want = dict(zip(key, cbor["AVALC"], strict=True))
    got = bor_of(tmp_path / "adam" / "adrs.csv", "--confirm", tmp=tmp_path)["best_overall_response"].to_dict()
    assert got == want
    assert want["CRLM-001|INVESTIGATOR"] == "SD"  # the unconfirmed PR (tests/fixtures/sdtm/README.md)


def test_bor_reads_only_analysis_records_of_its_criteria(tmp_path: Path) -> None:
    """ANL01FL = Y when the column is there; PARCAT3 of the chosen set (--criteria) when there are several."""
    adrs = tmp_path / "adrs.csv"
    adrs.write_text(
        "USUBJID,RSEVAL,RSEVALID,PARAMCD,PARCAT3,AVALC,BLDAYS,ANL01FL\n"
        "A,INVESTIGATOR,,OVR,RECIST 1.1,SD,56,Y\n"
        "A,INVESTIGATOR,,OVR,RECIST 1.1,CR,84,\n"  # not an analysis record: not used
        "A,INVESTIGATOR,,OVR,Choi,PR,56,Y\n"
        "A,INVESTIGATOR,,OVR,Choi,PD,84,Y\n",
        encoding="utf-8",
    )
    recist = bor_of(adrs, tmp=tmp_path)
    assert recist.loc["A|INVESTIGATOR", "best_overall_response"] == "SD"
    choi = bor_of(adrs, "--criteria", "choi", tmp=tmp_path)
    assert choi.loc["A|INVESTIGATOR", "best_overall_response"] == "PR"
    result = run_cli("bor", adrs, "--criteria", "percist1.0")
    assert result.exit_code == 1
    assert "no ADRS record has PARCAT3 'PERCIST 1.0' (the file has Choi, RECIST 1.1)" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# Inputs: readers, study, deaths, case files, SDTM links, every criteria set
# ---------------------------------------------------------------------------------------------------------

READERS = """subject_id,evaluator,reader,timepoint,day,lesion_id,kind,organ,is_lymph_node,longest_diameter_mm,status
R1,INVESTIGATOR,,baseline,0,T1,target,liver,false,40,present
R1,INVESTIGATOR,,FU1,56,T1,,,,20,present
R1,INDEPENDENT ASSESSOR,RADIOLOGIST 1,baseline,0,T1,target,liver,false,42,present
R1,INDEPENDENT ASSESSOR,RADIOLOGIST 1,FU1,56,T1,,,,40,present
"""


def test_a_long_table_declares_readers_with_evaluator_and_reader_columns(tmp_path: Path) -> None:
    """`evaluator` (RSEVAL) and `reader` (RSEVALID): each subject x evaluator x reader is scored on its own (as
    SDTM --EVAL/--EVALID), its id `subject|evaluator|reader`; ADRS keeps the subject and the reader apart."""
    lesions = tmp_path / "readers.csv"
    lesions.write_text(READERS, encoding="utf-8")
    run_ok("batch", lesions, "-o", tmp_path / "r.csv", "-c", "recist1.1", "--adam-dir", tmp_path / "adam")
    best = text(tmp_path / "r.best.csv").set_index("subject_id")["best_overall_response"].to_dict()
    assert best == {"R1|INDEPENDENT ASSESSOR|RADIOLOGIST 1": "SD", "R1|INVESTIGATOR": "PR"}
    adrs = text(tmp_path / "adam" / "adrs.csv")
    bor = adrs.loc[adrs["PARAMCD"] == "BOR"]
    assert [tuple(r) for r in bor[["USUBJID", "RSEVAL", "RSEVALID", "PARCAT2", "AVALC"]].to_numpy()] == [
        ("R1", "INDEPENDENT ASSESSOR", "RADIOLOGIST 1", "Independent Assessor", "SD"),
        ("R1", "INVESTIGATOR", "", "Investigator", "PR"),
    ]
    assert (
        bor["PARAM"]
        .str.startswith(("Best Overall Response by Independent Assessor", "Best Overall Response by Investigator"))
        .all()
    )
    # ASEQ is unique within the subject, across readers
    assert sorted(adrs["ASEQ"].astype(int)) == list(range(1, len(adrs) + 1))


def test_study_id_fills_a_missing_studyid_and_must_agree_with_the_data(tmp_path: Path) -> None:
    lesions = tmp_path / "readers.csv"
    lesions.write_text(READERS, encoding="utf-8")
    run_ok("batch", lesions, "-o", tmp_path / "r.csv", "--adam-dir", tmp_path / "a", "--study-id", "CRLM-9")
    assert set(text(tmp_path / "a" / "adrs.csv")["STUDYID"]) == {"CRLM-9"}
    assert set(text(tmp_path / "a" / "adtr.csv")["STUDYID"]) == {"CRLM-9"}
    result = run_cli("batch", LONG, "-o", tmp_path / "r2.csv", "--adam-dir", tmp_path / "b", "--study-id", "OTHER")
    assert result.exit_code == 1
    assert "--study-id OTHER differs from the study the data names (CRLM-T1)" in result.stderr


def test_death_dates_give_a_death_record_per_subject(tmp_path: Path) -> None:
    """admiralonco DEATH: PARCAT1 "Reference Event", Y with ADT the death date, N for the other subjects."""
    deaths = tmp_path / "deaths.csv"
    deaths.write_text("subject_id,date\nP1,2025-08-01\n", encoding="utf-8")
    run_ok("batch", LONG, "-o", tmp_path / "r.csv", "--adam-dir", tmp_path / "adam", "--death-dates", deaths)
    adrs = text(tmp_path / "adam" / "adrs.csv")
    death = adrs.loc[adrs["PARAMCD"] == "DEATH"].set_index("USUBJID")
    assert death[["AVALC", "AVAL", "ADT", "PARCAT1", "PARAM"]].to_dict("index") == {
        "P1": {"AVALC": "Y", "AVAL": "1", "ADT": "2025-08-01", "PARCAT1": "Reference Event", "PARAM": "Death"},
        "P2": {"AVALC": "N", "AVAL": "0", "ADT": "", "PARCAT1": "Reference Event", "PARAM": "Death"},
        "P3": {"AVALC": "N", "AVAL": "0", "ADT": "", "PARCAT1": "Reference Event", "PARAM": "Death"},
    }


def test_round_trip_with_death_records(tmp_path: Path) -> None:
    """DEATH records (no criteria set, no reader) add no subject or reader to `bor`'s table."""
    deaths = tmp_path / "deaths.csv"
    deaths.write_text("subject_id,day\nCRLM-002,200\n", encoding="utf-8")
    run_ok(
        "batch", "--sdtm-tu", TU, "--sdtm-tr", TR, "-o", tmp_path / "r.csv", "--adam-dir", tmp_path / "a",
        "--death-dates", deaths,
    )  # fmt: skip
    assert "DEATH" in set(text(tmp_path / "a" / "adrs.csv")["PARAMCD"])
    best = text(tmp_path / "r.best.csv").set_index("subject_id")[COMPARED].sort_index()
    pd.testing.assert_frame_equal(bor_of(tmp_path / "a" / "adrs.csv", tmp=tmp_path).sort_index(), best)


def test_assess_writes_adam_for_a_case_file(tmp_path: Path) -> None:
    case = SAMPLE / "folfox_bev_partial_response.yaml"
    result = run_ok("assess", case, "--format", "json", "--adam-dir", tmp_path / "adam", "--study-id", "S1")
    answer = json.loads(result.stdout)["criteria"]["recist1.1"]
    adrs = text(tmp_path / "adam" / "adrs.csv")
    recist = adrs.loc[adrs["PARCAT3"] == "RECIST 1.1"]
    bor = recist.loc[recist["PARAMCD"] == "BOR"].iloc[0]
    assert bor["AVALC"] == answer["best_overall_response"]
    assert float(bor["BLDAYS"]) == answer["best_overall_response_day"]
    assert bor["AVISIT"] == answer["best_overall_response_timepoint"]
    assert set(adrs["USUBJID"]) == {json.loads(result.stdout)["case_id"]} and set(adrs["STUDYID"]) == {"S1"}
    assert "SDIAM" in set(text(tmp_path / "adam" / "adtr.csv")["PARAMCD"])
    for key in COMPARED[4:]:
        assert key in answer  # the time-to-event days in the assess JSON too


def test_every_response_set_of_the_run_is_in_adrs_named_by_parcat3(tmp_path: Path) -> None:
    run_ok("batch", LONG, "-o", tmp_path / "r.csv", "-c", "recist1.1,choi,percist1.0", "--adam-dir", tmp_path / "a")
    adrs = text(tmp_path / "a" / "adrs.csv")
    assert set(adrs["PARCAT3"]) == {"RECIST 1.1", "Choi", "PERCIST 1.0"}
    assert "CBOR" not in set(adrs.loc[adrs["PARCAT3"] == "PERCIST 1.0", "PARAMCD"])  # ranked: no confirmation
    adtr = text(tmp_path / "a" / "adtr.csv")
    assert set(adtr.loc[adtr["PARAMCD"] == "SDIAM", "PARCAT3"]) == {"RECIST 1.1", "Choi"}  # sets with a sum


def test_sdtm_ovr_records_link_to_the_rs_records(tmp_path: Path) -> None:
    """RSSEQ of an OVR record is that of the OVRLRESP record `--out-rs` writes for the same reader and visit;
    ADT/ADY are the RS date and study day, BLDAYS the days since the baseline scan (TRDY -4 here)."""
    run_ok(
        "batch", "--sdtm-tu", TU, "--sdtm-tr", TR, "-o", tmp_path / "r.csv", "--out-rs", tmp_path / "rs.csv",
        "--adam-dir", tmp_path / "adam",
    )  # fmt: skip
    rs = text(tmp_path / "rs.csv")
    rs = rs.loc[rs["RSTESTCD"] == "OVRLRESP"]
    adrs = text(tmp_path / "adam" / "adrs.csv")
    ovr = adrs.loc[adrs["PARAMCD"] == "OVR"]
    linked = ovr.merge(rs, on=["USUBJID", "RSEVAL", "RSEVALID", "RSSEQ"], how="left")
    assert len(linked) == len(ovr) and (linked["AVISIT"] == linked["VISIT"]).all()
    assert (linked["AVALC"] == linked["RSSTRESC"]).all() and (linked["ADT"] == linked["RSDTC"]).all()
    assert (linked["ADY"] == linked["RSDY"]).all()
    week8 = ovr.loc[(ovr["USUBJID"] == "CRLM-001") & (ovr["RSEVAL"] == "INVESTIGATOR") & (ovr["AVISIT"] == "WEEK 8")]
    assert week8[["ADY", "BLDAYS", "AVISITN"]].iloc[0].tolist() == ["53", "56", "20"]  # no study day 0


def test_adt_is_a_date_in_dataset_json_and_sas_transport(tmp_path: Path) -> None:
    for fmt in ("json", "xpt"):
        run_ok("batch", LONG, "-o", tmp_path / f"{fmt}.csv", "--adam-dir", tmp_path / fmt, "--adam-format", fmt)
    meta = json.loads((tmp_path / "json" / "adrs.json").read_text(encoding="utf-8"))
    adt = next(c for c in meta["columns"] if c["name"] == "ADT")
    assert adt["dataType"] == "date" and adt["label"] == "Analysis Date"
    import pyreadstat

    frame, info = pyreadstat.read_xport(str(tmp_path / "xpt" / "adrs.xpt"))
    assert info.readstat_variable_types["ADT"] == "double"  # a SAS date: a number with a date format
    assert str(frame.loc[frame["PARAMCD"] == "PD", "ADT"].dropna().iloc[0]) == "2025-06-23"

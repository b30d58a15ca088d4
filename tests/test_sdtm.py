"""SDTM TU/TR in, SDTM RS and ADaM ADRS/ADTR out (`crlm-response batch --sdtm-tu --sdtm-tr`).

Two inputs:

* `tests/fixtures/sdtm/crlm_tu.csv` + `crlm_tr.csv`: three made-up subjects (one read by the investigator
  and an independent radiologist) covering every TR feature the reader must handle; the RS rows they must give
  are written by hand in `crlm_rs_expected.csv` (reasoning in `tests/fixtures/sdtm/README.md`, rules
  REFERENCE §1.2-1.9, layout standards/CDISC.md §4 and §7).
* `tests/fixtures/sdtm/pharmaverse_subset/`: 12 subjects of the public pharmaversesdtm example
  (Apache-2.0), all three readers, for loading and accounting; its RS is not truth (see the data README),
  so it is not compared.
  The full shared copy is read too when `/work/shared` exists (a clean clone skips that test).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import FIXTURES, ROOT, run_cli

SDTM = FIXTURES / "sdtm"
TU = SDTM / "crlm_tu.csv"
TR = SDTM / "crlm_tr.csv"
RS_EXPECTED = SDTM / "crlm_rs_expected.csv"
PHARMA = SDTM / "pharmaverse_subset"
SHARED_PHARMA = ROOT.parent / "shared" / "data" / "pharmaversesdtm"

ACCOUNTING = re.compile(
    r"^(?P<file>\S+): rows read (?P<read>[\d,]+) = rows scored (?P<scored>[\d,]+) "
    r"\+ rows rejected (?P<rejected>[\d,]+)\s*$",
    re.MULTILINE,
)
NUMERIC_RS = ("RSSEQ", "VISITNUM", "RSDY")


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------


def data_rows(path: Path) -> int:
    """Records after the header line, counted with the csv module (independent of the tool's reader)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return sum(1 for row in csv.reader(handle) if row) - 1


def accounting(stderr: str) -> dict[str, dict[str, int]]:
    out = {}
    for m in ACCOUNTING.finditer(stderr):
        out[m["file"]] = {k: int(m[k].replace(",", "")) for k in ("read", "scored", "rejected")}
    return out


def read_text_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def num(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    x = float(value)
    return None if math.isnan(x) else x


def run_sdtm(tmp_path: Path, tu: Path = TU, tr: Path = TR, *extra: str) -> tuple[Any, Path]:
    out = tmp_path / "visits.csv"
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", out, *extra)
    assert "Traceback" not in result.stderr
    assert result.exit_code == 0, result.stderr
    return result, out


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run over the hand-made fixture with every output: RS, ADaM, per-visit table and errors."""
    tmp = tmp_path_factory.mktemp("sdtm")
    result, out = run_sdtm(tmp, TU, TR, "--out-rs", tmp / "rs.csv", "--adam-dir", tmp / "adam")
    return {
        "result": result,
        "visits": read_text_table(out),
        "errors": read_text_table(tmp / "visits.errors.csv"),
        "rs": read_text_table(tmp / "rs.csv"),
        "adrs": read_text_table(tmp / "adam" / "adrs.csv"),
        "adtr": read_text_table(tmp / "adam" / "adtr.csv"),
    }


def visit_row(visits: pd.DataFrame, stream: str, visit: str) -> dict[str, Any]:
    rows = visits.loc[
        (visits["subject_id"] == stream) & (visits["criteria"] == "recist1.1") & (visits["timepoint"] == visit)
    ]
    assert len(rows) == 1, f"{stream} {visit}: {len(rows)} rows in the per-visit output"
    return rows.iloc[0].to_dict()


def stream_rows(frame: pd.DataFrame, usubjid: str, evaluator: str, paramcd: str) -> pd.DataFrame:
    """ADRS (RSEVAL) or ADTR (TREVAL) records of one subject, evaluator and parameter."""
    column = "RSEVAL" if "RSEVAL" in frame else "TREVAL"
    return frame.loc[(frame["USUBJID"] == usubjid) & (frame[column] == evaluator) & (frame["PARAMCD"] == paramcd)]


# ---------------------------------------------------------------------------------------------------------
# Hand-made fixture: RS rows exactly
# ---------------------------------------------------------------------------------------------------------


def test_rs_rows_equal_the_hand_written_rows(fixture_run: dict[str, Any]) -> None:
    actual = fixture_run["rs"]
    expected = read_text_table(RS_EXPECTED)
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected), (
        f"{len(actual)} RS rows, expected {len(expected)}:\n"
        f"{actual[['USUBJID', 'RSEVAL', 'VISIT', 'RSTESTCD', 'RSORRES']]}"
    )
    problems = []
    for i, (a, e) in enumerate(zip(actual.to_dict("records"), expected.to_dict("records"), strict=True)):
        for column, want in e.items():
            got = a[column]
            same = num(got) == num(want) if column in NUMERIC_RS else got == want
            if not same:
                problems.append(
                    f"row {i + 1} ({e['USUBJID']} {e['RSEVAL']} {e['VISIT']} {e['RSTESTCD']}): "
                    f"{column} = {got!r}, expected {want!r}"
                )
    assert not problems, "\n".join(problems)


def test_rsseq_runs_one_to_n_per_subject(fixture_run: dict[str, Any]) -> None:
    rs = fixture_run["rs"]
    for usubjid, group in rs.groupby("USUBJID", sort=False):
        assert [int(float(x)) for x in group["RSSEQ"]] == list(range(1, len(group) + 1)), usubjid


def test_rs_link_group_only_on_overall_response_rows(fixture_run: dict[str, Any]) -> None:
    rs = fixture_run["rs"]
    overall = rs["RSTESTCD"] == "OVRLRESP"
    assert (rs.loc[overall, "RSLNKGRP"] != "").all()
    assert (rs.loc[~overall, "RSLNKGRP"] == "").all()


# ---------------------------------------------------------------------------------------------------------
# Hand-made fixture: what each TR feature does (per-visit output)
# ---------------------------------------------------------------------------------------------------------

INV1 = "CRLM-001|INVESTIGATOR"
RAD1 = "CRLM-001|INDEPENDENT ASSESSOR|RADIOLOGIST 1"


def test_cm_are_converted_and_diameter_record_is_read(fixture_run: dict[str, Any]) -> None:
    """WEEK 8: T01 2.5 cm = 25 mm, T02 LPERP 12, T03 DIAMETER 20 -> 57 mm; baseline 42 + 18 + 30 = 90."""
    row = visit_row(fixture_run["visits"], INV1, "WEEK 8")
    assert num(row["sum_mm"]) == 57.0
    assert num(row["nadir_mm"]) == 90.0
    assert row["target"] == "PR"


def test_too_small_to_measure_counts_5_mm(fixture_run: dict[str, Any]) -> None:
    """WEEK 16: TOO SMALL TO MEASURE (no TRSTRESN) counts 5 mm: 5 + 9 + 16 = 30; not CR (the lesion is
    there)."""
    row = visit_row(fixture_run["visits"], INV1, "WEEK 16")
    assert num(row["sum_mm"]) == 30.0
    assert row["target"] == "PR"


def test_equivocal_then_unequivocal_new_lesion(fixture_run: dict[str, Any]) -> None:
    """NEW01 is EQUIVOCAL at WEEK 16 and UNEQUIVOCAL at WEEK 24: PD is dated back to WEEK 16 (E2009 §4.3.2)."""
    week16 = visit_row(fixture_run["visits"], INV1, "WEEK 16")
    week24 = visit_row(fixture_run["visits"], INV1, "WEEK 24")
    assert (week16["new_lesions"].lower(), week16["overall"]) == ("true", "PD")
    assert (week24["new_lesions"].lower(), week24["overall"]) == ("true", "PD")


def test_not_done_target_gives_ne(fixture_run: dict[str, Any]) -> None:
    """Reader WEEK 16: R1-T01 TRSTAT NOT DONE; the other two sum 48 mm, below the 84 mm nadir -> NE, not
    PD."""
    row = visit_row(fixture_run["visits"], RAD1, "WEEK 16")
    assert row["target"] == "NE"
    assert row["overall"] == "NE"
    assert row["sum_mm"] == ""
    assert num(row["available_sum_mm"]) == 48.0


def test_tr_accounting_and_set_aside_rows(fixture_run: dict[str, Any]) -> None:
    counts = accounting(fixture_run["result"].stderr)
    assert counts.get(TU.name) == {"read": 13, "scored": 13, "rejected": 0}, fixture_run["result"].stderr
    assert counts.get(TR.name) == {"read": 54, "scored": 46, "rejected": 8}, fixture_run["result"].stderr
    assert data_rows(TR) == 54 and data_rows(TU) == 13
    errors = fixture_run["errors"]
    tr_errors = errors.loc[errors["file"].map(lambda f: Path(f).name) == TR.name]
    got = sorted((int(r.line), r.code) for r in tr_errors.itertuples())
    summary_lines = [6, 11, 17, 23, 49, 52, 55]
    want = sorted([(line, "summary_recomputed") for line in summary_lines] + [(46, "duplicate_measurement")])
    assert got == want
    with open(TR, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    for line in summary_lines:  # the line numbers point at the SUMDIAM rows of the file
        assert lines[line - 1][7] == "SUMDIAM"
    assert lines[46 - 1][7] == "DIAMETER"


# ---------------------------------------------------------------------------------------------------------
# Hand-made fixture: ADaM
# ---------------------------------------------------------------------------------------------------------


def test_adtr_sum_of_diameters_by_hand(fixture_run: dict[str, Any]) -> None:
    """CRLM-001 investigator: sums 57, 30, 28 against baseline 90; nadir is the smallest earlier sum."""
    rows = stream_rows(fixture_run["adtr"], "CRLM-001", "INVESTIGATOR", "SDIAM")
    rows = rows.loc[rows["AVISIT"] != "SCREENING"]
    got = [
        {k: num(r[k]) for k in ("AVAL", "BASE", "CHG", "PCHG", "NADIR", "CHGNAD", "PCHGNAD")}
        for r in rows.to_dict("records")
    ]
    got = [{k: (round(v, 2) if v is not None else None) for k, v in g.items()} for g in got]
    assert list(rows["AVISIT"]) == ["WEEK 8", "WEEK 16", "WEEK 24"]
    assert got == [
        {
            "AVAL": 57.0,
            "BASE": 90.0,
            "CHG": -33.0,
            "PCHG": -36.67,
            "NADIR": 90.0,
            "CHGNAD": -33.0,
            "PCHGNAD": -36.67,
        },
        {
            "AVAL": 30.0,
            "BASE": 90.0,
            "CHG": -60.0,
            "PCHG": -66.67,
            "NADIR": 57.0,
            "CHGNAD": -27.0,
            "PCHGNAD": -47.37,
        },
        {
            "AVAL": 28.0,
            "BASE": 90.0,
            "CHG": -62.0,
            "PCHG": -68.89,
            "NADIR": 30.0,
            "CHGNAD": -2.0,
            "PCHGNAD": -6.67,
        },
    ]


def test_adtr_has_baseline_record(fixture_run: dict[str, Any]) -> None:
    """standards/CDISC.md §5/§6: ADTR SDIAM carries the baseline record (AVAL 88, ABLFL=Y in the worked
    example); BASE of the later rows comes from it."""
    rows = stream_rows(fixture_run["adtr"], "CRLM-001", "INVESTIGATOR", "SDIAM")
    baseline = rows.loc[rows["AVISIT"] == "SCREENING"]
    assert len(baseline) == 1, f"no baseline SDIAM record; AVISIT values: {list(rows['AVISIT'])}"
    assert num(baseline.iloc[0]["AVAL"]) == 90.0
    assert baseline.iloc[0].get("ABLFL") == "Y"


def test_adrs_ovr_bor_cbor(fixture_run: dict[str, Any]) -> None:
    adrs = fixture_run["adrs"]
    expected = {
        ("CRLM-001", "INVESTIGATOR", "OVR"): ["PR", "PD", "PD"],  # WEEK 16: PD dated back from WEEK 24
        ("CRLM-001", "INDEPENDENT ASSESSOR", "OVR"): ["SD", "NE", "PD"],
        ("CRLM-002", "INVESTIGATOR", "OVR"): ["SD", "PD"],
        ("CRLM-003", "INVESTIGATOR", "OVR"): ["CR", "CR"],
        ("CRLM-001", "INVESTIGATOR", "BOR"): ["PR"],
        # PR day 57 is not confirmed: day 113 (WEEK 16) is PD dated back from the new lesion WEEK 24 confirms,
        # so the PR counts as SD (day 57 >= 42)
        ("CRLM-001", "INVESTIGATOR", "CBOR"): ["SD"],
        ("CRLM-001", "INDEPENDENT ASSESSOR", "BOR"): ["SD"],
        ("CRLM-001", "INDEPENDENT ASSESSOR", "CBOR"): ["SD"],
        ("CRLM-002", "INVESTIGATOR", "BOR"): ["SD"],
        ("CRLM-002", "INVESTIGATOR", "CBOR"): ["SD"],
        ("CRLM-003", "INVESTIGATOR", "BOR"): ["CR"],
        ("CRLM-003", "INVESTIGATOR", "CBOR"): ["CR"],
    }
    problems = []
    for (usubjid, evaluator, paramcd), want in expected.items():
        got = list(stream_rows(adrs, usubjid, evaluator, paramcd)["AVALC"])
        if got != want:
            problems.append(f"{usubjid} {evaluator} {paramcd}: {got}, expected {want}")
    # issue 15: the whole admiralonco parameter set (DEATH only with --death-dates)
    assert set(adrs["PARAMCD"]) == {
        "OVR",
        "BOR",
        "CBOR",
        "RSP",
        "CRSP",
        "CB",
        "CCB",
        "BCP",
        "CBCP",
        "PD",
        "LSTA",
        "MDIS",
    }
    assert not problems, "\n".join(problems)


def test_adrs_bor_day_is_on_the_same_scale_as_ovr(fixture_run: dict[str, Any]) -> None:
    """ADY of BOR is the ADY of the OVR record it was taken from (WEEK 8: study day 53), not another day
    scale."""
    adrs = fixture_run["adrs"]
    ovr = stream_rows(adrs, "CRLM-001", "INVESTIGATOR", "OVR")
    bor = stream_rows(adrs, "CRLM-001", "INVESTIGATOR", "BOR").iloc[0]
    source = ovr.loc[ovr["AVISIT"] == bor["AVISIT"]].iloc[0]
    assert bor["AVISIT"] == "WEEK 8"
    assert num(source["ADY"]) == 53.0
    assert num(bor["ADY"]) == num(source["ADY"]), f"BOR ADY {bor['ADY']} vs OVR ADY {source['ADY']}"


# ---------------------------------------------------------------------------------------------------------
# Public pharmaversesdtm data
# ---------------------------------------------------------------------------------------------------------


def check_every_row_accounted(result: Any, errors: pd.DataFrame, tu: Path, tr: Path) -> None:
    counts = accounting(result.stderr)
    for path in (tu, tr):
        c = counts.get(path.name)
        assert c is not None, f"no accounting line for {path.name}: {result.stderr}"
        assert c["read"] == c["scored"] + c["rejected"]
        assert c["read"] == data_rows(path), f"{path.name}: read {c['read']}, file has {data_rows(path)} rows"
        own = errors.loc[errors["file"].map(lambda f: Path(f).name) == path.name]
        assert len(own) == c["rejected"], f"{path.name}: {len(own)} rows in the errors file, {c['rejected']} rejected"
        assert (own["code"].str.strip() != "").all() and (own["reason"].str.strip() != "").all()
        lines = own["line"].astype(int)
        assert lines.is_unique
        assert lines.between(2, data_rows(path) + 1).all()


def test_pharmaverse_subset_loads_and_every_row_is_accounted(tmp_path: Path) -> None:
    tu, tr = PHARMA / "tu_onco.csv", PHARMA / "tr_onco.csv"
    result, out = run_sdtm(tmp_path, tu, tr, "--adam-dir", tmp_path / "adam")
    errors = read_text_table(tmp_path / "visits.errors.csv")
    check_every_row_accounted(result, errors, tu, tr)
    # every reader stream of every subject gets a best response (subjects with only a baseline: NE)
    trd = read_text_table(tr)
    streams = set(zip(trd["USUBJID"], trd["TREVAL"], trd["TREVALID"], strict=True))
    assert len({s[0] for s in streams}) == 12 and len(streams) == 36
    adrs = read_text_table(tmp_path / "adam" / "adrs.csv")
    for code in ("BOR", "CBOR"):
        rows = adrs.loc[adrs["PARAMCD"] == code]
        assert set(zip(rows["USUBJID"], rows["RSEVAL"], rows["RSEVALID"], strict=True)) == streams, code
    assert {"OVR", "BOR", "CBOR"} <= set(adrs["PARAMCD"])
    adtr = read_text_table(tmp_path / "adam" / "adtr.csv")
    # issue 15: per-lesion records beside the sum (targets numbered per reader stream)
    assert "SDIAM" in set(adtr["PARAMCD"])
    assert set(adtr["PARAMCD"]) - {"SDIAM"} <= {f"{p}{n}" for p in ("LDIAM", "NLDIAM") for n in range(1, 11)}


def test_pharmaverse_unscheduled_visits_keep_their_place_in_time(tmp_path: Path) -> None:
    """Subject 01-701-1153, investigator, worked by hand from the TR rows (LDIAM; LPERP for the node T02):

    | visit | date | T01 | T02 | T03 | T04 | T05 | sum | PCHG | nadir before | response |
    | BASELINE | 2013-09-23 | 19 | 11 | 16 | 10 | 19 | 75 | | | |
    | WEEK 6 | 2013-11-04 | 11 | 10.8 | 6 | 14 | 12 | 53.8 | -28.27 | 75 | SD |
    | WEEK 12 | 2013-12-16 | 6.6 | 12.6 | 11 | 7 | 12 | 49.2 | -34.40 | 53.8 | PR |
    | UNSCHEDULED 9.3 | 2013-12-30 | 14 | 10.8 | 8 | 13 | 6 | 51.8 | -30.93 | 49.2 (44 by VISITNUM) | PR |
    | UNSCHEDULED 9.2 | 2014-01-08 | 14 | 5 | 9 | 10 | 6 | 44 | -41.33 | 49.2 | PR |
    | WEEK 24 | 2014-03-11 | 10 | 8 | 6 | 9 | 6 | 39 | -48.00 | 44 | PR |

    The unscheduled visits have no TRDY; by date and by VISITNUM alike they come before WEEK 24 (VISITNUM
    12), so WEEK 24's nadir is 44 and no visit is PD (51.8 is +5.3 % over 49.2). BOR PR; CBOR PR (WEEK 12
    confirmed by WEEK 24, only PRs between).
    """
    tu, tr = PHARMA / "tu_onco.csv", PHARMA / "tr_onco.csv"
    run_sdtm(tmp_path, tu, tr, "--adam-dir", tmp_path / "adam")
    adtr = stream_rows(read_text_table(tmp_path / "adam" / "adtr.csv"), "01-701-1153", "INVESTIGATOR", "SDIAM")
    by_visit = {r["AVISIT"]: r for r in adtr.to_dict("records")}
    assert {v: num(r["AVAL"]) for v, r in by_visit.items() if v != "BASELINE"} == {
        "WEEK 6": 53.8,
        "WEEK 12": 49.2,
        "UNSCHEDULED 9.3": 51.8,
        "UNSCHEDULED 9.2": 44.0,
        "WEEK 24": 39.0,
    }
    assert round(num(by_visit["WEEK 12"]["PCHG"]), 2) == -34.40
    assert num(by_visit["WEEK 12"]["NADIR"]) == 53.8
    assert num(by_visit["UNSCHEDULED 9.2"]["NADIR"]) == 49.2
    assert num(by_visit["UNSCHEDULED 9.3"]["NADIR"]) in (49.2, 44.0)
    assert num(by_visit["WEEK 24"]["NADIR"]) == 44.0, "WEEK 24 nadir must include the earlier unscheduled visits"
    assert round(num(by_visit["WEEK 24"]["PCHGNAD"]), 2) == -11.36
    adrs = read_text_table(tmp_path / "adam" / "adrs.csv")
    ovr = stream_rows(adrs, "01-701-1153", "INVESTIGATOR", "OVR")
    assert dict(zip(ovr["AVISIT"], ovr["AVALC"], strict=True)) == {
        "WEEK 6": "SD",
        "WEEK 12": "PR",
        "UNSCHEDULED 9.3": "PR",
        "UNSCHEDULED 9.2": "PR",
        "WEEK 24": "PR",
    }
    assert list(stream_rows(adrs, "01-701-1153", "INVESTIGATOR", "BOR")["AVALC"]) == ["PR"]
    assert list(stream_rows(adrs, "01-701-1153", "INVESTIGATOR", "CBOR")["AVALC"]) == ["PR"]


def test_pharmaverse_subset_is_a_verbatim_copy_with_its_licence() -> None:
    assert (PHARMA / "LICENSE.md").read_text(encoding="utf-8").startswith("Apache License")
    assert "Apache" in (PHARMA / "README.md").read_text(encoding="utf-8")
    if not SHARED_PHARMA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_PHARMA}")
    for name in ("tu_onco.csv", "tr_onco.csv"):
        full = (SHARED_PHARMA / name).read_text(encoding="utf-8").splitlines(keepends=True)
        subset = (PHARMA / name).read_text(encoding="utf-8").splitlines(keepends=True)
        assert subset[0] == full[0]
        wanted = set(subset[1:])
        assert [line for line in full[1:] if line in wanted] == subset[1:]


def test_full_shared_pharmaverse_data(tmp_path: Path) -> None:
    tu, tr = SHARED_PHARMA / "tu_onco.csv", SHARED_PHARMA / "tr_onco.csv"
    if not (tu.is_file() and tr.is_file()):
        pytest.skip(f"shared pharmaversesdtm data not present at {SHARED_PHARMA}")
    result, _ = run_sdtm(tmp_path, tu, tr)
    errors = read_text_table(tmp_path / "visits.errors.csv")
    check_every_row_accounted(result, errors, tu, tr)
    best = read_text_table(tmp_path / "visits.best.csv")
    assert best["subject_id"].str.split("|").str[0].nunique() == 254


# ---------------------------------------------------------------------------------------------------------
# Reappearance after a definitive CR through SDTM (REFERENCE §1.10)
# ---------------------------------------------------------------------------------------------------------

TU_HEADER = "STUDYID,DOMAIN,USUBJID,TUSEQ,TULNKID,TUTESTCD,TUORRES,TUSTRESC,TULOC,TUEVAL,VISITNUM,VISIT,TUDTC"
TR_HEADER = (
    "STUDYID,DOMAIN,USUBJID,TRSEQ,TRLNKID,TRTESTCD,TRORRES,TRSTRESC,TRSTRESN,TRSTRESU,TREVAL,VISITNUM,VISIT,TRDTC,TRDY"
)


def test_reappearance_after_a_confirmed_cr_is_pd_through_sdtm(tmp_path: Path) -> None:
    """T01 30 mm disappears at WEEK 8 and WEEK 16 (CR, confirmed 56 days later) and is back at 3 mm at WEEK 24:
    3 mm over a 0 mm nadir is no PD by the +20 % / +5 mm rule, but after a confirmed CR any reappearance is PD."""
    tu = tmp_path / "tu.csv"
    tr = tmp_path / "tr.csv"
    tu.write_text(
        TU_HEADER + "\nS,TU,R-1,1,T01,TUMIDENT,TARGET,TARGET,LIVER,INVESTIGATOR,10,SCREENING,2025-01-06\n",
        encoding="utf-8",
    )
    rows = [
        ("1", "30", "30", "10", "SCREENING", "2025-01-06", "1"),
        ("2", "0", "0", "20", "WEEK 8", "2025-03-03", "57"),
        ("3", "0", "0", "30", "WEEK 16", "2025-04-28", "113"),
        ("4", "3", "3", "40", "WEEK 24", "2025-06-23", "169"),
    ]
    tr.write_text(
        TR_HEADER
        + "\n"
        + "".join(
            f"S,TR,R-1,{seq},T01,LDIAM,{value},{value},{number},mm,INVESTIGATOR,{visitnum},{visit},{date},{day}\n"
            for seq, value, number, visitnum, visit, date, day in rows
        ),
        encoding="utf-8",
    )
    result, out = run_sdtm(tmp_path, tu, tr, "--set", "recist1.1.confirmation_required=true")
    visits = read_text_table(out)
    overall = dict(zip(visits["timepoint"], visits["overall"], strict=True))
    assert overall == {"WEEK 8": "CR", "WEEK 16": "CR", "WEEK 24": "PD"}, result.stderr
    best = read_text_table(tmp_path / "visits.best.csv")
    assert list(best["best_overall_response"]) == ["CR"]

"""Dates as trials collect them (issue 14): partial dates, their imputation, study days, the stable-disease
reference.

Every expected day below is counted by hand from the calendar (the comments show the count), never taken from
the tool. Inputs are small long tables and SDTM TU/TR written here; the public data (pharmaversesdtm, the CDISC
Dataset-JSON DM files) are read from `/work/shared` when present.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli

from crlm_response.assessment import get_rules
from crlm_response.bor import BorSettings, best_overall_response
from crlm_response.dates import DateOptions, continuous_day, impute, study_day
from crlm_response.sdtm import read_sdtm
from crlm_response.sources import parse_date_ranges
from crlm_response.validate import validate_and_prepare
from crlm_response.writers import write_table

PHARMA = ROOT / "tests" / "fixtures" / "sdtm" / "pharmaverse_subset"
SHARED_PHARMA = ROOT.parent / "shared" / "data" / "pharmaversesdtm"
SDTM_SHARED_DM = ROOT.parent / "shared" / "data" / "cdisc-dataset-json" / "sdtm" / "dm.xpt"
LONG_HEADER = "subject_id,timepoint,date,lesion_id,kind,organ,is_lymph_node,longest_diameter_mm,status\n"
TU_HEADER = "STUDYID,DOMAIN,USUBJID,TUSEQ,TULNKID,TUTESTCD,TUORRES,TUSTRESC,TULOC,TUEVAL,VISITNUM,VISIT\n"
TR_HEADER = (
    "STUDYID,DOMAIN,USUBJID,TRSEQ,TRLNKID,TRTESTCD,TRORRES,TRSTRESC,TRSTRESN,TRSTRESU,TREVAL,VISITNUM,VISIT,TRDTC"
)


def epoch(text: str) -> float:
    return float(np.datetime64(text, "D").astype(np.int64))


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ---------------------------------------------------------------------------------------------------------
# The parts: date ranges, study days, imputation bounds, a NaN day in the best response
# ---------------------------------------------------------------------------------------------------------


def test_partial_dates_are_ranges_of_days() -> None:
    values = pd.Series(["2014-02-12", "2014-02", "2024-02", "2014", "2014-13", "2014-02-12T10:00+01:00", None])
    r = parse_date_ranges(values, "TRDTC")
    day = np.datetime64
    assert r.date[0] == day("2014-02-12") and np.isnat(r.date[1:]).all()
    assert list(r.first[:4]) == [day("2014-02-12"), day("2014-02-01"), day("2024-02-01"), day("2014-01-01")]
    assert list(r.last[:4]) == [day("2014-02-12"), day("2014-02-28"), day("2024-02-29"), day("2014-12-31")]
    assert list(r.precision) == ["day", "month", "month", "year", None, None, None]
    assert list(r.reason) == [
        None,
        None,
        None,
        None,
        "TRDTC must be a real date written YYYY-MM-DD",
        "TRDTC has a time-zone offset (+01:00); give the local date as YYYY-MM-DD",
        None,
    ]


def test_study_day_has_no_day_zero() -> None:
    ref = epoch("2012-11-30")
    dates = np.array([epoch("2012-11-30"), epoch("2012-12-01"), epoch("2012-11-29"), epoch("2013-01-11")])
    # the reference day is day 1, the next day 2, the day before -1; 2013-01-11 is 42 days after: day 43
    assert study_day(dates, np.full(4, ref)).tolist() == [1, 2, -1, 43]
    # from day -3 to day 40 is 42 days (there is no day 0), not 43
    assert float(np.diff(continuous_day(np.array([-3.0, 40.0])))[0]) == 42.0


def test_imputation_is_bounded_by_the_neighbouring_scans() -> None:
    """Axis in days: baseline 0, two partial dates in one month (days 21-48), the next scan on day 60."""
    subject = np.array(["S"] * 4, dtype=object)
    value = np.array([0.0, np.nan, np.nan, 60.0])
    first, mid, last = (np.array([np.nan, x, x, np.nan]) for x in (21.0, 35.0, 48.0))
    last[1:3] = 48.0
    assert impute(subject, value, first, mid, last, "first").value[1:3].tolist() == [21.0, 22.0]
    assert impute(subject, value, first, mid, last, "mid").value[1:3].tolist() == [35.0, 36.0]
    assert impute(subject, value, first, mid, last, "last").value[1:3].tolist() == [47.0, 48.0]
    # a partial date no day of which lies between the scans before (day 50) and after (day 60): not imputed
    late = impute(subject[:3], np.array([50.0, np.nan, 60.0]), first[:3], mid[:3], last[:3], "first")
    assert math.isnan(late.value[1]) and late.impossible[1]


def test_an_unknown_day_never_meets_a_minimum_interval() -> None:
    scale = get_rules("recist1.1").scale
    s = BorSettings()
    # NON-CR/NON-PD or SD on an unknown day: not evaluable (the non-target minimum used to pass by accident)
    for word in ("NON-CR/NON-PD", "SD"):
        result = best_overall_response(["S"], [np.nan], [word], s, scale)
        assert result.subjects["best_overall_response"].tolist() == ["NE"], word
    # a PR on an unknown day cannot be confirmed 28 days later, however far the next PR is
    confirmed = BorSettings(confirmation_required=True)
    result = best_overall_response(["S", "S"], [np.nan, 200.0], ["PR", "PR"], confirmed, scale, sequence=[1, 2])
    assert result.subjects["best_overall_response"].tolist() == ["SD"]  # the second PR (day 200) counts as SD
    # the order comes from `sequence`: the PD (unknown day) came first, so the later PR is ignored
    result = best_overall_response(["S", "S"], [np.nan, 50.0], ["PD", "PR"], s, scale, sequence=[1, 2])
    assert result.subjects["best_overall_response"].tolist() == ["PD"]
    assert result.subjects["best_overall_response_reason"].iat[0] == (
        "PD on an unknown day; visits after PD on an unknown day ignored"
    )
    labelled = best_overall_response(["S"], [np.nan], ["PD"], s, scale, labels=["WEEK 6"])
    assert labelled.subjects["best_overall_response_reason"].iat[0] == "PD at WEEK 6 (day unknown)"


# ---------------------------------------------------------------------------------------------------------
# Long tables: a partial date per imputation choice
# ---------------------------------------------------------------------------------------------------------


def partial_long(tmp_path: Path) -> Path:
    """Baseline 2025-01-06 (50 mm); FU1 in February 2025 (45 mm: -10 %, SD)."""
    path = tmp_path / "partial.csv"
    path.write_text(
        LONG_HEADER + "P1,baseline,2025-01-06,L1,target,liver,false,50,present\n" + "P1,FU1,2025-02,L1,,,,45,present\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("method", "day", "best", "date"),
    [
        ("none", "", "NE", None),
        ("first", "26", "NE", "2025-02-01"),  # 25 days to 31 January, +1: day 26, before the 42-day minimum
        ("mid", "40", "NE", "2025-02-15"),  # day 26 + 14
        ("last", "53", "SD", "2025-02-28"),  # day 26 + 27: past the minimum
    ],
)
def test_partial_date_per_imputation_choice(tmp_path: Path, method: str, day: str, best: str, date: str | None) -> None:
    out = tmp_path / "out.csv"
    result = run_cli("batch", partial_long(tmp_path), "-o", out, "-c", "recist1.1", "--date-imputation", method)
    assert result.exit_code == 0, result.stderr
    visit = read(out).iloc[0]
    assert (visit["timepoint"], visit["day"], visit["overall"]) == ("FU1", day, "SD")
    assert read(tmp_path / "out.best.csv")["best_overall_response"].tolist() == [best]
    warnings = read(tmp_path / "out.warnings.csv")
    by_code = dict(zip(warnings["code"], warnings["message"], strict=True))
    if method == "none":
        assert by_code["partial_date"] == (
            "timepoint FU1 has the partial date 2025-02 and no day: it is scored in its place, but no interval from "
            "it counts (stable-disease minimum, confirmation); --date-imputation first, mid or last would place it "
            "on 2025-02-01, 2025-02-15 or 2025-02-28"
        )
        assert "date_imputed" not in by_code
    else:
        assert by_code["date_imputed"] == (
            f"timepoint FU1: the partial date 2025-02 is imputed as {date} (--date-imputation {method}, ADTF D; "
            "after the previous scan (2025-01-06))"
        )
        assert "partial_date" not in by_code
    # first and last give different answers (NE, SD), whatever was chosen
    sensitive = warnings.loc[warnings["code"] == "imputation_sensitive"]
    assert sensitive[["subject_id", "criteria"]].values.tolist() == [["P1", "recist1.1"]]
    assert sensitive["message"].iat[0] == (
        "the best response depends on the partial date(s) at FU1: NE with --date-imputation first, SD with "
        "--date-imputation last"
    )
    assert f"--date-imputation {method}" in result.stderr  # the run says how dates were used


def test_no_imputation_sensitive_warning_when_first_and_last_agree(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_text(  # baseline 2025-01-06, FU1 in April: day 85 at the earliest, past any minimum
        LONG_HEADER + "P1,baseline,2025-01-06,L1,target,liver,false,50,present\nP1,FU1,2025-04,L1,,,,45,present\n",
        encoding="utf-8",
    )
    result = run_cli("batch", path, "-o", tmp_path / "out.csv", "-c", "recist1.1", "--date-imputation", "first")
    assert result.exit_code == 0, result.stderr
    assert set(read(tmp_path / "out.warnings.csv")["code"]) == {"date_imputed"}


def test_long_table_timepoint_without_day_or_date_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "nodate.csv"
    path.write_text(
        "subject_id,timepoint,day,lesion_id,kind,organ,longest_diameter_mm\n"
        "P1,baseline,0,L1,target,liver,40\nP1,FU1,,L1,,,28\nP2,baseline,0,L1,target,liver,40\nP2,FU1,56,L1,,,28\n",
        encoding="utf-8",
    )
    run_cli("batch", path, "-o", tmp_path / "out.csv", "-c", "recist1.1")
    errors = read(tmp_path / "out.errors.csv")
    row = errors.loc[errors["line"] == "3"].iloc[0]
    assert (row["code"], row["reason"]) == (
        "no_day_or_date",
        "timepoint FU1 has neither a day nor a date: its place in time is unknown; give its day or date",
    )
    assert set(read(tmp_path / "out.csv")["subject_id"]) == {"P2"}


# ---------------------------------------------------------------------------------------------------------
# SDTM: VISITNUM orders, the neighbouring scans bound the imputation, the shared date columns
# ---------------------------------------------------------------------------------------------------------


def sdtm_files(tmp_path: Path, visits: dict[str, list[tuple[int, str, str, float]]], trdy: bool = False) -> tuple:
    """One target lesion (liver, LDIAM = the sum) per subject; visits (VISITNUM, VISIT, TRDTC, size)."""
    tu, tr = tmp_path / "tu.csv", tmp_path / "tr.csv"
    tu.write_text(
        TU_HEADER
        + "".join(
            f"ST,TU,{s},1,T01,TUMIDENT,TARGET,TARGET,LIVER,INVESTIGATOR,{rows[0][0]},{rows[0][1]}\n"
            for s, rows in visits.items()
        ),
        encoding="utf-8",
    )
    lines = [TR_HEADER + (",TRDY" if trdy else "") + "\n"]
    for s, rows in visits.items():
        for seq, (visitnum, visit, dtc, size) in enumerate(rows, 1):
            lines.append(
                f"ST,TR,{s},{seq},T01,LDIAM,{size:g},{size:g},{size:g},mm,INVESTIGATOR,{visitnum},{visit},{dtc}\n"
            )
    tr.write_text("".join(lines), encoding="utf-8")
    return tu, tr


BOUNDED = {
    # baseline 5 February; WEEK 2 somewhere in February; WEEK 4 on 20 February
    "S-1": [(10, "BASELINE", "2025-02-05", 50), (20, "WEEK 2", "2025-02", 40), (30, "WEEK 4", "2025-02-20", 30)],
    # a year-only date between two full ones
    "S-2": [(10, "BASELINE", "2024-11-20", 50), (20, "WEEK 8", "2025", 40), (30, "WEEK 16", "2025-03-12", 30)],
}


@pytest.mark.parametrize(
    ("method", "week2", "day"),
    [
        ("first", "2025-02-06", 1),  # 1 February is on or before the baseline scan: the day after it
        ("mid", "2025-02-15", 10),  # the 15th lies between the scans
        ("last", "2025-02-19", 14),  # 28 February is after WEEK 4: the day before it
    ],
)
def test_sdtm_imputation_bounded_by_neighbouring_scans(tmp_path: Path, method: str, week2: str, day: int) -> None:
    tu, tr = sdtm_files(tmp_path, BOUNDED)
    read_result, _ = read_sdtm(tu, tr)
    prepared, problems = validate_and_prepare(read_result.tables, DateOptions(method))
    v = prepared.visits.set_index(["subject_id", "timepoint"])
    row = v.loc[("S-1", "WEEK 2")]
    assert (str(row["date"].date()), row["day"], row["date_imputation"]) == (week2, day, "D")
    assert (row["date_collected"], row["visit_order"], math.isnan(row["study_day"])) == ("2025-02", 20.0, True)
    year = v.loc[("S-2", "WEEK 8")]
    expected = {"first": "2025-01-01", "mid": "2025-06-30", "last": "2025-03-11"}[method]
    if method == "mid":  # 30 June is after WEEK 16 (12 March): the day before it
        expected = "2025-03-11"
    assert (str(year["date"].date()), year["date_imputation"]) == (expected, "M")
    message = problems.loc[(problems["code"] == "date_imputed") & (problems["subject_id"] == "S-1"), "message"]
    assert message.iat[0] == (
        f"timepoint WEEK 2 (VISITNUM 20): the partial date 2025-02 is imputed as {week2} (--date-imputation "
        f"{method}, ADTF D; after the previous scan (2025-02-05) and before the next (2025-02-20))"
    )
    baseline = v.loc[("S-1", "BASELINE")]
    assert (baseline["date_collected"], baseline["date_imputation"], baseline["day"]) == ("2025-02-05", None, 0)


def test_sdtm_partial_date_without_imputation_keeps_its_place(tmp_path: Path) -> None:
    tu, tr = sdtm_files(tmp_path, BOUNDED)
    out = tmp_path / "v.csv"
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", out, "--out-rs", tmp_path / "rs.csv")
    assert result.exit_code == 0, result.stderr
    visits = read(out)
    s1 = visits.loc[visits["subject_id"] == "S-1"]
    # WEEK 2 scored in VISITNUM order, before WEEK 4: -20 % is SD, then -40 % PR; WEEK 4 is day 15
    assert s1[["timepoint", "day", "overall"]].values.tolist() == [["WEEK 2", "", "SD"], ["WEEK 4", "15", "PR"]]
    rs = read(tmp_path / "rs.csv")
    week2 = rs.loc[(rs["USUBJID"] == "S-1") & (rs["VISIT"] == "WEEK 2")]
    assert set(week2["RSDTC"]) == {"2025-02"} and set(week2["RSDY"]) == {""}  # as collected; no study day
    warning = read(tmp_path / "v.warnings.csv").set_index(["subject_id", "timepoint"]).loc[("S-1", "WEEK 2")]
    assert warning["code"] == "partial_date"
    assert warning["message"].endswith("would place it on 2025-02-06, 2025-02-15 or 2025-02-19")


def test_sdtm_rs_keeps_the_collected_date_when_imputed(tmp_path: Path) -> None:
    tu, tr = sdtm_files(tmp_path, BOUNDED)
    rs = tmp_path / "rs.csv"
    result = run_cli(
        "batch",
        "--sdtm-tu",
        tu,
        "--sdtm-tr",
        tr,
        "-o",
        tmp_path / "v.csv",
        "--out-rs",
        rs,
        "--date-imputation",
        "first",
    )
    assert result.exit_code == 0, result.stderr
    week2 = read(rs).loc[lambda f: (f["USUBJID"] == "S-1") & (f["VISIT"] == "WEEK 2")]
    assert set(week2["RSDTC"]) == {"2025-02"} and set(week2["RSDY"]) == {""}


def test_sdtm_visit_without_any_date_is_scored_with_a_warning(tmp_path: Path) -> None:
    tu, tr = sdtm_files(
        tmp_path,
        {"S-1": [(10, "BASELINE", "2025-02-05", 50), (20, "WEEK 6", "", 20), (30, "WEEK 12", "2025-05-01", 20)]},
    )
    out = tmp_path / "v.csv"
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert read(out)[["timepoint", "day", "overall"]].values.tolist() == [
        ["WEEK 6", "", "PR"],
        ["WEEK 12", "85", "PR"],  # 23 + 31 + 30 + 1 days after 5 February
    ]
    warning = read(tmp_path / "v.warnings.csv").iloc[0]
    assert (warning["code"], warning["timepoint"]) == ("partial_date", "WEEK 6")
    assert warning["message"].startswith("timepoint WEEK 6 (VISITNUM 20) has no date and no study day")


# ---------------------------------------------------------------------------------------------------------
# Study days: from TRDY, from DM (any format), never from 1970
# ---------------------------------------------------------------------------------------------------------

DM_SUBJECTS = {
    # DM: CDISC001 RFSTDTC 2012-11-30, CDISC002 2012-11-15 (sdtm/dm.* of the CDISC Dataset-JSON examples)
    "CDISC001": [(10, "SCREENING", "2012-11-28", 40), (20, "WEEK 6", "2013-01-11", 30)],
    "CDISC002": [(10, "SCREENING", "2012-11-15", 40), (20, "WEEK 6", "2013-01-02", 30)],
    "CDISC999": [(10, "SCREENING", "2013-01-10", 40), (20, "WEEK 6", "2013-02-21", 30)],
}
# CDISC001: 28 Nov is 2 days before the reference: day -2; 11 Jan is 42 days after it: day 43
# CDISC002: the reference day itself: day 1; 2 Jan is 48 days after: day 49; CDISC999 is not in DM
DM_DAYS = {("CDISC001", "SCREENING"): "-2", ("CDISC001", "WEEK 6"): "43", ("CDISC002", "WEEK 6"): "49"}


def test_without_dm_and_trdy_study_days_are_empty_not_counted_from_1970(tmp_path: Path) -> None:
    tu, tr = sdtm_files(tmp_path, DM_SUBJECTS)
    rs = tmp_path / "rs.csv"
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", tmp_path / "v.csv", "--out-rs", rs)
    assert result.exit_code == 0, result.stderr
    assert set(read(rs)["RSDY"]) == {""}
    # days since the baseline scan still come from the dates: 44, 48 and 42
    assert read(tmp_path / "v.csv")["day"].tolist() == ["44", "48", "42"]


@pytest.mark.parametrize("form", ["xpt", "json", "ndjson"])
def test_study_days_from_dm_in_every_format(tmp_path: Path, form: str) -> None:
    dm = SDTM_SHARED_DM.with_suffix("." + form)
    if not dm.is_file():
        pytest.skip(f"shared DM not present at {dm}")
    tu, tr = sdtm_files(tmp_path, DM_SUBJECTS)
    rs = tmp_path / "rs.csv"
    result = run_cli(
        "batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", tmp_path / "v.csv", "--out-rs", rs, "--sdtm-dm", dm
    )
    assert result.exit_code == 0, result.stderr
    ovr = read(rs).loc[lambda f: f["RSTESTCD"] == "OVRLRESP"]
    days = {(u, v): d for u, v, d in zip(ovr["USUBJID"], ovr["VISIT"], ovr["RSDY"], strict=True)}
    assert days == {("CDISC001", "WEEK 6"): "43", ("CDISC002", "WEEK 6"): "49", ("CDISC999", "WEEK 6"): ""}
    read_result, _ = read_sdtm(tu, tr, dm_path=dm)
    prepared, _ = validate_and_prepare(read_result.tables)
    v = prepared.visits.set_index(["subject_id", "timepoint"])["study_day"]
    assert {k: f"{v[k]:g}" for k in DM_DAYS} == DM_DAYS
    warning = read(tmp_path / "v.warnings.csv").loc[lambda f: f["code"] == "no_reference_date"].iloc[0]
    assert (warning["subject_id"], warning["message"]) == (
        "CDISC999",
        f"subject is not in DM ({dm.name}): its study days (RSDY) come from TRDY only, empty where TRDY is",
    )


def test_trdy_is_kept_and_intervals_cross_the_reference_without_day_zero(tmp_path: Path) -> None:
    """TRDY -3 at screening and 40 at week 6: 42 days apart (there is no day 0), so SD counts at 42 days."""
    tu = tmp_path / "tu.csv"
    tu.write_text(TU_HEADER + "ST,TU,S-1,1,T01,TUMIDENT,TARGET,TARGET,LIVER,INVESTIGATOR,10,SCREENING\n", "utf-8")
    tr = tmp_path / "tr.csv"
    tr.write_text(
        TR_HEADER
        + ",TRDY\nST,TR,S-1,1,T01,LDIAM,50,50,50,mm,INVESTIGATOR,10,SCREENING,,-3\n"
        + "ST,TR,S-1,2,T01,LDIAM,45,45,45,mm,INVESTIGATOR,20,WEEK 6,,40\n",
        encoding="utf-8",
    )
    rs = tmp_path / "rs.csv"
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", tmp_path / "v.csv", "--out-rs", rs)
    assert result.exit_code == 0, result.stderr
    assert read(tmp_path / "v.csv")["day"].tolist() == ["42"]
    assert read(tmp_path / "v.best.csv")["best_overall_response"].tolist() == ["SD"]
    assert set(read(rs)["RSDY"]) == {"40"}


def test_dm_without_rfstdtc_is_refused(tmp_path: Path) -> None:
    tu, tr = sdtm_files(tmp_path, DM_SUBJECTS)
    dm = tmp_path / "dm.csv"
    dm.write_text("STUDYID,USUBJID,RFENDTC\nST,CDISC001,2013-05-01\n", encoding="utf-8")
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", tmp_path / "v.csv", "--sdtm-dm", dm)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {dm}: not an SDTM DM table: missing column(s) RFSTDTC (the file has: STUDYID, USUBJID, RFENDTC)"
    )


def test_dm_of_another_study_is_refused(tmp_path: Path) -> None:
    tu, tr = sdtm_files(tmp_path, {"S-1": BOUNDED["S-1"]})
    dm = tmp_path / "dm.csv"
    dm.write_text("USUBJID,RFSTDTC\nCDISC001,2012-11-30\n", encoding="utf-8")
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", tmp_path / "v.csv", "--sdtm-dm", dm)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {dm}: none of the 1 subjects of TR is in DM (USUBJID S-1 is not) (give the DM of the same study)"
    )


def test_sdtm_dm_needs_sdtm_input(tmp_path: Path) -> None:
    result = run_cli("batch", partial_long(tmp_path), "-o", tmp_path / "v.csv", "--sdtm-dm", tmp_path / "dm.csv")
    assert result.exit_code == 2
    assert "--sdtm-dm needs SDTM input (--sdtm-tu and --sdtm-tr)" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# --sd-from randomisation (admiralonco: ADT >= RANDDT + 42)
# ---------------------------------------------------------------------------------------------------------

RANDOMISED = {
    # randomised 1 January, baseline scan 10 January, SD on 15 February: 36 days after the scan, 45 after RANDDT
    "R-1": [(10, "BASELINE", "2025-01-10", 50), (20, "WEEK 5", "2025-02-15", 45)],
    "R-2": [(10, "BASELINE", "2025-01-10", 50), (20, "WEEK 5", "2025-02-15", 45)],
}


def adsl(tmp_path: Path, r2_randdt: str = "2025-01-01") -> Path:
    path = tmp_path / "adsl.csv"
    path.write_text(
        f"STUDYID,USUBJID,RFSTDTC,RANDDT\nST,R-1,2025-01-10,2025-01-01\nST,R-2,2025-01-10,{r2_randdt}\n", "utf-8"
    )
    return path


def test_sd_minimum_from_randomisation(tmp_path: Path) -> None:
    tu, tr = sdtm_files(tmp_path, RANDOMISED)
    base = ["batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "--sdtm-dm", adsl(tmp_path), "--summary"]
    result = run_cli(*base, "-o", tmp_path / "a.csv", "--summary-file", tmp_path / "a.json")
    assert result.exit_code == 0, result.stderr
    best = read(tmp_path / "a.best.csv")
    assert best["best_overall_response"].tolist() == ["NE", "NE"]  # day 36 < 42 after the baseline scan
    assert "dates: stable-disease minimum counted from the baseline scan" in result.stdout
    assert json.loads((tmp_path / "a.json").read_text())["parameters"]["sd_from"] == "baseline"

    result = run_cli(
        *base, "-o", tmp_path / "b.csv", "--sd-from", "randomisation", "--summary-file", tmp_path / "b.json"
    )
    assert result.exit_code == 0, result.stderr
    best = read(tmp_path / "b.best.csv")
    assert best["best_overall_response"].tolist() == ["SD", "SD"]  # 45 days after RANDDT
    assert best["best_overall_response_day"].tolist() == ["36", "36"]  # still days since the baseline scan
    assert best["best_overall_response_reason"].iat[0] == (
        "SD at WEEK 5 (day 36), at least 42 days after randomisation"
    )
    assert "dates: stable-disease minimum counted from randomisation (RANDDT)" in result.stdout
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["parameters"] == {"date_imputation": "none", "sd_from": "randomisation"}


def test_sd_from_randomisation_subject_without_randdt_is_set_aside(tmp_path: Path) -> None:
    tu, tr = sdtm_files(tmp_path, RANDOMISED)
    out = tmp_path / "v.csv"
    result = run_cli(
        "batch",
        "--sdtm-tu",
        tu,
        "--sdtm-tr",
        tr,
        "-o",
        out,
        "--sdtm-dm",
        adsl(tmp_path, ""),
        "--sd-from",
        "randomisation",
    )
    assert result.exit_code == 0, result.stderr
    errors = read(tmp_path / "v.errors.csv")
    assert set(errors["subject_id"]) == {"R-2"} and set(errors["code"]) == {"no_randomisation_date"}
    assert errors["reason"].iat[0] == (
        "no RANDDT for this subject in adsl.csv (absent, empty or partial): with --sd-from randomisation the "
        "stable-disease minimum cannot be counted"
    )
    assert set(read(out)["subject_id"]) == {"R-1"}


def test_sd_from_randomisation_needs_randdt(tmp_path: Path) -> None:
    tu, tr = sdtm_files(tmp_path, RANDOMISED)
    dm = tmp_path / "dm.csv"
    dm.write_text("USUBJID,RFSTDTC\nR-1,2025-01-10\nR-2,2025-01-10\n", encoding="utf-8")
    args = ["batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", tmp_path / "v.csv", "--sd-from", "randomisation"]
    result = run_cli(*args, "--sdtm-dm", dm)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: {dm}: --sd-from randomisation needs each subject's randomisation date, RANDDT, and this file has "
        "none (RANDDT is an ADSL variable (SDTM DM has no randomisation date): give ADSL as --sdtm-dm)"
    )
    result = run_cli(*args)
    assert result.exit_code == 2
    assert "--sd-from randomisation needs --sdtm-dm" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# The public pharmaversesdtm data
# ---------------------------------------------------------------------------------------------------------


def run_sdtm(tmp_path: Path, tu: Path, tr: Path, *extra: Any) -> dict[str, pd.DataFrame]:
    out = tmp_path / "visits.csv"
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", out, "--out-rs", tmp_path / "rs.csv", *extra)
    assert result.exit_code == 0, result.stderr
    return {
        "visits": read(out),
        "best": read(tmp_path / "visits.best.csv"),
        "errors": read(tmp_path / "visits.errors.csv"),
        "rs": read(tmp_path / "rs.csv"),
        "warnings": read(tmp_path / "visits.warnings.csv"),
    }


INFORMATIONAL = {"duplicate_measurement", "summary_recomputed", "not_used", "test_not_used", "duplicate_row"}


def test_pharmaverse_without_trdy_scores_every_visit(tmp_path: Path) -> None:
    """The 16 partial TRDTC rows (2014-01 at 01-701-1015's investigator baseline) were rescued by TRDY = 1;
    without TRDY they and their visit are still scored, and no study day is counted from 1970."""
    root = SHARED_PHARMA if (SHARED_PHARMA / "tr_onco.csv").is_file() else PHARMA
    tr = pd.read_csv(root / "tr_onco.csv", dtype=str, keep_default_na=False)
    assert int((tr["TRDTC"] == "2014-01").sum()) == 16
    without = tmp_path / "tr_without_trdy.csv"
    tr.drop(columns=["TRDY"]).to_csv(without, index=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shipped = run_sdtm(tmp_path / "a", root / "tu_onco.csv", root / "tr_onco.csv")
    dropped = run_sdtm(tmp_path / "b", root / "tu_onco.csv", without)
    key = ["subject_id", "timepoint"]
    assert dropped["visits"][key].values.tolist() == shipped["visits"][key].values.tolist()
    assert set(dropped["errors"]["code"]) <= INFORMATIONAL
    assert len(dropped["errors"]) == len(shipped["errors"])
    assert set(dropped["rs"]["RSDY"]) == {""}  # no TRDY, no DM: empty, never days since 1970
    investigator = dropped["visits"].loc[dropped["visits"]["subject_id"] == "01-701-1015|INVESTIGATOR"]
    assert investigator["timepoint"].tolist() == ["WEEK 6", "WEEK 12", "WEEK 24"]
    # its baseline rows say 2014-01 and 2014-01-02: the visit is dated 2 January, so WEEK 6 (12 Feb) is day 41
    assert investigator["day"].tolist() == ["41", "83", "167"]


def with_partial_week6(tr_path: Path, tmp_path: Path) -> Path:
    """The issue's case: 01-701-1015's WEEK 6 (all three readers) recorded as 2014-02, and no TRDY for it."""
    tr = pd.read_csv(tr_path, dtype=str, keep_default_na=False)
    mine = tr["USUBJID"] == "01-701-1015"
    tr.loc[mine & (tr["VISIT"] == "WEEK 6"), "TRDTC"] = "2014-02"
    tr.loc[mine, "TRDY"] = ""
    path = tmp_path / "tr_partial.csv"
    tr.to_csv(path, index=False)
    return path


def test_pharmaverse_partial_scan_date_scores_all_three_readers(tmp_path: Path) -> None:
    """Before issue 14 the three streams of 01-701-1015 were set aside (9 overall responses missing)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shipped = run_sdtm(tmp_path / "a", PHARMA / "tu_onco.csv", PHARMA / "tr_onco.csv")
    partial = run_sdtm(tmp_path / "b", PHARMA / "tu_onco.csv", with_partial_week6(PHARMA / "tr_onco.csv", tmp_path))
    ovr = partial["rs"].loc[(partial["rs"]["RSTESTCD"] == "OVRLRESP") & (partial["rs"]["USUBJID"] == "01-701-1015")]
    assert len(ovr) == 9
    week6 = ovr.loc[ovr["VISIT"] == "WEEK 6"]
    assert set(week6["RSDTC"]) == {"2014-02"} and set(week6["RSDY"]) == {""}
    # per-visit responses need no day: every visit of every stream gets the shipped data's answer
    cols = ["subject_id", "timepoint", "overall", "target", "non_target", "new_lesions"]
    pd.testing.assert_frame_equal(partial["visits"][cols], shipped["visits"][cols])
    flagged = partial["warnings"].loc[partial["warnings"]["code"] == "partial_date"]
    assert sorted(flagged["subject_id"]) == [
        "01-701-1015|INDEPENDENT ASSESSOR|RADIOLOGIST 1",
        "01-701-1015|INDEPENDENT ASSESSOR|RADIOLOGIST 2",
        "01-701-1015|INVESTIGATOR",
    ]
    assert set(flagged["timepoint"]) == {"WEEK 6"}
    assert flagged["message"].iat[0].endswith("would place it on 2014-02-01, 2014-02-15 or 2014-02-28")


def as_typed(path: Path) -> pd.DataFrame:
    """A CSV with numbers as numbers (what a SAS or Dataset-JSON file would hold), empty text as missing."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].fillna("")
    return frame


@pytest.mark.parametrize("suffix", [".xpt", ".json"])
def test_pharmaverse_partial_dates_read_the_same_from_xpt_and_dataset_json(tmp_path: Path, suffix: str) -> None:
    tr_csv = with_partial_week6(PHARMA / "tr_onco.csv", tmp_path)
    (tmp_path / "csv").mkdir()
    (tmp_path / "cdisc").mkdir()
    tu, tr = tmp_path / f"tu{suffix}", tmp_path / f"tr{suffix}"
    write_table(as_typed(PHARMA / "tu_onco.csv"), tu, name="TU")
    write_table(as_typed(tr_csv), tr, name="TR")
    by_csv = run_sdtm(tmp_path / "csv", PHARMA / "tu_onco.csv", tr_csv, "--date-imputation", "last")
    by_cdisc = run_sdtm(tmp_path / "cdisc", tu, tr, "--date-imputation", "last")
    for name in ("visits", "best", "rs", "warnings"):
        pd.testing.assert_frame_equal(by_cdisc[name], by_csv[name], obj=name)
    imputed = by_csv["warnings"].loc[by_csv["warnings"]["code"] == "date_imputed"]
    assert len(imputed) == 3 and imputed["message"].str.contains("imputed as 2014-02-28").all()


def test_sdtm_dates_rule_when_visitnum_contradicts_them(tmp_path: Path) -> None:
    """Unscheduled visit 30.3 was scanned (20 March, day 78) before 30.2 (1 April, day 90). Both show progression
    (nadir 30 mm at WEEK 6); ordering by VISITNUM would date it at day 90. The scan dates place the visits, and
    the visit out of step is named."""
    visits = {
        "S-3": [
            (10, "BASELINE", "2025-01-01", 50),
            (20, "WEEK 6", "2025-02-12", 30),  # -40 %: PR
            (30.2, "UNSCHEDULED 30.2", "2025-04-01", 45),
            (30.3, "UNSCHEDULED 30.3", "2025-03-20", 40),  # +33 % and +10 mm from the nadir: PD
        ]
    }
    tu, tr = sdtm_files(tmp_path, visits)
    out = tmp_path / "v.csv"
    result = run_cli("batch", "--sdtm-tu", tu, "--sdtm-tr", tr, "-o", out)
    assert result.exit_code == 0, result.stderr
    rows = read(out)
    assert rows[["timepoint", "day", "overall"]].values.tolist() == [
        ["WEEK 6", "42", "PR"],
        ["UNSCHEDULED 30.3", "78", "PD"],
        ["UNSCHEDULED 30.2", "90", "PD"],
    ]
    best = read(tmp_path / "v.best.csv").iloc[0]
    assert (best["best_overall_response"], best["first_pd_day"]) == ("PR", "78")
    warning = read(tmp_path / "v.warnings.csv").set_index("code").loc["visit_order_conflict"]
    assert warning["timepoint"] == "UNSCHEDULED 30.3"
    assert warning["message"] == (
        "timepoint UNSCHEDULED 30.3 (VISITNUM 30.3) is dated before a visit with a lower VISITNUM: visits are "
        "placed by their scan dates; check VISITNUM and the dates"
    )

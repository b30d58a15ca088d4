"""admiralonco's own BOR / CBOR test cases, transcribed: our best overall response gives admiralonco's answers.

Source: pharmaverse/admiralonco (Apache-2.0), commit 83370b1, `tests/testthat/test-derive_param_bor.R` and
`tests/testthat/test-derive_param_confirmed_bor.R`; each test below names the `test_that()` it comes from. The
subjects, dates and expected answers are copied as written there. A case is visits plus options:

* day = ADT - TRTSDT (admiralonco's `reference_date = TRTSDT`), so `ref_start_window = 28` is `sd_min_days = 28`
  (it applies to NON-CR/NON-PD too, as `non_cr_non_pd_min_days` empty does);
* `ref_confirm` is `min_confirmation_interval_days`, `max_nr_ne` is `max_ne_between_confirmation`, `accept_sd` is
  `accept_sd_between_pr_confirmation`, `missing_as_ne` is `missing_as_ne`;
* `source_pd` (a PD date from another source) is `pd_day` (the CLI's `bor --pd-dates`); without `source_pd`
  admiralonco's functions do not stop at the first PD (its ADRS template filters ANL02FL first), which is
  `stop_at_first_pd = False`;
* the expected ADT is compared as its day (ADT - TRTSDT); MISSING has none.

Every case of both files that is about the derivation could be written so. Not transcribed: the tests of error
messages and deprecations (derive_param_bor Tests 3-5, derive_param_confirmed_bor Tests 3, 5, 6), and the
`aval_fun` mapping (AVAL 11, 22, ... is a user function; our AVAL is aval_resp(), checked in test_adam.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from crlm_response.assessment import get_rules
from crlm_response.bor import BorSettings, best_overall_response

SCALE = get_rules("recist1.1").scale

# derive_param_bor: adsl (USUBJID, TRTSDT) and adrs (USUBJID, ADT, AVALC), PARAMCD OVR.
TRTSDT_BOR = {
    "1": "2020-01-01",
    "2": "2019-12-12",
    "3": "2019-11-11",
    "4": "2019-12-30",
    "5": "2020-01-01",
    "6": "2020-02-02",
    "7": "2020-02-02",
    "8": "2020-04-01",
}
OVR_BOR = [
    ("1", "2020-01-01", "PR"),
    ("1", "2020-02-01", "CR"),
    ("1", "2020-02-16", "NE"),
    ("1", "2020-03-01", "CR"),
    ("1", "2020-04-01", "SD"),
    ("2", "2020-01-01", "SD"),
    ("2", "2020-02-01", "PR"),
    ("2", "2020-03-01", "SD"),
    ("2", "2020-03-13", "CR"),
    ("3", "2019-11-12", "CR"),
    ("3", "2019-12-02", "CR"),
    ("3", "2020-01-01", "SD"),
    ("4", "2020-01-01", "PR"),
    ("4", "2020-03-01", "SD"),
    ("4", "2020-04-01", "SD"),
    ("4", "2020-05-01", "PR"),
    ("4", "2020-05-15", "NON-CR/NON-PD"),
    ("5", "2020-01-01", "PR"),
    ("5", "2020-01-10", "SD"),
    ("5", "2020-01-20", "PR"),
    ("5", "2020-05-15", "NON-CR/NON-PD"),
    ("6", "2020-02-06", "PR"),
    ("6", "2020-02-16", "CR"),
    ("6", "2020-03-30", "PR"),
    ("7", "2020-02-06", "PR"),
    ("7", "2020-02-16", "CR"),
    ("7", "2020-04-01", "NE"),
]
# derive_param_confirmed_bor: the same subjects plus 9 (PD, then SD), and a PD record for 9 as source_pd.
TRTSDT_CBOR = {**TRTSDT_BOR, "9": "2020-02-01"}
OVR_CBOR = [*OVR_BOR, ("9", "2020-02-16", "PD"), ("9", "2020-03-06", "SD")]
PD_CBOR = {"9": "2020-02-16"}


def day(date: str, reference: str) -> float:
    return float((dt.date.fromisoformat(date) - dt.date.fromisoformat(reference)).days)


def best(
    rows: list[tuple[str, str, str]],
    adsl: dict[str, str],
    settings: BorSettings,
    pd_dates: dict[str, str] | None = None,
) -> dict[str, tuple[str, str | None]]:
    """admiralonco's BOR record per ADSL subject: (AVALC, ADT), ADT None when there is none."""
    subjects = [r[0] for r in rows] + list(adsl)  # every ADSL subject, also one without records (MISSING)
    days = [day(d, adsl[s]) for s, d, _ in rows] + [np.nan] * len(adsl)
    words = [w for _, _, w in rows] + [None] * len(adsl)
    pd_day = None
    if pd_dates is not None:
        pd_day = [day(pd_dates[s], adsl[s]) if s in pd_dates else np.nan for s in subjects]
    result = best_overall_response(subjects, days, words, settings, SCALE, pd_day=pd_day)
    out = {}
    for row in result.subjects.itertuples():
        when = None
        if not np.isnan(row.best_overall_response_day):
            start = dt.date.fromisoformat(adsl[row.subject])
            when = (start + dt.timedelta(days=int(row.best_overall_response_day))).isoformat()
        out[row.subject] = (row.best_overall_response, when)
    return out


BOR_SETTINGS = BorSettings(sd_min_days=28)
EXPECTED_BOR_TEST_1 = {
    "1": ("CR", "2020-02-01"),
    "2": ("CR", "2020-03-13"),
    "3": ("CR", "2019-11-12"),
    "4": ("PR", "2020-01-01"),
    "5": ("PR", "2020-01-01"),
    "6": ("CR", "2020-02-16"),
    "7": ("CR", "2020-02-16"),
    "8": ("MISSING", None),
}


def test_derive_param_bor_test_1_no_source_pd() -> None:
    """derive_param_bor Test 1: No source_pd (default BOR, all subjects have a record after the reference date)."""
    assert best(OVR_BOR, TRTSDT_BOR, BOR_SETTINGS) == EXPECTED_BOR_TEST_1


def _subject_7_before_reference(word: str | None = None) -> list[tuple[str, str, str]]:
    """Test 1's `adrs_01`: subject 7's three records moved to 2020-01-01..03, before its TRTSDT 2020-02-02."""
    moved = iter(["2020-01-01", "2020-01-02", "2020-01-03"])
    return [(s, next(moved), word or w) if s == "7" else (s, d, w) for s, d, w in OVR_BOR]


def test_derive_param_bor_test_1_records_before_reference_date_pr_cr() -> None:
    """derive_param_bor Test 1: Subjects only have records less than reference date (PR/CR): a CR or PR counts
    whenever it is, so subject 7 is CR on 2020-01-02."""
    expected = {**EXPECTED_BOR_TEST_1, "7": ("CR", "2020-01-02")}
    assert best(_subject_7_before_reference(), TRTSDT_BOR, BOR_SETTINGS) == expected


def test_derive_param_bor_test_1_records_before_reference_date_sd() -> None:
    """derive_param_bor Test 1: Subjects only have records less than reference date (SD): SD before the window is
    NE, dated at the first of them."""
    expected = {**EXPECTED_BOR_TEST_1, "7": ("NE", "2020-01-01")}
    assert best(_subject_7_before_reference("SD"), TRTSDT_BOR, BOR_SETTINGS) == expected


def test_derive_param_bor_test_2_with_source_pd() -> None:
    """derive_param_bor Test 2: With source_pd. PD dates: 2 on 2020-03-01 (the SD that day is kept, the CR of
    2020-03-13 is not: PR), 6 on 2020-02-05 (every record is later: MISSING), 9 (not in ADSL: nothing)."""
    pd_dates = {"9": "2020-02-16", "2": "2020-03-01", "6": "2020-02-05"}
    expected = {**EXPECTED_BOR_TEST_1, "2": ("PR", "2020-02-01"), "6": ("MISSING", None)}
    adsl = TRTSDT_BOR
    assert best(OVR_BOR, adsl, BOR_SETTINGS, {s: d for s, d in pd_dates.items() if s in adsl}) == expected


def test_derive_param_bor_test_2_with_source_pd_through_the_cli(tmp_path: Path) -> None:
    """derive_param_bor Test 2 as a user runs it: `bor visits.csv --pd-dates pd.csv --sd-min-days 28`, dates
    with a per-subject reference_date (TRTSDT), subject 8 as a row without a response."""
    rows = [{"subject_id": s, "date": d, "reference_date": TRTSDT_BOR[s], "response": w} for s, d, w in OVR_BOR]
    rows.append({"subject_id": "8", "date": "", "reference_date": TRTSDT_BOR["8"], "response": ""})
    visits, pd_file, out = tmp_path / "visits.csv", tmp_path / "pd.csv", tmp_path / "bor.csv"
    pd.DataFrame(rows).to_csv(visits, index=False)
    pd_file.write_text("subject_id,date\n9,2020-02-16\n2,2020-03-01\n6,2020-02-05\n", encoding="utf-8")
    result = run_cli("bor", visits, "--pd-dates", pd_file, "--sd-min-days", 28, "-o", out)
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("subject_id")
    expected = {**EXPECTED_BOR_TEST_1, "2": ("PR", "2020-02-01"), "6": ("MISSING", None)}
    got = {
        s: (
            r["best_overall_response"],
            None
            if r["best_overall_response_day"] == ""
            else (
                dt.date.fromisoformat(TRTSDT_BOR[s]) + dt.timedelta(days=int(r["best_overall_response_day"]))
            ).isoformat(),
        )
        for s, r in table.iterrows()
    }
    assert got == expected
    assert table.loc["6", "first_pd_day"] == str(int(day("2020-02-05", TRTSDT_BOR["6"])))
    assert "visits after the progression day" in table.loc["6", "best_overall_response_reason"]


CBOR_DEFAULT = BorSettings(confirmation_required=True, sd_min_days=28, min_confirmation_interval_days=28)
EXPECTED_CBOR_TEST_1 = {
    "1": ("CR", "2020-02-01"),
    "2": ("SD", "2020-02-01"),
    "3": ("SD", "2020-01-01"),
    "4": ("SD", "2020-03-01"),
    "5": ("NON-CR/NON-PD", "2020-05-15"),
    "6": ("SD", "2020-03-30"),
    "7": ("NE", "2020-02-06"),
    "8": ("MISSING", None),
    "9": ("PD", "2020-02-16"),
}


def test_derive_param_confirmed_bor_test_1_default_confirmed_bor() -> None:
    """derive_param_confirmed_bor Test 1: default confirmed BOR (ref_confirm 28, at most one NE between, no SD
    between, source_pd for subject 9). It warns "Dataset contains CR records followed by PR": subject 6."""
    assert best(OVR_CBOR, TRTSDT_CBOR, CBOR_DEFAULT, PD_CBOR) == EXPECTED_CBOR_TEST_1
    subjects = [r[0] for r in OVR_CBOR]
    days = [day(d, TRTSDT_CBOR[s]) for s, d, _ in OVR_CBOR]
    result = best_overall_response(subjects, days, [r[2] for r in OVR_CBOR], CBOR_DEFAULT, SCALE)
    assert set(result.cr_then_pr["subject"]) == {"6"}


def test_derive_param_confirmed_bor_test_2_accept_sd_nd_handling_missing_as_ne() -> None:
    """derive_param_confirmed_bor Test 2: accept SD, ND handling, missing as NE (ref_confirm 14, max_nr_ne 0,
    accept_sd, missing_as_ne; subject 7 has only ND on 2020-04-02)."""
    rows = [r for r in OVR_CBOR if r[0] != "7"] + [("7", "2020-04-02", "ND")]
    settings = BorSettings(
        confirmation_required=True,
        sd_min_days=28,
        min_confirmation_interval_days=14,
        max_ne_between_confirmation=0,
        accept_sd_between_pr_confirmation=True,
        missing_as_ne=True,
    )
    expected = {
        "1": ("PR", "2020-01-01"),
        "2": ("PR", "2020-02-01"),
        "3": ("CR", "2019-11-12"),
        "4": ("SD", "2020-03-01"),
        "5": ("PR", "2020-01-01"),
        "6": ("SD", "2020-03-30"),
        "7": ("ND", "2020-04-02"),
        "8": ("NE", None),
        "9": ("PD", "2020-02-16"),
    }
    assert best(rows, TRTSDT_CBOR, settings, PD_CBOR) == expected


def test_derive_param_confirmed_bor_test_4_no_source_pd() -> None:
    """derive_param_confirmed_bor Test 4: No source_pd: nothing stops at subject 9's PD, and its SD of
    2020-03-06 (day 34, past the 28-day window) is the better response."""
    settings = BorSettings(
        confirmation_required=True, sd_min_days=28, min_confirmation_interval_days=28, stop_at_first_pd=False
    )
    expected = {**EXPECTED_CBOR_TEST_1, "9": ("SD", "2020-03-06")}
    assert best(OVR_CBOR, TRTSDT_CBOR, settings) == expected


@pytest.mark.parametrize("stop", [True, False], ids=["stop_at_first_pd", "no_stop"])
def test_source_pd_equals_stopping_at_that_pd(stop: bool) -> None:
    """Subject 9's source_pd is its own first PD, so giving it is the same as stopping at the first PD."""
    settings = BorSettings(confirmation_required=True, sd_min_days=28, stop_at_first_pd=stop)
    with_pd = best(OVR_CBOR, TRTSDT_CBOR, settings, PD_CBOR)
    stopped = best(OVR_CBOR, TRTSDT_CBOR, BorSettings(confirmation_required=True, sd_min_days=28))
    assert with_pd == stopped

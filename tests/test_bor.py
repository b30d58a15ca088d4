"""`crlm-response bor`: best overall response from per-visit responses (REFERENCE §1.9).

Golden cases live in `tests/fixtures/bor/` (inputs, hand-written expected outputs, and `cases.yaml` with the
arguments and the rule each case checks). Every run must also keep its books: `rows read N = rows
scored S + rows rejected R` on stderr with N the input's data rows, and exactly R rows in the errors file.

Finally `bor` must agree with `assess`: the per-visit `overall` answers of every recist1.1 worked example,
fed to `bor` with the example's settings, give the same best overall response (and day, responder,
clinical benefit).
"""

from __future__ import annotations

import copy
import csv
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import FIXTURES, example_cases, run_cli

from crlm_response import assess
from crlm_response.readers import case_from_data

BOR_DIR = FIXTURES / "bor"
CASES = yaml.safe_load((BOR_DIR / "cases.yaml").read_text(encoding="utf-8"))["cases"]
ACCOUNTING = re.compile(
    r"^(?P<file>\S+): rows read (?P<read>[\d,]+) = rows scored (?P<scored>[\d,]+) "
    r"\+ rows rejected (?P<rejected>[\d,]+)\s*$",
    re.MULTILINE,
)
OUTPUT_COLUMNS = [
    "subject_id",
    "best_overall_response",
    "best_overall_response_day",
    "responder",
    "clinical_benefit",
]
EVENT_COLUMNS = [
    "first_response_day",
    "first_pd_day",
    "last_assessment_day",
    "duration_of_response_days",
    "duration_of_response_censored",
]
WARNING_CODES = ("recist_cr_then_pr",)


def data_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        return sum(1 for row in csv.reader(handle) if row) - 1


def text_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def cell(column: str, value: str) -> Any:
    """Days compared as numbers (56 == 56.0); everything else as text."""
    if column.endswith("_day") or column.endswith("_days"):
        return None if value.strip() == "" else float(value)
    return value


def run_bor(input_path: Path, args: list[str], out: Path) -> Any:
    result = run_cli("bor", input_path, *args, "-o", out)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.exit_code == 0, result.stderr
    return result


def check_accounting(result: Any, input_path: Path, errors_path: Path) -> None:
    match = ACCOUNTING.search(result.stderr)
    assert match, f"no accounting line on stderr: {result.stderr!r}"
    read, scored, rejected = (int(match[k].replace(",", "")) for k in ("read", "scored", "rejected"))
    assert read == scored + rejected
    assert read == data_rows(input_path), f"read {read}, the file has {data_rows(input_path)} data rows"
    errors = text_table(errors_path)
    assert len(errors) == rejected, f"{len(errors)} rows in the errors file, {rejected} rejected"
    if rejected:
        assert (errors["reason"].str.strip() != "").all()
        assert errors["line"].astype(int).between(2, read + 1).all()


def compare(actual: pd.DataFrame, expected: pd.DataFrame) -> list[str]:
    """Every output also carries the time-to-event days (issue 15; compared where the expected file has them, and
    written by hand in the files of the cases that are about them) and explains itself in a last column (its text
    is checked by the reason tests)."""
    problems = []
    wanted = list(expected.columns) + [c for c in EVENT_COLUMNS if c not in expected] + ["best_overall_response_reason"]
    if list(actual.columns) != wanted:
        return [f"columns {list(actual.columns)}, expected {wanted}"]
    if len(actual) != len(expected):
        return [f"{len(actual)} rows, expected {len(expected)}:\n{actual.to_string()}"]
    for a, e in zip(actual.to_dict("records"), expected.to_dict("records"), strict=True):
        for column in expected.columns:
            if cell(column, a[column]) != cell(column, e[column]):
                problems.append(f"{e['subject_id']}: {column} = {a[column]!r}, expected {e[column]!r}")
    return problems


# ---------------------------------------------------------------------------------------------------------
# Golden cases
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bor_golden(case: dict[str, Any], tmp_path: Path) -> None:
    input_path = BOR_DIR / case["input"]
    out = tmp_path / "bor.csv"
    result = run_bor(input_path, [str(a) for a in case.get("args") or []], out)
    expected = text_table(BOR_DIR / case["expected"])
    problems = compare(text_table(out), expected)
    assert not problems, f"{case['rule']}\n" + "\n".join(problems)
    check_accounting(result, input_path, tmp_path / "bor.errors.csv")

    lines = result.stderr.splitlines()
    wanted = case.get("warnings") or []
    for w in wanted:
        pattern = re.compile(rf"\b{re.escape(w['code'])}\b.*\b{re.escape(w['subject'])}\b")
        assert any(pattern.search(line) for line in lines), f"warning {w} not on stderr: {result.stderr!r}"
    for code in WARNING_CODES:
        n_wanted = sum(1 for w in wanted if w["code"] == code)
        n_printed = sum(1 for line in lines if code in line)
        assert n_printed == n_wanted, f"{code}: printed {n_printed} time(s), expected {n_wanted}: {result.stderr!r}"


def test_golden_files_are_complete() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))
    used = {c["input"] for c in CASES} | {c["expected"] for c in CASES} | {"cases.yaml"}
    present = {p.name for p in BOR_DIR.iterdir() if p.is_file()}
    assert present == used, f"unused files: {present - used}; missing: {used - present}"
    for c in CASES:
        columns = list(text_table(BOR_DIR / c["expected"]).columns)
        assert [x for x in columns if x not in ["reader", *EVENT_COLUMNS]] == OUTPUT_COLUMNS, c["name"]


def test_bor_output_columns_single_reader(tmp_path: Path) -> None:
    out = tmp_path / "bor.csv"
    run_bor(BOR_DIR / "unconfirmed.csv", [], out)
    assert list(text_table(out).columns) == OUTPUT_COLUMNS + EVENT_COLUMNS + ["best_overall_response_reason"]


def test_rs_rows_other_than_ovrlresp_are_set_aside(tmp_path: Path) -> None:
    out = tmp_path / "bor.csv"
    run_bor(BOR_DIR / "sdtm_rs.csv", [], out)
    errors = text_table(tmp_path / "bor.errors.csv")
    assert sorted(errors["line"].astype(int)) == [2, 4, 6, 8]  # the TRGRESP / NTRGRESP rows


# ---------------------------------------------------------------------------------------------------------
# bor agrees with assess on the recist1.1 worked examples
# ---------------------------------------------------------------------------------------------------------


def recist_examples() -> list[Any]:
    return [pytest.param(c, id=c["case_id"]) for c in example_cases() if "recist1.1" in (c.get("expected") or {})]


def bor_args(settings: dict[str, Any]) -> list[str]:
    """The case's recist1.1 settings as `bor` options."""
    args: list[str] = []
    if settings.get("confirmation_required"):
        args.append("--confirm")
    options = {
        "min_confirmation_interval_days": "--confirm-days",
        "sd_min_days": "--sd-min-days",
        "max_ne_between_confirmation": "--max-ne-between",
    }
    for key, option in options.items():
        if key in settings:
            args += [option, str(settings[key])]
    if settings.get("accept_sd_between_pr_confirmation"):
        args.append("--accept-sd-between")
    return args


@pytest.mark.parametrize("example", recist_examples())
def test_bor_agrees_with_assess(example: dict[str, Any], tmp_path: Path) -> None:
    doc = copy.deepcopy(example)
    doc["settings"] = {k: v for k, v in (doc.get("settings") or {}).items() if k == "recist1.1"}
    block = assess(case_from_data(doc, example["case_id"]), criteria=["recist1.1"], explain=False).to_dict()[
        "criteria"
    ]["recist1.1"]
    visits = tmp_path / "visits.csv"
    rows = [
        {"subject_id": example["case_id"], "day": tp["day"], "response": tp["overall"]} for tp in block["timepoints"]
    ]
    pd.DataFrame(rows, columns=["subject_id", "day", "response"]).to_csv(visits, index=False)
    out = tmp_path / "bor.csv"
    result = run_bor(visits, bor_args(doc["settings"].get("recist1.1") or {}), out)
    check_accounting(result, visits, tmp_path / "bor.errors.csv")
    got = text_table(out).iloc[0].to_dict()
    assert (
        got["best_overall_response"]
        == block["best_overall_response"]
        == example["expected"]["recist1.1"]["best_overall_response"]
    )
    want_day = block.get("best_overall_response_day")
    want_day = None if want_day is None or (isinstance(want_day, float) and math.isnan(want_day)) else float(want_day)
    assert cell("best_overall_response_day", got["best_overall_response_day"]) == want_day
    assert got["responder"] == block["responder"]
    assert got["clinical_benefit"] == block["clinical_benefit"]


# ---------------------------------------------------------------------------------------------------------
# --pd-dates (admiralonco source_pd) and the time-to-event days (issue 15)
# ---------------------------------------------------------------------------------------------------------


def bor_table(tmp_path: Path, visits: str, *args: Any, name: str = "visits.csv") -> pd.DataFrame:
    path = tmp_path / name
    path.write_text(visits, encoding="utf-8")
    out = tmp_path / "bor.csv"
    run_bor(path, [str(a) for a in args], out)
    return text_table(out).set_index("subject_id")


def test_pd_dates_drop_later_visits_and_keep_the_one_on_the_day(tmp_path: Path) -> None:
    """A: PR 56, SD 84, CR 112 with progression on day 84: the SD of day 84 is kept, the CR dropped -> PR; the
    progression day is the first PD day and ends the response (84 - 56 + 1 = 29 days, an event). B: progression
    on day 10, before every visit -> MISSING. C: no progression given -> as without the option."""
    visits = "subject_id,day,response\nA,56,PR\nA,84,SD\nA,112,CR\nB,50,SD\nB,90,PR\nC,56,SD\n"
    pd_dates = tmp_path / "pd.csv"
    pd_dates.write_text("subject_id,day\nA,84\nB,10\nZ,5\n", encoding="utf-8")
    table = bor_table(tmp_path, visits, "--pd-dates", pd_dates)
    assert table.loc["A", ["best_overall_response", "best_overall_response_day"]].tolist() == ["PR", "56"]
    assert table.loc["A", EVENT_COLUMNS].tolist() == ["56", "84", "84", "29", "N"]
    assert table.loc["A", "best_overall_response_reason"].endswith(
        "visits after the progression day 84 (given) ignored"
    )
    assert table.loc["B", ["best_overall_response", "best_overall_response_day", "first_pd_day"]].tolist() == [
        "MISSING",
        "",
        "10",
    ]
    assert table.loc["C", "best_overall_response"] == "SD"
    assert "Z" not in table.index  # a progression of a subject without visits adds no subject


def test_pd_dates_as_dates(tmp_path: Path) -> None:
    """With dates: visits on 2025-03-07 (PR) and 2025-04-04 (CR), progression on 2025-03-20 -> PR."""
    visits = "subject_id,date,response\nA,2025-03-07,PR\nA,2025-04-04,CR\n"
    pd_dates = tmp_path / "pd.csv"
    pd_dates.write_text("subject_id,date\nA,2025-03-20\n", encoding="utf-8")
    table = bor_table(tmp_path, visits, "--pd-dates", pd_dates, "--reference-date", "2025-01-10")
    assert table.loc["A", ["best_overall_response", "best_overall_response_day", "first_pd_day"]].tolist() == [
        "PR",
        "56",
        "69",
    ]


def test_pd_dates_day_is_on_the_scale_of_the_input(tmp_path: Path) -> None:
    """SDTM RS: a progression `day` is an RSDY like the visits' (RSDY 100); bor's days are RSDY - 1."""
    rs = "USUBJID,RSTESTCD,RSSTRESC,RSEVAL,RSDY\nA,OVRLRESP,PR,INVESTIGATOR,57\nA,OVRLRESP,CR,INVESTIGATOR,113\n"
    pd_dates = tmp_path / "pd.csv"
    pd_dates.write_text("subject_id,day\nA,100\n", encoding="utf-8")
    table = bor_table(tmp_path, rs, "--pd-dates", pd_dates, name="rs.csv")
    assert table.loc["A", ["best_overall_response", "best_overall_response_day", "first_pd_day"]].tolist() == [
        "PR",
        "56",
        "99",
    ]


def test_time_to_event_days(tmp_path: Path) -> None:
    """Worked by hand. D: PR 30, SD 60, PR 90, PR 120. Without confirmation the first response is day 30;
    with it the PR of day 30 is not confirmed (an SD between), the PR of day 90 is (PR day 120): first response
    day 90. No PD: censored at the last adequate assessment, day 120 (120 - 30 + 1 = 91; 120 - 90 + 1 = 31).
    E: PR 56 then NE 84: NE is not an adequate assessment, so the last one is day 56 (duration 1, censored).
    F: SD 50, PD 100: no response, first PD day 100, last adequate assessment 100."""
    visits = "subject_id,day,response\nD,30,PR\nD,60,SD\nD,90,PR\nD,120,PR\nE,56,PR\nE,84,NE\nF,50,SD\nF,100,PD\n"
    plain = bor_table(tmp_path, visits)
    assert plain.loc["D", EVENT_COLUMNS].tolist() == ["30", "", "120", "91", "Y"]
    assert plain.loc["E", EVENT_COLUMNS].tolist() == ["56", "", "56", "1", "Y"]
    assert plain.loc["F", EVENT_COLUMNS].tolist() == ["", "100", "100", "", ""]
    confirmed = bor_table(tmp_path, visits, "--confirm")
    assert confirmed.loc["D", ["best_overall_response"] + EVENT_COLUMNS].tolist() == ["PR", "90", "", "120", "31", "Y"]
    assert confirmed.loc["E", EVENT_COLUMNS].tolist() == ["", "", "56", "", ""]


def test_time_to_event_days_without_stopping_at_pd(tmp_path: Path) -> None:
    """PR 56, PD 84, CR 112 with --no-stop-at-pd: the best response is the CR, the response still starts on day
    56 and ends at the PD of day 84 (29 days, an event); the last adequate assessment is day 112."""
    table = bor_table(tmp_path, "subject_id,day,response\nA,56,PR\nA,84,PD\nA,112,CR\n", "--no-stop-at-pd")
    assert table.loc["A", ["best_overall_response"] + EVENT_COLUMNS].tolist() == ["CR", "56", "84", "112", "29", "N"]


def test_time_to_event_days_of_a_ranked_set(tmp_path: Path) -> None:
    """PERCIST (ranked best response, its own words): PMR day 56 is the first response, PMD day 100 the PD."""
    table = bor_table(tmp_path, "subject_id,day,response\nA,56,PMR\nA,100,PMD\n", "--criteria", "percist1.0")
    assert table.loc["A", ["best_overall_response"] + EVENT_COLUMNS].tolist() == ["PMR", "56", "100", "100", "45", "N"]

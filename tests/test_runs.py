"""The command layer of the library without click: `runs.run_*` take a typed request and return a typed result;
`options` checks option values; `cohort` loads and scores a cohort with each subject's own settings.

Expected values are written by hand from the inputs each test builds (the arithmetic is in the docstrings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from crlm_response.assessment import get_rules
from crlm_response.cohort import load_cohort, score_cohort
from crlm_response.errors import CrlmError, OptionError, StrictModeError
from crlm_response.options import parse_criteria, parse_set_options
from crlm_response.runs import (
    AssessRequest,
    BatchRequest,
    BorRequest,
    DiffRequest,
    check_rule_files,
    run_assess,
    run_batch,
    run_bor,
    run_diff,
)

ROOT = Path(__file__).resolve().parent.parent

# Two subjects, one liver target each (sizes in mm):
#   A: 50 -> 30 (day 56, -40 %: PR) -> 30 (day 112: PR again, 56 days later: confirmed)  => BOR PR
#   B: 40 -> 52 (day 56, +30 % and +12 mm: PD)                                           => BOR PD
# and one row for C whose day is not a number, which the reader rejects (C then has no row left).
LESIONS = """subject_id,timepoint,day,lesion_id,kind,organ,longest_diameter_mm
A,baseline,0,T1,target,liver,50
A,FU1,56,T1,,,30
A,FU2,112,T1,,,30
B,baseline,0,T1,target,liver,40
B,FU1,56,T1,,,52
C,baseline,zero,T1,target,liver,30
"""


def lesion_table(folder: Path) -> Path:
    path = folder / "lesions.csv"
    path.write_text(LESIONS, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# batch
# --------------------------------------------------------------------------------------------------


def test_run_batch_scores_writes_and_accounts(tmp_path: Path) -> None:
    out = tmp_path / "out" / "responses.csv"
    out.parent.mkdir()
    steps: list[str] = []
    run = run_batch(
        BatchRequest(lesions=str(lesion_table(tmp_path)), output=out, criteria="recist1.1"), progress=steps.append
    )
    assert run.result.counts == {str(tmp_path / "lesions.csv"): {"read": 6, "scored": 5, "rejected": 1}}
    assert run.result.accounting_lines() == ["lesions.csv: rows read 6 = rows scored 5 + rows rejected 1"]
    best = run.result.best.set_index("subject_id")["best_overall_response"].to_dict()
    assert best == {"A": "PR", "B": "PD"}
    assert steps[0] == "reading lesions.csv" and steps[-1] == "writing"
    assert out in run.written and out.with_name("responses.best.csv") in run.written
    assert run.outputs["errors"] == out.with_name("responses.errors.csv")
    assert pd.read_csv(out.with_name("responses.errors.csv"))["line"].tolist() == [7]
    assert run.failure() is None


def test_run_batch_strict_fails_on_the_rejected_row(tmp_path: Path) -> None:
    run = run_batch(BatchRequest(lesions=str(lesion_table(tmp_path)), summary=True, criteria="recist1.1", strict=True))
    failure = run.failure()
    assert isinstance(failure, StrictModeError)
    assert failure.message.startswith("--strict: 1 row(s) rejected and ")
    assert run.written == []  # --summary only: nothing written


def test_run_batch_in_chunks_gives_the_same_best_responses(tmp_path: Path) -> None:
    out = tmp_path / "chunked.csv"
    run = run_batch(
        BatchRequest(lesions=str(lesion_table(tmp_path)), output=out, criteria="recist1.1", chunk_rows=1000)
    )
    best = pd.read_csv(out.with_name("chunked.best.csv")).set_index("subject_id")["best_overall_response"].to_dict()
    assert best == {"A": "PR", "B": "PD"}
    assert run.result.counts[str(tmp_path / "lesions.csv")] == {"read": 6, "scored": 5, "rejected": 1}


@pytest.mark.parametrize(
    ("request_fields", "message", "option"),
    [
        ({}, "give a lesion table (CSV or Parquet), or --sdtm-tu and --sdtm-tr", None),
        ({"lesions": "x.csv"}, "give -o/--output for the results, or --summary to print only the summary", None),
        ({"lesions": "x.csv", "summary": True, "criteria": "recist9"}, "unknown criteria `recist9`", "--criteria"),
        ({"lesions": "x.csv", "summary": True, "workers": 2}, "--scheduler, --workers and --partitions need", None),
    ],
)
def test_run_batch_refuses_options_that_cannot_work(
    request_fields: dict[str, Any], message: str, option: str | None
) -> None:
    """Checked before any file is read (x.csv does not exist): usage errors, exit code 2."""
    with pytest.raises(OptionError) as caught:
        run_batch(BatchRequest(**request_fields))
    assert caught.value.message.startswith(message)
    assert caught.value.option == option
    assert caught.value.exit_code == 2


def test_run_batch_refuses_an_output_that_is_its_input(tmp_path: Path) -> None:
    source = lesion_table(tmp_path)
    with pytest.raises(CrlmError, match="-o would overwrite the input"):
        run_batch(BatchRequest(lesions=str(source), output=source))
    assert source.read_text(encoding="utf-8") == LESIONS


# --------------------------------------------------------------------------------------------------
# bor
# --------------------------------------------------------------------------------------------------


def test_run_bor_hears_the_accounting_first_and_returns_the_table(tmp_path: Path) -> None:
    """A: PR day 56, PR day 112 (56 days later >= 28: confirmed) -> PR. B: SD day 28 is before the 42-day minimum,
    so it does not count as SD; the only other visit is NE -> NE."""
    visits = tmp_path / "visits.csv"
    visits.write_text("subject_id,day,response\nA,56,PR\nA,112,PR\nB,28,SD\nB,84,NE\n", encoding="utf-8")
    heard: list[str] = []
    run = run_bor(BorRequest(visits, confirm=True), progress=heard.append)
    assert heard == ["visits.csv: rows read 4 = rows scored 4 + rows rejected 0"]
    assert run.accounting == heard[0]
    assert run.table.set_index("subject_id")["best_overall_response"].to_dict() == {"A": "PR", "B": "NE"}
    assert run.output is None and run.errors is None  # no -o: the caller prints the table
    assert run.failure() is None


def test_run_bor_checks_the_reference_date_before_reading(tmp_path: Path) -> None:
    with pytest.raises(OptionError) as caught:
        run_bor(BorRequest(tmp_path / "missing.csv", reference_date="2020-13-01"))
    assert caught.value.message == "'2020-13-01' is not a date (YYYY-MM-DD)"
    assert caught.value.option == "'--reference-date'"


# --------------------------------------------------------------------------------------------------
# diff and the cohort
# --------------------------------------------------------------------------------------------------


def one_target_case(case_id: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """50 -> 30 mm (-40 %, PR) at day 56, no later scan."""
    case: dict[str, Any] = {"case_id": case_id}
    if settings:
        case["settings"] = settings
    case["timepoints"] = [
        {
            "id": "baseline",
            "day": 0,
            "lesions": [{"id": "L1", "organ": "liver", "kind": "target", "longest_diameter_mm": 50}],
        },
        {"id": "FU1", "day": 56, "lesions": [{"id": "L1", "longest_diameter_mm": 30}]},
    ]
    return case


def settings_cohort(folder: Path) -> Path:
    """P1's case file asks for confirmation: its PR at day 56 is unconfirmed and past day 42, so BOR SD
    (E2009 §4.4/§4.6). P2 keeps the default (no confirmation): BOR PR."""
    folder.mkdir()
    (folder / "p1.yaml").write_text(
        yaml.safe_dump(one_target_case("P1", {"recist1.1": {"confirmation_required": True}}))
    )
    (folder / "p2.yaml").write_text(yaml.safe_dump(one_target_case("P2")))
    return folder


def test_score_cohort_uses_each_subjects_own_settings(tmp_path: Path) -> None:
    cohort = load_cohort(settings_cohort(tmp_path / "cases"))
    assert cohort.accounting == ["2 case file(s)"]
    assert cohort.settings["P1"] == {"recist1.1": {"confirmation_required": True}}
    result = score_cohort(cohort, get_rules("recist1.1"))
    assert result.best is not None
    assert result.best.set_index("subject_id")["best_overall_response"].to_dict() == {"P1": "SD", "P2": "PR"}
    # an override for the run wins over the case's setting
    again = score_cohort(cohort, get_rules("recist1.1"), {"confirmation_required": False})
    assert again.best is not None
    assert set(again.best["best_overall_response"]) == {"PR"}


def test_run_diff_labels_a_set_compared_with_itself_and_writes_the_reclassified(tmp_path: Path) -> None:
    out = tmp_path / "reclassified.csv"
    run = run_diff(
        DiffRequest(
            "recist1.1",
            "recist1.1",
            cases=settings_cohort(tmp_path / "cases"),
            set_b=["recist1.1.confirmation_required=false"],
            output=out,
        )
    )
    assert (run.label_a, run.label_b) == ("recist1.1 (A)", "recist1.1 (B)")
    data = run.as_dict()
    # --set-b repeats the rule file's default, so the rules are identical; only P1's own setting differs
    assert data["rules"] == {"identical": True, "changes": []}
    assert [(r["subject_id"], r["bor_a"], r["bor_b"]) for r in data["verdicts"]["reclassified"]] == [("P1", "SD", "PR")]
    assert pd.read_csv(out)["subject_id"].tolist() == ["P1"]


def test_run_diff_refuses_an_override_for_the_other_set() -> None:
    with pytest.raises(OptionError) as caught:
        run_diff(DiffRequest("recist1.1", "choi", set_a=["choi.density_pr_pct=20"]))
    assert caught.value.option == "--set-a"


# --------------------------------------------------------------------------------------------------
# assess, rules validate, option values
# --------------------------------------------------------------------------------------------------


def test_run_assess_writes_adam_for_a_case(tmp_path: Path) -> None:
    case = ROOT / "sample_cases" / "folfox_bev_partial_response.yaml"
    result = run_assess(AssessRequest(case, criteria="recist1.1", adam_dir=tmp_path / "adam", study_id="S1"))
    assert result.to_dict()["criteria"]["recist1.1"]["best_overall_response"] == "PR"
    adrs = pd.read_csv(tmp_path / "adam" / "adrs.csv")
    assert set(adrs["STUDYID"]) == {"S1"}
    assert adrs.loc[adrs["PARAMCD"] == "BOR", "AVALC"].tolist() == ["PR"]


def test_run_assess_refuses_a_study_id_without_adam() -> None:
    with pytest.raises(OptionError, match="--study-id is for the ADaM datasets"):
        run_assess(AssessRequest(Path("any.yaml"), study_id="S1"))


def test_check_rule_files(tmp_path: Path) -> None:
    good = tmp_path / "site.yaml"
    good.write_text("id: site_recist\nextends: recist1.1\nname: Site RECIST\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [\n", encoding="utf-8")
    first, second = check_rule_files([good, bad])
    assert first.error is None and first.rules.id == "site_recist"
    assert first.line.startswith(f"{good}: OK (site_recist; ") and first.line.endswith("; recist1.1 -> site_recist)")
    assert isinstance(second.error, CrlmError) and second.line.startswith(f"Error: {bad}")


def test_parse_set_options_and_criteria() -> None:
    assert parse_set_options(["recist1.1.sd_min_days=56", "mchoi.density_pr_pct=20"]) == {
        "recist1.1": {"sd_min_days": 56},
        "mchoi": {"density_pr_pct": 20},
    }
    with pytest.raises(OptionError) as caught:
        parse_set_options(["recist1.1.no_such=1"], option="--set-a")
    assert caught.value.option == "--set-a" and "has no parameter `no_such`" in caught.value.message
    assert parse_criteria("recist1.1, choi") == ["recist1.1", "choi"]
    assert parse_criteria(["all"]) == ["all"]
    assert parse_criteria("") is None
    with pytest.raises(OptionError, match="rule file `nowhere/site.yaml` not found"):
        parse_criteria("nowhere/site.yaml")

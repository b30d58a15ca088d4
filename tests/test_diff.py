"""`crlm-response diff`: what differs between two criteria sets, and whose verdict it changes on a cohort.

Every expected value below was worked out by hand from the criteria (E2009 for RECIST 1.1, Choi 2007
Table 3, Chun 2009) and from the textbook formulas for Cohen's kappa and its Fleiss-Cohen-Everitt (1969)
standard error; none was copied from the tool's output. The rule-set variants live in tests/fixtures/diff/;
the cohorts are written into tmp folders here so that each case's design sits next to its expected verdicts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import FIXTURES, run_cli, run_json, write_case

from crlm_response import load_rules
from crlm_response.diff import cohens_kappa, diff_rule_sets
from crlm_response.rules import builtin_ids

DIFF = FIXTURES / "diff"
PD25 = DIFF / "recist_pd25.yaml"  # pd_pct_from_nadir 20 -> 25, nothing else
PR_STRICT = DIFF / "recist_pr_strict.yaml"  # target PR rule "<=" -> "<", nothing else
EXTRA_PARAM = DIFF / "recist_extra_param.yaml"  # adds site_min_followup_days (35 days), nothing else
COMBINED = DIFF / "recist_combined.yaml"  # extends recist_pr_strict.yaml; PD 25 %; adds ablation_window_days
MISSPELT = DIFF / "recist_misspelt_key.yaml"  # parameters.pd_pct_from_nadir.valeu
EXTENDS_NOTHING = DIFF / "recist_extends_nothing.yaml"  # extends: recist9.9

PR_RULE_SHIPPED = "100 * (sum_mm - baseline_sum_mm) <= -pr_pct_from_baseline * baseline_sum_mm"
PR_RULE_STRICT = "100 * (sum_mm - baseline_sum_mm) < -pr_pct_from_baseline * baseline_sum_mm"


def changes_of(data: dict[str, Any]) -> list[tuple[str, str, str, Any, Any]]:
    return [(c["section"], c["name"], c["kind"], c["a"], c["b"]) for c in data["rules"]["changes"]]


def assert_clean_error(result: Any, exit_code: int) -> str:
    """The exit code asked for, an `Error:` line, and neither a traceback nor the internal-error guard."""
    text = result.output
    assert result.exit_code == exit_code, (result.exit_code, text)
    assert "Error" in result.stderr, result.stderr
    assert "Traceback" not in text
    assert "internal error" not in text, text
    return result.stderr


# --------------------------------------------------------------------------------------------------
# Cohort builders
# --------------------------------------------------------------------------------------------------


def one_target_case(
    case_id: str,
    baseline_mm: float,
    baseline_hu: float | None,
    follow_up: dict[str, Any],
    extra: list[dict[str, Any]] | None = None,
    day: int = 56,
    settings: dict[str, Any] | None = None,
    baseline_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One liver target L1 at baseline (day 0) and one follow-up FU1 (day 56: past the 42-day SD minimum)."""
    base: dict[str, Any] = {"id": "L1", "organ": "liver", "kind": "target", "longest_diameter_mm": baseline_mm}
    if baseline_hu is not None:
        base["attenuation_hu"] = baseline_hu
    base.update(baseline_extra or {})
    case: dict[str, Any] = {"case_id": case_id}
    if settings:
        case["settings"] = settings
    case["timepoints"] = [
        {"id": "baseline", "day": 0, "modality": "CT", "lesions": [base]},
        {"id": "FU1", "day": day, "modality": "CT", "lesions": [{"id": "L1", **follow_up}, *(extra or [])]},
    ]
    return case


def recist_choi_cohort(folder: Path) -> Path:
    """Ten single-target patients, one follow-up at day 56, no confirmation (the defaults of both sets).

    RECIST 1.1 (E2009 §4.3.1): PR <= -30 % from baseline; PD >= +20 % and >= +5 mm from the nadir (= baseline
    here); a new lesion is PD. Choi (Choi2007 Table 3, inclusive): PR if size <= -10 % OR mean HU <= -15 %;
    PD if a new lesion, or size >= +10 % from baseline without a density PR.

        case  size (mm)          HU          RECIST 1.1             Choi
        C01   40 -> 42  (+5 %)   80 -> 60    SD                     PR (density -25 %)
        C02   50 -> 44  (-12 %)  80 -> 80    SD                     PR (size -12 %)
        C03   40 -> 26  (-35 %)  80 -> 80    PR                     PR (size)
        C04   50 -> 50, new 12 mm liver      PD (new lesion)        PD (new lesion)
        C05   50 -> 50  (0 %)    80 -> 80    SD                     SD
        C06   40 -> 46  (+15 %)  80 -> 80    SD (+15 % < 20 %)      PD (size +15 %, no density PR)
        C07   40 -> 50  (+25 %)  80 -> 80    PD (+25 %, +10 mm)     PD (size +25 %)
        C08   40 -> 50  (+25 %)  80 -> 64    PD (+25 %, +10 mm)     PR (density -20 % beats size growth)
        C09   50 -> 46  (-8 %)   80 -> 72    SD                     SD (-8 % size, -10 % HU)
        C10   40 -> gone                     CR                     CR (all lesions disappeared)
    """
    folder.mkdir(parents=True, exist_ok=True)
    new_lesion = [{"id": "NEW1", "organ": "liver", "kind": "new", "longest_diameter_mm": 12}]
    cases = [
        one_target_case("C01", 40, 80, {"longest_diameter_mm": 42, "attenuation_hu": 60}),
        one_target_case("C02", 50, 80, {"longest_diameter_mm": 44, "attenuation_hu": 80}),
        one_target_case("C03", 40, 80, {"longest_diameter_mm": 26, "attenuation_hu": 80}),
        one_target_case("C04", 50, 80, {"longest_diameter_mm": 50, "attenuation_hu": 80}, extra=new_lesion),
        one_target_case("C05", 50, 80, {"longest_diameter_mm": 50, "attenuation_hu": 80}),
        one_target_case("C06", 40, 80, {"longest_diameter_mm": 46, "attenuation_hu": 80}),
        one_target_case("C07", 40, 80, {"longest_diameter_mm": 50, "attenuation_hu": 80}),
        one_target_case("C08", 40, 80, {"longest_diameter_mm": 50, "attenuation_hu": 64}),
        one_target_case("C09", 50, 80, {"longest_diameter_mm": 46, "attenuation_hu": 72}),
        one_target_case("C10", 40, 80, {"status": "disappeared"}),
    ]
    for case in cases:
        write_case(folder, case, f"{case['case_id']}.yaml")
    return folder


# Hand-computed verdicts of the cohort above.
RECIST_BOR = {
    "C01": "SD",
    "C02": "SD",
    "C03": "PR",
    "C04": "PD",
    "C05": "SD",
    "C06": "SD",
    "C07": "PD",
    "C08": "PD",
    "C09": "SD",
    "C10": "CR",
}
CHOI_BOR = {
    "C01": "PR",
    "C02": "PR",
    "C03": "PR",
    "C04": "PD",
    "C05": "SD",
    "C06": "PD",
    "C07": "PD",
    "C08": "PR",
    "C09": "SD",
    "C10": "CR",
}


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return recist_choi_cohort(tmp_path / "cohort")


# --------------------------------------------------------------------------------------------------
# 1. Rule differences
# --------------------------------------------------------------------------------------------------


def test_one_changed_threshold_is_the_only_rule_difference_in_the_library() -> None:
    diff = diff_rule_sets(load_rules("recist1.1"), load_rules(PD25))
    assert not diff.identical
    assert [(c.section, c.name, c.kind, c.a, c.b) for c in diff.ordered()] == [
        ("parameters", "pd_pct_from_nadir", "changed", "20%", "25%")
    ]


def test_one_changed_threshold_is_the_only_rule_difference_in_json() -> None:
    data = run_json("diff", "recist1.1", PD25)
    assert data["a"] == "recist1.1" and data["b"] == "recist_pd25"
    assert data["rules"]["identical"] is False
    assert changes_of(data) == [("parameters", "pd_pct_from_nadir", "changed", "20%", "25%")]
    assert "verdicts" not in data  # no --cases: rules only


def test_one_changed_threshold_in_the_table_output() -> None:
    result = run_cli("diff", "recist1.1", PD25)
    assert result.exit_code == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "pd_pct_from_nadir" in ln)
    assert "20%" in line and "25%" in line
    # the shipped parameters that did not change are not listed
    assert "pr_pct_from_baseline" not in result.stdout


def test_replaced_decision_is_reported_with_both_conditions() -> None:
    expected = [("decisions", "target -> PR", "changed", PR_RULE_SHIPPED, PR_RULE_STRICT)]
    diff = diff_rule_sets(load_rules("recist1.1"), load_rules(PR_STRICT))
    assert [(c.section, c.name, c.kind, c.a, c.b) for c in diff.ordered()] == expected
    assert changes_of(run_json("diff", "recist1.1", PR_STRICT)) == expected


def test_added_parameter_is_only_in_b_and_only_in_a_the_other_way_round() -> None:
    forward = diff_rule_sets(load_rules("recist1.1"), load_rules(EXTRA_PARAM))
    assert [(c.section, c.name, c.kind, c.a, c.b) for c in forward.ordered()] == [
        ("parameters", "site_min_followup_days", "only_b", None, "35 days")
    ]
    assert changes_of(run_json("diff", "recist1.1", EXTRA_PARAM)) == [
        ("parameters", "site_min_followup_days", "only_b", None, "35 days")
    ]
    assert changes_of(run_json("diff", EXTRA_PARAM, "recist1.1")) == [
        ("parameters", "site_min_followup_days", "only_a", "35 days", None)
    ]


def test_changed_entries_come_before_only_a_and_only_b() -> None:
    """A = recist_extra_param (adds site_min_followup_days); B = recist_combined (extends
    recist_pr_strict.yaml, PD at 25 %, adds ablation_window_days). Alphabetically ablation_window_days
    (only B) comes before pd_pct_from_nadir (changed), and parameters are compared before decisions, so the
    order asked for (all changed, then only A, then only B; within a group as found) is not the order of
    discovery."""
    expected = [
        ("parameters", "pd_pct_from_nadir", "changed", "20%", "25%"),
        ("decisions", "target -> PR", "changed", PR_RULE_SHIPPED, PR_RULE_STRICT),
        ("parameters", "site_min_followup_days", "only_a", "35 days", None),
        ("parameters", "ablation_window_days", "only_b", None, "14 days"),
    ]
    diff = diff_rule_sets(load_rules(EXTRA_PARAM), load_rules(COMBINED))
    assert [(c.section, c.name, c.kind, c.a, c.b) for c in diff.ordered()] == expected
    assert changes_of(run_json("diff", EXTRA_PARAM, COMBINED)) == expected


def test_parameter_override_shows_as_a_rule_difference() -> None:
    data = run_json("diff", "recist1.1", "recist1.1", "--set-b", "recist1.1.confirmation_required=true")
    assert data["a"] == "recist1.1 (A)" and data["b"] == "recist1.1 (B)"
    assert changes_of(data) == [("parameters", "confirmation_required", "changed", "false", "true")]


def test_set_b_can_override_a_parameter_of_a_variant_file() -> None:
    """`--set-b` must name set B's id; for a variant file that id is the file's own (`recist_pd25`). The
    override then applies like any other: B's PD threshold becomes 30 %."""
    result = run_cli("diff", "recist1.1", PD25, "--set-b", "recist_pd25.pd_pct_from_nadir=30", "--format", "json")
    assert result.exit_code == 0, result.output
    assert changes_of(json.loads(result.stdout)) == [("parameters", "pd_pct_from_nadir", "changed", "20%", "30%")]


# --------------------------------------------------------------------------------------------------
# 2. A set against itself
# --------------------------------------------------------------------------------------------------


def test_a_set_against_itself_has_no_rule_differences() -> None:
    assert diff_rule_sets(load_rules("recist1.1"), load_rules("recist1.1")).identical
    assert diff_rule_sets(load_rules(PD25), load_rules(PD25)).identical
    data = run_json("diff", "recist1.1", "recist1.1")
    assert data["rules"] == {"identical": True, "changes": []}


def test_a_set_against_itself_agrees_completely_on_a_cohort(cohort: Path) -> None:
    """RECIST against RECIST on the ten patients (CR 1, PR 1, SD 5, PD 3: four categories, so kappa is
    defined): po = 1, pe = (1*1 + 1*1 + 5*5 + 3*3) / 100 = 0.36, kappa = (1 - 0.36) / (1 - 0.36) = 1; the FCE
    variance is (sum p_ii * 1^2 + 0 - 1^2) / ... = 0, so SE 0 and the interval is [1, 1]."""
    v = run_json("diff", "recist1.1", "recist1.1", "--cases", cohort)["verdicts"]
    assert v["subjects"] == 10
    assert v["agreement_pct"] == 100.0
    assert v["kappa"]["kappa"] == 1.0
    assert v["kappa"]["se"] == 0.0
    assert v["kappa_note"] is None
    assert v["reclassified"] == []
    assert v["crosstab"] == {
        "rows": ["CR", "PR", "SD", "PD"],
        "columns": ["CR", "PR", "SD", "PD"],
        "counts": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 5, 0], [0, 0, 0, 3]],
    }
    assert v["objective_response_rate"]["a_pct"] == v["objective_response_rate"]["b_pct"] == 20.0
    assert v["objective_response_rate"]["difference_pct"] == 0.0


# --------------------------------------------------------------------------------------------------
# 3. RECIST 1.1 against Choi on a hand-computed cohort; Cohen's kappa against a textbook table
# --------------------------------------------------------------------------------------------------


def test_recist_versus_choi_crosstab_agreement_and_kappa(cohort: Path) -> None:
    """Cross-tab (rows RECIST, columns Choi, both in ranking order CR, PR, SD, PD):

            CR PR SD PD | row
        CR   1  0  0  0 |  1     C10
        PR   0  1  0  0 |  1     C03
        SD   0  2  2  1 |  5     C01 C02 -> PR; C05 C09 -> SD; C06 -> PD
        PD   0  1  0  2 |  3     C08 -> PR; C04 C07 -> PD
        col  1  4  2  3 | 10

    po = (1 + 1 + 2 + 2) / 10 = 0.6  -> agreement 60 %
    pe = (1*1 + 1*4 + 5*2 + 3*3) / 10^2 = 24 / 100 = 0.24
    kappa = (0.6 - 0.24) / (1 - 0.24) = 0.36 / 0.76 = 9/19 = 0.473684 -> 0.4737

    FCE 1969 variance, p = counts/10, r = rows (.1 .1 .5 .3), c = columns (.1 .4 .2 .3), 1 - kappa = 10/19:
      A = sum_i p_ii (1 - (r_i + c_i)(1 - kappa))^2
        = .1(1 - .2*.526316)^2 + .1(1 - .5*.526316)^2 + .2(1 - .7*.526316)^2 + .2(1 - .6*.526316)^2
        = .0800554 + .0542936 + .0797784 + .0936288 = .3077562
      B = (1 - kappa)^2 sum_{i != j} p_ij (c_i + r_j)^2
        = .277008 * [.2(.2 + .1)^2 + .1(.2 + .3)^2 + .1(.3 + .1)^2] = .277008 * .059 = .0163435
      C = (kappa - pe(1 - kappa))^2 = (.473684 - .126316)^2 = .120665
      var = (A + B - C) / (n (1 - pe)^2) = .2034347 / 5.776 = .035221; SE = .18767 -> 0.1877
      95 % CI = .473684 -/+ 1.959964 * .18767 = 0.1059 to 0.8415
    Timepoints: one follow-up each, so timepoint agreement = 60 % too.
    """
    v = run_json("diff", "recist1.1", "choi", "--cases", cohort)["verdicts"]
    assert v["a"] == "recist1.1" and v["b"] == "choi"
    assert v["subjects"] == 10
    assert v["crosstab"] == {
        "rows": ["CR", "PR", "SD", "PD"],
        "columns": ["CR", "PR", "SD", "PD"],
        "counts": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 2, 2, 1], [0, 1, 0, 2]],
    }
    assert v["agreement_pct"] == 60.0
    assert v["kappa"]["kappa"] == 0.4737
    assert v["kappa"]["se"] == 0.1877
    assert v["kappa"]["ci_low"] == 0.1059
    assert v["kappa"]["ci_high"] == 0.8415
    assert v["kappa"]["n"] == 10
    assert v["kappa_note"] is None
    assert v["timepoint_agreement_pct"] == 60.0


def test_recist_versus_choi_objective_response_rate(cohort: Path) -> None:
    """Responders (CR or PR): RECIST C03, C10 = 2/10 = 20 %; Choi C01, C02, C03, C08, C10 = 5/10 = 50 %;
    difference B - A = +30 points. Paired Wald interval: discordant only-B = 3 (C01 C02 C08), only-A = 0;
    SE = sqrt((3 + 0) - (3 - 0)^2 / 10) / 10 = sqrt(2.1) / 10 = 0.144914;
    0.30 -/+ 1.959964 * 0.144914 = 0.30 -/+ 0.284026 -> 1.60 % to 58.40 %."""
    orr = run_json("diff", "recist1.1", "choi", "--cases", cohort)["verdicts"]["objective_response_rate"]
    assert orr["a_pct"] == 20.0
    assert orr["b_pct"] == 50.0
    assert orr["difference_pct"] == 30.0
    assert orr["difference_ci_low_pct"] == 1.6
    assert orr["difference_ci_high_pct"] == 58.4


def test_recist_versus_choi_reclassified_subjects_and_why(cohort: Path) -> None:
    v = run_json("diff", "recist1.1", "choi", "--cases", cohort)["verdicts"]
    got = {r["subject_id"]: (r["bor_a"], r["bor_b"]) for r in v["reclassified"]}
    expected = {s: (RECIST_BOR[s], CHOI_BOR[s]) for s in RECIST_BOR if RECIST_BOR[s] != CHOI_BOR[s]}
    assert expected == {"C01": ("SD", "PR"), "C02": ("SD", "PR"), "C06": ("SD", "PD"), "C08": ("PD", "PR")}
    assert got == expected
    assert [r["subject_id"] for r in v["reclassified"]] == ["C01", "C02", "C06", "C08"]
    why = {r["subject_id"]: (r["why_a"], r["why_b"]) for r in v["reclassified"]}

    # C01: +5 % is RECIST SD; mean HU 80 -> 60 = -25 % is a Choi density PR.
    a, b = why["C01"]
    assert "SD" in a and "42 mm" in a and "5%" in a and "40 mm" in a
    assert "PR" in b and "-25%" in b and "60 HU" in b and "80 HU" in b
    # C02: -12 % is RECIST SD; the same -12 % is a Choi size PR (at 10 %).
    a, b = why["C02"]
    assert "SD" in a and "-12%" in a and "44 mm" in a
    assert "PR" in b and "-12%" in b and "10%" in b
    # C06: +15 % (+6 mm) is below RECIST's 20 %; Choi PD at 10 % growth with density unchanged.
    a, b = why["C06"]
    assert "SD" in a and "15%" in a and "46 mm" in a
    assert "PD" in b and "15%" in b and "10%" in b
    # C08: +25 % and +10 mm over the nadir is RECIST PD; HU 80 -> 64 = -20 % is a Choi density PR.
    a, b = why["C08"]
    assert "PD" in a and "25%" in a and "10 mm" in a and "40 mm" in a
    assert "PR" in b and "-20%" in b and "64 HU" in b and "80 HU" in b


def test_cohens_kappa_textbook_two_by_two() -> None:
    """[[20, 5], [10, 15]], n = 50: p = [[.4, .1], [.2, .3]], rows r = (.5, .5), columns c = (.6, .4).
    po = .4 + .3 = 0.7; pe = .5*.6 + .5*.4 = 0.5; kappa = (.7 - .5) / (1 - .5) = 0.4.

    Fleiss-Cohen-Everitt (1969), 1 - kappa = .6:
      A = .4 (1 - (.5 + .6) .6)^2 + .3 (1 - (.5 + .4) .6)^2 = .4 * .34^2 + .3 * .46^2
        = .04624 + .06348 = .10972
      B = .6^2 [p_01 (c_0 + r_1)^2 + p_10 (c_1 + r_0)^2] = .36 [.1 * 1.1^2 + .2 * .9^2] = .36 * .283 = .10188
      C = (kappa - pe (1 - kappa))^2 = (.4 - .3)^2 = .01
      var = (.10972 + .10188 - .01) / (50 * .5^2) = .2016 / 12.5 = .016128; SE = .126997 -> 0.127
      95 % CI = .4 -/+ 1.959964 * .126997 = .4 -/+ .248910 -> 0.1511 to 0.6489
    (Swapping rows and columns in B would give .36 * .323 and SE 0.1327: the table is asymmetric on purpose.)
    """
    table = pd.DataFrame([[20, 5], [10, 15]], index=["yes", "no"], columns=["yes", "no"])
    k = cohens_kappa(table)
    assert k["n"] == 50
    assert k["kappa"] == pytest.approx(0.4, abs=5e-5)
    assert round(k["se"], 3) == 0.127
    assert k["ci_low"] == pytest.approx(0.1511, abs=1e-4)
    assert k["ci_high"] == pytest.approx(0.6489, abs=1e-4)


def test_cohens_kappa_perfect_and_chance_agreement() -> None:
    # Perfect agreement over two categories: po = 1, pe = .5, kappa = 1.
    assert cohens_kappa(pd.DataFrame([[7, 0], [0, 3]]))["kappa"] == 1.0
    # Independent ratings: [[10, 10], [10, 10]] -> po = .5, pe = .5, kappa = 0.
    assert cohens_kappa(pd.DataFrame([[10, 10], [10, 10]]))["kappa"] == 0.0
    # Systematic disagreement: [[0, 5], [5, 0]] -> po = 0, pe = .5, kappa = -1.
    assert cohens_kappa(pd.DataFrame([[0, 5], [5, 0]]))["kappa"] == -1.0
    assert math.isclose(cohens_kappa(pd.DataFrame([[0, 5], [5, 0]]))["ci_low"], -1.0)


# --------------------------------------------------------------------------------------------------
# 4. Different vocabularies
# --------------------------------------------------------------------------------------------------


def morphology_cohort(folder: Path) -> Path:
    """One liver target each, graded by the reader (Chun 2009: 3 or 2 -> 1 optimal, 3 -> 2 incomplete,
    else none).

        case  size           group   RECIST 1.1   Chun
        M1    50 -> 44 mm    3 -> 1  SD (-12 %)   optimal
        M2    50 -> 30 mm    3 -> 2  PR (-40 %)   incomplete
        M3    50 -> 50 mm    2 -> 2  SD (0 %)     none
    """
    folder.mkdir(parents=True, exist_ok=True)
    for cid, fu_mm, g0, g1 in (("M1", 44, 3, 1), ("M2", 30, 3, 2), ("M3", 50, 2, 2)):
        case = one_target_case(
            cid,
            50,
            None,
            {"longest_diameter_mm": fu_mm, "morphology_group": g1},
            baseline_extra={"morphology_group": g0},
        )
        write_case(folder, case, f"{cid}.yaml")
    return folder


def test_different_vocabularies_give_a_crosstab_but_no_kappa(tmp_path: Path) -> None:
    folder = morphology_cohort(tmp_path / "m")
    v = run_json("diff", "recist1.1", "chun_morphologic", "--cases", folder)["verdicts"]
    assert v["subjects"] == 3
    assert v["crosstab"] == {
        "rows": ["PR", "SD"],
        "columns": ["optimal", "incomplete", "none"],
        "counts": [[0, 1, 0], [1, 0, 1]],
    }
    assert v["kappa"] is None
    assert v["kappa_note"] and "kappa" in v["kappa_note"] and "categories" in v["kappa_note"]
    assert v["timepoint_agreement_pct"] is None
    assert v["objective_response_rate"] == {}  # Chun has no CR/PR to count


def test_different_vocabularies_in_the_table_output(tmp_path: Path) -> None:
    result = run_cli("diff", "recist1.1", "chun_morphologic", "--cases", morphology_cohort(tmp_path / "m"))
    assert result.exit_code == 0, result.stderr
    assert "kappa omitted" in result.stdout
    assert "Cohen's kappa" not in result.stdout


def test_different_vocabularies_report_no_agreement_percentage(tmp_path: Path) -> None:
    """ "SD" and "optimal" are not the same word for the same thing, so string equality says nothing: with
    different categories percent agreement is as undefined as kappa (the tool already reports the
    per-timepoint agreement as null here). Reporting "agreement 0 %" would read as total disagreement."""
    folder = morphology_cohort(tmp_path / "m")
    v = run_json("diff", "recist1.1", "chun_morphologic", "--cases", folder)["verdicts"]
    assert v["agreement_pct"] is None


# --------------------------------------------------------------------------------------------------
# 5. Per-case settings
# --------------------------------------------------------------------------------------------------


def settings_cohort(folder: Path) -> Path:
    """Two identical patients: 50 -> 30 mm (-40 %, PR) at day 56 and no later scan. P1's case file asks for
    confirmation (recist1.1.confirmation_required: true), P2's does not.
      P1: the PR is unconfirmed, the scan is past day 42, so BOR SD (E2009 §4.4/§4.6).
      P2: BOR PR."""
    folder.mkdir(parents=True, exist_ok=True)
    write_case(
        folder,
        one_target_case(
            "P1", 50, None, {"longest_diameter_mm": 30}, settings={"recist1.1": {"confirmation_required": True}}
        ),
        "p1.yaml",
    )
    write_case(folder, one_target_case("P2", 50, None, {"longest_diameter_mm": 30}), "p2.yaml")
    return folder


def test_case_settings_apply_on_both_sides(tmp_path: Path) -> None:
    v = run_json("diff", "recist1.1", "recist1.1", "--cases", settings_cohort(tmp_path / "s"))["verdicts"]
    # P2 PR/PR and P1 SD/SD: nobody reclassified; the SD cell is P1 scored with its own setting.
    assert v["crosstab"] == {"rows": ["PR", "SD"], "columns": ["PR", "SD"], "counts": [[1, 0], [0, 1]]}
    assert v["reclassified"] == []
    assert v["agreement_pct"] == 100.0


def test_set_b_overrides_the_case_setting_on_side_b_only(tmp_path: Path) -> None:
    """README: a case's settings override the rule file; --set overrides both. With
    --set-b confirmation_required=false, P1 is SD under A (its own setting) and PR under B."""
    folder = settings_cohort(tmp_path / "s")
    v = run_json(
        "diff", "recist1.1", "recist1.1", "--cases", folder, "--set-b", "recist1.1.confirmation_required=false"
    )["verdicts"]
    assert [(r["subject_id"], r["bor_a"], r["bor_b"]) for r in v["reclassified"]] == [("P1", "SD", "PR")]
    assert "not confirmed" in v["reclassified"][0]["why_a"]
    # and the other way round: --set-a confirmation on everyone reclassifies P2 only
    v = run_json(
        "diff", "recist1.1", "recist1.1", "--cases", folder, "--set-a", "recist1.1.confirmation_required=true"
    )["verdicts"]
    assert [(r["subject_id"], r["bor_a"], r["bor_b"]) for r in v["reclassified"]] == [("P2", "SD", "PR")]


# --------------------------------------------------------------------------------------------------
# 6. -o writes the reclassified subjects
# --------------------------------------------------------------------------------------------------


def test_output_file_holds_exactly_the_reclassified_subjects(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "reclassified.csv"
    result = run_cli("diff", "recist1.1", "choi", "--cases", cohort, "-o", out)
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(table["subject_id"]) == ["C01", "C02", "C06", "C08"]
    assert list(zip(table["bor_a"], table["bor_b"], strict=True)) == [
        ("SD", "PR"),
        ("SD", "PR"),
        ("SD", "PD"),
        ("PD", "PR"),
    ]
    assert {"why_a", "why_b"} <= set(table.columns)
    assert "-25%" in table.loc[table["subject_id"] == "C01", "why_b"].item()


def test_output_file_has_only_a_header_when_nobody_is_reclassified(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "reclassified.csv"
    result = run_cli("diff", "recist1.1", "recist1.1", "--cases", cohort, "-o", out)
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(out, dtype=str)
    assert len(table) == 0
    assert {"subject_id", "bor_a", "bor_b"} <= set(table.columns)


# --------------------------------------------------------------------------------------------------
# 7. Invalid inputs
# --------------------------------------------------------------------------------------------------


def test_unknown_rule_set_id_lists_the_shipped_ids() -> None:
    err = assert_clean_error(run_cli("diff", "recist9", "choi"), 2)
    assert "recist9" in err
    for rule_id in builtin_ids():
        assert rule_id in err
    err = assert_clean_error(run_cli("diff", "recist1.1", "chio"), 2)
    assert "chio" in err and "choi" in err


def test_malformed_variant_names_the_file_and_the_key() -> None:
    err = assert_clean_error(run_cli("diff", "recist1.1", MISSPELT), 1)
    assert MISSPELT.name in err
    assert "valeu" in err


def test_variant_extending_nothing_is_an_input_error() -> None:
    err = assert_clean_error(run_cli("diff", EXTENDS_NOTHING, "recist1.1"), 1)
    assert EXTENDS_NOTHING.name in err
    assert "recist9.9" in err
    assert "extends" in err


def test_set_b_naming_the_other_sets_id_is_a_usage_error() -> None:
    err = assert_clean_error(run_cli("diff", "recist1.1", "choi", "--set-b", "recist1.1.sd_min_days=56"), 2)
    assert "--set-b" in err and "choi" in err
    err = assert_clean_error(run_cli("diff", "recist1.1", "choi", "--set-a", "choi.inclusive=false"), 2)
    assert "--set-a" in err and "recist1.1" in err


def test_missing_cases_file_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_cohort.csv"
    err = assert_clean_error(run_cli("diff", "recist1.1", "choi", "--cases", missing), 1)
    assert "no_such_cohort.csv" in err
    assert not (tmp_path / "out.csv").exists()


def test_toxicity_with_cases_is_a_usage_error(cohort: Path) -> None:
    err = assert_clean_error(run_cli("diff", "recist1.1", "toxicity", "--cases", cohort), 2)
    assert "toxicity" in err
    assert_clean_error(run_cli("diff", "toxicity", "recist1.1", "--cases", cohort), 2)
    # without a cohort, the rule diff of a toxicity set is fine
    assert run_cli("diff", "recist1.1", "toxicity").exit_code == 0


@pytest.mark.parametrize(
    "args, code",
    [
        (["recist9", "choi"], 2),
        (["recist1.1", str(MISSPELT)], 1),
        (["recist1.1", str(EXTENDS_NOTHING)], 1),
        (["recist1.1", "choi", "--set-b", "recist1.1.sd_min_days=56"], 2),
        (["recist1.1", "choi", "--cases", "/nonexistent/cohort.csv"], 1),
        (["recist1.1", "toxicity", "--cases", str(FIXTURES.parent.parent / "sample_cases")], 2),
        (["recist1.1", "choi", "--format", "json", "--set-b", "choi.no_such_parameter=1"], 2),
    ],
)
def test_no_traceback_on_any_invalid_input(args: list[str], code: int) -> None:
    assert_clean_error(run_cli("diff", *args), code)

"""The command line as a user meets it: assess a case, read the answer, tune a parameter, check rule files.

Every test runs the real `crlm-response` command in-process (click's CliRunner, `run_cli` in conftest), so
stdout, stderr and the exit code are what a terminal would show. Clinical expectations follow REFERENCE.md §1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import ROOT, run_cli, run_json, write_case

from crlm_response import __version__
from crlm_response.cli import cli

SAMPLE = ROOT / "sample_cases" / "folfox_bev_partial_response.yaml"
SHIPPED_RECIST = ROOT / "rules" / "recist1.1.yaml"


# --------------------------------------------------------------------------------------------------
# Small cases built for one rule each
# --------------------------------------------------------------------------------------------------


def one_target_case(
    case_id: str, follow_ups: list[tuple[int, float]], baseline_mm: float = 50.0, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One 50 mm liver target, no non-targets; follow-ups as (day, size in mm)."""
    case: dict[str, Any] = {"case_id": case_id}
    if settings:
        case["settings"] = settings
    case["timepoints"] = [
        {
            "id": "baseline",
            "day": 0,
            "modality": "CT",
            "lesions": [{"id": "L1", "organ": "liver", "kind": "target", "longest_diameter_mm": baseline_mm}],
        },
    ] + [
        {"id": f"FU{i}", "day": day, "modality": "CT", "lesions": [{"id": "L1", "longest_diameter_mm": mm}]}
        for i, (day, mm) in enumerate(follow_ups, start=1)
    ]
    return case


def unconfirmed_pr_case(tmp_path: Path) -> Path:
    """A single PR (-40 %) at day 56 and nothing after it: PR without confirmation; with confirmation the
    PR is unconfirmed, but the scan is at day >= 42, so it still counts as SD (REFERENCE §1.9, step 4)."""
    return write_case(tmp_path, one_target_case("PR-UNCONFIRMED", [(56, 30.0)]), "pr_unconfirmed.yaml")


def early_sd_case(tmp_path: Path, settings: dict[str, Any] | None = None) -> Path:
    """SD (-10 %) at day 49 only: SD when sd_min_days is 42, NE when it is 56 (REFERENCE §1.9)."""
    case = one_target_case("SD-DAY-49", [(49, 45.0)], settings=settings)
    return write_case(tmp_path, case, "sd_day49.yaml")


def plus_22_case(tmp_path: Path) -> Path:
    """Sum 50 -> 61 mm: +22 % and +11 mm from the nadir. PD with the 20 % threshold, SD with 25 %."""
    return write_case(tmp_path, one_target_case("PLUS-22", [(56, 61.0)]), "plus22.yaml")


def warning_case(tmp_path: Path) -> Path:
    """A liver target of 8 mm at baseline is below the 10 mm measurability limit: scored, with a warning."""
    return write_case(tmp_path, one_target_case("SMALL-TARGET", [(56, 8.0)], baseline_mm=8.0), "small.yaml")


def recist_block(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["criteria"]["recist1.1"]


def bor(*args: Any) -> str:
    return recist_block(run_json("assess", *args))["best_overall_response"]


# --------------------------------------------------------------------------------------------------
# assess: the sample case, as a table, with --explain, and as JSON
# --------------------------------------------------------------------------------------------------


def test_assess_sample_case_prints_the_table_and_the_best_overall_response():
    result = run_cli("assess", SAMPLE)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "CRLM-0001" in out
    assert "RECIST 1.1" in out
    # Sum 48 + 31 + 17 = 96 mm at baseline; FU2 is 31 + 19 + 9 = 59 mm, -38.54 % -> PR.
    assert "96" in out
    fu1 = next(line for line in out.splitlines() if line.strip().startswith("FU1"))
    fu2 = next(line for line in out.splitlines() if line.strip().startswith("FU2"))
    assert "SD" in fu1 and "80" in fu1
    assert "PR" in fu2 and "59" in fu2 and "-38.54" in fu2
    assert "Best overall response: PR" in out
    assert "Traceback" not in result.output


def test_assess_explain_prints_one_line_per_decision_with_its_citation():
    result = run_cli("assess", SAMPLE, "--explain")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    explained = [line for line in out.splitlines() if line.strip().startswith(("FU1:", "FU2:"))]
    assert explained, out
    assert any("target PR" in ln and "-38.54%" in ln and "E2009 §4.3.1" in ln for ln in explained), out
    assert any("overall PR" in line and "E2009 Table 1" in line for line in explained), out
    assert "E2009" in out
    # Without --explain the rule lines are not printed.
    assert "E2009 Table 1" not in run_cli("assess", SAMPLE).stdout


TIMEPOINT_KEYS = (
    "id",
    "day",
    "sum_mm",
    "nadir_mm",
    "pct_from_baseline",
    "pct_from_nadir",
    "mm_from_nadir",
    "target",
    "non_target",
    "new_lesions",
    "overall",
    "explanation",
)
NUMBER = (int, float)


def test_assess_json_follows_the_contract():
    result = run_cli("assess", SAMPLE, "--format", "json")
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)

    assert {"case_id", "criteria", "toxicity", "warnings"} <= set(answer)
    assert answer["case_id"] == "CRLM-0001"
    assert isinstance(answer["criteria"], dict)
    assert isinstance(answer["toxicity"], list)
    assert all(isinstance(flag, dict) for flag in answer["toxicity"])
    assert isinstance(answer["warnings"], list)
    assert all({"code", "timepoint", "message"} <= set(w) for w in answer["warnings"])
    assert "recist1.1" in answer["criteria"]  # RECIST 1.1 is run by default

    block = recist_block(answer)
    assert isinstance(block["timepoints"], list) and len(block["timepoints"]) == 2
    for tp in block["timepoints"]:
        missing = [k for k in TIMEPOINT_KEYS if k not in tp]
        assert not missing, f"{tp.get('id')}: missing {missing}"
        assert isinstance(tp["id"], str)
        assert isinstance(tp["day"], int) and not isinstance(tp["day"], bool)
        for key in ("sum_mm", "nadir_mm", "pct_from_baseline", "pct_from_nadir", "mm_from_nadir"):
            assert isinstance(tp[key], NUMBER) and not isinstance(tp[key], bool), (key, tp[key])
        assert tp["target"] in {"CR", "PR", "SD", "PD", "NE", "NA"}
        assert tp["non_target"] in {"CR", "NON-CR/NON-PD", "PD", "NE", "NA"}
        assert isinstance(tp["new_lesions"], bool)
        assert tp["overall"] in {"CR", "PR", "SD", "PD", "NE", "NON-CR/NON-PD"}
        assert isinstance(tp["explanation"], list) and all(isinstance(x, str) for x in tp["explanation"])
    assert isinstance(block["best_overall_response"], str)

    fu1, fu2 = block["timepoints"]
    # Dates 2025-01-06, 2025-03-10, 2025-05-12 -> days 63 and 126.
    keys = ("id", "day", "sum_mm", "nadir_mm", "overall")
    assert tuple(fu1[k] for k in keys) == ("FU1", 63, 80.0, 96.0, "SD")
    assert tuple(fu2[k] for k in keys) == ("FU2", 126, 59.0, 80.0, "PR")
    assert (fu2["pct_from_baseline"], fu2["pct_from_nadir"], fu2["mm_from_nadir"]) == (-38.54, -26.25, -21.0)
    assert fu2["non_target"] == "NON-CR/NON-PD" and fu2["new_lesions"] is False
    assert block["best_overall_response"] == "PR"


def test_assess_json_warnings_carry_code_timepoint_and_message(tmp_path):
    answer = run_json("assess", warning_case(tmp_path))
    assert answer["warnings"], answer
    for warning in answer["warnings"]:
        assert {"code", "timepoint", "message"} <= set(warning)
        assert all(isinstance(warning[k], str) for k in ("code", "timepoint", "message"))
    first = next(w for w in answer["warnings"] if w["code"] == "recist_target_not_measurable")
    assert first["timepoint"] == "baseline"
    assert "8 mm" in first["message"]


# --------------------------------------------------------------------------------------------------
# Tuning the rules: --set, case settings, --criteria
# --------------------------------------------------------------------------------------------------


def test_set_confirmation_required_turns_an_unconfirmed_pr_into_sd(tmp_path):
    case = unconfirmed_pr_case(tmp_path)
    assert bor(case) == "PR"
    assert bor(case, "--set", "recist1.1.confirmation_required=true") == "SD"


def test_set_sd_min_days_56_makes_an_sd_at_day_49_not_evaluable(tmp_path):
    case = early_sd_case(tmp_path)
    assert bor(case) == "SD"
    answer = run_json("assess", case, "--set", "recist1.1.sd_min_days=56")
    assert recist_block(answer)["best_overall_response"] == "NE"
    assert recist_block(answer)["parameters"]["sd_min_days"] == 56


def test_case_settings_are_applied_and_set_wins_over_them(tmp_path):
    case = early_sd_case(tmp_path, settings={"recist1.1": {"sd_min_days": 56}})
    from_file = run_json("assess", case)
    assert recist_block(from_file)["parameters"]["sd_min_days"] == 56
    assert recist_block(from_file)["best_overall_response"] == "NE"

    overridden = run_json("assess", case, "--set", "recist1.1.sd_min_days=42")
    assert recist_block(overridden)["parameters"]["sd_min_days"] == 42
    assert recist_block(overridden)["best_overall_response"] == "SD"


def test_several_set_options_combine(tmp_path):
    case = early_sd_case(tmp_path)
    answer = run_json(
        "assess", case, "--set", "recist1.1.sd_min_days=56", "--set", "recist1.1.confirmation_required=true"
    )
    params = recist_block(answer)["parameters"]
    assert params["sd_min_days"] == 56 and params["confirmation_required"] is True


def test_criteria_recist_gives_exactly_that_block():
    answer = run_json("assess", SAMPLE, "--criteria", "recist1.1")
    assert list(answer["criteria"]) == ["recist1.1"]
    assert recist_block(answer)["best_overall_response"] == "PR"


def test_unknown_criteria_is_a_usage_error():
    result = run_cli("assess", SAMPLE, "--criteria", "recist9")
    assert result.exit_code == 2
    assert "recist9" in result.stderr


def test_set_unknown_parameter_is_a_usage_error_that_lists_the_parameters(tmp_path):
    result = run_cli("assess", unconfirmed_pr_case(tmp_path), "--set", "recist1.1.sd_min_dayz=56")
    assert result.exit_code == 2
    assert "--set" in result.stderr and "sd_min_dayz" in result.stderr and "sd_min_days" in result.stderr


def test_set_value_out_of_range_is_a_usage_error_on_set(tmp_path):
    # sd_min_days is allowed 42-56 (REFERENCE §1.9). A bad --set value is a wrong option value: click's usage
    # error (exit 2) naming --set, like an unknown --set parameter; the CLI means to convert it (assess_cmd).
    result = run_cli("assess", unconfirmed_pr_case(tmp_path), "--set", "recist1.1.sd_min_days=30")
    assert "Traceback" not in result.output
    assert "sd_min_days" in result.stderr and "42" in result.stderr
    assert result.exit_code == 2, result.stderr
    assert "--set" in result.stderr


# --------------------------------------------------------------------------------------------------
# A site variant of RECIST: a rule file that extends the shipped one
# --------------------------------------------------------------------------------------------------

SITE_VARIANT = """\
id: recist1.1-site
name: RECIST 1.1 (site variant, PD at +25 %)
description: RECIST 1.1 with a 25 % increase over the nadir for progression.
extends: recist1.1
parameters:
  pd_pct_from_nadir: {value: 25, citation: "E2009 §4.3.1 (site variant)"}
"""


def write_rules(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_variant_rule_file_with_a_25_percent_pd_threshold_turns_plus_22_percent_into_sd(tmp_path):
    case = plus_22_case(tmp_path)
    variant = write_rules(tmp_path, "site_recist.yaml", SITE_VARIANT)

    shipped = recist_block(run_json("assess", case))
    assert shipped["timepoints"][0]["pct_from_nadir"] == 22.0
    assert shipped["timepoints"][0]["target"] == "PD"
    assert shipped["best_overall_response"] == "PD"

    answer = run_json("assess", case, "--criteria", variant)
    (block,) = answer["criteria"].values()
    assert block["parameters"]["pd_pct_from_nadir"] == 25
    assert block["timepoints"][0]["target"] == "SD"
    assert block["timepoints"][0]["overall"] == "SD"
    assert block["best_overall_response"] == "SD"

    # As a table with --explain: the variant's name heads the block and the SD decision is explained.
    table = run_cli("assess", case, "--criteria", variant, "--explain")
    assert table.exit_code == 0, table.stderr
    assert "site variant" in table.stdout
    assert "Best overall response: SD" in table.stdout
    assert any("target SD" in line and "22%" in line for line in table.stdout.splitlines()), table.stdout


# --------------------------------------------------------------------------------------------------
# Output files and --strict
# --------------------------------------------------------------------------------------------------


def test_output_file_gets_the_json_and_nothing_is_printed(tmp_path):
    out = tmp_path / "out.json"
    result = run_cli("assess", SAMPLE, "--format", "json", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert out.is_file()
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == run_json("assess", SAMPLE)


def test_output_file_gets_the_table_and_nothing_is_printed(tmp_path):
    out = tmp_path / "out.txt"
    result = run_cli("assess", SAMPLE, "--output", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "Best overall response: PR" in out.read_text(encoding="utf-8")


def test_strict_fails_on_a_case_with_a_warning_and_passes_a_clean_case(tmp_path):
    warned = run_cli("assess", warning_case(tmp_path), "--strict")
    assert warned.exit_code == 1
    assert "recist_target_not_measurable" in warned.stderr
    assert "Traceback" not in warned.output

    # Without --strict the same case is scored, with the warning shown.
    relaxed = run_cli("assess", warning_case(tmp_path))
    assert relaxed.exit_code == 0
    assert "recist_target_not_measurable" in relaxed.stdout

    clean_case = write_case(tmp_path, one_target_case("CLEAN", [(56, 30.0), (112, 28.0)]), "clean.yaml")
    clean = run_cli("assess", clean_case, "--strict")
    assert clean.exit_code == 0, clean.stderr
    assert "Best overall response: PR" in clean.stdout


# --------------------------------------------------------------------------------------------------
# rules list / show / validate / metrics
# --------------------------------------------------------------------------------------------------


def test_rules_list_names_recist_and_its_citation():
    result = run_cli("rules", "list")
    assert result.exit_code == 0, result.stderr
    assert "recist1.1" in result.stdout
    assert "Eisenhauer" in result.stdout


def test_rules_list_json():
    result = run_cli("rules", "list", "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)["rule_sets"]}
    assert rows["recist1.1"]["citation"].startswith("Eisenhauer")
    assert rows["recist1.1"]["kind"] == "response"


def test_rules_show_recist_lists_parameters_with_values_and_citations():
    result = run_cli("rules", "show", "recist1.1")
    assert "Traceback" not in result.output
    assert result.exit_code == 0, result.stderr
    line = next((ln for ln in result.stdout.splitlines() if "pd_pct_from_nadir" in ln), "")
    assert "20" in line and "E2009" in line, result.stdout
    assert "sd_min_days" in result.stdout
    assert "Eisenhauer" in result.stdout  # the references


def test_rules_show_recist_json():
    result = run_cli("rules", "show", "recist1.1", "--format", "json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["id"] == "recist1.1"
    pd_param = info["parameters"]["pd_pct_from_nadir"]
    assert pd_param["value"] == 20 and "E2009" in pd_param["citation"]
    assert info["parameters"]["sd_min_days"]["value"] == 42


def test_rules_show_json_keeps_a_parameter_whose_value_is_empty():
    # non_cr_non_pd_min_days: value null ("empty = same as sd_min_days") - still a value, shown as null.
    info = json.loads(run_cli("rules", "show", "recist1.1", "--format", "json").stdout)
    param = info["parameters"]["non_cr_non_pd_min_days"]
    assert "value" in param, param
    assert param["value"] is None


def test_rules_show_unknown_rule_set_is_a_usage_error():
    result = run_cli("rules", "show", "nonexistent")
    assert result.exit_code == 2
    assert "nonexistent" in result.stderr
    assert "recist1.1" in result.stderr  # says what exists


def test_rules_validate_the_shipped_recist_file():
    result = run_cli("rules", "validate", SHIPPED_RECIST)
    assert result.exit_code == 0, result.stderr
    assert "OK" in result.stdout and "recist1.1" in result.stdout


def test_rules_validate_a_variant_that_extends_recist(tmp_path):
    variant = write_rules(tmp_path, "site_recist.yaml", SITE_VARIANT)
    result = run_cli("rules", "validate", variant)
    assert result.exit_code == 0, result.stderr
    assert "OK" in result.stdout
    assert "recist1.1 -> recist1.1-site" in result.stdout


def test_rules_validate_a_misspelt_key_names_the_file_and_the_key(tmp_path):
    bad = write_rules(tmp_path, "typo_recist.yaml", SITE_VARIANT.replace("{value: 25,", "{valeu: 25,"))
    result = run_cli("rules", "validate", bad)
    assert result.exit_code == 1
    assert "typo_recist.yaml" in result.stderr
    assert "valeu" in result.stderr
    assert "Traceback" not in result.output


def test_rules_validate_a_misspelt_top_level_key(tmp_path):
    bad = write_rules(tmp_path, "typo_top.yaml", SITE_VARIANT.replace("parameters:", "paramters:"))
    result = run_cli("rules", "validate", bad)
    assert result.exit_code == 1
    assert "typo_top.yaml" in result.stderr and "paramters" in result.stderr


def test_rules_validate_an_unknown_word_in_a_condition_names_the_word(tmp_path):
    bad = write_rules(
        tmp_path,
        "word_recist.yaml",
        """\
id: recist1.1-word
name: RECIST 1.1 with a typo in a condition
description: The new-lesion rule uses a word that is not in the metric vocabulary.
extends: recist1.1
outputs:
  - name: new_lesions
    categories: [true, false]
    rules:
      - when: any_new_lesion or frobnicated_lesion
        then: true
        citation: E2009 §4.3.2
      - otherwise: false
""",
    )
    result = run_cli("rules", "validate", bad)
    assert result.exit_code == 1
    assert "word_recist.yaml" in result.stderr
    assert "frobnicated_lesion" in result.stderr
    assert "Traceback" not in result.output


def test_rules_validate_two_files_that_extend_each_other_is_a_loop(tmp_path):
    a = write_rules(tmp_path, "a.yaml", "id: loop-a\nname: A\ndescription: a\nextends: b.yaml\n")
    write_rules(tmp_path, "b.yaml", "id: loop-b\nname: B\ndescription: b\nextends: a.yaml\n")
    result = run_cli("rules", "validate", a)
    assert result.exit_code == 1
    assert "loop" in result.stderr
    assert "a.yaml" in result.stderr and "b.yaml" in result.stderr


def test_rules_validate_checks_every_file_and_fails_if_one_is_bad(tmp_path):
    bad = write_rules(tmp_path, "typo_recist.yaml", SITE_VARIANT.replace("{value: 25,", "{valeu: 25,"))
    result = run_cli("rules", "validate", SHIPPED_RECIST, bad)
    assert result.exit_code == 1
    assert "OK" in result.stdout  # the good file is still reported
    assert "typo_recist.yaml" in result.stderr


def test_rules_metrics_lists_the_vocabulary():
    result = run_cli("rules", "metrics")
    assert result.exit_code == 0, result.stderr
    for word in ("any_new_lesion", "nadir_mm", "lesion_mm"):
        assert word in result.stdout
    assert "Functions:" in result.stdout

    timepoint_only = run_cli("rules", "metrics", "--level", "timepoint")
    assert timepoint_only.exit_code == 0, timepoint_only.stderr
    assert "nadir_mm" in timepoint_only.stdout
    names = {line.split()[0] for line in timepoint_only.stdout.splitlines() if line.strip()}
    assert "lesion_mm" not in names and "is_target" not in names  # lesion-level metrics


# --------------------------------------------------------------------------------------------------
# Version, help, python -m, exit codes
# --------------------------------------------------------------------------------------------------


def test_version():
    result = run_cli("--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout
    assert "crlm-response" in result.stdout


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            out.extend(_leaf_commands(command, path))
        else:
            out.append(path)
    return out


COMMANDS = _leaf_commands(cli)


def test_the_command_tree_is_the_documented_one():
    documented = {("assess",), ("rules", "list"), ("rules", "show"), ("rules", "validate"), ("rules", "metrics")}
    assert documented <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_help_has_an_example(command):
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Example:" in result.stdout
    assert "crlm-response " + " ".join(command) in result.stdout
    assert run_cli(*command, "-h").stdout == result.stdout


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "crlm_response", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    assert "assess" in done.stdout and "rules" in done.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("assess", SAMPLE), 0, ""),
        (("assess", "no_such_case.yaml"), 1, "not found"),
        (("assess", SAMPLE, "--no-such-option"), 2, "No such option"),
        (("assess",), 2, "Missing argument"),
        (("assess", SAMPLE, "--format", "xml"), 2, "xml"),
        (("assess", SAMPLE, "--set", "sd_min_days"), 2, "--set"),
        (("no-such-command",), 2, "No such command"),
    ],
    ids=[
        "success",
        "missing-file",
        "unknown-option",
        "missing-argument",
        "bad-format",
        "bad-set-syntax",
        "unknown-command",
    ],
)
def test_exit_codes(args, code, says):
    result = run_cli(*args)
    assert result.exit_code == code, result.output
    assert says in result.stderr
    assert "Traceback" not in result.output


def test_an_unreadable_case_is_an_input_error_that_names_the_file_and_key(tmp_path):
    case = one_target_case("BAD", [(56, 30.0)])
    case["timepoints"][1]["lesions"][0]["statuss"] = "present"
    path = write_case(tmp_path, case, "bad_case.yaml")
    result = run_cli("assess", path)
    assert result.exit_code == 1
    assert "bad_case.yaml" in result.stderr and "statuss" in result.stderr
    assert "Traceback" not in result.output


def test_file_names_are_printed_as_written_not_as_markup(tmp_path: Path) -> None:
    """A file named like rich markup (`v[bold].csv`) keeps its brackets in the accounting line."""
    visits = tmp_path / "v[bold].csv"
    visits.write_text("subject_id,day,response\nA,56,PR\n", encoding="utf-8")
    result = run_cli("bor", visits)
    assert result.exit_code == 0, result.stderr
    assert "v[bold].csv: rows read 1" in result.stderr

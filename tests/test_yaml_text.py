"""YAML read as it was written, and rule files checked when they load (issue 13, "no silent wrong answers").

(a) ids and free-text fields of a case keep the characters written, whatever YAML 1.1 would make of them
    (`0012` octal, `1:20` base 60, `0x1A` hexadecimal, `NO` a boolean, `1.50` a float);
(b) numbers are plain decimal numbers: `day: 1:20` and `0x1A` mm are refused, not read as 80 and 26;
(c) dates are YYYY-MM-DD, never seconds since 1970;
(d) aliases: one inside the value it names, or nesting too deep through aliases, is refused at its line;
(e) the C (libyaml) loader and the pure-Python loader read every YAML file of the project identically;
(f) rule files: number literals, list indexes, list parameters and number formats are checked at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli

import crlm_response.yamlio as yamlio
from crlm_response import parse_case
from crlm_response.conditions import MAX_FORMAT_DIGITS, compile_template
from crlm_response.errors import CaseError, ConditionError, CrlmError
from crlm_response.rules import check_parameter_value, load_rules
from crlm_response.yamlio import YamlError, parse_yaml, parse_yaml_document

# Every free-text and id field of the case schema, each given the same unquoted scalar.
CASE_WITH_TEXT = """\
case_id: {v}
description: {v}
notes: {v}
treatment: {{regimen: {v}, agents: [oxaliplatin, {v}]}}
timepoints:
  - id: {v}
    day: 0
    lesions:
      - {{id: {v}, organ: {v}, location: {v}, kind: target, longest_diameter_mm: 40, detected_by: {v}}}
      - {{id: L2, organ: liver, kind: target, longest_diameter_mm: 30}}
  - id: FU1
    day: 56
    lesions:
      - {{id: {v}, status: coalesced, coalesced_into: L2}}
      - {{id: L2, longest_diameter_mm: 50}}
  - id: FU2
    day: 112
    lesions:
      - {{id: {v}, status: coalesced, coalesced_into: {v}}}
      - {{id: L2, longest_diameter_mm: 50}}
"""

# written -> what YAML 1.1 (PyYAML's SafeLoader) makes of it
YAML_11_SURPRISES = {
    "0012": 10,
    "007": 7,
    "1:20": 80,
    "0x1A": 26,
    "0o17": "0o17",
    "1_000": 1000,
    "NO": False,
    "yes": True,
    "Off": False,
    "1.50": 1.5,
    "12": 12,
    ".inf": float("inf"),
}


@pytest.mark.parametrize("written", list(YAML_11_SURPRISES))
def test_every_text_field_keeps_the_characters_written(written: str) -> None:
    assert yaml.safe_load(f"x: {written}")["x"] == YAML_11_SURPRISES[written]  # the surprise is real
    case = parse_case(CASE_WITH_TEXT.format(v=written))
    assert case.case_id == written
    assert case.description == written
    assert case.notes == written
    assert case.treatment.regimen == written
    assert case.treatment.agents == ["oxaliplatin", written.lower()]  # agents are matched in lower case
    assert [tp.id for tp in case.timepoints] == [written, "FU1", "FU2"]
    lesion = case.timepoints[0].lesions[0]
    assert (lesion.id, lesion.location, lesion.detected_by) == (written, written, written)
    assert lesion.organ == written.lower()  # organ words are normalised to lower case
    assert case.timepoints[1].lesions[0].id == written
    assert case.timepoints[2].lesions[0].coalesced_into == written


def test_subject_id_alias_keeps_the_characters_written() -> None:
    case = parse_case(CASE_WITH_TEXT.format(v="L1").replace("case_id: L1", "subject_id: 0012"))
    assert case.case_id == "0012"


def test_quoted_and_null_values_are_unchanged() -> None:
    case = parse_case(
        CASE_WITH_TEXT.format(v="L1").replace("notes: L1", "notes: ~").replace("case_id: L1", "case_id: '0012'")
    )
    assert case.case_id == "0012"
    assert case.notes is None


def test_a_word_field_given_a_yes_no_says_what_is_allowed() -> None:
    text = CASE_WITH_TEXT.format(v="L1").replace(
        "kind: target, longest_diameter_mm: 40", "kind: no, longest_diameter_mm: 40"
    )
    with pytest.raises(CaseError) as info:
        parse_case(text)
    assert str(info.value).startswith("<case>:9: timepoints[0].lesions[0].kind: 'no' is not allowed; use one of")


@pytest.mark.parametrize(
    ("written", "value"),
    [("010", 10), ("0012", 12), ("+5", 5), ("56", 56)],
)
def test_days_are_plain_decimal_numbers(written: str, value: int) -> None:
    case = parse_case(CASE_WITH_TEXT.format(v="L1").replace("day: 56", f"day: {written}"))
    assert case.timepoints[1].day == value


@pytest.mark.parametrize("written", ["1:20", "0x38", "0o70", "0b111000"])
def test_days_in_other_number_forms_are_refused(written: str) -> None:
    with pytest.raises(CaseError) as info:
        parse_case(CASE_WITH_TEXT.format(v="L1").replace("day: 56", f"day: {written}"))
    assert str(info.value) == (
        f"<case>:12: timepoints[1].day: '{written}' is not valid: input should be a valid integer, "
        "unable to parse string as an integer"
    )


@pytest.mark.parametrize(("written", "value"), [("012.5", 12.5), ("40", 40.0), ("3.", 3.0), ("4.0e+1", 40.0)])
def test_measurements_stay_numbers(written: str, value: float) -> None:
    case = parse_case(
        CASE_WITH_TEXT.format(v="L1").replace("longest_diameter_mm: 40", f"longest_diameter_mm: {written}")
    )
    assert case.timepoints[0].lesions[0].longest_diameter_mm == value


def test_a_measurement_in_base_60_is_refused() -> None:
    with pytest.raises(CaseError) as info:
        parse_case(CASE_WITH_TEXT.format(v="L1").replace("longest_diameter_mm: 40", "longest_diameter_mm: 1:20"))
    assert "'1:20' is not valid: input should be a valid number" in str(info.value)


@pytest.mark.parametrize("written", ["0", "20140201", "2014-02", "2014-02-01T23:00:00-05:00", "1:20"])
def test_dates_must_be_written_as_year_month_day(written: str) -> None:
    text = CASE_WITH_TEXT.format(v="L1").replace("day: 0", "date: 2014-01-06").replace("day: 56", f"date: {written}")
    with pytest.raises(CaseError) as info:
        parse_case(text)
    assert str(info.value) == (
        f"<case>:12: timepoints[1].date: '{written}' is not a date; write it as YYYY-MM-DD, e.g. 2014-02-01"
    )


def test_a_nul_in_an_id_is_refused() -> None:
    with pytest.raises(CaseError) as info:
        parse_case(CASE_WITH_TEXT.format(v="L1").replace("case_id: L1", 'case_id: "P\\x001"'))
    assert (
        str(info.value)
        == "<case>:1: case_id: 'P\\x001' contains a NUL character (\\0), which an id cannot hold; delete it"
    )


# --------------------------------------------------------------------------------------------------
# (d) aliases
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: &x [1, *x]\n", "<text>:1: a[1]"),
        ("a: &x {b: *x}\n", "<text>:1: a.b"),
        ("a:\n  b: &x\n    c:\n      - d: *x\n", "<text>:4: a.b.c[0].d"),
    ],
)
def test_an_alias_inside_its_own_value_is_refused_at_its_line(text: str, where: str) -> None:
    with pytest.raises(YamlError) as info:
        parse_yaml(text)
    assert str(info.value).startswith(where + ": an alias refers to the value that contains it (anchored on line ")


def test_nesting_through_aliases_is_limited_like_written_nesting() -> None:
    levels = 30
    lines = ["a0: &a0 " + "[" * levels + "1" + "]" * levels]
    for i in range(1, 4):
        lines.append(f"a{i}: &a{i} " + "[" * levels + f"*a{i - 1}" + "]" * levels)
    with pytest.raises(YamlError) as info:
        parse_yaml("\n".join(lines) + "\n")
    assert f"nesting deeper than {yamlio.MAX_YAML_DEPTH} levels (through aliases)" in str(info.value)


def test_shared_aliases_are_still_read() -> None:
    data, _ = parse_yaml("a: &x {b: 1}\nc: [*x, *x]\n")
    assert data == {"a": {"b": 1}, "c": [{"b": 1}, {"b": 1}]}


def test_a_number_too_long_for_python_is_refused_at_its_line() -> None:
    with pytest.raises(YamlError) as info:
        parse_yaml("a: 1\nb: " + "9" * 5000 + "\n")
    assert str(info.value) == "<text>:2: a number with 5,000 digits is too long (quote it if it is an id)"


# --------------------------------------------------------------------------------------------------
# (e) the C loader and the pure-Python loader agree
# --------------------------------------------------------------------------------------------------


def _project_yaml_files() -> list[Path]:
    folders = [ROOT / "rules", ROOT / "sample_cases", ROOT / "tests"]
    return sorted(p for folder in folders for p in folder.rglob("*.yaml") if p.stat().st_size < 2_000_000)


def _outcome(path: Path) -> Any:
    try:
        document = yamlio.load_yaml_document(path)
    except CrlmError as exc:
        return ("error", str(exc))
    return (document.data, document.lines, document.written)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_the_c_loader_is_used_when_pyyaml_has_it() -> None:
    assert yamlio._FAST is not yamlio._Loader


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_c_and_python_loaders_read_every_project_yaml_file_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    files = _project_yaml_files()
    assert len(files) > 100
    fast = {p: _outcome(p) for p in files}
    monkeypatch.setattr(yamlio, "_FAST", yamlio._Loader)
    differ = [p.relative_to(ROOT) for p in files if _outcome(p) != fast[p]]
    assert differ == []


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, 2\n",  # unclosed bracket
        "a:\n\tb: 1\n",  # tab indentation
        "a: 1\n b: 2\n",  # bad indentation
        "a: café\x07\n",  # control character after a non-ASCII one (libyaml counts bytes)
        "a: !!python/object:os.system x\n",
    ],
)
def test_syntax_errors_read_the_same_with_either_loader(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(YamlError) as fast:
        parse_yaml_document(text)
    monkeypatch.setattr(yamlio, "_FAST", yamlio._Loader)
    with pytest.raises(YamlError) as slow:
        parse_yaml_document(text)
    assert str(fast.value) == str(slow.value)


# --------------------------------------------------------------------------------------------------
# (f) rule files checked when loaded
# --------------------------------------------------------------------------------------------------


class _Vocabulary:
    def type_of(self, name: str) -> Any:
        return "number" if name == "sum_mm" else None

    def list_length(self, name: str) -> int | None:
        return None

    def describe(self) -> str:
        return "sum_mm"


@pytest.mark.parametrize(
    "spec", [".2f", f".{MAX_FORMAT_DIGITS}f", f">{MAX_FORMAT_DIGITS}.1f", "0=+20,.3f", "0>020", "*^8g", ".1%"]
)
def test_number_formats_up_to_the_cap_are_accepted(spec: str) -> None:
    template = compile_template(f"sum {{sum_mm:{spec}}} mm", _Vocabulary(), "because")
    assert template.render({"sum_mm": 12.5}) == f"sum {format(12.5, spec)} mm"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (".21f", "number format `.21f` for sum_mm: precision 21 is above the limit of 20"),
        ("21.1f", "number format `21.1f` for sum_mm: width 21 is above the limit of 20"),
        ("0>021", "number format `0>021` for sum_mm: width 21 is above the limit of 20"),
        (".50000000f", "number format `.50000000f` for sum_mm: precision 50000000 is above the limit of 20"),
        (
            "x>" + "9" * 40,
            "number format `x>999999999999999999... (42 characters)` for sum_mm: width "
            "99999999999999999999... (40 characters) is above the limit of 20",
        ),
        (".2q", "bad number format `.2q` for sum_mm"),
    ],
)
def test_number_formats_above_the_cap_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_template(f"sum {{sum_mm:{spec}}} mm", _Vocabulary(), "because")
    assert info.value.message == message


def test_the_largest_finite_literal_is_accepted(tmp_path: Path) -> None:
    rule = (ROOT / "tests" / "bad_inputs" / "other" / "rule_condition_infinite_literal.yaml").read_text()
    path = tmp_path / "r.yaml"
    path.write_text(rule.replace("1e999", "1.7e308"))
    assert load_rules(path).outputs[0].rules[0].condition is not None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([5, 10], None),
        ([0, 0.5], None),
        ([5], "must be a list of 2 numbers, not 1 ([5])"),
        ([10, 5], "must be in ascending order (each value larger than the one before), not [10, 5]"),
        ([5, 5], "must be in ascending order (each value larger than the one before), not [5, 5]"),
        ([-1, 5], "values must each be >= 0, not -1"),
        ([5, float("inf")], "values must each be a number, not inf"),
        ([5, True], "must be a list of numbers, not [5, True]"),
        ([5, "10"], "must be a list of numbers, not [5, '10']"),
        ([5, 10**400], "values must each be a number of at most about 1.8e308, not an integer of 401 digits"),
    ],
)
def test_list_parameter_overrides_keep_the_declared_shape(value: list[Any], problem: str | None) -> None:
    rules = load_rules("ablation")
    if problem is None:
        assert check_parameter_value(rules, "margin_boundaries_mm", value, "ablation.margin_boundaries_mm") == value
        return
    with pytest.raises(CrlmError) as info:
        check_parameter_value(rules, "margin_boundaries_mm", value, "ablation.margin_boundaries_mm")
    assert info.value.message == f"`ablation.margin_boundaries_mm` {problem}"


def test_a_list_without_declared_length_keeps_the_length_written(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        (ROOT / "tests" / "bad_inputs" / "other" / "rule_list_wrong_length.yaml")
        .read_text()
        .replace("extends: ablation", "extends: toxicity")
        .replace("margin_boundaries_mm:\n    value: [2, 5, 10]", "pdff_grade_cutoffs_pct:\n    value: [5, 10]")
    )
    with pytest.raises(CrlmError) as info:
        load_rules(path)
    assert info.value.message == "must be a list of 3 numbers, not 2 ([5, 10])"


def test_a_set_value_in_a_yaml_11_number_form_is_text_not_a_number() -> None:
    case = ROOT / "sample_cases" / "folfox_bev_partial_response.yaml"
    result = run_cli("assess", str(case), "--set", "recist1.1.sd_min_days=1:20")
    assert result.exit_code == 2
    assert "`recist1.1.sd_min_days` must be a number, not '1:20'" in result.stderr

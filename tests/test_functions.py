"""The rule language's functions as registered objects (crlm_response/functions.py).

* the registry is the language: messages list its functions in registration order, `rules metrics` prints each
  function's own help, `rules show` names the functions a set calls;
* a new function is one object: a history function written here (the value of an output at the subject's
  previous timepoint, the kind a later iRECIST set needs) is registered and used by a rule file with no change
  anywhere else, and the engine's repeat-until-settled passes give it the right values;
* misused functions are refused at load with the messages the bad-input corpora expect.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli, run_json

from crlm_response import assess
from crlm_response.errors import RuleSetError
from crlm_response.functions import (
    FUNCTIONS,
    ColumnFunction,
    FunctionRef,
    HistoryFunction,
    Scoring,
    ValueFunction,
    Vocabulary,
)
from crlm_response.readers import case_from_data
from crlm_response.rules import builtin_rules_dir, load_rules

LANGUAGE = [
    "known",
    "missing",
    "abs",
    "min",
    "max",
    "at_least",
    "at_most",
    "baseline",
    "has_agent",
    "recorded_before",
    "confirmed_before",
    "previous",
    "at_run_start",
]


def test_the_registry_holds_the_language_in_message_order() -> None:
    assert list(FUNCTIONS) == LANGUAGE
    for name, function in FUNCTIONS.items():
        assert function.name == name
        assert function.help.startswith(name + "("), function.help
        assert isinstance(function, ColumnFunction | ValueFunction)


def test_rules_metrics_prints_each_functions_own_help() -> None:
    result = run_cli("rules", "metrics", "--level", "subject")
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())  # the terminal wraps long lines
    assert "has_agent('oxaliplatin'): the subject's treatment includes that agent" in text
    assert "recorded_before(overall, 'CR'): an earlier timepoint of the subject had that response" in text


def test_rules_show_names_the_functions_a_set_calls() -> None:
    """recist1.1 calls confirmed_before and recorded_before (cr_definitive_before) and known/missing in its
    checks; percist1.0 calls abs and baseline (the liver reference check)."""
    recist = run_json("rules", "show", "recist1.1")["functions"]
    assert list(recist)[-2:] == ["recorded_before", "confirmed_before"]
    assert recist["confirmed_before"] == FUNCTIONS["confirmed_before"].help
    percist = run_json("rules", "show", "percist1.0")["functions"]
    assert {"abs", "baseline"} <= set(percist)
    assert "recorded_before" not in percist


# --------------------------------------------------------------------------------------------------
# A new history function is one object
# --------------------------------------------------------------------------------------------------


class OutputBefore(HistoryFunction):
    """`output_before(overall)`: the output's value at the subject's previous follow-up (missing at the first)."""

    name = "output_before"
    help = "output_before(overall): the output at the subject's previous follow-up"
    arguments = ("output",)
    usage = "output_before() takes an output, e.g. output_before(overall)"

    def result_type(self, vocabulary: Vocabulary, ref: FunctionRef) -> Any:
        return "text"

    def first_pass(self, ctx: Scoring, ref: FunctionRef) -> np.ndarray:
        return np.full(ctx.n["timepoint"], None, dtype=object)

    def read(self, ctx: Scoring, ref: FunctionRef, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        values = np.asarray(outputs[ref.args[0]], dtype=object)
        before = np.full(len(values), None, dtype=object)
        same_subject = ctx.visit_subject[1:] == ctx.visit_subject[:-1]  # visits sorted by subject, day
        before[1:][same_subject] = values[:-1][same_subject]
        return before


RULE_FILE = """\
id: recist_with_memory
extends: recist1.1
name: RECIST 1.1 with the previous verdict
description: RECIST 1.1 plus an output that reads the overall response of the previous timepoint.
outputs:
  - name: previous_overall
    categories: [CR, PR, SD, PD, NE, NON-CR/NON-PD]
    rules:
      - when: output_before(overall) == 'CR'
        then: CR
      - when: output_before(overall) == 'PR'
        then: PR
      - when: output_before(overall) == 'SD'
        then: SD
      - when: output_before(overall) == 'PD'
        then: PD
  - name: after_partial
    description: the previous timepoint's overall response was PR
    categories: [true, false]
    rules:
      - when: output_before(overall) == 'PR'
        then: true
        because: the previous overall response was {previous_overall}
        citation: E2009
      - otherwise: false
"""


def follow_ups(*mm: float) -> dict[str, Any]:
    """One liver target, 50 mm at baseline (day 0), then one follow-up every 8 weeks."""
    timepoints = [
        {
            "id": "baseline",
            "day": 0,
            "modality": "CT",
            "lesions": [{"id": "L1", "organ": "liver", "kind": "target", "longest_diameter_mm": 50}],
        }
    ]
    for k, value in enumerate(mm, start=1):
        timepoints.append(
            {"id": f"FU{k}", "day": 56 * k, "modality": "CT", "lesions": [{"id": "L1", "longest_diameter_mm": value}]}
        )
    return {"case_id": "memory", "timepoints": timepoints}


def test_a_new_history_function_is_one_registered_object(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """50 mm -> 30 (PR, -40 %) -> 30 (PR) -> 45 (PD: +15 mm, +50 % from the 30 mm nadir) -> 45 (PD).

    previous_overall is read from the pass before: FU1 has no earlier follow-up (missing), FU2 PR, FU3 PR,
    FU4 PD; after_partial is true at FU2 and FU3 only. The output is declared after `overall` here, and the
    engine's second pass fills it in."""
    monkeypatch.setitem(FUNCTIONS, "output_before", OutputBefore())
    path = tmp_path / "memory.yaml"
    path.write_text(RULE_FILE, encoding="utf-8")
    result = assess(case_from_data(follow_ups(30, 30, 45, 45), "memory"), criteria=[str(path)])
    rows = result.to_dict()["criteria"]["recist_with_memory"]["timepoints"]
    assert [r["overall"] for r in rows] == ["PR", "PR", "PD", "PD"]
    assert [r["previous_overall"] for r in rows] == [None, "PR", "PR", "PD"]
    assert [r["after_partial"] for r in rows] == [False, True, True, False]
    assert "after_partial yes: the previous overall response was PR [E2009]" in rows[1]["explanation"]
    assert load_rules(path).history_outputs == {"overall"}


def test_a_new_history_function_is_checked_like_the_others(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(FUNCTIONS, "output_before", OutputBefore())
    path = tmp_path / "memory.yaml"
    text = RULE_FILE
    path.write_text(
        text.replace(
            "output_before(overall) == 'PR'\n        then: true", "output_before('x') == 'PR'\n        then: true"
        ),
        encoding="utf-8",
    )
    with pytest.raises(RuleSetError) as refused:
        load_rules(path)
    assert "output_before() takes an output, e.g. output_before(overall) in `output_before('x') == 'PR'`" in str(
        refused.value
    )
    path.write_text(
        text.replace(
            "output_before(overall) == 'PR'\n        then: true", "output_before(nothing) == 'PR'\n        then: true"
        ),
        encoding="utf-8",
    )
    with pytest.raises(RuleSetError) as unknown:
        load_rules(path)
    assert "unknown word `history:output_before:nothing`" in str(unknown.value)


# --------------------------------------------------------------------------------------------------
# Misuse is refused at load with the same messages as before the registry
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("baseline(1) > 0", "baseline() takes one name, e.g. baseline(spleen_volume_ml) in `baseline(1) > 0`"),
        ("baseline(sum_mmx) > 0", "unknown word `sum_mmx` in `baseline(sum_mmx) > 0`"),
        ("has_agent(x)", "has_agent() takes one quoted agent name, e.g. has_agent('oxaliplatin') in `has_agent(x)`"),
        (
            "recorded_before(overall)",
            "recorded_before() takes an output and a quoted response word, e.g. recorded_before(overall, 'CR') in "
            "`recorded_before(overall)`",
        ),
        (
            "confirmed_before(overall, 'XX')",
            "unknown word `history:confirmed_before:overall:XX` in `confirmed_before(overall, 'XX')`",
        ),
        ("known(sum_mm, 1)", "known() takes one argument in `known(sum_mm, 1)`"),
        ("min(sum_mm)", "min() takes two or more arguments in `min(sum_mm)`"),
        (
            "at_least(sum_mm, 1)",
            "at_least() takes three arguments: value, threshold, inclusive in `at_least(sum_mm, 1)`",
        ),
        ("abs(x=1) > 0", "functions take positional arguments only in `abs(x=1) > 0`"),
        (
            "foo(1)",
            "`foo` is not a known function in `foo(1)` (functions: " + ", ".join(LANGUAGE) + ")",
        ),
    ],
)
def test_misused_functions_are_refused_with_their_messages(condition: str, message: str, tmp_path: Path) -> None:
    text = (builtin_rules_dir() / "recist1.1.yaml").read_text(encoding="utf-8")
    anchor = "      - when: any_target_reappeared and cr_definitive_before"
    assert anchor in text
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(anchor, f"      - when: {condition!r}", 1), encoding="utf-8")
    with pytest.raises(RuleSetError) as refused:
        load_rules(path)
    assert message in str(refused.value)
    assert "outputs[1].rules[1].when" in str(refused.value)


def test_history_functions_are_valid_only_at_the_timepoint_level(tmp_path: Path) -> None:
    """A lesion-level output cannot ask what the patient's earlier overall responses were."""
    variant = tmp_path / "variant.yaml"
    variant.write_text(
        "id: v\nextends: recist1.1\nname: v\ndescription: v\noutputs:\n"
        "  - name: lesion_memory\n    level: lesion\n    categories: [true, false]\n    rules:\n"
        "      - when: recorded_before(overall, 'CR')\n        then: true\n      - otherwise: false\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleSetError) as refused:
        load_rules(variant)
    assert "unknown word `history:recorded_before:overall:CR`" in str(refused.value)
    assert "lesion-level vocabulary" in str(refused.value)


def test_function_values_are_named_by_reference_not_by_text() -> None:
    """`baseline(sum_mm)` is a reference to the function object; its text form only appears in messages, so a
    report item or evidence name spelt `baseline:sum_mm` is not a way into the function."""
    ref = FunctionRef(FUNCTIONS["baseline"], ("sum_mm",))  # type: ignore[arg-type]
    assert str(ref) == "baseline:sum_mm"
    assert ref != "baseline:sum_mm"
    assert ref == FunctionRef(FUNCTIONS["baseline"], ("sum_mm",))  # type: ignore[arg-type]

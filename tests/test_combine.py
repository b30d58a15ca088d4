"""Stacking the rule sets' tables into the batch outputs (`batch.combine_results`): row order and no side effects.

Rows go by subject id compared as text ("10" before "9" before "A"), then by criteria set in the run's order,
then by the table's other keys; the sort is stable, so within those keys the engine's order (baseline first,
then VISITNUM or time) stands. Expected orders below are written by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crlm_response.batch import _sorted, combine_results, score_read
from crlm_response.synthetic import generate_cohort
from crlm_response.tables import object_strings
from crlm_response.trial import read_long


def frame(rows: list[tuple[object, ...]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns).astype({c: object for c in columns if c != "day"})


def test_rows_by_subject_as_text_then_criteria_in_run_order_engine_order_within() -> None:
    visits = frame(
        [
            ("9", "who", "FU2", 1),
            ("A", "recist1.1", "FU1", 2),
            ("9", "recist1.1", "FU2", 3),
            ("10", "who", "FU1", 4),
            ("9", "recist1.1", "FU1", 5),  # after FU2 in the engine's order: stays after it
            ("10", "recist1.1", "FU1", 6),
            ("9", "who", "FU1", 7),
        ],
        ["subject_id", "criteria", "timepoint", "day"],
    )
    with object_strings():
        out = _sorted(visits, ["subject_id", "criteria"], ["recist1.1", "who"])
    assert out["day"].tolist() == [6, 4, 3, 5, 1, 7, 2]
    assert out.index.tolist() == list(range(7))


def test_criteria_not_in_the_run_order_and_no_criteria_come_last() -> None:
    warnings = frame(
        [("S1", None, "w1"), ("S1", "who", "w2"), ("S1", "other", "w3"), ("S1", "recist1.1", "w4")],
        ["subject_id", "criteria", "code"],
    )
    with object_strings():
        out = _sorted(warnings, ["subject_id", "criteria", "code"], ["recist1.1", "who"])
    assert out["code"].tolist() == ["w4", "w2", "w1", "w3"]  # None and "other" tie: by code


def test_other_keys_sort_with_missing_values_last() -> None:
    lesions = frame(
        [("S1", "recist1.1", "FU1", "L2"), ("S1", "recist1.1", None, "L1"), ("S1", "recist1.1", "FU1", "L1")],
        ["subject_id", "criteria", "timepoint", "lesion_id"],
    )
    with object_strings():
        out = _sorted(lesions, ["subject_id", "criteria", "timepoint", "lesion_id"], ["recist1.1"])
    assert out["timepoint"].fillna("none").tolist() == ["FU1", "FU1", "none"]
    assert out["lesion_id"].tolist() == ["L1", "L2", "L1"]


def test_rows_already_in_order_keep_their_order_and_a_fresh_index() -> None:
    visits = frame(
        [("S1", "recist1.1", "FU1", 1), ("S2", "recist1.1", "FU1", 2)], ["subject_id", "criteria", "timepoint", "day"]
    )
    visits.index = [7, 3]
    with object_strings():
        out = _sorted(visits, ["subject_id", "criteria"], ["recist1.1"])
    assert out["day"].tolist() == [1, 2] and out.index.tolist() == [0, 1]


def test_combining_leaves_the_rule_sets_tables_as_they_were(tmp_path: Path) -> None:
    """The outputs share no writable state with the rule sets' tables (they are only shallow copies)."""
    path = tmp_path / "cohort.csv"
    generate_cohort(subjects=12, seed=3).to_csv(path, index=False)
    result = score_read(read_long(path), ["recist1.1", "who"])
    before = {rule_id: r.timepoints.copy() for rule_id, r in result.results.items()}
    problems = pd.DataFrame(columns=["subject_id", "code", "timepoint", "lesion_id", "message", "severity"])
    with object_strings():
        visits, best, *_ = combine_results(result.results, problems)
    visits.loc[:, "overall"] = "changed"
    visits.iloc[0, visits.columns.get_loc("sum_mm")] = np.nan
    for rule_id, r in result.results.items():
        pd.testing.assert_frame_equal(r.timepoints, before[rule_id])
    assert set(visits["criteria"]) == {"recist1.1", "who"}

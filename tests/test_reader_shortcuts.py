"""Shortcuts of the reader give exactly what the general path gives: group numbers by runs (tables that keep a
group's rows together) as by hashing, whatever the order of the rows; ids trimmed without pandas' per-element
machinery as with it, whatever the values."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from crlm_response.sources import stripped_text
from crlm_response.tables import object_strings
from crlm_response.trial import _group_ids, _in_order_of_appearance, _several_files


@given(st.lists(st.integers(min_value=0, max_value=12), max_size=60), st.booleans())
def test_same_numbers_as_hashing(keys: list[int], grouped: bool) -> None:
    gid = np.array(sorted(keys, key=keys.index) if grouped else keys, dtype=np.int64)  # grouped: runs of equal keys
    assert _in_order_of_appearance(gid).tolist() == pd.factorize(gid)[0].tolist()


def test_large_key_values_fall_back_to_hashing() -> None:
    gid = np.array([10**12, 10**12, 5, 5, 7], dtype=np.int64)
    assert _in_order_of_appearance(gid).tolist() == [0, 0, 1, 1, 2]


def test_subject_and_visit_groups_from_categorical_keys() -> None:
    subject = pd.Categorical(["S2", "S2", "S1", None, "S1", "S2"])
    visit = pd.Categorical(["BL", "FU", "BL", "BL", "BL", "BL"])
    assert _group_ids(subject).tolist() == [0, 0, 1, 2, 1, 0]
    assert _group_ids(subject, visit).tolist() == [0, 1, 2, 3, 2, 0]


@given(
    st.lists(
        st.one_of(st.text(max_size=6), st.floats(), st.integers(), st.text(max_size=3).map(str.encode)), max_size=12
    )
)
def test_trimmed_text_as_pandas_makes_it(values: list[object]) -> None:
    with object_strings():
        cells = pd.Series(values, dtype=object)
        assert stripped_text(cells) == list(cells.astype(str).str.strip())


def test_trimmed_ids() -> None:
    assert stripped_text(pd.Series([" P1", "P2\t", "\u00a0P3"], dtype=object)) == ["P1", "P2", "P3"]


def test_subjects_in_several_files_named_with_their_files() -> None:
    subjects = pd.Categorical(["P2", "P1", "P2", None, None, "P10", "P10", "P2"])
    files = np.array(["in/b.csv", "in/a.csv", "in/a.csv", "in/a.csv", "in/b.csv", "in/c.csv", "in/a.csv", "in/b.csv"])
    ok = np.array([True, True, True, True, True, True, True, True])
    found = _several_files(subjects, files, ok)
    assert found is not None
    assert found["subject_id"].tolist() == ["P10", "P2"]  # in text order; P1 (one file) and missing ids are not listed
    assert found["message"].tolist() == [
        "rows of this subject come from a.csv, c.csv; check the files are not duplicate exports",
        "rows of this subject come from a.csv, b.csv; check the files are not duplicate exports",
    ]
    ok[5] = False  # P10's row from c.csv rejected: P10 is then in one file
    assert _several_files(subjects, files, ok)["subject_id"].tolist() == ["P2"]  # type: ignore[index]
    assert _several_files(subjects, np.full(8, "in/a.csv"), ok) is None

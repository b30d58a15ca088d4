"""The exact text of CSV outputs, pinned on small tables with awkward cells (expected text written by hand).

Every CSV file the tool writes goes through `writers.write_table` -> `csv_cells` + `write_csv`: text cells are
always quoted (inner quotes doubled, commas and line breaks kept inside the quotes), numbers never; a missing
value (None, NaN, <NA>) is an empty cell; floats are written shortest (2.0 -> 2, -0.0 -> -0, 1e-07 -> 1e-7,
1e16 -> 1e+16); booleans are true/false; a text cell a spreadsheet would run as a formula gets a leading
single quote unless it is a number. A column pyarrow cannot type (numbers mixed with text) sends the whole
table through pandas' writer instead, which quotes only where needed (not a leading single quote) and writes
floats as Python does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crlm_response import writers


def awkward(text: Any = object) -> pd.DataFrame:
    """Text columns of dtype `text`: object, as the scoring outputs hold them, or pandas' own string dtype."""
    frame = pd.DataFrame(
        {
            "subject_id": ["S1", "S2", "S3", "S4", "S5"],
            "text": ['say "hi"', "a,b", "two\nlines", None, ""],
            "formula": ["=SUM(A1)", "-3", "+x", "@a", "\tx"],
            "x": [1.5, np.nan, -0.0, 1e-7, 1e16],
            "big": [123456789.0, 2.0, 0.1 + 0.2, -1e21, 12.25],
            "flag": [True, False, True, False, True],
            "maybe": pd.Series([True, None, False, True, None], dtype=object),
            "day": pd.array([5, None, -2, 0, 100000], dtype="Int64"),
            "n": [1, 2, 3, 4, 5],
            "nothing": [None, None, None, None, None],
            "nan_text": pd.Series(["a", np.nan, "b", None, "c"], dtype=object),
        }
    )
    return frame.astype({"subject_id": text, "text": text, "formula": text})


EXPECTED = (
    '"subject_id","text","formula","x","big","flag","maybe","day","n","nothing","nan_text"\n'
    '"S1","say ""hi""","\'=SUM(A1)",1.5,123456789,"true","true",5,1,,"a"\n'
    '"S2","a,b","-3",,2,"false",,,2,,\n'
    '"S3","two\nlines","\'+x",-0,0.30000000000000004,"true","false",-2,3,,"b"\n'
    '"S4",,"\'@a",1e-7,-1e+21,"false","true",0,4,,\n'
    '"S5","","\'\tx",1e+16,12.25,"true",,100000,5,,"c"\n'
)


def written(frame: pd.DataFrame, tmp_path: Path, safe_csv: bool = True) -> str:
    path = tmp_path / "t.csv"
    writers.write_table(frame, path, safe_csv=safe_csv)
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("text", [object, "str"])
def test_awkward_cells_are_written_exactly_so(text: Any, tmp_path: Path) -> None:
    assert written(awkward(text), tmp_path) == EXPECTED


def test_without_safe_csv_formula_like_text_is_left_as_it_is(tmp_path: Path) -> None:
    plain = EXPECTED
    for cell in ("=SUM(A1)", "+x", "@a", "\tx"):
        plain = plain.replace(f'"\'{cell}"', f'"{cell}"')
    assert "'" not in plain
    assert written(awkward(), tmp_path, safe_csv=False) == plain


def test_the_input_table_is_not_changed(tmp_path: Path) -> None:
    frame = awkward()
    before = frame.copy()
    written(frame, tmp_path)
    pd.testing.assert_frame_equal(frame, before)


def test_a_table_of_only_plain_text_and_numbers(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"criteria": ["recist1.1", "recist1.1"], "overall": ["PR", "NON-CR/NON-PD"], "v": [2.5, 3]}, dtype=object
    ).astype({"v": float})
    assert written(frame, tmp_path) == '"criteria","overall","v"\n"recist1.1","PR",2.5\n"recist1.1","NON-CR/NON-PD",3\n'


def test_an_empty_table_is_its_header(tmp_path: Path) -> None:
    frame = pd.DataFrame(columns=["file", "line", "reason"])
    assert written(frame, tmp_path) == '"file","line","reason"\n'


def test_a_column_of_numbers_mixed_with_text_goes_through_pandas(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "mixed": pd.Series([1, "=a", "b,c", None], dtype=object),
            "x": [1.5, -0.0, 1e-7, np.nan],
            "flag": [True, False, True, False],
            "t": ["p", 'q"r', None, "-1"],
        }
    )
    assert written(frame, tmp_path) == (
        'mixed,x,flag,t\n1,1.5,true,p\n\'=a,-0.0,false,"q""r"\n"b,c",1e-07,true,\n,,false,-1\n'
    )


@pytest.mark.parametrize("safe_csv", [True, False])
def test_csv_text_for_standard_output_quotes_only_where_needed(safe_csv: bool) -> None:
    frame = pd.DataFrame({"a": ["=x", 'q"r', None], "b": [True, False, None], "c": [1.0, np.nan, 2.5]}, dtype=object)
    frame["c"] = frame["c"].astype(float)
    formula = "'=x" if safe_csv else "=x"
    assert writers.csv_text(frame, safe_csv=safe_csv) == f'a,b,c\n{formula},true,1.0\n"q""r",false,\n,,2.5\n'


def test_the_part_by_part_writer_gives_the_same_text(tmp_path: Path) -> None:
    """--chunk-rows and Dask write each part with `csv_cells` + `write_csv` directly."""
    path = tmp_path / "part.csv"
    writers.write_csv(writers.csv_cells(awkward(), True), path)
    assert path.read_text(encoding="utf-8") == EXPECTED


def test_the_scoring_outputs_take_the_arrow_path() -> None:
    """Object text and boolean columns (what the scoring outputs hold) become Arrow text handed to the writer
    as is: the fast path must not quietly fall back to the general one."""
    cells = writers.csv_cells(awkward(), True)
    text = ["subject_id", "text", "formula", "flag", "maybe", "nothing", "nan_text"]
    assert [str(cells[c].dtype) for c in text] == ["string[pyarrow]"] * len(text)
    assert cells["x"].dtype == np.float64 and cells["day"].dtype == "Int64"


AWKWARD_CELLS = [
    "a", "", 'q"r', "x,y", "l\nm", "=1+1", "-3", "+x", "@", "\tt", "\rr", "-", " -2", "nan", "é", "'x", "-inf",
    None, np.nan, pd.NA, pd.NaT, True, False, np.True_, 1, 0, 1.5, -0.0, b"by", ["l"], {"d": 1},
]  # fmt: skip


COLUMNS = st.one_of(
    st.tuples(st.lists(st.sampled_from(AWKWARD_CELLS), min_size=1, max_size=6), st.just(object)),
    st.tuples(st.lists(st.booleans(), min_size=1, max_size=6), st.just(bool)),
    st.tuples(st.lists(st.sampled_from([1.5, -0.0, np.nan, 1e-7, 1e16, 2.0]), min_size=1, max_size=6), st.just(float)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns=st.lists(COLUMNS, min_size=1, max_size=4), rows=st.integers(0, 6), safe_csv=st.booleans())
def test_the_arrow_path_writes_what_the_general_path_writes(
    columns: list[tuple[list[Any], Any]], rows: int, safe_csv: bool
) -> None:
    """Whatever the cells, the fast path (or its fallback) writes the bytes the general path writes."""
    frame = pd.DataFrame(
        {f"c{i}": pd.Series((values * rows)[:rows], dtype=dtype) for i, (values, dtype) in enumerate(columns)}
    )
    outcomes = []
    with tempfile.TemporaryDirectory() as folder:
        for cells in (writers.csv_cells, writers._general_cells):
            path = Path(folder) / f"{cells.__name__}.csv"
            try:
                writers.write_csv(cells(frame, safe_csv), path)
                outcomes.append(path.read_bytes())
            except (TypeError, ValueError) as exc:  # e.g. bytes next to text, which no writer takes
                outcomes.append(type(exc).__name__.encode())
    assert outcomes[0] == outcomes[1]

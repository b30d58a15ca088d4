"""How object columns are stored in Parquet outputs (`writers._to_parquet`), cell by cell.

Text stays text and None / NaN are missing; a list is joined with "; "; a column of Python booleans (and missing
cells) becomes a nullable boolean column; anything else is written as str() writes it (numpy booleans alone,
pandas' <NA>). Text and boolean columns take a path without a Python step per cell: the property test checks
that it stores exactly what the cell-by-cell rule below stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crlm_response import writers


def stored(tmp_path: Path, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    path = tmp_path / "t.parquet"
    writers.write_table(pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()}), path)
    return pq.read_table(path).to_pydict()


def test_text_with_missing_cells(tmp_path: Path) -> None:
    got = stored(tmp_path, {"t": ["PR", None, np.nan, "", 'a "b"'], "all": ["CR", "SD", "PD", "NE", "PR"]})
    assert got == {"t": ["PR", None, None, "", 'a "b"'], "all": ["CR", "SD", "PD", "NE", "PR"]}


def test_pandas_missing_marker_in_text_is_written_as_text(tmp_path: Path) -> None:
    assert stored(tmp_path, {"t": ["PR", pd.NA]}) == {"t": ["PR", "<NA>"]}


def test_booleans_with_missing_cells_are_nullable_booleans(tmp_path: Path) -> None:
    path = tmp_path / "b.parquet"
    writers.write_table(pd.DataFrame({"b": pd.Series([True, None, False, np.nan, np.True_], dtype=object)}), path)
    table = pq.read_table(path)
    assert str(table.schema.field("b").type) == "bool"
    assert table.to_pydict() == {"b": [True, None, False, None, True]}


def test_numpy_booleans_alone_are_written_as_text(tmp_path: Path) -> None:
    assert stored(tmp_path, {"b": [np.True_, np.False_, None]}) == {"b": ["True", "False", None]}


def test_lists_are_joined_and_other_objects_written_as_text(tmp_path: Path) -> None:
    got = stored(tmp_path, {"l": [["oxaliplatin", "5-FU"], None, "x"], "m": [1, "a", None]})
    assert got == {"l": ["oxaliplatin; 5-FU", None, "x"], "m": ["1", "a", None]}


def cell_by_cell(values: np.ndarray) -> Any:
    """The rule, one cell at a time (how the column was converted before the per-column path)."""

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and np.isnan(v))

    if any(isinstance(v, list | dict) for v in values):
        return ["; ".join(map(str, v)) if isinstance(v, list) else (str(v) if v is not None else None) for v in values]
    if any(isinstance(v, bool) for v in values) and not any(isinstance(v, str) for v in values):
        return pd.array([None if missing(v) else bool(v) for v in values], dtype="boolean")
    return [None if missing(v) else str(v) for v in values]


CELLS = ["PR", "", "=x", "é", None, np.nan, np.float32("nan"), pd.NA, True, False, np.True_, 1, 2.5, ["a", 1]]


def as_column(convert: Any, values: np.ndarray) -> pd.DataFrame | str:
    frame = pd.DataFrame({"c": np.arange(len(values))})
    try:
        frame["v"] = convert(values)
    except TypeError as exc:  # bool(pd.NA) in a column of booleans
        return f"TypeError: {exc}"
    return frame


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=st.lists(st.sampled_from(CELLS), max_size=8), keep=st.sampled_from(["all", "text", "booleans"]))
def test_the_per_column_path_stores_what_the_cell_by_cell_rule_stores(cells: list[Any], keep: str) -> None:
    if keep == "text":  # the usual columns: only text, or only booleans, with some missing cells
        cells = [v for v in cells if isinstance(v, str) or v is None]
    elif keep == "booleans":
        cells = [v for v in cells if isinstance(v, bool) or v is None]
    values = np.array(cells + [None], dtype=object)[:-1]  # a 1-d object array even when a cell is a list
    fast, slow = as_column(writers._parquet_cells, values), as_column(cell_by_cell, values)
    if isinstance(fast, str) or isinstance(slow, str):
        assert fast == slow
    else:
        pd.testing.assert_frame_equal(fast, slow, check_exact=True)

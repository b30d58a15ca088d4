"""Arrow tables of dictionary-encoded text become the same pandas frame as `to_pandas()` makes (values, category
order, dtypes of categories and codes), built from Arrow's codes without its copies."""

from __future__ import annotations

import contextlib

import pandas as pd
import pyarrow as pa
import pytest

from crlm_response.formats import categorical_frame
from crlm_response.tables import object_strings


def dictionary_table(*chunks: dict[str, list[str | None]]) -> pa.Table:
    """A table whose columns come in several chunks, each chunk with a dictionary of its own."""
    batches = [
        pa.record_batch({name: pa.array(values, pa.string()).dictionary_encode() for name, values in chunk.items()})
        for chunk in chunks
    ]
    return pa.Table.from_batches(batches)


TABLES = {
    "one chunk": dictionary_table({"a": ["x", "y", None, "x"], "b": ["1", "1", "2", None]}),
    "chunks with their own words": dictionary_table(
        {"a": ["b", "a"], "b": [None, None]}, {"a": ["c", "a", "é"], "b": ["7", None, "7"]}
    ),
    "a column with no value": dictionary_table({"a": [None, None], "b": ["", " "]}),
    "many distinct values": dictionary_table({"a": [f"S{i:05d}" for i in range(40_000)]}),
}


@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("plain_objects", [True, False])
def test_same_frame_as_to_pandas(name: str, plain_objects: bool) -> None:
    table = TABLES[name]
    with object_strings() if plain_objects else contextlib.nullcontext():
        expected, built = table.to_pandas(), categorical_frame(table)
    pd.testing.assert_frame_equal(built, expected)
    for column in expected:
        assert list(built[column].cat.categories) == list(expected[column].cat.categories)
        assert built[column].cat.categories.dtype == expected[column].cat.categories.dtype
        assert built[column].cat.codes.dtype == expected[column].cat.codes.dtype


def test_an_empty_table() -> None:
    table = pa.table({"a": pa.array([], pa.dictionary(pa.int32(), pa.string()))})
    pd.testing.assert_frame_equal(categorical_frame(table), table.to_pandas())

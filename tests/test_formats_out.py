"""Writing by extension (issue 14): `.xpt` is SAS transport version 5, `.json`/`.ndjson` CDISC Dataset-JSON 1.1
(validated against the official schemas in tests/fixtures/dataset_json), `.csv` and `.parquet` as before.

Each format is read back with an independent reader (pyreadstat for XPT, the json module for Dataset-JSON) and
compared with the table written, value by value; V5 limits are refused naming the column and the limit.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pyreadstat
import pytest
from conftest import FIXTURES, ROOT, run_cli

from crlm_response.cdisc_writers import VARIABLE_LABELS, data_type
from crlm_response.writers import OutputError, write_table

SCHEMAS = FIXTURES / "dataset_json"
SDTM = FIXTURES / "sdtm"
TRIAL = ROOT / "sample_cases" / "trial_lesions.csv"


def json_schema() -> dict[str, Any]:
    return json.loads((SCHEMAS / "dataset.schema.json").read_text(encoding="utf-8"))


def ndjson_schema() -> dict[str, Any]:  # published as UTF-16
    return json.loads((SCHEMAS / "dataset-ndjson-schema.json").read_bytes().decode("utf-16"))


def read_dataset_json(path: Path) -> dict[str, Any]:
    """A Dataset-JSON file (.json or .ndjson) as one object, validated against the official JSON schema.

    The published NDJSON schema cannot be used as it is: its root refers to `#/$defs/Column`, which it does not
    define (see test_the_published_ndjson_schema_is_broken). NDJSON holds the same content as JSON, so the
    metadata line with the rows is validated as a Dataset-JSON object."""
    if path.suffix == ".ndjson":
        lines = path.read_text(encoding="utf-8").splitlines()
        meta = json.loads(lines[0])
        assert "rows" not in meta
        rows = [json.loads(line) for line in lines[1:]]
        assert all(isinstance(row, list) for row in rows)
        data = {**meta, "rows": rows}
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(data, json_schema())
    assert data["records"] == len(data["rows"])
    assert all(len(row) == len(data["columns"]) for row in data["rows"])
    return data


def test_the_published_ndjson_schema_is_broken() -> None:
    """If CDISC fixes it, validate NDJSON metadata with it (and drop this test)."""
    schema = ndjson_schema()
    assert "Column" not in schema["$defs"] and schema["properties"]["columns"]["items"] == {"$ref": "#/$defs/Column"}


def as_frame(data: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(data["rows"], columns=[c["name"] for c in data["columns"]])


# A table with every kind of cell the outputs hold: text (with an empty string), whole numbers with a gap,
# decimals with a gap, a zero (SAS stores IBM floats: 0 must stay exactly 0), a complete date column.
FRAME = pd.DataFrame(
    {
        "USUBJID": ["S-001", "S-001", "S-002"],
        "RSSEQ": pd.array([1, 2, None], dtype="Int64"),
        "RSSTRESC": ["PR", "", "NON-CR/NON-PD"],
        "AVAL": [0.0, 12.5, float("nan")],
        "VISITNUM": [10.0, 20.0, 20.5],
        "RSDTC": ["2025-01-06", "2025-03-03", "2025-03-05"],
    }
)


def test_xpt_reads_back_equal_with_pyreadstat(tmp_path: Path) -> None:
    path = tmp_path / "rs.xpt"
    write_table(FRAME, path, name="RS")
    back, meta = pyreadstat.read_xport(str(path))
    assert list(back.columns) == list(FRAME.columns)
    assert back["USUBJID"].tolist() == ["S-001", "S-001", "S-002"]
    assert back["RSSTRESC"].tolist() == ["PR", "", "NON-CR/NON-PD"]
    assert back["RSDTC"].tolist() == ["2025-01-06", "2025-03-03", "2025-03-05"]
    assert back["RSSEQ"].tolist()[:2] == [1.0, 2.0] and math.isnan(back["RSSEQ"].iloc[2])
    assert back["AVAL"].iloc[0] == 0.0 and back["AVAL"].iloc[1] == 12.5 and math.isnan(back["AVAL"].iloc[2])
    assert back["VISITNUM"].tolist() == [10.0, 20.0, 20.5]
    assert meta.table_name == "RS"
    assert meta.file_label == "Disease Response and Clin Classification"
    assert meta.column_names_to_labels["USUBJID"] == "Unique Subject Identifier"
    assert meta.column_names_to_labels["RSSTRESC"] == "Character Result/Finding in Std Format"
    assert path.read_bytes().startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!")  # V5, not V8 (LIBV8)


@pytest.mark.parametrize("suffix", [".json", ".ndjson"])
def test_dataset_json_validates_and_reads_back_equal(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"rs{suffix}"
    write_table(FRAME, path, name="RS")
    data = read_dataset_json(path)
    assert data["datasetJSONVersion"] == "1.1.0"
    assert data["name"] == "RS" and data["itemGroupOID"] == "IG.RS" and data["records"] == 3
    assert data["label"] == "Disease Response and Clin Classification"
    columns = {c["name"]: c for c in data["columns"]}
    assert columns["USUBJID"] == {
        "itemOID": "IT.RS.USUBJID",
        "name": "USUBJID",
        "label": "Unique Subject Identifier",
        "dataType": "string",
        "length": 5,
    }
    assert {name: c["dataType"] for name, c in columns.items()} == {
        "USUBJID": "string",
        "RSSEQ": "integer",
        "RSSTRESC": "string",
        "AVAL": "double",
        "VISITNUM": "double",
        "RSDTC": "date",
    }
    assert data["rows"] == [
        ["S-001", 1, "PR", 0.0, 10.0, "2025-01-06"],
        ["S-001", 2, "", 12.5, 20.0, "2025-03-03"],
        ["S-002", None, "NON-CR/NON-PD", None, 20.5, "2025-03-05"],
    ]


def test_data_types_follow_the_values() -> None:
    assert data_type("RSDTC", pd.Series(["2014-02", "2014-03-01"])) == "string"  # a partial date is text
    assert data_type("RSDTC", pd.Series(["2014-02-03T10:00", None])) == "datetime"
    assert data_type("flag", pd.Series([True, False])) == "boolean"
    assert data_type("flag", pd.Series([True, None], dtype=object)) == "boolean"
    assert data_type("n", pd.Series([1, None], dtype=object)) == "integer"
    assert data_type("x", pd.Series([1, 2.5], dtype=object)) == "double"
    assert data_type("x", pd.Series([1, "a"], dtype=object)) == "string"
    assert data_type("VISIT", pd.Series(["2014-02-03"])) == "string"  # only --DTC columns are dates


def test_every_label_fits_sas_v5() -> None:
    too_long = {name: label for name, label in VARIABLE_LABELS.items() if len(label.encode("ascii")) > 40}
    assert too_long == {}
    assert all(len(name) <= 8 for name in VARIABLE_LABELS)


@pytest.mark.parametrize(
    "frame, message",
    [
        (
            pd.DataFrame({"subject_id": ["A"], "best_overall_response": ["PR"], "USUBJID": ["A"]}),
            "x.xpt: column subject_id: SAS V5 transport allows names of at most 8 characters; this one has 10 "
            "(1 more column name(s) too: best_overall_response; write .json, .parquet or .csv instead, which have "
            "no such limit)",
        ),
        (
            pd.DataFrame({"USUBJID": ["A"], "VISIT": ["x" * 201]}),
            "x.xpt: column VISIT: row 1: text of 201 bytes; SAS V5 transport holds at most 200 (write .json, "
            ".parquet or .csv instead, which have no such limit)",
        ),
        (
            pd.DataFrame({"USUBJID": ["A", "B"], "VISIT": ["WEEK 8", "SEMAINE 8 (é)"]}),
            "x.xpt: column VISIT: row 2: text 'SEMAINE 8 (é)' has 'é'; SAS V5 transport holds ASCII text only "
            "(write .json, .parquet or .csv instead, which have no such limit)",
        ),
        (
            pd.DataFrame({"1ABC": ["A"]}),
            "x.xpt: column 1ABC: a SAS name has only letters, digits and _ (ASCII) and does not start with a digit "
            "(write .json, .parquet or .csv instead, which have no such limit)",
        ),
        (
            pd.DataFrame({"AVAL": [1.0, float("inf")]}),
            "x.xpt: column AVAL: row 2 holds inf, a number Dataset-JSON and SAS transport cannot hold",
        ),
    ],
    ids=["long name", "long text", "not ascii", "bad name", "infinite"],
)
def test_xpt_refuses_what_v5_cannot_hold_naming_the_column(frame: pd.DataFrame, message: str, tmp_path: Path) -> None:
    path = tmp_path / "x.xpt"
    with pytest.raises(OutputError) as caught:
        write_table(frame, path)
    assert str(caught.value) == str(tmp_path) + "/" + message
    assert list(tmp_path.iterdir()) == [], "a refused table left a file"


def test_a_dataset_name_longer_than_eight_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"dataset name RESPONSES: SAS V5 transport allows names of at most 8"):
        write_table(pd.DataFrame({"USUBJID": ["A"]}), tmp_path / "responses.xpt")


def sdtm_run(tmp_path: Path, fmt: str, rs: str) -> Path:
    out = tmp_path / fmt
    result = run_cli(
        "batch",
        "--sdtm-tu",
        SDTM / "crlm_tu.csv",
        "--sdtm-tr",
        SDTM / "crlm_tr.csv",
        "-o",
        out / "r.csv",
        "--out-rs",
        out / rs,
        "--adam-dir",
        out / "adam",
        "--adam-format",
        fmt,
    )
    assert result.exit_code == 0, result.stderr
    return out


def csv_frame(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def same_cells(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Cell by cell, as text: numbers compared as numbers (SAS holds every number as a double)."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for column in want.columns:
        for i, (g, w) in enumerate(zip(got[column].tolist(), want[column].tolist(), strict=True)):
            g_missing = g is None or g == "" or (isinstance(g, float) and math.isnan(g))
            if w == "":
                assert g_missing, (column, i, g)
            elif isinstance(g, bool):
                assert str(g).lower() == w, (column, i, g, w)
            elif isinstance(g, int | float):
                assert float(g) == float(w), (column, i, g, w)
            elif isinstance(g, datetime.date):  # ADaM ADT is a SAS date in transport files (issue 15)
                assert g.isoformat() == w, (column, i, g, w)
            else:
                assert g == w, (column, i, g, w)


def test_rs_and_adam_as_xpt_equal_the_csv_route(tmp_path: Path) -> None:
    csv_out = sdtm_run(tmp_path, "csv", "rs.csv")
    xpt_out = sdtm_run(tmp_path, "xpt", "rs.xpt")
    for csv_path, xpt_path, name in (
        (csv_out / "rs.csv", xpt_out / "rs.xpt", "RS"),
        (csv_out / "adam" / "adrs.csv", xpt_out / "adam" / "adrs.xpt", "ADRS"),
        (csv_out / "adam" / "adtr.csv", xpt_out / "adam" / "adtr.xpt", "ADTR"),
    ):
        back, meta = pyreadstat.read_xport(str(xpt_path))
        assert meta.table_name == name
        same_cells(back, csv_frame(csv_path))


def test_rs_and_adam_as_dataset_json_validate_and_equal_the_csv_route(tmp_path: Path) -> None:
    csv_out = sdtm_run(tmp_path, "csv", "rs.csv")
    json_out = sdtm_run(tmp_path, "json", "rs.ndjson")
    for csv_path, json_path, name in (
        (csv_out / "rs.csv", json_out / "rs.ndjson", "RS"),
        (csv_out / "adam" / "adrs.csv", json_out / "adam" / "adrs.json", "ADRS"),
        (csv_out / "adam" / "adtr.csv", json_out / "adam" / "adtr.json", "ADTR"),
    ):
        data = read_dataset_json(json_path)
        assert data["name"] == name
        same_cells(as_frame(data), csv_frame(csv_path))
    rs = read_dataset_json(json_out / "rs.ndjson")
    types = {c["name"]: c["dataType"] for c in rs["columns"]}
    assert types["RSSEQ"] == "integer" and types["RSDY"] == "integer" and types["USUBJID"] == "string"


def test_batch_outputs_cannot_be_v5_and_say_why(tmp_path: Path) -> None:
    result = run_cli("batch", TRIAL, "-o", tmp_path / "r.xpt", "--criteria", "recist1.1")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: {tmp_path / 'r.xpt'}: column subject_id: SAS V5 transport allows names of at most 8 characters; "
        "this one has 10"
    ), result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine", ["pandas", "chunked"])
def test_batch_outputs_as_dataset_json_equal_the_csv_outputs(engine: str, tmp_path: Path) -> None:
    extra = ["--chunk-rows", "1000"] if engine == "chunked" else []
    for suffix in (".csv", ".json"):
        result = run_cli("batch", TRIAL, "-o", tmp_path / f"r{suffix}", "--criteria", "recist1.1", *extra)
        assert result.exit_code == 0, result.stderr
    for kind in ("", ".best", ".errors"):
        data = read_dataset_json(tmp_path / f"r{kind}.json")
        same_cells(as_frame(data), csv_frame(tmp_path / f"r{kind}.csv"))


def test_bor_writes_dataset_json(tmp_path: Path) -> None:
    visits = tmp_path / "v.csv"
    visits.write_text("subject_id,day,response\nA,56,PR\nA,84,PR\nB,42,SD\n", encoding="utf-8")
    result = run_cli("bor", visits, "-o", tmp_path / "bor.ndjson")
    assert result.exit_code == 0, result.stderr
    data = read_dataset_json(tmp_path / "bor.ndjson")
    assert [c["name"] for c in data["columns"]][:2] == ["subject_id", "best_overall_response"]
    assert [row[:2] for row in data["rows"]] == [["A", "PR"], ["B", "SD"]]
    errors = read_dataset_json(tmp_path / "bor.errors.ndjson")
    assert errors["records"] == 0

"""Tables as SAS V5 transport (.xpt) and CDISC Dataset-JSON 1.1 (.json, .ndjson), the formats trial data is
delivered in. `writers.write_table` picks one by the file's extension.

SAS V5 transport has hard limits (names of at most 8 characters, labels of at most 40, text values of at most
200 bytes, ASCII only). They are checked before anything is written, and a table that breaks one is refused
with the column and the limit: a silently renamed or cut column would be a different dataset. Dataset-JSON
needs each column's metadata (OID, name, label, data type, length); the data type comes from the column's
values and the label from `VARIABLE_LABELS`, the one table of the variable labels the tool knows.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .errors import OutputError

DATASET_JSON_VERSION = "1.1.0"

# SDTMIG labels of the RS variables the tool writes (as in CDISC's own RS example), and the ADaM labels of
# ADRS and ADTR; a column not listed is labelled with its name.
VARIABLE_LABELS = {
    "STUDYID": "Study Identifier",
    "DOMAIN": "Domain Abbreviation",
    "USUBJID": "Unique Subject Identifier",
    "RSSEQ": "Sequence Number",
    "RSLNKGRP": "Link Group ID",
    "RSTESTCD": "Assessment Short Name",
    "RSTEST": "Assessment Name",
    "RSCAT": "Category for Assessment",
    "RSORRES": "Result or Finding in Original Units",
    "RSSTRESC": "Character Result/Finding in Std Format",
    "RSSTAT": "Completion Status",
    "RSREASND": "Reason Not Done",
    "RSEVAL": "Evaluator",
    "RSEVALID": "Evaluator Identifier",
    "RSACPTFL": "Accepted Record Flag",
    "VISITNUM": "Visit Number",
    "VISIT": "Visit Name",
    "RSDTC": "Date/Time of Assessment",
    "RSDY": "Study Day of Assessment",
    "EVAL": "Evaluator",
    "EVALID": "Evaluator Identifier",
    "PARAMCD": "Parameter Code",
    "PARAM": "Parameter",
    "AVALC": "Analysis Value (C)",
    "AVAL": "Analysis Value",
    "AVISIT": "Analysis Visit",
    "AVISITN": "Analysis Visit (N)",
    "ADT": "Analysis Date",
    "ADTC": "Analysis Date (ISO 8601)",
    "ADTF": "Analysis Date Imputation Flag",
    "ADY": "Analysis Relative Day",
    "ABLFL": "Baseline Record Flag",
    "BASE": "Baseline Value",
    "CHG": "Change from Baseline",
    "PCHG": "Percent Change from Baseline",
    "NADIR": "Nadir Value",
    "CHGNAD": "Change from Nadir",
    "PCHGNAD": "Percent Change from Nadir",
    "PARCAT1": "Parameter Category 1",
    "PARCAT2": "Parameter Category 2",
    "PARCAT3": "Parameter Category 3",
    "ANL01FL": "Analysis Flag 01",
    "ANL02FL": "Analysis Flag 02",
    "ANL03FL": "Analysis Flag 03",
    "ANL04FL": "Analysis Flag 04",
    "ASEQ": "Analysis Sequence Number",
    "BLDAYS": "Days Since Baseline Scan",
    "PDFL": "Progressive Disease Flag",
    "TREVAL": "Evaluator",
    "TREVALID": "Evaluator Identifier",
    "TRLNKID": "Link ID",
}
DATASET_LABELS = {
    "RS": "Disease Response and Clin Classification",
    "ADRS": "Response Analysis Dataset",
    "ADTR": "Tumor Results Analysis Dataset",
}

V5_NAME_CHARS = 8
V5_LABEL_BYTES = 40
V5_TEXT_BYTES = 200
SAS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OTHER_FORMATS = "write .json, .parquet or .csv instead, which have no such limit"

_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FULL_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?")


def label_of(column: str) -> str:
    return VARIABLE_LABELS.get(column, column)


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


# --------------------------------------------------------------------------------------------------
# Column types: one reading of a column's values, shared by both formats
# --------------------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def data_type(column: str, values: pd.Series) -> str:
    """The Dataset-JSON dataType of a column: from its dtype, or for text/object columns from its values
    (a --DTC column of complete ISO 8601 dates is `date`; a partial date such as 2014-02 keeps it `string`)."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    present = [v for v in values.to_numpy(dtype=object) if not _missing(v)]
    if present and all(_is_date(v) for v in present):
        return "date"
    if present and all(isinstance(v, bool | np.bool_) for v in present):
        return "boolean"
    if present and all(isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in present):
        return "integer"
    if present and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_) for v in present
    ):
        return "double"
    if present and column.upper().endswith("DTC") and all(isinstance(v, str) for v in present):
        if all(_FULL_DATE.fullmatch(v) for v in present):
            return "date"
        if all(_FULL_DATETIME.fullmatch(v) for v in present):
            return "datetime"
    return "string"


def _is_date(value: Any) -> bool:
    """A calendar date (ADaM ADT), not a date and time."""
    return isinstance(value, datetime.date) and not isinstance(value, datetime.datetime)


def _as_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(map(str, value))
    if isinstance(value, pd.Timestamp | datetime.datetime | datetime.date):
        return value.isoformat()
    return str(value)


def _finite(column: str) -> Callable[[Any, int], float]:
    def convert(value: Any, row: int) -> float:
        number = float(value)
        if not math.isfinite(number):
            raise OutputError(
                f"row {row} holds {number}, a number Dataset-JSON and SAS transport cannot hold", key=f"column {column}"
            )
        return number

    return convert


def _converter(column: str, kind: str) -> Callable[[Any, int], Any]:
    if kind == "integer":
        return lambda v, _row: int(v)
    if kind == "double":
        return _finite(column)
    if kind == "boolean":
        return lambda v, _row: bool(v)
    return lambda v, _row: _as_text(v)


def column_values(column: str, values: pd.Series, kind: str) -> list[Any]:
    """The cells as JSON-ready Python values (missing: None)."""
    convert = _converter(column, kind)
    return [None if _missing(v) else convert(v, i + 1) for i, v in enumerate(values.to_numpy(dtype=object))]


# --------------------------------------------------------------------------------------------------
# Dataset-JSON 1.1
# --------------------------------------------------------------------------------------------------


def _created() -> str:
    """Now, with the UTC offset; SOURCE_DATE_EPOCH (reproducible builds) fixes it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        moment = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def dataset_metadata(frame: pd.DataFrame, name: str, kinds: dict[str, str]) -> dict[str, Any]:
    """The Dataset-JSON top-level attributes and column definitions (everything but the rows)."""
    columns = []
    for column in frame.columns:
        text = str(column)
        entry: dict[str, Any] = {
            "itemOID": f"IT.{name}.{text}",
            "name": text,
            "label": label_of(text),
            "dataType": kinds[text],
        }
        if kinds[text] in ("string", "date", "datetime"):
            lengths = [len(_as_text(v)) for v in frame[column].to_numpy(dtype=object) if not _missing(v)]
            entry["length"] = max([1, *lengths])
        columns.append(entry)
    return {
        "datasetJSONCreationDateTime": _created(),
        "datasetJSONVersion": DATASET_JSON_VERSION,
        "sourceSystem": {"name": "crlm-response", "version": __version__},
        "itemGroupOID": f"IG.{name}",
        "records": len(frame),
        "name": name,
        "label": dataset_label(name),
        "columns": columns,
    }


def _rows(frame: pd.DataFrame, kinds: dict[str, str]) -> Iterator[list[Any]]:
    cells = [column_values(str(c), frame[c], kinds[str(c)]) for c in frame.columns]
    for row in zip(*cells, strict=True):
        yield list(row)


def write_dataset_json(frame: pd.DataFrame, path: Path, name: str, *, ndjson: bool = False) -> None:
    """Dataset-JSON 1.1: one JSON object with `rows` (.json), or the metadata on line 1 and one row per line
    (.ndjson). Rows are arrays in column order; missing values are null."""
    frame = _unique_text_columns(frame)
    kinds = {str(c): data_type(str(c), frame[c]) for c in frame.columns}
    meta = dataset_metadata(frame, name, kinds)
    rows = _rows(frame, kinds)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        head = json.dumps(meta, ensure_ascii=False, allow_nan=False)
        if ndjson:
            handle.write(head + "\n")
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
            return
        handle.write(head[:-1] + ', "rows": [')
        for i, row in enumerate(rows):
            handle.write(("," if i else "") + "\n" + json.dumps(row, ensure_ascii=False, allow_nan=False))
        handle.write("\n]}\n")


def _unique_text_columns(frame: pd.DataFrame) -> pd.DataFrame:
    names = [str(c) for c in frame.columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise OutputError(f"column name(s) given twice: {', '.join(twice)}")
    return frame


# --------------------------------------------------------------------------------------------------
# SAS V5 transport
# --------------------------------------------------------------------------------------------------


def _v5_name_problem(name: str) -> str | None:
    if len(name) > V5_NAME_CHARS:
        return f"SAS V5 transport allows names of at most {V5_NAME_CHARS} characters; this one has {len(name)}"
    if not SAS_NAME.fullmatch(name):
        return "a SAS name has only letters, digits and _ (ASCII) and does not start with a digit"
    return None


def _text_problem(value: str, limit: int, what: str) -> str | None:
    try:
        size = len(value.encode("ascii"))
    except UnicodeEncodeError:
        bad = next(ch for ch in value if ord(ch) > 127)
        return f"{what} {value[:40]!r} has {bad!r}; SAS V5 transport holds ASCII text only"
    if size > limit:
        return f"{what} of {size} bytes; SAS V5 transport holds at most {limit}"
    return None


def check_xpt(frame: pd.DataFrame, name: str) -> None:
    """Refuse, naming the column and the limit, a table that SAS V5 transport cannot hold as it is."""
    names = [str(c) for c in frame.columns]
    bad_names = [(n, p) for n in names if (p := _v5_name_problem(n))]
    if bad_names:
        column, problem = bad_names[0]
        more = len(bad_names) - 1
        raise OutputError(
            problem,
            key=f"column {column}",
            hint=(f"{more} more column name(s) too: {', '.join(n for n, _ in bad_names[1:4])}; " if more else "")
            + OTHER_FORMATS,
        )
    name_problem = _v5_name_problem(name)
    if name_problem:
        raise OutputError(f"dataset name {name}: {name_problem}", hint="name the file like rs.xpt or adrs.xpt")
    for text, what in ((dataset_label(name), "dataset label"), *((label_of(n), f"column {n}: label") for n in names)):
        label_problem = _text_problem(text, V5_LABEL_BYTES, what)
        if label_problem:
            raise OutputError(label_problem, hint=OTHER_FORMATS)
    _check_xpt_values(frame)


def _check_xpt_values(frame: pd.DataFrame) -> None:
    for column in frame.columns:
        kind = data_type(str(column), frame[column])
        if kind in ("integer", "double", "boolean"):
            if kind == "double":
                column_values(str(column), frame[column], kind)  # infinite numbers are refused
            continue
        values = frame[column].to_numpy(dtype=object)
        for row, value in enumerate(values, start=1):
            if _missing(value):
                continue
            problem = _text_problem(_as_text(value), V5_TEXT_BYTES, f"row {row}: text")
            if problem:
                raise OutputError(problem, key=f"column {column}", hint=OTHER_FORMATS)


def xpt_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The table with SAS's two types: numbers as doubles (missing: .) and text (missing: blank)."""
    out = {}
    for column in frame.columns:
        kind = data_type(str(column), frame[column])
        values = column_values(str(column), frame[column], kind)
        if kind in ("integer", "double"):
            out[column] = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
        elif kind == "boolean":
            out[column] = np.array(["" if v is None else ("true" if v else "false") for v in values], dtype=object)
        elif kind == "date" and any(_is_date(v) for v in frame[column].to_numpy(dtype=object)):
            out[column] = frame[column].to_numpy(dtype=object)  # a SAS date (numeric, DATE9. format)
        else:
            out[column] = np.array(["" if v is None else v for v in values], dtype=object)
    return pd.DataFrame(out, columns=frame.columns)


def write_xpt(frame: pd.DataFrame, path: Path, name: str) -> None:
    """SAS transport version 5 (the format FDA submissions take), once `check_xpt` has passed."""
    try:
        import pyreadstat
    except ImportError:
        raise OutputError("writing .xpt needs pyreadstat", hint="pip install pyreadstat") from None
    data = xpt_frame(frame)
    pyreadstat.write_xport(
        data,
        str(path),
        file_label=dataset_label(name),
        column_labels=[label_of(str(c)) for c in data.columns],
        table_name=name,
        file_format_version=5,
    )

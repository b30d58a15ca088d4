"""Tables are read by content, not by name (issue 14): CSV, Parquet, SAS transport (XPT), sas7bdat, CDISC
Dataset-JSON (.json / .ndjson) and Excel .xlsx, whatever the extension; anything else is named for what it is.

The SAS-written XPT files and their Dataset-JSON twins in ../shared/data/cdisc-dataset-json are the regression
data (skipped when the shared folder is absent, as in tests/test_sdtm.py)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli

from crlm_response.errors import InputTableError
from crlm_response.formats import read_sas
from crlm_response.sources import SourceOptions, read_table

CDISC = ROOT.parent / "shared" / "data" / "cdisc-dataset-json"
needs_cdisc = pytest.mark.skipif(not CDISC.is_dir(), reason="shared CDISC Dataset-JSON data not present")

LESIONS = pd.DataFrame(
    {
        "subject_id": ["P1", "P1", "P1", "P1", "P2", "P2"],
        "timepoint": ["baseline", "baseline", "FU1", "FU1", "baseline", "FU1"],
        "day": [0.0, 0.0, 56.0, 56.0, 0.0, 56.0],
        "lesion_id": ["L1", "L2", "L1", "L2", "L1", "L1"],
        "kind": ["target", "target", None, None, "target", None],
        "organ": ["liver", "lung", None, None, "liver", None],
        "longest_diameter_mm": [40.0, 30.0, 0.0, 20.0, 50.0, 60.0],
    }
)
# P1: 70 -> 20 mm (-71 %, L1 gone to 0 mm): PR. P2: 50 -> 60 mm (+20 %, +10 mm): PD.
BEST = {"P1": "PR", "P2": "PD"}


def best_of(result_dir: Path) -> dict[str, str]:
    best = pd.read_csv(result_dir / "out.best.csv", dtype=str)
    return dict(zip(best["subject_id"], best["best_overall_response"], strict=True))


def write_xpt(frame: pd.DataFrame, path: Path) -> None:
    import pyreadstat

    short = frame.rename(columns=lambda c: c[:8])
    pyreadstat.write_xport(
        short.fillna({c: "" for c in short.columns if short[c].dtype == object}), str(path), file_format_version=5
    )


def dataset_json(frame: pd.DataFrame) -> tuple[dict, list[list]]:
    columns = [
        {"itemOID": f"IT.{c}", "name": c, "label": c, "dataType": "double" if frame[c].dtype == float else "string"}
        for c in frame.columns
    ]
    meta = {
        "datasetJSONCreationDateTime": "2026-12-01T00:00:00",
        "datasetJSONVersion": "1.1.0",
        "itemGroupOID": "IG.LESIONS",
        "records": len(frame),
        "name": "LESIONS",
        "label": "Lesions",
        "columns": columns,
    }
    rows = [[None if pd.isna(v) else v for v in row] for row in frame.astype(object).values.tolist()]
    return meta, rows


def write_xlsx(frame: pd.DataFrame, path: Path, sheet: str = "Sheet1", first: str | None = None) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    if first is not None:
        book.active.title = first
        book.active.append(["nothing", "here"])
        ws = book.create_sheet(sheet)
    else:
        ws = book.active
        ws.title = sheet
    ws.append(list(frame.columns))
    for row in frame.astype(object).values.tolist():
        ws.append([None if pd.isna(v) else v for v in row])
    book.save(path)


def as_each_format(tmp: Path) -> dict[str, Path]:
    """The same lesion table in every format, each under a misleading name."""
    out = {}
    out["csv"] = tmp / "lesions.parquet"
    LESIONS.to_csv(out["csv"], index=False)
    out["parquet"] = tmp / "lesions_parquet.csv"
    LESIONS.to_parquet(out["parquet"], index=False)
    out["xpt"] = tmp / "lesions_xpt.json"
    write_xpt(LESIONS, out["xpt"])
    meta, rows = dataset_json(LESIONS)
    out["json"] = tmp / "lesions_json.csv"
    out["json"].write_text(json.dumps({**meta, "rows": rows}), encoding="utf-8")
    out["ndjson"] = tmp / "lesions_ndjson.txt"
    out["ndjson"].write_text(json.dumps(meta) + "\n" + "\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out["xlsx"] = tmp / "lesions_xlsx.csv"
    write_xlsx(LESIONS, out["xlsx"])
    return out


XPT_MAP = (
    "columns:\n  subject_id: subject_\n  timepoint: timepoin\n  lesion_id: lesion_i\n  longest_diameter_mm: longest_\n"
)


@pytest.mark.parametrize("kind", ["csv", "parquet", "xpt", "json", "ndjson", "xlsx"])
def test_every_format_is_read_by_content_and_scores_alike(kind: str, tmp_path: Path) -> None:
    path = as_each_format(tmp_path)[kind]
    extra: list[str] = []
    if kind == "xpt":  # SAS V5 names are at most 8 characters
        (tmp_path / "map.yaml").write_text(XPT_MAP, encoding="utf-8")
        extra = ["--map", str(tmp_path / "map.yaml")]
    result = run_cli("batch", path, *extra, "-o", tmp_path / "out" / "out.csv", "--criteria", "recist1.1")
    assert result.exit_code == 0, result.stderr
    assert f"{path.name}: rows read 6 = rows scored 6 + rows rejected 0" in result.stderr
    assert best_of(tmp_path / "out") == BEST


def test_an_xpt_zero_reads_back_as_exactly_zero(tmp_path: Path) -> None:
    path = as_each_format(tmp_path)["xpt"]
    frame = read_sas(path, path, "xpt").frame
    assert frame["longest_"].tolist()[2] == 0.0 and np.signbit(frame["longest_"].to_numpy()[2]) == np.False_


@needs_cdisc
def test_adtte_cnsr_zeros_read_back_as_exactly_zero() -> None:
    table = read_table(CDISC / "adam" / "adtte.xpt")
    cnsr = table.frame["CNSR"].to_numpy(dtype=float)
    assert int((cnsr == 0.0).sum()) == 152  # pandas.read_sas gives 5.397605e-79 for these
    assert int((cnsr == 1.0).sum()) == 102
    assert set(np.unique(cnsr)) == {0.0, 1.0}


def cells(table: pd.DataFrame) -> pd.DataFrame:
    """Cells as comparable values: text as str (missing None), numbers as float."""
    out = {}
    for column in table.columns:
        values = table[column]
        if pd.api.types.is_float_dtype(values.dtype):
            out[column] = values.to_numpy(dtype=float)
        else:
            out[column] = [None if pd.isna(v) else str(v) for v in values.astype(object)]
    return pd.DataFrame(out)


@needs_cdisc
@pytest.mark.parametrize("twin", ["adam/adsl", "adam/adtte", "sdtm/dm", "sdtm/rs"])
def test_each_xpt_equals_its_dataset_json_twin_cell_for_cell(twin: str) -> None:
    xpt = read_table(CDISC / f"{twin}.xpt")
    json_twins = [CDISC / f"{twin}.json"] + ([CDISC / f"{twin}.ndjson"] if (CDISC / f"{twin}.ndjson").exists() else [])
    for path in json_twins:
        other = read_table(path)
        assert list(other.frame.columns) == list(xpt.frame.columns), path.name
        assert len(other.frame) == len(xpt.frame) > 0
        pd.testing.assert_frame_equal(cells(other.frame), cells(xpt.frame), check_dtype=False, obj=path.name)
    assert xpt.lines.tolist() == list(range(1, len(xpt.frame) + 1))


@needs_cdisc
def test_ndjson_rows_keep_their_physical_lines() -> None:
    table = read_table(CDISC / "sdtm" / "dm.ndjson")
    assert table.lines.tolist() == list(range(2, len(table.frame) + 2))  # metadata on line 1


def not_tables(tmp: Path) -> dict[str, tuple[Path, str]]:
    files: dict[str, tuple[Path, str]] = {}
    files["pdf"] = (tmp / "a.csv", "this is a PDF document; give a table")
    files["pdf"][0].write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    files["png"] = (tmp / "b.csv", "this is a PNG image; give a table")
    files["png"][0].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    files["gzip"] = (tmp / "c.csv", "this is a gzip-compressed file (decompress it first); give a table")
    files["gzip"][0].write_bytes(gzip.compress(b"subject_id,timepoint\n"))
    files["sqlite"] = (tmp / "d.csv", "this is an SQLite database; give a table")
    sqlite3.connect(files["sqlite"][0]).execute("create table t (x)").connection.commit()
    files["docx"] = (tmp / "e.xlsx", "this is a Word document; give a table")
    with zipfile.ZipFile(files["docx"][0], "w") as archive:
        archive.writestr("word/document.xml", "<w/>")
    files["json"] = (tmp / "f.json", "this is a JSON file but not CDISC Dataset-JSON (no `columns` list)")
    files["json"][0].write_text('{"subjects": []}', encoding="utf-8")
    files["html"] = (tmp / "g.csv", "this is an HTML page (a download page instead of the file?); give a table")
    files["html"][0].write_text("<!DOCTYPE html><html><body>Sign in</body></html>", encoding="utf-8")
    files["sas7bdat"] = (tmp / "h.csv", "cannot read this sas7bdat file")
    from crlm_response.formats import SAS7BDAT_MAGIC

    files["sas7bdat"][0].write_bytes(SAS7BDAT_MAGIC + bytes(200))
    return files


@pytest.mark.parametrize("kind", ["pdf", "png", "gzip", "sqlite", "docx", "json", "html", "sas7bdat"])
def test_what_is_not_a_table_is_named_for_what_it_is(kind: str, tmp_path: Path) -> None:
    path, message = not_tables(tmp_path)[kind]
    result = run_cli("batch", path, "-o", tmp_path / "out.csv")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}: {message}"), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_excel_first_sheet_or_the_named_one(tmp_path: Path) -> None:
    book = tmp_path / "core_lab.xlsx"
    write_xlsx(LESIONS, book, sheet="Lesions", first="Notes")
    out = tmp_path / "out" / "out.csv"
    first = run_cli("batch", book, "-o", out)
    assert first.exit_code == 1 and "missing required column(s)" in first.stderr  # the first sheet is "Notes"
    named = run_cli("batch", book, "--sheet", "Lesions", "-o", out, "--criteria", "recist1.1")
    assert named.exit_code == 0, named.stderr
    assert best_of(out.parent) == BEST
    unknown = run_cli("batch", book, "--sheet", "Lesionz", "-o", out)
    assert unknown.exit_code == 1
    assert f"Error: {book}: the workbook has no sheet 'Lesionz' (its sheets: Notes, Lesions)" in unknown.stderr
    csv = tmp_path / "l.csv"
    LESIONS.to_csv(csv, index=False)
    wrong = run_cli("batch", csv, "--sheet", "Lesions", "-o", out)
    assert wrong.exit_code == 1 and "--sheet is for Excel workbooks; this is a csv file" in wrong.stderr


def test_excel_dates_and_numbers_as_excel_typed_them(tmp_path: Path) -> None:
    frame = LESIONS.drop(columns=["day"]).copy()
    frame.insert(
        2,
        "date",
        [dt.datetime(2025, 1, 6)] * 2 + [dt.datetime(2025, 3, 3)] * 2 + [dt.date(2025, 1, 6), dt.date(2025, 3, 3)],
    )
    book = tmp_path / "dated.xlsx"
    write_xlsx(frame, book)
    table = read_table(book)
    assert table.frame["date"].astype(str).tolist()[:3] == ["2025-01-06", "2025-01-06", "2025-03-03"]
    assert table.frame["longest_diameter_mm"].dtype == float
    assert table.lines.tolist() == [2, 3, 4, 5, 6, 7]  # Excel row numbers
    result = run_cli("batch", book, "-o", tmp_path / "out" / "out.csv", "--criteria", "recist1.1")
    assert result.exit_code == 0, result.stderr
    assert best_of(tmp_path / "out") == BEST


def sdtm_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    tu = pd.DataFrame(
        {
            "STUDYID": "ST1",
            "DOMAIN": "TU",
            "USUBJID": ["S-1"],
            "TULNKID": ["T01"],
            "TUTESTCD": ["TUMIDENT"],
            "TUSTRESC": ["TARGET"],
            "TULOC": ["LIVER"],
        }
    )
    tr = pd.DataFrame(
        {
            "STUDYID": "ST1",
            "DOMAIN": "TR",
            "USUBJID": ["S-1", "S-1"],
            "TRLNKID": ["T01", "T01"],
            "TRTESTCD": ["LDIAM", "LDIAM"],
            "TRORRES": ["40", "0"],
            "TRSTRESN": [40.0, 0.0],
            "TRSTRESU": ["mm", "mm"],
            "VISITNUM": [10.0, 20.0],
            "VISIT": ["SCREENING", "WEEK 8"],
            "TRDY": [-3.0, 56.0],
        }
    )
    return tu, tr


@pytest.mark.parametrize("kind", ["xpt", "json", "xlsx"])
def test_sdtm_domains_in_every_format(kind: str, tmp_path: Path) -> None:
    tu, tr = sdtm_frames()
    paths = []
    for name, frame in (("tu", tu), ("tr", tr)):
        path = tmp_path / f"{name}.{kind}"
        if kind == "xpt":
            write_xpt(frame, path)
        elif kind == "json":
            meta, rows = dataset_json(frame)
            path.write_text(json.dumps({**meta, "rows": rows}), encoding="utf-8")
        else:
            write_xlsx(frame, path)
        paths.append(path)
    out = tmp_path / "out" / "out.csv"
    result = run_cli("batch", "--sdtm-tu", paths[0], "--sdtm-tr", paths[1], "-o", out)
    assert result.exit_code == 0, result.stderr
    assert best_of(out.parent) == {"S-1": "CR"}  # the 0 mm at WEEK 8 is exactly 0: a CR, never a PR


def test_organ_table_and_bor_visits_from_excel(tmp_path: Path) -> None:
    lesions = tmp_path / "lesions.csv"
    LESIONS.to_csv(lesions, index=False)
    organs = tmp_path / "organs.xlsx"
    write_xlsx(
        pd.DataFrame(
            {"subject_id": ["P1", "P1"], "timepoint": ["baseline", "FU1"], "spleen_volume_ml": [180.0, "big"]}
        ),
        organs,
    )
    result = run_cli("batch", lesions, "--organs", organs, "-o", tmp_path / "o" / "out.csv", "--criteria", "recist1.1")
    assert result.exit_code == 0, result.stderr
    errors = pd.read_csv(tmp_path / "o" / "out.errors.csv", dtype=str)
    bad = errors.loc[errors["code"] == "not_a_number"].iloc[0]
    assert bad["reason"] == "Sheet1!C3: spleen_volume_ml must be a number"
    visits = tmp_path / "visits.xlsx"
    write_xlsx(pd.DataFrame({"subject_id": ["A", "A"], "day": [56.0, 112.0], "response": ["PR", "PR"]}), visits)
    bor = run_cli("bor", visits, "-o", tmp_path / "bor.csv")
    assert bor.exit_code == 0, bor.stderr
    assert pd.read_csv(tmp_path / "bor.csv")["best_overall_response"].tolist() == ["PR"]


def test_read_table_refuses_a_missing_sheet_before_anything_else(tmp_path: Path) -> None:
    book = tmp_path / "b.xlsx"
    write_xlsx(LESIONS, book)
    with pytest.raises(InputTableError, match="no sheet 'x'"):
        read_table(book, SourceOptions(sheet="x"))

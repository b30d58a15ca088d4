"""The one source layer (crlm_response/sources.py): physical line numbers, streams that can be read once, and
messages a person can act on, the same through every engine."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from crlm_response.errors import InputTableError
from crlm_response.sources import SourceOptions, open_source, parse_dates, read_table

HEADER = "subject_id,timepoint,day,lesion_id,kind,organ,longest_diameter_mm,notes"
ROWS = [
    "P1,baseline,0,L1,target,liver,40,",
    "P1,FU1,56,L1,,,20,",
    "P2,baseline,0,L1,target,liver,50,",
    "P2,FU1,56,L1,,,60,",
]
ENGINES = {"memory": [], "chunks": ["--chunk-rows", "1000"]}


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_a_quoted_cell_over_several_lines_keeps_every_line_number(tmp_path: Path) -> None:
    text = "\n".join(
        [HEADER, ROWS[0], 'P1,FU1,56,L1,,,20,"seen on\nthe second\nreading"', ROWS[2], "P2,FU1,56,L1,,,abc,"]
    )
    table = read_table(write(tmp_path / "t.csv", text + "\n"))
    assert table.lines.tolist() == [2, 3, 6, 7]
    assert table.frame["notes"].astype(object).tolist()[1] == "seen on\nthe second\nreading"
    for name, extra in ENGINES.items():
        result = run_cli("batch", tmp_path / "t.csv", "-o", tmp_path / name / "o.csv", *extra)
        errors = pd.read_csv(tmp_path / name / "o.errors.csv")
        assert errors.loc[errors["code"] == "not_a_number", "line"].tolist() == [7], (name, result.stderr)


def test_blank_lines_anywhere_are_not_rows(tmp_path: Path) -> None:
    text = "\ufeff\n\n" + HEADER + "\r\n" + ROWS[0] + "\r\n\r\n" + "\r\n".join(ROWS[1:]) + "\r\n\r\n"
    table = read_table(write(tmp_path / "t.csv", text))
    assert table.lines.tolist() == [4, 6, 7, 8]
    assert table.frame["subject_id"].astype(str).tolist() == ["P1", "P1", "P2", "P2"]


def test_a_row_of_empty_cells_is_a_row(tmp_path: Path) -> None:
    table = read_table(write(tmp_path / "t.csv", "\n".join([HEADER, ROWS[0], ",,,,,,,", ROWS[1]]) + "\n"))
    assert table.lines.tolist() == [2, 3, 4]


def test_other_encodings_when_named(tmp_path: Path) -> None:
    text = "\n".join([HEADER, *ROWS]).replace("liver", "lïver") + "\n"
    for encoding in ("utf-16-le", "utf-32-be", "latin-1"):
        path = write(tmp_path / f"{encoding}.csv", text, encoding)
        table = read_table(path, SourceOptions(encoding=encoding))
        assert table.frame["organ"].astype(object).tolist()[0] == "lïver"
        assert table.lines.tolist() == [2, 3, 4, 5]


def test_a_pipe_is_read_once_like_a_file(tmp_path: Path) -> None:
    """`batch <(cat x.csv)` hands the tool /dev/fd/63, a pipe: it said "file is empty" before."""
    fifo = tmp_path / "lesions.csv"
    os.mkfifo(fifo)
    text = ("\n".join([HEADER, *ROWS]) + "\n").encode()

    def feed() -> None:
        with open(fifo, "wb") as handle:
            handle.write(text)

    writer = threading.Thread(target=feed)
    writer.start()
    result = run_cli("batch", fifo, "-o", tmp_path / "out" / "o.csv", "--criteria", "recist1.1")
    writer.join(timeout=10)
    assert result.exit_code == 0, result.stderr
    assert "lesions.csv: rows read 4 = rows scored 4 + rows rejected 0" in result.stderr


@pytest.mark.parametrize("engine", ["memory", "chunks", "dask"])
def test_a_missing_input_file_is_an_input_error_on_every_engine(engine: str, tmp_path: Path) -> None:
    extra = {"memory": [], "chunks": ["--chunk-rows", "1000"], "dask": ["--engine", "dask", "--workers", "1"]}[engine]
    if engine == "dask":
        pytest.importorskip("distributed")
    missing = tmp_path / "nope.csv"
    result = run_cli("batch", missing, "-o", tmp_path / "o.csv", *extra)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {missing}: file not found"


def test_an_input_column_named_like_an_internal_one_is_just_unknown(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "\n".join([HEADER + ",_line,_file", *[r + ",x,y" for r in ROWS]]) + "\n")
    outputs = {}
    for name, extra in ENGINES.items():
        result = run_cli("batch", path, "-o", tmp_path / name / "o.csv", "--criteria", "recist1.1", *extra)
        assert result.exit_code == 0, result.stderr
        outputs[name] = pd.read_csv(tmp_path / name / "o.best.csv")
        warnings = pd.read_csv(tmp_path / name / "o.warnings.csv")
        assert sorted(
            warnings.loc[warnings["code"] == "unknown_column", "message"].str.extract(r"column '(\w+)'")[0]
        ) == [
            "_file",
            "_line",
            "notes",
        ]
    pd.testing.assert_frame_equal(outputs["memory"], outputs["chunks"])


def test_one_date_parser() -> None:
    values = pd.Series(
        ["2025-01-06", "2025-01-06T10:30:00", "2025-02", "2025", "2025-02-30", "2025-01-06T10:30+02:00", None, "soon"],
        dtype=object,
    )
    dates, why = parse_dates(values, "date")
    assert dates[:2].tolist() == [np.datetime64("2025-01-06")] * 2
    assert np.isnat(dates[2:]).all()
    assert why.tolist() == [
        None,
        None,
        "date is a partial date (2025-02); give the full date YYYY-MM-DD",
        "date is a partial date (2025); give the full date YYYY-MM-DD",
        "date must be a real date written YYYY-MM-DD",
        "date has a time-zone offset (+02:00); give the local date as YYYY-MM-DD",
        None,
        "date must be a real date written YYYY-MM-DD",
    ]


def test_open_source_names_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputTableError, match="is a folder"):
        open_source(tmp_path)


class NotAScheduler:
    """A TCP server on loopback that answers like a web server, then closes (bounded: a few connections)."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"\xff" * 64)
        self.server.close()


def test_a_scheduler_address_that_is_not_a_scheduler(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    source = write(tmp_path / "t.csv", "\n".join([HEADER, *ROWS]) + "\n")
    fake = NotAScheduler()
    try:
        start = time.monotonic()
        result = run_cli(
            "batch", source, "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{fake.port}", "-o", tmp_path / "o.csv"
        )
    finally:
        fake.stop.set()
        fake.thread.join(timeout=5)
    assert time.monotonic() - start < 30
    assert result.exit_code == 1
    assert "out of memory" not in result.stderr and "internal error" not in result.stderr
    assert f"tcp://127.0.0.1:{fake.port}" in result.stderr and "Dask scheduler" in result.stderr, result.stderr

"""Table files read by content, not by name: CSV, Parquet, SAS transport (XPT V5/V8), sas7bdat, CDISC
Dataset-JSON (.json, and .ndjson with the metadata on line 1) and Excel .xlsx.

`sniff` says what a file is from its first bytes, whatever its name; anything that is not one of these tables
(DICOM, another zip, a PDF, ...) is named for what it is. Each reader gives `RawTable`s: cells as written (text
columns as categoricals of their distinct values, numbers as numbers), the physical line of every row (CSV and
NDJSON lines, the Excel row, the record number of Parquet / XPT / sas7bdat / Dataset-JSON) and the rows that
could not be split into the header's columns. Dates become ISO 8601 text here, so that one date parser (in
`sources`) serves every format. SAS files are read with pyreadstat: `pandas.read_sas` reads an IBM-float zero
as 5.4e-79 (pandas issue 50670), which would turn a 0 mm lesion into a measurable one.
"""

from __future__ import annotations

import atexit
import codecs
import csv
import datetime as dt
import json
import math
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputTableError, not_utf8_message

TABLE_FORMATS = "CSV, Parquet, SAS transport (.xpt), .sas7bdat, Dataset-JSON (.json/.ndjson) or Excel (.xlsx)"
MAX_INPUT_BYTES = 20 * 1024**3
MAX_LINE_BYTES = 1 << 20  # a lesion-table line is ~100 bytes; a 10 MB cell is not lesion data
MAX_CELL_CHARS = 1 << 20
SCAN_CHUNK = 16 << 20
SAS7BDAT_MAGIC = bytes.fromhex("000000000000000000000000c2ea8160b31411cfbd92080009c7318c181f1011")
XPT_MAGIC = b"HEADER RECORD*******LIB"  # V5: LIBRARY HEADER RECORD; V8: LIBV8   HEADER RECORD


@dataclass
class CellMap:
    """Where a spreadsheet's cells are: the sheet and each column's letter, for `Sheet1!C7` in messages."""

    sheet: str
    letters: dict[str, str]


@dataclass
class RawTable:
    """A block of a file as read: raw cells, the source line of each row, and the rows the parser could not split
    into the header's columns (`line`, `reason`, `fields`: the cells it did find)."""

    frame: pd.DataFrame
    lines: np.ndarray
    malformed: pd.DataFrame = field(default_factory=lambda: no_malformed())
    files: np.ndarray | None = None  # per row, when the rows come from several files
    cells: CellMap | None = None


def no_malformed() -> pd.DataFrame:
    return pd.DataFrame(
        {"line": pd.Series(dtype=np.int64), "reason": pd.Series(dtype=object), "fields": pd.Series(dtype=object)}
    )


# --------------------------------------------------------------------------------------------------
# What a file is
# --------------------------------------------------------------------------------------------------

NOT_TABLES: list[tuple[int, bytes, str]] = [
    (0, b"%PDF", "a PDF document"),
    (0, b"\x89PNG", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    (0, b"BZh", "a bzip2-compressed file (decompress it first)"),
    (0, b"\xfd7zXZ", "an xz-compressed file (decompress it first)"),
    (0, b"7z\xbc\xaf", "a 7-Zip archive"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"\xd0\xcf\x11\xe0", "an old Microsoft Office file (.xls/.doc; save it as .xlsx or CSV)"),
    (0, b"\x7fELF", "a program (ELF executable)"),
    (0, b"ARROW1", "an Arrow IPC (Feather) file (convert it to Parquet)"),
    (128, b"DICM", "a DICOM file (an image or structured report, not a table of measurements)"),
]


def give_hint(rows: str) -> str:
    return f"give a table with a header line and one row per {rows}: {TABLE_FORMATS}"


def sniff(path: Path, shown: str | Path, rows: str = "lesion") -> str:
    """The format of a file from its content: csv, parquet, xpt, sas7bdat, json, ndjson or xlsx."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(XPT_MAGIC):
        return "xpt"
    if head.startswith(SAS7BDAT_MAGIC):
        return "sas7bdat"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path, shown, rows)
    for offset, magic, what in NOT_TABLES:
        if head[offset : offset + len(magic)] == magic:
            raise InputTableError(f"this is {what}; {give_hint(rows)}", file=shown)
    text = head.lstrip(codecs.BOM_UTF8).lstrip()
    if text.startswith(b"{"):
        return "json"
    if text.startswith(b"["):
        raise InputTableError(f"this is a JSON list, not CDISC Dataset-JSON; {give_hint(rows)}", file=shown)
    if text[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise InputTableError(
            f"this is an HTML page (a download page instead of the file?); {give_hint(rows)}", file=shown
        )
    if text.startswith(b"<?xml"):
        raise InputTableError(f"this is an XML file; {give_hint(rows)}", file=shown)
    if Path(str(shown)).suffix.lower() in (".yaml", ".yml"):
        raise InputTableError(
            "this is a YAML file, not a table",
            file=shown,
            hint="a case file is assessed with `crlm-response assess FILE`; tables are CSV or Parquet",
        )
    return "csv"


def _zip_kind(path: Path, shown: str | Path, rows: str) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        raise InputTableError(f"this is a damaged zip archive; {give_hint(rows)}", file=shown) from None
    if "xl/workbook.xml" in names:
        return "xlsx"
    if any(n.startswith("word/") for n in names):
        what = "a Word document"
    elif any(n.startswith("ppt/") for n in names):
        what = "a PowerPoint file"
    elif "content.xml" in names:
        what = "an OpenDocument file (save it as .xlsx or CSV)"
    else:
        shown_names = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        what = f"a zip archive of {shown_names} (unpack it first)"
    raise InputTableError(f"this is {what}; {give_hint(rows)}", file=shown)


# --------------------------------------------------------------------------------------------------
# Files that cannot be read twice (a pipe, process substitution), transcoded text
# --------------------------------------------------------------------------------------------------

_WORKDIR: list[Path] = []


def workdir() -> Path:
    """A private folder for this process's copies of inputs (removed at exit)."""
    if not _WORKDIR:
        folder = Path(tempfile.mkdtemp(prefix="crlm-inputs-"))
        _WORKDIR.append(folder)
        atexit.register(shutil.rmtree, folder, True)
    return _WORKDIR[0]


def readable_copy(path: Path, shown: str | Path) -> Path:
    """The file itself, or for a pipe / process substitution (`<(cat x.csv)`), a copy of what it delivers:
    such a stream can be read once only, and every format here needs to look at the start first."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        raise InputTableError("is a folder; give a table file", file=shown)
    if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)):
        raise InputTableError("is not a regular file, a pipe or a stream; give a table file", file=shown)
    copy = Path(tempfile.mkstemp(prefix="stream-", dir=workdir())[1])
    copied = 0
    with open(path, "rb") as source, open(copy, "wb") as target:
        while block := source.read(1 << 20):
            copied += len(block)
            if copied > MAX_INPUT_BYTES:
                raise InputTableError(f"the stream is over the {MAX_INPUT_BYTES // 1024**3} GB limit", file=shown)
            target.write(block)
    return copy


# --------------------------------------------------------------------------------------------------
# CSV: encoding, a scan of the raw bytes, then pyarrow (or, for cells that span lines, Python's csv module)
# --------------------------------------------------------------------------------------------------

UTF8_NAMES = {"utf-8", "utf_8", "utf8", "utf-8-sig", "utf_8_sig", "u8"}


def utf8_file(path: Path, shown: str | Path, encoding: str) -> Path:
    """The file as UTF-8 bytes: itself when it is UTF-8 (checked by `scan_csv`), else a transcoded copy."""
    if encoding != "auto":
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise InputTableError(f"unknown encoding {encoding!r}", file=shown) from None
        return path if name in UTF8_NAMES else _transcode(path, shown, encoding)
    with open(path, "rb") as handle:
        head = handle.read(1 << 12)
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return _transcode(path, shown, "utf-32")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _transcode(path, shown, "utf-16")
    _refuse_wide_text_without_bom(head, shown)
    return path


def _refuse_wide_text_without_bom(head: bytes, shown: str | Path) -> None:
    """UTF-16 / UTF-32 without a byte-order mark: most bytes of plain text are then zero."""
    sample = head[: len(head) - len(head) % 4]
    if len(sample) < 8 or sample.count(0) < len(sample) // 3:
        return
    raw = np.frombuffer(sample, dtype=np.uint8).reshape(-1, 4)
    zero = raw == 0
    if zero[:, 1:].all() and not zero[:, 0].all():
        guess, option = "UTF-32 (little-endian)", "utf-32-le"
    elif zero[:, :3].all() and not zero[:, 3].all():
        guess, option = "UTF-32 (big-endian)", "utf-32-be"
    elif zero[:, 1::2].mean() > 0.9:
        guess, option = "UTF-16 (little-endian)", "utf-16-le"
    elif zero[:, 0::2].mean() > 0.9:
        guess, option = "UTF-16 (big-endian)", "utf-16-be"
    else:
        guess, option = "binary data", ""
    if not option:
        raise InputTableError(f"this is binary data, not a table; {give_hint('lesion')}", file=shown)
    raise InputTableError(
        f"this looks like {guess} text without a byte-order mark",
        file=shown,
        hint=f"save it as UTF-8, or pass --encoding {option} if that is what the file is",
    )


def _transcode(path: Path, shown: str | Path, encoding: str) -> Path:
    target = Path(tempfile.mkstemp(prefix="utf8-", suffix=".csv", dir=workdir())[1])
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    line = 1
    with open(path, "rb") as source, open(target, "w", encoding="utf-8", newline="") as out:
        while True:
            block = source.read(SCAN_CHUNK)
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise InputTableError(
                    f"cannot decode the file as {encoding}: {exc.reason}",
                    file=shown,
                    line=line + block[: exc.start].decode(encoding, errors="replace").count("\n"),
                    hint="pass --encoding with the file's real encoding (e.g. latin-1)",
                ) from None
            out.write(text)
            line += text.count("\n")
            if not block:
                break
    return target


@dataclass
class CsvLayout:
    """What a scan of the raw bytes found: where the header is, which lines are blank, whether a quoted cell
    spans lines (then pyarrow cannot number rows by line)."""

    path: Path
    header_line: int
    names: list[str]
    blank: np.ndarray
    multiline: bool
    lines: int
    bytes_per_line: float


@dataclass
class _Scan:
    line: int = 1  # the line the next byte belongs to
    line_start: int = 0  # absolute offset of that line's first byte
    quotes: int = 0  # quote characters seen on the current line so far
    last_byte: int = 10
    blank: list[np.ndarray] = field(default_factory=list)
    multiline: bool = False
    carriage_returns: int = 0


def scan_csv(path: Path, shown: str | Path) -> CsvLayout:
    """One pass over the bytes (16 MB at a time): valid UTF-8, lines under 1 MB, LF or CRLF line ends, the
    blank lines, and whether a quoted cell spans lines."""
    state = _Scan()
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(SCAN_CHUNK)
            pending = len(decoder.getstate()[0])
            if pending or not block.isascii():  # ASCII is UTF-8: only other text needs decoding to check
                try:
                    decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    _not_utf8(path, shown, offset - pending + exc.start)
            if not block:
                break
            if offset == 0 and block.startswith(codecs.BOM_UTF8):
                state.line_start = 3
                state.last_byte = 10
            _scan_block(block, offset, state, shown)
            offset += len(block)
    last_length = offset - state.line_start
    if last_length > MAX_LINE_BYTES:
        _line_too_long(shown, state.line, last_length)
    lines = state.line if last_length > 0 else state.line - 1
    if state.line == 1 and state.carriage_returns > 1:
        raise InputTableError(
            "lines end with a carriage return only (old Mac line ends), so the whole file reads as one line",
            file=shown,
            hint="save it with LF or CRLF line ends (any text editor or `tr '\\r' '\\n'`)",
        )
    blank = np.concatenate(state.blank) if state.blank else np.zeros(0, dtype=np.int64)
    if offset == 0 and last_length <= 0:
        blank = np.zeros(0, dtype=np.int64)
    header_line, names = _header(path, shown, blank, lines)
    return CsvLayout(
        path, header_line, names, blank[blank > header_line], state.multiline, lines, offset / max(lines, 1)
    )


def _scan_block(block: bytes, offset: int, state: _Scan, shown: str | Path) -> None:
    data = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(data == 10)
    if state.line == 1:  # carriage returns matter only while no line feed has been seen
        state.carriage_returns += block.count(b"\r")
    if len(newlines) == 0:
        state.quotes += block.count(b'"')
        state.last_byte = int(data[-1]) if len(data) else state.last_byte
        if offset + len(data) - state.line_start > MAX_LINE_BYTES:
            _line_too_long(shown, state.line, offset + len(data) - state.line_start)
        return
    ends = newlines + offset
    starts = np.r_[state.line_start, ends[:-1] + 1]
    lengths = ends - starts
    numbers = np.arange(state.line, state.line + len(ends), dtype=np.int64)
    if lengths.max() > MAX_LINE_BYTES:
        at = int(np.argmax(lengths > MAX_LINE_BYTES))
        _line_too_long(shown, int(numbers[at]), int(lengths[at]))
    short = lengths <= 1
    if short.any():
        before = np.r_[state.last_byte, data[newlines[1:] - 1]]
        if newlines[0] > 0:
            before[0] = data[newlines[0] - 1]
        blank = short & ((lengths == 0) | (before == 13))
        if blank.any():
            state.blank.append(numbers[blank])
    if not state.multiline and (state.quotes or b'"' in block):
        cumulative = np.cumsum(data == 34, dtype=np.int64)
        per_line = np.diff(np.r_[0, cumulative[newlines]])
        per_line[0] += state.quotes
        state.multiline = bool((per_line % 2).any())
        state.quotes = int(cumulative[-1] - cumulative[newlines[-1]])
    state.line += len(newlines)
    state.line_start = int(ends[-1]) + 1
    state.last_byte = int(data[-1])


def _line_too_long(shown: str | Path, line: int, length: int) -> None:
    raise InputTableError(
        f"this line is {length:,} bytes long; a line of a table may be at most {MAX_LINE_BYTES:,} bytes (1 MiB)",
        file=shown,
        line=line,
        hint="is this the right file, or was a cell pasted by mistake?",
    )


CSV_ENCODING_HINT = "save as UTF-8, or pass --encoding latin-1 (or cp1252) if that is what the file is"


def _not_utf8(path: Path, shown: str | Path, position: int, hint: str = CSV_ENCODING_HINT) -> None:
    newlines, last_newline, done = 0, -1, 0
    with open(path, "rb") as handle:
        while done < position:
            block = handle.read(min(1 << 20, position - done))
            if not block:
                break
            count = block.count(b"\n")
            if count:
                last_newline = done + block.rfind(b"\n")
            newlines += count
            done += len(block)
        handle.seek(last_newline + 1)
        window = handle.read(position - last_newline)
    start = len(window) - 1
    message, _ = not_utf8_message(window, UnicodeDecodeError("utf-8", window, start, start + 1, "invalid byte"))
    raise InputTableError(
        message,
        file=shown,
        line=newlines + 1,
        hint=hint,
    )


def _header(path: Path, shown: str | Path, blank: np.ndarray, lines: int) -> tuple[int, list[str]]:
    """The first non-blank line, split into column names (stripped of spaces)."""
    leading = blank == np.arange(1, len(blank) + 1)  # blank lines 1, 2, ... before the first line with text
    header_line = int(np.argmin(leading)) + 1 if not leading.all() else len(blank) + 1
    if header_line > lines:
        raise InputTableError("file has no header line", file=shown)
    with open(path, "rb") as handle:
        for _ in range(header_line):
            raw = handle.readline()
    text = raw.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    try:
        names = next(iter(csv.reader([text])), [])
    except csv.Error as exc:
        raise InputTableError(f"the header line is not valid CSV: {exc}", file=shown, line=header_line) from None
    names = [n.strip() for n in names]
    if not any(names):
        raise InputTableError("file has no header line", file=shown)
    return header_line, names


def csv_blocks(layout: CsvLayout, shown: str | Path, rows: int | None) -> Iterator[RawTable]:
    """Rows of a scanned CSV file: all at once (`rows` None) or in blocks of about `rows` rows."""
    if layout.multiline:
        yield from _csv_module_blocks(layout, shown, rows)
    elif rows is None:
        yield _arrow_whole(layout, shown)
    else:
        yield from _arrow_stream(layout, shown, rows)


def _arrow_options(layout: CsvLayout, threads: bool, block_size: int, bad: list[tuple[int, str, list[str]]]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    def skip(row: Any) -> str:
        try:
            fields = next(iter(csv.reader([row.text or ""])), [])
        except csv.Error:
            fields = []
        bad.append(
            (
                int(row.number) if row.number is not None else -1,
                f"malformed CSV row: expected {row.expected_columns} fields, found {row.actual_columns}",
                fields,
            )
        )
        return "skip"

    names = [str(i) for i in range(len(layout.names))]
    return (
        pacsv.ReadOptions(use_threads=threads, column_names=names, skip_rows=layout.header_line, block_size=block_size),
        pacsv.ParseOptions(invalid_row_handler=skip, ignore_empty_lines=False, newlines_in_values=False),
        pacsv.ConvertOptions(
            column_types={name: pa.dictionary(pa.int32(), pa.string()) for name in names},
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=True,
        ),
    )


def _arrow_whole(layout: CsvLayout, shown: str | Path) -> RawTable:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    block_size = max(4 * MAX_LINE_BYTES, 1 << 24)
    bad: list[tuple[int, str, list[str]]] = []
    read, parse, convert = _arrow_options(layout, True, block_size, bad)
    try:
        table = pacsv.read_csv(layout.path, read_options=read, parse_options=parse, convert_options=convert)
        if bad:  # line numbers of bad rows are only known when parsing in one thread
            bad.clear()
            read, parse, convert = _arrow_options(layout, False, block_size, bad)
            table = pacsv.read_csv(layout.path, read_options=read, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise InputTableError(f"not a valid CSV table: {exc}", file=shown) from None
    frame = categorical_frame(table)
    del table
    # Arrow's allocator keeps freed blocks for Arrow; the rest of the run is numpy's, so hand them back now.
    pa.default_memory_pool().release_unused()
    lines, cursor = _next_lines(len(frame), layout.header_line + 1, bad)
    return _drop_blank(frame, lines, layout, bad)


def _arrow_stream(layout: CsvLayout, shown: str | Path, rows: int) -> Iterator[RawTable]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    block_size = int(min(max(rows * max(layout.bytes_per_line, 16), 4 * MAX_LINE_BYTES), 1 << 30))
    bad: list[tuple[int, str, list[str]]] = []
    read, parse, convert = _arrow_options(layout, False, block_size, bad)
    cursor = layout.header_line + 1
    try:
        reader = pacsv.open_csv(layout.path, read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            frame = categorical_frame(pa.Table.from_batches([batch]))
            lines, cursor = _next_lines(len(frame), cursor, bad)
            reported = [b for b in bad if b[0] < cursor]
            del bad[: len(reported)]
            yield _drop_blank(frame, lines, layout, reported)
    except pa.ArrowInvalid as exc:
        raise InputTableError(f"not a valid CSV table: {exc}", file=shown) from None
    if bad:
        yield _drop_blank(pd.DataFrame(columns=[str(i) for i in range(len(layout.names))]), np.zeros(0), layout, bad)


def categorical_frame(table: Any) -> pd.DataFrame:
    """An Arrow table of dictionary-encoded text as pandas categoricals built straight from Arrow's codes: what
    `to_pandas()` makes (categories in the same order and of the same dtype), without its intermediate copies,
    which grow faster than the rows on large files."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return table.to_pandas()
    table = table.unify_dictionaries()
    columns: dict[str, pd.Categorical] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        chunks = [chunk for chunk in column.chunks if len(chunk)]
        codes = pc.fill_null(pa.chunked_array([c.indices for c in chunks], pa.int32()), -1).to_numpy()
        # pd.Index infers the text dtype as to_pandas does (object, or str when pandas infers strings).
        categories = pd.Index(chunks[0].dictionary.to_numpy(zero_copy_only=False))
        columns[name] = pd.Categorical.from_codes(codes, categories=categories, validate=False)
    return pd.DataFrame(columns, copy=False)


def _next_lines(n: int, cursor: int, bad: list[tuple[int, str, list[str]]]) -> tuple[np.ndarray, int]:
    """The physical lines of the next `n` parsed rows: every line from `cursor` on, less the skipped ones."""
    skipped = np.array([b[0] for b in bad if b[0] >= cursor], dtype=np.int64)
    candidates = np.arange(cursor, cursor + n + len(skipped), dtype=np.int64)
    lines = candidates[~np.isin(candidates, skipped)][:n] if len(skipped) else candidates[:n]
    return lines, (int(lines[-1]) + 1 if n else cursor)


def _drop_blank(
    frame: pd.DataFrame, lines: np.ndarray, layout: CsvLayout, bad: list[tuple[int, str, list[str]]]
) -> RawTable:
    frame.columns = layout.names
    if len(layout.blank):
        keep = ~np.isin(lines, layout.blank)
        if not keep.all():
            frame = frame.loc[keep].reset_index(drop=True)
            lines = lines[keep]
    malformed = (
        pd.DataFrame(
            {
                "line": np.array([b[0] for b in bad], dtype=np.int64),
                "reason": [b[1] for b in bad],
                "fields": pd.Series([b[2] for b in bad], dtype=object),
            }
        )
        if bad
        else no_malformed()
    )
    return RawTable(frame, np.asarray(lines, dtype=np.int64), malformed)


def _csv_module_blocks(layout: CsvLayout, shown: str | Path, rows: int | None) -> Iterator[RawTable]:
    """Files where a quoted cell spans lines: Python's csv module, which knows where each record starts."""
    csv.field_size_limit(MAX_CELL_CHARS)
    width = len(layout.names)
    records: list[list[str]] = []
    lines: list[int] = []
    bad: list[tuple[int, str, list[str]]] = []
    with open(layout.path, encoding="utf-8-sig", newline="") as handle:
        for _ in range(layout.header_line):
            handle.readline()
        reader = csv.reader(handle)
        previous = layout.header_line
        try:
            for fields in reader:
                start, previous = previous + 1, layout.header_line + reader.line_num
                if not fields:
                    continue
                if len(fields) != width:
                    reason = f"malformed CSV row: expected {width} fields, found {len(fields)}"
                    bad.append((start, reason, fields))
                else:
                    records.append(fields)
                    lines.append(start)
                if rows is not None and len(records) >= rows:
                    yield _records_block(records, lines, layout, bad)
                    records, lines, bad = [], [], []
        except csv.Error as exc:
            raise InputTableError(f"not a valid CSV table: {exc}", file=shown, line=previous + 1) from None
    yield _records_block(records, lines, layout, bad)


def _records_block(
    records: list[list[str]], lines: list[int], layout: CsvLayout, bad: list[tuple[int, str, list[str]]]
) -> RawTable:
    frame = pd.DataFrame(records, columns=[str(i) for i in range(len(layout.names))], dtype=object)
    frame = frame.where(frame != "", None).astype("category") if len(frame) else frame.astype("category")
    no_blank = CsvLayout(layout.path, layout.header_line, layout.names, np.zeros(0), True, layout.lines, 0)
    return _drop_blank(frame, np.asarray(lines, dtype=np.int64), no_blank, bad)


# --------------------------------------------------------------------------------------------------
# Parquet, SAS, Dataset-JSON, Excel
# --------------------------------------------------------------------------------------------------


def parquet_blocks(path: Path, shown: str | Path, rows: int | None) -> Iterator[RawTable]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if rows is None:
            frame = pq.read_table(path).to_pandas()
            yield RawTable(iso_dates(frame.reset_index(drop=True)), np.arange(1, len(frame) + 1))
            return
        start = 1
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            frame = iso_dates(batch.to_pandas())
            yield RawTable(frame, np.arange(start, start + len(frame)))
            start += len(frame)
    except (pa.ArrowException, OSError) as exc:
        raise InputTableError(f"cannot read Parquet: {exc}", file=shown) from None


def parquet_columns(path: Path, shown: str | Path | None = None) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:  # a damaged or cut file: say so, like the block reader does
        raise InputTableError(f"cannot read Parquet: {exc}", file=shown or path) from None
    return [str(n) for n in names if not str(n).startswith("__index_level_")]


def read_sas(path: Path, shown: str | Path, kind: str) -> RawTable:
    """SAS transport (XPT V5/V8) or sas7bdat, with pyreadstat; missing text is missing, dates are ISO text."""
    import pyreadstat

    reader = pyreadstat.read_xport if kind == "xpt" else pyreadstat.read_sas7bdat
    try:
        frame, _meta = reader(str(path))
    except Exception as exc:  # noqa: BLE001 - pyreadstat raises its own error types for a damaged file
        what = "SAS transport (XPT)" if kind == "xpt" else "sas7bdat"
        raise InputTableError(f"cannot read this {what} file: {exc}", file=shown) from None
    return RawTable(_tidy_cells(frame), np.arange(1, len(frame) + 1))


NUMERIC_TYPES = {"integer", "decimal", "float", "double"}


def read_dataset_json(path: Path, shown: str | Path) -> RawTable:
    """CDISC Dataset-JSON 1.1: one object with `columns` and `rows`, or NDJSON (metadata on line 1, then one row
    array per line; those rows are numbered by their line)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            first = handle.readline()
    except UnicodeDecodeError:
        _json_not_utf8(path, shown)
        raise
    try:
        meta = json.loads(first)
        ndjson = isinstance(meta, dict) and "rows" not in meta
    except json.JSONDecodeError:
        ndjson = False
    if ndjson:
        return _ndjson(path, shown, meta)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise InputTableError(f"not valid JSON: {getattr(exc, 'msg', exc)}", file=shown, line=line) from None
    columns = _dataset_json_columns(data, shown)
    rows = data.get("rows")
    if not isinstance(rows, list):
        raise InputTableError("Dataset-JSON without `rows` (a list of row arrays)", file=shown)
    records = data.get("records")
    if isinstance(records, int) and records != len(rows):
        raise InputTableError(
            f"`records` says {records} rows but `rows` holds {len(rows)}: the file is incomplete", file=shown
        )
    return _json_rows(rows, np.arange(1, len(rows) + 1), columns)


def _json_not_utf8(path: Path, shown: str | Path) -> None:
    """Name the line of the first byte that is not UTF-8 (the text decoder only knows its place in a block)."""
    raw = path.read_bytes()
    skip = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        _not_utf8(path, shown, skip + exc.start, "Dataset-JSON is UTF-8: export the dataset again as UTF-8")


def _ndjson(path: Path, shown: str | Path, meta: Any) -> RawTable:
    columns = _dataset_json_columns(meta, shown)
    rows: list[Any] = []
    lines: list[int] = []
    try:
        with open(path, encoding="utf-8-sig") as handle:
            handle.readline()
            for number, text in enumerate(handle, start=2):
                if not text.strip():
                    continue
                try:
                    rows.append(json.loads(text))
                except json.JSONDecodeError as exc:
                    raise InputTableError(f"not a JSON row array: {exc.msg}", file=shown, line=number) from None
                lines.append(number)
    except UnicodeDecodeError:
        _json_not_utf8(path, shown)
        raise
    records = meta.get("records")
    if isinstance(records, int) and records != len(rows):
        raise InputTableError(
            f"`records` says {records} rows but the file holds {len(rows)}: the file is incomplete", file=shown
        )
    return _json_rows(rows, np.asarray(lines, dtype=np.int64), columns)


def _dataset_json_columns(data: Any, shown: str | Path) -> list[tuple[str, str]]:
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
        raise InputTableError(
            "this is a JSON file but not CDISC Dataset-JSON (no `columns` list)", file=shown, hint=give_hint("row")
        )
    out = []
    for column in data["columns"]:
        if not isinstance(column, dict) or not isinstance(column.get("name"), str):
            raise InputTableError("Dataset-JSON: every entry of `columns` needs a `name`", file=shown)
        out.append((column["name"], str(column.get("dataType", "string"))))
    return out


def _json_rows(rows: list[Any], lines: np.ndarray, columns: list[tuple[str, str]]) -> RawTable:
    width = len(columns)
    ok = np.array([isinstance(r, list) and len(r) == width for r in rows], dtype=bool)
    bad = [
        (int(line), f"malformed row: expected {width} values, found {len(r) if isinstance(r, list) else 'no list'}")
        for line, r, good in zip(lines, rows, ok, strict=True)
        if not good
    ]
    good_rows = [r for r, good in zip(rows, ok, strict=True) if good]
    frame = pd.DataFrame(good_rows, columns=[c for c, _ in columns], dtype=object)
    if not len(good_rows):
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c, _ in columns})
    for name, kind in columns:
        if kind in NUMERIC_TYPES:
            numbers = pd.to_numeric(frame[name], errors="coerce")
            if numbers.notna().sum() == frame[name].notna().sum():  # else the field checks show the bad cells
                frame[name] = numbers.astype(float)
    malformed = (
        pd.DataFrame(
            {
                "line": np.array([b[0] for b in bad], dtype=np.int64),
                "reason": [b[1] for b in bad],
                "fields": pd.Series([[] for _ in bad], dtype=object),
            }
        )
        if bad
        else no_malformed()
    )
    return RawTable(_tidy_cells(frame), lines[ok], malformed)


def read_xlsx(path: Path, shown: str | Path, sheet: str | None) -> RawTable:
    """The first sheet (or `sheet`) of a workbook: row 1 (the first non-empty row) is the header; numbers and
    dates as Excel typed them; each row keeps its Excel row number and each column its letter."""
    import openpyxl
    from openpyxl.utils import get_column_letter

    handle = open(path, "rb")  # a file object: openpyxl refuses a workbook by its name's extension
    try:
        book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types for a damaged workbook
        handle.close()
        raise InputTableError(f"cannot read this Excel workbook: {exc}", file=shown) from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise InputTableError(
                f"the workbook has no sheet {sheet!r}", file=shown, hint=f"its sheets: {', '.join(book.sheetnames)}"
            )
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header: tuple[Any, ...] | None = None
        header_row = 0
        records: list[tuple[Any, ...]] = []
        numbers: list[int] = []
        for number, row in enumerate(rows, start=1):
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
                continue
            if header is None:
                header, header_row = row, number
                continue
            records.append(row)
            numbers.append(number)
        title = ws.title
    finally:
        book.close()
        handle.close()
    if header is None:
        raise InputTableError(f"sheet {title!r} is empty", file=shown, hint=give_hint("lesion"))
    width = max([len(header)] + [len(r) for r in records])
    names = [_header_name(v) for v in header] + [""] * (width - len(header))
    used = [i for i in range(width) if names[i] or any(i < len(r) and r[i] is not None for r in records)]
    for i in used:
        if not names[i]:
            letter = get_column_letter(i + 1)
            raise InputTableError(
                f"{title}!{letter}{header_row}: a column with values has no name in the header row", file=shown
            )
    frame = pd.DataFrame(
        [[r[i] if i < len(r) else None for i in used] for r in records], columns=[names[i] for i in used], dtype=object
    )
    if not records:
        frame = pd.DataFrame({names[i]: pd.Series(dtype=object) for i in used})
    cells = CellMap(title, {names[i]: get_column_letter(i + 1) for i in used})
    return RawTable(_tidy_cells(frame), np.asarray(numbers, dtype=np.int64), cells=cells)


def _header_name(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# --------------------------------------------------------------------------------------------------
# Cells of typed formats, made alike
# --------------------------------------------------------------------------------------------------


def number_text(value: float) -> str:
    """A number as the shortest text that reads back as the same number (7.0 -> "7")."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _iso(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | dt.datetime):
        if value.tzinfo is None and (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
            return value.strftime("%Y-%m-%d")
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    return value


def iso_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Date and datetime columns as ISO 8601 text (the one date parser reads text)."""
    for column in frame.columns:
        dtype = frame[column].dtype
        if pd.api.types.is_datetime64_any_dtype(dtype):
            values = frame[column]
            frame[column] = pd.Series(
                [None if pd.isna(v) else _iso(v) for v in values], index=frame.index, dtype=object
            ).astype("category")
        elif pd.api.types.is_object_dtype(dtype):
            sample = frame[column].dropna()
            if len(sample) and isinstance(sample.iloc[0], dt.date | dt.time):
                frame[column] = frame[column].map(_iso)
    return frame


def _tidy_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed cells made alike: empty text is missing, dates are ISO text, a column of numbers is float64, a column
    that mixes numbers and text is text (the number written as its shortest exact text), text is categorical."""
    frame = iso_dates(frame.reset_index(drop=True))
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype) or not (
            pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype)
        ):
            continue
        cells = values.to_numpy(dtype=object)
        kinds = {type(v) for v in cells if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if kinds and kinds <= {int, float}:
            frame[column] = values.astype(float)
            continue
        out = np.array(
            [
                None
                if v is None or (isinstance(v, float) and math.isnan(v))
                else ("true" if v else "false")
                if isinstance(v, bool | np.bool_)
                else number_text(float(v))
                if isinstance(v, int | float | np.integer | np.floating)
                else _iso(v)
                if isinstance(v, dt.date | dt.time)
                else (str(v) if str(v) != "" else None)
                for v in cells
            ],
            dtype=object,
        )
        frame[column] = pd.Series(out, index=frame.index, dtype=object).astype("category")
    return frame


def file_size_checked(path: Path, shown: str | Path, rows: str) -> None:
    size = path.stat().st_size
    if size == 0:
        raise InputTableError("file is empty", file=shown, hint=f"expected a header line and one row per {rows}")
    if size > MAX_INPUT_BYTES:
        raise InputTableError(f"file is {size / 1e9:.1f} GB; the limit is {MAX_INPUT_BYTES // 1024**3} GB", file=shown)

"""Trial tables in long format (CSV / Parquet, one row per lesion per timepoint) -> `Tables` + rejected rows.

Columns carry the case-file field names by default (`subject_id`, `timepoint`, `day` or `date`, `lesion_id`,
`kind`, `organ`, `is_lymph_node`, `longest_diameter_mm`, ..., organ and PET fields, `agents`); a small YAML
column map renames an export's columns. Every check is vectorised; a row that fails one is set aside with its
line number, column, value and reason, and the subject it belongs to is set aside with it, so a subject is
never scored on part of its data (a dropped "new lesion" row would hide a PD).
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputTableError, not_utf8_message
from .roles import ResponseScale
from .tables import (
    LESION_SPECS,
    ORGAN_SPECS,
    PET_SPECS,
    TIMEPOINT_SPECS,
    FieldSpec,
    Tables,
    blank_where,
    with_object_strings,
)
from .yamlio import format_loc, line_of, load_yaml

SUBJECT_FIELDS = ("regimen", "agents", "setting", "procedure_day")
VISIT_FIELDS = tuple(TIMEPOINT_SPECS) + tuple(ORGAN_SPECS) + tuple(PET_SPECS)
LESION_FIELDS = tuple(LESION_SPECS)
KEY_COLUMNS = ("subject_id", "timepoint", "lesion_id")
CORE_LESION_FIELDS = ("kind", "organ", "is_lymph_node", "status", "equivocal")
ERROR_COLUMNS = ["file", "line", "subject_id", "timepoint", "lesion_id", "column", "value", "code", "reason"]
MAX_INPUT_BYTES = 20 * 1024**3
TRUE_WORDS = {"true", "t", "yes", "y", "1", "1.0"}
FALSE_WORDS = {"false", "f", "no", "n", "0", "0.0"}
SPECS: dict[str, FieldSpec] = {
    **{k: v for k, v in LESION_SPECS.items()},
    **TIMEPOINT_SPECS,
    **ORGAN_SPECS,
    **PET_SPECS,
    "procedure_day": FieldSpec("procedure_day", "integer", ge=-3650, le=36500),
    "regimen": FieldSpec("regimen", "text"),
    "agents": FieldSpec("agents", "text", description="agents separated by ';'"),
    "setting": FieldSpec("setting", "text", choices=("systemic", "intra_arterial", "ablation")),
}


class Ledger:
    """Every input row of one file, each either still accepted or rejected once, with its reason.

    The ledger is what makes the counts add up: rows read = rows scored + rows rejected, by construction.
    """

    def __init__(self, file: str, lines: np.ndarray, frame: pd.DataFrame, files: np.ndarray | None = None) -> None:
        self.file = file
        self.files = files  # per row, when one logical input spans several files (Dask, a glob)
        self.lines = np.asarray(lines)
        self.frame = frame
        self.bad = np.zeros(len(frame), dtype=bool)
        self.parts: list[pd.DataFrame] = []
        self.malformed = 0

    def add_malformed(self, malformed: pd.DataFrame) -> None:
        """Rows the CSV parser could not split into the header's columns: read, and rejected."""
        if malformed.empty:
            return
        self.malformed += len(malformed)
        subjects = malformed["subject_id"].to_numpy(dtype=object) if "subject_id" in malformed else None
        self.parts.append(
            pd.DataFrame(
                {
                    "file": self.file,
                    "line": malformed["line"].to_numpy(),
                    "subject_id": subjects,
                    "timepoint": None,
                    "lesion_id": None,
                    "column": None,
                    "value": None,
                    "code": "malformed_row",
                    "reason": malformed["reason"].to_numpy(dtype=object),
                }
            )
        )

    def _column(self, name: str) -> np.ndarray | None:
        return self.frame[name].to_numpy(dtype=object) if name in self.frame else None

    def add(self, mask: Any, column: str | None, code: str, reason: Any, values: Any = None) -> None:
        """Reject the rows in `mask` that are not rejected yet (a row keeps its first reason)."""
        mask = np.asarray(mask, dtype=bool) & ~self.bad
        if not mask.any():
            return
        self.bad |= mask

        def pick(arr: Any) -> Any:
            return None if arr is None else np.asarray(arr, dtype=object)[mask]

        if values is None and column and column in self.frame:
            values = self.frame[column].to_numpy(dtype=object)
        self.parts.append(
            pd.DataFrame(
                {
                    "file": self.file if self.files is None else self.files[mask],
                    "line": self.lines[mask],
                    "subject_id": pick(self._column("subject_id")),
                    "timepoint": pick(self._column("timepoint")),
                    "lesion_id": pick(self._column("lesion_id")),
                    "column": column,
                    "value": pick(values),
                    "code": code,
                    "reason": reason[mask] if isinstance(reason, np.ndarray) else reason,
                }
            )
        )

    def set_aside_subjects(self, reasons: Mapping[Any, str], code: str = "subject_set_aside") -> None:
        """Reject every remaining row of the given subjects: one bad row makes the subject unscorable."""
        if not reasons or "subject_id" not in self.frame:
            return
        subjects = self.frame["subject_id"]
        mapped = subjects.map(dict(reasons))
        self.add(mapped.notna().to_numpy(), None, code, mapped.to_numpy(dtype=object))

    def first_rejection_by_subject(self, ignore: Sequence[str] = ()) -> dict[Any, str]:
        """For each subject with a rejected row (other than rows of the `ignore` codes, which are not data errors):
        a reason for setting aside its other rows."""
        if not self.parts or "subject_id" not in self.frame:
            return {}
        table = self.table()
        table = table.loc[table["subject_id"].notna() & ~table["code"].isin(list(ignore))].sort_values(
            "line", kind="stable"
        )
        first = table.drop_duplicates("subject_id")
        return {
            row.subject_id: f"subject set aside: {self.file} line {row.line} was rejected ({row.reason})"
            for row in first.itertuples()
        }

    @property
    def ok(self) -> np.ndarray:
        return ~self.bad

    def table(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=ERROR_COLUMNS)
        return pd.concat(self.parts, ignore_index=True)[ERROR_COLUMNS]

    def counts(self) -> dict[str, dict[str, int]]:
        """rows read / scored / rejected per input file (one logical input may span several files)."""
        if self.files is None:
            return {self.file: _tally(len(self.frame), int(self.bad.sum()) + self.malformed, self.malformed)}
        names, codes = np.unique(self.files.astype(str), return_inverse=True)
        read = np.bincount(codes, minlength=len(names))
        bad = np.bincount(codes, weights=self.bad, minlength=len(names)).astype(np.int64)
        out = {str(name): _tally(int(r), int(b), 0) for name, r, b in zip(names, read, bad, strict=True)}
        if self.malformed:
            out[self.file] = _tally(0, self.malformed, self.malformed)
        return out


def _tally(rows: int, rejected: int, malformed: int) -> dict[str, int]:
    read = rows + malformed
    return {"read": read, "scored": read - rejected, "rejected": rejected}


@dataclass
class ReadResult:
    """Tables built from the accepted rows, and the ledgers of every input file (rejected rows, counts)."""

    tables: Tables
    ledgers: list[Ledger]
    warnings: pd.DataFrame | None = None  # reader-level warnings: subject_id, code, timepoint, lesion_id, message

    def rejected(self) -> pd.DataFrame:
        parts = [ledger.table() for ledger in self.ledgers]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ERROR_COLUMNS)

    def counts(self) -> dict[str, dict[str, int]]:
        return {file: c for ledger in self.ledgers for file, c in ledger.counts().items()}

    def set_aside(self, problems: pd.DataFrame) -> None:
        """Reject the rows of subjects that failed the cross-row checks (see `validate`): the row a problem
        points at gets the problem's own message, the subject's other rows a "set aside" reason."""
        errors = problems.loc[problems["severity"] == "error"]
        if errors.empty:
            return
        first = errors.drop_duplicates("subject_id")
        reasons = {
            subject: (
                f"subject set aside: {source} line {int(line)} was rejected ({message})"
                if pd.notna(line)
                else f"subject set aside: {message}"
            )
            for subject, source, line, message in zip(
                first["subject_id"], first["source"], first["line"], first["message"], strict=True
            )
        }
        for ledger in self.ledgers:
            own = errors.loc[(errors["source"].astype(str) == ledger.file) & errors["line"].notna()]
            own = own.drop_duplicates("line")
            if not own.empty:
                line_index = pd.Index(own["line"].astype(np.int64))
                where = line_index.get_indexer(pd.Index(ledger.lines.astype(np.int64)))
                hit = where >= 0
                messages = blank_where(own["message"].to_numpy(dtype=object)[np.maximum(where, 0)], ~hit)
                codes = blank_where(own["code"].to_numpy(dtype=object)[np.maximum(where, 0)], ~hit)
                for code in pd.unique(codes[hit]):
                    ledger.add(hit & (codes == code), None, str(code), messages)
            ledger.set_aside_subjects(reasons)


@dataclass
class ColumnMap:
    """Column renames (our name -> export's name) and word maps per column (export word -> our word)."""

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)


def load_column_map(path: str | Path | None) -> ColumnMap:
    """Read a column map (`--map`): our column name -> the export's, and per column {their word: our word}.

    Each mistake is reported at its line and key, as in case and rule files."""
    if path is None:
        return ColumnMap()
    data, lines = load_yaml(path)

    def problem(message: str, loc: tuple[Any, ...] = (), hint: str | None = None) -> InputTableError:
        return InputTableError(
            message, file=path, line=line_of(lines, loc) if loc else None, key=format_loc(loc) or None, hint=hint
        )

    if not isinstance(data, dict):
        raise problem("a column map is a YAML mapping: {columns: {our_name: their_name}, values: {...}}")
    for key in data:
        if key not in ("columns", "values"):
            raise problem("unknown key", (key,), "a column map has `columns:` and optionally `values:`")
    columns = data.get("columns") or {}
    values = data.get("values") or {}
    if not isinstance(columns, dict):
        raise problem("`columns:` maps our column name to the export's column name (text to text)", ("columns",))
    known = set(SPECS) | set(KEY_COLUMNS) | set(SUBJECT_FIELDS)
    for ours, theirs in columns.items():
        if not isinstance(ours, str) or not isinstance(theirs, str):
            what = f"not {_kind_of(theirs)}" if isinstance(ours, str) else f"our name {ours!r} is not text"
            raise problem(
                f"`columns:` maps our column name to the export's column name (text to text), {what}",
                ("columns", ours),
            )
        if ours not in known:
            raise problem(f"`{ours}` is not a column this tool reads", ("columns", ours), "see README, 'Long format'")
    if not isinstance(values, dict):
        raise problem("`values:` maps a column to {their word: our word}", ("values",))
    for column, words in values.items():
        if not isinstance(words, dict):
            raise problem("`values:` maps a column to {their word: our word}", ("values", column))
    return ColumnMap(
        {k: v for k, v in columns.items()}, {k: {str(a): str(b) for a, b in v.items()} for k, v in values.items()}
    )


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "yes/no"
    return "a number" if isinstance(value, int | float) else f"{type(value).__name__}"


def _detect_encoding(path: Path, encoding: str) -> str:
    if encoding != "auto":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputTableError(f"unknown encoding {encoding!r}", file=path) from None
        return encoding
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    bom = head.startswith(codecs.BOM_UTF8)
    try:
        head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        whole_file = len(head) < (1 << 16)
        if whole_file or exc.start < len(head) - 4:  # else a character cut by the 64 KB window
            message, line = not_utf8_message(head, exc)
            raise InputTableError(
                message,
                file=path,
                line=line,
                hint="save as UTF-8, or pass --encoding latin-1 (or cp1252) if that is what the file is",
            ) from None
    return "utf-8-sig" if bom else "utf-8"


@dataclass
class RawTable:
    """A file as read: raw cell values (text columns may be categorical), the source line of each row, and the
    lines the CSV parser could not split into the header's columns."""

    frame: pd.DataFrame
    lines: np.ndarray
    malformed: pd.DataFrame  # columns: line, reason
    files: np.ndarray | None = None  # per row, when the rows come from several files


def _check_file(p: Path, path: str | Path, rows: str = "lesion") -> None:
    if not p.exists():
        raise InputTableError("file not found", file=path)
    if p.is_dir():
        raise InputTableError("is a folder; give a CSV or Parquet file", file=path)
    if p.suffix.lower() in (".yaml", ".yml"):
        raise InputTableError(
            "this is a YAML file, not a table",
            file=path,
            hint="a case file is assessed with `crlm-response assess FILE`; tables are CSV or Parquet",
        )
    size = p.stat().st_size
    if size == 0:
        raise InputTableError("file is empty", file=path, hint=f"expected a header line and one row per {rows}")
    if size > MAX_INPUT_BYTES:
        raise InputTableError(f"file is {size / 1e9:.1f} GB; the limit is {MAX_INPUT_BYTES // 1024**3} GB", file=path)


def read_frame(path: str | Path, encoding: str = "auto", rows: str = "lesion") -> RawTable:
    """Read a CSV or Parquet file as raw values, with the source line of each row."""
    p = Path(path)
    _check_file(p, path, rows)
    none = pd.DataFrame({"line": pd.Series(dtype=np.int64), "reason": pd.Series(dtype=object)})
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(p)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise InputTableError(f"cannot read Parquet: {exc}", file=path) from None
        return RawTable(frame.reset_index(drop=True), np.arange(1, len(frame) + 1), none)
    enc = _detect_encoding(p, encoding)
    with open(p, "rb") as handle:
        data = handle.read()
    text_like = enc in ("utf-8", "utf-8-sig")
    if text_like and b"\n\n" not in data.replace(b"\r\n", b"\n"):
        return _read_csv_arrow(p, path, data, none)
    return _read_csv_pandas(p, path, enc, none)


def _read_csv_arrow(p: Path, path: str | Path, data: bytes, none: pd.DataFrame) -> RawTable:
    """Fast path: pyarrow reads every column as dictionary-encoded text (few distinct values per column),
    so later checks and conversions work on the distinct values only."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = data.split(b"\n", 1)[0].decode("utf-8-sig").strip("\r")
    try:
        names = [n.strip().strip('"') for n in next(iter(csv.reader([header])), [])]
    except csv.Error as exc:
        raise InputTableError(f"the header line is not valid CSV: {exc}", file=path) from None
    if not any(names):
        raise InputTableError("file has no header line", file=path)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputTableError(f"column name(s) given twice in the header: {', '.join(dup)}", file=path)
    malformed: list[tuple[int, str, str | None]] = []

    subject_at = names.index("subject_id") if "subject_id" in names else -1

    def skip(row: Any) -> str:
        try:
            fields = next(iter(csv.reader([row.text or ""])), [])
        except csv.Error:
            fields = []
        subject = fields[subject_at].strip() if 0 <= subject_at < len(fields) else None
        malformed.append(
            (
                int(row.number) if row.number is not None else -1,
                f"expected {row.expected_columns} fields, found {row.actual_columns}",
                subject,
            )
        )
        return "skip"

    types = {name: pa.dictionary(pa.int32(), pa.string()) for name in names}

    def parse(threads: bool) -> Any:
        try:
            return pacsv.read_csv(
                p,
                read_options=pacsv.ReadOptions(use_threads=threads),
                parse_options=pacsv.ParseOptions(invalid_row_handler=skip, newlines_in_values=False),
                convert_options=pacsv.ConvertOptions(
                    column_types=types, strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=True
                ),
            )
        except pa.ArrowInvalid as exc:
            raise InputTableError(f"not a valid CSV table: {exc}", file=path) from None

    table = parse(True)
    if malformed:  # row numbers of bad rows are only known when parsing in one thread
        malformed.clear()
        table = parse(False)
    frame = table.to_pandas()
    frame.columns = [str(c).strip() for c in frame.columns]
    # Rows are numbered by the parser from the first data line; skipped rows keep their line numbers.
    # pyarrow numbers rows from 1 at the header line, so a row's number is its line number.
    skipped = np.array(sorted(n for n, _, _ in malformed if n > 0), dtype=np.int64)
    line_numbers = np.arange(2, len(frame) + len(skipped) + 2)
    lines = line_numbers[~np.isin(line_numbers, skipped)] if len(skipped) else line_numbers
    bad = (
        pd.DataFrame(
            {
                "line": [n for n, _, _ in malformed],
                "reason": [f"malformed CSV row: {r}" for _, r, _ in malformed],
                "subject_id": [s for _, _, s in malformed],
            }
        )
        if malformed
        else none
    )
    return RawTable(frame, lines, bad)


def _read_csv_pandas(p: Path, path: str | Path, enc: str, none: pd.DataFrame) -> RawTable:
    """Careful path (blank lines, other encodings): pandas' parser, every cell as text, exact line numbers."""
    try:
        frame = pd.read_csv(
            p,
            encoding=enc,
            skip_blank_lines=False,
            dtype=object,
            keep_default_na=False,
            na_values=[""],
            low_memory=False,
        )
    except UnicodeDecodeError as exc:
        raise InputTableError(
            f"cannot decode the file as {enc}: {exc.reason} at byte {exc.start}",
            file=path,
            hint="pass --encoding with the file's real encoding (e.g. latin-1)",
        ) from None
    except pd.errors.EmptyDataError:
        raise InputTableError("file has no header line", file=path) from None
    except pd.errors.ParserError as exc:
        raise InputTableError(f"not a valid CSV table: {exc}", file=path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    lines = np.arange(2, len(frame) + 2)
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    return RawTable(frame, lines, none)


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Integer codes (-1 = missing) and the distinct values of a column."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), pd.Series(values.cat.categories.to_numpy(dtype=object), dtype=object)
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    return codes, pd.Series(uniques, dtype=object)


def _per_unique(values: pd.Series, func: Any) -> pd.Series:
    """Apply a text function to each distinct value once (columns hold few distinct words)."""
    codes, uniques = _codes(values)
    mapped = np.asarray(func(uniques), dtype=object)
    out = np.full(len(values), None, dtype=object)
    ok = codes >= 0
    out[ok] = mapped[codes[ok]]
    return pd.Series(out, index=values.index, dtype=object)


def _normalise_words(values: pd.Series, column: str) -> pd.Series:
    def normalise(text: pd.Series) -> pd.Series:
        text = text.astype(str).str.strip()
        if column == "modality":
            upper = text.str.upper().str.replace("_", "-").str.replace(" ", "-")
            return upper.replace({"PET": "PET-CT", "PETCT": "PET-CT", "PET/CT": "PET-CT", "MR": "MRI"})
        return text.str.lower().str.replace("-", "_").str.replace(" ", "_")

    return _per_unique(values, normalise)


Columns = dict[str, np.ndarray]


def convert_columns(frame: pd.DataFrame, rejects: Ledger, specs: Mapping[str, FieldSpec]) -> Columns:
    """Check and convert every known column (vectorised, per distinct value where possible); a bad cell rejects
    its row. Returns engine-typed arrays: numbers and yes/no as float64 (NaN = missing), words as objects
    (None = missing), dates as datetime64."""
    out: Columns = {}
    n = len(frame)
    for column in frame.columns:
        spec = specs.get(column)
        if spec is None:
            continue
        raw = frame[column]
        present = raw.notna().to_numpy()
        if not present.any():
            out[column] = (
                np.full(n, np.nan)
                if spec.kind in ("number", "integer", "bool", "list")
                else np.full(n, None, dtype=object)
            )
            continue
        if spec.kind in ("number", "integer"):
            values = _numbers(raw).to_numpy()
            if raw.dtype == object or isinstance(raw.dtype, pd.CategoricalDtype):
                # "NaN" is how pandas, numpy and many exports write a missing number: missing, like an empty cell.
                present = present & ~_per_unique(
                    raw, lambda u: u.astype(str).str.strip().str.lower() == "nan"
                ).to_numpy(dtype=bool)
            rejects.add(present & np.isnan(values), column, "not_a_number", f"{column} must be a number")
            rejects.add(present & np.isinf(values), column, "not_finite", f"{column} must be a finite number")
            if spec.kind == "integer":
                with np.errstate(invalid="ignore"):
                    rejects.add(
                        present & np.isfinite(values) & (np.floor(values) != values),
                        column,
                        "not_integer",
                        f"{column} must be a whole number",
                    )
            _bounds(rejects, values, spec, column)
            out[column] = values
        elif spec.kind == "bool":
            words = _per_unique(raw, lambda u: u.astype(str).str.strip().str.lower())
            yes = words.isin(TRUE_WORDS).to_numpy()
            no = words.isin(FALSE_WORDS).to_numpy()
            rejects.add(present & ~yes & ~no, column, "not_yes_no", f"{column} must be true/false (yes/no, 1/0)")
            out[column] = np.where(yes, 1.0, np.where(no, 0.0, np.nan))
        elif spec.kind == "date":
            codes, uniques = _codes(raw)
            parsed = pd.to_datetime(uniques, errors="coerce", format="ISO8601").to_numpy()
            stamps = np.full(n, np.datetime64("NaT"), dtype=parsed.dtype if len(parsed) else "datetime64[ns]")
            stamps[codes >= 0] = parsed[codes[codes >= 0]]
            rejects.add(
                present & np.isnat(stamps), column, "bad_date", f"{column} must be a real date written YYYY-MM-DD"
            )
            out[column] = stamps
        elif spec.kind == "list":
            parts = raw.astype(str).str.replace(",", ";").str.split(";")
            exploded = pd.to_numeric(parts.explode().str.strip(), errors="coerce")
            sums = exploded.groupby(level=0).sum(min_count=1)
            any_bad = exploded.isna().groupby(level=0).any()
            negative = (exploded < 0).groupby(level=0).any()
            bad = present & (
                any_bad.reindex(raw.index, fill_value=False).to_numpy()
                | negative.reindex(raw.index, fill_value=False).to_numpy()
            )
            rejects.add(bad, column, "bad_list", f"{column} must be numbers >= 0 separated by ';'")
            out[column] = sums.reindex(raw.index).to_numpy(dtype=float)
        elif spec.choices:
            words = _normalise_words(raw, column)
            ok = words.isin(spec.choices).to_numpy()
            rejects.add(present & ~ok, column, "not_allowed", f"{column} must be one of: {', '.join(spec.choices)}")
            out[column] = words.to_numpy(dtype=object)
        elif column == "organ":
            out[column] = _normalise_words(raw, column).to_numpy(dtype=object)
        else:
            out[column] = _per_unique(raw, lambda u: u.astype(str)).to_numpy(dtype=object)
    for key in KEY_COLUMNS:
        if key in frame:
            out[key] = _key_text(frame[key])
    return out


def _key_text(values: pd.Series) -> np.ndarray:
    """Ids as plain text: 007 stays 007, a number from Parquet becomes its shortest text, missing is None."""
    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
        return _per_unique(values, lambda u: u.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))).to_numpy(
            dtype=object
        )
    return _per_unique(values, lambda u: u.astype(str).str.strip()).to_numpy(dtype=object)


def _numbers(raw: pd.Series) -> pd.Series:
    """Numbers from a column of numbers or text (text that is not a number becomes NaN)."""
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype(float)
    codes, uniques = _codes(raw)
    parsed = pd.to_numeric(uniques.astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
    out = np.full(len(raw), np.nan)
    ok = codes >= 0
    out[ok] = parsed[codes[ok]]
    return pd.Series(out, index=raw.index)


def _bounds(rejects: Ledger, values: np.ndarray, spec: FieldSpec, column: str) -> None:
    with np.errstate(invalid="ignore"):
        if spec.ge is not None:
            rejects.add(values < spec.ge, column, "out_of_range", f"{column} must be >= {spec.ge:g}")
        if spec.gt is not None:
            rejects.add(values <= spec.gt, column, "out_of_range", f"{column} must be > {spec.gt:g}")
        if spec.le is not None:
            rejects.add(
                values > spec.le,
                column,
                "out_of_range",
                f"{column} must be <= {spec.le:g} (a larger value is a typing or unit mistake)",
            )


def _apply_map(frame: pd.DataFrame, mapping: ColumnMap, file: str) -> pd.DataFrame:
    renames = {theirs: ours for ours, theirs in mapping.columns.items()}
    missing = [theirs for theirs in renames if theirs not in frame.columns]
    if missing:
        raise InputTableError(
            f"column(s) named in the column map are not in the file: {', '.join(missing)}",
            file=file,
            hint=f"the file has: {', '.join(map(str, frame.columns[:30]))}",
        )
    frame = frame.rename(columns=renames)
    for column, words in mapping.values.items():
        if column in frame:
            frame[column] = _per_unique(frame[column], lambda u, _w=words: u.map(lambda v: _w.get(str(v), v)))
    return frame


def _group_ids(*keys: np.ndarray) -> np.ndarray:
    """Integer group ids for rows sharing the same key values (missing keys are a group of their own)."""
    gid = np.zeros(len(keys[0]), dtype=np.int64)
    for key in keys:
        codes = pd.factorize(key, use_na_sentinel=False)[0].astype(np.int64)
        gid = gid * (int(codes.max()) + 1 if len(codes) else 1) + codes
    return pd.factorize(gid)[0].astype(np.int64)


def _subject_conflicts(cols: Columns, columns: tuple[str, ...], gid: np.ndarray, rejects: Ledger, what: str) -> None:
    """Values that must be the same on every row of a subject (treatment) or of a visit (day, organs)."""
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    for column in columns:
        values = cols.get(column)
        if values is None:
            continue
        if values.dtype.kind == "M":
            numbers = values.astype("datetime64[D]").astype(np.int64).astype(float)
            numbers[np.isnat(values)] = np.nan
        elif values.dtype == object:
            numbers = pd.factorize(values)[0].astype(float)
            numbers[numbers < 0] = np.nan
        else:
            numbers = values.astype(float)
        keep = ~np.isnan(numbers) & ~rejects.bad
        if not keep.any():
            continue
        low = np.full(n_groups, np.inf)
        high = np.full(n_groups, -np.inf)
        np.minimum.at(low, gid[keep], numbers[keep])
        np.maximum.at(high, gid[keep], numbers[keep])
        clash = (low < high)[gid] & ~np.isnan(numbers)
        rejects.add(
            clash,
            column,
            "inconsistent_" + what,
            f"{column} differs between rows of the same {what}; it must be the same on every row",
        )


def _first_per_group(values: np.ndarray, gid: np.ndarray, first_rows: np.ndarray) -> np.ndarray:
    """For each group, its first non-missing value (groups numbered 0..n-1, `first_rows` = a row of each)."""
    missing = pd.isna(values)
    if not missing.any():
        return values[first_rows]
    order = np.lexsort((missing, gid))
    sorted_gid = gid[order]
    starts = order[np.r_[True, sorted_gid[1:] != sorted_gid[:-1]]] if len(order) else order
    return values[starts]


def check_long_columns(raw: pd.DataFrame, file: str) -> pd.DataFrame:
    """The required columns of the long format, before any work."""
    if "lesion_id" not in raw and "id" in raw:
        raw = raw.rename(columns={"id": "lesion_id"})
    missing = [c for c in ("subject_id", "timepoint") if c not in raw]
    if "day" not in raw and "date" not in raw:
        missing.append("day or date")
    if "lesion_id" not in raw:
        missing.append("lesion_id")
    if missing:
        raise InputTableError(
            f"missing required column(s): {', '.join(missing)}",
            file=file,
            hint=f"the file has: {', '.join(map(str, raw.columns[:30]))}; map other names with --map",
        )
    return raw


@with_object_strings
def read_long(
    path: str | Path, column_map: ColumnMap | None = None, organs: str | Path | None = None, encoding: str = "auto"
) -> ReadResult:
    """Read a long-format lesion table (and optionally a separate organ table) into `Tables`."""
    mapping = column_map or ColumnMap()
    file = str(path)
    table = read_frame(path, encoding)
    raw = check_long_columns(_apply_map(table.frame, mapping, file), file)
    if len(raw) == 0 and table.malformed.empty:
        raise InputTableError("file has a header but no rows", file=file)
    organ_raw = None
    if organs is not None:
        organ_table = read_frame(organs, encoding)
        organ_raw = RawTable(
            _apply_map(organ_table.frame, mapping, str(organs)), organ_table.lines, organ_table.malformed
        )
    return long_from_frames(
        RawTable(raw, table.lines, table.malformed), file, organ_raw, str(organs) if organs is not None else None
    )


@with_object_strings
def long_from_frames(
    lesions: RawTable, file: str, organs: RawTable | None = None, organs_file: str | None = None
) -> ReadResult:
    """Check and convert raw long-format rows (a whole file, or a subject-complete chunk of one) into tables.

    The same function serves a whole file, the bounded-memory chunks and the Dask partitions."""
    raw, lines = lesions.frame, lesions.lines
    ledger = Ledger(file, lines, raw, lesions.files)
    ledger.add_malformed(lesions.malformed)
    cols = convert_columns(raw, ledger, SPECS)
    for key in ("subject_id", "timepoint"):
        ledger.add(pd.isna(cols[key]), key, "missing_key", f"{key} is empty")
    subject_gid = _group_ids(cols["subject_id"])
    visit_gid = _group_ids(cols["subject_id"], cols["timepoint"])
    _subject_conflicts(cols, SUBJECT_FIELDS, subject_gid, ledger, "subject")
    _subject_conflicts(cols, VISIT_FIELDS, visit_gid, ledger, "timepoint")
    ledger.set_aside_subjects(ledger.first_rejection_by_subject())
    ledgers = [ledger]
    ok = ledger.ok
    kept = {k: v[ok] for k, v in cols.items()}
    organ_frame = None
    if organs is not None:
        organ_frame, organ_ledger = _organ_rows(organs, organs_file or "organs", kept, ledger)
        ledgers.append(organ_ledger)
    tables = _build_tables(kept, lines[ok], organ_frame, file)
    return ReadResult(tables, ledgers, _several_files(cols["subject_id"], lesions.files, ok))


def _several_files(subjects: np.ndarray, files: np.ndarray | None, ok: np.ndarray) -> pd.DataFrame | None:
    """A subject whose rows come from more than one input file: allowed (exports split by date), but worth a look
    (a duplicated export would double its rows)."""
    if files is None or not ok.any():
        return None
    frame = pd.DataFrame({"s": subjects[ok], "f": files[ok]}).drop_duplicates()
    counts = frame.groupby("s")["f"].agg(lambda f: sorted(map(str, f)))
    several = counts[counts.map(len) > 1]
    if several.empty:
        return None
    return pd.DataFrame(
        {
            "subject_id": several.index.to_numpy(dtype=object),
            "code": "subject_in_several_files",
            "timepoint": None,
            "lesion_id": None,
            "message": [
                "rows of this subject come from "
                + ", ".join(Path(f).name for f in files_)
                + "; check the files are not duplicate exports"
                for files_ in several
            ],
            "severity": "warning",
        }
    )


def _organ_rows(
    organs: RawTable, file: str, lesion_rows: Columns, lesion_ledger: Ledger
) -> tuple[pd.DataFrame, Ledger]:
    raw, lines = organs.frame, organs.lines
    missing = [c for c in ("subject_id", "timepoint") if c not in raw]
    if missing:
        raise InputTableError(f"missing required column(s): {', '.join(missing)}", file=file)
    ledger = Ledger(file, lines, raw)
    ledger.add_malformed(organs.malformed)
    cols = convert_columns(raw, ledger, {**TIMEPOINT_SPECS, **ORGAN_SPECS, **PET_SPECS})
    subjects, timepoints = cols["subject_id"], cols["timepoint"]
    pairs = pd.Series(subjects, dtype=object) + "\x1f" + pd.Series(timepoints, dtype=object)
    ledger.add(
        pairs.duplicated(keep="first").to_numpy(),
        "timepoint",
        "duplicate_row",
        "a second organ row for the same subject and timepoint",
    )
    set_aside = set(lesion_ledger.table()["subject_id"].dropna())
    ledger.add(
        np.isin(subjects, list(set_aside)) if set_aside else np.zeros(len(raw), dtype=bool),
        "subject_id",
        "subject_set_aside",
        "subject set aside in the lesion file",
    )
    known_subjects = set(pd.unique(lesion_rows["subject_id"]))
    ledger.add(
        ~np.isin(subjects, list(known_subjects)), "subject_id", "unknown_subject", "subject is not in the lesion file"
    )
    known_pairs = set(
        (
            pd.Series(lesion_rows["subject_id"], dtype=object)
            + "\x1f"
            + pd.Series(lesion_rows["timepoint"], dtype=object)
        ).unique()
    )
    ledger.add(
        ~pairs.isin(known_pairs).to_numpy(),
        "timepoint",
        "unknown_timepoint",
        "this subject has no such timepoint in the lesion file",
    )
    frame = pd.DataFrame({k: v for k, v in cols.items()})
    frame["_ok"] = ledger.ok
    return frame, ledger


def _build_tables(cols: Columns, lines: np.ndarray, organs: pd.DataFrame | None, file: str) -> Tables:
    n = len(lines)
    subject_gid = _group_ids(cols["subject_id"]) if n else np.zeros(0, dtype=np.int64)
    visit_gid = _group_ids(cols["subject_id"], cols["timepoint"]) if n else np.zeros(0, dtype=np.int64)
    _, subject_first = np.unique(subject_gid, return_index=True)
    _, visit_first = np.unique(visit_gid, return_index=True)

    def per_subject(name: str, default: Any) -> np.ndarray:
        if name not in cols:
            return np.full(len(subject_first), default, dtype=object if not isinstance(default, float) else float)
        return _first_per_group(cols[name], subject_gid, subject_first)

    subjects = pd.DataFrame(
        {
            "subject_id": cols["subject_id"][subject_first],
            "regimen": per_subject("regimen", None),
            "agents": _agents(pd.Series(per_subject("agents", ""), dtype=object)),
            "setting": per_subject("setting", "systemic"),
            "procedure_day": per_subject("procedure_day", np.nan).astype(float),
            "source": file,
            "line": lines[subject_first],
        },
        copy=False,
    )
    visits_cols: dict[str, Any] = {
        "subject_id": cols["subject_id"][visit_first],
        "timepoint": cols["timepoint"][visit_first],
    }
    for column in VISIT_FIELDS:
        if column in cols:
            visits_cols[column] = _first_per_group(cols[column], visit_gid, visit_first)
        elif column in ("day", "date"):
            visits_cols[column] = (
                np.full(len(visit_first), np.nan) if column == "day" else np.full(len(visit_first), None, dtype=object)
            )
    visits_cols["source"] = file
    visits_cols["line"] = lines[visit_first]
    visits = pd.DataFrame(visits_cols, copy=False)
    if organs is not None:
        visits = _merge_organs(visits, organs)
    has_lesion = ~pd.isna(cols["lesion_id"])
    lesion_cols: dict[str, Any] = {key: cols[key][has_lesion] for key in KEY_COLUMNS}
    n_lesions = int(has_lesion.sum())
    for column in LESION_SPECS:
        target = "fragments_sum_mm" if column == "fragments_mm" else column
        if column in cols:
            lesion_cols[target] = cols[column][has_lesion]
        elif column in CORE_LESION_FIELDS:  # the engine reads absent optional fields as missing on its own
            lesion_cols[target] = (
                np.full(n_lesions, np.nan)
                if SPECS[column].kind in ("number", "integer", "bool", "list")
                else np.full(n_lesions, None, dtype=object)
            )
    lesion_cols["equivocal"] = np.nan_to_num(lesion_cols["equivocal"].astype(float), nan=0.0)
    status = lesion_cols["status"]
    lesion_cols["status"] = np.where(pd.isna(status), "present", status)
    lesion_cols["source"] = file
    lesion_cols["line"] = lines[has_lesion]
    return Tables(subjects=subjects, visits=visits, lesions=pd.DataFrame(lesion_cols, copy=False))


def _agents(values: pd.Series) -> np.ndarray:
    def tidy(text: pd.Series) -> pd.Series:
        parts = text.fillna("").astype(str).str.lower().str.replace(",", ";").str.split(";")
        return parts.map(lambda items: ";".join(p.strip() for p in items if p.strip()))

    return _per_unique(values, tidy).fillna("").to_numpy(dtype=object)


def _merge_organs(visits: pd.DataFrame, organs: pd.DataFrame) -> pd.DataFrame:
    ok = organs.loc[organs["_ok"]]
    columns = [c for c in VISIT_FIELDS if c in ok and c not in ("day", "date")]
    merged = visits.merge(
        ok[["subject_id", "timepoint"] + columns], on=["subject_id", "timepoint"], how="left", suffixes=("", "_organ")
    )
    for column in columns:
        if column + "_organ" in merged:
            merged[column] = merged[column].where(merged[column].notna(), merged[column + "_organ"])
            merged = merged.drop(columns=[column + "_organ"])
    return merged


# How files spell the two roles no criteria paper abbreviates the same way everywhere.
ROLE_PHRASES = {"not_evaluable": "NOT EVALUABLE", "not_done": "NOT DONE"}


def response_aliases(scale: ResponseScale) -> dict[str, str]:
    """Upper-case spellings of a set's per-visit response words -> the set's word: each ranked word and the
    not-done word; a word with a slash also with spaces around it, or with its hyphens as spaces or dropped
    (NON-CR / NON-PD, NON CR/NON PD, NONCR/NONPD); and the phrases NOT EVALUABLE and NOT DONE."""
    aliases: dict[str, str] = {}
    words = list(scale.ranking) + [w for w in [scale.word("not_done")] if w is not None]
    for word in words:
        upper = word.upper()
        spellings = {upper}
        if "/" in upper:
            spellings |= {upper.replace("/", " / "), upper.replace("-", " "), upper.replace("-", "")}
        for spelling in spellings:
            aliases.setdefault(spelling, word)
    for role, phrase in ROLE_PHRASES.items():
        role_word = scale.word(role)
        if role_word is not None:
            aliases.setdefault(phrase, role_word)
    return aliases


@dataclass
class Responses:
    """Per-visit responses ready for `bor.best_overall_response`, and the ledger of the input rows."""

    frame: pd.DataFrame  # subject_id, day, response (+ reader columns for RS / ADRS input)
    ledger: Ledger
    source_kind: str  # "simple", "sdtm_rs" or "adam_adrs"


@with_object_strings
def read_responses(
    path: str | Path,
    scale: ResponseScale,
    reference_date: str | None = None,
    encoding: str = "auto",
    column_map: ColumnMap | None = None,
) -> Responses:
    """Per-visit responses from a simple CSV (subject_id, day or date, response), SDTM RS (OVRLRESP rows) or
    ADaM ADRS (PARAMCD OVR rows), in the words of `scale` (see `response_aliases`). Dates need a reference date
    (option or `reference_date` column)."""
    file = str(path)
    table = read_frame(path, encoding, rows="visit")
    raw = _apply_map(table.frame, column_map or ColumnMap(), file)
    if len(raw) == 0 and table.malformed.empty:
        raise InputTableError("file has a header but no rows", file=file)
    upper = {c.upper(): c for c in raw.columns}
    if "RSTESTCD" in upper:
        kind, test_col, subject_cols, response_col = (
            "sdtm_rs",
            upper["RSTESTCD"],
            ["USUBJID", "RSEVAL", "RSEVALID"],
            upper.get("RSSTRESC", upper.get("RSORRES")),
        )
        day_col, date_col, keep_value = upper.get("RSDY"), upper.get("RSDTC"), "OVRLRESP"
    elif "PARAMCD" in upper:
        kind, test_col, subject_cols, response_col = "adam_adrs", upper["PARAMCD"], ["USUBJID"], upper.get("AVALC")
        day_col, date_col, keep_value = upper.get("ADY"), upper.get("ADT"), "OVR"
    else:
        kind, test_col, subject_cols, response_col = (
            "simple",
            None,
            ["subject_id"],
            "response" if "response" in raw else None,
        )
        day_col = "day" if "day" in raw else None
        date_col, keep_value = ("date" if "date" in raw else None), None
    missing = [c for c in subject_cols[:1] if (upper.get(c.upper()) if kind != "simple" else c) not in raw]
    if response_col is None:
        missing.append("response")
    if day_col is None and date_col is None:
        missing.append("day or date")
    if missing:
        raise InputTableError(
            f"missing required column(s): {', '.join(missing)}",
            file=file,
            hint="a visits table has subject_id, day (or date + reference date) and response; "
            "SDTM RS and ADaM ADRS are recognised by RSTESTCD / PARAMCD",
        )
    frame = raw
    if kind == "simple":
        subject = _text_column(frame, "subject_id")
        reader = pd.Series([""] * len(frame), dtype=object)
    else:
        subject = _text_column(frame, upper["USUBJID"])
        parts = [_text_column(frame, upper[c]) for c in subject_cols[1:] if c in upper]
        reader = pd.Series([""] * len(frame), dtype=object)
        for part in parts:
            reader = reader.where(part == "", reader + "|" + part).str.lstrip("|")
    view = pd.DataFrame({"subject_id": subject.to_numpy(dtype=object), "timepoint": None, "lesion_id": None})
    ledger = Ledger(file, table.lines, view)
    ledger.add_malformed(table.malformed)
    if test_col is not None:
        ledger.add(
            (_text_column(frame, test_col).str.upper() != keep_value).to_numpy(),
            test_col,
            "not_used",
            f"only {keep_value} rows carry the per-visit overall response",
        )
    ledger.add((subject == "").to_numpy(), "subject_id", "missing_key", "subject is empty")
    assert response_col is not None  # checked with the required columns above
    written = _text_column(frame, response_col)
    words = written.str.upper().str.replace(r"\s+", " ", regex=True)
    aliases = response_aliases(scale)
    response = words.map(aliases)
    response = response.where(words != "", None)
    allowed = ", ".join(dict.fromkeys(aliases.values()))
    ledger.add(
        (words != "").to_numpy() & response.isna().to_numpy(),
        response_col,
        "not_allowed",
        f"response must be one of {allowed} or empty",
        values=written.to_numpy(dtype=object),
    )
    day = _numbers(frame[day_col]).to_numpy() if day_col is not None else np.full(len(frame), np.nan)
    if day_col is not None:
        day_text = _text_column(frame, day_col)
        ledger.add(
            (day_text != "").to_numpy() & np.isnan(day),
            day_col,
            "not_a_number",
            f"{day_col} must be a number",
            values=day_text.to_numpy(dtype=object),
        )
    if kind in ("sdtm_rs", "adam_adrs") and day_col is not None:
        day = np.where(day > 0, day - 1, day)  # RSDY / ADY: study day 1 is the reference day (there is no day 0)
    if date_col is not None and np.isnan(day).any():
        dates = pd.to_datetime(
            _text_column(frame, date_col).where(lambda s: s.str.len() >= 10, None), errors="coerce", format="ISO8601"
        )
        ref_text = _text_column(frame, "reference_date") if "reference_date" in frame else None
        if ref_text is not None:
            refs = pd.to_datetime(ref_text.where(ref_text != "", None), errors="coerce", format="ISO8601")
        elif reference_date is not None:
            try:
                refs = pd.Series(pd.Timestamp(reference_date), index=frame.index)
            except ValueError:
                raise InputTableError(f"reference date {reference_date!r} is not a date (YYYY-MM-DD)") from None
        else:
            refs = None
        if refs is not None:
            from_dates = (dates - refs).dt.days.to_numpy(dtype=float)
            day = np.where(np.isnan(day), from_dates, day)
        elif kind == "simple" and day_col is None:
            raise InputTableError(
                "dates need a reference date: pass --reference-date or add a reference_date column", file=file
            )
    ledger.add(
        np.isnan(day) & response.notna().to_numpy(),
        day_col or date_col,
        "no_day",
        "no day: give day, or a complete date with a reference date",
    )
    visit = pd.DataFrame(
        {"subject": subject.to_numpy(dtype=object), "reader": reader.to_numpy(dtype=object), "day": day}
    )
    candidates = ledger.ok & ~np.isnan(day)
    same_day = np.zeros(len(visit), dtype=bool)
    same_day[candidates] = visit.loc[candidates].duplicated(keep=False).to_numpy()
    if same_day.any():
        ledger.add(
            same_day,
            day_col or date_col,
            "duplicate",
            "two responses for this subject on the same day; keep one (a corrected read replaces the old one)",
            values=np.array([f"day {d:g}" for d in day], dtype=object),
        )
    # As in the lesion table: a visit that cannot be read could have been the PD, so its subject is not scored.
    ledger.set_aside_subjects(ledger.first_rejection_by_subject(ignore=("not_used",)))
    out = pd.DataFrame(
        {
            "subject_id": subject.to_numpy(dtype=object),
            "reader": reader.to_numpy(dtype=object),
            "day": day,
            "response": response.to_numpy(dtype=object),
        }
    )
    return Responses(out.loc[ledger.ok].reset_index(drop=True), ledger, kind)


def _text_column(frame: pd.DataFrame, column: str) -> pd.Series:
    values = frame[column]
    arr = values.to_numpy(dtype=object)
    text = pd.Series(np.where(pd.isna(arr), "", arr), dtype=object).astype(str).str.strip()
    return text

"""Trial tables in long format (one row per lesion per timepoint) -> `Tables` + rejected rows.

Columns carry the case-file field names by default (`subject_id`, `timepoint`, `day` or `date`, `lesion_id`,
`kind`, `organ`, `is_lymph_node`, `longest_diameter_mm`, ..., organ and PET fields, `agents`); a small YAML
column map renames an export's columns. Files are read by `sources` (any table format, every engine); here each
block is checked and converted, vectorised: a row that fails a check is set aside with its line number, column,
value and reason, and the subject it belongs to is set aside with it, so a subject is never scored on part of
its data (a dropped "new lesion" row would hide a PD).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputTableError
from .formats import CellMap, RawTable
from .roles import ResponseScale
from .sources import (
    ColumnMap,
    MappedSource,
    SourceOptions,
    codes_of,
    key_codes,
    key_text,
    open_source,
    parse_date_ranges,
    parse_dates,
    per_unique,
    prepare,
    read_table,
    recode,
    require_long_columns,
    require_rows,
    unknown_columns,
    value_mask,
    whole,
)
from .sources import load_column_map as _load_column_map
from .tables import (
    LESION_SPECS,
    ORGAN_SPECS,
    PET_SPECS,
    TIMEPOINT_SPECS,
    TREATMENT_SPECS,
    FieldSpec,
    Tables,
    blank_where,
    from_codes,
    object_values,
    text_codes,
    with_object_strings,
)

SUBJECT_FIELDS = ("regimen", "agents", "setting", "procedure_day")
VISIT_FIELDS = tuple(TIMEPOINT_SPECS) + tuple(ORGAN_SPECS) + tuple(PET_SPECS)
LESION_FIELDS = tuple(LESION_SPECS)
KEY_COLUMNS = ("subject_id", "timepoint", "lesion_id")
CORE_LESION_FIELDS = ("kind", "organ", "is_lymph_node", "status", "equivocal")
ERROR_COLUMNS = ["file", "line", "subject_id", "timepoint", "lesion_id", "column", "value", "code", "reason"]
TRUE_WORDS = {"true", "t", "yes", "y", "1", "1.0"}
FALSE_WORDS = {"false", "f", "no", "n", "0", "0.0"}
MAX_DAYS = 36500  # a hundred years of follow-up
MAX_NUMBER_CHARS = 100  # "1" followed by 5,000 digits is not a measurement (and Python refuses to parse it)
SPECS: dict[str, FieldSpec] = {
    **{k: v for k, v in LESION_SPECS.items()},
    **TIMEPOINT_SPECS,
    **ORGAN_SPECS,
    **PET_SPECS,
    # The treatment fields of the case model; in a table the agents are one text cell ("a;b").
    **{k: dataclasses.replace(v, kind="text") if k == "agents" else v for k, v in TREATMENT_SPECS.items()},
    # Who the rows belong to, for ADaM: the study (STUDYID) and the reader (RSEVAL / RSEVALID).
    "study_id": FieldSpec("study_id", "text", description="study identifier (ADaM STUDYID)"),
    "STUDYID": FieldSpec("STUDYID", "text", description="study identifier, as CDISC names it"),
    "evaluator": FieldSpec("evaluator", "text", description="who read the scans, e.g. INVESTIGATOR (RSEVAL)"),
    "reader": FieldSpec("reader", "text", description="which reader, e.g. RADIOLOGIST 1 (RSEVALID)"),
}
# Columns that name a subject's reader stream: rows of one subject with other values are another stream.
READER_FIELDS = ("evaluator", "reader")
LONG_COLUMNS = set(SPECS) | set(KEY_COLUMNS) | set(SUBJECT_FIELDS)
ORGAN_COLUMNS = {"subject_id", "timepoint"} | set(TIMEPOINT_SPECS) | set(ORGAN_SPECS) | set(PET_SPECS)
_codes, _per_unique, _key_text = codes_of, per_unique, key_text

__all__ = ["ColumnMap", "RawTable", "SourceOptions"]


def load_column_map(path: str | Path | None) -> ColumnMap:
    """Read a column map (`--map`) for long-format tables (see `sources.load_column_map`)."""
    return _load_column_map(path, LONG_COLUMNS)


def read_frame(path: str | Path, encoding: str = "auto", rows: str = "lesion") -> RawTable:
    """A whole table file as raw cells with the source line of each row (any format `sources` reads)."""
    return read_table(path, SourceOptions(encoding=encoding), rows)


class Ledger:
    """Every input row of one file, each either still accepted or rejected once, with its reason.

    The ledger is what makes the counts add up: rows read = rows scored + rows rejected, by construction.
    """

    def __init__(
        self,
        file: str,
        lines: np.ndarray,
        frame: pd.DataFrame,
        files: np.ndarray | None = None,
        cells: CellMap | Mapping[str, CellMap] | None = None,
    ) -> None:
        self.file = file
        self.files = files  # per row, when one logical input spans several files (Dask, a glob)
        # spreadsheets (by file): messages about a cell name it (Sheet1!C7)
        self.cells: Mapping[str, CellMap] = {file: cells} if isinstance(cells, CellMap) else (cells or {})
        self.lines = np.asarray(lines)
        self.frame = frame
        self.bad = np.zeros(len(frame), dtype=bool)
        self.parts: list[pd.DataFrame] = []
        self.malformed_files: list[np.ndarray] = []

    @property
    def malformed(self) -> int:
        return sum(len(f) for f in self.malformed_files)

    def add_malformed(self, malformed: pd.DataFrame) -> None:
        """Rows the parser could not split into the header's columns: read, and rejected."""
        if malformed.empty:
            return
        files = (
            malformed["file"].to_numpy(dtype=object)
            if "file" in malformed
            else np.full(len(malformed), self.file, dtype=object)
        )
        self.malformed_files.append(files)
        subjects = malformed["subject_id"].to_numpy(dtype=object) if "subject_id" in malformed else None
        self.parts.append(
            pd.DataFrame(
                {
                    "file": files,
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

    def _column(self, name: str, rows: np.ndarray) -> np.ndarray | None:
        """The cells of one column on the given rows, as written (text), or None without such a column."""
        return self.frame[name].iloc[rows].to_numpy(dtype=object) if name in self.frame else None

    def add(self, mask: Any, column: str | None, code: str, reason: Any, values: Any = None) -> None:
        """Reject the rows in `mask` that are not rejected yet (a row keeps its first reason)."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():  # the usual case, settled without a pass over the rows already rejected
            return
        mask = mask & ~self.bad
        if not mask.any():
            return
        self.bad |= mask
        rows = np.flatnonzero(mask)
        if values is not None:
            shown = np.asarray(values, dtype=object)[mask]
        else:
            shown = self._column(column, rows) if column else None
        if self.cells and column:
            reason = self._at_cells(mask, column, reason)
        self.parts.append(
            pd.DataFrame(
                {
                    "file": self.file if self.files is None else self.files[mask],
                    "line": self.lines[mask],
                    "subject_id": self._column("subject_id", rows),
                    "timepoint": self._column("timepoint", rows),
                    "lesion_id": self._column("lesion_id", rows),
                    "column": column,
                    "value": shown,
                    "code": code,
                    "reason": reason[mask] if isinstance(reason, np.ndarray) else reason,
                }
            )
        )

    def _at_cells(self, mask: np.ndarray, column: str, reason: Any) -> Any:
        """Reasons prefixed with each cell's address (`Sheet1!C7: ...`) for rows from a spreadsheet."""
        texts = np.broadcast_to(np.asarray(reason, dtype=object), mask.shape)
        located = np.array(texts, dtype=object)
        for i in np.flatnonzero(mask):
            cells = self.cells.get(str(self.files[i]) if self.files is not None else self.file)
            if cells is not None and column in cells.letters:
                located[i] = f"{cells.sheet}!{cells.letters[column]}{self.lines[i]}: {texts[i]}"
        return located

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
        table = pd.concat(self.parts, ignore_index=True)[ERROR_COLUMNS]
        for column in ("subject_id", "timepoint", "lesion_id", "value"):
            values = table[column]
            damaged = values.astype(object).str.contains("\x00", regex=False, na=False).to_numpy(dtype=bool)
            if damaged.any():  # a NUL byte is shown, not written: it would cut the errors file short for many readers
                table.loc[damaged, column] = values[damaged].str.replace("\x00", "\\x00", regex=False)
        return table

    def counts(self) -> dict[str, dict[str, int]]:
        """rows read / scored / rejected per input file (one logical input may span several files)."""
        if self.files is None:
            return {self.file: _tally(len(self.frame) + self.malformed, int(self.bad.sum()) + self.malformed)}
        malformed = np.concatenate(self.malformed_files) if self.malformed_files else np.zeros(0, dtype=object)
        files = np.concatenate([np.asarray(self.files, dtype=object), np.asarray(malformed, dtype=object)])
        bad = np.concatenate([self.bad, np.ones(len(malformed), dtype=bool)])
        # Hash the rows' file labels, then sort the few distinct ones as text (what np.unique of text would give).
        codes, distinct = pd.factorize(files, use_na_sentinel=False)
        names, merged = np.unique(np.array([str(d) for d in distinct], dtype=str), return_inverse=True)
        codes = merged.reshape(-1)[codes] if len(codes) else codes
        read = np.bincount(codes, minlength=len(names))
        rejected = np.bincount(codes, weights=bad, minlength=len(names)).astype(np.int64)
        return {str(name): _tally(int(r), int(b)) for name, r, b in zip(names, read, rejected, strict=True)}


def _tally(read: int, rejected: int) -> dict[str, int]:
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


def _normalise(column: str) -> Any:
    def normalise(text: pd.Series) -> pd.Series:
        text = text.astype(str).str.strip()
        if column == "modality":
            upper = text.str.upper().str.replace("_", "-").str.replace(" ", "-")
            return upper.replace({"PET": "PET-CT", "PETCT": "PET-CT", "PET/CT": "PET-CT", "MR": "MRI"})
        return text.str.lower().str.replace("-", "_").str.replace(" ", "_")

    return normalise


def _normalise_words(values: pd.Series, column: str) -> pd.Series:
    return _per_unique(values, _normalise(column))


# A checked column: float64 for numbers, yes/no and lists (NaN = missing), datetime64 for dates, and categorical
# text for words and ids (the reader's codes, each distinct value checked and cleaned once).
Columns = dict[str, Any]


def convert_columns(frame: pd.DataFrame, rejects: Ledger, specs: Mapping[str, FieldSpec]) -> Columns:
    """Check and convert every known column, once per distinct value where the check allows; a bad cell rejects
    its row. Returns engine-typed columns: numbers and yes/no as float64 (NaN = missing), words and ids as
    categorical text (missing = no category), dates as datetime64."""
    out: Columns = {}
    n = len(frame)
    for column in frame.columns:
        spec = specs.get(column)
        if spec is None:
            continue
        raw = frame[column]
        present = raw.notna().to_numpy()
        if not present.any():
            numeric = spec.kind in ("number", "integer", "bool", "list")
            out[column] = np.full(n, np.nan) if numeric else from_codes(np.full(n, -1, dtype=np.int8), [])
        elif spec.kind in ("number", "integer"):
            out[column] = check_numbers(raw, rejects, spec, column)
        elif spec.kind == "bool":
            out[column] = _yes_no(raw, present, rejects, column)
        elif spec.kind == "date":
            ranges = parse_date_ranges(raw, column)
            rejects.add(pd.notna(ranges.reason), column, "bad_date", ranges.reason)
            out[column] = ranges.date.astype("datetime64[ns]")
            # A partial date (2025-03) is a range of days: `validate` places the timepoint by it when the order
            # is still certain, and imputes it when asked.
            out["date_first"] = ranges.first.astype("datetime64[ns]")
            out["date_last"] = ranges.last.astype("datetime64[ns]")
            out["date_precision"] = ranges.precision
            out["date_collected"] = _per_unique(raw, lambda u: u.astype(str).str.strip()).to_numpy(dtype=object)
        elif spec.kind == "list":
            out[column] = _number_list(raw, present, rejects, column)
        elif spec.choices:
            words = recode(raw, _normalise(column))
            ok = np.append(words.categories.isin(spec.choices), True)[words.codes]
            rejects.add(~ok, column, "not_allowed", f"{column} must be one of: {', '.join(spec.choices)}")
            out[column] = words
        elif column == "organ":
            out[column] = recode(raw, _normalise(column))
        else:
            out[column] = recode(raw, lambda u: u.astype(str))
    for key in KEY_COLUMNS:
        if key in frame:
            out[key] = key_codes(frame[key])
            ids = out[key].categories.to_numpy(dtype=object)
            if any("\x00" in text for text in ids):  # a plain loop over the distinct ids: pandas' .str is slower
                damaged = np.append(["\x00" in text for text in ids], False)[out[key].codes]
                rejects.add(
                    damaged,
                    key,
                    "control_character",
                    f"{key} holds a NUL byte (\\x00): the file is damaged or not text; an id must be plain text",
                )
    return out


def _yes_no(raw: pd.Series, present: np.ndarray, rejects: Ledger, column: str) -> np.ndarray:
    codes, uniques = _codes(raw)
    words = uniques.astype(str).str.strip().str.lower()
    value = np.where(words.isin(TRUE_WORDS), 1.0, np.where(words.isin(FALSE_WORDS), 0.0, np.nan))
    per_row = np.append(value, np.nan)[codes]
    rejects.add(present & np.isnan(per_row), column, "not_yes_no", f"{column} must be true/false (yes/no, 1/0)")
    return per_row


def _number_list(raw: pd.Series, present: np.ndarray, rejects: Ledger, column: str) -> np.ndarray:
    """Numbers separated by ';' (or ','), summed; each distinct cell parsed once."""
    codes, uniques = _codes(raw)
    parts = uniques.astype(str).str.replace(",", ";").str.split(";")
    exploded = pd.to_numeric(parts.explode().str.strip(), errors="coerce")
    sums = exploded.groupby(level=0).sum(min_count=1).reindex(uniques.index).to_numpy(dtype=float)
    any_bad = exploded.isna().groupby(level=0).any() | (exploded < 0).groupby(level=0).any()
    bad = any_bad.reindex(uniques.index, fill_value=False).to_numpy(dtype=bool)
    rejects.add(
        present & np.append(bad, False)[codes], column, "bad_list", f"{column} must be numbers >= 0 separated by ';'"
    )
    return np.append(sums, np.nan)[codes]


def check_numbers(
    raw: pd.Series, rejects: Ledger, spec: FieldSpec, column: str, where: np.ndarray | None = None
) -> np.ndarray:
    """A number column checked against its field (on the rows `where`, default all): a number, finite, whole if it
    must be, within its bounds."""
    values = _numbers(raw).to_numpy()
    present = raw.notna().to_numpy() & (where if where is not None else True)
    if raw.dtype == object or isinstance(raw.dtype, pd.CategoricalDtype):
        # "NaN" is how pandas, numpy and many exports write a missing number: missing, like an empty cell.
        present = present & ~value_mask(raw, lambda u: u.astype(str).str.strip().str.lower() == "nan")
        long = value_mask(raw, lambda u: u.astype(str).str.len() > MAX_NUMBER_CHARS)
        rejects.add(
            present & long,
            column,
            "not_a_number",
            f"{column} must be a number (a value of over {MAX_NUMBER_CHARS} characters is not a measurement)",
        )
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
    _bounds(rejects, np.where(present, values, np.nan), spec, column)
    return values


def _numbers(raw: pd.Series) -> pd.Series:
    """Numbers from a column of numbers or text (text that is not a number becomes NaN)."""
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype(float)
    codes, uniques = _codes(raw)
    parsed = pd.to_numeric(uniques.astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
    return pd.Series(np.append(parsed, np.nan)[codes], index=raw.index)


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


def _group_ids(*keys: Any) -> np.ndarray:
    """Integer group ids for rows sharing the same key values (missing keys are a group of their own), numbered in
    the order the groups first appear."""
    gid = np.zeros(len(keys[0]), dtype=np.int64)
    for key in keys:
        if isinstance(key, pd.Categorical):
            codes = key.codes.astype(np.int64) + 1  # missing (-1) is a group of its own
        else:
            codes = pd.factorize(key, use_na_sentinel=False)[0].astype(np.int64)
        gid = gid * (int(codes.max()) + 1 if len(codes) else 1) + codes
    return _in_order_of_appearance(gid)


def _in_order_of_appearance(gid: np.ndarray) -> np.ndarray:
    """Group numbers 0, 1, 2 ... in the order the groups first appear. Tables usually keep each subject's (and
    each visit's) rows together: then a group starts wherever the key changes, and no hashing is needed."""
    if len(gid) == 0:
        return gid.astype(np.int64)
    starts = np.empty(len(gid), dtype=bool)
    starts[0] = True
    np.not_equal(gid[1:], gid[:-1], out=starts[1:])
    runs = int(np.count_nonzero(starts))
    if 0 <= gid.min() and gid.max() < 4 * len(gid):
        distinct = int(np.count_nonzero(np.bincount(gid)))
        if distinct == runs:  # every group is one run of rows
            return np.cumsum(starts, dtype=np.int64) - 1
    return pd.factorize(gid)[0].astype(np.int64)


def _first_rows(gid: np.ndarray) -> np.ndarray:
    """The first row of each group (groups numbered 0..n-1 in order of appearance)."""
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    first = np.empty(n_groups, dtype=np.int64)
    first[gid[::-1]] = np.arange(len(gid) - 1, -1, -1)  # the last write to a group is its first row
    return first


def _subject_conflicts(cols: Columns, columns: tuple[str, ...], gid: np.ndarray, rejects: Ledger, what: str) -> None:
    """Values that must be the same on every row of a subject (treatment) or of a visit (day, organs)."""
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    for column in columns:
        values = cols.get(column)
        if values is None:
            continue
        if isinstance(values, pd.Categorical):
            numbers = values.codes.astype(float)
            numbers[numbers < 0] = np.nan
        elif values.dtype.kind == "M":
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


def _partial_date_conflicts(cols: Columns, gid: np.ndarray, rejects: Ledger) -> None:
    """Rows of one timepoint must give the same date also when one is partial (2025-03 beside 2025-03-05)."""
    precision = cols.get("date_precision")
    if precision is None or not np.isin(precision, ["month", "year"]).any():
        return
    first = cols["date_first"].astype("datetime64[D]").astype(np.int64).astype(float)
    last = cols["date_last"].astype("datetime64[D]").astype(np.int64).astype(float)
    span = np.where(np.isnat(cols["date_first"]), np.nan, first * 100_000 + last)
    _subject_conflicts({"date": span}, ("date",), gid, rejects, "timepoint")


def _first_per_group(values: Any, gid: np.ndarray, first_rows: np.ndarray) -> Any:
    """For each group, its first non-missing value (groups numbered 0..n-1, `first_rows` = a row of each)."""
    missing = pd.isna(values)
    if not missing.any():
        return values[first_rows]
    order = np.lexsort((missing, gid))
    sorted_gid = gid[order]
    starts = order[np.r_[True, sorted_gid[1:] != sorted_gid[:-1]]] if len(order) else order
    return values[starts]


@dataclass
class LongInput:
    """Lesion table(s) and an optional organ table, opened and checked at the header: what every engine reads.

    Header problems (not a table, missing or duplicate columns, a column map that does not fit) are refused here,
    once, before any engine starts; unknown columns become `warnings` (errors under --strict)."""

    lesions: list[MappedSource]
    organs: MappedSource | None
    warnings: pd.DataFrame

    @property
    def label(self) -> str:
        return self.lesions[0].source.shown

    def cells(self) -> dict[str, CellMap]:
        """The spreadsheet cell maps of the inputs, by file (for `Sheet1!C7` in messages about parts)."""
        sources = [*self.lesions, *([self.organs] if self.organs is not None else [])]
        return {s.source.shown: s.cells for s in sources if s.cells is not None}


def open_long(
    paths: Sequence[str | Path], organs: str | Path | None = None, options: SourceOptions | None = None
) -> LongInput:
    options = options or SourceOptions()
    lesions: list[MappedSource] = []
    notes: list[pd.DataFrame] = []
    for path in paths:
        source = open_source(path, options, "lesion")
        prepared = prepare(source, options.column_map, rename_id=True)
        require_long_columns(prepared.names, source.shown)
        notes.append(unknown_columns(prepared.names, LONG_COLUMNS, source.shown, options.strict))
        lesions.append(prepared)
    organ = None
    if organs is not None:
        source = open_source(organs, options, "visit")
        organ = prepare(source, options.column_map, every_mapped_column=False)
        missing = [c for c in ("subject_id", "timepoint") if c not in organ.names]
        if missing:
            raise InputTableError(f"missing required column(s): {', '.join(missing)}", file=source.shown)
        notes.append(unknown_columns(organ.names, ORGAN_COLUMNS, source.shown, options.strict))
    return LongInput(lesions, organ, pd.concat(notes, ignore_index=True))


@with_object_strings
def read_long(
    path: str | Path,
    column_map: ColumnMap | None = None,
    organs: str | Path | None = None,
    encoding: str = "auto",
    options: SourceOptions | None = None,
) -> ReadResult:
    """Read a long-format lesion table (and optionally a separate organ table) into `Tables`, all in memory."""
    options = options or SourceOptions(encoding=encoding, column_map=column_map or ColumnMap())
    opened = open_long([path], organs, options)
    table = whole(opened.lesions[0])
    require_rows(table, opened.label)
    organ_table = whole(opened.organs) if opened.organs is not None else None
    read = long_from_frames(table, opened.label, organ_table, str(organs) if organs is not None else None)
    read.warnings = _joined_warnings(opened.warnings, read.warnings)
    return read


def _joined_warnings(*parts: pd.DataFrame | None) -> pd.DataFrame | None:
    kept = [p for p in parts if p is not None and not p.empty]
    return pd.concat(kept, ignore_index=True) if kept else None


@with_object_strings
def long_from_frames(
    lesions: RawTable,
    file: str,
    organs: RawTable | None = None,
    organs_file: str | None = None,
    cells: Mapping[str, CellMap] | None = None,
) -> ReadResult:
    """Check and convert raw long-format rows (a whole file, or a subject-complete part of one) into tables.

    The same function serves a whole file, the bounded-memory chunks and the Dask partitions."""
    raw, lines = lesions.frame, lesions.lines
    ledger = Ledger(file, lines, raw, lesions.files, lesions.cells if cells is None else cells)
    ledger.add_malformed(lesions.malformed)
    cols = convert_columns(raw, ledger, SPECS)
    _study_column(cols, file)
    for key in ("subject_id", "timepoint"):
        ledger.add(pd.isna(cols[key]), key, "missing_key", f"{key} is empty")
    if _reader_streams(cols) and organs is not None:
        raise InputTableError(
            "an --organs table is keyed by subject_id alone and cannot be matched to reader streams",
            file=organs_file or "organs",
            hint="with evaluator/reader columns, put the organ and PET values on the lesion rows",
        )
    subject_gid = _group_ids(cols["subject_id"])
    visit_gid = _group_ids(cols["subject_id"], cols["timepoint"])
    _subject_conflicts(cols, SUBJECT_FIELDS + ("study_id",), subject_gid, ledger, "subject")
    _subject_conflicts(cols, VISIT_FIELDS, visit_gid, ledger, "timepoint")
    _partial_date_conflicts(cols, visit_gid, ledger)
    ledger.set_aside_subjects(ledger.first_rejection_by_subject())
    ledgers = [ledger]
    organ_frame = None
    if organs is not None:
        organ_frame, organ_ledger = _organ_rows(organs, organs_file or "organs", cols, ledger, cells)
        ledgers.append(organ_ledger)
    ok = ledger.ok
    if ok.all():  # nothing dropped: no copy, and the groups found above still hold
        tables = _build_tables(cols, lines, organ_frame, file, (subject_gid, visit_gid))
    else:
        kept = {k: v[ok] for k, v in cols.items()}
        groups = (pd.factorize(subject_gid[ok])[0], pd.factorize(visit_gid[ok])[0])
        tables = _build_tables(kept, lines[ok], organ_frame, file, groups)
    return ReadResult(tables, ledgers, _several_files(cols["subject_id"], lesions.files, ok))


def _study_column(cols: Columns, file: str) -> None:
    """`STUDYID` is accepted for `study_id` (the CDISC name); a table with both is ambiguous."""
    if "STUDYID" not in cols:
        return
    if "study_id" in cols:
        raise InputTableError("the table has both study_id and STUDYID; keep one", file=file)
    cols["study_id"] = cols.pop("STUDYID")


def _reader_streams(cols: Columns) -> bool:
    """With `evaluator` / `reader` columns, each subject x evaluator x reader is scored as its own stream (as SDTM
    --EVAL / --EVALID): its subject_id becomes `subject|evaluator|reader` (empty parts left out) and the subject's
    own id is kept as `usubjid`. Every row names its stream, whatever the other rows say, so a part of a cohort
    gives the same ids as the whole. Returns whether the table has reader columns."""
    present = [c for c in READER_FIELDS if c in cols]
    if not present:
        return False
    subject = object_values(cols["subject_id"])  # streams are new ids: plain text from here on
    stream = pd.Series(subject, dtype=object)
    for column in present:
        part = pd.Series(cols[column], dtype=object)
        text = part.where(part.notna(), "").astype(str).str.strip()
        stream = stream.where(text == "", stream + "|" + text)
        cols[column] = text.to_numpy(dtype=object)
    cols["usubjid"] = subject
    cols["subject_id"] = np.where(pd.isna(subject), subject, stream.to_numpy(dtype=object))
    return True


def _several_files(subjects: Any, files: np.ndarray | None, ok: np.ndarray) -> pd.DataFrame | None:
    """A subject whose rows come from more than one input file: allowed (exports split by date), but worth a look
    (a duplicated export would double its rows)."""
    if files is None or not ok.any():
        return None
    file_codes, file_names = pd.factorize(files[ok])
    if len(file_names) < 2:  # one file (a part of one file, in the bounded-memory engine): nothing to check
        return None
    subject_codes, subject_names = text_codes(subjects[ok])
    known = subject_codes >= 0
    pairs = np.unique(subject_codes[known].astype(np.int64) * len(file_names) + file_codes[known])
    pair_subject, pair_file = np.divmod(pairs, len(file_names))
    several = np.flatnonzero(np.bincount(pair_subject, minlength=len(subject_names)) > 1)
    if len(several) == 0:
        return None
    starts, ends = np.searchsorted(pair_subject, several), np.searchsorted(pair_subject, several, side="right")
    listed = sorted(
        (str(subject_names[s]), sorted(map(str, file_names[pair_file[a:b]])))
        for s, a, b in zip(several, starts, ends, strict=True)
    )
    return pd.DataFrame(
        {
            "subject_id": np.array([subject for subject, _ in listed], dtype=object),
            "code": "subject_in_several_files",
            "timepoint": None,
            "lesion_id": None,
            "message": [
                "rows of this subject come from "
                + ", ".join(Path(f).name for f in files_)
                + "; check the files are not duplicate exports"
                for _, files_ in listed
            ],
            "severity": "warning",
        }
    )


def _organ_rows(
    organs: RawTable,
    file: str,
    lesion_rows: Columns,
    lesion_ledger: Ledger,
    cells: Mapping[str, CellMap] | None = None,
) -> tuple[pd.DataFrame, Ledger]:
    raw, lines = organs.frame, organs.lines
    missing = [c for c in ("subject_id", "timepoint") if c not in raw]
    if missing:
        raise InputTableError(f"missing required column(s): {', '.join(missing)}", file=file)
    ledger = Ledger(file, lines, raw, organs.files, organs.cells if organs.cells is not None else cells)
    ledger.add_malformed(organs.malformed)
    checked = convert_columns(raw, ledger, {**TIMEPOINT_SPECS, **ORGAN_SPECS, **PET_SPECS})
    # One row per visit: plain text is cheap here, and the organ values are merged into the visits by text.
    cols = {k: object_values(v) if isinstance(v, pd.Categorical) else v for k, v in checked.items()}
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
    # A rejected organ row (a bad value, a second row for one visit) sets its subject aside, as a lesion row does:
    # the subject would otherwise be scored without the organ values it has.
    reasons = ledger.first_rejection_by_subject(ignore=("subject_set_aside",))
    if reasons:
        lesion_ledger.set_aside_subjects(reasons)
        ledger.set_aside_subjects(reasons)
    ok = lesion_ledger.ok
    lesion_rows = {k: object_values(lesion_rows[k])[ok] for k in ("subject_id", "timepoint")}
    known_subjects = set(pd.unique(lesion_rows["subject_id"]))
    ledger.add(
        ~np.isin(subjects, list(known_subjects | set_aside)),
        "subject_id",
        "unknown_subject",
        "subject is not in the lesion file",
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


def _build_tables(
    cols: Columns, lines: np.ndarray, organs: pd.DataFrame | None, file: str, groups: tuple[np.ndarray, np.ndarray]
) -> Tables:
    """Subjects, visits and lesions from checked rows; `groups` are the subject and the visit of each row (ids in
    order of appearance). Text stays categorical on visits and lesions (the keys the checks work with); the
    subjects table, one row per subject, holds plain text."""
    subject_gid, visit_gid = groups
    subject_first, visit_first = _first_rows(subject_gid), _first_rows(visit_gid)

    def per_subject(name: str, default: Any) -> np.ndarray:
        if name not in cols:
            return np.full(len(subject_first), default, dtype=object if not isinstance(default, float) else float)
        values = _first_per_group(cols[name], subject_gid, subject_first)
        return object_values(values) if isinstance(values, pd.Categorical) else values

    subjects = pd.DataFrame(
        {
            "subject_id": object_values(cols["subject_id"][subject_first]),
            "regimen": per_subject("regimen", None),
            "agents": _agents(pd.Series(per_subject("agents", ""), dtype=object)),
            "setting": per_subject("setting", "systemic"),
            "procedure_day": per_subject("procedure_day", np.nan).astype(float),
            "source": file,
            "line": lines[subject_first],
        },
        copy=False,
    )
    for column in ("usubjid", "study_id", *READER_FIELDS):  # who the stream is, for ADaM (see adam.py)
        if column in cols:
            subjects[column] = per_subject(column, None)
    visits_cols: dict[str, Any] = {
        "subject_id": cols["subject_id"][visit_first],
        "timepoint": cols["timepoint"][visit_first],
    }
    for column in VISIT_FIELDS:
        if column in cols:
            values = _first_per_group(cols[column], visit_gid, visit_first)
            visits_cols[column] = object_values(values) if isinstance(values, pd.Categorical) else values
        elif column in ("day", "date"):
            visits_cols[column] = (
                np.full(len(visit_first), np.nan) if column == "day" else np.full(len(visit_first), None, dtype=object)
            )
    for column in ("date_first", "date_last", "date_precision", "date_collected"):
        if column in cols:
            visits_cols[column] = _first_per_group(cols[column], visit_gid, visit_first)
    visits_cols["source"] = _same_text(file, len(visit_first))
    visits_cols["line"] = lines[visit_first]
    visits = pd.DataFrame(visits_cols, copy=False)
    if organs is not None:
        visits = _merge_organs(visits, organs)
    return Tables(subjects=subjects, visits=visits, lesions=_lesion_frame(cols, lines, file))


def _lesion_frame(cols: Columns, lines: np.ndarray, file: str) -> pd.DataFrame:
    """One row per row with a lesion id; absent core fields all missing, status `present` where not given."""
    has_lesion = ~pd.isna(cols["lesion_id"])
    every_row = bool(has_lesion.all())

    def rows(values: Any) -> Any:
        return values if every_row else values[has_lesion]

    lesion_cols: dict[str, Any] = {key: rows(cols[key]) for key in KEY_COLUMNS}
    n_lesions = int(np.count_nonzero(has_lesion))
    for column in LESION_SPECS:
        target = "fragments_sum_mm" if column == "fragments_mm" else column
        if column in cols:
            lesion_cols[target] = rows(cols[column])
        elif column in CORE_LESION_FIELDS:  # the engine reads absent optional fields as missing on its own
            lesion_cols[target] = (
                np.full(n_lesions, np.nan)
                if SPECS[column].kind in ("number", "integer", "bool", "list")
                else from_codes(np.full(n_lesions, -1, dtype=np.int8), [])
            )
    lesion_cols["equivocal"] = np.nan_to_num(lesion_cols["equivocal"].astype(float), nan=0.0)
    lesion_cols["status"] = _filled(lesion_cols["status"], "present")
    lesion_cols["source"] = _same_text(file, n_lesions)
    lesion_cols["line"] = rows(lines)
    return pd.DataFrame(lesion_cols, copy=False)


def _filled(values: pd.Categorical, word: str) -> pd.Categorical:
    """Categorical text with `word` where a value is missing."""
    if word not in values.categories:
        values = values.add_categories([word])
    codes = values.codes
    return from_codes(np.where(codes < 0, list(values.categories).index(word), codes), values.categories)


def _same_text(text: str, n: int) -> pd.Categorical:
    """One text on every row, as codes."""
    return from_codes(np.zeros(n, dtype=np.int8), [text])


def _agents(values: pd.Series) -> np.ndarray:
    def tidy(text: pd.Series) -> pd.Series:
        parts = text.fillna("").astype(str).str.lower().str.replace(",", ";").str.split(";")
        return parts.map(lambda items: ";".join(p.strip() for p in items if p.strip()))

    return _per_unique(values, tidy).fillna("").to_numpy(dtype=object)


def _merge_organs(visits: pd.DataFrame, organs: pd.DataFrame) -> pd.DataFrame:
    visits = visits.assign(**{key: object_values(visits[key]) for key in ("subject_id", "timepoint")})
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
    # RS / ADRS: every subject x reader the file has records of (of the chosen criteria), scored or not: one
    # without an overall response gets MISSING, as admiralonco gives every ADSL subject a BOR record.
    population: pd.DataFrame | None = None

    def nothing_scored(self, subjects: int) -> str | None:
        """Why no subject got a best response (every row rejected, or none left), or None."""
        if subjects:
            return None
        (counts,) = self.ledger.counts().values()
        if counts["read"] and counts["scored"] == 0:
            return f"no subject was scored: all {counts['read']:,} rows read were rejected"
        return "no subject was scored: no row holds a response to score"


@dataclass(frozen=True)
class _ResponseLayout:
    """Where a visits table keeps what `bor` needs: which rows, whose, when, and the response."""

    kind: str  # "simple", "batch" (`batch -o`), "sdtm_rs" or "adam_adrs"
    test_col: str | None  # RSTESTCD / PARAMCD (rows to use: keep_value); `criteria` of a batch output
    keep_value: str | None
    subject_cols: list[str]  # the subject, then the reader parts (RSEVAL, RSEVALID)
    response_col: str | None
    day_col: str | None
    date_col: str | None
    study_day: bool  # the day column is an SDTM/ADaM study day (no day 0: day = --DY - 1 from day 1 on)


def _response_layout(raw: pd.DataFrame) -> _ResponseLayout:
    upper = {c.upper(): c for c in raw.columns}
    readers = [upper[c] for c in ("USUBJID", "RSEVAL", "RSEVALID") if c in upper]
    if "RSTESTCD" in upper:
        response = upper.get("RSSTRESC", upper.get("RSORRES"))
        return _ResponseLayout(
            "sdtm_rs", upper["RSTESTCD"], "OVRLRESP", readers, response, upper.get("RSDY"), upper.get("RSDTC"), True
        )
    if "criteria" in raw and "overall" in raw and "subject_id" in raw:
        # `batch -o`: per-visit responses of every criteria set of the run, the day counted from the baseline scan
        return _ResponseLayout(
            "batch", "criteria", None, ["subject_id"], "overall", "day" if "day" in raw else None, None, False
        )
    if "PARAMCD" in upper:
        # BLDAYS (days since the baseline scan, written by this tool) is the day the derivation used; ADY is a
        # study day counted from another reference date.
        day_col, study_day = (upper["BLDAYS"], False) if "BLDAYS" in upper else (upper.get("ADY"), True)
        return _ResponseLayout(
            "adam_adrs", upper["PARAMCD"], "OVR", readers, upper.get("AVALC"), day_col, upper.get("ADT"), study_day
        )
    return _ResponseLayout(
        "simple",
        None,
        None,
        ["subject_id"],
        "response" if "response" in raw else None,
        "day" if "day" in raw else None,
        "date" if "date" in raw else None,
        False,
    )


def _check_layout(layout: _ResponseLayout, raw: pd.DataFrame, file: str) -> None:
    missing = []
    if layout.kind == "simple" and "subject_id" not in raw:
        missing.append("subject_id")
    if layout.kind in ("sdtm_rs", "adam_adrs") and not any(str(c).upper() == "USUBJID" for c in raw.columns):
        missing.append("USUBJID")
    if layout.response_col is None:
        missing.append("response")
    if layout.day_col is None and layout.date_col is None:
        missing.append("day or date")
    if missing:
        raise InputTableError(
            f"missing required column(s): {', '.join(missing)}",
            file=file,
            hint="a visits table has subject_id, day (or date + reference date) and response; "
            "batch's per-visit output (criteria, overall), SDTM RS and ADaM ADRS are recognised by their columns",
        )


def _criteria_records(
    raw: pd.DataFrame, ledger: Ledger, criteria_name: str | None, file: str, category: str, dataset: str
) -> np.ndarray:
    """RS/ADRS rows that are not records of the chosen criteria set are not used: for ADRS, ANL01FL other than Y
    (when the column is there); for both, a category (RSCAT / PARCAT3) naming another set (when both are known).
    Returns the rows of the chosen set (or of any, when the file or the caller names none)."""
    upper = {str(c).upper(): c for c in raw.columns}
    if dataset == "ADRS" and "ANL01FL" in upper:
        flag = _text_column(raw, upper["ANL01FL"]).str.upper()
        ledger.add((flag != "Y").to_numpy(), upper["ANL01FL"], "not_used", "ANL01FL is not Y: not an analysis record")
    if category not in upper or criteria_name is None:
        return np.ones(len(raw), dtype=bool)
    named_set = _text_column(raw, upper[category])
    mine = named_set.str.upper() == criteria_name.strip().upper()
    named = named_set != ""
    if named.any() and not mine.any():
        found = ", ".join(sorted(set(named_set[named]))[:5])
        raise InputTableError(
            f"no {dataset} record has {category} {criteria_name!r} (the file has {found})",
            file=file,
            hint="choose the criteria set with --criteria (e.g. --criteria choi)",
        )
    ledger.add((named & ~mine).to_numpy(), upper[category], "not_used", f"{category} is not {criteria_name}")
    # records of no criteria set (DEATH, PARCAT1 Reference Event) are the subject's, not a reader's
    return mine.to_numpy() if named.any() else np.ones(len(raw), dtype=bool)


def _batch_records(raw: pd.DataFrame, ledger: Ledger, criteria_id: str | None, file: str) -> None:
    """`batch -o` rows of another criteria set than the chosen one are not used. Without a chosen id the file
    must hold one set: best responses of two sets are never mixed."""
    sets = _text_column(raw, "criteria")
    present = sorted(set(sets[sets != ""]))
    chosen = criteria_id if criteria_id is not None else (present[0] if len(present) == 1 else None)
    if chosen is None or chosen not in present:
        raise InputTableError(
            f"this batch output holds the criteria sets {', '.join(present[:8]) or '(none)'}"
            + (f", not {criteria_id}" if criteria_id is not None else ""),
            file=file,
            hint="choose one with --criteria (e.g. --criteria " + (present[0] if present else "recist1.1") + ")",
        )
    ledger.add((sets != chosen).to_numpy(), "criteria", "not_used", f"criteria is not {chosen}")


def _response_days(
    frame: pd.DataFrame,
    layout: _ResponseLayout,
    ledger: Ledger,
    needed: np.ndarray,
    reference_date: str | None,
    file: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the day `bor` uses (days since the reference date), the day as written, and the date."""
    day = np.full(len(frame), np.nan)
    written = np.full(len(frame), np.nan)
    dates = np.full(len(frame), np.datetime64("NaT"), dtype="datetime64[D]")
    if layout.day_col is not None:
        # Days count from the reference date: whole, finite, not before it (study days RSDY / ADY may be).
        low = -MAX_DAYS if layout.study_day else 0
        spec = FieldSpec(layout.day_col, "integer", ge=low, le=MAX_DAYS)
        written = check_numbers(frame[layout.day_col], ledger, spec, layout.day_col)
        written = np.where(ledger.bad, np.nan, written)
        day = np.where(written > 0, written - 1, written) if layout.study_day else written.copy()
    if layout.date_col is None:
        return day, written, dates
    dates, why = parse_dates(frame[layout.date_col], layout.date_col)
    if not np.isnan(day).any():
        return day, written, dates
    needed = needed & np.isnan(day)
    ledger.add(needed & pd.notna(why), layout.date_col, "bad_date", why)
    refs = None
    if "reference_date" in frame:
        refs, ref_why = parse_dates(frame["reference_date"], "reference_date")
        ledger.add(needed & pd.notna(ref_why), "reference_date", "bad_date", ref_why)
    elif reference_date is not None:
        stamp = parse_dates(pd.Series([reference_date], dtype=object), "--reference-date")
        if pd.notna(stamp[1][0]):
            raise InputTableError(str(stamp[1][0])) from None
        refs = np.full(len(frame), stamp[0][0])
    if refs is not None:
        from_dates = (dates - refs).astype("timedelta64[D]").astype(float)
        from_dates[np.isnat(dates) | np.isnat(refs)] = np.nan
        before = needed & (from_dates < 0)
        ledger.add(before, layout.date_col, "out_of_range", f"{layout.date_col} is before the reference date")
        day = np.where(np.isnan(day) & ~ledger.bad, from_dates, day)
    elif layout.kind == "simple" and layout.day_col is None:
        raise InputTableError(
            "dates need a reference date: pass --reference-date or add a reference_date column", file=file
        )
    return day, written, dates


@with_object_strings
def read_responses(
    path: str | Path,
    scale: ResponseScale,
    reference_date: str | None = None,
    encoding: str = "auto",
    column_map: ColumnMap | None = None,
    sheet: str | None = None,
    criteria_name: str | None = None,
    criteria_id: str | None = None,
) -> Responses:
    """Per-visit responses from a simple CSV (subject_id, day or date, response), `batch -o` output (the rows of
    `criteria_id`, `overall` as the response), SDTM RS (OVRLRESP rows, RSCAT = `criteria_name` when both are
    known) or ADaM ADRS (PARAMCD OVR rows with ANL01FL = Y when the column is there, and PARCAT3 =
    `criteria_name` when both are known), in the words of `scale` (see `response_aliases`). RS and ADRS are keyed
    by USUBJID x RSEVAL x RSEVALID (the reader). Dates need a reference date (option or `reference_date`
    column)."""
    file = str(path)
    options = SourceOptions(encoding=encoding, sheet=sheet, column_map=column_map or ColumnMap())
    table = read_table(path, options, rows="visit")
    raw = table.frame
    require_rows(table, file)
    layout = _response_layout(raw)
    _check_layout(layout, raw, file)
    subject = _text_column(raw, layout.subject_cols[0])
    reader = pd.Series([""] * len(raw), dtype=object)
    for part in (_text_column(raw, c) for c in layout.subject_cols[1:]):
        reader = reader.where(part == "", reader + "|" + part).str.lstrip("|")
    view = pd.DataFrame({"subject_id": subject.to_numpy(dtype=object), "timepoint": None, "lesion_id": None})
    for column in (layout.day_col, layout.date_col, "reference_date"):  # the values the errors file shows
        if column is not None and column in raw and column not in view:
            view[column] = raw[column].to_numpy(dtype=object)
    ledger = Ledger(file, table.lines, view, cells=table.cells)
    ledger.add_malformed(table.malformed)
    if layout.kind == "batch":
        _batch_records(raw, ledger, criteria_id, file)
    elif layout.test_col is not None:
        tests = _text_column(raw, layout.test_col).str.upper()
        if not (tests == layout.keep_value).any():
            found = ", ".join(sorted(set(tests[tests != ""]))[:5])
            raise InputTableError(
                f"no {layout.keep_value} record: this file holds no per-visit overall tumour response "
                f"({layout.test_col} {found or 'empty'})",
                file=file,
                hint=f"give the {'RS' if layout.kind == 'sdtm_rs' else 'ADRS'} of a tumour response assessment "
                f"({layout.test_col} {layout.keep_value})",
            )
        ledger.add(
            (tests != layout.keep_value).to_numpy(),
            layout.test_col,
            "not_used",
            f"only {layout.keep_value} rows carry the per-visit overall response",
        )
    of_criteria = np.ones(len(raw), dtype=bool)
    if layout.kind == "adam_adrs":
        of_criteria = _criteria_records(raw, ledger, criteria_name, file, "PARCAT3", "ADRS")
    elif layout.kind == "sdtm_rs":
        of_criteria = _criteria_records(raw, ledger, criteria_name, file, "RSCAT", "RS")
    ledger.add((subject == "").to_numpy(), "subject_id", "missing_key", "subject is empty")
    assert layout.response_col is not None  # checked with the required columns above
    response = _response_words(raw, layout.response_col, scale, ledger)
    day, written_day, dates = _response_days(raw, layout, ledger, response.notna().to_numpy(), reference_date, file)
    day_col = layout.day_col or layout.date_col
    assert day_col is not None  # checked with the required columns above
    ledger.add(
        np.isnan(day) & response.notna().to_numpy(),
        day_col,
        "no_day",
        "no day: give day, or a complete date with a reference date",
    )
    _same_day_responses(ledger, subject, reader, day, day_col)
    # As in the lesion table: a visit that cannot be read could have been the PD, so its subject is not scored.
    set_aside = ledger.first_rejection_by_subject(ignore=("not_used",))
    ledger.set_aside_subjects(set_aside)
    population = None
    if layout.kind in ("sdtm_rs", "adam_adrs"):
        member = of_criteria & (subject != "").to_numpy() & ~subject.isin(list(set_aside)).to_numpy()
        population = pd.DataFrame({"subject_id": subject[member], "reader": reader[member]}).drop_duplicates()
    out = pd.DataFrame(
        {
            "subject_id": subject.to_numpy(dtype=object),
            "reader": reader.to_numpy(dtype=object),
            "day": day,
            "response": response.to_numpy(dtype=object),
            # the day as the file writes it (`day`, RSDY, BLDAYS or ADY) and the date: what --pd-dates compares
            "day_as_written": day if layout.kind == "simple" else written_day,
            "date": dates.astype("datetime64[ns]"),
        }
    )
    return Responses(out.loc[ledger.ok].reset_index(drop=True), ledger, layout.kind, population)


def read_subject_days(path: str | Path, option: str, encoding: str = "auto", sheet: str | None = None) -> pd.DataFrame:
    """One day or date per subject (`--pd-dates`, `--death-dates`): columns subject_id and day and/or date.

    Returns subject_id, day (float, NaN when not given) and date (datetime64, NaT when not given). A row with
    neither is a subject without such an event. Any unreadable row or a subject given twice is refused with its
    line: the file decides which visits count, so it must be right as a whole."""
    file = str(path)
    table = read_table(path, SourceOptions(encoding=encoding, sheet=sheet), rows="subject")
    raw = table.frame
    require_rows(table, file)
    if not table.malformed.empty:
        line = int(table.malformed["line"].iloc[0]) if "line" in table.malformed else None
        raise InputTableError(f"{option}: a row does not fit the header", file=file, line=line)
    missing = ["subject_id"] if "subject_id" not in raw else []
    if "day" not in raw and "date" not in raw:
        missing.append("day or date")
    if missing:
        raise InputTableError(
            f"{option}: missing required column(s): {', '.join(missing)}",
            file=file,
            hint=f"the file has: {', '.join(map(str, raw.columns[:20]))}",
        )
    subject = _text_column(raw, "subject_id")
    ledger = Ledger(file, table.lines, pd.DataFrame({"subject_id": subject, "timepoint": None, "lesion_id": None}))
    ledger.add((subject == "").to_numpy(), "subject_id", "missing_key", "subject_id is empty")
    day = np.full(len(raw), np.nan)
    if "day" in raw:
        day = check_numbers(raw["day"], ledger, FieldSpec("day", "integer", ge=-MAX_DAYS, le=MAX_DAYS), "day")
    dates = np.full(len(raw), np.datetime64("NaT"), dtype="datetime64[D]")
    if "date" in raw:
        dates, why = parse_dates(raw["date"], "date")
        ledger.add(pd.notna(why), "date", "bad_date", why)
    given = ~np.isnan(day) | ~np.isnat(dates)
    twice = given & subject.duplicated(keep=False).to_numpy()
    ledger.add(twice, "subject_id", "duplicate", ("subject " + subject + " is given twice").to_numpy(dtype=object))
    problems = ledger.table()
    if not problems.empty:
        first = problems.iloc[0]
        raise InputTableError(
            f"{option}: {first['reason']}",
            file=file,
            line=int(first["line"]) if pd.notna(first["line"]) else None,
            key=str(first["column"]) if pd.notna(first["column"]) else None,
            hint=f"and {len(problems) - 1} more problem(s)" if len(problems) > 1 else None,
        )
    out = pd.DataFrame({"subject_id": subject, "day": day, "date": dates.astype("datetime64[ns]")})
    return out.loc[given].reset_index(drop=True)


def progression_days(responses: Responses, pd_dates: pd.DataFrame, file: str) -> np.ndarray:
    """Per response row, its subject's progression day from `--pd-dates` on the day scale `bor` scores on (NaN:
    none). A progression `day` is compared with the visits' own day column as written (day, RSDY, BLDAYS or
    ADY), a progression `date` with the visits' dates; a visit with nothing to compare with is an error."""
    frame = responses.frame
    given = pd_dates.set_index("subject_id")
    at = given.reindex(frame["subject_id"].to_numpy(dtype=object))
    pd_day, pd_date = at["day"].to_numpy(dtype=float), at["date"].to_numpy(dtype="datetime64[ns]")
    use_day = ~np.isnan(pd_day)
    use_date = ~use_day & ~np.isnat(pd_date)
    written = frame["day_as_written"].to_numpy(dtype=float)
    visit_dates = frame["date"].to_numpy(dtype="datetime64[ns]")
    by_date = (pd_date.astype("datetime64[D]") - visit_dates.astype("datetime64[D]")).astype("timedelta64[D]")
    offset = np.where(use_day, pd_day - written, by_date.astype(float))
    unknown = (use_day & np.isnan(written)) | (use_date & np.isnat(visit_dates))
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        what = "day" if use_day[row] else "date"
        raise InputTableError(
            f"--pd-dates gives subject {frame['subject_id'].iat[row]} a progression {what}, but its visits have no "
            f"{what} to compare it with",
            file=file,
            hint="give the progression as the visits give time: a day on their day scale, or a date",
        )
    return np.where(use_day | use_date, frame["day"].to_numpy(dtype=float) + offset, np.nan)


def _response_words(raw: pd.DataFrame, column: str, scale: ResponseScale, ledger: Ledger) -> pd.Series:
    written = _text_column(raw, column)
    words = written.str.upper().str.replace(r"\s+", " ", regex=True)
    aliases = response_aliases(scale)
    response = words.map(aliases)
    response = response.where(words != "", None)
    allowed = ", ".join(dict.fromkeys(aliases.values()))
    ledger.add(
        (words != "").to_numpy() & response.isna().to_numpy(),
        column,
        "not_allowed",
        f"response must be one of {allowed} or empty",
        values=written.to_numpy(dtype=object),
    )
    return response


def _same_day_responses(ledger: Ledger, subject: pd.Series, reader: pd.Series, day: np.ndarray, column: str) -> None:
    visit = pd.DataFrame(
        {"subject": subject.to_numpy(dtype=object), "reader": reader.to_numpy(dtype=object), "day": day}
    )
    candidates = ledger.ok & ~np.isnan(day)
    same_day = np.zeros(len(visit), dtype=bool)
    same_day[candidates] = visit.loc[candidates].duplicated(keep=False).to_numpy()
    if same_day.any():
        ledger.add(
            same_day,
            column,
            "duplicate",
            "two responses for this subject on the same day; keep one (a corrected read replaces the old one)",
            values=np.array([f"day {d:g}" for d in day], dtype=object),
        )


def _text_column(frame: pd.DataFrame, column: str) -> pd.Series:
    values = frame[column]
    arr = values.to_numpy(dtype=object)
    text = pd.Series(np.where(pd.isna(arr), "", arr), dtype=object).astype(str).str.strip()
    return text

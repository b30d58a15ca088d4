"""The one source layer: every table input, whatever its format and whichever engine reads it, comes through here.

    open_source(path)            what the file is (by content), its columns; header problems refused here
    Source.blocks(rows, ...)     raw blocks with physical line numbers, the column map applied, cells made alike
    read_table / read_lesion_table / spill_by_subject
                                 the whole file as one block (in memory), or every row routed to its subject's
                                 part (bounded memory, Dask), with the same blocks

The field checks of a block (numbers, words, the one date parser below) live in `trial.convert_columns`; every
engine applies them to these blocks, so a file reads the same in memory, in chunks and on Dask.

Cells of a raw block are either text (a categorical of the distinct values, so later checks work per distinct
value and keep pyarrow's dictionary codes) or numbers (float64, for columns a typed format stores as floats).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputTableError
from .formats import (
    CellMap,
    CsvLayout,
    RawTable,
    csv_blocks,
    file_size_checked,
    no_malformed,
    number_text,
    parquet_blocks,
    parquet_columns,
    read_dataset_json,
    read_sas,
    read_xlsx,
    readable_copy,
    scan_csv,
    sniff,
    utf8_file,
)
from .tables import from_codes
from .yamlio import format_loc, line_of, load_yaml

LINE, FILE, REASON = "_line", "_file", "_reason"
TEXT, NUMBER = "text", "number"


@dataclass
class ColumnMap:
    """Column renames (our name -> export's name) and word maps per column (export word -> our word), with the
    map file's lines for messages."""

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    file: str | None = None
    lines: dict[str, int] = field(default_factory=dict)  # our column name -> its line in the map file


@dataclass
class SourceOptions:
    """How to read table inputs: text encoding, the Excel sheet, the column map, and --strict."""

    encoding: str = "auto"
    sheet: str | None = None
    column_map: ColumnMap = field(default_factory=ColumnMap)
    strict: bool = False


# --------------------------------------------------------------------------------------------------
# Column maps
# --------------------------------------------------------------------------------------------------


def load_column_map(path: str | Path | None, known: set[str] | None = None) -> ColumnMap:
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
    fed_by: dict[str, str] = {}
    for ours, theirs in columns.items():
        if not isinstance(ours, str) or not isinstance(theirs, str):
            what = f"not {_kind_of(theirs)}" if isinstance(ours, str) else f"our name {ours!r} is not text"
            raise problem(
                f"`columns:` maps our column name to the export's column name (text to text), {what}",
                ("columns", ours),
            )
        if known is not None and ours not in known:
            raise problem(f"`{ours}` is not a column this tool reads", ("columns", ours), "see README, 'Long format'")
        if theirs in fed_by:
            raise problem(
                f"the export's column `{theirs}` is already mapped to `{fed_by[theirs]}`; one column feeds one field",
                ("columns", ours),
                "copy the column in the export if two fields really hold the same values",
            )
        fed_by[theirs] = ours
    if not isinstance(values, dict):
        raise problem("`values:` maps a column to {their word: our word}", ("values",))
    for column, words in values.items():
        if not isinstance(words, dict):
            raise problem("`values:` maps a column to {their word: our word}", ("values", column))
    return ColumnMap(
        dict(columns),
        {k: {str(a): str(b) for a, b in v.items()} for k, v in values.items()},
        str(path),
        {ours: line_of(lines, ("columns", ours)) or 0 for ours in columns},
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


def mapped_names(names: Sequence[str], mapping: ColumnMap, shown: str, every_column: bool = True) -> list[str]:
    """The file's column names after the column map, refusing a map that names a missing column (unless the file
    is a side table, `every_column` False) or that would give two columns one name."""
    renames = {theirs: ours for ours, theirs in mapping.columns.items()}
    missing = [theirs for theirs in renames if theirs not in names]
    if not every_column:
        renames = {theirs: ours for theirs, ours in renames.items() if theirs in names}
    elif missing:
        raise InputTableError(
            f"column(s) named in the column map are not in the file: {', '.join(missing)}",
            file=shown,
            hint=f"the file has: {', '.join(map(str, list(names)[:30]))}",
        )
    for theirs, ours in renames.items():
        if ours != theirs and ours in names and ours not in renames:
            raise InputTableError(
                f"the map renames `{theirs}` to `{ours}`, but {Path(shown).name} already has a column `{ours}`: "
                f"that would give two `{ours}` columns",
                file=mapping.file,
                line=mapping.lines.get(ours) or None,
                key=f"columns.{ours}",
                hint="drop one of the two: the entry in the map, or the column in the export",
            )
    return [renames.get(n, n) for n in names]


# --------------------------------------------------------------------------------------------------
# Opening a file
# --------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """One input file, opened: what it is, where its bytes are, its column names as written."""

    shown: str  # the path as the user gave it (messages, the errors file)
    data: Path  # what is read: the file, or a copy of a pipe / a UTF-8 copy of other text
    kind: str
    names: list[str]
    layout: CsvLayout | None = None
    whole: RawTable | None = None  # formats read whole (XPT, sas7bdat, Dataset-JSON, xlsx)
    kinds: dict[str, str] = field(default_factory=dict)  # column -> text / number

    def blocks(self, rows: int | None) -> Iterator[RawTable]:
        """Raw blocks of about `rows` rows (all rows at once when None), cells as written."""
        if self.layout is not None:
            yield from csv_blocks(self.layout, self.shown, rows)
        elif self.kind == "parquet":
            yield from parquet_blocks(self.data, self.shown, rows)
        else:
            assert self.whole is not None
            step = rows or max(len(self.whole.frame), 1)
            for start in range(0, max(len(self.whole.frame), 1), step):
                end = start + step
                yield RawTable(
                    self.whole.frame.iloc[start:end].reset_index(drop=True),
                    self.whole.lines[start:end],
                    self.whole.malformed if start == 0 else no_malformed(),
                    cells=self.whole.cells,
                )


def open_source(path: str | Path, options: SourceOptions | None = None, rows: str = "lesion") -> Source:
    """Open a table input: refuse what is not a table (named for what it is), find the header, refuse duplicate
    column names. Nothing is scored from a file this refuses."""
    options = options or SourceOptions()
    shown = str(path)
    p = Path(path)
    if not p.exists():
        raise InputTableError("file not found", file=shown)
    data = readable_copy(p, shown)
    file_size_checked(data, shown, rows)
    kind = sniff(data, shown, rows)
    if options.sheet is not None and kind != "xlsx":
        raise InputTableError(f"--sheet is for Excel workbooks; this is a {kind} file", file=shown)
    source = Source(shown, data, kind, [])
    if kind == "csv":
        source.data = utf8_file(data, shown, options.encoding)
        source.layout = scan_csv(source.data, shown)
        source.names = list(source.layout.names)
        source.kinds = dict.fromkeys(source.names, TEXT)
    elif kind == "parquet":
        source.names = parquet_columns(data, shown)
        source.kinds = _parquet_kinds(data)
    else:
        if kind in ("xpt", "sas7bdat"):
            source.whole = read_sas(data, shown, kind)
        elif kind == "json":
            source.whole = read_dataset_json(data, shown)
        else:
            source.whole = read_xlsx(data, shown, options.sheet)
        source.names = [str(c) for c in source.whole.frame.columns]
        source.kinds = {
            str(c): NUMBER if pd.api.types.is_float_dtype(t) else TEXT for c, t in source.whole.frame.dtypes.items()
        }
    refuse_duplicate_names(source.names, shown, source.whole.cells if source.whole is not None else None)
    return source


def _parquet_kinds(path: Path) -> dict[str, str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return {
        str(f.name): NUMBER if pa.types.is_floating(f.type) else TEXT
        for f in pq.read_schema(path)
        if not str(f.name).startswith("__index_level_")
    }


def refuse_duplicate_names(names: Sequence[str], shown: str, cells: CellMap | None = None) -> None:
    seen: set[str] = set()
    twice = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if twice:
        where = ""
        if cells is not None:
            where = f" ({cells.sheet} row 1)"
        raise InputTableError(f"column name(s) given twice in the header{where}: {', '.join(twice)}", file=shown)


# --------------------------------------------------------------------------------------------------
# Column names a reader does not know
# --------------------------------------------------------------------------------------------------

INVISIBLE = re.compile(r"[\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff]")


def visible(name: str) -> str:
    """A column name with invisible characters written out (`status\\u200b`)."""
    return INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", name)


def nearest_field(name: str, known: Sequence[str]) -> str | None:
    plain = INVISIBLE.sub("", unicodedata.normalize("NFKC", name)).strip().lower().replace(" ", "_").replace("-", "_")
    if plain in known:
        return plain
    close = difflib.get_close_matches(plain, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_columns(names: Sequence[str], known: set[str], shown: str, strict: bool) -> pd.DataFrame:
    """A warning per column the reader does not use (it is ignored), naming the nearest known field; an error
    under --strict. A misspelt `status` column would otherwise leave every lesion `present` without a word."""
    rows = []
    for name in names:
        if name in known:
            continue
        near = nearest_field(name, sorted(known))
        invisible = INVISIBLE.findall(name)
        text = f"column '{visible(name)}'"
        if invisible:
            text += " holds an invisible character (" + ", ".join(f"U+{ord(c):04X}" for c in invisible) + ");"
        text += " is not a column this tool reads" if not invisible else " it is not a column this tool reads"
        text += f" (did you mean '{near}'?)" if near else ""
        if strict:
            raise InputTableError(
                text, file=shown, hint="--strict refuses unknown columns: rename it (or use --map) or remove it"
            )
        rows.append(text + "; it is ignored")
    return pd.DataFrame(
        {
            "subject_id": None,
            "code": "unknown_column",
            "timepoint": None,
            "lesion_id": None,
            "message": [f"{Path(shown).name}: {text}" for text in rows],
            "severity": "warning",
        },
        index=range(len(rows)),
    )


# --------------------------------------------------------------------------------------------------
# Blocks after the column map, cells made alike
# --------------------------------------------------------------------------------------------------


def key_text(values: pd.Series) -> np.ndarray:
    """Ids as plain text: 007 stays 007, a number from a typed format becomes its shortest exact text, missing is
    None. Also what rows are routed by, so that " P1" and "P1" always meet."""
    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
        return per_unique(values, lambda u: u.map(lambda v: number_text(float(v)))).to_numpy(dtype=object)
    return per_unique(values, stripped_text).to_numpy(dtype=object)


def stripped_text(values: pd.Series) -> list[str]:
    """Each value as text, spaces trimmed: `astype(str).str.strip()` without pandas' per-element machinery, which
    costs a second on the 136,000 distinct ids of a 3 M-row trial."""
    texts = values.to_numpy(dtype=object)
    if all(type(v) is str for v in texts):
        return [v.strip() for v in texts]
    return list(values.astype(str).str.strip())  # numbers, bytes...: pandas' own text for them


def codes_of(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Integer codes (-1 = missing) and the distinct values of a column."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), pd.Series(values.cat.categories.to_numpy(dtype=object), dtype=object)
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    return codes, pd.Series(uniques, dtype=object)


def per_unique(values: pd.Series, func: Any) -> pd.Series:
    """Apply a text function to each distinct value once (columns hold few distinct words)."""
    codes, uniques = codes_of(values)
    mapped = np.asarray(func(uniques), dtype=object)
    out = np.full(len(values), None, dtype=object)
    ok = codes >= 0
    out[ok] = mapped[codes[ok]]
    return pd.Series(out, index=values.index, dtype=object)


def recode(values: pd.Series, func: Any) -> pd.Categorical:
    """A text function applied to each distinct value once, the result kept as codes: categorical text whose
    categories are the distinct results (values that become equal share one; None or NaN is missing)."""
    codes, uniques = codes_of(values)
    mapped = np.asarray(func(uniques), dtype=object)
    new_codes, categories = pd.factorize(mapped, use_na_sentinel=True)
    if len(categories) == len(uniques) and (new_codes == np.arange(len(uniques))).all():
        return from_codes(codes, categories)  # each value kept its own code: no pass over the rows
    return from_codes(np.append(new_codes, -1)[codes], categories)


def value_mask(values: pd.Series, func: Any) -> np.ndarray:
    """A yes/no test run on each distinct value once, per row (False where the cell is empty)."""
    codes, uniques = codes_of(values)
    per_value = np.asarray(func(uniques), dtype=bool)
    if not per_value.any():  # the usual answer of a check: no pass over the rows
        return np.zeros(len(codes), dtype=bool)
    return np.append(per_value, False)[codes]


def key_codes(values: pd.Series) -> pd.Categorical:
    """`key_text` as codes: the ids of a column as categorical text."""
    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
        return recode(values, lambda u: u.map(lambda v: number_text(float(v))))
    return recode(values, stripped_text)


def as_text(values: pd.Series) -> pd.Series:
    """A column as categorical text (numbers as their shortest exact text), converting each distinct value once."""
    if isinstance(values.dtype, pd.CategoricalDtype) and (
        len(values.cat.categories) == 0 or pd.api.types.is_string_dtype(values.cat.categories.dtype)
    ):
        return values
    codes, uniques = codes_of(values)
    texts = [number_text(float(u)) if isinstance(u, int | float | np.number) else str(u) for u in uniques]
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(texts, dtype=object), validate=False))


def canonical(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Cells made alike for every engine: text columns categorical text, number columns float64."""
    out: dict[str, Any] = {}
    for column in frame.columns:
        values = frame[column]
        if kinds.get(column) == NUMBER:
            out[column] = values.astype(float).to_numpy()
        else:
            out[column] = as_text(values.reset_index(drop=True))
    return pd.DataFrame(out, index=range(len(frame)), columns=list(frame.columns))


def _apply_words(frame: pd.DataFrame, mapping: ColumnMap) -> pd.DataFrame:
    for column, words in mapping.values.items():
        if column in frame:
            frame[column] = as_text(
                per_unique(frame[column], lambda u, _w=words: u.map(lambda v: _w.get(str(v), v)))
            ).to_numpy()
    return frame


def _with_subjects(malformed: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The subject of each row the parser could not split, when its subject_id field was there."""
    at = list(names).index("subject_id") if "subject_id" in names else -1
    malformed = malformed.copy()
    malformed["subject_id"] = [
        (f[at].strip() or None) if 0 <= at < len(f) else None for f in malformed["fields"].to_list()
    ]
    return malformed


@dataclass
class MappedSource:
    """A source with the column map applied: the names the readers see and their cell kinds."""

    source: Source
    names: list[str]
    kinds: dict[str, str]
    mapping: ColumnMap

    @property
    def cells(self) -> CellMap | None:
        """Where a spreadsheet's columns are, by the names after the map."""
        whole = self.source.whole
        if whole is None or whole.cells is None:
            return None
        renames = dict(zip(self.source.names, self.names, strict=True))
        return CellMap(whole.cells.sheet, {renames.get(k, k): v for k, v in whole.cells.letters.items()})

    def blocks(self, rows: int | None) -> Iterator[RawTable]:
        renames = dict(zip(self.source.names, self.names, strict=True))
        for block in self.source.blocks(rows):
            frame = block.frame.rename(columns=renames)
            frame = _apply_words(canonical(frame, self.kinds), self.mapping)
            cells = block.cells
            if cells is not None:
                cells = CellMap(cells.sheet, {renames.get(k, k): v for k, v in cells.letters.items()})
            yield RawTable(frame, block.lines, _with_subjects(block.malformed, self.names), block.files, cells)


def prepare(
    source: Source, mapping: ColumnMap, rename_id: bool = False, every_mapped_column: bool = True
) -> MappedSource:
    names = mapped_names(source.names, mapping, source.shown, every_mapped_column)
    if rename_id and "lesion_id" not in names and "id" in names:
        names = ["lesion_id" if n == "id" else n for n in names]
    refuse_duplicate_names(names, source.shown)
    kinds = {new: source.kinds.get(old, TEXT) for old, new in zip(source.names, names, strict=True)}
    return MappedSource(source, names, kinds, mapping)


def whole(prepared: MappedSource) -> RawTable:
    """Every row of a prepared source as one block."""
    blocks = list(prepared.blocks(None))
    if len(blocks) == 1:
        return blocks[0]
    raise AssertionError("a whole read gives one block")


def read_table(path: str | Path, options: SourceOptions | None = None, rows: str = "row") -> RawTable:
    """A whole table as one raw block (after the column map), for the inputs that are read in one piece: SDTM
    domains, visits tables, organ tables."""
    options = options or SourceOptions()
    table = whole(prepare(open_source(path, options, rows), options.column_map))
    return table


def require_rows(table: RawTable, shown: str) -> None:
    if len(table.frame) == 0 and table.malformed.empty:
        raise InputTableError("file has a header but no rows", file=shown)


def require_long_columns(names: Sequence[str], shown: str) -> None:
    """The required columns of the long format, before any work."""
    missing = [c for c in ("subject_id", "timepoint") if c not in names]
    if "day" not in names and "date" not in names:
        missing.append("day or date")
    if "lesion_id" not in names:
        missing.append("lesion_id")
    if missing:
        raise InputTableError(
            f"missing required column(s): {', '.join(missing)}",
            file=shown,
            hint=f"the file has: {', '.join(map(str, list(names)[:30]))}; map other names with --map",
        )


# --------------------------------------------------------------------------------------------------
# Several files, one layout; routing rows to subject-complete parts
# --------------------------------------------------------------------------------------------------


def common_kinds(prepared: Sequence[MappedSource]) -> dict[str, str]:
    """One cell kind per column across files (a column that is numbers in one file and text in another is text),
    refusing files whose columns differ."""
    first = prepared[0]
    for other in prepared[1:]:
        if set(other.names) != set(first.names):
            raise InputTableError(
                "the files have different columns; give them one layout",
                file=other.source.shown,
                hint=f"{Path(first.source.shown).name} has {', '.join(first.names)}; this file has "
                + ", ".join(other.names),
            )
    return {name: NUMBER if all(p.kinds.get(name) == NUMBER for p in prepared) else TEXT for name in first.names}


def bucket_of(subjects: pd.Series | np.ndarray, n_buckets: int) -> np.ndarray:
    """A part number per row from the subject id: a fixed hash, so a subject's rows always meet."""
    text = pd.Series(subjects, dtype=object).astype(str).to_numpy(dtype=object)
    return (pd.util.hash_array(text, categorize=True) % np.uint64(max(n_buckets, 1))).astype(np.int64)


def spill_by_subject(
    prepared: Sequence[MappedSource], n_buckets: int, rows: int, folder: Path, name: str
) -> tuple[list[Path], dict[str, int]]:
    """Route every row of every file (malformed rows too) to its subject's part file: Parquet with the cells as
    read plus each row's line, file and, for a malformed row, the parser's reason. Returns the part files and the
    rows read per file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = common_kinds(prepared)
    # A column of the file named like the part files' own columns is not one the tool reads: it is left out.
    columns = [c for c in prepared[0].names if c not in (LINE, FILE, REASON)]
    schema = pa.schema(
        [(c, pa.float64() if kinds[c] == NUMBER else pa.dictionary(pa.int32(), pa.string())) for c in columns]
        + [(LINE, pa.int64()), (FILE, pa.string()), (REASON, pa.string())]
    )
    writers: dict[int, Any] = {}
    counts: dict[str, int] = {}
    try:
        for source in prepared:
            source.kinds = kinds
            counts[source.source.shown] = 0
            for block in source.blocks(rows):
                counts[source.source.shown] += len(block.frame) + len(block.malformed)
                for table in _spill_frames(block, columns, source.source.shown):
                    subjects = key_text(table["subject_id"]) if "subject_id" in table else np.full(len(table), "")
                    buckets = bucket_of(pd.Series(subjects, dtype=object).fillna(""), n_buckets)
                    for bucket in np.unique(buckets):
                        part = pa.Table.from_pandas(table.loc[buckets == bucket], schema=schema, preserve_index=False)
                        if bucket not in writers:
                            writers[bucket] = pq.ParquetWriter(folder / f"{name}-{bucket:05d}.parquet", schema)
                        writers[bucket].write_table(part)
    finally:
        for writer in writers.values():
            writer.close()
    return [folder / f"{name}-{b:05d}.parquet" for b in range(n_buckets)], counts


def _spill_frames(block: RawTable, columns: list[str], shown: str) -> Iterator[pd.DataFrame]:
    frame = block.frame.reindex(columns=columns)
    frame[LINE] = block.lines
    frame[FILE] = shown
    frame[REASON] = None
    yield frame
    if not block.malformed.empty:
        bad = pd.DataFrame({c: pd.Series([None] * len(block.malformed), dtype=object) for c in columns})
        if "subject_id" in bad:
            bad["subject_id"] = block.malformed["subject_id"].to_numpy(dtype=object)
        for column in columns:
            bad[column] = bad[column].astype("category") if column in frame else bad[column]
        bad[LINE] = block.malformed["line"].to_numpy(dtype=np.int64)
        bad[FILE] = shown
        bad[REASON] = block.malformed["reason"].to_numpy(dtype=object)
        yield bad


def part_table(frame: pd.DataFrame) -> RawTable:
    """A part file read back (see `spill_by_subject`) as the raw block it was made of."""
    reasons = frame[REASON].to_numpy(dtype=object) if REASON in frame else np.full(len(frame), None, dtype=object)
    bad = pd.notna(reasons)
    rows = frame.loc[~bad].reset_index(drop=True)
    malformed = frame.loc[bad]
    return RawTable(
        rows.drop(columns=[c for c in (LINE, FILE, REASON) if c in rows]),
        rows[LINE].to_numpy(dtype=np.int64),
        pd.DataFrame(
            {
                "line": malformed[LINE].to_numpy(dtype=np.int64),
                "reason": malformed[REASON].to_numpy(dtype=object),
                "fields": pd.Series([[] for _ in range(len(malformed))], dtype=object),
                "subject_id": key_text(malformed["subject_id"]) if "subject_id" in malformed else None,
                "file": malformed[FILE].to_numpy(dtype=object),
            }
        ),
        rows[FILE].to_numpy(dtype=object),
    )


# --------------------------------------------------------------------------------------------------
# The one date parser
# --------------------------------------------------------------------------------------------------

DATE = re.compile(
    r"^(?P<date>(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2}))?)?)"
    r"(?:[T ](?P<time>\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?)?)(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)


@dataclass
class DateRanges:
    """What each written date can mean, per row: the full date (NaT unless the day is known), the first and last
    day a full or partial date allows (NaT when missing or refused), its precision, and the reason a written value
    is refused (None otherwise)."""

    date: np.ndarray  # datetime64[D]
    first: np.ndarray  # datetime64[D]
    last: np.ndarray  # datetime64[D]
    precision: np.ndarray  # "day", "month" (day unknown), "year" (month and day unknown), None
    reason: np.ndarray  # object


def parse_date_ranges(values: pd.Series, column: str) -> DateRanges:
    """ISO 8601 dates, full (YYYY-MM-DD; a time after it is allowed and dropped) or partial (YYYY-MM, YYYY, as SDTM
    keeps them). A partial date is not refused here: it is a range of days, and whether it may be used (ordered by
    VISITNUM, imputed) is the caller's decision. Refused: not a real date, and a time-zone offset (which day it is
    depends on where)."""
    codes, uniques = codes_of(values)
    text = uniques.astype(str).str.strip()
    parts = text.str.extract(DATE)
    full = parts["d"].notna()
    month = parts["m"].notna() & ~full
    year = parts["y"].notna() & ~full & ~month
    stamps = pd.to_datetime(parts["date"].where(full, None), format="%Y-%m-%d", errors="coerce")
    months = pd.to_datetime(parts["date"].where(month, None), format="%Y-%m", errors="coerce")
    years = pd.to_datetime(parts["y"].where(year, None), format="%Y", errors="coerce")
    first = stamps.fillna(months).fillna(years)
    last = stamps.fillna(months + pd.offsets.MonthEnd(0)).fillna(years + pd.offsets.YearEnd(0))
    precision = np.full(len(uniques), None, dtype=object)
    precision[(full & stamps.notna()).to_numpy()] = "day"
    precision[(month & months.notna()).to_numpy()] = "month"
    precision[(year & years.notna()).to_numpy()] = "year"
    reasons = np.full(len(uniques), None, dtype=object)
    reasons[pd.isna(precision)] = f"{column} must be a real date written YYYY-MM-DD"
    zoned = parts["zone"].notna() & first.notna()
    reasons[zoned.to_numpy()] = [
        f"{column} has a time-zone offset ({z}); give the local date as YYYY-MM-DD" for z in parts["zone"][zoned]
    ]
    refused = pd.notna(reasons)
    precision[refused] = None

    def per_row(unique_values: np.ndarray, empty: Any) -> np.ndarray:
        out = np.full(len(values), empty, dtype=unique_values.dtype)
        ok = codes >= 0
        out[ok] = unique_values[codes[ok]]
        return out

    def days(stamp: pd.Series) -> np.ndarray:
        out = stamp.to_numpy().astype("datetime64[D]")
        out[refused] = np.datetime64("NaT")
        return out

    nat = np.datetime64("NaT", "D")
    return DateRanges(
        date=per_row(days(stamps), nat),
        first=per_row(days(first), nat),
        last=per_row(days(last), nat),
        precision=per_row(precision, None),
        reason=per_row(reasons, None),
    )


def parse_dates(values: pd.Series, column: str) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 dates (a time after the date is allowed and dropped) -> datetime64[D] (NaT when missing or
    refused), and per row the reason a written value is refused (None otherwise): not a real date, a partial
    date (imputing one is a later decision), or a time-zone offset (which day it is depends on where)."""
    ranges = parse_date_ranges(values, column)
    why = ranges.reason.copy()
    partial = np.isin(ranges.precision, ["month", "year"])
    if partial.any():
        shown = pd.Series(values.to_numpy(dtype=object)[partial], dtype=object).astype(str).str.strip()
        why[partial] = [f"{column} is a partial date ({t}); give the full date YYYY-MM-DD" for t in shown]
    return ranges.date, why

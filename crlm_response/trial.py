"""Trial tables in long format (CSV / Parquet, one row per lesion per timepoint) -> `Tables` + rejected rows.

Columns carry the case-file field names by default (`subject_id`, `timepoint`, `day` or `date`, `lesion_id`,
`kind`, `organ`, `is_lymph_node`, `longest_diameter_mm`, ..., organ and PET fields, `agents`); a small YAML
column map renames an export's columns. Every check is vectorised; a row that fails one is set aside with its
line number, column, value and reason, and the subject it belongs to is set aside with it, so a subject is
never scored on part of its data (a dropped "new lesion" row would hide a PD).
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputTableError
from .tables import (
    LESION_SPECS,
    ORGAN_SPECS,
    PET_SPECS,
    TIMEPOINT_SPECS,
    FieldSpec,
    Tables,
    coerce_known_types,
)
from .yamlio import load_yaml

SUBJECT_FIELDS = ("regimen", "agents", "setting", "procedure_day")
VISIT_FIELDS = tuple(TIMEPOINT_SPECS) + tuple(ORGAN_SPECS) + tuple(PET_SPECS)
LESION_FIELDS = tuple(LESION_SPECS)
KEY_COLUMNS = ("subject_id", "timepoint", "lesion_id")
ERROR_COLUMNS = ["file", "line", "subject_id", "timepoint", "lesion_id", "column", "value", "code", "reason"]
MAX_INPUT_BYTES = 20 * 1024**3
TRUE_WORDS = {"true", "t", "yes", "y", "1", "1.0"}
FALSE_WORDS = {"false", "f", "no", "n", "0", "0.0"}
SPECS: dict[str, FieldSpec] = {
    **{k: v for k, v in LESION_SPECS.items()}, **TIMEPOINT_SPECS, **ORGAN_SPECS, **PET_SPECS,
    "procedure_day": FieldSpec("procedure_day", "integer", ge=-3650, le=36500),
}


@dataclass
class ReadResult:
    """Tables built from the accepted rows, and every rejected row with its reason; counts per file."""

    tables: Tables
    rejected: pd.DataFrame
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: pd.DataFrame | None = None


@dataclass
class ColumnMap:
    """Column renames (our name -> export's name) and word maps per column (export word -> our word)."""

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)


def load_column_map(path: str | Path | None) -> ColumnMap:
    if path is None:
        return ColumnMap()
    data, _ = load_yaml(path)
    if not isinstance(data, dict):
        raise InputTableError("a column map is a YAML mapping: {columns: {our_name: their_name}, values: {...}}",
                              file=path)
    unknown = set(data) - {"columns", "values"}
    if unknown:
        raise InputTableError(f"unknown key(s) {', '.join(sorted(unknown))}", file=path,
                              hint="a column map has `columns:` and optionally `values:`")
    columns = data.get("columns") or {}
    values = data.get("values") or {}
    if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
        raise InputTableError("`columns:` maps our column name to the export's column name (text to text)",
                              file=path, key="columns")
    known = set(SPECS) | set(KEY_COLUMNS) | set(SUBJECT_FIELDS)
    for ours in columns:
        if ours not in known:
            raise InputTableError(f"`{ours}` is not a column this tool reads", file=path, key=f"columns.{ours}",
                                  hint="see README, 'Long format'")
    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
        raise InputTableError("`values:` maps a column to {their word: our word}", file=path, key="values")
    return ColumnMap({k: v for k, v in columns.items()},
                     {k: {str(a): str(b) for a, b in v.items()} for k, v in values.items()})


def _detect_encoding(path: Path, encoding: str) -> str:
    if encoding != "auto":
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputTableError(f"unknown encoding {encoding!r}", file=path) from None
        return encoding
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            line = head[: exc.start].count(b"\n") + 1
            raise InputTableError(
                f"not UTF-8 text (byte {head[exc.start:exc.start + 1]!r} on line {line})", file=path,
                hint="save as UTF-8, or pass --encoding latin-1 (or cp1252) if that is what the file is") from None
    return "utf-8"


def read_frame(path: str | Path, encoding: str = "auto") -> tuple[pd.DataFrame, np.ndarray]:
    """Read a CSV or Parquet file as a DataFrame of raw values, with the source line of each row."""
    p = Path(path)
    if not p.exists():
        raise InputTableError("file not found", file=path)
    if p.is_dir():
        raise InputTableError("is a folder; give a CSV or Parquet file", file=path)
    size = p.stat().st_size
    if size == 0:
        raise InputTableError("file is empty", file=path, hint="expected a header line and one row per lesion")
    if size > MAX_INPUT_BYTES:
        raise InputTableError(f"file is {size / 1e9:.1f} GB; the limit is {MAX_INPUT_BYTES // 1024**3} GB", file=path)
    if p.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(p)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise InputTableError(f"cannot read Parquet: {exc}", file=path) from None
        return frame.reset_index(drop=True), np.arange(1, len(frame) + 1)
    enc = _detect_encoding(p, encoding)
    try:
        frame = pd.read_csv(p, encoding=enc, skip_blank_lines=False, dtype=str, keep_default_na=False,
                            na_values=[""], low_memory=False)
    except UnicodeDecodeError as exc:
        raise InputTableError(f"cannot decode the file as {enc}: {exc.reason} at byte {exc.start}", file=path,
                              hint="pass --encoding with the file's real encoding (e.g. latin-1)") from None
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
    return frame, lines


class _Rejects:
    def __init__(self, file: str, lines: np.ndarray, frame: pd.DataFrame) -> None:
        self.file = file
        self.lines = lines
        self.frame = frame
        self.bad = np.zeros(len(frame), dtype=bool)
        self.parts: list[pd.DataFrame] = []

    def add(self, mask: np.ndarray, column: str | None, code: str, reason: Any, values: Any = None) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.bad
        if not mask.any():
            return
        self.bad |= mask
        rows = self.frame.loc[mask]
        self.parts.append(pd.DataFrame({
            "file": self.file,
            "line": self.lines[mask],
            "subject_id": rows["subject_id"].to_numpy(dtype=object) if "subject_id" in rows else None,
            "timepoint": rows["timepoint"].to_numpy(dtype=object) if "timepoint" in rows else None,
            "lesion_id": rows["lesion_id"].to_numpy(dtype=object) if "lesion_id" in rows else None,
            "column": column,
            "value": (np.asarray(values, dtype=object)[mask] if values is not None else
                      (rows[column].to_numpy(dtype=object) if column and column in rows else None)),
            "code": code,
            "reason": reason[mask] if isinstance(reason, np.ndarray) else reason,
        }))

    def table(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=ERROR_COLUMNS)
        return pd.concat(self.parts, ignore_index=True)[ERROR_COLUMNS]


def _normalise_words(values: pd.Series, column: str) -> pd.Series:
    text = values.astype(str).str.strip()
    if column == "modality":
        upper = text.str.upper().str.replace("_", "-").str.replace(" ", "-")
        return upper.replace({"PET": "PET-CT", "PETCT": "PET-CT", "PET/CT": "PET-CT", "MR": "MRI"})
    return text.str.lower().str.replace("-", "_").str.replace(" ", "_")


def convert_columns(frame: pd.DataFrame, rejects: _Rejects, specs: Mapping[str, FieldSpec]) -> pd.DataFrame:
    """Check and convert every known column (vectorised); bad cells reject their row."""
    out = frame.copy()
    for column in frame.columns:
        spec = specs.get(column)
        if spec is None:
            continue
        raw = frame[column]
        present = raw.notna().to_numpy()
        if not present.any():
            out[column] = np.nan if spec.kind in ("number", "integer", "bool", "list") else None
            continue
        if spec.kind in ("number", "integer"):
            numbers = pd.to_numeric(raw, errors="coerce").astype(float)
            values = numbers.to_numpy()
            rejects.add(present & np.isnan(values), column, "not_a_number", f"{column} must be a number")
            rejects.add(present & np.isinf(values), column, "not_finite", f"{column} must be a finite number")
            if spec.kind == "integer":
                with np.errstate(invalid="ignore"):
                    rejects.add(present & np.isfinite(values) & (np.floor(values) != values), column, "not_integer",
                                f"{column} must be a whole number")
            _bounds(rejects, values, spec, column)
            out[column] = values
        elif spec.kind == "bool":
            words = raw.astype(str).str.strip().str.lower()
            yes = words.isin(TRUE_WORDS).to_numpy()
            no = words.isin(FALSE_WORDS).to_numpy()
            rejects.add(present & ~yes & ~no, column, "not_yes_no", f"{column} must be true/false (yes/no, 1/0)")
            out[column] = np.where(yes, 1.0, np.where(no, 0.0, np.nan))
        elif spec.kind == "date":
            stamps = pd.to_datetime(raw, errors="coerce", format="ISO8601")
            rejects.add(present & stamps.isna().to_numpy(), column, "bad_date",
                        f"{column} must be a real date written YYYY-MM-DD")
            out[column] = stamps
        elif spec.kind == "list":
            parts = raw.astype(str).str.replace(",", ";").str.split(";")
            exploded = pd.to_numeric(parts.explode().str.strip(), errors="coerce")
            sums = exploded.groupby(level=0).sum(min_count=1)
            any_bad = exploded.isna().groupby(level=0).any()
            negative = (exploded < 0).groupby(level=0).any()
            bad = present & (any_bad.reindex(raw.index, fill_value=False).to_numpy()
                             | negative.reindex(raw.index, fill_value=False).to_numpy())
            rejects.add(bad, column, "bad_list", f"{column} must be numbers >= 0 separated by ';'")
            out[column] = sums.reindex(raw.index).to_numpy(dtype=float)
        else:
            if spec.choices:
                words = _normalise_words(raw, column)
                ok = words.isin(spec.choices).to_numpy()
                rejects.add(present & ~ok, column, "not_allowed",
                            f"{column} must be one of: {', '.join(spec.choices)}")
                out[column] = np.where(present, words.to_numpy(dtype=object), None)
            else:
                text = raw.astype(object).where(raw.notna(), None)
                if column == "organ":
                    text = _normalise_words(raw, column).where(raw.notna(), None)
                out[column] = text.to_numpy(dtype=object)
    return out


def _bounds(rejects: _Rejects, values: np.ndarray, spec: FieldSpec, column: str) -> None:
    with np.errstate(invalid="ignore"):
        if spec.ge is not None:
            rejects.add(values < spec.ge, column, "out_of_range", f"{column} must be >= {spec.ge:g}")
        if spec.gt is not None:
            rejects.add(values <= spec.gt, column, "out_of_range", f"{column} must be > {spec.gt:g}")
        if spec.le is not None:
            rejects.add(values > spec.le, column, "out_of_range",
                        f"{column} must be <= {spec.le:g} (a larger value is a typing or unit mistake)")


def _apply_map(frame: pd.DataFrame, mapping: ColumnMap, file: str) -> pd.DataFrame:
    renames = {theirs: ours for ours, theirs in mapping.columns.items()}
    missing = [theirs for theirs in renames if theirs not in frame.columns]
    if missing:
        raise InputTableError(f"column(s) named in the column map are not in the file: {', '.join(missing)}", file=file,
                              hint=f"the file has: {', '.join(map(str, frame.columns[:30]))}")
    frame = frame.rename(columns=renames)
    for column, words in mapping.values.items():
        if column in frame:
            frame[column] = frame[column].replace(words)
    return frame


def _subject_conflicts(frame: pd.DataFrame, columns: tuple[str, ...], keys: list[str], rejects: _Rejects,
                       what: str) -> None:
    """Values that must be constant per subject (treatment) or per visit (day, organs) but are not."""
    present = [c for c in columns if c in frame]
    if not present:
        return
    ok = ~rejects.bad
    group = frame.loc[ok, keys]
    for column in present:
        values = frame.loc[ok, column]
        counts = values.groupby([group[k] for k in keys], dropna=False).transform("nunique")
        clash = np.zeros(len(frame), dtype=bool)
        clash[np.flatnonzero(ok)] = counts.to_numpy() > 1
        rejects.add(clash, column, "inconsistent_" + what,
                    f"{column} differs between rows of the same {what}; it must be the same on every row")


def read_long(path: str | Path, column_map: ColumnMap | None = None, organs: str | Path | None = None,
              encoding: str = "auto") -> ReadResult:
    """Read a long-format lesion table (and optionally a separate organ table) into `Tables`."""
    mapping = column_map or ColumnMap()
    file = str(path)
    raw, lines = read_frame(path, encoding)
    raw = _apply_map(raw, mapping, file)
    if "lesion_id" not in raw and "id" in raw:
        raw = raw.rename(columns={"id": "lesion_id"})
    required = ["subject_id", "timepoint"]
    missing = [c for c in required if c not in raw]
    if "day" not in raw and "date" not in raw:
        missing.append("day or date")
    if "lesion_id" not in raw:
        missing.append("lesion_id")
    if missing:
        raise InputTableError(f"missing required column(s): {', '.join(missing)}", file=file,
                              hint=f"the file has: {', '.join(map(str, raw.columns[:30]))}; map other names with --map")
    if len(raw) == 0:
        raise InputTableError("file has a header but no rows", file=file)
    rejects = _Rejects(file, lines, raw)
    for key in ("subject_id", "timepoint"):
        rejects.add(raw[key].isna().to_numpy(), key, "missing_key", f"{key} is empty")
    frame = convert_columns(raw, rejects, SPECS)
    counts = {file: {"read": len(raw)}}

    organ_rejects = None
    if organs is not None:
        organ_frame, organ_rejects = _read_organs(organs, mapping, encoding)
        counts[str(organs)] = {"read": len(organ_frame) + len(organ_rejects.table())}
    else:
        organ_frame = None

    _subject_conflicts(frame, SUBJECT_FIELDS, ["subject_id"], rejects, "subject")
    _subject_conflicts(frame, VISIT_FIELDS, ["subject_id", "timepoint"], rejects, "timepoint")
    tables = _build_tables(frame, lines, rejects, organ_frame, file)
    return ReadResult(tables, rejects.table(), counts,
                      None if organ_rejects is None else organ_rejects.table())


def _read_organs(path: str | Path, mapping: ColumnMap, encoding: str) -> tuple[pd.DataFrame, _Rejects]:
    file = str(path)
    raw, lines = read_frame(path, encoding)
    raw = _apply_map(raw, mapping, file)
    missing = [c for c in ("subject_id", "timepoint") if c not in raw]
    if missing:
        raise InputTableError(f"missing required column(s): {', '.join(missing)}", file=file)
    rejects = _Rejects(file, lines, raw)
    frame = convert_columns(raw, rejects, {**TIMEPOINT_SPECS, **ORGAN_SPECS, **PET_SPECS})
    dup = frame.duplicated(["subject_id", "timepoint"], keep="first").to_numpy()
    rejects.add(dup, "timepoint", "duplicate_row", "a second organ row for the same subject and timepoint")
    frame["line"] = lines
    frame["_ok"] = ~rejects.bad
    return frame, rejects


def _build_tables(frame: pd.DataFrame, lines: np.ndarray, rejects: _Rejects, organs: pd.DataFrame | None,
                  file: str) -> Tables:
    frame = frame.copy()
    frame["line"] = lines
    frame["source"] = file
    lesion_rows = frame["lesion_id"].notna().to_numpy()
    frame["_row"] = np.arange(len(frame))
    subj = frame.groupby("subject_id", sort=False, dropna=True).first().reset_index()
    subjects = pd.DataFrame({
        "subject_id": subj["subject_id"].to_numpy(dtype=object),
        "regimen": subj["regimen"].to_numpy(dtype=object) if "regimen" in subj else None,
        "agents": _agents(subj["agents"]) if "agents" in subj else "",
        "setting": subj["setting"].to_numpy(dtype=object) if "setting" in subj else "systemic",
        "procedure_day": subj["procedure_day"].to_numpy(dtype=float) if "procedure_day" in subj else np.nan,
        "source": file, "line": subj["line"].to_numpy(),
    })
    visit_cols = [c for c in VISIT_FIELDS if c in frame]
    visits = (frame.groupby(["subject_id", "timepoint"], sort=False, dropna=True)[visit_cols + ["line", "_row"]]
              .first().reset_index())
    if organs is not None:
        visits = _merge_organs(visits, organs)
    for column in VISIT_FIELDS:
        if column not in visits:
            visits[column] = None
    visits["source"] = file
    les = frame.loc[lesion_rows]
    lesions = pd.DataFrame({"subject_id": les["subject_id"].to_numpy(dtype=object),
                            "timepoint": les["timepoint"].to_numpy(dtype=object),
                            "lesion_id": les["lesion_id"].astype(str).to_numpy(dtype=object)})
    for column in LESION_SPECS:
        target = "fragments_sum_mm" if column == "fragments_mm" else column
        if column in les:
            lesions[target] = les[column].to_numpy()
        else:
            lesions[target] = np.nan if SPECS[column].kind in ("number", "integer", "bool", "list") else None
    if "slice_thickness_mm" in les and les["slice_thickness_mm"].notna().any():
        lesions["slice_thickness_mm"] = les["slice_thickness_mm"].to_numpy()
    lesions["equivocal"] = np.nan_to_num(lesions["equivocal"].to_numpy(dtype=float), nan=0.0)
    lesions["status"] = np.where(pd.isna(lesions["status"].to_numpy(dtype=object)), "present",
                                 lesions["status"].to_numpy(dtype=object))
    lesions["source"] = file
    lesions["line"] = les["line"].to_numpy()
    lesions["_row"] = les["_row"].to_numpy()
    spec_map = {**SPECS, "fragments_sum_mm": FieldSpec("fragments_sum_mm", "number"),
                "line": FieldSpec("line", "number")}
    return Tables(subjects=subjects,
                  visits=coerce_known_types(visits.drop(columns=["_row"]).assign(_row=visits["_row"]), spec_map),
                  lesions=coerce_known_types(lesions, spec_map))


def _agents(values: pd.Series) -> np.ndarray:
    text = values.fillna("").astype(str).str.lower().str.replace(",", ";")
    return text.str.split(";").map(lambda parts: ";".join(p.strip() for p in parts if p.strip())).to_numpy(dtype=object)


def _merge_organs(visits: pd.DataFrame, organs: pd.DataFrame) -> pd.DataFrame:
    ok = organs.loc[organs["_ok"]]
    columns = [c for c in VISIT_FIELDS if c in ok and c not in ("day", "date")]
    merged = visits.merge(ok[["subject_id", "timepoint"] + columns + ["line"]].rename(columns={"line": "_organ_line"}),
                          on=["subject_id", "timepoint"], how="left", suffixes=("", "_organ"))
    for column in columns:
        if column + "_organ" in merged:
            merged[column] = merged[column].where(merged[column].notna(), merged[column + "_organ"])
            merged = merged.drop(columns=[column + "_organ"])
    return merged

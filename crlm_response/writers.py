"""Writing outputs: text, CSV, Parquet, SAS V5 transport, Dataset-JSON. Every file is written atomically.

A file is first written next to its destination under a temporary name and then renamed over it, so a
crash or a failed run never leaves half a file and never damages an existing output. The outputs of one run
are put in place together (`all_or_nothing`), under a lock on their folders, so two runs into the same
outputs never leave a mix of both; SIGTERM and SIGINT remove the temporary files like any other failure.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import OutputError

# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@dataclass
class _Pending:
    """What an `all_or_nothing()` block has finished and will put in place at its end."""

    files: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary file, destination)
    actions: list[Callable[[], None]] = field(default_factory=list)  # e.g. swapping in a dataset folder
    folders: set[Path] = field(default_factory=set)  # locked while the outputs are put in place


_PENDING: ContextVar[_Pending | None] = ContextVar("_PENDING", default=None)


@contextmanager
def all_or_nothing() -> Iterator[None]:
    """Outputs written inside this block replace their destinations together at its end, or none do.

    A run that fails while writing its third output must not leave a new first output beside old others:
    that would be a set of results that never existed.
    """
    pending = _Pending()
    token = _PENDING.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending.files:
            _unlink_quietly(tmp)
        raise
    finally:
        _PENDING.reset(token)
    _publish_all(pending)


def _publish_all(pending: _Pending) -> None:
    """Rename every finished file over its destination and run the other steps (dataset folders, stale side
    files), holding a lock on each folder involved so that another run's set cannot interleave, and with
    SIGTERM/SIGINT held back until the set is complete."""
    folders = pending.folders | {target.parent for _, target in pending.files}
    done = 0
    try:
        with signals_deferred(), _locked(folders):
            for tmp, target in pending.files:
                _publish(tmp, target)
                done += 1
            for action in pending.actions:
                action()
    finally:
        for tmp, _ in pending.files[done:]:
            _unlink_quietly(tmp)


@contextmanager
def _locked(folders: set[Path]) -> Iterator[None]:
    """An exclusive lock (flock) on each folder, taken in one order so two runs cannot deadlock."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock, the renames stay atomic one by one
        yield
        return
    handles: list[int] = []
    try:
        for folder in sorted({os.path.realpath(f if str(f) else ".") for f in folders}):
            try:
                handle = os.open(folder, os.O_RDONLY)
            except OSError:
                continue  # a folder that does not exist holds nothing to mix
            handles.append(handle)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        for handle in handles:
            os.close(handle)  # closing releases the lock


def remove_later(path: str | Path) -> None:
    """Remove an earlier run's output that this run does not produce (a stale `.warnings` file must never pass
    for this run's), with the run's other outputs; only a regular file is ever removed."""
    target = Path(path)

    def remove() -> None:
        try:
            if os.path.isfile(target) and not os.path.islink(target):
                os.unlink(target)
        except OSError as exc:
            raise OutputError(f"cannot remove the earlier run's file: {exc.strerror or exc}", file=target) from None

    publish_later(remove, target.parent)


class Terminated(SystemExit):
    """The run was stopped by SIGTERM (exit 128 + 15, as a shell reports it)."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(128 + signum)


_DEFER = threading.local()


def _on_signal(signum: int, frame: Any) -> None:
    held = getattr(_DEFER, "held", None)
    if held is not None:
        held.append(signum)  # outputs are being put in place: finish the set first
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGTERM and SIGINT wait until the block ends (renaming a set of outputs must not stop half-way)."""
    if getattr(_DEFER, "held", None) is not None:
        yield
        return
    _DEFER.held = []
    try:
        yield
    finally:
        held, _DEFER.held = _DEFER.held, None
    if held:
        _on_signal(held[0], None)


@contextmanager
def clean_stop() -> Iterator[None]:
    """SIGTERM ends the run like an error (temporary files removed by the usual clean-up) instead of killing
    the process where it stands; SIGINT stays KeyboardInterrupt. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread() or sys.platform == "win32":
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def commit(tmp: str | Path, target: str | Path) -> None:
    """Put a finished temporary file in place now, or at the end of the enclosing `all_or_nothing()`."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's usual permissions
    pending = _PENDING.get()
    if pending is None:
        _publish(Path(tmp), Path(target))
    else:
        pending.files.append((Path(tmp), Path(target)))


def publish_later(action: Callable[[], None], folder: str | Path | None = None) -> None:
    """Run `action`, which puts finished outputs in place in `folder`, now or with the files of the enclosing
    `all_or_nothing()` (if the block fails it never runs: the caller's clean-up must then remove what it staged)."""
    pending = _PENDING.get()
    if pending is None:
        action()
    else:
        pending.actions.append(action)
        if folder is not None:
            pending.folders.add(Path(folder))


def _publish(tmp: Path, target: Path) -> None:
    try:
        os.replace(tmp, target)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise OutputError(f"cannot write: {exc.strerror or exc}", file=target) from None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def temporary_beside(target: Path) -> Path:
    """An empty temporary file in `target`'s folder (so the final rename stays on one file system)."""
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise OutputError("is a folder; give a file name", file=target)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder: {exc.strerror}", file=folder) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write here: {exc.strerror}", file=target) from None
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the destination folder; it replaces `path` only if the block succeeds.

    A failed write (full disk, I/O error) is the user's to fix, so it becomes an `OutputError` naming the file.
    """
    target = Path(path)
    tmp = temporary_beside(target)
    try:
        yield tmp
    except OSError as exc:
        _unlink_quietly(tmp)
        raise OutputError(f"cannot write: {exc.strerror or exc}", file=target) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    commit(tmp, target)


def to_json(data: Mapping[str, Any]) -> str:
    """The JSON every command writes: indented, UTF-8 as is, numpy numbers and dates as plain values."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _map_distinct(values: pd.Series, func: Any) -> tuple[np.ndarray, bool]:
    """Apply `func` to each distinct value once (text columns repeat few values); report whether anything changed."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    mapped = np.array([func(u) for u in uniques], dtype=object)
    changed = any(m is not u for m, u in zip(mapped, uniques, strict=True))
    if not changed:
        return values.to_numpy(dtype=object), False
    out = values.to_numpy(dtype=object).copy()
    ok = codes >= 0
    out[ok] = mapped[codes[ok]]
    return out, True


def csv_cells(frame: pd.DataFrame, safe_csv: bool = True) -> pd.DataFrame:
    """The cells as every CSV output writes them: formula-safe text (when `safe_csv`) and true/false.

    Text and boolean columns come back as Arrow text (`pd.ArrowDtype`), built once from their distinct values,
    so that `write_csv` hands them to the writer without converting them again. A table with a column that
    needs more care (numbers mixed with text, pandas' string dtype...) takes the general path."""
    cells = _arrow_cells(frame, safe_csv)
    return cells if cells is not None else _general_cells(frame, safe_csv)


def _general_cells(frame: pd.DataFrame, safe_csv: bool) -> pd.DataFrame:
    """`csv_cells` for any table: a column of plain text that has nothing to change is found by pyarrow, other
    text and boolean columns are mapped value by distinct value."""
    plain: set[Any] = set()
    for column in frame.columns:
        if frame[column].dtype == object and _plain_text(frame[column].to_numpy(dtype=object), safe_csv):
            plain.add(column)
    data = neutralise_formulas(frame, plain) if safe_csv else frame
    return _lowercase_booleans(data, plain)


def _arrow_cells(frame: pd.DataFrame, safe_csv: bool) -> pd.DataFrame | None:
    """`csv_cells` for a table whose text columns hold only text or only booleans (and missing values): each
    distinct value is made safe once, then spread to the rows by its code. None when a column does not fit."""
    converted: dict[Any, Any] = {}
    for column in frame.columns:
        values = frame[column]
        if values.dtype == bool:
            converted[column] = _booleans_as_text(values.to_numpy())
        elif values.dtype == object:
            text = _distinct_as_text(values.to_numpy(dtype=object), safe_csv)
            if text is None:
                return None
            converted[column] = text
        elif pd.api.types.is_string_dtype(values.dtype) or isinstance(values.dtype, pd.CategoricalDtype):
            return None  # rare in outputs: the general path knows what the writer makes of them
    if not converted:
        return frame
    out = frame.copy(deep=False)
    for column, text in converted.items():
        out[column] = pd.arrays.ArrowExtensionArray(text)
    return out


def _booleans_as_text(values: np.ndarray) -> Any:
    """A boolean column as true/false Arrow text."""
    import pyarrow as pa

    return pa.array(["false", "true"]).take(pa.array(values.view(np.int8)))


def _distinct_as_text(values: np.ndarray, safe_csv: bool) -> Any:
    """An object column as Arrow text (formula-safe, booleans as true/false), or None when it holds anything but
    text, booleans and missing values (None, NaN), or both text and booleans."""
    import pyarrow as pa

    if len(values) and isinstance(values[0], bool | np.bool_):
        words = _object_booleans_as_text(values)
        if words is not None:
            return words
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    try:
        distinct = pa.array(uniques, from_pandas=True)
        missing = codes < 0
        if missing.any() and pa.array(values[missing], from_pandas=True).null_count != int(missing.sum()):
            return None  # pandas and pyarrow disagree on what is missing: leave it to the general path
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):
        return None
    if pa.types.is_boolean(distinct.type):
        words = pa.array(np.where(distinct.to_numpy(zero_copy_only=False), "true", "false"), pa.string())
    elif pa.types.is_string(distinct.type):
        words = _formula_safe(distinct, uniques) if safe_csv else distinct
    elif pa.types.is_null(distinct.type):
        words = pa.array([], pa.string())
    else:
        return None
    return words.take(pa.array(codes, mask=missing))


def _object_booleans_as_text(values: np.ndarray) -> Any:
    """A column of Python booleans (and missing values) as true/false without hashing each cell; None when some
    cell is not a boolean."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        flags = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):
        return None
    return pc.if_else(flags, "true", "false") if pa.types.is_boolean(flags.type) else None


def _formula_safe(distinct: Any, uniques: np.ndarray) -> Any:
    """Distinct text values with a single quote before those a spreadsheet would run as a formula."""
    import pyarrow as pa
    import pyarrow.compute as pc

    risky = np.flatnonzero(pc.match_substring_regex(distinct, FORMULA_PATTERN).to_numpy(zero_copy_only=False))
    if not len(risky):
        return distinct
    safe = np.asarray(uniques, dtype=object).copy()
    for i in risky:
        if not _is_number(safe[i]):
            safe[i] = "'" + safe[i]
    return pa.array(safe, pa.string())


FORMULA_PATTERN = "^[=+\\-@\t\r]"  # a cell starting with one of FORMULA_START


def _plain_text(values: np.ndarray, safe_csv: bool) -> bool:
    """Only text (or nothing), and (when `safe_csv`) no cell starting like a formula: no cell needs a change."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):
        return False
    if pa.types.is_null(array.type):
        return True
    if not pa.types.is_string(array.type):
        return False
    return not safe_csv or not pc.any(pc.match_substring_regex(array, FORMULA_PATTERN)).as_py()


def neutralise_formulas(frame: pd.DataFrame, plain: Collection[Any] = ()) -> pd.DataFrame:
    """Prefix text cells a spreadsheet would run as a formula with a single quote (OWASP CSV injection).

    Numbers (including negative numbers stored as numbers) are not touched; only text cells are. Columns in
    `plain` are known to need no change.
    """
    out = frame
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype) or column in plain:
            continue
        mapped, changed = _map_distinct(
            values, lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) and not _is_number(v) else v
        )
        if changed:
            if out is frame:
                out = frame.copy()
            out[column] = mapped
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_FORMATS = "CSV (.csv), Parquet (.parquet), SAS V5 transport (.xpt), Dataset-JSON (.json, .ndjson)"


def write_table(frame: pd.DataFrame, path: str | Path, *, safe_csv: bool = True, name: str | None = None) -> None:
    """Write a table atomically in the format its extension names: .parquet, .xpt (SAS V5 transport), .json or
    .ndjson (CDISC Dataset-JSON 1.1), else CSV (text cells formula-safe). `name` is the dataset name written in
    .xpt and Dataset-JSON (default: the file name, upper case)."""
    from . import cdisc_writers

    target = Path(path)
    suffix = target.suffix.lower()
    dataset = name or target.stem.upper()
    try:
        if suffix == ".xpt":
            cdisc_writers.check_xpt(frame, dataset)  # before any file is made
        with atomic_path(target) as tmp:
            if suffix in PARQUET_SUFFIXES:
                _to_parquet(frame, tmp)
            elif suffix == ".xpt":
                cdisc_writers.write_xpt(frame, tmp, dataset)
            elif suffix in (".json", ".ndjson"):
                cdisc_writers.write_dataset_json(frame, tmp, dataset, ndjson=suffix == ".ndjson")
            else:
                write_csv(csv_cells(frame, safe_csv), tmp)
    except OutputError as exc:
        if exc.location.file is not None:
            raise
        raise OutputError(exc.message, file=target, key=exc.location.key, hint=exc.hint) from None


def csv_text(frame: pd.DataFrame, *, safe_csv: bool = True) -> str:
    """A table as CSV text for standard output, formula-safe like every CSV file the tool writes."""
    return str(csv_cells(frame, safe_csv).to_csv(index=False, lineterminator="\n"))


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV through pyarrow's writer (several times faster than pandas on large outputs); quotes only where needed,
    missing values as empty cells. Falls back to pandas for columns pyarrow cannot type (mixed objects)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        frame.to_csv(path, index=False, lineterminator="\n")
        return
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))


def _lowercase_booleans(frame: pd.DataFrame, plain: Collection[Any] = ()) -> pd.DataFrame:
    """true/false in CSV, as in the JSON output and the input format (not Python's True/False); columns in
    `plain` hold only text."""
    out = frame
    for column in frame.columns:
        values = frame[column]
        if column in plain:
            continue
        if values.dtype == bool:
            mapped, changed = np.where(values.to_numpy(), "true", "false").astype(object), True
        elif values.dtype == object:
            mapped, changed = _map_distinct(
                values, lambda v: ("true" if v else "false") if isinstance(v, bool | np.bool_) else v
            )
        else:
            continue
        if changed:
            if out is frame:
                out = frame.copy()
            out[column] = mapped
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _to_parquet(frame: pd.DataFrame, path: Path) -> None:
    out = frame.copy(deep=False)  # only whole columns are replaced
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = _parquet_cells(out[column].to_numpy(dtype=object))
    out.to_parquet(path, index=False)


def _parquet_cells(values: np.ndarray) -> Any:
    """An object column as Parquet stores it: text (lists joined with "; "), or true/false when it holds booleans
    and no text. Columns of only text or only booleans (the usual ones) are converted without a Python step per
    cell, except for their missing cells."""
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values.tolist()  # only text, nothing missing
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "string":
        return _text_cells(values)
    if kind == "boolean":
        flags = _boolean_cells(values)
        if flags is not None:
            return flags
    if any(isinstance(v, list | dict) for v in values):
        return ["; ".join(map(str, v)) if isinstance(v, list) else (str(v) if v is not None else None) for v in values]
    if any(isinstance(v, bool) for v in values) and not any(isinstance(v, str) for v in values):
        return pd.array([None if _missing(v) else bool(v) for v in values], dtype="boolean")
    return [None if _missing(v) else str(v) for v in values]


def _text_cells(values: np.ndarray) -> list[Any]:
    """Text cells as they are; None for None and NaN (other missing markers become text, as str() writes them)."""
    missing = pd.isna(values)
    if not missing.any():
        return values.tolist()
    cells = values.copy()
    cells[missing] = np.array([None if _missing(v) else str(v) for v in values[missing]], dtype=object)
    return cells.tolist()


def _boolean_cells(values: np.ndarray) -> Any:
    """A column of booleans (Python's own, not only numpy's) and missing cells as a nullable boolean array; None
    when no cell is a Python bool (numpy booleans alone are written as text)."""
    missing = pd.isna(values)
    present = values[~missing]
    if not any(isinstance(v, bool) for v in present):  # stops at the first Python bool: usually the first cell
        return None
    flags = np.zeros(len(values), dtype=bool)
    flags[~missing] = present.astype(bool)
    nulls = missing.copy()
    for i in np.flatnonzero(missing):  # None and NaN are missing; another marker is read as a truth value
        if not _missing(values[i]):
            flags[i], nulls[i] = bool(values[i]), False
    return pd.arrays.BooleanArray(flags, nulls)

"""Writing outputs: text, CSV, Parquet, JSON. Every file is written atomically.

A file is first written next to its destination under a temporary name and then renamed over it, so a
crash or a failed run never leaves half a file and never damages an existing output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import CrlmError

# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class OutputError(CrlmError):
    """An output that cannot be written (folder missing, not writable, same file as an input)."""


def refuse_overwriting_inputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]) -> None:
    """Stop before any work if an output path is one of the input files."""
    resolved_inputs = {Path(p).resolve() for p in inputs if p is not None and not str(p).startswith("<")}
    for out in outputs:
        if out is None:
            continue
        if Path(out).resolve() in resolved_inputs:
            raise OutputError("output would overwrite an input file", file=out, hint="choose another output path")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@dataclass
class _Pending:
    """What an `all_or_nothing()` block has finished and will put in place at its end."""

    files: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary file, destination)
    actions: list[Callable[[], None]] = field(default_factory=list)  # e.g. swapping in a dataset folder


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
    for tmp, target in pending.files:
        _publish(tmp, target)
    for action in pending.actions:
        action()


def commit(tmp: str | Path, target: str | Path) -> None:
    """Put a finished temporary file in place now, or at the end of the enclosing `all_or_nothing()`."""
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's usual permissions
    pending = _PENDING.get()
    if pending is None:
        _publish(Path(tmp), Path(target))
    else:
        pending.files.append((Path(tmp), Path(target)))


def publish_later(action: Callable[[], None]) -> None:
    """Run `action`, which puts finished outputs in place, now or with the files of the enclosing
    `all_or_nothing()` (if the block fails it never runs: the caller's clean-up must then remove what it staged)."""
    pending = _PENDING.get()
    if pending is None:
        action()
    else:
        pending.actions.append(action)


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


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells a spreadsheet would run as a formula with a single quote (OWASP CSV injection).

    Numbers (including negative numbers stored as numbers) are not touched; only text cells are.
    """
    out = frame
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object and not pd.api.types.is_string_dtype(values.dtype):
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


def write_table(frame: pd.DataFrame, path: str | Path, *, safe_csv: bool = True) -> None:
    """Write a table as CSV or Parquet (by extension), atomically. CSV text cells are formula-safe."""
    target = Path(path)
    suffix = target.suffix.lower()
    with atomic_path(target) as tmp:
        if suffix in (".parquet", ".pq"):
            _to_parquet(frame, tmp)
        else:
            data = neutralise_formulas(frame) if safe_csv else frame
            write_csv(_lowercase_booleans(data), tmp)


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


def _lowercase_booleans(frame: pd.DataFrame) -> pd.DataFrame:
    """true/false in CSV, as in the JSON output and the input format (not Python's True/False)."""
    out = frame
    for column in frame.columns:
        values = frame[column]
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
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            values = out[column].to_numpy(dtype=object)
            if any(isinstance(v, list | dict) for v in values):
                out[column] = [
                    "; ".join(map(str, v)) if isinstance(v, list) else (str(v) if v is not None else None)
                    for v in values
                ]
            elif any(isinstance(v, bool) for v in values) and not any(isinstance(v, str) for v in values):
                out[column] = pd.array([None if _missing(v) else bool(v) for v in values], dtype="boolean")
            else:
                out[column] = [None if _missing(v) else str(v) for v in values]
    out.to_parquet(path, index=False)

"""Batch engines beyond one in-memory table: subject-complete chunks (bounded memory) and Dask.

Both apply `score_part` — the very function the default pandas engine applies to a whole file — to parts that
each hold every row of their subjects: a subject's rows are routed to a part by a fixed hash of its id, so no
subject is ever split. Results of all parts are written through one `ResultSink`, which also keeps the best
responses (one row per subject) for the summary and adds up the per-file accounting.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .batch import BatchResult, merge_warning_summaries, score_read
from .dates import DateOptions
from .errors import CrlmError, InputTableError
from .formats import CellMap
from .sources import FILE, LINE, REASON, MappedSource, bucket_of, part_table, spill_by_subject
from .summary import summarise
from .trial import ERROR_COLUMNS, LongInput, SourceOptions, long_from_frames, open_long
from .writers import (
    OutputError,
    atomic_path,
    commit,
    publish_later,
    remove_later,
    temporary_beside,
    write_table,
)

OUTPUT_KINDS = ("visits", "best", "errors", "warnings", "flags", "lesions")


class EngineError(CrlmError):
    """The chosen engine cannot run (Dask not installed, scheduler unreachable)."""


__all__ = ["bucket_of", "score_part"]


def score_part(
    lesions: pd.DataFrame,
    file: str,
    organs: pd.DataFrame | None,
    organs_file: str | None,
    criteria: Sequence[str] | None,
    settings: Mapping[str, Mapping[str, Any]] | None,
    explain: bool = False,
    cells: Mapping[str, CellMap] | None = None,
    dates: DateOptions | None = None,
) -> BatchResult:
    """Score one subject-complete part, as `sources.spill_by_subject` wrote it (cells as read, and each row's
    line, file and, for a row the parser could not split, its reason). `cells`: spreadsheet inputs' cell maps."""
    organ_raw = part_table(organs) if organs is not None else None
    read = long_from_frames(part_table(lesions), file, organ_raw, organs_file, cells)
    return score_read(read, criteria, settings, explain=explain, dates=dates)


def warnings_result(warnings: pd.DataFrame) -> BatchResult:
    """Warnings about the inputs themselves (unknown columns), given once for the whole run."""
    empty = pd.DataFrame()
    table = warnings.assign(criteria=None)[["subject_id", "criteria", "code", "timepoint", "lesion_id", "message"]]
    return BatchResult(empty, empty, empty, empty, table, empty, {}, [])


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


@dataclass
class ResultSink:
    """Writes the outputs of many parts: one file per output (CSV appended part by part, or Parquet), or a
    partitioned Parquet dataset (a folder per output, a file per part) when `folder` is set."""

    paths: dict[str, Path | None]
    folder: Path | None = None
    safe_csv: bool = True
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    best_parts: list[pd.DataFrame] = field(default_factory=list)
    _columns: dict[str, list[str]] = field(default_factory=dict)
    _spools: dict[str, Path] = field(default_factory=dict)  # per Parquet output: a folder of its parts
    _tmp: dict[str, Path] = field(default_factory=dict)
    _empty_columns: dict[str, list[str]] = field(default_factory=dict)  # the header of an output without rows
    _stage: Path | None = None
    parts: int = 0
    warnings: int = 0
    warning_summaries: list[pd.DataFrame] = field(default_factory=list)
    warned_subjects: int = 0

    def add(self, result: BatchResult, part: int) -> None:
        self.parts += 1
        for file, c in result.counts.items():
            total = self.counts.setdefault(file, {"read": 0, "scored": 0, "rejected": 0})
            for key in total:
                total[key] += c[key]
        self.best_parts.append(result.best)
        self.warnings += len(result.warnings)
        self.warning_summaries.append(result.warning_summary())
        self.warned_subjects += result.n_subjects_with_warnings
        for kind, frame in result.tables().items():
            if frame is None or frame.empty:
                if frame is not None and len(frame.columns):
                    self._empty_columns.setdefault(kind, list(frame.columns))
                continue
            if self.folder is not None:
                target = self._staging() / kind / f"part-{part:05d}.parquet"
                target.parent.mkdir(parents=True, exist_ok=True)
                write_table(frame, target)
                continue
            path = self.paths.get(kind)
            if path is None:
                continue
            if path.suffix.lower() in (".parquet", ".pq", ".xpt", ".json", ".ndjson"):
                # One Parquet file needs one schema (and .xpt / Dataset-JSON one table): parts wait on disk as
                # Parquet and are joined at close.
                write_table(frame, self._spool(kind, path) / f"part-{part:05d}.parquet")
            else:
                try:
                    self._append_csv(kind, path, frame)
                except OSError as exc:
                    raise OutputError(f"cannot write: {exc.strerror or exc}", file=path) from None

    def _append_csv(self, kind: str, path: Path, frame: pd.DataFrame) -> None:
        """Append one part with the same CSV writer as the in-memory engine (identical text for identical data)."""
        from .writers import csv_cells, write_csv

        data = csv_cells(frame, self.safe_csv)
        if kind not in self._columns:
            self._columns[kind] = list(data.columns)
            self._tmp[kind] = temporary_beside(path)
            write_csv(data, self._tmp[kind])
            return
        columns = self._columns[kind] + [c for c in data.columns if c not in self._columns[kind]]
        if columns != self._columns[kind]:
            # A later part brought a new column (rare): rewrite what is there with it.
            old = pd.read_csv(self._tmp[kind], dtype=object, keep_default_na=False)
            write_csv(
                pd.concat([old, data.astype(object)], ignore_index=True).reindex(columns=columns), self._tmp[kind]
            )
            self._columns[kind] = columns
            return
        part = self._tmp[kind].with_suffix(".part")
        try:
            write_csv(data.reindex(columns=columns), part)
            with open(part, "rb") as source, open(self._tmp[kind], "ab") as target:
                source.readline()  # the header is already there
                shutil.copyfileobj(source, target)
        finally:
            part.unlink(missing_ok=True)

    def close(self) -> pd.DataFrame:
        """Finish every output; return the best-response table of all parts (for the summary)."""
        best = (
            pd.concat([b for b in self.best_parts if b is not None and not b.empty], ignore_index=True)
            if any(b is not None and not b.empty for b in self.best_parts)
            else pd.DataFrame()
        )
        if self.folder is not None:
            self._staging()  # also when no part had rows: the earlier run's parts must still go
            # with the run's other outputs (e.g. --summary-file), or not at all
            publish_later(self._publish_dataset, self.folder)
        for kind, spool in self._spools.items():
            path = self.paths[kind]
            assert path is not None
            parts = sorted(spool.glob("part-*.parquet"))
            if path.suffix.lower() in (".parquet", ".pq"):
                _join_parquet_parts(parts, path)
            else:  # .xpt and Dataset-JSON are written from one table, in memory
                joined = spool / "joined.parquet"
                _join_parquet_parts(parts, joined, atomic=False)
                write_table(pd.read_parquet(joined), path, safe_csv=self.safe_csv)
        for kind, tmp in self._tmp.items():
            path = self.paths[kind]
            assert path is not None
            commit(tmp, path)
        for kind in ("visits", "best", "errors"):
            path = self.paths.get(kind)
            if self.folder is None and path is not None and kind not in self._tmp and kind not in self._spools:
                header = ERROR_COLUMNS if kind == "errors" else self._empty_columns.get(kind, ["subject_id"])
                write_table(pd.DataFrame(columns=header), path)
        for kind in ("warnings", "flags", "lesions"):
            path = self.paths.get(kind)
            if self.folder is None and path is not None and kind not in self._tmp and kind not in self._spools:
                remove_later(path)  # an earlier run's file must not pass for this run's
        self._remove_spools()
        return best

    def abort(self) -> None:
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
        self._remove_spools()

    def _spool(self, kind: str, path: Path) -> Path:
        if kind not in self._spools:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._spools[kind] = Path(tempfile.mkdtemp(prefix=f".{path.name}.parts-", dir=path.parent))
        return self._spools[kind]

    def _remove_spools(self) -> None:
        for spool in self._spools.values():
            shutil.rmtree(spool, ignore_errors=True)

    def _staging(self) -> Path:
        """Dataset parts are written to a hidden folder first: a failed run leaves the last good dataset."""
        if self._stage is None:
            assert self.folder is not None
            self.folder.mkdir(parents=True, exist_ok=True)
            self._stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.folder))
        return self._stage

    def _publish_dataset(self) -> None:
        """Replace each output's sub-folder with this run's (removing those this run did not produce), so no
        part of an earlier run stays mixed in."""
        assert self.folder is not None and self._stage is not None
        for kind in OUTPUT_KINDS:
            old, new = self.folder / kind, self._stage / kind
            if old.exists():
                shutil.rmtree(old)
            if new.exists():
                os.replace(new, old)
        shutil.rmtree(self._stage, ignore_errors=True)
        self._stage = None

    def summary(self, best: pd.DataFrame) -> list[dict[str, Any]]:
        return summarise(best) if not best.empty else []

    def finish(self, dates: DateOptions | None = None) -> BatchResult:
        """Close every output and return the run's result. Its tables stay in the files written part by part:
        the result holds the best responses (for the summary), the accounting and the warning summary."""
        best = self.close()
        return BatchResult(
            pd.DataFrame(),
            best,
            pd.DataFrame(),
            pd.DataFrame(),
            pd.DataFrame(),
            pd.DataFrame(),
            self.counts,
            self.summary(best),
            warnings_summarised=merge_warning_summaries(self.warning_summaries),
            subjects_with_warnings=self.warned_subjects,
            dates=dates or DateOptions(),
        )


# --------------------------------------------------------------------------------------------------
# Bounded memory: subject-complete chunks through a disk-backed shuffle
# --------------------------------------------------------------------------------------------------


def _estimate_rows(source: MappedSource) -> int:
    inner = source.source
    if inner.layout is not None:
        return inner.layout.lines
    if inner.whole is not None:
        return len(inner.whole.frame)
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(inner.data).metadata.num_rows)


@dataclass
class Parts:
    """The inputs routed to subject-complete part files (see `sources.spill_by_subject`)."""

    opened: LongInput
    lesions: list[Path]
    organs: list[Path] | None
    label: str

    def frames(self, i: int) -> tuple[pd.DataFrame, pd.DataFrame | None] | None:
        """Part `i` as (lesion rows, organ rows); None when neither file has a row for it."""
        lesion = self.lesions[i]
        organ = self.organs[i] if self.organs else None
        if not lesion.exists() and (organ is None or not organ.exists()):
            return None
        lesion_frame = _read_part(lesion, self.opened.lesions[0])
        organ_frame = _read_part(organ, self.opened.organs) if organ is not None else None
        return lesion_frame, organ_frame

    @property
    def organs_file(self) -> str | None:
        return self.opened.organs.source.shown if self.opened.organs is not None else None


def _read_part(path: Path, source: MappedSource | None) -> pd.DataFrame:
    if path.exists():
        return pd.read_parquet(path)
    assert source is not None
    columns = {c: pd.Series(dtype=float if source.kinds.get(c) == "number" else object) for c in source.names}
    columns.update({LINE: pd.Series(dtype=np.int64), FILE: pd.Series(dtype=object), REASON: pd.Series(dtype=object)})
    return pd.DataFrame(columns)


def split_by_subject(
    paths: Sequence[Path],
    organs: Path | None,
    options: SourceOptions,
    n_buckets: int | None,
    rows: int,
    workdir: Path,
    sink: ResultSink,
    say: Any,
) -> Parts:
    """Open the inputs (header checks, once), then route every row to its subject's part."""
    opened = open_long(paths, organs, options)
    if n_buckets is None:
        n_buckets = max(1, math.ceil(sum(_estimate_rows(s) for s in opened.lesions) / max(rows, 1)))
    label = opened.label if len(paths) == 1 else _common_label(paths)
    for source in opened.lesions:  # accounting per input file, in the order given
        sink.counts.setdefault(source.source.shown, {"read": 0, "scored": 0, "rejected": 0})
    say(f"splitting {Path(label).name} into {n_buckets} subject-complete parts")
    lesion_parts, counts = spill_by_subject(opened.lesions, n_buckets, rows, workdir, "lesions")
    for shown, n in counts.items():
        if n == 0:
            raise InputTableError("file has a header but no rows", file=shown)
    organ_parts = None
    if opened.organs is not None:
        organ_parts, _ = spill_by_subject([opened.organs], n_buckets, rows, workdir, "organs")
    if not opened.warnings.empty:
        sink.add(warnings_result(opened.warnings), 0)
    return Parts(opened, lesion_parts, organ_parts, label)


def _join_parquet_parts(parts: list[Path], path: Path, atomic: bool = True) -> None:
    """Parts of one output (written one by one) as one Parquet file, holding one part in memory at a time.

    Parts may type a column differently (all missing in one part, numbers in another): the file gets the
    schema that admits every part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(p) for p in parts]
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    # pandas' own metadata (e.g. a whole-number column with gaps is Int64, not float) from a part with every column
    model = next((s for s in schemas if s.names == unified.names), schemas[0])
    schema = pa.schema(
        [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in unified], metadata=model.metadata
    )
    if atomic:
        with atomic_path(path) as tmp:
            _write_parts(parts, tmp, schema)
    else:
        _write_parts(parts, path, schema)


def _write_parts(parts: list[Path], path: Path, schema: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, schema) as writer:
        for part in parts:
            table = pq.read_table(part)
            for name in schema.names:
                if name not in table.column_names:
                    table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
            writer.write_table(table.select(schema.names).cast(schema))


def run_chunked(
    paths: Sequence[Path],
    sink: ResultSink,
    organs: Path | None,
    criteria: Sequence[str] | None,
    settings: Mapping[str, Mapping[str, Any]] | None,
    chunk_rows: int,
    options: SourceOptions | None = None,
    explain: bool = False,
    progress: Any = None,
    dates: DateOptions | None = None,
) -> int:
    """Score files larger than memory (one file, or several with one layout, e.g. a Parquet dataset): about
    `chunk_rows` rows in memory at a time. Returns the number of parts."""
    say = progress or (lambda _m: None)
    workdir = Path(tempfile.mkdtemp(prefix="crlm-chunks-"))
    try:
        parts = split_by_subject(paths, organs, options or SourceOptions(), None, chunk_rows, workdir, sink, say)
        for i in range(len(parts.lesions)):
            frames = parts.frames(i)
            if frames is None:
                continue
            say(f"scoring part {i + 1} of {len(parts.lesions)}")
            result = score_part(
                frames[0],
                parts.label,
                frames[1],
                parts.organs_file,
                criteria,
                settings,
                explain,
                parts.opened.cells(),
                dates,
            )
            sink.add(result, i)
        return len(parts.lesions)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------------------------------


def _dask() -> tuple[Any, Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise EngineError(
            "the dask engine needs Dask", hint='install it with: pip install "crlm-response[dask]"'
        ) from None
    return Client, LocalCluster


def connect(scheduler: str | None, workers: int | None = None, timeout_s: float = 5.0) -> Any:
    """A Dask client: the given scheduler (failing within `timeout_s`), or a local cluster (one worker per core)."""
    client_type, cluster_type = _dask()
    if scheduler:
        hint = "check the address (e.g. tcp://host:8786) and that the scheduler is running"
        try:
            return client_type(scheduler, timeout=f"{timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise EngineError(f"cannot reach the Dask scheduler at {scheduler}: {exc}", hint=hint) from None
        except (Exception, MemoryError) as exc:  # noqa: BLE001 - whatever answered, it was not a scheduler
            raise EngineError(
                f"{scheduler} answered, but not as a Dask scheduler ({type(exc).__name__})", hint=hint
            ) from None
    n = workers or max(1, os.cpu_count() or 1)
    cluster = cluster_type(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50)
    return client_type(cluster)


def run_dask(
    paths: Sequence[Path],
    sink: ResultSink,
    organs: Path | None,
    criteria: Sequence[str] | None,
    settings: Mapping[str, Mapping[str, Any]] | None,
    client: Any,
    partitions: int | None = None,
    options: SourceOptions | None = None,
    progress: Any = None,
    explain: bool = False,
    dates: DateOptions | None = None,
) -> int:
    """Score on a Dask cluster: the inputs are read here by the one source layer and routed to subject-complete
    parts (as with --chunk-rows), and each part is scored by `score_part` on a worker. Returns the number of
    parts."""
    say = progress or (lambda _m: None)
    workdir = Path(tempfile.mkdtemp(prefix="crlm-dask-"))
    try:
        parts = split_by_subject(
            paths, organs, options or SourceOptions(), partitions or None, 250_000, workdir, sink, say
        )
        window = 2 * max(1, len(client.scheduler_info().get("workers", {})))
        pending: deque[tuple[int, Any]] = deque()
        say(f"scoring {len(parts.lesions)} parts on the cluster")
        for i in range(len(parts.lesions)):
            frames = parts.frames(i)
            if frames is None:
                continue
            future = client.submit(
                score_part,
                frames[0],
                parts.label,
                frames[1],
                parts.organs_file,
                list(criteria) if criteria else None,
                settings,
                explain,
                parts.opened.cells(),
                dates,
                pure=False,
            )
            pending.append((i, future))
            while len(pending) >= window:
                done, oldest = pending.popleft()
                sink.add(oldest.result(), done)
        while pending:
            done, oldest = pending.popleft()
            sink.add(oldest.result(), done)
        return len(parts.lesions)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _common_label(paths: Sequence[Path]) -> str:
    """One name for an input that spans several files (errors still name each row's own file)."""
    folders = {str(p.parent) for p in paths}
    suffixes = {p.suffix for p in paths}
    folder = folders.pop() if len(folders) == 1 else "..."
    return f"{folder}/*{suffixes.pop() if len(suffixes) == 1 else ''} ({len(paths)} files)"

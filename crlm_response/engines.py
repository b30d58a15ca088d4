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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .batch import BatchResult, score_read
from .errors import CrlmError, InputTableError
from .summary import summarise
from .trial import ERROR_COLUMNS, ColumnMap, RawTable, _apply_map, check_long_columns, long_from_frames
from .writers import (
    OutputError,
    atomic_path,
    commit,
    neutralise_formulas,
    publish_later,
    remove_later,
    temporary_beside,
    write_table,
)

LINE = "_line"
OUTPUT_KINDS = ("visits", "best", "errors", "warnings", "flags", "lesions")


class EngineError(CrlmError):
    """The chosen engine cannot run (Dask not installed, scheduler unreachable)."""


def bucket_of(subjects: pd.Series | np.ndarray, n_buckets: int) -> np.ndarray:
    """A part number per row from the subject id: a fixed hash, so a subject's rows always meet."""
    text = pd.Series(subjects, dtype=object).astype(str).to_numpy(dtype=object)
    return (pd.util.hash_array(text, categorize=True) % np.uint64(max(n_buckets, 1))).astype(np.int64)


def score_part(
    lesions: pd.DataFrame,
    file: str,
    organs: pd.DataFrame | None,
    organs_file: str | None,
    criteria: Sequence[str] | None,
    settings: Mapping[str, Mapping[str, Any]] | None,
    explain: bool = False,
) -> BatchResult:
    """Score one subject-complete part. Rows carry their source line in the `_line` column."""
    lines = lesions[LINE].to_numpy(dtype=np.int64)
    files = lesions["_file"].to_numpy(dtype=object) if "_file" in lesions else None
    raw = lesions.drop(columns=[c for c in (LINE, "_file") if c in lesions]).reset_index(drop=True)
    organ_raw = None
    if organs is not None:
        organ_raw = RawTable(
            organs.drop(columns=[LINE]).reset_index(drop=True), organs[LINE].to_numpy(dtype=np.int64), _no_malformed()
        )
    read = long_from_frames(RawTable(raw, lines, _no_malformed(), files), file, organ_raw, organs_file)
    return score_read(read, criteria, settings, explain=explain)


def _no_malformed() -> pd.DataFrame:
    return pd.DataFrame({"line": pd.Series(dtype=np.int64), "reason": pd.Series(dtype=object)})


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

    def add(self, result: BatchResult, part: int) -> None:
        self.parts += 1
        for file, c in result.counts.items():
            total = self.counts.setdefault(file, {"read": 0, "scored": 0, "rejected": 0})
            for key in total:
                total[key] += c[key]
        self.best_parts.append(result.best)
        self.warnings += len(result.warnings)
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
        from .writers import _lowercase_booleans, write_csv

        data = _lowercase_booleans(neutralise_formulas(frame) if self.safe_csv else frame)
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


# --------------------------------------------------------------------------------------------------
# Bounded memory: subject-complete chunks through a disk-backed shuffle
# --------------------------------------------------------------------------------------------------


def _batches(path: Path, rows: int, encoding: str) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """The input in blocks of about `rows` rows, as text, with each row's source line (row for Parquet)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        start = 1
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            frame = batch.to_pandas()
            yield frame, np.arange(start, start + len(frame))
            start += len(frame)
        return
    from .trial import _detect_encoding

    enc = _detect_encoding(path, encoding)
    start = 2
    for frame in pd.read_csv(
        path, encoding=enc, dtype=object, keep_default_na=False, na_values=[""], skip_blank_lines=False, chunksize=rows
    ):
        lines = np.arange(start, start + len(frame))
        start += len(frame)
        blank = frame.isna().all(axis=1).to_numpy()
        yield frame.loc[~blank].reset_index(drop=True), lines[~blank]


def _estimate_rows(path: Path) -> int:
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
    lines = max(head.count(b"\n"), 1)
    return int(size / (len(head) / lines))


def _spill(
    paths: Sequence[Path],
    mapping: ColumnMap,
    encoding: str,
    n_buckets: int,
    rows: int,
    workdir: Path,
    name: str,
    lesion_file: bool,
) -> list[Path]:
    """Pass 1: route every row of every file to its subject's bucket file (Parquet: text columns, the source line
    and the source file of each row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writers: dict[int, Any] = {}
    schema = None
    columns: list[str] = []
    try:
        for path in paths:
            first_batch = True
            for frame, lines in _batches(path, rows, encoding):
                frame = _apply_map(frame, mapping, str(path))
                if first_batch:
                    if lesion_file:
                        frame = check_long_columns(frame, str(path))
                    elif "subject_id" not in frame or "timepoint" not in frame:
                        raise InputTableError("missing required column(s): subject_id, timepoint", file=path)
                    if schema is None:
                        columns = [str(c) for c in frame.columns]
                        fields = [(c, pa.string()) for c in columns] + [(LINE, pa.int64()), ("_file", pa.string())]
                        schema = pa.schema(fields)
                    elif set(map(str, frame.columns)) != set(columns):
                        raise InputTableError(
                            "the files have different columns; give them one layout (or use --engine dask)",
                            file=path,
                            hint=f"{paths[0].name} has {', '.join(columns)}; this file has "
                            + ", ".join(map(str, frame.columns)),
                        )
                    first_batch = False
                elif lesion_file and "lesion_id" not in frame and "id" in frame:
                    frame = frame.rename(columns={"id": "lesion_id"})
                table = pd.DataFrame({c: _as_text(frame[c]) for c in columns if c in frame}).reindex(columns=columns)
                table[LINE] = lines
                table["_file"] = str(path)
                buckets = bucket_of(table["subject_id"].fillna(""), n_buckets)
                for bucket in np.unique(buckets):
                    part = pa.Table.from_pandas(table.loc[buckets == bucket], schema=schema, preserve_index=False)
                    if bucket not in writers:
                        writers[bucket] = pq.ParquetWriter(workdir / f"{name}-{bucket:05d}.parquet", schema)
                    writers[bucket].write_table(part)
    finally:
        for writer in writers.values():
            writer.close()
    return [workdir / f"{name}-{b:05d}.parquet" for b in range(n_buckets)]


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


def _as_text(values: pd.Series) -> np.ndarray:
    """Cells as text (missing stays None), converting each distinct value once: the spill touches every row."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    texts = np.array([str(u) for u in uniques], dtype=object)
    out = np.full(len(values), None, dtype=object)
    ok = codes >= 0
    out[ok] = texts[codes[ok]]
    return out


def run_chunked(
    paths: Sequence[Path],
    sink: ResultSink,
    column_map: ColumnMap,
    organs: Path | None,
    criteria: Sequence[str] | None,
    settings: Mapping[str, Mapping[str, Any]] | None,
    chunk_rows: int,
    encoding: str = "auto",
    explain: bool = False,
    progress: Any = None,
) -> int:
    """Score files larger than memory (one file, or several with one layout, e.g. a Parquet dataset): about
    `chunk_rows` rows in memory at a time. Returns the number of parts."""
    say = progress or (lambda _m: None)
    n_buckets = max(1, math.ceil(sum(_estimate_rows(p) for p in paths) / max(chunk_rows, 1)))
    label = str(paths[0]) if len(paths) == 1 else _common_label(paths)
    for path in paths:  # accounting per input file, in the order given
        sink.counts.setdefault(str(path), {"read": 0, "scored": 0, "rejected": 0})
    workdir = Path(tempfile.mkdtemp(prefix="crlm-chunks-"))
    try:
        say(f"splitting {Path(label).name} into {n_buckets} subject-complete parts")
        lesion_parts = _spill(paths, column_map, encoding, n_buckets, chunk_rows, workdir, "lesions", True)
        organ_parts = None
        if organs is not None:
            organ_parts = _spill([organs], column_map, encoding, n_buckets, chunk_rows, workdir, "organs", False)
        for i, part in enumerate(lesion_parts):
            say(f"scoring part {i + 1} of {n_buckets}")
            if not part.exists():
                continue
            frame = pd.read_parquet(part)
            organ_frame = (
                pd.read_parquet(organ_parts[i]).drop(columns=["_file"])
                if organ_parts and organ_parts[i].exists()
                else (pd.DataFrame(columns=["subject_id", "timepoint", LINE]) if organ_parts else None)
            )
            result = score_part(frame, label, organ_frame, str(organs) if organs else None, criteria, settings, explain)
            sink.add(result, i)
        if organ_parts:
            _orphan_organs(sink, organ_parts, lesion_parts, str(organs))
        return n_buckets
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _orphan_organs(sink: ResultSink, organ_parts: list[Path], lesion_parts: list[Path], organs_file: str) -> None:
    """Organ rows of a bucket without any lesion rows were never scored: count them as rejected."""
    for organ_part, lesion_part in zip(organ_parts, lesion_parts, strict=True):
        if organ_part.exists() and not lesion_part.exists():
            _reject_unknown_subjects(sink, pd.read_parquet(organ_part), organs_file)


def _reject_unknown_subjects(sink: ResultSink, rows: pd.DataFrame, organs_file: str) -> None:
    """Organ rows whose subject has no lesion rows anywhere: read, and rejected as an unknown subject."""
    total = sink.counts.setdefault(organs_file, {"read": 0, "scored": 0, "rejected": 0})
    total["read"] += len(rows)
    total["rejected"] += len(rows)
    rejected = pd.DataFrame(
        {
            "file": organs_file,
            "line": rows[LINE],
            "subject_id": rows["subject_id"],
            "timepoint": rows["timepoint"],
            "lesion_id": None,
            "column": "subject_id",
            "value": rows["subject_id"],
            "code": "unknown_subject",
            "reason": "subject is not in the lesion file",
        }
    )
    empty = pd.DataFrame()
    sink.add(BatchResult(empty, empty, empty, empty, empty, rejected, {}, []), 99_999)


# --------------------------------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------------------------------


def _dask() -> Any:
    try:
        import dask  # noqa: F401
        import dask.dataframe as dd
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise EngineError(
            "the dask engine needs Dask", hint='install it with: pip install "crlm-response[dask]"'
        ) from None
    return dd, Client, LocalCluster


def connect(scheduler: str | None, workers: int | None = None, timeout_s: float = 5.0) -> Any:
    """A Dask client: the given scheduler (failing within `timeout_s`), or a local cluster (one worker per core)."""
    import os

    dd, Client, LocalCluster = _dask()
    if scheduler:
        try:
            return Client(scheduler, timeout=f"{timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise EngineError(
                f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                hint="check the address (e.g. tcp://host:8786) and that the scheduler is running",
            ) from None
    n = workers or max(1, os.cpu_count() or 1)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50)
    return Client(cluster)


def _dask_part(
    frame: pd.DataFrame,
    organs: pd.DataFrame | None,
    file: str,
    organs_file: str | None,
    criteria: Sequence[str] | None,
    settings: Mapping[str, Mapping[str, Any]] | None,
) -> BatchResult:
    """The task of one Dask partition: its subjects' organ rows, then `score_part`."""
    organ_rows = None
    if organs is not None:
        organ_rows = organs.loc[organs["subject_id"].isin(set(frame["subject_id"]))]
    return score_part(frame, file, organ_rows, organs_file, criteria, settings)


def run_dask(
    paths: Sequence[Path],
    sink: ResultSink,
    column_map: ColumnMap,
    organs: Path | None,
    criteria: Sequence[str] | None,
    settings: Mapping[str, Mapping[str, Any]] | None,
    client: Any,
    partitions: int | None = None,
    encoding: str = "auto",
    progress: Any = None,
) -> int:
    """Score on a Dask cluster: rows get their source line, are shuffled by a subject hash into partitions, and
    each partition is scored by `score_part` on a worker. Returns the number of partitions."""
    dd, _, _ = _dask()
    say = progress or (lambda _m: None)
    frames = []
    for path in paths:
        say(f"reading {path.name}")
        if path.suffix.lower() in (".parquet", ".pq"):
            ddf = dd.read_parquet(str(path))
            first_line = 1
        else:
            ddf = dd.read_csv(str(path), dtype=object, keep_default_na=False, na_values=[""], blocksize="64MB")
            first_line = 2
        # Row counts first (a streaming pass; nothing is kept in memory), so every row gets its source line.
        lengths = ddf.map_partitions(len).compute()
        offsets = np.r_[0, np.cumsum(lengths)[:-1]] + first_line
        ddf = ddf.map_partitions(
            _with_lines, offsets=list(offsets), str_path=str(path), meta=_meta_with_lines(ddf._meta, str(path))
        )
        frames.append(ddf)
    ddf = frames[0] if len(frames) == 1 else dd.concat(frames)
    renames = {theirs: ours for ours, theirs in column_map.columns.items()}
    if renames:
        ddf = ddf.rename(columns=renames)
    check_long_columns(ddf._meta.drop(columns=[LINE, "_file"]), str(paths[0]))
    n = partitions or max(2, ddf.npartitions)
    ddf = ddf.assign(
        _part=ddf["subject_id"].map_partitions(
            lambda s, _n=n: pd.Series(bucket_of(s, _n), index=s.index), meta=("_part", "i8")
        )
    )
    ddf = ddf.shuffle("_part", npartitions=n)
    organ_frame = None
    if organs is not None:
        from .trial import read_frame

        table = read_frame(organs, encoding)
        organ_frame = _apply_map(table.frame, column_map, str(organs)).astype(object)
        organ_frame = organ_frame.where(organ_frame.notna(), None)
        organ_frame[LINE] = table.lines
    organ_future = client.scatter(organ_frame, broadcast=True) if organ_frame is not None else None
    from dask import delayed

    label = str(paths[0]) if len(paths) == 1 else _common_label(paths)
    for path in paths:  # accounting per input file, in the order given
        sink.counts.setdefault(str(path), {"read": 0, "scored": 0, "rejected": 0})
    tasks = []
    for part in ddf.to_delayed():
        frame = delayed(_strip_part)(part)
        tasks.append(
            delayed(_dask_part)(
                frame,
                organ_future,
                label,
                str(organs) if organs else None,
                list(criteria) if criteria else None,
                settings,
            )
        )
    say(f"scoring {len(tasks)} partitions on the cluster")
    futures = client.compute(tasks)
    seen_subjects: set[Any] = set()
    for i, future in enumerate(futures):
        result = future.result()
        if organ_frame is not None and not result.best.empty:
            seen_subjects |= set(result.best["subject_id"])
        sink.add(result, i)
    if organ_frame is not None:
        _dask_orphan_organs(sink, organ_frame, str(organs), seen_subjects, futures)
    return len(tasks)


def _common_label(paths: Sequence[Path]) -> str:
    """One name for an input that spans several files (errors still name each row's own file)."""
    folders = {str(p.parent) for p in paths}
    suffixes = {p.suffix for p in paths}
    folder = folders.pop() if len(folders) == 1 else "..."
    return f"{folder}/*{suffixes.pop() if len(suffixes) == 1 else ''} ({len(paths)} files)"


def _strip_part(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in ("_part",) if c in frame.columns]).reset_index(drop=True)


def _with_lines(
    frame: pd.DataFrame, offsets: list[int], str_path: str, partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    number = partition_info["number"] if partition_info else 0
    out = frame.reset_index(drop=True).astype(object)
    out = out.where(out.notna(), None)
    out[LINE] = np.arange(offsets[number], offsets[number] + len(out), dtype=np.int64)
    out["_file"] = str_path
    return out


def _meta_with_lines(meta: pd.DataFrame, path: str) -> pd.DataFrame:
    out = meta.astype(object)
    out[LINE] = pd.Series(dtype=np.int64)
    out["_file"] = pd.Series(dtype=object)
    return out


def _dask_orphan_organs(
    sink: ResultSink, organs: pd.DataFrame, organs_file: str, scored: set[Any], futures: list[Any]
) -> None:
    """Organ rows whose subject no partition had: read, and rejected (an unknown subject)."""
    seen = set(scored)
    for future in futures:
        result = future.result()
        if not result.visits.empty:
            seen |= set(result.visits["subject_id"])
        if not result.rejected.empty:
            seen |= set(result.rejected["subject_id"].dropna())
    orphan = organs.loc[~organs["subject_id"].isin(seen)]
    if not orphan.empty:
        _reject_unknown_subjects(sink, orphan, organs_file)

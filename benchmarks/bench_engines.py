"""Engines benchmark: a large generated cohort in Parquet, scored by the pandas engine in bounded-memory chunks and
by the Dask engine on a local cluster; prints wall time, rows per second and peak memory of each, and whether
the outputs are identical. Prints figures, asserts nothing.

Usage:
    python benchmarks/bench_engines.py                       # 10 million rows, 2 Dask workers
    python benchmarks/bench_engines.py --rows 2000000 --workers 2 --chunk-rows 1000000

Peak memory is the largest resident set of the process tree (the CLI and, for Dask, its scheduler and
workers), sampled every 0.2 s from /proc.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc), in MB."""
    total = 0
    pids = [pid]
    seen = set()
    while pids:
        current = pids.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():  # children of every thread, not only the main one
                with open(task / "children") as handle:
                    pids.extend(int(p) for p in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / 1024


def run_measured(args: list[str]) -> tuple[float, float, str]:
    """Run a command; return wall seconds, peak tree memory (MB) and its stderr."""
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"command failed ({process.returncode}): {' '.join(args)}\n{err}")
    return time.perf_counter() - start, peak[0], err


def generate(folder: Path, rows: int, files: int) -> int:
    """Write about `rows` lesion rows as `files` Parquet files (subjects never split across files)."""
    from crlm_response.synthetic import ROWS_PER_SUBJECT, generate_cohort

    folder.mkdir(parents=True, exist_ok=True)
    per_file = max(1, int(rows / ROWS_PER_SUBJECT / files))
    total = 0
    for i in range(files):
        frame = generate_cohort(subjects=per_file, seed=100 + i)
        frame["subject_id"] = f"F{i}-" + frame["subject_id"].astype(str)
        frame.to_parquet(folder / f"part-{i:03d}.parquet", index=False)
        total += len(frame)
    return total


def read_output(path: Path) -> pd.DataFrame:
    if path.is_dir():
        frame = pd.concat([pd.read_parquet(p) for p in sorted(path.glob("*.parquet"))], ignore_index=True)
    elif path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = frame.astype(object).where(frame.notna(), None).astype(str)
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--criteria", default="recist1.1,toxicity")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        cohort = work / "cohort"
        t = time.perf_counter()
        rows = generate(cohort, args.rows, args.files)
        print(f"generated {rows:,} lesion rows in {args.files} Parquet files ({time.perf_counter() - t:.0f} s)")

        cli = [sys.executable, "-m", "crlm_response", "batch"]
        pandas_out = work / "pandas" / "responses.parquet"
        wall_p, mem_p, _ = run_measured(
            cli
            + [
                str(cohort / "*.parquet"),
                "--chunk-rows",
                str(args.chunk_rows),
                "-o",
                str(pandas_out),
                "--criteria",
                args.criteria,
            ]
        )
        dask_out = work / "dask"
        wall_d, mem_d, _ = run_measured(
            cli
            + [
                str(cohort / "*.parquet"),
                "--engine",
                "dask",
                "--workers",
                str(args.workers),
                "-o",
                f"{dask_out}/",
                "--criteria",
                args.criteria,
            ]
        )
        print(f"{'engine':<34} {'wall s':>8} {'rows/s':>10} {'peak MB':>9}")
        print(
            f"{'pandas (chunks of ' + format(args.chunk_rows, ',') + ' rows)':<34} {wall_p:>8.1f} "
            f"{rows / wall_p:>10,.0f} {mem_p:>9,.0f}"
        )
        print(
            f"{'dask (' + str(args.workers) + ' local workers)':<34} {wall_d:>8.1f} {rows / wall_d:>10,.0f} "
            f"{mem_d:>9,.0f}"
        )
        same = all(
            read_output(pandas_out.with_name(f"responses{s}.parquet")).equals(read_output(dask_out / kind))
            for s, kind in (("", "visits"), (".best", "best"))
        )
        print(f"outputs identical (per-visit and best response, after sorting): {same}")


if __name__ == "__main__":
    main()

"""Batch throughput benchmark: prints figures, asserts nothing (speed is shown here, not in a flaky test).

For each size it generates a synthetic cohort CSV (crlm_response.synthetic, fixed seed), then in a fresh child
process measures:
  * `pandas.read_csv` alone on the same file (the baseline),
  * the batch itself as `crlm-response batch FILE -o OUT` does it (read, check, score RECIST 1.1 and the
    toxicity flags, write all outputs), timed inside the process (interpreter start-up and imports excluded),
  * the whole command line end to end (wall clock, start-up included),
  * peak resident memory of the child.

Usage:
    python benchmarks/bench_batch.py                 # 100k and 1M rows
    python benchmarks/bench_batch.py --rows 100000 1000000 10000000 --criteria recist1.1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import pandas as pd
path, out, criteria = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter(); pd.read_csv(path); read_s = time.perf_counter() - t
from crlm_response.cli import _batch_outputs, _write_batch
from crlm_response.batch import score_read
from crlm_response.trial import read_long
from pathlib import Path
t = time.perf_counter()
read = read_long(path)
result = score_read(read, criteria.split(","))
_write_batch(result, _batch_outputs(Path(out), None, None), True)
batch_s = time.perf_counter() - t
counts = next(iter(result.counts.values()))
print(json.dumps({"read_csv_s": read_s, "batch_s": batch_s, "rows": counts["read"],
                  "rejected": counts["rejected"], "subjects": int(result.best["subject_id"].nunique()),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(rows: int, criteria: str, workdir: Path) -> dict[str, float]:
    from crlm_response.synthetic import generate_cohort

    csv = workdir / f"cohort_{rows}.csv"
    if not csv.exists():
        generate_cohort(rows=rows, seed=1).to_csv(csv, index=False)
    out = workdir / f"responses_{rows}.csv"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(csv), str(out), criteria], capture_output=True, text=True, check=True
    )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "crlm_response", "batch", str(csv), "-o", str(out), "--criteria", criteria],
        capture_output=True,
        check=True,
    )
    figures["cli_wall_s"] = time.perf_counter() - t
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--criteria", default="recist1.1,toxicity")
    parser.add_argument("--workdir", type=Path, help="keep generated files here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"criteria: {args.criteria}")
        print(
            f"{'rows':>10} {'subjects':>9} {'read_csv s':>10} {'batch s':>8} {'ratio':>6} {'rows/s':>10} "
            f"{'CLI wall s':>10} {'peak MB':>8}"
        )
        previous = None
        for rows in args.rows:
            f = measure(rows, args.criteria, workdir)
            ratio = f["batch_s"] / f["read_csv_s"]
            print(
                f"{f['rows']:>10,} {f['subjects']:>9,} {f['read_csv_s']:>10.2f} {f['batch_s']:>8.2f} {ratio:>6.2f} "
                f"{f['rows'] / f['batch_s']:>10,.0f} {f['cli_wall_s']:>10.2f} {f['peak_mb']:>8.0f}"
            )
            if previous is not None:
                scale = (f["batch_s"] / previous["batch_s"]) / (f["rows"] / previous["rows"])
                print(f"{'':>10} time per row vs the previous size: x{scale:.2f} (1.00 = linear)")
            previous = f


if __name__ == "__main__":
    main()

"""Batch speed benchmark: whole processes, interleaved, CPU seconds from each child's own accounting. Prints
figures, asserts nothing (speed is shown here, not in a flaky test).

For each size it generates a cohort CSV (the speed yardstick's generator `../shared/tools/limit/gen_cohort.py`
when present, else `crlm_response.synthetic`), then runs, in turns (A B C A B C ..., `--pairs` rounds):
  * the tool: `crlm-response batch FILE -o OUT --criteria recist1.1` (start-up, read, checks, scoring, writing),
  * the yardstick `../shared/tools/limit/score_numpy.py FILE OUT` (a lean RECIST 1.1 scorer; when present),
  * a bare `pandas.read_csv(FILE)` (the read floor).
Each figure is the median over the rounds of the child's user + system CPU seconds and its peak resident memory,
both from `os.wait4` (the kernel's accounting of that one child), so the load of a shared machine disturbs them
less than wall time. Wall seconds are shown too.

Every child runs with its modules byte-compiled, as `pip install` leaves an installed package: the children get
a bytecode cache of their own (PYTHONPYCACHEPREFIX under the work folder; PYTHONDONTWRITEBYTECODE lifted), filled
by one untimed warm-up run of each program before the timed rounds. Without it, an editable install in an
environment with PYTHONDONTWRITEBYTECODE=1 recompiles the tool's 40 modules from source at every start (about
0.15-0.25 s CPU on a 2-core machine), which measures the set-up rather than the tool.

With `--pyrecist-python PYTHON` (an interpreter that can import pyrecist 0.1.0; default: this one, if it can), the
tool is also timed against pyrecist on `--pyrecist-patients` patients (the same cohort, as pyrecist's columns:
patient_id, study_date, measurement, lesion_label_alias, lesion_category; new lesions left out, which pyrecist
does not read). Skipped with a message when pyrecist cannot be imported.

Usage:
    python benchmarks/bench_batch.py                                   # 100k, 1M and 3M rows, 3 rounds
    python benchmarks/bench_batch.py --rows 100000 --pairs 3           # a quick run
    python benchmarks/bench_batch.py --rows 1000000 --pyrecist-python /tmp/pyrecist-venv/bin/python
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIMIT = HERE.parent.parent / "shared" / "tools" / "limit"
ROWS_PER_SUBJECT = 22.06  # gen_cohort.py: 992,659 rows for 45,000 subjects


@dataclass
class Run:
    cpu_s: float
    wall_s: float
    peak_mib: float


@dataclass
class Contender:
    name: str
    command: Callable[[Path, Path], list[str]]


def child_environment(folder: Path) -> dict[str, str]:
    """The environment of every timed child: byte-compiled modules in a cache of the benchmark's own."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    return env


def run_child(args: list[str], cwd: Path) -> Run:
    """One whole process; its CPU (user + system) and peak RSS as the kernel accounted them for that child."""
    start = time.perf_counter()
    child = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_environment(cwd)
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.returncode not in (0, 1):  # batch exits 1 when some rows are rejected; anything else is a failure
        raise SystemExit(f"failed ({child.returncode}): {' '.join(args)}\n{stderr[-2000:]}")
    return Run(usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024)


def cohort(rows: int, folder: Path) -> tuple[Path, bool]:
    """A cohort of about `rows` rows; True when it comes from the yardstick's generator."""
    path = folder / f"cohort_{rows}.csv"
    generator = LIMIT / "gen_cohort.py"
    if generator.exists():
        if not path.exists():
            subjects = max(1, round(rows / ROWS_PER_SUBJECT))
            subprocess.run([sys.executable, str(generator), str(subjects), str(path)], check=True, capture_output=True)
        return path, True
    if not path.exists():
        from crlm_response.synthetic import generate_cohort

        generate_cohort(rows=rows, seed=1).to_csv(path, index=False)
    return path, False


def count_rows(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle) - 1


def interleaved(contenders: list[Contender], source: Path, pairs: int, folder: Path) -> dict[str, list[Run]]:
    """`pairs` rounds, each running every contender once in turn (A B C A B C ...)."""
    runs: dict[str, list[Run]] = {c.name: [] for c in contenders}
    for contender in contenders:  # untimed: fills the bytecode cache and the disk cache alike for every program
        run_child(contender.command(source, folder / f"{contender.name}_warm_up.csv"), folder)
    for round_ in range(pairs):
        for contender in contenders:
            out = folder / f"{contender.name}_{round_}.csv"
            runs[contender.name].append(run_child(contender.command(source, out), folder))
    return runs


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def tool(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "crlm_response", "batch", str(source), "-o", str(out), "--criteria", "recist1.1"]


def yardstick(source: Path, out: Path) -> list[str]:
    return [sys.executable, str(LIMIT / "score_numpy.py"), str(source), str(out)]


def read_csv(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "import sys, pandas; pandas.read_csv(sys.argv[1])", str(source)]


def print_size(rows: int, runs: dict[str, list[Run]]) -> None:
    tool_cpu = median(runs["tool"], "cpu_s")
    for name, measured in runs.items():
        cpu = median(measured, "cpu_s")
        ratio = "" if name == "tool" else f"{tool_cpu / cpu:>6.2f}x"
        print(
            f"{rows:>10,} {name:<10} {cpu:>8.2f} {median(measured, 'wall_s'):>8.2f} "
            f"{median(measured, 'peak_mib'):>9.0f} {ratio:>8}   cpu per round: "
            + " ".join(f"{r.cpu_s:.2f}" for r in measured),
            flush=True,
        )


def pyrecist_table(source: Path, target: Path) -> int:
    """The cohort in pyrecist's columns (one measurement per row; new lesions left out); returns the row count."""
    written = 0
    with open(source, newline="") as handle, open(target, "w", newline="") as out:
        reader = csv.DictReader(handle)
        writer = csv.writer(out)
        writer.writerow(["patient_id", "study_date", "measurement", "lesion_label_alias", "lesion_category"])
        for row in reader:
            if row["kind"] not in ("target", "non_target"):
                continue
            node = row["is_lymph_node"] == "true"
            size = row["short_axis_mm"] if node else row["longest_diameter_mm"]
            day = int(float(row["day"]))
            date = time.strftime("%Y%m%d", time.gmtime(1_704_067_200 + day * 86_400))  # day 0 = 2024-01-01
            category = "target" if row["kind"] == "target" else "non-target"
            writer.writerow([int(row["subject_id"].lstrip("S") or 0), date, size, row["lesion_id"], category])
            written += 1
    return written


def compare_pyrecist(python: str, patients: int, pairs: int, folder: Path) -> None:
    probe = subprocess.run([python, "-c", "import pyrecist"], capture_output=True)
    if probe.returncode != 0:
        print(f"\npyrecist: skipped ({python} cannot import pyrecist; pass --pyrecist-python)")
        return
    generator = LIMIT / "gen_cohort.py"
    if not generator.exists():
        print(f"\npyrecist: skipped (no cohort generator at {generator})")
        return
    source = folder / f"pyrecist_cohort_{patients}.csv"
    subprocess.run([sys.executable, str(generator), str(patients), str(source)], check=True, capture_output=True)
    theirs = folder / f"pyrecist_input_{patients}.csv"
    their_rows = pyrecist_table(source, theirs)
    output = folder / "pyrecist_out"
    output.mkdir(exist_ok=True)
    contenders = [
        Contender("tool", tool),
        Contender("pyrecist", lambda _s, _o: [python, "-m", "pyrecist", str(theirs), "-o", str(output)]),
    ]
    runs = interleaved(contenders, source, pairs, folder)
    ours, slow = median(runs["tool"], "cpu_s"), median(runs["pyrecist"], "cpu_s")
    ours_wall, slow_wall = median(runs["tool"], "wall_s"), median(runs["pyrecist"], "wall_s")
    print(
        f"\npyrecist 0.1.0 on {patients:,} patients (tool: {count_rows(source):,} rows; pyrecist: {their_rows:,} "
        f"rows, targets and non-targets), median of {pairs}:"
    )
    print(f"  tool      {ours:>8.2f} s CPU {ours_wall:>8.2f} s wall {median(runs['tool'], 'peak_mib'):>6.0f} MiB")
    print(f"  pyrecist  {slow:>8.2f} s CPU {slow_wall:>8.2f} s wall {median(runs['pyrecist'], 'peak_mib'):>6.0f} MiB")
    print(f"  the tool is {slow / ours:.1f}x faster in CPU, {slow_wall / ours_wall:.1f}x in wall time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
    parser.add_argument("--pairs", type=int, default=3, help="rounds of A B C ... per size (at least 3 advised)")
    parser.add_argument("--workdir", type=Path, help="keep generated files here (default: a temporary folder)")
    parser.add_argument("--pyrecist-python", default=sys.executable, help="an interpreter that can import pyrecist")
    parser.add_argument("--pyrecist-patients", type=int, default=20_000)
    parser.add_argument("--no-pyrecist", action="store_true", help="leave the pyrecist comparison out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"median of {args.pairs} interleaved rounds after one warm-up run each; CPU = user + system of each")
        print("child process (os.wait4); modules byte-compiled (a bytecode cache of the benchmark's own)")
        print(f"{'rows':>10} {'program':<10} {'CPU s':>8} {'wall s':>8} {'peak MiB':>9} {'tool/it':>8}")
        per_row: list[tuple[int, float]] = []
        for rows in args.rows:
            source, from_yardstick = cohort(rows, folder)
            contenders = [Contender("tool", tool)]
            if from_yardstick and (LIMIT / "score_numpy.py").exists():
                contenders.append(Contender("yardstick", yardstick))
            contenders.append(Contender("read_csv", read_csv))
            runs = interleaved(contenders, source, args.pairs, folder)
            actual = count_rows(source)
            print_size(actual, runs)
            per_row.append((actual, median(runs["tool"], "cpu_s")))
        for (rows_a, cpu_a), (rows_b, cpu_b) in zip(per_row, per_row[1:], strict=False):
            print(f"tool CPU per row, {rows_b:,} vs {rows_a:,} rows: x{(cpu_b / rows_b) / (cpu_a / rows_a):.2f}")
        if not args.no_pyrecist:
            compare_pyrecist(args.pyrecist_python, args.pyrecist_patients, args.pairs, folder)


if __name__ == "__main__":
    main()

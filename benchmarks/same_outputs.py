"""Old against new: run `crlm-response batch` of an earlier commit and of this tree on the same cohorts, with the
same options, and compare every file each run writes, byte for byte (and what each prints on stderr).

The earlier commit is taken from git (`git archive`) into a temporary folder and imported from there, with the
same interpreter and packages; nothing is installed. Cohorts: the speed yardstick's generator
(`../shared/tools/limit/gen_cohort.py`, when present), the project's own synthetic cohort (every default rule
set has something to read), and an untidy copy of the yardstick cohort with damaged cells, rows that cannot be
split, blank lines, duplicate lesions, a second baseline, a formula-like id... so that every path that
rejects or sets aside a row is compared too.

Usage:
    python benchmarks/same_outputs.py --base main                      # 100k rows, every variant
    python benchmarks/same_outputs.py --base 5c9655f --rows 1000000    # larger cohorts, fewer variants
Exit status 1 when any file differs.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIMIT = REPO.parent / "shared" / "tools" / "limit"

VARIANTS: dict[str, list[str]] = {
    "recist": ["--criteria", "recist1.1"],
    "default": [],
    "explain": ["--criteria", "recist1.1,who", "--explain"],
    "chunked": ["--criteria", "recist1.1", "--chunk-rows", "40000"],
    "dask": ["--criteria", "recist1.1", "--engine", "dask", "--workers", "2", "--partitions", "3"],
    "parquet": ["--criteria", "recist1.1,toxicity", "-o", "out.parquet", "--summary-file", "summary.json"],
}
LARGE_VARIANTS = ("recist", "default", "chunked")


def old_tree(base: str, folder: Path) -> Path:
    tree = folder / "old"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", base], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def yardstick_cohort(subjects: int, path: Path) -> Path | None:
    generator = LIMIT / "gen_cohort.py"
    if not generator.exists():
        return None
    subprocess.run([sys.executable, str(generator), str(subjects), str(path)], check=True, capture_output=True)
    return path


def synthetic_cohort(rows: int, path: Path) -> Path:
    code = (
        "import sys; from crlm_response.synthetic import generate_cohort; "
        "generate_cohort(rows=int(sys.argv[1]), seed=1).to_csv(sys.argv[2], index=False)"
    )
    subprocess.run([sys.executable, "-c", code, str(rows), str(path)], check=True, cwd=REPO)
    return path


def untidy(source: Path, path: Path, seed: int = 11) -> Path:
    """A copy of a long CSV with the faults real exports have, at fixed places (seeded)."""
    rng = random.Random(seed)
    lines = source.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    names = header.split(",")
    col = {n: i for i, n in enumerate(names)}
    damaged = {
        "longest_diameter_mm": ["abc", "-3", "1e400", "nan", " 12.5 ", "2000", "1,5", "NaN"],
        "short_axis_mm": ["x", "-1", "inf"],
        "day": ["1.5", "ten", "99999", ""],
        "kind": ["Target", "tumour", " non-target ", "NEW", "ablated"],
        "status": ["gone", "Present", "not evaluated", "unequivocal_progression", "coalesced"],
        "is_lymph_node": ["maybe", "Yes", "0", "TRUE"],
        "organ": ["Lymph node", "LIVER", "=1+1"],
        "subject_id": [" S0000003 ", "", "=HYPERLINK(1)"],
        "timepoint": ["", "Screening", "fu1"],
        "lesion_id": ["", "T1", "@x", "T 1"],
    }
    out = []
    for row in rows:
        fields = row.split(",")
        if rng.random() < 0.004:
            name = rng.choice(list(damaged))
            if name in col:
                fields[col[name]] = rng.choice(damaged[name])
        if rng.random() < 0.0005:
            fields.append("extra")  # a row the parser cannot split
        out.append(",".join(fields))
        if rng.random() < 0.0005:
            out.append(out[-1])  # a duplicate lesion row
        if rng.random() < 0.0003:
            out.append("")  # a blank line
    path.write_text("\n".join([header + ",notes"] + [r + ",x" for r in out]) + "\n")
    return path


def run(tree: Path | None, cohort: Path, options: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True)
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    output = [] if "-o" in options else ["-o", "out.csv"]
    args = [sys.executable, "-m", "crlm_response", "batch", str(cohort), *output, *options]
    return subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=3600)


# Lines a Dask run prints when another program on the machine holds the dashboard's port: not the tool's output.
DASK_NOISE = ("already in use", "Perhaps you already have a cluster running?", "Hosting the HTTP server on port")


def messages(stderr: str) -> str:
    lines = stderr.splitlines()
    kept = [
        line
        for i, line in enumerate(lines)
        if not any(n in line for n in DASK_NOISE)
        and not (line.strip() == "warnings.warn(" and i and any(n in lines[i - 1] for n in DASK_NOISE))
    ]
    return "\n".join(kept)


def differences(a: Path, b: Path) -> list[str]:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    problems = [f"only in old: {p}" for p in sorted(files_a - files_b)]
    problems += [f"only in new: {p}" for p in sorted(files_b - files_a)]
    for name in sorted(files_a & files_b):
        if not filecmp.cmp(a / name, b / name, shallow=False):
            problems.append(f"differs: {name}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="the git commit (or branch) to compare against")
    parser.add_argument("--rows", type=int, default=100_000, help="about this many rows per cohort")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: all (large cohorts: fewer)")
    parser.add_argument("--keep", type=Path, help="keep the outputs in this folder")
    args = parser.parse_args()
    variants = args.variants or (list(VARIANTS) if args.rows <= 200_000 else list(LARGE_VARIANTS))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        old = old_tree(args.base, Path(tmp))
        cohorts: dict[str, Path] = {"synthetic": synthetic_cohort(args.rows, work / "synthetic.csv")}
        yardstick = yardstick_cohort(max(1, args.rows // 22), work / "yardstick.csv")
        if yardstick is not None:
            cohorts["yardstick"] = yardstick
            cohorts["untidy"] = untidy(yardstick, work / "untidy.csv")
        failed = 0
        for cohort_name, cohort in cohorts.items():
            for variant in variants:
                label = f"{cohort_name}/{variant}"
                before = run(old, cohort, VARIANTS[variant], work / "old" / label)
                after = run(None, cohort, VARIANTS[variant], work / "new" / label)
                problems = differences(work / "old" / label, work / "new" / label)
                said_before = (before.returncode, before.stdout, messages(before.stderr))
                if said_before != (after.returncode, after.stdout, messages(after.stderr)):
                    problems.append(f"exit/stdout/stderr differ: old {before.returncode}, new {after.returncode}")
                    problems.append("old stderr: " + before.stderr[-600:])
                    problems.append("new stderr: " + after.stderr[-600:])
                files = sum(1 for p in (work / "new" / label).rglob("*") if p.is_file())
                status = "same" if not problems else "DIFFERENT"
                print(f"{label:28s} exit {after.returncode}  {files} file(s)  {status}", flush=True)
                for problem in problems:
                    print("    " + problem)
                failed += bool(problems)
        print(f"{failed} of {len(cohorts) * len(variants)} runs differ" if failed else "every output is the same")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

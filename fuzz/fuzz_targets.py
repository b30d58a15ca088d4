"""Long-running fuzz targets for the three readers: case YAML, rule YAML and the trial CSV reader + engine.

A crash is any exception other than `CrlmError` (the library's "this input is wrong" error), or an input that
takes longer than a few seconds. Crashing inputs are saved under fuzz/crashes/<target>/ for a regression test.

Coverage-guided with atheris (pip install atheris):
    python fuzz/fuzz_targets.py case  -max_total_time=3600 fuzz/corpus/case
    python fuzz/fuzz_targets.py rules -max_total_time=3600
    python fuzz/fuzz_targets.py csv   -max_total_time=3600
Without atheris, a mutation fuzzer seeded from the repository's own example files runs instead:
    python fuzz/fuzz_targets.py case --minutes 60
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRASHES = ROOT / "fuzz" / "crashes"
SLOW_SECONDS = 10.0


def seeds(target: str) -> list[bytes]:
    """Valid inputs to start from: the project's sample cases, rule files and trial tables."""
    if target == "case":
        files = sorted((ROOT / "sample_cases").glob("*.yaml")) + sorted(
            (ROOT / "tests" / "bad_inputs" / "case").glob("*.yaml")
        )
    elif target == "rules":
        files = sorted((ROOT / "rules").glob("*.yaml"))
    else:
        files = sorted((ROOT / "tests" / "bad_inputs" / "batch").glob("*.csv"))
        files += [ROOT / "sample_cases" / "trial_lesions.csv"]
    out = []
    for file in files:
        data = file.read_bytes()
        out.append(data[:20_000] if target == "csv" else data)
    return out


def make_target(target: str) -> Callable[[bytes], None]:
    from crlm_response import assess, parse_case
    from crlm_response.batch import score_read
    from crlm_response.errors import CrlmError
    from crlm_response.rules import load_rules
    from crlm_response.trial import read_long

    workdir = Path(tempfile.mkdtemp(prefix="crlm-fuzz-"))

    def run_case(data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        try:
            case = parse_case(text, "fuzz.yaml")
            assess(case, criteria="all")
        except CrlmError:
            pass

    def run_rules(data: bytes) -> None:
        path = workdir / "fuzz_rules.yaml"
        path.write_bytes(data)
        try:
            load_rules(path)
        except CrlmError:
            pass

    def run_csv(data: bytes) -> None:
        path = workdir / "fuzz.csv"
        path.write_bytes(data)
        try:
            read = read_long(path)
            result = score_read(read, ["recist1.1", "toxicity", "chun_morphologic"])
            for counts in result.counts.values():
                assert counts["read"] == counts["scored"] + counts["rejected"], counts
        except CrlmError:
            pass

    return {"case": run_case, "rules": run_rules, "csv": run_csv}[target]


def save_crash(target: str, data: bytes, error: BaseException) -> Path:
    folder = CRASHES / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha1(data).hexdigest()[:16] + ".bin")
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(f"{type(error).__name__}: {error}\n")
    return path


MUTATION_TOKENS = [
    b"-1",
    b"1e400",
    b"nan",
    b"inf",
    b"null",
    b"~",
    b"[]",
    b"{}",
    b"''",
    b"&a",
    b"*a",
    b"!!python/object",
    b"\x00",
    b"\xff\xfe",
    b"\t",
    b"\n\n",
    b",",
    b";",
    b'"',
    b"target",
    b"disappeared",
    b"lymph_node",
    b"day: 0",
    b"9999999999",
    b"-0",
    b"2025-02-30",
    b"NE",
    b"PD",
    b"morphology_group: 9",
]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A few random edits: byte flips, token inserts, line deletions, duplications and swaps."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if not buf:
            buf.extend(rng.choice(MUTATION_TOKENS))
            continue
        i = rng.randrange(len(buf))
        if choice < 0.25:
            buf[i] = rng.randrange(256)
        elif choice < 0.5:
            buf[i:i] = rng.choice(MUTATION_TOKENS)
        elif choice < 0.65:
            del buf[i : i + rng.randint(1, 20)]
        else:
            lines = bytes(buf).split(b"\n")
            j, k = rng.randrange(len(lines)), rng.randrange(len(lines))
            op = rng.random()
            if op < 0.4:
                lines.insert(k, lines[j])
            elif op < 0.7:
                lines[j], lines[k] = lines[k], lines[j]
            else:
                del lines[j]
            buf = bytearray(b"\n".join(lines))
    return bytes(buf)


def run_mutation(target: str, minutes: float, seed: int) -> int:
    rng = random.Random(seed)
    corpus = seeds(target)
    check = make_target(target)
    deadline = time.monotonic() + minutes * 60
    runs = crashes = 0
    while time.monotonic() < deadline:
        data = mutate(rng.choice(corpus), rng)
        start = time.monotonic()
        try:
            check(data)
        except Exception as error:  # noqa: BLE001 - a crash is exactly what the fuzzer looks for
            crashes += 1
            print(f"CRASH {type(error).__name__}: {error} -> {save_crash(target, data, error)}", flush=True)
        elapsed = time.monotonic() - start
        if elapsed > SLOW_SECONDS:
            crashes += 1
            print(f"SLOW {elapsed:.1f} s -> {save_crash(target, data, TimeoutError(f'{elapsed:.1f} s'))}", flush=True)
        elif rng.random() < 0.02:
            corpus.append(data)  # keep some mutants to explore further from them
        runs += 1
        if runs % 500 == 0:
            print(f"{target}: {runs:,} inputs, {crashes} crash(es)", flush=True)
    print(f"{target}: done, {runs:,} inputs in {minutes:g} min, {crashes} crash(es)")
    return crashes


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("case", "rules", "csv"):
        raise SystemExit(__doc__)
    target = sys.argv[1]
    if "--minutes" in sys.argv or "--mutation" in sys.argv:
        minutes = float(sys.argv[sys.argv.index("--minutes") + 1]) if "--minutes" in sys.argv else 5.0
        raise SystemExit(1 if run_mutation(target, minutes, seed=int(os.environ.get("FUZZ_SEED", "1"))) else 0)
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: running the mutation fuzzer for 5 minutes (see --minutes)")
        raise SystemExit(1 if run_mutation(target, 5.0, seed=1) else 0) from None
    import numpy  # noqa: F401 - imported before instrumenting: only the project's own code is instrumented
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pydantic  # noqa: F401
    import yaml  # noqa: F401

    with atheris.instrument_imports(include=["crlm_response"]):
        check = make_target(target)

    def one_input(data: bytes) -> None:
        try:
            check(data)
        except Exception as error:
            save_crash(target, data, error)
            raise

    argv = [sys.argv[0]] + sys.argv[2:]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

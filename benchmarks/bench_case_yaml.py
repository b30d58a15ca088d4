"""Case-file loading benchmark: how long one big case YAML takes to read, parse and validate. Prints figures,
asserts nothing (speed is shown here, not in a flaky test).

It writes a case file of about the given size (one patient, many follow-ups with many lesions, flow-style lesion
lines as people write them), then times, best of `--repeat` runs in this process:
  * `yaml.load` with PyYAML's C loader alone (the floor: libyaml parsing plus PyYAML's constructor),
  * `crlm_response.yamlio.load_yaml` forced onto the pure-Python parser (once; 0.1 parsed this way, and with a
    slower resolver and two pure-Python passes took 35-50 s at 4 MB where this takes about 6 s),
  * `crlm_response.yamlio.load_yaml` (read, parse with line numbers, nesting/alias checks),
  * `crlm_response.load_case` (all of the above plus the case schema).

Usage:
    python benchmarks/bench_case_yaml.py              # a 4 MB case
    python benchmarks/bench_case_yaml.py --mb 1 4 16 --repeat 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import crlm_response.yamlio as yamlio
from crlm_response import load_case
from crlm_response.yamlio import load_yaml

LESIONS_PER_TIMEPOINT = 20


def case_text(target_bytes: int) -> str:
    """A valid case of about `target_bytes`: baseline plus follow-ups every 7 days, 20 liver lesions each."""
    head = "case_id: '0012'\ntreatment: {regimen: FOLFOX, agents: [oxaliplatin, fluorouracil]}\ntimepoints:\n"
    parts = [head]
    size = len(head)
    day = 0
    while size < target_bytes:
        block = [f"  - id: T{day}\n    day: {day}\n    modality: CT\n    lesions:\n"]
        for k in range(LESIONS_PER_TIMEPOINT):
            diameter = 40 - (k % 7) - min(day, 3000) / 1000
            kind = ", organ: liver, location: segment VIII, kind: target" if day == 0 else ""
            block.append(f"      - {{id: L{k}{kind}, longest_diameter_mm: {diameter:.1f}}}\n")
        text = "".join(block)
        parts.append(text)
        size += len(text)
        day += 7
    return "".join(parts)


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(path: Path, repeat: int) -> tuple[float, float, float, float]:
    """(C parse alone, load_yaml with the pure-Python parser, load_yaml, load_case), best of `repeat`, in s."""
    text = path.read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    floor = best_of(repeat, lambda: yaml.load(text, Loader=loader))  # noqa: S506 - a safe loader
    fast = yamlio._FAST
    yamlio._FAST = yamlio._Loader
    try:
        pure = best_of(1, lambda: load_yaml(path))
    finally:
        yamlio._FAST = fast
    parsed = best_of(repeat, lambda: load_yaml(path))
    validated = best_of(repeat, lambda: load_case(path))
    return floor, pure, parsed, validated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, nargs="+", default=[4.0], help="case file sizes in MB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is shown)")
    args = parser.parse_args()
    print(f"PyYAML {yaml.__version__}, libyaml available: {yaml.__with_libyaml__}")
    print(f"{'size':>8} {'lines':>9} {'yaml C alone':>13} {'pure Python':>12} {'load_yaml':>10} {'load_case':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for mb in args.mb:
            path = Path(tmp) / "big_case.yaml"
            text = case_text(int(mb * 1e6))
            path.write_text(text, encoding="utf-8")
            floor, pure, parsed, validated = measure(path, args.repeat)
            size = f"{len(text.encode()) / 1e6:.1f} MB"
            print(
                f"{size:>8} {text.count(chr(10)):>9,} {floor:>12.2f}s {pure:>11.2f}s {parsed:>9.2f}s {validated:>9.2f}s"
            )


if __name__ == "__main__":
    main()

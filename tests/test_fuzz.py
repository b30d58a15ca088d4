"""Fuzzing the two main entry points through the CLI: `assess` on generated case files (valid, broken, random
YAML, random bytes) and `batch` on generated long tables (random cells, missing columns, ragged rows, blank lines,
odd encodings). Whatever the input:

- no traceback and no "internal error" on stdout or stderr;
- the exit code is 0, 1 or 2;
- for batch, whenever the exit code is 0, the books balance: the accounting line reads
  `rows read N = rows scored S + rows rejected R` with N = S + R, the errors file holds exactly R rows of that
  file, and N is the number of data rows in the file (counted by the csv module when the text has no quotes).

The normal suite runs a modest budget (40 examples per property). For a deeper run:

    CRLM_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py -o addopts="" -p no:logging

Every failure hypothesis finds is printed with the smallest input it could shrink to.
"""

from __future__ import annotations

import csv
import gc
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from conftest import run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CRLM_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
ACCOUNTING = re.compile(
    r"^(?P<file>.+?): rows read (?P<read>[\d,]+) = rows scored (?P<scored>[\d,]+) "
    r"\+ rows rejected (?P<rejected>[\d,]+)\s*$",
    re.MULTILINE,
)


@contextmanager
def unraisable_errors() -> Iterator[list[str]]:
    """Exceptions Python could only print ("Exception ignored in ..." and a traceback on the user's terminal), e.g.
    raised inside a parser callback: collected here so that a property fails on the example that caused them."""
    seen: list[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        seen.append(f"{type(info.exc_value).__name__}: {info.exc_value} (in {info.object!r})")

    sys.unraisablehook = hook
    try:
        yield seen
    finally:
        sys.unraisablehook = previous


def cli(*args: Any) -> Any:
    """Run the CLI; a traceback printed through sys.unraisablehook counts as a traceback on stderr."""
    with unraisable_errors() as seen:
        result = run_cli(*args)
        gc.collect()
    if seen:
        result.unraisable = seen
    return result


def assert_no_crash(result: Any, what: str) -> None:
    unraisable = getattr(result, "unraisable", [])
    assert not unraisable, f"{what}\nPython printed a traceback (exception ignored): {unraisable}"
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream, f"{what}\n{stream[-3000:]}"
        assert "internal error" not in stream, f"{what}\n{stream[-3000:]}"
    assert result.exit_code in (0, 1, 2), f"{what}: exit {result.exit_code}\n{result.stderr[-3000:]}"


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------

ODD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)),  # any code point UTF-8 can hold
    max_size=20,
)
WORDS = st.sampled_from(
    [
        "",
        " ",
        "target",
        "non_target",
        "new",
        "ablated",
        "liver",
        "lung",
        "lymph_node",
        "present",
        "disappeared",
        "too_small",
        "not_evaluated",
        "unequivocal_progression",
        "coalesced",
        "CT",
        "MRI",
        "PET-CT",
        "yes",
        "no",
        "true",
        "false",
        "null",
        "~",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "-0",
        "0x1F",
        "1_000",
        "١٢",
        "Ⅻ",
        "ｔａｒｇｅｔ",
        "L1",
        "baseline",
        "FU1",
        "2024-02-30",
        "2024-09-02",
        "24:00",
        '=HYPERLINK("x")',
        "@SUM(1)",
        "\u202eevil",
        "\x00",
        "\ufeff",
        "e\u0301",
        "💥",
        "a" * 300,
    ]
)
NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e-320, 1e308, 999.9999, 1000, 1000.0001, 4000, -4]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, WORDS, ODD_TEXT)
ANY_VALUE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(WORDS, ODD_TEXT), inner, max_size=4)
    ),
    max_leaves=12,
)

# --------------------------------------------------------------------------------------------------
# Case documents
# --------------------------------------------------------------------------------------------------

LESION_KEYS = [
    "id",
    "organ",
    "location",
    "kind",
    "is_lymph_node",
    "longest_diameter_mm",
    "short_axis_mm",
    "fragments_mm",
    "perpendicular_mm",
    "viable_diameter_mm",
    "attenuation_hu",
    "morphology_group",
    "status",
    "coalesced_into",
    "equivocal",
    "slice_thickness_mm",
    "intratumoral_nodule",
]
TIMEPOINT_KEYS = [
    "id",
    "day",
    "date",
    "modality",
    "lesions",
    "organs",
    "pet",
    "tumor_markers_above_normal",
    "slice_thickness_mm",
]
CASE_KEYS = ["case_id", "description", "criteria", "treatment", "settings", "timepoints"]


@st.composite
def valid_case(draw: st.DrawFn) -> dict[str, Any]:
    n_targets = draw(st.integers(1, 4))
    organs = ["liver", "liver", "lung", "lymph_node"]
    lesions = []
    for i in range(n_targets):
        organ = organs[i]
        lesion: dict[str, Any] = {"id": f"L{i + 1}", "organ": organ, "kind": "target"}
        if organ == "lymph_node":
            lesion.update(is_lymph_node=True, short_axis_mm=draw(st.integers(15, 40)))
        else:
            lesion["longest_diameter_mm"] = draw(st.integers(10, 90))
        lesions.append(lesion)
    if draw(st.booleans()):
        lesions.append({"id": "NT1", "organ": "peritoneum", "kind": "non_target"})
    timepoints = [
        {
            "id": "baseline",
            "day": 0,
            "modality": "CT",
            "lesions": lesions,
            "organs": {"spleen_volume_ml": draw(st.integers(100, 300))},
        }
    ]
    day = 0
    for k in range(1, draw(st.integers(1, 3)) + 1):
        day += draw(st.integers(28, 90))
        follow = []
        for lesion in lesions:
            entry: dict[str, Any] = {"id": lesion["id"]}
            if lesion["kind"] == "target":
                size_key = "short_axis_mm" if lesion.get("is_lymph_node") else "longest_diameter_mm"
                entry[size_key] = draw(st.integers(0, 120))
            else:
                entry["status"] = draw(st.sampled_from(["present", "disappeared", "unequivocal_progression"]))
            follow.append(entry)
        if draw(st.integers(0, 4)) == 0:
            follow.append({"id": "NEW1", "organ": "liver", "kind": "new", "longest_diameter_mm": 12})
        timepoints.append({"id": f"FU{k}", "day": day, "modality": "CT", "lesions": follow})
    return {
        "case_id": "FUZZ-1",
        "treatment": {"regimen": "FOLFOX", "agents": ["oxaliplatin", "fluorouracil"]},
        "timepoints": timepoints,
    }


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out += _paths(value, prefix + (index,))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


@st.composite
def broken_case(draw: st.DrawFn) -> dict[str, Any]:
    """A valid case with 1-4 mutations: a key dropped, a random key added, a value replaced by anything."""
    data = draw(valid_case())
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = _get(data, path[:-1])
        action = draw(st.sampled_from(["drop", "replace", "replace", "add_key", "known_key"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(ANY_VALUE)
        elif isinstance(parent, dict):
            key = (
                draw(st.one_of(WORDS, ODD_TEXT))
                if action == "add_key"
                else draw(st.sampled_from(LESION_KEYS + TIMEPOINT_KEYS + CASE_KEYS))
            )
            parent[key] = draw(ANY_VALUE)
    return data


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


YAML_CHARS = st.sampled_from(list("abc:- \n\t[]{},'\"&*!|>#%@`?0123456789.~") + ["\u00e9", "\ufeff", "\x85"])
case_texts = st.one_of(
    valid_case().map(dump),
    broken_case().map(dump),
    broken_case().map(lambda d: dump(d).replace("  ", "\t", 1)),  # a tab where YAML wants spaces
    broken_case().map(lambda d: dump(d)[: len(dump(d)) // 2]),  # truncated file
    st.text(YAML_CHARS, max_size=200),  # random YAML-ish text
    ANY_VALUE.map(dump),  # any YAML document at all
)


def encode(text: str, how: str) -> bytes:
    if how == "utf-16":
        return text.encode("utf-16")
    if how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8")
    if how == "latin-1":
        return text.encode("latin-1", errors="replace")
    return text.encode("utf-8")


@FUZZ
@given(
    text=case_texts,
    how=st.sampled_from(["utf-8", "utf-8", "utf-8", "bom", "utf-16", "latin-1"]),
    extra=st.sampled_from(
        [
            [],
            ["--format", "json"],
            ["--criteria", "all"],
            ["--strict"],
            ["--explain"],
            ["--set", "recist1.1.confirmation_required=true"],
        ]
    ),
)
def test_assess_never_crashes_on_any_case_document(text: str, how: str, extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "case.yaml"
        path.write_bytes(encode(text, how))
        result = cli("assess", path, *extra)
        assert_no_crash(result, f"assess {path.name} {extra} ({how}):\n{text[:2000]}")


@FUZZ
@given(data=st.binary(max_size=400))
def test_assess_never_crashes_on_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "case.yaml"
        path.write_bytes(data)
        result = cli("assess", path)
        assert_no_crash(result, f"assess on bytes {data!r}")


# --------------------------------------------------------------------------------------------------
# Long tables
# --------------------------------------------------------------------------------------------------

COLUMNS = [
    "subject_id",
    "timepoint",
    "day",
    "lesion_id",
    "kind",
    "organ",
    "is_lymph_node",
    "longest_diameter_mm",
    "short_axis_mm",
    "status",
    "agents",
    "spleen_volume_ml",
]
OPTIONAL_COLUMNS = [
    "date",
    "modality",
    "attenuation_hu",
    "morphology_group",
    "location",
    "equivocal",
    "regimen",
    "setting",
    "fragments_mm",
    "liver_attenuation_hu",
    "sul_peak_hottest",
    "unknown_column",
]
CELL_TEXT = st.one_of(
    WORDS,
    st.integers(-100, 5000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='\r\n"\x00'), max_size=12),
)


def valid_rows(rng_sizes: list[int], n_subjects: int) -> list[dict[str, str]]:
    rows = []
    for s in range(n_subjects):
        sizes = rng_sizes[s % len(rng_sizes) :] + rng_sizes[: s % len(rng_sizes)]
        for k, day in enumerate((0, 56, 112)):
            for i in range(2):
                row = {c: "" for c in COLUMNS}
                row.update(
                    subject_id=f"S{s + 1}",
                    timepoint="baseline" if k == 0 else f"FU{k}",
                    day=str(day),
                    lesion_id=f"L{i + 1}",
                    longest_diameter_mm=str(sizes[(k + i) % len(sizes)]),
                    status="present",
                    agents="oxaliplatin;fluorouracil",
                    spleen_volume_ml=str(150 + 10 * k),
                )
                if k == 0:
                    row.update(kind="target", organ=["liver", "lung"][i], is_lymph_node="false")
                rows.append(row)
    return rows


@st.composite
def long_tables(draw: st.DrawFn) -> str:
    sizes = draw(st.lists(st.integers(10, 80), min_size=3, max_size=6))
    rows = valid_rows(sizes, draw(st.integers(1, 4)))
    header = list(COLUMNS) + draw(st.lists(st.sampled_from(OPTIONAL_COLUMNS), max_size=3, unique=True))
    for column in header[len(COLUMNS) :]:
        for row in rows:
            row[column] = ""
    # drop some columns (possibly required ones)
    for column in draw(st.lists(st.sampled_from(header), max_size=2, unique=True)):
        header.remove(column)
    # random cells
    for _ in range(draw(st.integers(0, 6))):
        if not header:
            break
        row = draw(st.sampled_from(rows))
        row[draw(st.sampled_from(header))] = draw(CELL_TEXT)
    # duplicated and reordered rows
    if draw(st.booleans()):
        rows.append(dict(draw(st.sampled_from(rows))))
    rows = draw(st.permutations(rows))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    lines = []
    for row in rows:
        lines.append([row.get(c, "") for c in header])
    # ragged rows: fields added or removed
    for _ in range(draw(st.integers(0, 2))):
        if lines:
            line = draw(st.sampled_from(lines))
            if draw(st.booleans()) and line:
                line.pop()
            else:
                line.append(draw(CELL_TEXT))
    for line in lines:
        writer.writerow(line)
    text = buffer.getvalue()
    if draw(st.integers(0, 5)) == 0:  # blank lines in the middle
        parts = text.split("\n")
        parts.insert(draw(st.integers(1, max(1, len(parts) - 1))), "")
        text = "\n".join(parts)
    if draw(st.integers(0, 6)) == 0:  # a header with a duplicated or empty name
        first, rest = text.split("\n", 1)
        text = first + draw(st.sampled_from([",subject_id", ",", ",day"])) + "\n" + rest
    for _ in range(draw(st.integers(0, 3)) if draw(st.integers(0, 3)) == 0 else 0):  # raw edits of the text
        at = draw(st.integers(0, max(0, len(text) - 1)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(['"', "\r", ",", "\n", "\x00", "\\", "'", ";", "\t"])) + text[at:]
        else:
            text = text[:at] + text[at + 1 :]
    return text


def csv_data_rows(text: str) -> int:
    return max(0, sum(1 for row in csv.reader(io.StringIO(text, newline="")) if row) - 1)


def check_books(result: Any, text: str, out: Path) -> None:
    """Exit 0: rows read = rows scored + rows rejected, matching the file and the errors file."""
    counts = {
        m["file"]: {k: int(m[k].replace(",", "")) for k in ("read", "scored", "rejected")}
        for m in ACCOUNTING.finditer(result.stderr)
    }
    assert "in.csv" in counts, f"no accounting line for in.csv:\n{result.stderr}"
    c = counts["in.csv"]
    assert c["read"] == c["scored"] + c["rejected"], c
    if '"' not in text:
        assert c["read"] == csv_data_rows(text), f"read {c['read']} rows of {csv_data_rows(text)}:\n{text}"
    errors_path = out / "r.errors.csv"
    errors = (
        pd.read_csv(errors_path, dtype=str, keep_default_na=False)
        if errors_path.stat().st_size
        else pd.DataFrame(columns=["file", "line"])
    )
    mine = errors.loc[errors["file"].map(lambda f: Path(f).name) == "in.csv"]
    assert len(mine) == c["rejected"], f"errors file has {len(mine)} rows, the count says {c['rejected']}"
    assert mine["line"].is_unique, mine.to_string()


@FUZZ
@given(
    text=long_tables(),
    how=st.sampled_from(["utf-8", "utf-8", "utf-8", "bom", "utf-16"]),
    criteria=st.sampled_from(["recist1.1", "recist1.1,toxicity", "all"]),
)
def test_batch_never_crashes_and_the_books_balance(text: str, how: str, criteria: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.csv"
        path.write_bytes(encode(text, how))
        out = Path(folder) / "out"
        result = cli("batch", path, "-o", out / "r.csv", "--criteria", criteria)
        assert_no_crash(result, f"batch ({how}, {criteria}):\n{text}")
        if result.exit_code == 0:
            check_books(result, text, out)


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".parquet"]))
@example(data=b"{\x80", suffix=".parquet")  # found in CI: JSON-looking bytes that are not UTF-8
def test_batch_never_crashes_on_random_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"in{suffix}"
        path.write_bytes(b"subject_id,timepoint,day,lesion_id\n" + data if suffix == ".csv" else data)
        result = cli("batch", path, "-o", Path(folder) / "out" / "r.csv")
        assert_no_crash(result, f"batch on bytes {data!r}")

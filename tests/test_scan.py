"""The CSV pre-parse scan: its byte-search shortcut for plain blocks finds exactly what the full per-byte scan
finds (blank lines, line count, multi-line cells, over-long lines, old Mac line ends), whatever the bytes and
wherever the blocks are cut."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crlm_response import formats
from crlm_response.errors import CrlmError

HEADER = b"subject_id,timepoint,lesion_id\n"


def scan(path: Path) -> tuple[object, ...]:
    """What a scan found, or the message it refused the file with."""
    try:
        layout = formats.scan_csv(path, path.name)
    except CrlmError as exc:
        return ("refused", str(exc))
    return (layout.header_line, layout.names, layout.blank.tolist(), layout.multiline, layout.lines)


def full_scan(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, ...]:
    with monkeypatch.context() as patched:
        patched.setattr(formats, "_plain_block", lambda *_: False)
        return scan(path)


lines = st.lists(
    st.one_of(
        st.sampled_from([b"", b"\r", b"S1,BL,T1", b"S1,FU1,T1\r", b'"S 1",BL,T2', b'"a\nb",BL,T3', b'x"y', b"\r\r"]),
        st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b"")),
        st.integers(min_value=20, max_value=90).map(lambda n: b"L" * n),  # long, against the small limit below
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=lines,
    bom=st.booleans(),
    trailing=st.booleans(),
    chunk=st.integers(min_value=1, max_value=97),
    data_start=st.booleans(),
)
def test_shortcut_agrees_with_the_full_scan(
    body: list[bytes],
    bom: bool,
    trailing: bool,
    chunk: int,
    data_start: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small limits so that short test files cross block edges and the line-length limit.
    monkeypatch.setattr(formats, "SCAN_CHUNK", chunk)
    monkeypatch.setattr(formats, "MAX_LINE_BYTES", 64)
    monkeypatch.setattr(formats, "HALF_LINE", 32)
    text = (b"\xef\xbb\xbf" if bom else b"") + (HEADER if data_start else b"") + b"\n".join(body)
    path = tmp_path / "t.csv"
    path.write_bytes(text + (b"\n" if trailing else b""))
    assert scan(path) == full_scan(path, monkeypatch)


def test_plain_file_takes_the_shortcut_and_counts_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = b"".join(b"S%d,BL,T1\n" % i for i in range(5000))
    path = tmp_path / "plain.csv"
    path.write_bytes(HEADER + rows)
    taken: list[bool] = []
    real = formats._plain_block

    def spy(*args: object) -> bool:
        taken.append(real(*args))  # type: ignore[arg-type]
        return taken[-1]

    monkeypatch.setattr(formats, "_plain_block", spy)
    layout = formats.scan_csv(path, "plain.csv")
    assert taken and all(taken)
    assert (layout.lines, layout.header_line, layout.blank.tolist(), layout.multiline) == (5001, 1, [], False)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (HEADER + b"S1,BL,T1\n\nS1,FU,T1\n", [3]),  # an empty line
        (HEADER + b"S1,BL,T1\r\n\r\nS1,FU,T1\r\n", [3]),  # an empty CRLF line
        (b"\n\n" + HEADER + b"S1,BL,T1\n\n", [5]),  # blank lines before the header are not data
    ],
)
def test_blank_lines_are_found(content: bytes, expected: list[int], tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(content)
    assert formats.scan_csv(path, "b.csv").blank.tolist() == expected


def test_a_line_over_the_limit_is_refused_with_its_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "SCAN_CHUNK", 256)
    monkeypatch.setattr(formats, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(formats, "HALF_LINE", 50)
    path = tmp_path / "long.csv"
    path.write_bytes(HEADER + b"S1,BL,T1\n" * 30 + b"S1,BL," + b"T" * 101 + b"\n" + b"S1,FU,T1\n" * 30)
    with pytest.raises(CrlmError) as refused:
        formats.scan_csv(path, "long.csv")
    assert refused.value.location.line == 32
    assert "107 bytes long" in str(refused.value)

"""The CSV pre-parse scan: blank lines found by their line numbers, an over-long line refused with its number, also
where the line crosses the edge of a read block."""

from __future__ import annotations

from pathlib import Path

import pytest

from crlm_response import formats
from crlm_response.errors import CrlmError

HEADER = b"subject_id,timepoint,lesion_id\n"


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
    path = tmp_path / "long.csv"
    path.write_bytes(HEADER + b"S1,BL,T1\n" * 30 + b"S1,BL," + b"T" * 101 + b"\n" + b"S1,FU,T1\n" * 30)
    with pytest.raises(CrlmError) as refused:
        formats.scan_csv(path, "long.csv")
    assert refused.value.location.line == 32
    assert "107 bytes long" in str(refused.value)

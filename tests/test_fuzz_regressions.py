"""Inputs the long-running fuzzers (fuzz/fuzz_targets.py) once crashed on: each must now get a clear answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli

CASES = sorted((FIXTURES / "fuzz_regressions").glob("*"))


@pytest.mark.parametrize("path", CASES, ids=[p.name for p in CASES])
def test_fuzz_finding_gets_a_clear_answer(path: Path, tmp_path: Path) -> None:
    if path.suffix == ".csv":
        result = run_cli("batch", path, "-o", tmp_path / "out.csv")
    elif path.name.startswith("rules"):
        result = run_cli("rules", "validate", path)
    else:
        result = run_cli("assess", path)
    assert result.exit_code in (0, 1), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr

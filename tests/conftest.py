"""Shared test helpers: paths, the CLI runner, and case builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from crlm_response.cli import cli

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
FIXTURES = TESTS / "fixtures"
SHARED_EXAMPLES = ROOT.parent / "shared" / "criteria" / "examples.yaml"


def run_cli(*args: str, input: str | None = None) -> Result:
    """Invoke the CLI in-process like a user would (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def run_json(*args: str) -> dict[str, Any]:
    result = run_cli(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def write_case(tmp_path: Path, case: dict[str, Any], name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(case, sort_keys=False), encoding="utf-8")
    return path


def example_cases() -> list[dict[str, Any]]:
    return yaml.safe_load((FIXTURES / "examples.yaml").read_text(encoding="utf-8"))["cases"]


@pytest.fixture
def cli_runner() -> Any:
    return run_cli

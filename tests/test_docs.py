"""The README's examples run in the test suite, so a documented example can never break again.

* every ```yaml block parses; a rule file is loaded and validated, a column map read, a case file validated;
* every ```console block's command runs (in a scratch folder holding `sample_cases/` and the files the README's
  yaml blocks name in their first comment line, e.g. `# my_site_recist.yaml`) and exits 0, and every output line
  the README shows (other than `...`) appears in what the command prints, at the 100-column width the README uses;
* the ```python block runs, and each expression with a `# 'value'` comment gives that value;
* every command has help text with an `Example:` and appears in the README.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT

from crlm_response.cli import cli
from crlm_response.readers import case_from_data
from crlm_response.rules import load_rules
from crlm_response.trial import load_column_map

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


def named_files() -> dict[str, str]:
    """yaml blocks whose first line names the file they show (`# my_site_recist.yaml`)."""
    files = {}
    for body in blocks("yaml"):
        first = body.splitlines()[0] if body.strip() else ""
        match = re.fullmatch(r"#\s*([\w.\-]+\.ya?ml)\s*", first)
        if match:
            files[match.group(1)] = body
    return files


@pytest.mark.parametrize("body", blocks("yaml"), ids=lambda b: b.strip().splitlines()[0][:40])
def test_every_yaml_block_parses(body: str, tmp_path: Path) -> None:
    data = yaml.safe_load(body)
    assert data is not None
    if isinstance(data, dict) and "id" in data and "description" in data:
        path = tmp_path / f"{data['id']}.yaml"
        path.write_text(body, encoding="utf-8")
        load_rules(path)  # a rule file or variant: valid as written
    elif isinstance(data, dict) and "columns" in data:
        path = tmp_path / "columns.yaml"
        path.write_text(body, encoding="utf-8")
        load_column_map(path)
    elif isinstance(data, dict) and "timepoints" in data:
        case_from_data(data, "README")


def _scratch(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "sample_cases", tmp_path / "sample_cases")
    (tmp_path / "docs").mkdir()
    for name, body in named_files().items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    return tmp_path


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def console_examples() -> list[Any]:
    found = []
    for body in blocks("console"):
        command, *shown = body.rstrip("\n").splitlines()
        assert command.startswith("$ crlm-response "), command
        found.append(pytest.param(command[2:], shown, id=command[2:60]))
    return found


@pytest.mark.parametrize(("command", "shown"), console_examples())
def test_console_examples_print_what_the_readme_shows(
    command: str, shown: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_scratch(tmp_path))
    args = shlex.split(command)[1:]
    result = CliRunner(env={"COLUMNS": "100"}).invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    printed = "\n".join(_lines(result.stdout + "\n" + result.stderr))
    missing = [line for line in _lines("\n".join(shown)) if line and line != "..." and line not in printed]
    assert not missing, "README shows lines the command does not print:\n" + "\n".join(missing) + "\n---\n" + printed


def test_the_library_example_gives_the_values_its_comments_show(monkeypatch: pytest.MonkeyPatch) -> None:
    (body,) = blocks("python")
    monkeypatch.chdir(ROOT)
    lines = body.splitlines()
    scope: dict[str, Any] = {}
    checked = 0
    for statement in ast.parse(body).body:
        comment = lines[statement.lineno - 1].partition("#")[2]
        expected = re.fullmatch(r"\s*('.*')\s*", comment)
        if isinstance(statement, ast.Expr) and expected:
            value = eval(compile(ast.Expression(statement.value), "README", "eval"), scope)  # noqa: S307 - README's own
            assert value == ast.literal_eval(expected.group(1)), lines[statement.lineno - 1]
            checked += 1
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), "README", "exec"), scope)  # noqa: S102
    assert checked >= 1


def _commands() -> list[tuple[str, Any]]:
    out = []
    for name, command in cli.commands.items():
        if hasattr(command, "commands"):
            out += [(f"{name} {sub}", c) for sub, c in command.commands.items()]
        else:
            out.append((name, command))
    return out


@pytest.mark.parametrize(("name", "command"), _commands(), ids=[n for n, _ in _commands()])
def test_every_command_has_an_example_and_is_in_the_readme(name: str, command: Any) -> None:
    assert command.help and "Example:" in command.help, f"`{name}` help has no Example:"
    assert f"crlm-response {name}" in README.read_text(encoding="utf-8"), f"`crlm-response {name}` not in README"

"""The terminal: `assess` readable at 80 columns, words instead of codes, a batch's warnings counted by code, and
progress on long batches.

* `assess --explain` of every sample case with COLUMNS=80 (CliRunner) and in a real 80-column terminal (a pty):
  no line wider than 80, no value cut to `…`, every timepoint's verdict in its table row, every best overall
  response, every explanation sentence whole (wrapped lines joined), columns left out named under the table.
* Words, not codes: toxicity flags by their label, an ablation outcome by its label; the JSON keeps the codes.
* `fitted_table` leaves out the lowest-priority columns first and never cuts a value.
* A batch measured in centimetres ends with `units_look_like_cm` counted, its meaning and its first subjects, on
  stderr before any summary; `render_batch_warnings` counts by code, most frequent first.
* `BatchProgress` draws a progress bar on a terminal (after its delay) and nothing when stderr is not one.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import ROOT, run_cli
from rich.console import Console
from rich.text import Text

from crlm_response.batch import count_warned_subjects, merge_warning_summaries, summarise_warnings
from crlm_response.cli import cli
from crlm_response.render import BatchProgress, fitted_table, render_batch_warnings, render_summary

SAMPLES = sorted((ROOT / "sample_cases").glob("*.yaml"))
FOLFOX = ROOT / "sample_cases" / "folfox_bev_partial_response.yaml"
ABLATION = ROOT / "sample_cases" / "microwave_ablation_ltp.yaml"


def assess_at(width: int, case_file: Path, *args: str) -> str:
    result = CliRunner(env={"COLUMNS": str(width)}).invoke(
        cli, ["assess", str(case_file), *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout


def collapsed(text: str) -> str:
    """Whitespace collapsed and panel borders dropped: wrapped text reads as one line again."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def check_readable(out: str, case_file: Path, width: int = 80) -> None:
    """Every line fits, nothing is cut, every verdict and every reason is there."""
    data = json.loads(run_cli("assess", case_file, "--format", "json").stdout)
    lines = out.splitlines()
    too_wide = [line for line in lines if len(line) > width]
    assert not too_wide, f"{len(too_wide)} line(s) wider than {width}: {too_wide[:2]}"
    assert "…" not in out, "a value was cut"
    flat = collapsed(out)
    for rule_id, block in data["criteria"].items():
        assert block["name"] in out
        for tp in block["timepoints"]:
            row = next((line for line in lines if line.split()[:1] == [tp["id"]]), None)
            assert row is not None, f"{rule_id}: no table row for {tp['id']}"
            for sentence in tp.get("explanation") or []:
                assert collapsed(sentence) in flat, f"{rule_id} {tp['id']}: {sentence}"
        if block.get("best_overall_response") is not None:
            assert re.search(rf"Best overall response: {re.escape(str(block['best_overall_response']))}\b", out) or (
                "_" in block["best_overall_response"]
            ), f"{rule_id}: best overall response not shown"
    for warning in data["warnings"]:
        assert collapsed(warning["message"]) in flat


@pytest.mark.parametrize("case_file", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_explain_at_80_columns(case_file: Path) -> None:
    check_readable(assess_at(80, case_file, "--explain"), case_file)


def test_recist_table_at_80_columns_keeps_the_verdict_columns() -> None:
    """At 80 columns the RECIST table keeps sum, % vs baseline and % vs nadir (the PR and PD tests) and the
    verdicts; the columns it leaves out are named under it."""
    out = assess_at(80, FOLFOX, "--criteria", "recist1.1")
    row = next(line for line in out.splitlines() if line.split()[:1] == ["FU2"])
    assert row.split() == ["FU2", "59", "-38.54", "-26.25", "PR", "NON-CR/NON-PD", "no", "PR"]
    assert "not shown at this width: day, nadir (mm), change vs nadir" in collapsed(out)
    wide = assess_at(200, FOLFOX, "--criteria", "recist1.1")
    row = next(line for line in wide.splitlines() if line.split()[:1] == ["FU2"])
    assert row.split() == ["FU2", "126", "59", "80", "-38.54", "-26.25", "-21", "PR", "NON-CR/NON-PD", "no", "PR"]
    assert "not shown" not in wide


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_explain_in_a_real_80_column_terminal(tmp_path: Path) -> None:
    """The same through a pseudo-terminal of 80 columns (rich reads the width from the terminal, not COLUMNS)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "dumb"
    command = [sys.executable, "-m", "crlm_response", "assess", str(FOLFOX), "--explain"]
    process = subprocess.Popen(command, stdout=slave, stderr=slave, stdin=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=60)
    os.close(master)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8")).replace("\r\n", "\n")
    assert process.returncode == 0, out
    check_readable(out, FOLFOX)


def test_words_not_codes_in_the_terminal() -> None:
    folfox = assess_at(120, FOLFOX)
    assert "Spleen volume up 30 % or more since baseline" in folfox
    assert "sos_spleen_increase_ge30pct" not in folfox
    ablation = assess_at(120, ABLATION)
    table = ablation.split("per lesion")[0]
    assert "complete ablation" in table and "local tumour progression" in table
    assert "complete_ablation" not in table and "local_tumor_progression" not in table
    data = json.loads(run_cli("assess", FOLFOX, "--format", "json").stdout)
    assert data["toxicity"][0]["flag"] == "sos_spleen_increase_ge30pct", "the JSON keeps the code"


def test_best_response_with_its_label() -> None:
    out = assess_at(120, FOLFOX, "--criteria", "recist1.1,chun_morphologic")
    assert "Best overall response: PR (partial response)  at FU2, day 126; confirmation not required" in out
    assert "Best overall response: optimal (optimal morphologic response)  at FU2, day 126" in out


def test_fitted_table_drops_by_priority_and_never_cuts() -> None:
    console = Console(width=40, file=io.StringIO(), record=True, color_system=None)
    keys = ["targets_evaluated", "nadir_mm", "pct_from_baseline", "overall"]
    rows = [[Text("FU1"), Text("3/3"), Text("96"), Text("-16.67"), Text("NON-CR/NON-PD")]]
    table, left_out = fitted_table(console, [("id", "timepoint")], keys, rows)
    assert left_out == ["targets measured", "nadir (mm)"]
    console.print(table)
    out = console.export_text()
    assert "…" not in out and "-16.67" in out and "NON-CR/NON-PD" in out
    assert max(len(line) for line in out.splitlines()) <= 40


# ---------------------------------------------------------------------------------------------------------
# Batch: warnings counted by code, progress
# ---------------------------------------------------------------------------------------------------------


def test_batch_in_centimetres_says_so(tmp_path: Path) -> None:
    """Five subjects typed in cm (largest target 4.1 ... 6.5): `units_look_like_cm` 5 times in 5 subjects, its
    meaning and the first three subjects (and, as each target is under 10 mm, `recist_target_not_measurable` 5
    times too), on stderr with the summary's ORR on stdout."""
    rows = ["subject_id,timepoint,day,lesion_id,kind,organ,longest_diameter_mm"]
    for i, size in enumerate((4.1, 5.0, 6.5, 4.4, 5.2), start=1):
        rows += [f"C{i},baseline,0,T1,target,liver,{size}", f"C{i},FU1,56,T1,,,{size * 0.6:.1f}"]
    rows += ["M1,baseline,0,T1,target,liver,45", "M1,FU1,56,T1,,,40"]
    lesions = tmp_path / "cm.csv"
    lesions.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run_cli("batch", lesions, "-o", tmp_path / "out.csv", "--summary")
    assert result.exit_code == 0, result.stderr
    err = collapsed(result.stderr)
    assert "10 warning(s) in 5 subject(s)" in err, err
    assert "units_look_like_cm 5 in 5 subject(s): C1, C2, C3, ... 2 more" in err, err
    assert "recist_target_not_measurable 5 in 5 subject(s): C1, C2, C3, ... 2 more" in err, err
    assert "are the sizes in centimetres?" in err
    assert "ORR" in result.stdout


def test_render_batch_warnings_counts_by_code() -> None:
    warnings = pd.DataFrame(
        {
            "subject_id": ["S2", "S1", "S1", "S3", "S4", "S5"],
            "criteria": ["recist1.1"] * 6,
            "code": ["b_code", "a_code", "b_code", "b_code", "b_code", "a_code"],
            "timepoint": ["FU1"] * 6,
            "lesion_id": [None] * 6,
            "message": ["b first", "a first", "b second", "b third", "b fourth", "a second"],
        }
    )
    console = Console(width=100, file=io.StringIO(), record=True, color_system=None)
    render_batch_warnings(console, summarise_warnings(warnings), count_warned_subjects(warnings), "out.warnings.csv")
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    # first subjects by id, and the message of the first subject's warning: the same from every engine
    assert lines == [
        "6 warning(s) in 5 subject(s) (see out.warnings.csv), by code:",
        "  - b_code  4 in 4 subject(s): S1, S2, S3, ... 1 more",
        "    b second",
        "  - a_code  2 in 2 subject(s): S1, S5",
        "    a first",
    ]
    # summarised in two subject-complete parts and merged: the same summary
    parts = [warnings.loc[warnings["subject_id"].isin(p)] for p in (["S1", "S4"], ["S2", "S3", "S5"])]
    merged = merge_warning_summaries([summarise_warnings(p) for p in parts])
    pd.testing.assert_frame_equal(merged, summarise_warnings(warnings))


def test_summary_names_the_words_of_each_set() -> None:
    entry = {
        "criteria": "chun_morphologic",
        "subjects": 4,
        "best_response": {"optimal": 2, "none": 2},
        "objective_response_rate": {"n": 2, "rate_pct": 50.0, "ci_low_pct": 6.76, "ci_high_pct": 93.24},
        "disease_control_rate": {"n": 4, "rate_pct": 100.0, "ci_low_pct": 39.76, "ci_high_pct": 100.0},
    }
    console = Console(width=120, file=io.StringIO(), record=True, color_system=None)
    render_summary(console, [entry])
    out = console.export_text()
    # Chun's rule file counts only optimal and incomplete as disease control ("none" is no change or worse).
    assert "ORR (optimal)" in out and "DCR (optimal+incomplete)" in out


def test_progress_bar_on_a_terminal_only() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with BatchProgress(console, delay=0.0, enabled=True) as step:
        step("reading cohort.csv")
        step("scoring part 2 of 4")
        console.file.flush()
        assert step.progress is not None
        task = step.progress.tasks[0]
        assert (task.completed, task.total, task.description) == (1, 4, "scoring part 2 of 4")
        step.progress.refresh()
    assert "scoring part 2 of 4" in buffer.getvalue()
    quiet = io.StringIO()
    with BatchProgress(Console(file=quiet, force_terminal=True), enabled=False) as step:
        step("scoring part 1 of 2")
    assert quiet.getvalue() == ""


def test_progress_waits_for_its_delay() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with BatchProgress(console, delay=3600.0, enabled=True) as step:
        step("scoring part 1 of 2")
        assert step.progress is not None
        step.progress.refresh()
    assert "scoring" not in buffer.getvalue(), "a short run draws no progress bar"


def test_batch_progress_silent_when_not_a_terminal(tmp_path: Path) -> None:
    lesions = ROOT / "sample_cases" / "trial_lesions.csv"
    result: Any = run_cli("batch", lesions, "-o", tmp_path / "out.csv")
    assert result.exit_code == 0
    for word in ("reading", "scoring", "checking subjects"):
        assert word not in result.stderr, f"progress text {word!r} on a stderr that is not a terminal"

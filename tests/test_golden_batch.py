"""Golden cases through `batch`: each case alone, and the same case inside a cohort of every golden case of its file.

One engine serves `assess` and `batch` (a case is a batch of one subject), so every hand-written golden answer of
`tests/golden/*.yaml` must also come out of the batch outputs, whatever else is in the file. The cases are turned
into the long trial format (one row per lesion per timepoint) with the library's own converter; the cohort runs
through the command line (`crlm-response batch cohort.csv -o out.csv --criteria ... --set ...`), one run per group of
cases that share their settings; each case alone runs through the library's batch entry point. The batch outputs are
read back into the shape of `assess --format json` and checked with the golden checker of test_golden.py.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import run_cli
from test_golden import _skip_unimplemented, check_golden, golden_document, golden_files

from crlm_response.batch import score_read
from crlm_response.readers import case_from_data
from crlm_response.tables import long_frame, tables_from_cases
from crlm_response.trial import read_long

# What the batch files do not carry: run parameters (they are the command's `--set`), and per-visit explanations.
NOT_IN_BATCH = {"parameters"}


def _groups() -> list[Any]:
    """(rule set, settings, criteria) -> the golden cases scored together, one pytest param per group."""
    params = []
    for path in golden_files():
        data = yaml_load(path)
        rule_set = data.get("rule_set", path.stem)
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for golden in data.get("cases") or []:
            if "error" in golden:
                continue
            doc, criteria = golden_document(rule_set, golden)
            key = json.dumps({"settings": doc.get("settings") or {}, "criteria": criteria}, sort_keys=True)
            groups[key].append(golden)
        for key, members in groups.items():
            params.append(pytest.param(rule_set, json.loads(key), members, id=f"{rule_set}::{len(members)}:{key}"))
    return params


def yaml_load(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _long_table(rule_set: str, members: list[dict[str, Any]]) -> pd.DataFrame:
    cases = []
    for golden in members:
        doc, _ = golden_document(rule_set, golden)
        doc.pop("settings", None)  # batch takes settings from --set, for the whole group
        cases.append((case_from_data(doc, golden["name"]), golden["name"], {}))
    return long_frame(tables_from_cases(cases))


def _set_options(settings: dict[str, dict[str, Any]]) -> list[str]:
    options = []
    for rule_id, params in settings.items():
        for name, value in params.items():
            text = json.dumps(value) if not isinstance(value, str) else value
            options += ["--set", f"{rule_id}.{name}={text}"]
    return options


def _cell(value: Any) -> Any:
    """A CSV cell as the JSON value `assess` would give: numbers, true/false, null."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value)
    if text == "":
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def _read(path: Path) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:  # e.g. the best-response file of a set without one
        return pd.DataFrame(columns=["subject_id", "criteria"])
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _as_assessments(tables: dict[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    """Batch output tables -> per subject, the `assess --format json` shape the golden checker reads."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {"criteria": {}, "warnings": [], "toxicity": []})
    lesions = tables["lesions"]
    for row in tables["visits"].to_dict("records"):
        block = out[row["subject_id"]]["criteria"].setdefault(row["criteria"], {"timepoints": []})
        item = {"id": row["timepoint"], **{k: _cell(v) for k, v in row.items() if k not in ("subject_id", "criteria")}}
        item.pop("timepoint", None)
        if not lesions.empty:
            mine = lesions.loc[
                (lesions["subject_id"] == row["subject_id"])
                & (lesions["criteria"] == row["criteria"])
                & (lesions["timepoint"] == row["timepoint"])
            ]
            item["lesions"] = [
                {"id": r["lesion_id"], **{k: _cell(v) for k, v in r.items() if k not in ("subject_id", "criteria")}}
                for r in mine.to_dict("records")
            ]
        block["timepoints"].append(item)
    for row in tables["best"].to_dict("records"):
        block = out[row["subject_id"]]["criteria"].setdefault(row["criteria"], {"timepoints": []})
        block.update({k: _cell(v) for k, v in row.items() if k not in ("subject_id", "criteria")})
    for row in tables["warnings"].to_dict("records"):
        out[row["subject_id"]]["warnings"].append(
            {
                "code": row["code"],
                "criteria": _cell(row["criteria"]),
                "timepoint": _cell(row["timepoint"]),
                "lesion": _cell(row["lesion_id"]),
                "message": row["message"],
            }
        )
    for row in tables["flags"].to_dict("records"):
        flag = {k: _cell(v) for k, v in row.items() if k != "subject_id"}
        flag["lesion"] = flag.pop("lesion_id", None)
        flag["evidence"] = json.loads(row["evidence"]) if row["evidence"] else {}
        out[row["subject_id"]]["toxicity"].append(flag)
    return out


def _expected(golden: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in golden["expected"].items() if k not in NOT_IN_BATCH}


@pytest.mark.parametrize(("rule_set", "key", "members"), _groups())
def test_golden_cases_through_batch(
    rule_set: str, key: dict[str, Any], members: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The whole group in one batch run (CLI), then each case alone (library); both give the golden answers."""
    criteria = key["criteria"]
    _skip_unimplemented([rule_set, *criteria])
    cohort = tmp_path / "cohort.csv"
    _long_table(rule_set, members).to_csv(cohort, index=False)
    out = tmp_path / "out.csv"
    result = run_cli("batch", cohort, "-o", out, "--criteria", ",".join(criteria), *_set_options(key["settings"]))
    assert result.exit_code == 0, result.stderr
    names = {"visits": out, "best": tmp_path / "out.best.csv", "warnings": tmp_path / "out.warnings.csv"}
    names |= {"flags": tmp_path / "out.flags.csv", "lesions": tmp_path / "out.lesions.csv"}
    in_cohort = _as_assessments({k: _read(p) for k, p in names.items()})
    failures = []
    for golden in members:
        try:
            check_golden(in_cohort[golden["name"]], rule_set, _expected(golden))
        except AssertionError as exc:
            failures.append(f"{golden['name']} (in the cohort): {exc}")
        alone = tmp_path / f"{golden['name']}.csv"
        _long_table(rule_set, [golden]).to_csv(alone, index=False)
        batch = score_read(read_long(alone), criteria, key["settings"])
        tables = {k: _roundtrip(v, tmp_path / f"{golden['name']}.{k}.csv") for k, v in batch.tables().items()}
        try:
            check_golden(_as_assessments(tables)[golden["name"]], rule_set, _expected(golden))
        except AssertionError as exc:
            failures.append(f"{golden['name']} (alone): {exc}")
    assert not failures, "\n".join(failures)


def _roundtrip(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """A table as `batch` writes it and a reader reads it back (text cells)."""
    from crlm_response.writers import write_table

    write_table(frame, path)
    return _read(path)

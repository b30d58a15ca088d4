"""One field table: each case field is declared once, in the Pydantic model (type, bounds, allowed words, and its
`Meta`: label, unit, SDTM test code), and both the case-file validation and the table checks come from it; one
rounding rule serves every output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_case

from crlm_response.models import FIELD_LABELS, Lesion, Meta, Organs, Pet, Timepoint, Treatment, field_meta
from crlm_response.tables import field_specs
from crlm_response.trial import SPECS
from crlm_response.vectors import OUTPUT_DECIMALS, round_output

MODELS = (Lesion, Organs, Pet, Timepoint, Treatment)
NOT_FIELDS = {"id", "lesions", "organs", "pet"}  # keys and nested blocks, not values


def test_every_case_field_declares_its_label_once_in_the_model() -> None:
    for model in MODELS:
        metas = field_meta(model)
        for name in model.model_fields:
            if name in NOT_FIELDS:
                continue
            assert isinstance(metas.get(name), Meta), f"{model.__name__}.{name} has no Meta(label, unit, sdtm)"
            assert FIELD_LABELS[name] == metas[name].label


def test_the_table_checks_are_the_model_fields() -> None:
    """Every column the long format checks has the kind, bounds and words of the case field of the same name."""
    for model in MODELS:
        for name, spec in field_specs(model).items():
            if name in NOT_FIELDS or name not in SPECS:
                continue
            table = SPECS[name]
            kind = "text" if name == "agents" else spec.kind  # a table holds the agents in one cell: "a;b"
            assert (table.kind, table.ge, table.gt, table.le, table.choices) == (
                kind,
                spec.ge,
                spec.gt,
                spec.le,
                spec.choices,
            ), name


def test_units_and_sdtm_codes_live_with_the_fields() -> None:
    specs = field_specs(Lesion)
    assert (specs["longest_diameter_mm"].unit, specs["longest_diameter_mm"].sdtm) == ("mm", "LDIAM")
    assert (specs["short_axis_mm"].unit, specs["short_axis_mm"].sdtm) == ("mm", "LPERP")
    assert specs["status"].sdtm == "TUMSTATE"
    assert field_specs(Organs)["spleen_volume_ml"].unit == "mL"


def test_a_case_file_and_a_table_refuse_the_same_procedure_day(tmp_path: Path) -> None:
    """procedure_day 99999 was accepted in a case file and refused in a CSV; both refuse it now."""
    case = {
        "case_id": "P1",
        "treatment": {"setting": "ablation", "procedure_day": 99999},
        "timepoints": [
            {
                "id": "baseline",
                "day": 0,
                "lesions": [{"id": "L1", "organ": "liver", "kind": "target", "longest_diameter_mm": 30}],
            },
            {"id": "FU1", "day": 56, "lesions": [{"id": "L1", "longest_diameter_mm": 20}]},
        ],
    }
    result = run_cli("assess", write_case(tmp_path, case), "--criteria", "recist1.1")
    assert result.exit_code == 1
    assert "treatment.procedure_day" in result.stderr and "36500" in result.stderr, result.stderr
    table = tmp_path / "t.csv"
    table.write_text(
        "subject_id,timepoint,day,lesion_id,kind,organ,longest_diameter_mm,procedure_day\n"
        "P1,baseline,0,L1,target,liver,30,99999\nP1,FU1,56,L1,,,20,99999\n",
        encoding="utf-8",
    )
    batch = run_cli("batch", table, "-o", tmp_path / "out.csv", "--criteria", "recist1.1")
    assert batch.exit_code == 1  # nothing scored: both rows rejected
    errors = (tmp_path / "out.errors.csv").read_text(encoding="utf-8")
    assert "procedure_day must be <= 36500" in errors


@pytest.mark.parametrize("value", [0.015, 2.675, -16.665, 33.335])
def test_one_rounding_rule_for_every_output(value: float) -> None:
    """The JSON of `assess` (a Python number) and a batch column (numpy) round the same way."""
    from crlm_response.conditions import format_value, format_values
    from crlm_response.engine import _plain

    column = float(round_output(np.array([value]))[0])
    assert _plain(value) == column
    assert format_value(value) == format_values(np.array([value]), 1).iat[0]
    assert OUTPUT_DECIMALS == 2

"""`crlm-response import-sr`: DICOM SR measurement reports (TID 1500) to a case file.

Reports are built here with highdicom, referencing pydicom's `CT_small.dcm`, in the shapes viewers write them:

* a conformant TID 1500 report (tracking identifier = lesion name, finding, finding site, long/short axis in
  SNOMED CT, the reader's Target/Non-Target Lesion at Baseline evaluation DCM 112074/112075, one size in cm),
  with a hand-written YAML twin that must get the same assessment;
* OHIF (dcmjs): tracking identifier = the tool (`Cornerstone3DTools@^0.1.0:Length`), the reader's label as a
  CORNERSTONEFREETEXT finding (OHIF 2 / legacy) or a Comment (OHIF 3), retired SNOMED-RT codes for Length and
  Long/Short Axis, a fresh tracking UID on every export, and an elliptical ROI with area and mean only;
* 3D Slicer (dcmqi): generic identifiers `Measurements group N`, TID 1502 time point, volume and mean values.

The third-party reports in `../shared/data/dicom-sr/` (highdicom's test files) are read when present.
Every expected value and message below is written by hand.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from conftest import ROOT, run_cli
from highdicom.sr import CodedConcept
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes

from crlm_response import assess, load_case
from crlm_response.dicom_sr import import_sr

SHARED_SR = ROOT.parent / "shared" / "data" / "dicom-sr"
CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
PATIENT = "CRLM-SR-01"

MM, CM, MM2, MM3 = codes.UCUM.Millimeter, codes.UCUM.Centimeter, codes.UCUM.SquareMillimeter, codes.UCUM.CubicMillimeter
HU = CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
PIXELS = CodedConcept("{pixels}", "UCUM", "pixels")
LONG, SHORT, DIAMETER = codes.SCT.LongAxis, codes.SCT.ShortAxis, codes.SCT.Diameter
VOLUME, AREA = codes.SCT.Volume, codes.SCT.Area
MEAN = CodedConcept("112031", "DCM", "Attenuation Coefficient")
# The retired SNOMED-RT codes dcmjs (OHIF) still writes
LENGTH_SRT = CodedConcept("G-D7FE", "SRT", "Length")
LONG_SRT, SHORT_SRT = CodedConcept("G-A185", "SRT", "Long Axis"), CodedConcept("G-A186", "SRT", "Short Axis")
LIVER_SRT = CodedConcept("T-62000", "SRT", "Liver")

NEOPLASM = codes.SCT.Neoplasm
LYMPHADENOPATHY = CodedConcept("30746006", "SCT", "Lymphadenopathy")
RIGHT_LOBE = CodedConcept("72170009", "SCT", "Right lobe of liver")
PERITONEUM = CodedConcept("15425007", "SCT", "Peritoneum")
TARGET, NON_TARGET = codes.DCM.TargetLesionAtBaseline, codes.DCM.NonTargetLesionAtBaseline

OHIF3 = "Cornerstone3DTools@^0.1.0"
OHIF2 = "cornerstoneTools@^4.0.0"


def label(text: str) -> CodedConcept:
    """The reader's label as dcmjs writes it before OHIF 3: a 'code' whose meaning is the text."""
    return CodedConcept("CORNERSTONEFREETEXT", "CORNERSTONEJS", text)


def group(
    identifier: str | None,
    *numbers: tuple[Any, float, Any],
    uid: str | None = None,
    finding: Any = None,
    category: Any = None,
    site: Any = None,
    baseline: Any = None,
    comment: str | None = None,
    time_point: str | None = None,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """One planar ROI measurement group (TID 1410) on CT_small, with the given content items."""
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[10.0, 10.0], [40.0, 40.0]]),
        source_image=hd.sr.SourceImageForRegion.from_source_image(CT),
    )
    evaluations = []
    if baseline is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(codes.DCM.BaselineCategory, baseline))
    made = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid or hd.UID(), identifier=identifier),
        referenced_region=region,
        finding_type=finding,
        finding_category=category,
        finding_sites=[hd.sr.FindingSite(site)] if site is not None else None,
        measurements=[hd.sr.Measurement(name=n, value=v, unit=u) for n, v, u in numbers],
        qualitative_evaluations=evaluations or None,
        time_point_context=hd.sr.TimePointContext(time_point) if time_point else None,
    )
    if comment is not None:  # OHIF 3 writes the label as a Comment (DCM 121106)
        made[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=CodedConcept("121106", "DCM", "Comment"), value=comment, relationship_type="CONTAINS"
            )
        )
    return made


def write_sr(path: Path, groups: Sequence[Any], study_date: str, patient: str = PATIENT) -> Path:
    """A Comprehensive 3D SR holding a TID 1500 Measurement Report with these groups."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^One"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_person_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=list(groups),
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[CT],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
    )
    sr.StudyDate = study_date
    sr.PatientID = patient
    sr.save_as(path)
    return path


def uid(timepoint: int, lesion: int) -> str:
    return f"1.2.826.0.1.3680043.10.999.{timepoint}.{lesion}"


# --------------------------------------------------------------------------------------------------
# A conformant report with target / non-target evaluations, and its hand-written twin
# --------------------------------------------------------------------------------------------------


def write_conformant_reports(folder: Path) -> list[Path]:
    """Baseline and two follow-ups; RECIST by hand: baseline sum 52 + 34 + 17 (node short axis) = 103 mm;
    FU1 40 + 26 + 12 = 78 mm (-24.3 %: SD); FU2 30 + 19 + 9 = 58 mm (-43.7 %: PR); best response PR."""
    baseline = [
        group("L1", (LONG, 52, MM), (VOLUME, 50000, MM3), uid=uid(0, 1), finding=NEOPLASM, site=RIGHT_LOBE,
              baseline=TARGET),
        group("L2", (LONG, 3.4, CM), uid=uid(0, 2), finding=NEOPLASM, site=codes.SCT.Liver, baseline=TARGET),
        group("N1", (LONG, 24, MM), (SHORT, 17, MM), uid=uid(0, 3), finding=LYMPHADENOPATHY,
              site=codes.SCT.LymphNode, baseline=TARGET),
        group("NT1", (DIAMETER, 12, MM), uid=uid(0, 4), finding=NEOPLASM, site=PERITONEUM, baseline=NON_TARGET),
        group("Aorta", (DIAMETER, 25, MM), uid=uid(0, 5), finding=codes.SCT.Aorta,
              category=codes.SCT.AnatomicalStructure),
    ]  # fmt: skip
    follow_ups = [
        ("fu1.dcm", "20240311", 1, [40, 2.6, (18, 12), 10]),
        ("fu2.dcm", "20240513", 2, [30, 1.9, (14, 9), 8]),
    ]
    paths = [write_sr(folder / "baseline.dcm", baseline, "20240108")]
    for name, date, n, (l1, l2, (n1_long, n1_short), nt1) in follow_ups:
        groups = [
            group("L1", (LONG, l1, MM), uid=uid(n, 1), finding=NEOPLASM, site=RIGHT_LOBE),
            group("L2", (LONG, l2, CM), uid=uid(n, 2), finding=NEOPLASM, site=codes.SCT.Liver),
            group("N1", (LONG, n1_long, MM), (SHORT, n1_short, MM), uid=uid(n, 3), finding=LYMPHADENOPATHY,
                  site=codes.SCT.LymphNode),
            group("NT1", (DIAMETER, nt1, MM), uid=uid(n, 4), finding=NEOPLASM, site=PERITONEUM),
        ]  # fmt: skip
        paths.append(write_sr(folder / name, groups, date))
    return paths


CONFORMANT_TEXT = """\
# Imported by crlm-response import-sr from 3 DICOM SR file(s); review before assessing.
# Lesion ids from the tracking identifier (a viewer's tool name is replaced by the measurement's label); \
one timepoint per study date, the earliest is the baseline.
# Not imported (also listed on stderr when run from the command line):
#   baseline.dcm: group 1 (L1): Volume 50000 mm3: only lesion diameters (long axis, short axis) are imported
#   baseline.dcm: group 5 (Aorta): Diameter 25 mm: not a lesion: finding category Anatomical Structure
case_id: CRLM-SR-01
timepoints:
  - id: baseline
    date: 2024-01-08
    lesions:
      - {id: L1, organ: liver, location: Right lobe of liver, kind: target, longest_diameter_mm: 52}  \
# from baseline.dcm group 1 (L1), tracking UID 1.2.826.0.1.3680043.10.999.0.1
      - {id: L2, organ: liver, kind: target, longest_diameter_mm: 34}  \
# from baseline.dcm group 2 (L2), tracking UID 1.2.826.0.1.3680043.10.999.0.2
      - {id: N1, organ: lymph_node, kind: target, is_lymph_node: true, longest_diameter_mm: 24, short_axis_mm: 17}  \
# from baseline.dcm group 3 (N1), tracking UID 1.2.826.0.1.3680043.10.999.0.3
      - {id: NT1, organ: peritoneum, kind: non_target, longest_diameter_mm: 12}  \
# from baseline.dcm group 4 (NT1), tracking UID 1.2.826.0.1.3680043.10.999.0.4
  - id: FU1
    date: 2024-03-11
    lesions:
      - {id: L1, longest_diameter_mm: 40}  # from fu1.dcm group 1 (L1), tracking UID 1.2.826.0.1.3680043.10.999.1.1
      - {id: L2, longest_diameter_mm: 26}  # from fu1.dcm group 2 (L2), tracking UID 1.2.826.0.1.3680043.10.999.1.2
      - {id: N1, longest_diameter_mm: 18, short_axis_mm: 12}  \
# from fu1.dcm group 3 (N1), tracking UID 1.2.826.0.1.3680043.10.999.1.3
      - {id: NT1, longest_diameter_mm: 10}  # from fu1.dcm group 4 (NT1), tracking UID 1.2.826.0.1.3680043.10.999.1.4
  - id: FU2
    date: 2024-05-13
    lesions:
      - {id: L1, longest_diameter_mm: 30}  # from fu2.dcm group 1 (L1), tracking UID 1.2.826.0.1.3680043.10.999.2.1
      - {id: L2, longest_diameter_mm: 19}  # from fu2.dcm group 2 (L2), tracking UID 1.2.826.0.1.3680043.10.999.2.2
      - {id: N1, longest_diameter_mm: 14, short_axis_mm: 9}  \
# from fu2.dcm group 3 (N1), tracking UID 1.2.826.0.1.3680043.10.999.2.3
      - {id: NT1, longest_diameter_mm: 8}  # from fu2.dcm group 4 (NT1), tracking UID 1.2.826.0.1.3680043.10.999.2.4
"""

TWIN = """\
case_id: CRLM-SR-01
timepoints:
  - id: baseline
    date: 2024-01-08
    lesions:
      - {id: L1, organ: liver, kind: target, longest_diameter_mm: 52}
      - {id: L2, organ: liver, kind: target, longest_diameter_mm: 34}
      - {id: N1, organ: lymph_node, kind: target, short_axis_mm: 17}
      - {id: NT1, organ: peritoneum, kind: non_target}
  - id: FU1
    date: 2024-03-11
    lesions:
      - {id: L1, longest_diameter_mm: 40}
      - {id: L2, longest_diameter_mm: 26}
      - {id: N1, short_axis_mm: 12}
      - {id: NT1, status: present}
  - id: FU2
    date: 2024-05-13
    lesions:
      - {id: L1, longest_diameter_mm: 30}
      - {id: L2, longest_diameter_mm: 19}
      - {id: N1, short_axis_mm: 9}
      - {id: NT1, status: present}
"""


def recist(case: Any) -> tuple[str, list[tuple[str, str]]]:
    data = assess(case, criteria=["recist1.1"]).to_dict()["criteria"]["recist1.1"]
    return data["best_overall_response"], [(tp["id"], tp["overall"]) for tp in data["timepoints"]]


def test_conformant_reports_give_the_hand_written_case_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_conformant_reports(tmp_path)
    result = run_cli("import-sr", "baseline.dcm", "fu1.dcm", "fu2.dcm", "-o", "case.yaml")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "case.yaml").read_text(encoding="utf-8") == CONFORMANT_TEXT
    assert result.stderr.splitlines() == [
        "left out: baseline.dcm: group 1 (L1): Volume 50000 mm3: only lesion diameters (long axis, short axis) "
        "are imported",
        "left out: baseline.dcm: group 5 (Aorta): Diameter 25 mm: not a lesion: finding category Anatomical Structure",
        "wrote case.yaml: 3 timepoint(s), 4 lesion(s) from 3 report(s); 2 item(s) left out",
    ]


def test_an_sr_built_case_and_its_hand_written_twin_get_the_same_assessment(tmp_path):
    write_conformant_reports(tmp_path)
    out = tmp_path.with_name(tmp_path.name + "_case.yaml")  # outside the folder the run reads
    assert run_cli("import-sr", str(tmp_path), "-o", str(out)).exit_code == 0
    twin = tmp_path / "twin.yaml"
    twin.write_text(TWIN, encoding="utf-8")
    expected = ("PR", [("FU1", "SD"), ("FU2", "PR")])
    assert recist(twin) == expected
    assert recist(out) == expected
    assessed = run_cli("assess", str(out), "--criteria", "recist1.1")
    assert assessed.exit_code == 0, assessed.stderr


def test_a_folder_is_read_in_date_order_and_other_files_are_listed(tmp_path):
    reports = tmp_path / "export"
    (reports / "series").mkdir(parents=True)
    write_conformant_reports(reports / "series")
    shutil.copy(get_testdata_file("CT_small.dcm"), reports / "series" / "IM0001")
    (reports / "notes.txt").write_text("reader notes\n", encoding="utf-8")
    result = import_sr([reports])
    assert [(tp["id"], str(tp["date"])) for tp in result.case["timepoints"]] == [
        ("baseline", "2024-01-08"),
        ("FU1", "2024-03-11"),
        ("FU2", "2024-05-13"),
    ]
    assert [str(item) for item in result.left_out[:2]] == [
        f"{reports}: 1 file(s) skipped: not DICOM: notes.txt",
        f"{reports}: 1 file(s) skipped: DICOM images or other objects, not structured reports: series/IM0001",
    ]


# --------------------------------------------------------------------------------------------------
# OHIF (dcmjs) conventions
# --------------------------------------------------------------------------------------------------


def write_ohif_reports(folder: Path) -> None:
    """Two exports a week apart; every export draws fresh tracking UIDs (dcmjs), so only the labels link them.
    L1 48 -> 30 mm, L2 31 -> 20 mm: sum 79 -> 50 mm (-36.7 %): PR."""
    write_sr(
        folder / "ohif_baseline.dcm",
        [
            group(f"{OHIF3}:Length", (LENGTH_SRT, 48, MM), finding=label("L1")),
            group(f"{OHIF3}:Bidirectional", (LONG_SRT, 3.1, CM), (SHORT_SRT, 2.0, CM), site=LIVER_SRT, comment="L2"),
            group(f"{OHIF2}:EllipticalRoi", (AREA, 300, MM2), (MEAN, 45, HU), finding=label("L3")),
        ],
        "20240108",
    )
    write_sr(
        folder / "ohif_fu1.dcm",
        [
            group(f"{OHIF3}:Length", (LENGTH_SRT, 30, MM), finding=label("L1")),
            group(f"{OHIF3}:Bidirectional", (LONG_SRT, 2.0, CM), (SHORT_SRT, 1.2, CM), site=LIVER_SRT, comment="L2"),
        ],
        "20240311",
    )


def test_ohif_tool_identifiers_give_way_to_the_readers_labels(tmp_path):
    write_ohif_reports(tmp_path)
    out = tmp_path.with_name(tmp_path.name + "_case.yaml")  # outside the folder the run reads
    result = run_cli("import-sr", str(tmp_path), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    case = load_case(out)
    rows = [
        (tp.id, les.id, les.kind, les.organ, les.longest_diameter_mm, les.short_axis_mm)
        for tp in case.timepoints
        for les in tp.lesions
    ]
    assert rows == [
        ("baseline", "L1", "target", None, 48.0, None),
        ("baseline", "L2", "target", "liver", 31.0, 20.0),
        ("FU1", "L1", None, None, 30.0, None),
        ("FU1", "L2", None, None, 20.0, 12.0),
    ]
    codes_said = [line.split(":")[0] for line in result.stderr.splitlines() if line.startswith("warning ")]
    assert codes_said == ["warning import_targets_assumed", "warning import_lesions_assumed"]
    assert "every lesion measured at baseline is taken as a target: L1, L2 (choose with --targets" in result.stderr
    left = [line for line in result.stderr.splitlines() if line.startswith("left out:")]
    assert left == [
        f"left out: {tmp_path / 'ohif_baseline.dcm'}: group 3 ({OHIF2}:EllipticalRoi): Area 300 mm2; "
        "Attenuation Coefficient 45 [hnsf'U]: no length (long axis, short axis, diameter or length), and nothing "
        "says it is a lesion (no finding, finding category or lesion finding site)"
    ]
    assert recist(out) == ("PR", [("FU1", "PR")])


def test_targets_option_makes_the_other_baseline_lesions_non_targets(tmp_path):
    write_ohif_reports(tmp_path)
    result = import_sr([tmp_path], targets=["L1"])
    assert [w.code for w in result.warnings] == ["import_lesions_assumed"]
    baseline = result.case["timepoints"][0]["lesions"]
    assert [(les["id"], les["kind"]) for les in baseline] == [("L1", "target"), ("L2", "non_target")]
    by_label = import_sr([tmp_path], id_from="label", non_targets=["L2"])
    assert [(les["id"], les["kind"]) for les in by_label.case["timepoints"][0]["lesions"]] == [
        ("L1", "target"),
        ("L2", "non_target"),
    ]


def test_a_lesion_first_seen_at_follow_up_is_new(tmp_path):
    write_ohif_reports(tmp_path)
    write_sr(
        tmp_path / "ohif_fu2.dcm",
        [
            group(f"{OHIF3}:Length", (LENGTH_SRT, 31, MM), finding=label("L1")),
            group(f"{OHIF3}:Length", (LENGTH_SRT, 12, MM), finding=label("NEW1")),
        ],
        "20240506",
    )
    result = import_sr([tmp_path])
    fu2 = result.case["timepoints"][2]
    assert fu2["id"] == "FU2"
    assert fu2["lesions"] == [
        {"id": "L1", "longest_diameter_mm": 31.0},
        {"id": "NEW1", "kind": "new", "longest_diameter_mm": 12.0},
    ]
    assert recist(parse(result.text)) == ("PR", [("FU1", "PR"), ("FU2", "PD")])


def parse(text: str) -> Any:
    from crlm_response import parse_case

    return parse_case(text)


# --------------------------------------------------------------------------------------------------
# 3D Slicer (dcmqi) conventions; time point context; keys
# --------------------------------------------------------------------------------------------------


def test_time_point_context_names_the_timepoint_and_uids_can_be_the_key(tmp_path):
    """dcmqi numbers its groups per session ("Measurements group N"), so the numbers need not match between
    reports; its tracking UIDs are the stable key here. TID 1502 names the follow-up."""
    write_sr(
        tmp_path / "a.dcm",
        [
            group("Measurements group 1", (LONG, 40, MM), uid=uid(9, 1), finding=NEOPLASM, site=codes.SCT.Liver),
            group("Measurements group 2", (LONG, 20, MM), uid=uid(9, 2), finding=NEOPLASM, site=codes.SCT.Lung),
            group("Measurements group 3", (VOLUME, 70.4, codes.UCUM.CubicCentimeter), uid=uid(9, 3),
                  finding=CodedConcept("T-D0060", "SRT", "Organ"), site=LIVER_SRT),
        ],
        "20240108",
    )  # fmt: skip
    write_sr(
        tmp_path / "b.dcm",
        [
            group("Measurements group 1", (LONG, 21, MM), uid=uid(9, 2), finding=NEOPLASM, time_point="week8"),
            group("Measurements group 2", (LONG, 36, MM), uid=uid(9, 1), finding=NEOPLASM, time_point="week8"),
        ],
        "20240304",
    )
    result = import_sr([tmp_path / "a.dcm", tmp_path / "b.dcm"], id_from="uid")
    assert [tp["id"] for tp in result.case["timepoints"]] == ["baseline", "week8"]
    assert result.case["timepoints"][1]["lesions"] == [
        {"id": uid(9, 2), "longest_diameter_mm": 21.0},
        {"id": uid(9, 1), "longest_diameter_mm": 36.0},
    ]
    assert [str(item) for item in result.left_out] == [
        f"{tmp_path / 'a.dcm'}: group 3 (Measurements group 3): Volume 70.4 cm3: not a lesion: finding Organ"
    ]
    by_identifier = import_sr([tmp_path / "a.dcm", tmp_path / "b.dcm"])
    week8 = {les["id"]: les["longest_diameter_mm"] for les in by_identifier.case["timepoints"][1]["lesions"]}
    assert week8 == {"Measurements group 1": 21.0, "Measurements group 2": 36.0}  # the identifiers, as written


def test_two_groups_of_one_lesion_are_merged_and_one_with_only_a_non_target_category_is_kept(tmp_path):
    write_sr(
        tmp_path / "a.dcm",
        [
            group("L1", (LONG, 4.1, CM), finding=NEOPLASM, site=codes.SCT.Liver),
            group("L1", (SHORT, 28, MM), finding=NEOPLASM),
            group("NT1", finding=NEOPLASM, site=PERITONEUM, baseline=NON_TARGET),
            group("L9", finding=NEOPLASM, site=codes.SCT.Liver),
        ],
        "20240108",
    )
    result = import_sr([tmp_path / "a.dcm"])
    assert result.case["timepoints"][0]["lesions"] == [
        {"id": "L1", "organ": "liver", "kind": "target", "longest_diameter_mm": 41.0, "short_axis_mm": 28.0},
        {"id": "NT1", "organ": "peritoneum", "kind": "non_target"},
    ]
    assert "{id: L1, organ: liver, kind: target, longest_diameter_mm: 41, short_axis_mm: 28}" in result.text
    assert [str(item) for item in result.left_out] == [
        f"{tmp_path / 'a.dcm'}: group 4 (L9): lesion L9: no length (long axis, short axis, diameter or length)"
    ]


def test_ids_that_yaml_would_misread_are_quoted(tmp_path):
    write_sr(
        tmp_path / "a.dcm",
        [
            group("1", (LONG, 30, MM), finding=NEOPLASM),
            group("yes", (LONG, 20, MM), finding=NEOPLASM),
            group("L3 # seg VII: dome", (LONG, 15, MM), finding=NEOPLASM),
        ],
        "20240108",
        patient="007",
    )
    result = import_sr([tmp_path / "a.dcm"])
    assert 'case_id: "007"' in result.text
    assert '{id: "1", kind: target' in result.text and '{id: "yes", kind: target' in result.text
    case = parse(result.text)
    assert case.case_id == "007"
    assert [les.id for les in case.timepoints[0].lesions] == ["1", "yes", "L3 # seg VII: dome"]


# --------------------------------------------------------------------------------------------------
# Third-party reports (highdicom's test files)
# --------------------------------------------------------------------------------------------------


def test_shared_report_with_several_groups_keeps_the_nodule_and_lists_the_rest(tmp_path):
    report = SHARED_SR / "sr_document_with_multiple_groups.dcm"
    if not report.is_file():
        pytest.skip(f"shared DICOM SR data not present at {SHARED_SR}")
    out = tmp_path / "case.yaml"
    result = run_cli("import-sr", str(report), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    case = load_case(out)
    assert case.case_id == "1CT1"
    [timepoint] = case.timepoints
    assert str(timepoint.date) == "2004-01-19"
    [nodule] = timepoint.lesions
    assert (nodule.id, nodule.organ, nodule.kind, nodule.longest_diameter_mm) == (
        "LungNodule0001",
        "lung",
        "target",
        10,
    )
    left = [
        line.removeprefix(f"left out: {report}: ") for line in result.stderr.splitlines() if line.startswith("left out")
    ]
    assert left == [
        "group 1 (Image0001): Intensity Histogram Mean -119.07385253906 [hnsf'U]: no length (long axis, short axis, "
        "diameter or length), and nothing says it is a lesion (no finding, finding category or lesion finding site)",
        "group 2 (LungNodule0001): Level of Significance: Not significant: qualitative evaluation not imported",
        "group 3 (Aorta0001): Diameter 20 mm: not a lesion: finding category Anatomical structure",
        "group 4 (Vertebra0001): Volume 200 mm3: not a lesion: finding category Anatomical structure",
    ]
    assert "warning import_targets_assumed:" in result.stderr
    assert run_cli("assess", str(out)).exit_code == 0


def test_shared_report_without_lesions_is_refused(tmp_path):
    report = SHARED_SR / "sr_document.dcm"
    if not report.is_file():
        pytest.skip(f"shared DICOM SR data not present at {SHARED_SR}")
    result = run_cli("import-sr", str(report), "-o", str(tmp_path / "case.yaml"))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {report}: no lesion measurement in 1 report(s); left out: {report}: group 1 (Planar ROI "
        "Measurements): Area of defined region 1.7 cm2: not a lesion: finding Spinal cord\n"
    )
    assert not (tmp_path / "case.yaml").exists()


# --------------------------------------------------------------------------------------------------
# Bad inputs: each a clear message naming the file, exit 1, nothing written
# --------------------------------------------------------------------------------------------------


def _not_tid1500(path: Path) -> None:
    write_sr(path, [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
    ds = pydicom.dcmread(path)
    ds.ContentTemplateSequence[0].TemplateIdentifier = "2000"
    ds.ConceptNameCodeSequence[0].CodeValue = "18748-4"
    ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "LN"
    ds.ConceptNameCodeSequence[0].CodeMeaning = "Diagnostic imaging report"
    ds.save_as(path)


def _build_bad(name: str, folder: Path) -> list[str]:
    """The input files of one bad case, as CLI arguments (relative to `folder`, the working directory)."""
    ohif = f"{OHIF3}:Length"
    if name == "not_sr":
        shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
        return ["ct.dcm"]
    if name == "not_tid1500":
        _not_tid1500(folder / "report.dcm")
        return ["report.dcm"]
    if name == "not_dicom":
        (folder / "notes.dcm").write_text("L1 41 mm\n", encoding="utf-8")
        return ["notes.dcm"]
    if name == "empty_folder":
        (folder / "empty").mkdir()
        return ["empty"]
    if name == "folder_of_images":
        (folder / "images").mkdir()
        shutil.copy(get_testdata_file("CT_small.dcm"), folder / "images" / "IM1")
        return ["images"]
    if name == "missing":
        return ["nowhere.dcm"]
    if name == "two_patients":
        write_sr(folder / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108", patient="P1")
        write_sr(folder / "b.dcm", [group("L1", (LONG, 20, MM), finding=NEOPLASM)], "20240308", patient="P2")
        return ["a.dcm", "b.dcm"]
    if name == "tool_name_without_label":
        write_sr(folder / "ohif.dcm", [group(ohif, (LENGTH_SRT, 30, MM))], "20240108")
        return ["ohif.dcm"]
    if name == "pixels":
        write_sr(folder / "a.dcm", [group("L1", (LONG, 112, PIXELS), finding=NEOPLASM)], "20240108")
        return ["a.dcm"]
    if name == "two_sizes_for_one_lesion":
        write_sr(folder / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
        write_sr(folder / "b.dcm", [group("L1", (LONG, 32, MM), finding=NEOPLASM)], "20240108")
        return ["a.dcm", "b.dcm"]
    if name == "target_missing_at_baseline":
        write_sr(folder / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
        write_sr(folder / "b.dcm", [group("L2", (LONG, 20, MM), finding=NEOPLASM, baseline=TARGET)], "20240308")
        return ["a.dcm", "b.dcm"]
    if name == "unknown_target":
        write_sr(folder / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
        return ["a.dcm", "--targets", "L1,L7"]
    if name == "target_the_report_calls_non_target":
        write_sr(folder / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM, baseline=NON_TARGET)], "20240108")
        return ["a.dcm", "--targets", "L1"]
    if name == "output_is_an_input":
        write_sr(folder / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
        return ["a.dcm"]
    if name == "output_is_a_report_in_the_folder":
        (folder / "reports").mkdir()
        write_sr(folder / "reports" / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
        return ["reports"]
    raise AssertionError(name)


BAD = {
    "not_sr": "Error: ct.dcm: is a DICOM CT Image Storage object, not a Structured Report (give the measurement "
    "report (SR) files a viewer saved)",
    "not_tid1500": 'Error: report.dcm: is a DICOM SR (Comprehensive 3D SR Storage, template 2000, title "Diagnostic '
    'imaging report") but not a Measurement Report (TID 1500); only TID 1500 reports hold lesion measurements this '
    "tool can read",
    "not_dicom": "Error: notes.dcm: not a DICOM file (no DICM marker)",
    "empty_folder": "Error: empty: empty folder: no files to read",
    "folder_of_images": "Error: images: no DICOM SR measurement report (TID 1500) in this folder (1 DICOM images or "
    "other objects, not structured reports)",
    "missing": "Error: nowhere.dcm: no such file or folder",
    "two_patients": "Error: b.dcm: is patient 'P2', but a.dcm is patient 'P1'; import one patient's reports at a time",
    "tool_name_without_label": "Error: ohif.dcm: group 1 (Cornerstone3DTools@^0.1.0:Length): cannot name this "
    "lesion: its tracking identifier 'Cornerstone3DTools@^0.1.0:Length' names a viewer tool, not a lesion, and it "
    "has no label (label each lesion in the viewer (e.g. L1), or choose the key with --id-from "
    "uid|identifier|label)",
    "pixels": "Error: a.dcm: group 1 (L1): Long axis 112 {pixels}: unit '{pixels}' is not a length unit this tool "
    "converts (mm, cm, m, um) (a length in pixels has no physical size; measure on calibrated images)",
    "two_sizes_for_one_lesion": "Error: b.dcm: group 1 (L1): lesion 'L1' at baseline has two different values of "
    "long axis: 32 mm here and 30 mm in a.dcm group 1 (L1) (keep one report per study, or give the lesions "
    "different ids)",
    "target_missing_at_baseline": "Error: b.dcm: group 1 (L2): lesion 'L2' is called a target lesion at baseline, "
    "but the baseline report (2024-01-08) does not have it (is the baseline report among the inputs? are the "
    "lesion ids the same in every report?)",
    "unknown_target": "Error: --targets: L7: not a lesion of the baseline report (2024-01-08); lesions there: L1",
    "target_the_report_calls_non_target": "Error: --targets: L1 is named a target here but the report calls it "
    "non-target (a.dcm group 1 (L1))",
    "output_is_an_input": "Error: a.dcm: -o would overwrite the input a.dcm (choose another output path)",
    "output_is_a_report_in_the_folder": "Error: reports/a.dcm: -o lies inside the input folder reports (write "
    "outputs outside the folders the run reads)",
}
USAGE_ERRORS = {"output_is_an_input", "output_is_a_report_in_the_folder"}  # exit 2, as every output conflict
OUTPUT = {"output_is_an_input": "a.dcm", "output_is_a_report_in_the_folder": "reports/a.dcm"}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_gets_a_clear_message_naming_the_file(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _build_bad(name, tmp_path)
    output = OUTPUT.get(name, "case.yaml")
    before = (tmp_path / output).read_bytes() if (tmp_path / output).exists() else None
    result = run_cli("import-sr", *args, "-o", output)
    assert result.exit_code == (2 if name in USAGE_ERRORS else 1), result.output
    assert result.stderr.rstrip("\n") == BAD[name]
    assert "Traceback" not in result.output
    after = (tmp_path / output).read_bytes() if (tmp_path / output).exists() else None
    assert after == before  # nothing written, no input touched


def test_a_wrong_id_from_is_a_usage_error(tmp_path):
    write_sr(tmp_path / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
    result = run_cli("import-sr", str(tmp_path / "a.dcm"), "-o", str(tmp_path / "c.yaml"), "--id-from", "name")
    assert result.exit_code == 2
    assert "'name' is not one of 'identifier', 'uid', 'label'" in result.stderr


def test_without_the_dicom_extra_the_message_names_it(tmp_path, monkeypatch):
    write_sr(tmp_path / "a.dcm", [group("L1", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` now raises ImportError
    result = run_cli("import-sr", str(tmp_path / "a.dcm"), "-o", str(tmp_path / "case.yaml"))
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: reading DICOM SR needs the optional `dicom` extra (pydicom and highdicom); pydicom is not installed "
        '(pip install "crlm-response[dicom]")\n'
    )
    assert not (tmp_path / "case.yaml").exists()


def _undefined_lengths(items: Any) -> None:
    """Mark every sequence and item of undefined length, as dcmjs (OHIF) writes them."""
    for element in items:
        if element.VR == "SQ":
            element.is_undefined_length = True
            for item in element.value:
                item.is_undefined_length_sequence_item = True
                _undefined_lengths(item)


@pytest.mark.parametrize("lengths", ["defined", "undefined"])
def test_a_report_cut_short_is_refused(tmp_path, lengths):
    """A copy broken in transfer: pydicom reads an element of known length that the file cuts short without
    complaint, which would silently lose the lesions measured last. Every cut must be refused, naming the file."""
    path = write_conformant_reports(tmp_path)[0]
    if lengths == "undefined":
        ds = pydicom.dcmread(path)
        _undefined_lengths(ds)
        ds.save_as(path)
    whole = path.read_bytes()
    for cut in range(400, len(whole) - 1, 97):
        broken = tmp_path / "cut.dcm"
        broken.write_bytes(whole[:cut])
        result = run_cli("import-sr", str(broken), "-o", str(tmp_path / "case.yaml"))
        assert result.exit_code == 1, (cut, result.output)
        assert result.stderr.startswith(f"Error: {broken}: "), (cut, result.stderr)
        assert "internal error" not in result.stderr
    assert not (tmp_path / "case.yaml").exists()


def test_the_cut_short_message(tmp_path):
    path = write_conformant_reports(tmp_path)[0]
    whole = path.read_bytes()
    size = pydicom.dcmread(path).get_item(0x0040A730).length
    path.write_bytes(whole[:-100])
    result = run_cli("import-sr", str(path), "-o", str(tmp_path / "case.yaml"))
    assert result.stderr == (
        f"Error: {path}: the file is cut short: Content Sequence (0040,A730) should have {size:,} bytes, the file "
        f"holds {size - 100:,} (the file looks damaged or cut short; copy the report again from the viewer or PACS)\n"
    )


def test_control_characters_in_a_label_cannot_break_the_case_file(tmp_path):
    write_sr(tmp_path / "a.dcm", [group("L1\x87\x85x", (LONG, 30, MM), finding=NEOPLASM)], "20240108")
    result = import_sr([tmp_path / "a.dcm"])
    assert '{id: "L1\\u0087 x", kind: target' in result.text  # NEL is a line break: white space in an id
    assert parse(result.text).timepoints[0].lesions[0].id == "L1\x87 x"
    assert "# from " + str(tmp_path / "a.dcm") + " group 1 (L1??x)" in result.text

"""Radiologists' measurements from DICOM Structured Reports (TID 1500 Measurement Report) → a case file.

Viewers (OHIF, 3D Slicer, ePAD, PACS) save lesion measurements as DICOM SR documents following template
TID 1500. `import_sr` reads one patient's reports and returns a case (and its YAML text) that `assess` accepts:
each report is a timepoint (dated by its study date, named by its TID 1502 time point when it has one), each
measurement group that is a lesion is a lesion. Everything not imported is listed, never dropped silently.

Lesion ids come from the tracking identifier (`id_from="identifier"`), the tracking UID (`"uid"`) or the
viewer's free-text label (`"label"`). OHIF writes the *tool name* as tracking identifier
(`Cornerstone3DTools@^0.1.0:Length`) and a fresh tracking UID on every export, so for its groups the label is
the only key that is stable across timepoints: an identifier that names a tool is replaced by the label.

Needs the optional packages of the `[dicom]` extra (pydicom; highdicom for building reports in tests).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml

from .errors import CrlmError
from .models import MAX_DIAMETER_MM

IdFrom = Literal["uid", "identifier", "label"]
NO_LENGTH = "no length (long axis, short axis, diameter or length)"
ID_SOURCES = {
    "uid": "the tracking UID",
    "identifier": "the tracking identifier (a viewer's tool name is replaced by the measurement's label)",
    "label": "the measurement's label",
}
EXTRA_HINT = 'pip install "crlm-response[dicom]"'
DAMAGED_HINT = "the file looks damaged or cut short; copy the report again from the viewer or PACS"


class SrImportError(CrlmError):
    """A DICOM file or folder that cannot be imported as a patient's measurement reports."""


class NotAMeasurementReport(SrImportError):
    """A file that is not a TID 1500 report: an error when named, skipped and listed when met in a folder."""


class Code(NamedTuple):
    value: str
    scheme: str
    meaning: str

    def key(self) -> tuple[str, str]:
        """(scheme, value) with the retired SNOMED-RT codes of old writers (dcmjs) read as their SNOMED CT twin."""
        if self.scheme == "SRT" and self.value in _SRT_TO_SCT:
            return ("SCT", _SRT_TO_SCT[self.value])
        return (self.scheme, self.value)


# Retired SNOMED-RT codes still written by dcmjs (OHIF) and older dcmqi (3D Slicer), and their SNOMED CT twins.
_SRT_TO_SCT = {
    "G-D7FE": "410668003",  # Length
    "G-A185": "103339001",  # Long axis
    "G-A186": "103340004",  # Short axis
    "G-A193": "131187009",  # Major axis
    "G-A194": "131188004",  # Minor axis
    "G-C0E3": "363698007",  # Finding site
    "T-62000": "10200004",  # Liver
    "T-28000": "39607008",  # Lung
    "T-C4000": "59441001",  # Lymph node
    "M-01000": "49755003",  # Morphologically abnormal structure
    "M-03010": "27925004",  # Nodule
    "M-03000": "4147007",  # Mass
    "M-80000": "108369006",  # Neoplasm
    "M-80003": "86049000",  # Neoplasm, primary
    "M-80006": "14799000",  # Neoplasm, metastatic
    "T-D000A": "91723000",  # Anatomical structure
}

TRACKING_ID = ("DCM", "112039")
TRACKING_UID = ("DCM", "112040")
FINDING = ("DCM", "121071")
FINDING_SITE = ("SCT", "363698007")
FINDING_CATEGORY = ("SCT", "276214006")
COMMENT = ("DCM", "121106")
TIME_POINT = ("UMLS", "C2348792")
TIME_POINT_CONTEXT = {("DCM", "126072"), ("DCM", "126073"), ("DCM", "126070"), ("DCM", "126071")}
MEASUREMENT_REPORT = ("DCM", "126000")
SR_CLASS_ROOT = "1.2.840.10008.5.1.4.1.1.88."  # the SOP classes of structured reports
MEASUREMENT_CONTAINERS = {("DCM", "126010"), ("DCM", "126011")}  # Imaging / Derived Imaging Measurements
MEASUREMENT_GROUP = ("DCM", "125007")
# CID 6145 "Baseline Category" (concept DCM 112016): what the reader called the lesion at baseline.
TARGET_AT_BASELINE = ("DCM", "112074")
NON_TARGET_AT_BASELINE = ("DCM", "112075")
NON_LESION_AT_BASELINE = ("DCM", "112076")
BASELINE_CATEGORIES = {TARGET_AT_BASELINE: "target", NON_TARGET_AT_BASELINE: "non_target"}
# dcmjs (OHIF) stores the reader's free-text label as a code with one of these values (its meaning is the text).
FREE_TEXT_CODES = {"CORNERSTONEFREETEXT", "CS3DTEXT"}
# OHIF: `Cornerstone3DTools@^0.1.0:Length`, `cornerstoneTools@^4.0.0:Bidirectional`; dcmjs's default text.
TOOL_IDENTIFIER = re.compile(r"^[A-Za-z][\w.-]*@[^:\s]*:\w+$|^web annotation$")

LONGEST = {("SCT", "410668003"), ("SCT", "103339001"), ("SCT", "81827009"), ("SCT", "131187009")}
SHORTEST = {("SCT", "103340004"), ("SCT", "131188004")}
LONGEST_WORDS = {"length", "long axis", "diameter", "major axis", "longest diameter", "maximum diameter"}
SHORTEST_WORDS = {"short axis", "minor axis", "short axis diameter"}
MM_PER_UNIT = {"mm": Decimal(1), "cm": Decimal(10), "m": Decimal(1000), "um": Decimal("0.001")}

LESION_CODES = {
    ("SCT", c)
    for c in (
        "27925004",  # Nodule
        "4147007",  # Mass
        "108369006",  # Neoplasm / Tumor
        "52988006",  # Lesion
        "14799000",  # Neoplasm, metastatic
        "128462008",  # Metastasis
        "86049000",  # Neoplasm, primary
        "49755003",  # Morphologically abnormal structure
        "30746006",  # Lymphadenopathy
        "363346000",  # Malignant neoplastic disease
    )
}
LESION_WORDS = (
    "nodule",
    "mass",
    "neoplas",
    "tumor",
    "tumour",
    "lesion",
    "metasta",
    "cancer",
    "carcinoma",
    "malignan",
    "adenopathy",
    "abnormal structure",
    "lymph node",  # a measured node is nodal disease; RECIST's size thresholds then say whether it counts
)
ANATOMY_CODES = {("SCT", "91723000"), ("SRT", "T-D0060")}  # Anatomical structure; Organ (dcmqi)
ORGAN_WORDS = (
    ("lymph node", "lymph_node"),
    ("node", "lymph_node"),
    ("liver", "liver"),
    ("hepat", "liver"),
    ("lung", "lung"),
    ("pulmonary", "lung"),
    ("peritone", "peritoneum"),
    ("pleura", "pleura"),
    ("adrenal", "adrenal_gland"),
    ("bone", "bone"),
)


@dataclass(frozen=True)
class LeftOut:
    """Something in the inputs that is not in the case, and why."""

    file: str
    group: str | None
    what: str
    reason: str

    def __str__(self) -> str:
        parts = [self.file] + ([self.group] if self.group else []) + [self.what]
        return f"{': '.join(parts)}: {self.reason}"


@dataclass(frozen=True)
class ImportWarning:
    code: str
    message: str


@dataclass
class ImportResult:
    """The imported case (`case` as data, `text` the YAML to write), the SR files read, warnings, what was left out."""

    case: dict[str, Any]
    text: str
    files: list[Path]
    warnings: list[ImportWarning]
    left_out: list[LeftOut]


# ---------------------------------------------------------------------------------------------------------------
# Reading one report


@dataclass
class _Num:
    concept: Code
    value: Decimal | None
    unit: Code | None

    def shown(self) -> str:
        if self.value is None:
            return f"{self.concept.meaning} (no value)"
        unit = self.unit.value if self.unit and self.unit.value else "(no unit)"
        return f"{self.concept.meaning} {_number(self.value)} {unit}"


@dataclass
class _Group:
    """One measurement group (TID 1501 / 1410 / 1411) as written, before any interpretation."""

    index: int
    tracking_id: str | None = None
    tracking_uid: str | None = None
    label: str | None = None
    finding: Code | None = None
    category: Code | None = None
    baseline_category: Code | None = None
    sites: list[tuple[Code, list[Code]]] = field(default_factory=list)
    numbers: list[_Num] = field(default_factory=list)
    evaluations: list[str] = field(default_factory=list)
    time_point: str | None = None

    @property
    def name(self) -> str:
        return f"group {self.index}" + (f" ({self.tracking_id})" if self.tracking_id else "")


@dataclass
class _Report:
    file: str
    path: Path
    patient_id: str
    study_date: dt.date
    time_point: str | None
    groups: list[_Group]


def _require_pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise SrImportError(
            "reading DICOM SR needs the optional `dicom` extra (pydicom and highdicom); pydicom is not installed",
            hint=EXTRA_HINT,
        ) from None
    return pydicom


def _code(sequence: Any) -> Code | None:
    if not sequence:
        return None
    item = sequence[0]
    return Code(
        str(item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""),
        str(item.get("CodingSchemeDesignator") or ""),
        str(item.get("CodeMeaning") or ""),
    )


def _concept(item: Any) -> Code | None:
    return _code(item.get("ConceptNameCodeSequence"))


def _is(code: Code | None, *keys: tuple[str, str]) -> bool:
    return code is not None and code.key() in keys


def _children(item: Any) -> Sequence[Any]:
    return item.get("ContentSequence") or []


def _numeric(item: Any, concept: Code) -> _Num:
    measured = item.get("MeasuredValueSequence")
    if not measured:
        return _Num(concept, None, None)
    value: Decimal | None
    try:
        value = Decimal(str(measured[0].get("NumericValue", "")).strip())
    except InvalidOperation:
        value = None
    if value is not None and not value.is_finite():
        value = None
    return _Num(concept, value, _code(measured[0].get("MeasurementUnitsCodeSequence")))


def _read_group(container: Any, index: int) -> _Group:
    group = _Group(index)
    for item in _children(container):
        concept = _concept(item)
        kind = item.get("ValueType")
        if concept is None:
            continue
        if kind == "TEXT":
            _read_text(group, concept, str(item.get("TextValue") or "").strip())
        elif kind == "UIDREF" and _is(concept, TRACKING_UID):
            group.tracking_uid = str(item.get("UID") or "") or None
        elif kind == "CODE":
            value = _code(item.get("ConceptCodeSequence"))
            if value is not None:
                _read_code(group, concept, value, item)
        elif kind == "NUM" and concept.key() not in TIME_POINT_CONTEXT:
            group.numbers.append(_numeric(item, concept))
    return group


def _read_text(group: _Group, concept: Code, text: str) -> None:
    if _is(concept, TRACKING_ID):
        group.tracking_id = text or None
    elif _is(concept, TIME_POINT):
        group.time_point = text or None
    elif _is(concept, COMMENT) and text and group.label is None:
        group.label = text  # OHIF 3 writes the reader's label as a comment
    elif concept.key() not in TIME_POINT_CONTEXT and text:
        group.evaluations.append(f"{concept.meaning}: {text}")


def _read_code(group: _Group, concept: Code, value: Code, item: Any) -> None:
    if value.value in FREE_TEXT_CODES:
        group.label = value.meaning.strip() or group.label
    elif _is(value, TARGET_AT_BASELINE, NON_TARGET_AT_BASELINE, NON_LESION_AT_BASELINE):
        group.baseline_category = value
    elif _is(concept, FINDING):
        group.finding = value
    elif _is(concept, FINDING_SITE):
        modifiers = [m for m in (_code(c.get("ConceptCodeSequence")) for c in _children(item)) if m is not None]
        group.sites.append((value, modifiers))
    elif _is(concept, FINDING_CATEGORY):
        group.category = value
    elif concept.key() not in TIME_POINT_CONTEXT:
        group.evaluations.append(f"{concept.meaning}: {value.meaning}")


def _measurement_groups(root: Any) -> Iterator[Any]:
    for item in _children(root):
        if item.get("ValueType") == "CONTAINER" and _concept(item) and _concept(item).key() in MEASUREMENT_CONTAINERS:  # type: ignore[union-attr]
            for group in _children(item):
                if group.get("ValueType") == "CONTAINER" and _is(_concept(group), MEASUREMENT_GROUP):
                    yield group


def _template(ds: Any) -> str | None:
    templates = ds.get("ContentTemplateSequence")
    return str(templates[0].get("TemplateIdentifier") or "").strip() or None if templates else None


def _check_measurement_report(ds: Any, file: str) -> None:
    """Refuse DICOM that is not an SR, and SRs that are not TID 1500, with a message naming what the file is."""
    sop = ds.get("SOPClassUID")
    what = getattr(sop, "name", None) or str(sop or "unknown SOP class")
    if ds.get("ValueType") != "CONTAINER" or "ContentSequence" not in ds:
        if str(sop or "").startswith(SR_CLASS_ROOT):
            raise SrImportError(f"is a DICOM {what} object without report content (the file looks damaged)", file=file)
        raise NotAMeasurementReport(
            f"is a DICOM {what} object, not a Structured Report",
            file=file,
            hint="give the measurement report (SR) files a viewer saved",
        )
    template, title = _template(ds), _concept(ds)
    if template == "1500" or (template is None and _is(title, MEASUREMENT_REPORT)):
        return
    described = f"template {template}" if template else "no template"
    raise NotAMeasurementReport(
        f'is a DICOM SR ({what}, {described}, title "{title.meaning if title else "?"}") but not a '
        "Measurement Report (TID 1500); only TID 1500 reports hold lesion measurements this tool can read",
        file=file,
    )


def _study_date(ds: Any, file: str) -> dt.date:
    raw = str(ds.get("StudyDate") or "").strip()
    try:
        return dt.datetime.strptime(raw, "%Y%m%d").date()
    except ValueError:
        raise SrImportError(
            f"study date (0008,0020) is {raw!r}, not a date YYYYMMDD" if raw else "has no study date (0008,0020)",
            file=file,
            hint="each report is a timepoint dated by its study; export the report with its study information",
        ) from None


def _open(path: Path, file: str) -> Any:
    pydicom = _require_pydicom()
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        raise NotAMeasurementReport("not a DICOM file (no DICM marker)", file=file) from None
    except OSError as exc:
        if exc.errno is not None:  # the file system's error, not pydicom's
            raise SrImportError(f"cannot read: {exc.strerror or exc}", file=file) from None
        raise SrImportError(f"cannot be read as DICOM ({exc})", file=file, hint=DAMAGED_HINT) from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds of error on a damaged file
        raise SrImportError(
            f"cannot be read as DICOM ({type(exc).__name__}: {exc})", file=file, hint=DAMAGED_HINT
        ) from None


def _check_complete(ds: Any, file: str) -> None:
    """Refuse a file cut short. pydicom reads a truncated element of known length without complaint, and a
    report cut inside its content tree would silently lose the lesions measured last."""
    for tag in ds.keys():
        raw = ds.get_item(tag)
        length, value = getattr(raw, "length", None), getattr(raw, "value", None)
        if isinstance(length, int) and length != 0xFFFFFFFF and isinstance(value, bytes) and len(value) < length:
            name = getattr(ds[tag], "name", str(tag))
            raise SrImportError(
                f"the file is cut short: {name} {tag} should have {length:,} bytes, the file holds {len(value):,}",
                file=file,
                hint=DAMAGED_HINT,
            )


def _read_report(path: Path, file: str) -> _Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every odd value; what matters is checked below
        ds = _open(path, file)
        try:
            _check_complete(ds, file)
            _check_measurement_report(ds, file)
            groups = [_read_group(g, i) for i, g in enumerate(_measurement_groups(ds), start=1)]
            root_time_point = next(
                (
                    str(item.get("TextValue") or "").strip() or None
                    for item in _children(ds)
                    if item.get("ValueType") == "TEXT" and _is(_concept(item), TIME_POINT)
                ),
                None,
            )
            study_date = _study_date(ds, file)
            patient = str(ds.get("PatientID") or "").strip()
        except CrlmError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom parses nested items only when they are used
            raise SrImportError(
                f"the report's content cannot be read, the file looks damaged ({type(exc).__name__}: {exc})",
                file=file,
            ) from None
    time_point = _report_time_point(root_time_point, groups, file)
    return _Report(file, path, patient, study_date, time_point, groups)


def _report_time_point(root: str | None, groups: list[_Group], file: str) -> str | None:
    named = {g.time_point for g in groups if g.time_point} | ({root} if root else set())
    if len(named) > 1:
        raise SrImportError(
            f"the report names several time points ({', '.join(sorted(named))}); one report per time point "
            "can be imported",
            file=file,
        )
    return next(iter(named), None)


# ---------------------------------------------------------------------------------------------------------------
# Finding the files


def _skip_reason(path: Path) -> str | None:
    """Why a file met in a folder is not even opened as a report (None: read it). Reads its first bytes and, for
    DICOM, a few header elements, so a PACS export full of images is sorted quickly."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if len(head) < 132 or head[128:132] != b"DICM":
        return "not DICOM"
    pydicom = _require_pydicom()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "ValueType"])
    except Exception:  # noqa: BLE001 - a damaged file in a folder is listed, not fatal
        return "damaged DICOM"
    if str(ds.get("Modality") or "") != "SR" and "ValueType" not in ds:
        return "DICOM images or other objects, not structured reports"
    return None


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        found.extend(Path(root) / name for name in sorted(files))
    return found


@dataclass(frozen=True)
class _Candidate:
    path: Path
    file: str  # as shown in messages
    folder: str | None  # the folder it was found in (None: named by the user)


def _candidates(paths: Sequence[str | Path]) -> tuple[list[_Candidate], dict[str, dict[str, list[str]]]]:
    """Named files as given, and the possible SR files in named folders (recursively), with the skipped files of
    each folder by reason."""
    if not paths:
        raise SrImportError("no input: give SR files or folders")
    chosen: list[_Candidate] = []
    skipped: dict[str, dict[str, list[str]]] = {}
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise SrImportError("no such file or folder", file=str(given))
        if not path.is_dir():
            chosen.append(_Candidate(path, str(given), None))
            continue
        files = _walk(path)
        if not files:
            raise SrImportError("empty folder: no files to read", file=str(given))
        reasons = skipped.setdefault(str(given), {})
        for file in files:
            reason = _skip_reason(file)
            if reason is None:
                chosen.append(_Candidate(file, str(file), str(given)))
            else:
                reasons.setdefault(reason, []).append(str(file.relative_to(path)))
    return chosen, skipped


def _read_reports(paths: Sequence[str | Path]) -> tuple[list[_Report], list[LeftOut]]:
    """Every TID 1500 report among the inputs. A named file must be one; a folder must hold at least one (its
    other files are skipped and listed)."""
    chosen, skipped = _candidates(paths)
    reports: list[_Report] = []
    for candidate in chosen:
        try:
            reports.append(_read_report(candidate.path, candidate.file))
        except NotAMeasurementReport as exc:
            if candidate.folder is None:
                raise
            skipped[candidate.folder].setdefault(exc.message, []).append(
                str(candidate.path.relative_to(candidate.folder))
            )
    left_out: list[LeftOut] = []
    read = {r.path for r in reports}
    for folder, reasons in skipped.items():
        if not any(c.folder == folder and c.path in read for c in chosen):
            counts = "; ".join(f"{len(names)} {reason}" for reason, names in reasons.items())
            raise SrImportError(f"no DICOM SR measurement report (TID 1500) in this folder ({counts})", file=folder)
        for reason, names in reasons.items():
            shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
            left_out.append(LeftOut(folder, None, f"{len(names)} file(s) skipped", f"{reason}: {shown}"))
    return reports, left_out


# ---------------------------------------------------------------------------------------------------------------
# Interpreting measurement groups


@dataclass
class _Reading:
    """One lesion at one timepoint, as a measurement group gives it."""

    lesion_id: str
    file: str
    group: str
    order: int  # the group's place among all groups read, to list what is left out in reading order
    tracking_uid: str | None
    category: str | None  # target | non_target from the report's baseline category
    assumed: bool  # nothing in the group says it is a lesion
    organ: str | None = None
    location: str | None = None
    is_node: bool = False
    longest: Decimal | None = None
    short: Decimal | None = None
    unused: list[LeftOut] = field(default_factory=list)  # the group's other numbers and evaluations


def _words(code: Code | None) -> str:
    return code.meaning.lower() if code else ""


def _lesion_verdict(group: _Group) -> tuple[bool | None, str]:
    """(True, why) a lesion; (False, why) not one; (None, why) the group does not say."""
    if _is(group.baseline_category, NON_LESION_AT_BASELINE):
        return False, "the report calls it Non-Lesion at Baseline"
    if group.baseline_category is not None:
        return True, group.baseline_category.meaning
    for what, code in (("finding category", group.category), ("finding", group.finding)):
        if code is None:
            continue
        if code.key() in LESION_CODES or any(w in _words(code) for w in LESION_WORDS):
            return True, f"{what} {code.meaning}"
        if code.key() in ANATOMY_CODES or what == "finding":
            return False, f"{what} {code.meaning}"
    if any(_organ_of(site)[0] == "lymph_node" for site, _ in group.sites):
        return True, "finding site is a lymph node"
    return None, "no finding, finding category or lesion finding site"


def _organ_of(site: Code) -> tuple[str, str | None]:
    """Organ word of a finding site, and the site's own words when they say more (kept as `location`)."""
    words = site.meaning.lower()
    organ = next((o for w, o in ORGAN_WORDS if w in words), None)
    if organ is None:
        organ = re.sub(r"[^a-z0-9]+", "_", words).strip("_") or "unknown"
        return organ, None
    return organ, site.meaning if words.replace("_", " ") != organ.replace("_", " ") else None


def _lesion_id(group: _Group, id_from: IdFrom, file: str) -> str:
    if id_from == "uid":
        value, hint = group.tracking_uid, "the group has no Tracking Unique Identifier (112040)"
    elif id_from == "label":
        value, hint = group.label, "the group has no free-text label"
    else:
        tool_name = group.tracking_id is not None and TOOL_IDENTIFIER.match(group.tracking_id) is not None
        value = group.label if tool_name or not group.tracking_id else group.tracking_id
        hint = (
            f"its tracking identifier {group.tracking_id!r} names a viewer tool, not a lesion, and it has no label"
            if tool_name
            else "the group has no Tracking Identifier (112039) and no label"
        )
    if not value:
        raise SrImportError(
            f"cannot name this lesion: {hint}",
            file=file,
            key=group.name,
            hint="label each lesion in the viewer (e.g. L1), or choose the key with --id-from uid|identifier|label",
        )
    return " ".join(value.split())


def _to_mm(number: _Num, file: str, group: _Group) -> Decimal:
    unit = number.unit.value if number.unit else ""
    factor = MM_PER_UNIT.get(unit)
    if factor is None:
        raise SrImportError(
            f"{number.shown()}: unit {unit or '(none)'!r} is not a length unit this tool converts (mm, cm, m, um)",
            file=file,
            key=group.name,
            hint="a length in pixels has no physical size; measure on calibrated images",
        )
    value = number.value * factor  # type: ignore[operator]
    if value < 0 or value > Decimal(str(MAX_DIAMETER_MM)):
        raise SrImportError(
            f"{number.shown()} is {_number(value)} mm, outside 0 to {MAX_DIAMETER_MM:g} mm", file=file, key=group.name
        )
    return value


def _role(number: _Num) -> str | None:
    key, words = number.concept.key(), number.concept.meaning.lower()
    if key in LONGEST or words in LONGEST_WORDS:
        return "longest"
    if key in SHORTEST or words in SHORTEST_WORDS:
        return "short"
    return None


def _has_length(group: _Group) -> bool:
    return any(_role(n) is not None and n.value is not None for n in group.numbers)


def _read_sizes(group: _Group, reading: _Reading) -> None:
    """Diameters into the reading (mm); every other number goes to the reading's unused items."""
    for number in group.numbers:
        role = _role(number)
        if role is None or number.value is None:
            why = "no value" if role else "only lesion diameters (long axis, short axis) are imported"
            reading.unused.append(LeftOut(reading.file, group.name, number.shown(), why))
            continue
        value = _to_mm(number, reading.file, group)
        previous = getattr(reading, role)
        if previous is not None and previous != value:
            raise SrImportError(
                f"two different {'long' if role == 'longest' else 'short'} axes in one group "
                f"({_number(previous)} mm and {_number(value)} mm)",
                file=reading.file,
                key=group.name,
                hint="keep one measurement per axis in the viewer",
            )
        setattr(reading, role, value)


def _interpret(report: _Report, group: _Group, id_from: IdFrom, order: int) -> _Reading | LeftOut:
    """The lesion reading a measurement group gives, or why the whole group is left out."""
    verdict, why = _lesion_verdict(group)
    shown = "; ".join(n.shown() for n in group.numbers) or "no measurement"
    if verdict is False:
        return LeftOut(report.file, group.name, shown, f"not a lesion: {why}")
    if verdict is None and not _has_length(group):
        return LeftOut(report.file, group.name, shown, f"{NO_LENGTH}, and nothing says it is a lesion ({why})")
    category = group.baseline_category
    reading = _Reading(
        _lesion_id(group, id_from, report.file),
        report.file,
        group.name,
        order,
        group.tracking_uid,
        BASELINE_CATEGORIES.get(category.key()) if category else None,
        verdict is None,
    )
    if group.sites:
        site, modifiers = group.sites[0]
        reading.organ, location = _organ_of(site)
        extra = [m.meaning for m in modifiers] + [s.meaning for s, _ in group.sites[1:]]
        reading.location = ", ".join([location or site.meaning] + extra) if (location or extra) else None
        reading.is_node = reading.organ == "lymph_node"
    _read_sizes(group, reading)
    reading.unused += [
        LeftOut(report.file, group.name, e, "qualitative evaluation not imported") for e in group.evaluations
    ]
    return reading


# ---------------------------------------------------------------------------------------------------------------
# Assembling the case


@dataclass
class _Lesion:
    """One lesion at one timepoint after merging the groups that name it."""

    readings: list[_Reading]
    kind: str | None = None

    @property
    def first(self) -> _Reading:
        return self.readings[0]

    @property
    def measured(self) -> bool:
        return any(r.longest is not None or r.short is not None for r in self.readings)

    def value(self, name: str) -> Any:
        return next((getattr(r, name) for r in self.readings if getattr(r, name) is not None), None)


_Ledger = list[tuple[int, LeftOut]]  # what is left out, with the place of its group in reading order


@dataclass
class _Timepoint:
    id: str
    date: dt.date
    reports: list[_Report]
    lesions: dict[str, _Lesion] = field(default_factory=dict)


def _check_one_patient(reports: list[_Report]) -> str:
    first = reports[0]
    for report in reports[1:]:
        if report.patient_id != first.patient_id:
            raise SrImportError(
                f"is patient {report.patient_id or '(no Patient ID)'!r}, but {first.file} is patient "
                f"{first.patient_id or '(no Patient ID)'!r}; import one patient's reports at a time",
                file=report.file,
            )
    return first.patient_id


def _timepoints(reports: list[_Report]) -> list[_Timepoint]:
    """One timepoint per study date (reports of one day are one read), earliest first.

    Named by the reports' TID 1502 time point when they have one; otherwise the earliest is `baseline` and the
    others `FU1`, `FU2`, ... in date order."""
    by_date: dict[dt.date, list[_Report]] = {}
    for report in reports:
        by_date.setdefault(report.study_date, []).append(report)
    named: dict[str, dt.date] = {}
    points: list[_Timepoint] = []
    for date, day_reports in sorted(by_date.items()):
        names = {r.time_point for r in day_reports if r.time_point}
        if len(names) > 1:
            raise SrImportError(
                f"reports of study date {date} name different time points ({', '.join(sorted(names))})",
                file=day_reports[0].file,
            )
        name = next(iter(names), None)
        if name is not None and name in named:
            raise SrImportError(
                f"time point {name!r} is named on two study dates ({named[name]} and {date})",
                file=next(r.file for r in day_reports if r.time_point),
            )
        if name is not None:
            named[name] = date
        points.append(_Timepoint(name or "", date, day_reports))
    for rank, point in enumerate(points):
        if point.id and rank > 0 and point.id.strip().lower() in ("baseline", "screening"):
            raise SrImportError(
                f"time point {point.id!r} is on {point.date}, after the earliest report ({points[0].date})",
                file=point.reports[0].file,
                hint="the earliest report is the baseline; check the study dates",
            )
        if not point.id:
            point.id = "baseline" if rank == 0 else f"FU{rank}"
            if point.id in named:
                point.id = f"{point.id}-{point.date.isoformat()}"
    return points


def _merge(point: _Timepoint, reading: _Reading) -> None:
    """Several groups may describe one lesion (a planar and a volumetric group): their values must agree."""
    lesion = point.lesions.setdefault(reading.lesion_id, _Lesion([]))
    for name in ("longest", "short", "organ", "category"):
        mine, theirs = getattr(reading, name), lesion.value(name)
        if mine is not None and theirs is not None and mine != theirs:
            other = next(r for r in lesion.readings if getattr(r, name) is not None)
            shown = {"longest": "long axis", "short": "short axis", "category": "baseline category"}.get(name, name)
            raise SrImportError(
                f"lesion {reading.lesion_id!r} at {point.id} has two different values of {shown}: "
                f"{_shown(mine)} here and {_shown(theirs)} in {other.file} {other.group}",
                file=reading.file,
                key=reading.group,
                hint="keep one report per study, or give the lesions different ids",
            )
    lesion.readings.append(reading)


def _shown(value: Any) -> str:
    return f"{_number(value)} mm" if isinstance(value, Decimal) else str(value)


def _split(values: Iterable[str] | None) -> list[str]:
    return [v.strip() for item in values or () for v in item.split(",") if v.strip()]


def _assign_kinds(
    points: list[_Timepoint], targets: list[str], non_targets: list[str], left_out: _Ledger
) -> list[ImportWarning]:
    """Target / non-target at baseline (the report's baseline category, else the options, else all targets);
    lesions first seen at follow-up are new. Groups with no length stay only for non-target lesions."""
    categories = _report_categories(points)
    baseline = points[0]
    _check_options(baseline, categories, targets, non_targets)
    assumed: list[str] = []
    for lesion_id, lesion in baseline.lesions.items():
        said = categories.get(lesion_id)
        if said is not None:
            lesion.kind = said[0]
        elif lesion_id in non_targets or (targets and lesion_id not in targets):
            lesion.kind = "non_target"
        else:
            lesion.kind = "target"
            assumed.append(lesion_id)
    unmeasured = _drop_unmeasured_at_baseline(baseline, left_out)
    _follow_ups(points, categories, unmeasured, left_out)
    assumed = [i for i in assumed if i in baseline.lesions and not targets]
    if not assumed:
        return []
    return [
        ImportWarning(
            "import_targets_assumed",
            "the reports do not say which lesions are targets (no Target/Non-Target Lesion at Baseline "
            f"evaluation); every lesion measured at baseline is taken as a target: {', '.join(assumed)} "
            "(choose with --targets / --non-targets)",
        )
    ]


def _check_options(
    baseline: _Timepoint, categories: dict[str, tuple[str, str]], targets: list[str], non_targets: list[str]
) -> None:
    both = sorted(set(targets) & set(non_targets))
    if both:
        raise SrImportError(f"named both a target and a non-target: {', '.join(both)}", key="--targets")
    for option, chosen, wanted in (("--targets", targets, "target"), ("--non-targets", non_targets, "non_target")):
        unknown = [i for i in chosen if i not in baseline.lesions]
        if unknown:
            raise SrImportError(
                f"{', '.join(unknown)}: not a lesion of the baseline report ({baseline.date}); lesions there: "
                + (", ".join(baseline.lesions) or "none"),
                key=option,
            )
        for lesion_id in chosen:
            said = categories.get(lesion_id)
            if said is not None and said[0] != wanted:
                raise SrImportError(
                    f"{lesion_id} is named a {_word(wanted)} here but the report calls it {_word(said[0])} ({said[1]})",
                    key=option,
                )


def _word(kind: str) -> str:
    return kind.replace("_", "-")


def _report_categories(points: list[_Timepoint]) -> dict[str, tuple[str, str]]:
    """Lesion id -> (target | non_target, where the report says so); the reports must agree."""
    found: dict[str, tuple[str, str]] = {}
    for point in points:
        for lesion_id, lesion in point.lesions.items():
            for reading in lesion.readings:
                if reading.category is None:
                    continue
                if lesion_id in found and found[lesion_id][0] != reading.category:
                    raise SrImportError(
                        f"lesion {lesion_id!r} is called {_word(reading.category)} here but "
                        f"{_word(found[lesion_id][0])} in {found[lesion_id][1]}",
                        file=reading.file,
                        key=reading.group,
                    )
                found.setdefault(lesion_id, (reading.category, f"{reading.file} {reading.group}"))
    return found


def _leave_out(lesion_id: str, lesion: _Lesion, reason: str, left_out: _Ledger) -> None:
    for r in lesion.readings:
        unused = "; ".join(u.what for u in r.unused)
        left_out.append(
            (r.order, LeftOut(r.file, r.group, f"lesion {lesion_id}" + (f" ({unused})" if unused else ""), reason))
        )


def _drop_unmeasured_at_baseline(baseline: _Timepoint, left_out: _Ledger) -> set[str]:
    """A baseline lesion without any length stays only as a non-target (present, unmeasured, as RECIST allows)."""
    dropped = {i for i, lesion in baseline.lesions.items() if not lesion.measured and lesion.kind != "non_target"}
    for lesion_id in sorted(dropped):
        _leave_out(lesion_id, baseline.lesions.pop(lesion_id), NO_LENGTH, left_out)
    return dropped


def _follow_ups(
    points: list[_Timepoint], categories: dict[str, tuple[str, str]], unmeasured: set[str], left_out: _Ledger
) -> None:
    """Follow-up lesions: known ones keep their baseline kind, others are new. A lesion whose baseline group had
    no length is left out at every timepoint: scoring it as new would call progression on a lesion that was there."""
    baseline = points[0]
    for point in points[1:]:
        for lesion_id in list(point.lesions):
            lesion = point.lesions[lesion_id]
            known = baseline.lesions.get(lesion_id)
            if lesion_id in unmeasured:
                reason = f"its baseline group has {NO_LENGTH}, so the lesion is not in the case"
                _leave_out(lesion_id, point.lesions.pop(lesion_id), reason, left_out)
            elif known is not None:
                if not lesion.measured and known.kind != "non_target":
                    _leave_out(lesion_id, point.lesions.pop(lesion_id), NO_LENGTH, left_out)
            elif lesion_id in categories:
                raise SrImportError(
                    f"lesion {lesion_id!r} is called a {_word(categories[lesion_id][0])} lesion at baseline, but "
                    f"the baseline report ({baseline.date}) does not have it",
                    file=lesion.first.file,
                    key=lesion.first.group,
                    hint="is the baseline report among the inputs? are the lesion ids the same in every report?",
                )
            elif not lesion.measured:
                reason = f"{NO_LENGTH}; not at baseline: if it is a new lesion, add it with kind: new"
                _leave_out(lesion_id, point.lesions.pop(lesion_id), reason, left_out)
            else:
                lesion.kind = "new"


def _lesion_fields(point: _Timepoint, lesion_id: str, lesion: _Lesion, baseline: _Timepoint) -> dict[str, Any]:
    """The lesion's case-file fields: organ, node flag and location at baseline and for new lesions (they carry
    over), at follow-up only when the report says another organ (the engine then warns)."""
    first_seen = point is baseline or lesion.kind == "new"
    out: dict[str, Any] = {"id": lesion_id}
    organ = lesion.value("organ")
    base_organ = baseline.lesions[lesion_id].value("organ") if lesion_id in baseline.lesions else None
    if organ is not None and (first_seen or organ != base_organ):
        out["organ"] = organ
        if first_seen and lesion.value("location"):
            out["location"] = lesion.value("location")
    if first_seen and lesion.kind:
        out["kind"] = lesion.kind
    if organ is not None and any(r.is_node for r in lesion.readings) and (first_seen or organ != base_organ):
        out["is_lymph_node"] = True
    for name, key in (("longest", "longest_diameter_mm"), ("short", "short_axis_mm")):
        if lesion.value(name) is not None:
            out[key] = lesion.value(name)
    return out


def _node_warnings(points: list[_Timepoint]) -> list[ImportWarning]:
    nodes = sorted(
        {
            f"{lesion_id} ({point.id})"
            for point in points
            for lesion_id, lesion in point.lesions.items()
            if any(r.is_node for r in lesion.readings) and lesion.value("short") is None and lesion.value("longest")
        }
    )
    if not nodes:
        return []
    return [
        ImportWarning(
            "import_node_without_short_axis",
            f"lymph nodes measured with one line, written as longest_diameter_mm: {', '.join(nodes)}; RECIST "
            "measures nodes in short axis: if the line is the short axis, move it to short_axis_mm",
        )
    ]


def _assumed_lesions_warning(points: list[_Timepoint]) -> list[ImportWarning]:
    groups = [
        f"{r.file} {r.group}" for p in points for lesion in p.lesions.values() for r in lesion.readings if r.assumed
    ]
    if not groups:
        return []
    shown = ", ".join(groups[:10]) + (f", ... ({len(groups)} in all)" if len(groups) > 10 else "")
    return [
        ImportWarning(
            "import_lesions_assumed",
            "measurement groups that do not say what they measured (no finding, finding category or lesion "
            f"finding site, as viewers' plain length tools write them) are taken as lesions: {shown}",
        )
    ]


# ---------------------------------------------------------------------------------------------------------------
# Writing the YAML text


_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .()/+-]*$")


def _scalar(value: Any) -> str:
    """A YAML scalar that reads back as exactly `value` (text that YAML would read as a number, date, yes/no or
    null is quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    if _PLAIN.match(text) and not text.endswith(" ") and yaml.safe_load(text) == text:
        return text
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def _number(value: Decimal) -> str:
    """Exact decimal text (41, 10.5): unit conversion in decimal keeps 4.1 cm at 41 mm, not 41.000000000000007."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


# Characters YAML cannot hold (C0 and C1 controls, DEL, surrogates, non-characters) or reads as line breaks (NEL,
# LS, PS): a damaged or hostile label must neither break the file nor end a comment early.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def _comment(text: str) -> str:
    return _UNSAFE.sub("?", text)


def _flow(fields: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in fields.items()) + "}"


def _source(lesion: _Lesion) -> str:
    parts = []
    for reading in lesion.readings:
        uid = f", tracking UID {reading.tracking_uid}" if reading.tracking_uid else ""
        parts.append(f"{reading.file} {reading.group}{uid}")
    return _comment("from " + "; ".join(parts))


def _render(
    case_id: str,
    points: list[_Timepoint],
    reports: list[_Report],
    id_from: str,
    left_out: list[LeftOut],
    warnings: list[ImportWarning],
) -> tuple[str, dict[str, Any]]:
    lines = [
        f"# Imported by crlm-response import-sr from {len(reports)} DICOM SR file(s); review before assessing.",
        f"# Lesion ids from {ID_SOURCES[id_from]}; one timepoint per study date, the earliest is the baseline.",
    ]
    lines.extend(_comment(f"# warning {w.code}: {w.message}") for w in warnings)
    if left_out:
        lines.append("# Not imported (also listed on stderr when run from the command line):")
        lines.extend(_comment(f"#   {item}") for item in left_out)
    lines += [f"case_id: {_scalar(case_id)}", "timepoints:"]
    data: dict[str, Any] = {"case_id": case_id, "timepoints": []}
    for point in points:
        lines += [f"  - id: {_scalar(point.id)}", f"    date: {point.date.isoformat()}"]
        rows = [_lesion_fields(point, i, lesion, points[0]) for i, lesion in point.lesions.items()]
        data["timepoints"].append(
            {"id": point.id, "date": point.date, "lesions": [{k: _plain(v) for k, v in r.items()} for r in rows]}
        )
        if not rows:
            lines.append("    lesions: []")
            continue
        lines.append("    lesions:")
        for row, lesion in zip(rows, point.lesions.values(), strict=True):
            lines.append(f"      - {_flow(row)}  # {_source(lesion)}")
    return "\n".join(lines) + "\n", data


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


# ---------------------------------------------------------------------------------------------------------------


def import_sr(
    paths: Sequence[str | Path],
    *,
    id_from: IdFrom = "identifier",
    targets: Iterable[str] | None = None,
    non_targets: Iterable[str] | None = None,
    case_id: str | None = None,
) -> ImportResult:
    """Read one patient's TID 1500 measurement reports (files or folders) into a case.

    Sizes in mm (UCUM mm, cm, m and um converted). Raises `SrImportError` naming the file (and the measurement
    group) for anything that cannot be imported faithfully: a file that is not a TID 1500 SR, reports of two
    patients, a lesion without a usable id, two different values for one lesion and timepoint, a length in pixels.
    """
    if id_from not in ID_SOURCES:
        raise SrImportError(f"--id-from {id_from!r}: choose uid, identifier or label", key="--id-from")
    _require_pydicom()
    reports, skipped = _read_reports(paths)
    patient = _check_one_patient(reports)
    case_id = (case_id or "").strip() or patient
    if not case_id:
        raise SrImportError("the reports have no Patient ID", file=reports[0].file, hint="give --case-id")
    points = _timepoints(reports)
    ledger = _read_lesions(points, id_from)
    warnings = _assign_kinds(points, _split(targets), _split(non_targets), ledger)
    ledger += [
        (r.order, item) for p in points for lesion in p.lesions.values() for r in lesion.readings for item in r.unused
    ]
    left_out = skipped + [item for _, item in sorted(ledger, key=lambda pair: pair[0])]
    if not any(point.lesions for point in points):
        raise SrImportError(
            f"no lesion measurement in {len(reports)} report(s)"
            + (f"; left out: {'; '.join(str(item) for item in left_out[:5])}" if left_out else ""),
            file=reports[0].file if len(reports) == 1 else None,
        )
    warnings += _assumed_lesions_warning(points) + _node_warnings(points)
    text, data = _render(case_id, points, reports, id_from, left_out, warnings)
    _check_loads(text)
    return ImportResult(data, text, [r.path for r in reports], warnings, left_out)


def _read_lesions(points: list[_Timepoint], id_from: IdFrom) -> _Ledger:
    """Every measurement group of every report into its timepoint's lesions; returns the groups left out whole."""
    ledger: _Ledger = []
    order = 0
    for point in points:
        for report in point.reports:
            for group in report.groups:
                order += 1
                found = _interpret(report, group, id_from, order)
                if isinstance(found, LeftOut):
                    ledger.append((order, found))
                else:
                    _merge(point, found)
    return ledger


def _check_loads(text: str) -> None:
    """The written text must be a valid case; if it is not, that is this module's fault, not the user's."""
    from .readers import parse_case

    parse_case(text, "<imported case>")

"""The case model: one patient's treatment and lesion tables at baseline and each follow-up.

Field names follow the shared worked cases (`criteria/examples.yaml`); they are also the default column
names of the long trial format, so a case file and a CSV row describe a lesion with the same words.
Units: millimetres (mm), Hounsfield units (HU), millilitres (mL), per cent (%), SUL (lean-body-mass SUV).

Only per-field facts (types, ranges, allowed words) live here. Facts that need several rows (duplicate
ids, a target first seen at follow-up, day order) are checked on the lesion table by `validate.py`, the
same code for a single case and for a million CSV rows.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# Sizes above this are not anatomically possible for a liver metastasis or node; a value this large is a
# typing or unit mistake (e.g. micrometres), so it is refused rather than scored.
MAX_DIAMETER_MM = 1000.0
MAX_SPLEEN_VOLUME_ML = 5000.0
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

LesionKind = Literal["target", "non_target", "new", "ablated"]
LesionStatus = Literal["present", "disappeared", "too_small", "not_evaluated", "unequivocal_progression", "coalesced"]
Modality = Literal["CT", "MRI", "PET-CT"]
CtPhase = Literal["unenhanced", "arterial", "portal_venous", "delayed"]
MriContrast = Literal["gadoxetic_acid", "extracellular", "none"]
IntratumoralNodule = Literal["none", "new", "enlarging"]
Setting = Literal["systemic", "intra_arterial", "ablation"]
PetAtSite = Literal["negative", "positive", "not_done"]
NewLesionRole = Literal["target", "non_target"]


def _to_text(value: Any) -> Any:
    """Ids typed as numbers in YAML or CSV (`id: 1`) are still ids. A NUL character is refused: it ends the
    text early in C libraries and many viewers, so `P1\\0x` would print and join as `P1`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{value!r} contains a NUL character (\\0), which an id cannot hold; delete it")
    return value


def _iso_date(value: Any) -> Any:
    """A date is written YYYY-MM-DD. Pydantic alone would read `date: 0` or `20140201` as seconds since 1970 and
    `2014-02-01T23:00-05:00` as a date in another time zone; none of them is what the reader wrote down."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        return value.strip()
    raise ValueError(f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2014-02-01")


def _normalise_word(value: Any) -> Any:
    """`Lymph node`, `lymph-node` and `lymph_node` are one organ; `Non-target` is `non_target`."""
    if isinstance(value, str):
        return value.strip().lower().replace("-", "_").replace(" ", "_")
    return value


def _normalise_modality(value: Any) -> Any:
    if isinstance(value, str):
        upper = value.strip().upper().replace("_", "-").replace(" ", "-")
        return {"PET": "PET-CT", "PETCT": "PET-CT", "PET/CT": "PET-CT", "MR": "MRI"}.get(upper, upper)
    return value


def _normalise_agents(value: Any) -> Any:
    if isinstance(value, str):
        value = [part for part in value.replace(",", ";").split(";")]
    if isinstance(value, list):
        return [a.strip().lower() for a in value if isinstance(a, str) and a.strip()] + [
            a for a in value if not isinstance(a, str)
        ]
    return value


def _not_boolean(value: Any) -> Any:
    """YAML reads `no`/`yes`/`off` as booleans; a size or attenuation must be a number, never a yes/no."""
    if isinstance(value, bool):
        raise ValueError(
            "a yes/no value (such as `no` or `false`) is not a number; give the measurement, or a "
            "status such as disappeared or not_evaluated"
        )
    return value


Text = Annotated[str, BeforeValidator(_to_text)]
Word = Annotated[str, BeforeValidator(_normalise_word)]
Millimetres = Annotated[float, Field(ge=0, le=MAX_DIAMETER_MM, allow_inf_nan=False), BeforeValidator(_not_boolean)]
Hounsfield = Annotated[float, Field(ge=-1100, le=4000, allow_inf_nan=False), BeforeValidator(_not_boolean)]
Number = BeforeValidator(_not_boolean)
SliceThickness = Annotated[float, Field(gt=0, le=50, allow_inf_nan=False), Number]


@dataclass(frozen=True)
class Meta:
    """What a field means beyond its type and bounds, declared with the field itself (the one field table): how it
    reads (`label`), its unit, and the SDTM TR test code that carries it. Tables, case files, reports and the
    terminal all read it from here."""

    label: str
    unit: str | None = None
    sdtm: str | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True, defer_build=True)


class Lesion(_Strict):
    """One lesion as read at one timepoint. Sizes in mm, attenuation in HU (portal-venous CT)."""

    id: Text = Field(description="lesion id; the same id at several timepoints is the same lesion")
    organ: Annotated[Word | None, Meta("organ")] = Field(None, description="liver, lung, lymph_node, peritoneum, ...")
    location: Annotated[str | None, Meta("location")] = Field(None, description="free text, e.g. segment VIII")
    kind: Annotated[LesionKind | None, BeforeValidator(_normalise_word), Meta("kind")] = Field(
        None, description="target | non_target | new | ablated; at follow-up defaults to the baseline kind"
    )
    is_lymph_node: Annotated[bool | None, Meta("lymph node")] = Field(
        None, alias="lymph_node", description="nodes are measured in short axis (RECIST 1.1 §3.1)"
    )
    longest_diameter_mm: Annotated[Millimetres | None, Meta("longest diameter", "mm", sdtm="LDIAM")] = None
    short_axis_mm: Annotated[Millimetres | None, Meta("short axis", "mm", sdtm="LPERP")] = None
    fragments_mm: Annotated[list[Millimetres] | None, Meta("fragments", "mm")] = Field(
        None, description="a lesion that split: its value is the sum of the fragments (E2009)"
    )
    perpendicular_mm: Annotated[Millimetres | None, Meta("perpendicular diameter", "mm", sdtm="LPERP")] = Field(
        None, description="WHO bidimensional measurement"
    )
    viable_diameter_mm: Annotated[Millimetres | None, Meta("viable (enhancing) diameter", "mm")] = Field(
        None, description="enhancing tumour diameter (mRECIST)"
    )
    viable_perpendicular_mm: Annotated[Millimetres | None, Meta("viable (enhancing) perpendicular", "mm")] = Field(
        None, description="enhancing perpendicular (EASL)"
    )
    attenuation_hu: Annotated[Hounsfield | None, Meta("attenuation", "HU")] = Field(
        None, description="mean attenuation, portal-venous CT (Choi)"
    )
    intratumoral_nodule: Annotated[
        IntratumoralNodule | None, BeforeValidator(_normalise_word), Meta("intratumoral nodule")
    ] = None
    morphology_group: Annotated[int | None, Number, Meta("morphology group")] = Field(
        None, ge=1, le=3, description="Chun group 1 | 2 | 3 (reader)"
    )
    status: Annotated[LesionStatus, BeforeValidator(_normalise_word), Meta("status", sdtm="TUMSTATE")] = "present"
    coalesced_into: Annotated[Text | None, Meta("coalesced into")] = Field(
        None, description="for status coalesced: the lesion carrying the size"
    )
    equivocal: Annotated[bool, Meta("equivocal")] = Field(
        False, description="new lesion not yet unequivocal (RECIST 1.1 §4.3.2)"
    )
    detected_by: Annotated[str | None, Meta("detected by")] = Field(
        None, description="CT | MRI | FDG-PET, for new lesions"
    )
    baseline_fdg_pet_at_site: Annotated[
        PetAtSite | None, BeforeValidator(_normalise_word), Meta("FDG-PET at the site at baseline")
    ] = None
    confirmed_on_ct: Annotated[bool | None, Meta("confirmed on CT")] = Field(
        None, description="a PET-detected new lesion seen on CT too"
    )
    ablation_zone_covers_tumor: Annotated[bool | None, Meta("ablation zone covers the tumour")] = None
    enhancing_tissue_at_ablation_edge: Annotated[bool | None, Meta("enhancing tissue at the ablation edge")] = None
    min_margin_mm: Annotated[Millimetres | None, Meta("minimal ablative margin", "mm")] = Field(
        None, description="minimal ablative margin"
    )
    slice_thickness_mm: Annotated[SliceThickness | None, Meta("slice thickness", "mm")] = None
    new_lesion_role: Annotated[NewLesionRole | None, BeforeValidator(_normalise_word), Meta("new-lesion role")] = Field(
        None,
        description="iRECIST: a new lesion measured as a new-lesion target or followed as a new non-target "
        "(default: measurable by RECIST 1.1 -> target, up to 5 and 2 per organ)",
    )
    further_increase: Annotated[bool | None, Meta("further increase")] = Field(
        None,
        description="iRECIST: the reader sees a further increase of this non-target or new non-target lesion since "
        "the last assessment (confirms progression after iUPD)",
    )


class Organs(_Strict):
    """Whole-organ measurements at one timepoint, for the toxicity flags (REFERENCE §7)."""

    ct_phase: Annotated[CtPhase | None, BeforeValidator(_normalise_word), Meta("CT phase")] = Field(
        None, description="phase the HU values below were measured on"
    )
    liver_attenuation_hu: Annotated[Hounsfield | None, Meta("liver attenuation", "HU")] = None
    spleen_attenuation_hu: Annotated[Hounsfield | None, Meta("spleen attenuation", "HU")] = None
    spleen_volume_ml: Annotated[
        Annotated[float, Field(gt=0, le=MAX_SPLEEN_VOLUME_ML, allow_inf_nan=False), Number] | None,
        Meta("spleen volume", "mL"),
    ] = None
    liver_pdff_pct: Annotated[
        Annotated[float, Field(ge=0, le=100, allow_inf_nan=False), Number] | None,
        Meta("liver fat fraction (PDFF)", "%"),
    ] = None
    mri_contrast: Annotated[MriContrast | None, BeforeValidator(_normalise_word), Meta("MRI contrast")] = None
    hbp_reticular_hypointensity: Annotated[bool | None, Meta("reticular hypointensity, hepatobiliary phase")] = None
    liver_contour_nodular: Annotated[bool | None, Meta("nodular liver contour")] = None
    capsular_retraction: Annotated[bool | None, Meta("capsular retraction")] = None


class Pet(_Strict):
    """FDG PET-CT readings at one timepoint (PERCIST 1.0), in SUL."""

    sul_peak_hottest: Annotated[
        Annotated[float, Field(ge=0, le=200, allow_inf_nan=False), Number] | None,
        Meta("SULpeak of the hottest lesion", "SUL"),
    ] = None
    liver_sul_mean: Annotated[
        Annotated[float, Field(gt=0, le=50, allow_inf_nan=False), Number] | None, Meta("liver SULmean", "SUL")
    ] = None
    liver_sul_sd: Annotated[
        Annotated[float, Field(ge=0, le=50, allow_inf_nan=False), Number] | None,
        Meta("liver SUL standard deviation", "SUL"),
    ] = None
    new_fdg_avid_lesions: Annotated[bool | None, Meta("new FDG-avid lesions")] = None
    all_lesions_resolved_to_background: Annotated[bool | None, Meta("all lesions resolved to background")] = None


class Timepoint(_Strict):
    """One imaging timepoint: baseline (the earliest) or a follow-up."""

    id: Text
    day: Annotated[int | None, Number, Meta("day", "days")] = Field(
        None, ge=-3650, le=36500, description="days since baseline (baseline = 0)"
    )
    date: Annotated[Annotated[dt.date, BeforeValidator(_iso_date)] | None, Meta("date")] = None
    modality: Annotated[Modality | None, BeforeValidator(_normalise_modality), Meta("modality")] = None
    tumor_markers_above_normal: Annotated[bool | None, Meta("tumour markers above normal")] = None
    slice_thickness_mm: Annotated[SliceThickness | None, Meta("slice thickness", "mm")] = None
    lesions: list[Lesion] = Field(default_factory=list)
    organs: Organs | None = None
    pet: Pet | None = None

    @model_validator(mode="after")
    def _needs_day_or_date(self) -> Timepoint:
        if self.day is None and self.date is None:
            raise ValueError("each timepoint needs `day` (days since baseline) or `date` (YYYY-MM-DD)")
        return self


class Treatment(_Strict):
    regimen: Annotated[str | None, Meta("regimen")] = None
    agents: Annotated[list[str], BeforeValidator(_normalise_agents), Meta("agents")] = Field(
        default_factory=list, description="agents separated by ';' in tables"
    )
    setting: Annotated[Setting, BeforeValidator(_normalise_word), Meta("setting")] = "systemic"
    # The same bounds as a timepoint day: a case file and a table refuse the same values.
    procedure_day: Annotated[int | None, Number, Meta("procedure day", "days")] = Field(
        None, ge=-3650, le=36500, description="day of ablation / intra-arterial treatment"
    )


class Case(_Strict):
    """One patient: treatment, optional rule-set settings, and timepoints (baseline first by day)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True, defer_build=True)

    case_id: Text = Field(validation_alias=AliasChoices("case_id", "subject_id"))
    description: str | None = None
    rule: str | None = None
    criteria: list[str] | None = None
    treatment: Treatment = Field(default_factory=lambda: Treatment.model_validate({}))
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    timepoints: list[Timepoint] = Field(min_length=1)
    # Worked cases carry their expected answers; a case file may keep them, the tool never reads them.
    expected: Any = None
    schema_version: int | None = None
    notes: str | None = None


LESION_FIELDS: tuple[str, ...] = tuple(name for name in Lesion.model_fields if name != "id")
ORGAN_FIELDS: tuple[str, ...] = tuple(Organs.model_fields)
PET_FIELDS: tuple[str, ...] = tuple(Pet.model_fields)
TIMEPOINT_FIELDS: tuple[str, ...] = ("day", "date", "modality", "tumor_markers_above_normal", "slice_thickness_mm")


def field_meta(model: type[BaseModel]) -> dict[str, Meta]:
    """The `Meta` of every field of a model that declares one."""
    found: dict[str, Meta] = {}
    for name, info in model.model_fields.items():
        for item in info.metadata:
            if isinstance(item, Meta):
                found[name] = item
    return found


# How each case field reads in reports and the terminal; the field name stays the key in case files, CSV and JSON.
FIELD_LABELS: dict[str, str] = {
    name: meta.label
    for model in (Lesion, Organs, Pet, Timepoint, Treatment)
    for name, meta in field_meta(model).items()
}

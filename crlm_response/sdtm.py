"""CDISC SDTM in and out: TU + TR (+ SUPPTR) -> lesion tables; response results -> SDTM RS rows (ADaM: adam.py).

One reader stream per subject and reader (USUBJID x --EVAL x --EVALID) is scored as its own "subject".
Measurements: LDIAM (non-nodal longest diameter), LPERP (short axis of a node; perpendicular of a non-nodal
lesion), the older DIAMETER (short axis for nodes, longest diameter otherwise), TUMSTATE for non-target and new
lesions; "TOO SMALL TO MEASURE" counts 5 mm, TRSTAT NOT DONE is not evaluated, cm are converted to mm.
Collected sums (SUMDIAM, ...) are recomputed, not read. Every TR row is scored or set aside with a reason.
RS is written for any response criteria set: RSCAT is the set's `rscat:` (default its name).
See standards/CDISC.md of the project brief and the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .assessment import ordered_ids
from .dates import continuous_day, epoch_days, from_epoch_days, study_day
from .engine import RuleSetResult
from .errors import InputTableError
from .formats import CellMap
from .rules import LoadedRuleSet
from .sources import SourceOptions, parse_date_ranges, read_table, refuse_duplicate_names
from .tables import FieldSpec, Tables, blank_where, with_object_strings
from .trial import SPECS, Ledger, RawTable, ReadResult, check_numbers

SUMMARY_TESTS = {"SUMDIAM", "SUMNLNLD", "ACNSD", "PCBSD", "PCNSD", "SUMPDIAM"}
MEASURE_TESTS = {"LDIAM", "LPERP", "DIAMETER"}
STATE_WORDS = {
    "PRESENT": "present",
    "ABSENT": "disappeared",
    "UNEQUIVOCAL": "unequivocal_progression",
    "UNEQUIVOCAL PROGRESSION": "unequivocal_progression",
    "EQUIVOCAL": "present",
    "NOT EVALUABLE": "not_evaluated",
    "NON-EVALUABLE": "not_evaluated",
}
KIND_WORDS = {"TARGET": "target", "NON-TARGET": "non_target", "NEW": "new"}
METHOD_WORDS = {
    "CT SCAN": "CT",
    "CT": "CT",
    "MRI": "MRI",
    "MRI SCAN": "MRI",
    "PET SCAN": "PET-CT",
    "PET-CT": "PET-CT",
    "PET/CT SCAN": "PET-CT",
}
RS_COLUMNS = [
    "STUDYID",
    "DOMAIN",
    "USUBJID",
    "RSSEQ",
    "RSLNKGRP",
    "RSTESTCD",
    "RSTEST",
    "RSCAT",
    "RSORRES",
    "RSSTRESC",
    "RSSTAT",
    "RSREASND",
    "RSEVAL",
    "RSEVALID",
    "RSACPTFL",
    "VISITNUM",
    "VISIT",
    "RSDTC",
    "RSDY",
]
RS_TESTS = {
    "TRGRESP": "Target Response",
    "NTRGRESP": "Non-target Response",
    "NEWLPROG": "New Lesion Progression",
    "OVRLRESP": "Overall Response",
}


@dataclass
class SdtmStreams:
    """What RS output needs beyond the scores: stream identity and visit details, keyed by stream id."""

    streams: pd.DataFrame  # subject_id (stream), STUDYID, USUBJID, EVAL, EVALID, ACPTFL
    visits: pd.DataFrame  # subject_id, timepoint, VISITNUM, VISIT, RSDTC, RSDY, LNKGRP, new_equivocal


# Rejections that say a row is not used, not that it is wrong: they do not set the subject aside.
INFORMATIONAL_CODES = ("test_not_used", "summary_recomputed", "not_used", "duplicate_measurement", "duplicate_row")


def _read(path: str | Path, what: str, required: list[str], options: SourceOptions) -> RawTable:
    table = read_table(path, options)
    upper = {c: str(c).upper() for c in table.frame.columns}
    table.frame.columns = list(upper.values())
    refuse_duplicate_names(list(table.frame.columns), str(path))
    if table.cells is not None:
        table.cells = CellMap(table.cells.sheet, {upper.get(k, k): v for k, v in table.cells.letters.items()})
    missing = [c for c in required if c not in table.frame]
    if missing:
        raise InputTableError(
            f"not an SDTM {what} table: missing column(s) {', '.join(missing)}",
            file=path,
            hint=f"the file has: {', '.join(table.frame.columns[:25])}",
        )
    return table


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    values = frame[column].astype(object)
    return values.where(values.notna(), "").astype(str).str.strip()


def _stream_ids(usubjid: pd.Series, evaluator: pd.Series, evaluator_id: pd.Series, single: bool) -> pd.Series:
    if single:
        return usubjid
    return usubjid + "|" + evaluator + ("|" + evaluator_id).where(evaluator_id != "", "")


@dataclass
class Reference:
    """Per subject (USUBJID) from DM (or ADSL): the study reference date RFSTDTC and the randomisation date RANDDT,
    as epoch days (NaN when absent), and why a subject has none (for the warning)."""

    file: str
    rfstdtc: pd.Series  # USUBJID -> epoch days
    randdt: pd.Series | None  # USUBJID -> epoch days (None: the file has no RANDDT)
    why_not: pd.Series  # USUBJID -> reason RFSTDTC cannot be used


def read_reference(path: str | Path, options: SourceOptions, need_randomisation: bool = False) -> Reference:
    """DM (`--sdtm-dm`): RFSTDTC per subject gives study days; RANDDT (an ADSL column: SDTM DM has none) the
    randomisation date `--sd-from randomisation` counts the stable-disease minimum from."""
    table = _read(path, "DM", ["USUBJID", "RFSTDTC"], options).frame
    subject = _text(table, "USUBJID")
    twice = subject[subject.duplicated() & (subject != "")]
    if len(twice):
        raise InputTableError(
            f"USUBJID {twice.iloc[0]} appears in more than one row of DM",
            file=path,
            hint="DM (or ADSL) has one row per subject",
        )
    if need_randomisation and "RANDDT" not in table:
        raise InputTableError(
            "--sd-from randomisation needs each subject's randomisation date, RANDDT, and this file has none",
            file=path,
            hint="RANDDT is an ADSL variable (SDTM DM has no randomisation date): give ADSL as --sdtm-dm",
        )
    ranges = parse_date_ranges(table["RFSTDTC"], "RFSTDTC")
    rfstdtc = pd.Series(epoch_days(ranges.date), index=subject.to_numpy(dtype=object))
    written = _text(table, "RFSTDTC")
    why = np.where(
        written == "",
        "RFSTDTC is empty",
        np.where(
            pd.notna(ranges.reason),
            ranges.reason,
            "RFSTDTC is the partial date " + written + "; study days need the full date",
        ),
    )
    why_not = pd.Series(why, index=rfstdtc.index).where(np.isnan(rfstdtc.to_numpy()))
    randdt = None
    if "RANDDT" in table:
        randdt = pd.Series(epoch_days(parse_date_ranges(table["RANDDT"], "RANDDT").date), index=rfstdtc.index)
    return Reference(str(path), rfstdtc, randdt, why_not.dropna())


@with_object_strings
def read_sdtm(
    tu_path: str | Path,
    tr_path: str | Path,
    supptr_path: str | Path | None = None,
    encoding: str = "auto",
    options: SourceOptions | None = None,
    dm_path: str | Path | None = None,
    sd_from: str = "baseline",
) -> tuple[ReadResult, SdtmStreams]:
    """Read SDTM TU + TR into lesion tables, one stream per subject and reader. `dm_path`: DM (or ADSL) for study
    days (RFSTDTC) and, with `sd_from="randomisation"`, the randomisation date (RANDDT)."""
    options = options or SourceOptions(encoding=encoding)
    reference = read_reference(dm_path, options, sd_from == "randomisation") if dm_path is not None else None
    tu_raw = _read(tu_path, "TU", ["USUBJID", "TULNKID"], options)
    tr_raw = _read(tr_path, "TR", ["USUBJID", "TRLNKID", "TRTESTCD", "VISITNUM"], options)
    tu, tr = tu_raw.frame, tr_raw.frame
    if "TUSTRESC" not in tu and "TUORRES" not in tu:
        raise InputTableError("TU needs TUSTRESC (or TUORRES): TARGET / NON-TARGET / NEW", file=tu_path)
    if "TRDY" not in tr and "TRDTC" not in tr:
        raise InputTableError("TR needs TRDY or TRDTC to place assessments in time", file=tr_path)

    tu_eval, tu_evalid, tu_subj = _text(tu, "TUEVAL"), _text(tu, "TUEVALID"), _text(tu, "USUBJID")
    tr_eval, tr_evalid, tr_subj = _text(tr, "TREVAL"), _text(tr, "TREVALID"), _text(tr, "USUBJID")
    pairs = pd.DataFrame({"s": tr_subj, "e": tr_eval + "|" + tr_evalid}).drop_duplicates()
    single = bool((pairs.groupby("s").size() <= 1).all())
    tu_stream = _stream_ids(tu_subj, tu_eval, tu_evalid, single)
    tr_stream = _stream_ids(tr_subj, tr_eval, tr_evalid, single)
    tu_lnk, tr_lnk = _text(tu, "TULNKID"), _text(tr, "TRLNKID")
    testcd = _text(tr, "TRTESTCD").str.upper()

    # Ledgers carry the ids the errors output shows.
    tu_view = pd.DataFrame({"subject_id": tu_stream, "timepoint": _text(tu, "VISIT"), "lesion_id": tu_lnk})
    tu_ledger = Ledger(str(tu_path), tu_raw.lines, tu_view, cells=tu_raw.cells)
    tu_ledger.add_malformed(tu_raw.malformed)
    tu_kind = (
        (_text(tu, "TUSTRESC").where(_text(tu, "TUSTRESC") != "", _text(tu, "TUORRES"))).str.upper().map(KIND_WORDS)
    )
    if "TUTESTCD" in tu:
        other_test = _text(tu, "TUTESTCD").str.upper() != "TUMIDENT"
        tu_ledger.add(
            other_test.to_numpy(),
            "TUTESTCD",
            "test_not_used",
            "only TUMIDENT identification rows are used (split/merged lesions are read from TR)",
        )
    tu_ledger.add(tu_kind.isna().to_numpy(), "TUSTRESC", "not_allowed", "TUSTRESC must be TARGET, NON-TARGET or NEW")
    tu_key = tu_stream + "\x1f" + tu_lnk
    tu_ledger.add(
        tu_key.duplicated().to_numpy(),
        "TULNKID",
        "duplicate_row",
        "a second TU identification row for the same lesion and reader",
    )
    tu_ok = tu_ledger.ok
    location = _text(tu, "TULOC").str.lower()
    organ = np.where(
        location.str.contains("lymph", regex=False),
        "lymph_node",
        blank_where(location.str.replace(" ", "_").to_numpy(dtype=object), (location == "").to_numpy()),
    )
    tu_info = pd.DataFrame(
        {
            "key": tu_key[tu_ok].to_numpy(),
            "kind": tu_kind[tu_ok].to_numpy(dtype=object),
            "organ": organ[tu_ok],
            "node": location[tu_ok].str.contains("lymph", regex=False).to_numpy(),
        }
    )
    tu_info = tu_info.set_index("key")

    visit_label = _text(tr, "VISIT").where(_text(tr, "VISIT") != "", "VISIT " + _text(tr, "VISITNUM"))
    tr_view = pd.DataFrame({"subject_id": tr_stream, "timepoint": visit_label, "lesion_id": tr_lnk})
    for column in ("TRTESTCD", "TRORRES", "TRSTRESN", "TRSTRESU", "TRDY", "TRDTC", "VISITNUM"):
        if column in tr:
            tr_view[column] = tr[column].to_numpy(dtype=object)
    ledger = Ledger(str(tr_path), tr_raw.lines, tr_view, cells=tr_raw.cells)
    ledger.add_malformed(tr_raw.malformed)

    summary = testcd.isin(SUMMARY_TESTS) | (tr_lnk == "")
    ledger.add(
        summary.to_numpy(),
        "TRTESTCD",
        "summary_recomputed",
        "collected summary result; sums and changes are recomputed from the lesion rows",
    )
    ledger.add(
        (testcd == "LNSTATE").to_numpy(), "TRTESTCD", "not_used", "node state is derived from the short axis, not read"
    )
    known_test = testcd.isin(MEASURE_TESTS | {"TUMSTATE"})
    ledger.add(~known_test.to_numpy(), "TRTESTCD", "test_not_used", "this TR test is not used by the criteria")

    key = tr_stream + "\x1f" + tr_lnk
    found = tu_info.index.get_indexer(pd.Index(key)) if len(tu_info) else np.full(len(tr), -1)
    ledger.add(found < 0, "TRLNKID", "no_tu_record", "no TU identification row for this lesion and reader")
    kind = np.where(
        found >= 0, tu_info["kind"].to_numpy(dtype=object)[np.maximum(found, 0)] if len(tu_info) else None, None
    )
    node = np.where(
        found >= 0, tu_info["node"].to_numpy(dtype=bool)[np.maximum(found, 0)] if len(tu_info) else False, False
    ).astype(bool)
    lesion_organ = np.where(
        found >= 0, tu_info["organ"].to_numpy(dtype=object)[np.maximum(found, 0)] if len(tu_info) else None, None
    )

    # The same field checks as the long format: VISITNUM a number, TRDY a whole number, one date parser, sizes
    # finite, in mm or cm (converted) and at most 1,000 mm. VISITNUM orders the visits, so a partial or missing
    # date does not stop a row from being scored (only intervals need a day: see `dates`).
    visitnum = check_numbers(tr["VISITNUM"], ledger, FieldSpec("VISITNUM", "number"), "VISITNUM")
    ledger.add(np.isnan(visitnum), "VISITNUM", "missing_key", "VISITNUM is empty: the visit is unknown")
    day = np.full(len(tr), np.nan)
    if "TRDY" in tr:
        day = check_numbers(tr["TRDY"], ledger, FieldSpec("TRDY", "integer", ge=-36500, le=36500), "TRDY")
    ranges = parse_date_ranges(tr["TRDTC"] if "TRDTC" in tr else pd.Series([None] * len(tr), dtype=object), "TRDTC")
    # A TRDTC that is no date at all is refused where no TRDY places the row (with TRDY it is not needed).
    ledger.add(np.isnan(day) & pd.notna(ranges.reason), "TRDTC", "bad_date", ranges.reason)
    if reference is not None:
        _check_reference(reference, tr_subj, ledger, sd_from)

    original = _text(tr, "TRORRES").str.upper()
    not_done = (_text(tr, "TRSTAT").str.upper() == "NOT DONE").to_numpy()
    too_small = original.str.contains("TOO SMALL", regex=False).to_numpy()
    measure = testcd.isin(MEASURE_TESTS).to_numpy()
    value = _measurements(tr, ledger, measure & ~not_done & ~too_small)
    state = _tumour_states(tr, ledger, (testcd == "TUMSTATE").to_numpy() & (kind != "target") & ~not_done)
    when = _text(tr, "TRDTC") + "|" + pd.Series(day).astype(str)
    _conflicting_measurements(ledger, key + "\x1f" + when, visitnum, testcd, value, state, measure)

    # Which measurement row supplies which field (nodes: short axis; other lesions: longest diameter).
    has = pd.DataFrame({"k": (key + "\x1f" + pd.Series(visitnum).astype(str)).to_numpy(), "t": testcd.to_numpy()})
    has["ok"] = ledger.ok
    present_tests = has.loc[has["ok"]].groupby("k")["t"].agg(set)
    tests_of_row = has["k"].map(present_tests)
    has_ldiam = tests_of_row.map(lambda t: isinstance(t, set) and "LDIAM" in t).to_numpy(dtype=bool)
    has_lperp = tests_of_row.map(lambda t: isinstance(t, set) and "LPERP" in t).to_numpy(dtype=bool)
    is_target = kind == "target"
    t = testcd.to_numpy()
    ledger.add(
        (t == "LDIAM") & node & is_target,
        "TRTESTCD",
        "not_used",
        "long axis of a lymph node: RECIST 1.1 uses the short axis (LPERP)",
    )
    ledger.add(
        (t == "DIAMETER") & ((node & has_lperp) | (~node & has_ldiam)),
        "TRTESTCD",
        "duplicate_measurement",
        "DIAMETER repeats the LDIAM/LPERP measurement of the same lesion; LDIAM/LPERP is used",
    )
    ledger.add(
        (t == "TUMSTATE") & is_target, "TRTESTCD", "not_used", "state of a target lesion: the measurement is used"
    )

    # As in the long format: a row that cannot be read (an undated NEW lesion, a bad size) could change the
    # answer, so its stream is set aside whole; rows that are merely not used (summaries, other tests) are not.
    reasons = ledger.first_rejection_by_subject(ignore=INFORMATIONAL_CODES)
    for stream, reason in tu_ledger.first_rejection_by_subject(ignore=INFORMATIONAL_CODES).items():
        reasons.setdefault(stream, reason)
    ledger.set_aside_subjects(reasons)

    ok = ledger.ok
    field = np.full(len(tr), None, dtype=object)
    field[ok & (t == "LDIAM") & ~node] = "longest_diameter_mm"
    field[ok & (t == "LPERP") & node] = "short_axis_mm"
    field[ok & (t == "LPERP") & ~node] = "perpendicular_mm"
    field[ok & (t == "DIAMETER") & node] = "short_axis_mm"
    field[ok & (t == "DIAMETER") & ~node] = "longest_diameter_mm"
    field[ok & (t == "TUMSTATE")] = "state"
    ledger.add(ok & (field == None), "TRTESTCD", "not_used", "measurement not used for this lesion")  # noqa: E711

    frame = pd.DataFrame(
        {
            "subject_id": tr_stream.to_numpy(dtype=object),
            "visitnum": visitnum,
            "visit": visit_label.to_numpy(dtype=object),
            "lesion_id": tr_lnk.to_numpy(dtype=object),
            "field": field,
            "value": value,
            "not_done": not_done,
            "too_small": too_small,
            "state": state.to_numpy(dtype=object),
            "kind": kind,
            "organ": lesion_organ,
            "node": node,
            "day": day,
            "date": ranges.date.astype("datetime64[ns]"),
            "date_first": ranges.first.astype("datetime64[ns]"),
            "date_last": ranges.last.astype("datetime64[ns]"),
            "precision": ranges.precision,
            "method": _text(tr, "TRMETHOD").str.upper().map(METHOD_WORDS).to_numpy(dtype=object),
            "lnkgrp": _text(tr, "TRLNKGRP").to_numpy(dtype=object),
            "line": ledger.lines,
            "ok": ledger.ok,
            "usubjid": tr_subj.to_numpy(dtype=object),
            "eval": tr_eval.to_numpy(dtype=object),
            "evalid": tr_evalid.to_numpy(dtype=object),
            "acptfl": _text(tr, "TRACPTFL").to_numpy(dtype=object),
            "studyid": _text(tr, "STUDYID").to_numpy(dtype=object),
            "dtc": _text(tr, "TRDTC").to_numpy(dtype=object),
        }
    )
    tables, streams = _build(frame.loc[frame["ok"]], str(tr_path), reference)
    return ReadResult(tables, [tu_ledger, ledger], _reference_warnings(reference, streams.streams)), streams


def _check_reference(reference: Reference, subjects: pd.Series, ledger: Ledger, sd_from: str) -> None:
    """DM must be the same study's; with `--sd-from randomisation` every scored subject needs its RANDDT."""
    known = subjects.isin(reference.rfstdtc.index).to_numpy()
    if len(subjects) and not known.any():
        raise InputTableError(
            f"none of the {subjects.nunique():,} subjects of TR is in DM (USUBJID {subjects.iloc[0]} is not)",
            file=reference.file,
            hint="give the DM of the same study",
        )
    if sd_from != "randomisation" or reference.randdt is None:
        return
    randomised = subjects.map(reference.randdt).to_numpy(dtype=float)
    ledger.add(
        np.isnan(randomised),
        "USUBJID",
        "no_randomisation_date",
        f"no RANDDT for this subject in {Path(reference.file).name} (absent, empty or partial): with --sd-from "
        "randomisation the stable-disease minimum cannot be counted",
    )


def _reference_warnings(reference: Reference | None, streams: pd.DataFrame) -> pd.DataFrame | None:
    """A scored subject DM gives no study reference date for: study days come from TRDY only."""
    if reference is None or streams.empty:
        return None
    usubjid = streams["USUBJID"].to_numpy(dtype=object)
    absent = ~pd.Series(usubjid).isin(reference.rfstdtc.index).to_numpy()
    why = pd.Series(usubjid).map(reference.why_not).to_numpy(dtype=object)
    name = Path(reference.file).name
    message = np.where(absent, f"subject is not in DM ({name})", "DM (" + name + "): " + why.astype(str))
    hit = absent | pd.notna(why)
    if not hit.any():
        return None
    return pd.DataFrame(
        {
            "subject_id": streams["subject_id"].to_numpy(dtype=object)[hit],
            "code": "no_reference_date",
            "timepoint": None,
            "lesion_id": None,
            "message": pd.Series(message[hit]).astype(str)
            + ": its study days (RSDY) come from TRDY only, empty where TRDY is",
            "severity": "warning",
        }
    )


def _tumour_states(tr: pd.DataFrame, ledger: Ledger, read: np.ndarray) -> pd.Series:
    """TUMSTATE results in upper case: the standardised TRSTRESC, else the collected TRORRES (which may be
    worded freely, e.g. "Unequivocal progression" beside TRSTRESC UNEQUIVOCAL). A word that is not a known state
    is refused on the rows that are read (`read`), and so is an empty one: taken as PRESENT it could hide a
    progression."""
    standard = _text(tr, "TRSTRESC")
    written = standard.where(standard != "", _text(tr, "TRORRES"))
    state = written.str.upper().str.replace(r"\s+", " ", regex=True)
    ledger.add(
        read & (state != "").to_numpy() & ~state.isin(list(STATE_WORDS)).to_numpy(),
        "TRSTRESC" if "TRSTRESC" in tr else "TRORRES",
        "not_allowed",
        f"TUMSTATE result must be one of {', '.join(STATE_WORDS)} (other words are not read as a lesion state)",
        values=written.to_numpy(dtype=object),
    )
    ledger.add(
        read & (state == "").to_numpy(),
        "TRSTRESC" if "TRSTRESC" in tr else "TRORRES",
        "missing_value",
        "TUMSTATE result is empty and TRSTAT is not NOT DONE: the lesion's state is unknown; give the state, or "
        "TRSTAT = NOT DONE when it was not assessed",
    )
    return state


def _measurements(tr: pd.DataFrame, ledger: Ledger, measured: np.ndarray) -> np.ndarray:
    """TRSTRESN of the measurement rows in mm: mm as given, cm converted; another unit is refused (it would be
    scored as mm), and the converted size meets the long format's limits."""
    if "TRSTRESN" not in tr:
        ledger.add(measured, "TRSTRESN", "not_a_number", "a measurement row without a numeric TRSTRESN")
        return np.full(len(tr), np.nan)
    unit = _text(tr, "TRSTRESU").str.lower()
    ledger.add(
        measured & ~unit.isin(["", "mm", "cm"]).to_numpy(),
        "TRSTRESU",
        "unknown_unit",
        "TRSTRESU must be mm or cm (other units are not converted)",
    )
    raw = tr["TRSTRESN"]
    number = FieldSpec("TRSTRESN", "number")
    value = check_numbers(raw, ledger, number, "TRSTRESN", where=measured)
    ledger.add(measured & np.isnan(value), "TRSTRESN", "not_a_number", "a measurement row without a numeric TRSTRESN")
    value = np.where(unit.to_numpy() == "cm", value * 10.0, value)
    limits = SPECS["longest_diameter_mm"]
    with np.errstate(invalid="ignore"):
        ledger.add(measured & (value < limits.ge), "TRSTRESN", "out_of_range", f"TRSTRESN must be >= {limits.ge:g}")
        ledger.add(
            measured & (value > limits.le),
            "TRSTRESN",
            "out_of_range",
            f"TRSTRESN must be <= {limits.le:g} mm (cm converted; a larger value is a typing or unit mistake)",
        )
    return value


def _conflicting_measurements(
    ledger: Ledger,
    key: pd.Series,
    visitnum: np.ndarray,
    testcd: pd.Series,
    value: np.ndarray,
    state: pd.Series,
    measure: np.ndarray,
) -> None:
    """Two rows for one lesion, test and visit (VISITNUM and date): the same result twice is a repeat (the first
    is used); two different results cannot both be right, so both are refused (the answer must not depend on row
    order)."""
    result = np.where(measure, pd.Series(value).map(repr).to_numpy(dtype=object), state.to_numpy(dtype=object))
    frame = pd.DataFrame(
        {"k": key.to_numpy(dtype=object), "v": visitnum, "t": testcd.to_numpy(dtype=object), "r": result}
    )
    candidates = ledger.ok & (measure | (testcd == "TUMSTATE").to_numpy())
    rows = frame.loc[candidates]
    if rows.empty:
        return
    distinct = rows.groupby(["k", "v", "t"], dropna=False)["r"].transform("nunique")
    conflict = np.zeros(len(frame), dtype=bool)
    conflict[np.flatnonzero(candidates)] = (distinct > 1).to_numpy()
    ledger.add(
        conflict,
        "TRSTRESN",
        "conflicting_measurement",
        "two different results for this lesion, test and visit; correct the data (which is right is unknown)",
    )
    repeat = np.zeros(len(frame), dtype=bool)
    repeat[np.flatnonzero(candidates)] = rows.duplicated(["k", "v", "t", "r"], keep="first").to_numpy()
    ledger.add(repeat & ~conflict, "TRSTRESN", "duplicate_row", "the same result repeated; the first row is used")


def _build(rows: pd.DataFrame, file: str, reference: Reference | None = None) -> tuple[Tables, SdtmStreams]:
    """Measurement rows -> one lesion row per stream, visit and lesion; visits keyed by stream and VISITNUM."""
    visit_key = ["subject_id", "visitnum"]
    visits = (
        rows.groupby(visit_key, sort=False, dropna=False)
        .agg(
            visit=("visit", "first"),
            day=("day", "max"),
            date=("date", "max"),
            date_first=("date_first", "min"),
            date_last=("date_last", "max"),
            modality=("method", "first"),
            lnkgrp=("lnkgrp", lambda s: next((x for x in s if x), "")),
            usubjid=("usubjid", "first"),
            line=("line", "min"),
        )
        .reset_index()
    )
    visits = visits.merge(_collected_dates(rows, visit_key), on=visit_key, how="left")
    # Two VISITNUMs with the same label would be one timepoint id: keep them apart.
    clash = visits.duplicated(["subject_id", "visit"], keep=False)
    visits["timepoint"] = np.where(
        clash, visits["visit"] + " (" + visits["visitnum"].map("{:g}".format) + ")", visits["visit"]
    )
    lesion_key = ["subject_id", "visitnum", "lesion_id"]
    values = rows.loc[rows["field"] != "state"].pivot_table(
        index=lesion_key, columns="field", values="value", aggfunc="first"
    )
    flags = rows.groupby(lesion_key, sort=False).agg(
        kind=("kind", "first"),
        organ=("organ", "first"),
        node=("node", "first"),
        not_done=("not_done", "any"),
        too_small=("too_small", "any"),
        line=("line", "min"),
        state=("state", lambda s: next((x for x in s if x), "")),
        has_state=("field", lambda f: (f == "state").any()),
    )
    les = flags.join(values, how="left").reset_index()
    for column in ("longest_diameter_mm", "short_axis_mm", "perpendicular_mm"):
        if column not in les:
            les[column] = np.nan
    state = les["state"].astype(str).str.upper()
    status = np.full(len(les), "present", dtype=object)
    status[les["has_state"].to_numpy(dtype=bool)] = state[les["has_state"]].map(STATE_WORDS).fillna("present")
    measured = np.where(les["node"].to_numpy(dtype=bool), les["short_axis_mm"], les["longest_diameter_mm"])
    status[(~les["node"].to_numpy(dtype=bool)) & (measured == 0) & (les["kind"] == "target").to_numpy()] = "disappeared"
    status[les["too_small"].to_numpy(dtype=bool)] = "too_small"
    status[les["not_done"].to_numpy(dtype=bool)] = "not_evaluated"
    status[(les["kind"] == "new").to_numpy() & (status == "unequivocal_progression")] = "present"
    equivocal = ((les["kind"] == "new") & (state == "EQUIVOCAL")).to_numpy()
    timepoint = visits.set_index(visit_key)["timepoint"]
    les["timepoint"] = timepoint.reindex(pd.MultiIndex.from_frame(les[visit_key])).to_numpy(dtype=object)
    lesions = pd.DataFrame(
        {
            "subject_id": les["subject_id"].to_numpy(dtype=object),
            "timepoint": les["timepoint"].to_numpy(dtype=object),
            "lesion_id": les["lesion_id"].to_numpy(dtype=object),
            "organ": les["organ"].to_numpy(dtype=object),
            "kind": les["kind"].to_numpy(dtype=object),
            "is_lymph_node": les["node"].astype(float).to_numpy(),
            "longest_diameter_mm": les["longest_diameter_mm"].to_numpy(dtype=float),
            "short_axis_mm": les["short_axis_mm"].to_numpy(dtype=float),
            "perpendicular_mm": les["perpendicular_mm"].to_numpy(dtype=float),
            "status": status,
            "equivocal": equivocal.astype(float),
            "source": file,
            "line": les["line"].to_numpy(),
        }
    )
    from .tables import LESION_VALUE_COLUMNS, VISIT_VALUE_COLUMNS, add_absent_columns

    add_absent_columns(lesions, LESION_VALUE_COLUMNS)
    _place_in_time(visits, reference)
    visit_table = pd.DataFrame(
        {
            "subject_id": visits["subject_id"].to_numpy(dtype=object),
            "timepoint": visits["timepoint"].to_numpy(dtype=object),
            "day": visits["axis"].to_numpy(dtype=float),
            "day_offset": visits["offset"].to_numpy(dtype=float),
            "visit_order": visits["visitnum"].to_numpy(dtype=float),
            "date": visits["date"].to_numpy(dtype="datetime64[ns]"),
            "date_first": visits["date_first"].to_numpy(dtype="datetime64[ns]"),
            "date_last": visits["date_last"].to_numpy(dtype="datetime64[ns]"),
            "date_precision": visits["precision"].to_numpy(dtype=object),
            "date_collected": visits["dtc"].to_numpy(dtype=object),
            "study_day": visits["study_day"].to_numpy(dtype=float),
            "reference_day": visits["reference"].to_numpy(dtype=float),
            "modality": visits["modality"].to_numpy(dtype=object),
            "source": file,
            "line": visits["line"].to_numpy(),
        }
    )
    add_absent_columns(visit_table, VISIT_VALUE_COLUMNS)
    stream_rows = rows.drop_duplicates("subject_id")
    acptfl = rows.groupby("subject_id")["acptfl"].agg(lambda s: next((x for x in s if x), ""))
    streams = pd.DataFrame(
        {
            "subject_id": stream_rows["subject_id"].to_numpy(dtype=object),
            "STUDYID": stream_rows["studyid"].to_numpy(dtype=object),
            "USUBJID": stream_rows["usubjid"].to_numpy(dtype=object),
            "EVAL": stream_rows["eval"].to_numpy(dtype=object),
            "EVALID": stream_rows["evalid"].to_numpy(dtype=object),
            "ACPTFL": acptfl.reindex(stream_rows["subject_id"]).to_numpy(dtype=object),
        }
    )
    subjects = pd.DataFrame(
        {
            "subject_id": streams["subject_id"].to_numpy(dtype=object),
            "regimen": None,
            "agents": "",
            "setting": "systemic",
            "procedure_day": np.nan,
            "source": file,
            "line": stream_rows["line"].to_numpy(),
        }
    )
    if reference is not None and reference.randdt is not None:
        randomised = streams["USUBJID"].map(reference.randdt).to_numpy(dtype=float)
        subjects["randomisation_date"] = from_epoch_days(randomised)
    new_equivocal = (
        pd.DataFrame({"subject_id": lesions["subject_id"], "timepoint": lesions["timepoint"], "eq": equivocal})
        .groupby(["subject_id", "timepoint"])["eq"]
        .any()
    )
    visit_info = pd.DataFrame(
        {
            "subject_id": visits["subject_id"].to_numpy(dtype=object),
            "timepoint": visits["timepoint"].to_numpy(dtype=object),
            "VISITNUM": visits["visitnum"].to_numpy(),
            "VISIT": visits["visit"].to_numpy(dtype=object),
            "RSDTC": visits["dtc"].fillna("").to_numpy(dtype=object),
            "RSDY": visits["study_day"].to_numpy(dtype=float),
            "LNKGRP": visits["lnkgrp"].to_numpy(dtype=object),
        }
    )
    visit_info["new_equivocal"] = (
        new_equivocal.reindex(pd.MultiIndex.from_frame(visit_info[["subject_id", "timepoint"]]))
        .fillna(False)
        .to_numpy(dtype=bool)
    )
    return Tables(subjects=subjects, visits=visit_table, lesions=lesions), SdtmStreams(streams, visit_info)


def _collected_dates(rows: pd.DataFrame, visit_key: list[str]) -> pd.DataFrame:
    """Per visit: TRDTC as collected (the row with the latest full date, else a partial one: the most precise
    text) and the precision of what is known ("day" with a full date, else "month" or "year", None)."""
    rank = pd.Series(rows["precision"]).map({"day": 3, "month": 2, "year": 1}).fillna(0).to_numpy()
    order = rows.assign(_rank=rank, _when=rows["date"]).sort_values(visit_key + ["_rank", "_when"], kind="stable")
    last = order.drop_duplicates(visit_key, keep="last")
    dtc = last["dtc"].where(last["_rank"] > 0, None)
    return pd.DataFrame(
        {
            **{k: last[k].to_numpy() for k in visit_key},
            "dtc": dtc.to_numpy(dtype=object),
            "precision": last["precision"].where(last["_rank"] > 0, None).to_numpy(dtype=object),
        }
    )


def _place_in_time(visits: pd.DataFrame, reference: Reference | None) -> None:
    """Study day, and a time axis per stream (`axis`, with `offset` to calendar days; NaN when not tied to it).

    Study day: TRDY as collected, else date - RFSTDTC + 1 (no day 0) with the reference date from DM, else the one
    the stream's own TRDY/TRDTC pairs imply (their lower median: TRDY is often the planned day); none without
    either. The axis: days since the reference when there is one (TRDY first, as collected), else the dates when
    the stream has no TRDY, else TRDY alone (then a visit without TRDY has no place on it: its day is unknown)."""
    stream = visits["subject_id"].to_numpy(dtype=object)
    trdy = visits["day"].to_numpy(dtype=float)
    date_days = epoch_days(visits["date"].to_numpy(dtype="datetime64[ns]"))
    pairs = ~np.isnan(trdy) & ~np.isnan(date_days)
    implied = pd.Series(np.where(pairs, date_days - continuous_day(trdy), np.nan))
    lower_median = implied.groupby(stream).transform(
        lambda x: np.sort(x.dropna())[(x.count() - 1) // 2] if x.count() else np.nan
    )
    ref = lower_median.to_numpy(dtype=float)
    if reference is not None:
        from_dm = visits["usubjid"].map(reference.rfstdtc).to_numpy(dtype=float)
        ref = np.where(np.isnan(from_dm), ref, from_dm)
    derived = study_day(date_days, ref)
    visits["study_day"] = np.where(np.isnan(trdy), derived, trdy)
    has_ref = ~np.isnan(ref)
    no_trdy = pd.Series(np.isnan(trdy)).groupby(stream).transform("all").to_numpy(dtype=bool)
    on_dates = ~has_ref & no_trdy
    visits["axis"] = np.where(
        has_ref,
        ref + continuous_day(visits["study_day"].to_numpy(dtype=float)),
        np.where(on_dates, date_days, continuous_day(trdy)),
    )
    visits["offset"] = np.where(has_ref | on_dates, 0.0, np.nan)
    visits["reference"] = ref


def response_result(results: Mapping[str, RuleSetResult]) -> RuleSetResult | None:
    """The results RS and ADaM are written from: the first response set of the run (display order, so RECIST
    1.1 when it ran) that has a best response."""
    for rule_id in ordered_ids(list(results)):
        result = results[rule_id]
        if result.rule_set.schema.kind == "response" and result.best is not None:
            return result
    return None


def rs_category(result: RuleSetResult) -> str:
    """RSCAT: the rule file's `rscat:`, else the set's name (`RECIST 1.1`)."""
    return rs_category_of(result.rule_set)


def rs_category_of(rule_set: LoadedRuleSet) -> str:
    """RSCAT (and ADaM PARCAT3) of a rule set: its `rscat:`, else its name."""
    return rule_set.schema.rscat or rule_set.schema.name


def rs_rows(result: RuleSetResult, streams: SdtmStreams, category: str | None = None) -> pd.DataFrame:
    """SDTM RS rows (TRGRESP, NTRGRESP, NEWLPROG, OVRLRESP) for every scored stream and follow-up visit.

    Written as the reader / data-collection tool (CDISC RS assumption): RSEVAL, RSEVALID and RSACPTFL are copied
    from TR, never invented; RSLNKGRP on the OVRLRESP row is the visit's TRLNKGRP. A target or non-target
    response that does not apply (role not_applicable: no such lesions) has no row."""
    category = category or rs_category(result)
    scale = result.rule_set.scale
    tp = result.timepoints.merge(streams.visits, on=["subject_id", "timepoint"], how="left")
    tp = tp.merge(streams.streams, on="subject_id", how="left")
    parts = []
    for testcd, column in (
        ("TRGRESP", "target"),
        ("NTRGRESP", "non_target"),
        ("NEWLPROG", "new_lesions"),
        ("OVRLRESP", "overall"),
    ):
        if column not in tp:
            continue
        values = tp[column]
        if testcd == "NEWLPROG":
            unequivocal = np.asarray(values == True, dtype=bool)  # noqa: E712 - elementwise, object column
            equivocal = tp["new_equivocal"].fillna(False).to_numpy(dtype=bool)
            word = blank_where(np.where(unequivocal, "UNEQUIVOCAL", "EQUIVOCAL"), ~(unequivocal | equivocal))
            keep = pd.notna(word)
            values = pd.Series(word, index=tp.index)
        elif testcd in ("TRGRESP", "NTRGRESP"):
            keep = (values.map(scale.role_of) != "not_applicable").to_numpy() & values.notna().to_numpy()
        else:
            keep = values.notna().to_numpy()
        block = tp.loc[keep]
        parts.append(
            pd.DataFrame(
                {
                    "STUDYID": block["STUDYID"],
                    "DOMAIN": "RS",
                    "USUBJID": block["USUBJID"],
                    "RSLNKGRP": block["LNKGRP"] if testcd == "OVRLRESP" else "",
                    "RSTESTCD": testcd,
                    "RSTEST": RS_TESTS[testcd],
                    "RSCAT": category,
                    "RSORRES": values[keep].to_numpy(dtype=object),
                    "RSSTRESC": values[keep].to_numpy(dtype=object),
                    "RSSTAT": "",
                    "RSREASND": "",
                    "RSEVAL": block["EVAL"],
                    "RSEVALID": block["EVALID"],
                    "RSACPTFL": block["ACPTFL"],
                    "VISITNUM": block["VISITNUM"],
                    "VISIT": block["VISIT"],
                    "RSDTC": block["RSDTC"],
                    "RSDY": block["RSDY"],
                    "_order": {"TRGRESP": 0, "NTRGRESP": 1, "NEWLPROG": 2, "OVRLRESP": 3}[testcd],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=RS_COLUMNS)
    rs = pd.concat(parts, ignore_index=True)
    rs = rs.sort_values(["USUBJID", "RSEVAL", "RSEVALID", "VISITNUM", "_order"], kind="stable")
    rs["RSSEQ"] = rs.groupby("USUBJID").cumcount() + 1
    rs["RSDY"] = rs["RSDY"].astype("Int64")
    return rs[RS_COLUMNS].reset_index(drop=True)

"""ADaM ADRS and ADTR the way admiralonco writes them, from any input (SDTM TU/TR, long tables, case files).

Sponsor derivations belong in ADaM, not in SDTM RS (CDISC RS assumption; standards/CDISC.md §5 and §8). The
variables, parameters and codes follow admiralonco's templates (`ad_adrs.R`, `ad_adtr.R`) and event sources
(`response_sources.R`); every derivation is this tool's own engine (`bor.py` on the per-visit responses), never
a second copy of it:

* ADRS, per criteria set (PARCAT3 names it) and reader stream: `OVR` per assessment; `BOR`/`CBOR` (best overall
  response without / with confirmation), `RSP`/`CRSP` (responder), `CB`/`CCB` (clinical benefit), `BCP`/`CBCP`
  (best response is a response), `PD` (first progression), `LSTA` (last adequate assessment), `MDIS` (target
  disease at baseline); and once per subject `DEATH` when death dates are given. `AVAL` follows the role of
  `AVALC` (admiralonco `aval_resp()`), `Y`/`N` are 1/0.
* ADTR, per criteria set with a sum of diameters: `LDIAMn`/`NLDIAMn` per target lesion and `SDIAM` with BASE,
  CHG, PCHG, NADIR, CHGNAD, PCHGNAD, PDFL and the analysis flags ANL01FL-ANL04FL.

Timing: `ADT` the assessment date (when known), `ADTF` its imputation flag, `ADY` the study day (when known),
`BLDAYS` the days since the baseline scan that the derivations used (a sponsor variable: the tool's minimum times
count from the baseline scan, where admiralonco counts from randomisation), `AVISIT`/`AVISITN` the visit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .assessment import ordered_ids
from .bor import NO_ROLE, BorSettings, best_overall_response, role_codes
from .engine import RuleSetResult
from .errors import InputTableError
from .metrics import Context
from .sdtm import SdtmStreams, response_result, rs_category, rs_rows
from .tables import Prepared, with_object_strings

# ADRS AVAL of a response by its role: admiralonco aval_resp() (CR 1, PR 2, SD 3, NON-CR/NON-PD 4, PD 5, NE 6,
# MISSING 7; anything else, ND included, is missing). Roles aval_resp() has no code for get none either.
AVAL_BY_ROLE = {
    "complete": 1,
    "partial": 2,
    "stable": 3,
    "non_measurable_stable": 4,
    "progression": 5,
    "not_evaluable": 6,
    "missing": 7,
}
YES_NO_AVAL = {"Y": 1, "N": 0}  # admiral yn_to_numeric()
ADRS_COLUMNS = [
    "STUDYID",
    "USUBJID",
    "RSEVAL",
    "RSEVALID",
    "RSACPTFL",
    "PARAMCD",
    "PARAM",
    "PARCAT1",
    "PARCAT2",
    "PARCAT3",
    "AVALC",
    "AVAL",
    "ADT",
    "ADTF",
    "ADY",
    "BLDAYS",
    "AVISIT",
    "AVISITN",
    "ANL01FL",
    "ANL02FL",
    "ASEQ",
    "RSSEQ",
]
ADTR_COLUMNS = [
    "STUDYID",
    "USUBJID",
    "TREVAL",
    "TREVALID",
    "TRLNKID",
    "PARAMCD",
    "PARAM",
    "PARCAT1",
    "PARCAT2",
    "PARCAT3",
    "AVAL",
    "ABLFL",
    "BASE",
    "CHG",
    "PCHG",
    "NADIR",
    "CHGNAD",
    "PCHGNAD",
    "PDFL",
    "ANL01FL",
    "ANL02FL",
    "ANL03FL",
    "ANL04FL",
    "ADT",
    "ADTF",
    "ADY",
    "BLDAYS",
    "AVISIT",
    "AVISITN",
    "ASEQ",
]
# What the minimum times (SD, clinical benefit) count from, as PARAM states it: the baseline scan, not the
# randomisation date admiralonco's templates use (standards/CDISC.md §8: a different convention must say so).
SD_REFERENCE = "the baseline scan"
TUMOR_RESPONSE = "Tumor Response"
TARGET_LESIONS = "Target Lesion(s)"


# --------------------------------------------------------------------------------------------------
# Who and when: stream keys and visit timing, for any input
# --------------------------------------------------------------------------------------------------


@dataclass
class _Keys:
    """Stream keys (`stream_keys`) and visit timing (`visit_keys`) of one run."""

    streams: pd.DataFrame
    visits: pd.DataFrame


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    values = frame[column].astype(object)
    return values.where(values.notna(), "").astype(str).str.strip()


def stream_keys(prepared: Prepared, sdtm: SdtmStreams | None = None, study_id: str | None = None) -> pd.DataFrame:
    """Per scored stream (`subject_id`): STUDYID, USUBJID, RSEVAL, RSEVALID, RSACPTFL.

    SDTM input copies them from TR (never invented); a long table from its `study_id`/`usubjid`/`evaluator`/
    `reader` columns (see `trial._reader_streams`); a case file is its own subject with no reader. `study_id`
    (`--study-id`) fills a missing STUDYID and must agree with one the data gives."""
    subjects = prepared.subjects
    if sdtm is not None:
        keys = sdtm.streams.rename(columns={"EVAL": "RSEVAL", "EVALID": "RSEVALID", "ACPTFL": "RSACPTFL"})
        keys = keys.loc[keys["subject_id"].isin(subjects["subject_id"])].reset_index(drop=True)
    else:
        usubjid = _text(subjects, "usubjid")
        keys = pd.DataFrame(
            {
                "subject_id": subjects["subject_id"].to_numpy(dtype=object),
                "STUDYID": _text(subjects, "study_id").to_numpy(dtype=object),
                "USUBJID": usubjid.where(usubjid != "", subjects["subject_id"].astype(str)).to_numpy(dtype=object),
                "RSEVAL": _text(subjects, "evaluator").to_numpy(dtype=object),
                "RSEVALID": _text(subjects, "reader").to_numpy(dtype=object),
                "RSACPTFL": "",
            }
        )
    for column in ("STUDYID", "USUBJID", "RSEVAL", "RSEVALID", "RSACPTFL"):
        keys[column] = _text(keys, column)
    if study_id is not None:
        given = sorted(set(keys["STUDYID"]) - {"", study_id})
        if given:
            raise InputTableError(
                f"--study-id {study_id} differs from the study the data names ({', '.join(given[:3])})",
                hint="leave out --study-id (the data's STUDYID is used), or correct the data",
            )
        keys["STUDYID"] = study_id
    return keys


def visit_keys(prepared: Prepared, sdtm: SdtmStreams | None = None) -> pd.DataFrame:
    """Per visit (`subject_id`, `timepoint`): AVISIT, AVISITN, ADT, ADTF, ADY, BLDAYS.

    Reads the prepared visits' `date`, `date_imputation`, `study_day` and `visit_order` when the reader filled
    them (see the interface of the partial-dates work); otherwise ADT comes from the visit's full date (SDTM:
    the RS date), ADY from the SDTM study day (none for other inputs), AVISITN from VISITNUM (SDTM) or the order
    of the visit (baseline 0)."""
    v = prepared.visits
    out = pd.DataFrame(
        {
            "subject_id": v["subject_id"].to_numpy(dtype=object),
            "timepoint": v["timepoint"].to_numpy(dtype=object),
            "AVISIT": v["timepoint"].astype(str).to_numpy(dtype=object),
            "AVISITN": v["tp_order"].to_numpy(dtype=float),
            "ADT": _dates(v["date"]) if "date" in v else np.full(len(v), np.datetime64("NaT"), "datetime64[ns]"),
            "ADTF": _text(v, "date_imputation").to_numpy(dtype=object),
            "ADY": np.full(len(v), np.nan),
            "BLDAYS": v["day"].to_numpy(dtype=float),
            # the engine's order of the visits (baseline 0): records are sorted by it, as a partial-date visit
            # has no day to sort by
            "_visit_rank": v["tp_order"].to_numpy(dtype=float),
        }
    )
    if sdtm is not None:
        info = out[["subject_id", "timepoint"]].merge(sdtm.visits, on=["subject_id", "timepoint"], how="left")
        out["AVISIT"] = _text(info, "VISIT").where(_text(info, "VISIT") != "", out["AVISIT"]).to_numpy(dtype=object)
        out["AVISITN"] = pd.to_numeric(info["VISITNUM"], errors="coerce").to_numpy(dtype=float)
        rs_date = _dates(info["RSDTC"])
        out["ADT"] = np.where(np.isnat(out["ADT"].to_numpy()), rs_date, out["ADT"].to_numpy())
        out["ADY"] = pd.to_numeric(info["RSDY"], errors="coerce").to_numpy(dtype=float)
    if "visit_order" in v:
        out["AVISITN"] = pd.to_numeric(v["visit_order"], errors="coerce").to_numpy(dtype=float)
    if "study_day" in v:
        out["ADY"] = pd.to_numeric(v["study_day"], errors="coerce").to_numpy(dtype=float)
    return out


def _dates(values: pd.Series) -> np.ndarray:
    """Full dates as datetime64[ns] (NaT for missing and partial ones: ADT is a date, `2014-02` is not)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype("datetime64[ns]")
    cells = values.astype(object).where(values.notna(), None)
    is_text = cells.map(lambda c: isinstance(c, str)).to_numpy(dtype=bool)
    out = np.full(len(cells), np.datetime64("NaT"), dtype="datetime64[ns]")
    if is_text.any():  # ISO 8601 text (a time after the date is dropped; a partial date is no date)
        text = cells[is_text].astype(str).str.strip()
        full = text.str.match(r"^\d{4}-\d{2}-\d{2}")
        stamps = pd.to_datetime(text.str[:10].where(full, None), format="%Y-%m-%d", errors="coerce")
        out[is_text] = stamps.to_numpy(dtype="datetime64[ns]")
    other = ~is_text & cells.notna().to_numpy()
    if other.any():  # date or timestamp objects
        out[other] = pd.to_datetime(cells[other], errors="coerce").to_numpy(dtype="datetime64[ns]")
    return out.astype("datetime64[D]").astype("datetime64[ns]")


# --------------------------------------------------------------------------------------------------
# The engine's answers a criteria set's parameters are written from
# --------------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """`bor.best_overall_response` over a set's per-visit responses with one confirmation setting."""

    settings: BorSettings
    subjects: pd.DataFrame  # indexed by subject_id: best response, its day, flags, event days
    # subject_id, timepoint, day, response, role the visit counted as (None: did not count), and `order`: the
    # engine's visit order (a visit with a partial date has no day but still has its place)
    follow: pd.DataFrame


def _run(result: RuleSetResult, confirmation: bool | None) -> _Run:
    """The best response of every stream as `score` computes it (engine._best), confirmation set as asked."""
    spec = result.rule_set.schema.best_response
    assert spec is not None
    scale = result.rule_set.scale
    settings = BorSettings.from_params(dict(result.params)) if spec.method == "recist" else BorSettings()
    if confirmation is not None:
        settings = dataclasses.replace(settings, confirmation_required=confirmation)
    tp = result.timepoints
    assert result.best is not None
    everyone = result.best["subject_id"].to_numpy(dtype=object)
    follow = pd.DataFrame(
        {
            "subject_id": tp["subject_id"].to_numpy(dtype=object),
            "timepoint": tp["timepoint"].to_numpy(dtype=object),
            "day": tp["day"].to_numpy(dtype=float),
            "response": tp[spec.output].to_numpy(dtype=object) if spec.output in tp else None,
            "order": np.arange(len(tp), dtype=float),
        }
    )
    # Every stream is scored, also one without a follow-up (its best response is then the `missing` role's word).
    bor = best_overall_response(
        np.r_[follow["subject_id"].to_numpy(dtype=object), everyone],
        np.r_[follow["day"].to_numpy(dtype=float), np.full(len(everyone), np.nan)],
        np.r_[follow["response"].to_numpy(dtype=object), np.full(len(everyone), None, dtype=object)],
        settings,
        scale,
        spec.method,
    )
    counted = pd.Series(bor.contribution[: len(follow)], dtype=object)
    follow["counted_role"] = counted.map(scale.role_of).to_numpy(dtype=object)
    subjects = bor.subjects.set_index("subject")
    return _Run(settings, subjects, follow)


def _first_day_with_roles(run: _Run, roles: frozenset[str] | set[str]) -> pd.Series:
    """Per stream, the first visit that counted as one of `roles` (admiralonco: the event's ADT)."""
    hit = run.follow.loc[run.follow["counted_role"].isin(list(roles))]
    return hit.groupby("subject_id")["day"].min()


# --------------------------------------------------------------------------------------------------
# ADRS
# --------------------------------------------------------------------------------------------------


def _aval(words: pd.Series, result: RuleSetResult) -> pd.Series:
    scale = result.rule_set.scale
    codes = {w: AVAL_BY_ROLE.get(scale.role_of(w) or "") for w in pd.unique(words.dropna())}
    return words.map(codes).astype("Int64")


def _yes_no(flags: pd.Series) -> pd.Series:
    return flags.map(YES_NO_AVAL).astype("Int64")


def _param_texts(result: RuleSetResult, settings: BorSettings) -> dict[str, tuple[str, str]]:
    """PARAM per PARAMCD as (name, derivation); the evaluator goes between them ("... by Investigator (...)")."""
    scale = result.rule_set.scale
    responses = "/".join(scale.responders)
    if result.rule_set.schema.best_response is None or result.rule_set.schema.best_response.method != "recist":
        ranked = " (best-ranked response)"
        return {
            "OVR": ("Overall Response", ""),
            "BOR": ("Best Overall Response", ranked),
            "RSP": ("Response", ranked),
            "CB": ("Clinical Benefit", ranked),
            "BCP": (f"Best Overall Response of {responses}", ranked),
            "PD": ("Disease Progression", ""),
            "LSTA": ("Last Adequate Disease Assessment", ""),
        }
    sd = f"{scale.word('stable')} at least {settings.sd_min_days:g} days after {SD_REFERENCE}"
    confirmed = f"confirmed at least {settings.min_confirmation_interval_days:g} days later"
    return {
        "OVR": ("Overall Response", ""),
        "BOR": ("Best Overall Response", f" (confirmation not required; {sd})"),
        "CBOR": ("Best Confirmed Overall Response", f" ({confirmed}; {sd})"),
        "RSP": ("Response", " (confirmation not required)"),
        "CRSP": ("Confirmed Response", f" ({confirmed})"),
        "CB": ("Clinical Benefit", f" (confirmation for response not required; {sd})"),
        "CCB": ("Confirmed Clinical Benefit", f" ({confirmed}; {sd})"),
        "BCP": (f"Best Overall Response of {responses}", " (confirmation not required)"),
        "CBCP": (f"Best Confirmed Overall Response of {responses}", f" ({confirmed})"),
        "PD": ("Disease Progression", ""),
        "LSTA": ("Last Adequate Disease Assessment", ""),
        "MDIS": ("Measurable Disease at Baseline", ""),
    }


def _ovr_rows(result: RuleSetResult, run: _Run) -> pd.DataFrame:
    """One OVR record per assessment with a response. ANL01FL: the engine counted the visit (admiralonco: a valid
    response on or after the reference date; one per date, as the readers refuse two assessments on one day);
    ANL02FL: up to and including the first progression."""
    # In visit order, not by day: a visit with a partial date (day unknown) before the progression is before it.
    follow = run.follow.loc[run.follow["response"].notna()].sort_values(["subject_id", "order"], kind="stable")
    spec = result.rule_set.schema.best_response
    method = spec.method if spec is not None else "recist"
    scale = result.rule_set.scale
    codes = role_codes(follow["response"].to_numpy(dtype=object), scale, method)
    progression = (follow["response"].map(scale.role_of) == "progression").to_numpy()
    before = pd.Series(progression.astype(int)).groupby(follow["subject_id"].to_numpy(dtype=object)).cumsum()
    up_to_pd = (before.to_numpy() - progression) == 0
    return pd.DataFrame(
        {
            "subject_id": follow["subject_id"].to_numpy(dtype=object),
            "timepoint": follow["timepoint"].to_numpy(dtype=object),
            "day": follow["day"].to_numpy(dtype=float),
            "PARAMCD": "OVR",
            "AVALC": follow["response"].to_numpy(dtype=object),
            "AVAL": _aval(follow["response"], result).to_numpy(),
            "ANL01FL": np.where(codes != NO_ROLE, "Y", ""),
            "ANL02FL": np.where(up_to_pd, "Y", ""),
        }
    )


def _subject_param(code: str, subjects: pd.Index, avalc: pd.Series, aval: pd.Series, day: pd.Series) -> pd.DataFrame:
    """One record per stream: AVALC/AVAL, and the day of the visit it was taken from (NaN: none)."""
    return pd.DataFrame(
        {
            "subject_id": subjects.to_numpy(dtype=object),
            "timepoint": None,
            "day": day.reindex(subjects).to_numpy(dtype=float),
            "PARAMCD": code,
            "AVALC": avalc.reindex(subjects).to_numpy(dtype=object),
            "AVAL": aval.reindex(subjects).to_numpy(),
            "ANL01FL": "Y",
            "ANL02FL": "",
        }
    )


def _best_params(result: RuleSetResult, run: _Run, confirmed: bool) -> list[pd.DataFrame]:
    """BOR, RSP, CB, BCP (or CBOR, CRSP, CCB, CBCP) of one run, dated as admiralonco dates them: the best
    response's visit; the first response; the first visit counting towards clinical benefit; BOR's visit."""
    scale = result.rule_set.scale
    s = run.subjects
    ids = s.index
    prefix = "C" if confirmed else ""
    bor = s["best_overall_response"]
    bor_day = s["best_overall_response_day"].astype(float)
    responder, benefit = s["responder"], s["clinical_benefit"]
    bcp = pd.Series(np.where(bor.map(scale.role_of).isin(list(scale.responder_roles)), "Y", "N"), index=ids)
    never = pd.Series(np.nan, index=ids)
    return [
        _subject_param(prefix + "BOR", ids, bor, _aval(bor, result), bor_day),
        _subject_param(
            prefix + "RSP", ids, responder, _yes_no(responder), _first_day_with_roles(run, scale.responder_roles)
        ),
        _subject_param(
            ("CCB" if confirmed else "CB"),
            ids,
            benefit,
            _yes_no(benefit),
            _first_day_with_roles(run, scale.benefit_roles),
        ),
        _subject_param(prefix + "BCP", ids, bcp, _yes_no(bcp), bor_day.where(bcp == "Y", never)),
    ]


def _event_params(result: RuleSetResult, run: _Run, prepared: Prepared) -> list[pd.DataFrame]:
    """PD (first progression), LSTA (last adequate assessment, with its response) and, for sets that measure
    target lesions, MDIS (a target lesion at baseline)."""
    s = run.subjects
    ids = s.index
    pd_day = s["first_pd_day"].astype(float)
    progressed = pd.Series(np.where(pd_day.notna(), "Y", "N"), index=ids)
    last_day = s["last_assessment_day"].astype(float)
    response_at = run.follow.set_index(["subject_id", "day"])["response"]
    last_key = pd.MultiIndex.from_arrays([ids.to_numpy(dtype=object), last_day.to_numpy()])
    last_word = pd.Series(response_at.reindex(last_key).to_numpy(dtype=object), index=ids)
    parts = [
        _subject_param("PD", ids, progressed, _yes_no(progressed), pd_day),
        _subject_param("LSTA", ids, last_word, _aval(last_word, result), last_day),
    ]
    spec = result.rule_set.schema.best_response
    if spec is not None and spec.method == "recist":
        lesions = prepared.lesions
        at_baseline = lesions["is_baseline"].to_numpy(dtype=bool) & (lesions["kind"] == "target").to_numpy()
        measurable = set(lesions.loc[at_baseline, "subject_id"])
        mdis = pd.Series(np.where(ids.isin(list(measurable)), "Y", "N"), index=ids)
        parts.append(_subject_param("MDIS", ids, mdis, _yes_no(mdis), pd.Series(dtype=float)))
    return parts


def _adrs_for_set(
    result: RuleSetResult, runs: dict[bool, _Run], keys: _Keys, prepared: Prepared, rs_seq: pd.DataFrame | None
) -> pd.DataFrame:
    unconfirmed = runs[False]
    parts = [_ovr_rows(result, unconfirmed), *_best_params(result, unconfirmed, False)]
    if True in runs:
        parts += _best_params(result, runs[True], True)
    parts += _event_params(result, unconfirmed, prepared)
    rows = pd.concat(parts, ignore_index=True)
    rows = _with_timing(rows, keys.visits)
    if rs_seq is not None:
        rows = rows.merge(rs_seq, on=["subject_id", "timepoint"], how="left")
        rows.loc[rows["PARAMCD"] != "OVR", "RSSEQ"] = np.nan
    texts = _param_texts(result, runs.get(True, unconfirmed).settings)
    return _with_keys(rows, keys.streams, texts, TUMOR_RESPONSE, rs_category(result), "RSEVAL")


def _with_timing(rows: pd.DataFrame, visits: pd.DataFrame) -> pd.DataFrame:
    """AVISIT, AVISITN, ADT, ADTF, ADY of the visit each record was taken from (by visit id, else by day: one
    visit per day and stream); BLDAYS is the record's own day."""
    timing = ["AVISIT", "AVISITN", "ADT", "ADTF", "ADY", "_visit_rank"]
    by_tp = rows[["subject_id", "timepoint"]].merge(
        visits[["subject_id", "timepoint", *timing]], on=["subject_id", "timepoint"], how="left"
    )
    by_day = rows[["subject_id", "day"]].merge(
        visits[["subject_id", "BLDAYS", *timing]]
        .rename(columns={"BLDAYS": "day"})
        .drop_duplicates(["subject_id", "day"]),
        on=["subject_id", "day"],
        how="left",
    )
    out = rows.reset_index(drop=True)
    has_tp = out["timepoint"].notna().to_numpy()
    dated = out["day"].notna().to_numpy()
    for column in timing:
        by_visit = np.where(has_tp, by_tp[column].to_numpy(), by_day[column].to_numpy())
        out[column] = pd.Series(by_visit).where(has_tp | dated).to_numpy()
    out["BLDAYS"] = out["day"]
    return out


def _with_keys(
    rows: pd.DataFrame,
    streams: pd.DataFrame,
    texts: dict[str, tuple[str, str]],
    parcat1: str,
    parcat3: str,
    evaluator_column: str,
) -> pd.DataFrame:
    """Stream keys, PARAM ("Overall Response by Investigator"), PARCAT1-3 (PARCAT2 the evaluator as admiralonco
    writes it: Investigator)."""
    out = rows.merge(streams, on="subject_id", how="left")
    evaluator = _text(out, evaluator_column).str.title()
    by = (" by " + evaluator).where(evaluator != "", "")
    name = out["PARAMCD"].map({c: t[0] for c, t in texts.items()}).fillna(out["PARAMCD"]).astype(str)
    derivation = out["PARAMCD"].map({c: t[1] for c, t in texts.items()}).fillna("").astype(str)
    out["PARAM"] = (name + by + derivation).to_numpy(dtype=object)
    out["PARCAT1"] = parcat1
    out["PARCAT2"] = evaluator.to_numpy(dtype=object)
    out["PARCAT3"] = parcat3
    return out


def _death_rows(deaths: pd.DataFrame, keys: _Keys) -> pd.DataFrame:
    """DEATH once per subject (admiralonco: PARCAT1 "Reference Event"; Y with the death date, N without)."""
    subjects = keys.streams.drop_duplicates("USUBJID")[["STUDYID", "USUBJID"]].reset_index(drop=True)
    given = deaths.drop_duplicates("subject_id").set_index("subject_id")
    at = given.reindex(subjects["USUBJID"].to_numpy(dtype=object))
    died = at["day"].notna().to_numpy() | at["date"].notna().to_numpy()
    return pd.DataFrame(
        {
            "STUDYID": subjects["STUDYID"],
            "USUBJID": subjects["USUBJID"],
            "RSEVAL": "",
            "RSEVALID": "",
            "RSACPTFL": "",
            "PARAMCD": "DEATH",
            "PARAM": "Death",
            "PARCAT1": "Reference Event",
            "PARCAT2": "",
            "PARCAT3": "",
            "AVALC": np.where(died, "Y", "N"),
            "AVAL": np.where(died, 1, 0),
            "ADT": at["date"].to_numpy(dtype="datetime64[ns]"),
            "ADTF": "",
            "ADY": np.nan,
            "BLDAYS": at["day"].to_numpy(dtype=float),
            "AVISIT": "",
            "AVISITN": np.nan,
            "ANL01FL": "Y",
            "ANL02FL": "",
        }
    )


# --------------------------------------------------------------------------------------------------
# ADTR
# --------------------------------------------------------------------------------------------------


def _sum_rows(result: RuleSetResult, run: _Run) -> pd.DataFrame:
    """SDIAM per visit with a target measured: AVAL the sum over the targets measured (admiralonco sums what was
    assessed), ANL01FL when every baseline target was measured; BASE, NADIR and the changes from the nadir are
    the engine's, CHG/PCHG are AVAL - BASE (ADaM)."""
    base = result.baseline.set_index("subject_id")
    tp = result.timepoints
    available = "available_sum_mm" if "available_sum_mm" in tp else "sum_mm"
    baseline = pd.DataFrame(
        {
            "subject_id": base.index.to_numpy(dtype=object),
            "timepoint": base["timepoint"].to_numpy(dtype=object),
            "day": 0.0,
            "order": -1.0,
            "AVAL": base["baseline_sum_mm"].to_numpy(dtype=float),
            "complete": base["baseline_sum_mm"].notna().to_numpy(),
            "ABLFL": "Y",
            "NADIR": np.nan,
            "CHGNAD": np.nan,
            "PCHGNAD": np.nan,
        }
    )
    follow = pd.DataFrame(
        {
            "subject_id": tp["subject_id"].to_numpy(dtype=object),
            "timepoint": tp["timepoint"].to_numpy(dtype=object),
            "day": tp["day"].to_numpy(dtype=float),
            "order": np.arange(len(tp), dtype=float),
            "AVAL": tp[available].to_numpy(dtype=float),
            "complete": tp["sum_mm"].notna().to_numpy(),
            "ABLFL": "",
            "NADIR": tp["nadir_mm"].to_numpy(dtype=float) if "nadir_mm" in tp else np.nan,
            "CHGNAD": tp["mm_from_nadir"].to_numpy(dtype=float) if "mm_from_nadir" in tp else np.nan,
            "PCHGNAD": tp["pct_from_nadir"].to_numpy(dtype=float) if "pct_from_nadir" in tp else np.nan,
        }
    )
    rows = pd.concat([baseline, follow], ignore_index=True)
    rows = rows.loc[rows["AVAL"].notna()].sort_values(["subject_id", "order"], kind="stable").reset_index(drop=True)
    rows["BASE"] = base["baseline_sum_mm"].reindex(rows["subject_id"]).to_numpy(dtype=float)
    is_base = rows["ABLFL"] == "Y"
    rows["CHG"] = np.where(is_base, np.nan, rows["AVAL"] - rows["BASE"])
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["PCHG"] = np.where(is_base | (rows["BASE"] == 0), np.nan, 100 * rows["CHG"] / rows["BASE"])
    return _sum_flags(rows, _first_progression_order(run, result)).drop(columns=["order"])


def _first_progression_order(run: _Run, result: RuleSetResult) -> pd.Series:
    """Per subject, the visit order (`_Run.follow`) of its first progression (as ADRS ANL02FL reads it): the
    visit, not its day, because a progression on a partial date has no day."""
    follow = run.follow
    progression = follow.loc[(follow["response"].map(result.rule_set.scale.role_of) == "progression").to_numpy()]
    return progression.groupby("subject_id")["order"].min()


def _sum_flags(rows: pd.DataFrame, first_pd: pd.Series) -> pd.DataFrame:
    """PDFL on the first progression's visit (admiralonco: the PD date of ADRS); ANL01FL all baseline targets
    measured; ANL02FL the best PCHG after baseline (the waterfall value); ANL03FL complete sums before the first
    progression, ANL04FL complete sums and the progression visit, up to it (the spider series: a progression
    scored on part of the targets stays in it)."""
    pd_order = first_pd.reindex(rows["subject_id"]).to_numpy(dtype=float)
    order = rows["order"].to_numpy(dtype=float)
    complete = rows["complete"].to_numpy(dtype=bool)
    with np.errstate(invalid="ignore"):
        pdfl = order == pd_order
        before_pd = np.isnan(pd_order) | (order < pd_order)
    rows["PDFL"] = np.where(pdfl, "Y", "")
    rows["ANL01FL"] = np.where(complete, "Y", "")
    waterfall = rows.loc[complete & (rows["ABLFL"] != "Y").to_numpy() & rows["PCHG"].notna().to_numpy()]
    best = waterfall.sort_values(["subject_id", "PCHG", "day"], kind="stable").drop_duplicates("subject_id").index
    rows["ANL02FL"] = np.where(rows.index.isin(best), "Y", "")
    rows["ANL03FL"] = np.where(complete & before_pd, "Y", "")
    rows["ANL04FL"] = np.where((complete & before_pd) | pdfl, "Y", "")
    return rows.drop(columns=["complete"])


def _lesion_rows(result: RuleSetResult, prepared: Prepared) -> pd.DataFrame:
    """LDIAMn (non-nodal longest diameter) and NLDIAMn (short axis of a node) per target lesion and visit, as the
    engine measures it (lesion_mm: too small = the set's default, gone = 0); n numbers the stream's targets in
    lesion-id order. ANL01FL when measured."""
    ctx = Context(prepared, result.params, result.rule_set.scale)
    lesions = prepared.lesions
    target = np.asarray(ctx.get("is_target", "lesion"), dtype=bool)
    rows = pd.DataFrame(
        {
            "subject_id": lesions["subject_id"].to_numpy(dtype=object),
            "timepoint": lesions["timepoint"].to_numpy(dtype=object),
            "day": lesions["day"].to_numpy(dtype=float),
            "TRLNKID": lesions["lesion_id"].astype(str).to_numpy(dtype=object),
            "AVAL": np.asarray(ctx.get("lesion_mm", "lesion"), dtype=float),
            "node": np.asarray(ctx.get("is_node", "lesion"), dtype=bool),
        }
    ).loc[target]
    if rows.empty:
        return rows.assign(PARAMCD=pd.Series(dtype=object), ANL01FL=pd.Series(dtype=object)).drop(columns="node")
    numbers = rows[["subject_id", "TRLNKID"]].drop_duplicates().sort_values(["subject_id", "TRLNKID"], kind="stable")
    numbers["n"] = numbers.groupby("subject_id").cumcount() + 1
    rows = rows.merge(numbers, on=["subject_id", "TRLNKID"], how="left")
    rows["PARAMCD"] = np.where(rows["node"], "NLDIAM", "LDIAM") + rows["n"].astype(str)
    rows["ANL01FL"] = np.where(rows["AVAL"].notna(), "Y", "")
    return rows.drop(columns=["node"])


def _adtr_for_set(result: RuleSetResult, run: _Run, keys: _Keys, prepared: Prepared) -> pd.DataFrame | None:
    """None for a set without a sum of diameters (Chun, PERCIST, WHO's products, ...)."""
    if "baseline_sum_mm" not in result.baseline or "sum_mm" not in result.timepoints:
        return None
    sums = _sum_rows(result, run).assign(PARAMCD="SDIAM")
    lesions = _lesion_rows(result, prepared)
    rows = pd.concat([lesions, sums], ignore_index=True)
    rows = _with_timing(rows, keys.visits)
    texts = {"SDIAM": ("Target Lesions Sum of Diameters", "")}
    for code in pd.unique(rows["PARAMCD"]):
        n = str(code).removeprefix("N").removeprefix("LDIAM")
        if code != "SDIAM":
            kind = "Analysis Perpendicular" if str(code).startswith("N") else "Analysis Diameter"
            texts[str(code)] = (f"Target Lesion {n} {kind}", "")
    streams = keys.streams.rename(columns={"RSEVAL": "TREVAL", "RSEVALID": "TREVALID"})
    return _with_keys(rows, streams, texts, TARGET_LESIONS, rs_category(result), "TREVAL")


# --------------------------------------------------------------------------------------------------
# Both datasets
# --------------------------------------------------------------------------------------------------


def _rs_sequence(
    results: Mapping[str, RuleSetResult], sdtm: SdtmStreams | None
) -> tuple[str | None, pd.DataFrame | None]:
    """RSSEQ of each visit's OVRLRESP record in the RS `--out-rs` writes (SDTM input, the RS criteria set)."""
    response = response_result(results)
    if sdtm is None or response is None:
        return None, None
    rs = rs_rows(response, sdtm)
    ovr = rs.loc[rs["RSTESTCD"] == "OVRLRESP", ["USUBJID", "RSEVAL", "RSEVALID", "VISITNUM", "RSSEQ"]]
    streams = sdtm.streams.rename(columns={"EVAL": "RSEVAL", "EVALID": "RSEVALID"})[
        ["subject_id", "USUBJID", "RSEVAL", "RSEVALID"]
    ]
    visits = sdtm.visits[["subject_id", "timepoint", "VISITNUM"]].merge(streams, on="subject_id", how="left")
    linked = visits.merge(ovr, on=["USUBJID", "RSEVAL", "RSEVALID", "VISITNUM"], how="inner")
    return response.id, linked[["subject_id", "timepoint", "RSSEQ"]].drop_duplicates(["subject_id", "timepoint"])


@with_object_strings
def adam_tables(
    results: Mapping[str, RuleSetResult],
    prepared: Prepared,
    sdtm: SdtmStreams | None = None,
    study_id: str | None = None,
    deaths: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ADRS and ADTR for every response criteria set of `results` that has a best response.

    `sdtm`: the stream and visit details of SDTM input (keys copied from TR, RSSEQ linked to RS); `study_id`:
    STUDYID when the data has none; `deaths`: subject_id, day, date of deaths (`read_subject_days`)."""
    keys = _Keys(stream_keys(prepared, sdtm, study_id), visit_keys(prepared, sdtm))
    rs_id, rs_seq = _rs_sequence(results, sdtm)
    adrs_parts: list[pd.DataFrame] = []
    adtr_parts: list[pd.DataFrame] = []
    order = [r for r in ordered_ids(list(results)) if _scored_response(results[r])]
    for rule_id in order:
        result = results[rule_id]
        spec = result.rule_set.schema.best_response
        assert spec is not None
        runs = {False: _run(result, False)}
        if spec.method == "recist":
            runs[True] = _run(result, True)
        adrs_parts.append(_adrs_for_set(result, runs, keys, prepared, rs_seq if rule_id == rs_id else None))
        adtr = _adtr_for_set(result, runs[False], keys, prepared)
        if adtr is not None:
            adtr_parts.append(adtr)
    if deaths is not None:
        adrs_parts.append(_death_rows(deaths, keys))
    rank = {rs_category(results[r]): i for i, r in enumerate(order)}
    adrs = _finish(adrs_parts, ADRS_COLUMNS, ["RSEVAL", "RSEVALID"], rank, ("AVAL", "AVISITN", "ADY", "BLDAYS"))
    adtr = _finish(adtr_parts, ADTR_COLUMNS, ["TREVAL", "TREVALID"], rank, ("AVISITN", "ADY", "BLDAYS"))
    return adrs, adtr


def _scored_response(result: RuleSetResult) -> bool:
    return result.rule_set.schema.kind == "response" and result.best is not None


def _finish(
    parts: list[pd.DataFrame], columns: list[str], readers: list[str], rank: dict[str, int], counts: tuple[str, ...]
) -> pd.DataFrame:
    """Columns in order, types settled, records sorted; ASEQ numbers a subject's records (admiralonco orders by
    PARAMCD and date within the subject; here also by criteria set and reader first)."""
    filled = [p for p in parts if not p.empty]
    if not filled:
        return pd.DataFrame(columns=columns)
    out = pd.concat(filled, ignore_index=True)
    out["_set"] = out["PARCAT3"].map(rank).fillna(-1)
    out["_day"] = out["BLDAYS"].astype(float)
    if "_visit_rank" not in out:
        out["_visit_rank"] = np.nan
    keys = ["USUBJID", "_set", *readers, "PARAMCD", "_visit_rank", "_day", "AVISITN"]
    out = out.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
    out["ASEQ"] = out.groupby("USUBJID").cumcount() + 1
    for column in columns:
        if column not in out:
            out[column] = np.nan if column in ("RSSEQ",) else ""
    out = out[columns].copy()
    return _typed(out, (*counts, "ASEQ", "RSSEQ"))


def _typed(out: pd.DataFrame, counts: tuple[str, ...]) -> pd.DataFrame:
    """Counts and codes as integers (missing allowed; a fractional visit number stays a number), measurements to
    two decimals, dates as dates, text as text."""
    for column in counts:
        if column in out:
            values = pd.to_numeric(out[column], errors="coerce")
            whole = values.dropna()
            out[column] = values.astype("Int64") if (whole == whole.round()).all() else values.round(2)
    for column in ("AVAL", "BASE", "CHG", "PCHG", "NADIR", "CHGNAD", "PCHGNAD"):
        if column in out and column not in counts:
            out[column] = pd.to_numeric(out[column], errors="coerce").round(2)
    if "ADT" in out:
        stamps = pd.to_datetime(out["ADT"], errors="coerce")
        days = stamps.dt.date.astype(object)
        out["ADT"] = days.where(stamps.notna(), None)
    for column in out.columns:
        if column != "ADT" and not pd.api.types.is_numeric_dtype(out[column].dtype):
            text = out[column].astype(object)
            text = text.where(text.notna(), "").astype(str)
            out[column] = text.where(text != "", None).astype(object)  # missing text is missing, not ""
    return out

"""A printable one-patient report for a tumour board: one self-contained HTML page (images embedded, nothing
loaded from elsewhere) that prints on one A4 page for a typical case.

Page one, top to bottom: the case and its treatment; a summary box (best overall response per criteria set with
its date and whether confirmation was required, the latest status, the date of progression, toxicity flags in plain
words, the number of warnings); the sum of the target lesions over time with the criteria set's own response and
progression thresholds; the per-timepoint table with every decision's reason; every lesion with organ, location and
its readings per timepoint (ablated lesions with their ablation readings); toxicity and warnings in detail;
parameters that differ from the rule files (case `settings`, `--set`); the references cited on the page; the date
the report was made and the tool version.

Words, not codes: response words are the criteria's own (their label when spelled as an identifier), flags show
their label, fields their label (models.FIELD_LABELS, render.COLUMN_LABELS); codes stay in JSON and CSV.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__
from .assessment import Assessment
from .conditions import format_value
from .models import Case, Lesion, Timepoint
from .render import display_value, flag_label, header_of, label_of, unit_of
from .roles import ROLE_TEXT_COLOURS, ResponseScale
from .rules import LoadedRuleSet

CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: Arial, "Liberation Sans", "Helvetica Neue", Helvetica, sans-serif; font-size: 9pt; color: #111;
  margin: 16px auto; padding: 0 16px; max-width: 930px; line-height: 1.22; }
h1 { font-size: 14pt; margin: 0 0 1px; }
h2 { font-size: 10pt; margin: 6px 0 2px; padding-bottom: 1px; border-bottom: 1px solid #999; break-after: avoid; }
h2 .muted { font-size: 7.5pt; font-weight: normal; }
h3 { font-size: 8pt; margin: 4px 0 1px; break-after: avoid; }
p { margin: 1px 0; }
table { border-collapse: collapse; margin: 2px 0 3px; width: 100%; }
th, td { border: 1px solid #c8c8c8; padding: 1px 4px; text-align: left; vertical-align: top; }
th { background: #eeeeee; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #555; } .small { font-size: 7.5pt; } .nowrap { white-space: nowrap; }
.word { font-weight: bold; white-space: nowrap; }
.box { border: 1.5px solid #333; padding: 3px 7px 4px; margin: 5px 0; break-inside: avoid; }
.box h2 { border: 0; margin: 0 0 1px; }
.box table { margin: 2px 0; }
.box td, .box th { border-color: #d8d8d8; }
.flow { display: flow-root; }
#trajectory.float { float: left; width: 36%; margin: 2px 12px 2px 0; break-inside: avoid; }
#trajectory.float h2 { font-size: 8pt; margin: 2px 0 0; border: 0; }
ul.flags { margin: 0; padding-left: 16px; } li.flag { margin: 1px 0; }
.chart img { width: 100%; display: block; }
.why { font-size: 7pt; margin: 0; padding-left: 1.2em; text-indent: -1.2em; break-inside: avoid; }
.whys { margin: 2px 0 3px; } .whys h3 { font-size: 7.5pt; margin: 2px 0 0; }
.refs { font-size: 7pt; color: #333; }
@page { size: A4; margin: 9mm 10mm; }
@media print { body { margin: 0; padding: 0; max-width: none; font-size: 8pt; line-height: 1.15; }
  table { font-size: 7pt; } .box table { font-size: 7.5pt; } a { color: inherit; text-decoration: none; }
  tr, .why { break-inside: avoid; } }
"""

MEASURES = (
    "longest_diameter_mm",
    "short_axis_mm",
    "perpendicular_mm",
    "viable_diameter_mm",
    "viable_perpendicular_mm",
    "attenuation_hu",
    "morphology_group",
    "intratumoral_nodule",
    "ablation_zone_covers_tumor",
    "enhancing_tissue_at_ablation_edge",
    "min_margin_mm",
    "equivocal",
    "detected_by",
    "confirmed_on_ct",
    "coalesced_into",
)
QUIET_COLUMNS = ("day", "available_sum_mm", "targets_evaluated")


def _e(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else format_value(value))


# ---------------------------------------------------------------------------------------------------------
# What the page is built from
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    id: str
    day: int
    date: dt.date | None
    modality: str | None

    @property
    def when(self) -> str:
        return self.date.isoformat() if self.date is not None else f"day {self.day}"

    def at(self) -> str:
        """`FU2, 2025-05-12` (or `FU2, day 126` without dates)."""
        return f"{self.id}, {self.when}"


def _visits(case: Case, assessment: Assessment) -> dict[str, Visit]:
    """Every timepoint with its day since baseline (as the engine counted it) and date, in time order."""
    days: dict[str, int] = {}
    baseline_id = None
    for result in assessment.results.values():
        if not result.baseline.empty and "timepoint" in result.baseline:
            baseline_id = str(result.baseline["timepoint"].iat[0])
        for tp, day in zip(result.timepoints["timepoint"], result.timepoints["day"], strict=True):
            if day is not None and day == day:
                days[str(tp)] = int(day)
    baseline = next((tp for tp in case.timepoints if tp.id == baseline_id), None) or _earliest(case.timepoints)
    days[baseline.id] = 0
    for tp in case.timepoints:
        if tp.id not in days:
            days[tp.id] = _day(tp, baseline)
    visits = [Visit(tp.id, days[tp.id], tp.date, tp.modality) for tp in case.timepoints]
    return {v.id: v for v in sorted(visits, key=lambda v: v.day)}


def _earliest(timepoints: Sequence[Timepoint]) -> Timepoint:
    return min(timepoints, key=lambda t: (t.day if t.day is not None else 0, t.date or dt.date.min))


def _day(tp: Timepoint, baseline: Timepoint) -> int:
    if tp.date is not None and baseline.date is not None:
        return (tp.date - baseline.date).days
    return (tp.day or 0) - (baseline.day or 0)


def _scale(assessment: Assessment, rule_id: str) -> ResponseScale:
    return assessment.results[rule_id].rule_set.scale


def _word(value: Any, scale: ResponseScale, with_label: bool = False) -> str:
    """A response word, coloured by its role; with its plain label after it when asked."""
    if value is None:
        return '<span class="muted">&mdash;</span>'
    role = scale.role_of(value)
    colour = ROLE_TEXT_COLOURS.get(role or "", "#333333")
    text = f'<span class="word" style="color:{colour}">{_e(scale.display(value))}</span>'
    label = scale.label(str(value))
    if with_label and label.lower() != scale.display(value).lower():
        text += f' <span class="small">{_e(label)}</span>'
    return text


def _cell(value: Any, raw: bool = False) -> str:
    if raw:
        return f"<td>{value}</td>"
    if value is None or (isinstance(value, float) and value != value):
        return '<td class="muted">&mdash;</td>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{_e(value)}</td>'
    return f"<td>{_e(display_value(value) if isinstance(value, bool) else value)}</td>"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], raw: Sequence[int] = ()) -> str:
    """A table; columns whose index is in `raw` hold HTML already escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v, i in raw) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------


def _header(case: Case, visits: Mapping[str, Visit]) -> list[str]:
    """The case and its treatment, in one line under the heading."""
    treatment = case.treatment
    first, last = next(iter(visits.values())), list(visits.values())[-1]
    bits = [treatment.regimen or "", ", ".join(treatment.agents), display_value(treatment.setting)]
    if treatment.procedure_day is not None:
        bits.append(f"{label_of('procedure_day')} {treatment.procedure_day}")
    modalities = ", ".join(dict.fromkeys(v.modality for v in visits.values() if v.modality))
    bits.append(f"{len(visits)} timepoints{' (' + modalities + ')' if modalities else ''}, {first.when} to {last.when}")
    parts = ['<section id="patient">', f"<h1>Response report: {_e(case.case_id)}</h1>"]
    parts.append('<p class="muted">' + _e(" · ".join(b for b in bits if b)) + "</p>")
    if case.description:
        parts.append(f'<p class="muted small">{_e(case.description)}</p>')
    parts.append("</section>")
    return parts


def _summary(assessment: Assessment, data: Mapping[str, Any], visits: Mapping[str, Visit]) -> list[str]:
    """The box at the top: verdicts per criteria set, toxicity flags in plain words, how many warnings."""
    rows = [_summary_row(block, _scale(assessment, rule_id), visits) for rule_id, block in data["criteria"].items()]
    parts = ['<section class="box" id="summary"><h2>Summary</h2>']
    if rows:
        headers = ["criteria set", "best overall response", "reached", "confirmation", "latest", "progression"]
        parts.append(_table(headers, rows, raw=range(6)))
    parts.append(_toxicity(assessment, data, visits))
    warnings = data.get("warnings") or []
    disagree = data.get("disagreements") or []
    line = f"<b>Warnings:</b> {len(warnings)}" + (" (see below)" if warnings else " (none)")
    if disagree:
        line += " · <b>Criteria disagree</b> at " + ", ".join(_e(d["timepoint"]) for d in disagree)
    parts.append(f"<p>{line}</p></section>")
    return parts


def _summary_row(block: Mapping[str, Any], scale: ResponseScale, visits: Mapping[str, Visit]) -> list[str]:
    timepoints = block.get("timepoints", [])
    params = block.get("parameters", {})
    bor = block.get("best_overall_response")
    where = str(block.get("best_overall_response_timepoint"))
    reached = _e(visits[where].at()) if where in visits else '<span class="muted">&mdash;</span>'
    confirmation = "&mdash;"
    if "confirmation_required" in params:
        confirmation = "required" if params["confirmation_required"] else "not required"
    latest = timepoints[-1] if timepoints else None
    latest_cell = (
        f"{_word(latest.get('overall'), scale)} at {_e(visits[latest['id']].at())}"
        if latest is not None and latest["id"] in visits
        else '<span class="muted">no follow-up</span>'
    )
    progressed = next((tp for tp in timepoints if scale.role_of(tp.get("overall")) == "progression"), None)
    progression = (
        f"{_word(progressed['overall'], scale)} at {_e(visits[progressed['id']].at())}"
        if progressed is not None and progressed["id"] in visits
        else "none"
    )
    best = _word(bor, scale, with_label=True) if "best_overall_response" in block else "&mdash;"
    return [f"<b>{_e(block['name'])}</b>", best, reached, confirmation, latest_cell, progression]


def _toxicity(assessment: Assessment, data: Mapping[str, Any], visits: Mapping[str, Visit]) -> str:
    """Each flag in plain words: when it was raised, its label, the latest evidence with numbers and context, its
    source and evidence level. A flag raised at several timepoints is one item (the latest evidence shown)."""
    if not data.get("toxicity_assessed", True):
        note = '<span class="muted">not assessed (the toxicity rule set was not run)</span>'
        return f'<p id="toxicity"><b>Toxicity flags:</b> {note}</p>'
    flags = data.get("toxicity") or []
    if not flags:
        return '<p id="toxicity"><b>Toxicity flags:</b> none raised</p>'
    rule_sets = {k: r.rule_set for k, r in assessment.results.items()}
    grouped: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for flag in flags:
        grouped.setdefault((str(flag.get("criteria")), str(flag["flag"]), str(flag.get("lesion") or "")), []).append(
            flag
        )
    items = []
    for (_, _, lesion), raised in grouped.items():
        latest = raised[-1]
        when = " and ".join(
            visits[f["timepoint"]].at() if f["timepoint"] in visits else str(f["timepoint"]) for f in raised
        )
        grade = f", grade {latest['grade']}" if latest.get("grade") is not None else ""
        source = f"[{latest.get('citation')}; evidence {latest.get('evidence_level')}]"
        items.append(
            f'<li class="flag"><b>{_e(when)}</b>{_e(f" ({lesion})" if lesion else "")}: '
            f"<b>{_e(flag_label(latest, rule_sets))}</b>{_e(grade)}. {_e(latest.get('explanation') or '')} "
            f'<span class="small muted">{_e(source)}</span></li>'
        )
    return '<div id="toxicity"><b>Toxicity flags:</b><ul class="flags">' + "".join(items) + "</ul></div>"


def _chart(assessment: Assessment, data: Mapping[str, Any], visits: Mapping[str, Visit]) -> list[str]:
    from .plots import SumPoint, criteria_set, sum_chart_png, thresholds

    parts = ['<section id="trajectory" class="float">']
    chosen = next(
        (
            (rule_id, block)
            for rule_id, block in data["criteria"].items()
            if block.get("baseline_sum_mm") is not None
            and any(tp.get("sum_mm") is not None for tp in block["timepoints"])
        ),
        None,
    )
    if chosen is None:
        return [
            '<section id="trajectory"><p class="muted small">Sum of target lesions: no measured target lesions to '
            "chart (e.g. ablated lesions only).</p></section>"
        ]
    rule_id, block = chosen
    result = assessment.results[rule_id]
    cs = criteria_set(rule_id, result.rule_set)
    points = [SumPoint("baseline", 0.0, float(block["baseline_sum_mm"]))]
    points += [
        SumPoint(tp["id"], visits[tp["id"]].day / 7.0, tp.get("sum_mm"), tp.get("overall"))
        for tp in block["timepoints"]
        if tp["id"] in visits
    ]
    lines = thresholds(result.rule_set, result.params)
    parts.append(f"<h2>Sum of target lesions, {_e(cs.name)}</h2>")
    image = base64.b64encode(sum_chart_png(points, lines, cs)).decode("ascii")
    parts.append(
        f'<div class="chart"><img alt="sum of target lesions over time, {_e(cs.name)}; lines: '
        + _e("; ".join(line.label for line in lines) or "none")
        + f'" src="data:image/png;base64,{image}"></div></section>'
    )
    return parts


def _verdicts(assessment: Assessment, data: Mapping[str, Any], visits: Mapping[str, Visit]) -> list[str]:
    """One row per follow-up: the main size measurements and each set's verdict."""
    blocks = data["criteria"]
    parts = ['<section id="responses"><h2>Response per timepoint</h2>']
    by_tp = {rule_id: {tp["id"]: tp for tp in block.get("timepoints", [])} for rule_id, block in blocks.items()}
    follow_ups = [v for v in visits.values() if any(v.id in tps for tps in by_tp.values())]
    if not follow_ups:
        parts.append('<p class="muted">no follow-up timepoints to assess</p></section>')
        return parts
    measured = next((b for b in blocks.values() if b.get("baseline_sum_mm") is not None), None)
    keys = _measure_keys(measured) if measured is not None else []
    sizes = {tp["id"]: tp for tp in measured["timepoints"]} if measured is not None else {}
    new_lesions = {
        tp_id: tp["new_lesions"] for tps in by_tp.values() for tp_id, tp in tps.items() if "new_lesions" in tp
    }
    rows = []
    for visit in follow_ups:
        row = [_e(visit.id), f'<span class="nowrap">{_e(visit.when)}</span>']
        row += [_cell_html(sizes.get(visit.id, {}).get(k)) for k in keys]
        if new_lesions:
            row.append(_cell_html(new_lesions.get(visit.id)))
        for rule_id in blocks:
            tp = by_tp[rule_id].get(visit.id)
            row.append(_word(tp.get("overall"), _scale(assessment, rule_id)) if tp is not None else _cell_html(None))
        rows.append(row)
    headers = ["timepoint", "date", *[header_of(k) for k in keys]]
    headers += ["new lesions"] if new_lesions else []
    headers += [str(block["name"]) for block in blocks.values()]
    parts.append(_table(headers, rows, raw=range(len(headers))))
    parts.append("</section>")
    return parts


def _measure_keys(block: Mapping[str, Any]) -> list[str]:
    """The size columns worth a glance: sums and % changes (the rest is in the reasons and the JSON)."""
    keys = dict.fromkeys(k for tp in block.get("timepoints", []) for k in tp)
    return [k for k in keys if k == "sum_mm" or (k.startswith("pct") and "hu" not in k)]


def _reasons(assessment: Assessment, data: Mapping[str, Any]) -> list[str]:
    """Each set's decisions, the same sentence at several timepoints written once (`FU1, FU2: ...`); lines that
    only repeat a value of the table (`new_lesions no`) are left out."""
    parts = ['<section id="reasons" class="whys">']
    for rule_id, block in data["criteria"].items():
        scale = _scale(assessment, rule_id)
        head = f'<h3>{_e(block["name"])} <span class="muted">({_e(rule_id)})</span>'
        if "best_overall_response" in block:
            head += ": best overall response " + _word(block["best_overall_response"], scale)
            if block.get("best_overall_response_reason"):
                head += f' <span class="muted">&mdash; {_e(block["best_overall_response_reason"])}</span>'
        parts.append(head + "</h3>")
        lines: dict[str, list[str]] = {}
        for tp in block.get("timepoints", []):
            for line in tp.get("explanation", []) or []:
                if reason_worth_showing(line):
                    lines.setdefault(line, []).append(str(tp["id"]))
        parts += [f'<p class="why"><b>{_e(", ".join(tps))}</b>: {_e(line)}</p>' for line, tps in lines.items()]
    parts.append("</section>")
    return parts


def reason_worth_showing(line: str) -> bool:
    """A decision line with a reason (`target PR: sum 59 mm is ...`), not a bare value (`new_lesions no`)."""
    return ":" in line or "[" in line


def _cell_html(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return '<span class="muted">&mdash;</span>'
    return _e(display_value(value))


LESION_TIMEPOINTS_PER_TABLE = 5


def _lesions(case: Case, visits: Mapping[str, Visit]) -> list[str]:
    """One row per lesion (kind, organ, location) with its readings at each timepoint, then the organ readings;
    at most five timepoints side by side, further timepoints in the next table."""
    by_tp = {tp.id: tp for tp in case.timepoints}
    order = [v.id for v in visits.values()]
    first: dict[str, Lesion] = {}
    for tp_id in order:
        for lesion in by_tp[tp_id].lesions:
            first.setdefault(lesion.id, lesion)
    parts = [
        '<section id="lesions"><h2>Lesions per timepoint <span class="muted">sizes are longest diameters, short '
        "axis for lymph nodes</span></h2>"
    ]
    for start in range(0, len(order), LESION_TIMEPOINTS_PER_TABLE):
        shown = order[start : start + LESION_TIMEPOINTS_PER_TABLE]
        rows = []
        for lesion_id, lesion in first.items():
            about = [display_value(lesion.kind or ""), display_value(lesion.organ or ""), lesion.location or ""]
            cells = [_readings(_find(by_tp[tp_id].lesions, lesion_id), lesion) for tp_id in shown]
            rows.append([f"<b>{_e(lesion_id)}</b>", _about(about)] + cells)
        organ_cells = [_organ_readings(by_tp[tp_id]) for tp_id in shown]
        if any(organ_cells):
            rows.append(['<span class="muted">organs</span>', ""] + organ_cells)
        headers = ["lesion", "kind · organ · location"] + [f"{tp_id} ({visits[tp_id].when})" for tp_id in shown]
        parts.append(_table(headers, rows, raw=range(len(headers))))
    parts.append("</section>")
    return parts


def _about(parts: Sequence[str]) -> str:
    """`target · liver · segment VIII`, on one line (the readings beside it need the width more)."""
    return '<span class="nowrap">' + _e(" · ".join(x for x in parts if x)) + "</span>"


def _find(lesions: Sequence[Lesion], lesion_id: str) -> Lesion | None:
    return next((x for x in lesions if x.id == lesion_id), None)


def _readings(lesion: Lesion | None, first: Lesion) -> str:
    """One lesion at one timepoint in a few words: size first, then the other readings."""
    if lesion is None:
        return '<span class="muted">&mdash;</span>'
    node = bool(lesion.is_lymph_node or first.is_lymph_node) or (first.organ or "").startswith("lymph")
    bits = []
    if lesion.status != "present":
        bits.append(display_value(lesion.status))
    for name in MEASURES:
        value = getattr(lesion, name)
        if value is None or (name == "equivocal" and value is False):
            continue
        if name == "longest_diameter_mm" and node and lesion.short_axis_mm is not None:
            continue
        bits.append(_reading(name, value))
    if lesion.fragments_mm:
        bits.append("fragments " + " + ".join(format_value(v) for v in lesion.fragments_mm) + " mm")
    return _e(" · ".join(bits)) if bits else '<span class="muted">present</span>'


def _reading(name: str, value: Any) -> str:
    """`48 mm`, `78 HU` (the unit says what it is), `morphology group 3`, `ablation zone covers the tumour: yes`."""
    unit = unit_of(name)
    if name in ("longest_diameter_mm", "short_axis_mm", "attenuation_hu"):
        return f"{format_value(value)} {unit}"
    if isinstance(value, bool):
        return f"{label_of(name)}: {display_value(value)}"
    return f"{label_of(name)} {display_value(value)}" + (f" {unit}" if unit else "")


def _organ_readings(tp: Timepoint) -> str:
    values = {**(tp.organs.model_dump() if tp.organs else {}), **(tp.pet.model_dump() if tp.pet else {})}
    bits = [_reading(k, v) for k, v in values.items() if v is not None]
    return _e(" · ".join(bits)) if bits else ""


def _warnings(data: Mapping[str, Any]) -> list[str]:
    """Warnings grouped where only the timepoint or lesion differs: code, where, and the first message."""
    warnings = data.get("warnings") or []
    if not warnings:
        return []
    parts = ['<section id="warnings"><h2>Warnings</h2>']
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for w in warnings:
        groups.setdefault((str(w.get("code")), _pattern(w)), []).append(w)
    rows = []
    for (code, _), members in groups.items():
        sets = ", ".join(dict.fromkeys(str(w.get("criteria") or "all sets") for w in members))
        where = ", ".join(dict.fromkeys(str(w.get("timepoint")) for w in members if w.get("timepoint")))
        more = f" (and {len(members) - 1} more like it)" if len(members) > 1 else ""
        rows.append(
            [_e(code), _e(sets), f'<span class="nowrap">{_e(where)}</span>', _e(members[0].get("message")) + more]
        )
    parts.append(_table(["code", "criteria", "timepoints", "message"], rows, raw=range(4)))
    parts.append("</section>")
    return parts


def _pattern(warning: Mapping[str, Any]) -> str:
    """The message with its own timepoint and lesion ids blanked: warnings that differ only there group."""
    text = str(warning.get("message"))
    for key in ("timepoint", "lesion"):
        if warning.get(key):
            text = re.sub(rf"(?<![\w-]){re.escape(str(warning[key]))}(?![\w-])", "<>", text)
    return text


def _changed_parameters(case: Case, assessment: Assessment) -> list[list[Any]]:
    """Parameters whose value is not the rule file's: from the case's `settings`, else from `--set`."""
    rows = []
    for rule_id, result in assessment.results.items():
        defaults = result.rule_set.default_params
        from_case = case.settings.get(rule_id, {})
        for name, value in result.params.items():
            if name in defaults and value != defaults[name]:
                source = "case settings" if name in from_case and from_case[name] == value else "--set"
                rows.append([rule_id, name, _shown(value), _shown(defaults[name]), source])
    return rows


def _shown(value: Any) -> str:
    return str(value) if isinstance(value, list) else format_value(value)


def _provenance(case: Case, assessment: Assessment, page: str, made: dt.date) -> list[str]:
    """Parameters that differ from the rule files, the rule sets run, the references cited, date and version."""
    parts = ['<section id="provenance"><h2>Settings, rule sets and references</h2>']
    changed = _changed_parameters(case, assessment)
    if changed:
        parts.append(_table(["criteria", "parameter", "value used", "rule file", "from"], changed))
    sets = []
    for rule_id, result in assessment.results.items():
        schema = result.rule_set.schema
        about = ", ".join(
            x for x in (f"version {schema.version}" if schema.version else "", _chain(result.rule_set)) if x
        )
        sets.append(
            f'{_e(schema.name)} (<span class="rule-id">{_e(rule_id)}</span>{", " + _e(about) if about else ""})'
        )
    same = "" if changed else "every parameter as in its rule file (no case settings, no --set); "
    parts.append(
        f'<p class="small"><b>Made</b> {made.isoformat()} with crlm-response {html.escape(__version__)}: research '
        "and quality-assurance software, not a substitute for the reading radiologist; reader judgements "
        f"(unequivocal progression, morphology groups) are taken as given. <b>Rule sets</b>: {same}"
        + "; ".join(sets)
        + ".</p>"
    )
    cited = _cited(assessment, page)
    if cited:
        parts.append(
            '<p class="refs"><b>References cited.</b> '
            + " &middot; ".join(f"<b>{html.escape(k)}</b> {html.escape(_first_author(v))}" for k, v in cited.items())
            + "</p>"
        )
    parts.append("</section>")
    return parts


def _chain(rules: LoadedRuleSet) -> str:
    return "extends " + " -> ".join(rules.chain[:-1]) if len(rules.chain) > 1 else ""


def _first_author(reference: str) -> str:
    """`Eisenhauer EA, Therasse P, ... et al. Title. Journal` -> `Eisenhauer EA et al. Title. Journal`."""
    authors, dot, rest = reference.partition(". ")
    if dot and "," in authors and len(authors) < 200:
        return f"{authors.split(',')[0]} et al. {rest}"
    return reference


def _cited(assessment: Assessment, page: str) -> dict[str, str]:
    """The references of the rule sets run that the page cites (by key, as in `[E2009 §4.3.1]`)."""
    text = re.sub(r"<[^>]+>", " ", page)
    refs: dict[str, str] = {}
    for result in assessment.results.values():
        for key, reference in result.rule_set.schema.citations.items():
            if key not in refs and re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", text):
                refs[key] = reference
    return refs


def report_date() -> dt.date:
    """Today, or the date of SOURCE_DATE_EPOCH when set (reproducible reports)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC).date()
    return dt.date.today()


def render_report(case: Case, assessment: Assessment, made: dt.date | None = None) -> str:
    """The report as one HTML string."""
    data = assessment.to_dict()
    visits = _visits(case, assessment)
    parts: list[str] = []
    parts += _header(case, visits)
    parts += _summary(assessment, data, visits)
    parts += _verdicts(assessment, data, visits)
    parts.append('<div class="flow">')
    parts += _chart(assessment, data, visits)
    parts += _reasons(assessment, data)
    parts.append("</div>")
    parts += _lesions(case, visits)
    parts += _warnings(data)
    parts += _provenance(case, assessment, "\n".join(parts), made or report_date())
    title = html.escape(f"crlm-response report {case.case_id}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )

"""A printable one-patient report: a single self-contained HTML page (images embedded, no external resources).

Sections: patient and treatment, lesion table per timepoint, one response table per criteria set with the
explanation of each decision, a lesion-size trajectory chart, toxicity flags with evidence and citations,
warnings, and the version and rule sets used. Prints on A4 (print CSS).
"""

from __future__ import annotations

import base64
import html
from typing import Any

import pandas as pd

from . import __version__
from .assessment import Assessment
from .conditions import format_value
from .models import Case

CSS = """
body { font-family: "Helvetica Neue", Arial, sans-serif; font-size: 10.5pt; color: #111; margin: 24px;
  max-width: 960px; }
h1 { font-size: 17pt; margin: 0 0 4px; } h2 { font-size: 13pt; margin: 22px 0 6px; border-bottom: 1px solid #bbb; }
h3 { font-size: 11pt; margin: 14px 0 4px; }
table { border-collapse: collapse; margin: 4px 0 8px; width: 100%; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #555; } .why { font-size: 9pt; color: #333; margin: 2px 0 0 12px; }
.CR, .CMR, .optimal, .complete_ablation { color: #1a7f37; font-weight: bold; }
.PR, .PMR { color: #2f9e44; font-weight: bold; } .SD, .SMD, .incomplete { color: #9a6700; font-weight: bold; }
.PD, .PMD, .local_tumor_progression, .residual_unablated_tumor { color: #c92a2a; font-weight: bold; }
.note { border-left: 4px solid #e8a33d; background: #fff8eb; padding: 4px 8px; margin: 6px 0; }
img { max-width: 100%; }
@page { size: A4; margin: 14mm; }
@media print { body { margin: 0; max-width: none; font-size: 9.5pt; } h2 { break-after: avoid; }
  table, .chart { break-inside: avoid; } a { color: inherit; text-decoration: none; } }
"""

LESION_COLUMNS = (
    "kind",
    "organ",
    "longest_diameter_mm",
    "short_axis_mm",
    "status",
    "attenuation_hu",
    "morphology_group",
    "viable_diameter_mm",
    "min_margin_mm",
)


def _e(value: Any) -> str:
    return html.escape(format_value(value) if not isinstance(value, str) else value)


CATEGORY_CLASSES = {
    "CR",
    "PR",
    "SD",
    "PD",
    "NE",
    "CMR",
    "PMR",
    "SMD",
    "PMD",
    "optimal",
    "incomplete",
    "complete_ablation",
    "local_tumor_progression",
    "residual_unablated_tumor",
}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "<td>&mdash;</td>"
    text = _e(value)
    if isinstance(value, str) and value in CATEGORY_CLASSES:
        return f'<td class="{value}">{text}</td>'
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inherited(lesion: Any, column: str, baseline: dict[str, Any]) -> Any:
    """Kind and organ are usually given at baseline only; show them on every row."""
    value = getattr(lesion, column)
    if value is None and column in ("kind", "organ") and lesion.id in baseline:
        return getattr(baseline[lesion.id], column)
    return value


def _lesion_sizes(case: Case) -> pd.DataFrame:
    """Target lesion sizes (mm) per day, for the trajectory chart (RECIST values: 0 gone, 5 too small)."""
    rows = []
    base_day = {tp.id: tp.day for tp in case.timepoints}
    dates = {tp.id: tp.date for tp in case.timepoints}
    first = min(case.timepoints, key=lambda t: (t.day if t.day is not None else 0, t.date.toordinal() if t.date else 0))
    kinds = {lesion.id: lesion.kind for lesion in first.lesions}
    nodes = {
        lesion.id: bool(lesion.is_lymph_node) or (lesion.organ or "").startswith("lymph") for lesion in first.lesions
    }
    for tp in case.timepoints:
        size: float | None
        if tp.day is not None:
            day = tp.day - (first.day or 0)
        elif dates[tp.id] is not None and first.date is not None:
            day = (dates[tp.id] - first.date).days  # type: ignore[operator]
        else:
            day = base_day.get(tp.id) or 0
        for lesion in tp.lesions:
            if (lesion.kind or kinds.get(lesion.id)) != "target":
                continue
            if lesion.status in ("disappeared", "coalesced"):
                size = 0.0
            elif lesion.status == "too_small":
                size = 5.0
            elif lesion.status == "not_evaluated":
                continue
            elif nodes.get(lesion.id):
                size = lesion.short_axis_mm
            else:
                size = sum(lesion.fragments_mm) if lesion.fragments_mm else lesion.longest_diameter_mm
            if size is not None:
                rows.append({"lesion_id": lesion.id, "day": day, "size_mm": float(size)})
    return pd.DataFrame(rows, columns=["lesion_id", "day", "size_mm"]).sort_values(["lesion_id", "day"])


def render_report(case: Case, assessment: Assessment) -> str:
    """The report as one HTML string."""
    data = assessment.to_dict()
    parts: list[str] = []
    treatment = case.treatment
    parts.append(f"<h1>Response report: {_e(case.case_id)}</h1>")
    if case.description:
        parts.append(f'<p class="muted">{_e(case.description)}</p>')
    parts.append('<h2 id="patient">Patient and treatment</h2>')
    parts.append(
        _table(
            ["case", "regimen", "agents", "setting", "timepoints"],
            [
                [
                    case.case_id,
                    treatment.regimen or "",
                    ", ".join(treatment.agents),
                    treatment.setting,
                    ", ".join(tp.id for tp in case.timepoints),
                ]
            ],
        )
    )

    parts.append('<h2 id="lesions">Lesions per timepoint</h2>')
    baseline_lesions = {lesion.id: lesion for tp in case.timepoints for lesion in tp.lesions if lesion.kind}
    used = [
        c
        for c in LESION_COLUMNS
        if any(getattr(lesion, c) not in (None, "present") for tp in case.timepoints for lesion in tp.lesions)
    ]
    for tp in case.timepoints:
        when = f"day {tp.day}" if tp.day is not None else str(tp.date)
        parts.append(
            f"<h3>{_e(tp.id)} <span class=muted>({_e(when)}{', ' + _e(tp.modality) if tp.modality else ''})</span></h3>"
        )
        rows = [[lesion.id] + [_inherited(lesion, c, baseline_lesions) for c in used] for lesion in tp.lesions]
        parts.append(
            _table(["lesion"] + [c.replace("_", " ") for c in used], rows)
            if rows
            else '<p class="muted">no lesions reported</p>'
        )
        if tp.organs is not None:
            organs = {k: v for k, v in tp.organs.model_dump().items() if v is not None}
            if organs:
                parts.append(
                    '<p class="muted">organs: '
                    + _e("; ".join(f"{k.replace('_', ' ')} {format_value(v)}" for k, v in organs.items()))
                    + "</p>"
                )

    sizes = _lesion_sizes(case)
    parts.append('<h2 id="trajectory">Target lesion sizes</h2>')
    if not sizes.empty:
        from .plots import trajectory_png

        image = base64.b64encode(trajectory_png([], sizes)).decode("ascii")
        parts.append(
            f'<div class="chart"><img alt="target lesion sizes over time" src="data:image/png;base64,{image}"></div>'
        )
    else:
        parts.append('<p class="muted">no measured target lesions to chart (e.g. ablated lesions only)</p>')

    parts.append('<h2 id="responses">Response by criteria set</h2>')
    for rule_id, block in data["criteria"].items():
        parts.append(f"<h3>{_e(block['name'])} <span class=muted>({_e(rule_id)})</span></h3>")
        timepoints = block.get("timepoints", [])
        keys = [k for tp in timepoints for k in tp if k not in ("id", "explanation", "lesions")]
        keys = list(dict.fromkeys(keys))
        rows = [[tp["id"]] + [tp.get(k) for k in keys] for tp in timepoints]
        parts.append(
            _table(["timepoint"] + [k.replace("_", " ") for k in keys], rows)
            if rows
            else '<p class="muted">no follow-up timepoints</p>'
        )
        lesion_rows = [
            [tp["id"], les["id"]] + [v for k, v in les.items() if k != "id"]
            for tp in timepoints
            for les in tp.get("lesions", []) or []
        ]
        if lesion_rows:
            first = next(les for tp in timepoints for les in tp.get("lesions", []) or [])
            parts.append(
                _table(["timepoint", "lesion"] + [k.replace("_", " ") for k in first if k != "id"], lesion_rows)
            )
        if "best_overall_response" in block:
            where = block.get("best_overall_response_timepoint")
            parts.append(
                f'<p>Best overall response: <span class="{_e(block["best_overall_response"])}">'
                f"{_e(block['best_overall_response'])}</span>"
                + (f" at {_e(where)} (day {_e(block.get('best_overall_response_day'))})" if where else "")
                + "</p>"
            )
            if block.get("best_overall_response_reason"):
                parts.append(f'<div class="why"><b>why</b>: {_e(block["best_overall_response_reason"])}</div>')
        for tp in timepoints:
            for line in tp.get("explanation", []) or []:
                parts.append(f'<div class="why"><b>{_e(tp["id"])}</b>: {_e(line)}</div>')
    for item in data.get("disagreements") or []:
        verdicts = ", ".join(f"{k} {v}" for k, v in item["verdicts"].items())
        parts.append(f'<div class="note">Criteria disagree at {_e(item["timepoint"])}: {_e(verdicts)}</div>')

    parts.append('<h2 id="toxicity">Toxicity flags</h2>')
    flags = data.get("toxicity") or []
    if not data.get("toxicity_assessed", True):
        parts.append('<p class="muted">toxicity not assessed (the toxicity rule set was not run)</p>')
    elif flags:
        rows = [
            [
                f["timepoint"],
                f["flag"] + (f" ({f['lesion']})" if f.get("lesion") else ""),
                f.get("grade"),
                "; ".join(f"{k} {format_value(v)}" for k, v in (f.get("evidence") or {}).items()),
                f.get("explanation") or "",
                f"{f.get('citation')} [{f.get('evidence_level')}]",
            ]
            for f in flags
        ]
        parts.append(_table(["timepoint", "flag", "grade", "evidence", "explanation", "source"], rows))
    else:
        parts.append('<p class="muted">none raised</p>')

    parts.append('<h2 id="warnings">Warnings</h2>')
    warnings = data.get("warnings") or []
    if warnings:
        parts.append(
            _table(
                ["code", "criteria", "timepoint", "message"],
                [[w.get("code"), w.get("criteria", ""), w.get("timepoint"), w.get("message")] for w in warnings],
            )
        )
    else:
        parts.append('<p class="muted">none</p>')

    parts.append('<h2 id="provenance">Version and rule sets</h2>')
    rows = []
    for rule_id, result in assessment.results.items():
        rules = result.rule_set
        rows.append([rule_id, rules.schema.name, rules.schema.version or "", " -> ".join(rules.chain)])
    parts.append(f"<p>crlm-response {html.escape(__version__)}</p>")
    parts.append(_table(["id", "name", "version", "extends chain"], rows))
    refs = {}
    for result in assessment.results.values():
        refs.update(result.rule_set.schema.citations)
    parts.append(
        "<h3>References</h3><ul>"
        + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in refs.items())
        + "</ul>"
    )
    parts.append(
        '<p class="muted">Research and quality-assurance software; reader judgements (unequivocal progression, '
        "morphology groups) are taken as given. Not a substitute for the reading radiologist.</p>"
    )
    title = html.escape(f"crlm-response report {case.case_id}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )

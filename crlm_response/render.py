"""Terminal and JSON rendering. Only the CLI uses this module; nothing here decides anything clinical."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .conditions import format_value

HEADERS = {
    "day": "day",
    "sum_mm": "sum mm",
    "available_sum_mm": "measured mm",
    "targets_evaluated": "targets",
    "nadir_mm": "nadir mm",
    "pct_from_baseline": "% vs baseline",
    "pct_from_nadir": "% vs nadir",
    "mm_from_nadir": "mm vs nadir",
    "non_target": "non-target",
    "new_lesions": "new",
    "pct_size_from_baseline": "size % vs baseline",
    "mean_hu": "mean HU",
    "pct_hu_from_baseline": "HU % vs baseline",
    "sum_products_mm2": "sum products mm²",
    "viable_sum_mm": "viable sum mm",
    "viable_area_mm2": "viable area mm²",
    "sul_peak": "SULpeak",
    "abs_change": "SUL change",
}
# Columns that are often empty or repeated; shown only with --explain's full view.
QUIET = {"available_sum_mm", "targets_evaluated"}

STYLE = {
    "CR": "bold green",
    "PR": "green",
    "SD": "yellow",
    "PD": "bold red",
    "NE": "dim",
    "NA": "dim",
    "NON-CR/NON-PD": "yellow",
    "optimal": "green",
    "incomplete": "yellow",
    "none": "red",
    "not_applicable": "dim",
    "CMR": "bold green",
    "PMR": "green",
    "SMD": "yellow",
    "PMD": "bold red",
    "complete_ablation": "green",
    "no_local_tumor_progression": "green",
    "residual_unablated_tumor": "red",
    "local_tumor_progression": "bold red",
}


def styled(value: Any) -> Text:
    text = format_value(value)
    return Text(text, style=STYLE.get(str(value), ""))


def to_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _criteria_title(rule_id: str, block: Mapping[str, Any]) -> Text:
    baseline_bits = [
        f"{k.replace('_', ' ')} {format_value(v)}"
        for k, v in block.items()
        if k.startswith("baseline_") and not isinstance(v, dict | list)
    ]
    title = Text(str(block.get("name", rule_id)), style="bold")
    if baseline_bits:
        title.append("  (" + "; ".join(baseline_bits) + ")", style="dim")
    return title


def _criteria_table(rule_id: str, block: Mapping[str, Any], full: bool) -> Table:
    timepoints = block.get("timepoints", [])
    keys: list[str] = []
    for tp in timepoints:
        for key in tp:
            if key in ("id", "explanation", "lesions") or key in keys:
                continue
            if key in QUIET and not full and all(t.get("sum_mm") is not None for t in timepoints):
                continue
            keys.append(key)
    table = Table(box=box.SIMPLE_HEAVY, show_edge=False)
    table.add_column("timepoint", style="bold")
    for key in keys:
        numeric = key not in ("target", "non_target", "overall", "new_lesions", "targets_evaluated")
        table.add_column(
            HEADERS.get(key, key.replace("_", " ")), justify="right" if numeric else "left", no_wrap=not numeric
        )
    for tp in timepoints:
        cells: list[Text | str] = [str(tp["id"])]
        for key in keys:
            value = tp.get(key)
            if key == "new_lesions":
                cells.append(Text("yes", style="bold red") if value else Text("no"))
            else:
                cells.append(styled(value))
        table.add_row(*cells)
    return table


def _lesion_table(block: Mapping[str, Any]) -> Table | None:
    rows = [(tp["id"], les) for tp in block.get("timepoints", []) for les in tp.get("lesions", []) or []]
    if not rows:
        return None
    keys: list[str] = []
    for _, les in rows:
        keys.extend(k for k in les if k != "id" and k not in keys)
    table = Table(box=box.SIMPLE, show_edge=False, title="per lesion", title_justify="left", title_style="dim")
    table.add_column("timepoint")
    table.add_column("lesion")
    for key in keys:
        table.add_column(key.replace("_", " "))
    for tp_id, les in rows:
        table.add_row(str(tp_id), str(les["id"]), *[styled(les.get(k)) for k in keys])
    return table


def _best_line(block: Mapping[str, Any]) -> Text | None:
    if "best_overall_response" not in block:
        return None
    bor = block["best_overall_response"]
    text = Text("Best overall response: ")
    text.append_text(styled(bor))
    where = block.get("best_overall_response_timepoint")
    if where:
        text.append(f"  (at {where}, day {format_value(block.get('best_overall_response_day'))})", style="dim")
    params = block.get("parameters", {})
    if "confirmation_required" in params:
        text.append(
            "  confirmation " + ("required" if params["confirmation_required"] else "not required"), style="dim"
        )
    return text


def render_assessment(
    console: Console, data: Mapping[str, Any], explain: bool = False, case_header: str | None = None
) -> None:
    """The terminal view of `assess`: one table per criteria set, disagreements, toxicity, warnings."""
    console.print(Text(case_header or f"Case {data['case_id']}", style="bold underline"))
    for rule_id, block in data.get("criteria", {}).items():
        console.print()
        console.print(_criteria_title(rule_id, block))
        if not block.get("timepoints"):
            console.print(Text("  no follow-up timepoints to assess", style="dim"))
        else:
            console.print(_criteria_table(rule_id, block, explain))
        lesions = _lesion_table(block)
        if lesions is not None:
            console.print(lesions)
        best = _best_line(block)
        if best is not None:
            console.print(best)
            if explain and block.get("best_overall_response_reason"):
                console.print(Text("  why: ", style="bold") + Text(str(block["best_overall_response_reason"])))
        if explain:
            for tp in block.get("timepoints", []):
                for line in tp.get("explanation", []) or []:
                    console.print(Text(f"  {tp['id']}: ", style="bold") + Text(line))
    disagreements = data.get("disagreements") or []
    if disagreements:
        console.print()
        lines = [f"{d['timepoint']}: " + ", ".join(f"{k} {v}" for k, v in d["verdicts"].items()) for d in disagreements]
        console.print(Panel("\n".join(lines), title="criteria disagree", border_style="yellow", expand=False))
    if data.get("toxicity_assessed", True):
        _toxicity_panel(console, data.get("toxicity") or [])
    else:
        console.print()
        console.print(Text("Toxicity flags: not assessed (add toxicity to --criteria)", style="dim"))
    _warnings_panel(console, data.get("warnings") or [])


def _toxicity_panel(console: Console, flags: Iterable[Mapping[str, Any]]) -> None:
    flags = list(flags)
    console.print()
    if not flags:
        console.print(Text("Toxicity flags: none raised", style="dim"))
        return
    table = Table(box=box.SIMPLE, show_edge=False, title="Toxicity flags", title_justify="left", title_style="bold")
    for column in ("timepoint", "flag", "evidence", "source"):
        table.add_column(column)
    for flag in flags:
        name = flag["flag"] + (f" ({flag['lesion']})" if flag.get("lesion") else "")
        name += f" grade {flag['grade']}" if flag.get("grade") is not None else ""
        table.add_row(
            str(flag["timepoint"]),
            Text(name, style="magenta"),
            flag.get("explanation", ""),
            f"{flag.get('citation', '')} [{flag.get('evidence_level', '')}]",
        )
    console.print(table)


def _warnings_panel(console: Console, warnings: Iterable[Mapping[str, Any]]) -> None:
    warnings = list(warnings)
    if not warnings:
        return
    lines = []
    for w in warnings:
        where = ", ".join(str(x) for x in (w.get("criteria"), w.get("timepoint"), w.get("lesion")) if x)
        lines.append(f"[bold]{w['code']}[/bold] ({where}): {w['message']}")
    console.print()
    console.print(Panel("\n".join(lines), title=f"{len(warnings)} warning(s)", border_style="yellow", expand=False))


def render_rules_list(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(box=box.SIMPLE_HEAVY, show_edge=False)
    for column in ("id", "name", "kind", "needs", "main citation"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["id"], row["name"], row["kind"], ", ".join(row["inputs"]) or "-", row["citation"])
    console.print(table)


def render_rule_set(console: Console, info: Mapping[str, Any]) -> None:
    console.print(Text(f"{info['name']} ({info['id']})", style="bold underline"))
    console.print(info["description"])
    if info.get("chain") and len(info["chain"]) > 1:
        console.print(Text("extends: " + " -> ".join(info["chain"]), style="dim"))
    params = Table(title="Parameters", title_justify="left", box=box.SIMPLE, show_edge=False)
    for column in ("parameter", "value", "unit", "citation", "tag"):
        params.add_column(column)
    for name, p in info["parameters"].items():
        params.add_row(
            name + (" *" if p.get("disputed") else ""),
            format_value(p["value"]) if not isinstance(p["value"], list) else str(p["value"]),
            p.get("unit") or "",
            p["citation"],
            p.get("evidence") or "",
        )
    console.print(params)
    for out in info["outputs"]:
        table = Table(title=f"{out['name']} ({out['level']})", title_justify="left", box=box.SIMPLE, show_edge=False)
        table.add_column("#", justify="right")
        table.add_column("when")
        table.add_column("then")
        table.add_column("citation")
        for i, rule in enumerate(out["rules"]):
            table.add_row(str(i + 1), rule["when"], styled(rule["then"]), rule.get("citation") or "")
        console.print(table)
    for flag in info.get("flags", []):
        console.print(
            Text(f"flag {flag['flag']}: ", style="bold magenta")
            + Text(flag["when"])
            + Text(f"  [{flag['citation']}; {flag['evidence_level']}]", style="dim")
        )
    if info.get("checks"):
        console.print(Text("Warnings:", style="bold"))
        for check in info["checks"]:
            console.print(f"  {check['code']}: {check['when']}")
    console.print(Text("References:", style="bold"))
    for key, text in info["citations"].items():
        console.print(f"  {key}: {text}")


def render_summary(console: Console, summary: list[Mapping[str, Any]]) -> None:
    """Per criteria set: subjects, best-response counts, ORR and DCR with exact 95 % CIs."""
    for entry in summary:
        table = Table(
            title=f"{entry['criteria']}: {entry['subjects']:,} subjects",
            title_justify="left",
            box=box.SIMPLE,
            show_edge=False,
            title_style="bold",
        )
        table.add_column("measure")
        table.add_column("n", justify="right")
        table.add_column("%", justify="right")
        table.add_column("95 % CI (exact)", justify="right")
        for word, count in entry["best_response"].items():
            table.add_row(
                Text("BOR ") + styled(word), f"{count:,}", format_value(100.0 * count / entry["subjects"]), ""
            )
        for key, label in (
            ("objective_response_rate", "ORR (CR+PR)"),
            ("disease_control_rate", "DCR (CR+PR+SD+NON-CR/NON-PD)"),
        ):
            m = entry[key]
            table.add_row(
                Text(label, style="bold"),
                f"{m['n']:,}",
                format_value(m["rate_pct"]),
                f"{format_value(m['ci_low_pct'])}-{format_value(m['ci_high_pct'])}",
            )
        console.print(table)


def render_diff(console: Console, rule_diff: Any, verdicts: Any, label_a: str, label_b: str) -> None:
    """Rule differences (changed first, then only in A, only in B), then verdicts on the cohort."""
    console.print(Text(f"Rules: {label_a} vs {label_b}", style="bold underline"))
    if rule_diff.identical:
        console.print("  no differences in parameters, decisions, tables, checks, flags or citations")
    else:
        table = Table(box=box.SIMPLE, show_edge=False)
        for column in ("", "section", "name", label_a, label_b):
            table.add_column(column, overflow="fold")
        marks = {"changed": "~", "only_a": "-", "only_b": "+"}
        for change in rule_diff.ordered():
            table.add_row(
                marks[change.kind],
                change.section,
                change.name,
                "" if change.a is None else str(change.a),
                "" if change.b is None else str(change.b),
            )
        console.print(table)
        console.print(Text("~ changed   - only in A   + only in B", style="dim"))
    if verdicts is None:
        return
    console.print()
    console.print(
        Text(f"Verdicts on {len(verdicts.subjects):,} subjects (best overall response)", style="bold underline")
    )
    console.print(Text(f"rows: {label_a}; columns: {label_b}", style="dim"))
    cross = Table(box=box.SIMPLE, show_edge=False)
    cross.add_column("")
    for column in verdicts.crosstab.columns:
        cross.add_column(str(column), justify="right")
    for index, row in verdicts.crosstab.iterrows():
        cross.add_row(styled(index), *[str(int(v)) for v in row])
    console.print(cross)
    line = (
        f"agreement {format_value(verdicts.agreement_pct)} %"
        if verdicts.agreement_pct is not None
        else "agreement not computed (different categories)"
    )
    if verdicts.kappa and verdicts.kappa.get("kappa") is not None:
        k = verdicts.kappa
        line += f"; Cohen's kappa {k['kappa']}"
        if k.get("ci_low") is not None:
            line += f" (95 % CI {k['ci_low']} to {k['ci_high']})"
    if verdicts.kappa_note:
        line += f"; {verdicts.kappa_note}"
    console.print(line)
    if verdicts.orr:
        o = verdicts.orr
        console.print(
            f"objective response rate {label_a} {format_value(o['a_pct'])} %, {label_b} "
            f"{format_value(o['b_pct'])} %, difference {format_value(o['difference_pct'])} points "
            f"(95 % CI {format_value(o['difference_ci_low_pct'])} to {format_value(o['difference_ci_high_pct'])})"
        )
    moved = verdicts.reclassified()
    console.print()
    if moved.empty:
        console.print("no subject changes best overall response")
        return
    table = Table(
        box=box.SIMPLE,
        show_edge=False,
        title=f"{len(moved):,} reclassified subject(s)",
        title_justify="left",
        title_style="bold",
    )
    for column in ("subject", label_a, label_b, f"why ({label_a})", f"why ({label_b})"):
        table.add_column(column, overflow="fold")
    for row in moved.head(50).itertuples():
        table.add_row(str(row.subject_id), styled(row.bor_a), styled(row.bor_b), str(row.why_a), str(row.why_b))
    console.print(table)
    if len(moved) > 50:
        console.print(Text(f"... and {len(moved) - 50:,} more (use -o to write them all)", style="dim"))

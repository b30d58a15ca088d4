"""Terminal and JSON rendering. Only the CLI uses this module; nothing here decides anything clinical.

Tables fit the terminal: at 80 columns a column that does not fit is left out (by priority, named under the
table) rather than cut to `…`; long texts (explanations, toxicity evidence, warnings) wrap under a hanging indent.
Words, not codes: response words keep the criteria's own spelling (PR, CMR, optimal) but a word spelled as an
identifier shows as its label, flags show their label, columns and fields their label.
"""

from __future__ import annotations

import io
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .conditions import format_value
from .models import FIELD_LABELS
from .roles import ResponseScale

if TYPE_CHECKING:
    import pandas as pd

    from .rules import LoadedRuleSet
    from .runs import BatchRun


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr): the terminal's width, else COLUMNS (140 by default) when redirected."""
    interactive = (sys.stderr if stderr else sys.stdout).isatty()
    width = None if interactive else int(os.environ.get("COLUMNS", "140"))
    # markup=False: file names and ids are printed as written (a file named `v[bold].csv` keeps its brackets)
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False, markup=False)


# Labels of the columns the engine computes (metrics and rule outputs); case fields are labelled in
# models.FIELD_LABELS. Units are read off the name (see `unit_of`).
COLUMN_LABELS = {
    "day": "day",
    "sum_mm": "sum",
    "available_sum_mm": "measured sum",
    "targets_evaluated": "targets measured",
    "nadir_mm": "nadir",
    "pct_from_baseline": "% vs baseline",
    "pct_from_nadir": "% vs nadir",
    "mm_from_nadir": "change vs nadir",
    "target": "target",
    "non_target": "non-target",
    "new_lesions": "new",
    "overall": "overall",
    "pct_size_from_baseline": "size % vs baseline",
    "mean_hu": "mean attenuation",
    "pct_hu_from_baseline": "attenuation % vs baseline",
    "sum_products_mm2": "sum of products",
    "viable_sum_mm": "viable sum",
    "viable_area_mm2": "viable area",
    "sul_peak": "SULpeak",
    "abs_change": "SUL change",
    "baseline_sum_mm": "baseline sum",
    "baseline_mean_hu": "baseline mean attenuation",
    "baseline_sum_products_mm2": "baseline sum of products",
    "baseline_viable_sum_mm": "baseline viable sum",
    "baseline_viable_area_mm2": "baseline viable area",
    "baseline_sul_peak": "baseline SULpeak",
    "baseline_measurable_threshold_sul": "measurability threshold (SUL)",
    "baseline_group": "baseline group",
    "group": "group",
    "response": "response",
    "outcome": "outcome",
    "margin_class": "margin",
}
UNITS = (("_mm2", "mm²"), ("_mm", "mm"), ("_hu", "HU"), ("_ml", "mL"), ("_pct", "%"))
# Columns that are often empty or repeated; shown only with --explain's full view.
QUIET = {"available_sum_mm", "targets_evaluated"}
WORD_COLUMNS = ("target", "non_target", "overall", "new_lesions", "response", "outcome")


def unit_of(key: str) -> str:
    return next((unit for suffix, unit in UNITS if key.endswith(suffix)), "")


def label_of(key: str) -> str:
    """A column or field in words (`spleen_volume_ml` -> `spleen volume`), without its unit."""
    return COLUMN_LABELS.get(key) or FIELD_LABELS.get(key) or key.replace("_", " ")


def header_of(key: str) -> str:
    """A column heading: label and unit (`sum (mm)`)."""
    unit = unit_of(key)
    return f"{label_of(key)} ({unit})" if unit else label_of(key)


def with_unit(key: str, value: Any) -> str:
    """A value in words: `spleen volume 236 mL`, `CT phase portal venous`."""
    unit = unit_of(key)
    return f"{label_of(key)} {display_value(value)}" + (f" {unit}" if unit else "")


def display_value(value: Any) -> str:
    """Numbers as `format_value` writes them; a word spelled as an identifier (`portal_venous`) in plain words."""
    if isinstance(value, str):
        return value.replace("_", " ")
    if isinstance(value, list | tuple):
        return ", ".join(display_value(v) for v in value)
    return format_value(value)


def scale_for(rule_id: str, rule_sets: Mapping[str, LoadedRuleSet] | None = None) -> ResponseScale | None:
    """The response scale of a set run: from the rule sets given, else the shipped set of that id."""
    if rule_sets and rule_id in rule_sets:
        return rule_sets[rule_id].scale
    from .rules import builtin_ids, load_rules

    return load_rules(rule_id).scale if rule_id in builtin_ids() else None


def styled(value: Any, scale: ResponseScale | None = None) -> Text:
    """A value for a table cell: a response word styled by its role (and shown as its label when it is a code)."""
    if scale is None or not isinstance(value, str):
        return Text(format_value(value))
    return Text(scale.display(value), style=scale.style(value))


# ---------------------------------------------------------------------------------------------------------
# Tables that fit the terminal
# ---------------------------------------------------------------------------------------------------------


def _priority(key: str) -> int:
    """Higher is kept longer when the terminal is narrow."""
    if key in QUIET:
        return 0
    if "nadir" in key and not key.startswith("pct"):
        return 1
    if key in WORD_COLUMNS:
        return 5
    if key.startswith("pct") or key == "sum_mm":
        return 3
    return 2


def fitted_table(
    console: Console,
    fixed: Sequence[tuple[str, str]],
    columns: Sequence[str],
    rows: Sequence[Sequence[Text | str]],
    **table_options: Any,
) -> tuple[Table, list[str]]:
    """A table of `fixed` columns (key, heading) and `columns` (keys) that fits the console width without cutting
    a value: headings wrap between words, values only between words, and the lowest-priority columns are left out
    until it fits. Returns the table and the headings left out."""
    keep = list(columns)
    while True:
        headings = [h for _, h in fixed] + [header_of(k) for k in keep]
        index = list(range(len(fixed))) + [len(fixed) + columns.index(k) for k in keep]
        cells = [[_plain(row[i]) for row in rows] for i in index]
        natural = [max([_cell_len(h)] + [_cell_len(c) for c in col]) for h, col in zip(headings, cells, strict=True)]
        narrow = [max([_word_len(h)] + [_word_len(c) for c in col]) for h, col in zip(headings, cells, strict=True)]
        one_line = [max([n] + [_cell_len(c) for c in col]) for n, col in zip(narrow, cells, strict=True)]
        overhead = 3 * len(headings) - 1  # one space of padding each side, one between columns
        if sum(natural) + overhead <= console.width:
            return _build_table(fixed, keep, columns, rows, None, **table_options), _left_out(columns, keep)
        if sum(narrow) + overhead <= console.width or not keep:
            widths = _share(_share(narrow, one_line, console.width - overhead), natural, console.width - overhead)
            return _build_table(fixed, keep, columns, rows, widths, **table_options), _left_out(columns, keep)
        keep.remove(min(reversed(keep), key=_priority))


def _plain(cell: Text | str) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _cell_len(text: str) -> int:
    return max((Text(line).cell_len for line in text.split("\n")), default=0)


def _word_len(text: str) -> int:
    return max((Text(word).cell_len for word in text.split()), default=0)


def _share(narrow: list[int], natural: list[int], room: int) -> list[int]:
    """Column widths widened from `narrow` towards `natural` while there is room, left column first (called first
    to keep values on one line, then for the headings)."""
    widths = list(narrow)
    spare = room - sum(widths)
    for i, want in enumerate(natural):
        extra = min(spare, want - widths[i])
        widths[i] += max(extra, 0)
        spare -= max(extra, 0)
    return widths


def _left_out(columns: Sequence[str], keep: Sequence[str]) -> list[str]:
    return [header_of(k) for k in columns if k not in keep]


def _build_table(
    fixed: Sequence[tuple[str, str]],
    keep: Sequence[str],
    columns: Sequence[str],
    rows: Sequence[Sequence[Text | str]],
    widths: list[int] | None,
    **table_options: Any,
) -> Table:
    table = Table(show_edge=False, **table_options)
    sizes = iter(widths or [])
    for _, heading in fixed:
        table.add_column(heading, style="bold" if not table.columns else "", width=next(sizes, None))
    for key in keep:
        numeric = key not in WORD_COLUMNS and _priority(key) != 5
        table.add_column(header_of(key), justify="right" if numeric else "left", width=next(sizes, None))
    index = [len(fixed) + columns.index(k) for k in keep]
    for row in rows:
        table.add_row(*row[: len(fixed)], *[row[i] for i in index])
    return table


def _print_fitted(console: Console, table: Table, left_out: list[str]) -> None:
    console.print(table)
    if left_out:
        console.print(
            Text(f"  not shown at this width: {', '.join(left_out)} (wider terminal or --format json)", style="dim")
        )


def _hanging(console: Console, lines: Iterable[tuple[Text | str, Text | str]], indent: int = 2) -> None:
    """Label + text rows, the text wrapping under itself (not under the label); no trailing spaces."""
    rows = [
        (Text(label) if isinstance(label, str) else label, Text(text) if isinstance(text, str) else text)
        for label, text in lines
    ]
    if not rows:
        return
    width = max(label.cell_len for label, _ in rows)
    room = max(console.width - indent - width - 1, 20)
    for label, text in rows:
        first = True
        for part in text.split("\n"):
            for line in part.wrap(console, room, overflow="fold"):
                line.rstrip()
                head = label.copy() if first else Text("")
                head.pad_right(width - head.cell_len)
                console.print(Text(" " * indent) + head + Text(" ") + line, soft_wrap=True)
                first = False


# ---------------------------------------------------------------------------------------------------------
# `assess`
# ---------------------------------------------------------------------------------------------------------


def _criteria_title(rule_id: str, block: Mapping[str, Any]) -> Text:
    baseline_bits = [
        with_unit(k, v) for k, v in block.items() if k.startswith("baseline_") and not isinstance(v, dict | list)
    ]
    title = Text(str(block.get("name", rule_id)), style="bold")
    if baseline_bits:
        title.append("  (" + "; ".join(baseline_bits) + ")", style="dim")
    return title


def _cell(key: str, value: Any, scale: ResponseScale | None) -> Text:
    if key == "new_lesions" and isinstance(value, bool):
        return Text("yes", style="bold red") if value else Text("no")
    return styled(value, scale)


def _criteria_table(
    console: Console, block: Mapping[str, Any], full: bool, scale: ResponseScale | None
) -> tuple[Table, list[str]]:
    timepoints = block.get("timepoints", [])
    keys: list[str] = []
    for tp in timepoints:
        for key in tp:
            if key in ("id", "explanation", "lesions") or key in keys:
                continue
            if key in QUIET and not full and all(t.get("sum_mm") is not None for t in timepoints):
                continue
            keys.append(key)
    rows = [[Text(str(tp["id"]))] + [_cell(k, tp.get(k), scale) for k in keys] for tp in timepoints]
    return fitted_table(console, [("id", "timepoint")], keys, rows, box=box.SIMPLE_HEAVY)


def _lesion_table(
    console: Console, block: Mapping[str, Any], scale: ResponseScale | None
) -> tuple[Table, list[str]] | None:
    found = [(tp["id"], les) for tp in block.get("timepoints", []) for les in tp.get("lesions", []) or []]
    if not found:
        return None
    keys: list[str] = []
    for _, les in found:
        keys.extend(k for k in les if k != "id" and k not in keys)
    rows = [
        [Text(str(tp_id)), Text(str(les["id"]))] + [_cell(k, les.get(k), scale) for k in keys] for tp_id, les in found
    ]
    return fitted_table(
        console,
        [("timepoint", "timepoint"), ("lesion", "lesion")],
        keys,
        rows,
        box=box.SIMPLE,
        title="per lesion",
        title_justify="left",
        title_style="dim",
    )


def _best_line(block: Mapping[str, Any], scale: ResponseScale | None) -> Text | None:
    if "best_overall_response" not in block:
        return None
    bor = block["best_overall_response"]
    text = Text("Best overall response: ")
    text.append_text(styled(bor, scale))
    if scale is not None and isinstance(bor, str):
        label = scale.label(bor)
        if label.lower() != scale.display(bor).lower():
            text.append(f" ({label})")
    where = block.get("best_overall_response_timepoint")
    if where:
        text.append(f"  at {where}, day {format_value(block.get('best_overall_response_day'))}", style="dim")
    params = block.get("parameters", {})
    if "confirmation_required" in params:
        text.append(
            "; confirmation " + ("required" if params["confirmation_required"] else "not required"), style="dim"
        )
    return text


def assessment_text(
    data: Mapping[str, Any], explain: bool = False, rule_sets: Mapping[str, LoadedRuleSet] | None = None
) -> str:
    """The assessment as plain text, 140 columns wide, for a file (`assess -o FILE`)."""
    console = Console(record=True, width=140, file=io.StringIO())
    render_assessment(console, data, explain=explain, rule_sets=rule_sets)
    return console.export_text()


def render_assessment(
    console: Console,
    data: Mapping[str, Any],
    explain: bool = False,
    case_header: str | None = None,
    rule_sets: Mapping[str, LoadedRuleSet] | None = None,
) -> None:
    """The terminal view of `assess`: one table per criteria set, disagreements, toxicity, warnings.

    `rule_sets` (the sets run, by id) give the meaning of each word and the flag labels; without them the shipped
    set of each id is used."""
    console.print(Text(case_header or f"Case {data['case_id']}", style="bold underline"))
    for rule_id, block in data.get("criteria", {}).items():
        _render_block(console, rule_id, block, explain, scale_for(rule_id, rule_sets))
    disagreements = data.get("disagreements") or []
    if disagreements:
        console.print()
        lines = [f"{d['timepoint']}: " + ", ".join(f"{k} {v}" for k, v in d["verdicts"].items()) for d in disagreements]
        console.print(Panel("\n".join(lines), title="criteria disagree", border_style="yellow", expand=False))
    if data.get("toxicity_assessed", True):
        _toxicity_panel(console, data.get("toxicity") or [], rule_sets)
    else:
        console.print()
        console.print(Text("Toxicity flags: not assessed (add toxicity to --criteria)", style="dim"))
    _warnings_panel(console, data.get("warnings") or [])


def _render_block(
    console: Console, rule_id: str, block: Mapping[str, Any], explain: bool, scale: ResponseScale | None
) -> None:
    console.print()
    console.print(_criteria_title(rule_id, block))
    if not block.get("timepoints"):
        console.print(Text("  no follow-up timepoints to assess", style="dim"))
    else:
        _print_fitted(console, *_criteria_table(console, block, explain, scale))
    lesions = _lesion_table(console, block, scale)
    if lesions is not None:
        _print_fitted(console, *lesions)
    best = _best_line(block, scale)
    if best is not None:
        console.print(best)
        if explain and block.get("best_overall_response_reason"):
            _hanging(console, [(Text("why:", style="bold"), str(block["best_overall_response_reason"]))])
    if explain:
        _hanging(
            console,
            (
                (Text(f"{tp['id']}:", style="bold"), line)
                for tp in block.get("timepoints", [])
                for line in tp.get("explanation", []) or []
            ),
        )


def flag_label(flag: Mapping[str, Any], rule_sets: Mapping[str, LoadedRuleSet] | None = None) -> str:
    """A toxicity flag in plain words: the rule set's `label`, else its description, else the code."""
    rule_id = str(flag.get("criteria") or "toxicity")
    rules = (rule_sets or {}).get(rule_id)
    if rules is None:
        from .rules import builtin_ids, load_rules

        rules = load_rules(rule_id) if rule_id in builtin_ids() else None
    spec = next((f for f in rules.schema.flags if f.flag == flag["flag"]), None) if rules is not None else None
    if spec is None:
        return str(flag["flag"])
    return spec.label or spec.description.rstrip(".")


def _toxicity_panel(
    console: Console, flags: Iterable[Mapping[str, Any]], rule_sets: Mapping[str, LoadedRuleSet] | None
) -> None:
    flags = list(flags)
    console.print()
    if not flags:
        console.print(Text("Toxicity flags: none raised", style="dim"))
        return
    console.print(Text("Toxicity flags", style="bold"))
    rows = []
    for flag in flags:
        text = Text(flag_label(flag, rule_sets), style="magenta")
        if flag.get("lesion"):
            text.append(f" ({flag['lesion']})")
        if flag.get("grade") is not None:
            text.append(f", grade {flag['grade']}")
        text.append("\n" + str(flag.get("explanation", "")))
        text.append(f"\n{flag.get('citation', '')}; evidence level {flag.get('evidence_level', '')}", style="dim")
        rows.append((Text(str(flag["timepoint"]), style="bold"), text))
    _hanging(console, rows)


def _warnings_panel(console: Console, warnings: Iterable[Mapping[str, Any]]) -> None:
    warnings = list(warnings)
    if not warnings:
        return
    lines = []
    for w in warnings:
        where = ", ".join(str(x) for x in (w.get("criteria"), w.get("timepoint"), w.get("lesion")) if x)
        line = Text(str(w["code"]), style="bold")
        line.append(f" ({where}): {w['message']}")
        lines.append(line)
    console.print()
    console.print(Panel(Group(*lines), title=f"{len(warnings)} warning(s)", border_style="yellow", expand=False))


# ---------------------------------------------------------------------------------------------------------
# `batch`: progress on long runs, warnings counted by code
# ---------------------------------------------------------------------------------------------------------


class _QuietUntil(Progress):
    """A progress display that draws nothing until the run has taken `delay` seconds (short runs stay silent)."""

    def __init__(self, *columns: Any, delay: float, **options: Any) -> None:
        self._shown_after = time.monotonic() + delay  # before Progress.__init__, which asks for the renderables
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterable[Any]:
        if time.monotonic() >= self._shown_after:
            yield from super().get_renderables()


class BatchProgress:
    """Progress of a batch on stderr: a rich progress bar with the current step and elapsed time, drawn only on a
    terminal and only once the run has taken more than `delay` seconds. Called with each step's message
    (`step("scoring part 3 of 10")`); "N of M" in a message moves the bar."""

    def __init__(self, console: Console | None = None, delay: float = 2.0, enabled: bool | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.delay = delay
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> BatchProgress:
        if self.enabled:
            self.progress = _QuietUntil(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
                delay=self.delay,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("reading", total=None)
        return self

    def __call__(self, message: str) -> None:
        if self.progress is None:
            return
        parts = re.search(r"(\d[\d,]*) of (\d[\d,]*)", message)
        if parts:
            done, total = (int(g.replace(",", "")) for g in parts.groups())
            self.progress.update(self.task, description=message, completed=max(done - 1, 0), total=total)
        else:
            self.progress.update(self.task, description=message)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def render_batch_warnings(
    console: Console, summary: pd.DataFrame, n_subjects: int, where: object | None = None
) -> None:
    """A batch's warnings counted by code, most frequent first: how many, in how many subjects, the first
    subjects, and what the code means (the message of its first occurrence). `summary` is
    `BatchResult.warning_summary()` (the same table for every engine)."""
    total = int(summary["count"].sum()) if len(summary) else 0
    if total == 0:
        return
    see = f" (see {where})" if where else ""
    in_subjects = f" in {n_subjects:,} subject(s)" if n_subjects else ""
    console.print(Text(f"{total:,} warning(s){in_subjects}{see}, by code:", style="bold yellow"))
    rows = []
    ordered = sorted(summary.to_dict("records"), key=lambda row: (-int(row["count"]), str(row["code"])))
    for row in ordered:
        text = Text(str(row["code"]), style="bold")
        text.append(f"  {int(row['count']):,}")
        if row["subjects"]:
            ids = list(row["first_subjects"])
            more = f", ... {int(row['subjects']) - len(ids):,} more" if row["subjects"] > len(ids) else ""
            text.append(f" in {int(row['subjects']):,} subject(s): {', '.join(ids)}{more}")
        text.append("\n" + str(row["message"]), style="dim")
        rows.append((Text("-"), text))
    _hanging(console, rows)


def render_batch_run(err: Console, out: Console, run: BatchRun) -> None:
    """Accounting, outputs written, warnings and (--summary) the summary. How dates were used (the stable-disease
    reference, imputation) is said in the summary, and after the accounting when the run met partial dates or
    was asked to treat dates otherwise than by default."""
    result, summary = run.result, run.request.summary
    for line in result.accounting_lines():
        err.print(line)
    dates_line = result.dates.describe()
    if run.dates_matter and not summary:
        err.print(dates_line)
    if run.written:
        err.print("wrote " + ", ".join(map(str, run.written)), style="dim")
    render_batch_warnings(err, result.warning_summary(), result.n_subjects_with_warnings, run.outputs.get("warnings"))
    if summary:
        if result.summary:
            out.print(dates_line)
        render_summary(out, result.summary)


def render_metrics(console: Console, level: str | None = None) -> None:
    """The vocabulary rule conditions may use: metrics (of one level, or all) and the rule-language functions."""
    from .functions import function_help
    from .metrics import METRICS

    table = Table(show_edge=False)
    for column in ("name", "level", "type", "unit", "meaning"):
        table.add_column(column)
    for name, m in sorted(METRICS.items(), key=lambda kv: (kv[1].level, kv[0])):
        if level and m.level != level:
            continue
        table.add_row(name, m.level, m.type, m.unit, m.doc.split("\n")[0])
    console.print(table)
    console.print("Functions: " + "; ".join(function_help()))


def import_sr_lines(output: object, result: Any) -> list[str]:
    """What `import-sr` says on stderr: the items left out, the warnings, and what the case file holds."""
    timepoints = result.case["timepoints"]
    lesions = len({lesion["id"] for tp in timepoints for lesion in tp["lesions"]})
    return [
        *(f"left out: {item}" for item in result.left_out),
        *(f"warning {warning.code}: {warning.message}" for warning in result.warnings),
        f"wrote {output}: {len(timepoints)} timepoint(s), {lesions} lesion(s) from {len(result.files)} report(s); "
        f"{len(result.left_out)} item(s) left out",
    ]


def render_rules_list(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(box=box.SIMPLE_HEAVY, show_edge=False)
    for column in ("id", "name", "kind", "needs", "main citation"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["id"], row["name"], row["kind"], ", ".join(row["inputs"]) or "-", row["citation"])
    console.print(table)


def render_rule_set(console: Console, info: Mapping[str, Any], scale: ResponseScale | None = None) -> None:
    scale = scale or scale_for(str(info["id"]))
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
            table.add_row(str(i + 1), rule["when"], styled(rule["then"], scale), rule.get("citation") or "")
        console.print(table)
    for flag in info.get("flags", []):
        console.print(
            Text(f"flag {flag['flag']} ({flag.get('label') or flag['flag']}): ", style="bold magenta")
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


def render_summary(console: Console, summary: Sequence[Mapping[str, Any]]) -> None:
    """Per criteria set: subjects, best-response counts, ORR and DCR with exact 95 % CIs."""
    for entry in summary:
        scale = scale_for(str(entry["criteria"]))
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
                Text("BOR ") + styled(word, scale), f"{count:,}", format_value(100.0 * count / entry["subjects"]), ""
            )
        for key, name, words in (
            ("objective_response_rate", "ORR", entry.get("responders") or (scale.responders if scale else [])),
            ("disease_control_rate", "DCR", entry.get("clinical_benefit") or (scale.benefit if scale else [])),
        ):
            m = entry[key]
            table.add_row(
                Text(f"{name} ({'+'.join(words)})" if words else name, style="bold"),
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
    scale_a, scale_b = (scale_for(label.removesuffix(" (A)").removesuffix(" (B)")) for label in (label_a, label_b))
    cross = Table(box=box.SIMPLE, show_edge=False)
    cross.add_column("")
    for column in verdicts.crosstab.columns:
        cross.add_column(str(column), justify="right")
    for index, row in verdicts.crosstab.iterrows():
        cross.add_row(styled(index, scale_a), *[str(int(v)) for v in row])
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
        table.add_row(
            str(row.subject_id), styled(row.bor_a, scale_a), styled(row.bor_b, scale_b), str(row.why_a), str(row.why_b)
        )
    console.print(table)
    if len(moved) > 50:
        console.print(Text(f"... and {len(moved) - 50:,} more (use -o to write them all)", style="dim"))

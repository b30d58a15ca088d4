"""Waterfall, spider and swimmer plots from batch results, and the case report's chart (matplotlib, no display).

Inputs are the tables `batch` writes: per-visit responses (`responses.csv`: subject_id, criteria, timepoint, day,
overall and the size columns) and, when present beside it, the best-response table (`responses.best.csv`). Without a
best-response table, the best overall response is derived from the per-visit responses with the set's defaults.

Nothing here knows a response word: colours come from the role of each word (`roles.py`), threshold lines from the
criteria set's own parameters, legends and titles from its name and labels. Pictures are sized for the text width
of an A4 page (170 mm) with no text under 7 pt, in a colour-blind-safe palette.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputTableError
from .roles import ROLE_TEXT_COLOURS, ResponseScale
from .rules import LoadedRuleSet
from .writers import atomic_path

PCT_COLUMNS = ("pct_from_baseline", "pct_size_from_baseline")
# Where a criteria set keeps its response and progression thresholds (% change), by the parameter names the
# shipped sets use. A set without them gets no threshold line rather than another set's.
THRESHOLD_PARAMETERS: dict[str, tuple[str, ...]] = {
    "partial": ("pr_pct_from_baseline", "size_pr_pct", "pmr_pct"),
    "progression": ("pd_pct_from_nadir", "pd_pct", "size_pd_pct", "pmd_pct"),
}
MIN_INCREASE_PARAMETERS = ("pd_min_mm_from_nadir",)
A4_TEXT_WIDTH_IN = 6.7  # 170 mm: an A4 page less 20 mm margins; at this width no text is under 7 pt
MAX_HEIGHT_IN = 9.5
MAX_LABELLED_SUBJECTS = 100
INK = "#222222"
STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "legend.title_fontsize": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",  # keep text as text in SVG (searchable, accessible)
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def _style(plt: Any) -> Iterator[None]:
    with plt.rc_context(STYLE):
        yield


# ---------------------------------------------------------------------------------------------------------
# The criteria set behind a results table: its words, roles, name and thresholds
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """A response or progression threshold of a criteria set, in % change, with the reference it is read from."""

    role: str
    value: float
    reference: str
    word: str
    min_increase: float | None = None

    @property
    def label(self) -> str:
        sign = "\u2212" if self.value < 0 else "+"
        return f"{self.word}: {sign}{abs(self.value):g} % from {self.reference}"

    @property
    def gid(self) -> str:
        return f"reference-line-{self.role}-{self.value:+g}"


def thresholds(rules: LoadedRuleSet, params: Mapping[str, Any] | None = None) -> list[Threshold]:
    """The set's response (downwards) and progression (upwards) thresholds, from its parameters."""
    values = {**rules.default_params, **(params or {})}
    scale = rules.scale
    out = []
    for role, names in THRESHOLD_PARAMETERS.items():
        name = next(
            (n for n in names if isinstance(values.get(n), int | float) and not isinstance(values[n], bool)), None
        )
        word = scale.word(role)
        if name is None or word is None:
            continue
        sign = -1.0 if role == "partial" else 1.0
        reference = "baseline"
        if name.endswith("_from_nadir"):
            reference = "nadir"
        elif role == "progression" and values.get("pd_reference") in ("nadir", "baseline"):
            reference = str(values["pd_reference"])
        extra = next((values[n] for n in MIN_INCREASE_PARAMETERS if isinstance(values.get(n), int | float)), None)
        out.append(
            Threshold(role, sign * float(values[name]), reference, word, extra if role == "progression" else None)
        )
    return out


@dataclass
class CriteriaSet:
    """What a plot needs to know about the criteria set of a results table."""

    id: str
    name: str
    scale: ResponseScale
    thresholds: list[Threshold] = field(default_factory=list)
    rules: LoadedRuleSet | None = None

    def colour(self, word: Any) -> str:
        return self.scale.colour(word)

    def role(self, words: pd.Series) -> pd.Series:
        return words.map(lambda w: self.scale.role_of(w))

    def legend_order(self, words: Sequence[str]) -> list[str]:
        rank = {w: i for i, w in enumerate(self.scale.ranking)}
        return sorted(dict.fromkeys(words), key=lambda w: (rank.get(w, len(rank)), w))

    def measure_label(self, column: str) -> str:
        """The plotted % column in words, from the metric the set reports under that name."""
        from .metrics import METRICS
        from .rules import report_items

        metric = column
        if self.rules is not None:
            metric = dict(report_items(self.rules.schema.report.timepoint)).get(column, column)
        doc = METRICS[metric].doc.split("\n")[0] if metric in METRICS else ""
        if not doc:
            return column.replace("_", " ")
        text = re.sub(r"\s*\([^)]*\)", "", doc).rstrip(". ").removesuffix(", %").strip()
        text = re.sub(r"^per cent change of ", "change in ", text, flags=re.I)
        return text[0].lower() + text[1:] + " (%)"


def criteria_set(criteria: str, rules: LoadedRuleSet | None = None) -> CriteriaSet:
    """The set of this id: `rules` when given (a custom rule file), else the shipped set of that id."""
    from .rules import builtin_ids, load_rules

    if rules is None:
        if criteria not in builtin_ids():
            raise InputTableError(
                f"`{criteria}` is not a shipped criteria set, so its response words have no known meaning",
                hint="give its rule file with --rules FILE",
            )
        rules = load_rules(criteria)
    elif rules.id != criteria:
        raise InputTableError(
            f"the rule file given is `{rules.id}`, but the results plotted are `{criteria}`",
            file=rules.path,
            hint=f"give the rule file of `{criteria}`, or --criteria {rules.id}",
        )
    return CriteriaSet(rules.id, rules.schema.name, rules.scale, thresholds(rules), rules)


# ---------------------------------------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------------------------------------


def _plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: (frame[c].astype(object) if isinstance(frame[c].dtype, pd.CategoricalDtype) else frame[c])
            for c in frame.columns
        }
    )


def read_results(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Per-visit responses and, if found beside them, the best-response table."""
    from .trial import read_frame

    p = Path(path)
    frame = _plain_frame(read_frame(p).frame)
    needed = {"subject_id", "criteria", "timepoint", "day", "overall"}
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise InputTableError(
            f"not a per-visit results table: missing column(s) {', '.join(missing)}",
            file=path,
            hint="give the -o file of `crlm-response batch` (one row per subject, timepoint and criteria set)",
        )
    frame["day"] = pd.to_numeric(frame["day"], errors="coerce")
    for column in PCT_COLUMNS:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    best_path = p.with_name(f"{p.stem}.best{p.suffix}")
    best = _plain_frame(read_frame(best_path).frame) if best_path.exists() else None
    return frame, best


def read_groups(path: str | Path, spec: str) -> pd.Series:
    """Group per subject from a table with `subject_id` and the column of `--group-by` (e.g. the batch's lesion
    table, or a subject table with arm or regimen). `COLUMN=VALUE` groups by whether VALUE is among the column's
    `;`-separated words (e.g. `agents=bevacizumab`)."""
    from .trial import read_frame

    table = _plain_frame(read_frame(path, rows="subject").frame)
    return groups_from(table, spec, path)


def group_column(visits: pd.DataFrame, best: pd.DataFrame | None, spec: str, source: str | Path) -> pd.Series:
    """Group per subject from a column of the results themselves (per-visit or best-response table)."""
    column = spec.partition("=")[0].strip()
    for table in (visits, best):
        if table is not None and column in table.columns:
            return groups_from(table, spec, source)
    have = sorted(set(visits.columns) | (set(best.columns) if best is not None else set()))
    raise InputTableError(
        f"no column `{column}` in the results to group subjects by",
        file=source,
        hint="give a table that has it with --groups FILE (e.g. the lesion table given to batch); "
        "the results have: " + ", ".join(have),
    )


def groups_from(table: pd.DataFrame, spec: str, source: str | Path | None = None) -> pd.Series:
    column, _, value = spec.partition("=")
    column, value = column.strip(), value.strip()
    for needed in ("subject_id", column):
        if needed not in table.columns:
            raise InputTableError(
                f"no column `{needed}` to group subjects by",
                file=source,
                hint="columns there: " + ", ".join(map(str, table.columns)),
            )
    rows = table.loc[table[column].notna() & (table[column].astype(str).str.strip() != ""), ["subject_id", column]]
    words = rows[column].astype(str).str.strip()
    if value:
        has = words.map(lambda text: value.lower() in [w.strip().lower() for w in re.split(r"[;,]", text)])
        words = has.map({True: f"with {value}", False: f"without {value}"})
    per_subject = pd.DataFrame({"subject_id": rows["subject_id"].astype(str), "group": words}).drop_duplicates()
    clash = per_subject.loc[per_subject["subject_id"].duplicated(keep=False)]
    if not clash.empty:
        first = clash["subject_id"].iat[0]
        shown = ", ".join(sorted(clash.loc[clash["subject_id"] == first, "group"]))
        raise InputTableError(
            f"subject {first} has more than one `{column}` ({shown}): a subject must be in one group",
            file=source,
            hint=f"{clash['subject_id'].nunique():,} subject(s) like this; group by a column that is fixed per subject",
        )
    return per_subject.set_index("subject_id")["group"]


def _one_criteria(frame: pd.DataFrame, criteria: str | None) -> tuple[pd.DataFrame, str]:
    available = list(dict.fromkeys(frame["criteria"].astype(str)))
    if criteria is None:
        with_sizes = [
            c
            for c in available
            if any(
                col in frame and frame.loc[frame["criteria"].astype(str) == c, col].notna().any() for col in PCT_COLUMNS
            )
        ]
        criteria = with_sizes[0] if with_sizes else (available[0] if available else "")
    if criteria not in available:
        raise InputTableError(
            f"criteria `{criteria}` is not in this results table", hint=f"it has: {', '.join(available)}"
        )
    return frame.loc[frame["criteria"].astype(str) == criteria].copy(), criteria


def _pct_column(frame: pd.DataFrame, criteria: str) -> str:
    for column in PCT_COLUMNS:
        if column in frame and frame[column].notna().any():
            return column
    for column in PCT_COLUMNS:  # the column is there but no subject has a measured follow-up yet
        if column in frame:
            return column
    raise InputTableError(
        f"`{criteria}` results have no % change from baseline to plot",
        hint="waterfall and spider plots are for sets that measure size (e.g. recist1.1, who, mrecist, choi)",
    )


def best_responses(visits: pd.DataFrame, best: pd.DataFrame | None, plotted: CriteriaSet | str) -> pd.Series:
    """Best overall response per subject: from the best-response table, else derived with the set's defaults."""
    from .bor import BorSettings, best_overall_response

    cs = plotted if isinstance(plotted, CriteriaSet) else criteria_set(plotted)
    if best is not None and "best_overall_response" in best:
        rows = best.loc[best["criteria"].astype(str) == cs.id] if "criteria" in best else best
        return rows.set_index(rows["subject_id"].astype(str))["best_overall_response"].astype(str)
    params = cs.rules.default_params if cs.rules is not None else {}
    method = cs.rules.schema.best_response.method if cs.rules and cs.rules.schema.best_response else "recist"
    day = pd.to_numeric(visits["day"], errors="coerce").to_numpy(dtype=float)
    result = best_overall_response(
        visits["subject_id"].astype(str).to_numpy(dtype=object),
        day,
        visits["overall"].astype(object).to_numpy(dtype=object),
        BorSettings.from_params(params),
        cs.scale,
        method,
        # a visit whose day is unknown (a partial date) keeps its place in the file, which batch wrote in order
        sequence=np.arange(len(visits), dtype=float) if np.isnan(day).any() else None,
    )
    return result.subjects.set_index("subject")["best_overall_response"].astype(str)


# ---------------------------------------------------------------------------------------------------------
# Shared drawing pieces
# ---------------------------------------------------------------------------------------------------------


def _save(fig: Any, plt: Any, output: str | Path) -> None:
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix not in ("png", "svg", "pdf"):
        plt.close(fig)
        raise InputTableError(f"cannot write a .{suffix} picture", file=output, hint="use .png, .svg or .pdf")
    metadata = {"Date": None} if suffix == "svg" else {"CreationDate": None} if suffix == "pdf" else None
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format=suffix, dpi=200, metadata=metadata)  # constrained layout: exactly the figure size
    plt.close(fig)


def _subjects(n: int) -> str:
    return f"{n:,} subject" + ("" if n == 1 else "s")


def _not_shown(missing: int) -> str:
    return f"\n{missing:,} without a measured follow-up not shown" if missing > 0 else ""


def _reference_lines(ax: Any, lines: Sequence[Threshold]) -> None:
    styles = {"partial": (0, (5, 3)), "progression": (0, (1.5, 2))}
    for line in lines:
        ax.axhline(
            line.value,
            color=INK,
            linestyle=styles.get(line.role, "--"),
            linewidth=0.9,
            label=line.label,
            gid=line.gid,
            zorder=2.5,
        )
    ax.axhline(0, color="#777777", linewidth=0.6, zorder=2.4)


def _legend(fig: Any, handles: list[Any]) -> None:
    """One legend, right of the plot and inside the figure's width (no text shrinks when printed at A4 width)."""
    fig.legend(
        handles=handles, loc="outside right upper", frameon=False, title="Best overall response", alignment="left"
    )


def _category_handles(plt: Any, cs: CriteriaSet, counts: Mapping[str, int], kind: str = "bar") -> list[Any]:
    handles = []
    for word in cs.legend_order(list(counts)):
        label = f"{cs.scale.display(word)} (n = {counts[word]:,})"
        if kind == "line":
            handles.append(plt.Line2D([0], [0], color=cs.colour(word), linewidth=1.6, label=label))
        else:
            handles.append(plt.Rectangle((0, 0), 1, 1, color=cs.colour(word), label=label))
    return handles


def rates_text(bor: pd.Series, cs: CriteriaSet) -> str:
    """`ORR 41.7 % (5/12; 95 % CI 15.2-72.3) · DCR ...` over every subject with a best response (NE included)."""
    from .summary import clopper_pearson

    n = len(bor)
    if n == 0:
        return ""
    parts = []
    for name, words in (("ORR", cs.scale.responders), ("DCR", cs.scale.benefit)):
        if not words:
            continue
        k = int(bor.isin(words).sum())
        low, high = clopper_pearson(k, n)
        parts.append(f"{name} {100 * k / n:.1f} % ({k}/{n}; 95 % CI {100 * low:.1f}\u2013{100 * high:.1f})")
    return " \u00b7 ".join(parts)


def _group_list(subjects: pd.Index, groups: pd.Series | None) -> list[tuple[str | None, pd.Index]]:
    if groups is None:
        return [(None, subjects)]
    labels = pd.Series(subjects, index=subjects).map(groups).fillna("not given")
    return [(str(name), pd.Index(labels.index[labels == name])) for name in sorted(labels.unique(), key=str)]


# ---------------------------------------------------------------------------------------------------------
# Waterfall
# ---------------------------------------------------------------------------------------------------------


def waterfall(
    visits: pd.DataFrame,
    best: pd.DataFrame | None,
    output: str | Path,
    criteria: str | None = None,
    title: str | None = None,
    rules: LoadedRuleSet | None = None,
    groups: pd.Series | None = None,
    label_subjects: bool = False,
) -> dict[str, Any]:
    """One bar per subject: best (lowest) % change from baseline, sorted, coloured by best overall response (a
    shrinking subject can still have progressed through a new lesion); n per category, ORR and DCR; with `groups`,
    one panel per group."""
    plt = _pyplot()
    rows, criteria = _one_criteria(visits, criteria)
    cs = criteria_set(criteria, rules)
    column = _pct_column(rows, criteria)
    bor = best_responses(rows, best, cs)
    change = rows.groupby(rows["subject_id"].astype(str))[column].min()
    subjects = bor.index.union(change.index)
    change = change.reindex(subjects)
    without = int(change.isna().sum())
    plotted = change.dropna()
    n = len(plotted)
    # Groups hold every subject (their rates count them all); a group without a bar gets no panel.
    panels = [(g, m) for g, m in _group_list(subjects, groups) if m.isin(plotted.index).any() or groups is None]
    labelled = label_subjects and n <= MAX_LABELLED_SUBJECTS
    with _style(plt):
        fig, axes = plt.subplots(
            1,
            len(panels),
            sharey=True,
            squeeze=False,
            figsize=(A4_TEXT_WIDTH_IN, 4.2 if labelled else 3.8),
            width_ratios=[max(int(members.isin(plotted.index).sum()), 1) for _, members in panels],
            layout="constrained",
        )
        for ax, (group, members) in zip(axes[0], panels, strict=True):
            _waterfall_panel(ax, plotted.reindex(members[members.isin(plotted.index)]), bor, cs, labelled)
            if group is not None:
                rate = rates_text(bor.reindex(members).dropna(), cs).split(" \u00b7 ")[0]
                ax.set_title(f"{group} (n = {len(members):,})\n{rate}", fontsize=7)
        axes[0][0].set_ylabel(f"best {cs.measure_label(column)}")
        counts = bor.reindex(plotted.index).dropna().value_counts()
        handles = _category_handles(plt, cs, {str(k): int(v) for k, v in counts.items()})
        line_handles, _ = axes[0][-1].get_legend_handles_labels()
        _legend(fig, handles + line_handles)
        fig.suptitle(
            title or f"Best response, {cs.name}: {_subjects(n)}{_not_shown(without)}", fontsize=9, x=0.02, ha="left"
        )
        fig.supxlabel(rates_text(bor, cs), fontsize=7.5)
        _save(fig, plt, output)
    return {"subjects": n, "without_follow_up": without, "criteria": criteria, "name": cs.name}


def _waterfall_panel(ax: Any, values: pd.Series, bor: pd.Series, cs: CriteriaSet, labelled: bool) -> None:
    values = values.sort_values(ascending=False, kind="stable")
    n = len(values)
    x = np.arange(n)
    colours = [cs.colour(bor.get(s)) for s in values.index]
    ax.bar(
        x,
        values.to_numpy(),
        color=colours,
        width=0.85 if n < 200 else 1.0,
        edgecolor="none" if n >= 200 else "white",
        linewidth=0.3,
        zorder=2,
    )
    _reference_lines(ax, cs.thresholds)
    if labelled:
        ax.set_xticks(x, values.index, rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel("subjects (sorted by best change)" if not labelled else "")
    ax.set_xlim(-1, max(n, 1))
    ax.spines["bottom"].set_visible(False)


# ---------------------------------------------------------------------------------------------------------
# Spider
# ---------------------------------------------------------------------------------------------------------


def spider(
    visits: pd.DataFrame,
    best: pd.DataFrame | None,
    output: str | Path,
    criteria: str | None = None,
    title: str | None = None,
    rules: LoadedRuleSet | None = None,
    groups: pd.Series | None = None,
    label_subjects: bool = False,
) -> dict[str, Any]:
    """% change from baseline over time (weeks), one line per subject coloured by best response; visits scored as
    progression marked."""
    plt = _pyplot()
    rows, criteria = _one_criteria(visits, criteria)
    cs = criteria_set(criteria, rules)
    column = _pct_column(rows, criteria)
    bor = best_responses(rows, best, cs)
    everyone = pd.Index(bor.index).union(pd.Index(rows["subject_id"].astype(str).unique()))
    rows = rows.loc[rows[column].notna()].sort_values(["subject_id", "day"], kind="stable")
    n = rows["subject_id"].nunique()
    alpha, width = (0.85, 1.2) if n <= 100 else (max(0.08, 40.0 / n), 0.6)
    labelled = label_subjects and n <= MAX_LABELLED_SUBJECTS
    with _style(plt):
        fig, ax = plt.subplots(figsize=(A4_TEXT_WIDTH_IN, 4.2), layout="constrained")
        for subject, group in rows.groupby(rows["subject_id"].astype(str), sort=True):
            weeks = np.r_[0.0, group["day"].to_numpy(dtype=float) / 7.0]
            values = np.r_[0.0, group[column].to_numpy(dtype=float)]
            ax.plot(weeks, values, color=cs.colour(bor.get(subject)), alpha=alpha, linewidth=width, zorder=2)
            if labelled:
                ax.annotate(subject, (weeks[-1], values[-1]), xytext=(3, 0), textcoords="offset points", fontsize=7)
        progressed = rows.loc[cs.role(rows["overall"].astype(object)) == "progression"]
        ax.scatter(
            progressed["day"].to_numpy(dtype=float) / 7.0,
            progressed[column].to_numpy(dtype=float),
            marker="X",
            color=INK,
            edgecolors="white",
            linewidths=0.5,
            s=26,
            zorder=3,
            label=f"{cs.scale.word('progression') or 'progression'} at this visit",
            gid="progression-markers",
        )
        _reference_lines(ax, cs.thresholds)
        ax.set_xlabel("weeks since baseline")
        ax.set_ylabel(cs.measure_label(column))
        counts = bor.reindex(rows["subject_id"].astype(str).unique()).dropna().value_counts()
        handles = _category_handles(plt, cs, {str(k): int(v) for k, v in counts.items()}, kind="line")
        line_handles, _ = ax.get_legend_handles_labels()
        _legend(fig, handles + line_handles)
        ax.set_title(
            title or f"Change over time, {cs.name}: {_subjects(int(n))}{_not_shown(len(everyone) - int(n))}",
            loc="left",
        )
        _save(fig, plt, output)
    return {"subjects": int(n), "without_follow_up": len(everyone) - int(n), "criteria": criteria, "name": cs.name}


# ---------------------------------------------------------------------------------------------------------
# Swimmer
# ---------------------------------------------------------------------------------------------------------


def swimmer(
    visits: pd.DataFrame,
    best: pd.DataFrame | None,
    output: str | Path,
    criteria: str | None = None,
    title: str | None = None,
    rules: LoadedRuleSet | None = None,
    groups: pd.Series | None = None,
    label_subjects: bool = False,
    data_cut_week: float | None = None,
) -> dict[str, Any]:
    """One bar per subject from baseline to the last assessment (weeks), coloured by best response: every
    assessment, the first response, the first new lesion, the first progression, and an arrow for subjects without
    progression; with `groups`, subjects are listed group by group under a heading."""
    plt = _pyplot()
    rows, criteria = _one_criteria(visits, criteria)
    cs = criteria_set(criteria, rules)
    bor = best_responses(rows, best, cs)
    rows = rows.sort_values(["subject_id", "day"], kind="stable")
    rows["_subject"] = rows["subject_id"].astype(str)
    rows["_role"] = cs.role(rows["overall"].astype(object))
    last = rows.groupby("_subject")["day"].max() / 7.0
    position, headings = _swimmer_rows(last, groups)
    order = sorted(position, key=position.__getitem__)
    n = len(order)
    thin = n > 60
    labelled = label_subjects and n <= MAX_LABELLED_SUBJECTS
    height = len(position) + len(headings)
    with _style(plt):
        fig, ax = plt.subplots(
            figsize=(A4_TEXT_WIDTH_IN, max(2.8, min(MAX_HEIGHT_IN, 0.2 * height + 1.4))), layout="constrained"
        )
        ax.barh(
            [position[s] for s in order],
            last.reindex(order).to_numpy(),
            color=[cs.colour(bor.get(s)) for s in order],
            height=0.7 if not thin else 1.0,
            edgecolor="none",
            zorder=2,
        )
        _swimmer_markers(ax, rows, position, cs, thin)
        ongoing = [s for s in order if not (rows.loc[rows["_subject"] == s, "_role"] == "progression").any()]
        ax.scatter(
            last.reindex(ongoing).to_numpy() + 0.6,
            [position[s] for s in ongoing],
            marker=">",
            color=INK,
            s=10 if thin else 26,
            label=f"no {cs.scale.word('progression') or 'progression'} at last assessment",
            gid="ongoing",
            zorder=3,
        )
        if data_cut_week is not None:
            ax.axvline(data_cut_week, color=INK, linestyle=(0, (4, 2)), linewidth=0.8, gid="data-cut")
            ax.annotate(
                f"data cut-off (week {data_cut_week:g})",
                (data_cut_week, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
        for text, y in headings:
            ax.text(0, y, text, va="center", ha="left", fontsize=7.5, fontweight="bold")
        ax.set_yticks([position[s] for s in order] if labelled else [], order if labelled else [], fontsize=7)
        ax.set_ylim(-0.7, height - 0.3)
        ax.set_xlabel("weeks since baseline")
        ax.set_ylabel("" if labelled else "subjects")
        counts = bor.reindex(order).dropna().value_counts()
        handles = _category_handles(plt, cs, {str(k): int(v) for k, v in counts.items()})
        marker_handles, _ = ax.get_legend_handles_labels()
        _legend(fig, handles + marker_handles)
        everyone = pd.Index(bor.index).union(pd.Index(order))
        ax.set_title(
            title or f"Time on study, {cs.name}: {_subjects(n)}{_not_shown(len(everyone) - n)}",
            loc="left",
            pad=14 if data_cut_week is not None else 6,
        )
        _save(fig, plt, output)
    return {"subjects": n, "without_follow_up": len(everyone) - n, "criteria": criteria, "name": cs.name}


def _swimmer_rows(last: pd.Series, groups: pd.Series | None) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """Row of each subject (longest time on study at the top of its group) and, with groups, a heading row above
    each group; the first group is at the top."""
    position: dict[str, int] = {}
    headings: list[tuple[str, int]] = []
    y = 0
    for group, members in reversed(_group_list(pd.Index(last.index), groups)):
        for subject in last.reindex(members).sort_values(kind="stable").index:
            position[str(subject)] = y
            y += 1
        if group is not None:
            headings.append((f"{group} (n = {len(members):,})", y))
            y += 1
    return position, headings


def _swimmer_markers(ax: Any, rows: pd.DataFrame, position: Mapping[str, int], cs: CriteriaSet, thin: bool) -> None:
    """Assessment ticks, then the first response, first new lesion and first progression of each subject. The
    progression marker is dark with a white edge, so it shows on a bar coloured as progression."""
    y = rows["_subject"].map(position).to_numpy(dtype=float)
    if not thin:
        ax.scatter(
            rows["day"].to_numpy(dtype=float) / 7.0,
            y,
            marker="|",
            color="#444444",
            s=24,
            linewidths=0.8,
            label="assessment",
            gid="assessments",
            zorder=3,
        )
    responders = cs.scale.responders
    new = (
        rows["new_lesions"].astype(str).str.lower().isin(["true", "1", "yes", "1.0"])
        if "new_lesions" in rows
        else pd.Series(False, index=rows.index)
    )
    groups = (
        (
            rows.loc[rows["overall"].astype(object).isin(responders)],
            dict(marker="^", color="white", edgecolors=INK, linewidths=0.7, s=14 if thin else 34),
            f"first response ({'/'.join(responders)})",
            "first-response",
        ),
        (
            rows.loc[new],
            dict(marker="D", color="#F0E442", edgecolors=INK, linewidths=0.6, s=12 if thin else 26),
            "first new lesion",
            "first-new-lesion",
        ),
        (
            rows.loc[rows["_role"] == "progression"],
            dict(marker="X", color=INK, edgecolors="white", linewidths=0.6, s=16 if thin else 44),
            f"first {cs.scale.word('progression') or 'progression'}",
            "first-progression",
        ),
    )
    for subset, style, label, gid in groups:
        first = subset.drop_duplicates("_subject")
        if first.empty and gid == "first-new-lesion":
            continue
        ax.scatter(
            first["day"].to_numpy(dtype=float) / 7.0,
            first["_subject"].map(position).to_numpy(dtype=float),
            label=label,
            gid=gid,
            zorder=4,
            **style,
        )


PLOTS = {"waterfall": waterfall, "spider": spider, "swimmer": swimmer}


# ---------------------------------------------------------------------------------------------------------
# The case report's chart
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SumPoint:
    label: str
    week: float
    value: float | None
    word: str | None = None


def sum_chart_png(
    points: Sequence[SumPoint],
    lines: Sequence[Threshold],
    cs: CriteriaSet,
    unit: str = "mm",
    width_in: float = 3.4,
    height_in: float = 1.85,
) -> bytes:
    """The sum of the target lesions over time, with the set's response threshold (from baseline) and
    progression threshold (from the nadir so far, a step line), each visit's verdict written above its point."""
    plt = _pyplot()
    measured = [p for p in points if p.value is not None]
    with _style(plt):
        fig, ax = plt.subplots(figsize=(width_in, height_in))
        weeks = [p.week for p in measured]
        values = [float(p.value) for p in measured if p.value is not None]
        ax.plot(weeks, values, color=INK, linewidth=1.2, marker="o", markersize=3.5, zorder=3)
        for p in measured[1:]:
            ax.annotate(
                cs.scale.display(p.word) if p.word else "",
                (p.week, float(p.value or 0)),
                xytext=(0, 5),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color=ROLE_TEXT_COLOURS.get(cs.scale.role_of(p.word) or "", INK),
                fontweight="bold",
            )
        if measured:
            _threshold_steps(ax, measured, lines)
        ax.set_xlabel("weeks since baseline")
        ax.set_ylabel(f"sum of target lesions ({unit})")
        ax.set_ylim(bottom=0, top=max(values + [1.0]) * 1.35)
        ax.legend(loc="lower left", frameon=False, fontsize=7)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=220, bbox_inches="tight")
        plt.close(fig)
    return buffer.getvalue()


def _threshold_steps(ax: Any, measured: Sequence[SumPoint], lines: Sequence[Threshold]) -> None:
    baseline = float(measured[0].value or 0)
    weeks = [p.week for p in measured]
    for line in lines:
        factor = 1.0 + line.value / 100.0
        if line.reference == "nadir":
            nadir, levels = baseline, []
            for p in measured:
                level = nadir * factor
                if line.min_increase is not None:
                    level = max(level, nadir + line.min_increase)
                levels.append(level)
                nadir = min(nadir, float(p.value or nadir))
            ax.step(weeks, levels, where="pre", color=INK, linestyle=(0, (1.5, 2)), linewidth=0.9, label=line.label)
        else:
            style = (0, (5, 3)) if line.role == "partial" else (0, (1.5, 2))
            ax.axhline(baseline * factor, color=INK, linestyle=style, linewidth=0.9, label=line.label)

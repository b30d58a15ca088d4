"""Waterfall, spider and swimmer plots from batch results (matplotlib, no display needed).

Inputs are the tables `batch` writes: per-visit responses (`responses.csv`: subject_id, criteria, timepoint, day,
overall and the size columns) and, when present beside it, the best-response table (`responses.best.csv`). Without a
best-response table, the best overall response is derived from the per-visit responses with the default settings.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bor import BorSettings, best_overall_response
from .errors import InputTableError
from .roles import ResponseScale
from .writers import atomic_path

RESPONSE_COLOURS = {
    "CR": "#1a9850",
    "PR": "#66bd63",
    "SD": "#fee08b",
    "NON-CR/NON-PD": "#d9d9d9",
    "PD": "#d73027",
    "NE": "#969696",
}
PCT_COLUMNS = ("pct_from_baseline", "pct_size_from_baseline")
REFERENCE_LINES = ((20.0, "+20 % (RECIST PD)"), (-30.0, "-30 % (RECIST PR)"))
SIZE_BASED = ("recist1.1", "who", "mrecist", "easl", "choi", "mchoi")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InputTableError(
            "plots need matplotlib", hint='install it with: pip install "crlm-response[plots]"'
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # keep text as text in SVG (searchable, accessible)
    return plt


def read_results(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Per-visit responses and, if found beside them, the best-response table."""
    from .trial import read_frame

    p = Path(path)
    frame = read_frame(p).frame
    frame = pd.DataFrame(
        {
            c: (frame[c].astype(object) if isinstance(frame[c].dtype, pd.CategoricalDtype) else frame[c])
            for c in frame.columns
        }
    )
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
    best = None
    if best_path.exists():
        best = read_frame(best_path).frame
        best = pd.DataFrame(
            {
                c: (best[c].astype(object) if isinstance(best[c].dtype, pd.CategoricalDtype) else best[c])
                for c in best.columns
            }
        )
    return frame, best


def _one_criteria(frame: pd.DataFrame, criteria: str | None) -> tuple[pd.DataFrame, str]:
    available = list(dict.fromkeys(frame["criteria"].astype(str)))
    if criteria is None:
        criteria = next((c for c in SIZE_BASED if c in available), available[0] if available else "")
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
        hint="waterfall and spider plots are for size-based sets (recist1.1, who, mrecist, choi)",
    )


def _scale(criteria: str) -> ResponseScale:
    """The response words of a shipped criteria set (results of a custom file fall back to RECIST 1.1's)."""
    from .rules import builtin_ids, load_rules

    return load_rules(criteria if criteria in builtin_ids() else "recist1.1").scale


def best_responses(visits: pd.DataFrame, best: pd.DataFrame | None, criteria: str) -> pd.Series:
    """Best overall response per subject: from the best-response table, else derived (default settings)."""
    if best is not None and "best_overall_response" in best:
        rows = best.loc[best["criteria"].astype(str) == criteria] if "criteria" in best else best
        return rows.set_index(rows["subject_id"].astype(str))["best_overall_response"].astype(str)
    result = best_overall_response(
        visits["subject_id"].astype(str).to_numpy(dtype=object),
        visits["day"],
        visits["overall"].astype(object).to_numpy(dtype=object),
        BorSettings(),
        _scale(criteria),
    )
    return result.subjects.set_index("subject")["best_overall_response"].astype(str)


def _save(fig: Any, plt: Any, output: str | Path) -> None:
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix not in ("png", "svg", "pdf"):
        plt.close(fig)
        raise InputTableError(f"cannot write a .{suffix} picture", file=output, hint="use .png, .svg or .pdf")
    with atomic_path(output) as tmp:
        fig.savefig(
            tmp, format=suffix, dpi=150, bbox_inches="tight", metadata={"Date": None} if suffix == "svg" else None
        )
    plt.close(fig)


def _subjects(n: int) -> str:
    return f"{n:,} subject" + ("" if n == 1 else "s")


def _not_shown(all_subjects: pd.Index, shown: int) -> str:
    missing = len(all_subjects) - shown
    return f"; {missing} without a measured follow-up not shown" if missing > 0 else ""


def _reference_lines(ax: Any) -> None:
    for y, label in REFERENCE_LINES:
        ax.axhline(y, color="#333333", linestyle="--", linewidth=0.9, label=label, gid=f"reference-line-{label}")
    ax.axhline(0, color="#999999", linewidth=0.6)


def waterfall(
    visits: pd.DataFrame,
    best: pd.DataFrame | None,
    output: str | Path,
    criteria: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """One bar per subject: best (lowest) % change of the target sum from baseline, sorted, coloured by best
    overall response (a shrinking subject can still be PD through a new lesion)."""
    plt = _pyplot()
    rows, criteria = _one_criteria(visits, criteria)
    column = _pct_column(rows, criteria)
    bor = best_responses(rows, best, criteria)
    change = rows.groupby(rows["subject_id"].astype(str))[column].min()
    subjects = bor.index.union(change.index)
    change = change.reindex(subjects)
    without = int(change.isna().sum())
    plotted = change.dropna().sort_values(ascending=False, kind="stable")
    colours = [RESPONSE_COLOURS.get(bor.get(s, "NE"), "#969696") for s in plotted.index]
    n = len(plotted)
    fig, ax = plt.subplots(figsize=(max(6.0, min(16.0, 0.18 * n + 4)), 4.8))
    x = np.arange(n)
    ax.bar(
        x,
        plotted.to_numpy(),
        color=colours,
        width=0.85 if n < 200 else 1.0,
        edgecolor="none" if n >= 200 else "white",
        linewidth=0.3,
    )
    _reference_lines(ax)
    if n <= 40:
        ax.set_xticks(x, plotted.index, rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel("subjects (sorted by best change)")
    ax.set_ylabel("best change in sum of diameters from baseline (%)")
    shown = [w for w in RESPONSE_COLOURS if w in set(bor.reindex(plotted.index).fillna("NE"))]
    handles = [plt.Rectangle((0, 0), 1, 1, color=RESPONSE_COLOURS[w], label=f"BOR {w}") for w in shown]
    line_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + line_handles, fontsize=8, loc="upper right", frameon=False)
    note = f"; {without} without a measured follow-up not shown" if without else ""
    ax.set_title(title or f"Best response, {criteria}: {_subjects(n)}{note}", fontsize=10)
    ax.set_xlim(-1, max(n, 1))
    _save(fig, plt, output)
    return {"subjects": n, "without_follow_up": without, "criteria": criteria}


def spider(
    visits: pd.DataFrame,
    best: pd.DataFrame | None,
    output: str | Path,
    criteria: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """% change from baseline over time (weeks), one line per subject, PD visits marked."""
    plt = _pyplot()
    rows, criteria = _one_criteria(visits, criteria)
    column = _pct_column(rows, criteria)
    bor = best_responses(rows, best, criteria)
    everyone = pd.Index(bor.index).union(pd.Index(rows["subject_id"].astype(str).unique()))
    rows = rows.loc[rows[column].notna()].sort_values(["subject_id", "day"], kind="stable")
    fig, ax = plt.subplots(figsize=(8, 5))
    n = rows["subject_id"].nunique()
    alpha, width = (0.8, 1.2) if n <= 100 else (max(0.08, 40.0 / n), 0.6)
    for subject, group in rows.groupby(rows["subject_id"].astype(str), sort=True):
        weeks = np.r_[0.0, group["day"].to_numpy(dtype=float) / 7.0]
        values = np.r_[0.0, group[column].to_numpy(dtype=float)]
        colour = RESPONSE_COLOURS.get(bor.get(subject, "NE"), "#969696")
        ax.plot(weeks, values, color=colour, alpha=alpha, linewidth=width)
    pd_rows = rows.loc[rows["overall"].astype(str) == "PD"]
    ax.scatter(
        pd_rows["day"].to_numpy(dtype=float) / 7.0,
        pd_rows[column].to_numpy(dtype=float),
        marker="x",
        color="#d73027",
        s=18,
        zorder=3,
        label="PD at this visit",
        gid="pd-markers",
    )
    _reference_lines(ax)
    ax.set_xlabel("weeks since baseline")
    ax.set_ylabel("change in sum of diameters from baseline (%)")
    shown = [w for w in RESPONSE_COLOURS if w in set(bor)]
    handles = [plt.Line2D([0], [0], color=RESPONSE_COLOURS[w], label=f"BOR {w}") for w in shown]
    line_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + line_handles, fontsize=8, loc="upper left", frameon=False)
    ax.set_title(title or f"Change over time, {criteria}: {_subjects(n)}{_not_shown(everyone, n)}", fontsize=10)
    _save(fig, plt, output)
    return {"subjects": int(n), "without_follow_up": len(everyone) - int(n), "criteria": criteria}


def swimmer(
    visits: pd.DataFrame,
    best: pd.DataFrame | None,
    output: str | Path,
    criteria: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """One bar per subject from baseline to the last assessment (weeks): every assessment, the first response
    (CR/PR), PD, and an arrow for subjects still on study (no PD yet)."""
    plt = _pyplot()
    rows, criteria = _one_criteria(visits, criteria)
    bor = best_responses(rows, best, criteria)
    rows = rows.sort_values(["subject_id", "day"], kind="stable")
    last = rows.groupby(rows["subject_id"].astype(str))["day"].max() / 7.0
    order = last.sort_values(kind="stable").index.tolist()
    n = len(order)
    position = {s: i for i, s in enumerate(order)}
    fig, ax = plt.subplots(figsize=(8, max(3.0, min(14.0, 0.22 * n + 1.5))))
    thin = n > 60
    colours = [RESPONSE_COLOURS.get(bor.get(s, "NE"), "#969696") for s in order]
    ax.barh(
        np.arange(n), last.reindex(order).to_numpy(), color=colours, height=0.7 if not thin else 1.0, edgecolor="none"
    )
    y = rows["subject_id"].astype(str).map(position).to_numpy(dtype=float)
    weeks = rows["day"].to_numpy(dtype=float) / 7.0
    overall = rows["overall"].astype(str).to_numpy()
    if not thin:
        ax.scatter(weeks, y, marker="|", color="#333333", s=30, label="assessment", gid="assessments")
    responded = rows.loc[rows["overall"].astype(str).isin(["CR", "PR"])].drop_duplicates("subject_id")
    ax.scatter(
        responded["day"].to_numpy(dtype=float) / 7.0,
        responded["subject_id"].astype(str).map(position).to_numpy(dtype=float),
        marker="^",
        color="#1a9850",
        s=14 if thin else 36,
        zorder=3,
        label="first response (CR/PR)",
        gid="first-response",
    )
    first_pd = rows.loc[rows["overall"].astype(str) == "PD"].drop_duplicates("subject_id")
    ax.scatter(
        first_pd["day"].to_numpy(dtype=float) / 7.0,
        first_pd["subject_id"].astype(str).map(position).to_numpy(dtype=float),
        marker="X",
        color="#d73027",
        s=14 if thin else 40,
        zorder=3,
        label="first PD",
        gid="pd",
    )
    ongoing = [s for s in order if "PD" not in set(overall[rows["subject_id"].astype(str).to_numpy() == s])]
    ax.scatter(
        last.reindex(ongoing).to_numpy() + 0.6,
        [position[s] for s in ongoing],
        marker=">",
        color="#333333",
        s=10 if thin else 28,
        label="still on study (no PD)",
        gid="ongoing",
    )
    ax.set_yticks([] if thin else np.arange(n), [] if thin else order, fontsize=7)
    ax.set_xlabel("weeks since baseline")
    ax.set_ylabel("subjects" if thin else "")
    shown = [w for w in RESPONSE_COLOURS if w in set(bor.reindex(order).fillna("NE"))]
    handles = [plt.Rectangle((0, 0), 1, 1, color=RESPONSE_COLOURS[w], label=f"BOR {w}") for w in shown]
    marker_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + marker_handles, fontsize=7, loc="lower right", frameon=False)
    everyone = pd.Index(bor.index).union(pd.Index(order))
    ax.set_title(title or f"Time on study, {criteria}: {_subjects(n)}{_not_shown(everyone, n)}", fontsize=10)
    _save(fig, plt, output)
    return {"subjects": n, "without_follow_up": len(everyone) - n, "criteria": criteria}


PLOTS = {"waterfall": waterfall, "spider": spider, "swimmer": swimmer}


def trajectory_png(timepoints: Sequence[dict[str, Any]], lesions: pd.DataFrame, width_in: float = 6.0) -> bytes:
    """A small chart of each target lesion's size (mm) over time, for the case report."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width_in, 2.8))
    for lesion_id, group in lesions.groupby("lesion_id", sort=True):
        ax.plot(group["day"] / 7.0, group["size_mm"], marker="o", linewidth=1.2, markersize=3, label=str(lesion_id))
    ax.set_xlabel("weeks since baseline")
    ax.set_ylabel("target size (mm)")
    ax.set_ylim(bottom=0)
    if lesions["lesion_id"].nunique() <= 8:
        ax.legend(fontsize=7, frameon=False, ncols=4)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()

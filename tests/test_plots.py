"""`crlm-response plot waterfall|spider|swimmer`: pictures from `batch` results, checked like a reader would.

* Every plot is rendered through the CLI (in-process runner) from a small generated cohort (12 subjects,
  two seeds: one with a PD subject, one without) to PNG, SVG and PDF. PNG: signature and IHDR size parsed
  with `struct`; PDF: `%PDF` header; SVG: parsed as XML, text kept as text (`svg.fonttype = none`) so legend
  entries, titles and tick labels are `<text>` elements and the matplotlib `gid`s become element ids.
* Legend entries ("PR (n = 3)", ...) are exactly the best overall responses present in the batch `.best` file,
  each with its number of subjects; the title gives the subject count and the criteria set's name; waterfall and
  spider carry the +20 % and -30 % reference lines of RECIST 1.1's parameters *at* +20 and -30 on the y axis
  (positions mapped through the numeric y tick labels); the swimmer has the "first-response",
  "first-progression" and "ongoing" marker groups with one marker per subject that should have one.
* Waterfall correctness on a hand-made cohort (tests/fixtures/plots/tiny_cohort.csv, see its README): bar
  heights are the *lowest* % change per subject, colours follow the role of the best overall response (a
  shrinking subject with a new lesion is coloured as progression) and match the legend, subjects without a
  measured follow-up are counted in the title, ORR and DCR with exact CIs are worked out by hand. The matplotlib
  figure is captured by wrapping `plots._save` while the CLI runs.
* Criteria as data: a copy of RECIST 1.1 with other words and another PR threshold plots with its own words,
  colours by role and its own threshold line; without its rule file the plot refuses (it cannot know what the
  words mean). --group-by (a column of a --groups table, or COLUMN=VALUE), --label-subjects, --data-cut.
* Print size: every picture is at most 170 mm (A4 text width) wide and no text is under 7 pt.
* Edge cases: no follow-up, only follow-up not evaluated, a 1-subject cohort, 5,000 subjects (no per-subject
  labels, bounded picture size, finishes in reasonable time).
* Errors: wrong input table, unknown or absent --criteria, unsupported picture suffix: exit code, a message
  that says what is missing and what to give, no output file, no traceback / internal error.
"""

from __future__ import annotations

import re
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, ROOT, run_cli

from crlm_response import plots
from crlm_response.roles import ROLE_COLOURS
from crlm_response.synthetic import generate_cohort

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
KINDS = ("waterfall", "spider", "swimmer")
CATEGORIES = ("CR", "PR", "SD", "NON-CR/NON-PD", "PD", "NE")
TINY = FIXTURES / "plots" / "tiny_cohort.csv"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------


def ok(result: Any) -> None:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr


def batch(lesions: Path, out_dir: Path) -> Path:
    """Run `crlm-response batch` and return the per-visit responses file (the .best file lies beside it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    responses = out_dir / "responses.csv"
    ok(run_cli("batch", lesions, "-o", responses))
    assert (out_dir / "responses.best.csv").exists()
    return responses


def cohort(tmp: Path, subjects: int, seed: int) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    lesions = tmp / "lesions.csv"
    generate_cohort(subjects=subjects, seed=seed).to_csv(lesions, index=False)
    return batch(lesions, tmp / "out")


def best_table(responses: Path, criteria: str = "recist1.1") -> pd.DataFrame:
    best = pd.read_csv(
        responses.with_name(f"{responses.stem}.best{responses.suffix}"),
        dtype={"subject_id": str},
        keep_default_na=False,
    )
    return best.loc[best["criteria"] == criteria]


def visit_table(responses: Path, criteria: str = "recist1.1") -> pd.DataFrame:
    visits = pd.read_csv(responses, dtype={"subject_id": str}, keep_default_na=False, na_values=[""])
    return visits.loc[visits["criteria"] == criteria]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG (starts {data[:8]!r})"
    length, chunk = struct.unpack(">I4s", data[8:16])
    assert chunk == b"IHDR" and length == 13, "first PNG chunk must be IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def svg_root(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # raises if the SVG is not well-formed XML


def svg_texts(root: ET.Element) -> list[str]:
    return ["".join(el.itertext()).strip() for el in root.iter(f"{SVG}text")]


def svg_ids(root: ET.Element) -> dict[str, ET.Element]:
    return {el.get("id"): el for el in root.iter() if el.get("id")}


LEGEND_ENTRY = re.compile(r"^(?P<word>.+) \(n = (?P<n>[\d,]+)\)$")


def legend_entries(texts: list[str]) -> dict[str, int]:
    """`PR (n = 3)` legend entries as {word: n}."""
    found = {}
    for text in texts:
        match = LEGEND_ENTRY.match(text)
        if match:
            assert match["word"] not in found, f"legend entry for {match['word']} twice"
            found[match["word"]] = int(match["n"].replace(",", ""))
    return found


def title_text(root: ET.Element) -> str:
    """The title naming the subject count, all its lines (matplotlib writes one <text> per line, in one group)."""
    titles = [
        "; ".join(svg_texts(group))
        for group in root.iter(f"{SVG}g")
        if (group.get("id") or "").startswith("text_") and re.search(r"\d subjects?\b", " ".join(svg_texts(group)))
    ]
    assert len(titles) == 1, f"expected one title naming the subject count, got {titles}"
    return titles[0]


def title_counts(title: str) -> tuple[int, int]:
    """(subjects shown, subjects said to be not shown) from a plot title."""
    shown = re.search(r"(\d[\d,]*) subjects?\b", title)
    assert shown, f"no subject count in title {title!r}"
    hidden = re.search(r"(\d[\d,]*)\b[^;:]*\bnot shown", title)
    return int(shown.group(1).replace(",", "")), int(hidden.group(1).replace(",", "")) if hidden else 0


def marker_count(group: ET.Element) -> int:
    """Markers of a scatter collection: one <use> per point in matplotlib's SVG."""
    return sum(1 for _ in group.iter(f"{SVG}use"))


def y_axis_map(root: ET.Element) -> tuple[float, float]:
    """(slope, intercept) mapping a y-axis data value to the SVG y coordinate, from the numeric y ticks."""
    points = []
    for el in root.iter(f"{SVG}g"):
        if not (el.get("id") or "").startswith("ytick_"):
            continue
        use = next(el.iter(f"{SVG}use"), None)
        label = "".join("".join(t.itertext()) for t in el.iter(f"{SVG}text")).strip().replace("\u2212", "-")
        if use is not None and label:
            points.append((float(label), float(use.get("y"))))
    assert len(points) >= 2, "need at least two numeric y ticks to place the reference lines"
    values, ys = np.array(points).T
    slope, intercept = np.polyfit(values, ys, 1)
    return float(slope), float(intercept)


def path_ys(group: ET.Element) -> list[float]:
    d = " ".join(p.get("d", "") for p in group.iter(f"{SVG}path"))
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return numbers[1::2]


@pytest.fixture
def capture_figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Keep every figure the plot functions save (the file is still written by the real `_save`)."""
    figures: list[Any] = []
    real_save = plots._save

    def keep(fig: Any, plt: Any, output: Any) -> None:
        figures.append(fig)
        real_save(fig, plt, output)

    monkeypatch.setattr(plots, "_save", keep)
    yield figures


# ---------------------------------------------------------------------------------------------------------
# Small generated cohorts through the CLI: PNG, SVG, PDF
# ---------------------------------------------------------------------------------------------------------

SEEDS = (1, 3)  # seed 1: PR, SD and one PD subject; seed 3: PR and SD only (BOR PD must then be absent)


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def small(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    responses = cohort(tmp_path_factory.mktemp(f"small{request.param}"), subjects=12, seed=request.param)
    visits = visit_table(responses)
    measured = visits.groupby("subject_id")["pct_from_baseline"].apply(lambda s: s.notna().any())
    # Precondition of the legend checks below: every subject has a bar / line / swimmer row.
    assert len(best_table(responses)) == 12 and measured.all() and len(measured) == 12
    return responses


@pytest.mark.parametrize("kind", KINDS)
def test_png_is_a_real_picture(small: Path, kind: str) -> None:
    out = small.parent / f"{kind}.png"
    result = run_cli("plot", kind, small, "-o", out)
    ok(result)
    width, height = png_size(out)
    assert 600 <= width <= 4000, width
    assert 300 <= height <= 4000, height
    assert out.stat().st_size > 5_000  # not an empty canvas


@pytest.mark.parametrize("kind", KINDS)
def test_pdf_is_a_pdf(small: Path, kind: str) -> None:
    out = small.parent / f"{kind}.pdf"
    ok(run_cli("plot", kind, small, "-o", out))
    data = out.read_bytes()
    assert data.startswith(b"%PDF-"), data[:16]
    assert b"%%EOF" in data[-1024:]


@pytest.mark.parametrize("kind", KINDS)
def test_svg_legend_title_and_count(small: Path, kind: str) -> None:
    out = small.parent / f"{kind}.svg"
    ok(run_cli("plot", kind, small, "-o", out))
    root = svg_root(out)
    texts = svg_texts(root)
    counts = best_table(small)["best_overall_response"].value_counts().to_dict()
    legend = legend_entries(texts)
    assert legend == counts, f"{kind}: legend {legend}, best-response table {counts}"
    assert set(legend) <= set(CATEGORIES)
    title = title_text(root)
    assert title_counts(title) == (12, 0), title
    assert "RECIST 1.1" in title, "the title names the criteria set by its name"


@pytest.mark.parametrize("kind", ("waterfall", "spider"))
def test_svg_reference_lines_at_plus20_and_minus30(small: Path, kind: str) -> None:
    out = small.parent / f"{kind}.svg"
    ok(run_cli("plot", kind, small, "-o", out))
    root = svg_root(out)
    lines = {i: el for i, el in svg_ids(root).items() if "reference-line" in i}
    assert len(lines) == 2, f"expected two reference lines, got ids {sorted(lines)}"
    plus = [el for i, el in lines.items() if "+20" in i]
    minus = [el for i, el in lines.items() if "-30" in i or "\u221230" in i]
    assert len(plus) == 1 and len(minus) == 1, sorted(lines)
    slope, intercept = y_axis_map(root)
    for group, value in ((plus[0], 20.0), (minus[0], -30.0)):
        ys = path_ys(group)
        assert ys and max(ys) - min(ys) < 0.01, "a reference line must be horizontal"
        assert (ys[0] - intercept) / slope == pytest.approx(value, abs=0.5)
    texts = svg_texts(root)
    assert any("+20" in t for t in texts), "+20 % line not in the legend"
    assert any("-30" in t or "\u221230" in t for t in texts), "-30 % line not in the legend"


def test_swimmer_marker_groups(small: Path) -> None:
    out = small.parent / "swimmer.svg"
    ok(run_cli("plot", "swimmer", small, "-o", out))
    ids = svg_ids(svg_root(out))
    visits = visit_table(small)
    by_subject = visits.groupby("subject_id")["overall"].apply(set)
    expected = {
        "first-response": sum(1 for s in by_subject if s & {"CR", "PR"}),
        "first-progression": sum(1 for s in by_subject if "PD" in s),
        "ongoing": sum(1 for s in by_subject if "PD" not in s),
    }
    for gid, count in expected.items():
        assert gid in ids, f"swimmer has no marker group {gid!r}"
        assert marker_count(ids[gid]) == count, f"{gid}: {marker_count(ids[gid])} markers, expected {count}"


# ---------------------------------------------------------------------------------------------------------
# Waterfall correctness on a hand-made cohort
# ---------------------------------------------------------------------------------------------------------

TINY_BARS = {"GROW": (10.0, "SD"), "NEWLES": (-35.0, "PD"), "SHRINK": (-40.0, "PR"), "REBOUND": (-45.0, "PR")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    responses = batch(TINY, tmp_path_factory.mktemp("tiny"))
    best = best_table(responses).set_index("subject_id")["best_overall_response"].to_dict()
    # The hand-worked answers of tests/fixtures/plots/README.md (the BOR itself is tested elsewhere).
    assert best == {**{s: bor for s, (_, bor) in TINY_BARS.items()}, "NEONLY": "NE", "BASEONLY": "MISSING"}
    return responses


def test_waterfall_bars_are_lowest_change_coloured_by_bor(tiny: Path, capture_figures: list[Any]) -> None:
    from matplotlib.colors import to_hex

    ok(run_cli("plot", "waterfall", tiny, "-o", tiny.parent / "waterfall.svg", "--label-subjects"))
    (fig,) = capture_figures
    ax = fig.axes[0]
    bars = ax.containers[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    heights = [float(p.get_height()) for p in bars]
    colours = [to_hex(p.get_facecolor()) for p in bars]
    assert labels == ["GROW", "NEWLES", "SHRINK", "REBOUND"], "bars sorted from most growth to most shrinkage"
    assert heights == pytest.approx([TINY_BARS[s][0] for s in labels], abs=0.01)
    (box,) = fig.legends
    legend = {
        LEGEND_ENTRY.match(t.get_text())["word"]: to_hex(h.get_facecolor())
        for t, h in zip(box.get_texts(), box.legend_handles, strict=True)
        if LEGEND_ENTRY.match(t.get_text())
    }
    assert set(legend) == {"SD", "PD", "PR"}, "one legend entry per best response with a bar"
    for subject, colour in zip(labels, colours, strict=True):
        assert colour == legend[TINY_BARS[subject][1]], f"{subject} is not coloured as its BOR"
    # A shrinking subject with a new lesion is coloured as progression, not like the PR bars of similar height.
    assert colours[labels.index("NEWLES")] != colours[labels.index("SHRINK")]
    assert colours[labels.index("NEWLES")] == to_hex(ROLE_COLOURS["progression"])
    assert colours[labels.index("SHRINK")] == to_hex(ROLE_COLOURS["partial"])
    reference = sorted(
        round(float(line.get_ydata()[0]), 6) for line in ax.get_lines() if "reference-line" in (line.get_gid() or "")
    )
    assert reference == [-30.0, 20.0]


def test_waterfall_svg_bars_match_heights(tiny: Path) -> None:
    """The same, read from the SVG a user gets: bar extents in axis units via the y tick labels."""
    out = tiny.parent / "waterfall_bars.svg"
    ok(run_cli("plot", "waterfall", tiny, "-o", out))
    root = svg_root(out)
    slope, intercept = y_axis_map(root)
    zero = intercept
    ends = []
    for el in root.iter(f"{SVG}g"):
        if not re.fullmatch(r"patch_\d+", el.get("id") or ""):
            continue
        path = el.find(f"{SVG}path")
        style = path.get("style", "") if path is not None else ""
        if path is None or "clip-path" not in path.attrib or "fill: #ffffff" in style:
            continue
        ys = path_ys(el)
        far = max(ys, key=lambda y: abs(y - zero))
        ends.append(round((far - intercept) / slope, 1))
    assert ends == pytest.approx([10.0, -35.0, -40.0, -45.0], abs=0.2)


def test_waterfall_info_and_title_count_subjects_not_shown(tiny: Path) -> None:
    visits, best = plots.read_results(tiny)
    info = plots.waterfall(visits, best, tiny.parent / "info.png")
    assert info == {"subjects": 4, "without_follow_up": 2, "criteria": "recist1.1", "name": "RECIST 1.1"}
    out = tiny.parent / "waterfall_title.svg"
    ok(run_cli("plot", "waterfall", tiny, "-o", out))
    assert title_counts(title_text(svg_root(out))) == (4, 2)


@pytest.mark.parametrize("kind", ("spider", "swimmer"))
def test_title_accounts_for_subjects_without_follow_up(tiny: Path, kind: str) -> None:
    """BASEONLY (no follow-up) cannot be drawn; the title must still account for all 6 subjects of .best."""
    out = tiny.parent / f"{kind}_title.svg"
    ok(run_cli("plot", kind, tiny, "-o", out))
    shown, hidden = title_counts(title_text(svg_root(out)))
    assert hidden >= 1, f"{kind}: title does not say that a subject is not shown"
    assert shown + hidden == 6


def test_swimmer_markers_on_hand_made_cohort(tiny: Path, capture_figures: list[Any]) -> None:
    ok(run_cli("plot", "swimmer", tiny, "-o", tiny.parent / "swimmer.png", "--label-subjects"))
    (fig,) = capture_figures
    ax = fig.axes[0]
    rows = {t.get_text(): i for i, t in enumerate(ax.get_yticklabels())}
    groups = {c.get_gid(): c.get_offsets() for c in ax.collections if c.get_gid()}

    def points(gid: str) -> set[tuple[str, float]]:
        by_row = {v: k for k, v in rows.items()}
        return {(by_row[int(round(y))], round(float(x), 2)) for x, y in np.asarray(groups[gid])}

    assert points("first-response") == {("SHRINK", 16.0), ("REBOUND", 8.0)}
    assert points("first-progression") == {("NEWLES", 8.0)}
    assert {s for s, _ in points("ongoing")} == {"GROW", "NEONLY", "SHRINK", "REBOUND"}
    bar_ends = {label: float(p.get_width()) for label, p in zip(rows, ax.containers[0], strict=True)}
    assert bar_ends == pytest.approx({"GROW": 8.0, "NEONLY": 8.0, "NEWLES": 8.0, "REBOUND": 16.0, "SHRINK": 16.0})


# ---------------------------------------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------------------------------------


def test_only_follow_up_not_evaluated(tmp_path: Path) -> None:
    """A cohort whose only subject's only follow-up is NE: no bar to draw. Either an (empty) picture whose
    title says the subject is not shown, or exit 1 with a message that says why (no measured follow-up) --
    not a claim that recist1.1 is not a size-based set."""
    lines = TINY.read_text(encoding="utf-8").splitlines()
    lesions = tmp_path / "ne.csv"
    lesions.write_text("\n".join([lines[0]] + [ln for ln in lines if ln.startswith("NEONLY,")]) + "\n")
    responses = batch(lesions, tmp_path / "out")
    assert set(visit_table(responses)["overall"]) == {"NE"}
    for kind in ("waterfall", "spider"):
        out = tmp_path / f"{kind}.svg"
        result = run_cli("plot", kind, responses, "-o", out)
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr
        if result.exit_code == 0:
            shown, hidden = title_counts(title_text(svg_root(out)))
            assert (shown, hidden) == (0, 1), f"{kind}: {shown} shown, {hidden} not shown"
        else:
            assert result.exit_code == 1
            message = " ".join(result.stderr.split())
            assert "follow-up" in message or "not evaluated" in message, f"{kind}: unclear error: {message}"
            assert "are for size-based sets" not in message, f"{kind}: misleading error: {message}"
    ok(run_cli("plot", "swimmer", responses, "-o", tmp_path / "swimmer.svg"))
    root = svg_root(tmp_path / "swimmer.svg")
    assert legend_entries(svg_texts(root)) == {"NE": 1} and title_counts(title_text(root)) == (1, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_one_subject(tmp_path: Path, kind: str) -> None:
    responses = cohort(tmp_path, subjects=1, seed=3)
    bor = best_table(responses)["best_overall_response"].tolist()
    for suffix in ("svg", "png"):
        ok(run_cli("plot", kind, responses, "-o", tmp_path / f"{kind}.{suffix}"))
    assert png_size(tmp_path / f"{kind}.png")[0] >= 600
    root = svg_root(tmp_path / f"{kind}.svg")
    assert title_counts(title_text(root)) == (1, 0)
    assert legend_entries(svg_texts(root)) == {bor[0]: 1}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cohort(tmp_path_factory.mktemp("big"), subjects=5000, seed=3)


@pytest.mark.parametrize("kind", KINDS)
def test_5000_subjects(big: Path, kind: str) -> None:
    out = big.parent / f"{kind}.svg"
    start = time.perf_counter()
    ok(run_cli("plot", kind, big, "-o", out))
    assert time.perf_counter() - start < 120, "a 5,000-subject plot should not take minutes"
    root = svg_root(out)
    texts = svg_texts(root)
    subjects = set(best_table(big)["subject_id"])
    labelled = subjects & set(texts)
    assert not labelled, f"{kind}: {len(labelled)} per-subject labels (e.g. {sorted(labelled)[:3]})"
    assert sum(1 for i in svg_ids(root) if i.startswith(("xtick_", "ytick_"))) <= 30, "too many tick labels"
    shown, hidden = title_counts(title_text(root))
    assert shown + hidden == 5000
    assert out.stat().st_size < 30_000_000


def test_5000_subjects_png_size_bounded(big: Path) -> None:
    out = big.parent / "waterfall.png"
    ok(run_cli("plot", "waterfall", big, "-o", out))
    width, height = png_size(out)
    assert 600 <= width <= 3000 and 300 <= height <= 3000, (width, height)


# ---------------------------------------------------------------------------------------------------------
# Errors: exit 1 (or 2 for usage), a message that helps, no output, no traceback
# ---------------------------------------------------------------------------------------------------------


def assert_clean_failure(result: Any, exit_codes: tuple[int, ...] = (1,)) -> str:
    assert result.exit_code in exit_codes, f"exit {result.exit_code}; stderr: {result.stderr}"
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "internal error" not in text, text
    message = " ".join(result.stderr.split())
    assert message.startswith("Error:") or "Error:" in message, message
    return message


@pytest.fixture(scope="module")
def sample_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cohort(tmp_path_factory.mktemp("errs"), subjects=6, seed=1)


@pytest.mark.parametrize("kind", KINDS)
def test_best_file_instead_of_responses(sample_results: Path, kind: str) -> None:
    best = sample_results.with_name("responses.best.csv")
    out = sample_results.parent / f"wrong_{kind}.png"
    message = assert_clean_failure(run_cli("plot", kind, best, "-o", out))
    for column in ("timepoint", "day", "overall"):
        assert column in message, f"missing column {column!r} not named: {message}"
    assert "batch" in message and "-o" in message, f"does not say what to give: {message}"
    assert not out.exists()


def test_random_csv(tmp_path: Path) -> None:
    table = tmp_path / "random.csv"
    table.write_text("patient,size\nA,12\nB,30\n", encoding="utf-8")
    out = tmp_path / "w.svg"
    message = assert_clean_failure(run_cli("plot", "waterfall", table, "-o", out))
    for column in ("subject_id", "criteria", "timepoint", "day", "overall"):
        assert column in message, f"missing column {column!r} not named: {message}"
    assert "batch" in message
    assert not out.exists()


@pytest.mark.parametrize("criteria", ["nonsense", "choi"])
def test_unknown_or_absent_criteria(sample_results: Path, criteria: str) -> None:
    out = sample_results.parent / f"crit_{criteria}.png"
    result = run_cli("plot", "waterfall", sample_results, "-o", out, "--criteria", criteria)
    message = assert_clean_failure(result, (1, 2))
    assert criteria in message, message
    assert "recist1.1" in message, f"does not say which criteria the file has: {message}"
    assert not out.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_jpg_output_refused(sample_results: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / f"{kind}.jpg"
    message = assert_clean_failure(run_cli("plot", kind, sample_results, "-o", out))
    assert ".jpg" in message and ".png" in message and ".svg" in message, message
    assert list(tmp_path.iterdir()) == [], "nothing (not even a temporary file) may be left behind"


# ---------------------------------------------------------------------------------------------------------
# Criteria as data: other words, other thresholds
# ---------------------------------------------------------------------------------------------------------

RENAMED = {"CR": "RC", "PR": "RP", "SD": "DS", "PD": "DP"}


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """RECIST 1.1 under another id and name, with other words and a PR threshold of 40 %; the tiny cohort scored
    with it. (Hand-worked: SHRINK -40 % reaches the 40 % threshold at FU2 only; the rest as with RECIST 1.1.)"""
    folder = tmp_path_factory.mktemp("renamed")
    text = (ROOT / "rules" / "recist1.1.yaml").read_text(encoding="utf-8")
    for old, new in RENAMED.items():
        text = re.sub(rf"(?<![A-Za-z]){old}(?![A-Za-z])", new, text)
    text = re.sub(r"^id: .*$", "id: recist_renamed", text, count=1, flags=re.M)
    text = re.sub(r"^name: .*$", "name: Renamed RECIST", text, count=1, flags=re.M)
    text, changed = re.subn(r"(  pr_pct_from_baseline:\n    value: )30\b", r"\g<1>40", text)
    assert changed == 1
    rules = folder / "renamed.yaml"
    rules.write_text(text, encoding="utf-8")
    responses = folder / "responses.csv"
    ok(run_cli("batch", TINY, "-o", responses, "--criteria", rules))
    best = best_table(responses, "recist_renamed").set_index("subject_id")["best_overall_response"].to_dict()
    assert best == {
        "GROW": "DS",
        "NEWLES": "DP",
        "SHRINK": "RP",
        "REBOUND": "RP",
        "NEONLY": "NE",
        "BASEONLY": "MISSING",
    }
    return rules, responses


def test_renamed_set_plots_with_its_own_words_colours_and_thresholds(
    renamed: tuple[Path, Path], capture_figures: list[Any]
) -> None:
    from matplotlib.colors import to_hex

    rules, responses = renamed
    out = responses.parent / "waterfall.svg"
    ok(run_cli("plot", "waterfall", responses, "-o", out, "--rules", rules, "--label-subjects"))
    root = svg_root(out)
    texts = svg_texts(root)
    assert legend_entries(texts) == {"DS": 1, "DP": 1, "RP": 2}
    assert "Renamed RECIST" in title_text(root)
    assert any(t.startswith("RP: \u221240 % from baseline") for t in texts), texts
    assert any(t.startswith("DP: +20 % from nadir") for t in texts), texts
    assert "ORR 33.3 % (2/6; 95 % CI 4.3\u201377.7) \u00b7 DCR 50.0 % (3/6; 95 % CI 11.8\u201388.2)" in texts
    (fig,) = capture_figures
    ax = fig.axes[0]
    lines = sorted(
        round(float(line.get_ydata()[0]), 6) for line in ax.get_lines() if "reference-line" in (line.get_gid() or "")
    )
    assert lines == [-40.0, 20.0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    colours = dict(zip(names, [to_hex(p.get_facecolor()) for p in ax.containers[0]], strict=True))
    assert colours == {
        "GROW": to_hex(ROLE_COLOURS["stable"]),
        "NEWLES": to_hex(ROLE_COLOURS["progression"]),
        "SHRINK": to_hex(ROLE_COLOURS["partial"]),
        "REBOUND": to_hex(ROLE_COLOURS["partial"]),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_renamed_set_needs_its_rule_file(renamed: tuple[Path, Path], kind: str) -> None:
    _, responses = renamed
    out = responses.parent / f"no_rules_{kind}.png"
    message = assert_clean_failure(run_cli("plot", kind, responses, "-o", out))
    assert "recist_renamed" in message and "--rules" in message, message
    assert not out.exists()


def test_rule_file_of_another_set_refused(renamed: tuple[Path, Path]) -> None:
    _, responses = renamed
    out = responses.parent / "wrong_rules.png"
    message = assert_clean_failure(
        run_cli("plot", "spider", responses, "-o", out, "--rules", ROOT / "rules" / "who.yaml")
    )
    assert "who" in message and "recist_renamed" in message, message
    assert not out.exists()


def test_swimmer_of_renamed_set(renamed: tuple[Path, Path]) -> None:
    rules, responses = renamed
    out = responses.parent / "swimmer.svg"
    ok(run_cli("plot", "swimmer", responses, "-o", out, "--rules", rules))
    root = svg_root(out)
    texts = svg_texts(root)
    assert "first response (RC/RP)" in texts and "first DP" in texts, texts
    ids = svg_ids(root)
    assert marker_count(ids["first-response"]) == 2  # SHRINK (FU2), REBOUND (FU1)
    assert marker_count(ids["first-progression"]) == 1  # NEWLES


# ---------------------------------------------------------------------------------------------------------
# Waterfall numbers, groups, labels, data cut-off, print size
# ---------------------------------------------------------------------------------------------------------


def test_waterfall_counts_and_rates(tiny: Path) -> None:
    """n per category over the bars drawn; ORR and DCR over every subject with a best response (6: MISSING and NE
    included, as `batch --summary` counts them), exact CIs: 2/6 -> 4.33-77.72 %, 3/6 -> 11.81-88.19 %."""
    out = tiny.parent / "waterfall_rates.svg"
    ok(run_cli("plot", "waterfall", tiny, "-o", out))
    texts = svg_texts(svg_root(out))
    assert legend_entries(texts) == {"SD": 1, "PD": 1, "PR": 2}
    assert "ORR 33.3 % (2/6; 95 % CI 4.3\u201377.7) \u00b7 DCR 50.0 % (3/6; 95 % CI 11.8\u201388.2)" in texts
    assert "PR: \u221230 % from baseline" in texts and "PD: +20 % from nadir" in texts


def test_subjects_not_named_unless_asked(tiny: Path) -> None:
    for kind in KINDS:
        out = tiny.parent / f"anonymous_{kind}.svg"
        ok(run_cli("plot", kind, tiny, "-o", out))
        assert not {"GROW", "NEWLES", "SHRINK", "REBOUND", "NEONLY"} & set(svg_texts(svg_root(out))), kind
        named = tiny.parent / f"named_{kind}.svg"
        ok(run_cli("plot", kind, tiny, "-o", named, "--label-subjects"))
        assert {"GROW", "NEWLES", "SHRINK", "REBOUND"} <= set(svg_texts(svg_root(named))), kind


@pytest.fixture(scope="module")
def arms(tiny: Path) -> Path:
    table = tiny.parent / "arms.csv"
    table.write_text(
        "subject_id,arm,agents\n"
        "GROW,A,oxaliplatin;bevacizumab\nSHRINK,A,oxaliplatin;bevacizumab\n"
        "NEWLES,B,irinotecan\nREBOUND,B,irinotecan\nNEONLY,B,irinotecan;Bevacizumab\n",
        encoding="utf-8",
    )
    return table


def test_waterfall_group_by(tiny: Path, arms: Path, capture_figures: list[Any]) -> None:
    ok(run_cli("plot", "waterfall", tiny, "-o", tiny.parent / "arms.svg", "--group-by", "arm", "--groups", arms))
    (fig,) = capture_figures
    titles = [ax.get_title() for ax in fig.axes]
    # Panel A: GROW SD, SHRINK PR (ORR 1/2); panel B: NEWLES PD, REBOUND PR, NEONLY NE (no bar; ORR 1/3).
    assert titles == [
        "A (n = 2)\nORR 50.0 % (1/2; 95 % CI 1.3\u201398.7)",
        "B (n = 3)\nORR 33.3 % (1/3; 95 % CI 0.8\u201390.6)",
    ]
    assert [len(ax.containers[0]) for ax in fig.axes] == [2, 2]


def test_swimmer_group_by_agent(tiny: Path, arms: Path) -> None:
    out = tiny.parent / "bev.svg"
    ok(run_cli("plot", "swimmer", tiny, "-o", out, "--group-by", "agents=bevacizumab", "--groups", arms))
    texts = svg_texts(svg_root(out))
    # NEONLY's "Bevacizumab" counts too (words compared without case).
    assert "with bevacizumab (n = 3)" in texts and "without bevacizumab (n = 2)" in texts, texts


def test_group_by_errors(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.png"
    message = assert_clean_failure(run_cli("plot", "waterfall", tiny, "-o", out, "--group-by", "arm"))
    assert "arm" in message and "--groups" in message, message
    clash = tmp_path / "clash.csv"
    clash.write_text("subject_id,arm\nGROW,A\nGROW,B\n", encoding="utf-8")
    message = assert_clean_failure(run_cli("plot", "swimmer", tiny, "-o", out, "--group-by", "arm", "--groups", clash))
    assert "GROW" in message and "A, B" in message, message
    assert not out.exists()
    result = run_cli("plot", "spider", tiny, "-o", out, "--group-by", "arm")
    assert result.exit_code == 2 and "--group-by" in result.stderr


def test_swimmer_data_cut(tiny: Path) -> None:
    out = tiny.parent / "cut.svg"
    ok(run_cli("plot", "swimmer", tiny, "-o", out, "--data-cut", "12"))
    root = svg_root(out)
    assert "data cut-off (week 12)" in svg_texts(root)
    slope_x = path_xs(svg_ids(root)["data-cut"])
    assert slope_x and max(slope_x) - min(slope_x) < 0.01, "the cut-off is a vertical line"
    result = run_cli("plot", "waterfall", tiny, "-o", tiny.parent / "w.svg", "--data-cut", "12")
    assert result.exit_code == 2 and "--data-cut" in result.stderr


def path_xs(group: ET.Element) -> list[float]:
    d = " ".join(p.get("d", "") for p in group.iter(f"{SVG}path"))
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return numbers[0::2]


@pytest.mark.parametrize("kind", KINDS)
def test_print_size(small: Path, kind: str) -> None:
    """At most the text width of an A4 page (170 mm = 482 pt) wide, so printed at that width no text is smaller
    than written; and nothing written under 7 pt."""
    out = small.parent / f"size_{kind}.svg"
    ok(run_cli("plot", kind, small, "-o", out, "--label-subjects"))
    root = svg_root(out)
    assert float(root.get("width", "0").removesuffix("pt")) <= 482.5
    sizes = [float(m) for m in re.findall(r"font-size:\s*([\d.]+)px", out.read_text(encoding="utf-8"))]
    assert sizes and min(sizes) >= 7.0, sorted(set(sizes))

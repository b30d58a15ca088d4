"""`crlm-response report CASE -o case.html`: a one-page, self-contained, printable HTML report per patient.

For every sample case the report is written through the CLI and read back:

* the sections are there once each (ids patient, summary, toxicity, trajectory, responses, reasons, lesions,
  provenance; warnings when there are any), with the chart embedded as a base64 PNG (decoded and checked), and
  nothing that would load from elsewhere (no http(s)://, no //cdn, no src= / href= other than data: URIs or
  in-page anchors, no <script>, no <link>); print CSS with an A4 @page rule;
* the content matches an independent `assess(..., explain=True)` of the same case: per criteria set its best
  overall response, the timepoint it was reached, whether confirmation was required, the latest verdict and the
  first progression in the summary box; each follow-up's verdict per set; every decision line with a reason
  (bare values such as `new_lesions no` are the table's); every toxicity flag by its label (not its code) with
  explanation, citation and evidence level; every warning's code, criteria and timepoint;
* hand-worked summaries for two cases (folfox_bev_partial_response, folfox_lung_node_progression), the ablation
  readings of the ablation case, the parameters changed by case settings and --set, only the references the
  page cites, the report date (SOURCE_DATE_EPOCH) and the version;
* printed to PDF by headless Chromium (when installed; skipped with the reason otherwise): one A4 page for each
  sample case; a case with many timepoints takes more pages, and no page ends with a heading.

Plus: hostile text in the case comes out escaped, never as markup; a case file with an error gives exit 1, a clear
message, no traceback and no output file.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli, write_case

from crlm_response import __version__, assess

SAMPLES = sorted((ROOT / "sample_cases").glob("*.yaml"))
SECTIONS = ("patient", "summary", "toxicity", "trajectory", "responses", "reasons", "lesions", "provenance")
HOSTILE = "<script>alert(1)</script>"
FOLFOX = ROOT / "sample_cases" / "folfox_bev_partial_response.yaml"
LUNG = ROOT / "sample_cases" / "folfox_lung_node_progression.yaml"
ABLATION = ROOT / "sample_cases" / "microwave_ablation_ltp.yaml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium) to print the report"
)


def ok(result: Any) -> None:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr


class _ById(HTMLParser):
    """The inner HTML of the element with a given id (nested elements of the same tag included)."""

    VOID = {"img", "br", "meta", "hr", "input", "link"}

    def __init__(self, page: str, wanted: str) -> None:
        super().__init__(convert_charrefs=False)
        self.page, self.wanted = page, wanted
        self.found: list[tuple[int, int]] = []
        self.stack: list[tuple[str, bool, int]] = []
        self.lines = [0]
        for line in page.splitlines(keepends=True):
            self.lines.append(self.lines[-1] + len(line))
        self.feed(page)

    def _offset(self) -> int:
        line, col = self.getpos()
        return self.lines[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        start = self._offset() + len(self.get_starttag_text() or "")
        self.stack.append((tag, dict(attrs).get("id") == self.wanted, start))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            open_tag, is_wanted, start = self.stack.pop()
            if is_wanted:
                self.found.append((start, self._offset()))
            if open_tag == tag:
                return


def section(page: str, section_id: str) -> str:
    parser = _ById(page, section_id)
    assert len(parser.found) == 1, f"{len(parser.found)} elements with id={section_id!r}"
    start, end = parser.found[0]
    return page[start:end]


def text_of(fragment: str) -> str:
    """Visible text, tags dropped (inline ones without a space), entities decoded, whitespace collapsed."""
    inline = re.sub(r"</?(b|span|i|em|strong)\b[^>]*>", "", fragment)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def rows_of(fragment: str) -> list[list[str]]:
    return [
        [text_of(cell) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", fragment, re.S)
    ]


@pytest.fixture(scope="module", params=SAMPLES, ids=[p.stem for p in SAMPLES])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    case_file: Path = request.param
    out = tmp_path_factory.mktemp(case_file.stem) / "report.html"
    ok(run_cli("report", case_file, "-o", out))
    return case_file, out.read_text(encoding="utf-8")


def write_report(case_file: Path, out: Path, *args: str) -> str:
    ok(run_cli("report", case_file, "-o", out, *args))
    return out.read_text(encoding="utf-8")


def test_sample_cases_present() -> None:
    assert len(SAMPLES) >= 4 and any(p.stem == "folfox_bev_partial_response" for p in SAMPLES)


def test_is_one_html_document(report: tuple[Path, str]) -> None:
    _, page = report
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    assert '<meta charset="utf-8">' in page.lower()


@pytest.mark.parametrize("section_id", SECTIONS)
def test_every_section(report: tuple[Path, str], section_id: str) -> None:
    _, page = report
    assert section(page, section_id).strip()


def test_summary_box_comes_first(report: tuple[Path, str]) -> None:
    """A tumour board reads the verdicts first: the summary box is the first thing after the heading."""
    _, page = report
    order = [page.index(f'id="{name}"') for name in ("patient", "summary", "responses", "lesions", "provenance")]
    assert order == sorted(order)


def test_embedded_chart_is_a_png(report: tuple[Path, str]) -> None:
    _, page = report
    chart = section(page, "trajectory")
    if "no measured target lesions to chart" in chart:
        # An ablation-only case has no target sizes over time: the section says so instead of a chart.
        assert "<img" not in chart
        return
    images = re.findall(r'<img[^>]*\bsrc="data:image/png;base64,([A-Za-z0-9+/=]+)"', chart)
    assert len(images) == 1, "one embedded data:image/png;base64 chart"
    data = base64.b64decode(images[0], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 300 and height >= 150, (width, height)


def test_no_external_resources(report: tuple[Path, str]) -> None:
    _, page = report
    lowered = page.lower()
    for needle in ("http://", "https://", "//cdn", "<script", "<link", "<iframe", "@import", "ftp://"):
        assert needle not in lowered, f"external or active content: {needle!r}"
    for attribute, value in re.findall(r"""\b(src|href)\s*=\s*["']?([^"'\s>]*)""", page, re.I):
        assert value.startswith(("data:", "#")), f"{attribute}={value!r} points outside the page"
    for value in re.findall(r"url\(\s*['\"]?([^'\")]*)", page, re.I):
        assert value.startswith(("data:", "#")), f"url({value}) points outside the page"


def test_print_css(report: tuple[Path, str]) -> None:
    _, page = report
    style = "".join(re.findall(r"<style[^>]*>(.*?)</style>", page, re.S))
    assert re.search(r"@page\s*\{[^}]*\bsize\s*:\s*A4\b", style), "no @page { size: A4 } rule"
    assert "@media print" in style
    assert re.search(r"h2\s*\{[^}]*break-after:\s*avoid", style), "a heading must not end a page"


def test_content_matches_assessment(report: tuple[Path, str]) -> None:
    case_file, page = report
    assessment = assess(case_file, explain=True)
    data = assessment.to_dict()
    case_id = yaml.safe_load(case_file.read_text(encoding="utf-8"))["case_id"]
    assert re.search(rf"<h1>[^<]*{re.escape(html.escape(case_id))}", page), "case id not in the heading"

    provenance = section(page, "provenance")
    for rule_id in assessment.results:  # every criteria set run, toxicity included
        assert f'<span class="rule-id">{html.escape(rule_id)}</span>' in provenance, f"{rule_id} not listed"

    summary = {row[0]: row for row in rows_of(section(page, "summary"))}
    verdicts = rows_of(section(page, "responses"))
    header, body = verdicts[0], {row[0]: row for row in verdicts[1:]}
    reasons = section(page, "reasons")
    for rule_id, block in data["criteria"].items():
        scale = assessment.results[rule_id].rule_set.scale
        row = summary[block["name"]]
        if block.get("best_overall_response") is not None:
            assert row[1].startswith(scale.display(block["best_overall_response"])), row
            assert row[2].startswith(str(block["best_overall_response_timepoint"]) + ", "), row
        required = block["parameters"].get("confirmation_required")
        assert row[3] == {True: "required", False: "not required", None: "—"}[required], row
        last = block["timepoints"][-1]
        assert row[4].startswith(f"{scale.display(last['overall'])} at {last['id']}, "), row
        progressed = [tp for tp in block["timepoints"] if scale.role_of(tp["overall"]) == "progression"]
        if progressed:
            assert row[5].startswith(f"{scale.display(progressed[0]['overall'])} at {progressed[0]['id']}, "), row
        else:
            assert row[5] == "none", row
        column = header.index(block["name"])
        for timepoint in block["timepoints"]:
            assert body[timepoint["id"]][column] == scale.display(timepoint["overall"]), (rule_id, timepoint["id"])
        assert f"({html.escape(rule_id)})" in reasons
        for timepoint in block["timepoints"]:
            for line in timepoint.get("explanation") or []:
                shown = html.escape(line) in reasons
                assert shown == (":" in line or "[" in line), f"{rule_id} {timepoint['id']}: {line}"

    toxicity = text_of(section(page, "toxicity"))
    flags = data.get("toxicity") or []
    latest = {(f["flag"], f.get("lesion")): f for f in flags}  # a flag raised again shows its latest evidence
    for flag in flags:
        assert f"{flag['timepoint']}, " in toxicity
        assert flag["citation"] in toxicity and f"evidence {flag['evidence_level']}" in toxicity
        assert latest[(flag["flag"], flag.get("lesion"))]["explanation"] in toxicity
        assert flag["flag"] not in page, "a flag shows its label, not its code"
    if not flags:
        assert "none raised" in toxicity

    warnings = data.get("warnings") or []
    if warnings:
        shown = text_of(section(page, "warnings"))
        for warning in warnings:
            for key in ("code", "criteria", "timepoint"):
                assert str(warning.get(key) or "") in shown, (key, warning)
    else:
        assert 'id="warnings"' not in page
        assert "Warnings: 0 (none)" in text_of(section(page, "summary"))


def test_version(report: tuple[Path, str]) -> None:
    _, page = report
    installed = importlib.metadata.version("crlm-response")
    assert installed == __version__
    assert f"crlm-response {html.escape(installed)}" in section(page, "provenance")


def test_words_not_codes(report: tuple[Path, str]) -> None:
    _, page = report
    # The engine's decision sentences and the warning codes (named with their message) aside.
    shown = text_of(re.sub(r'<section id="(reasons|warnings)".*?</section>', "", page, flags=re.S))
    for code in ("portal_venous", "lymph_node", "non_target ·", "spleen_volume_ml", "ct_phase", "_hu"):
        assert code not in shown, f"code {code!r} shown"


# ---------------------------------------------------------------------------------------------------------
# Hand-worked pages
# ---------------------------------------------------------------------------------------------------------


def test_folfox_summary_by_hand(tmp_path: Path) -> None:
    """FU1 2025-03-10: sum 80 (-16.7 %) SD; FU2 2025-05-12: 59 (-38.5 %) PR; Choi PR from FU1 (size -16.7 %
    passes 10 %); mChoi PR at FU1 (size and density both fall); Chun L2 group 3 -> 2 at FU1 (incomplete), all
    group 1 at FU2 (optimal). Spleen 170 -> 236 mL (+38.8 %) on oxaliplatin at FU2."""
    page = write_report(FOLFOX, tmp_path / "folfox.html")
    summary = {row[0]: row[1:] for row in rows_of(section(page, "summary"))}
    assert summary == {
        "criteria set": ["best overall response", "reached", "confirmation", "latest", "progression"],
        "RECIST 1.1": ["PR partial response", "FU2, 2025-05-12", "not required", "PR at FU2, 2025-05-12", "none"],
        "Choi": ["PR partial response", "FU1, 2025-03-10", "not required", "PR at FU2, 2025-05-12", "none"],
        "Modified Choi": ["PR partial response", "FU1, 2025-03-10", "not required", "PR at FU2, 2025-05-12", "none"],
        "Chun morphologic criteria": [
            "optimal optimal morphologic response",
            "FU2, 2025-05-12",
            "—",
            "optimal at FU2, 2025-05-12",
            "none",
        ],
    }
    toxicity = text_of(section(page, "toxicity"))
    assert toxicity.startswith(
        "Toxicity flags: FU2, 2025-05-12: Spleen volume up 30 % or more since baseline: sign of sinusoidal "
        "obstruction (oxaliplatin liver injury). spleen 170 mL to 236 mL (38.82%; flag at 30%)"
    ), toxicity
    assert "[Park2016; Imai2014; Simpson2015; evidence E]" in toxicity
    verdicts = rows_of(section(page, "responses"))
    assert verdicts[1][:5] == ["FU1", "2025-03-10", "80", "-16.67", "-16.67"]
    assert verdicts[2][:5] == ["FU2", "2025-05-12", "59", "-38.54", "-26.25"]
    lesions = {row[0]: row[1:] for row in rows_of(section(page, "lesions"))}
    assert lesions["L1"] == [
        "target · liver · segment VIII",
        "48 mm · 78 HU · morphology group 3",
        "40 mm · 58 HU · morphology group 1",
        "31 mm · 52 HU · morphology group 1",
    ]
    assert lesions["N1"][:2] == ["target · lymph node · hepatoduodenal ligament", "17 mm · 62 HU"]
    assert lesions["organs"][1] == "CT phase portal venous · spleen volume 170 mL"
    assert "Criteria disagree at FU1" in text_of(section(page, "summary"))


def test_progression_date_by_hand(tmp_path: Path) -> None:
    """Sums 103 -> 63 (week8, -38.8 % PR) -> 54 (week16, PR) -> 69 (week24: +27.8 % and +15 mm from the nadir
    54, and a new liver lesion): PD on 2025-02-17; best response PR at week8 (2024-10-28)."""
    page = write_report(LUNG, tmp_path / "lung.html")
    summary = {row[0]: row[1:] for row in rows_of(section(page, "summary"))}
    assert summary["RECIST 1.1"] == [
        "PR partial response",
        "week8, 2024-10-28",
        "not required",
        "PD at week24, 2025-02-17",
        "PD at week24, 2025-02-17",
    ]
    week24 = next(row for row in rows_of(section(page, "responses")) if row[0] == "week24")
    assert week24 == ["week24", "2025-02-17", "69", "-33.01", "27.78", "yes", "PD"]
    lesions = {row[0]: row[1:] for row in rows_of(section(page, "lesions"))}
    assert lesions["NEW1"] == ["new · liver · segment III", "—", "—", "—", "11 mm"]
    assert lesions["P1"][3] == "too small"
    flags = text_of(section(page, "toxicity"))
    assert flags.startswith(
        "Toxicity flags: week16, 2024-12-23 and week24, 2025-02-17: Spleen volume up 30 % or more since baseline"
    ), flags
    assert "spleen 190 mL to 262 mL (37.89%; flag at 30%)" in flags, "the latest evidence"


def test_ablation_readings(tmp_path: Path) -> None:
    """The readings that decide the ablation verdict are on the page: coverage, enhancing edge, margin."""
    page = write_report(ABLATION, tmp_path / "ablation.html")
    lesions = {row[0]: row[1:] for row in rows_of(section(page, "lesions"))}
    assert lesions["A1"][0] == "ablated · liver · segment VI"
    assert lesions["A1"][2] == (
        "ablation zone covers the tumour: yes · enhancing tissue at the ablation edge: no · "
        "minimal ablative margin 3 mm"
    )
    assert lesions["A1"][4].endswith("enhancing tissue at the ablation edge: yes")
    summary = {row[0]: row[1:] for row in rows_of(section(page, "summary"))}
    (ablation,) = (row for name, row in summary.items() if name.startswith("Post-ablation"))
    assert ablation[3:] == [
        "local tumour progression at month9, day 273",
        "local tumour progression at month9, day 273",
    ]
    assert "complete_ablation" not in text_of(section(page, "summary"))


def test_changed_parameters_and_their_source(tmp_path: Path) -> None:
    case = yaml.safe_load(FOLFOX.read_text(encoding="utf-8"))
    case["settings"] = {"recist1.1": {"sd_min_days": 56}}
    case_file = write_case(tmp_path, case)
    page = write_report(
        case_file,
        tmp_path / "settings.html",
        "--criteria",
        "recist1.1",
        "--set",
        "recist1.1.confirmation_required=true",
    )
    rows = rows_of(section(page, "provenance"))
    assert rows[0] == ["criteria", "parameter", "value used", "rule file", "from"]
    assert sorted(rows[1:]) == [
        ["recist1.1", "confirmation_required", "yes", "no", "--set"],
        ["recist1.1", "sd_min_days", "56", "42", "case settings"],
    ]
    summary = {row[0]: row[1:] for row in rows_of(section(page, "summary"))}
    assert summary["RECIST 1.1"][2] == "required"
    assert "Toxicity flags: not assessed" in text_of(section(page, "summary"))


def test_only_cited_references(tmp_path: Path) -> None:
    page = write_report(FOLFOX, tmp_path / "refs.html")
    references = text_of(section(page, "provenance"))
    for key in ("E2009", "Choi2007", "Nathan2010", "Chun2009", "Park2016", "Imai2014", "Simpson2015"):
        assert f"{key} " in references, f"{key} is cited on the page but not listed"
    for key in ("Boyce2010", "Tang2013", "Benoist2006", "Lencioni2010"):  # rule-file references not cited here
        assert key not in references, f"{key} listed but not cited"
    assert "Eisenhauer EA et al. New response evaluation criteria" in references


def test_report_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1735689600")  # 2025-01-01 00:00 UTC: reproducible reports
    page = write_report(FOLFOX, tmp_path / "dated.html")
    assert f"Made 2025-01-01 with crlm-response {__version__}" in text_of(section(page, "provenance"))


# ---------------------------------------------------------------------------------------------------------
# Printed by Chromium
# ---------------------------------------------------------------------------------------------------------


def print_to_pdf(page: Path) -> bytes:
    out = page.with_suffix(".pdf")
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--print-to-pdf={out}",
        page.resolve().as_uri(),
    ]
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert out.exists(), "Chromium wrote no PDF"
    return out.read_bytes()


def page_count(pdf: bytes) -> int:
    try:
        import io

        from pypdf import PdfReader  # type: ignore[import-not-found]

        return len(PdfReader(io.BytesIO(pdf)).pages)
    except ImportError:
        return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", pdf))


@needs_chromium
@pytest.mark.parametrize("case_file", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_report_prints_on_one_page(case_file: Path, tmp_path: Path) -> None:
    out = tmp_path / f"{case_file.stem}.html"
    ok(run_cli("report", case_file, "-o", out))
    assert page_count(print_to_pdf(out)) == 1


@needs_chromium
def test_many_timepoints_take_more_pages_without_a_stranded_heading(tmp_path: Path) -> None:
    case = yaml.safe_load(FOLFOX.read_text(encoding="utf-8"))
    baseline, follow_up = case["timepoints"][0], case["timepoints"][2]
    timepoints = [{**baseline, "day": 0}]
    for i in range(1, 19):  # 18 restaging scans, 8 weeks apart
        timepoints.append({**yaml.safe_load(yaml.safe_dump(follow_up)), "id": f"FU{i}", "day": 56 * i})
    for tp in timepoints:
        tp.pop("date", None)
    case["timepoints"] = timepoints
    out = tmp_path / "long.html"
    ok(run_cli("report", write_case(tmp_path, case), "-o", out))
    pdf = print_to_pdf(out)
    pages = page_count(pdf)
    assert pages > 1
    if shutil.which("pdftotext") is None:
        return
    text = subprocess.run(["pdftotext", "-layout", str(out.with_suffix(".pdf")), "-"], capture_output=True, text=True)
    headings = set(re.findall(r"<h2>([^<]+)", out.read_text(encoding="utf-8")))
    for number, page_text in enumerate(text.stdout.split("\f")[:-1][: pages - 1], start=1):
        lines = [ln.strip() for ln in page_text.splitlines() if ln.strip() and not ln.strip().startswith("file:")]
        assert lines and not any(lines[-1].startswith(h.strip()) for h in headings), (
            f"page {number} ends with a heading"
        )


# ---------------------------------------------------------------------------------------------------------
# Hostile text and broken case files
# ---------------------------------------------------------------------------------------------------------


def test_hostile_text_is_escaped(tmp_path: Path) -> None:
    case = yaml.safe_load(FOLFOX.read_text(encoding="utf-8"))
    case["description"] = f'{HOSTILE} & "quotes" <img src=x onerror=alert(2)>'
    case["treatment"]["regimen"] = "FOLFOX <b>bold</b>"
    case_file = write_case(tmp_path, case)
    out = tmp_path / "hostile.html"
    ok(run_cli("report", case_file, "-o", out))
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "<img src=x" not in page and "<b>bold</b>" not in page
    assert html.escape(HOSTILE) in page, "description not shown (escaped)"
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "FOLFOX &lt;b&gt;bold&lt;/b&gt;" in page


def test_hostile_case_id_is_escaped(tmp_path: Path) -> None:
    case = yaml.safe_load(FOLFOX.read_text(encoding="utf-8"))
    case["case_id"] = f"X{HOSTILE}"
    case_file = write_case(tmp_path, case)
    out = tmp_path / "hostile_id.html"
    result = run_cli("report", case_file, "-o", out)
    if result.exit_code == 1:  # refusing such an id is fine, as long as it is a clean refusal
        assert "Traceback" not in result.stderr and not out.exists()
        return
    ok(result)
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert html.escape(f"X{HOSTILE}") in page


BROKEN = {
    "negative_size": lambda text: text.replace("longest_diameter_mm: 48", "longest_diameter_mm: -5", 1),
    "bad_yaml": lambda text: text + "\ntimepoints: [\n",
    "no_timepoints": lambda text: "case_id: EMPTY\ntimepoints: []\n",
}


@pytest.mark.parametrize("name", BROKEN)
def test_case_with_error(tmp_path: Path, name: str) -> None:
    sample = FOLFOX.read_text(encoding="utf-8")
    broken = BROKEN[name](sample)
    assert broken != sample
    case_file = tmp_path / f"{name}.yaml"
    case_file.write_text(broken, encoding="utf-8")
    out = tmp_path / "report.html"
    result = run_cli("report", case_file, "-o", out)
    assert result.exit_code == 1, f"exit {result.exit_code}; stderr: {result.stderr}"
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "internal error" not in text, text
    assert "Error:" in result.stderr and case_file.name in result.stderr, result.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [case_file.name], "temporary files left behind"

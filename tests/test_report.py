"""`crlm-response report CASE -o case.html`: one self-contained, printable HTML page per patient.

For every sample case the report is written through the CLI and read back as text:

* every section is there (ids patient, lesions, trajectory, responses, toxicity, warnings, provenance),
  with the lesion-size chart embedded as a base64 PNG (decoded and checked), and nothing that would load from
  elsewhere (no http(s)://, no //cdn, no src= / href= other than data: URIs or in-page anchors, no <script>,
  no <link>);
* print CSS: an @page rule with A4 size and an @media print block;
* the content matches an independent `assess(..., explain=True)` of the same case: the case id, every criteria
  set run (in the provenance table) and, per response block, its best overall response, every explanation line
  (HTML-escaped), every toxicity flag with its timepoint and citation (folfox_bev_partial_response must raise
  sos_spleen_increase_ge30pct at FU2), every warning, and the installed crlm-response version.

Plus: hostile text in the case (description, case id, regimen) comes out escaped, never as markup; a case file
with an error gives exit 1, a clear message, no traceback and no output file.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli, write_case

from crlm_response import __version__, assess

SAMPLES = sorted((ROOT / "sample_cases").glob("*.yaml"))
SECTIONS = ("patient", "lesions", "trajectory", "responses", "toxicity", "warnings", "provenance")
HOSTILE = "<script>alert(1)</script>"
FOLFOX = ROOT / "sample_cases" / "folfox_bev_partial_response.yaml"


def ok(result: Any) -> None:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr


def section(page: str, section_id: str) -> str:
    """The HTML from the section's <h2 id=...> to the next <h2 (or the end of the body)."""
    match = re.search(rf'<h2[^>]*\bid="{re.escape(section_id)}"[^>]*>(.*?)(?=<h2[\s>]|</body>)', page, re.S)
    assert match, f"no section with id={section_id!r}"
    return match.group(1)


@pytest.fixture(scope="module", params=SAMPLES, ids=[p.stem for p in SAMPLES])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    case_file: Path = request.param
    out = tmp_path_factory.mktemp(case_file.stem) / "report.html"
    ok(run_cli("report", case_file, "-o", out))
    return case_file, out.read_text(encoding="utf-8")


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
    count = len(re.findall(rf'\bid="{section_id}"', page))
    assert count == 1, f"section id {section_id!r} found {count} times"
    section(page, section_id)


def test_embedded_chart_is_a_png(report: tuple[Path, str]) -> None:
    _, page = report
    if "no measured target lesions to chart" in section(page, "trajectory"):
        # An ablation-only case has no target sizes over time: the section says so instead of a chart.
        assert "<img" not in section(page, "trajectory")
        return
    images = re.findall(r'<img[^>]*\bsrc="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert images, "no embedded data:image/png;base64 chart"
    data = base64.b64decode(images[0], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 300 and height >= 150, (width, height)
    assert "data:image/png;base64," in section(page, "trajectory")


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


def test_content_matches_assessment(report: tuple[Path, str]) -> None:
    case_file, page = report
    assessment = assess(case_file, explain=True)
    data = assessment.to_dict()
    case_id = yaml.safe_load(case_file.read_text(encoding="utf-8"))["case_id"]
    assert html.escape(case_id) in section(page, "patient")
    assert re.search(rf"<h1>[^<]*{re.escape(html.escape(case_id))}", page), "case id not in the heading"

    provenance = section(page, "provenance")
    for rule_id in assessment.results:  # every criteria set run, toxicity included
        assert f"<td>{html.escape(rule_id)}</td>" in provenance, f"{rule_id} not among the rule sets run"

    responses = section(page, "responses")
    blocks = re.split(r"(?=<h3[\s>])", responses)
    for rule_id, block in data["criteria"].items():
        mine = [b for b in blocks if f"({html.escape(rule_id)})" in b.split("</h3>")[0]]
        assert len(mine) == 1, f"no response block for {rule_id}"
        assert html.escape(block["name"]) in mine[0].split("</h3>")[0]
        if block.get("best_overall_response") is not None:
            bor = html.escape(str(block["best_overall_response"]))
            pattern = rf"Best overall response:\s*<span[^>]*>\s*{re.escape(bor)}\s*</span>"
            assert re.search(pattern, mine[0]), f"{rule_id}: best overall response {bor} not shown"
        for timepoint in block.get("timepoints", []):
            assert f"<td>{html.escape(timepoint['id'])}</td>" in mine[0]
            for line in timepoint.get("explanation") or []:
                assert html.escape(line) in mine[0], f"{rule_id} {timepoint['id']}: missing line: {line}"

    toxicity = section(page, "toxicity")
    flags = data.get("toxicity") or []
    rows = re.findall(r"<tr>(.*?)</tr>", toxicity, re.S)
    for flag in flags:
        matching = [
            r
            for r in rows
            if f"<td>{html.escape(flag['timepoint'])}</td>" in r
            and flag["flag"] in r
            and html.escape(flag["citation"]) in r
        ]
        assert matching, f"flag {flag['flag']} at {flag['timepoint']} ({flag['citation']}) not shown"
        if flag.get("explanation"):
            assert html.escape(flag["explanation"]) in toxicity
    if not flags:
        assert "none raised" in toxicity

    warnings = section(page, "warnings")
    for warning in data.get("warnings") or []:
        assert html.escape(warning["message"]) in warnings
    if not data.get("warnings"):
        assert "none" in warnings


def test_version(report: tuple[Path, str]) -> None:
    _, page = report
    installed = importlib.metadata.version("crlm-response")
    assert installed == __version__
    assert f"crlm-response {html.escape(installed)}" in section(page, "provenance")


def test_folfox_spleen_flag_with_citation(tmp_path: Path) -> None:
    out = tmp_path / "folfox.html"
    ok(run_cli("report", FOLFOX, "-o", out))
    toxicity = section(out.read_text(encoding="utf-8"), "toxicity")
    rows = [r for r in re.findall(r"<tr>(.*?)</tr>", toxicity, re.S) if "sos_spleen_increase_ge30pct" in r]
    assert len(rows) == 1, "sos_spleen_increase_ge30pct not flagged exactly once"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[0], re.S)
    assert cells[0] == "FU2"
    assert re.search(r"Park2016", rows[0]), "no citation on the flag"
    assert re.search(r"\[[A-E]\]", rows[0]), "no evidence level on the flag"
    assert re.search(r"38\.8", rows[0]), "evidence (spleen % change) not shown"


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

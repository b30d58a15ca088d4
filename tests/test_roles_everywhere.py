"""Criteria as data: what a response word means comes from its set's roles, never from the word or the set's id.

(a) For every shipped set, a copy with another `id` and `name` gives the same answers on the golden cases, the
    same cohort summary, and the same SDTM RS and ADaM rows (apart from the id, and RSCAT, which is the name).
(b) A RECIST copy whose words are `complete`, `partial`, `stable` ... ranks, confirms and summarises exactly as
    RECIST does (word for word), and `diff` sees the two as the same scale (kappa 1).
(c) No response word of a shipped set is written as a string literal in the package outside `roles.py` (and,
    for now, the modules other engineers are moving to roles).
Plus: disagreements between sets compare roles; ADRS AVAL follows the role (admiralonco aval_resp); RSCAT can be
set with `rscat:`; the `bor` reader accepts a set's own spellings.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import FIXTURES, ROOT, run_json, write_case

from crlm_response import assess
from crlm_response.adam import adam_tables
from crlm_response.assessment import get_rules
from crlm_response.batch import score_read
from crlm_response.readers import case_from_data
from crlm_response.roles import DEFAULT_WORDS, ROLES
from crlm_response.rules import builtin_ids, builtin_rules_dir, load_rules
from crlm_response.sdtm import read_sdtm, response_result, rs_rows
from crlm_response.summary import summarise
from crlm_response.trial import response_aliases

GOLDEN = ROOT / "tests" / "golden"
PACKAGE = ROOT / "crlm_response"
TU, TR = FIXTURES / "sdtm" / "crlm_tu.csv", FIXTURES / "sdtm" / "crlm_tr.csv"
RESPONSE_SETS = [r for r in builtin_ids() if load_rules(r).schema.kind == "response"]


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def renamed_copy(rule_id: str, folder: Path, words: dict[str, str] | None = None) -> tuple[Path, str, str]:
    """The shipped file with another id and name (and, optionally, every response word replaced)."""
    text = (builtin_rules_dir() / f"{rule_id}.yaml").read_text(encoding="utf-8")
    new_id, new_name = f"{rule_id}_renamed", f"Renamed copy of {rule_id}"
    text, ids = re.subn(r"(?m)^id: .*$", f"id: {new_id}", text)
    text, names = re.subn(r"(?m)^name: .*$", f"name: {new_name}", text)
    assert ids == names == 1, rule_id
    for old, new in (words or {}).items():  # longest first: NON-CR/NON-PD before CR and PD
        text = re.sub(rf"(?<![A-Za-z0-9_/-]){re.escape(old)}(?![A-Za-z0-9_/-])", new, text)
    path = folder / f"{new_id}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, new_id, new_name


def golden_cases(rule_id: str) -> list[dict[str, Any]]:
    """Case documents of the set's golden file (the cases it must refuse left out), one case id each."""
    data = yaml.safe_load((GOLDEN / f"{rule_id}.yaml").read_text(encoding="utf-8"))
    docs = []
    for golden in data["cases"]:
        if "error" in golden:
            continue
        doc = copy.deepcopy(golden["case"])
        doc["case_id"] = golden["name"]
        for set_id, params in (golden.get("settings") or {}).items():
            doc.setdefault("settings", {}).setdefault(set_id, {}).update(params)
        docs.append(doc)
    return docs


def for_copy(doc: dict[str, Any], rule_id: str, new_id: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    if rule_id in (doc.get("settings") or {}):
        doc["settings"][new_id] = doc["settings"].pop(rule_id)
    return doc


def replaced(value: Any, mapping: dict[str, str]) -> Any:
    """Every string equal to a key (as a value or a dict key) replaced, recursively."""
    if isinstance(value, dict):
        return {replaced(k, mapping): replaced(v, mapping) for k, v in value.items()}
    if isinstance(value, list):
        return [replaced(v, mapping) for v in value]
    if isinstance(value, str):
        return mapping.get(value, value)
    return value


def without(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without(v, keys) for v in value]
    return value


def assess_all(docs: list[dict[str, Any]], criteria: str) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Each case assessed alone; the answers, and the best-response rows of all of them (for the summary)."""
    answers, best = [], []
    for doc in docs:
        result = assess(case_from_data(doc, doc["case_id"]), criteria=[criteria])
        answer = result.to_dict()
        answer.pop("crlm_response_version")
        answers.append(answer)
        for rule_id, scored in result.response_results.items():
            if scored.best is not None:
                best.append(scored.best.assign(criteria=rule_id))
    return answers, (pd.concat(best, ignore_index=True) if best else pd.DataFrame())


# --------------------------------------------------------------------------------------------------
# (a) another id and name: the same answers, summary, RS and ADaM
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule_id", builtin_ids())
def test_a_renamed_copy_gives_the_same_answers_and_summary(rule_id: str, tmp_path: Path) -> None:
    path, new_id, new_name = renamed_copy(rule_id, tmp_path)
    docs = golden_cases(rule_id)
    assert docs, f"no golden cases for {rule_id}"
    original, best = assess_all(docs, rule_id)
    renamed, best_copy = assess_all([for_copy(d, rule_id, new_id) for d in docs], str(path))
    back = {new_id: rule_id, new_name: load_rules(rule_id).schema.name}
    assert replaced(renamed, back) == original
    if load_rules(rule_id).schema.best_response is not None:
        assert replaced(summarise(best_copy), back) == summarise(best)
        assert len(best) == len(docs)


@pytest.mark.parametrize("rule_id", [r for r in RESPONSE_SETS if load_rules(r).schema.best_response is not None])
def test_a_renamed_copy_gives_the_same_rs_and_adam(rule_id: str, tmp_path: Path) -> None:
    path, new_id, new_name = renamed_copy(rule_id, tmp_path)
    tables: dict[str, dict[str, pd.DataFrame]] = {}
    for criteria in (rule_id, str(path)):
        read, streams = read_sdtm(TU, TR)
        batch = score_read(read, [criteria])
        result = response_result(batch.results)
        assert result is not None
        adrs, adtr = adam_tables(batch.results, batch.prepared, streams)
        tables[criteria] = {"rs": rs_rows(result, streams), "adrs": adrs, "adtr": adtr}
    original, renamed = tables[rule_id], tables[str(path)]
    shipped = load_rules(rule_id).schema
    # RSCAT is the rule file's `rscat:` (kept by the copy) or else the set's name
    assert set(original["rs"]["RSCAT"]) <= {shipped.rscat or shipped.name}
    assert set(renamed["rs"]["RSCAT"]) <= {shipped.rscat or new_name}
    assert len(original["rs"]) > 0 and len(original["adrs"]) > 0
    # RSCAT and PARCAT3 name the set (issue 15: ADaM PARCAT3 too); everything else is the same
    assert set(renamed["adrs"]["PARCAT3"]) == {shipped.rscat or new_name}  # a copy keeps the file's rscat:
    pd.testing.assert_frame_equal(renamed["rs"].drop(columns="RSCAT"), original["rs"].drop(columns="RSCAT"))
    pd.testing.assert_frame_equal(renamed["adrs"].drop(columns="PARCAT3"), original["adrs"].drop(columns="PARCAT3"))
    pd.testing.assert_frame_equal(renamed["adtr"].drop(columns="PARCAT3"), original["adtr"].drop(columns="PARCAT3"))


# --------------------------------------------------------------------------------------------------
# (b) other words
# --------------------------------------------------------------------------------------------------

PLAIN_WORDS = {
    "NON-CR/NON-PD": "non_cr_non_pd",
    "CR": "complete",
    "PR": "partial",
    "SD": "stable",
    "PD": "progression",
    "NE": "not_evaluable",
    "NA": "not_applicable",
}


def test_recist_in_other_words_answers_and_summarises_word_for_word(tmp_path: Path) -> None:
    path, new_id, new_name = renamed_copy("recist1.1", tmp_path, PLAIN_WORDS)
    words = load_rules(path).scale
    assert words.ranking == ("complete", "partial", "stable", "non_cr_non_pd", "progression", "not_evaluable")
    assert words.responders == ["complete", "partial"]
    docs = golden_cases("recist1.1")
    original, best = assess_all(docs, "recist1.1")
    plain, best_plain = assess_all([for_copy(d, "recist1.1", new_id) for d in docs], str(path))
    back = {v: k for k, v in PLAIN_WORDS.items()} | {new_id: "recist1.1", new_name: "RECIST 1.1"}
    texts = {"explanation", "message", "best_overall_response_reason"}  # prose quotes the words
    assert without(replaced(plain, back), texts) == without(original, texts)
    # ORR and DCR count the same subjects; the distribution has the same counts under the other words
    summary, summary_plain = summarise(best), summarise(best_plain)
    assert replaced(summary_plain, back) == summary
    assert summary[0]["objective_response_rate"]["n"] > 0 and summary[0]["disease_control_rate"]["n"] > 0


def small_cohort(folder: Path) -> Path:
    """Four one-target patients, baseline 50 mm, follow-up on day 56: 0 mm CR, 30 mm PR (-40 %), 45 mm SD
    (-10 %), 70 mm PD (+40 %)."""
    folder.mkdir(parents=True, exist_ok=True)
    for case_id, mm in (("P1", 0), ("P2", 30), ("P3", 45), ("P4", 70)):
        case = {
            "case_id": case_id,
            "timepoints": [
                {
                    "id": "baseline",
                    "day": 0,
                    "modality": "CT",
                    "lesions": [{"id": "L1", "organ": "liver", "kind": "target", "longest_diameter_mm": 50}],
                },
                {"id": "FU1", "day": 56, "modality": "CT", "lesions": [{"id": "L1", "longest_diameter_mm": mm}]},
            ],
        }
        write_case(folder, case, f"{case_id}.yaml")
    return folder


def test_diff_sees_other_words_for_the_same_roles_as_the_same_scale(tmp_path: Path) -> None:
    """CR, PR, SD, PD against complete, partial, stable, progression: a diagonal cross-tab (rows in RECIST's
    words, columns in the copy's), 100 % agreement, kappa 1, ORR 2/4 = 50 % on both sides, nobody
    reclassified."""
    path, _, _ = renamed_copy("recist1.1", tmp_path, PLAIN_WORDS)
    v = run_json("diff", "recist1.1", str(path), "--cases", small_cohort(tmp_path / "cases"))["verdicts"]
    assert v["crosstab"] == {
        "rows": ["CR", "PR", "SD", "PD"],
        "columns": ["complete", "partial", "stable", "progression"],
        "counts": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    }
    assert v["agreement_pct"] == 100.0
    assert v["timepoint_agreement_pct"] == 100.0
    assert v["kappa"]["kappa"] == 1.0
    assert v["reclassified"] == []
    assert v["objective_response_rate"]["a_pct"] == v["objective_response_rate"]["b_pct"] == 50.0


def test_the_bor_reader_accepts_a_sets_own_spellings(tmp_path: Path) -> None:
    plain = load_rules(renamed_copy("recist1.1", tmp_path, PLAIN_WORDS)[0]).scale
    aliases = response_aliases(plain)
    assert aliases["PARTIAL"] == "partial"
    assert aliases["NOT EVALUABLE"] == "not_evaluable"
    assert aliases["NOT DONE"] == "ND"  # the not-done role keeps admiralonco's word unless the set names one
    assert "PR" not in aliases
    recist = response_aliases(get_rules("recist1.1").scale)
    assert {k: v for k, v in recist.items() if v == "NON-CR/NON-PD"} == {
        "NON-CR/NON-PD": "NON-CR/NON-PD",
        "NON-CR / NON-PD": "NON-CR/NON-PD",
        "NON CR/NON PD": "NON-CR/NON-PD",
        "NONCR/NONPD": "NON-CR/NON-PD",
    }
    assert "MISSING" not in recist  # a written MISSING is refused, as before


# --------------------------------------------------------------------------------------------------
# Roles across sets: disagreements, AVAL, RSCAT
# --------------------------------------------------------------------------------------------------


def morphology_case(case_id: str, follow_up_mm: float, groups: tuple[int, int]) -> dict[str, Any]:
    base = {"id": "L1", "organ": "liver", "kind": "target", "longest_diameter_mm": 50, "morphology_group": groups[0]}
    follow = {"id": "L1", "longest_diameter_mm": follow_up_mm, "morphology_group": groups[1]}
    return {
        "case_id": case_id,
        "timepoints": [
            {"id": "baseline", "day": 0, "modality": "CT", "lesions": [base]},
            {"id": "FU1", "day": 56, "modality": "CT", "lesions": [follow]},
        ],
    }


def test_recist_sd_against_a_chun_optimal_response_is_a_disagreement() -> None:
    """50 -> 44 mm (-12 %) is RECIST SD (role stable); group 3 -> 1 is Chun optimal (role partial)."""
    result = assess(case_from_data(morphology_case("M1", 44, (3, 1)), "M1"), criteria="recist1.1,chun_morphologic")
    assert result.to_dict()["disagreements"] == [
        {
            "timepoint": "FU1",
            "verdicts": {"recist1.1": "SD", "chun_morphologic": "optimal"},
            "roles": {"recist1.1": "stable", "chun_morphologic": "partial"},
        }
    ]


def test_recist_sd_and_chun_none_mean_the_same_and_do_not_disagree() -> None:
    """50 -> 50 mm is SD; group 2 -> 2 is Chun `none` (no morphologic response, role stable)."""
    result = assess(case_from_data(morphology_case("M3", 50, (2, 2)), "M3"), criteria="recist1.1,chun_morphologic")
    assert result.to_dict()["disagreements"] == []


@pytest.fixture(scope="module")
def sdtm_recist() -> dict[str, pd.DataFrame]:
    read, streams = read_sdtm(TU, TR)
    batch = score_read(read, ["recist1.1"])
    result = response_result(batch.results)
    assert result is not None
    adrs, _ = adam_tables(batch.results, batch.prepared, streams)
    return {"adrs": adrs, "rs": rs_rows(result, streams)}


def test_adrs_aval_is_admiralonco_aval_resp_of_the_role(sdtm_recist: dict[str, pd.DataFrame]) -> None:
    """aval_resp(): CR 1, PR 2, SD 3, NON-CR/NON-PD 4, PD 5, NE 6, MISSING 7. The fixture's investigator reads of
    CRLM-001 are OVR PR, PD, PD (BOR PR, CBOR SD); CRLM-003 is CR throughout (tests/fixtures/sdtm/README.md)."""
    adrs = sdtm_recist["adrs"]

    def aval(usubjid: str, evaluator: str, paramcd: str) -> list[int]:
        rows = adrs.loc[(adrs["USUBJID"] == usubjid) & (adrs["RSEVAL"] == evaluator) & (adrs["PARAMCD"] == paramcd)]
        return [int(x) for x in rows["AVAL"]]

    assert aval("CRLM-001", "INVESTIGATOR", "OVR") == [2, 5, 5]
    assert aval("CRLM-001", "INVESTIGATOR", "BOR") == [2]
    assert aval("CRLM-001", "INVESTIGATOR", "CBOR") == [3]
    assert aval("CRLM-001", "INDEPENDENT ASSESSOR", "OVR") == [3, 6, 5]
    assert aval("CRLM-003", "INVESTIGATOR", "OVR") == [1, 1]


def test_rscat_comes_from_the_rule_file(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        "id: site_recist\nextends: recist1.1\nname: Site RECIST\nrscat: RECIST 1.1\ndescription: site copy\n",
        encoding="utf-8",
    )
    read, streams = read_sdtm(TU, TR)
    result = response_result(score_read(read, [str(path)]).results)
    assert result is not None and result.id == "site_recist"
    assert set(rs_rows(result, streams)["RSCAT"]) == {"RECIST 1.1"}


def test_a_set_without_confirmation_or_diameters_writes_rs_and_adrs_but_no_cbor_or_sdiam() -> None:
    """PERCIST ranks its best response (no confirmation, so no CBOR and none of the confirmed parameters; no
    target lesions, so no MDIS) and has no sum of diameters (empty ADTR); its RS rows carry its own name as
    RSCAT."""
    read, streams = read_sdtm(TU, TR)
    batch = score_read(read, ["percist1.0"])
    result = response_result(batch.results)
    assert result is not None
    adrs, adtr = adam_tables(batch.results, batch.prepared, streams)
    assert set(adrs["PARAMCD"]) == {"OVR", "BOR", "RSP", "CB", "BCP", "PD", "LSTA"}
    assert set(adrs["PARCAT3"]) == {"PERCIST 1.0"}
    assert adtr.empty
    assert set(rs_rows(result, streams)["RSCAT"]) == {"PERCIST 1.0"}


# --------------------------------------------------------------------------------------------------
# (c) no response word as a string literal in the package
# --------------------------------------------------------------------------------------------------

# roles.py maps roles to display: the one place words of no particular set (ND, MISSING) may be written.
# TEMPORARY: plots.py, render.py, report.py and cli.py are being moved to roles by other engineers; remove each
# from this list when its change lands.
ALLOWED_MODULES = {"roles.py", "plots.py", "render.py", "report.py", "cli.py"}
# The same letters with another meaning.
HOMONYMS = {
    ("adam.py", "PD"): "the ADaM parameter code PD (Disease Progression, admiralonco), not a response word",
    ("bor.py", "NA"): "a missing-value token of exported files (R writes NA)",
    ("bor.py", "MISSING"): "a missing-value token of exported files",
    ("models.py", "none"): "input field values (mri_contrast: none, intratumoral_nodule: none)",
    ("rules.py", "none"): "English: `parameters of this set: none`",
    ("dicom_sr.py", "none"): "English: `lesions there: none`",
    ("dates.py", "none"): "the --date-imputation choice `none` (no imputation)",
}


def response_words() -> set[str]:
    """Every word with a role in a shipped response set, and the default words of roles.py; role names (also
    written in code that works on roles) are not words here."""
    words = set(DEFAULT_WORDS.values())
    for rule_id in RESPONSE_SETS:
        schema = load_rules(rule_id).schema
        words |= {w for w, info in schema.categories.items() if info.role is not None}
        if schema.best_response is not None:
            words |= {str(w) for w in schema.best_response.ranking}
    return words - set(ROLES)


def literal_words(source: str, words: set[str]) -> list[tuple[int, str]]:
    """String literals (docstrings aside) that are a response word."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in words
        and id(node) not in docstrings
    )


def test_no_response_word_is_written_in_python_outside_roles() -> None:
    words = response_words()
    assert {"CR", "PD", "NON-CR/NON-PD", "optimal", "CMR", "complete_ablation", "ND"} <= words
    hits = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in ALLOWED_MODULES:
            continue
        for line, word in literal_words(path.read_text(encoding="utf-8"), words):
            if (path.name, word) not in HOMONYMS:
                hits.append(f"{path.name}:{line}: {word!r}")
    assert hits == [], "response words written in Python (use the set's roles):\n" + "\n".join(hits)


def test_the_word_scan_would_see_a_planted_word() -> None:
    sample = '"""Docstring: CR is fine here."""\nRESPONDERS = ("CR", "PR")\nx = f"{y} PD"\n'
    assert literal_words(sample, {"CR", "PR", "PD"}) == [(2, "CR"), (2, "PR")]

"""Property tests: RECIST 1.1 answers that must hold for every valid case, whatever the numbers.

Cases are generated (1-5 targets, optional non-targets, 1-4 follow-ups, sometimes a new lesion) and scored
through the library, not the CLI, to keep the budget small. The rules behind each property are in
REFERENCE.md §1 (target response §1.4, non-target §1.5, new lesions §1.6, missing targets §1.7, Tables 1
and 2 §1.8, best overall response §1.9).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crlm_response import assess
from crlm_response.readers import case_from_data

RULE_SET = "recist1.1"
BUDGET = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Two slots per organ: a drawn set of up to five targets never breaks the 2-per-organ rule (REFERENCE §1.2).
TARGET_ORGAN_SLOTS = ["liver", "liver", "lung", "lung", "lymph_node", "lymph_node", "adrenal", "adrenal"]
NON_TARGET_ORGANS = ["peritoneum", "bone", "lung", "liver"]
# Repeats weight the draw towards measured lesions without excluding the other states.
TARGET_STATES = ["present", "present", "present", "present", "disappeared", "too_small", "not_evaluated"]
NON_TARGET_STATES = ["present", "present", "disappeared", "unequivocal_progression", "not_evaluated"]
NEW_LESION = [None, None, None, "unequivocal", "equivocal"]

TARGET_RANK = {"PD": 0, "SD": 1, "PR": 2, "CR": 3}
OVERALL_RANK = {"NE": 0, "PD": 1, "NON-CR/NON-PD": 2, "SD": 3, "PR": 4, "CR": 5}


def tenths(low_mm: int, high_mm: int) -> st.SearchStrategy[float]:
    """A diameter in mm with one decimal, as a radiologist reports it."""
    return st.integers(low_mm * 10, high_mm * 10).map(lambda t: t / 10)


@st.composite
def valid_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A valid case file as plain data (what `yaml.safe_load` of a case gives)."""
    n_targets = draw(st.integers(1, 5))
    organs = draw(st.permutations(TARGET_ORGAN_SLOTS))[:n_targets]
    targets = []
    for i, organ in enumerate(organs, start=1):
        node = organ == "lymph_node"
        lesion: dict[str, Any] = {"id": f"L{i}", "organ": organ, "kind": "target"}
        if node:
            lesion.update(is_lymph_node=True, short_axis_mm=draw(tenths(15, 40)))
        else:
            lesion.update(longest_diameter_mm=draw(tenths(10, 80)))
        targets.append(lesion)
    non_targets = [
        {"id": f"NT{i}", "organ": draw(st.sampled_from(NON_TARGET_ORGANS)), "kind": "non_target"}
        for i in range(1, draw(st.integers(0, 3)) + 1)
    ]
    timepoints: list[dict[str, Any]] = [
        {"id": "baseline", "day": 0, "modality": "CT", "lesions": targets + non_targets}
    ]

    n_follow_ups = draw(st.integers(1, 4))
    gaps = draw(st.lists(st.integers(1, 120), min_size=n_follow_ups, max_size=n_follow_ups))
    day = 0
    for k, gap in enumerate(gaps, start=1):
        day += gap
        lesions: list[dict[str, Any]] = []
        for target in targets:
            node = bool(target.get("is_lymph_node"))
            state = draw(st.sampled_from(TARGET_STATES))
            row: dict[str, Any] = {"id": target["id"], "status": state}
            if state == "present":
                row["short_axis_mm" if node else "longest_diameter_mm"] = draw(tenths(0, 120))
            lesions.append(row)
        for non_target in non_targets:
            lesions.append({"id": non_target["id"], "status": draw(st.sampled_from(NON_TARGET_STATES))})
        new = draw(st.sampled_from(NEW_LESION))
        if new is not None:
            lesions.append(
                {
                    "id": f"NEW{k}",
                    "organ": "liver",
                    "kind": "new",
                    "longest_diameter_mm": 12.0,
                    "equivocal": new == "equivocal",
                }
            )
        tp: dict[str, Any] = {"id": f"FU{k}", "day": day, "modality": "CT", "lesions": lesions}
        markers = draw(st.sampled_from([None, None, False, True]))
        if markers is not None:
            tp["tumor_markers_above_normal"] = markers
        timepoints.append(tp)
    return {"case_id": "PROP", "criteria": [RULE_SET], "timepoints": timepoints}


def run(data: dict[str, Any], settings_: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score a case given as data; the JSON contract as plain data."""
    case = case_from_data(copy.deepcopy(data), "<generated>")
    result = assess(case, criteria=[RULE_SET], settings={RULE_SET: settings_} if settings_ else None)
    # Round-trip through JSON so that the comparison sees what a user of `--format json` sees.
    return json.loads(json.dumps(result.to_dict(), default=str))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer without explanations (free text); warnings and lesion lists as multisets."""
    blocks = {}
    for rule_id, block in answer["criteria"].items():
        block = copy.deepcopy(block)
        block["warnings"] = Counter(_canonical(w) for w in block.get("warnings", []))
        for tp in block["timepoints"]:
            tp.pop("explanation", None)
            if "lesions" in tp:
                tp["lesions"] = sorted(tp["lesions"], key=_canonical)
        blocks[rule_id] = block
    return {"criteria": blocks, "warnings": Counter(_canonical(w) for w in answer["warnings"])}


def recist(answer: dict[str, Any]) -> dict[str, Any]:
    return answer["criteria"][RULE_SET]


def follow_up_rows(data: dict[str, Any], answer: dict[str, Any]) -> list[tuple[dict, dict]]:
    """(input timepoint, its output row) for every follow-up."""
    rows = {tp["id"]: tp for tp in recist(answer)["timepoints"]}
    return [(tp, rows[tp["id"]]) for tp in data["timepoints"][1:]]


# --------------------------------------------------------------------------------------------------
# (1)-(3) The answer depends on the lesions, not on how the file is written.
# --------------------------------------------------------------------------------------------------


@BUDGET
@given(data=valid_cases(), rnd=st.randoms(use_true_random=False))
def test_lesion_order_within_a_timepoint_does_not_change_the_answer(data, rnd):
    shuffled = copy.deepcopy(data)
    for tp in shuffled["timepoints"]:
        rnd.shuffle(tp["lesions"])
    assert comparable(run(shuffled)) == comparable(run(data))


@BUDGET
@given(data=valid_cases(), rnd=st.randoms(use_true_random=False))
def test_timepoint_order_in_the_file_does_not_change_the_answer(data, rnd):
    shuffled = copy.deepcopy(data)
    rnd.shuffle(shuffled["timepoints"])
    assert comparable(run(shuffled)) == comparable(run(data))


NEW_NAMES = st.lists(st.from_regex(r"[A-Z][0-9]{1,2}", fullmatch=True), min_size=12, max_size=12, unique=True)


@BUDGET
@given(data=valid_cases(), names=NEW_NAMES)
def test_renaming_lesions_consistently_does_not_change_the_answer(data, names):
    old_ids = list(dict.fromkeys(les["id"] for tp in data["timepoints"] for les in tp["lesions"]))
    mapping = dict(zip(old_ids, names, strict=False))  # at most 5 targets + 3 non-targets + 4 new lesions
    renamed = copy.deepcopy(data)
    for tp in renamed["timepoints"]:
        for lesion in tp["lesions"]:
            lesion["id"] = mapping[lesion["id"]]

    def summary(answer: dict[str, Any]) -> dict[str, Any]:
        block = recist(answer)
        keep = (
            "id",
            "day",
            "sum_mm",
            "available_sum_mm",
            "targets_evaluated",
            "nadir_mm",
            "pct_from_baseline",
            "pct_from_nadir",
            "mm_from_nadir",
            "target",
            "non_target",
            "new_lesions",
            "overall",
        )
        return {
            "baseline_sum_mm": block.get("baseline_sum_mm"),
            "best_overall_response": block["best_overall_response"],
            "timepoints": [{k: tp.get(k) for k in keep} for tp in block["timepoints"]],
        }

    assert summary(run(renamed)) == summary(run(data))


# --------------------------------------------------------------------------------------------------
# (4) Smaller targets never give a worse target response (REFERENCE §1.4, §1.7).
# --------------------------------------------------------------------------------------------------


@BUDGET
@given(data=valid_cases(), factor=st.floats(0, 1))
def test_shrinking_the_targets_at_the_last_follow_up_never_worsens_its_target_response(data, factor):
    shrunk = copy.deepcopy(data)
    target_ids = {les["id"] for les in data["timepoints"][0]["lesions"] if les["kind"] == "target"}
    last = shrunk["timepoints"][-1]
    for lesion in last["lesions"]:
        if lesion["id"] in target_ids and lesion["status"] == "present":
            key = "short_axis_mm" if "short_axis_mm" in lesion else "longest_diameter_mm"
            lesion[key] = round(lesion[key] * factor, 6)

    before = recist(run(data))["timepoints"][-1]
    after = recist(run(shrunk))["timepoints"][-1]
    assert before["id"] == after["id"] == last["id"]
    note = f"{before['target']} -> {after['target']} (factor {factor})"
    if before["target"] in ("NE", "NA"):
        # NA: no targets at all. NE: a partial sum that is not PD; a smaller partial sum is not PD either.
        assert after["target"] == before["target"], note
    elif any(les["id"] in target_ids and les["status"] == "not_evaluated" for les in last["lesions"]):
        # A partial sum can only give PD (when it already shows PD) or NE (REFERENCE §1.7); shrinking it may
        # take PD back to NE, never to anything else.
        assert before["target"] == "PD" and after["target"] in ("PD", "NE"), note
    else:
        assert after["target"] in TARGET_RANK, note
        assert TARGET_RANK[after["target"]] >= TARGET_RANK[before["target"]], note


# --------------------------------------------------------------------------------------------------
# (5)-(7) Table 1 / Table 2 and the best overall response (REFERENCE §1.8, §1.9).
# --------------------------------------------------------------------------------------------------


@BUDGET
@given(data=valid_cases(), where=st.integers(0, 3))
def test_an_unequivocal_new_lesion_always_means_overall_pd(data, where):
    # Every drawn case gets at least one unequivocal new lesion, at a follow-up chosen by `where`.
    follow_ups = data["timepoints"][1:]
    chosen = follow_ups[where % len(follow_ups)]
    if not any(les.get("kind") == "new" and not les.get("equivocal") for les in chosen["lesions"]):
        chosen["lesions"] = [les for les in chosen["lesions"] if les.get("kind") != "new"]
        chosen["lesions"].append({"id": "NEW-X", "organ": "lung", "kind": "new", "longest_diameter_mm": 8.0})
    for tp, row in follow_up_rows(data, run(data)):
        if any(les.get("kind") == "new" and not les.get("equivocal") for les in tp["lesions"]):
            assert row["new_lesions"] is True, row
            assert row["overall"] == "PD", row
        else:
            # no new lesion, or only an equivocal one: not PD by itself (REFERENCE §1.6)
            assert row["new_lesions"] is False, row


@BUDGET
@given(data=valid_cases())
def test_target_pd_always_means_overall_pd(data):
    rows = recist(run(data))["timepoints"]
    assume(any(row["target"] == "PD" for row in rows))
    for row in rows:
        if row["target"] == "PD":
            assert row["overall"] == "PD", row


@BUDGET
@given(
    data=valid_cases(),
    bor_settings=st.fixed_dictionaries(
        {
            "confirmation_required": st.booleans(),
            "sd_min_days": st.integers(42, 56),
            "min_confirmation_interval_days": st.sampled_from([28, 42]),
            "max_ne_between_confirmation": st.integers(0, 2),
            "accept_sd_between_pr_confirmation": st.booleans(),
        }
    ),
)
def test_best_overall_response_is_never_better_than_the_best_timepoint(data, bor_settings):
    block = recist(run(data, bor_settings))
    overall = [row["overall"] for row in block["timepoints"]]
    best_timepoint = max(OVERALL_RANK[o] for o in overall)
    bor = block["best_overall_response"]
    assert bor in OVERALL_RANK, bor
    assert OVERALL_RANK[bor] <= best_timepoint, (bor, overall, bor_settings)


# --------------------------------------------------------------------------------------------------
# Back-dated progression (REFERENCE §1.6, E2009 §4.3.2)
# --------------------------------------------------------------------------------------------------


@BUDGET
@given(
    data=valid_cases(),
    first=st.integers(0, 3),
    later=st.integers(0, 3),
    still_equivocal=st.booleans(),
    confirmation=st.booleans(),
)
def test_a_confirmed_equivocal_lesion_makes_every_visit_from_its_first_scan_pd(
    data, first, later, still_equivocal, confirmation
):
    """An equivocal new lesion that a later scan shows unequivocally (same id) is PD from the scan that first
    showed it: no visit from there to the confirming scan is better than PD, and a responder's response comes
    from before it."""
    follow_ups = data["timepoints"][1:]
    assume(len(follow_ups) >= 2)
    i = first % (len(follow_ups) - 1)
    j = i + 1 + later % (len(follow_ups) - 1 - i)
    follow_ups[i]["lesions"].append(
        {"id": "NEW-Q", "organ": "lung", "kind": "new", "equivocal": True, "longest_diameter_mm": 6.0}
    )
    for between in follow_ups[i + 1 : j]:
        if still_equivocal:
            between["lesions"].append(
                {"id": "NEW-Q", "organ": "lung", "kind": "new", "equivocal": True, "longest_diameter_mm": 7.0}
            )
    follow_ups[j]["lesions"].append({"id": "NEW-Q", "organ": "lung", "kind": "new", "longest_diameter_mm": 12.0})
    block = recist(run(data, {"confirmation_required": confirmation}))
    rows = {row["id"]: row for row in block["timepoints"]}
    showing = [tp for tp in follow_ups[i : j + 1] if any(les["id"] == "NEW-Q" for les in tp["lesions"])]
    for tp in showing:  # every scan that shows it, from the first to the confirming one
        assert rows[tp["id"]]["new_lesions"] is True, (tp["id"], rows[tp["id"]])
        assert rows[tp["id"]]["overall"] == "PD", (tp["id"], rows[tp["id"]])
    first_seen = follow_ups[i]["day"]
    if block["responder"] == "Y":
        assert block["best_overall_response_day"] < first_seen, block
    assert block["best_overall_response_day"] <= first_seen, block

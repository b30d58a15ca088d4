"""Synthetic trial cohorts in the long format, for benchmarks, tests and demos. No real patient data.

`generate_cohort(rows=1_000_000, seed=1)` returns roughly `rows` lesion rows: subjects with 1-5 targets
(liver mostly, some lung and nodes), 0-3 non-targets, restaging every ~8 weeks, and trajectories that respond,
stay stable or progress, with the untidiness of real exports (a target not evaluated now and then, lesions
that disappear, new lesions, an occasional too-small lesion). Fully vectorised, deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .tables import blank_where

REGIMENS = (
    ("FOLFOX", "oxaliplatin;fluorouracil;leucovorin"),
    ("FOLFOX + bevacizumab", "oxaliplatin;fluorouracil;leucovorin;bevacizumab"),
    ("FOLFIRI", "irinotecan;fluorouracil;leucovorin"),
    ("FOLFIRI + bevacizumab", "irinotecan;fluorouracil;leucovorin;bevacizumab"),
    ("CAPOX", "capecitabine;oxaliplatin"),
)
ROWS_PER_SUBJECT = 24.6  # average lesion rows per subject with the defaults below


def generate_cohort(rows: int = 100_000, seed: int = 1, subjects: int | None = None) -> pd.DataFrame:
    """A synthetic cohort of about `rows` lesion rows (or exactly `subjects` subjects)."""
    rng = np.random.default_rng(seed)
    n = subjects if subjects is not None else max(1, int(round(rows / ROWS_PER_SUBJECT)))
    n_targets = rng.integers(1, 6, n)
    n_non_targets = rng.integers(0, 4, n)
    n_follow_ups = rng.integers(2, 8, n)
    trend = rng.choice([-0.45, -0.2, 0.0, 0.25], size=n, p=[0.3, 0.25, 0.25, 0.2])
    regimen = rng.integers(0, len(REGIMENS), n)
    spleen = rng.normal(190, 35, n).clip(90, 400)

    # Lesions of each subject.
    n_lesions = n_targets + n_non_targets
    subj_of_lesion = np.repeat(np.arange(n), n_lesions)
    index_in_subject = np.arange(n_lesions.sum()) - np.repeat(np.cumsum(n_lesions) - n_lesions, n_lesions)
    is_target = index_in_subject < n_targets[subj_of_lesion]
    organ_draw = rng.random(len(subj_of_lesion))
    # Targets follow the 2-per-organ rule (liver, liver, lung, node, lung); about 3 % of subjects break it,
    # as real exports do. Non-targets are mostly more liver lesions.
    target_organs = np.array(["liver", "liver", "lung", "lymph_node", "lung"])
    organ = np.where(is_target, target_organs[np.minimum(index_in_subject, 4)], "liver")
    deviation = is_target & (rng.random(len(organ)) < 0.01)
    organ = np.where(deviation, "liver", organ)
    organ = np.where(~is_target & (organ_draw > 0.8), "peritoneum", organ)
    node = organ == "lymph_node"
    base_size = np.where(node, rng.uniform(15, 35, len(organ)), rng.uniform(11, 70, len(organ)))
    base_hu = rng.normal(75, 10, len(organ)).round()
    group = rng.choice([2, 3], size=len(organ), p=[0.35, 0.65])
    lesion_noise = rng.normal(0, 0.08, len(organ))
    prefix = np.where(is_target, np.where(node, "N", "T"), "NT")
    lesion_id = np.char.add(prefix.astype(str), (index_in_subject + 1).astype(str))

    # Visits: baseline + follow-ups.
    n_visits = n_follow_ups + 1
    visit_index = np.arange(n_visits.sum()) - np.repeat(np.cumsum(n_visits) - n_visits, n_visits)
    day = np.where(visit_index == 0, 0, visit_index * 56 + rng.integers(-7, 8, len(visit_index)))
    visit_start = np.cumsum(n_visits) - n_visits

    # Rows: every lesion at every visit of its subject.
    reps = n_visits[subj_of_lesion]
    row_lesion = np.repeat(np.arange(len(subj_of_lesion)), reps)
    row_subject = subj_of_lesion[row_lesion]
    row_k = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    row_visit = visit_start[row_subject] + row_k
    k = row_k.astype(float)
    factor = np.exp(
        (trend[row_subject] + lesion_noise[row_lesion]) * np.minimum(k, 3) / 3.0
        + np.where(trend[row_subject] < 0, 0.15 * np.maximum(k - 4, 0), 0.0)
    )
    size = np.round(base_size[row_lesion] * factor * rng.normal(1, 0.03, len(row_lesion)), 0)
    baseline_row = row_k == 0
    status = np.full(len(row_lesion), "present", dtype=object)
    tiny = ~baseline_row & (size < 5)
    status[tiny & ~node[row_lesion]] = "disappeared"
    status[(size >= 5) & (size < 7) & ~baseline_row & ~node[row_lesion]] = "too_small"
    missing = ~baseline_row & (rng.random(len(row_lesion)) < 0.01)
    status[missing] = "not_evaluated"
    target = is_target[row_lesion]
    nt_status = np.where(
        trend[row_subject] > 0.2,
        np.where(rng.random(len(row_lesion)) < 0.1, "unequivocal_progression", "present"),
        "present",
    )
    status = np.where(~target & ~baseline_row & (status == "present"), nt_status, status)
    measured = target & (status == "present")
    longest = np.where(measured & ~node[row_lesion], np.maximum(size, 1), np.nan)
    longest = np.where(~target & baseline_row & ~node[row_lesion], np.maximum(size, 1), longest)
    short_axis = np.where(measured & node[row_lesion], np.maximum(size, 1), np.nan)
    hu = np.where(measured, (base_hu[row_lesion] * (1 + 0.6 * (factor - 1))).round(), np.nan)
    morph = np.where(
        organ[row_lesion] == "liver",
        np.where(
            baseline_row,
            group[row_lesion],
            np.clip(group[row_lesion] - (trend[row_subject] < -0.3) - (k > 1) * (trend[row_subject] < -0.1), 1, 3),
        ),
        np.nan,
    )
    kind = np.where(target, "target", "non_target")
    lesions = pd.DataFrame(
        {
            "subject_id": np.char.add("S", (row_subject + 1).astype(str).astype("U")).astype(object),
            "timepoint": np.where(row_k == 0, "baseline", np.char.add("FU", row_k.astype(str))).astype(object),
            "day": day[row_visit],
            "lesion_id": lesion_id[row_lesion].astype(object),
            "kind": blank_where(kind, ~baseline_row),
            "organ": blank_where(organ[row_lesion], ~baseline_row),
            "is_lymph_node": blank_where(np.where(node[row_lesion], "true", "false"), ~baseline_row),
            "longest_diameter_mm": longest,
            "short_axis_mm": short_axis,
            "attenuation_hu": hu,
            "morphology_group": morph,
            "status": status,
            "agents": np.asarray(REGIMENS, dtype=object)[regimen[row_subject], 1],
            "spleen_volume_ml": np.round(spleen[row_subject] * (1 + 0.08 * k), 0),
        }
    )

    # New lesions for some progressing subjects at their last visit.
    new_subjects = np.flatnonzero((trend > 0.2) & (rng.random(n) < 0.5))
    if len(new_subjects):
        last_visit = visit_start[new_subjects] + n_follow_ups[new_subjects]
        new = pd.DataFrame(
            {
                "subject_id": np.char.add("S", (new_subjects + 1).astype(str).astype("U")).astype(object),
                "timepoint": np.char.add("FU", n_follow_ups[new_subjects].astype(str)).astype(object),
                "day": day[last_visit],
                "lesion_id": "NEW1",
                "kind": "new",
                "organ": "liver",
                "is_lymph_node": "false",
                "longest_diameter_mm": rng.integers(8, 25, len(new_subjects)).astype(float),
                "short_axis_mm": np.nan,
                "attenuation_hu": np.nan,
                "morphology_group": np.nan,
                "status": "present",
                "agents": np.asarray(REGIMENS, dtype=object)[regimen[new_subjects], 1],
                "spleen_volume_ml": np.round(spleen[new_subjects] * (1 + 0.08 * n_follow_ups[new_subjects]), 0),
            }
        )
        lesions = pd.concat([lesions, new], ignore_index=True)
    return lesions

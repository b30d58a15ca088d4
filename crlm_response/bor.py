"""Best overall response from per-visit responses (RECIST 1.1 §4.4 / E2009 Table 3; REFERENCE §1.9).

One vectorised function serves `assess`, `batch` and the `bor` command. Visits are taken up to and including
the first PD. Without confirmation, CR, PR and PD count whenever they occur and SD (or NON-CR/NON-PD) counts
only from `sd_min_days` after baseline. With confirmation, a CR needs a later CR, and a PR a later CR or PR,
at least `min_confirmation_interval_days` later, with only allowed responses in between (admiralonco
`derive_param_confirmed_bor` conventions); an unconfirmed CR or PR still counts as SD once `sd_min_days` has
passed. Nothing loops over visits in Python: confirmation pairs are built with numpy over all subjects.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

RECIST_RANKING = ("CR", "PR", "SD", "NON-CR/NON-PD", "PD", "NE")
RESPONSES = frozenset(RECIST_RANKING)
MISSING_WORDS = frozenset({"", "ND", "NA", "NAN", "NONE", "MISSING"})


@dataclass(frozen=True)
class BorSettings:
    """Parameters of REFERENCE §1.9 (names as in the rule files and `bor` options)."""

    confirmation_required: bool = False
    min_confirmation_interval_days: float = 28
    sd_min_days: float = 42
    non_cr_non_pd_min_days: float | None = None  # None: same as sd_min_days (admiralonco convention)
    max_ne_between_confirmation: int = 1
    accept_sd_between_pr_confirmation: bool = False
    stop_at_first_pd: bool = True
    missing_as_ne: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BorSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in known and v is not None})


@dataclass
class BorResult:
    """Per subject: best response and its day; per visit: what each visit contributed."""

    subjects: (
        pd.DataFrame
    )  # subject, best_overall_response, best_overall_response_day, best_row, responder, clinical_benefit
    contribution: np.ndarray  # per input row: the category the visit counts as (None: does not count / dropped)
    confirmed: np.ndarray  # per input row: a CR or PR confirmed by a later visit
    cr_then_pr: pd.DataFrame  # warnings: subject, pr_row, cr_row


def _group_end(subject: np.ndarray) -> np.ndarray:
    """For each row of a subject-sorted array, the index one past the subject's last row."""
    n = len(subject)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.r_[subject[1:] != subject[:-1], True]
    ends = np.flatnonzero(change) + 1
    starts_of_group = np.r_[0, ends[:-1]]
    sizes = ends - starts_of_group
    return np.repeat(ends, sizes)


def _confirmed(subject: np.ndarray, day: np.ndarray, resp: np.ndarray, s: BorSettings) -> np.ndarray:
    n = len(resp)
    confirmed = np.zeros(n, dtype=bool)
    is_cr, is_pr = resp == "CR", resp == "PR"
    candidates = np.flatnonzero(is_cr | is_pr)
    if not len(candidates):
        return confirmed
    end = _group_end(subject)
    counts = end[candidates] - candidates - 1
    i = np.repeat(candidates, counts)
    if not len(i):
        return confirmed
    j = i + 1 + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))

    def cum(mask: np.ndarray) -> np.ndarray:
        return np.r_[0, np.cumsum(mask.astype(np.int64))]

    def between(c: np.ndarray) -> np.ndarray:  # count in the open interval (i, j)
        return c[j] - c[i + 1]

    is_ne, is_sd = resp == "NE", resp == "SD"
    ne_between = between(cum(is_ne))
    far_enough = (day[j] - day[i]) >= s.min_confirmation_interval_days
    ne_ok = ne_between <= s.max_ne_between_confirmation

    cr_pair = is_cr[i] & is_cr[j] & (between(cum(~(is_cr | is_ne))) == 0)
    idx = np.arange(n)
    big = n + 1
    nxt = np.where(is_cr, idx, big)[::-1]
    next_cr_from = pd.Series(nxt).groupby(subject[::-1]).cummin().to_numpy()[::-1]
    next_cr_after = np.r_[next_cr_from[1:], big]
    next_cr_after = np.where(np.r_[subject[1:] == subject[:-1], False], next_cr_after, big)
    last_pr_upto = pd.Series(np.where(is_pr, idx, -1)).groupby(subject).cummax().to_numpy()
    pr_after_cr = next_cr_after[i] < last_pr_upto[j]
    allowed = is_cr | is_pr | is_sd | is_ne
    pr_pair = (
        is_pr[i]
        & (is_cr[j] | is_pr[j])
        & (between(cum(~allowed)) == 0)
        & ~pr_after_cr
        & (s.accept_sd_between_pr_confirmation | (between(cum(is_sd)) == 0))
    )
    ok = far_enough & ne_ok & (cr_pair | pr_pair)
    confirmed[i[ok]] = True
    return confirmed


def best_overall_response(
    subject: np.ndarray | pd.Series,
    day: np.ndarray | pd.Series,
    response: np.ndarray | pd.Series,
    settings: BorSettings = BorSettings(),
    ranking: tuple[str, ...] = RECIST_RANKING,
    method: str = "recist",
) -> BorResult:
    """Best overall response per subject.

    `subject`, `day` (days since the reference date) and `response` are parallel arrays in any order.
    `response` values must already be valid categories (or missing). `method="rank"` takes the best-ranked
    category with no time windows (for criteria such as Chun or PERCIST).
    """
    subj = np.asarray(subject, dtype=object)
    days = np.asarray(day, dtype=float)
    resp_in = np.asarray(response, dtype=object)
    n = len(resp_in)
    order = np.lexsort((days, pd.factorize(subj, sort=True)[0])) if n else np.zeros(0, dtype=np.int64)
    s_subj, s_day, s_resp = subj[order], days[order], resp_in[order].copy()

    words = pd.Series(s_resp, dtype=object)
    missing = words.isna().to_numpy(dtype=bool).copy()
    if method == "recist":  # other rankings may use such words as real categories (Chun's "none")
        missing |= words.astype(str).str.strip().str.upper().isin(MISSING_WORDS).to_numpy(dtype=bool)
    if method == "recist" and settings.missing_as_ne:
        s_resp[missing] = "NE"
        keep = np.ones(n, dtype=bool)
    else:
        keep = ~missing
    if method == "recist" and settings.stop_at_first_pd:
        is_pd = (s_resp == "PD") & keep
        before = pd.Series(is_pd.astype(np.int64)).groupby(s_subj).cumsum().to_numpy() - is_pd
        keep &= before == 0

    k_subj, k_day, k_resp = s_subj[keep], s_day[keep], s_resp[keep]
    contribution = np.full(len(k_resp), None, dtype=object)
    confirmed = np.zeros(len(k_resp), dtype=bool)
    if method == "recist":
        ncnp_min = settings.sd_min_days if settings.non_cr_non_pd_min_days is None else settings.non_cr_non_pd_min_days
        late = k_day >= settings.sd_min_days
        if settings.confirmation_required:
            confirmed = _confirmed(k_subj, k_day, k_resp, settings)
            for word in ("CR", "PR"):
                hit = k_resp == word
                contribution[hit & confirmed] = word
                contribution[hit & ~confirmed & late] = "SD"
        else:
            contribution[k_resp == "CR"] = "CR"
            contribution[k_resp == "PR"] = "PR"
        contribution[(k_resp == "SD") & late] = "SD"
        contribution[(k_resp == "NON-CR/NON-PD") & (k_day >= ncnp_min)] = "NON-CR/NON-PD"
        contribution[k_resp == "PD"] = "PD"
    else:
        valid = pd.Series(k_resp, dtype=object).isin(list(ranking)).to_numpy(dtype=bool)
        contribution[valid] = k_resp[valid]

    rank_of = {c: r for r, c in enumerate(ranking)}
    worst = len(ranking)
    rank = pd.Series(contribution, dtype=object).map(rank_of).fillna(worst).to_numpy(dtype=np.int64)
    kept_rows = order[keep]
    frame = pd.DataFrame({"subject": k_subj, "rank": rank, "day": k_day, "row": kept_rows})
    all_subjects = pd.Index(pd.unique(s_subj))
    if len(frame):
        best = frame.sort_values(["subject", "rank", "day"], kind="stable").drop_duplicates("subject")
        best = best.set_index("subject").reindex(all_subjects)
    else:
        best = pd.DataFrame(index=all_subjects, columns=["rank", "day", "row"], dtype=float)
    none_rank = (best["rank"].isna() | (best["rank"] >= worst)).to_numpy(dtype=bool)
    fallback = "NE" if method == "recist" else None
    words_by_rank = np.asarray(list(ranking) + [fallback], dtype=object)
    ranks = np.where(none_rank, worst, best["rank"].fillna(worst).to_numpy(dtype=float)).astype(np.int64)
    bor = words_by_rank[ranks]
    result = pd.DataFrame(
        {
            "subject": all_subjects.to_numpy(dtype=object),
            "best_overall_response": bor,
            "best_overall_response_day": np.where(none_rank, np.nan, best["day"].to_numpy(dtype=float)),
            "best_row": np.where(none_rank, -1, best["row"].fillna(-1).to_numpy(dtype=float)).astype(np.int64),
        }
    )
    result["responder"] = np.where(np.isin(result["best_overall_response"].astype(str), ["CR", "PR"]), "Y", "N")
    result["clinical_benefit"] = np.where(
        np.isin(result["best_overall_response"].astype(str), ["CR", "PR", "SD", "NON-CR/NON-PD"]), "Y", "N"
    )

    # Per-input-row views, in the caller's order.
    full_contribution = np.full(n, None, dtype=object)
    full_confirmed = np.zeros(n, dtype=bool)
    full_contribution[kept_rows] = contribution
    full_confirmed[kept_rows] = confirmed

    warn = _cr_then_pr(k_subj, k_resp, kept_rows) if method == "recist" else _empty_warnings()
    return BorResult(result, full_contribution, full_confirmed, warn)


def _empty_warnings() -> pd.DataFrame:
    return pd.DataFrame(
        {"subject": pd.Series(dtype=object), "pr_row": pd.Series(dtype=np.int64), "cr_row": pd.Series(dtype=np.int64)}
    )


def _cr_then_pr(subj: np.ndarray, resp: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    """A PR after a CR (up to the first PD): E2009 Table 3 note a asks for a re-read, not a guess."""
    is_cr = resp == "CR"
    if not is_cr.any():
        return _empty_warnings()
    last_cr = pd.Series(np.where(is_cr, np.arange(len(resp)), -1)).groupby(subj).cummax().to_numpy()
    hit = (resp == "PR") & (last_cr >= 0)
    if not hit.any():
        return _empty_warnings()
    return pd.DataFrame({"subject": subj[hit], "pr_row": rows[hit], "cr_row": rows[last_cr[hit]]})


def persist_category(
    subject: np.ndarray, category: np.ndarray, keep: str, replaces: list[Any], stop: tuple[str, ...] = ("PD",)
) -> np.ndarray:
    """Once `keep` has occurred for a subject, later `replaces` values become `keep` until a `stop` value.

    Rows must be sorted by subject and time. Used for the RECIST FAQ "sticky PR" parameter.
    """
    reached = pd.Series((category == keep).astype(np.int64)).groupby(subject).cumsum().to_numpy() > 0
    stopped = pd.Series(np.isin(category.astype(str), stop).astype(np.int64)).groupby(subject).cumsum().to_numpy() > 0
    swap = reached & ~stopped & np.isin(category.astype(str), [str(r) for r in replaces])
    out = category.copy()
    out[swap] = keep
    return out

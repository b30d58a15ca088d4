"""Diff two criteria sets: what differs in their rules, and whose verdict it changes on a cohort.

`diff_rule_sets(a, b)` compares the resolved rule sets semantically (parameters with units, decision-list
entries per category, overall-response table rows, citations, warning checks and flags): changed entries first,
then what is only in A or only in B. `diff_verdicts(prepared, a, b)` runs the engine once per set over the whole
cohort and compares best overall responses and per-timepoint verdicts: cross-tabulation, agreement, Cohen's
kappa with a 95 % confidence interval (when both sets rank the same roles), objective response rates, and
the reclassified subjects with the rule that fired under each set. Verdicts are compared by their roles (see
`roles.py`): a set that writes `complete` where RECIST writes `CR` agrees with RECIST.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .engine import RuleSetResult, score
from .roles import ResponseScale
from .rules import LoadedRuleSet
from .tables import Prepared, with_object_strings

Z95 = 1.959963984540054


@dataclass
class Change:
    """One difference: where (section and name), what it was in A and in B."""

    section: str
    name: str
    kind: str  # changed | only_a | only_b
    a: Any = None
    b: Any = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "name": self.name,
            "kind": self.kind,
            "a": self.a,
            "b": self.b,
            "detail": self.detail,
        }


@dataclass
class RuleDiff:
    a: str
    b: str
    changes: list[Change] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.changes

    def ordered(self) -> list[Change]:
        rank = {"changed": 0, "only_a": 1, "only_b": 2}
        return sorted(self.changes, key=lambda c: rank[c.kind])


def _param_text(param: Any, value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    unit = f" {param.unit}" if param.unit and param.unit not in ("%",) else (param.unit or "")
    return f"{value}{unit}"


def diff_rule_sets(
    a: LoadedRuleSet,
    b: LoadedRuleSet,
    params_a: Mapping[str, Any] | None = None,
    params_b: Mapping[str, Any] | None = None,
) -> RuleDiff:
    """Semantic differences between two resolved rule sets (with their effective parameter values)."""
    out = RuleDiff(a.id, b.id)
    pa, pb = a.schema.parameters, b.schema.parameters
    va = dict(params_a) if params_a is not None else a.default_params
    vb = dict(params_b) if params_b is not None else b.default_params
    for name in sorted(set(pa) | set(pb)):
        if name in pa and name in pb:
            units_differ = bool(pa[name].unit and pb[name].unit and pa[name].unit != pb[name].unit)
            if va.get(name) != vb.get(name) or units_differ:
                out.changes.append(
                    Change(
                        "parameters",
                        name,
                        "changed",
                        _param_text(pa[name], va.get(name)),
                        _param_text(pb[name], vb.get(name)),
                        pa[name].description,
                    )
                )
            elif pa[name].citation != pb[name].citation:
                out.changes.append(Change("parameter citations", name, "changed", pa[name].citation, pb[name].citation))
        elif name in pa:
            out.changes.append(Change("parameters", name, "only_a", _param_text(pa[name], va.get(name)), None))
        else:
            out.changes.append(Change("parameters", name, "only_b", None, _param_text(pb[name], vb.get(name))))

    outs_a = {o.spec.name: o for o in a.outputs}
    outs_b = {o.spec.name: o for o in b.outputs}
    for name in list(outs_a) + [n for n in outs_b if n not in outs_a]:
        if name not in outs_b:
            out.changes.append(Change("outputs", name, "only_a", "defined", None))
            continue
        if name not in outs_a:
            out.changes.append(Change("outputs", name, "only_b", None, "defined"))
            continue
        out.changes.extend(_diff_decisions(name, outs_a[name], outs_b[name]))

    for section, items_a, items_b in (
        (
            "checks",
            {c.spec.code: c.condition.source for c in a.checks},
            {c.spec.code: c.condition.source for c in b.checks},
        ),
        (
            "flags",
            {f.spec.flag: f.condition.source for f in a.flags},
            {f.spec.flag: f.condition.source for f in b.flags},
        ),
        ("citations", a.schema.citations, b.schema.citations),
    ):
        for name in list(items_a) + [n for n in items_b if n not in items_a]:
            if name not in items_b:
                out.changes.append(Change(section, name, "only_a", items_a[name], None))
            elif name not in items_a:
                out.changes.append(Change(section, name, "only_b", None, items_b[name]))
            elif items_a[name] != items_b[name]:
                out.changes.append(Change(section, name, "changed", items_a[name], items_b[name]))
    ba, bb = a.schema.best_response, b.schema.best_response
    if (ba is None) != (bb is None) or (ba and bb and (ba.method, ba.ranking) != (bb.method, bb.ranking)):
        out.changes.append(
            Change(
                "best_response",
                "method",
                "changed",
                f"{ba.method}: {ba.ranking}" if ba else None,
                f"{bb.method}: {bb.ranking}" if bb else None,
            )
        )
    return out


def _diff_decisions(name: str, out_a: Any, out_b: Any) -> list[Change]:
    """Decision-list entries per category: matched by category and order within the category."""
    changes = []

    def by_category(out: Any) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rule in out.rules:
            condition = rule.condition.source if rule.condition is not None else "otherwise"
            groups.setdefault(str(rule.result), []).append(condition)
        if out.spec.aggregate is not None:
            agg = out.spec.aggregate
            groups.setdefault("(aggregate)", []).append(f"{agg.method} of {agg.source}: {agg.order or agg.values}")
        return groups

    ga, gb = by_category(out_a), by_category(out_b)
    order_a = [str(r.result) for r in out_a.rules]
    order_b = [str(r.result) for r in out_b.rules]
    for category in list(ga) + [c for c in gb if c not in ga]:
        conds_a, conds_b = ga.get(category, []), gb.get(category, [])
        for i in range(max(len(conds_a), len(conds_b))):
            ca = conds_a[i] if i < len(conds_a) else None
            cb = conds_b[i] if i < len(conds_b) else None
            label = f"{name} -> {category}" + (f" (#{i + 1})" if max(len(conds_a), len(conds_b)) > 1 else "")
            if ca is None:
                changes.append(Change("decisions", label, "only_b", None, cb))
            elif cb is None:
                changes.append(Change("decisions", label, "only_a", ca, None))
            elif ca != cb:
                changes.append(Change("decisions", label, "changed", ca, cb))
    if order_a != order_b and set(order_a) == set(order_b):
        changes.append(
            Change(
                "decisions",
                f"{name} (order)",
                "changed",
                " > ".join(order_a),
                " > ".join(order_b),
                "the first rule that holds decides, so order matters",
            )
        )
    return changes


# --------------------------------------------------------------------------------------------------
# Verdicts on a cohort
# --------------------------------------------------------------------------------------------------


@dataclass
class VerdictDiff:
    a: str
    b: str
    subjects: pd.DataFrame  # subject_id, bor_a, bor_b, reclassified, why_a, why_b
    timepoints: pd.DataFrame  # subject_id, timepoint, day, overall_a, overall_b
    crosstab: pd.DataFrame
    agreement_pct: float | None
    kappa: dict[str, Any] | None
    kappa_note: str | None
    orr: dict[str, Any]
    timepoint_agreement_pct: float | None

    def reclassified(self) -> pd.DataFrame:
        return self.subjects.loc[self.subjects["reclassified"]].reset_index(drop=True)

    def as_dict(self) -> dict[str, Any]:
        table = self.crosstab
        return {
            "a": self.a,
            "b": self.b,
            "subjects": int(len(self.subjects)),
            "agreement_pct": self.agreement_pct,
            "kappa": self.kappa,
            "kappa_note": self.kappa_note,
            "timepoint_agreement_pct": self.timepoint_agreement_pct,
            "crosstab": {
                "rows": [str(i) for i in table.index],
                "columns": [str(c) for c in table.columns],
                "counts": table.to_numpy().astype(int).tolist(),
            },
            "objective_response_rate": self.orr,
            "reclassified": [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in self.reclassified().to_dict("records")
            ],
        }


def cohens_kappa(table: pd.DataFrame) -> dict[str, Any]:
    """Cohen's kappa of a square agreement table, with the large-sample standard error of Fleiss, Cohen and
    Everitt (1969) and a 95 % Wald interval."""
    counts = table.to_numpy(dtype=float)
    n = counts.sum()
    if n == 0:
        return {"kappa": None, "se": None, "ci_low": None, "ci_high": None, "n": 0}
    p = counts / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    po = float(np.trace(p))
    pe = float((rows * cols).sum())
    if pe >= 1.0:
        return {
            "kappa": 1.0 if po >= 1.0 else None,
            "se": 0.0,
            "ci_low": None,
            "ci_high": None,
            "n": int(n),
            "note": "all ratings in one category: kappa is undefined (agreement is trivially complete)",
        }
    kappa = (po - pe) / (1.0 - pe)
    k = len(rows)
    a = sum(p[i, i] * (1.0 - (rows[i] + cols[i]) * (1.0 - kappa)) ** 2 for i in range(k))
    b = (1.0 - kappa) ** 2 * sum(p[i, j] * (cols[i] + rows[j]) ** 2 for i in range(k) for j in range(k) if i != j)
    c = (kappa - pe * (1.0 - kappa)) ** 2
    variance = max(a + b - c, 0.0) / (n * (1.0 - pe) ** 2)
    se = math.sqrt(variance)
    return {
        "kappa": round(kappa, 4),
        "se": round(se, 4),
        "ci_low": round(max(kappa - Z95 * se, -1.0), 4),
        "ci_high": round(min(kappa + Z95 * se, 1.0), 4),
        "n": int(n),
        "method": "Fleiss-Cohen-Everitt 1969 SE, Wald 95 % CI (clipped to [-1, 1])",
    }


def _why(result: RuleSetResult) -> pd.DataFrame:
    """Per subject: the explanation lines at the timepoint that gave the best response."""
    if result.best is None or "explanation" not in result.timepoints:
        return pd.DataFrame(columns=["subject_id", "why"])
    tp = result.timepoints[["subject_id", "timepoint", "explanation"]]
    best = result.best[["subject_id", "best_overall_response_timepoint"]].rename(
        columns={"best_overall_response_timepoint": "timepoint"}
    )
    joined = best.merge(tp, on=["subject_id", "timepoint"], how="left")
    output = result.rule_set.schema.best_response.output  # type: ignore[union-attr]
    joined["why"] = [
        f"{t}: " + " | ".join(_deciding(e, output)) if isinstance(e, list) else "no evaluable follow-up"
        for t, e in zip(joined["timepoint"], joined["explanation"], strict=True)
    ]
    if "best_overall_response_note" in result.best:
        notes = result.best.set_index("subject_id")["best_overall_response_note"].reindex(joined["subject_id"])
        joined["why"] = [
            w if pd.isna(n) else f"{w} || best response: {n}"
            for w, n in zip(joined["why"], notes.to_numpy(dtype=object), strict=True)
        ]
    return joined[["subject_id", "why"]]


def _deciding(lines: list[str], output: str) -> list[str]:
    """The explanation lines that decided: the overall line, and any other output with the same verdict
    (e.g. "target PR: sum 59 mm is -38.54% ..." behind "overall PR")."""
    overall = [line for line in lines if line.startswith(output + " ")]
    if not overall:
        return lines
    verdict = overall[0][len(output) + 1 :].split(":")[0].split(" [")[0]
    same = [
        line
        for line in lines
        if not line.startswith(output + " ") and line.split(":")[0].split(" [")[0].endswith(" " + verdict)
    ]
    return same + overall


@with_object_strings
def diff_verdicts(
    prepared: Prepared,
    a: LoadedRuleSet,
    b: LoadedRuleSet,
    params_a: Mapping[str, Any],
    params_b: Mapping[str, Any],
    label_a: str = "A",
    label_b: str = "B",
) -> VerdictDiff:
    """Score the cohort once under each rule set and compare the verdicts."""
    result_a = score(prepared, a, params_a, explain=True)
    result_b = score(prepared, b, params_b, explain=True)
    return compare_results(result_a, result_b, label_a, label_b)


def compare_results(result_a: RuleSetResult, result_b: RuleSetResult, label_a: str, label_b: str) -> VerdictDiff:
    if result_a.best is None or result_b.best is None:
        raise ValueError("both rule sets need a best_response section to compare verdicts")
    scale_a, scale_b = result_a.rule_set.scale, result_b.rule_set.scale
    bor_a = result_a.best[["subject_id", "best_overall_response"]].rename(columns={"best_overall_response": "bor_a"})
    bor_b = result_b.best[["subject_id", "best_overall_response"]].rename(columns={"best_overall_response": "bor_b"})
    subjects = bor_a.merge(bor_b, on="subject_id", how="outer")
    subjects["bor_a"] = subjects["bor_a"].fillna(_no_verdict(result_a))
    subjects["bor_b"] = subjects["bor_b"].fillna(_no_verdict(result_b))
    role_a, role_b = _role_keys(subjects["bor_a"], scale_a), _role_keys(subjects["bor_b"], scale_b)
    subjects["reclassified"] = (role_a != role_b).to_numpy()
    subjects = subjects.merge(_why(result_a).rename(columns={"why": "why_a"}), on="subject_id", how="left")
    subjects = subjects.merge(_why(result_b).rename(columns={"why": "why_b"}), on="subject_id", how="left")
    subjects = subjects.sort_values("subject_id", key=lambda s: s.astype(str), kind="stable").reset_index(drop=True)

    same_scale = _ranked_roles(scale_a) == _ranked_roles(scale_b)
    crosstab = _crosstab(subjects, scale_a, scale_b, same_scale)
    crosstab.index.name, crosstab.columns.name = label_a, label_b
    n = len(subjects)
    agreement: float | None = (
        round(100.0 * float((~subjects["reclassified"]).sum()) / n, 2) if n and same_scale else None
    )
    kappa, note = (
        (cohens_kappa(crosstab), None)
        if same_scale
        else (
            None,
            "kappa omitted: the two criteria sets use different categories "
            f"({', '.join(scale_a.ranking)} vs {', '.join(scale_b.ranking)})",
        )
    )

    tp_a = result_a.timepoints[["subject_id", "timepoint", "day", "overall"]].rename(columns={"overall": "overall_a"})
    tp_b = result_b.timepoints[["subject_id", "timepoint", "overall"]].rename(columns={"overall": "overall_b"})
    timepoints = tp_a.merge(tp_b, on=["subject_id", "timepoint"], how="outer")
    same_verdict = _role_keys(timepoints["overall_a"], scale_a) == _role_keys(timepoints["overall_b"], scale_b)
    tp_agree = round(100.0 * float(same_verdict.mean()), 2) if len(timepoints) and same_scale else None

    orr: dict[str, Any] = {}
    if same_scale and scale_a.responders:
        ra = subjects["bor_a"].map(scale_a.role_of).isin(list(scale_a.responder_roles)).to_numpy()
        rb = subjects["bor_b"].map(scale_b.role_of).isin(list(scale_b.responder_roles)).to_numpy()
        diff = (rb.mean() - ra.mean()) if n else float("nan")
        only_b, only_a = float((rb & ~ra).sum()), float((ra & ~rb).sum())
        se = math.sqrt(max((only_a + only_b) - (only_b - only_a) ** 2 / n, 0.0)) / n if n else float("nan")
        orr = {
            "a_pct": round(100.0 * ra.mean(), 2) if n else None,
            "b_pct": round(100.0 * rb.mean(), 2) if n else None,
            "difference_pct": round(100.0 * diff, 2) if n else None,
            "difference_ci_low_pct": round(100.0 * (diff - Z95 * se), 2) if n else None,
            "difference_ci_high_pct": round(100.0 * (diff + Z95 * se), 2) if n else None,
            "method": "paired difference (B - A), Wald 95 % CI",
        }
    return VerdictDiff(label_a, label_b, subjects, timepoints, crosstab, agreement, kappa, note, orr, tp_agree)


def _ranked_roles(scale: ResponseScale) -> list[str | None]:
    return [scale.role_of(word) for word in scale.ranking]


def _role_keys(words: pd.Series, scale: ResponseScale) -> pd.Series:
    """What a verdict means, for comparing two sets: its role, or the word itself when it has none (missing
    stays missing, so two missing verdicts do not count as agreeing)."""
    return words.map(lambda w: scale.role_of(w) or w)


def _crosstab(subjects: pd.DataFrame, scale_a: ResponseScale, scale_b: ResponseScale, same_scale: bool) -> pd.DataFrame:
    """Best responses of A (rows) against B (columns), each in its set's ranking order. When both sets rank the
    same roles, rows and columns are the same roles in the same order (each labelled with its set's word), so
    the diagonal is agreement."""
    words_a, words_b = subjects["bor_a"].astype(str), subjects["bor_b"].astype(str)
    if not same_scale:
        rows = _in_ranking_order(words_a, scale_a.ranking)
        cols = _in_ranking_order(words_b, scale_b.ranking)
        return pd.crosstab(words_a, words_b).reindex(index=rows, columns=cols, fill_value=0)
    key_a, key_b = _role_keys(words_a, scale_a), _role_keys(words_b, scale_b)
    label_a = dict(zip(key_a, words_a, strict=True))
    label_b = dict(zip(key_b, words_b, strict=True))
    ranked = [scale_a.role_of(w) for w in scale_a.ranking]
    present = set(key_a) | set(key_b)
    others = sorted(present - set(ranked), key=lambda k: str(label_a.get(k, label_b.get(k, k))))
    keys = [k for k in ranked if k in present] + others
    table = pd.crosstab(key_a, key_b).reindex(index=keys, columns=keys, fill_value=0)
    by_role_a = dict(zip(ranked, scale_a.ranking, strict=True))
    by_role_b = dict(zip(_ranked_roles(scale_b), scale_b.ranking, strict=True))
    table.index = [by_role_a.get(k, label_a.get(k, k)) for k in keys]
    table.columns = [by_role_b.get(k, label_b.get(k, k)) for k in keys]
    return table


def _in_ranking_order(words: pd.Series, ranking: tuple[str, ...]) -> list[str]:
    present = set(words)
    return [w for w in ranking if w in present] + sorted(present - set(ranking))


def _no_verdict(result: RuleSetResult) -> str:
    """What a subject missing from one side counts as: not evaluable under a RECIST-style best response."""
    word = result.rule_set.scale.word("not_evaluable")
    return word if _recist_like(result) and word is not None else "none_reported"


def _recist_like(result: RuleSetResult) -> bool:
    spec = result.rule_set.schema.best_response
    return spec is not None and spec.method == "recist"

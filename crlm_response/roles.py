"""What response categories mean: roles, and the one place that maps roles to display.

A criteria set names its response categories in its own words (RECIST `CR`, PERCIST `CMR`, Chun `optimal`,
iRECIST `iCR`) and declares, in its rule file, the *role* of each word. Everything that has to know what a word
means — best overall response, confirmation, responders and clinical benefit, summaries, plots, SDTM and ADaM —
asks for roles, never for words, so a new criteria set is a YAML file and nothing else.

Roles, best first (the default ranking of a best overall response):

==========================  =====================================================================
complete                    complete response (no disease left)
partial                     partial response (enough shrinkage)
minor                       a lesser response that is still a response category (e.g. Chun "incomplete")
stable                      neither response nor progression
non_measurable_stable       non-target disease only, neither CR nor PD (RECIST NON-CR/NON-PD)
unconfirmed_progression     progression awaiting confirmation (iRECIST iUPD)
progression                 progression
not_evaluable               assessment made but not evaluable (NE)
not_done                    assessment not done (ND, admiralonco)
not_applicable              the category does not apply (e.g. no target disease)
missing                     no assessment at all (admiralonco MISSING)
==========================  =====================================================================
"""

from __future__ import annotations

from typing import Any, Literal, get_args

Role = Literal[
    "complete",
    "partial",
    "minor",
    "stable",
    "non_measurable_stable",
    "unconfirmed_progression",
    "progression",
    "not_evaluable",
    "not_done",
    "not_applicable",
    "missing",
]
ROLES: tuple[Role, ...] = get_args(Role)
ROLE_CODE: dict[str, int] = {role: code for code, role in enumerate(ROLES)}

# Roles whose best response needs confirmation when the protocol asks for it (E2009 §4.6).
CONFIRMED_ROLES: frozenset[Role] = frozenset({"complete", "partial"})
# Roles that count towards a best response only after a minimum time on study (E2009 §4.4 "SD").
TIMED_ROLES: frozenset[Role] = frozenset({"stable", "non_measurable_stable", "minor"})
# Roles of an adequate assessment: one that says how the disease is (E2009; FDA 2018 endpoints guidance: PFS is
# censored at the last adequate assessment). Not evaluable, not done, not applicable and missing are not.
ADEQUATE_ROLES: frozenset[Role] = frozenset(
    {"complete", "partial", "minor", "stable", "non_measurable_stable", "unconfirmed_progression", "progression"}
)
DEFAULT_RESPONDER_ROLES: tuple[Role, ...] = ("complete", "partial")
DEFAULT_BENEFIT_ROLES: tuple[Role, ...] = ("complete", "partial", "minor", "stable", "non_measurable_stable")

# Words for the two roles that no criteria paper names: admiralonco's conventions (ADRS AVALC), used when a rule
# set does not name them itself.
DEFAULT_WORDS: dict[Role, str] = {"not_done": "ND", "missing": "MISSING"}

# Display: a colour per role (Okabe-Ito, colour-blind safe; "stable" is a readable amber, not a pale yellow).
ROLE_COLOURS: dict[str, str] = {
    "complete": "#0072B2",
    "partial": "#56B4E9",
    "minor": "#009E73",
    "stable": "#E69F00",
    "non_measurable_stable": "#F0C24B",
    "unconfirmed_progression": "#CC79A7",
    "progression": "#D55E00",
    "not_evaluable": "#999999",
    "not_done": "#BBBBBB",
    "not_applicable": "#DDDDDD",
    "missing": "#EEEEEE",
}
NEUTRAL_COLOUR = "#999999"  # a value without a role (a missing response, a word the set does not declare)
# Report text colours: darker shades of ROLE_COLOURS, readable as text on white (contrast of at least 4.5:1).
ROLE_TEXT_COLOURS: dict[str, str] = {
    "complete": "#005A8C",
    "partial": "#1F6F99",
    "minor": "#00704F",
    "stable": "#8A5A00",
    "non_measurable_stable": "#7A5F00",
    "unconfirmed_progression": "#8E3E73",
    "progression": "#A33F00",
}
ROLE_LABELS: dict[str, str] = {
    "complete": "complete response",
    "partial": "partial response",
    "minor": "minor response",
    "stable": "stable disease",
    "non_measurable_stable": "neither response nor progression (non-target disease only)",
    "unconfirmed_progression": "unconfirmed progression",
    "progression": "progressive disease",
    "not_evaluable": "not evaluable",
    "not_done": "assessment not done",
    "not_applicable": "not applicable",
    "missing": "no assessment",
}
# Terminal styles (rich) per role.
ROLE_STYLES: dict[str, str] = {
    "complete": "bold green",
    "partial": "green",
    "minor": "green",
    "stable": "yellow",
    "non_measurable_stable": "yellow",
    "unconfirmed_progression": "magenta",
    "progression": "bold red",
    "not_evaluable": "dim",
    "not_done": "dim",
    "not_applicable": "dim",
    "missing": "dim",
}


def role_rank(role: str) -> int:
    """Position of a role in the default ranking (0 = best)."""
    return ROLE_CODE[role]


class ResponseScale:
    """One criteria set's best-response words: their roles, their ranking and which count as response and benefit.

    Built from the rule file (`categories:` and `best_response:`); the words are the set's own.
    """

    def __init__(
        self,
        ranking: tuple[str, ...],
        roles: dict[str, Role],
        labels: dict[str, str] | None = None,
        responder_roles: tuple[Role, ...] = DEFAULT_RESPONDER_ROLES,
        benefit_roles: tuple[Role, ...] = DEFAULT_BENEFIT_ROLES,
    ) -> None:
        self.ranking = tuple(ranking)
        self.roles = dict(roles)
        self.labels = dict(labels or {})
        self.responder_roles = frozenset(responder_roles)
        self.benefit_roles = frozenset(benefit_roles)
        self._word_of_role: dict[str, str] = {}
        for word in self.ranking:
            role = self.roles.get(word)
            if role is not None:
                self._word_of_role.setdefault(role, word)
        for role, word in DEFAULT_WORDS.items():
            self._word_of_role.setdefault(role, word)
            self.roles.setdefault(word, role)

    def role_of(self, word: object) -> Role | None:
        return self.roles.get(word) if isinstance(word, str) else None

    def word(self, role: str) -> str | None:
        """The word this set uses for a role (its first in the ranking), or None."""
        return self._word_of_role.get(role)

    def label(self, word: str) -> str:
        """How a word reads in plain language (the rule file's label, else the role's)."""
        if word in self.labels:
            return self.labels[word]
        role = self.role_of(word)
        return ROLE_LABELS.get(role, word) if role is not None else word

    def display(self, word: Any) -> str:
        """How a word shows in tables, legends and charts: the criteria's own word (PR, CMR, optimal), except a
        word spelled as an identifier (`complete_ablation`), which is a code and shows as its label."""
        if word is None:
            return ""
        text = str(word)
        return self.label(text) if "_" in text else text

    def style(self, word: Any) -> str:
        """Terminal (rich) style of a word, by its role."""
        role = self.role_of(word)
        return ROLE_STYLES.get(role, "") if role is not None else ""

    def colour(self, word: Any, default: str = NEUTRAL_COLOUR) -> str:
        """Chart and report colour of a word, by its role."""
        role = self.role_of(word)
        return ROLE_COLOURS.get(role, default) if role is not None else default

    def words_with_roles(self, roles: frozenset[str] | set[str] | tuple[str, ...]) -> list[str]:
        return [w for w in self.ranking if self.roles.get(w) in roles]

    @property
    def responders(self) -> list[str]:
        return self.words_with_roles(self.responder_roles)

    @property
    def benefit(self) -> list[str]:
        return self.words_with_roles(self.benefit_roles)

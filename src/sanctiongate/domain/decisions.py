"""The decision rules of SPEC §4, as pure functions.

Input: the check's subjects, the candidate entries the index found for each (by identifier or
by normalised name; possibly stale or unrelated: matching is decided here, not in the index),
the measure catalogue, the matter category and the time. Output: hits and a decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from .assembled import assembled
from .catalogue import Catalogue
from .identifiers import normalise_name
from .models import (
    AppliedMeasure,
    DecisionValue,
    Hit,
    MatchKind,
    Measure,
    StoredEntry,
    Subject,
)

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")
_RANK: dict[DecisionValue, int] = {"pass": 0, "review": 1, "block": 2}


def today_in_china(now: datetime) -> date:
    """Validity dates are read in China Standard Time, whatever the server's zone."""
    return now.astimezone(CHINA_STANDARD_TIME).date()


def is_active(stored: StoredEntry, on: date) -> bool:
    """effective_from ≤ today < effective_until, and not removed."""
    entry = stored.entry
    if stored.removed or entry is None:
        return False
    if on < entry.effective_from:
        return False
    return entry.effective_until is None or on < entry.effective_until


@dataclass(frozen=True, slots=True)
class Match:
    stored: StoredEntry
    kind: MatchKind
    role: str  # the role the matched party holds in the listing ("subject" for the subject)


def match_subject(
    subject: Subject, candidates: Iterable[StoredEntry], name: str | None = None
) -> list[Match]:
    """How, if at all, each candidate entry matches the subject of a check.

    An identifier match beats a name match on the same entry. A name counts only when the check
    carries no identifier for the subject or the listed party has none (a weak match).
    ``name``: ``normalise_name(subject.name)``, when the caller has folded it already.
    """
    ident = subject.identifier
    if name is None:
        name = normalise_name(subject.name)
    is_person = subject.id_number is not None
    matches: list[Match] = []
    seen: set[str] = set()
    for stored in candidates:
        if stored.entry is None or stored.entry_id in seen:
            continue
        seen.add(stored.entry_id)
        found = _match_entry(stored, ident, name, is_person)
        if found:
            matches.extend(found)
    return matches


def _match_entry(stored: StoredEntry, ident: str | None, name: str, is_person: bool) -> list[Match]:
    entry = stored.entry
    assert entry is not None
    listed = entry.subject
    listed_ident = listed.uscc or listed.id_number
    if ident and listed_ident == ident:
        return [Match(stored, "id", "subject")]
    persons = entry.related_persons
    if persons and is_person and ident:
        by_id = [
            Match(stored, "related_person", person.role)
            for person in persons
            if person.id_number == ident
        ]
        if by_id:
            return _distinct_roles(by_id)
    by_name: list[Match] = []
    if (not ident or not listed_ident) and normalise_name(listed.name) == name:
        by_name.append(Match(stored, "name", "subject"))
    if persons:
        by_name.extend(
            Match(stored, "name", person.role)
            for person in persons
            if (not ident or not person.id_number) and normalise_name(person.name) == name
        )
    return _distinct_roles(by_name) if len(by_name) > 1 else by_name


def _distinct_roles(matches: list[Match]) -> list[Match]:
    seen: set[str] = set()
    out = []
    for m in matches:
        if m.role not in seen:
            seen.add(m.role)
            out.append(m)
    return out


# One AppliedMeasure per catalogue measure, shared by every hit that applies it (hits are
# never changed once built). Keyed by the measure object itself (held here, so its id cannot
# be reused); a new catalogue brings new objects, and the old ones go when the cache is full.
_APPLIED_LIMIT = 4096
_applied: dict[int, tuple[Measure, AppliedMeasure]] = {}


def applied(measure: Measure) -> AppliedMeasure:
    cached = _applied.get(id(measure))
    if cached is not None and cached[0] is measure:
        return cached[1]
    # Assembled, not validated: the measure's fields were validated when it was read.
    result = assembled(
        AppliedMeasure,
        {
            "measure_id": measure.measure_id,
            "title": measure.title,
            "effect": measure.effect,
            "mandatory": measure.mandatory,
            "legal_basis": measure.legal_basis,
            "implementing_departments": list(measure.implementing_departments),
        },
    )
    if len(_applied) >= _APPLIED_LIMIT:
        _applied.clear()
    _applied[id(measure)] = (measure, result)
    return result


def hit_severity(match: Match, measures: Sequence[Measure]) -> DecisionValue:
    """What one hit demands: block only for a firm (id / related person), undisputed match
    with a mandatory block measure; review for any other applicable block or review measure."""
    entry = match.stored.entry
    assert entry is not None
    restrictive = [m for m in measures if m.effect in ("block", "review")]
    if not restrictive:
        return "pass"
    firm = match.kind in ("id", "related_person") and not entry.disputed
    if firm and any(m.effect == "block" and m.mandatory for m in restrictive):
        return "block"
    return "review"


@dataclass(frozen=True, slots=True)
class SubjectAssessment:
    decision: DecisionValue
    hits: list[Hit]
    incentives: list[Measure]
    black_listed: bool


def assess_subject(
    subject: Subject,
    candidates: Sequence[StoredEntry],
    catalogue: Catalogue,
    matter_category: str,
    now: datetime,
    name: str | None = None,
) -> SubjectAssessment:
    """``name``: the subject's name folded (``normalise_name``), when the caller has it: a
    batch folds all its names at once (``normalise_names``), which leaves no fold in the cache
    for the subjects that have candidates."""
    if not candidates:  # most subjects of a check or batch are listed nowhere
        return SubjectAssessment("pass", [], [], False)
    on = today_in_china(now)
    decision: DecisionValue = "pass"
    hits: list[Hit] = []
    incentives: list[Measure] = []
    black = False
    for match in match_subject(subject, candidates, name):
        if not is_active(match.stored, on):
            continue
        entry = match.stored.entry
        assert entry is not None
        measures = catalogue.applicable(entry.list_type, matter_category, match.role)
        severity = hit_severity(match, measures)
        if _RANK[severity] > _RANK[decision]:
            decision = severity
        black = black or entry.polarity == "black"
        if entry.polarity == "red" and match.kind != "name":
            # A name alone is too weak a key to open a green channel.
            incentives.extend(m for m in measures if m.effect == "incentive")
        hits.append(_hit(match, measures))
    return SubjectAssessment(decision, hits, incentives, black)


def _hit(match: Match, measures: Sequence[Measure]) -> Hit:
    stored = match.stored
    entry = stored.entry
    assert entry is not None
    # Assembled, not validated: every field comes from the validated entry or the rules.
    return assembled(
        Hit,
        {
            "entry_id": stored.entry_id,
            "list_type": entry.list_type,
            "polarity": entry.polarity,
            "authority": entry.authority,
            "basis": entry.basis,
            "effective_from": entry.effective_from,
            "effective_until": entry.effective_until,
            "match": match.kind,
            "role": match.role,
            "disputed": entry.disputed,
            "measures": [applied(m) for m in measures],
        },
    )


def strongest(decisions: Iterable[DecisionValue]) -> DecisionValue:
    return max(decisions, key=_RANK.__getitem__, default="pass")


def combined_incentives(assessments: Sequence[SubjectAssessment]) -> list[AppliedMeasure]:
    """Incentives of red entries; none at all when any subject has an active black hit."""
    if any(a.black_listed for a in assessments):
        return []
    seen: dict[str, Measure] = {}
    for a in assessments:
        for m in a.incentives:
            seen.setdefault(m.measure_id, m)
    return [applied(m) for m in seen.values()]

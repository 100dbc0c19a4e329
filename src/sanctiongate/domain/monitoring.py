"""Automatic monitoring (自动监督) as pure functions: when an alert is due, and what it says.

Three alerts of SPEC §3: ``retroactive_hit`` (a subject newly listed black had an approval in
the look-back window), ``approval_despite_block`` (an approval went ahead although its request
was blocked) and ``feedback_overdue`` (a block or review decision without feedback within the
SLA). Alert ids are derived from what the alert is about, so a replayed stream raises the same
id again and consumers can drop the duplicate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from .decisions import CHINA_STANDARD_TIME, is_active
from .identifiers import mask_identifier
from .models import Alert, AlertType, MaskedSubject, StoredEntry, Subject

_ALERT_NAMESPACE = uuid.UUID("6f1c9d4e-1b5a-4c53-9a57-2f8e3c0b7d11")


def alert_id(kind: AlertType, *about: str) -> str:
    return str(uuid.uuid5(_ALERT_NAMESPACE, "\x1f".join((kind, *about))))


@dataclass(frozen=True, slots=True)
class ListedParty:
    """Someone a black listing sanctions: the subject itself or a related person, by identifier."""

    identifier: str
    role: str
    subject: MaskedSubject


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval remembered for look-back comparison."""

    request_id: str
    department: str
    matter_category: str
    approved_at: datetime


def becomes_black(before: StoredEntry | None, after: StoredEntry, on: date) -> bool:
    """True when ``after`` is an active black listing and ``before`` was not one."""
    if after.entry is None or after.entry.polarity != "black" or not is_active(after, on):
        return False
    return not (
        before is not None
        and before.entry is not None
        and before.entry.polarity == "black"
        and is_active(before, on)
    )


def listed_parties(stored: StoredEntry) -> list[ListedParty]:
    """Every identifier the listing sanctions, with the role it holds there."""
    entry = stored.entry
    if entry is None:
        return []
    parties = []
    if entry.subject.identifier:
        parties.append(ListedParty(entry.subject.identifier, "subject", entry.subject.masked()))
    for person in entry.related_persons:
        if person.id_number:
            masked = MaskedSubject(
                kind="natural_person",
                name=person.name,
                role=person.role,
                identifier=mask_identifier(person.id_number),
            )
            parties.append(ListedParty(person.id_number, person.role, masked))
    return parties


def retroactive_hit(
    stored: StoredEntry, party: ListedParty, approval: Approval, raised_at: datetime
) -> Alert:
    entry = stored.entry
    assert entry is not None
    role = "" if party.role == "subject" else f" as {party.role}"
    return Alert(
        alert_id=alert_id(
            "retroactive_hit", stored.entry_id, approval.department, approval.request_id
        ),
        type="retroactive_hit",
        department=approval.department,
        request_id=approval.request_id,
        entry_id=stored.entry_id,
        subject=party.subject,
        detail=(
            f"listed{role} on {entry.list_type} by {entry.authority} ({entry.basis}), "
            f"effective {entry.effective_from.isoformat()}; approved "
            f"{approval.approved_at.astimezone(CHINA_STANDARD_TIME).isoformat()} for "
            f"{approval.matter_category}"
        ),
        raised_at=raised_at,
    )


def approval_despite_block(
    department: str,
    request_id: str,
    subject: Subject | MaskedSubject,
    entry_id: str | None,
    detail: str,
    raised_at: datetime,
) -> Alert:
    masked = subject.masked() if isinstance(subject, Subject) else subject
    return Alert(
        alert_id=alert_id("approval_despite_block", department, request_id),
        type="approval_despite_block",
        department=department,
        request_id=request_id,
        entry_id=entry_id,
        subject=masked,
        detail=detail,
        raised_at=raised_at,
    )


def feedback_overdue(
    department: str,
    request_id: str,
    subject: MaskedSubject,
    decision: str,
    decided_at: datetime,
    sla_seconds: float,
    raised_at: datetime,
) -> Alert:
    return Alert(
        alert_id=alert_id("feedback_overdue", department, request_id),
        type="feedback_overdue",
        department=department,
        request_id=request_id,
        entry_id=None,
        subject=subject,
        detail=(
            f"{decision} decision of {decided_at.isoformat()} has no execution feedback "
            f"after {sla_seconds:g} s"
        ),
        raised_at=raised_at,
    )

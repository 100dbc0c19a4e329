"""Response bodies of the API that are not messages of SPEC §3."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..domain.decisions import is_active, today_in_china
from ..domain.models import AsOf, Feedback, MaskedSubject, RelatedPerson, StoredEntry
from ..index import IndexMeta


class FeedbackAccepted(BaseModel):
    request_id: str
    accepted_at: datetime
    as_of: AsOf | None = Field(description="the index's freshness; null if it can't be read now")


class MaskedRelatedPerson(BaseModel):
    role: str
    name: str
    identifier: str | None


class PublicEntry(BaseModel):
    entry_id: str
    version: int
    status: str = Field(description="active | pending | expired | removed")
    list_type: str | None
    polarity: str | None
    subject: MaskedSubject | None
    related_persons: list[MaskedRelatedPerson]
    authority: str | None
    basis: str | None
    effective_from: date | None
    effective_until: date | None
    disputed: bool
    removal_reason: str | None
    identifier_anomalies: list[str]
    source: str
    event_time: datetime


class SubjectEntries(BaseModel):
    identifier: str = Field(description="as queried; resident ID numbers masked")
    identifier_kind: str
    active: list[PublicEntry]
    past: list[PublicEntry]
    as_of: AsOf


class ListCount(BaseModel):
    polarity: str
    list_type: str
    entries: int


class IndexStatus(BaseModel):
    state: str = Field(description="ready | rebuilding | not_built")
    generation: str | None
    entries: list[ListCount]
    newest_event_time: datetime | None
    lag_seconds: float | None
    rebuild_started_at: datetime | None
    workers: int
    as_of: AsOf

    @classmethod
    def build(cls, meta: IndexMeta, counts: dict[tuple[str, str], int], as_of: AsOf) -> IndexStatus:
        started = meta.fields.get("rebuild_started_at") if meta.state == "rebuilding" else None
        return cls(
            state=meta.state if meta.gen else ("rebuilding" if meta.state else "not_built"),
            generation=meta.gen,
            entries=[
                ListCount(polarity=p, list_type=t, entries=n)
                for (p, t), n in sorted(counts.items())
            ],
            newest_event_time=meta.newest_event_time,
            lag_seconds=as_of.lag_seconds,
            rebuild_started_at=datetime.fromisoformat(started) if started else None,
            workers=len(meta.workers()),
            as_of=as_of,
        )


def _status(stored: StoredEntry, on: date) -> str:
    if stored.removed:
        return "removed"
    if is_active(stored, on):
        return "active"
    entry = stored.entry
    return "pending" if entry is not None and on < entry.effective_from else "expired"


def _person(person: RelatedPerson) -> MaskedRelatedPerson:
    from ..domain.identifiers import mask_identifier

    return MaskedRelatedPerson(
        role=person.role,
        name=person.name,
        identifier=mask_identifier(person.id_number) if person.id_number else None,
    )


def public_entry(stored: StoredEntry, on: date) -> PublicEntry:
    entry = stored.entry
    return PublicEntry(
        entry_id=stored.entry_id,
        version=stored.version,
        status=_status(stored, on),
        list_type=entry.list_type if entry else None,
        polarity=entry.polarity if entry else None,
        subject=entry.subject.masked() if entry else None,
        related_persons=[_person(p) for p in entry.related_persons] if entry else [],
        authority=entry.authority if entry else None,
        basis=entry.basis if entry else None,
        effective_from=entry.effective_from if entry else None,
        effective_until=entry.effective_until if entry else None,
        disputed=entry.disputed if entry else False,
        removal_reason=stored.reason,
        identifier_anomalies=stored.identifier_anomalies,
        source=stored.source,
        event_time=stored.event_time,
    )


def subject_entries(
    identifier: str, kind: str, stored: list[StoredEntry], now: datetime, as_of: AsOf
) -> SubjectEntries:
    on = today_in_china(now)
    entries = [public_entry(s, on) for s in stored]
    return SubjectEntries(
        identifier=identifier,
        identifier_kind=kind,
        active=[e for e in entries if e.status == "active"],
        past=[e for e in entries if e.status != "active"],
        as_of=as_of,
    )


class FeedbackRequest(Feedback):
    """POST /v1/feedback: the topic's shape; ``schema`` may be left out over HTTP."""

    schema_: Literal["feedback/v1"] = Field(default="feedback/v1", alias="schema")

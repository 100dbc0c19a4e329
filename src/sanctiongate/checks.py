"""The check service: subjects + matter → Decision. Shared by the HTTP API and the stream.

It holds no state of its own beyond caches keyed by what Redis says (generation, measures
revision), so any number of API processes and workers can run side by side.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from redis.exceptions import RedisError

from .domain.catalogue import Catalogue
from .domain.decisions import SubjectAssessment, assess_subject, combined_incentives, strongest
from .domain.identifiers import normalise_name
from .domain.models import (
    AsOf,
    BatchCheckResponse,
    BatchResult,
    Decision,
    Matter,
    StoredEntry,
    Subject,
    SubjectResult,
)
from .index import IndexMeta, IndexUnavailable, SanctionIndex
from .index.store import GenerationChanged

WORKER_HEARTBEAT_FRESH_SECONDS = 30.0


class IdentifierNotListed(Exception):
    """A check's identifier fails its check character and is not listed as such (SPEC §2)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field
        self.message = (
            "the identifier fails its check character (a typing slip?) and is not listed as such"
        )


def _unlisted_anomalies(subjects: Sequence[Subject], candidates: list[list[StoredEntry]]) -> None:
    """A code whose check fails is accepted only when exactly that code is listed."""
    for i, (subject, found) in enumerate(zip(subjects, candidates, strict=True)):
        anomalies = subject.identifier_anomalies(f"subjects.{i}")
        if not anomalies:
            continue
        listed = {code for stored in found for code, _ in stored.index_keys()[0]}
        if subject.identifier not in listed:
            raise IdentifierNotListed(anomalies[0])


class Checker:
    def __init__(self, index: SanctionIndex) -> None:
        self.index = index
        self._gen: str | None = None
        self._catalogue: Catalogue = Catalogue()
        self._catalogue_key: tuple[str | None, int] | None = None

    async def catalogue(self, meta: IndexMeta) -> Catalogue:
        key = (meta.gen, meta.measures_rev)
        if key != self._catalogue_key:
            assert meta.gen is not None
            self._catalogue = await self.index.load_catalogue(meta.gen)
            self._catalogue_key = key
        return self._catalogue

    async def lookup(
        self, subjects: Sequence[Subject]
    ) -> tuple[IndexMeta, list[list[StoredEntry]]]:
        """Candidate entries per subject; :class:`IndexUnavailable` when the index can't answer."""
        lookups = [(s.identifier, normalise_name(s.name)) for s in subjects]
        try:
            for _ in range(3):
                if self._gen is None:
                    self._gen = (await self.index.serving_meta()).gen
                assert self._gen is not None
                try:
                    return await self.index.candidates(self._gen, lookups)
                except GenerationChanged:
                    self._gen = None
        except (RedisError, OSError) as exc:
            self._gen = None
            raise IndexUnavailable("redis_unavailable", f"Redis cannot be reached: {exc}") from exc
        except IndexUnavailable:
            self._gen = None
            raise
        raise IndexUnavailable("index_switching", "the index switched generation repeatedly")

    async def assess(
        self, subjects: Sequence[Subject], matter: Matter, now: datetime
    ) -> tuple[IndexMeta, list[SubjectAssessment]]:
        meta, candidates = await self.lookup(subjects)
        _unlisted_anomalies(subjects, candidates)
        try:
            catalogue = await self.catalogue(meta)
        except (RedisError, OSError) as exc:
            raise IndexUnavailable("redis_unavailable", f"Redis cannot be reached: {exc}") from exc
        assessments = [
            assess_subject(subject, found, catalogue, matter.category, now)
            for subject, found in zip(subjects, candidates, strict=True)
        ]
        return meta, assessments

    async def check(
        self,
        subjects: Sequence[Subject],
        matter: Matter,
        department: str,
        request_id: str | None = None,
        now: datetime | None = None,
    ) -> Decision:
        now = now or datetime.now(UTC)
        meta, assessments = await self.assess(subjects, matter, now)
        return Decision(
            request_id=request_id or new_request_id(),
            department=department,
            matter=matter,
            decision=strongest(a.decision for a in assessments),
            incentives=combined_incentives(assessments),
            subjects=[
                SubjectResult(
                    role=s.role,
                    kind=s.kind,
                    name=s.name,
                    identifier=s.masked_identifier,
                    decision=a.decision,
                    hits=a.hits,
                )
                for s, a in zip(subjects, assessments, strict=True)
            ],
            as_of=as_of(meta, now),
            decided_at=now,
        )

    async def batch(
        self,
        subjects: Sequence[Subject],
        matter: Matter,
        department: str,
        request_id: str | None = None,
        now: datetime | None = None,
    ) -> BatchCheckResponse:
        """Bulk comparison: each subject judged on its own (black overrides red per subject)."""
        now = now or datetime.now(UTC)
        meta, assessments = await self.assess(subjects, matter, now)
        return BatchCheckResponse(
            request_id=request_id or new_request_id(),
            department=department,
            matter=matter,
            results=[
                BatchResult(
                    index=i,
                    role=s.role,
                    kind=s.kind,
                    name=s.name,
                    identifier=s.masked_identifier,
                    decision=a.decision,
                    hits=a.hits,
                    incentives=combined_incentives([a]),
                )
                for i, (s, a) in enumerate(zip(subjects, assessments, strict=True))
            ],
            as_of=as_of(meta, now),
            decided_at=now,
        )


def new_request_id() -> str:
    return f"sg-{uuid.uuid4().hex}"


def as_of(meta: IndexMeta, now: datetime) -> AsOf:
    return AsOf(event_time=meta.newest_event_time, lag_seconds=index_lag_seconds(meta, time.time()))


def index_lag_seconds(meta: IndexMeta, now: float) -> float | None:
    """How far behind its topic the index is.

    Each worker reports its own lag with a heartbeat. While a worker is alive the index lag is
    the largest of theirs; with none alive, it is the time since the last heartbeat (the index
    has been unwatched that long). None before any worker ever reported.
    """
    workers = meta.workers()
    if not workers:
        return None
    live = [w for w in workers.values() if now - w.get("ts", 0) <= WORKER_HEARTBEAT_FRESH_SECONDS]
    if live:
        return round(max(float(w.get("lag_seconds", 0.0)) for w in live), 3)
    return round(now - max(w.get("ts", 0) for w in workers.values()), 3)

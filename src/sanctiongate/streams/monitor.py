"""Automatic monitoring (自动监督): feedback, retroactive hits and overdue feedback.

- ``sanction.feedback`` closes what a block/review decision is owed, and counts outcomes;
- every list change that makes a subject black-listed, and every black listing whose
  ``effective_from`` arrives, is compared with the approvals of the look-back window
  (``retroactive_hit``);
- a timer raises ``feedback_overdue`` for decisions past their SLA.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from .. import metrics
from ..domain.decisions import today_in_china
from ..domain.models import Alert, Feedback, StoredEntry
from ..domain.monitoring import becomes_black, feedback_overdue, listed_parties, retroactive_hit
from ..index.ledger import Ledger
from ..index.store import ApplyResult
from ..topics import ORIGIN_HEADER
from .approvals import raise_alerts
from .deadletter import BadMessage, decode
from .runtime import Runtime

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class FeedbackIngest:
    def __init__(self, runtime: Runtime, ledger: Ledger) -> None:
        self.runtime = runtime
        self.ledger = ledger

    async def handle(self, records: Sequence[ConsumerRecord]) -> None:
        letters = []
        received: list[Feedback] = []
        counted: list[bool] = []
        for record in records:
            try:
                feedback = decode(record.value, Feedback, "feedback/v1")
            except BadMessage as bad:
                letters.append(await self.runtime.dead_letter(record, bad.error))
                continue
            received.append(feedback)
            # Feedback posted over HTTP was counted by the API process that took it.
            counted.append((ORIGIN_HEADER, b"api") in (record.headers or ()))
        late = await self.ledger.feedback_received(
            (f.department, f.request_id, f.at) for f in received
        )
        for record, feedback in zip(counted, received, strict=True):
            if not record:
                metrics.feedback_total.labels(outcome=feedback.outcome).inc()
        if late:
            log.info("%d overdue decisions got their feedback", late)
        if letters:
            await asyncio.gather(*letters)


class RetroactiveComparison:
    """Compares newly black-listed subjects with the approvals of the look-back window."""

    def __init__(self, runtime: Runtime, ledger: Ledger, clock: Clock = utc_now) -> None:
        self.runtime = runtime
        self.ledger = ledger
        self.clock = clock

    async def on_applied(self, result: ApplyResult) -> None:
        """Hook of the list-change agent: runs after each applied batch."""
        today = today_in_china(self.clock())
        newly = [a.after for a in result.applied if becomes_black(a.before, a.after, today)]
        await self.compare(newly)

    async def on_activated(self, entries: Sequence[StoredEntry]) -> None:
        """Black listings whose ``effective_from`` arrived (no event marks that moment)."""
        today = today_in_china(self.clock())
        await self.compare([e for e in entries if becomes_black(None, e, today)])

    async def compare(self, listings: Sequence[StoredEntry]) -> None:
        """Alerts for the approvals of the look-back window of everyone ``listings`` name.

        Usually none of them had applied for anything: that costs one ``EXISTS`` round trip and
        no per-listing work beyond collecting identifiers; the approvals are read, and the
        parties built, only when some exist."""
        named = _listed_identifiers(listings)
        if not named or not await self.ledger.any_approvals(named):
            return
        identifiers = sorted(named)
        approvals = await self.ledger.approvals_of(identifiers)
        if not approvals:
            return
        parties = [
            (stored, party)
            for stored in listings
            if not approvals.keys().isdisjoint(_listed_identifiers([stored]))
            for party in listed_parties(stored)
        ]
        now = self.clock()
        alerts: list[Alert] = [
            retroactive_hit(stored, party, approval, now)
            for stored, party in parties
            for approval in approvals.get(party.identifier, [])
        ]
        await raise_alerts(self.runtime, self.ledger, alerts)


def _listed_identifiers(listings: Sequence[StoredEntry]) -> list[str]:
    """Every identifier :func:`listed_parties` names in ``listings``, once, without building the
    parties (one loop: a bulk listing's batch names thousands)."""
    found: set[str] = set()
    add = found.add
    for stored in listings:
        entry = stored.entry
        if entry is None:
            continue
        subject = entry.subject
        identifier = subject.uscc or subject.id_number
        if identifier:
            add(identifier)
        for person in entry.related_persons:
            if person.id_number:
                add(person.id_number)
    return list(found)


class Monitor:
    """The periodic part: overdue feedback and activations. Safe on several workers.

    Entry gauges are read from Redis when /metrics is scraped (:mod:`..metrics`), not here."""

    def __init__(
        self,
        runtime: Runtime,
        ledger: Ledger,
        retroactive: RetroactiveComparison,
        clock: Clock = utc_now,
    ) -> None:
        self.runtime = runtime
        self.ledger = ledger
        self.retroactive = retroactive
        self.clock = clock

    async def tick(self) -> None:
        meta = await self.runtime.index.read_meta()
        if meta.gen is None or not meta.ready:
            return  # a rebuild is under way; the timer comes back
        now = self.clock().timestamp()
        await self._overdue(now)
        claim = await self.runtime.index.due_activations(meta.gen, now)
        if claim.entry_ids:
            found = await self.runtime.index.entries(meta.gen, claim.entry_ids)
            await self.retroactive.on_activated(list(found.values()))
            await self.runtime.index.settle_activations(claim)

    async def _overdue(self, now: float) -> None:
        """Alerts for the decisions past their SLA: claimed (leased), published, then settled,
        so a worker dying in between delays an alert, never loses it."""
        sla = self.ledger.feedback_sla_seconds
        raised_at = datetime.fromtimestamp(now, UTC)
        while (claim := await self.ledger.claim_overdue(now)).members:
            await raise_alerts(
                self.runtime,
                self.ledger,
                [
                    feedback_overdue(
                        c.department,
                        c.request_id,
                        c.subject,
                        c.decision,
                        c.decided_at,
                        sla,
                        raised_at,
                    )
                    for c in claim.items
                ],
            )
            await self.ledger.settle_overdue(claim)
        metrics.feedback_overdue.set(await self.ledger.overdue_count(now))

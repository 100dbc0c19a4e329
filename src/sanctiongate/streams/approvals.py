"""The approval agent: automatic comparison (自动比对) of ``approval.events``.

``submitted`` → a Decision on ``sanction.decisions``, once per request: the first decision of a
request is kept in the ledger and a replayed or duplicated event republishes that same decision.
``approved`` → remembered per subject for the look-back window, and ``approval_despite_block``
when its request was blocked (or, with no decision recorded, when the subject is blocked now).

A whole batch is decided together: one index lookup for all subjects of all events, one ledger
read and one ledger script (first decisions kept, feedback clocks started), each decision
serialised once, and the decisions with their ``audit/v1`` records published as per-partition
record batches (:class:`.outbox.Outbox`). bench/README.md has what that reaches and where the
remaining time goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer, ConsumerRecord

from .. import metrics
from ..audit import record_at
from ..checks import IdentifierNotListed
from ..domain.models import (
    Alert,
    ApprovalEvent,
    Decision,
    MaskedSubject,
    RejectionError,
)
from ..domain.monitoring import Approval, approval_despite_block
from ..heap import collector_paused
from ..index.ledger import Ledger
from .deadletter import DEAD_LETTER_MAX_BYTES, BadMessage, decode, encode
from .outbox import Outbox
from .runtime import Runtime

log = logging.getLogger(__name__)

Decoded = tuple[ConsumerRecord, ApprovalEvent]

# What the decisions topic and the producer take (topics.py), less a record batch's overhead.
DECISION_MAX_BYTES = DEAD_LETTER_MAX_BYTES - 64 * 1024


class ApprovalComparison:
    def __init__(self, runtime: Runtime, ledger: Ledger) -> None:
        self.runtime = runtime
        self.ledger = ledger
        self.settings = runtime.settings

    async def handle(self, records: Sequence[ConsumerRecord]) -> None:
        # No collection while the batch is handled (heap.py: its objects die with it); while
        # what it published waits for the broker, one may run, in time the worker would idle.
        with collector_paused():
            pending = await self._handled(records)
        if pending:
            await asyncio.gather(*pending)

    async def _handled(self, records: Sequence[ConsumerRecord]) -> list[asyncio.Future]:
        """Handle the batch; the futures of what it published (decisions, audit records, dead
        letters), resolved once the broker has them."""
        pending: list[asyncio.Future] = []
        submitted: list[Decoded] = []
        approved: list[Decoded] = []
        for record in records:
            try:
                event = decode(record.value, ApprovalEvent, "approval_event/v1")
            except BadMessage as bad:
                pending.append(await self.runtime.dead_letter(record, bad.error))
                continue
            if event.event_type == "submitted":
                submitted.append((record, event))
            elif event.event_type == "approved":
                approved.append((record, event))
        if submitted:
            pending.extend(await self._decide(submitted))
        if approved:
            pending.extend(await self._compare_approvals(approved))
        return pending

    # --- submitted ---------------------------------------------------------------------------

    async def _decide(self, submitted: list[Decoded]) -> list[asyncio.Future]:
        started = time.perf_counter()
        requests = [(e.department, e.request_id) for _, e in submitted]
        stored = await self.ledger.decision_bodies(requests)
        fresh = [item for item, body in zip(submitted, stored, strict=True) if body is None]
        pending: list[asyncio.Future] = []
        decided: list[Decision] = []
        bodies: list[bytes] = []  # serialised once: the same bytes are kept and published
        for (record, _), outcome in zip(fresh, await self._assess(fresh), strict=True):
            body = b"" if isinstance(outcome, RejectionError) else encode(outcome)
            if len(body) > DECISION_MAX_BYTES:
                outcome = _too_large(len(body))
            if isinstance(outcome, RejectionError):
                pending.append(await self.runtime.dead_letter(record, outcome))
            else:
                decided.append(outcome)
                bodies.append(body)
        held = await self.ledger.keep_first(decided, bodies)
        elapsed = time.perf_counter() - started
        body_of = {r: body for r, body in zip(requests, stored, strict=True) if body is not None}
        first: dict[tuple[str, str], Decision] = {}
        for decision, body, other in zip(decided, bodies, held, strict=True):
            request = (decision.department, decision.request_id)
            if other is None:  # kept now: this is the request's decision
                first[request] = decision
                body_of[request] = body
            else:  # decided before (a replay) or earlier in this batch: that one holds
                body_of.setdefault(request, other)
        outbox = Outbox(self._producer())
        stamp = datetime.now(UTC).isoformat()  # the audit records' time, one for the batch
        published: set[tuple[str, str]] = set()
        for request in requests:
            body = body_of.get(request)
            if body is None or request in published:
                continue  # rejected, or a duplicate inside this batch
            published.add(request)
            await outbox.add(self.settings.topic_decisions, request[1].encode(), body)
            if (decision := first.get(request)) is not None:
                await outbox.add(self.settings.topic_audit, *_audit_message(decision, stamp))
        self._count(first.values(), elapsed)
        pending.extend(await outbox.send())
        return pending

    def _producer(self) -> AIOKafkaProducer:
        assert self.runtime.producer is not None, "Runtime.start() first"
        return self.runtime.producer

    async def _assess(self, events: list[Decoded]) -> list[Decision | RejectionError]:
        """Decide every event with one index lookup; a typing-slip identifier is rejected."""
        decided = await self.runtime.checker.decide_many(
            [event for _, event in events], datetime.now(UTC)
        )
        return [
            RejectionError(code="identifier_check_failed", message=d.message, path=d.field)
            if isinstance(d, IdentifierNotListed)
            else d
            for d in decided
        ]

    def _count(self, decisions: Iterable[Decision], elapsed: float) -> None:
        """Counted per batch: one labels() per label set, not per decision."""
        by_labels = Counter((d.decision, d.matter.category) for d in decisions)
        for (decision, category), count in by_labels.items():
            metrics.check_count("stream", decision, category).inc(count)
        metrics.observe_many(metrics.check_duration("stream"), elapsed, by_labels.total())

    # --- approved ----------------------------------------------------------------------------

    async def _compare_approvals(self, approved: list[Decoded]) -> list[asyncio.Future]:
        events = [e for _, e in approved]
        await self.ledger.record_approvals(
            (s.identifier, Approval(e.request_id, e.department, e.matter.category, e.occurred_at))
            for e in events
            for s in e.subjects
            if s.identifier
        )
        known = await self.ledger.decisions([(e.department, e.request_id) for e in events])
        unchecked = [item for item, held in zip(approved, known, strict=True) if held is None]
        started = time.perf_counter()
        outcomes = await self._assess(unchecked)
        checked_now = iter(outcomes)
        pending = await self._audit_checks_at_approval(
            [o for o in outcomes if isinstance(o, Decision)], time.perf_counter() - started
        )
        alerts: list[Alert] = []
        for event, held in zip(events, known, strict=True):
            if held is not None:
                alert = _despite_block(event, held, "its pre-approval check")
            else:
                outcome = next(checked_now)
                alert = (
                    _despite_block(
                        event,
                        outcome,
                        "a check at approval time (no pre-approval check was recorded)",
                    )
                    if isinstance(outcome, Decision)
                    else None
                )
            if alert is not None:
                alerts.append(alert)
        await raise_alerts(self.runtime, self.ledger, alerts)
        return pending

    async def _audit_checks_at_approval(
        self, decided: list[Decision], elapsed: float
    ) -> list[asyncio.Future]:
        """A check made at approval time is a check (SPEC §5): audited and counted like one.
        Its decision is not published (no ``submitted`` event asked for it)."""
        if not decided:
            return []
        outbox = Outbox(self._producer())
        stamp = datetime.now(UTC).isoformat()
        for decision in decided:
            await outbox.add(self.settings.topic_audit, *_audit_message(decision, stamp))
        self._count(decided, elapsed)
        return await outbox.send()


def _audit_message(decision: Decision, stamp: str) -> tuple[bytes, bytes]:
    """Key and value of the ``audit/v1`` record of a check the stream made (keyed by its
    department); ``stamp``: its time, written."""
    record = record_at("stream", decision.department, None, decision, stamp)
    return decision.department.encode(), orjson.dumps(record)


def _too_large(size: int) -> RejectionError:
    """An event whose decision no topic would take: refused, rather than retried for ever with
    every event behind it waiting (SPEC §6). Not kept either: a later ``approved`` event is
    checked at approval time, which publishes nothing."""
    return RejectionError(
        code="decision_too_large",
        message=f"its decision takes {size} bytes, over the {DECISION_MAX_BYTES} a message may",
        path="subjects",
    )


def _despite_block(event: ApprovalEvent, decision: Decision, source: str) -> Alert | None:
    if decision.decision != "block":
        return None
    blocked = next(s for s in decision.subjects if s.decision == "block")
    hit = next((h for h in blocked.hits if h.match != "name"), blocked.hits[0])
    return approval_despite_block(
        department=event.department,
        request_id=event.request_id,
        subject=MaskedSubject(
            kind=blocked.kind, name=blocked.name, role=blocked.role, identifier=blocked.identifier
        ),
        entry_id=hit.entry_id,
        detail=(
            f"approved {event.occurred_at.isoformat()} for {event.matter.category} although "
            f"{source} decided block ({hit.list_type}, {hit.basis})"
        ),
        raised_at=datetime.now(UTC),
    )


async def raise_alerts(runtime: Runtime, ledger: Ledger, alerts: Sequence[Alert]) -> None:
    """Publish the alerts not raised before; mark them raised once the broker has them."""
    if not alerts:
        return
    seen = await ledger.raised([a.alert_id for a in alerts])
    fresh = [a for a, before in zip(alerts, seen, strict=True) if not before]
    fresh = list({a.alert_id: a for a in fresh}.values())
    sends = [await runtime.publish(runtime.settings.topic_alerts, a.department, a) for a in fresh]
    if sends:
        await asyncio.gather(*sends)
    await ledger.mark_raised([a.alert_id for a in fresh])
    for alert in fresh:
        metrics.alerts_total.labels(type=alert.type).inc()
        log.info("alert %s %s for %s", alert.type, alert.alert_id, alert.department)

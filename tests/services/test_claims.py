"""Timer work is leased, not taken: a monitor that dies between claiming overdue feedback (or a
starting listing) and publishing its alert delays that alert by a lease, never loses it.

Real Redis and broker; the "dying" monitor is one whose publishing fails after its claim, the
point where a kill -9 would leave the work claimed and unannounced.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from sanctiongate.domain.decisions import CHINA_STANDARD_TIME, today_in_china
from sanctiongate.domain.models import ListChange
from sanctiongate.domain.monitoring import Approval
from sanctiongate.index.ledger import CLAIM_LEASE_SECONDS, Ledger
from sanctiongate.index.store import new_generation
from sanctiongate.settings import Settings
from sanctiongate.streams.monitor import Monitor, RetroactiveComparison
from sanctiongate.streams.runtime import Runtime
from sanctiongate.topics import ensure_topics
from tests.conftest import Services
from tests.ids import uscc

from .conftest import list_change
from .test_activation import alerts_on
from .test_approvals import decision

pytestmark = pytest.mark.services

SLA_SECONDS = 60


class WorkerDied(Exception):
    pass


@pytest_asyncio.fixture
async def runtime(services: Services) -> AsyncIterator[Runtime]:
    ns = uuid.uuid4().hex[:8]
    settings = Settings(
        _env_file=None,
        kafka_bootstrap=services.kafka,
        redis_url=services.redis_url,
        index_prefix=f"claim{ns}",
        topic_alerts=f"c{ns}.sanction.alerts",
        topic_rejected=f"c{ns}.sanction.rejected",
        topic_decisions=f"c{ns}.sanction.decisions",
    )
    await ensure_topics(settings)
    started = Runtime.create(settings)
    await started.start()
    try:
        await started.index.switch_generation(new_generation(), {})
        yield started
    finally:
        await started.stop()


def ledger_of(runtime: Runtime) -> Ledger:
    return Ledger(
        runtime.redis,
        runtime.index.layout,
        lookback_seconds=365 * 86400,
        feedback_sla_seconds=SLA_SECONDS,
        decision_ttl_seconds=7 * 86400,
    )


def monitor_at(runtime: Runtime, ledger: Ledger, at: datetime) -> Monitor:
    def clock() -> datetime:
        return at

    return Monitor(runtime, ledger, RetroactiveComparison(runtime, ledger, clock), clock)


def dying(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, publishing fails: the monitor dies holding what it claimed."""

    async def publish(*_: Any, **__: Any) -> None:
        raise WorkerDied

    monkeypatch.setattr(runtime, "publish", publish)


async def test_overdue_feedback_claimed_by_a_dying_monitor_is_alerted_after_the_lease(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = ledger_of(runtime)
    blocked = decision(f"req-{uuid.uuid4().hex[:6]}", "block")
    await ledger.record_decisions([blocked])
    overdue_at = blocked.decided_at + timedelta(seconds=SLA_SECONDS + 1)

    with monkeypatch.context() as patched:
        dying(runtime, patched)
        with pytest.raises(WorkerDied):
            await monitor_at(runtime, ledger, overdue_at).tick()
    # Within the lease nobody else takes it (no duplicate work while the first may still live).
    await monitor_at(runtime, ledger, overdue_at + timedelta(seconds=1)).tick()
    assert not await alerts_on(runtime.settings)
    assert await ledger.overdue_count(overdue_at.timestamp()) == 0

    after_lease = overdue_at + timedelta(seconds=CLAIM_LEASE_SECONDS + 1)
    survivor = monitor_at(runtime, ledger, after_lease)
    await survivor.tick()
    await survivor.tick()  # settled: not raised again
    await asyncio.sleep(0.2)
    [alert] = await alerts_on(runtime.settings)
    assert alert["type"] == "feedback_overdue" and alert["request_id"] == blocked.request_id
    assert await ledger.overdue_count(after_lease.timestamp()) == 1


async def test_feedback_arriving_during_the_lease_is_not_counted_overdue(
    runtime: Runtime,
) -> None:
    ledger = ledger_of(runtime)
    reviewed = decision(f"req-{uuid.uuid4().hex[:6]}", "review")
    await ledger.record_decisions([reviewed])
    now = (reviewed.decided_at + timedelta(seconds=SLA_SECONDS + 1)).timestamp()

    claim = await ledger.claim_overdue(now)
    assert [item.request_id for item in claim.items] == [reviewed.request_id]
    late = await ledger.feedback_received(
        [(reviewed.department, reviewed.request_id, datetime.now(UTC))]
    )
    assert late == 0  # not overdue yet when it came: the claim had not been settled
    assert await ledger.settle_overdue(claim) == 0
    assert await ledger.overdue_count(now) == 0
    assert not (await ledger.claim_overdue(now + CLAIM_LEASE_SECONDS + 1)).members


async def test_a_later_claim_takes_over_an_expired_lease(runtime: Runtime) -> None:
    ledger = ledger_of(runtime)
    blocked = decision(f"req-{uuid.uuid4().hex[:6]}", "block")
    await ledger.record_decisions([blocked])
    now = (blocked.decided_at + timedelta(seconds=SLA_SECONDS + 1)).timestamp()

    slow = await ledger.claim_overdue(now)
    fast = await ledger.claim_overdue(now + CLAIM_LEASE_SECONDS + 1)
    assert slow.members == fast.members == [f"{blocked.department}\x1f{blocked.request_id}"]
    assert await ledger.settle_overdue(slow) == 0  # its lease was taken over
    assert await ledger.settle_overdue(fast) == 1
    assert await ledger.overdue_count(now + CLAIM_LEASE_SECONDS + 1) == 1


async def test_a_starting_listing_claimed_by_a_dying_monitor_is_compared_after_the_lease(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = ledger_of(runtime)
    code = uscc()
    approved_at = datetime.now(UTC) - timedelta(days=30)
    await ledger.record_approvals(
        [(code, Approval("req-claim-act", "fj-land", "land_transfer", approved_at))]
    )
    tomorrow = today_in_china(datetime.now(UTC)) + timedelta(days=1)
    starts = datetime.combine(tomorrow, datetime.min.time(), CHINA_STANDARD_TIME)
    subject = {"kind": "legal_person", "name": "示例建设有限公司", "uscc": code}
    listing = ListChange.model_validate(
        list_change(
            f"claim-act-{uuid.uuid4().hex[:6]}",
            1,
            subject=subject,
            effective_from=tomorrow.isoformat(),
        )
    )
    meta = await runtime.index.read_meta()
    assert meta.gen is not None
    await runtime.index.apply_changes(meta.gen, [listing])

    started = starts + timedelta(seconds=1)
    with monkeypatch.context() as patched:
        dying(runtime, patched)
        with pytest.raises(WorkerDied):
            await monitor_at(runtime, ledger, started).tick()
    await monitor_at(runtime, ledger, started + timedelta(seconds=1)).tick()
    assert not await alerts_on(runtime.settings)

    survivor = monitor_at(runtime, ledger, started + timedelta(seconds=CLAIM_LEASE_SECONDS + 1))
    await survivor.tick()
    await survivor.tick()  # settled: compared once
    await asyncio.sleep(0.2)
    [alert] = await alerts_on(runtime.settings)
    assert alert["type"] == "retroactive_hit" and alert["entry_id"] == listing.entry_id
    assert alert["request_id"] == "req-claim-act"

"""Timer work is leased, not taken: a monitor that dies between claiming overdue feedback (or a
starting listing) and publishing its alert delays that alert by a lease, never loses it.

Real Redis and broker; the "dying" monitor is one whose publishing fails after its claim, the
point where a kill -9 would leave the work claimed and unannounced.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sanctiongate.index.lease import CLAIM_LEASE_SECONDS
from sanctiongate.index.ledger import Ledger
from sanctiongate.streams.monitor import Monitor, RetroactiveComparison
from sanctiongate.streams.runtime import Runtime

from .conftest import ledger_of
from .test_activation import alerts_on, listed_from_tomorrow
from .test_approvals import decision

pytestmark = pytest.mark.services

SLA_SECONDS = 60


class WorkerDied(Exception):
    pass


def monitor_at(runtime: Runtime, ledger: Ledger, at: datetime) -> Monitor:
    def clock() -> datetime:
        return at

    return Monitor(runtime, ledger, RetroactiveComparison(runtime, ledger, clock), clock)


def dying(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, publishing fails: the monitor dies holding what it claimed."""

    async def publish(*_: Any, **__: Any) -> None:
        raise WorkerDied

    monkeypatch.setattr(runtime, "publish", publish)


async def died_then_survived(
    runtime: Runtime, ledger: Ledger, due_at: datetime, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """A monitor ticks at ``due_at`` and dies publishing; another ticks within the lease (and
    must leave the claim alone), then twice after it: the one alert raised."""
    with monkeypatch.context() as patched:
        dying(runtime, patched)
        with pytest.raises(WorkerDied):
            await monitor_at(runtime, ledger, due_at).tick()
    await monitor_at(runtime, ledger, due_at + timedelta(seconds=1)).tick()
    assert not await alerts_on(runtime.settings)
    assert await ledger.overdue_count(due_at.timestamp()) == 0

    survivor = monitor_at(runtime, ledger, due_at + timedelta(seconds=CLAIM_LEASE_SECONDS + 1))
    await survivor.tick()
    await survivor.tick()  # settled: raised once
    await asyncio.sleep(0.2)
    [alert] = await alerts_on(runtime.settings)
    return alert


async def test_overdue_feedback_claimed_by_a_dying_monitor_is_alerted_after_the_lease(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = ledger_of(runtime, SLA_SECONDS)
    blocked = decision(f"req-{uuid.uuid4().hex[:6]}", "block")
    await ledger.record_decisions([blocked])
    overdue_at = blocked.decided_at + timedelta(seconds=SLA_SECONDS + 1)

    alert = await died_then_survived(runtime, ledger, overdue_at, monkeypatch)
    assert alert["type"] == "feedback_overdue" and alert["request_id"] == blocked.request_id
    assert await ledger.overdue_count(overdue_at.timestamp() + CLAIM_LEASE_SECONDS + 1) == 1


async def test_feedback_arriving_during_the_lease_is_not_counted_overdue(
    runtime: Runtime,
) -> None:
    ledger = ledger_of(runtime, SLA_SECONDS)
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
    ledger = ledger_of(runtime, SLA_SECONDS)
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
    ledger = ledger_of(runtime, SLA_SECONDS)
    listing, _, starts = await listed_from_tomorrow(runtime, ledger, "req-claim-act")
    alert = await died_then_survived(runtime, ledger, starts + timedelta(seconds=1), monkeypatch)
    assert alert["type"] == "retroactive_hit" and alert["entry_id"] == listing.entry_id
    assert alert["request_id"] == "req-claim-act"

"""A black listing whose ``effective_from`` arrives raises ``retroactive_hit`` with no event.

The monitor runs against the real Redis and broker with its clock set to the day the listing
starts, since the test cannot wait for midnight in China Standard Time.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from sanctiongate.domain.decisions import CHINA_STANDARD_TIME, today_in_china
from sanctiongate.domain.models import ListChange
from sanctiongate.domain.monitoring import Approval
from sanctiongate.index.ledger import Ledger
from sanctiongate.index.store import ApplyResult
from sanctiongate.settings import Settings
from sanctiongate.streams.monitor import Monitor, RetroactiveComparison
from sanctiongate.streams.runtime import Runtime
from tests.ids import uscc

from .conftest import ledger_of, list_change

pytestmark = pytest.mark.services


def upsert(entry_id: str, code: str, effective_from: str) -> ListChange:
    subject = {"kind": "legal_person", "name": "示例建设有限公司", "uscc": code}
    return ListChange.model_validate(
        list_change(entry_id, 1, subject=subject, effective_from=effective_from)
    )


async def alerts_on(settings: Settings) -> list[dict]:
    consumer = AIOKafkaConsumer(
        settings.topic_alerts,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=3000)
        return [orjson.loads(r.value) for records in batches.values() for r in records]
    finally:
        await consumer.stop()


async def listed_from_tomorrow(
    runtime: Runtime, ledger: Ledger, request_id: str
) -> tuple[ListChange, ApplyResult, datetime]:
    """A subject approved 30 days ago (``request_id``) and a black listing of it that starts
    tomorrow in China, applied: the listing, the apply result, the moment it starts."""
    code = uscc()
    approved_at = datetime.now(UTC) - timedelta(days=30)
    await ledger.record_approvals(
        [(code, Approval(request_id, "fj-land", "land_transfer", approved_at))]
    )
    tomorrow = today_in_china(datetime.now(UTC)) + timedelta(days=1)
    starts = datetime.combine(tomorrow, datetime.min.time(), CHINA_STANDARD_TIME)
    listing = upsert(f"act-{uuid.uuid4().hex[:8]}", code, tomorrow.isoformat())
    meta = await runtime.index.read_meta()
    assert meta.gen is not None
    return listing, await runtime.index.apply_changes(meta.gen, [listing]), starts


async def test_listing_starting_later_alerts_when_it_starts(runtime: Runtime) -> None:
    settings = runtime.settings
    ledger = ledger_of(runtime)
    listing, result, starts = await listed_from_tomorrow(runtime, ledger, "req-act-1")
    await RetroactiveComparison(runtime, ledger).on_applied(result)  # not active today: nothing

    def just_before() -> datetime:
        return starts - timedelta(seconds=1)

    def just_after() -> datetime:
        return starts + timedelta(seconds=1)

    early = Monitor(
        runtime, ledger, RetroactiveComparison(runtime, ledger, just_before), just_before
    )
    await early.tick()
    assert not await alerts_on(settings)

    monitor = Monitor(
        runtime, ledger, RetroactiveComparison(runtime, ledger, just_after), just_after
    )
    await monitor.tick()
    await monitor.tick()  # the activation is consumed: no second alert
    await asyncio.sleep(0.2)
    [alert] = await alerts_on(settings)
    assert alert["type"] == "retroactive_hit" and alert["entry_id"] == listing.entry_id
    assert alert["request_id"] == "req-act-1" and alert["department"] == "fj-land"
    assert listing.entry is not None
    assert alert["subject"]["identifier"] == listing.entry.subject.uscc

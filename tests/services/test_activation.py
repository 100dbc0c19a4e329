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
from sanctiongate.index.store import new_generation
from sanctiongate.settings import Settings
from sanctiongate.streams.monitor import Monitor, RetroactiveComparison
from sanctiongate.streams.runtime import Runtime
from sanctiongate.topics import ensure_topics
from tests.conftest import Services
from tests.ids import uscc

from .conftest import list_change

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


async def test_listing_starting_later_alerts_when_it_starts(services: Services) -> None:
    ns = uuid.uuid4().hex[:8]
    settings = Settings(
        _env_file=None,
        kafka_bootstrap=services.kafka,
        redis_url=services.redis_url,
        index_prefix=f"act{ns}",
        topic_alerts=f"t{ns}.sanction.alerts",
        topic_rejected=f"t{ns}.sanction.rejected",
        topic_decisions=f"t{ns}.sanction.decisions",
    )
    await ensure_topics(settings)
    runtime = Runtime.create(settings)
    await runtime.start()
    try:
        gen = new_generation()
        await runtime.index.switch_generation(gen, {})
        ledger = Ledger(
            runtime.redis,
            runtime.index.layout,
            lookback_seconds=365 * 86400,
            feedback_sla_seconds=86400,
            decision_ttl_seconds=86400,
        )
        code = uscc()
        approved_at = datetime.now(UTC) - timedelta(days=30)
        await ledger.record_approvals(
            [(code, Approval("req-act-1", "fj-land", "land_transfer", approved_at))]
        )
        tomorrow = today_in_china(datetime.now(UTC)) + timedelta(days=1)
        starts = datetime.combine(tomorrow, datetime.min.time(), CHINA_STANDARD_TIME)

        today_view = RetroactiveComparison(runtime, ledger)
        result = await runtime.index.apply_changes(
            gen, [upsert(f"act-{ns}", code, tomorrow.isoformat())]
        )
        await today_view.on_applied(result)  # not active today: nothing yet

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
        assert alert["type"] == "retroactive_hit" and alert["entry_id"] == f"act-{ns}"
        assert alert["request_id"] == "req-act-1" and alert["department"] == "fj-land"
        assert alert["subject"]["identifier"] == code
    finally:
        await runtime.stop()

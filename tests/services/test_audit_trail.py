"""The API's audit trail on the real broker: a record the broker refuses for its size is
dropped and counted, and the records after it still go (SPEC §5: every check is audited)."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sanctiongate.api.audit import AuditTrail, audit_dropped_total
from tests.conftest import Services

pytestmark = pytest.mark.services

TOPIC_LIMIT = 20_000  # bytes: the topic's max.message.bytes, below the producer's batch size


async def small_topic(services: Services) -> str:
    topic = f"t{uuid.uuid4().hex[:8]}.audit"
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
    await admin.start()
    try:
        configs = {"max.message.bytes": str(TOPIC_LIMIT)}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()
    return topic


def record(request_id: str, size: int) -> dict:
    return {"department": "d", "request_id": request_id, "padding": "x" * size}


async def test_a_record_too_large_for_the_broker_is_dropped_and_the_rest_still_go(
    services: Services,
) -> None:
    topic = await small_topic(services)
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka, max_batch_size=512 * 1024)
    await producer.start()
    trail = AuditTrail(producer, topic)

    async def connected() -> bool:
        return True

    dropped_before = audit_dropped_total._value.get()
    trail.start(connected)
    try:
        # Small records, one too large alone, then small ones that share a batch over the limit.
        sizes = [("a", 100), ("huge", 50_000), *((f"s{i}", 3_000) for i in range(10))]
        for one in [record(name, size) for name, size in sizes]:
            trail._queue([one], one["request_id"])
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=services.kafka, auto_offset_reset="earliest"
        )
        await consumer.start()
        seen: list[str] = []
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while len(seen) < 11 and asyncio.get_running_loop().time() < deadline:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    seen.extend(orjson.loads(m.value)["request_id"] for m in batch)
        finally:
            await consumer.stop()
    finally:
        await trail.stop()
        await producer.stop()
    assert seen == ["a", *(f"s{i}" for i in range(10))]
    assert audit_dropped_total._value.get() == dropped_before + 1

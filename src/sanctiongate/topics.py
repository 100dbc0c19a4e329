"""Creates the topics of SPEC §3 with the right cleanup policy (idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from .settings import Settings
from .streams.deadletter import DEAD_LETTER_MAX_BYTES

log = logging.getLogger(__name__)

# Kafka header naming the sanctiongate process that produced a record (e.g. HTTP feedback).
ORIGIN_HEADER = "sg-origin"


def topic_specs(settings: Settings) -> list[NewTopic]:
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    p = settings.topic_partitions

    def topic(name: str, configs: dict[str, str] | None = None) -> NewTopic:
        return NewTopic(name, num_partitions=p, replication_factor=1, topic_configs=configs or {})

    # A dead letter echoes a whole message in base64: a third larger than what arrived. A
    # decision of an approval event's 1,000 listed subjects, each hit with its measures and
    # legal basis, takes ~1.6 MB: over the broker's default 1 MB.
    large = {"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)}
    return [
        topic(settings.topic_list_changes, compacted),
        topic(settings.topic_measures, compacted),
        topic(settings.topic_approvals),
        topic(settings.topic_decisions, large),
        topic(settings.topic_feedback),
        topic(settings.topic_alerts),
        topic(settings.topic_rejected, large),
        topic(settings.topic_audit, large),
    ]


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await admin.start()
            break
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topic_specs(settings) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()

"""``sanctiongate topics`` on the real broker: creates what is missing, and brings an older
topic's ``max.message.bytes`` up to the contract's 4 MiB without touching its other settings
(a decision over 1 MB on a 1 MB topic would wait at the head of its partition for good)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from sanctiongate.settings import Settings
from sanctiongate.streams.deadletter import DEAD_LETTER_MAX_BYTES
from sanctiongate.topics import ensure_topics, topic_specs
from tests.conftest import Services, eventually

pytestmark = pytest.mark.services

OLD_LIMIT = "1048588"  # the broker's default, which topics of versions before 4 MiB kept


def _settings(services: Services) -> Settings:
    ns = uuid.uuid4().hex[:8]
    names = ("list_changes", "measures", "approvals", "decisions", "feedback", "alerts")
    return Settings(
        _env_file=None,
        kafka_bootstrap=services.kafka,
        **{f"topic_{name}": f"tt{ns}.{name}" for name in (*names, "rejected", "audit")},
    )


async def _own_settings(admin: AIOKafkaAdminClient, name: str) -> dict[str, str]:
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    [resource] = response.to_object()["resources"]
    return {
        e["config_names"]: e["config_value"]
        for e in resource["config_entries"]
        if e["config_source"] == 1  # the topic's own, not the broker's default
    }


async def _listed(admin: AIOKafkaAdminClient, names: set[str]) -> bool:
    return names <= set(await admin.list_topics())


async def _once_raised(admin: AIOKafkaAdminClient, name: str) -> dict[str, str] | None:
    own = await _own_settings(admin, name)
    return own if own.get("max.message.bytes") == str(DEAD_LETTER_MAX_BYTES) else None


async def test_an_older_topic_gets_the_limit_and_keeps_its_other_settings(
    services: Services,
) -> None:
    settings = _settings(services)
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
    await admin.start()
    try:
        # As a version before 4 MiB made them: decisions at the old limit with a retention an
        # operator set; audit allowed more than we need, by hand.
        await admin.create_topics(
            [
                NewTopic(
                    settings.topic_decisions,
                    1,
                    1,
                    topic_configs={"max.message.bytes": OLD_LIMIT, "retention.ms": "86400000"},
                ),
                NewTopic(
                    settings.topic_audit, 1, 1, topic_configs={"max.message.bytes": "8388608"}
                ),
            ]
        )
        old = {settings.topic_decisions, settings.topic_audit}
        await eventually(lambda: _listed(admin, old), timeout=10)
        changes = await ensure_topics(settings)

        assert changes.raised == {settings.topic_decisions: str(DEAD_LETTER_MAX_BYTES)}
        expected = {t.name for t in topic_specs(settings)} - {
            settings.topic_decisions,
            settings.topic_audit,
        }
        assert set(changes.created) == expected
        # The broker applies a change of settings a moment after it answers.
        decisions = await eventually(lambda: _once_raised(admin, settings.topic_decisions))
        assert decisions["retention.ms"] == "86400000"
        audit = await _own_settings(admin, settings.topic_audit)
        assert audit["max.message.bytes"] == "8388608"  # never lowered
        assert await eventually(lambda: _once_raised(admin, settings.topic_rejected))

        again = await ensure_topics(settings)
        assert again.created == [] and again.raised == {}
        assert again.summary() == ""
    finally:
        await admin.delete_topics([t.name for t in topic_specs(settings)])
        await admin.close()

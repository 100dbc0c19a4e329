"""Creates the topics of SPEC §3 with the right cleanup policy (idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from .settings import Settings
from .streams.deadletter import DEAD_LETTER_MAX_BYTES

log = logging.getLogger(__name__)

# Kafka header naming the sanctiongate process that produced a record (e.g. HTTP feedback).
ORIGIN_HEADER = "sg-origin"

_LIMIT = "max.message.bytes"
_TOPIC_SOURCE = 1  # DescribeConfigs: a setting of the topic's own (DYNAMIC_TOPIC_CONFIG)


@dataclass(slots=True)
class TopicChanges:
    """What :func:`ensure_topics` did: topics created, and limits raised (topic → bytes)."""

    created: list[str] = field(default_factory=list)
    raised: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = []
        if self.created:
            parts.append(f"created: {', '.join(self.created)}")
        if self.raised:
            parts.append(
                "max.message.bytes raised: "
                + ", ".join(f"{name} to {limit}" for name, limit in self.raised.items())
            )
        return "; ".join(parts)


def topic_specs(settings: Settings) -> list[NewTopic]:
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    p = settings.topic_partitions

    def topic(name: str, configs: dict[str, str] | None = None) -> NewTopic:
        return NewTopic(name, num_partitions=p, replication_factor=1, topic_configs=configs or {})

    # A dead letter echoes a whole message in base64: a third larger than what arrived. A
    # decision of an approval event's 1,000 listed subjects, each hit with its measures and
    # legal basis, takes ~1.6 MB: over the broker's default 1 MB.
    large = {_LIMIT: str(DEAD_LETTER_MAX_BYTES)}
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


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> TopicChanges:
    """Create missing topics, and raise ``max.message.bytes`` on existing ones made with less
    (by a version before 4 MiB, or by hand): a message between the two would otherwise wait at
    the head of its partition for good. Idempotent; what it did is returned."""
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
        specs = topic_specs(settings)
        existing = set(await admin.list_topics())
        missing = [t for t in specs if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                await admin.create_topics(missing)
        raised = await _raise_message_limits(admin, [t for t in specs if t.name in existing])
        return TopicChanges([t.name for t in missing], raised)
    finally:
        await admin.close()


async def _raise_message_limits(
    admin: AIOKafkaAdminClient, topics: list[NewTopic]
) -> dict[str, str]:
    """``max.message.bytes`` of these existing topics brought up to their spec where it is
    lower (never down: an operator may have allowed more). The broker's AlterConfigs replaces
    a topic's whole set of its own settings, so each is sent again with the one raised."""
    wanted = {t.name: int(t.topic_configs[_LIMIT]) for t in topics if _LIMIT in t.topic_configs}
    if not wanted:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
    raised: dict[str, str] = {}
    changes: list[ConfigResource] = []
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            name = resource["resource_name"]
            if resource["error_code"] != 0:
                log.warning(
                    "topic %s: its settings could not be read: %s",
                    name,
                    resource["error_message"] or resource["error_code"],
                )
                continue
            entries = {e["config_names"]: e for e in resource["config_entries"]}
            limit = entries.get(_LIMIT)
            if limit is None or int(limit["config_value"]) >= wanted[name]:
                continue
            mine = [e for e in entries.values() if e["config_source"] == _TOPIC_SOURCE]
            if any(e["is_sensitive"] for e in mine):  # its value is hidden: cannot send it again
                log.error("topic %s: raise max.message.bytes to %s by hand", name, wanted[name])
                continue
            own = {e["config_names"]: e["config_value"] for e in mine}
            own[_LIMIT] = raised[name] = str(wanted[name])
            changes.append(ConfigResource(ConfigResourceType.TOPIC, name, own))
    if changes:
        for response in await admin.alter_configs(changes):
            for name, code, message in _alter_errors(response):
                log.error("topic %s: max.message.bytes not raised: %s", name, message or code)
                raised.pop(name, None)
        for name, limit in raised.items():
            log.warning("topic %s: max.message.bytes raised to %s", name, limit)
    return raised


def _alter_errors(response: object) -> list[tuple[str, int, str]]:
    resources = response.to_object()["resources"]  # type: ignore[attr-defined]
    return [
        (r["resource_name"], r["error_code"], r["error_message"] or "")
        for r in resources
        if r["error_code"] != 0
    ]

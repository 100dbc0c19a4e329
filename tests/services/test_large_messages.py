"""Valid messages at the contract's size limits, end to end on the real broker and Redis: an
approval event of 1,000 listed subjects makes a decision well over Kafka's default 1 MB; the
worker publishes it, refuses one no topic takes, and goes on with the events after either
(SPEC §3, §6). Each was once retried for ever, holding back every event behind it."""

from __future__ import annotations

import base64
import uuid

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import eventually

from .conftest import Stack, list_change, send
from .support import listed_subject, read_topic
from .test_approvals import submitted

pytestmark = pytest.mark.services


async def send_large_then_small(
    stack: Stack, producer: AIOKafkaProducer, listed: dict, tag: str
) -> tuple[bytes, bytes]:
    """A ``submitted`` event of 1,000 times ``listed`` for the matter with the most measures of
    the default catalogue, then one ordinary event; their keys."""
    large, small = f"large-{tag}", f"after-{tag}"
    event = {**submitted(large, *[listed] * 1000), "matter": {"category": "high_consumption"}}
    await send(producer, stack.settings.topic_approvals, event, key=large)
    await send(producer, stack.settings.topic_approvals, submitted(small, listed), key=small)
    return large.encode(), small.encode()


async def test_a_decision_over_a_megabyte_is_published_and_the_next_follows(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    listed = await listed_subject(stack, producer, http, f"large-{tag}")
    big, after = await send_large_then_small(stack, producer, listed, tag)

    def both(records: list) -> bool:
        return {r.key for r in records} >= {big, after}

    records = await read_topic(stack, stack.settings.topic_decisions, both, timeout=60)
    [decision] = [orjson.loads(r.value) for r in records if r.key == big]
    assert len(orjson.dumps(decision)) > 1024 * 1024
    assert decision["decision"] == "block" and len(decision["subjects"]) == 1000
    [next_one] = [orjson.loads(r.value) for r in records if r.key == after]
    assert next_one["decision"] == "block"


async def test_a_decision_no_topic_takes_is_dead_lettered_and_the_next_follows(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    listed = await listed_subject(stack, producer, http, f"huge-{tag}")
    for n in range(2):  # three listings of one subject: three hits a subject, ~4.8 MB
        change = list_change(f"huge-{tag}-{n}", 1, subject=listed)
        await send(producer, stack.settings.topic_list_changes, change)

    async def three_hits() -> bool:
        body = {"matter": {"category": "high_consumption"}, "subjects": [listed]}
        response = await http.post("/v1/checks", json=body)
        return len(response.json()["subjects"][0]["hits"]) == 3

    await eventually(three_hits)
    huge, after = await send_large_then_small(stack, producer, listed, tag)

    def decided_after(records: list) -> bool:
        return any(r.key == after for r in records)

    decisions = await read_topic(stack, stack.settings.topic_decisions, decided_after, timeout=60)
    assert not any(r.key == huge for r in decisions)

    def refused(records: list) -> bool:
        return any(r.key == huge for r in records)

    rejected = await read_topic(stack, stack.settings.topic_rejected, refused)
    [dead] = [orjson.loads(r.value) for r in rejected if r.key == huge]
    assert dead["error"]["code"] == "decision_too_large"
    assert orjson.loads(base64.b64decode(dead["raw"]))["request_id"] == huge.decode()

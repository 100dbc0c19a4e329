"""Issue 3, item 2: the measure catalogue follows the compacted ``sanction.measures`` topic at
run time — a new measure, an override of a shipped one, a tombstone — with no restart."""

from __future__ import annotations

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from sanctiongate.domain.catalogue import default_catalogue_bytes
from tests.conftest import eventually
from tests.ids import uscc

from .conftest import Stack, list_change, send
from .support import assert_equals_replay, decide, org

pytestmark = pytest.mark.services


def measure(measure_id: str, **fields: object) -> dict:
    return {
        "schema": "measure/v1",
        "measure_id": measure_id,
        "title": "测试措施：限制享受税收优惠",
        "effect": "block",
        "mandatory": True,
        "list_types": ["key_supervision"],
        "matter_categories": ["tax_benefits"],
        "roles": ["subject"],
        "implementing_departments": ["税务部门"],
        "legal_basis": "测试依据（运行时配置）",
        **fields,
    }


async def answers(http: httpx.AsyncClient, category: str, subject: dict, want: str) -> dict:
    async def got() -> dict | None:
        d = await decide(http, category, subject)
        return d if d["decision"] == want else None

    return await eventually(got)


async def tombstone(producer: AIOKafkaProducer, topic: str, measure_id: str) -> None:
    await producer.send_and_wait(topic, key=measure_id.encode(), value=None)


async def test_a_published_measure_applies_and_its_tombstone_deletes_it(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, redis: Redis
) -> None:
    worker_pid = stack.workers[0].proc.pid
    watched = org(uscc(), "重点关注测试公司")
    await send(
        producer,
        stack.settings.topic_list_changes,
        list_change("m-watch", 1, subject=watched, polarity="watch", list_type="key_supervision"),
    )
    # Shipped catalogue: a watch entry is reviewed for any matter (NBL-2024-102), never blocked.
    await answers(http, "tax_benefits", watched, "review")

    topic = stack.settings.topic_measures
    await send(producer, topic, measure("RT-TAX-1"))
    blocked = await answers(http, "tax_benefits", watched, "block")
    measures = {m["measure_id"]: m for m in blocked["subjects"][0]["hits"][0]["measures"]}
    assert measures["RT-TAX-1"]["legal_basis"] == "测试依据（运行时配置）"
    assert (await decide(http, "honours", watched))["decision"] == "review"  # other matters

    # A new version of the measure (now recommended) replaces it …
    await send(producer, topic, measure("RT-TAX-1", mandatory=False))
    await answers(http, "tax_benefits", watched, "review")
    await send(producer, topic, measure("RT-TAX-1"))
    await answers(http, "tax_benefits", watched, "block")
    # … and a tombstone (null value) deletes it.
    await tombstone(producer, topic, "RT-TAX-1")
    reviewed = await answers(http, "tax_benefits", watched, "review")
    assert "RT-TAX-1" not in {
        m["measure_id"] for m in reviewed["subjects"][0]["hits"][0]["measures"]
    }

    assert stack.workers[0].proc.poll() is None and stack.workers[0].proc.pid == worker_pid
    # A replay of the topics builds the same catalogue the worker keeps.
    snap = await assert_equals_replay(stack, redis)
    assert "RT-TAX-1" not in snap.measures


async def test_a_shipped_measure_is_overridden_and_deleted_at_run_time(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, redis: Redis
) -> None:
    shipped = {m["measure_id"]: m for m in orjson.loads(default_catalogue_bytes())}
    procurement_ban = shipped["NBL-2024-008"]
    assert procurement_ban["effect"] == "block" and procurement_ban["mandatory"] is True
    debtor = org(uscc(), "政府采购测试公司")
    await send(
        producer, stack.settings.topic_list_changes, list_change("m-debtor", 1, subject=debtor)
    )
    await answers(http, "government_procurement", debtor, "block")

    topic = stack.settings.topic_measures
    await send(producer, topic, {**procurement_ban, "effect": "review"})
    reviewed = await answers(http, "government_procurement", debtor, "review")
    applied = {m["measure_id"]: m for m in reviewed["subjects"][0]["hits"][0]["measures"]}
    assert applied["NBL-2024-008"]["effect"] == "review"

    await tombstone(producer, topic, "NBL-2024-008")

    async def gone() -> bool:
        d = await decide(http, "government_procurement", debtor)
        ids = {m["measure_id"] for m in d["subjects"][0]["hits"][0]["measures"]}
        return "NBL-2024-008" not in ids and d["decision"] == "review"

    await eventually(gone)
    await assert_equals_replay(stack, redis)

    await send(producer, topic, procurement_ban)  # the credit office restores it
    await answers(http, "government_procurement", debtor, "block")

"""The vertical slice on the real broker, Redis, worker and API: list → block; remove → pass."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import eventually
from tests.ids import id_number, uscc

from .conftest import Stack, list_change, send

pytestmark = pytest.mark.services


def org(code: str, name: str = "北京示例科技有限公司") -> dict:
    return {"kind": "legal_person", "name": name, "uscc": code}


async def decide(http: httpx.AsyncClient, category: str, *subjects: dict) -> dict:
    response = await http.post(
        "/v1/checks", json={"matter": {"category": category}, "subjects": list(subjects)}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_listing_blocks_then_removal_passes(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    code, rep = uscc(), id_number()
    topic = stack.settings.topic_list_changes
    assert (await decide(http, "government_procurement", org(code)))["decision"] == "pass"

    await send(
        producer,
        topic,
        list_change(
            "e2e-1",
            1,
            subject=org(code),
            related_persons=[{"role": "legal_representative", "name": "张示例", "id_number": rep}],
        ),
    )

    async def blocked() -> dict | None:
        d = await decide(http, "government_procurement", org(code))
        return d if d["decision"] == "block" else None

    decision = await eventually(blocked)
    [subject] = decision["subjects"]
    [hit] = subject["hits"]
    assert hit["entry_id"] == "e2e-1" and hit["match"] == "id"
    assert hit["basis"] == "（2024）京0105执1234号"
    assert any(m["measure_id"] == "NBL-2024-008" for m in hit["measures"])
    assert decision["as_of"]["event_time"] is not None

    person = {"kind": "natural_person", "name": "张示例", "id_number": rep, "role": "applicant"}
    personal = await decide(http, "high_consumption", person)
    assert personal["decision"] == "block"
    assert personal["subjects"][0]["hits"][0]["match"] == "related_person"
    assert rep not in str(personal), "a personal ID number must come back masked"

    await send(producer, topic, list_change("e2e-1", 2, op="remove", reason="repaired"))

    async def passed() -> bool:
        return (await decide(http, "government_procurement", org(code)))["decision"] == "pass"

    await eventually(passed)

    # An older upsert arriving late never resurrects the removed entry.
    await send(producer, topic, list_change("e2e-1", 1, subject=org(code)))
    marker = uscc()
    await send(producer, topic, list_change("e2e-marker", 1, subject=org(marker, "标记公司")))

    async def marker_visible() -> bool:
        return (await decide(http, "government_procurement", org(marker, "标记公司")))[
            "decision"
        ] == "block"

    await eventually(marker_visible)
    assert (await decide(http, "government_procurement", org(code)))["decision"] == "pass"


async def test_requests_without_key_are_refused(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as anonymous:
        response = await anonymous.post(
            "/v1/checks", json={"matter": {"category": "bidding"}, "subjects": [org(uscc())]}
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_bad_message_is_dead_lettered_and_ingest_goes_on(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = stack.settings.topic_list_changes
    await send(producer, topic, b"{not json", key="broken-1")
    code = uscc()
    await send(producer, topic, list_change("after-broken", 1, subject=org(code, "后续公司")))

    async def applied() -> bool:
        return (await decide(http, "bidding", org(code, "后续公司")))["decision"] == "block"

    await eventually(applied)
    consumer = AIOKafkaConsumer(
        stack.settings.topic_rejected,
        bootstrap_servers=stack.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        found = None
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if r.key == b"broken-1":
                        found = r
            if found:
                break
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
    assert found is not None
    import base64
    import json

    rejected = json.loads(found.value)
    assert rejected["schema"] == "rejected/v1"
    assert rejected["error"]["code"] == "invalid_json"
    assert base64.b64decode(rejected["raw"]) == b"{not json"

"""Automatic comparison and monitoring on the real broker and Redis (SPEC §3, issue 3).

approval.events → sanction.decisions (idempotent per request_id); approved events remembered
for look-back; the three alerts on sanction.alerts; feedback closing what a decision is owed.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.ids import id_number, uscc

from .conftest import Stack, list_change, send
from .support import metric, read_topic

pytestmark = pytest.mark.services

FULL_ID = re.compile(r"\d{17}[\dX]")
SLA_SECONDS = 3


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"SANCTIONGATE_FEEDBACK_SLA_SECONDS": str(SLA_SECONDS)}


class Topic:
    """Everything a topic carries, read from the beginning in the background."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        self.messages: list[dict] = []
        self.raw: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Topic:
        await self.consumer.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for record in self.consumer:
            self.raw.append(record.value)
            self.messages.append(orjson.loads(record.value))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    async def wait_for(
        self, predicate: Callable[[dict], bool], count: int = 1, timeout: float = 20
    ) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.messages if predicate(m)]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} matching message(s) not seen in {timeout}s")


@pytest_asyncio.fixture(scope="module")
async def decisions(stack: Stack) -> AsyncIterator[Topic]:
    topic = await Topic(stack.settings.kafka_bootstrap, stack.settings.topic_decisions).start()
    yield topic
    await topic.stop()


@pytest_asyncio.fixture(scope="module")
async def alerts(stack: Stack) -> AsyncIterator[Topic]:
    topic = await Topic(stack.settings.kafka_bootstrap, stack.settings.topic_alerts).start()
    yield topic
    await topic.stop()


@pytest_asyncio.fixture(scope="module")
async def rejected(stack: Stack) -> AsyncIterator[Topic]:
    topic = await Topic(stack.settings.kafka_bootstrap, stack.settings.topic_rejected).start()
    yield topic
    await topic.stop()


def org(code: str, name: str = "福建示例贸易有限公司") -> dict:
    return {"kind": "legal_person", "name": name, "uscc": code, "role": "applicant"}


def person(number: str, name: str = "李示例") -> dict:
    return {"kind": "natural_person", "name": name, "id_number": number, "role": "applicant"}


def approval_event(
    event_type: str, request_id: str, *subjects: dict, category: str = "government_procurement"
) -> dict:
    return {
        "schema": "approval_event/v1",
        "event_type": event_type,
        "request_id": request_id,
        "department": "fj-finance",
        "matter": {"category": category, "code": "ZFCG-001"},
        "subjects": list(subjects),
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def feedback(request_id: str, outcome: str = "enforced") -> dict:
    return {
        "schema": "feedback/v1",
        "request_id": request_id,
        "department": "fj-finance",
        "outcome": outcome,
        "measure_ids": ["NBL-2024-008"],
        "operator": "clerk-7",
        "at": datetime.now(UTC).isoformat(),
    }


async def listed(stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, **entry):  # type: ignore[no-untyped-def]
    """Publish a black listing and wait until a check sees it."""
    entry_id = f"mon-{uuid.uuid4().hex[:10]}"
    await send(producer, stack.settings.topic_list_changes, list_change(entry_id, 1, **entry))
    subject = entry["subject"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = await http.post(
            "/v1/checks",
            json={"matter": {"category": "government_procurement"}, "subjects": [subject]},
        )
        if r.status_code == 200 and r.json()["decision"] != "pass":
            return entry_id
        await asyncio.sleep(0.05)
    raise AssertionError("listing never became visible")


async def test_submitted_events_are_decided_once_per_request(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, decisions: Topic
) -> None:
    blocked, clean = uscc(), uscc()
    entry_id = await listed(stack, producer, http, subject=org(blocked))
    topic = stack.settings.topic_approvals

    await send(producer, topic, approval_event("submitted", "req-block-1", org(blocked)))
    await send(producer, topic, approval_event("submitted", "req-pass-1", org(clean)))
    await send(producer, topic, approval_event("submitted", "req-block-1", org(clean)))  # replay

    block = (await decisions.wait_for(lambda m: m["request_id"] == "req-block-1"))[0]
    [passed] = await decisions.wait_for(lambda m: m["request_id"] == "req-pass-1")
    assert block["schema"] == "decision/v1" and block["decision"] == "block"
    assert block["department"] == "fj-finance"
    assert block["matter"] == {"category": "government_procurement", "code": "ZFCG-001"}
    [hit] = block["subjects"][0]["hits"]
    assert hit["entry_id"] == entry_id and hit["match"] == "id"
    assert any(m["measure_id"] == "NBL-2024-008" for m in hit["measures"])
    assert block["as_of"]["event_time"] is not None
    assert passed["decision"] == "pass" and passed["subjects"][0]["hits"] == []

    # The replayed request_id (even with another body) gets the first decision again.
    await send(producer, topic, approval_event("submitted", "req-block-1", org(clean)))
    again = await decisions.wait_for(lambda m: m["request_id"] == "req-block-1", count=2)
    assert all(d == block for d in again)


async def test_approval_despite_block_is_alerted(
    stack: Stack,
    producer: AIOKafkaProducer,
    http: httpx.AsyncClient,
    alerts: Topic,
    decisions: Topic,
) -> None:
    rep = id_number()
    code = uscc()
    entry_id = await listed(
        stack,
        producer,
        http,
        subject=org(code),
        related_persons=[{"role": "legal_representative", "name": "王示例", "id_number": rep}],
    )
    topic = stack.settings.topic_approvals
    # The legal representative is blocked where a measure names that role (high consumption).
    await send(
        producer,
        topic,
        approval_event("submitted", "req-despite-1", person(rep), category="high_consumption"),
    )
    [decision] = await decisions.wait_for(lambda m: m["request_id"] == "req-despite-1")
    assert decision["decision"] == "block"
    assert decision["subjects"][0]["hits"][0]["match"] == "related_person"
    assert decision["subjects"][0]["identifier"] == rep[:6] + "********" + rep[-4:]
    await send(producer, topic, approval_event("submitted", "req-despite-2", org(code)))
    await decisions.wait_for(lambda m: m["request_id"] == "req-despite-2")
    counted = await metric(
        stack.worker_url, "sanctiongate_checks_total", channel="stream", decision="block"
    )
    await send(producer, topic, approval_event("approved", "req-despite-2", org(code)))
    # Approved without any pre-approval check: judged at approval time.
    await send(producer, topic, approval_event("approved", "req-despite-3", org(code)))

    found = await alerts.wait_for(
        lambda m: (
            m["type"] == "approval_despite_block"
            and m["request_id"] in {"req-despite-2", "req-despite-3"}
        ),
        count=2,
    )
    for alert in found:
        assert alert["schema"] == "alert/v1"
        assert alert["department"] == "fj-finance" and alert["entry_id"] == entry_id
        assert alert["subject"]["identifier"] == code
        assert alert["alert_id"] and alert["raised_at"]
    assert (
        "no pre-approval check"
        in next(a for a in found if a["request_id"] == "req-despite-3")["detail"]
    )

    # That check at approval time is a check: audited (SPEC §5) and counted like any other.
    def audited_at_approval(records: list) -> list[dict]:
        values = [orjson.loads(r.value) for r in records]
        return [v for v in values if v["request_id"] == "req-despite-3"]

    audits = await read_topic(stack, stack.settings.topic_audit, audited_at_approval)
    [record] = audited_at_approval(audits)
    assert record["channel"] == "stream" and record["decision"] == "block"
    assert record["department"] == "fj-finance" and record["key_id"] is None
    assert record["subjects"][0]["identifier"] == code
    assert (
        await metric(
            stack.worker_url, "sanctiongate_checks_total", channel="stream", decision="block"
        )
        == counted + 1
    )


async def test_listing_after_approval_raises_retroactive_hit(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, alerts: Topic
) -> None:
    applicant, director = id_number(), id_number()
    topic = stack.settings.topic_approvals
    await send(producer, topic, approval_event("approved", "req-retro-1", person(applicant)))
    await send(
        producer,
        topic,
        approval_event("approved", "req-retro-2", person(director), category="bidding"),
    )
    await asyncio.sleep(1.0)  # the approvals are remembered before the listings arrive

    personal = await listed(stack, producer, http, subject=person(applicant))
    company = await listed(
        stack,
        producer,
        http,
        subject=org(uscc()),
        related_persons=[{"role": "legal_representative", "name": "赵示例", "id_number": director}],
    )
    got = {
        a["request_id"]: a
        for a in await alerts.wait_for(
            lambda m: (
                m["type"] == "retroactive_hit" and m["request_id"] in {"req-retro-1", "req-retro-2"}
            ),
            count=2,
        )
    }
    assert got["req-retro-1"]["entry_id"] == personal
    assert got["req-retro-2"]["entry_id"] == company
    assert "legal_representative" in got["req-retro-2"]["detail"]
    assert got["req-retro-2"]["subject"]["identifier"] == director[:6] + "********" + director[-4:]
    for alert in alerts.raw:
        assert not FULL_ID.search(alert.decode()), "a full ID number leaked into an alert"

    # A correction of an already active listing is not a new listing: no second alert.
    await send(
        producer,
        stack.settings.topic_list_changes,
        list_change(personal, 2, subject=person(applicant), basis="（2024）闽0203执99号更正"),
    )
    await asyncio.sleep(2.0)
    assert len([a for a in alerts.messages if a["request_id"] == "req-retro-1"]) == 1


async def test_feedback_overdue_only_without_feedback(
    stack: Stack,
    producer: AIOKafkaProducer,
    http: httpx.AsyncClient,
    alerts: Topic,
    decisions: Topic,
) -> None:
    code = uscc()
    await listed(stack, producer, http, subject=org(code))
    topic = stack.settings.topic_approvals
    await send(producer, topic, approval_event("submitted", "req-fb-answered", org(code)))
    await send(producer, topic, approval_event("submitted", "req-fb-silent", org(code)))
    await decisions.wait_for(
        lambda m: m["request_id"] in {"req-fb-answered", "req-fb-silent"}, count=2
    )
    await send(producer, stack.settings.topic_feedback, feedback("req-fb-answered"))

    [overdue] = await alerts.wait_for(
        lambda m: m["type"] == "feedback_overdue" and m["request_id"] == "req-fb-silent",
        timeout=SLA_SECONDS + 15,
    )
    assert overdue["department"] == "fj-finance" and overdue["entry_id"] is None
    assert overdue["subject"]["identifier"] == code
    await asyncio.sleep(1.5)
    assert not [a for a in alerts.messages if a["request_id"] == "req-fb-answered"]

    async with httpx.AsyncClient(base_url=stack.worker_url) as worker:
        text = (await worker.get("/metrics")).text
    assert re.search(r"^sanctiongate_feedback_overdue [1-9]", text, re.M), text[-2000:]
    assert 'sanctiongate_feedback_total{outcome="enforced"}' in text
    assert re.search(r'sanctiongate_alerts_total\{type="feedback_overdue"\} [1-9]', text)
    assert re.search(r'sanctiongate_checks_total\{channel="stream",decision="block"', text)

    # Late feedback takes it off the overdue gauge (other tests' blocks stay overdue).
    before = overdue_gauge(text)
    await send(producer, stack.settings.topic_feedback, feedback("req-fb-silent", "not_applicable"))
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=stack.worker_url) as worker:
        while overdue_gauge((await worker.get("/metrics")).text) != before - 1:
            assert time.monotonic() < deadline, "the overdue gauge did not drop after feedback"
            await asyncio.sleep(0.2)


def overdue_gauge(text: str) -> float:
    found = re.search(r"^sanctiongate_feedback_overdue (\S+)", text, re.M)
    assert found, "no sanctiongate_feedback_overdue in /metrics"
    return float(found.group(1))


async def test_bad_approval_and_feedback_messages_are_dead_lettered(
    stack: Stack, producer: AIOKafkaProducer, rejected: Topic, decisions: Topic
) -> None:
    approvals, feedback_topic = stack.settings.topic_approvals, stack.settings.topic_feedback
    bad_id = id_number()
    bad_id = bad_id[:-1] + ("0" if bad_id[-1] != "0" else "1")  # fails its check digit
    cases = [
        (approvals, b"{not json", "invalid_json"),
        (approvals, orjson.dumps({"schema": "approval_event/v9"}), "unknown_schema"),
        (
            approvals,
            orjson.dumps({**approval_event("submitted", "x", org(uscc())), "department": 5}),
            "schema_violation",
        ),
        (
            approvals,
            orjson.dumps(approval_event("submitted", "x", person("11010519900307"))),
            "malformed_identifier",
        ),
        (
            approvals,
            orjson.dumps(approval_event("submitted", "req-typo", person(bad_id))),
            "identifier_check_failed",
        ),
        (
            feedback_topic,
            orjson.dumps({**feedback("r"), "outcome": "overridden"}),
            "schema_violation",
        ),
        (
            feedback_topic,
            orjson.dumps({**feedback("r"), "at": "2024-02-30T10:00:00+08:00"}),
            "invalid_date",
        ),
    ]
    for topic, raw, _ in cases:
        await send(producer, topic, raw, key=f"bad-{uuid.uuid4().hex[:6]}")
    await send(producer, approvals, approval_event("submitted", "req-after-bad", org(uscc())))

    await decisions.wait_for(lambda m: m["request_id"] == "req-after-bad")
    for topic, raw, code in cases:
        [letter] = await rejected.wait_for(
            lambda m, raw=raw, topic=topic: (
                m["source_topic"] == topic and base64.b64decode(m["raw"]) == raw
            )
        )
        assert letter["error"]["code"] == code, letter
        assert letter["schema"] == "rejected/v1" and letter["offset"] >= 0
    for raw in rejected.raw:
        assert bad_id.encode() not in orjson.dumps(orjson.loads(raw)["error"])

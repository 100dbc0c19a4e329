"""Automatic comparison of a burst of approval events (issue 3 item 9), on the real broker and
Redis: what the batched path publishes, keeps and audits, request by request.

The approval agent decides a whole batch at once, keeps the decisions with one script, and
publishes decisions and audit records as per-partition record batches; these tests hold it to
what publishing one message at a time gave: each request decided once, its decision on the
partition its request id hashes to, one ``audit/v1`` record per decision, feedback owed only by
a block or review. The ledger's two ways (one script on a standalone Redis, per slot on a
cluster) are held to the same answers.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.partitioner import DefaultPartitioner
from redis.asyncio import Redis

from sanctiongate.checks import as_of, decision_from
from sanctiongate.domain.decisions import SubjectAssessment
from sanctiongate.domain.models import Hit, Matter, Subject
from sanctiongate.index import Layout
from sanctiongate.index.layout import ROLE_SEPARATOR
from sanctiongate.index.ledger import Ledger
from sanctiongate.index.store import IndexMeta
from tests.conftest import Services
from tests.ids import id_number, uscc

from .conftest import Stack
from .support import listed_subject, read_topic

pytestmark = pytest.mark.services

CATEGORY = "bidding"


def submitted(request_id: str, *subjects: dict) -> dict:
    return {
        "schema": "approval_event/v1",
        "event_type": "submitted",
        "request_id": request_id,
        "department": "burst-department",
        "matter": {"category": CATEGORY},
        "subjects": list(subjects),
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def org(code: str, name: str = "北京示例科技有限公司") -> dict:
    return {"kind": "legal_person", "name": name, "uscc": code, "role": "applicant"}


def person(number: str) -> dict:
    return {
        "kind": "natural_person",
        "name": "张示例",
        "id_number": number,
        "role": "legal_representative",
    }


def failing_check_character(code: str) -> str:
    last = "0" if code[-1] != "0" else "1"
    return code[:-1] + last


async def test_a_burst_is_decided_published_and_audited_once_per_request(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, redis: Redis
) -> None:
    tag = uuid.uuid4().hex[:6]
    listed = await listed_subject(stack, producer, http, f"burst-{tag}")
    rep = id_number()
    events = [submitted(f"{tag}-pass-{i}", org(uscc(), f"清白公司{i}")) for i in range(40)]
    events.append(submitted(f"{tag}-block", listed, person(rep)))
    events.append(submitted(f"{tag}-pass-3", listed))  # the same request again: first one holds
    events.append(submitted(f"{tag}-slip", org(failing_check_character(uscc()))))
    # Sent without waiting for each, so the worker gets them as one batch (or a few).
    futures = [
        await producer.send(
            stack.settings.topic_approvals, key=e["request_id"].encode(), value=orjson.dumps(e)
        )
        for e in events
    ]
    for future in futures:
        await future
    decided = {e["request_id"] for e in events} - {f"{tag}-slip"}

    def ours(records: list[ConsumerRecord]) -> list[dict]:
        values = [orjson.loads(r.value) for r in records]
        return [v for v in values if v.get("request_id", "").startswith(tag)]

    decisions = await read_topic(
        stack, stack.settings.topic_decisions, lambda rs: len(ours(rs)) >= len(decided)
    )
    # Once per request; a request seen again in a later batch republishes its first decision.
    published: dict[str, list[dict]] = {}
    for value in ours(decisions):
        published.setdefault(value["request_id"], []).append(value)
    assert set(published) == decided
    assert all(all(v == vs[0] for v in vs) for vs in published.values())
    partitions = sorted(await producer.partitions_for(stack.settings.topic_decisions))
    for record in decisions:
        if record.key.decode().startswith(tag):
            assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
    outcome = {request_id: vs[0] for request_id, vs in published.items()}
    assert outcome[f"{tag}-block"]["decision"] == "block"
    assert outcome[f"{tag}-pass-3"]["decision"] == "pass"  # the burst's first event of it
    assert outcome[f"{tag}-pass-3"]["subjects"][0]["name"] == "清白公司3"
    assert {v["decision"] for k, v in outcome.items() if k != f"{tag}-block"} == {"pass"}

    audits = await read_topic(
        stack, stack.settings.topic_audit, lambda rs: len(ours(rs)) >= len(decided)
    )
    records = ours(audits)
    assert Counter(r["request_id"] for r in records) == Counter(decided)
    for record in records:
        decision = outcome[record["request_id"]]
        assert record["schema"] == "audit/v1" and record["channel"] == "stream"
        assert record["department"] == "burst-department" and record["key_id"] is None
        assert record["matter"] == {"category": CATEGORY, "code": None}
        assert record["decision"] == decision["decision"] and record["replay"] is False
        assert record["subjects"] == [
            {k: s[k] for k in ("role", "kind", "identifier", "decision")}
            for s in decision["subjects"]
        ]
        assert datetime.fromisoformat(record["at"]).tzinfo is not None
    assert rep not in b"".join(r.value for r in audits).decode()
    [blocked] = [r for r in records if r["request_id"] == f"{tag}-block"]
    assert blocked["subjects"][1]["identifier"] == rep[:6] + "********" + rep[-4:]

    rejected = await read_topic(
        stack,
        stack.settings.topic_rejected,
        lambda rs: any(r.key and r.key.decode() == f"{tag}-slip" for r in rs),
    )
    [slip] = [orjson.loads(r.value) for r in rejected if r.key.decode() == f"{tag}-slip"]
    assert slip["error"]["code"] == "identifier_check_failed"

    # Only the block owes feedback.
    layout = Layout(prefix=stack.settings.index_prefix)
    owed = {m.decode() for m in await redis.zrange(layout.feedback("due"), 0, -1)}
    assert {m for m in owed if tag in m} == {f"burst-department{ROLE_SEPARATOR}{tag}-block"}


# --- the ledger's two ways -------------------------------------------------------------------


@pytest_asyncio.fixture
async def plain_redis(services: Services) -> AsyncIterator[Redis]:
    r = Redis.from_url(services.redis_url)
    yield r
    await r.aclose()


def decision(request_id: str, verdict: str, name: str = "公司"):  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    subject = Subject(kind="natural_person", name=name, id_number=id_number(), role="applicant")
    hits: list[Hit] = []
    assessment = SubjectAssessment(verdict, hits, [], verdict == "block")  # type: ignore[arg-type]
    meta = IndexMeta(gen="g", state="ready", newest_event_time=now, measures_rev=1, fields={})
    return decision_from(
        [subject],
        [assessment],
        matter=Matter(category=CATEGORY),
        department="ledger-department",
        request_id=request_id,
        snapshot=as_of(meta, now),
        now=now,
    )


@pytest.mark.parametrize("per_slot", [False, True])
async def test_the_ledger_keeps_the_first_decision_and_owes_feedback_for_it(
    plain_redis: Redis, per_slot: bool
) -> None:
    layout = Layout(prefix=f"sgl{uuid.uuid4().hex[:8]}")
    ledger = Ledger(
        plain_redis,
        layout,
        lookback_seconds=3600,
        feedback_sla_seconds=60,
        decision_ttl_seconds=600,
        per_slot=per_slot,
    )
    first = [decision("a", "block"), decision("b", "pass"), decision("c", "review")]
    again = [decision("a", "pass"), decision("d", "block"), decision("d", "pass")]
    bodies = [d.model_dump_json(by_alias=True).encode() for d in first]
    assert await ledger.keep_first(first, bodies) == [None, None, None]
    later = [d.model_dump_json(by_alias=True).encode() for d in again]
    held = await ledger.keep_first(again, later)
    assert held == [bodies[0], None, later[1]]  # a: kept before; d: kept by its first event
    stored = await ledger.decision_bodies([("ledger-department", r) for r in "abcde"])
    assert stored == [bodies[0], bodies[1], bodies[2], later[1], None]
    assert [d and d.decision for d in await ledger.decisions([("ledger-department", "c")])] == [
        "review"
    ]

    owed = await plain_redis.zrange(layout.feedback("due"), 0, -1, withscores=True)
    members = {m.decode().rpartition(ROLE_SEPARATOR)[2] for m, _ in owed}
    assert members == {"a", "c", "d"}
    for member, due in owed:
        request_id = member.decode().rpartition(ROLE_SEPARATOR)[2]
        kept = {"a": first[0], "c": first[2], "d": again[1]}[request_id]
        assert due == pytest.approx(kept.decided_at.timestamp() + 60)
        info = orjson.loads(await plain_redis.hget(layout.feedback("info"), member))
        assert info["decision"] == kept.decision
        assert info["subject"]["identifier"] == kept.subjects[0].identifier
        assert "*" in info["subject"]["identifier"]

    # Feedback received is never owed again, even if the request comes back.
    await ledger.feedback_received([("ledger-department", "c", datetime.now(UTC))])
    await plain_redis.delete(layout.decision("ledger-department", "c"))
    assert await ledger.keep_first([first[2]], [bodies[2]]) == [None]
    owed_now = await plain_redis.zrange(layout.feedback("due"), 0, -1)
    assert {m.decode().rpartition(ROLE_SEPARATOR)[2] for m in owed_now} == {"a", "d"}

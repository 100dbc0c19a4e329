"""The HTTP API (SPEC §4–§6) over real HTTP, Redis and Kafka: every call, every error status,
masking, scopes, idempotency (across processes), the audit record and a blind index; and the
checks the HTTP protocol answers itself give what the framework's way in gives (status, head,
body) for the same requests."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from sanctiongate.api.app import FastChecks, create_app
from sanctiongate.index import Layout
from sanctiongate.keys import KeyStore
from tests.conftest import Process, eventually, free_port, wait_http
from tests.ids import id_number, uscc, with_bad_check
from tests.rawhttp import Connection, Reply, post, serving

from .conftest import Stack, list_change, send

pytestmark = pytest.mark.services

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CATEGORY = "high_consumption"  # the catalogue blocks a listed subject and its legal rep


def org(code: str, name: str = "北京示例科技有限公司", role: str = "applicant") -> dict:
    return {"kind": "legal_person", "name": name, "uscc": code, "role": role}


def person(number: str, name: str = "张示例", role: str = "applicant") -> dict:
    return {"kind": "natural_person", "name": name, "id_number": number, "role": role}


def check_body(*subjects: dict, category: str = CATEGORY, **extra: object) -> dict:
    return {"matter": {"category": category}, "subjects": list(subjects), **extra}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "errors"}, body
    assert body["error"]["code"] and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


class Listed:
    """One organisation listed black with its legal representative, visible to the API."""

    def __init__(self, code: str, rep: str, entry_id: str) -> None:
        self.code, self.rep, self.entry_id = code, rep, entry_id


@pytest_asyncio.fixture(scope="module")
async def listed(stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient) -> Listed:
    code, rep = uscc(), id_number()
    entry_id = f"api-{uuid.uuid4().hex[:6]}"
    await send(
        producer,
        stack.settings.topic_list_changes,
        list_change(
            entry_id,
            1,
            subject=org(code),
            related_persons=[{"role": "legal_representative", "name": "张示例", "id_number": rep}],
        ),
    )

    async def blocked() -> bool:
        response = await http.post("/v1/checks", json=check_body(org(code)))
        return response.json().get("decision") == "block"

    await eventually(blocked)
    return Listed(code, rep, entry_id)


def scoped_token(stack: Stack, department: str, scopes: list[str]) -> tuple[str, str]:
    key, token = KeyStore(stack.keys_file).create(department, scopes, "scoped")
    return key.key_id, token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- POST /v1/checks ------------------------------------------------------------------------


async def test_check_answers_decision_with_hits_in_request_order(
    http: httpx.AsyncClient, listed: Listed
) -> None:
    clean = uscc()
    response = await http.post(
        "/v1/checks",
        json=check_body(org(clean, "清白公司"), org(listed.code), person(listed.rep)),
    )
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["schema"] == "decision/v1"
    assert decision["decision"] == "block"
    assert decision["department"] == "test-department"
    assert decision["request_id"].startswith("sg-")
    assert [s["name"] for s in decision["subjects"]] == [
        "清白公司",
        "北京示例科技有限公司",
        "张示例",
    ]
    assert [s["decision"] for s in decision["subjects"]] == ["pass", "block", "block"]
    [hit] = decision["subjects"][1]["hits"]
    assert hit["entry_id"] == listed.entry_id and hit["match"] == "id"
    assert hit["measures"] and hit["basis"] and hit["authority"]
    assert decision["subjects"][2]["hits"][0]["match"] == "related_person"
    assert decision["subjects"][2]["identifier"] == listed.rep[:6] + "********" + listed.rep[-4:]
    assert listed.rep not in response.text, "a personal ID number must come back masked"
    assert set(decision["as_of"]) == {"event_time", "lag_seconds"}
    assert decision["as_of"]["event_time"] is not None


async def test_concurrent_checks_each_get_their_own_answer(
    http: httpx.AsyncClient, listed: Listed
) -> None:
    """Concurrent checks share Redis round trips; the answers must not get mixed up."""
    codes = [listed.code if i % 3 == 0 else uscc() for i in range(60)]
    answers = await asyncio.gather(
        *(
            http.post("/v1/checks", json=check_body(org(code, f"公司{i}")))
            for i, code in enumerate(codes)
        )
    )
    for i, (code, answer) in enumerate(zip(codes, answers, strict=True)):
        assert answer.status_code == 200, answer.text
        decision = answer.json()
        assert decision["subjects"][0]["name"] == f"公司{i}"
        assert decision["subjects"][0]["identifier"] == code
        assert decision["decision"] == ("block" if code == listed.code else "pass")


async def test_check_with_bad_check_character_is_422_unless_listed(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    response = await http.post("/v1/checks", json=check_body(org(with_bad_check(uscc()))))
    error = assert_error(response, 422, "identifier_check_failed")
    assert error["field"] == "subjects.0.uscc"
    slip = with_bad_check(id_number())
    response = await http.post("/v1/checks", json=check_body(org(uscc()), person(slip)))
    assert assert_error(response, 422, "identifier_check_failed")["field"] == "subjects.1.id_number"
    assert slip not in response.text

    # A register's code that fails its check (SPEC §2) is checked as listed, once it is listed.
    odd = with_bad_check(uscc())
    await send(
        producer, stack.settings.topic_list_changes, list_change("odd-1", 1, subject=org(odd))
    )

    async def blocked() -> bool:
        response = await http.post("/v1/checks", json=check_body(org(odd)))
        return response.status_code == 200 and response.json()["decision"] == "block"

    await eventually(blocked)


# --- POST /v1/checks/batch ------------------------------------------------------------------


async def test_batch_of_ten_thousand_answers_each_subject_in_order(
    http: httpx.AsyncClient, listed: Listed
) -> None:
    subjects = [org(uscc(), f"公司{i}") for i in range(9_999)]
    subjects.insert(4_321, org(listed.code))
    response = await http.post(
        "/v1/checks/batch", json=check_body(*subjects, request_id="batch-1"), timeout=60
    )
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    results = body["results"]
    assert len(results) == 10_000
    assert [r["index"] for r in results] == list(range(10_000))
    assert [r["name"] for r in results] == [s["name"] for s in subjects]
    assert {i for i, r in enumerate(results) if r["decision"] != "pass"} == {4_321}
    assert results[4_321]["hits"][0]["entry_id"] == listed.entry_id
    assert body["request_id"] == "batch-1" and body["as_of"]["event_time"] is not None


async def test_batch_over_the_limit_is_422(http: httpx.AsyncClient) -> None:
    subjects = [{"kind": "legal_person", "name": f"公司{i}"} for i in range(10_001)]
    error = assert_error(await http.post("/v1/checks/batch", json=check_body(*subjects)), 422)
    assert error["field"] == "subjects"


# --- GET /v1/subjects/{identifier} ----------------------------------------------------------


async def test_subject_query_shows_entries_with_personal_data_masked(
    http: httpx.AsyncClient, listed: Listed
) -> None:
    by_code = await http.get(f"/v1/subjects/{listed.code}")
    assert by_code.status_code == 200, by_code.text
    body = by_code.json()
    assert body["identifier"] == listed.code and body["identifier_kind"] == "uscc"
    [entry] = body["active"]
    assert entry["entry_id"] == listed.entry_id and entry["status"] == "active"
    assert entry["related_persons"][0]["identifier"].count("*") == 8
    assert body["as_of"]["event_time"] is not None

    by_person = await http.get(f"/v1/subjects/{listed.rep}")
    assert by_person.status_code == 200, by_person.text
    assert by_person.json()["identifier"].count("*") == 8
    assert by_person.json()["active"][0]["entry_id"] == listed.entry_id
    for response in (by_code, by_person):
        assert listed.rep not in response.text

    typo = "110105198013321065"  # an ID number with an impossible birth date
    by_typo = await http.get(f"/v1/subjects/{typo}")
    assert by_typo.status_code == 200, by_typo.text
    assert typo not in by_typo.text and by_typo.json()["identifier"] == "110105********1065"


async def test_subject_query_of_malformed_identifier_is_422(http: httpx.AsyncClient) -> None:
    error = assert_error(await http.get("/v1/subjects/NOT-A-CODE"), 422, "malformed_identifier")
    assert error["field"] == "identifier"
    # Eighteen digits of another script: a 500 once (the check digit's ValueError)
    arabic = "".join(chr(0x660 + int(c)) for c in "11010519491231002") + "X"
    error = assert_error(await http.get(f"/v1/subjects/{arabic}"), 422, "malformed_identifier")
    assert arabic not in str(error)  # a possible ID number is not echoed


# --- POST /v1/feedback ----------------------------------------------------------------------


def feedback(request_id: str, department: str = "test-department", **extra: object) -> dict:
    return {
        "request_id": request_id,
        "department": department,
        "outcome": "enforced",
        "measure_ids": ["NBL-2024-008"],
        "operator": "clerk-7",
        "at": datetime.now(UTC).isoformat(),
        **extra,
    }


async def consume_until(stack: Stack, topic: str, wanted, timeout: float = 20.0) -> list[dict]:  # type: ignore[no-untyped-def]
    """Read ``topic`` from the start until ``wanted(values)`` holds; returns all values read."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=stack.settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[dict] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(orjson.loads(r.value) for r in records)
            if wanted(values):
                return values
    finally:
        await consumer.stop()
    raise AssertionError(f"not found on {topic} in {timeout}s; read {len(values)} values")


async def test_feedback_is_published_to_the_feedback_topic(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    request_id = f"fb-{uuid.uuid4().hex[:8]}"
    response = await http.post("/v1/feedback", json=feedback(request_id))
    assert response.status_code == 202, response.text
    assert response.json()["request_id"] == request_id
    assert response.json()["as_of"]["event_time"] is not None

    values = await consume_until(
        stack,
        stack.settings.topic_feedback,
        lambda vs: any(v["request_id"] == request_id for v in vs),
    )
    [published] = [v for v in values if v["request_id"] == request_id]
    assert published["schema"] == "feedback/v1" and published["outcome"] == "enforced"


async def test_feedback_errors_name_the_field(stack: Stack, http: httpx.AsyncClient) -> None:
    overridden = feedback("fb-x", outcome="overridden")
    assert_error(await http.post("/v1/feedback", json=overridden), 422)
    _, token = scoped_token(stack, "市场监管局", [CATEGORY])
    other = await http.post("/v1/feedback", json=feedback("fb-y"), headers=auth(token))
    assert assert_error(other, 403, "out_of_scope")["field"] == "department"
    # 7 MB of measure ids is under the body limit but no Kafka message: a 422, not a 503
    # telling the caller to retry what can never go.
    ids = [f"M-{i:0125d}" for i in range(55_000)]
    many = await http.post("/v1/feedback", json={**feedback("fb-z"), "measure_ids": ids})
    assert assert_error(many, 422)["field"] == "measure_ids"


# --- index status, health, metrics ----------------------------------------------------------


async def test_index_status_counts_entries_per_list_type(
    http: httpx.AsyncClient, listed: Listed
) -> None:
    response = await http.get("/v1/index/status")
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["state"] == "ready" and status["generation"] and status["workers"] >= 1
    counts = {(c["polarity"], c["list_type"]): c["entries"] for c in status["entries"]}
    assert counts[("black", "dishonest_judgment_debtor")] >= 1
    assert status["newest_event_time"] is not None
    assert status["as_of"]["event_time"] == status["newest_event_time"]


async def test_health_readiness_and_metrics_need_no_key(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        assert (await anonymous.get("/readyz")).json() == {"status": "ready"}
        exposition = await anonymous.get("/metrics")
        assert exposition.status_code == 200
        assert "sanctiongate_checks_total" in exposition.text


# --- keys: 401 / 403 ------------------------------------------------------------------------


async def test_keys_authenticate_and_scope_matter_categories(stack: Stack) -> None:
    key_id, token = scoped_token(stack, "市财政局", [CATEGORY, "bidding"])
    body = check_body(org(uscc()))
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        missing = await client.post("/v1/checks", json=body)
        assert_error(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await client.post("/v1/checks", json=body, headers=auth(token[:-2] + "xx"))
        assert_error(wrong, 401)

        allowed = await client.post("/v1/checks", json=body, headers=auth(token))
        assert allowed.status_code == 200 and allowed.json()["department"] == "市财政局"
        outside = check_body(org(uscc()), category="land_transfer")
        refused = await client.post("/v1/checks", json=outside, headers=auth(token))
        assert assert_error(refused, 403, "out_of_scope")["field"] == "matter.category"
        batch = await client.post("/v1/checks/batch", json=outside, headers=auth(token))
        assert_error(batch, 403, "out_of_scope")

        assert KeyStore(stack.keys_file).revoke(key_id)
        revoked = await client.post("/v1/checks", json=body, headers=auth(token))
        assert_error(revoked, 401)


# --- idempotency ----------------------------------------------------------------------------


async def test_a_block_is_remembered_as_answered_under_a_fresh_generated_request_id(
    http: httpx.AsyncClient, redis: Redis, stack: Stack, listed: Listed
) -> None:
    """The ledger stores the answer's own bytes (not a second rendering that could differ), and
    each generated request_id is new and shaped as before (``sg-`` and 32 hex digits)."""
    answers = [await http.post("/v1/checks", json=check_body(org(listed.code))) for _ in range(3)]
    ids = [a.json()["request_id"] for a in answers]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"sg-[0-9a-f]{32}", i) for i in ids), ids
    layout = Layout(prefix=stack.settings.index_prefix)
    for answer, request_id in zip(answers, ids, strict=True):
        assert answer.json()["decision"] == "block"
        assert await redis.get(layout.decision("test-department", request_id)) == answer.content


async def test_request_id_is_idempotent_and_a_reused_id_with_another_body_is_409(
    http: httpx.AsyncClient, listed: Listed
) -> None:
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    body = check_body(org(listed.code), request_id=request_id)
    first = await http.post("/v1/checks", json=body)
    again = await http.post("/v1/checks", json=body)
    assert first.status_code == again.status_code == 200
    assert first.json()["request_id"] == request_id
    assert again.content == first.content, "a retry gets the very same decision"

    full_width = {**body, "subjects": [{**org(listed.code), "uscc": _full_width(listed.code)}]}
    same = await http.post("/v1/checks", json=full_width)
    assert same.content == first.content, "the same subject, written differently, is the same"

    other = check_body(org(uscc()), request_id=request_id)
    assert assert_error(await http.post("/v1/checks", json=other), 409)["field"] == "request_id"


def _full_width(code: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) for c in code)


async def test_two_api_processes_share_answers_and_idempotency(
    stack: Stack, http: httpx.AsyncClient, listed: Listed
) -> None:
    port = free_port()
    second = Process(f"api2-{stack.ns}", ["api"], {**stack.env, "SANCTIONGATE_API_PORT": str(port)})
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc=second)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=stack.headers()
        ) as other:
            plain = check_body(org(listed.code), person(listed.rep), org(uscc()))
            a, b = (
                await http.post("/v1/checks", json=plain),
                await other.post("/v1/checks", json=plain),
            )
            assert a.status_code == b.status_code == 200
            strip = ("request_id", "decided_at", "as_of")
            assert {k: v for k, v in a.json().items() if k not in strip} == {
                k: v for k, v in b.json().items() if k not in strip
            }

            request_id = f"req-{uuid.uuid4().hex[:8]}"
            body = check_body(org(listed.code), request_id=request_id)
            answers = await asyncio.gather(
                http.post("/v1/checks", json=body), other.post("/v1/checks", json=body)
            )
            assert answers[0].content == answers[1].content, "one decision, whichever process"
            conflict = check_body(org(uscc()), request_id=request_id)
            assert_error(await other.post("/v1/checks", json=conflict), 409, "request_id_conflict")
    finally:
        second.stop()


# --- audit ----------------------------------------------------------------------------------


async def test_every_check_leaves_an_audit_record_with_masked_subjects(
    stack: Stack, http: httpx.AsyncClient, listed: Listed
) -> None:
    key_id = next(k.key_id for k in KeyStore(stack.keys_file).all() if k.label == "tests")
    request_id = f"audit-{uuid.uuid4().hex[:8]}"
    body = check_body(person(listed.rep), request_id=request_id)
    assert (await http.post("/v1/checks", json=body)).status_code == 200
    assert (await http.post("/v1/checks", json=body)).status_code == 200  # a replay
    batch_id = f"audit-batch-{uuid.uuid4().hex[:8]}"
    batch = check_body(org(listed.code), person(listed.rep), request_id=batch_id)
    assert (await http.post("/v1/checks/batch", json=batch)).status_code == 200

    def found(values: list[dict]) -> bool:
        ours = [v for v in values if v.get("request_id") in (request_id, batch_id)]
        return len(ours) == 3

    values = await consume_until(stack, stack.settings.topic_audit, found)
    records = [v for v in values if v.get("request_id") == request_id]
    assert [r["replay"] for r in records] == [False, True]
    for record in records:
        assert record["department"] == "test-department" and record["key_id"] == key_id
        assert record["matter"]["category"] == CATEGORY and record["decision"] == "block"
        assert record["channel"] == "check" and record["at"]
        [subject] = record["subjects"]
        assert subject["identifier"].count("*") == 8
    [batch_record] = [v for v in values if v.get("request_id") == batch_id]
    assert batch_record["channel"] == "batch"
    assert [s["decision"] for s in batch_record["subjects"]] == ["block", "block"]
    assert listed.rep not in json.dumps(values)


async def test_a_full_batch_is_audited_in_parts_and_holds_nothing_back(
    stack: Stack, http: httpx.AsyncClient, listed: Listed
) -> None:
    # 10,000 subjects with the longest roles make a record of ~1.6 MB, over Kafka's 1 MB: one
    # record of it was refused for ever, and every audit record queued behind it waited.
    role = "r" * 64
    batch_id = f"audit-big-{uuid.uuid4().hex[:8]}"
    subjects = [org(listed.code, role=role), *(org(uscc(), role=role) for _ in range(9_999))]
    batch = check_body(*subjects, request_id=batch_id)
    assert (await http.post("/v1/checks/batch", json=batch, timeout=60)).status_code == 200
    after_id = f"audit-after-{uuid.uuid4().hex[:8]}"
    check = check_body(org(listed.code), request_id=after_id)
    assert (await http.post("/v1/checks", json=check)).status_code == 200

    def found(values: list[dict]) -> bool:
        return sum(v.get("request_id") == batch_id for v in values) == 5 and any(
            v.get("request_id") == after_id for v in values
        )

    values = await consume_until(stack, stack.settings.topic_audit, found, timeout=40)
    parts = sorted((v for v in values if v.get("request_id") == batch_id), key=lambda v: v["part"])
    assert [(p["part"], p["parts"], p["channel"]) for p in parts] == [
        (k, 5, "batch") for k in range(1, 6)
    ]
    indexes = [s["index"] for p in parts for s in p["subjects"]]
    assert indexes == list(range(10_000))
    assert parts[0]["subjects"][0]["decision"] == "block"
    assert {s["role"] for p in parts for s in p["subjects"]} == {role}


# --- bad input: 400 / 413 / 422, never a 5xx ------------------------------------------------

GOOD = check_body(org("91110105MA01ABCDE0"))  # the USCC is irrelevant: these bodies fail first

BAD_BODIES: list[tuple[str, bytes, int, str | None]] = [
    ("not json", b"{not json", 400, None),
    ("invalid utf-8", b'{"matter": "\xff\xfe"}', 400, None),
    ("lone surrogate", b'{"matter": {"category": "\\ud800"}, "subjects": []}', 400, None),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("huge number", b'{"matter": {"category": ' + b"9" * 5000 + b"}}", 400, None),
    ("array body", b"[1, 2, 3]", 422, None),
    ("empty object", b"{}", 422, "matter"),
    ("wrong type", orjson.dumps({**GOOD, "subjects": "all"}), 422, "subjects"),
    (
        "number as name",
        orjson.dumps(check_body({"kind": "legal_person", "name": 7})),
        422,
        "subjects.0.name",
    ),
    ("unknown field", orjson.dumps({**GOOD, "priority": 1}), 422, "priority"),
    ("no subjects", orjson.dumps(check_body()), 422, "subjects"),
    ("bad kind", orjson.dumps(check_body({"kind": "alien", "name": "x"})), 422, "subjects.0.kind"),
    (
        "bad category",
        orjson.dumps(check_body(org(uscc()), category="政府采购")),
        422,
        "matter.category",
    ),
    ("malformed uscc", orjson.dumps(check_body(org("123"))), 422, "subjects.0.uscc"),
    (
        "impossible birth date",
        orjson.dumps(check_body(person("110105198002300015"))),
        422,
        "subjects.0.id_number",
    ),
    (
        "uscc on a person",
        orjson.dumps(check_body({"kind": "natural_person", "name": "张三", "uscc": uscc()})),
        422,
        "subjects.0",
    ),
    (
        "overlong name",
        orjson.dumps(check_body({"kind": "legal_person", "name": "\u0000\u202e\U0010ffff" * 200})),
        422,
        "subjects.0.name",
    ),
]


@pytest.mark.parametrize(
    ("case", "raw", "status", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_bad_input_gets_4xx_naming_field_and_reason(
    http: httpx.AsyncClient, case: str, raw: bytes, status: int, field: str | None
) -> None:
    for path in ("/v1/checks", "/v1/checks/batch"):
        response = await http.post(path, content=raw, headers={"content-type": "application/json"})
        error = assert_error(response, status)
        if field is not None:
            assert error["field"] == field, (case, error)
        assert "110105198002300015" not in response.text, "input is never echoed"


async def test_unicode_garbage_in_a_valid_shape_is_answered_not_crashed(
    http: httpx.AsyncClient,
) -> None:
    garbage = "\u0000\u202e\U0010ffff\ufeff陝（）\u3000" * 20
    body = check_body({"kind": "legal_person", "name": garbage}, {**org(uscc()), "name": garbage})
    for path in ("/v1/checks", "/v1/checks/batch"):
        response = await http.post(path, json=body)
        assert response.status_code == 200, response.text
    huge = orjson.dumps({**check_body(org(uscc())), "request_id": "9" * 129})
    response = await http.post(
        "/v1/checks", content=huge, headers={"content-type": "application/json"}
    )
    assert assert_error(response, 422)["field"] == "request_id"


async def test_oversized_body_is_413_declared_or_streamed(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    limit = stack.settings.max_body_bytes
    # Declared: answered from the headers, before any of the body is read.
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.api_port)
    writer.write(
        f"POST /v1/checks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {limit + 1}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 65_536 + 2):
            yield b" " * 65_536

    streamed = await http.post(
        "/v1/checks", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(streamed, 413, "payload_too_large")


# --- a blind index answers 503, never pass --------------------------------------------------


async def test_blind_index_answers_503_with_a_reason(stack: Stack, redis: Redis) -> None:
    prefix = f"{stack.settings.index_prefix}blind"
    blind_port, dead_port = free_port(), free_port()
    blind = Process(
        f"api-blind-{stack.ns}",
        ["api"],
        {
            **stack.env,
            "SANCTIONGATE_API_PORT": str(blind_port),
            "SANCTIONGATE_INDEX_PREFIX": prefix,
        },
    )
    no_redis = Process(
        f"api-noredis-{stack.ns}",
        ["api"],
        {
            **stack.env,
            "SANCTIONGATE_API_PORT": str(dead_port),
            "SANCTIONGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        },
    )
    body = check_body(org(uscc()))
    try:
        wait_http(f"http://127.0.0.1:{blind_port}/healthz", 60, proc=blind)
        wait_http(f"http://127.0.0.1:{dead_port}/healthz", 60, proc=no_redis)
        blind_url, dead_url = f"http://127.0.0.1:{blind_port}", f"http://127.0.0.1:{dead_port}"
        async with httpx.AsyncClient(headers=stack.headers(), timeout=10) as client:
            # never built (or wiped)
            for path in ("/v1/checks", "/v1/checks/batch"):
                response = await client.post(blind_url + path, json=body)
                assert_error(response, 503, "index_not_built")
                assert response.headers["retry-after"]
            assert_error(await client.get(f"{blind_url}/readyz"), 503, "index_not_built")
            assert_error(await client.get(f"{blind_url}/v1/subjects/{uscc()}"), 503)

            # rebuilding
            await redis.hset(Layout(prefix=prefix).meta, mapping={"state": "rebuilding"})
            response = await client.post(f"{blind_url}/v1/checks", json=body)
            assert_error(response, 503, "index_not_built")
            await redis.hset(Layout(prefix=prefix).meta, mapping={"gen": "g1"})
            response = await client.post(f"{blind_url}/v1/checks", json=body)
            assert_error(response, 503, "index_rebuilding")
            assert_error(await client.get(f"{blind_url}/readyz"), 503, "index_rebuilding")

            # Redis down
            for path in ("/v1/checks", "/v1/checks/batch"):
                response = await client.post(dead_url + path, json=body)
                assert_error(response, 503, "redis_unavailable")
            assert_error(await client.get(f"{dead_url}/readyz"), 503, "redis_unavailable")
            assert_error(await client.get(f"{dead_url}/v1/index/status"), 503)
            assert_error(await client.get(f"{dead_url}/v1/subjects/{uscc()}"), 503)
    finally:
        blind.stop()
        no_redis.stop()
        await redis.delete(Layout(prefix=prefix).meta)


# --- the OpenAPI document -------------------------------------------------------------------


async def test_live_openapi_document_is_the_committed_one(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as anonymous:
        live = (await anonymous.get("/openapi.json")).json()
    committed = json.loads((SCHEMAS / "openapi.json").read_text(encoding="utf-8"))
    assert live == committed, "schemas/openapi.json drifted from the server"
    check = live["paths"]["/v1/checks"]["post"]
    for status in ("400", "401", "403", "409", "413", "422", "503"):
        assert check["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    assert check["security"] == [{"HTTPBearer": []}]


# --- schemathesis against the live server ---------------------------------------------------

SCHEMATHESIS_CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_schemathesis_finds_no_server_error_and_no_nonconforming_response(
    stack: Stack, tmp_path: Path
) -> None:
    """Generated and mutated requests against every operation of the live document.

    Checks what the server answers (never 5xx; every status, content type and body declared).
    Not checked: whether the server accepts every schema-valid request, since no JSON Schema
    can express an identifier's check character or a feedback's reason-when-overridden rule.
    """
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{stack.api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {stack.token}",
            "--checks",
            SCHEMATHESIS_CHECKS,
            "--max-examples",
            "50",
            "--seed",
            "20261123",
            "--request-timeout",
            "10",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # its example database and reports stay out of the work tree
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "0 generated" not in run.stdout


async def test_broker_down_checks_still_answer_and_feedback_is_503(
    stack: Stack, listed: Listed
) -> None:
    """The audit trail buffers while the broker is away; feedback cannot, so it says so."""
    port = free_port()
    no_kafka = Process(
        f"api-nokafka-{stack.ns}",
        ["api"],
        {
            **stack.env,
            "SANCTIONGATE_API_PORT": str(port),
            "SANCTIONGATE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        },
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc=no_kafka)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=stack.headers(), timeout=20
        ) as client:
            decision = await client.post("/v1/checks", json=check_body(org(listed.code)))
            assert decision.status_code == 200 and decision.json()["decision"] == "block"
            response = await client.post("/v1/feedback", json=feedback("fb-no-broker"))
            assert_error(response, 503, "kafka_unavailable")
    finally:
        no_kafka.stop()


# --- the protocol's checks answer as the framework's way in does ----------------------------


class TwoWays:
    """The real app served in-process by the API's protocol: each request sent as a plain
    POST (which the protocol answers itself) and chunked (which it leaves to uvicorn, the ASGI
    app and FastChecks), counting which way each went."""

    def __init__(self, server, token: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
        self.server, self.token = server, token
        self.fast = self.framework = 0
        answer, answer_many, call = FastChecks.answer, FastChecks.answer_many, FastChecks.__call__

        async def counted_answer(checks: FastChecks, *args):  # type: ignore[no-untyped-def]
            self.fast += 1
            return await answer(checks, *args)

        async def counted_wave(checks: FastChecks, requests):  # type: ignore[no-untyped-def]
            self.fast += len(requests)
            return await answer_many(checks, requests)

        async def counted_call(checks: FastChecks, *args):  # type: ignore[no-untyped-def]
            self.framework += 1
            return await call(checks, *args)

        monkeypatch.setattr(FastChecks, "answer", counted_answer)
        monkeypatch.setattr(FastChecks, "answer_many", counted_wave)
        monkeypatch.setattr(FastChecks, "__call__", counted_call)

    async def send(self, path: str, body: bytes, **options: object) -> Reply:
        options.setdefault("token", self.token)
        client = await Connection.open(self.server)
        try:
            await client.send(post(path, body, **options))  # type: ignore[arg-type]
            return await client.reply()
        finally:
            client.close()

    async def both(self, path: str, body: bytes, **options: object) -> tuple[Reply, Reply]:
        """(the protocol's answer, the framework path's answer); each went its way."""
        fast, framework = self.fast, self.framework
        mine = await self.send(path, body, **options)
        theirs = await self.send(path, body, chunked=True, **options)
        assert (self.fast, self.framework) == (fast + 1, framework + 1), "a request went astray"
        return mine, theirs


@pytest_asyncio.fixture(scope="module")
async def in_process(stack: Stack, listed: Listed):  # type: ignore[no-untyped-def]
    async with serving(create_app(stack.settings)) as server:
        yield server


@pytest.fixture
def two_ways(in_process, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> TwoWays:  # type: ignore[no-untyped-def]
    return TwoWays(in_process, stack.token, monkeypatch)


def same_error(mine: Reply, theirs: Reply, status: int) -> None:
    assert mine.status == status, mine.body
    assert (mine.head, mine.body) == (theirs.head, theirs.body)


def same_decision(mine: Reply, theirs: Reply) -> dict:
    """Equal but for what every decision has of its own: request id, time, the index's lag."""
    assert mine.status == theirs.status == 200, (mine.body, theirs.body)
    assert re.sub(rb"content-length: \d+", b"", mine.head) == re.sub(
        rb"content-length: \d+", b"", theirs.head
    )
    own = ("request_id", "decided_at")
    answers = [orjson.loads(reply.body) for reply in (mine, theirs)]
    for answer in answers:
        answer["as_of"].pop("lag_seconds")
    assert {k: v for k, v in answers[0].items() if k not in own} == {
        k: v for k, v in answers[1].items() if k not in own
    }
    return answers[0]


@pytest.mark.parametrize(
    ("case", "raw", "status", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_bad_input_gets_the_same_answer_both_ways(
    two_ways: TwoWays, case: str, raw: bytes, status: int, field: str | None
) -> None:
    for path in ("/v1/checks", "/v1/checks/batch"):
        same_error(*await two_ways.both(path, raw), status)


async def test_decisions_are_the_same_both_ways(two_ways: TwoWays, listed: Listed) -> None:
    clean = orjson.dumps(check_body(org(uscc(), "清白公司")))
    assert same_decision(*await two_ways.both("/v1/checks", clean))["decision"] == "pass"
    hit = orjson.dumps(check_body(org(uscc()), org(listed.code), person(listed.rep)))
    mine, theirs = await two_ways.both("/v1/checks", hit)
    assert same_decision(mine, theirs)["decision"] == "block"
    assert listed.rep.encode() not in mine.body + theirs.body
    batch = orjson.dumps(check_body(org(uscc()), org(listed.code), person(listed.rep)))
    results = same_decision(*await two_ways.both("/v1/checks/batch", batch))["results"]
    assert [r["decision"] for r in results] == ["pass", "block", "block"]


async def test_keys_and_scopes_are_the_same_both_ways(two_ways: TwoWays, stack: Stack) -> None:
    body = orjson.dumps(check_body(org(uscc())))
    for token in (None, "sgk_nope_nope", two_ways.token[:-2] + "xx"):
        mine, theirs = await two_ways.both("/v1/checks", body, token=token)
        same_error(mine, theirs, 401)
        assert mine.headers[b"www-authenticate"] == b"Bearer"
    _, scoped = scoped_token(stack, "市财政局", ["bidding"])
    for path in ("/v1/checks", "/v1/checks/batch"):
        same_error(*await two_ways.both(path, body, token=scoped), 403)
    many = orjson.dumps(check_body(*[org(uscc(), f"公司{i}") for i in range(10_001)]))
    same_error(*await two_ways.both("/v1/checks/batch", many), 422)
    for path in ("/v1/checks", "/v1/checks/batch"):
        same_error(*await two_ways.both(path, b""), 422)  # no body at all


async def test_an_idempotent_check_replays_the_same_bytes_either_way(
    two_ways: TwoWays, listed: Listed
) -> None:
    for first, then in ((False, True), (True, False)):
        body = orjson.dumps(check_body(org(listed.code), request_id=f"two-{uuid.uuid4().hex}"))
        decided = await two_ways.send("/v1/checks", body, chunked=first)
        replayed = await two_ways.send("/v1/checks", body, chunked=then)
        assert decided.status == replayed.status == 200
        assert (decided.head, decided.body) == (replayed.head, replayed.body)
        other = orjson.loads(body)
        other["subjects"] = [org(uscc())]
        same_error(*await two_ways.both("/v1/checks", orjson.dumps(other)), 409)
    assert (two_ways.fast, two_ways.framework) == (4, 4)


async def test_another_content_type_is_left_to_the_framework(two_ways: TwoWays) -> None:
    body = orjson.dumps(check_body(org(uscc())))
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        mine = await two_ways.send("/v1/checks", body, content_type=content_type)
        theirs = await two_ways.send("/v1/checks", body, content_type=content_type, chunked=True)
        assert (mine.status, mine.head, mine.body) == (theirs.status, theirs.head, theirs.body)
    assert two_ways.fast == 0 and two_ways.framework == 4
    assert same_decision(*await two_ways.both("/v1/checks", body, content_type=None))


async def test_a_blind_index_is_503_the_same_both_ways(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    blind = stack.settings.model_copy(update={"index_prefix": f"{stack.settings.index_prefix}b2"})
    async with serving(create_app(blind)) as server:
        two_ways = TwoWays(server, stack.token, monkeypatch)
        for path in ("/v1/checks", "/v1/checks/batch"):
            mine, theirs = await two_ways.both(path, orjson.dumps(check_body(org(uscc()))))
            same_error(mine, theirs, 503)
            assert mine.headers[b"retry-after"] == b"1"
            assert orjson.loads(mine.body)["error"]["code"] == "index_not_built"


async def test_checks_answered_together_answer_as_each_alone(
    in_process, stack: Stack, listed: Listed, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The protocol answers the checks read in one turn together (FastChecks.answer_many): each
    gets what it gets alone, whatever else is in its wave, errors included."""
    waves: list[int] = []
    answer_many = FastChecks.answer_many

    async def counted(checks: FastChecks, requests):  # type: ignore[no-untyped-def]
        waves.append(len(requests))
        return await answer_many(checks, requests)

    monkeypatch.setattr(FastChecks, "answer_many", counted)
    _, narrow = scoped_token(stack, "窄范围部门", ["bidding"])
    requests: list[tuple[bytes, str | None]] = [
        (orjson.dumps(check_body(org(listed.code))), stack.token),  # block
        (orjson.dumps(check_body(org(uscc()))), stack.token),  # pass
        (orjson.dumps(check_body(person(listed.rep))), stack.token),  # by the related person
        (orjson.dumps(check_body(org(with_bad_check(uscc())))), stack.token),  # 422
        (orjson.dumps(check_body(org(listed.code))), narrow),  # 403: out of the key's scope
        (orjson.dumps(check_body(org(listed.code))), None),  # 401
        (b"{not json", stack.token),  # 400
        (orjson.dumps(check_body(org(uscc()), request_id=f"w-{uuid.uuid4().hex}")), stack.token),
        (orjson.dumps(check_body(org(listed.code), org(uscc()))), stack.token),
    ]
    alone = []
    for body, token in requests:
        client = await Connection.open(in_process)
        await client.send(post("/v1/checks", body, token=token))
        alone.append(await client.reply())
        client.close()
    waves.clear()
    clients = [await Connection.open(in_process) for _ in requests]
    for client, (body, token) in zip(clients, requests, strict=True):
        client.writer.write(post("/v1/checks", body, token=token))  # all before the server reads
    together = [await client.reply() for client in clients]
    for client in clients:
        client.close()
    assert max(waves) > 1, waves  # some were answered together
    for mine, theirs in zip(together, alone, strict=True):
        if theirs.status == 200:
            same_decision(mine, theirs)
        else:
            same_error(mine, theirs, theirs.status)
    assert [r.status for r in together] == [200, 200, 200, 422, 403, 401, 400, 200, 200]
    decisions = [orjson.loads(r.body)["decision"] for r in together if r.status == 200]
    assert decisions == ["block", "pass", "block", "pass", "block"]

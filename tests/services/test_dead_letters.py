"""Issue 3, item 5: nothing that arrives is lost — it is applied, or it lands on the dead-letter
topic with its exact bytes and a reason, a counter moves, and the agent goes on.

Well-formed identifiers that fail their check character are not bad input: they are kept,
flagged on the entry and counted per source.
"""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import eventually
from tests.ids import uscc, with_bad_check

from .conftest import Stack, list_change
from .support import decide, fresh_id_number, metric, org, person, read_topic

pytestmark = pytest.mark.services


def _good_change(entry_id: str) -> dict:
    return list_change(
        entry_id,
        1,
        subject=org(uscc(), "死信测试公司"),
        related_persons=[
            {"role": "legal_representative", "name": "赵某", "id_number": fresh_id_number()}
        ],
    )


def _mutated(entry_id: str, mutate) -> bytes:  # type: ignore[no-untyped-def]
    message = copy.deepcopy(_good_change(entry_id))
    mutate(message)
    return orjson.dumps(message)


def _set(path: str, value: object):  # type: ignore[no-untyped-def]
    def mutate(message: dict) -> None:
        *parents, last = path.split(".")
        node = message
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value

    return mutate


def _drop(field: str):  # type: ignore[no-untyped-def]
    def mutate(message: dict) -> None:
        del message[field]

    return mutate


# (key, raw value, expected error code, expected error path)
LIST_CHANGE_FAULTS: list[tuple[str, bytes | None, str, str | None]] = [
    ("dl-not-json", b"{not json", "invalid_json", None),
    ("dl-not-utf8", b"\xff\xfe\x00garbage", "invalid_json", None),
    ("dl-not-object", b"[1, 2, 3]", "invalid_json", None),
    ("dl-tombstone", None, "empty_value", None),
    (
        "dl-schema",
        _mutated("dl-schema", _set("schema", "list_change/v9")),
        "unknown_schema",
        "schema",
    ),
    ("dl-no-schema", _mutated("dl-no-schema", _drop("schema")), "unknown_schema", "schema"),
    ("dl-op", _mutated("dl-op", _set("op", "delete")), "schema_violation", "op"),
    ("dl-extra", _mutated("dl-extra", _set("colour", "red")), "schema_violation", "colour"),
    ("dl-version", _mutated("dl-version", _set("version", "7")), "schema_violation", "version"),
    ("dl-no-entry", _mutated("dl-no-entry", _drop("entry")), "schema_violation", None),
    (
        "dl-uscc-length",
        _mutated("dl-uscc-length", _set("entry.subject.uscc", "91110105MA01")),
        "malformed_identifier",
        "entry.subject.uscc",
    ),
    (
        "dl-uscc-alphabet",
        _mutated("dl-uscc-alphabet", _set("entry.subject.uscc", "91110105MA01ZZZZIO")),
        "malformed_identifier",
        "entry.subject.uscc",
    ),
    (
        "dl-birth",
        _mutated("dl-birth", _set("entry.related_persons.0.id_number", "110105198002300012")),
        "malformed_identifier",
        "entry.related_persons.0.id_number",
    ),
    (
        "dl-date",
        _mutated("dl-date", _set("entry.effective_from", "2024-02-30")),
        "invalid_date",
        "entry.effective_from",
    ),
    (
        "dl-window",
        _mutated("dl-window", _set("entry.effective_until", "2023-12-31")),
        "invalid_date",
        "entry",
    ),
    (
        "dl-event-time",
        _mutated("dl-event-time", _set("event_time", "yesterday")),
        "invalid_date",
        "event_time",
    ),
    # Filed under another key than its entry_id: compaction would keep or drop the wrong one.
    ("dl-key", orjson.dumps(_good_change("dl-key-elsewhere")), "key_mismatch", "entry_id"),
]


async def _rejected_for(stack: Stack, keys: set[str]) -> dict[str, dict]:
    """The Rejected values on the dead-letter topic, by the key of the message they carry."""

    def all_there(records) -> bool:  # type: ignore[no-untyped-def]
        return keys <= {r.key.decode() for r in records if r.key}

    records = await read_topic(stack, stack.settings.topic_rejected, all_there)
    return {
        r.key.decode(): orjson.loads(r.value)
        for r in records
        if r.key and r.key in {k.encode() for k in keys}
    }


async def test_every_fault_in_a_list_change_is_dead_lettered_and_ingest_goes_on(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    topic = stack.settings.topic_list_changes
    codes = {code for _, _, code, _ in LIST_CHANGE_FAULTS}
    before = {
        code: await metric(
            stack.worker_url, "sanctiongate_rejected_total", source_topic=topic, code=code
        )
        for code in codes
    }
    sent = {}
    for key, raw, _, _ in LIST_CHANGE_FAULTS:
        sent[key] = await producer.send_and_wait(topic, key=key.encode(), value=raw)
    good = _good_change("dl-good-after")
    await producer.send_and_wait(topic, key=b"dl-good-after", value=orjson.dumps(good))

    # The agent went on: the good message after all the bad ones is applied.
    async def applied() -> bool:
        d = await decide(http, "bidding", good["entry"]["subject"])
        return d["decision"] == "block"

    await eventually(applied)

    rejected = await _rejected_for(stack, set(sent))
    for key, raw, code, path in LIST_CHANGE_FAULTS:
        letter = rejected[key]
        assert letter["schema"] == "rejected/v1"
        assert letter["source_topic"] == topic
        assert (letter["partition"], letter["offset"]) == (sent[key].partition, sent[key].offset)
        assert letter["key"] == key
        assert base64.b64decode(letter["raw"]) == (raw or b""), key
        assert letter["error"]["code"] == code, (key, letter["error"])
        assert letter["error"]["path"] == path, (key, letter["error"])
        assert letter["error"]["message"]
        assert datetime.fromisoformat(letter["rejected_at"]) <= datetime.now(UTC)
        # The reason never repeats a personal ID number (the raw bytes are the evidence).
        assert "110105198002300012" not in orjson.dumps(letter["error"]).decode()

    for code in codes:
        expected = sum(1 for _, _, c, _ in LIST_CHANGE_FAULTS if c == code)
        after = await metric(
            stack.worker_url, "sanctiongate_rejected_total", source_topic=topic, code=code
        )
        assert after - before[code] == expected, code
    assert await metric(
        stack.worker_url, "sanctiongate_list_changes_total", op="unknown", result="rejected"
    ) >= len(LIST_CHANGE_FAULTS)


async def test_a_bad_measure_is_dead_lettered_and_the_next_one_applies(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    topic = stack.settings.topic_measures
    good = {
        "schema": "measure/v1",
        "measure_id": "DL-M-1",
        "title": "测试：限制参与财政补贴申报",
        "effect": "block",
        "mandatory": True,
        "list_types": ["dead_letter_test_list"],
        "matter_categories": ["tax_benefits"],
        "roles": ["subject"],
        "implementing_departments": ["财政部门"],
        "legal_basis": "测试依据",
    }
    faults = {
        "dlm-not-json": (b"\x00\x01", "invalid_json", None),
        "dlm-schema": (orjson.dumps({**good, "schema": "measure/v0"}), "unknown_schema", "schema"),
        "dlm-effect": (orjson.dumps({**good, "effect": "forbid"}), "schema_violation", "effect"),
        "dlm-roles": (orjson.dumps({**good, "roles": []}), "schema_violation", "roles"),
        # Its tombstone (keyed DL-M-9) would never compact this one away.
        "dlm-key": (orjson.dumps({**good, "measure_id": "DL-M-9"}), "key_mismatch", "measure_id"),
    }
    before = await metric(stack.worker_url, "sanctiongate_rejected_total", source_topic=topic)
    sent = {}
    for key, (raw, _, _) in faults.items():
        sent[key] = await producer.send_and_wait(topic, key=key.encode(), value=raw)
    await producer.send_and_wait(topic, key=b"DL-M-1", value=orjson.dumps(good))
    company = org(uscc(), "措施死信公司")
    await producer.send_and_wait(
        stack.settings.topic_list_changes,
        key=b"dlm-entry",
        value=orjson.dumps(
            list_change("dlm-entry", 1, subject=company, list_type="dead_letter_test_list")
        ),
    )

    async def blocked() -> bool:
        return (await decide(http, "tax_benefits", company))["decision"] == "block"

    await eventually(blocked)
    rejected = await _rejected_for(stack, set(faults))
    for key, (raw, code, path) in faults.items():
        letter = rejected[key]
        assert letter["source_topic"] == topic
        assert (letter["partition"], letter["offset"]) == (sent[key].partition, sent[key].offset)
        assert base64.b64decode(letter["raw"]) == raw
        assert (letter["error"]["code"], letter["error"]["path"]) == (code, path), key
    after = await metric(stack.worker_url, "sanctiongate_rejected_total", source_topic=topic)
    assert after - before == len(faults)


async def test_a_message_too_large_to_echo_is_still_dead_lettered(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    """Base64 makes the dead letter a third larger than the message: it must still get out,
    and must not wedge the partition behind it."""
    topic = stack.settings.topic_list_changes
    big = b"{" + b"x" * 900_000
    meta = await producer.send_and_wait(topic, key=b"dl-huge", value=big)
    good = _good_change("dl-after-huge")
    await producer.send_and_wait(topic, key=b"dl-after-huge", value=orjson.dumps(good))

    async def applied() -> bool:
        return (await decide(http, "bidding", good["entry"]["subject"]))["decision"] == "block"

    await eventually(applied)
    letter = (await _rejected_for(stack, {"dl-huge"}))["dl-huge"]
    assert (letter["partition"], letter["offset"]) == (meta.partition, meta.offset)
    assert letter["error"]["code"] == "invalid_json"
    assert base64.b64decode(letter["raw"]) == big


async def test_identifiers_failing_their_check_are_kept_flagged_and_counted(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient
) -> None:
    source = "court:anomaly-test"
    code = with_bad_check(uscc())
    rep = with_bad_check(fresh_id_number())
    change = list_change(
        "anomaly-1",
        1,
        subject=org(code, "校验位异常公司"),
        related_persons=[{"role": "legal_representative", "name": "钱某", "id_number": rep}],
    )
    change["source"] = source
    labels = {"source": source}
    before_uscc = await metric(
        stack.worker_url, "sanctiongate_identifier_anomalies_total", kind="uscc", **labels
    )
    before_id = await metric(
        stack.worker_url, "sanctiongate_identifier_anomalies_total", kind="id_number", **labels
    )
    await producer.send_and_wait(
        stack.settings.topic_list_changes, key=b"anomaly-1", value=orjson.dumps(change)
    )
    # Delivered twice: counted once (the duplicate is stale).
    await producer.send_and_wait(
        stack.settings.topic_list_changes, key=b"anomaly-1", value=orjson.dumps(change)
    )

    async def kept() -> dict | None:
        # 422 until the listing is applied: a failing code is accepted once exactly it is listed.
        response = await http.post(
            "/v1/checks",
            json={"matter": {"category": "bidding"}, "subjects": [org(code, "校验位异常公司")]},
        )
        d = response.json()
        return d if response.status_code == 200 and d["decision"] == "block" else None

    await eventually(kept)  # exactly that code is listed: the check accepts it and blocks
    rep_check = await decide(http, "high_consumption", person(rep, "钱某"))
    assert rep_check["decision"] == "block"

    history = (await http.get(f"/v1/subjects/{code}")).json()
    [entry] = history["active"]
    assert entry["identifier_anomalies"] == [
        "entry.subject.uscc",
        "entry.related_persons[0].id_number",
    ]
    # Another code failing its check is a typing slip at the counter: 422, not a pass.
    slip = await http.post(
        "/v1/checks",
        json={"matter": {"category": "bidding"}, "subjects": [org(with_bad_check(uscc()))]},
    )
    assert slip.status_code == 422
    assert slip.json()["error"]["code"] == "identifier_check_failed"

    async def counted() -> bool:
        now_uscc = await metric(
            stack.worker_url, "sanctiongate_identifier_anomalies_total", kind="uscc", **labels
        )
        now_id = await metric(
            stack.worker_url, "sanctiongate_identifier_anomalies_total", kind="id_number", **labels
        )
        return (now_uscc - before_uscc, now_id - before_id) == (1, 1)

    await eventually(counted, timeout=5)
    await producer.send_and_wait(
        stack.settings.topic_list_changes, key=b"anomaly-marker", value=b"not json"
    )
    rejected = await read_topic(
        stack,
        stack.settings.topic_rejected,
        lambda records: any(r.key == b"anomaly-marker" for r in records),
    )
    assert not any(r.key == b"anomaly-1" for r in rejected), "a kept listing is not a dead letter"

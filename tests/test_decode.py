"""The shared decoder names what is wrong with a message of any input topic, and where.

The services tests prove the list-change and measure agents dead-letter with these reasons;
approval events and feedback go through the same :func:`decode`, checked here without a broker.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from sanctiongate.domain.models import ApprovalEvent, Feedback, ListChange, Measure
from sanctiongate.streams.deadletter import (
    MAX_ECHOED_RAW_BYTES,
    BadMessage,
    decode,
    rejected_record,
)
from tests.ids import id_number, uscc

NOW = datetime.now(UTC).isoformat()

APPROVAL = {
    "schema": "approval_event/v1",
    "event_type": "submitted",
    "request_id": "req-1",
    "department": "市场监管局",
    "matter": {"category": "market_entry"},
    "subjects": [
        {"kind": "legal_person", "name": "示例公司", "uscc": uscc(), "role": "applicant"},
        {"kind": "natural_person", "name": "张三", "id_number": id_number()},
    ],
    "occurred_at": NOW,
}
FEEDBACK = {
    "schema": "feedback/v1",
    "request_id": "req-1",
    "department": "市场监管局",
    "outcome": "overridden",
    "measure_ids": ["NBL-2024-018"],
    "reason": "法院已出具解除限制决定书",
    "operator": "clerk-7",
    "at": NOW,
}


def with_(message: dict, path: str, value: object) -> bytes:
    copy = orjson.loads(orjson.dumps(message))
    *parents, last = path.split(".")
    node = copy
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return orjson.dumps(copy)


APPROVAL_TOPIC = (ApprovalEvent, "approval_event/v1")
FEEDBACK_TOPIC = (Feedback, "feedback/v1")
BAD_ID = "110105199913450011"  # month 13: a malformed resident ID number


def approval(path: str, value: object) -> bytes:
    return with_(APPROVAL, path, value)


def feedback(path: str, value: object) -> bytes:
    return with_(FEEDBACK, path, value)


CASES = [
    # model, schema, raw, code, path
    (*APPROVAL_TOPIC, b"\x80\x81", "invalid_json", None),
    (*APPROVAL_TOPIC, b'"a string"', "invalid_json", None),
    (*APPROVAL_TOPIC, approval("schema", "feedback/v1"), "unknown_schema", "schema"),
    (*APPROVAL_TOPIC, approval("event_type", "paused"), "schema_violation", "event_type"),
    (*APPROVAL_TOPIC, approval("subjects", []), "schema_violation", "subjects"),
    (
        *APPROVAL_TOPIC,
        approval("subjects.0.uscc", "123"),
        "malformed_identifier",
        "subjects.0.uscc",
    ),
    (
        *APPROVAL_TOPIC,
        approval("subjects.1.id_number", BAD_ID),
        "malformed_identifier",
        "subjects.1.id_number",
    ),
    (
        *APPROVAL_TOPIC,
        approval("occurred_at", "2024-13-01T00:00:00+08:00"),
        "invalid_date",
        "occurred_at",
    ),
    (*FEEDBACK_TOPIC, b"", "invalid_json", None),
    (*FEEDBACK_TOPIC, feedback("schema", KeyError), "unknown_schema", "schema"),
    (*FEEDBACK_TOPIC, feedback("reason", KeyError), "schema_violation", None),
    (*FEEDBACK_TOPIC, feedback("outcome", "ignored"), "schema_violation", "outcome"),
    (*FEEDBACK_TOPIC, feedback("at", "2024-02-30T10:00:00+08:00"), "invalid_date", "at"),
    (Measure, "measure/v1", b"null", "invalid_json", None),
    (ListChange, "list_change/v1", None, "empty_value", None),
]


@pytest.mark.parametrize(("model", "schema", "raw", "code", "path"), CASES)
def test_each_fault_is_named_with_its_path(model, schema, raw, code, path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadMessage) as caught:
        decode(raw, model, schema)
    assert (caught.value.error.code, caught.value.error.path) == (code, path)
    assert caught.value.error.message


def test_the_good_messages_decode() -> None:
    assert decode(orjson.dumps(APPROVAL), ApprovalEvent, "approval_event/v1").request_id == "req-1"
    assert decode(orjson.dumps(FEEDBACK), Feedback, "feedback/v1").outcome == "overridden"


GOOD = [
    (orjson.dumps(APPROVAL), ApprovalEvent, "approval_event/v1"),
    (approval("subjects.0.uscc", " " + uscc().lower() + " "), ApprovalEvent, "approval_event/v1"),
    (approval("matter.code", "A-1"), ApprovalEvent, "approval_event/v1"),
    (approval("occurred_at", "2024-02-29T23:59:59.5+08:00"), ApprovalEvent, "approval_event/v1"),
    (orjson.dumps(FEEDBACK), Feedback, "feedback/v1"),
]


@pytest.mark.parametrize(("raw", "model", "schema"), GOOD)
def test_decoding_straight_from_json_gives_what_the_dict_path_gives(raw, model, schema) -> None:  # type: ignore[no-untyped-def]
    # decode() lets pydantic parse the bytes; the result must be what validating orjson's
    # dicts (the path that names the faults) gives.
    assert decode(raw, model, schema) == model.model_validate(orjson.loads(raw))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (orjson.dumps(APPROVAL).replace(b"req-1", b"req-\\ud800"), "invalid_json"),  # surrogate
        (orjson.dumps(APPROVAL).replace(b"req-1", b"req-\xff"), "invalid_json"),  # not UTF-8
        (orjson.dumps(APPROVAL)[:-1] + b', "schema": "feedback/v1"}', "unknown_schema"),
    ],
)
def test_what_the_dict_path_refuses_is_refused(raw: bytes, code: str) -> None:
    with pytest.raises(BadMessage) as caught:
        decode(raw, ApprovalEvent, "approval_event/v1")
    assert caught.value.error.code == code


def test_a_reason_never_repeats_a_personal_id_number() -> None:
    with pytest.raises(BadMessage) as caught:
        decode(approval("subjects.1.id_number", BAD_ID), *APPROVAL_TOPIC)
    assert BAD_ID not in caught.value.error.model_dump_json()


def test_a_dead_letter_keeps_the_exact_bytes_and_cuts_only_the_oversized() -> None:
    error = BadMessage("invalid_json", "not UTF-8 JSON").error
    raw = b"\x00\xff{" * 10
    letter = rejected_record("t", 2, 41, b"k\xff", raw, error)
    assert base64.b64decode(letter.raw) == raw
    assert (letter.partition, letter.offset, letter.key) == (2, 41, "k\ufffd")
    huge = b"x" * (MAX_ECHOED_RAW_BYTES + 10)
    cut = rejected_record("t", 0, 0, None, huge, error)
    assert base64.b64decode(cut.raw) == huge[:MAX_ECHOED_RAW_BYTES]
    assert "cut" in cut.error.message and str(len(huge)) in cut.error.message

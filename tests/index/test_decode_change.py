"""The ingest's fast decode (pydantic straight from the bytes) gives what the shared decoder
gives: the same ListChange for a good message, the same dead-letter reason for a bad one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings

from sanctiongate.domain.models import ListChange
from sanctiongate.streams.deadletter import BadMessage, decode
from sanctiongate.streams.rebuild import decode_change

from .test_records import upserts


def _outcome(decoder: Any, raw: bytes | None) -> Any:
    try:
        return decoder(raw)
    except BadMessage as bad:
        return bad.error


def _shared(raw: bytes | None) -> ListChange:
    return decode(raw, ListChange, "list_change/v1")


@settings(max_examples=150, deadline=None)
@given(upserts("e-1", 3))
def test_a_good_change_decodes_the_same(message: dict) -> None:
    raw = orjson.dumps(message)
    assert decode_change(raw) == _shared(raw)


# One fault each, on a good message: what the agents must dead-letter (SPEC §6).
FAULTS: dict[str, Any] = {
    "not json": b"{not json",
    "not utf-8": b"\xff\xfe\x00garbage",
    "a list": b"[1, 2]",
    "no value": None,
    "other schema": {"schema": "measure/v1"},
    "no schema": {"schema": None},
    "bad uscc": {"entry.subject.uscc": "91110105X"},
    "bad date": {"entry.effective_from": "2025-02-30"},
    "window": {"entry.effective_until": "1990-01-01"},
    "version as text": {"version": "3"},
    "extra field": {"surprise": 1},
    "upsert without entry": {"entry": None},
    "naive time": {"event_time": "2026-01-01T00:00:00"},
}


@pytest.mark.parametrize("fault", FAULTS)
@settings(max_examples=5, deadline=None)
@given(message=upserts("e-1", 3))
def test_a_bad_change_is_refused_with_the_same_reason(fault: str, message: dict) -> None:
    change = FAULTS[fault]
    if isinstance(change, dict):
        for path, value in change.items():
            *parents, leaf = path.split(".")
            target = message
            for part in parents:
                target = target[part]
            target[leaf] = value
        raw: bytes | None = orjson.dumps(message)
    else:
        raw = change
    expected = _outcome(_shared, raw)
    assert not isinstance(expected, ListChange), fault
    assert _outcome(decode_change, raw) == expected

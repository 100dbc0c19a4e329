"""The API's audit bursts are split by partition as aiokafka's ``send`` would place each record
(by its department key), in order within each partition."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from sanctiongate.api import audit as api_audit
from sanctiongate.api.audit import AuditTrail, _by_partition, audit_dropped_total
from sanctiongate.audit import batch_audit_records
from sanctiongate.keys import ApiKey


def test_a_burst_is_placed_by_key_as_send_would_place_it() -> None:
    departments = ["市财政局", "市场监管局", "bench", "税务局", "公安局", "法院"]
    messages = [(departments[i % 6].encode(), b"%d" % i) for i in range(60)]
    partitions = [0, 1, 2, 3]
    placed = _by_partition(messages, partitions)
    expected: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in messages:
        expected.setdefault(DefaultPartitioner()(key, partitions, partitions), []).append(
            (key, value)
        )
    assert placed == expected and len(placed) > 1


def _batch_response():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from sanctiongate.domain.assembled import assembled
    from sanctiongate.domain.models import AsOf, BatchCheckResponse, BatchResult, Matter

    results = [
        assembled(
            BatchResult,
            {
                "index": i,
                "role": None,
                "kind": "legal_person",
                "name": f"公司{i}",
                "identifier": "91110000100010433L",
                "decision": "pass",
                "hits": [],
                "incentives": [],
            },
        )
        for i in range(3)
    ]
    return BatchCheckResponse(
        request_id="b-1",
        department="财政局",
        matter=Matter(category="bidding"),
        results=results,
        as_of=AsOf(event_time=None, lag_seconds=None),
        decided_at=datetime.now(UTC),
    )


KEY = ApiKey("k1", "财政局", ["*"], "x", "2026-01-01")


def test_a_batchs_records_are_built_when_it_is_answered_and_hold_no_response() -> None:
    """record_batch builds the records at once (the response is not kept for the burst: it
    would outlive the API's collector pause), the same records batch_audit_records makes."""
    import sys
    from datetime import datetime

    trail = AuditTrail(None, "audit")  # type: ignore[arg-type]  # no burst is sent here
    response = _batch_response()
    before = sys.getrefcount(response)
    trail.record_batch(KEY, response)
    assert sys.getrefcount(response) == before
    [records] = trail.pending
    expected = batch_audit_records(
        "财政局", "k1", response, datetime.fromisoformat(records[0]["at"])
    )
    assert records == expected


def test_a_batch_record_that_cannot_be_built_is_counted_and_never_fails_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> list[dict]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api_audit, "batch_audit_records", broken)
    trail = AuditTrail(None, "audit")  # type: ignore[arg-type]
    dropped = audit_dropped_total._value.get()
    trail.record_batch(KEY, _batch_response())
    assert audit_dropped_total._value.get() == dropped + 1
    assert not trail.pending


async def test_a_checks_record_is_built_at_the_burst_as_audit_record_builds_it() -> None:
    from datetime import datetime

    from sanctiongate.api.audit import _records_of
    from sanctiongate.audit import audit_record

    from .domain.test_decision_wire import CHECKS, decide

    trail = AuditTrail(None, "audit")  # type: ignore[arg-type]
    decisions = [await decide(subjects) for subjects in CHECKS[:3]]
    for decision in decisions:
        trail.record(KEY, decision)
    trail.record_replay(KEY, decisions[0].model_dump_json(by_alias=True).encode())
    records = _records_of(trail.pending)
    assert len(records) == 4 and records[3]["replay"] is True  # in the order queued
    for decision, record in zip(decisions, records, strict=False):
        at = datetime.fromisoformat(record["at"])
        assert record == audit_record("check", "财政局", "k1", decision, at)
        assert at.utcoffset() is not None and at.timestamp() > 1.7e9


def test_a_full_queue_drops_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_audit, "QUEUE_LIMIT", 2)
    trail = AuditTrail(None, "audit")  # type: ignore[arg-type]
    dropped = audit_dropped_total._value.get()
    for _ in range(3):
        trail.record_batch(KEY, _batch_response())
    assert len(trail.pending) == 2
    assert audit_dropped_total._value.get() == dropped + 1

"""The audit records of SPEC §5 as built (no broker): a batch's record in parts Kafka takes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from sanctiongate.audit import BATCH_SUBJECTS_PER_RECORD, batch_audit_records
from sanctiongate.domain.assembled import assembled
from sanctiongate.domain.models import AsOf, BatchCheckResponse, BatchResult, Matter

KAFKA_MESSAGE_LIMIT = 1_048_576  # bytes: the broker's and the producer's default
AT = datetime(2026, 6, 1, tzinfo=UTC)


def response(size: int) -> BatchCheckResponse:
    # The largest subject a batch may carry into its record: a 64-character role.
    results = [
        assembled(
            BatchResult,
            {
                "index": i,
                "role": "r" * 64,
                "kind": "individual_business",
                "name": "某" * 300,
                "identifier": "110105********002X",
                "decision": "review",
                "hits": [],
                "incentives": [],
            },
        )
        for i in range(size)
    ]
    return BatchCheckResponse(
        request_id="b-1",
        department="财政局",
        matter=Matter(category="government_procurement"),
        results=results,
        as_of=AsOf(event_time=None, lag_seconds=None),
        decided_at=AT,
    )


def test_a_full_batch_is_cut_into_parts_each_under_kafkas_limit() -> None:
    records = batch_audit_records("财政局", "k1", response(10_000), AT)
    assert len(records) == -(-10_000 // BATCH_SUBJECTS_PER_RECORD)
    assert [(r["part"], r["parts"]) for r in records] == [(k + 1, len(records)) for k in range(5)]
    assert [s["index"] for r in records for s in r["subjects"]] == list(range(10_000))
    assert all(len(orjson.dumps(r)) < KAFKA_MESSAGE_LIMIT / 2 for r in records)
    assert {r["request_id"] for r in records} == {"b-1"}
    assert {r["at"] for r in records} == {AT.isoformat()}
    assert all(r["channel"] == "batch" and r["decision"] is None for r in records)
    assert "某" not in orjson.dumps(records).decode()  # names are not audited


def test_a_small_batch_is_one_record_of_one_part() -> None:
    [record] = batch_audit_records("财政局", "k1", response(3), AT)
    assert (record["part"], record["parts"]) == (1, 1)
    assert [s["index"] for s in record["subjects"]] == [0, 1, 2]
    assert set(record["subjects"][0]) == {"index", "role", "kind", "identifier", "decision"}

"""The approval agent's cheaper ways of writing what it publishes must write exactly what the
plain ways wrote: the decision's bytes, the audit record, the partition a key lands on, and
the check-duration histogram. Each test compares with the reference (pydantic's dump,
aiokafka's partitioner, ``Histogram.observe``), so a divergence fails here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from sanctiongate.audit import audit_record, batch_audit_records, matter_fields, record_at
from sanctiongate.domain.models import (
    Alert,
    BatchCheckResponse,
    Decision,
    MaskedSubject,
    Matter,
    Rejected,
    RejectionError,
)
from sanctiongate.metrics import observe_many
from sanctiongate.streams.deadletter import encode
from sanctiongate.streams.outbox import murmur2, partition_of

from .domain.test_decision_wire import CHECKS, decide

AT = datetime(2026, 6, 1, 3, 4, 5, 123456, tzinfo=UTC)


# --- the decision's bytes --------------------------------------------------------------------


@pytest.mark.parametrize("subjects", CHECKS)
async def test_encode_is_the_json_dump(subjects: list) -> None:
    decision = await decide(subjects)
    assert encode(decision) == decision.model_dump_json(by_alias=True).encode()


@pytest.mark.parametrize(
    "model",
    [
        Alert(
            alert_id="a-1",
            type="approval_despite_block",
            department="财政局",
            request_id="r-1",
            entry_id=None,
            subject=MaskedSubject(kind="legal_person", name="某某公司", identifier=None),
            detail="approved although blocked",
            raised_at=AT.astimezone(timezone(timedelta(hours=8))),
        ),
        Rejected(
            source_topic="approval.events",
            partition=3,
            offset=17,
            key=None,
            raw="e30=",
            error=RejectionError(code="invalid_json", message="not JSON"),
            rejected_at=AT,
        ),
    ],
)
def test_encode_of_other_messages_is_the_json_dump(model: Alert | Rejected) -> None:
    assert encode(model) == model.model_dump_json(by_alias=True).encode()


# --- the audit record ------------------------------------------------------------------------


def reference_audit(channel: str, department: str, result: Decision, at: datetime) -> dict:
    """What audit_record wrote before it was made cheaper (pydantic's dump of the matter)."""
    return {
        "schema": "audit/v1",
        "channel": channel,
        "department": department,
        "key_id": None,
        "request_id": result.request_id,
        "matter": result.matter.model_dump(),
        "subjects": [
            {"role": s.role, "kind": s.kind, "identifier": s.identifier, "decision": s.decision}
            for s in result.subjects
        ],
        "decision": result.decision,
        "replay": False,
        "at": at.isoformat(),
    }


@pytest.mark.parametrize("subjects", CHECKS)
async def test_a_stream_audit_record_is_the_reference(subjects: list) -> None:
    decision = await decide(subjects)
    expected = reference_audit("stream", decision.department, decision, AT)
    assert record_at("stream", decision.department, None, decision, AT.isoformat()) == expected
    assert audit_record("stream", decision.department, None, decision, AT) == expected


async def test_a_batch_audit_record_keeps_its_shape() -> None:
    decision = await decide(CHECKS[0])
    batch = BatchCheckResponse.model_validate(
        {
            **decision.model_dump(include={"request_id", "department", "matter", "as_of"}),
            "decided_at": AT,
            "results": [
                {"index": i, **s.model_dump(), "incentives": []}
                for i, s in enumerate(decision.subjects)
            ],
        }
    )
    [record] = batch_audit_records("财政局", "k-1", batch, AT)
    assert record["matter"] == batch.matter.model_dump() and record["decision"] is None
    assert [s["identifier"] for s in record["subjects"]] == [
        s.identifier for s in decision.subjects
    ]


@given(
    category=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    code=st.none() | st.text(alphabet=st.characters(min_codepoint=0x20), min_size=1),
)
def test_matter_fields_are_the_dump(category: str, code: str | None) -> None:
    matter = Matter.model_construct(category=category, code=code)
    assert matter_fields(matter) == matter.model_dump()


def test_matter_has_the_fields_written_by_hand() -> None:
    # A new field of Matter must be added to matter_fields too.
    assert list(Matter.model_fields) == ["category", "code"]


# --- the partition of a key ------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
@example(b"")
@example(b"r1")
@example(b"abc")
@example(b"\xff\xff\xff\xff\xff")
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.lists(st.integers(0, 200), min_size=1, unique=True))
def test_partition_of_is_the_default_partitioners(key: bytes, partitions: list[int]) -> None:
    partitions.sort()
    assert partition_of(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


# --- the check-duration histogram -----------------------------------------------------------


def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    [family] = histogram.collect()
    return {
        (s.name, s.labels.get("le", "")): s.value
        for s in family.samples
        if not s.name.endswith("_created")  # when each was made, not what it counted
    }


@pytest.mark.parametrize("amount", [0.0, 0.0004, 0.0005, 0.003, 0.25, 2.5, 7.0])
@pytest.mark.parametrize("count", [0, 1, 3, 2000])
def test_observe_many_is_count_observations(amount: float, count: int) -> None:
    registry = CollectorRegistry()
    buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.25, 2.5)
    one_by_one = Histogram("one", "x", buckets=buckets, registry=registry)
    at_once = Histogram("many", "x", buckets=buckets, registry=registry)
    for _ in range(count):
        one_by_one.observe(amount)
    observe_many(at_once, amount, count)
    expected, got = samples(one_by_one), samples(at_once)
    expected = {(name.replace("one", "many"), le): v for (name, le), v in expected.items()}
    sums = [key for key in expected if key[0] == "many_sum"]
    for key in sums:  # rounded once instead of count times
        assert got.pop(key) == pytest.approx(expected.pop(key))
    assert got == expected


def test_observe_many_counts_a_labelled_series() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("d", "x", ["channel"], buckets=(0.1, 1.0), registry=registry)
    observe_many(histogram.labels(channel="stream"), 0.5, 4)
    got = {
        (s.name, s.labels.get("le")): s.value
        for s in histogram.collect()[0].samples
        if s.labels.get("channel") == "stream"
    }
    assert got[("d_bucket", "0.1")] == 0 and got[("d_bucket", "1.0")] == 4
    assert got[("d_count", None)] == 4 and got[("d_sum", None)] == 2.0

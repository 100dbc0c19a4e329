"""Audit records (``audit/v1``, SPEC §5): what every check leaves for an auditor.

One record per check, whichever channel made it (``check``, ``batch`` over HTTP; ``stream`` for
an approval event): who (department, key id), when, which matter, which subjects (identifiers
masked as in the decision), the decision, and whether it was answered from a stored decision
(``replay``). Sending them is the caller's business (the API's AuditTrail, the approval agent).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from .domain.models import BatchCheckResponse, Decision, Matter

AUDIT_SCHEMA = "audit/v1"


# A batch's record is cut into parts of at most this many subjects: Kafka refuses a message
# over 1 MB (the broker's and the producer's default), and 10,000 subjects with long roles take
# ~1.6 MB. A part is at most ~350 kB (every field of a subject is bounded).
BATCH_SUBJECTS_PER_RECORD = 2_000


def audit_record(
    channel: str,
    department: str,
    key_id: str | None,
    result: Decision,
    at: datetime | None = None,
) -> dict:
    """``at``: when the record is written (now unless given)."""
    return record_at(channel, department, key_id, result, (at or datetime.now(UTC)).isoformat())


def record_at(
    channel: str, department: str, key_id: str | None, result: Decision, stamp: str
) -> dict:
    """:func:`audit_record` with its time already written (``at.isoformat()``): a burst of
    stream decisions shares one time, formatted once rather than once per record."""
    subjects = [
        {"role": s.role, "kind": s.kind, "identifier": s.identifier, "decision": s.decision}
        for s in result.subjects
    ]
    return _record(channel, department, key_id, result, subjects, result.decision, stamp)


def batch_audit_records(
    department: str,
    key_id: str | None,
    response: BatchCheckResponse,
    at: datetime | None = None,
) -> list[dict]:
    """The records of a batch (channel ``batch``): one per :data:`BATCH_SUBJECTS_PER_RECORD`
    subjects, numbered ``part`` 1 … ``parts``; each subject carries its ``index`` in the batch."""
    stamp = (at or datetime.now(UTC)).isoformat()
    results = response.results
    parts = max(1, -(-len(results) // BATCH_SUBJECTS_PER_RECORD))
    records = []
    for part in range(parts):
        subjects = [
            {
                "index": r.index,
                "role": r.role,
                "kind": r.kind,
                "identifier": r.identifier,
                "decision": r.decision,
            }
            for r in results[
                part * BATCH_SUBJECTS_PER_RECORD : (part + 1) * BATCH_SUBJECTS_PER_RECORD
            ]
        ]
        record = _record("batch", department, key_id, response, subjects, None, stamp)
        records.append({**record, "part": part + 1, "parts": parts})
    return records


def _record(
    channel: str,
    department: str,
    key_id: str | None,
    result: Decision | BatchCheckResponse,
    subjects: list[dict],
    decision: str | None,
    stamp: str,
) -> dict:
    return {
        "schema": AUDIT_SCHEMA,
        "channel": channel,
        "department": department,
        "key_id": key_id,
        "request_id": result.request_id,
        "matter": matter_fields(result.matter),
        "subjects": subjects,
        "decision": decision,
        "replay": False,
        "at": stamp,
    }


def matter_fields(matter: Matter) -> dict:
    """``matter.model_dump()``, by hand: pydantic's dump cost a fifth of a stream audit record.
    tests/test_stream_wire.py holds it equal to the dump, and to Matter's fields."""
    return {"category": matter.category, "code": matter.code}


def replay_record(department: str, key_id: str | None, decision_json: bytes) -> dict:
    """The record of an idempotent retry answered from the stored decision."""
    decision = orjson.loads(decision_json)
    return {
        "schema": AUDIT_SCHEMA,
        "channel": "check",
        "department": department,
        "key_id": key_id,
        "request_id": decision["request_id"],
        "matter": decision["matter"],
        "subjects": [
            {k: s[k] for k in ("role", "kind", "identifier", "decision")}
            for s in decision["subjects"]
        ],
        "decision": decision["decision"],
        "replay": True,
        "at": datetime.now(UTC).isoformat(),
    }

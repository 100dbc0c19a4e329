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


def audit_record(
    channel: str,
    department: str,
    key_id: str | None,
    result: Decision | BatchCheckResponse,
    at: datetime | None = None,
) -> dict:
    """``at``: when the record is written (now unless given)."""
    return record_at(channel, department, key_id, result, (at or datetime.now(UTC)).isoformat())


def record_at(
    channel: str,
    department: str,
    key_id: str | None,
    result: Decision | BatchCheckResponse,
    stamp: str,
) -> dict:
    """:func:`audit_record` with its time already written (``at.isoformat()``): a burst of
    stream decisions shares one time, formatted once rather than once per record."""
    if isinstance(result, Decision):
        subjects = [
            {"role": s.role, "kind": s.kind, "identifier": s.identifier, "decision": s.decision}
            for s in result.subjects
        ]
        decision = result.decision
    else:
        subjects = [
            {"role": r.role, "kind": r.kind, "identifier": r.identifier, "decision": r.decision}
            for r in result.results
        ]
        decision = None
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

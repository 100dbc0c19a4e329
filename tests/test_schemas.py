"""The JSON Schemas in schemas/ are the code's models: they must not drift, and must agree."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from sanctiongate.domain.models import (
    AsOf,
    Decision,
    ListChange,
    Matter,
    Measure,
    SubjectResult,
)
from sanctiongate.schemas import documents

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(documents()))
def test_committed_schema_matches_the_code(name: str) -> None:
    committed = (SCHEMAS / name).read_text(encoding="utf-8")
    assert committed == documents()[name], f"schemas/{name} drifted: run `sanctiongate schemas`"


def data(name: str) -> bytes:
    return resources.files("sanctiongate").joinpath(f"data/{name}").read_bytes()


def test_sample_list_changes_satisfy_schema_and_model() -> None:
    validator = jsonschema.Draft202012Validator(schema("list_change.v1"))
    for line in data("sample_entries.jsonl").splitlines():
        message = json.loads(line)
        validator.validate(message)
        ListChange.model_validate(message)


def test_shipped_catalogue_satisfies_schema() -> None:
    validator = jsonschema.Draft202012Validator(schema("measure.v1"))
    for item in json.loads(data("measures.json")):
        validator.validate(item)
        Measure.model_validate(item)


def test_schema_and_model_reject_the_same_bad_message() -> None:
    bad = json.loads(data("sample_entries.jsonl").splitlines()[0])
    bad["op"] = "delete"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema("list_change.v1"))
    with pytest.raises(ValidationError):
        ListChange.model_validate(bad)


def test_produced_decision_satisfies_schema() -> None:
    now = datetime.now(UTC)
    decision = Decision(
        request_id="r-1",
        department="市场监管局",
        matter=Matter(category="bidding"),
        decision="pass",
        incentives=[],
        subjects=[
            SubjectResult(
                role="applicant",
                kind="legal_person",
                name="甲",
                identifier=None,
                decision="pass",
                hits=[],
            )
        ],
        as_of=AsOf(event_time=now, lag_seconds=0.0),
        decided_at=now,
    )
    produced = json.loads(decision.model_dump_json(by_alias=True))
    jsonschema.Draft202012Validator(schema("decision.v1")).validate(produced)
    assert produced["schema"] == "decision/v1"

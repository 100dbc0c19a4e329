"""Decisions are assembled from trusted parts without re-validation (the stream decides
thousands a second): what is built must be exactly what validating its own JSON gives back,
and its JSON must be the SPEC §4 shape."""

from __future__ import annotations

import warnings

import orjson
import pytest
from pydantic import BaseModel

from sanctiongate.domain.assembled import assembled
from sanctiongate.domain.models import (
    AppliedMeasure,
    AsOf,
    Decision,
    Hit,
    Subject,
    SubjectResult,
)

from .test_check_assembly import NOBODY, NOW, PROCUREMENT, checker
from .test_decisions import (
    BOSS,
    MODEL,
    OTHER_ORG,
    WATCH,
    WITH_MANAGERS,
    org,
    person,
    stored,
)

ENTRIES = [
    stored("red", list_type=MODEL, polarity="red", ident=OTHER_ORG, name="某某红名单公司"),
    stored("black", related=WITH_MANAGERS),
    stored("watch", list_type=WATCH, polarity="watch", ident=None, name="无名氏"),
]

CHECKS: list[list[Subject]] = [
    [person(NOBODY, name="无名氏"), org(OTHER_ORG, name="某某红名单公司"), person(BOSS), org()],
    [org(OTHER_ORG, name="某某红名单公司")],  # red alone: incentives
    [person(None, name="无名氏")],  # a name-only match
    [person(NOBODY, name="没人")],  # nothing
]


async def decide(subjects: list[Subject]) -> Decision:
    return await checker(*ENTRIES).check(subjects, PROCUREMENT, "财政局", "r-1", NOW)


@pytest.mark.parametrize("subjects", CHECKS)
async def test_a_built_decision_is_what_its_json_validates_to(subjects: list[Subject]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a serializer warning means a field of the wrong type
        decision = await decide(subjects)
        wire = decision.model_dump_json(by_alias=True)
    again = Decision.model_validate_json(wire)
    assert again.model_dump(by_alias=True) == decision.model_dump(by_alias=True)
    assert again.model_dump_json(by_alias=True) == wire


async def test_the_wire_shape_of_a_decision() -> None:
    decision = await decide(CHECKS[0])
    data = orjson.loads(decision.model_dump_json(by_alias=True))
    assert list(data) == [
        "schema",
        "request_id",
        "department",
        "matter",
        "decision",
        "incentives",
        "subjects",
        "as_of",
        "decided_at",
    ]
    assert data["schema"] == "decision/v1" and data["decided_at"] == "2025-06-01T04:00:00Z"
    assert data["matter"] == {"category": "government_procurement", "code": None}
    assert data["as_of"] == {"event_time": "2025-06-01T04:00:00Z", "lag_seconds": None}
    boss = data["subjects"][2]
    assert list(boss) == ["role", "kind", "name", "identifier", "decision", "hits"]
    assert boss["identifier"] == BOSS[:6] + "********" + BOSS[-4:]
    [hit] = boss["hits"]
    assert list(hit) == [
        "entry_id",
        "list_type",
        "polarity",
        "authority",
        "basis",
        "effective_from",
        "effective_until",
        "match",
        "role",
        "disputed",
        "measures",
    ]
    assert hit["match"] == "related_person" and hit["role"] == "legal_representative"
    assert isinstance(hit["effective_from"], str) and hit["measures"]
    assert list(hit["measures"][0]) == [
        "measure_id",
        "title",
        "effect",
        "mandatory",
        "legal_basis",
        "implementing_departments",
    ]
    red = (await decide(CHECKS[1])).incentives
    assert sorted(m.measure_id for m in red) == ["RED-FAST", "RED-GP"]
    [named] = (await decide(CHECKS[2])).subjects
    assert [h.match for h in named.hits] == ["name"]


@pytest.mark.parametrize("model", [Decision, SubjectResult, Hit, AppliedMeasure])
def test_assembled_models_have_no_state_it_would_skip(model: type[BaseModel]) -> None:
    # assembled() sets only what model_construct sets: no private attributes, no post-init
    # hook, no extra fields may appear on the models built with it.
    assert not model.__private_attributes__
    assert not model.__pydantic_post_init__
    assert model.model_config.get("extra") != "allow"


async def test_assembled_equals_validated() -> None:
    decision = await decide(CHECKS[0])
    validated = Decision(**{name: getattr(decision, name) for name in Decision.model_fields})
    assert validated == decision
    assert validated.model_fields_set - {"schema_"} <= decision.model_fields_set
    hit = decision.subjects[3].hits[0]
    assert Hit.model_validate(hit.model_dump()) == hit
    measure = hit.measures[0]
    assert AppliedMeasure.model_validate(measure.model_dump()) == measure


def test_assembled_models_share_one_set_of_field_names_safely() -> None:
    # Every field is set, so one set serves all; an assignment adds a name already there.
    values = {"event_time": None, "lag_seconds": 1.0}
    first, second = assembled(AsOf, dict(values)), assembled(AsOf, dict(values))
    assert first.model_fields_set == second.model_fields_set == set(AsOf.model_fields)
    first.lag_seconds = 2.0
    assert second.model_fields_set == set(AsOf.model_fields)
    assert (
        second.model_dump() == values and first.model_dump(exclude_unset=True)["lag_seconds"] == 2
    )

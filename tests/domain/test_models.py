"""The message contract of SPEC §3 as the models enforce it."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from typing import Any, Literal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError, field_validator, model_validator

from sanctiongate.domain.models import (
    ApprovalEvent,
    Feedback,
    ListChange,
    Measure,
    Model,
    Name,
    RelatedPerson,
    Slug,
    StoredEntry,
    Subject,
    SubjectKind,
    _id_number,
    _strip,
    _uscc,
)

from .reference import full_width, ref_id_number, ref_uscc_check

USCC = "91110000100010433L"
PERSON_ID = ref_id_number("110105", date(1975, 6, 30), 12)
BAD_CHECK_USCC = "91350203M0001QAY9B"
BAD_CHECK_ID = PERSON_ID[:17] + ("0" if PERSON_ID[17] != "0" else "1")


def upsert() -> dict[str, Any]:
    return {
        "schema": "list_change/v1",
        "op": "upsert",
        "entry_id": "court-2025-0001",
        "version": 3,
        "event_time": "2025-03-01T09:30:00+08:00",
        "source": "court",
        "entry": {
            "list_type": "dishonest_judgment_debtor",
            "polarity": "black",
            "subject": {"kind": "legal_person", "name": "北京某某科技有限公司", "uscc": USCC},
            "related_persons": [
                {"role": "legal_representative", "name": "张三", "id_number": PERSON_ID}
            ],
            "authority": "北京市朝阳区人民法院",
            "basis": "(2025)京0105执1234号",
            "effective_from": "2025-03-01",
            "effective_until": "2028-03-01",
            "disputed": False,
        },
    }


def remove() -> dict[str, Any]:
    return {
        "schema": "list_change/v1",
        "op": "remove",
        "entry_id": "court-2025-0001",
        "version": 4,
        "event_time": "2025-06-01T10:00:00+08:00",
        "source": "court",
        "reason": "repaired",
    }


def approval() -> dict[str, Any]:
    return {
        "schema": "approval_event/v1",
        "event_type": "submitted",
        "request_id": "req-1",
        "department": "财政局",
        "matter": {"category": "government_procurement", "code": "ZF-001"},
        "subjects": [
            {"role": "applicant", "kind": "legal_person", "name": "某某公司", "uscc": USCC}
        ],
        "occurred_at": "2025-03-02T10:00:00+08:00",
    }


def feedback() -> dict[str, Any]:
    return {
        "schema": "feedback/v1",
        "request_id": "req-1",
        "department": "财政局",
        "outcome": "enforced",
        "measure_ids": ["NBL-2024-008"],
        "operator": "clerk-7",
        "at": "2025-03-02T11:00:00+08:00",
    }


def measure() -> dict[str, Any]:
    return {
        "schema": "measure/v1",
        "measure_id": "M-1",
        "title": "限制参加政府采购活动",
        "effect": "block",
        "mandatory": True,
        "list_types": ["dishonest_judgment_debtor"],
        "matter_categories": ["government_procurement"],
        "roles": ["subject"],
        "implementing_departments": ["财政部门"],
        "legal_basis": "《政府采购法》第二十二条",
    }


MODELS = {
    "list_change": (ListChange, upsert),
    "list_change_remove": (ListChange, remove),
    "approval_event": (ApprovalEvent, approval),
    "feedback": (Feedback, feedback),
    "measure": (Measure, measure),
}


def patched(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of body with the dotted path set to value (``...`` deletes it)."""
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_valid_messages_parse(name: str) -> None:
    model, body = MODELS[name]
    parsed = model.model_validate(body())
    assert parsed.model_dump(by_alias=True, mode="json")["schema"] == body()["schema"]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("schema", [..., None, "", "other/v1", "list_change/v2"])
def test_schema_field_is_required_and_exact(name: str, schema: Any) -> None:
    model, body = MODELS[name]
    with pytest.raises(ValidationError):
        model.model_validate(patched(body(), "schema", schema))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unknown_fields_are_errors(name: str) -> None:
    model, body = MODELS[name]
    with pytest.raises(ValidationError):
        model.model_validate(patched(body(), "surprise", 1))


@pytest.mark.parametrize(
    ("build", "path", "value"),
    [
        # ListChange
        (upsert, "op", "delete"),
        (upsert, "entry", ...),  # an upsert carries its entry
        (upsert, "entry", None),
        (remove, "reason", ...),  # a remove carries its reason
        (remove, "reason", None),
        (remove, "reason", "forgiven"),
        (upsert, "entry_id", ""),
        (upsert, "version", "4"),
        (upsert, "version", 4.0),
        (upsert, "version", True),
        (upsert, "version", -1),
        (upsert, "event_time", "2025-03-01T09:30:00"),  # no offset
        (upsert, "event_time", "yesterday"),
        (upsert, "source", ...),
        (upsert, "entry.polarity", "grey"),
        (upsert, "entry.list_type", "Dishonest Debtor"),
        (upsert, "entry.subject.kind", "company"),
        (upsert, "entry.subject.name", ""),
        (upsert, "entry.subject.uscc", "91110000I00010433L"),  # malformed
        (upsert, "entry.subject.uscc", "9111000010001043"),
        (upsert, "entry.subject.id_number", PERSON_ID),  # a legal person has no ID number
        (upsert, "entry.related_persons.0.id_number", "110105197502300123"),  # no 30 Feb
        (upsert, "entry.related_persons.0.id_number", "11010519750630"),
        (upsert, "entry.related_persons.0.role", ...),
        (upsert, "entry.effective_from", "2025-02-30"),  # impossible date
        (upsert, "entry.effective_from", ...),
        (upsert, "entry.effective_until", "2025-03-01"),  # empty window
        (upsert, "entry.effective_until", "2024-12-31"),
        (upsert, "entry.disputed", "no"),
        (upsert, "entry.authority", ...),
        (upsert, "entry.basis", ...),
        # ApprovalEvent
        (approval, "event_type", "created"),
        (approval, "subjects", []),
        (approval, "matter", ...),
        (approval, "matter.category", ""),
        (approval, "occurred_at", "2025-03-02T10:00:00"),
        (approval, "subjects.0.uscc", "91110000100010433"),
        (approval, "request_id", ...),
        # Feedback
        (feedback, "outcome", "ignored"),
        (feedback, "outcome", "overridden"),  # without a reason
        (feedback, "at", "2025-03-02T11:00:00"),
        (feedback, "operator", ...),
        # Measure
        (measure, "effect", "ban"),
        (measure, "mandatory", "yes"),
        (measure, "list_types", []),
        (measure, "matter_categories", []),
        (measure, "matter_categories", ["*all*"]),
        (measure, "roles", ["manager"]),
        (measure, "legal_basis", ...),
    ],
)
def test_contract_violations_are_rejected(build: Any, path: str, value: Any) -> None:
    model = {upsert: ListChange, remove: ListChange, approval: ApprovalEvent}.get(build)
    model = model or {feedback: Feedback, measure: Measure}[build]
    with pytest.raises(ValidationError):
        model.model_validate(patched(build(), path, value))


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_overridden_feedback_needs_a_real_reason(reason: Any) -> None:
    body = patched(feedback(), "outcome", "overridden")
    with pytest.raises(ValidationError):
        Feedback.model_validate(patched(body, "reason", reason))
    ok = Feedback.model_validate(patched(body, "reason", "上级批准的例外情形"))
    assert ok.outcome == "overridden"


@pytest.mark.parametrize("outcome", ["enforced", "not_applicable"])
def test_other_feedback_needs_no_reason(outcome: str) -> None:
    assert Feedback.model_validate(patched(feedback(), "outcome", outcome)).reason is None


@pytest.mark.parametrize("reason", ["repaired", "revoked", "expired", "corrected"])
def test_remove_reasons(reason: str) -> None:
    change = ListChange.model_validate(patched(remove(), "reason", reason))
    assert (change.op, change.reason, change.entry) == ("remove", reason, None)


def test_open_ended_listing_and_wildcard_category_are_allowed() -> None:
    change = ListChange.model_validate(patched(upsert(), "entry.effective_until", None))
    assert change.entry is not None and change.entry.effective_until is None
    m = Measure.model_validate(patched(measure(), "matter_categories", ["*"]))
    assert m.matter_categories == ["*"]


def test_identifiers_are_normalised_on_the_way_in() -> None:
    body = patched(upsert(), "entry.subject.uscc", " " + full_width(USCC.lower()) + " ")
    old_style = PERSON_ID[:6] + PERSON_ID[8:17]  # the same person's 15-digit number
    body = patched(body, "entry.related_persons.0.id_number", old_style)
    entry = ListChange.model_validate(body).entry
    assert entry is not None
    assert entry.subject.uscc == USCC
    assert entry.related_persons[0].id_number == PERSON_ID


def test_blank_identifier_means_absent() -> None:
    body = patched(upsert(), "entry.subject.uscc", "  ")
    entry = ListChange.model_validate(body).entry
    assert entry is not None and entry.subject.uscc is None


def test_well_formed_codes_failing_their_check_are_kept_and_flagged() -> None:
    body = patched(upsert(), "entry.subject.uscc", BAD_CHECK_USCC)
    body = patched(body, "entry.related_persons.0.id_number", BAD_CHECK_ID)
    change = ListChange.model_validate(body)
    assert change.entry is not None
    assert change.entry.subject.uscc == BAD_CHECK_USCC
    assert change.entry.identifier_anomalies() == [
        "entry.subject.uscc",
        "entry.related_persons[0].id_number",
    ]
    stored = StoredEntry.from_change(change, None)
    assert stored.identifier_anomalies == change.entry.identifier_anomalies()


def test_valid_entry_has_no_anomalies() -> None:
    change = ListChange.model_validate(upsert())
    assert change.entry is not None and change.entry.identifier_anomalies() == []


@pytest.mark.parametrize("bad", ["110105197502300123", "1101051975063001X", "11010519750630001Z"])
def test_a_rejected_id_number_is_not_echoed_in_the_error(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Subject.model_validate({"kind": "natural_person", "name": "张三", "id_number": bad})
    # Its text is what lands in a log; the API and the dead-letter path drop the input too.
    assert bad not in str(caught.value)
    assert bad not in str(caught.value.errors(include_input=False))


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("natural_person", "uscc", USCC),
        ("legal_person", "id_number", PERSON_ID),
        ("other_org", "id_number", PERSON_ID),
        ("individual_business", "id_number", PERSON_ID),
    ],
)
def test_identifier_must_fit_the_kind(kind: str, field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        Subject.model_validate({"kind": kind, "name": "某某", field: value})


def test_subject_masks_personal_ids_only() -> None:
    person = Subject.model_validate(
        {"kind": "natural_person", "name": "张三", "id_number": PERSON_ID}
    )
    assert person.masked_identifier == PERSON_ID[:6] + "********" + PERSON_ID[-4:]
    assert PERSON_ID not in person.masked().model_dump_json()
    org = Subject.model_validate({"kind": "legal_person", "name": "某某", "uscc": USCC})
    assert org.masked_identifier == USCC


def test_remove_keeps_the_listing_for_history_and_upsert_clears_removal() -> None:
    listed = StoredEntry.from_change(ListChange.model_validate(upsert()), None)
    assert not listed.removed and listed.version == 3
    removed = StoredEntry.from_change(ListChange.model_validate(remove()), listed)
    assert removed.removed and removed.reason == "repaired" and removed.version == 4
    assert removed.entry == listed.entry
    orphan = StoredEntry.from_change(ListChange.model_validate(remove()), None)
    assert orphan.removed and orphan.entry is None
    relisted = StoredEntry.from_change(
        ListChange.model_validate(patched(upsert(), "version", 5)), removed
    )
    assert not relisted.removed and relisted.reason is None


def test_index_keys_cover_subject_and_related_persons() -> None:
    stored = StoredEntry.from_change(ListChange.model_validate(upsert()), None)
    ids, names = stored.index_keys()
    assert ids == {(USCC, "subject"), (PERSON_ID, "legal_representative")}
    assert names == {("北京某某科技有限公司", "subject"), ("张三", "legal_representative")}


def test_times_keep_their_offset() -> None:
    change = ListChange.model_validate(upsert())
    assert change.event_time == datetime(2025, 3, 1, 1, 30, tzinfo=UTC)
    assert ref_uscc_check(USCC[:17]) == USCC[17]


# --- the code validators as field annotations -------------------------------------------------


class _DecoratedSubject(Model):
    """Subject as it was validated before its code validators became field annotations
    (classmethod validators calling the same functions): the reference for the test below."""

    kind: SubjectKind
    name: Name
    uscc: str | None = None
    id_number: str | None = None
    role: Slug | None = None

    @field_validator("uscc", "id_number", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object) -> object:
        return _strip(value)

    @field_validator("uscc")
    @classmethod
    def _valid_uscc(cls, value: str | None) -> str | None:
        return _uscc(value)

    @field_validator("id_number")
    @classmethod
    def _valid_id_number(cls, value: str | None) -> str | None:
        return _id_number(value)

    @model_validator(mode="after")
    def _identifier_fits_kind(self) -> _DecoratedSubject:
        Subject._identifier_fits_kind(self)  # type: ignore[arg-type]
        return self


class _DecoratedPerson(Model):
    role: Slug
    kind: Literal["natural_person"] = "natural_person"
    name: Name
    id_number: str | None = None

    @field_validator("id_number", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object) -> object:
        return _strip(value)

    @field_validator("id_number")
    @classmethod
    def _valid_id_number(cls, value: str | None) -> str | None:
        return _id_number(value)


ODD_CODES = [USCC, USCC.lower(), f" {USCC}\t", full_width(USCC), BAD_CHECK_USCC, USCC[:17], ""]
ODD_CODES += [PERSON_ID, BAD_CHECK_ID, PERSON_ID[:15], f"\u3000{PERSON_ID}", "   ", "\x1c", "\xa0"]
CODE_VALUES = st.one_of(
    st.none(),
    st.sampled_from(ODD_CODES),
    st.text(alphabet="0123456789XIOx \t\u3000\x1c", max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=1),
)


def _outcome(model: type[Model], body: dict[str, Any], json: bool) -> object:
    try:
        made = model.model_validate_json(orjson.dumps(body)) if json else model.model_validate(body)
    except ValidationError as exc:
        return [(e["type"], e["loc"], e["msg"], repr(e.get("input"))) for e in exc.errors()]
    return made.__dict__, made.model_fields_set


@settings(max_examples=300)
@given(
    kind=st.sampled_from(["legal_person", "natural_person", "other_org", "bot"]),
    uscc=CODE_VALUES,
    id_number=CODE_VALUES,
    present=st.sets(st.sampled_from(["uscc", "id_number"])),
    json=st.booleans(),
)
def test_code_validators_as_annotations_validate_as_the_decorated_ones(
    kind: str, uscc: object, id_number: object, present: set[str], json: bool
) -> None:
    """Blank codes absent, codes parsed and normalised, the same errors (type, place, message,
    input) and the same fields set, from JSON or Python: for a subject and a related person."""
    body: dict[str, Any] = {"kind": kind, "name": "某公司"}
    body.update({k: v for k, v in (("uscc", uscc), ("id_number", id_number)) if k in present})
    assert _outcome(Subject, body, json) == _outcome(_DecoratedSubject, body, json)
    person = {"role": "principal", "name": "张三"}
    if "id_number" in present:
        person["id_number"] = id_number  # type: ignore[assignment]
    assert _outcome(RelatedPerson, person, json) == _outcome(_DecoratedPerson, person, json)

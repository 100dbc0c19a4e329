"""Message and HTTP body models of SPEC §3–§5.

The models *normalise* identifiers on the way in (NFKC, upper-case, 15→18 digits) and reject
malformed ones; a well-formed code whose check character fails is kept, and the places where
that happens are reported by :meth:`Subject.identifier_anomalies` so the caller decides (kept
and flagged in a list change, 422 in a check unless exactly that code is listed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from .assembled import assembled
from .identifiers import (
    IdentifierError,
    mask_identifier,
    normalise_name,
    parse_resident_id,
    parse_uscc,
)

SubjectKind = Literal["legal_person", "other_org", "individual_business", "natural_person"]
Polarity = Literal["black", "red", "watch"]
Effect = Literal["block", "review", "incentive"]
MeasureRole = Literal["subject", "legal_representative", "principal", "responsible_person"]
MatchKind = Literal["id", "related_person", "name"]
DecisionValue = Literal["block", "review", "pass"]
RemovalReason = Literal["repaired", "revoked", "expired", "corrected"]
EventType = Literal["submitted", "approved", "rejected", "withdrawn"]
FeedbackOutcome = Literal["enforced", "overridden", "not_applicable"]
AlertType = Literal["retroactive_hit", "approval_despite_block", "feedback_overdue"]

Code = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Name = Annotated[str, Field(min_length=1, max_length=300)]
Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
CategoryPattern = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^([a-z][a-z0-9_]*|\*)$")
]

ORGANISATION_KINDS = frozenset({"legal_person", "other_org", "individual_business"})


class Model(BaseModel):
    """Strict about unknown fields: a typo in a field name is an error, not silently ignored.

    Inputs are hidden from an error's text, so logging a ValidationError cannot write a whole
    personal ID number to a log (SPEC §2); ``errors()`` still has them for whoever asks.
    """

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, frozen=False, hide_input_in_errors=True
    )


def _uscc(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_uscc(value).value
    except IdentifierError as exc:
        raise ValueError(f"{exc.code}: {exc.message}") from None


def _id_number(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_resident_id(value).value
    except IdentifierError as exc:
        # Never echo the number back: pydantic would put the input in the error.
        raise ValueError(f"{exc.code}: {exc.message}") from None


def _strip(value: object) -> object:
    # Empty strings from forms and CSVs mean "absent".
    if isinstance(value, str) and not value.strip():
        return None
    return value


# The codes' validators as the field's own (pydantic calls them straight; a classmethod
# validator calling these cost two Python calls more per code): blank means absent (before the
# str validation), then the code is parsed and normalised (after it, on the stripped string).
UsccField = Annotated[str | None, BeforeValidator(_strip), AfterValidator(_uscc)]
IdNumberField = Annotated[str | None, BeforeValidator(_strip), AfterValidator(_id_number)]


class Subject(Model):
    """A credit subject: an organisation keyed by USCC or a natural person keyed by ID number."""

    kind: SubjectKind
    name: Name
    uscc: UsccField = None
    id_number: IdNumberField = None
    role: Slug | None = Field(
        default=None, description="descriptive role in a check, e.g. applicant"
    )

    @model_validator(mode="after")
    def _identifier_fits_kind(self) -> Subject:
        if self.kind == "natural_person" and self.uscc is not None:
            raise ValueError("a natural_person is keyed by id_number, not uscc")
        if self.kind in ORGANISATION_KINDS and self.id_number is not None:
            raise ValueError(f"a {self.kind} is keyed by uscc, not id_number")
        return self

    @property
    def identifier(self) -> str | None:
        return self.uscc or self.id_number

    @property
    def masked_identifier(self) -> str | None:
        if self.id_number:
            return mask_identifier(self.id_number)
        return self.uscc

    def identifier_anomalies(self, path: str = "subject") -> list[str]:
        """Fields whose code is well-formed but fails its check character."""
        found = []
        if self.uscc and not parse_uscc(self.uscc).check_ok:
            found.append(f"{path}.uscc")
        if self.id_number and not parse_resident_id(self.id_number).check_ok:
            found.append(f"{path}.id_number")
        return found

    def masked(self) -> MaskedSubject:
        return MaskedSubject(
            kind=self.kind, name=self.name, role=self.role, identifier=self.masked_identifier
        )


class MaskedSubject(Model):
    kind: SubjectKind
    name: str
    role: str | None = None
    identifier: str | None = Field(
        default=None, description="USCC as is; resident ID numbers masked (110105********002X)"
    )


class RelatedPerson(Model):
    """A person sanctioned together with a listed organisation (落实到人)."""

    role: Slug = Field(description="legal_representative, principal, responsible_person, …")
    kind: Literal["natural_person"] = "natural_person"
    name: Name
    id_number: IdNumberField = None


class ListEntry(Model):
    list_type: Slug
    polarity: Polarity
    subject: Subject
    related_persons: list[RelatedPerson] = Field(default_factory=list, max_length=50)
    authority: Text
    basis: Text
    effective_from: date
    effective_until: date | None = None
    disputed: StrictBool = False

    @model_validator(mode="after")
    def _window(self) -> ListEntry:
        if self.effective_until is not None and self.effective_until <= self.effective_from:
            raise ValueError("effective_until must be after effective_from")
        return self

    def identifier_anomalies(self) -> list[str]:
        found = self.subject.identifier_anomalies("entry.subject")
        for i, person in enumerate(self.related_persons):
            if person.id_number and not parse_resident_id(person.id_number).check_ok:
                found.append(f"entry.related_persons[{i}].id_number")
        return found


class ListChange(Model):
    schema_: Literal["list_change/v1"] = Field(alias="schema")
    op: Literal["upsert", "remove"]
    entry_id: Code
    version: StrictInt = Field(ge=0)
    event_time: AwareDatetime
    source: Code
    entry: ListEntry | None = None
    reason: RemovalReason | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    @model_validator(mode="after")
    def _op_fields(self) -> ListChange:
        if self.op == "upsert" and self.entry is None:
            raise ValueError("an upsert carries the entry")
        if self.op == "remove" and self.reason is None:
            raise ValueError("a remove carries its reason: repaired, revoked, expired or corrected")
        return self


class Measure(Model):
    # Required, as on every message we read (SPEC §3): a payload without it is not a Measure.
    schema_: Literal["measure/v1"] = Field(alias="schema")
    measure_id: Code
    title: Text
    effect: Effect
    mandatory: StrictBool
    list_types: list[Slug] = Field(min_length=1)
    matter_categories: list[CategoryPattern] = Field(min_length=1)
    roles: list[MeasureRole] = Field(min_length=1)
    implementing_departments: list[Text] = Field(default_factory=list)
    legal_basis: Text

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)


class Matter(Model):
    category: Slug
    code: Code | None = None


class ApprovalEvent(Model):
    schema_: Literal["approval_event/v1"] = Field(alias="schema")
    event_type: EventType
    request_id: Code
    department: Code
    matter: Matter
    subjects: list[Subject] = Field(min_length=1, max_length=1000)
    occurred_at: AwareDatetime

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)


class Feedback(Model):
    schema_: Literal["feedback/v1"] = Field(alias="schema")  # required (SPEC §3), also over HTTP
    request_id: Code
    department: Code
    outcome: FeedbackOutcome
    # A hit applies at most the catalogue's measures; bounded so that any feedback fits in one
    # Kafka message (a 7 MB list of ids passed the body limit and failed as "broker down").
    measure_ids: list[Code] = Field(default_factory=list, max_length=1000)
    reason: Text | None = None
    operator: Code
    at: AwareDatetime

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    @model_validator(mode="after")
    def _reason_for_override(self) -> Feedback:
        if self.outcome == "overridden" and not self.reason:
            raise ValueError("an overridden hit needs a reason")
        return self


class AppliedMeasure(Model):
    measure_id: str
    title: str
    effect: Effect
    mandatory: bool
    legal_basis: str
    implementing_departments: list[str] = Field(default_factory=list)


class Hit(Model):
    entry_id: str
    list_type: str
    polarity: Polarity
    authority: str
    basis: str
    effective_from: date
    effective_until: date | None
    match: MatchKind
    role: str = Field(description="the role the matched party holds in the listing")
    disputed: bool
    measures: list[AppliedMeasure]


class AsOf(Model):
    event_time: datetime | None = Field(
        description="event time of the newest list change applied to the index"
    )
    lag_seconds: float | None = Field(
        description="how far the index is behind its topic; 0 when caught up"
    )


class SubjectResult(Model):
    role: str | None
    kind: SubjectKind
    name: str
    identifier: str | None = Field(description="USCC as is; resident ID numbers masked")
    decision: DecisionValue
    hits: list[Hit]


class Decision(Model):
    schema_: Literal["decision/v1"] = Field(default="decision/v1", alias="schema")
    request_id: str
    department: str
    matter: Matter
    decision: DecisionValue
    incentives: list[AppliedMeasure]
    subjects: list[SubjectResult]
    as_of: AsOf
    decided_at: datetime

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Alert(Model):
    schema_: Literal["alert/v1"] = Field(default="alert/v1", alias="schema")
    alert_id: str
    type: AlertType
    department: str
    request_id: str | None
    entry_id: str | None
    subject: MaskedSubject
    detail: str
    raised_at: datetime

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RejectionError(Model):
    code: str
    message: str
    path: str | None = None


class Rejected(Model):
    schema_: Literal["rejected/v1"] = Field(default="rejected/v1", alias="schema")
    source_topic: str
    partition: int
    offset: int
    key: str | None
    raw: str = Field(description="the original value bytes, base64")
    error: RejectionError
    rejected_at: datetime

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- HTTP bodies -------------------------------------------------------------------------


class CheckRequest(Model):
    request_id: Code | None = None
    matter: Matter
    subjects: list[Subject] = Field(min_length=1, max_length=100)


class BatchCheckRequest(Model):
    request_id: Code | None = None
    matter: Matter
    subjects: list[Subject] = Field(min_length=1, max_length=10_000)


class BatchResult(Model):
    index: int
    role: str | None
    kind: SubjectKind
    name: str
    identifier: str | None
    decision: DecisionValue
    hits: list[Hit]
    incentives: list[AppliedMeasure]


class BatchCheckResponse(Model):
    request_id: str
    department: str
    matter: Matter
    results: list[BatchResult]
    as_of: AsOf
    decided_at: datetime


M = TypeVar("M", bound=BaseModel)


def trusted(model: type[M], **values: Any) -> M:
    """A model from values that are valid already (validated models, or records only this
    code wrote): no validation (:func:`.assembled.assembled`), so every field must be given."""
    return assembled(model, values)


class StoredEntry(Model):
    """One listing as the index holds it: the latest applied version, kept after removal."""

    entry_id: str
    version: int
    event_time: datetime
    source: str
    entry: ListEntry | None = Field(description="None for a remove that never saw an upsert")
    removed: bool = False
    reason: RemovalReason | None = None
    identifier_anomalies: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def from_change(cls, change: ListChange, previous: StoredEntry | None) -> StoredEntry:
        # Built from models that were validated already: no second validation (it cost as much
        # as decoding the change, once per change on the ingest hot path).
        if change.op == "upsert":
            assert change.entry is not None
            return trusted(
                cls,
                entry_id=change.entry_id,
                version=change.version,
                event_time=change.event_time,
                source=change.source,
                entry=change.entry,
                removed=False,
                reason=None,
                identifier_anomalies=change.entry.identifier_anomalies(),
            )
        # A remove keeps what was listed, for the subject's history (查询公示).
        return trusted(
            cls,
            entry_id=change.entry_id,
            version=change.version,
            event_time=change.event_time,
            source=change.source,
            entry=previous.entry if previous else None,
            removed=True,
            reason=change.reason,
            identifier_anomalies=list(previous.identifier_anomalies) if previous else [],
        )

    def index_keys(
        self, fold: Callable[[str], str] = normalise_name
    ) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """(identifier, role) and (normalised name, role) pairs this entry is found under.
        ``fold``: :func:`normalise_name`, or a look-up of names a batch folded at once."""
        entry = self.entry
        if entry is None:
            return set(), set()
        names = {(fold(entry.subject.name), "subject")}
        for person in entry.related_persons:  # a loop, not a generator: once per change
            names.add((fold(person.name), person.role))
        return self.identifier_keys(), names

    def identifier_keys(self) -> set[tuple[str, str]]:
        """The (identifier, role) pairs of :meth:`index_keys` (no names folded)."""
        ids: set[tuple[str, str]] = set()
        entry = self.entry
        if entry is None:
            return ids
        subject = entry.subject
        identifier = subject.uscc or subject.id_number
        if identifier:
            ids.add((identifier, "subject"))
        for person in entry.related_persons:
            if person.id_number:
                ids.add((person.id_number, person.role))
        return ids

    def codeless_name_keys(
        self, fold: Callable[[str], str] = normalise_name
    ) -> set[tuple[str, str]]:
        """The (normalised name, role) pairs of the parties that carry no code: the only ones a
        subject checked *with* a code can match by name (SPEC §4), so the index keeps them
        apart (kind ``m``) and such a check reads no coded listing's record for its name."""
        keys: set[tuple[str, str]] = set()
        entry = self.entry
        if entry is None:
            return keys
        subject = entry.subject
        if not (subject.uscc or subject.id_number):
            keys.add((fold(subject.name), "subject"))
        for person in entry.related_persons:
            if not person.id_number:
                keys.add((fold(person.name), person.role))
        return keys

"""The stored record of one listing: a compact positional encoding of :class:`StoredEntry`.

A record is ``version|count-code|body``. The Lua scripts read the version (compare-and-set)
and the count code (the per-bucket counter field this version is counted under) from the
prefix; ``body`` is an orjson array, positional so no field name is stored, with the entry_id
(the hash field) and the version (the prefix) not repeated, dates as day numbers, the list type,
polarity, subject kind and roles as small codes, and trailing defaults left out: ~195 B instead
of ~457 B of named JSON on court listings (bench/README.md), which matters at millions.

Only this process writes records, so decoding trusts them: the models are built without
validation (what was validated when the change came in is what was stored), which makes a read
a few microseconds instead of a full pydantic parse.

Layout of ``body`` (``…`` = trailing items, left out when they hold their default):

- record: ``[source, event time (s since the epoch), entry or 0, removal, …offset (s, 28800),
  microseconds (0), anomalies ([])]``; removal = 2 × reason code + removed; offset ``null`` =
  a naive time; an anomaly is 0 (subject's USCC), 1 (subject's ID number), 2 + i (person i's
  ID number) or its path as text;
- entry: ``[list type, polarity, subject, authority, basis, effective_from (day), …
  effective_until (day or null, null), disputed (0), related persons ([])]``;
- subject: ``[kind, name, identifier or null, …role (null)]``; person: ``[role, name, id]``.

A list type or role outside the code tables is stored as its string. The tables, this layout,
and the bucket count and ref role codes of :mod:`.layout` are :data:`RECORD_FORMAT`: changing
any of them (even appending a code: an older reader would not know it) means a new format
number, and a generation in another format is rebuilt, never read
(:func:`sanctiongate.index.store.check_serving`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson

from ..domain.models import ListEntry, RelatedPerson, StoredEntry, Subject, trusted

RECORD_FORMAT = "2"  # "1" (implicit, no meta field): version|polarity:list_type|StoredEntry JSON

# Code tables: the position is the code. Any change is a new RECORD_FORMAT.
LIST_TYPES = (
    "dishonest_judgment_debtor",
    "serious_illegal_dishonest_enterprise",
    "abnormal_operation",
    "serious_tax_violation",
    "government_procurement_serious_violation",
    "safety_production_dishonest",
    "customs_dishonest",
    "wage_arrears_dishonest",
    "key_supervision",
    "a_level_taxpayer",
    "customs_advanced_certified",
    "honest_model",
)
POLARITIES = ("black", "red", "watch")
_POLARITY_LETTERS = "brw"  # the count code's first character
KINDS = ("legal_person", "other_org", "individual_business", "natural_person")
ROLES = ("legal_representative", "principal", "responsible_person")
REASONS = (None, "repaired", "revoked", "expired", "corrected")

_LIST_TYPE_CODE = {name: i for i, name in enumerate(LIST_TYPES)}
_POLARITY_CODE = {name: i for i, name in enumerate(POLARITIES)}
_KIND_CODE = {name: i for i, name in enumerate(KINDS)}
_ROLE_CODE = {name: i for i, name in enumerate(ROLES)}
_REASON_CODE = {name: i for i, name in enumerate(REASONS)}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_CST_OFFSET = 28800  # seconds; court listings carry +08:00
_ONE_SECOND = timedelta(seconds=1)
# Where a well-formed code failed its check (StoredEntry.identifier_anomalies): few forms.
_ANOMALY_PATHS = (
    "entry.subject.uscc",
    "entry.subject.id_number",
    *(f"entry.related_persons[{i}].id_number" for i in range(50)),
)
_ANOMALY_CODE = {path: i for i, path in enumerate(_ANOMALY_PATHS)}
_TIMEZONES: dict[int, timezone] = {}


def count_code(stored: StoredEntry) -> str:
    """The counter field this version is counted under: ``b0`` (black, first list type), or
    ``b:some_type`` for a list type outside the table; empty when it counts nowhere."""
    entry = stored.entry
    if stored.removed or entry is None:
        return ""
    letter = _POLARITY_LETTERS[_POLARITY_CODE[entry.polarity]]
    code = _LIST_TYPE_CODE.get(entry.list_type)
    return f"{letter}{code}" if code is not None else f"{letter}:{entry.list_type}"


def count_key(code: str) -> tuple[str, str]:
    """(polarity, list_type) of a count code."""
    polarity = POLARITIES[_POLARITY_LETTERS.index(code[0])]
    rest = code[1:]
    return polarity, rest[1:] if rest.startswith(":") else LIST_TYPES[int(rest)]


# --- encoding ----------------------------------------------------------------------------------


def encode_record(stored: StoredEntry) -> bytes:
    body = orjson.dumps(_record_body(stored))
    return f"{stored.version}|{count_code(stored)}|".encode() + body


def _record_body(stored: StoredEntry) -> list[Any]:
    at = stored.event_time
    offset = at.utcoffset()
    if offset is None:
        seconds = (at - _NAIVE_EPOCH) // _ONE_SECOND
        offset_s: int | None = None
    else:
        seconds = (at - _EPOCH) // _ONE_SECOND
        offset_s = offset // _ONE_SECOND
    entry = _entry_body(stored.entry) if stored.entry is not None else 0
    body: list[Any] = [
        stored.source,
        seconds,
        entry,
        2 * _REASON_CODE[stored.reason] + stored.removed,
        offset_s,
        at.microsecond,
        [_ANOMALY_CODE.get(path, path) for path in stored.identifier_anomalies],
    ]
    return _trim(body, _RECORD_DEFAULTS)


_RECORD_DEFAULTS = (_CST_OFFSET, 0, [])
_ENTRY_DEFAULTS = (None, 0, [])


def _trim(items: list[Any], defaults: tuple[Any, ...]) -> list[Any]:
    """Leave out the trailing items (the last ``len(defaults)``) that hold their default."""
    end = len(items)
    for default in reversed(defaults):
        value = items[end - 1]
        if value != default or type(value) is not type(default):
            break
        end -= 1
    return items[:end] if end < len(items) else items


def _entry_body(entry: ListEntry) -> list[Any]:
    subject = entry.subject
    subject_body: list[Any] = [
        _KIND_CODE[subject.kind],
        subject.name,
        subject.id_number if subject.kind == "natural_person" else subject.uscc,
    ]
    if subject.role is not None:
        subject_body.append(subject.role)
    persons = [[_ROLE_CODE.get(p.role, p.role), p.name, p.id_number] for p in entry.related_persons]
    until = entry.effective_until
    body = [
        _LIST_TYPE_CODE.get(entry.list_type, entry.list_type),
        _POLARITY_CODE[entry.polarity],
        subject_body,
        entry.authority,
        entry.basis,
        entry.effective_from.toordinal() - _EPOCH_DAY,
        None if until is None else until.toordinal() - _EPOCH_DAY,
        int(entry.disputed),
        persons,
    ]
    return _trim(body, _ENTRY_DEFAULTS)


# --- decoding ----------------------------------------------------------------------------------


def decode_record(raw: bytes | None, entry_id: str) -> StoredEntry | None:
    """The StoredEntry of record ``raw`` (stored under ``entry_id``), or None for no record."""
    if not raw:
        return None
    version, body = split_record(raw)
    return decode_body(version, body, entry_id)


def split_record(raw: bytes) -> tuple[bytes, list[Any]]:
    """A (non-empty) record's version and its parsed body, before any model is built: a reader
    can look at the body (:func:`may_hold_identifier`) and build only what it needs."""
    version, _, rest = raw.partition(b"|")
    return version, orjson.loads(rest.partition(b"|")[2])


def may_hold_code(raw: bytes, identifier: bytes) -> bool:
    """False only when record ``raw`` surely lists no party with code ``identifier`` nor any
    party without a code. Codes are plain ASCII in the JSON, and a party without one ends in a
    null code, ``[kind, name, null]`` / ``[role, name, null]`` or ``[kind, name, null, "role"]``
    (orjson writes no spaces; other nulls, an open end date or a naive time, are followed by a
    number). Text found proves nothing: parse the body and ask :func:`may_hold_identifier`."""
    return identifier in raw or b",null]" in raw or b',null,"' in raw


def may_hold_identifier(body: list[Any], identifier: str) -> bool:
    """Whether a check of a subject carrying ``identifier`` could match this listing at all:
    some listed party has that code, or has no code (then its name may match, SPEC §4). A
    listing whose parties all carry other codes cannot match such a subject in any way, so
    its models need not be built. A superset of what matches: matching decides the rest."""
    entry = body[2]
    if not entry:
        return False  # a remove that never saw an upsert: nothing to match
    listed = entry[2][2]
    if not listed or listed == identifier:
        return True
    if len(entry) > 8:
        for person in entry[8]:
            if not person[2] or person[2] == identifier:
                return True
    return False


def decode_body(version: bytes, body: list[Any], entry_id: str) -> StoredEntry:
    """The StoredEntry of a record split by :func:`split_record`."""
    source, seconds, entry, removal, *tail = body
    offset_s = tail[0] if tail else _CST_OFFSET
    since_epoch = timedelta(seconds=seconds, microseconds=tail[1] if len(tail) > 1 else 0)
    if offset_s is None:
        event_time = _NAIVE_EPOCH + since_epoch
    else:
        event_time = (_EPOCH + since_epoch).astimezone(_timezone(offset_s))
    return trusted(
        StoredEntry,
        entry_id=entry_id,
        version=int(version),
        event_time=event_time,
        source=source,
        entry=_decode_entry(entry) if entry else None,
        removed=bool(removal & 1),
        reason=REASONS[removal >> 1],
        identifier_anomalies=[
            _ANOMALY_PATHS[a] if type(a) is int else a for a in (tail[2] if len(tail) > 2 else ())
        ],
    )


def _decode_entry(body: list[Any]) -> ListEntry:
    list_type, polarity, subject, authority, basis, effective_from, *tail = body
    kind = KINDS[subject[0]]
    identifier = subject[2]
    person = kind == "natural_person"
    until = tail[0] if tail else None
    return trusted(
        ListEntry,
        list_type=LIST_TYPES[list_type] if type(list_type) is int else list_type,
        polarity=POLARITIES[polarity],
        subject=trusted(
            Subject,
            kind=kind,
            name=subject[1],
            uscc=None if person else identifier,
            id_number=identifier if person else None,
            role=subject[3] if len(subject) > 3 else None,
        ),
        related_persons=[
            trusted(
                RelatedPerson,
                role=ROLES[role] if type(role) is int else role,
                kind="natural_person",
                name=name,
                id_number=id_number,
            )
            for role, name, id_number in (tail[2] if len(tail) > 2 else ())
        ],
        authority=authority,
        basis=basis,
        effective_from=date.fromordinal(effective_from + _EPOCH_DAY),
        effective_until=None if until is None else date.fromordinal(until + _EPOCH_DAY),
        disputed=bool(tail[1]) if len(tail) > 1 else False,
    )


def _timezone(offset_s: int) -> timezone:
    tz = _TIMEZONES.get(offset_s)
    if tz is None:
        tz = _TIMEZONES[offset_s] = timezone(timedelta(seconds=offset_s))
    return tz

"""The stored record of one listing: a compact binary encoding of :class:`StoredEntry`.

A record is ``version|count-code|body``. The Lua scripts read the version (compare-and-set)
and the count code (the per-bucket counter field this version is counted under) from the
ASCII prefix; ``body`` is binary (format "3"): the entry_id (the hash field) and the version
(the prefix) are not repeated, numbers are small binary integers, codes are packed, and the
text is GB18030 (2 bytes a Chinese character instead of 3 in UTF-8), deflated against a preset
dictionary of domain vocabulary (:mod:`.vocabulary`) when that is shorter: ~85-95 B instead of
~195 B of format "2"'s positional JSON on court listings (bench/README.md), which matters at
millions.

Only this process writes records, so decoding trusts them: the models are built without
validation (what was validated when the change came in is what was stored), which makes a read
a few microseconds instead of a full pydantic parse.

Layout of ``body`` (integers big-endian, fixed width; varints LEB128):

- ``flags`` (1 byte): :data:`_HAS_ENTRY`, :data:`_UNCODED` (some listed party has no code),
  :data:`_DEFLATED`, :data:`_UTF8` (text not GB18030), :data:`_EXTRAS`, :data:`_MICROS`, and
  the event time's offset in the top two bits (0 +08:00, 1 UTC, 2 in the extras);
- ``state`` (1 byte): 2 × reason code + removed in the low nibble, :data:`_HAS_UNTIL`,
  :data:`_DISPUTED`;
- the event time: seconds since the epoch (5 bytes, signed), then microseconds (3 bytes) if
  :data:`_MICROS`;
- with an entry: one byte list type code (15: a string, in the extras) × 16 + polarity × 4 +
  kind; one byte the number of related persons; effective_from (days since the epoch, 3
  bytes, signed), effective_until (the same, if :data:`_HAS_UNTIL`); the subject's code then
  each person's code (:func:`pack_code`); each person's role code (255: a string, in the
  extras);
- with :data:`_EXTRAS`: a varint length and an orjson object of what is rare: ``o`` the
  offset in seconds (null: a naive time), ``a`` identifier anomalies (as in format "2": 0
  subject's USCC, 1 its ID number, 2 + i person i's, or the path), ``r`` the subject's role,
  ``l`` a list type and ``p`` person roles outside the code tables;
- the rest: the text, source, then (with an entry) the subject's name, authority, basis and
  each person's name, joined by NUL (an orjson list instead when a text holds a NUL).

A list type or role outside the code tables is stored as its string. The tables, this layout,
the dictionary, and the bucket count, ref kinds, ref fields (``ref_field``) and ref role codes
of :mod:`.layout` are :data:`RECORD_FORMAT`: changing any of them (even appending a code: an
older reader would not know it) means a new format number, and a generation in another format
is rebuilt, never read (:func:`sanctiongate.index.store.check_serving`).
"""

from __future__ import annotations

import zlib
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, NamedTuple

import orjson

from ..domain.identifiers import USCC_ALPHABET, USCC_DIGITS
from ..domain.models import ListEntry, RelatedPerson, StoredEntry, Subject, trusted
from .vocabulary import WORDS

RECORD_FORMAT = "4"
# "4": records as "3", and the names of parties without a code also under kind ``m`` (what a
# check with a code reads by name: layout.py); a "3" generation lacks those refs, so a check
# with a code would miss a code-less listing of its name. "3": binary records (above); "2":
# version|count-code|positional orjson body; "1" (no meta field): version|polarity:
# list_type|StoredEntry JSON.
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
_TIMEZONES: dict[int, timezone] = {_CST_OFFSET: timezone(timedelta(seconds=_CST_OFFSET)), 0: UTC}


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


# --- codes -------------------------------------------------------------------------------------

_NO_CODE, _USCC_FORM, _ID_FORM, _TEXT_FORM = 0, 1, 2, 3
_ID_CHECKS = "0123456789X"
# A USCC's characters as base-31 digits (USCC_DIGITS, for int(…, 31)), and back in pairs.
_USCC_PAIRS = tuple(a + b for a in USCC_ALPHABET for b in USCC_ALPHABET)
_PACKED: dict[str, bytes] = {}  # the probes of checks: a few per request, bounded below


def pack_code(code: str | None) -> bytes:
    """A listed party's code as stored in a record: a form byte then, for a resident ID
    number's form (17 ASCII digits and a check 0-9 or X), 8 bytes; for a USCC's form (18
    characters of its alphabet), 12 bytes; else the varint length and the UTF-8 text. Exact
    whatever the check character says, so a code that fails its check round-trips; ``\\x00``
    for no code. A check's code packs the same way, so its bytes can be looked for in a
    record (:func:`may_hold_code`)."""
    if code is None:
        return b"\x00"
    if len(code) == 18 and code.isascii():
        if code[:17].isdigit() and code[17] in _ID_CHECKS:
            number = int(code[:17]) * 11 + _ID_CHECKS.index(code[17])
            return b"\x02" + number.to_bytes(8, "big")
        digits = code.encode().translate(USCC_DIGITS)
        if b"!" not in digits:
            return b"\x01" + int(digits, 31).to_bytes(12, "big")
    text = code.encode()
    return b"\x03" + _varint(len(text)) + text


def packed_probe(code: str) -> bytes:
    """:func:`pack_code` of a check's code, remembered (a check packs the same code once per
    candidate record)."""
    packed = _PACKED.get(code)
    if packed is None:
        if len(_PACKED) > 10_000:
            _PACKED.clear()
        packed = _PACKED[code] = pack_code(code)
    return packed


def _unpack_code(packed: bytes) -> str | None:
    form = packed[0]
    if form == _ID_FORM:
        body, check = divmod(int.from_bytes(packed[1:], "big"), 11)
        return f"{body:017d}{_ID_CHECKS[check]}"
    if form == _USCC_FORM:
        number = int.from_bytes(packed[1:], "big")
        pairs = []
        for _ in range(9):
            number, pair = divmod(number, 961)
            pairs.append(_USCC_PAIRS[pair])
        return "".join(reversed(pairs))
    if form == _NO_CODE:
        return None
    return packed[1 + _varint_size(packed, 1) :].decode()


def _read_code(body: bytes, at: int) -> int:
    """Where the packed code starting at ``at`` ends."""
    form = body[at]
    if form == _ID_FORM:
        return at + 9
    if form == _USCC_FORM:
        return at + 13
    if form == _NO_CODE:
        return at + 1
    length, end = _read_varint(body, at + 1)
    return end + length


# --- varints -----------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    """LEB128 of a non-negative integer."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, position after it)."""
    byte = data[at]
    if byte < 0x80:
        return byte, at + 1
    n, shift = 0, 0
    while byte >= 0x80:
        n |= (byte & 0x7F) << shift
        shift += 7
        at += 1
        byte = data[at]
    return n | byte << shift, at + 1


def _varint_size(data: bytes, at: int) -> int:
    return _read_varint(data, at)[1] - at


# --- text --------------------------------------------------------------------------------------

_DICTIONARY = "".join(WORDS).encode("gb18030")
_WINDOW_BITS = -11  # raw deflate (no header, no checksum), a 2 KiB window: holds the dictionary
assert len(_DICTIONARY) <= 2**-_WINDOW_BITS
# A compressor primed with the dictionary, copied per record (priming costs more than the copy;
# memLevel 4: a smaller state to copy, and the same output on records this small).
_LEVEL, _MEM_LEVEL = 9, 4
_PRIMED = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WINDOW_BITS, _MEM_LEVEL, zdict=_DICTIONARY)


def _deflate(data: bytes) -> bytes:
    compressor = _PRIMED.copy()
    return compressor.compress(data) + compressor.flush()


def _inflate(data: bytes) -> bytes:
    return zlib.decompressobj(_WINDOW_BITS, zdict=_DICTIONARY).decompress(data)


def _encode_text(texts: list[str]) -> tuple[int, bytes]:
    """(flags, bytes) of the record's texts."""
    flags = 0
    text = "\0".join(texts)
    if text.count("\0") >= len(texts):  # more NULs than joined them: a text holds one
        text = orjson.dumps(texts).decode()
        flags |= _TEXT_JSON
    try:
        data = text.encode("gb18030")
        if data.decode("gb18030") != text:  # not lossless for this text: keep it exact
            raise UnicodeError
    except UnicodeError:
        data = text.encode()
        flags |= _UTF8
    deflated = _deflate(data)
    if len(deflated) < len(data):
        return flags | _DEFLATED, deflated
    return flags, data


def _decode_text(flags: int, data: bytes) -> list[str]:
    if flags & _DEFLATED:
        data = _inflate(data)
    text = data.decode("utf-8" if flags & _UTF8 else "gb18030")
    return orjson.loads(text) if flags & _TEXT_JSON else text.split("\0")


# --- encoding ----------------------------------------------------------------------------------

# flags (the body's first byte)
_HAS_ENTRY = 0x01
_UNCODED = 0x02  # some listed party has no code (then a name may match it: SPEC §4)
_DEFLATED = 0x04
_UTF8 = 0x08
_EXTRAS = 0x10
_MICROS = 0x20
_OFFSET_SHIFT = 6  # top two bits: 0 +08:00, 1 UTC, 2 in the extras (another offset or naive)
# state (the second byte): the low nibble is 2 × reason code + removed
_HAS_UNTIL = 0x10
_DISPUTED = 0x20
_TEXT_JSON = 0x40  # the texts are an orjson list (one holds a NUL), not NUL-joined
_TEXT_FLAGS = _DEFLATED | _UTF8  # the text flags kept in ``flags``; _TEXT_JSON is in ``state``
# fixed-width integers (big-endian; int.from_bytes reads them faster than varints, and at
# today's values a varint would take as many bytes)
_TIME_AT = 2  # the event time follows flags and state
_SECONDS = 5  # signed: ±17,000 years around 1970, every datetime
_MICROSECONDS = 3
_DAYS = 3  # signed: every date
_OTHER_LIST_TYPE = 15
_OTHER_ROLE = 255


def encode_record(stored: StoredEntry, code: str | None = None) -> bytes:
    """``code``: its :func:`count_code`, when the caller has it already."""
    if code is None:
        code = count_code(stored)
    body = _native_body(stored) if _native_body is not None else None
    if body is None:
        body = _record_body(stored)
    return f"{stored.version}|{code}|".encode() + body


def _record_body(stored: StoredEntry) -> bytes:
    extras: dict[str, Any] = {}
    at = stored.event_time
    offset = at.utcoffset()
    if offset is None:
        seconds = (at - _NAIVE_EPOCH) // _ONE_SECOND
        extras["o"] = None
        offset_form = 2
    else:
        seconds = (at - _EPOCH) // _ONE_SECOND
        offset_s = offset // _ONE_SECOND
        offset_form = 0 if offset_s == _CST_OFFSET else 1 if offset_s == 0 else 2
        if offset_form == 2:
            extras["o"] = offset_s
    flags = offset_form << _OFFSET_SHIFT
    state = 2 * _REASON_CODE[stored.reason] + stored.removed
    time_part = seconds.to_bytes(_SECONDS, "big", signed=True)
    if at.microsecond:
        flags |= _MICROS
        time_part += at.microsecond.to_bytes(_MICROSECONDS, "big")
    if stored.identifier_anomalies:
        extras["a"] = [_ANOMALY_CODE.get(path, path) for path in stored.identifier_anomalies]
    texts = [stored.source]
    entry_part = b""
    if stored.entry is not None:
        flags |= _HAS_ENTRY
        entry_part, entry_state, uncoded = _entry_part(stored.entry, extras, texts)
        state |= entry_state
        if uncoded:
            flags |= _UNCODED
    text_flags, text = _encode_text(texts)
    flags |= text_flags & _TEXT_FLAGS
    state |= text_flags & _TEXT_JSON
    extras_part = b""
    if extras:
        flags |= _EXTRAS
        extras_json = orjson.dumps(extras)
        extras_part = _varint(len(extras_json)) + extras_json
    return bytes((flags, state)) + time_part + entry_part + extras_part + text


# The body of the usual listing in C (_recordc.c, built by setup.py where a compiler is at
# hand): the same bytes as _record_body (tests/index/test_records.py) for two thirds of the
# cost (the rest is mostly zlib's); None for a record with extras or text it leaves to
# Python. Without it, Python does all.
try:
    from . import _recordc
except ImportError:  # pragma: no cover - a build without a C compiler
    _recordc = None
# Byte for byte Python's only with the zlib Python's zlib module runs on (a Python that bundles
# its own zlib may deflate differently: still readable, but not these tests' bytes).
if _recordc is None or _recordc.linked_zlib() != zlib.ZLIB_RUNTIME_VERSION:
    _native_body = native_refs = None
else:
    # the flat refs of a new record's keys (store.SanctionIndex._ref_args), or None
    native_refs = _recordc.new_refs
    _recordc.configure(
        _LIST_TYPE_CODE,
        _POLARITY_CODE,
        _KIND_CODE,
        _ROLE_CODE,
        _REASON_CODE,
        _DICTIONARY,
        _LEVEL,
        _WINDOW_BITS,
        _MEM_LEVEL,
        USCC_ALPHABET,
    )
    _native_body = _recordc.record_body


def _entry_part(
    entry: ListEntry, extras: dict[str, Any], texts: list[str]
) -> tuple[bytes, int, bool]:
    """(bytes, state bits, some party has no code) of a listing; the rare parts go to
    ``extras``, the texts to ``texts``."""
    subject = entry.subject
    list_type = _LIST_TYPE_CODE.get(entry.list_type)
    if list_type is None:
        list_type = _OTHER_LIST_TYPE
        extras["l"] = entry.list_type
    if subject.role is not None:
        extras["r"] = subject.role
    persons = entry.related_persons
    code = subject.id_number if subject.kind == "natural_person" else subject.uscc
    codes = pack_code(code)
    uncoded = codes == b"\x00"
    texts += (subject.name, entry.authority, entry.basis)
    if persons:  # most listings name nobody else: no generators to run for them
        codes, uncoded = _persons_part(persons, codes, extras, texts)
    state = _DISPUTED if entry.disputed else 0
    days = (entry.effective_from.toordinal() - _EPOCH_DAY).to_bytes(_DAYS, "big", signed=True)
    if entry.effective_until is not None:
        state |= _HAS_UNTIL
        days += (entry.effective_until.toordinal() - _EPOCH_DAY).to_bytes(_DAYS, "big", signed=True)
    kinds = list_type << 4 | _POLARITY_CODE[entry.polarity] << 2 | _KIND_CODE[subject.kind]
    head = bytes((kinds, len(persons)))
    return head + days + codes, state, uncoded


def _persons_part(
    persons: list[RelatedPerson], subject_code: bytes, extras: dict[str, Any], texts: list[str]
) -> tuple[bytes, bool]:
    """(every party's packed code then the persons' role codes, some party has no code) of a
    listing that names related persons; their names go to ``texts``, roles outside the table
    to ``extras``."""
    codes = [subject_code, *(pack_code(p.id_number) for p in persons)]
    roles = bytes(_ROLE_CODE.get(p.role, _OTHER_ROLE) for p in persons)
    if _OTHER_ROLE in roles:
        extras["p"] = [None if p.role in _ROLE_CODE else p.role for p in persons]
    texts += (p.name for p in persons)
    return b"".join(codes) + roles, b"\x00" in codes  # a code packed as "none", not a byte


# --- decoding ----------------------------------------------------------------------------------


class Split(NamedTuple):
    """A record's body read up to its codes: enough to tell whom it lists
    (:func:`may_hold_identifier`) without building anything."""

    body: bytes
    flags: int
    state: int
    codes: list[bytes]  # packed (pack_code): the subject's, then each person's
    end: int  # where the codes end


def decode_record(raw: bytes | None, entry_id: str) -> StoredEntry | None:
    """The StoredEntry of record ``raw`` (stored under ``entry_id``), or None for no record."""
    if not raw:
        return None
    version, split = split_record(raw)
    return decode_body(version, split, entry_id)


def split_record(raw: bytes) -> tuple[bytes, Split]:
    """A (non-empty) record's version and its body read up to the codes, before any model is
    built: a reader can look at whom it lists (:func:`may_hold_identifier`) and build only
    what it needs."""
    version, _, rest = raw.partition(b"|")
    body = rest.partition(b"|")[2]
    flags = body[0]
    if not flags & _HAS_ENTRY:
        return version, Split(body, flags, body[1], [], 2)
    at = _TIME_AT + _SECONDS + (_MICROSECONDS if flags & _MICROS else 0)
    persons = body[at + 1]
    at += 2 + (2 * _DAYS if body[1] & _HAS_UNTIL else _DAYS)
    codes = []
    for _ in range(persons + 1):
        end = _read_code(body, at)
        codes.append(body[at:end])
        at = end
    return version, Split(body, flags, body[1], codes, at)


def may_hold_code(raw: bytes, packed: bytes) -> bool:
    """False only when record ``raw`` surely lists no party with the code packed as
    ``packed`` (:func:`packed_probe`) nor any party without a code: the flags byte says
    whether one lacks a code, and a listed code is stored as its packed bytes. Bytes found
    prove nothing: split the record and ask :func:`may_hold_identifier`."""
    flags = raw[raw.index(b"|", raw.index(b"|") + 1) + 1]
    return bool(flags & _UNCODED) or packed in raw


def may_hold_identifier(split: Split, identifier: str) -> bool:
    """Whether a check of a subject carrying ``identifier`` could match this listing at all:
    some listed party has that code, or has no code (then its name may match, SPEC §4). A
    listing whose parties all carry other codes cannot match such a subject in any way, so
    its models need not be built. A superset of what matches: matching decides the rest."""
    if not split.flags & _HAS_ENTRY:
        return False  # a remove that never saw an upsert: nothing to match
    return bool(split.flags & _UNCODED) or packed_probe(identifier) in split.codes


def decode_body(version: bytes, split: Split, entry_id: str) -> StoredEntry:
    """The StoredEntry of a record split by :func:`split_record`."""
    body, flags, state = split.body, split.flags, split.state
    at = _TIME_AT + _SECONDS
    seconds = int.from_bytes(body[_TIME_AT:at], "big", signed=True)
    micros = 0
    if flags & _MICROS:
        micros = int.from_bytes(body[at : at + _MICROSECONDS], "big")
        at += _MICROSECONDS
    if flags & _HAS_ENTRY:
        head, persons = body[at], body[at + 1]
        at += 2
        effective_from = int.from_bytes(body[at : at + _DAYS], "big", signed=True)
        until = None
        if state & _HAS_UNTIL:
            until = int.from_bytes(body[at + _DAYS : at + 2 * _DAYS], "big", signed=True)
        at = split.end
        roles = body[at : at + persons]
        at += persons
    extras: dict[str, Any] = {}
    if flags & _EXTRAS:
        length, at = _read_varint(body, at)
        extras = orjson.loads(body[at : at + length])
        at += length
    texts = _decode_text(flags & _TEXT_FLAGS | state & _TEXT_JSON, body[at:])
    since_epoch = timedelta(seconds=seconds, microseconds=micros)
    offset_form = flags >> _OFFSET_SHIFT
    if offset_form == 0:
        event_time = (_EPOCH + since_epoch).astimezone(_TIMEZONES[_CST_OFFSET])
    elif offset_form == 1:
        event_time = _EPOCH + since_epoch
    elif extras["o"] is None:
        event_time = _NAIVE_EPOCH + since_epoch
    else:
        event_time = (_EPOCH + since_epoch).astimezone(_timezone(extras["o"]))
    entry = None
    if flags & _HAS_ENTRY:
        entry = _decode_entry(head, split.codes, roles, texts, effective_from, until, state, extras)
    removal = state & 0x0F
    return trusted(
        StoredEntry,
        entry_id=entry_id,
        version=int(version),
        event_time=event_time,
        source=texts[0],
        entry=entry,
        removed=bool(removal & 1),
        reason=REASONS[removal >> 1],
        identifier_anomalies=[
            _ANOMALY_PATHS[a] if type(a) is int else a for a in extras.get("a", ())
        ],
    )


def _decode_entry(
    head: int,
    codes: list[bytes],
    roles: bytes,
    texts: list[str],
    effective_from: int,
    until: int | None,
    state: int,
    extras: dict[str, Any],
) -> ListEntry:
    list_type = head >> 4
    kind = KINDS[head & 3]
    identifier = _unpack_code(codes[0])
    person = kind == "natural_person"
    other_roles = extras.get("p")
    return trusted(
        ListEntry,
        list_type=extras["l"] if list_type == _OTHER_LIST_TYPE else LIST_TYPES[list_type],
        polarity=POLARITIES[head >> 2 & 3],
        subject=trusted(
            Subject,
            kind=kind,
            name=texts[1],
            uscc=None if person else identifier,
            id_number=identifier if person else None,
            role=extras.get("r"),
        ),
        related_persons=[
            trusted(
                RelatedPerson,
                role=other_roles[i] if role == _OTHER_ROLE else ROLES[role],
                kind="natural_person",
                name=texts[4 + i],
                id_number=_unpack_code(codes[1 + i]),
            )
            for i, role in enumerate(roles)
        ],
        authority=texts[2],
        basis=texts[3],
        effective_from=date.fromordinal(effective_from + _EPOCH_DAY),
        effective_until=None if until is None else date.fromordinal(until + _EPOCH_DAY),
        disputed=bool(state & _DISPUTED),
    )


def _timezone(offset_s: int) -> timezone:
    tz = _TIMEZONES.get(offset_s)
    if tz is None:
        tz = _TIMEZONES[offset_s] = timezone(timedelta(seconds=offset_s))
    return tz

"""The compact stored record: decode(encode(x)) == x for every StoredEntry a change can make,
and for what only a stored record can hold (codes stored as given, naive times, long texts)."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sanctiongate.domain.decisions import match_subject
from sanctiongate.domain.identifiers import (
    USCC_ALPHABET,
    normalise_name,
    resident_id_check_char,
    uscc_check_char,
)
from sanctiongate.domain.models import ListChange, StoredEntry, Subject
from sanctiongate.index import records
from sanctiongate.index.layout import (
    REF_SEPARATOR,
    Layout,
    pack_ref,
    ref_field,
    role_code,
    unpack_refs,
)
from sanctiongate.index.records import (
    _TEXT_JSON,
    KINDS,
    LIST_TYPES,
    ROLES,
    _decode_text,
    _encode_text,
    _unpack_code,
    count_code,
    count_key,
    decode_body,
    decode_record,
    encode_record,
    may_hold_code,
    may_hold_identifier,
    pack_code,
    packed_probe,
    split_record,
)
from sanctiongate.index.store import (
    IndexMeta,
    IndexUnavailable,
    _could_match,
    check_serving,
    wanted_entry_ids,
)

# Names, courts and case numbers as they come: Chinese, full-width brackets, the odd space.
texts = st.text(
    alphabet=st.sampled_from("北京市朝阳区人民法院有限公司（）()·执0123456789 abcXYZ-"),
    min_size=1,
    max_size=40,
).filter(lambda t: t.strip() == t and t)
# Any text at all: long, outside GB 2312 (陝, emoji, other scripts), NUL, control characters.
any_texts = st.text(min_size=1, max_size=2000).filter(lambda t: t.strip() == t and t)
record_texts = st.one_of(texts, texts, any_texts)
record_names = st.one_of(texts, texts, any_texts.filter(lambda t: len(t) <= 300))
sources = st.one_of(
    st.sampled_from(["court:spc", "tax", "消防"]),
    st.text(
        st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), min_size=1, max_size=128
    ).filter(lambda t: t.strip() == t and t),
)
slugs = st.from_regex(r"\A[a-z][a-z0-9_]{0,20}\Z")
list_types = st.one_of(st.sampled_from(LIST_TYPES), slugs)
roles = st.one_of(st.sampled_from(ROLES), slugs)


@st.composite
def usccs(draw: st.DrawFn) -> str:
    body = "".join(draw(st.lists(st.sampled_from(USCC_ALPHABET), min_size=17, max_size=17)))
    check = uscc_check_char(body) if draw(st.booleans()) else draw(st.sampled_from("0A"))
    return body + check  # a wrong check character is kept (and flagged) in a listing


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    birth = draw(st.dates(date(1900, 1, 1), date(2020, 12, 31))).strftime("%Y%m%d")
    body = draw(st.sampled_from(["110105", "310115", "440300"])) + birth
    body += f"{draw(st.integers(0, 999)):03d}"
    return body + (resident_id_check_char(body) if draw(st.booleans()) else "0")


@st.composite
def subjects(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(KINDS))
    subject: dict = {"kind": kind, "name": draw(record_names)}
    if draw(st.booleans()):
        key = "id_number" if kind == "natural_person" else "uscc"
        subject[key] = draw(id_numbers() if kind == "natural_person" else usccs())
    if draw(st.booleans()):
        subject["role"] = draw(slugs)
    return subject


@st.composite
def event_times(draw: st.DrawFn) -> str:
    at = draw(st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1)))
    offset = draw(st.sampled_from([0, 480, -300, 345, 840]))
    return at.replace(tzinfo=timezone(timedelta(minutes=offset))).isoformat()


@st.composite
def upserts(draw: st.DrawFn, entry_id: str, version: int) -> dict:
    start = draw(st.dates(date(1990, 1, 1), date(2090, 1, 1)))
    length = draw(st.one_of(st.none(), st.integers(1, 5000)))
    persons = draw(
        st.lists(
            st.fixed_dictionaries(
                {"role": roles, "name": record_names},
                optional={"id_number": id_numbers(), "kind": st.just("natural_person")},
            ),
            max_size=3,
        )
    )
    return {
        "schema": "list_change/v1",
        "op": "upsert",
        "entry_id": entry_id,
        "version": version,
        "event_time": draw(event_times()),
        "source": draw(sources),
        "entry": {
            "list_type": draw(list_types),
            "polarity": draw(st.sampled_from(["black", "red", "watch"])),
            "subject": draw(subjects()),
            "related_persons": persons,
            "authority": draw(record_texts),
            "basis": draw(record_texts),
            "effective_from": start.isoformat(),
            "effective_until": None if length is None else str(start + timedelta(days=length)),
            "disputed": draw(st.booleans()),
        },
    }


@st.composite
def stored_entries(draw: st.DrawFn) -> StoredEntry:
    """The latest version of one listing: an upsert, or a remove after one (or after none)."""
    entry_id = draw(st.from_regex(r"\A[A-Za-z0-9:|_\-]{1,30}\Z"))
    version = draw(st.integers(0, 2**53))
    listed = StoredEntry.from_change(
        ListChange.model_validate(draw(upserts(entry_id, version))), None
    )
    if draw(st.booleans()):
        return listed
    remove = ListChange.model_validate(
        {
            "schema": "list_change/v1",
            "op": "remove",
            "entry_id": entry_id,
            "version": version + 1,
            "event_time": draw(event_times()),
            "source": "court:spc",
            "reason": draw(st.sampled_from(["repaired", "revoked", "expired", "corrected"])),
        }
    )
    stored = StoredEntry.from_change(remove, listed if draw(st.booleans()) else None)
    if draw(st.booleans()):
        stored = draw(with_odd_codes(stored))
    if draw(st.integers(0, 4)) == 0:  # a naive time (StoredEntry allows one): kept as it is
        stored = stored.model_copy(update={"event_time": stored.event_time.replace(tzinfo=None)})
    return stored


# Codes as a record may hold them though no change validates so: lower case, full-width, a
# check character outside the table, any text (records are written by this code only, but
# they must read back exactly whatever they hold).
odd_codes = st.one_of(
    usccs().map(str.lower),
    id_numbers().map(lambda c: c[:17] + "x"),
    id_numbers().map(lambda c: c.translate(str.maketrans("0123456789", "０１２３４５６７８９"))),
    st.text(min_size=1, max_size=30),
    st.from_regex(r"\A[0-9]{17}[0-9X]\Z"),
)


@st.composite
def with_odd_codes(draw: st.DrawFn, stored: StoredEntry) -> StoredEntry:
    entry = stored.entry
    if entry is None:
        return stored
    key = "id_number" if entry.subject.kind == "natural_person" else "uscc"
    subject = entry.subject.model_copy(update={key: draw(st.one_of(st.none(), odd_codes))})
    persons = [
        p.model_copy(update={"id_number": draw(st.one_of(st.none(), odd_codes))})
        for p in entry.related_persons
    ]
    return stored.model_copy(
        update={"entry": entry.model_copy(update={"subject": subject, "related_persons": persons})}
    )


@settings(max_examples=300, deadline=None)
@given(stored_entries())
def test_decode_of_encode_is_the_same_entry(stored: StoredEntry) -> None:
    raw = encode_record(stored)
    decoded = decode_record(raw, stored.entry_id)
    assert decoded == stored
    # Equal models can still print differently (a time's offset, a bool as 1): readers print.
    assert decoded.model_dump_json() == stored.model_dump_json()
    assert decoded.event_time.utcoffset() == stored.event_time.utcoffset()
    # What the Lua scripts read from the prefix: the version and the count code.
    version, code, _ = raw.split(b"|", 2)
    assert int(version) == stored.version
    assert code.decode() == count_code(stored)
    if code:
        assert stored.entry is not None
        assert count_key(code.decode()) == (stored.entry.polarity, stored.entry.list_type)


needs_native = pytest.mark.skipif(
    records._native_body is None and os.environ.get("SANCTIONGATE_PURE_PYTHON") == "1",
    reason="built without the C encoder on purpose (SANCTIONGATE_PURE_PYTHON=1)",
)


@needs_native
def test_the_c_encoder_is_built() -> None:
    """setup.py builds it wherever bootstrap runs (a compiler and zlib's headers): without it
    every record is encoded in Python, correct, and the ingest slower."""
    assert records._native_body is not None


@st.composite
def usual_listings(draw: st.DrawFn) -> StoredEntry:
    """Entries with none of the record's rare parts (the C encoder's cases): table list types
    and roles, no subject role, no anomalies, +08:00 or UTC; any texts and codes."""
    stored = draw(stored_entries().filter(lambda s: s.entry is not None))
    entry = stored.entry
    assert entry is not None
    if draw(st.booleans()):
        texts = draw(st.lists(record_texts, min_size=4, max_size=4))
        entry = entry.model_copy(
            update={
                "authority": texts[0],
                "basis": texts[1],
                "subject": entry.subject.model_copy(update={"name": texts[2]}),
            }
        )
        stored = stored.model_copy(update={"source": texts[3]})
    persons = [
        p.model_copy(update={"role": draw(st.sampled_from(ROLES))}) for p in entry.related_persons
    ]
    entry = entry.model_copy(
        update={
            "list_type": draw(st.sampled_from(LIST_TYPES)),
            "subject": entry.subject.model_copy(update={"role": None}),
            "related_persons": persons,
        }
    )
    zone = draw(st.sampled_from([UTC, timezone(timedelta(hours=8))]))
    at = stored.event_time.replace(tzinfo=stored.event_time.tzinfo or UTC).astimezone(zone)
    return stored.model_copy(update={"entry": entry, "event_time": at, "identifier_anomalies": []})


@needs_native
@settings(max_examples=500, deadline=None)
@given(st.one_of(stored_entries(), stored_entries().flatmap(with_odd_codes), usual_listings()))
def test_the_c_encoder_writes_the_python_encoders_bytes(stored: StoredEntry) -> None:
    """For any entry, the C body is _record_body's to the byte, or None where the record needs
    the Python encoder (extras, a NUL in a text, text GB18030 does not carry losslessly)."""
    assert records._native_body is not None
    native = records._native_body(stored)
    if native is not None:
        assert native == records._record_body(stored)


@needs_native
@settings(max_examples=300, deadline=None)
@given(usual_listings())
def test_the_c_encoder_takes_every_usual_listing(stored: StoredEntry) -> None:
    """The fast path is taken, and right, for every listing without the rare parts, unless a
    text holds a NUL or is not carried by GB18030 as it is."""
    assert stored.entry is not None
    texts = [
        stored.source,
        stored.entry.subject.name,
        stored.entry.authority,
        stored.entry.basis,
        *(p.name for p in stored.entry.related_persons),
    ]
    joined = "\0".join(texts)
    try:
        lossless = joined.encode("gb18030").decode("gb18030") == joined
    except UnicodeError:
        lossless = False
    native = records._native_body(stored)
    if lossless and joined.count("\0") == len(texts) - 1:
        assert native is not None
        assert native == records._record_body(stored)
    else:
        assert native is None


def test_a_court_listing_is_compact() -> None:
    stored = StoredEntry.from_change(
        ListChange.model_validate(
            {
                "schema": "list_change/v1",
                "op": "upsert",
                "entry_id": "e1",
                "version": 3,
                "event_time": "2026-11-23T10:00:00+08:00",
                "source": "court:spc",
                "entry": {
                    "list_type": "dishonest_judgment_debtor",
                    "polarity": "black",
                    "subject": {
                        "kind": "legal_person",
                        "name": "北京宏宏科技有限公司",
                        "uscc": "91350203M0001QAY9B",
                    },
                    "authority": "北京市朝阳区人民法院",
                    "basis": "（2025）京0105执123号",
                    "effective_from": "2025-01-01",
                },
            }
        ),
        None,
    )
    raw = encode_record(stored)
    old_format = stored.model_dump_json(exclude_defaults=True).encode()
    # Format "2" (positional JSON) took 187 B for this listing; 370 B of named JSON.
    assert len(raw) < 0.25 * len(old_format), (len(raw), len(old_format))
    assert raw.startswith(b"3|b0|")
    assert pack_code("91350203M0001QAY9B") in raw  # its code packed, and found as such
    assert "人民法院".encode("gb18030") not in raw  # the text deflated against the dictionary
    assert decode_record(raw, "e1") == stored


@given(st.one_of(usccs(), id_numbers(), odd_codes), st.one_of(usccs(), id_numbers(), odd_codes))
def test_packed_codes_read_back_and_differ(code: str, other: str) -> None:
    packed = pack_code(code)
    assert _unpack_code(packed) == code
    assert (packed == pack_code(other)) == (code == other)
    assert packed_probe(code) == packed
    assert pack_code(None) == b"\x00" and _unpack_code(b"\x00") is None


# 18 ASCII characters, most of the USCC alphabet: packed as a USCC only when all are in it.
uscc_like = st.text(alphabet=USCC_ALPHABET * 3 + "IOSVZa_ +-", min_size=18, max_size=18)


@given(uscc_like)
@example("1" * 17 + "A")
@example("1" * 17 + "X")
@example("1" * 17 + "I")
def test_a_uscc_form_packs_as_its_base_31_number(code: str) -> None:
    # The number as format "3" stores it, worked out here character by character.
    if code[:17].isdigit() and code[17] in "0123456789X":
        assert pack_code(code)[0] == 2  # an ID number's form comes first
        return
    if not set(code) <= set(USCC_ALPHABET):
        assert pack_code(code)[0] == 3  # as text
        return
    number = 0
    for char in code:
        number = number * 31 + USCC_ALPHABET.index(char)
    assert pack_code(code) == b"\x01" + number.to_bytes(12, "big")


def test_common_codes_pack_small() -> None:
    assert len(pack_code("91350203M0001QAY9B")) == 13  # 18 characters of 31 → 12 bytes + form
    assert len(pack_code("11010519491231002X")) == 9  # 17 digits and a check → 8 bytes + form


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"\A[A-Za-z0-9:|_\-]{1,30}\Z"), st.one_of(st.just("subject"), roles)
        ),
        min_size=1,
        max_size=5,
    )
)
def test_refs_unpack_to_what_was_packed(refs: list[tuple[str, str]]) -> None:
    packed = REF_SEPARATOR.join(pack_ref(entry_id, role) for entry_id, role in refs)
    assert unpack_refs(packed) == refs
    assert unpack_refs(packed.encode()) == refs


def test_no_record_decodes_to_none() -> None:
    assert decode_record(None, "e1") is None
    assert decode_record(b"", "e1") is None


def _meta(**fields: str) -> IndexMeta:
    return IndexMeta(
        gen=fields.get("gen"),
        state=fields.get("state"),
        newest_event_time=datetime(2026, 1, 1, tzinfo=UTC),
        measures_rev=1,
        fields=fields,
    )


def test_a_generation_in_another_format_is_never_served() -> None:
    from sanctiongate.index.records import RECORD_FORMAT

    check_serving(_meta(gen="g1", state="ready", format=RECORD_FORMAT))
    assert _meta(gen="g1", state="ready", format=RECORD_FORMAT).ready
    for old in ({}, {"format": "1"}, {"format": "99"}):  # no field: written before formats
        meta = _meta(gen="g1", state="ready", **old)
        assert not meta.ready
        for during_rebuild in (False, True):
            try:
                check_serving(meta, during_rebuild)
            except IndexUnavailable as exc:
                assert exc.reason == "index_format"
            else:
                raise AssertionError(f"served a generation in format {meta.record_format}")


def _codes(stored: StoredEntry) -> list[str | None]:
    """The code of every listed party, None for a party listed without one."""
    assert stored.entry is not None
    return [stored.entry.subject.identifier] + [p.id_number for p in stored.entry.related_persons]


@settings(max_examples=300, deadline=None)
@given(stored_entries(), st.one_of(usccs(), id_numbers()), st.booleans())
def test_the_cheap_filters_keep_every_listing_a_code_could_match(
    stored: StoredEntry, other: str, own_code: bool
) -> None:
    """may_hold_code (raw bytes) never drops what may_hold_identifier (parsed body) keeps, and
    that keeps exactly the listings with a party holding the code or holding none."""
    codes = _codes(stored) if stored.entry is not None else []
    probe = next((c for c in codes if c), other) if own_code else other
    raw = encode_record(stored)
    _, body = split_record(raw)
    expected = stored.entry is not None and any(c is None or c == probe for c in codes)
    assert may_hold_identifier(body, probe) == expected
    if expected:
        assert may_hold_code(raw, packed_probe(probe))
    assert decode_body(*split_record(raw), stored.entry_id) == stored


@settings(max_examples=200, deadline=None)
@given(st.lists(stored_entries(), min_size=1, max_size=6), st.data())
def test_candidates_filtered_before_decoding_match_as_all_decoded(
    entries: list[StoredEntry], data: st.DataObject
) -> None:
    """The same matches (and the same listed codes for the check-character rule) from the
    filtered candidates as from every record the refs named, decoded."""
    by_id = {s.entry_id: s for s in entries}
    entry_ids = sorted(by_id)
    raws = [encode_record(by_id[e]) for e in entry_ids]
    listed_names = [s.entry.subject.name for s in entries if s.entry is not None] or ["某公司"]
    listed_codes = [c for s in entries if s.entry is not None for c in _codes(s) if c]
    subjects = []
    for _ in range(3):
        name = data.draw(st.one_of(st.sampled_from(listed_names), texts))
        code = data.draw(
            st.one_of(st.none(), st.sampled_from(listed_codes or ["x"]), usccs(), id_numbers())
        )
        if code is None or code == "x":
            subjects.append(Subject(kind="legal_person", name=name))
            continue
        try:  # an 18-digit code may be either; a person's when its birth date is real
            subjects.append(Subject(kind="natural_person", name=name, id_number=code))
        except ValidationError:
            try:
                subjects.append(Subject(kind="legal_person", name=name, uscc=code))
            except ValidationError:  # an odd listed code (with_odd_codes): no check carries it
                subjects.append(Subject(kind="legal_person", name=name))
    lookups = [(s.identifier, normalise_name(s.name)) for s in subjects]
    wanted = [set(data.draw(st.sets(st.sampled_from(entry_ids)))) for _ in lookups]
    found = _could_match(lookups, wanted, entry_ids, raws)
    for subject, ids, kept in zip(subjects, wanted, found, strict=True):
        everything = [by_id[e] for e in ids]
        assert match_subject(subject, kept) == match_subject(subject, everything)
        listed = {code for s in everything for code, _ in s.index_keys()[0]}
        kept_listed = {code for s in kept for code, _ in s.index_keys()[0]}
        assert (subject.identifier in listed) == (subject.identifier in kept_listed)
        assert [s.entry_id for s in kept] == [e for e in ids if e in {k.entry_id for k in kept}]


@given(st.one_of(texts, usccs(), id_numbers(), st.text(min_size=1, max_size=300)))
def test_ref_fields_are_short_printable_and_stable(key: str) -> None:
    field = ref_field(key)
    assert field == ref_field(key)
    if len(key.encode()) <= 8:
        assert field == key
    else:  # a digest: 8 printable ASCII characters that JSON and Lua carry as they are
        assert len(field) == 8 and field.isascii() and field.isprintable()
        assert orjson.loads(orjson.dumps(field)) == field and '"' not in field and "\\" not in field


@given(st.one_of(texts, usccs(), id_numbers(), st.text(max_size=300)))
def test_a_ref_is_placed_in_its_bucket_and_field(key: str) -> None:
    layout = Layout()
    assert layout.ref_place(key) == (layout.bucket(key), ref_field(key))


@given(st.lists(st.one_of(record_texts, st.text(max_size=5)), min_size=1, max_size=6))
def test_texts_are_joined_by_nul_unless_one_holds_a_nul(texts: list[str]) -> None:
    flags, data = _encode_text(texts)
    assert bool(flags & _TEXT_JSON) == any("\0" in t for t in texts)
    assert _decode_text(flags, data) == texts


def test_different_codes_get_different_fields() -> None:
    codes = [f"91110105{n:09d}X" for n in range(20_000)]
    assert len({ref_field(c) for c in codes}) == len(codes)


def _pinned_listing(persons: list[dict], until: str | None = None, role: str | None = None):  # type: ignore[no-untyped-def]
    subject = {
        "kind": "legal_person",
        "name": "北京某某（集团）科技有限公司",
        "uscc": "91350203M0001QAY9B",
    }
    if role:
        subject["role"] = role
    return StoredEntry.from_change(
        ListChange.model_validate(
            {
                "schema": "list_change/v1",
                "op": "upsert",
                "entry_id": "e1",
                "version": 7,
                "event_time": "2025-06-01T08:30:00.250000+08:00",
                "source": "court:spc",
                "entry": {
                    "list_type": "dishonest_judgment_debtor",
                    "polarity": "black",
                    "subject": subject,
                    "related_persons": persons,
                    "authority": "北京市朝阳区人民法院",
                    "basis": "（2025）京0105执123号",
                    "effective_from": "2025-01-01",
                    "effective_until": until,
                    "disputed": True,
                },
            }
        ),
        None,
    )


# Format "3" as written by 7a6a28b, byte for byte: a faster encoder must write the same records
# (a generation's records are read by every worker and API process of that format). The text
# is deflated by the system zlib; one that deflates otherwise would fail here although its
# records still decode.
PINNED = [
    (
        [],
        None,
        None,
        "377c62307c352000683b9f0803d0900000004e790100a88a4d9fa6796d488ff4f7097b2261223a5b305d7d83"
        "a717868dc0b2fcc8e6239b17af00c5ede29520d360bac092c00cbafee21744266080a5d57d2b0d0c0d4caf6d"
        "313432de751400",
    ),
    (
        [
            {"role": "legal_representative", "name": "張三", "id_number": "11010519491231002X"},
            {"role": "guarantor", "name": "李四"},
        ],
        "2027-01-01",
        "applicant",
        "377c62307c373000683b9f0803d0900002004e790051530100a88a4d9fa6796d488ff4f70201ae4a19bdbda0"
        "280000ff307b2261223a5b305d2c2272223a226170706c6963616e74222c2270223a5b6e756c6c2c2267756172"
        "616e746f72225d7d83a717868dc0b2fcc8e6239b17af00c5ede29520d360bac092c00cbafee21744266080a5d5"
        "7d2b0d0c0d4caf6d313432de7594a1bfe3c45f8603ef4e1f0100",
    ),
]


@pytest.mark.parametrize(("persons", "until", "role", "expected"), PINNED)
def test_records_are_written_as_before(
    persons: list[dict], until: str | None, role: str | None, expected: str
) -> None:
    stored = _pinned_listing(persons, until, role)
    raw = encode_record(stored)
    assert raw.hex() == expected
    assert decode_record(raw, "e1") == stored


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["91110105MA0000000X"])),
            st.text(max_size=12),
        ),
        max_size=20,
    ),
    st.sampled_from([1, 7, 4096]),
)
@example([("91110105MA0000000X", "北京宏达科技有限公司"), (None, "王伟"), ("", "abcdefgh")], 4096)
def test_lookup_reads_are_the_ref_places_of_each_key(lookups: list, buckets: int) -> None:
    """Layout.lookup_reads inlines ref_place: the same bucket and field for every key (short
    keys kept, long ones digested; ASCII or not), an identifier's ``i`` then its name's ``m``,
    a name alone ``n``, flat: each read's bucket suffix (bucket_base + suffix is its key)
    then its field."""
    layout = Layout(buckets=buckets)
    expected: list[str] = []
    for identifier, name in lookups:
        keys = [("i", identifier), ("m", name)] if identifier else [("n", name)]
        for kind, key in keys:
            bucket, field = layout.ref_place(key)
            expected += [layout.bucket_suffix(bucket, kind), field]
    assert layout.lookup_reads(lookups) == expected
    assert layout.record_reads(["e1", "长名单-2"]) == [
        x for e in ["e1", "长名单-2"] for x in (layout.bucket_suffix(layout.bucket(e), "e"), e)
    ]
    gen = "g1"
    for b in (0, buckets - 1):
        for kind in "eimn":
            suffix = layout.bucket_suffix(b, kind)
            assert layout.bucket_base(gen) + suffix == layout.bucket_key(gen, b, kind)


REF_LISTS = st.one_of(
    st.none(),
    st.just(b""),
    st.lists(
        st.tuples(st.sampled_from(["e1", "e2", "长名单-3"]), st.sampled_from(list(ROLES))),
        min_size=1,
        max_size=3,
    ).map(lambda refs: REF_SEPARATOR.join(pack_ref(e, r) for e, r in refs).encode()),
)


@given(
    st.lists(st.tuples(st.one_of(st.none(), st.just("91110105MA0000000X")), REF_LISTS, REF_LISTS))
)
def test_wanted_entry_ids_are_those_of_the_lookups_refs(rows: list) -> None:
    """Per lookup, the entry ids of its identifier ref and its name ref (unpack_refs), read
    from the refs in order: two for a lookup with an identifier, one without."""
    lookups, refs, expected = [], [], []
    for identifier, id_refs, name_refs in rows:
        lookups.append((identifier, "名"))
        own = [id_refs, name_refs] if identifier else [name_refs]
        refs += own
        expected.append({entry_id for raw in own for entry_id, _ in unpack_refs(raw)})
    assert wanted_entry_ids(lookups, refs) == expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from("inm"),
            st.lists(
                st.tuples(
                    st.one_of(st.text(max_size=20), st.sampled_from(["91110105MA0000000X"])),
                    st.sampled_from(["subject", "legal_representative", "principal", "其他"]),
                ),
                max_size=4,
            ),
        ),
        max_size=4,
    ),
    st.sampled_from([1, 7, 4096]),
)
@example([("i", [("91110105MA0000000X", "subject")]), ("n", [("王伟", "principal")])], 4096)
def test_flat_refs_are_the_ref_places_and_role_codes_of_each_key(
    groups: list, buckets: int
) -> None:
    """Layout.flat_refs inlines ref_place and role_code: per ref its kind, bucket, field (short
    keys kept, long ones digested; ASCII or not) and role code, flat, in order."""
    layout = Layout(buckets=buckets)
    expected: list[str | int] = []
    for kind, keys in groups:
        for key, role in keys:
            expected += [kind, *layout.ref_place(key), role_code(role)]
    assert layout.flat_refs(groups) == expected


@needs_native
def test_the_c_encoder_reads_values_as_python_does() -> None:
    """Truthiness and sequences as Python reads them (a removed flag of 1, persons in a
    tuple), and a missing field raises AttributeError: never a value with an error pending."""
    from types import SimpleNamespace

    from sanctiongate.domain.models import trusted
    from sanctiongate.index.layout import ROLE_CODES
    from sanctiongate.index.store import _native_refs

    person = {"role": "legal_representative", "name": "王某", "id_number": "110105198001010011"}
    stored = _pinned_listing([person]).model_copy(update={"identifier_anomalies": []})
    odd = trusted(StoredEntry, **{**stored.__dict__, "removed": 1, "reason": "repaired"})
    assert records._native_body(odd) == records._record_body(odd)
    entry = stored.entry
    assert entry is not None
    as_tuple = stored.model_copy(
        update={"entry": entry.model_copy(update={"related_persons": tuple(entry.related_persons)})}
    )
    assert records._native_body(as_tuple) == records._record_body(stored)
    assert _native_refs is not None
    expected = _native_refs(stored, {}, normalise_name, 4096, ROLE_CODES)
    assert _native_refs(as_tuple, {}, normalise_name, 4096, ROLE_CODES) == expected
    no_persons = SimpleNamespace(entry=SimpleNamespace(subject=entry.subject))
    with pytest.raises(AttributeError):
        _native_refs(no_persons, {}, normalise_name, 4096, ROLE_CODES)
    with pytest.raises(AttributeError):
        records._native_body(SimpleNamespace(identifier_anomalies=[], entry=entry))

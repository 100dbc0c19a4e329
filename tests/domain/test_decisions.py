"""Decision semantics of SPEC §4 as pure functions: matching, validity, block/review/pass."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctiongate.domain.catalogue import Catalogue
from sanctiongate.domain.decisions import (
    assess_subject,
    combined_incentives,
    is_active,
    strongest,
    today_in_china,
)
from sanctiongate.domain.models import ListChange, Measure, StoredEntry, Subject

from .reference import ref_id_check, ref_id_number, ref_uscc_check

DEBTOR = "dishonest_judgment_debtor"
MODEL = "honest_model"
WATCH = "key_supervision"
NOW = datetime(2025, 6, 1, 4, 0, tzinfo=UTC)  # 12:00 in Beijing


def uscc(body: str) -> str:
    return body + ref_uscc_check(body)


ORG = uscc("91110000100010433")
OTHER_ORG = uscc("91310000132200821")
BOSS = ref_id_number("110105", date(1970, 1, 1), 11)  # the listed company's legal rep
MANAGER = ref_id_number("110105", date(1972, 2, 2), 22)  # its principal
STRANGER = ref_id_number("310101", date(1990, 3, 3), 33)


def measure(measure_id: str, effect: str, mandatory: bool, **fields: Any) -> Measure:
    body: dict[str, Any] = {
        "schema": "measure/v1",
        "measure_id": measure_id,
        "title": measure_id,
        "effect": effect,
        "mandatory": mandatory,
        "list_types": [DEBTOR],
        "matter_categories": ["government_procurement"],
        "roles": ["subject"],
        "implementing_departments": ["某部门"],
        "legal_basis": "某规定",
    }
    body.update(fields)
    return Measure.model_validate(body)


CATALOGUE = Catalogue(
    [
        # mandatory block for procurement: the company and its legal representative
        measure("GP-BLOCK", "block", True, roles=["subject", "legal_representative"]),
        # recommended block for bidding
        measure("BID-BLOCK", "block", False, matter_categories=["bidding"]),
        # mandatory review for licences, also for the principal
        measure(
            "LIC-REVIEW",
            "review",
            True,
            matter_categories=["admin_license"],
            roles=["subject", "principal"],
        ),
        measure("WATCH-REVIEW", "review", True, list_types=[WATCH], matter_categories=["*"]),
        measure("RED-FAST", "incentive", False, list_types=[MODEL], matter_categories=["*"]),
        measure(
            "RED-GP",
            "incentive",
            False,
            list_types=[MODEL],
            matter_categories=["government_procurement"],
        ),
    ]
)


def stored(
    entry_id: str = "e1",
    *,
    list_type: str = DEBTOR,
    polarity: str = "black",
    kind: str = "legal_person",
    name: str = "北京某某科技有限公司",
    ident: str | None = ORG,
    related: list[dict[str, Any]] | None = None,
    effective_from: str = "2025-01-01",
    effective_until: str | None = None,
    disputed: bool = False,
    removed: bool = False,
) -> StoredEntry:
    key = "id_number" if kind == "natural_person" else "uscc"
    subject: dict[str, Any] = {"kind": kind, "name": name}
    if ident:
        subject[key] = ident
    entry = {
        "list_type": list_type,
        "polarity": polarity,
        "subject": subject,
        "related_persons": related or [],
        "authority": "某某人民法院",
        "basis": f"({entry_id})执字第1号",
        "effective_from": effective_from,
        "effective_until": effective_until,
        "disputed": disputed,
    }
    change = ListChange.model_validate(
        {
            "schema": "list_change/v1",
            "op": "upsert",
            "entry_id": entry_id,
            "version": 1,
            "event_time": "2025-01-01T00:00:00+08:00",
            "source": "test",
            "entry": entry,
        }
    )
    listed = StoredEntry.from_change(change, None)
    if removed:
        gone = change.model_copy(update={"op": "remove", "version": 2, "reason": "revoked"})
        return StoredEntry.from_change(gone, listed)
    return listed


WITH_MANAGERS = [
    {"role": "legal_representative", "name": "张三", "id_number": BOSS},
    {"role": "principal", "name": "李四", "id_number": MANAGER},
]


def org(ident: str | None = ORG, name: str = "北京某某科技有限公司") -> Subject:
    body: dict[str, Any] = {"kind": "legal_person", "name": name, "role": "applicant"}
    if ident:
        body["uscc"] = ident
    return Subject.model_validate(body)


def person(ident: str | None, name: str = "张三") -> Subject:
    body: dict[str, Any] = {"kind": "natural_person", "name": name}
    if ident:
        body["id_number"] = ident
    return Subject.model_validate(body)


def assess(
    subject: Subject,
    *entries: StoredEntry,
    category: str = "government_procurement",
    now: datetime = NOW,
):  # type: ignore[no-untyped-def]
    return assess_subject(subject, entries, CATALOGUE, category, now)


# --- the block / review / pass matrix ----------------------------------------------------

MATRIX = [
    # (case, subject, entry, category, decision, match, measure ids)
    (
        "id hit, mandatory block",
        org(),
        stored(),
        "government_procurement",
        "block",
        "id",
        ["GP-BLOCK"],
    ),
    ("id hit, category not covered", org(), stored(), "honours", "pass", "id", []),
    ("id hit, recommended block", org(), stored(), "bidding", "review", "id", ["BID-BLOCK"]),
    ("id hit, review measure", org(), stored(), "admin_license", "review", "id", ["LIC-REVIEW"]),
    (
        "disputed never blocks",
        org(),
        stored(disputed=True),
        "government_procurement",
        "review",
        "id",
        ["GP-BLOCK"],
    ),
    (
        "name only: the check has no code",
        org(ident=None),
        stored(),
        "government_procurement",
        "review",
        "name",
        ["GP-BLOCK"],
    ),
    (
        "name only: the listing has no code",
        org(),
        stored(ident=None),
        "government_procurement",
        "review",
        "name",
        ["GP-BLOCK"],
    ),
    (
        "name in another form",
        org(ident=None, name="北京 某某科技有限公司"),
        stored(),
        "government_procurement",
        "review",
        "name",
        ["GP-BLOCK"],
    ),
    (
        "watch list review",
        org(),
        stored(list_type=WATCH, polarity="watch"),
        "honours",
        "review",
        "id",
        ["WATCH-REVIEW"],
    ),
    (
        "legal representative, by ID",
        person(BOSS),
        stored(related=WITH_MANAGERS),
        "government_procurement",
        "block",
        "related_person",
        ["GP-BLOCK"],
    ),
    (
        "principal: procurement ban is not theirs",
        person(MANAGER),
        stored(related=WITH_MANAGERS),
        "government_procurement",
        "pass",
        "related_person",
        [],
    ),
    (
        "principal: licence review is theirs",
        person(MANAGER),
        stored(related=WITH_MANAGERS),
        "admin_license",
        "review",
        "related_person",
        ["LIC-REVIEW"],
    ),
    (
        "legal representative: licence review is not theirs",
        person(BOSS),
        stored(related=WITH_MANAGERS),
        "admin_license",
        "pass",
        "related_person",
        [],
    ),
    (
        "related person by name only",
        person(None),
        stored(related=WITH_MANAGERS),
        "government_procurement",
        "review",
        "name",
        ["GP-BLOCK"],
    ),
    (
        "natural person listed, by ID",
        person(BOSS),
        stored(kind="natural_person", name="张三", ident=BOSS),
        "government_procurement",
        "block",
        "id",
        ["GP-BLOCK"],
    ),
]


@pytest.mark.parametrize(
    ("subject", "entry", "category", "decision", "match", "measure_ids"),
    [case[1:] for case in MATRIX],
    ids=[case[0] for case in MATRIX],
)
def test_decision_matrix(
    subject: Subject,
    entry: StoredEntry,
    category: str,
    decision: str,
    match: str,
    measure_ids: list[str],
) -> None:
    result = assess(subject, entry, category=category)
    assert result.decision == decision
    assert [h.match for h in result.hits] == [match]
    assert [m.measure_id for m in result.hits[0].measures] == measure_ids


@pytest.mark.parametrize(
    ("subject", "entry"),
    [
        (org(uscc("91110000100010434")), stored()),  # same name, another code: another company
        (org(OTHER_ORG, name="别的公司"), stored()),
        (person(STRANGER, name="张三"), stored(related=WITH_MANAGERS)),  # namesake, other ID
        (person(STRANGER), stored(kind="natural_person", name="张三", ident=BOSS)),
        (org(), stored(removed=True)),  # removed entries never match
        (person(BOSS), stored(related=WITH_MANAGERS, removed=True)),
    ],
)
def test_no_hit(subject: Subject, entry: StoredEntry) -> None:
    result = assess(subject, entry)
    assert (result.decision, result.hits, result.black_listed) == ("pass", [], False)


def test_an_organisation_never_matches_a_related_person_code() -> None:
    # An 18-digit string can be a valid USCC and a valid ID number at once; only a natural
    # person is matched against related persons, so an organisation with that code is not.
    both = "911101198001010248"
    assert ref_uscc_check(both[:17]) == both[17] == ref_id_check(both[:17])
    listing = stored(
        ident=None,
        name="别的公司",
        related=[{"role": "legal_representative", "name": "王五", "id_number": both}],
    )
    assert assess(org(both, name="无关公司"), listing).hits == []
    assert [h.match for h in assess(person(both, name="王五"), listing).hits] == ["related_person"]


def test_a_hit_tells_the_clerk_why() -> None:
    entry = stored("court-9", effective_until="2028-01-01", related=WITH_MANAGERS)
    (hit,) = assess(person(BOSS), entry).hits
    assert hit.entry_id == "court-9"
    assert (hit.list_type, hit.polarity, hit.match, hit.role) == (
        DEBTOR,
        "black",
        "related_person",
        "legal_representative",
    )
    assert hit.authority == "某某人民法院" and hit.basis == "(court-9)执字第1号"
    assert hit.effective_until == date(2028, 1, 1) and hit.disputed is False
    (applied,) = hit.measures
    assert (applied.measure_id, applied.effect, applied.mandatory) == ("GP-BLOCK", "block", True)
    assert applied.legal_basis and applied.implementing_departments


def test_the_same_entry_found_twice_is_one_hit() -> None:
    entry = stored()
    assert len(assess(org(), entry, entry).hits) == 1


def test_checked_codes_are_normalised_before_matching() -> None:
    typed = org(ident=" " + ORG.lower() + "\u3000")
    assert assess(typed, stored()).decision == "block"
    old_style = BOSS[:6] + BOSS[8:17]
    assert assess(person(old_style), stored(related=WITH_MANAGERS)).decision == "block"


def test_id_hit_beats_a_name_hit_on_the_same_entry() -> None:
    (hit,) = assess(org(), stored()).hits
    assert hit.match == "id"


def test_strongest_hit_decides_for_a_subject() -> None:
    firm = stored("firm")
    weak = stored("weak", ident=None)
    assert assess(org(), weak, firm).decision == "block"
    assert assess(org(), stored("d", disputed=True), weak).decision == "review"


# --- validity window in China Standard Time ----------------------------------------------


@pytest.mark.parametrize(
    ("now", "active"),
    [
        (datetime(2025, 2, 28, 15, 59, 59, tzinfo=UTC), False),  # 23:59:59 on 28 Feb in Beijing
        (datetime(2025, 2, 28, 16, 0, 0, tzinfo=UTC), True),  # 00:00 on 1 March in Beijing
        (datetime(2025, 3, 1, 0, 0, 0, tzinfo=timezone(timedelta(hours=8))), True),
        (datetime(2025, 2, 28, 23, 0, 0, tzinfo=timezone(timedelta(hours=-5))), True),
        (datetime(2025, 5, 31, 15, 59, 59, tzinfo=UTC), True),  # last second of 31 May
        (datetime(2025, 5, 31, 16, 0, 0, tzinfo=UTC), False),  # effective_until is exclusive
        (datetime(2026, 1, 1, tzinfo=UTC), False),
    ],
)
def test_validity_window_is_read_in_china_standard_time(now: datetime, active: bool) -> None:
    entry = stored(effective_from="2025-03-01", effective_until="2025-06-01")
    assert is_active(entry, today_in_china(now)) is active
    result = assess(org(), entry, now=now)
    assert result.decision == ("block" if active else "pass")
    assert bool(result.hits) is active


def test_open_ended_entry_stays_active() -> None:
    entry = stored(effective_from="2020-01-01", effective_until=None)
    assert is_active(entry, date(2099, 12, 31))
    assert not is_active(entry, date(2019, 12, 31))


def test_removed_entry_is_never_active() -> None:
    assert not is_active(stored(removed=True), date(2025, 6, 1))


# --- incentives and the combination of subjects ------------------------------------------

RED = stored("red", list_type=MODEL, polarity="red")


def test_red_entry_gives_its_incentives() -> None:
    result = assess(org(), RED)
    assert result.decision == "pass"
    ids = [m.measure_id for m in combined_incentives([result])]
    assert sorted(ids) == ["RED-FAST", "RED-GP"]
    other = assess(org(), RED, category="honours")
    assert [m.measure_id for m in combined_incentives([other])] == ["RED-FAST"]


def test_black_overrides_red_on_the_same_subject() -> None:
    result = assess(org(), RED, stored("black"))
    assert result.decision == "block"
    assert combined_incentives([result]) == []


def test_black_on_any_subject_overrides_red_on_another() -> None:
    red = assess(org(), RED)
    black = assess(person(BOSS), stored("black", related=WITH_MANAGERS))
    assert combined_incentives([red, black]) == []
    assert combined_incentives([black, red]) == []


@pytest.mark.parametrize(
    "black",
    [
        stored("weak-black", ident=None),  # a name match is a hit too
        stored("disputed-black", disputed=True),
    ],
)
def test_any_active_black_hit_suppresses_incentives(black: StoredEntry) -> None:
    assert combined_incentives([assess(org(), RED, black)]) == []


def test_a_black_hit_that_is_not_active_does_not_suppress_incentives() -> None:
    expired = stored("old", effective_from="2020-01-01", effective_until="2021-01-01")
    result = assess(org(), RED, expired)
    assert not result.black_listed
    assert len(combined_incentives([result])) == 2


def test_a_black_hit_without_measures_for_the_matter_still_suppresses_incentives() -> None:
    result = assess(org(), RED, stored("black"), category="honours")
    assert result.decision == "pass" and result.black_listed
    assert combined_incentives([result]) == []


def test_a_name_alone_opens_no_green_channel() -> None:
    # The project's reading of §4: incentives need a firm (identifier) match.
    result = assess(org(ident=None), RED)
    assert [h.match for h in result.hits] == ["name"]
    assert combined_incentives([result]) == []


def test_incentives_are_listed_once() -> None:
    a = assess(org(), RED)
    b = assess(org(), stored("red-2", list_type=MODEL, polarity="red"))
    ids = [m.measure_id for m in combined_incentives([a, b])]
    assert sorted(ids) == ["RED-FAST", "RED-GP"]


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        ([], "pass"),
        (["pass"], "pass"),
        (["pass", "review"], "review"),
        (["review", "pass", "block", "review"], "block"),
        (["block", "pass"], "block"),
        (["review", "review"], "review"),
    ],
)
def test_strongest_across_subjects(decisions: list[str], expected: str) -> None:
    assert strongest(decisions) == expected  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------

RANK = {"pass": 0, "review": 1, "block": 2}
SUBJECT = org()


@st.composite
def candidate_entries(draw: st.DrawFn) -> StoredEntry:
    """An entry that may match SUBJECT by code, by name, or not at all, in any state."""
    n = draw(st.integers(0, 10_000))
    kind = draw(st.sampled_from(["id", "name", "other"]))
    start = date(2025, 1, 1) + timedelta(days=draw(st.integers(-400, 400)))
    length = draw(st.one_of(st.none(), st.integers(1, 800)))
    return stored(
        f"e{n}",
        list_type=draw(st.sampled_from([DEBTOR, MODEL, WATCH])),
        polarity=draw(st.sampled_from(["black", "red", "watch"])),
        ident={"id": ORG, "name": None, "other": OTHER_ORG}[kind],
        effective_from=start.isoformat(),
        effective_until=None if length is None else (start + timedelta(days=length)).isoformat(),
        disputed=draw(st.booleans()),
        removed=draw(st.booleans()),
    )


entry_lists = st.lists(candidate_entries(), max_size=6, unique_by=lambda e: e.entry_id)
categories = st.sampled_from(["government_procurement", "bidding", "admin_license", "honours"])


@settings(max_examples=150, deadline=None)
@given(entry_lists, entry_lists, categories)
def test_more_listings_never_weaken_a_decision(
    some: list[StoredEntry], more: list[StoredEntry], category: str
) -> None:
    fewer = assess(SUBJECT, *some, category=category)
    extra = [e for e in more if e.entry_id not in {s.entry_id for s in some}]
    all_of_them = assess(SUBJECT, *some, *extra, category=category)
    assert RANK[all_of_them.decision] >= RANK[fewer.decision]


@settings(max_examples=150, deadline=None)
@given(entry_lists, categories, st.randoms(use_true_random=False))
def test_decision_is_independent_of_candidate_order(
    entries: list[StoredEntry], category: str, rnd: Any
) -> None:
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    a = assess(SUBJECT, *entries, category=category)
    b = assess(SUBJECT, *shuffled, category=category)
    assert a.decision == b.decision
    assert sorted(h.entry_id for h in a.hits) == sorted(h.entry_id for h in b.hits)


@settings(max_examples=150, deadline=None)
@given(entry_lists, categories)
def test_decision_invariants(entries: list[StoredEntry], category: str) -> None:
    result = assess(SUBJECT, *entries, category=category)
    on = today_in_china(NOW)
    hit_ids = {h.entry_id for h in result.hits}
    for e in entries:
        assert (e.entry_id in hit_ids) == (
            is_active(e, on) and e.entry is not None and e.entry.subject.uscc != OTHER_ORG
        )
    if result.decision == "block":
        assert any(
            h.match == "id"
            and not h.disputed
            and any(m.effect == "block" and m.mandatory for m in h.measures)
            for h in result.hits
        )
    if all(h.disputed or h.match == "name" for h in result.hits):
        assert result.decision != "block"
    if any(h.polarity == "black" for h in result.hits):
        assert combined_incentives([result]) == []
    for m in combined_incentives([result]):
        assert m.effect == "incentive"
        assert any(h.polarity == "red" and h.match != "name" for h in result.hits)

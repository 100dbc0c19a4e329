"""How the domain rules become one Decision (SPEC §4): subjects in request order, strongest
decision across subjects, incentives suppressed by any black hit, masked identifiers.

``Checker`` reads the index through three calls; an in-memory stand-in answers them here so
the assembly is tested without Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanctiongate.checks import Checker, IdentifierNotListed, batch_json
from sanctiongate.domain.catalogue import Catalogue
from sanctiongate.domain.decisions import combined_incentives
from sanctiongate.domain.models import (
    AppliedMeasure,
    BatchCheckResponse,
    Hit,
    Matter,
    StoredEntry,
)
from sanctiongate.index.store import IndexMeta

from .reference import ref_id_number
from .test_decisions import (
    CATALOGUE,
    MODEL,
    ORG,
    OTHER_ORG,
    WITH_MANAGERS,
    org,
    person,
    stored,
    uscc,
)

NOW = datetime(2025, 6, 1, 4, 0, tzinfo=UTC)
BOSS = WITH_MANAGERS[0]["id_number"]
NOBODY = ref_id_number("440300", date(1988, 8, 8), 1)


class InMemoryIndex:
    def __init__(self, entries: Sequence[StoredEntry], catalogue: Catalogue) -> None:
        self.entries = list(entries)
        self.catalogue = catalogue
        self.meta = IndexMeta(
            gen="g1", state="ready", newest_event_time=NOW, measures_rev=1, fields={}
        )

    async def serving_meta(self) -> IndexMeta:
        return self.meta

    async def candidates(
        self, gen: str, lookups: Sequence[tuple[str | None, str]]
    ) -> tuple[IndexMeta, list[list[StoredEntry]]]:
        found = []
        for ident, name in lookups:
            found.append(
                [
                    e
                    for e in self.entries
                    if any(key == ident for key, _ in e.index_keys()[0])
                    or any(key == name for key, _ in e.index_keys()[1])
                ]
            )
        return self.meta, found

    async def load_catalogue(self, gen: str) -> Catalogue:
        return self.catalogue


def checker(*entries: StoredEntry) -> Checker:
    return Checker(InMemoryIndex(entries, CATALOGUE))  # type: ignore[arg-type]


PROCUREMENT = Matter(category="government_procurement")


async def test_subjects_come_back_in_request_order_with_the_strongest_decision() -> None:
    subjects = [
        person(NOBODY, name="无名氏"),
        org(OTHER_ORG, name="某某红名单公司"),
        person(BOSS),
        org(ORG),
    ]
    red = stored("red", list_type=MODEL, polarity="red", ident=OTHER_ORG, name="某某红名单公司")
    black = stored("black", related=WITH_MANAGERS)
    decision = await checker(red, black).check(subjects, PROCUREMENT, "财政局", "r-1", NOW)
    assert decision.request_id == "r-1" and decision.department == "财政局"
    assert [s.name for s in decision.subjects] == [
        "无名氏",
        "某某红名单公司",
        "张三",
        "北京某某科技有限公司",
    ]
    assert [s.decision for s in decision.subjects] == ["pass", "pass", "block", "block"]
    assert decision.decision == "block"
    assert decision.incentives == []  # black on one subject overrides red on another
    assert decision.subjects[2].identifier == BOSS[:6] + "********" + BOSS[-4:]
    assert BOSS not in decision.model_dump_json()
    assert decision.subjects[3].identifier == ORG


async def test_red_alone_passes_with_incentives() -> None:
    red = stored("red", list_type=MODEL, polarity="red")
    decision = await checker(red).check([org()], PROCUREMENT, "财政局", None, NOW)
    assert decision.decision == "pass"
    assert sorted(m.measure_id for m in decision.incentives) == ["RED-FAST", "RED-GP"]
    assert decision.request_id  # generated when the caller gave none


async def test_batch_judges_each_subject_on_its_own() -> None:
    red = stored("red", list_type=MODEL, polarity="red", ident=OTHER_ORG, name="红")
    black = stored("black")
    response = await checker(red, black).batch(
        [org(), org(OTHER_ORG, name="红")], PROCUREMENT, "财政局", None, NOW
    )
    assert [r.index for r in response.results] == [0, 1]
    assert [r.decision for r in response.results] == ["block", "pass"]
    assert response.results[0].incentives == []
    assert len(response.results[1].incentives) == 2


async def test_batch_response_is_what_validation_would_build() -> None:
    # The batch builds its response without validating it again (model_construct): it must
    # still be a valid response and serialise exactly as a validated one.
    red = stored("red", list_type=MODEL, polarity="red", ident=OTHER_ORG, name="红")
    response = await checker(red, stored("black")).batch(
        [org(), org(OTHER_ORG, name="红"), person(NOBODY)], PROCUREMENT, "财政局", "b-1", NOW
    )
    validated = BatchCheckResponse.model_validate(response.model_dump())
    assert validated.model_dump_json(by_alias=True) == response.model_dump_json(by_alias=True)
    assert response.results[2].identifier is not None and "*" in response.results[2].identifier
    assert batch_json(response) == response.model_dump_json(by_alias=True).encode()


# Names as a batch may carry them (the model allows any text): control characters, quotes,
# backslashes, CJK, astral characters, the envelope's own key as text.
NAMES = (
    st.lists(
        st.sampled_from(
            [
                '"',
                "\\",
                "\x00",
                "\x1f",
                "\x7f",
                "\u2028",
                "红",
                "𠀀",
                "a",
                " ",
                "\n",
                '"results":[]',
            ]
        ),
        min_size=1,
        max_size=8,
    )
    .map("".join)
    .filter(str.strip)
)


@settings(max_examples=60, deadline=None)
@given(names=st.lists(NAMES, min_size=1, max_size=6), request_id=NAMES)
async def test_batch_json_is_pydantics_document(names: list[str], request_id: str) -> None:
    # Hits, incentives and empty results side by side, under any names and request id.
    red = stored("red", list_type=MODEL, polarity="red", ident=OTHER_ORG, name="红")
    subjects = [org(), org(OTHER_ORG, name="红"), person(NOBODY)]
    subjects += [org(None, name=name) for name in names]
    response = await checker(red, stored("black")).batch(
        subjects, PROCUREMENT, "财政局", request_id, NOW
    )
    assert batch_json(response) == response.model_dump_json(by_alias=True).encode()


async def test_a_code_failing_its_check_is_refused_unless_exactly_it_is_listed() -> None:
    bad = "91350203M0001QAY9B"
    with pytest.raises(IdentifierNotListed) as caught:
        await checker(stored()).check([org(bad)], PROCUREMENT, "d", None, NOW)
    assert caught.value.field == "subjects.0.uscc"
    listed = stored("bad", ident=bad)
    decision = await checker(listed).check([org(bad)], PROCUREMENT, "d", None, NOW)
    assert decision.decision == "block"


BAD = "91350203M0001QAY9B"  # fails its check character
BAD_PERSON = NOBODY[:-1] + ("0" if NOBODY[-1] != "0" else "1")
LISTINGS = [
    stored("black"),
    stored("red", list_type=MODEL, polarity="red", ident=OTHER_ORG, name="红"),
    stored("rep", ident=OTHER_ORG, name="红", related=WITH_MANAGERS),
    stored("codeless", ident=None, name="无码公司"),
    stored("bad", ident=BAD),
    stored("old", effective_until="2025-02-01"),
]
BATCH_SUBJECTS = st.sampled_from(
    [
        org(),
        org(OTHER_ORG, name="红"),
        org(None, name="无码公司"),
        org(None, name="红"),
        org(uscc("91440300708461136"), name="无码公司"),
        org(BAD),
        person(BOSS),
        person(NOBODY, name="无名氏"),
        person(None, name="张三"),
        person(BAD_PERSON),
    ]
)


def _reference_batch(
    subjects: list, assessments: list, response: BatchCheckResponse
) -> BatchCheckResponse:
    """The response as the old path built it: each subject's assessment (Checker.assess), its
    result validated by pydantic."""
    return BatchCheckResponse.model_validate(
        {
            **response.model_dump(include={"request_id", "department", "matter", "as_of"}),
            "decided_at": response.decided_at,
            "results": [
                {
                    "index": i,
                    "role": s.role,
                    "kind": s.kind,
                    "name": s.name,
                    "identifier": s.masked_identifier,
                    "decision": a.decision,
                    "hits": [h.model_dump() for h in a.hits],
                    "incentives": [
                        m.model_dump() for m in combined_incentives([a]) if a.incentives
                    ],
                }
                for i, (s, a) in enumerate(zip(subjects, assessments, strict=True))
            ],
        }
    )


@settings(max_examples=150, deadline=None)
@given(
    subjects=st.lists(BATCH_SUBJECTS, min_size=1, max_size=12),
    listings=st.lists(st.sampled_from(LISTINGS), unique_by=lambda s: s.entry_id),
)
async def test_a_batch_is_each_subject_assessed_on_its_own(
    subjects: list, listings: list[StoredEntry]
) -> None:
    """Checker.batch's one pass (no assessment for a subject without candidates, the check
    character refused in the same loop) answers as Checker.assess and a validated result per
    subject did: the same results, the same refusal of the first unlisted failing code."""
    index = checker(*listings)
    try:
        _, assessments = await index.assess(subjects, PROCUREMENT, NOW)
    except IdentifierNotListed as refused:
        with pytest.raises(IdentifierNotListed) as caught:
            await index.batch(subjects, PROCUREMENT, "财政局", "b-1", NOW)
        assert caught.value.field == refused.field
        return
    response = await index.batch(subjects, PROCUREMENT, "财政局", "b-1", NOW)
    reference = _reference_batch(subjects, assessments, response)
    assert response == reference
    assert [r.model_fields_set for r in response.results] == [
        r.model_fields_set for r in reference.results
    ]
    assert batch_json(response) == reference.model_dump_json(by_alias=True).encode()


TEXTS = st.text(min_size=1, max_size=12)  # any characters: controls, quotes, astral, NUL
MEASURES = st.builds(
    lambda measure_id, title, effect, mandatory, basis, departments: AppliedMeasure(
        measure_id=measure_id,
        title=title,
        effect=effect,
        mandatory=mandatory,
        legal_basis=basis,
        implementing_departments=departments,
    ),
    TEXTS,
    TEXTS,
    st.sampled_from(["block", "review", "incentive"]),
    st.booleans(),
    TEXTS,
    st.lists(TEXTS, max_size=3),
)
HITS = st.builds(
    lambda texts, polarity, start, until, match, disputed, measures: Hit(
        entry_id=texts[0],
        list_type=texts[1],
        polarity=polarity,
        authority=texts[2],
        basis=texts[3],
        effective_from=start,
        effective_until=until,
        match=match,
        role=texts[4],
        disputed=disputed,
        measures=measures,
    ),
    st.lists(TEXTS, min_size=5, max_size=5),
    st.sampled_from(["black", "red", "watch"]),
    st.dates(),  # years 1 to 9999
    st.one_of(st.none(), st.dates()),
    st.sampled_from(["id", "related_person", "name"]),
    st.booleans(),
    st.lists(MEASURES, max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    hits=st.lists(st.lists(HITS, max_size=3), min_size=1, max_size=4),
    incentives=st.lists(MEASURES, max_size=3),
    shared=MEASURES,
)
async def test_batch_json_writes_hits_and_measures_as_pydantic_does(
    hits: list[list[Hit]], incentives: list[AppliedMeasure], shared: AppliedMeasure
) -> None:
    """Results with hits and incentives are written by orjson too (batch_json): any texts,
    any dates, measures shared between hits (as decisions.applied shares them)."""
    response = await checker().batch(
        [org(None, name=f"无{i}") for i in range(len(hits))], PROCUREMENT, "财政局", "b-1", NOW
    )
    for result, its_hits in zip(response.results, hits, strict=True):
        result.__dict__["hits"] = [*its_hits, its_hits[0]] if its_hits else []
        result.__dict__["incentives"] = [*incentives, shared, shared]
        for hit in its_hits:
            hit.__dict__["measures"].append(shared)
    assert batch_json(response) == response.model_dump_json(by_alias=True).encode()
    assert batch_json(response) == batch_json(response)  # the measures' JSON kept: the same

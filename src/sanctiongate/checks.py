"""The check service: subjects + matter → Decision. Shared by the HTTP API and the stream.

It holds no state of its own beyond caches keyed by what Redis says (generation, measures
revision), so any number of API processes and workers can run side by side.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from redis.exceptions import RedisError

from .coalesce import Coalesced
from .domain.assembled import assembled
from .domain.catalogue import Catalogue
from .domain.decisions import SubjectAssessment, assess_subject, combined_incentives, strongest
from .domain.identifiers import (
    mask_identifier,
    normalise_names,
    parse_resident_id,
    parse_uscc,
)
from .domain.models import (
    AppliedMeasure,
    AsOf,
    BatchCheckResponse,
    BatchResult,
    Decision,
    Matter,
    StoredEntry,
    Subject,
    SubjectResult,
)
from .index import IndexMeta, IndexUnavailable, SanctionIndex
from .index.store import (
    GenerationChanged,
)

WORKER_HEARTBEAT_FRESH_SECONDS = 30.0


class IdentifierNotListed(Exception):
    """A check's identifier fails its check character and is not listed as such (SPEC §2)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field
        self.message = (
            "the identifier fails its check character (a typing slip?) and is not listed as such"
        )


def _check_character_fails(subject: Subject) -> bool:
    """Whether the subject's code fails its check character. The model parsed the code while
    validating it and the parse is cached: a request's codes, normalised already as most are,
    are found there instead of computing their check characters again."""
    if subject.uscc:
        return not parse_uscc(subject.uscc).check_ok
    if subject.id_number:
        return not parse_resident_id(subject.id_number).check_ok
    return False


def _unlisted_anomalies(
    subjects: Sequence[Subject], candidates: list[list[StoredEntry]], first: int = 0
) -> None:
    """A code whose check fails is accepted only when exactly that code is listed.
    ``first``: the position of ``subjects[0]`` in the request (for the field's path)."""
    for i, (subject, found) in enumerate(zip(subjects, candidates, strict=True), first):
        if not _check_character_fails(subject):
            continue
        anomalies = subject.identifier_anomalies(f"subjects.{i}")
        if not anomalies:
            continue
        listed = {code for stored in found for code, _ in stored.index_keys()[0]}
        if subject.identifier not in listed:
            raise IdentifierNotListed(anomalies[0])


class Requested(Protocol):
    """What a decision is asked for (an approval event has these)."""

    @property
    def subjects(self) -> Sequence[Subject]: ...
    @property
    def matter(self) -> Matter: ...
    @property
    def department(self) -> str: ...
    @property
    def request_id(self) -> str: ...


Lookup = tuple[str | None, str]  # (identifier or None, normalised name)
Found = tuple[IndexMeta, list[list[StoredEntry]]]


class CoalescedReads:
    """Concurrent checks of one process share their Redis round trips (:class:`Coalesced`).

    Under load one round trip (and one read of the index meta) serves many checks; a lone
    check waits for nothing. Each read still re-reads the meta, so a generation switch or a
    wipe is detected for every check it serves.
    """

    def __init__(self, index: SanctionIndex) -> None:
        self.index = index
        self._shared: Coalesced[tuple[str, list[Lookup]], Found] = Coalesced(
            self._read_together,
            abandoned=lambda: IndexUnavailable("shutting_down", "the API is stopping"),
        )

    async def candidates(self, gen: str, lookups: list[Lookup]) -> Found:
        return await self._shared((gen, lookups))

    async def _read_together(self, reads: list[tuple[str, list[Lookup]]]) -> list[Found]:
        """One index read per generation asked for (nearly always one), sliced per caller."""
        found: list[Found | None] = [None] * len(reads)
        for gen in {gen for gen, _ in reads}:
            mine = [i for i, (asked, _) in enumerate(reads) if asked == gen]
            meta, candidates = await self.index.candidates(
                gen, [lookup for i in mine for lookup in reads[i][1]]
            )
            position = 0
            for i in mine:
                size = len(reads[i][1])
                found[i] = (meta, candidates[position : position + size])
                position += size
        return found  # type: ignore[return-value]  # every position was filled


class Checker:
    def __init__(self, index: SanctionIndex) -> None:
        self.index = index
        self.reads = CoalescedReads(index)
        self._gen: str | None = None
        self._catalogue: Catalogue = Catalogue()
        self._catalogue_key: tuple[str | None, int] | None = None

    async def catalogue(self, meta: IndexMeta) -> Catalogue:
        key = (meta.gen, meta.measures_rev)
        if key != self._catalogue_key:
            assert meta.gen is not None
            self._catalogue = await self.index.load_catalogue(meta.gen)
            self._catalogue_key = key
        return self._catalogue

    async def lookup(
        self, subjects: Sequence[Subject], coalesce: bool = False, names: list[str] | None = None
    ) -> Found:
        """Candidate entries per subject; :class:`IndexUnavailable` when the index can't answer.

        ``coalesce``: share the round trip with concurrent checks (small checks; a big batch
        reads on its own so that it never delays them). ``names``: the subjects' names folded
        (``normalise_names``), when the caller has them.
        """
        if names is None:
            names = normalise_names([s.name for s in subjects])
        # (Subject.identifier, name), the property inlined: once per subject of a batch.
        lookups = [(s.uscc or s.id_number, name) for s, name in zip(subjects, names, strict=True)]
        read = self.reads.candidates if coalesce else self.index.candidates
        try:
            for _ in range(3):
                if self._gen is None:
                    self._gen = (await self.index.serving_meta()).gen
                assert self._gen is not None
                try:
                    return await read(self._gen, lookups)
                except GenerationChanged:
                    self._gen = None
        except (RedisError, OSError) as exc:
            self._gen = None
            raise IndexUnavailable("redis_unavailable", f"Redis cannot be reached: {exc}") from exc
        except IndexUnavailable:
            self._gen = None
            raise
        raise IndexUnavailable("index_switching", "the index switched generation repeatedly")

    async def assess(
        self, subjects: Sequence[Subject], matter: Matter, now: datetime, coalesce: bool = False
    ) -> tuple[IndexMeta, list[SubjectAssessment]]:
        meta, [outcome] = await self.assess_many([(subjects, matter)], now, coalesce)
        if isinstance(outcome, IdentifierNotListed):
            raise outcome
        return meta, outcome

    async def assess_many(
        self,
        checks: Sequence[tuple[Sequence[Subject], Matter]],
        now: datetime,
        coalesce: bool = False,
    ) -> tuple[IndexMeta, list[list[SubjectAssessment] | IdentifierNotListed]]:
        """Several checks with one index lookup; a check whose identifier fails its check
        character (and is not listed as such) gets :class:`IdentifierNotListed` in its place."""
        meta, candidates = await self.lookup(
            [s for subjects, _ in checks for s in subjects], coalesce
        )
        try:
            catalogue = await self.catalogue(meta)
        except (RedisError, OSError) as exc:
            raise IndexUnavailable("redis_unavailable", f"Redis cannot be reached: {exc}") from exc
        outcomes: list[list[SubjectAssessment] | IdentifierNotListed] = []
        start = 0
        for subjects, matter in checks:
            found = candidates[start : start + len(subjects)]
            start += len(subjects)
            try:
                _unlisted_anomalies(subjects, found)
            except IdentifierNotListed as refused:
                outcomes.append(refused)
                continue
            outcomes.append(
                [
                    assess_subject(subject, entries, catalogue, matter.category, now)
                    for subject, entries in zip(subjects, found, strict=True)
                ]
            )
        return meta, outcomes

    async def decide_many(
        self, requests: Sequence[Requested], now: datetime, coalesce: bool = False
    ) -> list[Decision | IdentifierNotListed]:
        """The Decision of each request (a stream's approval events, the API's checks of one
        turn) with one index lookup; a request whose identifier fails its check character (and
        is not listed as such) gets :class:`IdentifierNotListed` in its place. ``coalesce``:
        share the round trip with concurrent lookups (:meth:`lookup`)."""
        if not requests:
            return []
        meta, assessed = await self.assess_many(
            [(r.subjects, r.matter) for r in requests], now, coalesce
        )
        snapshot = as_of(meta, now)
        return [
            outcome
            if isinstance(outcome, IdentifierNotListed)
            else decision_from(
                request.subjects,
                outcome,
                matter=request.matter,
                department=request.department,
                request_id=request.request_id,
                snapshot=snapshot,
                now=now,
            )
            for request, outcome in zip(requests, assessed, strict=True)
        ]

    async def check(
        self,
        subjects: Sequence[Subject],
        matter: Matter,
        department: str,
        request_id: str | None = None,
        now: datetime | None = None,
    ) -> Decision:
        now = now or datetime.now(UTC)
        meta, assessments = await self.assess(subjects, matter, now, coalesce=True)
        return decision_from(
            subjects,
            assessments,
            matter=matter,
            department=department,
            request_id=request_id or new_request_id(),
            snapshot=as_of(meta, now),
            now=now,
        )

    async def batch(
        self,
        subjects: Sequence[Subject],
        matter: Matter,
        department: str,
        request_id: str | None = None,
        now: datetime | None = None,
    ) -> BatchCheckResponse:
        """Bulk comparison: each subject judged on its own (black overrides red per subject).

        What :meth:`assess` and a result built from each assessment give (the check character
        refusal of :func:`_unlisted_anomalies`, first failing subject first; ``assess_subject``;
        ``masked_identifier``), in one pass over the subjects: most of a batch has no
        candidate at all, and such a subject's result is a pass without hits, written out
        without the calls and the assessment in between.
        """
        now = now or datetime.now(UTC)
        names = normalise_names([s.name for s in subjects])  # for the lookup and the matching
        meta, candidates = await self.lookup(subjects, names=names)
        try:
            catalogue = await self.catalogue(meta)
        except (RedisError, OSError) as exc:
            raise IndexUnavailable("redis_unavailable", f"Redis cannot be reached: {exc}") from exc
        category = matter.category
        # Assembled (:func:`.domain.assembled.assembled`, inlined): every value is validated
        # already (the subjects, the assessments' models); validating 10,000 results again,
        # or model_construct, cost a quarter of a batch.
        new, fields = BatchResult.__new__, _BATCH_RESULT_FIELDS
        results: list[BatchResult] = []
        add = results.append
        for i, subject in enumerate(subjects):
            found = candidates[i]
            uscc, id_number = subject.uscc, subject.id_number
            if uscc:
                if not parse_uscc(uscc).check_ok:
                    _refuse_unlisted(i, subject, found)
            elif id_number and not parse_resident_id(id_number).check_ok:
                _refuse_unlisted(i, subject, found)
            if found:
                a = assess_subject(subject, found, catalogue, category, now, names[i])
                decision, hits = a.decision, a.hits
                incentives = combined_incentives([a]) if a.incentives else []
            else:  # assess_subject's answer for no candidates
                decision, hits, incentives = "pass", [], []
            result = new(BatchResult)
            _set(
                result,
                "__dict__",
                {
                    "index": i,
                    "role": subject.role,
                    "kind": subject.kind,
                    "name": subject.name,
                    "identifier": mask_identifier(id_number) if id_number else uscc,
                    "decision": decision,
                    "hits": hits,
                    "incentives": incentives,
                },
            )
            _set(result, "__pydantic_fields_set__", fields)
            _set(result, "__pydantic_extra__", None)
            _set(result, "__pydantic_private__", None)
            add(result)
        return assembled(
            BatchCheckResponse,
            {
                "request_id": request_id or new_request_id(),
                "department": department,
                "matter": matter,
                "results": results,
                "as_of": as_of(meta, now),
                "decided_at": now,
            },
        )


_set = object.__setattr__
# Every field of a result is set: one set for all of them, as assembled() shares its own.
_BATCH_RESULT_FIELDS = set(BatchResult.model_fields)


def _refuse_unlisted(i: int, subject: Subject, found: list[StoredEntry]) -> None:
    """:func:`_unlisted_anomalies` for one subject whose code fails its check character."""
    _unlisted_anomalies([subject], [found], i)


_NO_RESULTS = b'"results":[]'


def batch_json(response: BatchCheckResponse) -> bytes:
    """``response`` as JSON, the same document as ``model_dump_json(by_alias=True)``.

    Every value of a result is a plain str, int, bool, date or None (the assembled model's
    ``__dict__``, in field order), or a list of hits (the same, and their measures) and of
    measures, which orjson writes in a fraction of what pydantic's serializer takes per model:
    most results have no hits, and those that have are written as dicts too, each measure as
    pydantic's fragment (one per measure object: hits share them). Only the envelope (dates)
    goes through pydantic. tests/domain/test_check_assembly.py holds both equal.
    """
    envelope = response.__pydantic_serializer__.to_json(
        assembled(BatchCheckResponse, {**response.__dict__, "results": []}), by_alias=True
    )
    results = orjson.dumps(
        [
            r.__dict__
            if not r.hits and not r.incentives
            else {
                **r.__dict__,
                "hits": [
                    {**h.__dict__, "measures": [_measure_json(m) for m in h.measures]}
                    for h in r.hits
                ],
                "incentives": [_measure_json(m) for m in r.incentives],
            }
            for r in response.results
        ]
    )
    head, _, tail = envelope.partition(_NO_RESULTS)
    return b"".join((head, b'"results":', results, tail))


# A measure's JSON per AppliedMeasure object (decisions.applied shares one per catalogue
# measure among all hits). Keyed by the object itself, held here so its id cannot be reused.
_MEASURE_JSON_LIMIT = 4096
_measure_jsons: dict[int, tuple[AppliedMeasure, orjson.Fragment]] = {}


def _measure_json(measure: AppliedMeasure) -> orjson.Fragment:
    cached = _measure_jsons.get(id(measure))
    if cached is not None and cached[0] is measure:
        return cached[1]
    fragment = orjson.Fragment(measure.__pydantic_serializer__.to_json(measure, by_alias=True))
    if len(_measure_jsons) >= _MEASURE_JSON_LIMIT:
        _measure_jsons.clear()
    _measure_jsons[id(measure)] = (measure, fragment)
    return fragment


def decision_from(
    subjects: Sequence[Subject],
    assessments: Sequence[SubjectAssessment],
    *,
    matter: Matter,
    department: str,
    request_id: str,
    snapshot: AsOf,
    now: datetime,
) -> Decision:
    """The Decision of SPEC §4 for assessed subjects: strongest wins, masked, in order.

    Assembled without validation (see :mod:`.domain.assembled`): every part is a validated
    model or a value the rules computed.
    """
    return assembled(
        Decision,
        {
            "schema_": "decision/v1",
            "request_id": request_id,
            "department": department,
            "matter": matter,
            "decision": strongest(a.decision for a in assessments),
            "incentives": combined_incentives(assessments),
            "subjects": [
                assembled(SubjectResult, _result_of(s, a))
                for s, a in zip(subjects, assessments, strict=True)
            ],
            "as_of": snapshot,
            "decided_at": now,
        },
    )


def _result_of(subject: Subject, assessment: SubjectAssessment) -> dict[str, Any]:
    """A subject's result (SubjectResult's fields, in order; a BatchResult's middle ones, which
    Checker.batch writes out: a merged dict per subject cost a tenth of a batch's results)."""
    return {
        "role": subject.role,
        "kind": subject.kind,
        "name": subject.name,
        "identifier": subject.masked_identifier,
        "decision": assessment.decision,
        "hits": assessment.hits,
    }


def new_request_id() -> str:
    return f"sg-{uuid.uuid4().hex}"


def as_of(meta: IndexMeta, now: datetime) -> AsOf:
    return AsOf(event_time=meta.newest_event_time, lag_seconds=index_lag_seconds(meta, time.time()))


def index_lag_seconds(meta: IndexMeta, now: float) -> float | None:
    """How far behind its topic the index is, at most.

    Each worker reports its own lag with a heartbeat every ``every`` seconds. A report ages:
    a worker whose beats stopped (dead, or cut off from Redis) may have fallen behind by all
    the time since, so its lag counts that time beyond one beat. While a worker is alive the
    index lag is the largest of theirs; with none alive, it is the time since the last
    heartbeat (the index has been unwatched that long). None before any worker ever reported.
    An overstatement (a dead worker whose partitions another took over) lasts at most
    ``WORKER_HEARTBEAT_FRESH_SECONDS``; an understatement never.
    """
    workers = meta.workers()
    if not workers:
        return None
    live = [w for w in workers.values() if now - w.get("ts", 0) <= WORKER_HEARTBEAT_FRESH_SECONDS]
    if live:
        return round(max(_aged_lag(w, now) for w in live), 3)
    return round(now - max(w.get("ts", 0) for w in workers.values()), 3)


def _aged_lag(report: dict, now: float) -> float:
    silent = now - report.get("ts", 0) - float(report.get("every", 1.0))
    return float(report.get("lag_seconds", 0.0)) + max(0.0, silent)

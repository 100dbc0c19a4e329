"""The two ways of applying list changes build the same index.

On a standalone Redis a batch is applied by one script (all keys of all slots); on Redis
Cluster by one-slot scripts (the per-slot path). Both must leave identical records, counters,
refs and activations, under shuffled duplicate histories; a change whose record moved between
the one-script read and write is redone the per-slot way.
"""

from __future__ import annotations

import random

from redis.asyncio import Redis

from sanctiongate.domain.identifiers import normalise_name
from sanctiongate.domain.models import ListChange
from sanctiongate.index import Layout, SanctionIndex
from sanctiongate.index.layout import ref_field
from sanctiongate.index.store import new_generation
from tests.conftest import Services
from tests.ids import id_number, uscc

from .conftest import list_change
from .support import assert_consistent, correction_history, org, snapshot


def _indexes(
    redis: Redis, rng: random.Random, *kinds: tuple[str, bool]
) -> tuple[SanctionIndex, ...]:
    """Indexes of their own prefixes on one Redis: (name, per_slot) each."""
    tag = rng.randrange(10**6)
    return tuple(
        SanctionIndex(redis, Layout(prefix=f"{name}{tag}"), per_slot=per_slot)
        for name, per_slot in kinds
    )


async def _activations(index: SanctionIndex, gen: str) -> dict[bytes, float]:
    return dict(await index.redis.zrange(index.layout.activations(gen), 0, -1, withscores=True))


async def test_one_script_and_per_slot_build_the_same_index(services: Services) -> None:
    rng = random.Random(20261123)
    history = correction_history(rng, 60)
    delivered = history + rng.sample(history, len(history) // 2)  # duplicates
    rng.shuffle(delivered)
    redis = Redis.from_url(services.redis_url)
    one_script, per_slot = _indexes(redis, rng, ("one", False), ("slot", True))
    gen = new_generation()
    try:
        start = 0
        while start < len(delivered):
            size = rng.randint(1, 40)
            batch = delivered[start : start + size]
            start += size
            applied = await one_script.apply_changes(gen, batch)
            expected = await per_slot.apply_changes(gen, batch)
            assert sorted((a.change.entry_id, a.change.version) for a in applied.applied) == sorted(
                (a.change.entry_id, a.change.version) for a in expected.applied
            )
            assert len(applied.stale) == len(expected.stale)
        ours, theirs = await snapshot(one_script, gen), await snapshot(per_slot, gen)
        assert_consistent(ours)
        assert ours.records == theirs.records
        assert ours.counts == theirs.counts
        assert ours.identifier_refs == theirs.identifier_refs
        assert ours.name_refs == theirs.name_refs
        assert ours.codeless_refs == theirs.codeless_refs
        assert await _activations(one_script, gen) == await _activations(per_slot, gen)
        assert {s.version for s in ours.records.values()} > {1}  # corrections were applied
        assert any(s.removed for s in ours.records.values())
    finally:
        await one_script.drop_generation(gen)
        await per_slot.drop_generation(gen)
        await redis.aclose()


async def test_a_record_written_between_read_and_write_is_redone_per_slot(
    services: Services,
) -> None:
    """Another worker writes version 1 after this one read "nothing stored": the script must
    not apply version 2 on that stale reading (it would keep version 1's refs forever)."""
    redis = Redis.from_url(services.redis_url)
    index = SanctionIndex(redis, Layout(prefix=f"moved{random.randrange(10**6)}"), per_slot=False)
    gen = new_generation()
    person = id_number(birth="19750505")
    first = ListChange.model_validate(
        list_change(
            "moved-1",
            1,
            subject=org(uscc(), "先写公司"),
            related_persons=[{"role": "legal_representative", "name": "先写", "id_number": person}],
        )
    )
    second = ListChange.model_validate(list_change("moved-1", 2, subject=org(uscc(), "后写公司")))
    read_records = index._read_fields

    async def read_then_other_worker_writes(*args: object, **kwargs: object) -> list:
        before = await read_records(*args, **kwargs)
        await SanctionIndex(redis, index.layout, per_slot=True).apply_changes(gen, [first])
        return before

    try:
        index._read_fields = read_then_other_worker_writes  # type: ignore[method-assign]
        result = await index.apply_changes(gen, [second])
        index._read_fields = read_records  # type: ignore[method-assign]
        assert [a.change for a in result.applied] == [second]
        assert result.applied[0].before is not None and result.applied[0].before.version == 1
        snap = await snapshot(index, gen)
        assert_consistent(snap)
        assert snap.records["moved-1"].version == 2
        assert all(
            entry_id != "moved-1" for entry_id, _ in snap.identifier_refs.get(ref_field(person), ())
        )
    finally:
        await index.drop_generation(gen)
        await redis.aclose()


def _in_order_per_entry(rng: random.Random, history: list[ListChange]) -> list[ListChange]:
    """Entries interleaved at random, each entry's versions in their order (as a partition
    delivers them: one entry, one key, one partition)."""
    shuffled = rng.sample(history, len(history))
    versions: dict[str, list[ListChange]] = {}
    for change in sorted(history, key=lambda c: c.version):
        versions.setdefault(change.entry_id, []).append(change)
    return [versions[change.entry_id].pop(0) for change in shuffled]


async def test_how_a_partition_is_cut_into_batches_changes_nothing(services: Services) -> None:
    """Applied in batches of any size or one by one, the same changes leave the same index,
    a removed listing's history included: a remove that overtakes its upsert within a batch
    keeps that upsert's listing, as it does when they come one at a time."""
    rng = random.Random(20261124)
    delivered = _in_order_per_entry(rng, correction_history(rng, 60))
    redis = Redis.from_url(services.redis_url)
    batched, single = _indexes(redis, rng, ("batched", False), ("single", False))
    gen = new_generation()
    try:
        start, overtaken = 0, 0
        while start < len(delivered):
            size = rng.randint(5, 60)
            result = await batched.apply_changes(gen, delivered[start : start + size])
            overtaken += len(result.overtaken)
            assert not result.stale  # nothing in order is stale, overtaken or not
            start += size
        for change in delivered:
            await single.apply_changes(gen, [change])
        ours, theirs = await snapshot(batched, gen), await snapshot(single, gen)
        assert overtaken > 0, "no batch held two versions of an entry"
        assert ours.records == theirs.records
        assert ours.identifier_refs == theirs.identifier_refs
        assert ours.name_refs == theirs.name_refs
        assert ours.codeless_refs == theirs.codeless_refs
        assert ours.counts == theirs.counts
        assert any(s.removed and s.entry is not None for s in ours.records.values())
    finally:
        await batched.drop_generation(gen)
        await single.drop_generation(gen)
        await redis.aclose()


async def _records_read(index: SanctionIndex, gen: str, lookups: list) -> list[str]:
    """The entry ids whose records ``candidates`` reads for ``lookups`` (per slot: in a read of
    their own; on a single Redis: in the script that read the refs)."""
    read: list[str] = []
    reader, script_reader = index._read_fields, index._read_refs_and_records

    async def recording(gen: str, reads: list, meta: bool = True):  # type: ignore[no-untyped-def]
        suffixes, fields = reads[::2], reads[1::2]
        read.extend(f for suffix, f in zip(suffixes, fields, strict=True) if suffix.endswith(":e"))
        return await reader(gen, reads, meta)

    async def script_recording(gen: str, reads: list):  # type: ignore[no-untyped-def]
        raw_meta, refs, records = await script_reader(gen, reads)
        read.extend(records)
        return raw_meta, refs, records

    index._read_fields = recording  # type: ignore[method-assign]
    index._read_refs_and_records = script_recording  # type: ignore[method-assign]
    try:
        await index.candidates(gen, lookups)
    finally:
        del index._read_fields, index._read_refs_and_records
    return read


def _listing(
    entry_id: str, version: int, code: str | None, name: str, *persons: dict
) -> ListChange:
    message = list_change(entry_id, version, subject=org(code, name), related_persons=list(persons))
    return ListChange.model_validate(message)


async def test_a_check_with_a_code_reads_by_name_only_the_parties_without_one(
    services: Services,
) -> None:
    # A name match counts for a subject with a code only against a party without one (SPEC
    # §4): the index finds those apart (kind m), so a common name's coded listings are not
    # even read for it; without a code, every listing of the name is a candidate.
    redis = Redis.from_url(services.redis_url)
    rep = {"role": "legal_representative", "name": "张同名"}
    lookups = [
        (uscc(), normalise_name("同名公司")),
        (None, normalise_name("同名公司")),
        (id_number(), normalise_name("张同名")),
        (None, normalise_name("张同名")),
    ]
    for index in _indexes(redis, random.Random(20261203), ("mone", False), ("mslot", True)):
        gen = new_generation()
        try:
            await index.apply_changes(
                gen,
                [
                    _listing("coded", 1, uscc(), "同名公司"),
                    _listing("codeless", 1, None, "同名公司"),
                    _listing("rep-without", 1, uscc(), "甲公司", rep),
                    _listing("rep-with", 1, uscc(), "乙公司", {**rep, "id_number": id_number()}),
                ],
            )
            await index.switch_generation(gen, {})
            _, found = await index.candidates(gen, lookups)
            assert [sorted(s.entry_id for s in f) for f in found] == [
                ["codeless"],
                ["coded", "codeless"],
                ["rep-without"],
                ["rep-with", "rep-without"],
            ]
            # What is read for the subject with a code: only the code-less listing's record.
            assert await _records_read(index, gen, lookups[:1]) == ["codeless"]
            # A correction gives the code-less listing its code: it leaves kind m.
            await index.apply_changes(gen, [_listing("codeless", 2, uscc(), "同名公司")])
            _, [found_now] = await index.candidates(gen, lookups[:1])
            assert found_now == []
            snap = await snapshot(index, gen)
            assert_consistent(snap)
            assert not any(e == "codeless" for refs in snap.codeless_refs.values() for e, _ in refs)
        finally:
            await index.drop_generation(gen)
            await redis.delete(index.layout.meta)
    await redis.aclose()

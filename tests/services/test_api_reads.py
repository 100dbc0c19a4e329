"""The check's read paths on a real Redis: scripted bulk reads (single Redis) and coalesced reads
answer exactly what the per-slot pipelined reads (Cluster) answer, and refuse a switched, wiped
or rebuilding index."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from sanctiongate.checks import CoalescedReads
from sanctiongate.domain.identifiers import normalise_name
from sanctiongate.domain.models import ListChange
from sanctiongate.index import IndexUnavailable, Layout, SanctionIndex
from sanctiongate.index.store import GenerationChanged, new_generation
from tests.conftest import Services
from tests.ids import id_number, uscc

from .conftest import list_change

pytestmark = pytest.mark.services


def upsert(entry_id: str, code: str, name: str, rep: str | None) -> ListChange:
    related = [{"role": "legal_representative", "name": "王某", "id_number": rep}] if rep else []
    subject = {"kind": "legal_person", "name": name, "uscc": code}
    return ListChange.model_validate(
        list_change(entry_id, 1, subject=subject, related_persons=related)
    )


class Built:
    def __init__(self, index: SanctionIndex, gen: str, codes: list[str], reps: list[str]) -> None:
        self.index, self.gen, self.codes, self.reps = index, gen, codes, reps


@pytest_asyncio.fixture(scope="module")
async def built(services: Services) -> AsyncIterator[Built]:
    redis = Redis.from_url(services.redis_url)
    index = SanctionIndex(redis, Layout(prefix=f"reads{uuid.uuid4().hex[:8]}"))
    gen = new_generation()
    await index.mark_rebuilding(gen)
    codes, reps = [uscc() for _ in range(300)], [id_number() for _ in range(100)]
    changes = [
        upsert(f"r-{i}", code, f"读取公司{i % 250}", reps[i] if i < 100 else None)
        for i, code in enumerate(codes)
    ]
    await index.apply_changes(gen, changes)
    await index.switch_generation(gen, {})
    yield Built(index, gen, codes, reps)
    async for key in redis.scan_iter(match=f"{index.layout.prefix}:*"):
        await redis.unlink(key)
    await redis.aclose()


def lookups(built: Built, n: int) -> list[tuple[str | None, str]]:
    """A mix: listed codes, related persons, names only, and unknown subjects."""
    out: list[tuple[str | None, str]] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append((built.codes[i % 300], normalise_name(f"读取公司{i % 250}")))
        elif kind == 1:
            out.append((built.reps[i % 100], normalise_name("张三")))
        elif kind == 2:
            out.append((None, normalise_name(f"读取公司{i % 250}")))
        else:
            out.append((uscc(), normalise_name(f"无关公司{i}")))
    return out


def scripted(index: SanctionIndex) -> SanctionIndex:
    return SanctionIndex(index.redis, index.layout, per_slot=False)


def per_slot(index: SanctionIndex) -> SanctionIndex:
    return SanctionIndex(index.redis, index.layout, per_slot=True)


def ids(found: list[list]) -> list[list[tuple[str, int]]]:
    return [sorted((s.entry_id, s.version) for s in entries) for entries in found]


@pytest.mark.parametrize("n", [1, 7, 4_500])  # 4,500 subjects → 9,000+ keys: several scripts
async def test_scripted_reads_answer_what_the_index_answers(built: Built, n: int) -> None:
    wanted = lookups(built, n)
    meta, expected = await per_slot(built.index).candidates(built.gen, wanted)
    scripted_meta, found = await scripted(built.index).candidates(built.gen, wanted)
    assert scripted_meta.gen == meta.gen == built.gen
    assert ids(found) == ids(expected)
    assert sum(1 for entries in found if entries) >= n // 2  # not trivially empty


async def test_coalesced_reads_split_one_round_trip_back_per_check(built: Built) -> None:
    reads = CoalescedReads(scripted(built.index))
    per_check = [lookups(built, 40)[i : i + 1 + i % 3] for i in range(40)]
    answers = await asyncio.gather(*(reads.candidates(built.gen, ls) for ls in per_check))
    for wanted, (_, found) in zip(per_check, answers, strict=True):
        _, expected = await built.index.candidates(built.gen, wanted)
        assert ids(found) == ids(expected)


async def test_scripted_reads_refuse_a_switched_wiped_or_rebuilding_index(built: Built) -> None:
    reads = scripted(built.index)
    one = lookups(built, 1)
    with pytest.raises(GenerationChanged):
        await reads.candidates("g-some-older-generation", one)
    other = SanctionIndex(built.index.redis, Layout(prefix=f"none{uuid.uuid4().hex[:6]}"))
    with pytest.raises(IndexUnavailable) as wiped:
        await scripted(other).candidates(built.gen, one)
    assert wiped.value.reason == "index_not_built"
    await other.mark_rebuilding("g-next")
    await other.redis.hset(other.layout.meta, "gen", built.gen)
    try:
        with pytest.raises(IndexUnavailable) as rebuilding:
            await scripted(other).candidates(built.gen, one)
        assert rebuilding.value.reason == "index_rebuilding"
    finally:
        await other.redis.delete(other.layout.meta)


async def test_a_wipe_between_the_two_reads_is_never_answered(services: Services) -> None:
    """Per slot (Cluster): refs read, then the index wiped before the records are read: 503,
    never an empty hit list (which would answer pass for a listed subject). On a single Redis
    one script reads both (below)."""
    redis = Redis.from_url(services.redis_url)
    index = SanctionIndex(redis, Layout(prefix=f"wipe{uuid.uuid4().hex[:8]}"), per_slot=True)
    gen = new_generation()
    await index.mark_rebuilding(gen)
    code = uscc()
    await index.apply_changes(gen, [upsert("w-1", code, "擦除公司", None)])
    await index.switch_generation(gen, {})

    async def wipe() -> None:
        async for key in redis.scan_iter(match=f"{index.layout.prefix}:*"):
            await redis.unlink(key)

    lookup = [(code, normalise_name("擦除公司"))]
    try:
        reader = per_slot(index)
        first_read = reader._read_fields

        async def read_then_wipe(gen, reads):  # type: ignore[no-untyped-def]
            replies = await first_read(gen, reads)
            reader._read_fields = first_read  # type: ignore[method-assign]
            await wipe()
            return replies

        reader._read_fields = read_then_wipe  # type: ignore[method-assign]
        candidates = reader.candidates
        with pytest.raises(IndexUnavailable):
            await candidates(gen, lookup)
    finally:
        await wipe()
        await redis.aclose()


async def test_a_wipe_between_the_scripts_of_a_big_read_is_never_answered(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single Redis reads refs and records in one script per 2,000 keys: a wipe between two
    of them (a big batch) is seen in the meta read after the last one."""
    redis = Redis.from_url(services.redis_url)
    index = SanctionIndex(redis, Layout(prefix=f"wipe{uuid.uuid4().hex[:8]}"), per_slot=False)
    gen = new_generation()
    await index.mark_rebuilding(gen)
    codes = [uscc() for _ in range(3)]
    await index.apply_changes(
        gen, [upsert(f"w-{i}", code, f"擦除公司{i}", None) for i, code in enumerate(codes)]
    )
    await index.switch_generation(gen, {})
    script = index._read_candidates
    chunks = 0

    async def wipe_before_the_second(**kwargs):  # type: ignore[no-untyped-def]
        nonlocal chunks
        chunks += 1
        if chunks == 2:  # queued in the same pipeline, between the two scripts
            kwargs["client"].unlink(index.layout.meta)
        return await script(**kwargs)

    def pipeline(**kwargs):  # type: ignore[no-untyped-def]
        pipe = real_pipeline(**kwargs)
        execute = pipe.execute

        async def without_the_wipes_reply():  # type: ignore[no-untyped-def]
            replies = await execute()
            del replies[1]  # the UNLINK's, queued after the first script
            return replies

        pipe.execute = without_the_wipes_reply
        return pipe

    real_pipeline = redis.pipeline
    monkeypatch.setattr(index, "_read_candidates", wipe_before_the_second)
    monkeypatch.setattr(redis, "pipeline", pipeline)
    lookup = [(codes[i % 3], normalise_name(f"擦除公司{i % 3}")) for i in range(2_500)]
    try:
        with pytest.raises(IndexUnavailable):
            await index.candidates(gen, lookup)
        assert chunks == 3
    finally:
        async for key in redis.scan_iter(match=f"{index.layout.prefix}:*"):
            await redis.unlink(key)
        await redis.aclose()


@pytest.mark.parametrize("entry_id", ["r-1", "e", "", "公司-记录-7", "x" * 300, "a\x00b"])
async def test_the_read_script_finds_a_record_in_layout_buckets(
    built: Built, entry_id: str
) -> None:
    """The script's CRC-32 in Lua picks the bucket Layout.bucket picks, for any entry id."""
    for buckets in (4096, 1000, 7):
        layout = Layout(prefix=f"crc{uuid.uuid4().hex[:6]}", buckets=buckets)
        index = SanctionIndex(built.index.redis, layout, per_slot=False)
        await built.index.redis.hset(layout.meta, mapping={"gen": "g1", "state": "ready"})
        refs_key = layout.bucket_base("g1") + layout.bucket_suffix(3, "n")
        record_key = layout.entries("g1", entry_id)
        try:
            await built.index.redis.hset(refs_key, "f", f"{entry_id}\x1f1")
            await built.index.redis.hset(record_key, entry_id, b"the record")
            _, refs, records = await index._read_refs_and_records(
                "g1", [layout.bucket_suffix(3, "n"), "f"]
            )
            assert refs == [f"{entry_id}\x1f1".encode()]
            assert records == {entry_id: b"the record"}
        finally:
            await built.index.redis.delete(layout.meta, refs_key, record_key)

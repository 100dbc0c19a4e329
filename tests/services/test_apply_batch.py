"""The one-script apply path builds its keys in Lua and notes the newest event time itself.

Key names are part of the index format: every key the scripts write must be the one the
:class:`Layout` names (the per-slot path and every reader use those), and the newest event
time must only ever move forward, whatever order batches arrive in.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from sanctiongate.domain.identifiers import normalise_name
from sanctiongate.domain.models import ListChange
from sanctiongate.index import Layout, SanctionIndex
from sanctiongate.index.layout import ref_field
from sanctiongate.index.store import GenerationChanged, new_generation
from tests.conftest import Services
from tests.ids import id_number, uscc

from .conftest import list_change
from .support import org


def _change(entry_id: str, version: int, at: datetime, name: str) -> ListChange:
    message = list_change(
        entry_id,
        version,
        subject=org(uscc(), name),
        related_persons=[{"role": "principal", "name": f"{name}负责人", "id_number": id_number()}],
    )
    message["event_time"] = at.isoformat()
    return ListChange.model_validate(message)


async def test_the_script_writes_exactly_the_keys_the_layout_names(services: Services) -> None:
    redis = Redis.from_url(services.redis_url)
    layout = Layout(prefix=f"keys{random.randrange(10**6)}", buckets=64)
    index = SanctionIndex(redis, layout, per_slot=False)
    gen = new_generation()
    now = datetime.now(UTC)
    changes = [_change(f"k-{i}", 1, now, f"键名公司{i}") for i in range(30)]
    try:
        result = await index.apply_changes(gen, changes)
        assert len(result.applied) == 30
        expected: set[str] = set()  # listed since 2024: nothing to activate
        for change in changes:
            assert change.entry is not None
            expected |= {layout.entries(gen, change.entry_id), layout.counts(gen, change.entry_id)}
            subject, person = change.entry.subject, change.entry.related_persons[0]
            assert subject.uscc is not None and person.id_number is not None
            expected |= {
                layout.identifiers(gen, subject.uscc),
                layout.identifiers(gen, person.id_number),
                layout.names(gen, normalise_name(subject.name)),
                layout.names(gen, normalise_name(person.name)),
            }
        found = {key.decode() async for key in redis.scan_iter(match=f"{layout.prefix}:{{*")}
        assert found == expected
        for change in changes:
            stored = await index.entries(gen, [change.entry_id])
            assert stored[change.entry_id].version == 1  # read back through the layout's keys
    finally:
        await index.drop_generation(gen)
        await redis.aclose()


async def test_the_newest_event_time_only_moves_forward(services: Services) -> None:
    redis = Redis.from_url(services.redis_url)
    index = SanctionIndex(redis, Layout(prefix=f"newest{random.randrange(10**6)}"), per_slot=False)
    gen = new_generation()
    later = datetime(2026, 5, 1, 8, 30, 0, 123456, tzinfo=UTC)
    earlier = later - timedelta(days=3)
    try:
        await index.apply_changes(gen, [_change("n-1", 1, later, "较新公司")])
        meta = await index.read_meta()
        assert meta.newest_event_time == later
        assert meta.fields["newest_event_us"] == str(int(later.timestamp() * 1_000_000))
        await index.apply_changes(gen, [_change("n-2", 1, earlier, "较旧公司")])
        assert (await index.read_meta()).newest_event_time == later
        newer = later + timedelta(seconds=1)
        await index.apply_changes(gen, [_change("n-3", 1, newer, "最新公司")])
        assert (await index.read_meta()).newest_event_time == newer
    finally:
        await index.drop_generation(gen)
        await redis.delete(index.layout.meta)
        await redis.aclose()


async def test_a_shared_ref_field_never_shows_another_subjects_listing(services: Services) -> None:
    """Ref fields are digests (layout.ref_field): should two codes ever share one, a subject's
    query still lists its own entries only, and a check finds only what matches it."""
    redis = Redis.from_url(services.redis_url)
    layout = Layout(prefix=f"shared{random.randrange(10**6)}", buckets=64)
    index = SanctionIndex(redis, layout, per_slot=False)
    gen = new_generation()
    ours, theirs = (
        _change("ours-1", 1, datetime.now(UTC), "甲公司"),
        _change("theirs-1", 1, datetime.now(UTC), "乙公司"),
    )
    try:
        await index.apply_changes(gen, [ours, theirs])
        assert ours.entry is not None and theirs.entry is not None
        code = ours.entry.subject.uscc
        assert code is not None
        # What a digest collision would leave: the other listing's ref under our code's field.
        await redis.hset(layout.identifiers(gen, code), ref_field(code), "ours-1\x1etheirs-1")
        found = await index.entries_for_identifier(gen, code)
        assert [s.entry_id for s in found] == ["ours-1"]
        await index.switch_generation(gen, {})  # checks read a serving generation only
        _, candidates = await index.candidates(gen, [(code, normalise_name("甲公司"))])
        assert [s.entry_id for s in candidates[0]] == ["ours-1"]
    finally:
        await index.drop_generation(gen)
        await redis.delete(layout.meta)
        await redis.aclose()


@pytest.mark.parametrize("per_slot", [False, True], ids=["one-script", "per-slot"])
async def test_a_live_apply_writes_nothing_into_a_generation_that_no_longer_serves(
    services: Services, per_slot: bool
) -> None:
    """The live ingest reads the meta with the stored records (no round trip of its own): a
    generation wiped or switched away since it was last seen gets nothing written."""
    redis = Redis.from_url(services.redis_url)
    layout = Layout(prefix=f"serving{random.randrange(10**6)}", buckets=64)
    index = SanctionIndex(redis, layout, per_slot=per_slot)
    old = new = new_generation()
    while new == old:  # ids count milliseconds
        new = new_generation()
    try:
        await index.switch_generation(old, {})
        first = _change("s-1", 1, datetime.now(UTC), "在用公司")
        assert [a.change for a in (await index.apply_changes(old, [first], serving=True)).applied]
        await index.switch_generation(new, {})  # a rebuild switched: old serves no more
        late = _change("s-2", 1, datetime.now(UTC), "迟到公司")
        with pytest.raises(GenerationChanged):
            await index.apply_changes(old, [late], serving=True)
        assert await index.entries(old, ["s-2"]) == {}
        await redis.delete(layout.meta)  # wiped
        with pytest.raises(GenerationChanged):
            await index.apply_changes(new, [late], serving=True)
        assert await index.entries(new, ["s-2"]) == {}
        # A rebuild writes a generation that does not serve yet: not refused.
        assert (await index.apply_changes(new, [late])).applied
    finally:
        await index.drop_generation(old)
        await index.drop_generation(new)
        await redis.delete(layout.meta)
        await redis.aclose()


def _remove(entry_id: str, version: int) -> ListChange:
    return ListChange.model_validate(list_change(entry_id, version, op="remove", reason="revoked"))


async def _dump(redis: Redis, prefix: str, gen: str) -> dict[str, object]:
    out: dict[str, object] = {}
    async for key in redis.scan_iter(match=f"{prefix}:*"):
        k = key.decode()
        if ":meta" in k:
            continue
        kind = await redis.type(key)
        if kind == b"hash":
            v = await redis.hgetall(key)
        elif kind == b"zset":
            v = await redis.zrange(key, 0, -1)
        elif kind == b"set":
            v = sorted(await redis.smembers(key))
        else:
            v = await redis.get(key)
        out[k.replace(prefix, "P").replace(gen, "G")] = v
    return out


@pytest.mark.parametrize("per_slot", [False, True])
async def test_a_prepared_batch_applied_again_changes_nothing(
    services: Services, per_slot: bool
) -> None:
    """The consumer retries a batch whose apply failed with the same PreparedBatch: applied
    twice, it writes what apply_changes writes once, and the second time nothing."""
    redis = Redis.from_url(services.redis_url)
    now = datetime.now(UTC)
    batch = [
        _change("e-1", 1, now, "甲公司"),
        _change("e-1", 1, now, "乙公司"),  # the same version again, other content: stale
        _change("e-2", 1, now, "丙公司"),
        _remove("e-2", 2),  # a remove after an upsert in the batch
        _remove("e-3", 1),
        _change("e-3", 2, now, "丁公司"),  # an upsert after a remove
        *[_change(f"m-{i}", 1, now, f"多公司{i}") for i in range(450)],
    ]
    results = {}
    dumps = {}
    for way in ("changes", "prepared"):
        prefix = f"r7{way}{per_slot}{random.randrange(10**6)}"
        index = SanctionIndex(redis, Layout(prefix=prefix, buckets=64), per_slot=per_slot)
        gen = new_generation() + way
        first = await index.apply_changes(gen, [_change("e-2", 0, now, "旧丙")])  # stored before
        assert len(first.applied) == 1
        if way == "changes":
            r = await index.apply_changes(gen, batch)
            again = await index.apply_changes(gen, batch)
        else:
            prepared = index.prepare(batch)
            for _ in prepared.steps(200):
                pass
            r = await index.apply_prepared(gen, prepared)
            again = await index.apply_prepared(gen, prepared)
        results[way] = (
            sorted((a.change.entry_id, a.change.version) for a in r.applied),
            sorted((c.entry_id, c.version) for c in r.stale),
            sorted((c.entry_id, c.version) for c in r.overtaken),
            len(again.applied),
            sorted((c.entry_id, c.version) for c in again.stale),
        )
        dumps[way] = await _dump(redis, prefix, gen)
        await index.drop_generation(gen)
    await redis.aclose()
    assert results["changes"] == results["prepared"]
    assert results["prepared"][3] == 0
    assert dumps["changes"] == dumps["prepared"]

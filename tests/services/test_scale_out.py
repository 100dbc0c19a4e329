"""Issue 3, item 8: scale-out. Workers share the partitions of one consumer group; stopping one
mid-stream (politely or with SIGKILL) leaves an exact index. And the Redis layout is ready for
Redis Cluster: every multi-key operation touches keys of one hash slot."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.crc import key_slot

from sanctiongate.domain.models import ListChange, Measure
from sanctiongate.index import Layout, SanctionIndex
from sanctiongate.index.store import new_generation
from tests.conftest import Services, eventually, wait_http
from tests.ids import uscc

from .conftest import Stack, list_change
from .support import (
    Poller,
    assert_equals_replay,
    fresh_id_number,
    index_of,
    listed_subject,
    metric,
    org,
    send_many,
    start_worker,
)

pytestmark = pytest.mark.services

SCALE_LIST = "scale_out_test"


def wave(tag: str, entries: int, rng: random.Random) -> list[dict]:
    changes = [
        list_change(f"{tag}-{i}", 1, subject=org(uscc(), f"扩容{tag}{i}"), list_type=SCALE_LIST)
        for i in range(entries)
    ]
    for i in rng.sample(range(entries), entries // 3):  # some listings revoked again
        changes.append(list_change(f"{tag}-{i}", 2, op="remove", reason="revoked"))
    return changes


async def scale_count(stack: Stack, redis: Redis) -> int:
    index = index_of(stack, redis)
    gen = (await index.serving_meta()).gen
    assert gen is not None
    return (await index.counts(gen)).get(("black", SCALE_LIST), 0)


async def applied_by(url: str) -> float:
    return await metric(url, "sanctiongate_list_changes_total", result="applied")


async def test_two_workers_share_the_stream_and_one_can_go_mid_stream(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, redis: Redis
) -> None:
    topic = stack.settings.topic_list_changes
    partitions = await producer.partitions_for(topic)
    assert len(partitions) == stack.settings.topic_partitions >= 2

    first, first_url = stack.workers[0], stack.worker_url
    second, second_url = start_worker(stack)
    wait_http(f"{second_url}/readyz", 90, proc=second)
    subject = await listed_subject(stack, producer, http, "scale-watched")
    rng = random.Random(8)
    expected = 0
    poller = Poller(http, subject)
    with poller:
        # Wave 1 with both workers: each takes a share of the partitions. The second may
        # still be joining the group; small waves follow until both have applied changes.
        await send_many(producer, topic, wave("w1", 1500, rng))
        expected += 1500 - 1500 // 3
        for more in range(60):
            if await applied_by(first_url) > 0 and await applied_by(second_url) > 0:
                break
            await send_many(producer, topic, wave(f"w1m{more}", 30, rng))
            expected += 30 - 30 // 3
            await asyncio.sleep(1.0)
        else:
            raise AssertionError("the second worker never took a share of the partitions")
        # Wave 2: the first worker is stopped politely while it streams in.
        sending = asyncio.create_task(send_many(producer, topic, wave("w2", 1500, rng)))
        await asyncio.sleep(0.2)
        first.stop()
        await sending
        expected += 1500 - 1500 // 3
        # A replacement joins; wave 3: the second worker is killed while it streams in.
        third, third_url = start_worker(stack)
        wait_http(f"{third_url}/readyz", 90, proc=third)
        sending = asyncio.create_task(send_many(producer, topic, wave("w3", 1500, rng)))
        await asyncio.sleep(0.2)
        second.stop(kill=True)
        await sending
        expected += 1500 - 1500 // 3

        async def caught_up() -> bool:
            return await scale_count(stack, redis) == expected

        await eventually(caught_up, timeout=90, interval=0.3)
        answers = await poller.stop()
    assert set(answers) == {"block"}, answers
    assert third.proc.poll() is None
    await assert_equals_replay(stack, redis)


# --- Redis Cluster: one hash slot per multi-key operation ----------------------------------


def test_an_entry_and_its_counters_share_a_slot() -> None:
    layout = Layout(prefix="sg")
    for i in range(2000):
        gen, entry_id = f"g{i:x}", f"entry-{i}"
        assert key_slot(layout.entries(gen, entry_id).encode()) == key_slot(
            layout.counts(gen, entry_id).encode()
        )
    # … while different buckets spread over the cluster.
    slots = {key_slot(layout.entries("g1", f"entry-{i}").encode()) for i in range(2000)}
    assert len(slots) > 1000


class CommandLog:
    """Every command sent to Redis, as (transaction?, [commands]) per round trip."""

    def __init__(self) -> None:
        self.round_trips: list[tuple[bool, list[tuple]]] = []


_MULTI_KEY = {"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH"}
_NO_KEY = {"SCAN", "SCRIPT", "PING", "MULTI", "EXEC", "INFO", "CLIENT", "HELLO", "SELECT"}


def keys_of(command: tuple) -> list[bytes]:
    name = str(command[0]).upper()
    args = [a.encode() if isinstance(a, str) else a for a in command[1:]]
    if name in ("EVALSHA", "EVAL"):
        count = int(args[1])
        return args[2 : 2 + count]
    if name in _MULTI_KEY:
        return list(args)
    if name in _NO_KEY or not args:
        return []
    return [args[0]]


@pytest.fixture
def command_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[CommandLog]:
    log = CommandLog()
    execute_pipeline = Pipeline.execute
    execute_command = Redis.execute_command

    async def recording_execute(self: Pipeline, raise_on_error: bool = True):  # type: ignore[no-untyped-def]
        log.round_trips.append((self.is_transaction, [args for args, _ in self.command_stack]))
        return await execute_pipeline(self, raise_on_error)

    async def recording_command(self: Redis, *args, **options):  # type: ignore[no-untyped-def]
        log.round_trips.append((False, [args]))
        return await execute_command(self, *args, **options)

    monkeypatch.setattr(Pipeline, "execute", recording_execute)
    monkeypatch.setattr(Redis, "execute_command", recording_command)
    yield log


async def test_every_multi_key_operation_stays_in_one_slot(
    services: Services, command_log: CommandLog
) -> None:
    redis = Redis.from_url(services.redis_url)
    # Redis Cluster allows a script one slot only: this checks the per-slot path.
    index = SanctionIndex(redis, Layout(prefix=f"slots{random.randrange(10**6)}"), per_slot=True)
    gen = new_generation()
    now = datetime.now(UTC)
    tomorrow = (date.today() + timedelta(days=2)).isoformat()

    def change(entry_id: str, version: int, **entry: object) -> ListChange:
        message = list_change(entry_id, version, **entry)
        return ListChange.model_validate(message)

    try:
        assert await index.acquire_rebuild_lock("slot-test", 30)
        await index.mark_rebuilding(gen)
        people = [fresh_id_number() for _ in range(3)]
        firsts = [
            change(
                f"slot-{i}",
                1,
                subject=org(uscc(), f"槽位公司{i}"),
                related_persons=[
                    {"role": "legal_representative", "name": f"代表{i}", "id_number": people[i % 3]}
                ],
                effective_from=tomorrow if i % 2 else "2024-01-01",
            )
            for i in range(40)
        ]
        await index.apply_changes(gen, firsts)
        seconds = [change(f"slot-{i}", 2, subject=org(uscc(), f"更正{i}")) for i in range(20)]
        removes = [change(f"slot-{i}", 3, op="remove", reason="repaired") for i in range(20, 30)]
        await index.apply_changes(gen, [*seconds, *removes])
        await index.apply_changes(gen, firsts)  # stale replays
        await index.refresh_rebuild_lock("slot-test", 30)
        measure = Measure.model_validate(
            {
                "schema": "measure/v1",
                "measure_id": "SLOT-1",
                "title": "槽位测试",
                "effect": "block",
                "mandatory": True,
                "list_types": ["dishonest_judgment_debtor"],
                "matter_categories": ["*"],
                "roles": ["subject"],
                "legal_basis": "测试",
            }
        )
        await index.put_measures(gen, [measure])
        await index.switch_generation(gen, {"topic": {0: 10}})
        await index.release_rebuild_lock("slot-test")
        await index.note_newest(now)
        await index.record_worker("w1", {"ts": 0})
        await index.serving_meta()
        lookups = [(s.entry.subject.identifier, s.entry.subject.name) for s in firsts if s.entry]
        await index.candidates(gen, [*lookups, (people[0], "代表0"), (None, "槽位公司3")])
        await index.entries_for_identifier(gen, people[1])
        await index.counts(gen)
        await index.load_catalogue(gen)
        await index.delete_measures(gen, ["SLOT-1"])
        await index.settle_activations(
            await index.due_activations(gen, now.timestamp() + 3 * 86400)
        )
        await index.drop_generation(gen)
    finally:
        await redis.delete(index.layout.meta)
        await redis.delete(index.layout.rebuild_lock)
        await redis.aclose()

    scripts = 0
    transactions = 0
    for transaction, commands in command_log.round_trips:
        if transaction:
            transactions += 1
            slots = {key_slot(k) for c in commands for k in keys_of(c)}
            assert len(slots) <= 1, f"a transaction spans slots: {commands}"
        for command in commands:
            keys = keys_of(command)
            scripts += str(command[0]).upper() == "EVALSHA"
            assert len({key_slot(k) for k in keys}) <= 1, f"spans slots: {command[:4]}"
    assert scripts >= 100 and transactions >= 1, (scripts, transactions)  # switch_generation

"""The batch consumer (streams/consumer.py) on the real broker: commits go beside the loop.

A commit is a round trip to the group coordinator (5–10 ms on an idle Kafka 4 broker). The loop
must fetch and handle the next batch while one is in flight, and still never commit an offset
it has not handled, and commit the last ones before it stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from sanctiongate.streams import consumer as consumer_module
from sanctiongate.streams.consumer import BatchConsumer, SeekTo
from tests.conftest import Services, eventually


async def new_topic(services: Services, partitions: int = 2) -> str:
    topic = f"t{uuid.uuid4().hex[:8]}.consumer"
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


async def send(services: Services, topic: str, values: Sequence[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka)
    await producer.start()
    try:
        for n, value in enumerate(values):
            await producer.send_and_wait(topic, value, partition=n % 2)
    finally:
        await producer.stop()


async def until(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await eventually(check, timeout=30)


async def committed(services: Services, topic: str, group: str) -> dict[int, int | None]:
    reader = AIOKafkaConsumer(bootstrap_servers=services.kafka, group_id=group)
    await reader.start()
    try:
        return {p: await reader.committed(TopicPartition(topic, p)) for p in (0, 1)}
    finally:
        await reader.stop()


async def test_the_next_batch_is_handled_while_a_commit_is_in_flight(services: Services) -> None:
    topic = await new_topic(services)
    group = f"g-{topic}"
    handled: list[bytes] = []
    handled_up_to: dict[int, int] = {}  # partition → next offset after what was handled

    async def handler(records: Sequence[ConsumerRecord]) -> None:
        handled.extend(r.value for r in records)
        for r in records:
            handled_up_to[r.partition] = r.offset + 1

    consumer = BatchConsumer(
        bootstrap=services.kafka, topic=topic, group=group, handler=handler, client_id="test"
    )
    release = asyncio.Event()
    commits: list[dict[TopicPartition, tuple[int, str]]] = []
    real_commit = consumer.consumer.commit

    async def held_commit(offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        assert all(o <= handled_up_to[tp.partition] for tp, (o, _) in offsets.items())
        commits.append(dict(offsets))
        await release.wait()  # a coordinator that takes its time
        await real_commit(offsets)

    consumer.consumer.commit = held_commit  # type: ignore[method-assign]
    await consumer.start()
    try:
        await send(services, topic, [b"a1", b"a2"])
        await until(lambda: len(handled) == 2)
        await until(lambda: len(commits) == 1)  # the first commit is now held
        await send(services, topic, [b"b1", b"b2", b"b3"])
        # Handled although the first batch's commit has not returned.
        await until(lambda: len(handled) == 5)
        assert len(commits) == 1, "no second commit while the first is in flight"
        release.set()
        await until(lambda: len(commits) == 2)  # what was handled meanwhile, in one call
    finally:
        await consumer.stop()
    assert sorted(handled) == [b"a1", b"a2", b"b1", b"b2", b"b3"]
    assert await committed(services, topic, group) == {0: 3, 1: 2}


async def test_stop_commits_what_was_handled(services: Services) -> None:
    """Stopping while the last commit is still on its way waits for it."""
    topic = await new_topic(services)
    group = f"g-{topic}"
    handled: list[bytes] = []

    async def handler(records: Sequence[ConsumerRecord]) -> None:
        handled.extend(r.value for r in records)

    consumer = BatchConsumer(
        bootstrap=services.kafka, topic=topic, group=group, handler=handler, client_id="test"
    )
    real_commit = consumer.consumer.commit

    async def slow_commit(offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        await asyncio.sleep(0.5)
        await real_commit(offsets)

    consumer.consumer.commit = slow_commit  # type: ignore[method-assign]
    await consumer.start()
    try:
        await send(services, topic, [f"m{n}".encode() for n in range(7)])
        await until(lambda: len(handled) == 7)
    finally:
        await consumer.stop()
    assert await committed(services, topic, group) == {0: 4, 1: 3}


async def test_a_failed_batch_is_not_committed(services: Services) -> None:
    """The handler fails on a record: the loop retries it; nothing past it is committed."""
    topic = await new_topic(services, partitions=1)
    group = f"g-{topic}"
    attempts: list[bytes] = []
    failing = True

    async def handler(records: Sequence[ConsumerRecord]) -> None:
        attempts.extend(r.value for r in records)
        if failing and any(r.value == b"bad" for r in records):
            raise ConnectionError("redis went away")

    consumer = BatchConsumer(
        bootstrap=services.kafka, topic=topic, group=group, handler=handler, client_id="test"
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"ok", partition=0)
        await until(lambda: b"ok" in attempts)
        await producer.send_and_wait(topic, b"bad", partition=0)
        await until(lambda: attempts.count(b"bad") >= 2)  # retried, not skipped
        assert await committed_one(services, topic, group) == 1, "not past the failing record"
        failing = False

        async def caught_up() -> bool:
            return await committed_one(services, topic, group) == 2

        await eventually(caught_up, timeout=30)
    finally:
        await producer.stop()
        await consumer.stop()
    assert attempts.count(b"ok") == 1


async def test_a_seek_takes_the_committed_offset_back_with_it(services: Services) -> None:
    """A switch to a rebuilt generation seeks back to the rebuild's end: what was committed
    (or in flight) past that point must not outlive the seek, or a worker killed, or a
    partition moved, before the replay gets there resumes past records the new generation
    never had."""
    topic = await new_topic(services, partitions=1)
    group = f"g-{topic}"
    handled: list[bytes] = []
    replaying = asyncio.Event()

    async def handler(records: Sequence[ConsumerRecord]) -> None:
        if replaying.is_set():
            await asyncio.Event().wait()  # the replay never gets done: the worker dies here
        if any(r.value == b"after-switch" for r in records):
            replaying.set()
            raise SeekTo({0: 2})  # the rebuild ended at offset 2
        handled.extend(r.value for r in records)

    consumer = BatchConsumer(
        bootstrap=services.kafka, topic=topic, group=group, handler=handler, client_id="test"
    )
    await consumer.start()
    try:
        await send_one(services, topic, [f"m{n}".encode() for n in range(5)])
        await until(lambda: len(handled) == 5)

        async def caught_up() -> bool:
            return await committed_one(services, topic, group) == 5

        await eventually(caught_up, timeout=30)
        await send_one(services, topic, [b"after-switch"])
        await until(replaying.is_set)

        async def back_at_the_seek() -> bool:
            return await committed_one(services, topic, group) == 2

        await eventually(back_at_the_seek, timeout=10)
    finally:
        await consumer.stop()


async def send_one(services: Services, topic: str, values: Sequence[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()


async def committed_one(services: Services, topic: str, group: str) -> int | None:
    reader = AIOKafkaConsumer(bootstrap_servers=services.kafka, group_id=group)
    await reader.start()
    try:
        return await reader.committed(TopicPartition(topic, 0))
    finally:
        await reader.stop()


class _Tagged:
    """Positions as the index ingest has them: commits say where records went; a partition
    committed into another place starts again at ``start_at``."""

    def __init__(self, place: str, start_at: int) -> None:
        self.place = place
        self.start_at = start_at
        self.asked: list[dict[TopicPartition, OffsetAndMetadata]] = []

    def tag(self) -> str:
        return self.place

    async def resume(
        self, committed: dict[TopicPartition, OffsetAndMetadata]
    ) -> dict[TopicPartition, int]:
        self.asked.append(dict(committed))
        return {
            tp: self.start_at
            for tp, at in committed.items()
            if at.metadata and at.metadata != self.place and self.start_at < at.offset
        }


async def test_commits_carry_their_tag_and_a_partition_committed_elsewhere_starts_over(
    services: Services,
) -> None:
    topic = await new_topic(services, partitions=1)
    group = f"g-{topic}"
    tp = TopicPartition(topic, 0)
    old = _Tagged("gen-old", start_at=0)
    first = await consume_sent(services, topic, group, old, [f"m{n}".encode() for n in range(5)])
    assert first == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert old.asked == [{}]  # asked once, before the first batch; nothing was committed
    assert (await committed_with_tags(services, group, tp)) == OffsetAndMetadata(5, "gen-old")

    # A successor in a new place: records 2.. never reached it (a rebuild read up to 2).
    again = await consume_sent(services, topic, group, _Tagged("gen-new", start_at=2), [b"m5"])
    assert again == [b"m2", b"m3", b"m4", b"m5"], "started at the place's start, not the commit"
    assert (await committed_with_tags(services, group, tp)) == OffsetAndMetadata(6, "gen-new")


async def consume_sent(
    services: Services, topic: str, group: str, positions: _Tagged, values: list[bytes]
) -> list[bytes]:
    """Send ``values`` and consume until the last one is handled; what was handled, in order."""
    handled: list[bytes] = []

    async def handler(records: Sequence[ConsumerRecord]) -> None:
        handled.extend(r.value for r in records)

    consumer = BatchConsumer(
        bootstrap=services.kafka, topic=topic, group=group, handler=handler,
        client_id="test", positions=positions,
    )  # fmt: skip
    await consumer.start()
    try:
        await send_one(services, topic, values)
        await until(lambda: values[-1] in handled)
    finally:
        await consumer.stop()
    return handled


async def committed_with_tags(services: Services, group: str, tp: TopicPartition) -> object:
    reader = AIOKafkaConsumer(bootstrap_servers=services.kafka, group_id=group)
    await reader.start()
    try:
        return (await reader._coordinator.fetch_committed_offsets([tp]))[tp]
    finally:
        await reader.stop()


async def send_together(
    services: Services, topic: str, values: Sequence[bytes], partition: int = 0
) -> None:
    """In one produce request to ``partition``, so that one fetch returns them all."""
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka, linger_ms=50)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, partition=partition) for value in values]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


class _Staged:
    """A staged handler (consumer.StagedHandler) that notes what it prepared and applied;
    ``hold_prepare`` / ``hold_apply`` keep a stage waiting while the test arranges the next."""

    def __init__(self) -> None:
        self.prepared: list[list[bytes]] = []
        self.applied: list[bytes] = []
        self.applying: list[list[bytes]] = []  # batches whose apply has started
        self.hold_prepare = asyncio.Event()
        self.hold_prepare.set()
        self.hold_apply = asyncio.Event()
        self.hold_apply.set()
        self.fail_once: type[BaseException] | SeekTo | None = None

    async def prepare(self, records: Sequence[ConsumerRecord]) -> list[bytes]:
        await self.hold_prepare.wait()
        values = [r.value for r in records]
        self.prepared.append(values)
        return values

    async def apply(self, values: list[bytes]) -> None:
        self.applying.append(values)
        await self.hold_apply.wait()
        if self.fail_once is not None:
            failure, self.fail_once = self.fail_once, None
            raise failure if isinstance(failure, SeekTo) else failure("a bug")
        self.applied.extend(values)


def member(
    services: Services,
    topic: str,
    handler: _Staged | Callable[[Sequence[ConsumerRecord]], Awaitable[None]],
    client_id: str = "test",
    idle: Callable[[], Awaitable[None]] | None = None,
) -> BatchConsumer:
    """A consumer of ``topic`` in the test's group (not started)."""
    return BatchConsumer(
        bootstrap=services.kafka, topic=topic, group=f"g-{topic}", handler=handler,
        client_id=client_id, idle=idle,
    )  # fmt: skip


async def _send_a_then_b(services: Services, topic: str) -> None:
    """Batch a… to partition 0, then (once it is fetched) batch b… to partition 1."""
    await send_together(services, topic, [b"a1", b"a2"])
    await asyncio.sleep(1.0)
    await send_together(services, topic, [b"b1", b"b2"], partition=1)
    await asyncio.sleep(1.0)


async def staged_consumer(services: Services, topic: str, handler: _Staged) -> BatchConsumer:
    consumer = member(services, topic, handler)
    assert consumer.staged
    await consumer.start()
    return consumer


async def test_a_staged_handler_prepares_the_next_batch_while_one_is_applied(
    services: Services,
) -> None:
    topic = await new_topic(services, partitions=1)
    staged = _Staged()
    staged.hold_prepare.clear()  # the first batch waits in prepare until the second is in
    consumer = await staged_consumer(services, topic, staged)
    try:
        await send_together(services, topic, [b"a1", b"a2"])
        await asyncio.sleep(1.0)  # fetched: the first batch is held in prepare
        await send_together(services, topic, [b"b1", b"b2", b"b3"])
        await asyncio.sleep(1.0)  # and the second in the fetcher's buffer
        staged.hold_apply.clear()
        staged.hold_prepare.set()
        await until(lambda: len(staged.prepared) == 2)
        assert staged.prepared == [[b"a1", b"a2"], [b"b1", b"b2", b"b3"]]
        assert staged.applying == [[b"a1", b"a2"]], "prepared while the first was applied"
        assert staged.applied == []
        assert await committed_one(services, topic, f"g-{topic}") is None
        staged.hold_apply.set()
        await until(lambda: len(staged.applied) == 5)

        async def caught_up() -> bool:
            return await committed_one(services, topic, f"g-{topic}") == 5

        await eventually(caught_up, timeout=30)
    finally:
        await consumer.stop()
    assert staged.applied == [b"a1", b"a2", b"b1", b"b2", b"b3"]
    assert [v for batch in staged.prepared for v in batch] == staged.applied, "each once"


async def _read_ahead_then_fail(
    services: Services, failure: type[BaseException] | SeekTo
) -> tuple[_Staged, str]:
    """Batch a… (partition 0) fails to apply while batch b… (partition 1 only: read again only
    if the read-ahead itself is taken back) is read ahead; returns once all is applied."""
    topic = await new_topic(services, partitions=2)
    staged = _Staged()
    staged.hold_prepare.clear()
    consumer = await staged_consumer(services, topic, staged)
    try:
        await _send_a_then_b(services, topic)
        staged.fail_once = failure
        staged.hold_prepare.set()
        await until(lambda: b"b2" in staged.applied)
    finally:
        await consumer.stop()
    return staged, topic


async def test_a_failed_apply_reads_the_batch_read_ahead_again(services: Services) -> None:
    """A batch whose apply failed (not an outage: a bug) is read again, and so is the batch
    read ahead behind it, which was never applied: nothing skipped, nothing applied twice."""
    staged, _ = await _read_ahead_then_fail(services, RuntimeError)
    assert staged.applied == [b"a1", b"a2", b"b1", b"b2"]
    assert staged.prepared[:2] == [[b"a1", b"a2"], [b"b1", b"b2"]]
    assert staged.prepared[2][:2] == [b"a1", b"a2"], "the failed batch was read again"


async def test_a_seek_drops_the_batch_read_ahead(services: Services) -> None:
    """A seek (to the start: the index switched) replays from there; the batch read ahead
    before it is not applied out of turn."""
    staged, _ = await _read_ahead_then_fail(services, SeekTo({0: 0, 1: 0}))
    assert staged.applied == [b"a1", b"a2", b"b1", b"b2"]
    assert staged.applying[0] == [b"a1", b"a2"]
    assert staged.applying[1][0] == b"a1", "after the seek, the replay starts at the seek"


# Rebalances while a batch is read ahead (a review of the staged consumer found the first two
# of these failing: a rebalance held up for REVOKE_WAIT_SECONDS, a batch applied by two owners).


def test_the_list_change_ingest_is_staged() -> None:
    from sanctiongate.streams.consumer import StagedHandler
    from sanctiongate.streams.ingest import ListChangeIngest

    assert isinstance(ListChangeIngest(None, None), StagedHandler)  # type: ignore[arg-type]


async def _rebalance_while_turn_held(
    services: Services, a: BatchConsumer, release: Callable[[], None], topic: str
) -> float:
    """With A's loop holding ``_turn`` (its handler held), a second member joins; once A's
    revoke listener waits for the turn, the handler is released. Returns how long B then
    waits for its partition."""
    await send_together(services, topic, [b"a1", b"a2"])
    await asyncio.sleep(1.0)  # A's loop holds the batch (and the turn)
    b = member(services, topic, _Staged(), client_id="test-b")
    starting = asyncio.create_task(b.start())  # start() joins the group: it waits for A
    try:
        await until(
            lambda: (
                a.consumer._subscription.reassignment_in_progress and bool(a._turn._waiters)
            )  # A's revoke listener waits for the turn
        )
        t0 = time.monotonic()
        release()
        await until(lambda: bool(b.consumer.assignment()))
        return time.monotonic() - t0
    finally:
        await starting
        await b.stop()


@pytest.mark.parametrize("staged", [True, False], ids=["staged", "plain"])
async def test_a_rebalance_begun_while_a_batch_is_in_hand_is_not_held_up(
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    staged: bool,
) -> None:
    """Staged: the batch held in prepare (the main path's getmany, then prepare), where the
    read-ahead would wait for the rebalance that waits for it; plain: held in the handler."""
    monkeypatch.setattr(consumer_module, "REVOKE_WAIT_SECONDS", 8.0)
    caplog.set_level(logging.INFO, logger="sanctiongate.streams.consumer")
    topic = await new_topic(services, partitions=2)
    handler: _Staged | Callable[[Sequence[ConsumerRecord]], Awaitable[None]]
    if staged:
        handler = _Staged()
        handler.hold_prepare.clear()
        release = handler.hold_prepare.set
    else:
        hold = asyncio.Event()
        release = hold.set

        async def handler(records: Sequence[ConsumerRecord]) -> None:
            await hold.wait()

    a = member(services, topic, handler)
    assert a.staged is staged
    await a.start()
    try:
        await until(lambda: len(a.consumer.assignment()) == 2)
        waited = await _rebalance_while_turn_held(services, a, release, topic)
    finally:
        await a.stop()
    stalled = [r.getMessage() for r in caplog.records if "still in hand" in r.getMessage()]
    assert waited < 5.0 and not stalled, (
        f"B waited {waited:.1f}s for its partition; A's revoke listener: {stalled}"
    )


async def test_a_seek_from_the_idle_hook_with_a_batch_in_hand(services: Services) -> None:
    topic = await new_topic(services, partitions=2)
    staged = _Staged()
    staged.hold_prepare.clear()
    box: dict[str, BatchConsumer] = {}
    sought = []

    async def idle() -> None:
        c = box["c"]
        if c._in_hand is not None and not sought:
            sought.append([r.value for r in c._in_hand.records])
            raise SeekTo({0: 0})  # partition 0 only: 1 resumes at the batch in hand

    c = box["c"] = member(services, topic, staged, idle=idle)
    await c.start()
    try:
        await _send_a_then_b(services, topic)
        staged.hold_prepare.set()
        await until(lambda: staged.applied.count(b"a1") == 2 and b"b2" in staged.applied)
        await asyncio.sleep(1.0)
    finally:
        await c.stop()
    assert sought == [[b"b1", b"b2"]]
    assert staged.applied.count(b"b1") == 1 and staged.applied.count(b"a1") == 2, staged.applied


async def test_a_rebalance_takes_the_batch_in_hand_back(services: Services) -> None:
    topic = await new_topic(services, partitions=2)
    staged = _Staged()
    staged.hold_prepare.clear()
    box: dict[str, BatchConsumer] = {}
    reached, gate = asyncio.Event(), asyncio.Event()

    async def idle() -> None:
        c = box["c"]
        if c._in_hand is not None and not gate.is_set():
            reached.set()
            await gate.wait()

    c = box["c"] = member(services, topic, staged, idle=idle)
    await c.start()
    other = _Staged()
    b = member(services, topic, other, client_id="test-b")
    try:
        await until(lambda: len(c.consumer.assignment()) == 2)
        await _send_a_then_b(services, topic)
        staged.hold_prepare.set()
        await until(reached.is_set)
        starting = asyncio.create_task(b.start())
        await until(lambda: c._in_hand is None)  # the revoke listener took it back
        gate.set()
        await starting
        await until(lambda: sorted(staged.applied + other.applied) == [b"a1", b"a2", b"b1", b"b2"])
        await asyncio.sleep(2.0)
    finally:
        await b.stop()
        await c.stop()
    everything = staged.applied + other.applied
    assert sorted(everything) == [b"a1", b"a2", b"b1", b"b2"], (staged.applied, other.applied)


async def test_after_a_revoke_that_timed_out_the_old_owner_drops_what_it_read_ahead(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revoke that times out (apply stuck on Redis longer than REVOKE_WAIT_SECONDS) leaves
    the batch read ahead in hand; with no ``positions`` nothing drops it after the rebalance."""
    monkeypatch.setattr(consumer_module, "REVOKE_WAIT_SECONDS", 3.0)
    topic = await new_topic(services, partitions=2)
    staged = _Staged()
    staged.hold_prepare.clear()
    # member ids sort "test-a-…" < "test-b-…": the range assignor leaves A partition 0 only
    a = member(services, topic, staged, client_id="test-a")
    await a.start()
    other = _Staged()
    b = member(services, topic, other, client_id="test-b")
    starting = None
    try:
        await until(lambda: len(a.consumer.assignment()) == 2)
        await _send_a_then_b(services, topic)
        staged.hold_apply.clear()  # batch a's apply hangs (Redis stuck), b is read ahead
        staged.hold_prepare.set()
        await until(lambda: len(staged.prepared) == 2)
        starting = asyncio.create_task(b.start())
        await starting  # the revoke timed out; the rebalance went on
        await until(lambda: bool(b.consumer.assignment()))
        owned_by_b = {tp.partition for tp in b.consumer.assignment()}
        staged.hold_apply.set()
        await asyncio.sleep(3.0)
    finally:
        await b.stop()
        await a.stop()
    # a… (partition 0) was in flight when the revoke gave up: the old owner finishing it is
    # the known cost of the timeout. b… (partition 1) was only read ahead.
    assert owned_by_b == {1}
    assert b"b1" not in staged.applied, (
        f"the old owner applied the batch it read ahead of a partition now B's: "
        f"A: {staged.applied}, B: {other.applied}"
    )


async def test_lag_counts_what_was_read_and_not_yet_handled() -> None:
    """The consumer's position is past the batch being applied and the one read ahead: they
    are still pending (the index lag must not say 0 while a Redis outage holds them)."""
    from sanctiongate.streams.consumer import _Fetched

    def record(offset: int) -> ConsumerRecord:
        return ConsumerRecord("t", 0, offset, 0, 0, None, b"x", None, 1, 1, [])

    consumer = BatchConsumer(
        bootstrap="127.0.0.1:9", topic="t", group="g", handler=_Staged(), client_id="test"
    )
    assert await consumer.lag() == (0, 0.0)
    consumer._applying = _Fetched({}, [record(0), record(1)])
    consumer._in_hand = _Fetched({}, [record(2)])
    consumer.last_record_time = time.time() - 5
    pending, behind = await consumer.lag()
    assert pending == 3
    assert behind >= 5

"""The batch consumer (streams/consumer.py) on the real broker: commits go beside the loop.

A commit is a round trip to the group coordinator (5–10 ms on an idle Kafka 4 broker). The loop
must fetch and handle the next batch while one is in flight, and still never commit an offset
it has not handled, and commit the last ones before it stops.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

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

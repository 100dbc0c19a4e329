"""Rebuild: replay the compacted topics into a fresh generation and switch to it atomically.

Used by ``sanctiongate rebuild`` and by a worker that finds the index wiped (Redis restarted
or flushed). One rebuilder at a time (a lock with a TTL that the rebuilder keeps alive). While
a requested rebuild runs, the current generation keeps answering; while a wiped index is
rebuilt there is nothing to answer from, and checks answer 503, never ``pass``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from .. import metrics
from ..domain.catalogue import parse_catalogue
from ..domain.models import ListChange, Measure
from ..index import IndexUnavailable, SanctionIndex
from ..index.store import new_generation
from ..settings import Settings
from .deadletter import BadMessage, decode

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 30
DROP_GRACE_SECONDS = 5.0
CATCH_UP_PASSES = 3


def decode_change(raw: bytes | None) -> ListChange:
    """Bytes → ListChange, or :class:`BadMessage` saying what is wrong (as ``decode``).

    A good message is parsed by pydantic straight from the bytes (a third cheaper than JSON →
    dict → model, on the ingest hot path); anything it refuses goes through ``decode`` again,
    so a bad message gets exactly the same code, message and path as before.
    """
    if raw is not None:
        try:
            # The validator itself: model_validate_json passes five keyword arguments through
            # to it, which cost a tenth of validating a list change.
            return ListChange.__pydantic_validator__.validate_json(raw)
        except ValidationError:
            pass
    return decode(raw, ListChange, "list_change/v1")


def change_of(record: ConsumerRecord) -> ListChange:
    """The record's ListChange, or :class:`BadMessage`, also when its key is not its entry_id."""
    change = decode_change(record.value)
    check_key(record.key, change.entry_id, "entry_id")
    return change


def check_key(key: bytes | None, identity: str, field: str) -> None:
    """SPEC §3: a compacted topic is keyed by the message's own id. Compaction keeps the last
    message per key, so one filed under another key would outlive the tombstone of its own id
    (a deleted measure coming back at the next rebuild), or delete another's. A message
    without a key is taken as it is (a compacted topic refuses those)."""
    if key is None:
        return
    text = key.decode("utf-8", "replace").strip()
    if text != identity:
        raise BadMessage(
            "key_mismatch", f"the message key {text!r} is not its {field} {identity!r}", field
        )


class RebuildBusy(Exception):
    """Another process holds the rebuild lock."""


def load_default_measures(settings: Settings) -> list[Measure]:
    from importlib import resources

    if settings.measures_file is not None:
        raw = settings.measures_file.read_bytes()
    else:
        raw = resources.files("sanctiongate").joinpath("data/measures.json").read_bytes()
    return list(parse_catalogue(raw))


class Rebuilder:
    def __init__(self, settings: Settings, index: SanctionIndex, holder: str) -> None:
        self.settings = settings
        self.index = index
        self.holder = f"{holder}:{uuid.uuid4().hex[:8]}"
        self._drops: set[asyncio.Task[None]] = set()

    async def heal(self, reason: str = "index wiped") -> None:
        """The index is wiped or in a format this code cannot read: rebuild it, or wait for
        whoever is rebuilding it."""
        try:
            await self.rebuild(reason=reason)
        except RebuildBusy:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                meta = await self.index.read_meta()
                if meta.gen is not None and meta.readable:
                    return
                await asyncio.sleep(0.1)

    async def rebuild(self, reason: str) -> str:
        if not await self.index.acquire_rebuild_lock(self.holder, LOCK_TTL_SECONDS):
            raise RebuildBusy
        log.warning("rebuilding the index: %s", reason)
        started = time.monotonic()
        metrics.index_rebuilding.set(1)
        try:
            gen = new_generation()
            await self.index.mark_rebuilding(gen)
            await self.index.put_measures(gen, load_default_measures(self.settings))
            ends = await self._replay_all(gen)
            previous = await self.index.switch_generation(gen, ends)
            log.warning("index rebuilt as %s in %.1fs", gen, time.monotonic() - started)
        finally:
            metrics.index_rebuilding.set(0)
            await self.index.release_rebuild_lock(self.holder)
        if previous and previous != gen:
            task = asyncio.create_task(self._drop_later(previous))
            self._drops.add(task)
            task.add_done_callback(self._drops.discard)
        return gen

    async def settle(self) -> None:
        """Wait for the replaced generations to be dropped (a CLI run must not exit first)."""
        if self._drops:
            await asyncio.gather(*self._drops, return_exceptions=True)

    async def _drop_later(self, gen: str) -> None:
        # Readers that validated the old generation a moment ago may still fetch from it.
        await asyncio.sleep(DROP_GRACE_SECONDS)
        dropped = await self.index.drop_generation(gen)
        log.info("dropped generation %s (%d keys)", gen, dropped)

    async def _replay_all(self, gen: str) -> dict[str, dict[int, int]]:
        """Replay both topics, then catch up with what arrived meanwhile.

        The serving generation keeps taking changes while this one is built; whatever arrives
        after the offsets returned here, the workers apply again once they see the switch. The
        catch-up passes keep that tail short, so the switch hides a fresh listing only for the
        moment it takes a worker to notice.
        """
        topics: dict[str, Callable[[Sequence[ConsumerRecord]], Awaitable[None]]] = {
            self.settings.topic_measures: lambda rs: self._apply_measures(gen, rs),
            self.settings.topic_list_changes: lambda rs: self._apply_changes(gen, rs),
        }
        ends: dict[str, dict[int, int]] = {}
        for topic, apply in topics.items():
            ends[topic] = await self._replay(topic, apply)
        for _ in range(CATCH_UP_PASSES):
            replayed = 0
            for topic, apply in topics.items():
                reached = await self._replay(topic, apply, start=ends[topic])
                replayed += sum(reached[p] - ends[topic].get(p, 0) for p in reached)
                ends[topic] = reached
            if replayed == 0:
                break
        return ends

    async def _apply_changes(self, gen: str, records: Sequence[ConsumerRecord]) -> None:
        changes = []
        for record in records:
            try:
                changes.append(change_of(record))
            except BadMessage:
                continue  # dead-lettered when it first arrived
        await self.index.apply_changes(gen, changes)  # it notes the newest event time too

    async def _apply_measures(self, gen: str, records: Sequence[ConsumerRecord]) -> None:
        await apply_measure_records(self.index, gen, records)

    async def _replay(
        self,
        topic: str,
        apply: Callable[[Sequence[ConsumerRecord]], Awaitable[None]],
        start: dict[int, int] | None = None,
    ) -> dict[int, int]:
        """Apply the topic from ``start`` (default: the beginning) to its current end offsets;
        return those end offsets per partition."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"{self.settings.app_id}-rebuild",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        try:
            partitions = await _partitions(consumer, topic)
            if not partitions:
                return {}
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            for tp in tps:
                if start and start.get(tp.partition):
                    consumer.seek(tp, start[tp.partition])
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            positions = {tp: await consumer.position(tp) for tp in tps}
            remaining = {tp for tp in remaining if positions[tp] < ends[tp]}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=200, max_records=5000)
                records = []
                for tp, batch in batches.items():
                    records.extend(r for r in batch if r.offset < ends[tp])
                    if batch and batch[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
                if records:
                    await apply(records)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
                await self.index.refresh_rebuild_lock(self.holder, LOCK_TTL_SECONDS)
            return {tp.partition: ends[tp] for tp in tps}
        finally:
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    for _ in range(20):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        await consumer._client.force_metadata_update()
        if consumer._client.cluster.topics() and topic not in consumer._client.cluster.topics():
            return []
    return []


async def apply_measure_records(
    index: SanctionIndex, gen: str, records: Sequence[ConsumerRecord]
) -> list[tuple[ConsumerRecord, BadMessage]]:
    """Measures in topic order: a value replaces, a tombstone (null value) deletes."""
    rejected: list[tuple[ConsumerRecord, BadMessage]] = []
    for record in records:
        if record.value is None:
            if record.key:
                await index.delete_measures(gen, [record.key.decode("utf-8", "replace")])
            continue
        try:
            measure = decode(record.value, Measure, "measure/v1")
            check_key(record.key, measure.measure_id, "measure_id")
        except BadMessage as bad:
            rejected.append((record, bad))
            continue
        await index.put_measures(gen, [measure])
    return rejected


__all__ = [
    "IndexUnavailable",
    "RebuildBusy",
    "Rebuilder",
    "apply_measure_records",
    "change_of",
    "check_key",
    "decode_change",
]

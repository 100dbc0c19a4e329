"""Rebuild: replay the compacted topics into a fresh generation and switch to it atomically.

Used by ``sanctiongate rebuild`` and by a worker that finds the index wiped (Redis restarted
or flushed). One rebuilder at a time (a lock with a TTL that the rebuilder keeps alive); while
it runs, checks answer 503, never ``pass``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

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

    async def heal(self) -> None:
        """The index is wiped: rebuild it, or wait for whoever is rebuilding it."""
        try:
            await self.rebuild(reason="index wiped")
        except RebuildBusy:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                if (await self.index.read_meta()).gen is not None:
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
            ends = {
                self.settings.topic_measures: await self._replay(
                    self.settings.topic_measures, lambda rs: self._apply_measures(gen, rs)
                ),
                self.settings.topic_list_changes: await self._replay(
                    self.settings.topic_list_changes, lambda rs: self._apply_changes(gen, rs)
                ),
            }
            previous = await self.index.switch_generation(gen, ends)
            log.warning("index rebuilt as %s in %.1fs", gen, time.monotonic() - started)
        finally:
            metrics.index_rebuilding.set(0)
            await self.index.release_rebuild_lock(self.holder)
        if previous and previous != gen:
            # Readers that validated the old generation a moment ago may still fetch from it.
            asyncio.get_running_loop().call_later(
                DROP_GRACE_SECONDS,
                lambda: asyncio.ensure_future(self.index.drop_generation(previous)),
            )
        return gen

    async def _apply_changes(self, gen: str, records: Sequence[ConsumerRecord]) -> None:
        changes = []
        for record in records:
            try:
                changes.append(decode(record.value, ListChange, "list_change/v1"))
            except BadMessage:
                continue  # dead-lettered when it first arrived
        result = await self.index.apply_changes(gen, changes)
        if result.newest_event_time is not None:
            await self.index.note_newest(result.newest_event_time)

    async def _apply_measures(self, gen: str, records: Sequence[ConsumerRecord]) -> None:
        await apply_measure_records(self.index, gen, records)

    async def _replay(
        self, topic: str, apply: Callable[[Sequence[ConsumerRecord]], Awaitable[None]]
    ) -> dict[int, int]:
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
        except BadMessage as bad:
            rejected.append((record, bad))
            continue
        await index.put_measures(gen, [measure])
    return rejected


__all__ = ["IndexUnavailable", "RebuildBusy", "Rebuilder", "apply_measure_records"]

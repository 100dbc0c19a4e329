"""The list-change agent: ``sanction.list.changes`` → the Redis index (hot path, in batches)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from .. import metrics
from ..domain.models import ListChange, RejectionError
from ..heap import collector_paused
from ..index import IndexUnavailable
from ..index.store import ApplyResult, GenerationChanged, PreparedBatch
from .consumer import SeekTo
from .deadletter import BadMessage
from .rebuild import Rebuilder, change_of
from .runtime import Runtime

log = logging.getLogger(__name__)

AppliedHook = Callable[[ApplyResult], Awaitable[None]]


class GenerationWatch:
    """Follows the serving generation for one topic: blind → heal; switched → seek."""

    def __init__(self, runtime: Runtime, rebuilder: Rebuilder, topic: str) -> None:
        self.runtime = runtime
        self.rebuilder = rebuilder
        self.topic = topic
        self.seen: str | None = None
        self._checked_at = 0.0

    async def current(self) -> str:
        meta = await self.runtime.index.read_meta()
        if meta.gen is None or not meta.readable:
            # Wiped, or written by a version with another record format (this code would
            # misread it and must not write into it): rebuild it from the compacted topics.
            await self.rebuilder.heal("index wiped" if meta.gen is None else "old record format")
            meta = await self.runtime.index.read_meta()
            if meta.gen is None or not meta.readable:
                raise IndexUnavailable("index_not_built", "waiting for the index to be rebuilt")
            self.seen = meta.gen
            return meta.gen
        if self.seen is not None and meta.gen != self.seen:
            # Someone rebuilt: replay what came after the rebuild's end into the new generation.
            self.seen = meta.gen
            ends = meta.rebuild_ends().get(self.topic, {})
            raise SeekTo({int(p): int(o) for p, o in ends.items()})
        self.seen = meta.gen
        return meta.gen

    def tag(self) -> str:
        """Stamped on each commit (:class:`.consumer.Positions`): the generation the batch was
        written into."""
        return self.seen or ""

    async def resume(
        self, committed: dict[TopicPartition, OffsetAndMetadata]
    ) -> dict[TopicPartition, int]:
        """Partitions whose commit was made into another generation than the serving one
        start where the rebuild that made it stopped reading (its records after that point
        were written into the generation it replaced). Commits without a tag (made by a
        version before tags) are taken as they are."""
        meta = await self.runtime.index.read_meta()
        if meta.gen is None or not meta.readable:
            return {}  # wiped: the heal replays everything up to its end
        ends = meta.rebuild_ends().get(self.topic, {})
        starts: dict[TopicPartition, int] = {}
        for tp, at in committed.items():
            if at.offset < 0 or not at.metadata or at.metadata == meta.gen:
                continue
            start = int(ends.get(str(tp.partition), 0))
            if start < at.offset:
                starts[tp] = start
        return starts

    async def idle(self) -> None:
        """Notice a wiped index even when no message arrives."""
        now = time.monotonic()
        if now - self._checked_at < 0.5:
            return
        self._checked_at = now
        await self.current()


# Records decoded (and upserts worked out) between two looks at the event loop while the batch
# before is being applied: short enough that its replies from Redis are taken up promptly.
PREPARE_STEP = 200


@dataclass(slots=True)
class PreparedChanges:
    """Records read, decoded and made ready to apply (:meth:`ListChangeIngest.prepare`)."""

    batch: PreparedBatch
    rejected: list[tuple[ConsumerRecord, RejectionError]]
    produced_at: dict[tuple[str, int], float]  # (entry id, version) → produce time
    sources: set[str]


class ListChangeIngest:
    """In two stages (:class:`.consumer.StagedHandler`): ``prepare`` needs no Redis, so the
    consumer runs it on the next batch while Redis applies this one; on two cores that hides
    the apply's wait behind the decoding, instead of adding the two up."""

    def __init__(self, runtime: Runtime, watch: GenerationWatch) -> None:
        self.runtime = runtime
        self.watch = watch
        self.on_applied: list[AppliedHook] = []

    async def handle(self, records: Sequence[ConsumerRecord]) -> None:
        await self.apply(await self.prepare(records))

    async def prepare(self, records: Sequence[ConsumerRecord]) -> PreparedChanges:
        # No collection while a batch is in hand (heap.py): its changes, records and keys live
        # until it is applied, and a young collection would only walk and promote them. The
        # stages overlap, so the pause is bounded by heap.LONGEST_PAUSE_SECONDS.
        with collector_paused():
            return await self._prepare(records)

    async def _prepare(self, records: Sequence[ConsumerRecord]) -> PreparedChanges:
        changes: list[ListChange] = []
        produced_at: dict[tuple[str, int], float] = {}
        rejected: list[tuple[ConsumerRecord, RejectionError]] = []
        for n, record in enumerate(records, 1):
            try:
                change = change_of(record)
            except BadMessage as bad:
                rejected.append((record, bad.error))
                continue
            changes.append(change)
            produced_at[(change.entry_id, change.version)] = record.timestamp / 1000
            if n % PREPARE_STEP == 0:
                await asyncio.sleep(0)
        batch = self.runtime.index.prepare(changes)
        for _ in batch.steps(PREPARE_STEP):
            await asyncio.sleep(0)
        return PreparedChanges(batch, rejected, produced_at, {c.source for c in changes})

    async def apply(self, prepared: PreparedChanges) -> None:
        with collector_paused():
            await self._apply_prepared(prepared)

    async def _apply_prepared(self, prepared: PreparedChanges) -> None:
        letters = []
        for record, error in prepared.rejected:
            metrics.list_changes_total.labels(op="unknown", result="rejected").inc()
            letters.append(await self.runtime.dead_letter(record, error))
        seen_at = time.time()
        for source in prepared.sources:  # one gauge write per source
            metrics.source_seen(source, seen_at)
        result = await self._apply(prepared.batch)
        self._observe(result, prepared.produced_at)
        for hook in self.on_applied:
            await hook(result)
        if letters:
            await asyncio.gather(*letters)

    async def _apply(self, batch: PreparedBatch) -> ApplyResult:
        """Into the generation seen serving last; the apply reads the meta in its first round
        trip and writes nothing if that one no longer serves (one round trip less per batch
        than reading the meta first, which every change waited for)."""
        gen = self.watch.seen or await self.watch.current()
        for _ in range(2):
            try:
                return await self.runtime.index.apply_prepared(gen, batch, serving=True)
            except GenerationChanged:
                # Wiped (heal, then apply here), switched (SeekTo), or first seen: find out.
                gen = await self.watch.current()
        # Moved again meanwhile: the consumer retries the batch, as for any outage.
        raise IndexUnavailable("index_switching", "the index switched during a batch")

    @staticmethod
    def _observe(result: ApplyResult, produced_at: dict[tuple[str, int], float]) -> None:
        # Counted per batch, then one labels() look-up and inc() per label set: a look-up
        # (label masking, a lock) per change costs more than the change's own bookkeeping.
        outcomes: Counter[tuple[str, str]] = Counter()
        anomalies: Counter[tuple[str, str]] = Counter()
        now = time.time()
        waits: list[float] = []
        for applied in result.applied:
            change = applied.change
            outcomes[(change.op, "applied")] += 1
            sent = produced_at.get((change.entry_id, change.version))
            if sent is not None:
                waits.append(max(0.0, now - sent))
            if change.op == "upsert":
                for path in applied.after.identifier_anomalies:
                    kind = "uscc" if path.endswith("uscc") else "id_number"
                    anomalies[(change.source, kind)] += 1
        metrics.observe_all(metrics.change_propagation_seconds, waits)
        for change in result.overtaken:  # applied in effect, as if it had come alone
            outcomes[(change.op, "applied")] += 1
        for change in result.stale:
            outcomes[(change.op, "stale")] += 1
        for (op, outcome), count in outcomes.items():
            metrics.list_changes_total.labels(op=op, result=outcome).inc(count)
        for (source, kind), count in anomalies.items():
            metrics.identifier_anomalies_total.labels(source=source, kind=kind).inc(count)

"""A batch consumer on aiokafka, run inside the faust worker's lifecycle.

Per-event iteration in faust tops out near 7,000 events/s on two cores; the hot paths read
batches with ``getmany`` and hand each batch to a handler that pipelines its Redis work.
Offsets are committed only after the handler succeeded, so a crash replays the batch (every
handler is idempotent); a handler that cannot reach Redis is retried, never skipped.

Commits run beside the loop, not in it: a commit is a round trip to the group coordinator that
takes 5–10 ms on an idle broker (Kafka 4 lets coordinator writes linger,
``group.coordinator.append.linger.ms``), longer than handling a small batch. Waiting for it
before the next fetch put a commit's time into every change's way to the index. The loop hands
the handled offsets to a committer task and fetches on; offsets handled meanwhile go in the
committer's next call. Before partitions move away and before the consumer stops, what was
handled is committed and waited for.

A :class:`StagedHandler` (the list-change ingest) is applied while the next batch is read and
prepared: on two cores the worker decodes and encodes batch N+1 while Redis runs batch N's
script, instead of one waiting for the other. The batch read ahead is held, not committed:
a failure, a seek or a rebalance takes it back (seeks to its first offsets) with the batch
before it, so it is read again, never skipped and never applied out of turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from redis.exceptions import RedisError

from ..index import IndexUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[ConsumerRecord]], Awaitable[None]]


@runtime_checkable
class StagedHandler(Protocol):
    """A handler in two stages. ``prepare`` does the work that needs neither Redis nor Kafka
    (decoding, encoding) and never fails for a bad record (it carries it to ``apply``);
    ``apply`` does the rest and may be retried with the same prepared batch. The consumer
    prepares the next batch while the one before is being applied: its wait on Redis is
    spent decoding (it gives the loop back now and then, so the apply's replies are taken up
    while it runs)."""

    async def prepare(self, records: Sequence[ConsumerRecord]) -> Any: ...

    async def apply(self, prepared: Any) -> None: ...


@dataclass(slots=True)
class _Fetched:
    batches: dict[TopicPartition, list[ConsumerRecord]]
    records: list[ConsumerRecord]
    prepared: Any = None
    revokes: int = 0  # BatchConsumer._revokes when it was read


# How long a rebalance waits for the batch in hand to be written and committed. Bounded, so a
# worker stuck retrying an unreachable Redis cannot hold its whole group still.
REVOKE_WAIT_SECONDS = 30.0
# How long stopping waits for the last handled offsets to be committed.
STOP_COMMIT_SECONDS = 10.0


class SeekTo(Exception):
    """Raised by a handler: drop this batch and continue from these offsets."""

    def __init__(self, offsets: dict[int, int]) -> None:
        super().__init__(offsets)
        self.offsets = offsets


class Positions(Protocol):
    """Where a consumer's partitions resume, for a handler whose writes go to a place that can
    be replaced under it (the index's generations, :class:`.ingest.GenerationWatch`).

    Each commit carries ``tag()``, taken when its batch was handled: where those records went.
    Before the first batch of a newly assigned partition (at start, after a rebalance),
    ``resume`` sees the committed offsets with their tags and says where to start instead:
    a worker that starts after a switch it never saw, or inherits a partition from one that
    did not see it, must replay what the new generation lacks, not resume past it.
    """

    def tag(self) -> str: ...

    async def resume(
        self, committed: dict[TopicPartition, OffsetAndMetadata]
    ) -> dict[TopicPartition, int]: ...


class BatchConsumer:
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        handler: Handler | StagedHandler,
        client_id: str,
        batch_size: int = 2000,
        timeout_ms: int = 20,
        idle: Callable[[], Awaitable[None]] | None = None,
        positions: Positions | None = None,
    ) -> None:
        self.topic = topic
        self.group = group
        if isinstance(handler, StagedHandler):
            self._prepare, self._apply, self.staged = handler.prepare, handler.apply, True
        else:
            self._prepare, self._apply, self.staged = _as_they_are, handler, False
        self.batch_size = batch_size
        self.timeout_ms = timeout_ms
        self.idle = idle
        self.positions = positions
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_size,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Held from fetching a batch to committing it: a rebalance waits for it, so a partition
        # moves to another worker only after this one has finished writing what it read.
        self._turn = asyncio.Lock()
        # Next offset and tag per partition, handled but not committed.
        self._handled: dict[TopicPartition, tuple[int, str]] = {}
        self._unplaced: set[TopicPartition] = set()  # assigned, not yet past ``positions``
        self._committer: asyncio.Task[None] | None = None
        # Staged: the next batch, read and prepared while the one before was being applied;
        # read again (rewound) if a rebalance or a failure comes first.
        self._in_hand: _Fetched | None = None
        self._revokes = 0  # revocations begun: a batch read before one is read again
        # A revocation waits for the turn: no read-ahead meanwhile (aiokafka's getmany waits for
        # the rebalance to finish, even with timeout 0, and the rebalance would wait for us).
        self._revoking = False
        self._applying: _Fetched | None = None  # read, not yet handled: still pending
        self.last_record_time: float | None = None  # produce time of the newest record handled

    async def start(self) -> None:
        self.consumer.subscribe([self.topic], listener=_FinishBatchFirst(self))
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"consume:{self.topic}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(STOP_COMMIT_SECONDS):
                await self.commit_handled()
        except TimeoutError:
            log.warning("%s: last offsets not committed; they will be replayed", self.topic)
        await self.consumer.stop()

    async def lag(self) -> tuple[int, float]:
        """(messages behind, seconds behind): 0 s when nothing is pending."""
        pending = 0
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), 1.0)
            except (KafkaError, IllegalStateError, TimeoutError):
                continue  # the assignment moved under us; the next call will see
            pending += max(0, high - position)
        # The position is past what was read and not yet handled (staged: up to two batches).
        pending += sum(len(f.records) for f in (self._applying, self._in_hand) if f is not None)
        if pending == 0 or self.last_record_time is None:
            return pending, 0.0
        return pending, max(0.0, time.time() - self.last_record_time)

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            current: _Fetched | None = None
            try:
                async with self._turn:
                    current, self._in_hand = self._in_hand, None
                    if current is not None and (self._unplaced or current.revokes != self._revokes):
                        # Read before a placement or a revocation: read again by the owner.
                        self._rewind(current.batches)
                        current = None
                    if current is None and not self._revoking:
                        if self._unplaced:
                            await self._place()
                        if not self._revoking:  # _place awaits Redis: it may have begun since
                            current = await self._fetch(self.timeout_ms)
                    if current is not None:
                        self._applying = current
                        try:
                            self._in_hand = await self._handle(current)
                        finally:
                            self._applying = None
                        self._handed_over(current.batches)
                        self.last_record_time = max(r.timestamp for r in current.records) / 1000
                current = None  # handled: nothing to take back from here on
                if self.idle is not None:
                    await self.idle()
                backoff = 0.1
            except SeekTo as seek:
                self._take_back(current)  # a partition the seek does not name resumes at it
                self._seek(seek.offsets)
            except asyncio.CancelledError:
                raise
            except (IndexUnavailable, RedisError, OSError, KafkaError) as exc:
                self._take_back(current)
                log.warning("%s: %s; retrying in %.1fs", self.topic, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # A bug must not kill the worker silently, nor skip messages: log and retry.
                self._take_back(current)
                log.exception("%s: handler failed; retrying", self.topic)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _fetch(self, timeout_ms: int) -> _Fetched | None:
        """The next batch, prepared; None if there is none, or if partitions were assigned
        while we waited (placed first, read again)."""
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.batch_size)
        if self._unplaced:
            self._rewind(batches)
            return None
        records = [r for tp in sorted(batches, key=lambda t: t.partition) for r in batches[tp]]
        if not records:
            return None
        fetched = _Fetched(batches, records, revokes=self._revokes)
        try:
            fetched.prepared = await self._prepare(records)
        except BaseException:
            self._rewind(batches)
            raise
        return fetched

    async def _handle(self, current: _Fetched) -> _Fetched | None:
        """Apply ``current`` until it is handled; staged, read and prepare the next batch
        meanwhile and return it (the caller holds it in hand)."""
        if not self.staged:
            await self._apply_until_done(current.prepared)
            return None
        applying = asyncio.create_task(self._apply_until_done(current.prepared))
        upcoming: _Fetched | None = None
        try:
            if not self._revoking:
                upcoming = await self._fetch(0)  # what the fetcher holds already; no waiting
        except asyncio.CancelledError:
            applying.cancel()
            await asyncio.gather(applying, return_exceptions=True)
            raise
        except Exception as exc:  # read again after this batch, which goes on regardless
            log.warning("%s: reading ahead failed: %r", self.topic, exc)
        try:
            await applying  # cancelled with us
        except BaseException:
            if upcoming is not None:
                self._rewind(upcoming.batches)
            raise
        return upcoming

    async def _apply_until_done(self, prepared: Any) -> None:
        """Retry the same batch until it is handled (or we are stopping, or must seek)."""
        backoff = 0.1
        while True:
            try:
                await self._apply(prepared)
                return
            except (IndexUnavailable, RedisError, OSError) as exc:
                if self._stopping:
                    raise
                log.warning("%s: %s; retrying the batch in %.1fs", self.topic, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _take_back(self, current: _Fetched | None) -> None:
        """After a failure: the batch read ahead (later offsets) and the one in hand."""
        self.drop_in_hand()
        if current is not None:
            self._rewind(current.batches)

    def drop_in_hand(self) -> None:
        """Before partitions move: the batch read ahead is read again by whoever owns them."""
        upcoming, self._in_hand = self._in_hand, None
        if upcoming is not None:
            self._rewind(upcoming.batches)

    def _handed_over(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """The batch is handled: its offsets go to the committer, which runs beside the loop."""
        tag = self._tag()
        for tp, records in batches.items():
            if records:
                self._handled[tp] = (records[-1].offset + 1, tag)
        self._commit_soon()

    def _tag(self) -> str:
        return self.positions.tag() if self.positions is not None else ""

    def _commit_soon(self) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop(), name=f"commit:{self.topic}")

    async def commit_handled(self) -> None:
        """Commit everything handled so far and wait for it (rebalance, stop). Through the one
        committer task: two committers could land their commits out of order (a seek's commit
        goes backwards), and a seek noticed while idle does not wait for the loop's turn."""
        if self._handled:
            self._commit_soon()
        if self._committer is not None:
            [outcome] = await asyncio.gather(self._committer, return_exceptions=True)
            if isinstance(outcome, Exception):  # not committed: replayed, but say why
                log.error("%s: committer failed: %r", self.topic, outcome)

    async def _commit_loop(self) -> None:
        backoff = 0.1
        while self._handled:
            assigned = self.consumer.assignment()
            # A partition that moved away is the new owner's to commit (one unassigned
            # partition would make aiokafka refuse the others' offsets too).
            offsets = {tp: o for tp, o in self._handled.items() if tp in assigned}
            self._handled = {}
            if not offsets:
                return
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # Partitions moved to another worker; it will replay from the last commit.
                log.info("%s: commit skipped after a rebalance: %s", self.topic, exc)
            except KafkaError as exc:
                # Not committed is safe (the records are replayed, handlers are idempotent);
                # try again with whatever has been handled by then.
                for tp, offset in offsets.items():
                    self._handled.setdefault(tp, offset)
                if self._stopping:
                    return
                log.warning("%s: commit failed: %s; retrying in %.1fs", self.topic, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _rewind(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Take a failed batch back: getmany already moved past it, and a batch that is
        neither handled nor dead-lettered must be read again, never skipped."""
        assigned = self.consumer.assignment()
        for tp, records in batches.items():
            if records and tp in assigned:
                self.consumer.seek(tp, records[0].offset)

    def _seek(self, offsets: dict[int, int]) -> None:
        sought = {}
        tag = self._tag()
        for tp in self.consumer.assignment():
            if tp.partition in offsets:
                self.consumer.seek(tp, offsets[tp.partition])
                sought[tp] = (offsets[tp.partition], tag)
        if sought:
            # What was committed (or is in flight) past the seek belongs to what it replaces:
            # commit the point the replay starts from, after any commit in flight, so that a
            # worker killed or a partition moved before the replay gets there resumes from it.
            self._handled.update(sought)
            self._commit_soon()

    async def _place(self) -> None:
        """Ask ``positions`` where the newly assigned partitions start (see :class:`Positions`).
        Until it has answered (Redis may be away), none of their records is handled."""
        assigned = self.consumer.assignment()
        self._unplaced &= assigned
        if self.positions is None or not self._unplaced:
            self._unplaced.clear()
            return
        tps = sorted(self._unplaced, key=lambda t: t.partition)
        # The coordinator's own call: ``committed()`` returns the offsets without their tags.
        committed = await self.consumer._coordinator.fetch_committed_offsets(tps)
        for tp, offset in (await self.positions.resume(committed)).items():
            if tp in assigned:
                log.warning(
                    "%s: partition %d starts at %d, before its commit (%d) into another place",
                    self.topic,
                    tp.partition,
                    offset,
                    committed[tp].offset,
                )
                self.consumer.seek(tp, offset)
        self._unplaced.difference_update(tps)


class _FinishBatchFirst(ConsumerRebalanceListener):
    """Before partitions are taken away, let the batch in hand finish, and commit it.

    Without this fence the old owner may still be writing a batch while the new owner replays
    the same records from the last commit; versions keep records right, but the ref clean-up
    of two writers interleaving could drop a ref the newer version needs.
    """

    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if not revoked:
            return
        self.owner._revokes += 1
        self.owner._revoking = True
        try:
            async with asyncio.timeout(REVOKE_WAIT_SECONDS):
                async with self.owner._turn:
                    self.owner.drop_in_hand()
                    await self.owner.commit_handled()
        except TimeoutError:
            log.warning(
                "%s: batch still in hand after %.0fs; letting the rebalance go on",
                self.owner.topic,
                REVOKE_WAIT_SECONDS,
            )
        finally:
            self.owner._revoking = False

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.owner.positions is not None:
            self.owner._unplaced.update(assigned)
        log.info("%s: assigned %s", self.owner.topic, sorted(tp.partition for tp in assigned))


async def _as_they_are(records: Sequence[ConsumerRecord]) -> Sequence[ConsumerRecord]:
    return records

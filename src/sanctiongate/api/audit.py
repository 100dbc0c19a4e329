"""The audit trail: every check leaves a record an auditor can read back (``sanction.audit``).

The records themselves are built in :mod:`sanctiongate.audit` (shared with the stream).
Records are queued and sent in the background so a slow or absent broker never delays a
check; the queue is bounded and what it must drop is counted and logged. A single check's
record is built there too, with the time it was queued; a batch's records are built when it is
answered (:meth:`AuditTrail.record_batch` says why).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import Counter

from ..audit import batch_audit_records, record_at, replay_record
from ..domain.models import BatchCheckResponse, Decision
from ..keys import ApiKey

log = logging.getLogger(__name__)

audit_dropped_total = Counter(
    "sanctiongate_audit_dropped_total", "Audit records dropped because the queue was full"
)

QUEUE_LIMIT = 100_000
FLUSH_SECONDS = 0.05


# A single check's record, to be built when its burst goes: department, key id, decision and
# the epoch time it was queued. Batches and replays queue their records already built.
_Check = tuple[str, str, Decision, float]


class AuditTrail:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        # What the next burst carries, in order; each check's record is built when it goes
        # (a batch's, which may be several parts, and a replay's already are).
        self.pending: list[_Check | list[dict]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending = False  # a burst is on its way to the broker

    def start(self, connected: Callable[[], Awaitable[bool]]) -> None:
        self._task = asyncio.create_task(self._drain(connected), name="audit")

    async def stop(self) -> None:
        if self._task is not None:
            deadline = asyncio.get_running_loop().time() + 5
            while (self.pending or self._sending) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def record(self, key: ApiKey, result: Decision) -> None:
        """A single check's record (channel ``check``). The models are not changed after the
        answer: building later reads the same values. What is queued is a plain tuple and the
        time a float: per check, nothing else is made until the burst (an asyncio queue's put
        and get, a partial and a datetime cost a tenth of a check's CPU)."""
        if len(self.pending) >= QUEUE_LIMIT:
            self._dropped(result.request_id)
            return
        self.pending.append((key.department, key.key_id, result, time.time()))
        if not self._arrived.is_set():
            self._arrived.set()

    def record_batch(self, key: ApiKey, response: BatchCheckResponse) -> None:
        """A batch's records are built now, not when their burst goes: the API answers a batch
        with the collector paused (app.FastChecks), and a response held until the burst was
        still alive when the pause ended, so the collection put off walked its ~40,000
        objects (~0.4 µs per subject, more than building the records). The records are
        plain dicts of plain values, which the collector does not track. A failure to build
        is counted and logged as at the burst, and never fails the answer."""
        at = datetime.now(UTC)
        records = _built([partial(batch_audit_records, key.department, key.key_id, response, at)])
        if records:
            self._queue(records, response.request_id)

    def record_replay(self, key: ApiKey, decision_json: bytes) -> None:
        record = replay_record(key.department, key.key_id, decision_json)
        self._queue([record], record["request_id"])

    def _queue(self, records: list[dict], request_id: str) -> None:
        if len(self.pending) >= QUEUE_LIMIT:
            self._dropped(request_id)
            return
        self.pending.append(records)
        if not self._arrived.is_set():
            self._arrived.set()

    @staticmethod
    def _dropped(request_id: str) -> None:
        audit_dropped_total.inc()
        log.error("audit queue full: a record of %s was dropped", request_id)

    async def _drain(self, connected: Callable[[], Awaitable[bool]]) -> None:
        # Records go out in bursts, at most every FLUSH_SECONDS: one produce request carries
        # many records instead of one each, which at low concurrency cost more CPU than the
        # check itself. An auditor reads them a fraction of a second later; nothing is lost.
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            burst, self.pending = self.pending, []
            self._sending = True
            try:
                await self._send_burst(_records_of(burst), connected)
            finally:
                self._sending = False
            await asyncio.sleep(FLUSH_SECONDS)

    async def _send_burst(
        self, records: list[dict], connected: Callable[[], Awaitable[bool]]
    ) -> None:
        """One record batch per partition (keyed by department, as ``send`` would place them),
        instead of one ``send`` per record: each of those cost a future, a partitioner call and,
        with a full batch, a wait of its own. What failed to be delivered is sent again; what
        was delivered is not (a retry makes no duplicates)."""
        messages = [message for record in records if (message := _message(record)) is not None]
        pending: dict[int, list[tuple[bytes, bytes]]] | None = None
        while True:
            try:
                if not await connected():
                    await asyncio.sleep(1)
                    continue
                if pending is None:
                    pending = _by_partition(
                        messages, sorted(await self.producer.partitions_for(self.topic))
                    )
                partitions = list(pending)
                outcomes = await asyncio.gather(
                    *(self._deliver(p, pending[p]) for p in partitions), return_exceptions=True
                )
                for partition, outcome in zip(partitions, outcomes, strict=True):
                    if isinstance(outcome, asyncio.CancelledError):
                        raise outcome
                    if not isinstance(outcome, BaseException):
                        del pending[partition]
                if not pending:
                    return
                failure = next(o for o in outcomes if isinstance(o, BaseException))
                log.warning("audit: broker unavailable (%s); retrying", failure)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("audit: broker unavailable (%s); retrying", exc)
            await asyncio.sleep(1)

    async def _deliver(self, partition: int, messages: list[tuple[bytes, bytes]]) -> None:
        """Send ``messages`` to ``partition`` in as few record batches as fit; each delivered
        batch's messages leave the list, so a retry after a failure sends only the rest.

        A batch the broker finds too large (its ``max.message.bytes`` below the producer's
        batch size) is sent again one record at a time; a single record it refuses is dropped
        and counted, since retrying it would hold back every record after it for ever."""
        singly = False
        while messages:
            batch = self.producer.create_batch()
            taken = 0
            for key, value in messages:
                # An empty batch takes a record of any size; a full one answers None.
                if batch.append(key=key, value=value, timestamp=None) is None:
                    break
                taken += 1
                if singly:
                    break
            try:
                await (await self.producer.send_batch(batch, self.topic, partition=partition))
            except MessageSizeTooLargeError:
                if taken > 1:
                    singly = True
                    continue
                audit_dropped_total.inc()
                log.error("audit record too large for the broker: dropped (%d bytes)", batch.size())
            del messages[:taken]


def _records_of(burst: list[_Check | list[dict]]) -> list[dict]:
    """The burst's records in order: each check's built here, one stamp per distinct time."""
    records: list[dict] = []
    for item in burst:
        if type(item) is list:
            records.extend(item)
            continue
        department, key_id, result, at = item  # type: ignore[misc]
        try:
            stamp = datetime.fromtimestamp(at, UTC).isoformat()
            records.append(record_at("check", department, key_id, result, stamp))
        except Exception:  # a bug, not a broker outage: the other records still go
            audit_dropped_total.inc()
            log.exception("audit record not built")
    return records


def _built(builders: list[Callable[[], list[dict]]]) -> list[dict]:
    records = []
    for build in builders:
        try:
            records.extend(build())
        except Exception:  # a bug, not a broker outage: the other records still go
            audit_dropped_total.inc()
            log.exception("audit record not built")
    return records


def _message(record: dict) -> tuple[bytes, bytes] | None:
    try:
        return record["department"].encode(), orjson.dumps(record)
    except TypeError as exc:  # a bug, not a broker outage: retrying would never end
        audit_dropped_total.inc()
        log.error("audit record of %s not serialisable: %s", record["request_id"], exc)
        return None


_PARTITIONER = DefaultPartitioner()


def _by_partition(
    messages: list[tuple[bytes, bytes]], partitions: list[int]
) -> dict[int, list[tuple[bytes, bytes]]]:
    """The messages per partition, in order, placed by key as the producer's ``send`` does.

    A burst's keys are a few departments: each is hashed once (aiokafka's murmur2 is Python,
    ~1.5 µs a key), not once per record."""
    placed: dict[int, list[tuple[bytes, bytes]]] = {}
    partition_of: dict[bytes, int] = {}
    for key, value in messages:
        partition = partition_of.get(key)
        if partition is None:
            partition = partition_of[key] = _PARTITIONER(key, partitions, partitions)
        placed.setdefault(partition, []).append((key, value))
    return placed

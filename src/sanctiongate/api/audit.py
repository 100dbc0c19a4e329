"""The audit trail: every check leaves a record an auditor can read back (``sanction.audit``).

The records themselves are built in :mod:`sanctiongate.audit` (shared with the stream).
Records are queued and sent in the background so a slow or absent broker never delays a
check; the queue is bounded and what it must drop is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from ..audit import audit_record, replay_record
from ..domain.models import BatchCheckResponse, Decision
from ..keys import ApiKey

log = logging.getLogger(__name__)

audit_dropped_total = Counter(
    "sanctiongate_audit_dropped_total", "Audit records dropped because the queue was full"
)

QUEUE_LIMIT = 100_000
FLUSH_SECONDS = 0.05


class AuditTrail:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None
        self._sending = False  # a burst is on its way to the broker

    def start(self, connected: Callable[[], Awaitable[bool]]) -> None:
        self._task = asyncio.create_task(self._drain(connected), name="audit")

    async def stop(self) -> None:
        if self._task is not None:
            deadline = asyncio.get_running_loop().time() + 5
            while (
                not self.queue.empty() or self._sending
            ) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def record(self, key: ApiKey, channel: str, result: Decision | BatchCheckResponse) -> None:
        self._queue(audit_record(channel, key.department, key.key_id, result))

    def record_replay(self, key: ApiKey, decision_json: bytes) -> None:
        self._queue(replay_record(key.department, key.key_id, decision_json))

    def _queue(self, record: dict) -> None:
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            audit_dropped_total.inc()
            log.error("audit queue full: a record of %s was dropped", record["request_id"])

    async def _drain(self, connected: Callable[[], Awaitable[bool]]) -> None:
        # Records go out in bursts, at most every FLUSH_SECONDS: one produce request carries
        # many records instead of one each, which at low concurrency cost more CPU than the
        # check itself. An auditor reads them a fraction of a second later; nothing is lost.
        while True:
            records = [await self.queue.get()]
            while not self.queue.empty():
                records.append(self.queue.get_nowait())
            self._sending = True
            try:
                await asyncio.gather(*(self._send(record, connected) for record in records))
            finally:
                self._sending = False
            await asyncio.sleep(FLUSH_SECONDS)

    async def _send(self, record: dict, connected: Callable[[], Awaitable[bool]]) -> None:
        try:
            value = orjson.dumps(record)
        except TypeError as exc:  # a bug, not a broker outage: retrying would never end
            audit_dropped_total.inc()
            log.error("audit record of %s not serialisable: %s", record["request_id"], exc)
            return
        while True:
            try:
                if not await connected():
                    await asyncio.sleep(1)
                    continue
                # send() only queues into the producer's batch; its delivery is awaited apart
                # so that one burst's records share produce requests.
                delivery = await self.producer.send(
                    self.topic, key=record["department"].encode(), value=value
                )
                await delivery
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("audit: broker unavailable (%s); retrying", exc)
                await asyncio.sleep(1)

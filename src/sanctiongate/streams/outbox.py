"""Many messages of one handled batch, sent as a few record batches.

``AIOKafkaProducer.send`` costs tens of microseconds of Python per message (metadata wait,
partitioner, accumulator, a future each): for the decisions and audit records of thousands of
approval events that was more than deciding them. An :class:`Outbox` appends each message
to an open record batch of its partition (the C record builder) and hands full batches to
``send_batch``; a message still lands on the partition its key hashes to, exactly as ``send``
would put it (the producer's default partitioner), so per-key order and placement are kept.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_partitioner = DefaultPartitioner()


class Outbox:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}  # murmur2 is pure Python
        self._open: dict[tuple[str, int], object] = {}  # (topic, partition) → BatchBuilder
        self._sent: list[asyncio.Future] = []

    async def add(self, topic: str, key: bytes, value: bytes) -> None:
        partition = self._partition_of.get((topic, key))
        if partition is None:
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = sorted(await self.producer.partitions_for(topic))
                self._partitions[topic] = partitions
            partition = self._partition_of[topic, key] = _partitioner(key, partitions, partitions)
        batch = self._open.get((topic, partition))
        if batch is None:
            batch = self._open[topic, partition] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # type: ignore[attr-defined]
            # Full: off it goes; a fresh batch always takes its first message, whatever its size.
            self._sent.append(await self.producer.send_batch(batch, topic, partition=partition))
            batch = self._open[topic, partition] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # type: ignore[attr-defined]

    async def send(self) -> list[asyncio.Future]:
        """Send what is still open; the futures resolve once the broker has stored each batch."""
        for (topic, partition), batch in self._open.items():
            self._sent.append(await self.producer.send_batch(batch, topic, partition=partition))
        self._open = {}
        sent, self._sent = self._sent, []
        return sent

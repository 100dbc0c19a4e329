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
import struct

from aiokafka import AIOKafkaProducer

_M = 0x5BD1E995  # murmur2's mixing constant
_WORDS = struct.Struct("<I")


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 (``aiokafka.partitioner.murmur2``, the Java client's ``Utils.murmur2``),
    a word at a time: that one masks each byte and each step, ~4 µs for a 30-byte request id,
    paid once per decision (request ids do not repeat). tests/test_stream_wire.py holds the two
    equal."""
    length = len(key)
    tail = length & ~3
    h = 0x9747B28C ^ length
    for (k,) in _WORDS.iter_unpack(key[:tail]):
        k = (k * _M) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * _M) & 0xFFFFFFFF
        h = ((h * _M) & 0xFFFFFFFF) ^ k
    extra = length & 3
    if extra == 3:
        h ^= key[tail + 2] << 16
    if extra >= 2:
        h ^= key[tail + 1] << 8
    if extra:
        h = ((h ^ key[tail]) * _M) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * _M) & 0xFFFFFFFF
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: list[int]) -> int:
    """The partition the producer's default partitioner gives a key (``partitions`` sorted)."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


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
            partition = self._partition_of[topic, key] = partition_of(key, partitions)
        batch = self._open.get((topic, partition))
        if batch is None:
            batch = self._open[topic, partition] = self.producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # type: ignore[attr-defined]
            # Full: off it goes; a fresh batch always takes its first message, whatever its size.
            await self._send(batch, topic, partition)
            batch = self._open[topic, partition] = self.producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # type: ignore[attr-defined]

    async def send(self) -> list[asyncio.Future]:
        """Send what is still open; the futures resolve once the broker has stored each batch."""
        for (topic, partition), batch in self._open.items():
            await self._send(batch, topic, partition)
        self._open = {}
        sent, self._sent = self._sent, []
        return sent

    async def _send(self, batch: object, topic: str, partition: int) -> None:
        # Closed: complete, so the producer sends it at once. An open batch waits out the
        # producer's linger_ms (5) for appends that never come, and the handled batch with it.
        batch.close()  # type: ignore[attr-defined]
        self._sent.append(await self.producer.send_batch(batch, topic, partition=partition))

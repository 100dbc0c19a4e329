"""What every agent of a worker shares: settings, Redis, the index, the producer, the checker."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import BaseModel
from redis.asyncio import Redis

from ..checks import Checker
from ..domain.models import RejectionError
from ..index import Layout, SanctionIndex
from ..index.client import LeanRedis
from ..settings import Settings
from .deadletter import DEAD_LETTER_MAX_BYTES, count_rejected, encode, rejected_record

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    index: SanctionIndex
    checker: Checker
    producer: AIOKafkaProducer | None = None
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        redis = LeanRedis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        index = SanctionIndex(
            redis, Layout(prefix=settings.index_prefix), settings.serve_during_rebuild
        )
        return cls(settings, redis, index, Checker(index))

    async def start(self) -> None:
        # aiokafka objects bind to the running loop: create them inside it.
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=f"{self.settings.app_id}-producer",
            acks="all",
            linger_ms=5,
            # A handled batch publishes thousands of decisions and audit records: in 16 KiB
            # record batches (the default) each partition took one broker round trip per few
            # dozen of them. Below the broker's 1 MiB message.max.bytes.
            max_batch_size=512 * 1024,
            enable_idempotence=True,
            max_request_size=DEAD_LETTER_MAX_BYTES,  # a dead letter echoes a whole message
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        await self.redis.aclose()

    async def publish(self, topic: str, key: str | None, value: BaseModel) -> asyncio.Future:
        """Queue a message; await the returned future to know it is stored by the broker."""
        assert self.producer is not None, "Runtime.start() first"
        return await self.producer.send(
            topic, key=key.encode() if key is not None else None, value=encode(value)
        )

    async def dead_letter(self, record: ConsumerRecord, error: RejectionError) -> asyncio.Future:
        count_rejected(record.topic, error.code)
        log.info(
            "rejected %s[%d]@%d: %s (%s)",
            record.topic,
            record.partition,
            record.offset,
            error.code,
            error.path,
        )
        rejected = rejected_record(
            record.topic, record.partition, record.offset, record.key, record.value, error
        )
        return await self.publish(
            self.settings.topic_rejected,
            record.key.decode("utf-8", "replace") if record.key else None,
            rejected,
        )

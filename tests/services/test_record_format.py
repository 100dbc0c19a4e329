"""A generation written in another record format is never read: checks answer 503 (never
``pass``) until a worker has rebuilt it in the format it writes, from the compacted topic."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from sanctiongate.index import IndexUnavailable
from sanctiongate.index.records import RECORD_FORMAT
from tests.conftest import eventually, wait_http

from .conftest import Stack
from .support import Poller, assert_equals_replay, index_of, listed_subject

pytestmark = pytest.mark.services


@pytest.mark.parametrize("old_format", [None, "2"])
async def test_an_old_format_generation_is_refused_then_rebuilt(
    stack: Stack,
    producer: AIOKafkaProducer,
    http: httpx.AsyncClient,
    redis: Redis,
    old_format: str | None,
) -> None:
    subject = await listed_subject(stack, producer, http, f"format-watched-{old_format}")
    index = index_of(stack, redis)
    old = await index.read_meta()
    assert old.record_format == RECORD_FORMAT and old.ready

    poller = Poller(http, subject)
    with poller:
        await asyncio.sleep(0.3)
        # What a previous version left: a serving generation with no format field (format 1)
        # or in format 2 (positional JSON records), whose records this version would misread.
        if old_format is None:
            await redis.hdel(index.layout.meta, "format")
        else:
            await redis.hset(index.layout.meta, "format", old_format)
        with pytest.raises(IndexUnavailable) as refused:
            await index.serving_meta()
        # The worker may already have started the rebuild (which says so first).
        assert refused.value.reason in ("index_format", "index_rebuilding")

        async def rebuilt() -> bool:
            meta = await index.read_meta()
            return meta.gen != old.gen and meta.ready and poller.last == "block"

        await eventually(rebuilt, timeout=60)
        answers = await poller.stop()
    assert answers["pass"] == 0, answers
    assert all(a == "block" or a.startswith("503:") for a in answers), answers
    assert any(a.startswith("503:") for a in answers), f"the old format was served: {answers}"
    meta = await index.read_meta()
    assert meta.record_format == RECORD_FORMAT
    wait_http(f"{stack.api_url}/readyz", 10)
    await assert_equals_replay(stack, redis)

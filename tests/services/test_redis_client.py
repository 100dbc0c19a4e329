"""The Redis client of API and workers (index/client.py) against a real Redis: the same bytes on the
wire as redis-py's own packer, one SCRIPT EXISTS per client instead of one per pipeline, and
scripts that Redis lost (SCRIPT FLUSH, a restart) loaded again without running anything twice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection

from sanctiongate.index.client import LeanCommands, LeanRedis
from tests.conftest import Services


@pytest.fixture
async def client(services: Services) -> AsyncIterator[LeanRedis]:
    redis = LeanRedis.from_url(services.redis_url, socket_timeout=2)
    yield redis
    await redis.aclose()


@pytest.fixture
def script_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts redis-py's SCRIPT EXISTS round trips (Pipeline.load_scripts)."""
    asked: list[int] = []
    original = Pipeline.load_scripts

    async def counted(self: Pipeline) -> None:
        asked.append(len(self.scripts))
        await original(self)

    monkeypatch.setattr(Pipeline, "load_scripts", counted)
    return asked


@pytest.mark.parametrize(
    "args",
    [
        ("SET", "k", "v"),
        ("CONFIG GET", "maxmemory"),
        (b"EVALSHA", "a" * 40, 2, "k1", "键", 0.1, 1.5e20, 2**70, -3, b"\xff\x00"),
    ],
)
def test_packed_bytes_are_redis_pys_own(args: tuple) -> None:
    lean = type("LeanConnection", (LeanCommands, Connection), {})()
    assert b"".join(lean.pack_command(*args)) == b"".join(Connection().pack_command(*args))


async def test_values_round_trip(client: LeanRedis) -> None:
    key = f"sg-test-{uuid.uuid4().hex}"
    for value, stored in [("中文", "中文".encode()), (1.5, b"1.5"), (2**70, str(2**70).encode())]:
        await client.set(key, value, ex=60)
        assert await client.get(key) == stored


async def test_script_pipelines_ask_once_and_survive_a_script_flush(
    client: LeanRedis, script_checks: list[int]
) -> None:
    echo = client.register_script("return ARGV[1]")

    async def run(value: str) -> list:
        pipe = client.pipeline(transaction=False)
        await echo(keys=[], args=[value], client=pipe)
        await echo(keys=[], args=[value + "!"], client=pipe)
        return await pipe.execute()

    assert [await run(str(i)) for i in range(3)] == [[b"0", b"0!"], [b"1", b"1!"], [b"2", b"2!"]]
    assert script_checks == [1]  # the first pipeline asked; the next two did not
    await client.script_flush()
    assert await run("after") == [b"after", b"after!"]  # NOSCRIPT: loaded, run again


async def test_a_pipeline_with_other_commands_still_asks_first(
    client: LeanRedis, script_checks: list[int]
) -> None:
    echo = client.register_script("return ARGV[1]")
    key = f"sg-test-{uuid.uuid4().hex}"
    for _ in range(2):
        await client.script_flush()
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        await echo(keys=[], args=["x"], client=pipe)
        assert (await pipe.execute())[1] == b"x"
    assert len(script_checks) == 2
    assert await client.get(key) == b"2"  # each INCR ran exactly once
    await client.delete(key)


async def test_run_script_answers_as_the_script_and_survives_a_script_flush(
    client: LeanRedis,
) -> None:
    from redis.exceptions import ResponseError

    from sanctiongate.index.client import run_script

    key = f"sg-test-{uuid.uuid4().hex}"
    script = client.register_script(
        "redis.call('INCR', KEYS[1]) return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"
    )
    await client.script_flush()  # never loaded: the first call meets NOSCRIPT
    expected = [key.encode(), "中文".encode(), 42]
    assert await run_script(client, script, [key], ["中文", 41]) == expected
    assert await client.get(key) == b"1"  # NOSCRIPT ran nothing: once, not twice
    assert await script(keys=[key], args=["中文", 41]) == expected  # redis-py's own call too
    await client.script_flush()
    assert await run_script(client, script, [key], ["中文", 41]) == expected
    assert await client.get(key) == b"3"
    failing = client.register_script("return redis.error_reply('refused')")
    with pytest.raises(ResponseError, match="refused"):
        await run_script(client, failing, [], [])
    assert await run_script(client, script, [key], ["x", 0]) == [key.encode(), b"x", 1]
    await client.delete(key)

"""Coalesced: concurrent callers share one call of the batched function, each gets its own
result (in order), a failure reaches exactly the callers of the failed call."""

from __future__ import annotations

import asyncio

import pytest

from sanctiongate.coalesce import Coalesced


class Doubling:
    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        await asyncio.sleep(0.01)  # a round trip: callers arriving meanwhile queue up
        if self.fail_on in items:
            raise RuntimeError("redis went away")
        return [2 * i for i in items]


async def test_callers_of_one_loop_turn_share_one_call() -> None:
    run = Doubling()
    coalesced = Coalesced(run)
    results = await asyncio.gather(*(coalesced(i) for i in range(50)))
    assert results == [2 * i for i in range(50)]
    assert run.calls == [list(range(50))]  # the first did not go alone


async def test_callers_arriving_during_a_call_share_the_next_one() -> None:
    run = Doubling()
    coalesced = Coalesced(run)
    first = [asyncio.ensure_future(coalesced(i)) for i in range(3)]
    await asyncio.sleep(0.005)  # the first call is in flight
    later = [asyncio.ensure_future(coalesced(i)) for i in range(3, 10)]
    assert await asyncio.gather(*first, *later) == [2 * i for i in range(10)]
    assert run.calls == [[0, 1, 2], list(range(3, 10))]


async def test_a_lone_caller_waits_for_nobody() -> None:
    run = Doubling()
    coalesced = Coalesced(run)
    assert [await coalesced(i) for i in range(3)] == [0, 2, 4]
    assert run.calls == [[0], [1], [2]]


async def test_a_failed_call_fails_its_callers_only() -> None:
    run = Doubling(fail_on=7)
    coalesced = Coalesced(run)
    first = asyncio.ensure_future(coalesced(0))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(coalesced(i)) for i in (5, 7)]
    assert await first == 0
    for future in queued:
        with pytest.raises(RuntimeError, match="redis went away"):
            await future
    assert await coalesced(3) == 6  # and the next caller is served again


class Abandoned(Exception):
    pass


async def test_callers_queued_when_the_drainer_is_cancelled_get_the_abandoned_error() -> None:
    coalesced = Coalesced(Doubling(), abandoned=lambda: Abandoned("stopping"))
    first = asyncio.ensure_future(coalesced(0))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(coalesced(i)) for i in (1, 2)]
    assert await first == 0  # its call ended: the drainer now serves the queued two
    assert coalesced._drainer is not None
    coalesced._drainer.cancel()  # as at shutdown
    for future in queued:
        with pytest.raises(Abandoned):
            await future

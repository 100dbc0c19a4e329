"""The collector pause of a batch (heap.collector_paused): off while any batch is in hand, back
on after the last, whatever happens in between; never switched on if it was off before."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from sanctiongate.heap import collector_paused
from sanctiongate.streams.approvals import ApprovalComparison


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_paused_inside_and_running_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_running_again_after_a_failed_batch() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the batch failed")
    assert gc.isenabled()


async def test_overlapping_batches_resume_it_after_the_last() -> None:
    first_in, second_done = asyncio.Event(), asyncio.Event()
    seen: list[bool] = []

    async def first() -> None:
        with collector_paused():
            first_in.set()
            await second_done.wait()
            seen.append(gc.isenabled())  # the second batch left; this one is still in hand

    async def second() -> None:
        await first_in.wait()
        with collector_paused():
            await asyncio.sleep(0)
        second_done.set()

    await asyncio.gather(first(), second())
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_collections_put_off_happen_after_the_pause() -> None:
    collected: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            collected.append(info["generation"])

    gc.callbacks.append(note)
    try:
        threshold = gc.get_threshold()[0]
        with collector_paused():
            keep = [[] for _ in range(threshold * 2)]  # allocations enough for young collections
            assert collected == []
        del keep
        _ = [[] for _ in range(10)]  # the first allocations after it
        assert collected, "no collection ran after the pause"
    finally:
        gc.callbacks.remove(note)


async def test_batches_that_overlap_without_a_gap_still_let_it_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A steady stream of overlapping batches never leaves none in hand: past
    LONGEST_PAUSE_SECONDS, a batch that leaves runs a young collection anyway."""
    from sanctiongate import heap

    monkeypatch.setattr(heap, "LONGEST_PAUSE_SECONDS", 0.05)
    collected: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            collected.append(info["generation"])

    async def batch(n: int) -> None:
        with collector_paused():
            await asyncio.sleep(0.06)  # three in hand at any time

    async def stream() -> None:  # always at least one batch in hand, for ~0.4 s
        running = [asyncio.create_task(batch(0))]
        for n in range(1, 20):
            await asyncio.sleep(0.02)
            running.append(asyncio.create_task(batch(n)))
        await asyncio.gather(*running)

    gc.callbacks.append(note)
    try:
        await stream()
    finally:
        gc.callbacks.remove(note)
    assert collected and set(collected[:-1]) <= {0}, "young collections while batches overlap"
    assert gc.isenabled()


async def test_the_approval_agent_pauses_it_while_handling_not_while_waiting_for_acks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = ApprovalComparison.__new__(ApprovalComparison)  # no runtime: _handled is faked
    seen: list[tuple[str, bool]] = []

    async def acked() -> None:
        seen.append(("waiting for the broker", gc.isenabled()))

    async def handled(records: object) -> list[asyncio.Future]:
        seen.append(("handling", gc.isenabled()))
        return [asyncio.ensure_future(acked())]  # runs once handle() waits for it

    monkeypatch.setattr(agent, "_handled", handled)
    await agent.handle([])
    assert seen == [("handling", False), ("waiting for the broker", True)]
    assert gc.isenabled()


async def test_the_api_pauses_it_while_it_parses_and_answers_a_batch_only() -> None:
    """FastChecks: a batch's body is parsed and run with the collector paused (its million
    objects die with it); a single check's is not; after either, it runs again."""
    from sanctiongate.api.app import FastChecks
    from sanctiongate.domain.models import BatchCheckRequest, CheckRequest

    class Keys:
        def authenticate(self, token: str) -> object:
            return object()

    class Services:
        keys = Keys()

    checks = FastChecks.__new__(FastChecks)
    checks.services = Services()  # type: ignore[assignment]
    seen: list[tuple[str, bool]] = []

    async def run(services: object, key: object, parsed: object) -> bytes:
        seen.append((type(parsed).__name__, gc.isenabled()))
        return b"{}"

    body = b'{"matter":{"category":"bidding"},"subjects":[{"kind":"legal_person","name":"x"}]}'
    for model in (BatchCheckRequest, CheckRequest):
        assert await checks._answer(model, run, b"Bearer k", body) == b"{}"  # type: ignore[arg-type]
        assert gc.isenabled()
    assert seen == [("BatchCheckRequest", False), ("CheckRequest", True)]

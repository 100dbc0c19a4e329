"""Concurrent requests of one process share a round trip: the ones made in one turn of the
event loop go together, and the ones that arrive while that is in flight go together in the
next.

Under load one call serves many requests; a lone request waits for nothing but the end of the
loop's turn. The call goes out from a task of its own, started when the first request of a turn
comes, so it runs after everything already scheduled in that turn: the checks that one socket
read, or one coalesced index read, woke all ask before it leaves, instead of the first going
alone and the rest in a second round trip. Used for the index reads of checks
(:class:`checks.CoalescedReads`) and the API's ledger writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalesced(Generic[Item, Result]):
    """Calls ``run(items)`` (one result per item, in order) for the items of many callers."""

    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        abandoned: Callable[[], BaseException] = asyncio.CancelledError,
    ) -> None:
        """``abandoned``: what a queued caller gets when the drainer is cancelled (shutdown)."""
        self.run = run
        self.abandoned = abandoned
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._busy:
            self._busy = True
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                waiting, self._waiting = self._waiting, []
                await self._serve(waiting)
        finally:
            self._busy, self._drainer = False, None
            for _, future in [*waiting, *self._waiting]:
                if not future.done():  # cancelled mid-way (shutdown): nobody waits forever
                    future.set_exception(self.abandoned())
            self._waiting = []

    async def _serve(self, waiting: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self.run([item for item, _ in waiting])
        except Exception as exc:
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(waiting, results, strict=True):
            if not future.done():  # its request may have been cancelled meanwhile
                future.set_result(result)

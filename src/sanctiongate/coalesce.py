"""Concurrent requests of one process share a round trip: the first goes at once, the ones
that arrive while it is in flight go together in the next.

Under load one call serves many requests; a lone request waits for nothing. Used for the
index reads of checks (:class:`checks.CoalescedReads`) and the API's ledger writes.
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
        if not self._busy:
            self._busy = True
            try:
                [result] = await self.run([item])
                return result
            finally:
                self._busy = False
                if self._waiting:
                    self._busy = True
                    self._drainer = asyncio.create_task(self._drain())
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
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

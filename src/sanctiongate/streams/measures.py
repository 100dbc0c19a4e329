"""The measure agent: ``sanction.measures`` (compacted) → the catalogue in Redis, at run time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import ConsumerRecord

from .ingest import GenerationWatch
from .rebuild import apply_measure_records
from .runtime import Runtime


class MeasureIngest:
    def __init__(self, runtime: Runtime, watch: GenerationWatch) -> None:
        self.runtime = runtime
        self.watch = watch

    async def handle(self, records: Sequence[ConsumerRecord]) -> None:
        gen = await self.watch.current()
        rejected = await apply_measure_records(self.runtime.index, gen, records)
        letters = [await self.runtime.dead_letter(record, bad.error) for record, bad in rejected]
        if letters:
            await asyncio.gather(*letters)

"""cProfile of the ingest hot path outside the worker: decode + ``apply_changes``.

Feeds N realistic list changes (bench/common.py) in batches of 2000 through the same decode the
worker uses (``decode_change``) and ``SanctionIndex.apply_changes`` against the bench Redis, into
a fresh index prefix, then prints µs per change and the top functions. Needs the bench Redis up
(``bench/stream.py --keep-stack`` or ``deploy/stack.sh start``).

    .venv/bin/python bench/profile_apply.py --changes 20000 [--no-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

import orjson
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REDIS_PORT, list_upsert, measured

from sanctiongate.heap import tune_collector
from sanctiongate.index.layout import Layout
from sanctiongate.index.store import SanctionIndex, new_generation
from sanctiongate.streams.rebuild import decode_change


async def run(changes: int, batch: int, profile: bool, worker_gc: bool) -> None:
    if worker_gc:
        tune_collector()  # as the worker does once it has started
    raws = [
        orjson.dumps(list_upsert(n, with_person=n % 3 == 0, prefix="p")) for n in range(changes)
    ]
    redis = Redis.from_url(f"redis://127.0.0.1:{REDIS_PORT}/0")
    prefix = f"sgp{uuid.uuid4().hex[:8]}"
    index = SanctionIndex(redis, Layout(prefix=prefix))
    gen = new_generation()
    with measured(profile) as run_time:
        for start in range(0, changes, batch):
            decoded = [decode_change(r) for r in raws[start : start + batch]]
            await index.apply_changes(gen, decoded)
    cpu, wall = run_time.cpu, run_time.wall
    print(
        f"{changes} changes: {cpu / changes * 1e6:.0f} µs CPU, {wall / changes * 1e6:.0f} µs wall"
        f" per change ({changes / wall:,.0f}/s)"
    )
    async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
        await redis.unlink(key)
    await redis.aclose()
    run_time.print_profile(rows=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--default-gc", action="store_true", help="not the worker's GC settings")
    args = parser.parse_args()
    asyncio.run(run(args.changes, args.batch, not args.no_profile, not args.default_gc))


if __name__ == "__main__":
    main()

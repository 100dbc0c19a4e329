"""The check core alone: decode approval events, Checker.decide_many.

    bench/profile_check.py load 100000     # listings into a fresh index (prefix sgcheck)
    bench/profile_check.py run 20000 [cumulative] [--profile]

Against the bench Redis (SANCTIONGATE_BENCH_REDIS_PORT; no Kafka, no worker). Prints client
CPU µs per event, the decision mix and a digest of every decision (the same digest before and
after a change means the same answers); ``--profile`` adds a cProfile sorted by tottime (or
the key given). The code under test is whatever ``sanctiongate`` PYTHONPATH finds first.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from common import REDIS_PORT, list_upsert, measured, submitted_event
from redis.asyncio import Redis

from sanctiongate.checks import Checker, IdentifierNotListed
from sanctiongate.domain.models import ApprovalEvent, ListChange
from sanctiongate.index import Layout, SanctionIndex
from sanctiongate.index.store import new_generation
from sanctiongate.settings import Settings
from sanctiongate.streams.deadletter import decode
from sanctiongate.streams.rebuild import load_default_measures

URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
PREFIX = "sgcheck"
BATCH = 500
NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def load(count: int) -> None:
    redis = Redis.from_url(URL)
    index = SanctionIndex(redis, Layout(prefix=PREFIX))
    gen = new_generation()
    await index.mark_rebuilding(gen)
    await index.put_measures(gen, load_default_measures(Settings()))
    for start in range(0, count, 2000):
        chunk = [
            ListChange.model_validate(list_upsert(n, with_person=n % 3 == 0))
            for n in range(start, min(count, start + 2000))
        ]
        await index.apply_changes(gen, chunk)
    await index.switch_generation(gen, {})
    await index.note_newest(datetime.now(UTC))
    await redis.aclose()


def events(count: int, pool: int) -> list[bytes]:
    out = []
    for i in range(count):
        listed = i % 5 == 0
        subject_n = (i * 7919) % pool if listed else i
        out.append(orjson.dumps(submitted_event(i, f"r{i}", subject_n, listed)))
    return out


async def run(count: int, profile: bool) -> None:
    raws = events(count, 100_000)
    redis = Redis.from_url(URL)
    checker = Checker(SanctionIndex(redis, Layout(prefix=PREFIX)))
    digest = hashlib.sha256()
    mix: dict[str, int] = {}
    # warm-up batch (connection, scripts, catalogue), not timed; its events are not reused
    warm = events(BATCH, 100_000)
    warm = [w.replace(b'"request_id":"r', b'"request_id":"w') for w in warm]
    await one_batch(checker, warm, hashlib.sha256(), {})
    with measured(profile) as run_time:
        for start in range(0, count, BATCH):
            await one_batch(checker, raws[start : start + BATCH], digest, mix)
    cpu, wall = run_time.cpu, run_time.wall
    print(
        f"events {count}: cpu {cpu:.2f}s wall {wall:.2f}s -> {cpu / count * 1e6:.0f} µs CPU/event,"
        f" {count / cpu:.0f} events per CPU-s; mix {sorted(mix.items())};"
        f" digest {digest.hexdigest()[:16]}"
    )
    key = sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("-") else "tottime"
    run_time.print_profile(key)
    await redis.aclose()


async def one_batch(checker: Checker, raws: list[bytes], digest: Any, mix: dict[str, int]) -> None:
    evs = [decode(r, ApprovalEvent, "approval_event/v1") for r in raws]
    for d in await checker.decide_many(evs, NOW):
        assert not isinstance(d, IdentifierNotListed), d.field
        mix[d.decision] = mix.get(d.decision, 0) + 1
        digest.update(d.model_dump_json(exclude={"as_of"}).encode())


if __name__ == "__main__":
    if sys.argv[1] == "load":
        asyncio.run(load(int(sys.argv[2])))
    else:
        asyncio.run(run(int(sys.argv[2]), "--profile" in sys.argv))

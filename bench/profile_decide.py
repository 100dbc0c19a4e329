"""The approval agent alone: ``ApprovalComparison.handle`` on batches of ``submitted`` events.

    bench/profile_check.py load 100000     # listings into a fresh index (prefix sgcheck), once
    bench/profile_decide.py 40000 [--profile [sort key]]

Everything the worker does per batch of events except fetching it from Kafka: decode, decide,
the ledger, the decisions and audit records published (to topics of this run on the bench
Kafka, each batch awaited until the broker has it) and the metrics. Records are handed over in
batches of 2,000 (the worker's batch size), with the worker's collector settings. Prints
client CPU µs per event (``time.process_time``: this process only, not Redis or Kafka);
``--profile`` adds a cProfile sorted by tottime (or the key given). On a shared machine this
moves far less than the worker's figures: compare it before and after a change of the agent.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import ConsumerRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import KAFKA_PORT, REDIS_PORT, measured, submitted_event
from profile_check import PREFIX

from sanctiongate.heap import tune_collector
from sanctiongate.index.ledger import Ledger
from sanctiongate.settings import Settings
from sanctiongate.streams.approvals import ApprovalComparison
from sanctiongate.streams.runtime import Runtime
from sanctiongate.topics import ensure_topics

BATCH = 2000
LISTED = 5  # one event in LISTED names a listed organisation, as in bench/stream.py


def settings_of_run(ns: str) -> Settings:
    return Settings(
        _env_file=None,
        kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}",
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        index_prefix=PREFIX,
        topic_decisions=f"d{ns}.decisions",
        topic_audit=f"d{ns}.audit",
        topic_rejected=f"d{ns}.rejected",
        topic_alerts=f"d{ns}.alerts",
    )


def records(topic: str, ns: str, count: int, pool: int) -> list[ConsumerRecord]:
    now = int(time.time() * 1000)
    out = []
    for i in range(count):
        request_id = f"{ns}-{i}"
        subject_n = (i * 7919) % pool if i % LISTED == 0 else i
        value = orjson.dumps(submitted_event(i, request_id, subject_n, i % LISTED == 0))
        out.append(
            ConsumerRecord(
                topic, i % 4, i, now, 0, request_id.encode(), value, None, 0, len(value), ()
            )
        )
    return out


async def run(count: int, profile: bool) -> None:
    ns = uuid.uuid4().hex[:8]
    settings = settings_of_run(ns)
    await ensure_topics(settings)
    runtime = Runtime.create(settings)
    await runtime.start()
    ledger = Ledger(
        runtime.redis,
        runtime.index.layout,
        lookback_seconds=settings.lookback_days * 86400,
        feedback_sla_seconds=settings.feedback_sla_seconds,
        decision_ttl_seconds=3600,
    )
    agent = ApprovalComparison(runtime, ledger)
    await agent.handle(records(settings.topic_approvals, f"w{ns}", BATCH, 100_000))  # warm-up
    batches = records(settings.topic_approvals, ns, count, 100_000)
    tune_collector()
    with measured(profile) as run_time:
        for start in range(0, count, BATCH):
            await agent.handle(batches[start : start + BATCH])
    cpu, wall = run_time.cpu, run_time.wall
    print(
        f"events {count}: cpu {cpu:.2f}s wall {wall:.2f}s -> {cpu / count * 1e6:.1f} µs CPU/event,"
        f" {count / cpu:.0f} events per CPU-s"
    )
    args = [a for a in sys.argv[2:] if not a.startswith("-")]
    run_time.print_profile(args[0] if args else "tottime")
    await runtime.stop()


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]), "--profile" in sys.argv))

"""Streaming benchmark of sanctiongate (issue 3, item 9): prints figures, not a test.

    .venv/bin/python bench/stream.py          # full: 200k changes, 100k approvals, 1M entries
    .venv/bin/python bench/stream.py --quick  # a smaller run, a few minutes

It starts its own Kafka + Redis (deploy/stack.sh on the bench ports, run dir .run/bench) or
reuses them, runs ``sanctiongate worker`` as a subprocess on topics and an index prefix unique to
this run, and measures, in this order:

1. ingest: N list changes pre-produced, then the worker started; changes/s from its first
   applied change to the last (its /metrics), beside raw aiokafka ``getmany`` of the same topic;
2. propagation: single changes at a modest rate, each polled through ``Checker.lookup`` (the
   read path of every check) until visible; p50/p99 from just before the send;
3. decisions: M ``submitted`` approval events pre-produced, the worker restarted; decisions/s
   counted by the decisions topic's end offsets, then every decision read back and verified;
4. memory: E entries applied straight into a fresh index generation
   (``SanctionIndex.apply_changes``); Redis ``used_memory`` after − before, per entry.

Output: a table, then one JSON line. README.md beside this file explains every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Namespace,
    Worker,
    list_upsert,
    load,
    metric_sum,
    start_stack,
    stop_stack,
    submitted_event,
    uscc,
)

from sanctiongate.checks import Checker
from sanctiongate.domain.models import ListChange, StoredEntry, Subject
from sanctiongate.index import Layout, SanctionIndex
from sanctiongate.index.store import encode_record, new_generation
from sanctiongate.settings import Settings
from sanctiongate.streams.rebuild import Rebuilder
from sanctiongate.topics import ensure_topics

GOALS = {
    "ingest_changes_per_s": 20_000,
    "propagation_p50_ms": 20,
    "propagation_p99_ms": 100,
    "decisions_per_s": 10_000,
    "memory_bytes_per_entry": 150,
}
PERSON_SHARE = 3  # one entry in PERSON_SHARE names a legal representative (a related person)
LISTED_SHARE = 5  # one approval in LISTED_SHARE concerns a listed subject


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load()}] {message}", file=sys.stderr, flush=True)


# --- Kafka helpers ---------------------------------------------------------------------------


async def produce(settings: Settings, topic: str, messages: Iterable[tuple[str, dict]]) -> int:
    """Send keyed JSON messages as fast as the producer batches them; wait until all stored."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    sent = 0
    try:
        pending: list[asyncio.Future] = []
        for key, value in messages:
            pending.append(await producer.send(topic, key=key.encode(), value=orjson.dumps(value)))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def end_offsets(consumer: AIOKafkaConsumer, topic: str) -> int:
    partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    ends = await consumer.end_offsets(tps)
    return sum(ends.values())


async def offsets_reader(settings: Settings, *topics: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    for _ in range(50):  # metadata for fresh topics may take a moment
        if all(consumer.partitions_for_topic(t) for t in topics):
            break
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    return consumer


async def raw_consume(settings: Settings, topic: str, expected: int) -> float:
    """aiokafka alone (same fetch settings as the worker's consumer): records/s, no processing."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=settings.ingest_batch_size,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < expected:
            batches = await consumer.getmany(
                timeout_ms=settings.ingest_batch_timeout_ms,
                max_records=settings.ingest_batch_size,
            )
            seen += sum(len(b) for b in batches.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def read_all(settings: Settings, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        deadline = time.monotonic() + 300
        while len(values) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            values.extend(r.value for b in batches.values() for r in b)
        return values
    finally:
        await consumer.stop()


# --- 1. ingest -------------------------------------------------------------------------------


def rounded(value: float, digits: int | None = None) -> float | None:
    """None for a rate the polls could not resolve (all done by the first poll: use more)."""
    return None if math.isnan(value) else round(value, digits)


def changes(count: int, start: int = 0) -> Iterable[tuple[str, dict]]:
    for n in range(start, start + count):
        message = list_upsert(n, with_person=n % PERSON_SHARE == 0)
        yield message["entry_id"], message


async def wait_metric(
    worker: Worker, target: float, name: str, timeout: float, **labels: str
) -> tuple[float, float, float, float]:
    """Poll the worker's /metrics until ``name`` reaches target.

    Returns (time of the first poll that saw progress, the value then, time it reached target,
    worker CPU seconds spent in between).
    """
    first_at: float | None = None
    first_value = 0.0
    first_cpu = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
        try:
            value = metric_sum(await asyncio.to_thread(worker.metrics), name, **labels)
        except OSError:
            value = 0.0
        now = time.perf_counter()
        if value > 0 and first_at is None:
            first_at, first_value, first_cpu = now, value, worker.cpu_seconds()
        if value >= target:
            assert first_at is not None
            return first_at, first_value, now, worker.cpu_seconds() - first_cpu
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{name} did not reach {target} in {timeout}s:\n{worker.log_tail()}")


async def bench_ingest(space: Namespace, settings: Settings, count: int) -> tuple[Worker, dict]:
    log(f"ingest: producing {count} list changes")
    started = time.perf_counter()
    await produce(settings, settings.topic_list_changes, changes(count))
    produce_s = time.perf_counter() - started
    log(f"ingest: produced in {produce_s:.1f}s; raw aiokafka baseline")
    raw_rate = await raw_consume(settings, settings.topic_list_changes, count)
    log(f"ingest: raw aiokafka {raw_rate:,.0f} records/s; starting the worker")
    load_before = load()
    launched = time.perf_counter()
    worker = Worker(space, "ingest")
    first_at, first_value, done_at, cpu = await wait_metric(
        worker,
        count,
        "sanctiongate_list_changes_total",
        timeout=max(300, count / 500),
        op="upsert",
        result="applied",
    )
    steady = (count - first_value) / (done_at - first_at) if done_at > first_at else float("nan")
    exposition = await asyncio.to_thread(worker.metrics)
    figures = {
        "changes": count,
        "produce_per_s": round(count / produce_s),
        "raw_aiokafka_per_s": round(raw_rate),
        "worker_changes_per_s": rounded(steady),
        "worker_changes_per_s_with_startup": round(count / (done_at - launched)),
        "worker_changes_per_cpu_s": round((count - first_value) / cpu) if cpu else None,
        "ratio_to_raw": rounded(steady / raw_rate, 3),
        "stale": int(metric_sum(exposition, "sanctiongate_list_changes_total", result="stale")),
        "rejected": int(
            metric_sum(exposition, "sanctiongate_list_changes_total", result="rejected")
        ),
        "load": load_before,
    }
    log(f"ingest: {figures}")
    return worker, figures


# --- 2. propagation --------------------------------------------------------------------------


def histogram(exposition: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram, by upper bound."""
    buckets: dict[float, float] = {}
    for line in exposition.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rpartition(" ")[2])
    return buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding quantile q of the observations between two scrapes."""
    counts = {b: after[b] - before.get(b, 0.0) for b in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    for bound, count in counts.items():
        if total and count >= q * total:
            return bound
    return float("nan")


async def bench_propagation(
    settings: Settings, worker: Worker, first: int, samples: int, rate: float
) -> dict:
    """One new listing every 1/rate s; a poller looks all pending ones up in one pipeline.

    The poller shares the machine with the worker, so it polls every 2 ms rather than spin; the
    worker's own histogram (produce time → applied) is reported beside, as a cross-check.
    """
    name = "sanctiongate_change_propagation_seconds"
    before = histogram(await asyncio.to_thread(worker.metrics), name)
    redis = Redis.from_url(settings.redis_url)
    checker = Checker(SanctionIndex(redis, Layout(prefix=settings.index_prefix)))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=0)
    await producer.start()
    pending: dict[str, tuple[Subject, float]] = {}
    latencies: list[float] = []
    sending_done = asyncio.Event()

    async def poll() -> None:
        while not (sending_done.is_set() and not pending):
            if not pending:
                await asyncio.sleep(0.0005)
                continue
            waiting = list(pending.items())
            _, found = await checker.lookup([subject for _, (subject, _) in waiting])
            now = time.perf_counter()
            for (entry_id, (_, sent_at)), entries in zip(waiting, found, strict=True):
                if any(e.entry_id == entry_id for e in entries):
                    latencies.append(now - sent_at)
                    del pending[entry_id]
            await asyncio.sleep(0.002)

    load_before = load()
    poller = asyncio.create_task(poll())
    try:
        await checker.lookup([Subject(kind="legal_person", name="预热", uscc=uscc(first))])
        start = time.perf_counter()
        for i in range(samples):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            n = first + i
            message = list_upsert(n, with_person=False, prefix="p")
            subject = Subject(**message["entry"]["subject"])
            pending[message["entry_id"]] = (subject, time.perf_counter())
            await producer.send(
                settings.topic_list_changes,
                key=message["entry_id"].encode(),
                value=orjson.dumps(message),
            )
        sending_done.set()
        await asyncio.wait_for(poller, timeout=60)
    finally:
        poller.cancel()
        await producer.stop()
        await redis.aclose()
    ms = sorted(x * 1000 for x in latencies)
    after = histogram(await asyncio.to_thread(worker.metrics), name)
    figures = {
        "samples": len(ms),
        "rate_per_s": rate,
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.90 * (len(ms) - 1))], 1),
        "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
        "worker_histogram_p50_le_ms": bucket_quantile(before, after, 0.5) * 1000,
        "worker_histogram_p99_le_ms": bucket_quantile(before, after, 0.99) * 1000,
        "load": load_before,
    }
    log(f"propagation: {figures}")
    return figures


# --- 3. decisions ----------------------------------------------------------------------------


def approvals(count: int, listed_pool: int) -> Iterable[tuple[str, dict]]:
    for i in range(count):
        listed = i % LISTED_SHARE == 0
        subject_n = (i * 7919) % listed_pool if listed else i
        request_id = f"r{i}"
        yield request_id, submitted_event(i, request_id, subject_n, listed)


async def bench_decisions(
    space: Namespace, settings: Settings, count: int, listed_pool: int
) -> tuple[Worker, dict]:
    log(f"decisions: producing {count} submitted approval events (worker stopped)")
    started = time.perf_counter()
    await produce(settings, settings.topic_approvals, approvals(count, listed_pool))
    produce_s = time.perf_counter() - started
    reader = await offsets_reader(settings, settings.topic_decisions, settings.topic_rejected)
    try:
        before = await end_offsets(reader, settings.topic_decisions)
        log(f"decisions: produced in {produce_s:.1f}s; starting the worker")
        load_before = load()
        launched = time.perf_counter()
        worker = Worker(space, "decisions")
        first_at: float | None = None
        first_value = 0
        first_cpu = 0.0
        deadline = time.monotonic() + max(300, count / 300)
        while True:
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"decisions not all published:\n{worker.log_tail()}")
            published = await end_offsets(reader, settings.topic_decisions) - before
            now = time.perf_counter()
            if published > 0 and first_at is None:
                first_at, first_value, first_cpu = now, published, worker.cpu_seconds()
            if published >= count:
                break
            await asyncio.sleep(0.1)
        assert first_at is not None
        cpu = worker.cpu_seconds() - first_cpu
        rejected = await end_offsets(reader, settings.topic_rejected)
    finally:
        await reader.stop()
    steady = (count - first_value) / (now - first_at) if now > first_at else float("nan")
    log("decisions: reading every decision back")
    values = await read_all(settings, settings.topic_decisions, before + count)
    decisions = [orjson.loads(v) for v in values]
    outcome = Counter(d["decision"] for d in decisions)
    # Every decision leaves one audit record (audit/v1, channel "stream") saying the same.
    log("decisions: reading every audit record back")
    audits = [orjson.loads(v) for v in await read_all(settings, settings.topic_audit, count)]
    said = {d["request_id"]: d["decision"] for d in decisions}
    audited = Counter(a["request_id"] for a in audits if a.get("channel") == "stream")
    listed = sum(1 for i in range(count) if i % LISTED_SHARE == 0)
    figures = {
        "events": count,
        "produce_per_s": round(count / produce_s),
        "decisions_per_s": rounded(steady),
        "decisions_per_s_with_startup": round(count / (now - launched)),
        "worker_decisions_per_cpu_s": round((count - first_value) / cpu) if cpu else None,
        "distinct_requests": len({d["request_id"] for d in decisions}),
        "audit_records": len(audits),
        "audited_once_each": set(audited) == set(said) and set(audited.values()) == {1},
        "audit_agrees": all(said.get(a["request_id"]) == a["decision"] for a in audits),
        "outcomes": dict(outcome),
        "listed_requests": listed,
        "rejected": rejected,
        "load": load_before,
    }
    log(f"decisions: {figures}")
    return worker, figures


# --- 4. memory -------------------------------------------------------------------------------


# The memory phase writes into a database of its own: Redis grows a database's key table in
# powers of two, so in the database the other phases filled (an idempotency key per decision, a
# ledger key per approved subject, ...) its 16,000 bucket keys could tip a doubling of a table of
# 100,000s and add ~1 B an entry that is not the index's (149.7 vs 150.7 B in two runs).
MEMORY_DB = 1


async def bench_memory(settings: Settings, entries: int) -> dict:
    redis = Redis.from_url(settings.redis_url, db=MEMORY_DB)
    layout = Layout(prefix=f"{settings.index_prefix}m")
    index = SanctionIndex(redis, layout)
    gen = new_generation()
    try:
        before = (await redis.info("memory"))["used_memory"]
        log(f"memory: applying {entries} entries straight into a fresh generation")
        started = time.perf_counter()
        batch: list[ListChange] = []
        record_bytes = 0
        for n in range(entries):
            change = ListChange.model_validate(list_upsert(n, with_person=n % PERSON_SHARE == 0))
            batch.append(change)
            if len(batch) == 2000 or n == entries - 1:
                result = await index.apply_changes(gen, batch)
                if len(result.applied) != len(batch):
                    raise RuntimeError("memory: not every entry was applied")
                record_bytes += sum(len(encode_record(a.after)) for a in result.applied)
                batch = []
            if n and n % 200_000 == 0:
                log(f"memory: {n} applied")
        apply_s = time.perf_counter() - started
        after = (await redis.info("memory"))["used_memory"]
        by_kind = await _memory_by_key_kind(redis, layout, gen)
        config = await redis.config_get("hash-max-listpack-*")
        sample = [list_upsert(n, with_person=n % PERSON_SHARE == 0) for n in range(0, entries, 997)]
        figures = {
            "entries": entries,
            "bytes_per_entry": round((after - before) / entries, 1),
            "used_memory_delta_mb": round((after - before) / 2**20, 1),
            "record_bytes_per_entry": round(record_bytes / entries, 1),
            "zlib_record_bytes_per_entry": round(_zlib_size(sample), 1),
            "by_key_kind_bytes_per_entry": {k: round(v / entries, 1) for k, v in by_kind.items()},
            "hash_listpack_config": {k: int(v) for k, v in config.items()},
            "apply_entries_per_s": round(entries / apply_s),
            "load": load(),
        }
        log(f"memory: {figures}")
        return figures
    finally:
        await index.drop_generation(gen)
        await redis.aclose()


async def _memory_by_key_kind(redis: Redis, layout: Layout, gen: str) -> dict[str, int]:
    """MEMORY USAGE summed per key suffix (e records, i/n refs, c counters, …)."""
    totals: Counter[str] = Counter()
    keys = [k async for k in redis.scan_iter(match=layout.generation_pattern(gen), count=2000)]
    for start in range(0, len(keys), 1000):
        pipe = redis.pipeline(transaction=False)
        chunk = keys[start : start + 1000]
        for key in chunk:
            pipe.memory_usage(key, samples=0)
            pipe.object("encoding", key)
        replies = await pipe.execute()
        for key, used, encoding in zip(chunk, replies[::2], replies[1::2], strict=True):
            kind = key.decode().rsplit(":", 1)[-1]
            enc = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
            totals[f"{kind}({enc})"] += used or 0
    return dict(totals)


def _zlib_size(messages: Sequence[dict]) -> float:
    """Mean size of a record compressed one by one (what per-record compression would give)."""
    sizes = []
    for message in messages:
        change = ListChange.model_validate(message)
        record = encode_record(StoredEntry.from_change(change, None))
        sizes.append(len(zlib.compress(record, 9)))
    return sum(sizes) / len(sizes)


# --- the run ---------------------------------------------------------------------------------


def _figure(value: float | None) -> str:
    """A rate, or why there is none (too few events to see the worker's steady state)."""
    return "n/a (too few to measure)" if value is None else f"{value:,}"


def table(results: dict) -> str:
    rows: list[tuple[str, str, str, str]] = []
    ing = results.get("ingest")
    if ing:
        rows += [
            (
                "ingest, worker (steady)",
                f"{ing['worker_changes_per_s']:,} changes/s",
                "≥ 20,000",
                ing["load"],
            ),
            (
                "ingest, worker incl. start-up",
                f"{ing['worker_changes_per_s_with_startup']:,}/s",
                "",
                "",
            ),
            ("  per worker CPU-second", f"{ing['worker_changes_per_cpu_s']:,}", "", ""),
            ("raw aiokafka getmany", f"{ing['raw_aiokafka_per_s']:,} records/s", "", ""),
            ("worker / raw", f"{ing['ratio_to_raw']:.2f}", "", ""),
        ]
    prop = results.get("propagation")
    if prop:
        rows += [
            ("change → visible p50", f"{prop['p50_ms']} ms", "≤ 20 ms", prop["load"]),
            ("change → visible p99", f"{prop['p99_ms']} ms", "≤ 100 ms", ""),
            (
                "  worker histogram p50/p99 ≤",
                f"{prop['worker_histogram_p50_le_ms']:g}/{prop['worker_histogram_p99_le_ms']:g} ms",
                "",
                "",
            ),
        ]
    dec = results.get("decisions")
    if dec:
        rows += [
            (
                "decisions, worker (steady)",
                f"{_figure(dec['decisions_per_s'])} decisions/s",
                "≥ 10,000",
                dec["load"],
            ),
            ("  per worker CPU-second", _figure(dec["worker_decisions_per_cpu_s"]), "", ""),
            ("decisions incl. start-up", f"{dec['decisions_per_s_with_startup']:,}/s", "", ""),
        ]
    mem = results.get("memory")
    if mem:
        rows += [
            (
                f"Redis per active entry ({mem['entries']:,})",
                f"{mem['bytes_per_entry']} B",
                "≤ 150 B",
                mem["load"],
            ),
            ("stored record per entry", f"{mem['record_bytes_per_entry']} B", "", ""),
        ]
    widths = [
        max(len(r[i]) for r in [("figure", "value", "goal", "load 1/5/15"), *rows])
        for i in range(4)
    ]
    lines = []
    for row in [("figure", "value", "goal", "load 1/5/15"), *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict:
    space = Namespace()
    settings = space.settings()
    results: dict = {"ns": space.ns, "cpus": os.cpu_count(), "load_at_start": load()}
    await ensure_topics(settings)
    # An empty, ready index generation (what a first worker's rebuild would make), so the worker
    # ingests the pre-produced changes through its live path rather than a rebuild replay.
    redis = Redis.from_url(settings.redis_url)
    await Rebuilder(
        settings, SanctionIndex(redis, Layout(prefix=settings.index_prefix)), "bench"
    ).rebuild("benchmark start")
    await redis.aclose()
    try:
        if not args.skip_stream:
            worker, results["ingest"] = await bench_ingest(space, settings, args.changes)
            if args.samples:  # --samples 0: no propagation phase
                results["propagation"] = await bench_propagation(
                    settings, worker, args.changes, args.samples, args.rate
                )
            worker.stop()
            if args.approvals:  # --approvals 0: ingest and memory only
                worker, results["decisions"] = await bench_decisions(
                    space, settings, args.approvals, args.changes
                )
                worker.stop()
        if args.entries:
            results["memory"] = await bench_memory(settings, args.entries)
    finally:
        Worker.stop_all()
        if not args.keep_data:
            await forget(space, settings)
    results["load_at_end"] = load()
    return results


async def forget(space: Namespace, settings: Settings) -> None:
    """Drop the run's index keys and topics: a kept stack (``--keep-stack``) otherwise grows by
    a few hundred MB of Redis and Kafka a run, and the next run measures beside them."""
    for db in (None, MEMORY_DB):  # the run's database, then the memory phase's
        redis = Redis.from_url(settings.redis_url, **({} if db is None else {"db": db}))
        try:
            pattern = f"{settings.index_prefix}*"
            async for keys in _batched(redis.scan_iter(match=pattern, count=5000)):
                await redis.unlink(*keys)
        finally:
            await redis.aclose()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if space.ns in t]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()


async def _batched(keys: AsyncIterator[bytes], size: int = 5000) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # Defaults are None so --quick fills only what was not given (--quick --entries 0 skips
    # the memory phase).
    parser.add_argument("--changes", type=int, help="list changes to ingest (200,000)")
    parser.add_argument("--approvals", type=int, help="approval events (100,000)")
    parser.add_argument("--entries", type=int, help="entries for memory (1,000,000)")
    parser.add_argument("--samples", type=int, help="propagation samples (1000; 0 skips it)")
    parser.add_argument("--rate", type=float, default=200, help="propagation changes/s")
    parser.add_argument("--quick", action="store_true", help="20k / 10k / 100k / 200 samples")
    parser.add_argument("--skip-stream", action="store_true", help="only the memory figure")
    parser.add_argument("--keep-stack", action="store_true", help="leave Kafka + Redis running")
    parser.add_argument(
        "--keep-data", action="store_true", help="leave the run's index keys and topics"
    )
    args = parser.parse_args()
    # aiokafka logs its retries while fresh topics get their leaders: noise for this report.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    sizes = (20_000, 10_000, 100_000, 200) if args.quick else (200_000, 100_000, 1_000_000, 1000)
    for name, size in zip(("changes", "approvals", "entries", "samples"), sizes, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, size)
    started_stack = start_stack()
    try:
        results = asyncio.run(run(args))
    finally:
        if started_stack and not args.keep_stack:
            stop_stack()
    print(table(results))
    print(orjson.dumps(results).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

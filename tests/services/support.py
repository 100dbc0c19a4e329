"""Helpers shared by the lifecycle, dead-letter, fault and scale-out tests.

They read the index the way an operator would check it: every record of the serving
generation, straight from Redis, compared with what a replay of the topic builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from sanctiongate.domain.models import ListChange, StoredEntry
from sanctiongate.index import Layout, SanctionIndex
from sanctiongate.index.layout import ref_field, unpack_refs
from sanctiongate.index.store import decode_record
from sanctiongate.streams.rebuild import Rebuilder
from tests.conftest import Process, eventually, free_port
from tests.ids import id_number, uscc

from .conftest import Stack, list_change, send


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sanctiongate.cli", *args]


def start_worker(stack: Stack) -> tuple[Process, str]:
    """One more worker of the stack (same group, topics and prefix), on its own web port."""
    port = free_port()
    env = {**stack.env, "SANCTIONGATE_WORKER_WEB_PORT": str(port)}
    worker = Process(f"worker-{stack.ns}", ["worker"], env)
    stack.workers.append(worker)
    return worker, f"http://127.0.0.1:{port}"


_births = itertools.count(random.Random().randrange(20_000))


def fresh_id_number() -> str:
    """A valid resident ID number not drawn before in this run (ids.id_number() has 1,000)."""
    birth = date(1950, 1, 1) + timedelta(days=next(_births) % 20_000)
    return id_number(region="110105", birth=birth.strftime("%Y%m%d"))


def correction_history(rng: random.Random, entries: int) -> list[ListChange]:
    """Up to four versions per entry: listings, corrections (new names, people, a future
    start, a code given or taken away), and removes; every entry shares a name or a person
    with others."""
    people = [id_number(birth=f"1980{month:02d}01") for month in range(1, 5)]
    later = (datetime.now(UTC) + timedelta(days=5)).date().isoformat()
    changes = []
    for i in range(entries):
        code = uscc()
        for version in range(1, rng.randint(2, 5)):
            if version == 3 and i % 3 == 0:
                message = list_change(f"path-{i}", version, op="remove", reason="repaired")
            else:
                message = list_change(
                    f"path-{i}",
                    version,
                    # every fifth listing's subject has no code in some versions, and every
                    # third person none in others: their names go under kind m as well
                    subject=org(
                        None if i % 5 == 0 and version % 2 == 0 else code,
                        f"路径公司{(i + version) % 7}",
                    ),
                    related_persons=[
                        {
                            "role": "legal_representative",
                            "name": f"代表{version % 2}",
                            "id_number": None
                            if i % 3 == 1 and version > 2
                            else people[(i + version) % 4],
                        }
                    ]
                    if version % 2
                    else [],
                    effective_from=later if (i + version) % 4 == 0 else "2024-01-01",
                )
            changes.append(ListChange.model_validate(message))
    return changes


def org(code: str | None, name: str = "北京示例科技有限公司", **extra: object) -> dict:
    subject: dict = {"kind": "legal_person", "name": name, **extra}
    if code is not None:
        subject["uscc"] = code
    return subject


def person(id_number: str | None, name: str = "张示例", **extra: object) -> dict:
    subject: dict = {"kind": "natural_person", "name": name, **extra}
    if id_number is not None:
        subject["id_number"] = id_number
    return subject


async def decide(http: httpx.AsyncClient, category: str, *subjects: dict) -> dict:
    response = await http.post(
        "/v1/checks", json={"matter": {"category": category}, "subjects": list(subjects)}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def decisions(http: httpx.AsyncClient, category: str, subjects: list[dict]) -> list[str]:
    """One decision per subject, through the bulk comparison call."""
    response = await http.post(
        "/v1/checks/batch", json={"matter": {"category": category}, "subjects": subjects}
    )
    assert response.status_code == 200, response.text
    return [r["decision"] for r in response.json()["results"]]


async def send_many(producer: AIOKafkaProducer, topic: str, messages: Iterable[dict]) -> int:
    """Produce without waiting for each acknowledgement, then wait for all of them."""
    futures = []
    for message in messages:
        futures.append(
            await producer.send(
                topic, key=str(message["entry_id"]).encode(), value=orjson.dumps(message)
            )
        )
    await asyncio.gather(*futures)
    return len(futures)


@dataclass
class Poller:
    """Checks one listed subject again and again, remembering every answer."""

    http: httpx.AsyncClient
    subject: dict
    category: str = "bidding"
    answers: Counter = field(default_factory=Counter)
    last: str = ""
    _task: asyncio.Task | None = None

    async def _run(self) -> None:
        body = {"matter": {"category": self.category}, "subjects": [self.subject]}
        while True:
            try:
                response = await self.http.post("/v1/checks", json=body)
            except httpx.TransportError:
                self.answers["transport-error"] += 1
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 200:
                self.last = response.json()["decision"]
            else:
                self.last = f"{response.status_code}:{response.json()['error']['code']}"
            self.answers[self.last] += 1
            await asyncio.sleep(0.005)

    def __enter__(self) -> Poller:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def stop(self) -> Counter:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.answers


async def listed_subject(
    stack: Stack, producer: AIOKafkaProducer, http: httpx.AsyncClient, entry_id: str
) -> dict:
    subject = org(uscc(), f"受控公司{entry_id}")
    await send(
        producer, stack.settings.topic_list_changes, list_change(entry_id, 1, subject=subject)
    )

    async def blocked() -> bool:
        body = {"matter": {"category": "bidding"}, "subjects": [subject]}
        response = await http.post("/v1/checks", json=body)
        return response.status_code == 200 and response.json()["decision"] == "block"

    await eventually(blocked)
    return subject


# --- the index as stored ---------------------------------------------------------------------


def index_of(stack: Stack, redis: Redis, prefix: str | None = None) -> SanctionIndex:
    return SanctionIndex(redis, Layout(prefix=prefix or stack.settings.index_prefix))


@dataclass
class Snapshot:
    """Everything a generation holds that decides a check."""

    gen: str
    records: dict[str, StoredEntry]
    counts: dict[tuple[str, str], int]
    identifier_refs: dict[str, set[tuple[str, str]]]
    name_refs: dict[str, set[tuple[str, str]]]
    codeless_refs: dict[str, set[tuple[str, str]]]  # kind m: names of parties without a code
    measures: dict[str, dict]

    def summary(self) -> dict[str, tuple]:
        """entry_id → (version, removed, reason, entry) — what an exact index must agree on."""
        return {
            entry_id: (
                s.version,
                s.removed,
                s.reason,
                None if s.removed or s.entry is None else s.entry.model_dump(mode="json"),
            )
            for entry_id, s in self.records.items()
        }


async def _hashes(redis: Redis, pattern: str) -> dict[str, bytes]:
    keys = [key async for key in redis.scan_iter(match=pattern, count=5000)]
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    merged: dict[str, bytes] = {}
    for reply in await pipe.execute() if keys else []:
        merged.update((field.decode(), value) for field, value in reply.items())
    return merged


async def snapshot(index: SanctionIndex, gen: str | None = None) -> Snapshot:
    if gen is None:
        gen = (await index.serving_meta()).gen
    assert gen is not None
    prefix = index.layout.prefix
    records = {
        entry_id: stored
        for entry_id, raw in (await _hashes(index.redis, f"{prefix}:{{{gen}.*}}:e")).items()
        if (stored := decode_record(raw, entry_id)) is not None
    }
    ids = await _hashes(index.redis, f"{prefix}:{{{gen}.*}}:i")
    names = await _hashes(index.redis, f"{prefix}:{{{gen}.*}}:n")
    codeless = await _hashes(index.redis, f"{prefix}:{{{gen}.*}}:m")
    return Snapshot(
        gen=gen,
        records=records,
        counts=await index.counts(gen),
        identifier_refs={k: set(unpack_refs(v)) for k, v in ids.items()},
        name_refs={k: set(unpack_refs(v)) for k, v in names.items()},
        codeless_refs={k: set(unpack_refs(v)) for k, v in codeless.items()},
        measures={
            k.decode(): orjson.loads(v)
            for k, v in (await index.redis.hgetall(index.layout.measures(gen))).items()
        },
    )


def counts_from_records(records: dict[str, StoredEntry]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for stored in records.values():
        if stored.removed or stored.entry is None:
            continue
        key = (stored.entry.polarity, stored.entry.list_type)
        counts[key] = counts.get(key, 0) + 1
    return counts


def needed_refs(records: dict[str, StoredEntry]) -> tuple[set, set, set]:
    """(field, entry_id, role) of the identifier, name and code-less name refs that the
    records need (the field: layout.ref_field of the identifier or name)."""
    ids, names, codeless = set(), set(), set()
    for entry_id, stored in records.items():
        stored_ids, stored_names = stored.index_keys()
        ids |= {(ref_field(key), entry_id, role) for key, role in stored_ids}
        names |= {(ref_field(key), entry_id, role) for key, role in stored_names}
        codeless |= {(ref_field(k), entry_id, r) for k, r in stored.codeless_name_keys()}
    return ids, names, codeless


def flat(refs: dict[str, set[tuple[str, str]]]) -> set[tuple[str, str, str]]:
    return {(key, entry_id, role) for key, pairs in refs.items() for entry_id, role in pairs}


def assert_consistent(snap: Snapshot) -> None:
    """Counters agree with the records, and every record can be found under every key it has.

    Extra refs are allowed: a ref without a matching record is harmless (matching is re-checked
    against the record), a record without its ref would be a missed hit.
    """
    assert snap.counts == counts_from_records(snap.records)
    ids, names, codeless = needed_refs(snap.records)
    assert ids <= flat(snap.identifier_refs), sorted(ids - flat(snap.identifier_refs))[:5]
    assert names <= flat(snap.name_refs), sorted(names - flat(snap.name_refs))[:5]
    missing = codeless - flat(snap.codeless_refs)
    assert not missing, sorted(missing)[:5]


async def replay(stack: Stack, redis: Redis) -> Snapshot:
    """What a replay of the compacted topics builds, in a scratch prefix (then dropped)."""
    prefix = f"{stack.settings.index_prefix}-replay{time.monotonic_ns() % 10**6}"
    settings = stack.settings.model_copy(update={"index_prefix": prefix})
    scratch = index_of(stack, redis, prefix)
    gen = await Rebuilder(settings, scratch, "test-replay").rebuild("test: compare with replay")
    try:
        return await snapshot(scratch, gen)
    finally:
        await scratch.drop_generation(gen)
        await redis.delete(scratch.layout.meta)


async def assert_equals_replay(stack: Stack, redis: Redis) -> Snapshot:
    live = await snapshot(index_of(stack, redis))
    replayed = await replay(stack, redis)
    assert_consistent(live)
    assert_consistent(replayed)
    assert live.summary() == replayed.summary(), diff(live.summary(), replayed.summary())
    assert live.counts == replayed.counts
    assert live.measures == replayed.measures, diff(live.measures, replayed.measures)
    return live


def diff(a: dict, b: dict, limit: int = 5) -> str:
    keys = sorted(set(a) | set(b))
    lines = [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
    return f"{len(lines)} differ:\n" + "\n".join(lines[:limit])


# --- topics and metrics ----------------------------------------------------------------------


async def read_topic(
    stack: Stack,
    topic: str,
    until: Callable[[list[ConsumerRecord]], bool],
    timeout: float = 20.0,
) -> list[ConsumerRecord]:
    """Every record of a topic from the start, until ``until(records)`` holds."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            if until(records):
                return records
    finally:
        await consumer.stop()
    raise AssertionError(f"{topic}: condition not met in {timeout}s; {len(records)} records")


async def metric(url: str, name: str, **labels: str) -> float:
    """A sample's value from a Prometheus endpoint (0 when the series does not exist yet)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total

"""A whole sanctiongate (worker + API) per test module, isolated by its own topics and prefix."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from sanctiongate.index.ledger import Ledger
from sanctiongate.index.store import new_generation
from sanctiongate.keys import KeyStore
from sanctiongate.settings import Settings
from sanctiongate.streams.runtime import Runtime
from sanctiongate.topics import ensure_topics
from tests.conftest import RUN_DIR, Process, Services, free_port, wait_http


class Stack:
    def __init__(self, services: Services, **extra_env: str) -> None:
        ns = uuid.uuid4().hex[:8]
        self.ns = ns
        self.api_port = free_port()
        self.worker_port = free_port()
        self.keys_file = RUN_DIR / f"keys-{ns}.json"
        self.overrides = {
            "SANCTIONGATE_APP_ID": f"sg-test-{ns}",
            "SANCTIONGATE_INDEX_PREFIX": f"sg{ns}",
            "SANCTIONGATE_TOPIC_LIST_CHANGES": f"t{ns}.sanction.list.changes",
            "SANCTIONGATE_TOPIC_MEASURES": f"t{ns}.sanction.measures",
            "SANCTIONGATE_TOPIC_APPROVALS": f"t{ns}.approval.events",
            "SANCTIONGATE_TOPIC_DECISIONS": f"t{ns}.sanction.decisions",
            "SANCTIONGATE_TOPIC_FEEDBACK": f"t{ns}.sanction.feedback",
            "SANCTIONGATE_TOPIC_ALERTS": f"t{ns}.sanction.alerts",
            "SANCTIONGATE_TOPIC_REJECTED": f"t{ns}.sanction.rejected",
            "SANCTIONGATE_TOPIC_AUDIT": f"t{ns}.sanction.audit",
            "SANCTIONGATE_KEYS_FILE": str(self.keys_file),
            "SANCTIONGATE_API_PORT": str(self.api_port),
            "SANCTIONGATE_WORKER_WEB_PORT": str(self.worker_port),
            **extra_env,
        }
        self.env = services.env(**self.overrides)
        self.settings = Settings(
            _env_file=None,
            kafka_bootstrap=services.kafka,
            redis_url=services.redis_url,
            **{k.removeprefix("SANCTIONGATE_").lower(): v for k, v in self.overrides.items()},
        )
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.worker_url = f"http://127.0.0.1:{self.worker_port}"
        self.workers: list[Process] = []
        self.api: Process | None = None
        _, self.token = KeyStore(self.keys_file).create("test-department", ["*"], "tests")

    def start_worker(self, **extra: str) -> Process:
        env = {**self.env, **extra}
        if self.workers:  # each worker its own web port
            env["SANCTIONGATE_WORKER_WEB_PORT"] = str(free_port())
        worker = Process(f"worker-{self.ns}", ["worker"], env)
        self.workers.append(worker)
        return worker

    def start_api(self) -> Process:
        self.api = Process(f"api-{self.ns}", ["api"], self.env)
        wait_http(f"{self.api_url}/healthz", 60, proc=self.api)
        return self.api

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            proc.stop()


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """Extra SANCTIONGATE_* settings for a module's stack; override it in the module."""
    return {}


@pytest.fixture(scope="module")
def stack(services: Services, stack_env: dict[str, str]) -> Iterator[Stack]:
    import asyncio

    s = Stack(services, **stack_env)
    asyncio.run(ensure_topics(s.settings))
    worker = s.start_worker()
    s.start_api()
    try:
        wait_http(f"{s.api_url}/readyz", 90, proc=worker)
        yield s
    finally:
        s.stop()


@pytest_asyncio.fixture(scope="module")
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap, acks="all")
    await p.start()
    yield p
    await p.stop()


@pytest_asyncio.fixture(scope="module")
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url, headers=stack.headers(), timeout=10) as c:
        yield c


@pytest_asyncio.fixture(scope="module")
async def redis(stack: Stack) -> AsyncIterator[Redis]:
    r = Redis.from_url(stack.settings.redis_url)
    yield r
    await r.aclose()


def list_change(entry_id: str, version: int, op: str = "upsert", **entry: object) -> dict:
    message: dict = {
        "schema": "list_change/v1",
        "op": op,
        "entry_id": entry_id,
        "version": version,
        "event_time": datetime.now(UTC).isoformat(),
        "source": "court:test",
    }
    if op == "upsert":
        message["entry"] = {
            "list_type": "dishonest_judgment_debtor",
            "polarity": "black",
            "authority": "北京市朝阳区人民法院",
            "basis": "（2024）京0105执1234号",
            "effective_from": "2024-01-01",
            "effective_until": None,
            "disputed": False,
            "related_persons": [],
            **entry,
        }
    else:
        message["reason"] = entry.get("reason", "repaired")
    return message


async def send(
    producer: AIOKafkaProducer, topic: str, message: dict | bytes, key: str | None = None
) -> None:
    value = message if isinstance(message, bytes) else orjson.dumps(message)
    if key is None and isinstance(message, dict):
        key = str(message.get("entry_id") or message.get("measure_id") or message.get("request_id"))
    await producer.send_and_wait(topic, key=key.encode() if key else None, value=value)


__all__ = ["Stack", "json", "list_change", "os", "send"]


@pytest_asyncio.fixture
async def runtime(services: Services) -> AsyncIterator[Runtime]:
    """A worker's Runtime of the test's own (index prefix and alert, decision and dead-letter
    topics), started, serving an empty generation: for driving agents and timers in-process."""
    ns = uuid.uuid4().hex[:8]
    settings = Settings(
        _env_file=None,
        kafka_bootstrap=services.kafka,
        redis_url=services.redis_url,
        index_prefix=f"rt{ns}",
        topic_alerts=f"rt{ns}.sanction.alerts",
        topic_rejected=f"rt{ns}.sanction.rejected",
        topic_decisions=f"rt{ns}.sanction.decisions",
    )
    await ensure_topics(settings)
    started = Runtime.create(settings)
    await started.start()
    try:
        await started.index.switch_generation(new_generation(), {})
        yield started
    finally:
        await started.stop()


def ledger_of(runtime: Runtime, feedback_sla_seconds: float = 86400) -> Ledger:
    """The monitoring ledger of :func:`runtime`'s index, as a worker configures it."""
    return Ledger(
        runtime.redis,
        runtime.index.layout,
        lookback_seconds=365 * 86400,
        feedback_sla_seconds=feedback_sla_seconds,
        decision_ttl_seconds=7 * 86400,
    )

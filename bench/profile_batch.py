"""The batch comparison core alone: parse a 10,000-subject body, Checker.batch, dump the JSON.

    bench/profile_check.py load 100000          # listings into a fresh index (prefix sgcheck)
    bench/profile_batch.py [--batches 5] [--profile]

Against the bench Redis (SANCTIONGATE_BENCH_REDIS_PORT; no Kafka, no API process): what
``POST /v1/checks/batch`` costs once its bytes are in, without HTTP (its audit records
included, not their way to Kafka), with the collector paused as the API pauses it. A tenth of
the subjects are listed organisations, a tenth natural persons (some listed as legal
representatives), the rest unlisted organisations. Prints client CPU per subject, the phases
(``collector``: the collection put off by the pause, when it ends), the Redis server's CPU per
subject (``INFO cpu``: run it against a Redis nothing else uses), and a digest of the answers
(the same digest before and after a change means the same answers, ``decided_at`` and
``request_id`` aside).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import pstats
import time
from datetime import UTC, datetime

import orjson
from common import REDIS_PORT, company_name, id_number, person_name, uscc
from profile_check import PREFIX

from sanctiongate.audit import batch_audit_records
from sanctiongate.checks import Checker
from sanctiongate.domain.models import BatchCheckRequest, BatchCheckResponse
from sanctiongate.heap import collector_paused, tune_collector
from sanctiongate.index import Layout, SanctionIndex
from sanctiongate.index.client import LeanRedis

try:
    from sanctiongate.checks import batch_json as render
except ImportError:  # code from before batch_json, for a before/after pair

    def render(response: BatchCheckResponse) -> bytes:
        return response.model_dump_json(by_alias=True).encode()


URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SIZE = 10_000


def body(batch: int, pool: int = 100_000) -> bytes:
    subjects = []
    for i in range(SIZE):
        n = (batch * SIZE + i) * 7919 % pool
        if i % 10 == 0:  # a listed organisation (bench/common.py list_upsert)
            subjects.append({"kind": "legal_person", "name": company_name(n), "uscc": uscc(n)})
        elif i % 10 == 1:  # a person: every third listing has one as legal representative
            subjects.append(
                {"kind": "natural_person", "name": person_name(n), "id_number": id_number(n)}
            )
        else:
            m = batch * SIZE + i
            subjects.append(
                {"kind": "legal_person", "name": f"未列名公司{m}", "uscc": uscc(m, "310115")}
            )
    return orjson.dumps(
        {
            "request_id": f"b{batch}",
            "matter": {"category": "government_procurement"},
            "subjects": subjects,
        }
    )


async def run(batches: int, profile: bool) -> None:
    bodies = [body(b) for b in range(batches + 1)]
    tune_collector()  # as the API does once it has started
    redis = LeanRedis.from_url(URL)  # the API's client (hiredis packing, no SCRIPT EXISTS)
    checker = Checker(SanctionIndex(redis, Layout(prefix=PREFIX)))
    await one(checker, bodies[0], hashlib.sha256(), {})  # warm-up: connection, scripts
    digest = hashlib.sha256()
    phases: dict[str, float] = {}
    totals: list[float] = []  # CPU per batch: the least-disturbed one is the best estimate
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    server0 = await redis_cpu(redis)
    wall0 = time.perf_counter()
    for raw in bodies[1:]:
        before = sum(phases.values())
        await one(checker, raw, digest, phases)
        totals.append(sum(phases.values()) - before)
    wall = time.perf_counter() - wall0
    server = await redis_cpu(redis) - server0
    if prof:
        prof.disable()
    cpu = sum(phases.values())
    subjects = batches * SIZE
    best = min(totals) / SIZE * 1e6
    print(
        f"batches {batches} x {SIZE}: cpu {cpu:.2f}s wall {wall:.2f}s -> "
        f"{cpu / subjects * 1e6:.1f} µs CPU/subject (best batch {best:.1f}), "
        f"{subjects / cpu:,.0f} subjects per CPU-s; "
        + ", ".join(f"{k} {v / subjects * 1e6:.1f} µs" for k, v in phases.items())
        + f"; Redis server {server / subjects * 1e6:.1f} µs CPU/subject"
        + f"; digest {digest.hexdigest()[:16]}"
    )
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(40)
    await redis.aclose()


async def redis_cpu(redis: LeanRedis) -> float:
    """CPU seconds the Redis server has used so far (user + system, ``INFO cpu``)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def one(checker: Checker, raw: bytes, digest, phases: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    t0 = time.process_time()
    with collector_paused():  # as the API's FastChecks serves a batch
        request = BatchCheckRequest.model_validate_json(raw)
        t1 = time.process_time()
        response = await checker.batch(request.subjects, request.matter, "bench", "b", NOW)
        t2 = time.process_time()
        answer = render(response)
        t3 = time.process_time()
        # As in the API: the audit records are built (AuditTrail.record_batch), then the
        # request and the response die with run_batch.
        batch_audit_records("bench", "b", response, NOW)
        del request, response
        t4 = time.process_time()
    # Leaving the pause: the young collection put off runs now, over what is still alive.
    t5 = time.process_time()
    for name, spent in (
        ("parse", t1 - t0),
        ("check", t2 - t1),
        ("dump", t3 - t2),
        ("audit", t4 - t3),
        ("collector", t5 - t4),
    ):
        phases[name] = phases.get(name, 0.0) + spent
    digest.update(answer[answer.index(b'"results"') : answer.index(b',"as_of"')])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    a = parser.parse_args()
    asyncio.run(run(a.batches, a.profile))

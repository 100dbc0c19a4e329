"""Speed of the check API against a naive baseline, measured in the same run. Prints figures.

    deploy/stack.sh start            # or any Kafka + Redis; point the env at them:
    SANCTIONGATE_KAFKA_BOOTSTRAP=127.0.0.1:9092 SANCTIONGATE_REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/api.py [--entries 100000] [--workers 2] [--duration 5]

It loads ``--entries`` listings straight into Redis through the index code (its own prefix and
topics, removed afterwards), starts the real API (``sanctiongate api --workers N``) and the
baseline (bench/baseline.py: FastAPI, one redis-py ``HGET`` a request) under the same uvicorn
setup, and drives both with ``wrk`` (``apt-get install wrk``: C, one thread, so the load
generator takes as little of the servers' CPU as possible). Single checks carry one
organisation, a fifth of them listed; at each concurrency the two servers take turns
(``--rounds``) and the median run is printed. Then 10,000-subject batches through the real API.
"p99 at half of peak" paces wrk's connections (Lua ``delay``) to about half the peak rate.
``--before DIR`` runs a third server, the API of another checkout (its ``src/`` first on
``PYTHONPATH``, e.g. the branch point), in the same turns on the same index: before/after
ratios from one run, which a machine shared with other work makes far steadier than two runs.

Besides throughput and latency it prints the CPU time the server processes and Redis spent per
check (from /proc): on a machine shared with other work, throughput moves with their load,
while CPU per check, and the API/baseline ratios, stay comparable between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import orjson
from redis.asyncio import Redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sanctiongate.domain.identifiers import (  # noqa: E402
    USCC_ALPHABET,
    resident_id_check_char,
    uscc_check_char,
)
from sanctiongate.domain.models import ListChange  # noqa: E402
from sanctiongate.index import Layout, SanctionIndex  # noqa: E402
from sanctiongate.index.store import new_generation  # noqa: E402
from sanctiongate.keys import KeyStore  # noqa: E402
from sanctiongate.settings import Settings  # noqa: E402
from sanctiongate.streams.rebuild import load_default_measures  # noqa: E402
from sanctiongate.topics import ensure_topics  # noqa: E402

rng = random.Random(7)


def a_uscc() -> str:
    body = "91" + "110105" + "".join(rng.choice(USCC_ALPHABET) for _ in range(9))
    return body + uscc_check_char(body)


def an_id_number() -> str:
    body = "110105" + f"19{rng.randrange(50, 99)}0101" + f"{rng.randrange(1000):03d}"
    return body + resident_id_check_char(body)


def listing(i: int, code: str) -> ListChange:
    related = [{"role": "legal_representative", "name": f"法人{i}", "id_number": an_id_number()}]
    return ListChange.model_validate(
        {
            "schema": "list_change/v1",
            "op": "upsert",
            "entry_id": f"bench-{i}",
            "version": 1,
            "event_time": datetime.now(UTC).isoformat(),
            "source": "bench",
            "entry": {
                "list_type": "dishonest_judgment_debtor",
                "polarity": "black",
                "subject": {"kind": "legal_person", "name": f"失信公司{i}", "uscc": code},
                "related_persons": related if i % 3 == 0 else [],
                "authority": "北京市朝阳区人民法院",
                "basis": f"（2024）京0105执{i}号",
                "effective_from": date(2024, 1, 1).isoformat(),
                "effective_until": None,
                "disputed": False,
            },
        }
    )


async def load_index(settings: Settings, count: int) -> list[str]:
    """``count`` listings straight into a fresh generation; returns the listed USCCs."""
    redis = Redis.from_url(settings.redis_url)
    index = SanctionIndex(redis, Layout(prefix=settings.index_prefix))
    gen = new_generation()
    await index.mark_rebuilding(gen)
    await index.put_measures(gen, load_default_measures(settings))
    codes = [a_uscc() for _ in range(count)]
    for start in range(0, count, 2000):
        chunk = [listing(i, codes[i]) for i in range(start, min(count, start + 2000))]
        await index.apply_changes(gen, chunk)
        # The baseline's one-hash "index": identifier → entry id.
        await redis.hset(
            f"{settings.index_prefix}:baseline",
            mapping={c.entry.subject.uscc: c.entry_id for c in chunk if c.entry},
        )
    await index.switch_generation(gen, {})
    await index.note_newest(datetime.now(UTC))
    await redis.aclose()
    return codes


async def drop_index(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    async for key in redis.scan_iter(match=f"{settings.index_prefix}:*", count=5000):
        await redis.unlink(key)
    await redis.aclose()


def check_bodies(listed: list[str], n: int = 2000) -> list[bytes]:
    bodies = []
    for i in range(n):
        code = rng.choice(listed) if i % 5 == 0 else a_uscc()
        subject = {
            "kind": "legal_person",
            "name": f"申请公司{i}",
            "uscc": code,
            "role": "applicant",
        }
        body = {"matter": {"category": "government_procurement"}, "subjects": [subject]}
        bodies.append(orjson.dumps(body))
    return bodies


LUA = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "/v1/checks", nil, bodies[(i %% #bodies) + 1])
end
%(delay)s
"""


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # server processes' + Redis's CPU time per check: robust to a busy machine
    redis_us: float  # of which Redis's


def _tree_cpu_seconds(roots: list[int]) -> float:
    """utime + stime of the given processes and all their descendants, from /proc."""
    stats: dict[int, tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        stats[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    wanted, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in stats.items() if ppid == parent]
        wanted.update(children)
        frontier.extend(children)
    return sum(stats[pid][1] for pid in wanted if pid in stats)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path, connections: int, seconds: int, pids: list[int]) -> Run:
    cpu_before, redis_before = _tree_cpu_seconds(pids), _tree_cpu_seconds(pids[-1:])
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = _tree_cpu_seconds(pids) - cpu_before
    redis_cpu = _tree_cpu_seconds(pids[-1:]) - redis_before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: .*", out)
    if socket_errors:
        print("   wrk:", socket_errors.group(0))
    return Run(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        errors=int(errors.group(1)) if errors else 0,
        cpu_us=cpu / max(requests, 1) * 1e6,
        redis_us=redis_cpu / max(requests, 1) * 1e6,
    )


def script(directory: Path, name: str, bodies: Path, token: str, delay_ms: int = 0) -> Path:
    delay = f"delay = function() return {delay_ms} end" if delay_ms else ""
    path = directory / f"{name}.lua"
    path.write_text(LUA % {"bodies": bodies, "token": token, "delay": delay})
    return path


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see its log")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} not ready in {timeout}s")


async def _redis_pid(url: str) -> int:
    redis = Redis.from_url(url)
    try:
        return int((await redis.info("server"))["process_id"])
    finally:
        await redis.aclose()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Target = tuple[str, list[int]]  # URL, and the processes whose CPU a check costs


def single_checks(
    targets: dict[str, Target], work: Path, bodies: Path, token: str, a: argparse.Namespace
) -> dict[str, dict[int, Run]]:
    """Each concurrency: the servers take turns, ``--rounds`` times; the median run counts.

    Taking turns matters on a shared machine: a burst of someone else's load then hits both.
    """
    for name, (url, pids) in targets.items():
        wrk(url, script(work, f"{name}-warm", bodies, token), 8, 2, pids)
    medians: dict[str, dict[int, Run]] = {name: {} for name in targets}
    for c in a.concurrency:
        runs: dict[str, list[Run]] = {name: [] for name in targets}
        for _ in range(a.rounds):
            for name, (url, pids) in targets.items():
                runs[name].append(
                    wrk(url, script(work, f"{name}-{c}", bodies, token), c, a.duration, pids)
                )
        for name in targets:
            r = sorted(runs[name], key=lambda run: run.rps)[len(runs[name]) // 2]
            medians[name][c] = r
            spread = ", ".join(f"{run.rps:.0f}" for run in runs[name])
            print(
                f"  {name:9} c={c:<3} {r.rps:7.0f} checks/s  p50 {r.p50_ms:6.2f} ms  "
                f"p99 {r.p99_ms:6.2f} ms  CPU {r.cpu_us:4.0f} µs/check "
                f"(Redis {r.redis_us:3.0f})  non-2xx {r.errors}  "
                f"(runs: {spread})",
                flush=True,
            )
        for name, other in (("api", "baseline"), ("before", "baseline"), ("api", "before")):
            if name in targets and other in targets:
                ratio = medians[name][c].rps / medians[other][c].rps
                cpu = medians[name][c].cpu_us / medians[other][c].cpu_us
                print(
                    f"  {'':9} c={c:<3} {name}/{other} {ratio:.2f}x checks/s, {cpu:.2f}x CPU",
                    flush=True,
                )
    return medians


def paced(
    name: str,
    target: Target,
    work: Path,
    bodies: Path,
    token: str,
    peak: Run,
    idle: Run,
    seconds: int,
) -> Run:
    """About half the peak rate: 8 connections, each pausing so that it sends its share."""
    connections = 8
    delay = max(1, round(connections * 1000 / (peak.rps / 2) - idle.p50_ms))
    url, pids = target
    r = wrk(url, script(work, f"{name}-half", bodies, token, delay), connections, seconds, pids)
    print(
        f"  {name:9} ~half peak: {r.rps:9.0f} checks/s   p50 {r.p50_ms:6.2f} ms   "
        f"p99 {r.p99_ms:6.2f} ms   CPU {r.cpu_us:4.0f} µs/check   "
        f"({connections} connections, {delay} ms pause each)",
        flush=True,
    )
    return r


BATCHES_IN_FLIGHT = (1, 2, 4)


async def settled(pids: list[int], longest: float = 20.0) -> float:
    """Wait until the server (and Redis) is idle: the single checks before leave audit records
    in the API's queue, and their sending would be counted against the batches. Returns the
    seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < longest:
        before = _tree_cpu_seconds(pids)
        await asyncio.sleep(0.5)
        if _tree_cpu_seconds(pids) - before < 0.02:  # under 4% of a core
            break
    return time.perf_counter() - started


async def batches(target: Target, token: str, listed: list[str], rounds: int) -> None:
    url, pids = target
    bodies = []
    for b in range(rounds + 1):
        subjects = [
            {
                "kind": "legal_person",
                "name": f"批量公司{b}-{i}",
                "uscc": rng.choice(listed) if i % 10 == 0 else a_uscc(),
            }
            for i in range(10_000)
        ]
        bodies.append(orjson.dumps({"matter": {"category": "bidding"}, "subjects": subjects}))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        waited = await settled(pids)
        print(f"  (the server was idle after {waited:.1f} s)", flush=True)
        (await client.post("/v1/checks/batch", content=bodies[0])).raise_for_status()  # warm-up
        for parallel in BATCHES_IN_FLIGHT:
            # ``parallel`` batches in flight at any time: a new one as soon as one is answered
            # (several service halls at once), not in lock-step rounds.
            in_flight = asyncio.Semaphore(parallel)

            async def post(body: bytes, in_flight: asyncio.Semaphore) -> None:
                async with in_flight:
                    (await client.post("/v1/checks/batch", content=body)).raise_for_status()

            cpu_before = _tree_cpu_seconds(pids)
            client_before = time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(post(body, in_flight) for body in bodies[1:]))
            elapsed = time.perf_counter() - started
            cpu_us = (_tree_cpu_seconds(pids) - cpu_before) / (rounds * 10_000) * 1e6
            client_us = (time.process_time() - client_before) / (rounds * 10_000) * 1e6
            print(
                f"  batch     {parallel} in flight: {rounds * 10_000 / elapsed:9.0f} subjects/s "
                f"({elapsed / rounds * 1000:.0f} ms per 10,000-subject batch; "
                f"CPU {cpu_us:.0f} µs/subject; the sending client's {client_us:.1f})",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn processes for each server")
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server and concurrency")
    parser.add_argument(
        "--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 8, 64]
    )
    parser.add_argument(
        "--batches", type=int, default=16, help="10,000-subject batches per in-flight count"
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout (e.g. the branch point): its API runs as 'before', in the same "
        "turns, on the same index (its src/ first on PYTHONPATH)",
    )
    parser.add_argument("--api-port", type=int, default=0, help="default: a free one")
    parser.add_argument("--before-port", type=int, default=0, help="default: a free one")
    parser.add_argument("--baseline-port", type=int, default=0, help="default: a free one")
    a = parser.parse_args()

    ns = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix=f"sg-bench-{ns}-"))
    base = Settings()
    own = {  # a prefix and topics of its own, so a shared broker and Redis are left as found
        name: f"bench{ns}.{getattr(base, name)}"
        for name in Settings.model_fields
        if name.startswith("topic_") and name != "topic_partitions"
    }
    own["index_prefix"] = f"bench{ns}"
    env = {
        **os.environ,
        **{f"SANCTIONGATE_{k.upper()}": v for k, v in own.items()},
        "SANCTIONGATE_KEYS_FILE": str(work / "keys.json"),
    }
    settings = Settings(**own, kafka_bootstrap=base.kafka_bootstrap, redis_url=base.redis_url)
    _, token = KeyStore(work / "keys.json").create("bench", ["*"], "bench")
    print(f"load average before: {os.getloadavg()[0]:.1f} (the machine is shared)")
    print(
        f"sanctiongate API bench: {os.cpu_count()} CPUs, {a.workers} uvicorn worker(s) each, "
        f"Redis {settings.redis_url}, Kafka {settings.kafka_bootstrap}",
        flush=True,
    )

    started = time.perf_counter()
    asyncio.run(ensure_topics(settings))
    listed = asyncio.run(load_index(settings, a.entries))
    print(f"  loaded {a.entries} listings into Redis in {time.perf_counter() - started:.1f} s")
    bodies = work / "bodies.jsonl"
    bodies.write_bytes(b"\n".join(check_bodies(listed)) + b"\n")

    api_port, base_port = a.api_port or free_port(), a.baseline_port or free_port()
    ports = {"api": api_port, "before": a.before_port or free_port()}
    python = sys.executable

    def api(name: str, extra_env: dict[str, str]) -> subprocess.Popen:
        args = ["--loglevel", "WARNING", "api", "--port", str(ports[name])]
        return start(
            [python, "-m", "sanctiongate.cli", *args, "--workers", str(a.workers)],
            {**env, **extra_env},
            work / f"{name}.log",
        )

    servers = {"api": api("api", {})}
    if a.before is not None:
        servers["before"] = api("before", {"PYTHONPATH": str(a.before.resolve() / "src")})
    if not a.skip_baseline:
        servers["baseline"] = start(
            [
                python,
                "-m",
                "uvicorn",
                "bench.baseline:app",
                "--port",
                str(base_port),
                "--workers",
                str(a.workers),
                "--no-access-log",
                "--log-level",
                "warning",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
            ],
            env,
            work / "baseline.log",
        )
    try:
        redis_pid = asyncio.run(_redis_pid(settings.redis_url))
        targets: dict[str, Target] = {}
        for name in ("api", "before"):
            if name in servers:
                url = f"http://127.0.0.1:{ports[name]}"
                wait_ready(f"{url}/readyz", servers[name])
                targets[name] = (url, [servers[name].pid, redis_pid])
        if "baseline" in servers:
            base_url = f"http://127.0.0.1:{base_port}"
            targets["baseline"] = (base_url, [servers["baseline"].pid, redis_pid])
            wait_ready(f"{base_url}/docs", servers["baseline"])
        print("single checks (one organisation each, 20% listed):", flush=True)
        results = single_checks(targets, work, bodies, token, a)
        apis = [name for name in ("api", "before") if name in targets]
        for name in apis:
            peak = max(results[name].values(), key=lambda r: r.rps)
            idle = results[name][min(a.concurrency)]
            paced(name, targets[name], work, bodies, token, peak, idle, a.duration)
        if a.batches:  # --batches 0: single checks only
            print("bulk comparison (10,000 subjects per batch, 10% listed):", flush=True)
            for name in apis:
                print(f"  {name}:", flush=True)
                asyncio.run(batches(targets[name], token, listed, a.batches))
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        for proc in servers.values():
            proc.terminate()
            proc.wait(30)
        asyncio.run(drop_index(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

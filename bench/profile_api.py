"""CPU per check of the whole API process, in-process: HTTP protocol, check, Redis, ledger,
metrics and audit, without the sockets of the HTTP side.

    bench/profile_api.py load [--entries 100000]     # bench/api.py's listings (prefix sgapi)
    bench/profile_api.py run 20000 [--connections 32] [--profile [KEY]]

Against the bench Redis and Kafka (SANCTIONGATE_BENCH_REDIS_PORT / _KAFKA_PORT). ``run`` serves
bench/api.py's single-check bodies to ``--connections`` instances of the API's protocol
(``api.http11.FastCheckProtocol``), each over a stand-in transport that sends the next request
as soon as the answer is written: ``--connections`` checks in flight at all times, as wrk's
connections keep them, so the Redis reads and ledger writes coalesce as they do under load.
Metrics are in multiprocess mode, as under ``sanctiongate api --workers N``. Prints the
process's CPU µs per check (the first 2,000 checks warm up), the decision mix, and with
``--profile`` a cProfile sorted by tottime (or the key given). Under valgrind the instruction
count of ``run N`` minus ``run 0`` is a per-check cost that does not move with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sg-profile-api-"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import api as bench_api
import uvloop
from common import KAFKA_PORT, REDIS_PORT, StandInTransport, measured
from uvicorn.config import Config
from uvicorn.server import ServerState

from sanctiongate.api.app import create_app
from sanctiongate.api.http11 import FastCheckProtocol
from sanctiongate.keys import KeyStore
from sanctiongate.settings import Settings
from sanctiongate.topics import ensure_topics

PREFIX = "sgapi"
WARM_UP = 2000
DECISION = re.compile(rb'"decision":"(\w+)"')  # the first is the whole check's
CODES = Path(tempfile.gettempdir()) / "sg-profile-api-codes.txt"


def settings(keys: Path | None = None) -> Settings:
    base = Settings(_env_file=None)
    own: dict[str, Any] = {
        name: f"{PREFIX}.{getattr(base, name)}"
        for name in Settings.model_fields
        if name.startswith("topic_") and name != "topic_partitions"
    }
    return Settings(
        _env_file=None,
        **own,
        index_prefix=PREFIX,
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        kafka_bootstrap=f"127.0.0.1:{KAFKA_PORT}",
        **({"keys_file": keys} if keys else {}),
    )


async def load(entries: int) -> None:
    await bench_api.drop_index(settings())
    await ensure_topics(settings())
    codes = await bench_api.load_index(settings(), entries)
    CODES.write_text("\n".join(codes))
    print(f"{entries} listings under {PREFIX}; their codes in {CODES}")


class Connection(StandInTransport):
    """A stand-in transport: every write is one answer (a check's fits one write), and the
    connection's next request follows it, as a keep-alive client's would."""

    def __init__(self, requests: collections.deque[bytes], done: asyncio.Future[None]) -> None:
        self.requests = requests
        self.done = done
        self.answers: list[bytes] = []
        self.protocol: FastCheckProtocol | None = None

    def next(self) -> None:
        if self.requests:
            assert self.protocol is not None
            self.protocol.data_received(self.requests.popleft())
        elif not self.done.done():
            self.done.set_result(None)

    def write(self, data: bytes) -> None:
        self.answers.append(data)
        asyncio.get_running_loop().call_soon(self.next)


async def serve(app: Any, token: str, bodies: list[bytes], count: int, connections: int) -> list:
    """``count`` requests through ``connections`` protocols; returns every answer's tail."""
    config = Config(app, http=FastCheckProtocol, lifespan="off", access_log=False)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Tue, 08 Dec 2026 01:00:00 GMT"), *config.encoded_headers]
    requests = collections.deque(
        (
            "POST /v1/checks HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in (bodies[i % len(bodies)] for i in range(count))
    )
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    conns = []
    for _ in range(connections):
        conn = Connection(requests, done)
        conn.protocol = FastCheckProtocol(config, state, {}, loop)  # type: ignore[arg-type]
        conn.protocol.connection_made(conn)  # type: ignore[arg-type]
        conns.append(conn)
        conn.next()
    if count:
        await done
    while any(c.protocol.tasks for c in conns):  # type: ignore[union-attr]
        await asyncio.sleep(0.001)  # the last answers in flight
    for conn in conns:
        conn.protocol.connection_lost(None)  # type: ignore[union-attr]
    return [answer for conn in conns for answer in conn.answers]


async def run(count: int, connections: int, profile: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="sg-profile-api-"))
    _, token = KeyStore(work / "keys.json").create("bench", ["*"], "bench")
    app = create_app(settings(work / "keys.json"))
    codes = CODES.read_text().split("\n") if CODES.exists() else []
    if not codes:
        raise SystemExit("no listings: run `bench/profile_api.py load` first")
    bodies = bench_api.check_bodies(codes)
    async with app.router.lifespan_context(app):
        await serve(app, token, bodies, WARM_UP, connections)
        with measured(profile is not None) as took:
            answers = await serve(app, token, bodies, count, connections)
        await asyncio.sleep(0.2)  # the audit trail's last burst
    mix = collections.Counter(
        m.group(1).decode() if (m := DECISION.search(a)) else a.split(b"\r\n", 1)[0].decode()
        for a in answers
    )
    print(
        f"{count} checks, {connections} in flight: {took.cpu / max(count, 1) * 1e6:.1f} µs "
        f"CPU per check ({took.wall:.2f} s); answers {dict(mix)}"
    )
    if profile is not None:
        took.print_profile(profile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    loading = sub.add_parser("load")
    loading.add_argument("--entries", type=int, default=100_000)
    running = sub.add_parser("run")
    running.add_argument("count", type=int)
    running.add_argument("--connections", type=int, default=32)
    running.add_argument("--profile", nargs="?", const="tottime")
    a = parser.parse_args()
    if a.command == "load":
        asyncio.run(load(a.entries))
    else:
        uvloop.run(run(a.count, a.connections, a.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

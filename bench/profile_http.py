"""CPU per check of the HTTP layer alone: the API's app under each uvicorn protocol, in-process.

    .venv/bin/python bench/profile_http.py [--requests 20000]

Feeds the bench's ``POST /v1/checks`` bytes (wrk's headers) to one protocol instance over a
stand-in transport, on uvloop, one request at a time, and answers it with a fixed decision
instead of ``run_check``: what is left is parsing, routing, authentication, the body's
validation (none of these two for ``FastCheckProtocol``, whose ``FastChecks.answer_many`` the
fixed decision replaces as a whole), the response's framing and the event loop's own work,
without sockets, Redis or the machine's other load. Prints µs of CPU per request for uvicorn's
httptools protocol, the one-write protocol (``api.http11.OneWriteHttpToolsProtocol``) and the
protocol that answers checks itself (``FastCheckProtocol``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import StandInTransport

from sanctiongate.api.app import create_app
from sanctiongate.api.http11 import FastCheckProtocol, OneWriteHttpToolsProtocol
from sanctiongate.keys import KeyStore
from sanctiongate.settings import Settings

ANSWER = b'{"schema":"decision/v1","decision":"pass","subjects":[]}'
BODY = (
    '{"matter":{"category":"government_procurement"},"subjects":[{"kind":"legal_person",'
    '"name":"申请公司1","uscc":"91110105MA01ABCDE0","role":"applicant"}]}'
).encode()


class Transport(StandInTransport):
    """What a protocol asks of an asyncio transport; a write ending in the answer ends a turn."""

    def __init__(self) -> None:
        self.turn: asyncio.Future[None] | None = None

    def write(self, data: bytes) -> None:
        if data.endswith(ANSWER) and self.turn is not None:
            self.turn.set_result(None)


async def per_request(protocol_class: type[HttpToolsProtocol], requests: int) -> float:
    with tempfile.TemporaryDirectory() as work:
        keys = Path(work) / "keys.json"
        _, token = KeyStore(keys).create("bench", ["*"])
        app = create_app(Settings(_env_file=None, keys_file=keys))
        assert app.fast_checks is not None

        async def decided(*_: object) -> bytes:
            return ANSWER

        async def decided_together(requests: list) -> list[bytes]:
            return [ANSWER for _ in requests]

        app.fast_checks.calls = {p: (m, decided) for p, (m, _) in app.fast_checks.calls.items()}
        app.fast_checks.answer_many = decided_together  # type: ignore[method-assign]
        config = Config(
            app, http=protocol_class, lifespan="off", log_level="warning", access_log=False
        )
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Thu, 03 Dec 2026 17:00:00 GMT")]
        state.default_headers += config.encoded_headers
        protocol = protocol_class(config, state, {}, asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        request = (
            f"POST /v1/checks HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        loop = asyncio.get_running_loop()
        started = 0.0
        for i in range(requests + 2000):  # the first 2,000 warm up
            if i == 2000:
                started = time.process_time()
            transport.turn = loop.create_future()
            protocol.data_received(request)
            await transport.turn
        protocol.connection_lost(None)
        return (time.process_time() - started) / requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    for protocol_class in (HttpToolsProtocol, OneWriteHttpToolsProtocol, FastCheckProtocol):
        runs = [uvloop.run(per_request(protocol_class, a.requests)) for _ in range(a.rounds)]
        spread = ", ".join(f"{r:.1f}" for r in runs)
        print(f"{protocol_class.__name__:28} {sorted(runs)[len(runs) // 2]:6.1f} µs/request "
              f"(runs: {spread})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

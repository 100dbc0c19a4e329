"""The API's HTTP protocol: a response's head and body leave in one write, byte for byte what
uvicorn's own cycle writes in two; a response without a body write still gets its head.

And the checks the protocol answers itself (``FastCheckProtocol``), against a stub app over a
real socket: what it takes and what it hands over, keep-alive, pipelining, a body in pieces, a
client gone mid-check, graceful shutdown (waited for, or cut short), a slow reader. That the
answers equal the framework path's, for the real app, is tests/services/test_api.py's part."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson
import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from sanctiongate.api.errors import ErrorDetail, error_response
from sanctiongate.api.http11 import OneWriteCycle
from tests.rawhttp import Connection, post, serving


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def cycle(kind: type[RequestResponseCycle], method: str, keep_alive: bool) -> Any:
    transport = Transport()
    made = kind(
        scope={"type": "http", "method": method, "path": "/v1/checks", "http_version": "1.1"},
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[(b"server", b"uvicorn")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    return made, transport


RESPONSES = {
    "sized": [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]},
        {"type": "http.response.body", "body": b"hello"},
    ],
    "chunked": [
        {"type": "http.response.start", "status": 200, "headers": []},
        {"type": "http.response.body", "body": b"he", "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": True},
        {"type": "http.response.body", "body": b"llo"},
    ],
    "large": [
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"70000")]},
        {"type": "http.response.body", "body": b"x" * 70_000},
    ],
    "empty": [
        {"type": "http.response.start", "status": 204, "headers": []},
        {"type": "http.response.body", "body": b""},
    ],
}


@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("method", ["POST", "HEAD"])
@pytest.mark.parametrize("response", list(RESPONSES))
async def test_same_bytes_as_uvicorn_and_the_head_goes_with_the_body(
    response: str, method: str, keep_alive: bool
) -> None:
    theirs, their_transport = cycle(RequestResponseCycle, method, keep_alive)
    ours, our_transport = cycle(OneWriteCycle, method, keep_alive)
    for message in RESPONSES[response]:
        await theirs.send(message)
        await ours.send(message)
    assert b"".join(our_transport.writes) == b"".join(their_transport.writes)
    assert our_transport.closed == their_transport.closed == (not keep_alive)
    assert ours.response_complete
    if response == "sized" and method == "POST":
        assert len(their_transport.writes) == 2 and len(our_transport.writes) == 1


# --- FastCheckProtocol: checks answered by the protocol, over a real socket -----------------


class Stub:
    """An app as the protocol sees the API: ``fast_checks.answer`` for what it takes whole, the
    ASGI call for what it hands over. ``gate`` holds answers (a check in flight)."""

    def __init__(self, limit: int = 1024, answer_bytes: int = 0) -> None:
        self.fast_checks = self
        self.limit = limit
        self.answer_bytes = answer_bytes
        self.answered: list[tuple[str, bytes | None, bytes]] = []
        self.handed: list[tuple[str, str, bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.finished = 0
        self.waves: list[int] = []  # the size of each answer_many call

    async def answer(self, path: str, authorization: bytes | None, raw: bytes) -> bytes | Any:
        self.answered.append((path, authorization, raw))
        await self.gate.wait()
        self.finished += 1
        if raw == b"bug":
            raise RuntimeError("a bug")
        if raw == b"refuse":
            return error_response(401, ErrorDetail(code="unauthorized", message="no"), None,
                                  {"WWW-Authenticate": "Bearer"})  # fmt: skip
        return b"fast:" + raw + b"." * self.answer_bytes

    async def answer_many(self, requests: list[tuple[bytes | None, bytes]]) -> list[bytes | Any]:
        """The single checks of one turn (a wave): each as ``answer`` would."""
        self.waves.append(len(requests))
        return list(await asyncio.gather(*(self.answer("/v1/checks", *r) for r in requests)))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.handed.append((scope["method"], scope["path"], body))
        answer = b"slow:" + body
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def stub() -> Stub:
    return Stub()


async def test_a_check_is_answered_by_the_protocol_itself(stub: Stub) -> None:
    async with serving(stub, lifespan="off") as server:
        client = await Connection.open(server)
        await client.send(post("/v1/checks", b'{"a": 1}', token="t0k"))
        reply = await client.reply()
        assert stub.answered == [("/v1/checks", b"Bearer t0k", b'{"a": 1}')] and not stub.handed
        assert reply.head == (
            b"HTTP/1.1 200 OK\r\ndate: -\r\nserver: uvicorn\r\n"
            b"content-type: application/json\r\ncontent-length: 13\r\n\r\n"
        )
        assert reply.body == b'fast:{"a": 1}'
        await client.send(post("/v1/checks/batch", b"refuse"))  # an error: a Response's headers
        refused = await client.reply()
        assert refused.status == 401 and refused.headers[b"www-authenticate"] == b"Bearer"
        assert refused.head.startswith(b"HTTP/1.1 401 Unauthorized\r\ndate: -\r\nserver: uvicorn")
        assert orjson.loads(refused.body)["error"]["code"] == "unauthorized"
        client.close()


async def test_keep_alive_and_connection_close(stub: Stub) -> None:
    async with serving(stub, lifespan="off") as server:
        client = await Connection.open(server)
        for i in range(3):
            await client.send(post("/v1/checks", b"%d" % i))
            assert (await client.reply()).body == b"fast:%d" % i
        await client.send(post("/v1/checks", b"last", extra="Connection: close\r\n"))
        last = await client.reply()
        assert last.headers[b"connection"] == b"close" and last.body == b"fast:last"
        assert await client.closed_by_server()
        assert len(stub.answered) == 4 and not stub.handed


HANDED_OVER = {
    "another method": b"PUT /v1/checks HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
    "another route": post("/v1/feedback", b"{}"),
    "a query string": post("/v1/checks?x=1", b"{}"),
    "another content type": post("/v1/checks", b"{}", content_type="text/plain"),
    "expect 100-continue": post("/v1/checks", b"{}", extra="Expect: 100-continue\r\n"),
    "a chunked body": post("/v1/checks", b"{}", chunked=True),
    "HTTP/1.0": post("/v1/checks", b"{}", version="1.0"),
    "over the limit": post("/v1/checks", b"x" * 1025),
}


@pytest.mark.parametrize("case", list(HANDED_OVER))
async def test_what_the_protocol_does_not_take_goes_to_the_asgi_app(stub: Stub, case: str) -> None:
    async with serving(stub, lifespan="off") as server:
        client = await Connection.open(server)
        await client.send(HANDED_OVER[case])
        reply = await client.reply()
        assert reply.status == 200 and reply.body.startswith(b"slow:"), reply
        assert len(stub.handed) == 1 and not stub.answered
        client.close()


async def test_a_body_in_pieces_is_collected(stub: Stub) -> None:
    request = post("/v1/checks", b'{"subjects": [1, 2, 3]}')
    async with serving(stub, lifespan="off") as server:
        client = await Connection.open(server)
        for start in range(0, len(request), 9):
            await client.send(request[start : start + 9])
            await asyncio.sleep(0.01)
        assert (await client.reply()).body == b'fast:{"subjects": [1, 2, 3]}'
        client.close()


async def test_pipelined_requests_are_answered_in_order(stub: Stub) -> None:
    """The first is the protocol's; what arrives behind it waits its turn on uvicorn's path."""
    stub.gate.clear()
    healthz = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    async with serving(stub, lifespan="off") as server:
        client = await Connection.open(server)
        await client.send(post("/v1/checks", b"1") + post("/v1/checks", b"2") + healthz)
        await asyncio.sleep(0.1)
        stub.gate.set()
        assert [(await client.reply()).body for _ in range(3)] == [b"fast:1", b"slow:2", b"slow:"]
        assert [a[2] for a in stub.answered] == [b"1"]
        assert [h[:2] for h in stub.handed] == [("POST", "/v1/checks"), ("GET", "/healthz")]
        await client.send(post("/v1/checks", b"3"))  # the turn is back with the protocol
        assert (await client.reply()).body == b"fast:3"
        client.close()


async def test_a_client_gone_mid_check_leaves_nothing_behind(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    stub.gate.clear()
    async with serving(stub, lifespan="off") as server:
        gone = await Connection.open(server)
        await gone.send(post("/v1/checks", b"1"))
        await asyncio.sleep(0.05)
        gone.close()
        await asyncio.sleep(0.05)
        assert len(server.server_state.tasks) == 1  # the check goes on (it is audited) ...
        stub.gate.set()
        for _ in range(100):
            if not server.server_state.tasks and not server.server_state.connections:
                break
            await asyncio.sleep(0.01)
        assert stub.finished == 1 and not server.server_state.tasks  # ... and ends
        assert not server.server_state.connections
        client = await Connection.open(server)
        await client.send(post("/v1/checks", b"2"))
        assert (await client.reply()).body == b"fast:2"
        client.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_graceful_shutdown_waits_for_a_check_in_flight(stub: Stub) -> None:
    stub.gate.clear()
    async with serving(stub, lifespan="off") as server:
        client = await Connection.open(server)
        await client.send(post("/v1/checks", b"1"))
        await asyncio.sleep(0.05)
        server.should_exit = True
        await asyncio.sleep(0.3)
        assert stub.finished == 0 and server.server_state.tasks
        stub.gate.set()
        reply = await client.reply()
        assert reply.body == b"fast:1" and reply.headers[b"connection"] == b"close"
        assert await client.closed_by_server()


async def test_a_shutdown_out_of_time_answers_503_and_closes(stub: Stub) -> None:
    stub.gate.clear()
    async with serving(stub, lifespan="off", timeout_graceful_shutdown=0.3) as server:
        client = await Connection.open(server)
        await client.send(post("/v1/checks", b"1"))
        await asyncio.sleep(0.05)
        server.should_exit = True
        reply = await client.reply()
        assert reply.status == 503 and reply.headers[b"connection"] == b"close"
        assert reply.headers[b"retry-after"] == b"1"
        assert orjson.loads(reply.body)["error"]["code"] == "shutting_down"
        assert await client.closed_by_server()
    assert stub.finished == 0


async def test_an_answer_waits_while_the_client_does_not_read() -> None:
    """Writes paused by the transport (a slow reader): the next answer waits for the buffer to
    drain, as uvicorn's send does; a request behind it waits its turn; every byte arrives in
    order."""
    stub = Stub(answer_bytes=4 * 1024 * 1024)
    size = 6 + 4 * 2**20
    async with serving(stub, lifespan="off") as server:
        client = await Connection.open(server)  # reads only when asked (64 KiB ahead)
        [protocol] = server.server_state.connections
        for i in range(3):
            await client.send(post("/v1/checks", b"%d" % i))
            await asyncio.sleep(0.2)
        assert protocol.flow.write_paused, "the answers never filled the transport's buffer"  # type: ignore[union-attr]
        assert stub.finished == 2 and len(server.server_state.tasks) == 1  # 1 waits to write
        assert not stub.handed  # 2 is queued behind it
        replies = [await client.reply() for _ in range(3)]
        assert [len(r.body) for r in replies] == [size, size, 6]
        assert [r.body[:7] for r in replies] == [b"fast:0.", b"fast:1.", b"slow:2"]
        client.close()


async def test_no_fast_path_where_uvicorn_would_limit_concurrency(stub: Stub) -> None:
    async with serving(stub, lifespan="off", limit_concurrency=100) as server:
        client = await Connection.open(server)
        await client.send(post("/v1/checks", b"1"))
        assert (await client.reply()).body == b"slow:1"
        client.close()
    assert not stub.answered


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_the_access_log_line_is_uvicorns(stub: Stub) -> None:
    kept = Kept()
    async with serving(stub, lifespan="off", access_log=True, log_level="info") as server:
        access = logging.getLogger("uvicorn.access")
        kept.setFormatter(access.handlers[0].formatter)  # uvicorn's own (it reads the arguments)
        access.addHandler(kept)
        client = await Connection.open(server)
        await client.send(post("/v1/checks", b"1"))
        await client.send(post("/v1/checks", b"2", chunked=True))
        assert [(await client.reply()).body for _ in range(2)] == [b"fast:1", b"slow:2"]
        await client.send(post("/v1/checks", b"3", extra="X-Forwarded-For: 10.1.2.3\r\n"))
        assert (await client.reply()).body == b"slow:3"  # the proxy middleware's to name
        client.close()
        access.removeHandler(kept)
    assert len(kept.lines) == 3 and kept.lines[0] == kept.lines[1], kept.lines
    assert re.search(r' - "POST /v1/checks HTTP/1\.1" 200', kept.lines[0]), kept.lines
    assert "10.1.2.3:" in kept.lines[2]


async def test_a_bug_below_the_protocol_answers_503_not_a_hang(stub: Stub) -> None:
    kept = Kept()
    async with serving(stub, lifespan="off") as server:
        logging.getLogger("uvicorn.error").addHandler(kept)
        client = await Connection.open(server)
        await client.send(post("/v1/checks", b"bug"))
        reply = await client.reply()
        assert reply.status == 503 and orjson.loads(reply.body)["error"]["code"] == "internal_error"
        await client.send(post("/v1/checks", b"1"))  # the connection goes on
        assert (await client.reply()).body == b"fast:1"
        client.close()
        logging.getLogger("uvicorn.error").removeHandler(kept)
    assert [line.splitlines()[0] for line in kept.lines] == ["check failed outside FastChecks"]


async def test_checks_read_in_one_turn_are_answered_as_one_wave(stub: Stub) -> None:
    async with serving(stub, lifespan="off") as server:
        clients = [await Connection.open(server) for _ in range(6)]
        for n, client in enumerate(clients):  # all sent before the server's loop polls
            client.writer.write(post("/v1/checks", b"%d" % n, token=f"t{n}"))
        replies = [await client.reply() for client in clients]
        assert [r.body for r in replies] == [b"fast:%d" % n for n in range(6)]
        assert stub.waves == [6]
        assert sorted(stub.answered) == [
            ("/v1/checks", b"Bearer t%d" % n, b"%d" % n) for n in range(6)
        ]
        await clients[0].send(post("/v1/checks/batch", b"7"))  # a batch goes alone, as before
        assert (await clients[0].reply()).body == b"fast:7" and stub.waves == [6]
        for client in clients:
            client.close()

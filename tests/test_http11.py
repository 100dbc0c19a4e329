"""The API's HTTP protocol: a response's head and body leave in one write, byte for byte what
uvicorn's own cycle writes in two; a response without a body write still gets its head."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from sanctiongate.api.http11 import OneWriteCycle


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

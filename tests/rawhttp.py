"""HTTP/1.1 at the byte level, for the API's protocol (``api.http11``): a uvicorn server run in
the test's own event loop over a real socket, and a client that writes requests as given and
reads responses as they come (head bytes kept, so two paths' answers compare byte for byte)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from sanctiongate.api.http11 import FastCheckProtocol
from tests.conftest import free_port


@asynccontextmanager
async def serving(app: Any, **config: Any) -> AsyncIterator[uvicorn.Server]:
    """``app`` served by uvicorn with the API's protocol on a free port, until the block ends
    (then shut down gracefully, as on SIGTERM)."""
    settings = {"lifespan": "auto", "log_level": "warning", "access_log": False, **config}
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), http=FastCheckProtocol, **settings)
    )
    running = asyncio.create_task(server.serve())
    while not server.started:
        if running.done():
            running.result()  # its error
            raise AssertionError("the server stopped before it started")
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(running, 30)


@dataclass
class Reply:
    status: int
    head: bytes  # status line and headers, ``date`` blanked (it ticks every second)
    headers: dict[bytes, bytes]
    body: bytes


async def read_reply(reader: asyncio.StreamReader, timeout: float = 20) -> Reply:
    """The next final response (an interim ``100 Continue`` is skipped)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    while head.startswith(b"HTTP/1.1 100 "):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:] if line)
    body = await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), timeout)
    return Reply(
        status=int(lines[0].split()[1]),
        head=re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: -", head),
        headers=headers,
        body=body,
    )


class Connection:
    """One client connection: ``send`` raw bytes, ``reply`` reads the next response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: uvicorn.Server, **options: Any) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", server.config.port, **options))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 20) -> Reply:
        return await read_reply(self.reader, timeout)

    async def closed_by_server(self, timeout: float = 10) -> bool:
        return await asyncio.wait_for(self.reader.read(1), timeout) == b""

    def close(self) -> None:
        self.writer.close()


def post(
    path: str,
    body: bytes,
    *,
    token: str | None = None,
    content_type: str | None = "application/json",
    chunked: bool = False,
    extra: str = "",
    version: str = "1.1",
) -> bytes:
    """A POST as bytes: declared length, or ``chunked`` (which the API's protocol leaves to
    uvicorn's path: the same request through the framework's way in)."""
    head = f"POST {path} HTTP/{version}\r\nHost: test\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if not chunked:
        return f"{head}Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body
    step = len(body) // 3 + 1  # three chunks, none empty (an empty one ends the body)
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return f"{head}Transfer-Encoding: chunked\r\n{extra}\r\n".encode() + chunks + b"0\r\n\r\n"

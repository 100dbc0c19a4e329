"""uvicorn's httptools protocol, sending a response's head and body in one write.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the
body on ``http.response.body``: two ``send`` system calls, two TCP segments for a check's few
hundred bytes. On loopback or a LAN the kernel's send path is most of a write's cost, and for a
check the second one cost about as much CPU as the whole JSON rendering. Here the head is held
until the body's first write and goes with it; what else uvicorn does (flow control, keep-alive,
pipelining, errors, HEAD requests that write no body) is untouched: a head still held when the
body message wrote nothing is written right after it.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

_JOIN_AT_MOST = 64 * 1024  # bytes of body copied behind the head


class _Recorder:
    """Stands for the transport while uvicorn writes the head: keeps what it writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _HeadFirst:
    """Stands for the transport while uvicorn writes the body: the head goes in front of the
    first write, or before anything else done to the transport (``close``)."""

    def __init__(self, transport: Any, head: bytes) -> None:
        self.transport = transport
        self.head: bytes | None = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, None
        if head is not None and len(data) > _JOIN_AT_MOST:
            self.transport.write(head)  # a batch's megabytes: not worth a copy to save a write
        elif head is not None:
            data = head + data
        self.transport.write(data)

    def flush(self) -> None:
        if self.head is not None:
            head, self.head = self.head, None
            self.transport.write(head)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self.transport, name)


class OneWriteCycle(RequestResponseCycle):
    _head: bytes | None = None

    async def send(self, message: Any) -> None:  # type: ignore[override]
        if message["type"] == "http.response.start" and not self.response_started:
            transport, recorder = self.transport, _Recorder()
            self.transport = recorder  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self._head = b"".join(recorder.written) or None
            return
        if self._head is None:
            await super().send(message)
            return
        transport, head_first = self.transport, _HeadFirst(self.transport, self._head)
        self._head = None
        self.transport = head_first  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
            if not self.disconnected:
                head_first.flush()  # a body that wrote nothing (HEAD, an empty chunk)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """``uvicorn --http sanctiongate.api.http11:OneWriteHttpToolsProtocol``."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # The cycle was just made; its task runs later, so it starts as a OneWriteCycle.
        if self.cycle is not None and type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = OneWriteCycle

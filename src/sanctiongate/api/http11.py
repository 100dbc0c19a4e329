"""uvicorn's httptools protocol, sending a response's head and body in one write.

uvicorn writes the status line and headers when the app sends ``http.response.start`` and the
body on ``http.response.body``: two ``send`` system calls, two TCP segments for a check's few
hundred bytes. On loopback or a LAN the kernel's send path is most of a write's cost, and for a
check the second one cost about as much CPU as the whole JSON rendering. Here the head is held
until the body's first write and goes with it; what else uvicorn does (flow control, keep-alive,
pipelining, errors, HEAD requests that write no body) is untouched: a head still held when the
body message wrote nothing is written right after it.

:class:`FastCheckProtocol` goes further for the service hall's hot path: a plain
``POST /v1/checks`` (or ``/v1/checks/batch``) is read and answered by the protocol itself,
calling :meth:`FastChecks.answer` with the body it collected: no ASGI scope, no cycle, no
receive/send messages, no header list to build and check. Whatever it does not take whole
(another route or method, another content type, ``Expect: 100-continue``, a chunked or
oversized body, HTTP/1.0, a pipelined request) goes to uvicorn's own path,
which answers the same checks through the ASGI app.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr

from .app import FastChecks, takes
from .errors import ErrorDetail, error_response

_JOIN_AT_MOST = 64 * 1024  # bytes of body copied behind the head


def write_joined(transport: Any, head: bytes, body: bytes) -> None:
    """Head and body in one write, unless the body is a batch's megabytes: not worth a copy."""
    if len(body) > _JOIN_AT_MOST:
        transport.write(head)
        transport.write(body)
    else:
        transport.write(head + body)


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
        if head is None:
            self.transport.write(data)
        else:
            write_joined(self.transport, head, data)

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


FAST_URLS = {b"/v1/checks": "/v1/checks", b"/v1/checks/batch": "/v1/checks/batch"}
_JSON_HEADERS = b"content-type: application/json\r\ncontent-length: "
_CLOSE = b"connection: close\r\n"


class _Unwatched:
    """A fast request's ``message_event``: uvicorn's protocol sets a cycle's event when the
    connection is lost; nothing waits on a fast request's (its task finishes the check)."""

    def set(self) -> None: ...


class FastRequest:
    """A ``POST /v1/checks`` taken by :class:`FastCheckProtocol`. It stands in ``cycle`` for
    what uvicorn's protocol asks of one: ``response_complete`` (pipelining, shutdown),
    ``keep_alive`` (cleared by a graceful shutdown), ``disconnected`` (connection lost)."""

    __slots__ = ("authorization", "chunks", "disconnected", "keep_alive", "path",
                 "response_complete")  # fmt: skip
    message_event = _Unwatched()

    def __init__(self, path: str, authorization: bytes | None, keep_alive: bool) -> None:
        self.path = path
        self.authorization = authorization
        self.keep_alive = keep_alive
        self.chunks: list[bytes] = []
        self.response_complete = False
        self.disconnected = False

    def body(self) -> bytes:
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class FastCheckProtocol(OneWriteHttpToolsProtocol):
    """``uvicorn --http sanctiongate.api.http11:FastCheckProtocol``: checks answered by the
    protocol (module docstring); every other request as :class:`OneWriteHttpToolsProtocol`."""

    fast: FastChecks | None = None
    _collecting: FastRequest | None = None  # a fast request whose body is still arriving
    _defaults: tuple[object, bytes] = (None, b"")  # the server's default headers, rendered

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.fast = _fast_checks(self.app) if self._fast_allowed() else None

    def _fast_allowed(self) -> bool:
        """Only where uvicorn's own path would add nothing: no concurrency limit, root path or
        fresh context per request to honour."""
        return not (
            self.limit_concurrency is not None or self.root_path or self.config.reset_contextvars
        )

    def on_message_begin(self) -> None:
        """uvicorn's, but for the ASGI scope, made only for a request handed to uvicorn's path
        (:meth:`_make_scope`): a check the protocol answers never reads it, and the dict and
        the copy of the app state in it were a tenth of the protocol's cost per check."""
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def _make_scope(self) -> None:
        """The scope uvicorn's ``on_message_begin`` makes, with what was read since."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        HttpToolsProtocol.on_message_begin(self)
        self.url, self.expect_100_continue = url, expect
        self.headers.extend(headers)  # the scope's list

    def on_headers_complete(self) -> None:
        request = self._take() if self.fast is not None else None
        if request is None:
            self._make_scope()
            super().on_headers_complete()
            return
        self.cycle = request  # type: ignore[assignment]
        self._collecting = request

    def _take(self) -> FastRequest | None:
        """The request as a fast one, or None for uvicorn's path (module docstring)."""
        path = FAST_URLS.get(self.url)
        parser = self.parser
        if (
            path is None
            or parser.get_method() != b"POST"
            or parser.get_http_version() != "1.1"
            or self.expect_100_continue
            or parser.should_upgrade()
            or (self.cycle is not None and not self.cycle.response_complete)  # pipelined
        ):
            return None
        content_type = authorization = None
        length = b"0"
        for name, value in self.headers:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return None  # chunked: BodyLimit counts it as it streams in
            elif name == b"x-forwarded-for" and self.access_log:
                return None  # the access log names the forwarded client (proxy middleware)
        assert self.fast is not None
        if not takes(content_type) or not length.isdigit() or int(length) > self.fast.limit:
            return None  # the framework's answer; BodyLimit's 413 (and its connection: close)
        return FastRequest(path, authorization, parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self._collecting is None:
            super().on_body(body)
        else:
            self._collecting.chunks.append(body)  # at most the declared length, under the limit

    def on_message_complete(self) -> None:
        request = self._collecting
        if request is None:
            super().on_message_complete()
            return
        self._collecting = None
        if request.path == "/v1/checks":
            _wave_of(self).add(self, request)
            return
        self._track(self.loop.create_task(self._serve(request)))

    def _track(self, task: asyncio.Task[None]) -> None:
        # Registered like uvicorn's own request tasks: a graceful shutdown waits for it.
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def deliver(self, request: FastRequest, answer: bytes | Any) -> None:
        """A wave's answer to this connection's request: now, or once a slow reader has taken
        what was written before (as uvicorn's ``send`` waits), without holding the wave."""
        if self.flow.write_paused and not request.disconnected:
            self._track(self.loop.create_task(self._drained_then_respond(request, answer)))
        else:
            self._respond(request, answer)

    async def _drained_then_respond(self, request: FastRequest, answer: bytes | Any) -> None:
        await self.flow.drain()
        self._respond(request, answer)

    async def _serve(self, request: FastRequest) -> None:
        assert self.fast is not None
        try:
            answer = await self.fast.answer(request.path, request.authorization, request.body())
        except asyncio.CancelledError:
            # A graceful shutdown that ran out of time: say so (no waiting on a slow reader
            # now), and close.
            request.keep_alive = False
            self._respond(request, _shutting_down())
            raise
        except Exception:  # FastChecks answers every error itself: this is a bug of ours
            self.logger.exception("check failed outside FastChecks")
            answer = _failed()
        if self.flow.write_paused and not request.disconnected:
            await self.flow.drain()  # the client reads slowly: wait, as uvicorn's send does
        self._respond(request, answer)

    def _respond(self, request: FastRequest, answer: bytes | Any) -> None:
        """Write the answer as uvicorn's cycle would for the ASGI path's messages: the server's
        default headers, then the response's, then ``connection: close`` if it closes."""
        if request.disconnected or self.transport.is_closing():
            return  # the check was done (and audited); nobody is left to answer
        if isinstance(answer, bytes):
            status, body = 200, answer
            headers = _JSON_HEADERS + str(len(body)).encode() + b"\r\n"
        else:  # an error: a starlette Response, as the ASGI path would send it
            status, body = answer.status_code, answer.body
            headers = b"".join(b"%s: %s\r\n" % header for header in answer.raw_headers)
        if self.access_log:  # uvicorn's line, with its arguments (its formatter reads them)
            client = get_client_addr({"client": self.client})  # type: ignore[typeddict-item]
            line = '%s - "%s %s HTTP/%s" %d'
            self.access_logger.info(line, client, "POST", request.path, "1.1", status)
        close = b"" if request.keep_alive else _CLOSE
        head = STATUS_LINE[status] + self._default_headers() + headers + close + b"\r\n"
        write_joined(self.transport, head, body)
        request.response_complete = True
        if not request.keep_alive:
            self.transport.close()
        self.on_response_complete()  # keep-alive timer, reading resumed, a pipelined request

    def _default_headers(self) -> bytes:
        """``date`` and ``server``, rendered once per list (the server renews it every second)."""
        headers = self.server_state.default_headers
        if self._defaults[0] is not headers:
            self._defaults = (headers, b"".join(b"%s: %s\r\n" % h for h in headers))
        return self._defaults[1]


class Wave:
    """The single checks (``POST /v1/checks``) that a process's connections read in one turn
    of the event loop, answered together by :meth:`FastChecks.answer_many` in one task.

    The task is made with the turn's first check and runs after the turn's other socket reads,
    so it takes every check they brought; the checks read while it works go in the next wave,
    whose index read :class:`checks.CoalescedReads` joins to this one's when they meet.
    """

    def __init__(self, fast: FastChecks) -> None:
        self.fast = fast
        self.waiting: list[tuple[FastCheckProtocol, FastRequest]] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, protocol: FastCheckProtocol, request: FastRequest) -> None:
        self.waiting.append((protocol, request))
        if self._task is None:
            self._task = protocol.loop.create_task(self._serve())
            protocol._track(self._task)

    async def _serve(self) -> None:
        taken, self.waiting, self._task = self.waiting, [], None
        try:
            answers = await self.fast.answer_many(
                [(request.authorization, request.body()) for _, request in taken]
            )
        except asyncio.CancelledError:
            # A graceful shutdown that ran out of time: say so (no waiting on a slow reader
            # now), and close.
            for protocol, request in taken:
                request.keep_alive = False
                protocol._respond(request, _shutting_down())
            raise
        except Exception:  # FastChecks answers every error itself: this is a bug of ours
            taken[0][0].logger.exception("check failed outside FastChecks")
            answers = [_failed() for _ in taken]
        for (protocol, request), answer in zip(taken, answers, strict=True):
            protocol.deliver(request, answer)


def _wave_of(protocol: FastCheckProtocol) -> Wave:
    fast = protocol.fast
    assert fast is not None
    wave = getattr(fast, "wave", None)
    if wave is None:
        wave = fast.wave = Wave(fast)
    return wave


def _shutting_down() -> Any:
    return error_response(
        503,
        ErrorDetail(code="shutting_down", message="the server is shutting down; retry"),
        headers={"Retry-After": "1"},
    )


def _failed() -> Any:
    # Never uvicorn's bare 500 (SPEC §6), nor a hanging connection.
    return error_response(503, ErrorDetail(code="internal_error", message="the check failed"))


def _fast_checks(app: Any) -> FastChecks | None:
    """The app's FastChecks, under uvicorn's middleware (proxy headers, message logger)."""
    for _ in range(8):
        fast = getattr(app, "fast_checks", None)
        if fast is not None:
            return fast
        app = getattr(app, "app", None)
    return None

"""HTTP plumbing under the routes: a strict, fast JSON reader and the body-size limit.

Both exist so that no input, however malformed or large, reaches a handler it could crash:
orjson refuses lone surrogates, invalid UTF-8, numbers beyond a double and nesting deeper than
1,024 levels (all answered 400 as ``invalid_json``), and the limit answers 413 before a huge
body is buffered, whether or not the client declared its length.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ErrorBody, ErrorDetail


class OrjsonRequest(Request):
    async def json(self) -> Any:
        # orjson.JSONDecodeError subclasses json.JSONDecodeError: FastAPI turns it into a
        # request validation error, which errors.on_validation_error answers with 400.
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return route


def too_large_body(limit: int) -> bytes:
    detail = ErrorDetail(
        code="payload_too_large", message=f"the body exceeds {limit} bytes", field=None
    )
    return ErrorBody(error=detail, errors=[detail]).model_dump_json().encode()


class BodyLimit:
    """413 for a body over ``limit`` bytes: by its declared length, or while it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._body = too_large_body(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared == "invalid" or declared > self.limit:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)  # the server enforces the declared length
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # Raised inside request.body(): FastAPI re-raises HTTP exceptions as they are.
                raise StarletteHTTPException(413, f"the body exceeds {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._body})


def _content_length(scope: Scope) -> int | str | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else "invalid"
    return None

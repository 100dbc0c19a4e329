"""Error bodies: every 4xx/5xx names a machine-readable code, the field and the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..index import IndexUnavailable


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
    errors: list[ErrorDetail] = []


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(code=code, message=message, field=field)


def error_response(
    status: int,
    detail: ErrorDetail,
    more: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=detail, errors=more or [detail])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "path") else list(map(str, loc))
    return ".".join(parts) or (str(loc[0]) if loc else None)


async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    return validation_response(exc.errors())


def validation_response(errors: Sequence[Any]) -> JSONResponse:
    """400 for a body that is not JSON, else 422; each error names its field and reason."""
    details = []
    status = 422
    for err in errors:
        kind = err.get("type", "")
        if kind in ("json_invalid", "json_type"):
            status = 400
            reason = (err.get("ctx") or {}).get("error")
            message = f"the body is not valid JSON: {reason}" if reason else "not valid JSON"
            details.append(ErrorDetail(code="invalid_json", message=message))
            continue
        message = str(err.get("msg", "invalid"))
        code = "malformed_identifier" if _is_identifier_error(message) else kind or "invalid"
        # Never echo the input: it may hold a personal ID number.
        details.append(ErrorDetail(code=code, message=message, field=_field(tuple(err["loc"]))))
    if not details:
        details.append(ErrorDetail(code="invalid", message="the request is invalid"))
    return error_response(status, details[0], details[:50])


def _is_identifier_error(message: str) -> bool:
    return any(m in message for m in ("uscc_", "id_length", "id_alphabet", "id_birth_date"))


async def on_api_error(_: Request, exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.detail, headers=headers)


async def on_unavailable(_: Request, exc: IndexUnavailable) -> JSONResponse:
    return error_response(
        503, ErrorDetail(code=exc.reason, message=exc.message), headers={"Retry-After": "1"}
    )


async def on_redis_error(_: Request, exc: Exception) -> JSONResponse:
    return error_response(
        503,
        ErrorDetail(
            code="redis_unavailable", message=f"Redis cannot be reached: {type(exc).__name__}"
        ),
        headers={"Retry-After": "1"},
    )


async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {
        400: "invalid_json",  # FastAPI's "error parsing the body" (e.g. a body it cannot read)
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(exc.status_code, "http_error")
    return error_response(
        exc.status_code, ErrorDetail(code=code, message=str(exc.detail)), headers=exc.headers
    )


async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    # A bug must still answer in the contract's shape, and never answer "pass".
    return error_response(503, ErrorDetail(code="internal_error", message=type(exc).__name__))

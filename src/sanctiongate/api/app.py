"""FastAPI application: the service hall's pre-approval check and its companions (SPEC §5)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import metrics
from ..checks import Checker, IdentifierNotListed, as_of, batch_json
from ..coalesce import Coalesced
from ..domain.identifiers import IdentifierError, parse_any
from ..domain.models import (
    AsOf,
    BatchCheckRequest,
    BatchCheckResponse,
    CheckRequest,
    Decision,
    Matter,
    Subject,
)
from ..heap import collector_paused, tune_collector
from ..index import IndexUnavailable, Layout, SanctionIndex
from ..index.client import LeanRedis
from ..index.ledger import Ledger
from ..keys import ApiKey, KeyStore, TurnKeyStore
from ..settings import Settings, get_settings
from ..topics import ORIGIN_HEADER
from .audit import AuditTrail
from .errors import (
    ApiError,
    ErrorBody,
    on_api_error,
    on_http_error,
    on_redis_error,
    on_unavailable,
    on_unexpected,
    on_validation_error,
    validation_response,
)
from .idempotency import Idempotency, fingerprint
from .schemas import (
    FeedbackAccepted,
    FeedbackRequest,
    IndexStatus,
    SubjectEntries,
    subject_entries,
)
from .transport import BodyLimit, OrjsonRoute

log = logging.getLogger(__name__)

ERRORS = {
    400: {"model": ErrorBody, "description": "the body is not JSON (or not UTF-8, or too deep)"},
    401: {"model": ErrorBody, "description": "no valid API key"},
    403: {"model": ErrorBody, "description": "matter category outside the key's scope"},
    413: {"model": ErrorBody, "description": "body too large"},
    422: {"model": ErrorBody, "description": "a field is invalid (named in the body)"},
    503: {"model": ErrorBody, "description": "the index cannot answer now (never a pass)"},
}
CONFLICT = {
    409: {
        "model": ErrorBody,
        "description": "the request_id was already used for a different request",
    }
}
JSON = "application/json"


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = LeanRedis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=1
        )
        self.index = SanctionIndex(
            self.redis, Layout(prefix=settings.index_prefix), settings.serve_during_rebuild
        )
        self.checker = Checker(self.index)
        self.idempotency = Idempotency(
            self.redis, self.index.layout, settings.idempotency_ttl_seconds
        )
        self.keys = TurnKeyStore(settings.keys_file)
        # Block/review decisions owe feedback and answer a later `approved` event (SPEC §3).
        self.ledger = Ledger(
            self.redis,
            self.index.layout,
            lookback_seconds=settings.lookback_days * 86400,
            feedback_sla_seconds=settings.feedback_sla_seconds,
            decision_ttl_seconds=settings.decision_ttl_seconds,
        )
        # Concurrent block/review decisions are remembered together: two scripts for many. Each
        # goes with its JSON, the answer's bytes: the ledger stores them instead of a second dump.
        self.remember_decision: Coalesced[tuple[Decision, bytes], bytes | None] = Coalesced(
            self.remember_decisions
        )
        self.kafka_ready = False

    async def remember_decisions(self, decided: list[tuple[Decision, bytes]]) -> list[bytes | None]:
        return await self.ledger.keep_first([d for d, _ in decided], [b for _, b in decided])

    async def start(self) -> None:
        # aiokafka objects bind to the running loop: create them inside it.
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=f"{self.settings.app_id}-api",
            acks="all",
            linger_ms=5,
            # An audit burst goes as one record batch per partition (AuditTrail): room for a
            # burst at peak rate (~400 B a record) instead of the default 16 KiB.
            max_batch_size=512 * 1024,
        )
        self._kafka_lock = asyncio.Lock()
        self.audit = AuditTrail(self.producer, self.settings.topic_audit)
        if not await self.ensure_kafka(timeout=15):
            log.warning("Kafka unreachable at start: audit records are buffered")
        self.audit.start(self.ensure_kafka)

    async def ensure_kafka(self, timeout: float = 5) -> bool:
        """Start the producer if it isn't yet (the broker may have been down at start)."""
        if self.kafka_ready:
            return True
        async with self._kafka_lock:
            if not self.kafka_ready:
                try:
                    await asyncio.wait_for(self.producer.start(), timeout)
                    self.kafka_ready = True
                except Exception as exc:
                    log.warning("Kafka unreachable: %s", exc)
        return self.kafka_ready

    async def stop(self) -> None:
        await self.audit.stop()
        if self.kafka_ready:
            await self.producer.stop()
        await self.redis.aclose()


bearer = HTTPBearer(auto_error=False, description="an API key from `sanctiongate keys create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def caller(request: Request, credentials: Credentials) -> ApiKey:
    """The API key of the request (401 without a valid one).

    ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency in a thread.
    """
    token = credentials.credentials if credentials else None
    return authenticate(request.app.state.services.keys, token)


def authenticate(keys: KeyStore, token: str | None) -> ApiKey:
    key = keys.authenticate(token.strip()) if token else None
    if key is None:
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <key>' is required")
    return key


Caller = Annotated[ApiKey, Depends(caller)]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = Services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        await services.start()
        tune_collector()
        yield
        await services.stop()
        metrics.process_exiting()

    app = SanctionGate(
        title="sanctiongate",
        version="1",
        summary="Joint-sanction pre-approval check (联合奖惩自动拦截)",
        lifespan=lifespan,
        responses=ERRORS,  # type: ignore[arg-type]
    )
    app.state.services = services
    app.router.route_class = OrjsonRoute
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(IndexUnavailable, on_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RedisError, on_redis_error)
    app.add_exception_handler(OSError, on_redis_error)
    app.add_exception_handler(Exception, on_unexpected)

    framework_stack = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        return BodyLimit(framework_stack(), limit=settings.max_body_bytes)

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]
    # The checks skip FastAPI and Starlette altogether (telemetry probe, error and exception
    # middleware and their send wrappers): FastChecks answers every error itself, and hands
    # what it does not serve (another content type, another method) to the framework.
    # The protocol of api.http11 calls FastChecks itself for a request it can take whole.
    app.fast_checks = FastChecks(app.framework, services)
    app.checks = BodyLimit(app.fast_checks, limit=settings.max_body_bytes)

    @app.post(
        "/v1/checks",
        response_model=Decision,
        responses=CONFLICT,  # type: ignore[arg-type]
        tags=["checks"],
    )
    async def check(body: CheckRequest, key: Caller) -> Response:
        """One pre-approval check: may these subjects do this matter? → block / review / pass.

        With a ``request_id`` the check is idempotent for its department: the same request
        gets the same decision (from any API process) for ``idempotency_ttl_seconds``; the same
        ``request_id`` with a different request gets 409 ``request_id_conflict``.
        """
        # Served by FastChecks below; the route documents the call and answers the bodies the
        # fast path hands over (a content type other than JSON).
        return Response(await run_check(services, key, body), media_type=JSON)

    @app.post("/v1/checks/batch", response_model=BatchCheckResponse, tags=["checks"])
    async def batch(body: BatchCheckRequest, key: Caller) -> Response:
        """Bulk comparison (批量核查): one result per subject, in order.

        Each subject is judged on its own. ``request_id`` labels the batch (audit, response);
        batches are not replayed from a cache: re-running one is harmless.
        """
        # Served by FastChecks, like /v1/checks.
        return Response(await run_batch(services, key, body), media_type=JSON)

    @app.get("/v1/subjects/{identifier}", response_model=SubjectEntries, tags=["subjects"])
    async def subject(identifier: str, key: Caller) -> SubjectEntries:
        """The subject's active and past entries (查询公示); personal data masked."""
        try:
            parsed = parse_any(identifier)
        except IdentifierError as exc:
            raise ApiError(422, "malformed_identifier", exc.message, "identifier") from None
        meta = await services.index.serving_meta()
        assert meta.gen is not None  # serving_meta answers only for a built index
        stored = await services.index.entries_for_identifier(meta.gen, parsed.value)
        now = datetime.now(UTC)
        return subject_entries(
            parsed.masked,
            parsed.kind.value,
            stored,
            now,
            as_of(meta, now),
        )

    @app.post("/v1/feedback", status_code=202, response_model=FeedbackAccepted, tags=["feedback"])
    async def feedback(body: FeedbackRequest, key: Caller) -> FeedbackAccepted:
        """Execution feedback (执行反馈), published to ``sanction.feedback``."""
        if body.department != key.department and "*" not in key.scopes:
            raise ApiError(403, "out_of_scope", "feedback for another department", "department")
        unavailable = ApiError(503, "kafka_unavailable", "the broker cannot be reached; retry")
        if not await services.ensure_kafka():
            raise unavailable
        payload = wire(body)
        try:
            await asyncio.wait_for(
                services.producer.send_and_wait(
                    settings.topic_feedback,
                    key=body.request_id.encode(),
                    value=payload,
                    headers=[(ORIGIN_HEADER, b"api")],  # counted here, not again by the worker
                ),
                10,
            )
        except (KafkaError, TimeoutError):
            raise unavailable from None
        metrics.feedback_total.labels(outcome=body.outcome).inc()
        now = datetime.now(UTC)
        try:
            fresh: AsOf | None = as_of(await services.index.read_meta(), now)
        except (RedisError, OSError):
            fresh = None  # the feedback is on the topic: the index's state doesn't change that
        return FeedbackAccepted(request_id=body.request_id, accepted_at=now, as_of=fresh)

    @app.get("/v1/index/status", response_model=IndexStatus, tags=["index"])
    async def index_status(key: Caller) -> IndexStatus:
        """Entries per list type and polarity, newest applied change, lag, rebuild state."""
        del key
        meta = await services.index.read_meta()
        counts = await services.index.counts(meta.gen) if meta.gen else {}
        now = datetime.now(UTC)
        return IndexStatus.build(meta, counts, as_of(meta, now))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorBody}})
    async def readyz() -> dict[str, str]:
        await services.index.serving_meta()
        return {"status": "ready"}

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus() -> Response:
        # Summed over all API processes (SPEC §7); no docstring: it would change the OpenAPI.
        await metrics.refresh_index_gauges(services.index, with_lag=True)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app


Runner = Callable[["Services", ApiKey, Any], Awaitable[bytes]]
FAST_PATHS = frozenset({"/v1/checks", "/v1/checks/batch"})


class SanctionGate(FastAPI):
    """FastAPI, with ``POST /v1/checks`` and ``/v1/checks/batch`` answered before it."""

    checks: ASGIApp | None = None
    fast_checks: FastChecks | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.checks is not None and scope["type"] == "http" and scope["path"] in FAST_PATHS:
            await self.checks(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request as FastAPI alone would serve it."""
        await super().__call__(scope, receive, send)


class FastChecks:
    """``POST /v1/checks`` and ``/v1/checks/batch`` straight from ASGI to :func:`run_check` /
    :func:`run_batch`: the service hall's hot path. It skips FastAPI's per-request machinery
    (dependency solving, body → dict → model, exception middleware), which cost more than the
    check itself; pydantic parses the bytes in one call. Same contract as the documented
    routes (which stay for the OpenAPI document and other content types): same errors, bodies.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.limit = services.settings.max_body_bytes  # BodyLimit's, for the protocol's reads
        self.calls: dict[str, tuple[type[CheckRequest | BatchCheckRequest], Runner]] = {
            "/v1/checks": (CheckRequest, run_check),  # type: ignore[dict-item]
            "/v1/checks/batch": (BatchCheckRequest, run_batch),  # type: ignore[dict-item]
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = self.calls.get(scope["path"]) if scope["type"] == "http" else None
        if call is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if not takes(headers.get(b"content-type")):
            await self.app(scope, receive, send)  # the framework's answer for other bodies
            return
        answer = await self._answer(*call, headers.get(b"authorization"), receive)
        if isinstance(answer, Response):
            await answer(scope, receive, send)
            return
        length = str(len(answer)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", length)
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": answer})

    async def answer(self, path: str, authorization: bytes | None, raw: bytes) -> bytes | Response:
        """A whole request's answer, for ``api.http11``'s protocol, which has read the body
        itself (and answers 200 with ``content-type`` and ``content-length``, like ``__call__``).
        """
        return await self._answer(*self.calls[path], authorization, raw)

    async def _answer(
        self,
        model: type[CheckRequest | BatchCheckRequest],
        run: Runner,
        authorization: bytes | None,
        body: Receive | bytes,
    ) -> bytes | Response:
        """The decision JSON, or the error response. ``body``: the bytes, or where to read them.
        The key is proven before the body is read: no key, no reading of its megabytes."""
        try:
            key = authenticate(self.services.keys, _bearer(authorization))
            raw = body if isinstance(body, bytes) else await _body(body)
            if not raw:
                raise ApiError(422, "missing", "Field required", "body")
            if model is BatchCheckRequest:
                # A batch allocates about a million objects, nearly all freed by reference
                # counting when it ends: no collection walks them meanwhile (heap.py).
                with collector_paused():
                    return await self._run(model, run, key, raw)
            return await self._run(model, run, key, raw)
        except Exception as exc:
            return await _error_answer(exc)

    async def answer_many(
        self, requests: Sequence[tuple[bytes | None, bytes]]
    ) -> list[bytes | Response]:
        """The answers of single checks (``POST /v1/checks``: the Authorization header and the
        body of each) read in one turn of the event loop, for ``api.http11``'s protocol: what
        :meth:`answer` gives each, decided together. A check with a ``request_id`` goes alone
        (:func:`run_check`: idempotency is per request); the others are judged in one
        :meth:`Checker.decide_many` (one index read, shared with concurrent ones; one
        ``as_of``), their block and review decisions remembered in one ledger write: the
        per-request tasks, coroutine chains and futures of answering them one by one cost a
        sixth of a check's CPU under load."""
        answers: list[bytes | Response | None] = [None] * len(requests)
        wave: list[tuple[int, ApiKey, CheckRequest]] = []
        alone: list[tuple[int, ApiKey, CheckRequest]] = []
        for position, (authorization, raw) in enumerate(requests):
            try:
                key = authenticate(self.services.keys, _bearer(authorization))
                if not raw:
                    raise ApiError(422, "missing", "Field required", "body")
                try:
                    body = CheckRequest.model_validate_json(raw)
                except ValidationError as exc:
                    answers[position] = _refused(exc)
                    continue
                in_scope(key, body.matter)
            except Exception as exc:
                answers[position] = await _error_answer(exc)
                continue
            (alone if body.request_id else wave).append((position, key, body))
        if alone:
            done = await asyncio.gather(*(self._alone(key, body) for _, key, body in alone))
            for (position, _, _), answer in zip(alone, done, strict=True):
                answers[position] = answer
        if wave:
            try:
                decided = await decide_wave(self.services, [(key, body) for _, key, body in wave])
            except Exception as exc:
                error = await _error_answer(exc)
                decided = [error] * len(wave)
            for (position, _, _), answer in zip(wave, decided, strict=True):
                answers[position] = answer
        return answers  # type: ignore[return-value]  # every position was filled

    async def _alone(self, key: ApiKey, body: CheckRequest) -> bytes | Response:
        try:
            return await run_check(self.services, key, body)
        except Exception as exc:
            return await _error_answer(exc)

    async def _run(
        self,
        model: type[CheckRequest | BatchCheckRequest],
        run: Runner,
        key: ApiKey,
        raw: bytes,
    ) -> bytes | Response:
        """The body parsed, then run; a body the model refuses gets its 422."""
        try:
            parsed = model.model_validate_json(raw)
        except ValidationError as exc:
            return _refused(exc)
        return await run(self.services, key, parsed)


def _refused(exc: ValidationError) -> Response:
    """The 422 of a body the model refuses."""
    return validation_response([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])


async def _error_answer(exc: Exception) -> Response:
    """What the documented routes' exception handlers answer for ``exc``: the fast paths run
    outside Starlette's middleware, and never let uvicorn answer 500."""
    if isinstance(exc, ApiError):
        return await on_api_error(None, exc)  # type: ignore[arg-type]
    if isinstance(exc, StarletteHTTPException):  # 413 from BodyLimit while the body streamed in
        return await on_http_error(None, exc)  # type: ignore[arg-type]
    if isinstance(exc, IndexUnavailable):
        return await on_unavailable(None, exc)  # type: ignore[arg-type]
    if isinstance(exc, (RedisError, OSError)):
        return await on_redis_error(None, exc)  # type: ignore[arg-type]
    log.error("check failed", exc_info=exc)
    return await on_unexpected(None, exc)  # type: ignore[arg-type]


def takes(content_type: bytes | None) -> bool:
    """Whether FastChecks answers a body of this content type (else the framework does)."""
    return content_type is None or content_type.startswith(b"application/json")


def _bearer(header: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (as HTTPBearer reads it)."""
    scheme, _, token = (header or b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "disconnected", "the client went away mid-body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def in_scope(key: ApiKey, matter: Matter) -> None:
    if not key.may_check(matter.category):
        raise ApiError(
            403,
            "out_of_scope",
            f"this key may not check matter category {matter.category!r}",
            "matter.category",
        )


async def run_check(services: Services, key: ApiKey, body: CheckRequest) -> bytes:
    """POST /v1/checks once the body is parsed: scope, idempotency, decision, metrics, audit."""
    in_scope(key, body.matter)
    started = time.perf_counter()
    request_print = fingerprint(body) if body.request_id else b""
    if body.request_id:
        replayed = await services.idempotency.replay(key.department, body.request_id, request_print)
        if replayed is not None:
            services.audit.record_replay(key, replayed)
            return replayed
    try:
        decision = await services.checker.check(
            body.subjects, body.matter, key.department, body.request_id or new_request_id()
        )
    except IdentifierNotListed as exc:
        raise ApiError(422, "identifier_check_failed", exc.message, exc.field) from None
    answer = wire(decision)
    if decision.decision != "pass":
        # Which decision the ledger held before is the idempotency record's business (below).
        await services.remember_decision((decision, answer))
    if body.request_id:
        answer = await services.idempotency.remember(
            key.department, body.request_id, request_print, answer
        )
    _observe("http", decision.decision, body.matter.category, started)
    services.audit.record(key, decision)
    return answer


@dataclass(frozen=True, slots=True)
class _Asked:
    """A check of a wave as :meth:`Checker.decide_many` takes it (``checks.Requested``)."""

    subjects: list[Subject]
    matter: Matter
    department: str
    request_id: str


async def decide_wave(
    services: Services, checks: Sequence[tuple[ApiKey, CheckRequest]]
) -> list[bytes | Response]:
    """:func:`run_check` of checks without a ``request_id`` (whose scope was checked), together:
    the same decisions, answers, ledger records, metrics and audit records."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    asked = [
        _Asked(body.subjects, body.matter, key.department, new_request_id()) for key, body in checks
    ]
    decided = await services.checker.decide_many(asked, now, coalesce=True)
    answers: list[bytes | Response] = []
    owed: list[tuple[Decision, bytes]] = []
    for decision in decided:
        if isinstance(decision, IdentifierNotListed):
            error = ApiError(422, "identifier_check_failed", decision.message, decision.field)
            answers.append(await on_api_error(None, error))  # type: ignore[arg-type]
            continue
        answer = wire(decision)
        answers.append(answer)
        if decision.decision != "pass":
            owed.append((decision, answer))
    if owed:
        await services.remember_decisions(owed)
    for (key, body), decision in zip(checks, decided, strict=True):
        if not isinstance(decision, IdentifierNotListed):
            _observe("http", decision.decision, body.matter.category, started)
            services.audit.record(key, decision)
    return answers


async def run_batch(services: Services, key: ApiKey, body: BatchCheckRequest) -> bytes:
    """POST /v1/checks/batch once the body is parsed."""
    in_scope(key, body.matter)
    limit = services.settings.max_batch_subjects
    if len(body.subjects) > limit:
        raise ApiError(422, "batch_too_large", f"at most {limit} subjects per batch", "subjects")
    started = time.perf_counter()
    try:
        response = await services.checker.batch(
            body.subjects, body.matter, key.department, body.request_id or new_request_id()
        )
    except IdentifierNotListed as exc:
        raise ApiError(422, "identifier_check_failed", exc.message, exc.field) from None
    metrics.check_duration("batch").observe(time.perf_counter() - started)
    for decision, count in Counter(r.decision for r in response.results).items():
        metrics.check_count("batch", decision, body.matter.category).inc(count)
    services.audit.record_batch(key, response)
    return batch_json(response)


def wire(model: BaseModel) -> bytes:
    """An answer's JSON: ``model_dump_json(by_alias=True).encode()`` byte for byte, without the
    str in between (pydantic renders bytes; a batch's megabytes were decoded and encoded)."""
    return model.__pydantic_serializer__.to_json(model, by_alias=True)


class _RequestIds:
    """Generated request ids: ``sg-`` and 32 hex digits, like ``checks.new_request_id``, but
    without a ``uuid4`` (an ``os.urandom`` system call) per check: a random 64-bit prefix for
    the process, then a counter. A forked child draws a prefix of its own."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix = f"sg-{secrets.token_hex(8)}"
        self.counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


new_request_id = _RequestIds()


_checks_of_the_turn = metrics.TurnTally()


def _observe(channel: str, decision: str, category: str, started: float) -> None:
    _checks_of_the_turn.check(channel, decision, category, time.perf_counter() - started)

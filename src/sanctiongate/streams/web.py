"""The worker's own small web surface: liveness, readiness and its Prometheus metrics."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import metrics
from ..index import IndexUnavailable
from .runtime import Runtime

INDEX_GAUGES_SECONDS = 1.0


def worker_web_app(runtime: Runtime) -> Starlette:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "worker": runtime.worker_id})

    async def readyz(_: Request) -> Response:
        try:
            await runtime.index.serving_meta()
        except IndexUnavailable as exc:
            return JSONResponse({"status": "unavailable", "reason": exc.reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    refreshed_at = -INDEX_GAUGES_SECONDS

    async def prometheus(_: Request) -> Response:
        # The worker's own lag comes from its heartbeat; the shared index state is read from
        # Redis, at most once a second: summing the counters walks every bucket (milliseconds
        # of Redis, which the ingest waits behind), and a scraper polling fast (a dashboard,
        # a benchmark) would have it do that again and again for the same numbers.
        nonlocal refreshed_at
        now = time.monotonic()
        if now - refreshed_at >= INDEX_GAUGES_SECONDS:
            refreshed_at = now
            await metrics.refresh_index_gauges(runtime.index, with_lag=False)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", prometheus),
        ]
    )
